// SPDX-License-Identifier: GPL-2.0-only
/*
 * selftest_vectors.c - the POOL/1 construction (framing of handshake
 * packets, the handshake in both roles, transport packets, rekey, address,
 * journal hash) against the vectors of the JSON files in tests/vectors
 * (kmod/vectors.h, generated), at module load.
 *
 * The test state lives in one kmalloc'd struct freed before returning:
 * the AEAD needs linear memory and the stack stays small.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": selftest: " fmt

#include <linux/kernel.h>
#include <linux/errno.h>
#include <linux/init.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <crypto/algapi.h>

#include "crypto.h"
#include "handshake.h"
#include "handshake_kat.h"
#include "selftest_check.h"
#include "wire.h"

#include "vectors.h"

/* ---- POOL/1 vectors ---------------------------------------------------- */

struct pool_selftest_state {
	struct pool_static si, sr;
	struct pool_hs_initiator ini, ini2;
	struct pool_hs_responder rsp;
	struct pool_keys ki, kr;
	struct pool_hdr hdr;
	struct pool_aead aead;
	struct pool_cookie cookie;
	u8 payload[POOL_RESPONSE_LEN];
	u8 e[32], seed[32], mac[32];
	u8 hbuf[POOL_HDR_LEN];
	u8 scratch[256];
};

static bool __init pool_selftest_trusted(const u8 peer_static[32], void *arg)
{
	return !crypto_memneq(peer_static, arg, 32);
}

/*
 * A vector packet: framing valid, of this type, with this payload, and its
 * header MAC is HMAC(key, header with MAC zeroed || payload). Leaves the
 * decoded header in st->hdr.
 */
static bool __init pool_check_packet(struct pool_selftest_state *st,
				     const char *what, const u8 *pkt,
				     size_t pktlen, u8 type, const u8 key[32],
				     const u8 *payload, size_t len)
{
	struct pool_hdr *h = &st->hdr;

	if (pktlen != POOL_HDR_LEN + len || pool_hdr_decode(h, pkt) ||
	    h->type != type || h->payload_len != len) {
		pr_err("%s: framing of the vector packet\n", what);
		return false;
	}
	pool_hdr_encode(st->hbuf, h);
	if (!pool_same(what, "re-encoded header", st->hbuf, pkt, POOL_HDR_LEN))
		return false;
	pool_packet_mac(st->mac, key, pkt, pkt + POOL_HDR_LEN, len);
	if (!pool_same(what, "header MAC", st->mac, h->mac, POOL_MAC_LEN))
		return false;
	return pool_same(what, "payload", payload, pkt + POOL_HDR_LEN, len);
}

#define VEC(v)	pool_vec_handshake_##v

static bool __init pool_selftest_identities(struct pool_selftest_state *st)
{
	memcpy(st->si.secret, VEC(initiator_static_secret), 32);
	CHECK(pool_x25519_public(st->si.public, st->si.secret), "S_i");
	SAME(st->si.public, VEC(initiator_static_public), 32, "S_i");
	pool_hs_mac_key(st->si.mac_key, st->si.public);

	memcpy(st->sr.secret, VEC(responder_static_secret), 32);
	CHECK(pool_x25519_public(st->sr.public, st->sr.secret), "S_r");
	SAME(st->sr.public, VEC(responder_static_public), 32, "S_r");
	pool_hs_mac_key(st->sr.mac_key, st->sr.public);
	return true;
}

static bool __init pool_selftest_init_challenge(struct pool_selftest_state *st)
{
	const u8 *mk = st->sr.mac_key;
	const u8 *init = VEC(init_packet) + POOL_HDR_LEN;
	const u8 *chal = VEC(challenge_packet) + POOL_HDR_LEN;
	u8 difficulty;
	u64 ts, sol;

	BUILD_BUG_ON(sizeof(VEC(iid)) != POOL_ID_LEN ||
		     sizeof(VEC(rid)) != POOL_ID_LEN ||
		     sizeof(VEC(client_ip)) != 16 ||
		     sizeof(VEC(transport_okm)) != 176);

	/* INIT */
	CHECK(!pool_hs_init_create_kat(&st->ini, st->sr.public,
				       POOL_VEC_HANDSHAKE_TIMESTAMP,
				       VEC(initiator_ephemeral_secret),
				       VEC(iid), st->payload), "INIT");
	SAME(st->ini.e_public, VEC(initiator_ephemeral_public), 32, "E_i");
	SAME(st->ini.mac_key, mk, 32, "mk");
	SAME(mk, VEC(mac_key), 32, "mk of the vectors");
	if (!pool_check_packet(st, "INIT", VEC(init_packet),
			       sizeof(VEC(init_packet)), POOL_PKT_INIT, mk,
			       st->payload, POOL_INIT_LEN))
		return false;
	CHECK(!memcmp(st->hdr.session_id, VEC(iid), POOL_ID_LEN) &&
	      !memchr_inv(st->hdr.session_id + POOL_ID_LEN, 0, POOL_ID_LEN),
	      "INIT session id");
	CHECK(st->hdr.timestamp == POOL_VEC_HANDSHAKE_TIMESTAMP,
	      "INIT header timestamp");

	/* CHALLENGE, from the responder's view of the INIT */
	pool_hs_init_parse(init, st->e, &ts);
	SAME(st->e, VEC(initiator_ephemeral_public), 32, "parsed E_i");
	CHECK(ts == POOL_VEC_HANDSHAKE_TIMESTAMP, "parsed ts");
	pool_cookie_seed_secret(VEC(cookie_secret), VEC(client_ip),
				POOL_VEC_HANDSHAKE_CLIENT_PORT, VEC(iid), st->e,
				ts, st->seed);
	SAME(st->seed, VEC(puzzle_seed), 32, "puzzle seed");
	pool_hs_challenge_create(st->seed, POOL_VEC_HANDSHAKE_DIFFICULTY,
				 st->payload);
	if (!pool_check_packet(st, "CHALLENGE", VEC(challenge_packet),
			       sizeof(VEC(challenge_packet)), POOL_PKT_CHALLENGE,
			       mk, st->payload, POOL_CHALLENGE_LEN))
		return false;
	CHECK(!memcmp(st->hdr.session_id, VEC(iid), POOL_ID_LEN) &&
	      !memchr_inv(st->hdr.session_id + POOL_ID_LEN, 0, POOL_ID_LEN),
	      "CHALLENGE session id");
	CHECK(!pool_hs_challenge_parse(chal, st->e, &difficulty) &&
	      difficulty == POOL_VEC_HANDSHAKE_DIFFICULTY &&
	      !memcmp(st->e, st->seed, 32), "CHALLENGE parse");
	memcpy(st->scratch, chal, POOL_CHALLENGE_LEN);
	st->scratch[39] = 1;
	CHECK(pool_hs_challenge_parse(st->scratch, st->e, &difficulty) ==
	      -EPROTO, "CHALLENGE with reserved bits refused");

	/* the puzzle */
	CHECK(pool_puzzle_ok(st->seed, POOL_VEC_HANDSHAKE_SOLUTION,
			     POOL_VEC_HANDSHAKE_DIFFICULTY), "vector solution");
	CHECK(POOL_VEC_HANDSHAKE_DIFFICULTY > 16 ||
	      (!pool_hs_solve(st->seed, POOL_VEC_HANDSHAKE_DIFFICULTY, &sol) &&
	       pool_puzzle_ok(st->seed, sol, POOL_VEC_HANDSHAKE_DIFFICULTY) &&
	       sol <= POOL_VEC_HANDSHAKE_SOLUTION), "solver");
	CHECK(pool_hs_solve(st->seed, POOL_MAX_DIFFICULTY + 1, &sol) == -EINVAL,
	      "difficulty above the maximum refused");
	CHECK(pool_hs_solve_until(st->seed, POOL_MAX_DIFFICULTY, 1, &sol) ==
	      -ETIMEDOUT, "solver deadline");
	return true;
}

static bool __init pool_selftest_response(struct pool_selftest_state *st)
{
	const u8 *mk = st->sr.mac_key;
	const u8 *resp = VEC(response_packet) + POOL_HDR_LEN;
	u64 ts, sol;

	CHECK(!pool_hs_response_create(&st->ini, &st->si,
				       POOL_VEC_HANDSHAKE_SOLUTION, st->payload),
	      "RESPONSE");
	if (!pool_check_packet(st, "RESPONSE", VEC(response_packet),
			       sizeof(VEC(response_packet)), POOL_PKT_RESPONSE,
			       mk, st->payload, POOL_RESPONSE_LEN))
		return false;
	CHECK(!memcmp(st->hdr.session_id, VEC(iid), POOL_ID_LEN),
	      "RESPONSE session id");

	pool_hs_response_peek(resp, st->e, &ts, &sol);
	CHECK(!memcmp(st->e, VEC(initiator_ephemeral_public), 32) &&
	      ts == POOL_VEC_HANDSHAKE_TIMESTAMP &&
	      sol == POOL_VEC_HANDSHAKE_SOLUTION, "RESPONSE peek");

	/* the responder: untrusted static key, tampered tags, then valid */
	CHECK(pool_hs_response_consume_trust(&st->sr, VEC(iid), resp,
					     pool_selftest_trusted,
					     st->sr.public, &st->rsp) ==
	      -ENOKEY, "untrusted S_i refused");
	SAME(st->rsp.peer_static, st->si.public, 32, "untrusted S_i reported");
	memcpy(st->scratch, resp, POOL_RESPONSE_LEN);
	st->scratch[100] ^= 1;	/* a stranger's bad proof: still UNKNOWN_PEER */
	CHECK(pool_hs_response_consume_trust(&st->sr, VEC(iid), st->scratch,
					     pool_selftest_trusted,
					     st->sr.public, &st->rsp) ==
	      -ENOKEY, "untrusted S_i refused before its proof");
	st->scratch[100] ^= 1;
	st->scratch[60] ^= 1;
	CHECK(pool_hs_response_consume_trust(&st->sr, VEC(iid), st->scratch,
					     pool_selftest_trusted,
					     st->si.public, &st->rsp) ==
	      -EBADMSG,
	      "tampered enc_static refused");
	st->scratch[60] ^= 1;
	st->scratch[100] ^= 1;
	CHECK(pool_hs_response_consume_trust(&st->sr, VEC(iid), st->scratch,
					     pool_selftest_trusted,
					     st->si.public, &st->rsp) ==
	      -EBADMSG,
	      "tampered enc_proof refused");
	st->scratch[100] ^= 1;
	st->scratch[40] ^= 1;	/* clear solution differs from the proof */
	CHECK(pool_hs_response_consume_trust(&st->sr, VEC(iid), st->scratch,
					     pool_selftest_trusted,
					     st->si.public, &st->rsp) ==
	      -EBADMSG,
	      "proof repeating another solution refused");

	CHECK(!pool_hs_response_consume_trust(&st->sr, VEC(iid), resp,
					      pool_selftest_trusted,
					      st->si.public, &st->rsp),
	      "RESPONSE consume");
	SAME(st->rsp.peer_static, st->si.public, 32, "responder's S_i");
	SAME(st->rsp.e_peer, VEC(initiator_ephemeral_public), 32,
	     "responder's E_i");
	SAME(st->rsp.iid, VEC(iid), POOL_ID_LEN, "responder's iid");
	CHECK(st->rsp.ts == POOL_VEC_HANDSHAKE_TIMESTAMP, "responder's ts");
	SAME(st->rsp.ck, st->ini.ck, 32, "ck after RESPONSE");
	SAME(st->rsp.h, st->ini.h, 32, "h after RESPONSE");
	return true;
}

static bool __init pool_check_keys(const char *who, const struct pool_keys *k,
				   const u8 *t, bool initiator, bool with_seq)
{
	const u8 *send = initiator ? t : t + 64, *recv = initiator ? t + 64 : t;
	u64 seq_i2r = get_unaligned_be64(t + 128) & GENMASK_ULL(47, 0);
	u64 seq_r2i = get_unaligned_be64(t + 136) & GENMASK_ULL(47, 0);

	if (!pool_same(who, "send key", k->send_key, send, 32) ||
	    !pool_same(who, "send mac", k->send_mac, send + 32, 32) ||
	    !pool_same(who, "recv key", k->recv_key, recv, 32) ||
	    !pool_same(who, "recv mac", k->recv_mac, recv + 32, 32) ||
	    !pool_same(who, "rk", k->rk, t + 144, 32))
		return false;
	if (with_seq &&
	    (k->send_seq0 != (initiator ? seq_i2r : seq_r2i) ||
	     k->recv_seq0 != (initiator ? seq_r2i : seq_i2r))) {
		pr_err("%s: sequence bases\n", who);
		return false;
	}
	return true;
}

static bool __init pool_selftest_ack(struct pool_selftest_state *st)
{
	const u8 *mk = st->sr.mac_key;
	const u8 *ack = VEC(ack_packet) + POOL_HDR_LEN;

	CHECK(!pool_hs_ack_create_kat(&st->rsp, VEC(responder_ephemeral_secret),
				      VEC(rid), st->payload, &st->kr), "ACK");
	SAME(st->payload, VEC(responder_ephemeral_public), 32, "E_r");
	if (!pool_check_packet(st, "ACK", VEC(ack_packet),
			       sizeof(VEC(ack_packet)), POOL_PKT_ACK, mk,
			       st->payload, POOL_ACK_LEN))
		return false;
	CHECK(!memcmp(st->hdr.session_id, VEC(iid), POOL_ID_LEN) &&
	      !memcmp(st->hdr.session_id + POOL_ID_LEN, VEC(rid), POOL_ID_LEN),
	      "ACK session id");
	if (!pool_check_keys("responder keys", &st->kr, VEC(transport_okm),
			     false, true))
		return false;

	/* the initiator: a tampered confirm first, on a copy of its state */
	st->ini2 = st->ini;
	memcpy(st->scratch, ack, POOL_ACK_LEN);
	st->scratch[POOL_ACK_LEN - 1] ^= 1;
	CHECK(pool_hs_ack_consume(&st->ini2, &st->si, st->scratch, VEC(rid),
				  &st->ki) == -EBADMSG, "tampered ACK refused");
	CHECK(!memchr_inv(st->ini2.e_secret, 0, 32), "e_i wiped on failure");
	/* the ids are bound: the true ACK under a rewritten rid is refused */
	st->ini2 = st->ini;
	memcpy(st->scratch, VEC(rid), POOL_ID_LEN);
	st->scratch[0] ^= 0x80;
	CHECK(pool_hs_ack_consume(&st->ini2, &st->si, ack, st->scratch,
				  &st->ki) == -EBADMSG, "ACK with a rewritten rid refused");

	CHECK(!pool_hs_ack_consume(&st->ini, &st->si, ack, VEC(rid), &st->ki),
	      "ACK consume");
	CHECK(!memchr_inv(st->ini.e_secret, 0, 32), "e_i wiped");
	return pool_check_keys("initiator keys", &st->ki, VEC(transport_okm),
			       true, true);
}

/* The initiator's DATA packet, built as the session code does. */
static bool __init pool_selftest_data(struct pool_selftest_state *st)
{
	const size_t ptlen = sizeof(VEC(data_plaintext));
	const size_t len = ptlen + POOL_TAG_LEN;
	const u8 *want = VEC(data_packet);
	u8 nonce[POOL_NONCE_LEN];
	struct pool_hdr h;
	u8 *pkt;
	bool ok = false;
	int ret;

	if (sizeof(VEC(data_packet)) != POOL_HDR_LEN + len ||
	    pool_hdr_decode(&h, want)) {
		pr_err("%s: framing of the vector packet\n", __func__);
		return false;
	}
	pkt = kmalloc(POOL_HDR_LEN + len, GFP_KERNEL);
	if (!pkt)
		return false;

	/* The acknowledgment field is whatever the vector's sender had seen. */
	h = (struct pool_hdr) {
		.type = POOL_PKT_DATA,
		.flags = POOL_F_ENCRYPTED,
		.seq = POOL_VEC_HANDSHAKE_DATA_SEQ,
		.ack = h.ack,
		.timestamp = POOL_VEC_HANDSHAKE_DATA_TIMESTAMP,
		.payload_len = len,
		.channel = POOL_VEC_HANDSHAKE_DATA_CHANNEL,
	};
	memcpy(h.session_id, VEC(iid), POOL_ID_LEN);
	memcpy(h.session_id + POOL_ID_LEN, VEC(rid), POOL_ID_LEN);
	pool_hdr_encode(pkt, &h);

	memcpy(nonce, st->ki.send_mac, 4);
	put_unaligned_be64(POOL_VEC_HANDSHAKE_DATA_SEQ, nonce + 4);
	memcpy(pkt + POOL_HDR_LEN, VEC(data_plaintext), ptlen);
	if (pool_aead_init(&st->aead, st->ki.send_key, GFP_KERNEL))
		goto out;
	ret = pool_aead_encrypt(&st->aead, nonce, pkt + POOL_HDR_LEN, ptlen,
				NULL, 0);
	pool_aead_destroy(&st->aead);
	if (ret)
		goto out;
	pool_packet_mac(pkt + POOL_HDR_MAC_OFF, st->ki.send_mac, pkt,
			pkt + POOL_HDR_LEN, len);
	if (!pool_same(__func__, "DATA packet", pkt, want, POOL_HDR_LEN + len))
		goto out;

	/* and the responder's receive path on the vector's bytes */
	pool_packet_mac(st->mac, st->kr.recv_mac, want, want + POOL_HDR_LEN,
			len);
	if (crypto_memneq(st->mac, want + POOL_HDR_MAC_OFF, POOL_MAC_LEN)) {
		pr_err("%s: receiver's HMAC\n", __func__);
		goto out;
	}
	memcpy(nonce, st->kr.recv_mac, 4);
	memcpy(pkt, want, POOL_HDR_LEN + len);
	if (pool_aead_init(&st->aead, st->kr.recv_key, GFP_KERNEL))
		goto out;
	ret = pool_aead_decrypt(&st->aead, nonce, pkt + POOL_HDR_LEN, len,
				NULL, 0);
	pool_aead_destroy(&st->aead);
	if (ret || !pool_same(__func__, "received plaintext", pkt + POOL_HDR_LEN,
			      VEC(data_plaintext), ptlen))
		goto out;
	ok = true;
out:
	kfree_sensitive(pkt);
	if (!ok)
		pr_err("%s: failed\n", __func__);
	return ok;
}

#undef VEC

/* The whole handshake with fresh randomness, as the session code runs it. */
static bool __init pool_selftest_roundtrip(struct pool_selftest_state *st)
{
	static const u8 ip[16] __initconst = {
		[10] = 0xff, [11] = 0xff, [12] = 127, [15] = 1
	};
	u64 ts = 1, sol;
	u8 difficulty;

	pool_cookie_init(&st->cookie);
	pool_hs_init_create(&st->ini, st->sr.public, ts, st->payload);
	pool_hs_init_parse(st->payload, st->e, &ts);
	pool_cookie_seed(&st->cookie, 0, ip, 9253, st->ini.iid, st->e, ts,
			 st->seed);
	pool_hs_challenge_create(st->seed, 8, st->payload);
	CHECK(!pool_hs_challenge_parse(st->payload, st->seed, &difficulty) &&
	      !pool_hs_solve(st->seed, difficulty, &sol) &&
	      !pool_hs_response_create(&st->ini, &st->si, sol, st->payload),
	      "initiator");

	pool_hs_response_peek(st->payload, st->e, &ts, &sol);
	pool_cookie_seed(&st->cookie, 0, ip, 9253, st->ini.iid, st->e, ts,
			 st->seed);
	CHECK(pool_puzzle_ok(st->seed, sol, 8), "puzzle");
	pool_cookie_seed(&st->cookie, 1, ip, 9253, st->ini.iid, st->e, ts,
			 st->mac);
	CHECK(memcmp(st->seed, st->mac, 32), "previous cookie secret");
	CHECK(!pool_hs_response_consume_trust(&st->sr, st->ini.iid,
					      st->payload, NULL, NULL,
					      &st->rsp) &&
	      !memcmp(st->rsp.peer_static, st->si.public, 32) &&
	      !pool_hs_ack_create(&st->rsp, st->e, st->payload, &st->kr) &&
	      !pool_hs_ack_consume(&st->ini, &st->si, st->payload, st->e,
				   &st->ki), "handshake");
	CHECK(!memcmp(st->ki.send_key, st->kr.recv_key, 32) &&
	      !memcmp(st->ki.send_mac, st->kr.recv_mac, 32) &&
	      !memcmp(st->ki.recv_key, st->kr.send_key, 32) &&
	      !memcmp(st->ki.recv_mac, st->kr.send_mac, 32) &&
	      !memcmp(st->ki.rk, st->kr.rk, 32) &&
	      st->ki.send_seq0 == st->kr.recv_seq0 &&
	      st->ki.recv_seq0 == st->kr.send_seq0 &&
	      memcmp(st->ki.send_key, st->ki.recv_key, 32), "keys agree");
	return true;
}

static bool __init pool_selftest_rekey(struct pool_selftest_state *st)
{
	BUILD_BUG_ON(sizeof(pool_vec_rekey_okm) != 176);

	CHECK(pool_x25519(st->mac, pool_vec_rekey_ephemeral_a_secret,
			  pool_vec_rekey_ephemeral_b_public), "rekey DH");
	SAME(st->mac, pool_vec_rekey_dh, 32, "rekey DH");

	pool_rekey_derive(pool_vec_rekey_rk, pool_vec_rekey_dh, true, &st->ki);
	pool_rekey_derive(pool_vec_rekey_rk, pool_vec_rekey_dh, false, &st->kr);
	return pool_check_keys("rekey initiator", &st->ki, pool_vec_rekey_okm,
			       true, false) &&
	       pool_check_keys("rekey responder", &st->kr, pool_vec_rekey_okm,
			       false, false);
}

static bool __init pool_selftest_address_journal(struct pool_selftest_state *st)
{
	const size_t dlen = sizeof(pool_vec_journal_detail_hex);
	char *detail = (char *)st->scratch;

	BUILD_BUG_ON(sizeof(pool_vec_journal_detail_hex) >= sizeof(st->scratch));

	pool_address_compute(st->mac, pool_vec_address_public_key,
			     POOL_VEC_ADDRESS_ORG_ID, POOL_VEC_ADDRESS_SEGMENT_ID);
	SAME(st->mac, pool_vec_address_address, POOL_ADDR_BYTES, "address");

	/* detail: hashed up to its NUL, so pad with one and some junk */
	memset(detail, 'x', sizeof(st->scratch));
	memcpy(detail, pool_vec_journal_detail_hex, dlen);
	detail[dlen] = '\0';
	pool_journal_hash_compute(st->mac, pool_vec_journal_prev_hash,
				  POOL_VEC_JOURNAL_SEQ,
				  POOL_VEC_JOURNAL_TIMESTAMP_NS,
				  POOL_VEC_JOURNAL_TYPE, POOL_VEC_JOURNAL_CODE,
				  POOL_VEC_JOURNAL_CONFIG_VERSION,
				  pool_vec_journal_peer_public_key, detail,
				  sizeof(st->scratch));
	SAME(st->mac, pool_vec_journal_hash, 32, "journal hash");
	return true;
}

bool __init pool_selftest_vectors(void)
{
	struct pool_selftest_state *st;
	bool ok;

	st = kzalloc(sizeof(*st), GFP_KERNEL);
	if (!st) {
		pr_err("%s: out of memory\n", __func__);
		return false;
	}
	ok = pool_selftest_identities(st) &&
	     pool_selftest_init_challenge(st) &&
	     pool_selftest_response(st) &&
	     pool_selftest_ack(st) &&
	     pool_selftest_data(st) &&
	     pool_selftest_roundtrip(st) &&
	     pool_selftest_rekey(st) &&
	     pool_selftest_address_journal(st);
	kfree_sensitive(st);
	return ok;
}
