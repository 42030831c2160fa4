// SPDX-License-Identifier: GPL-2.0-only
/*
 * handshake.c - the POOL/1 handshake (docs/protocol.md section 3), the
 * responder's cookie and puzzle, and the rekey derivation (section 5).
 *
 * Everything here works on byte buffers the caller owns; the only
 * allocations are the one-shot AEADs. Every secret that passes through a
 * local buffer is wiped before returning; the caller owns (and wipes) the
 * state structures and the derived keys.
 */

#include <linux/kernel.h>
#include <linux/math64.h>
#include <linux/errno.h>
#include <linux/random.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/string.h>
#include <linux/timekeeping.h>
#include <crypto/algapi.h>
#include <crypto/curve25519.h>

#include "crypto.h"
#include "handshake.h"
#include "handshake_kat.h"

/* Labels, hashed without their NUL: use sizeof() - 1. */
static const u8 pool_name[] = "POOL/1 X25519 ChaChaPoly SHA256";
static const u8 pool_label_mac[] = "POOL/1 mac";
static const u8 pool_label_mix[] = "POOL/1 mix";
static const u8 pool_label_transport[] = "POOL/1 transport";
static const u8 pool_label_rekey[] = "POOL/1 rekey";
static const u8 pool_label_puzzle[] = "POOL/1 puzzle";
static const u8 pool_label_pow[] = "POOL/1 pow";

#define POOL_OKM_LEN	176

void pool_hs_mac_key(u8 out[32], const u8 static_public[32])
{
	pool_hash(out, pool_label_mac, sizeof(pool_label_mac) - 1,
		  static_public, 32);
}

void pool_packet_mac(u8 out[32], const u8 key[32], const u8 hdr[POOL_HDR_LEN],
		     const u8 *payload, size_t len)
{
	static const u8 zero_mac[POOL_MAC_LEN];
	struct pool_hmac_ctx ctx;

	pool_hmac_init(&ctx, key, 32);
	pool_hmac_update(&ctx, hdr, POOL_HDR_MAC_OFF);
	pool_hmac_update(&ctx, zero_mac, sizeof(zero_mac));
	pool_hmac_update(&ctx, payload, len);
	pool_hmac_final(&ctx, out);
}

/* h = HASH(h || data) */
static void pool_mix_hash(u8 h[32], const u8 *data, size_t len)
{
	pool_hash(h, h, 32, data, len);
}

/*
 * h = HASH(h || iid || rid || E_r) in the ACK: both session ids enter the
 * transcript, so that the ids the simultaneous-rekey tie-break compares are
 * the ones both sides agreed on, not what an on-path rewrite of the ACK
 * header made of them (docs/protocol.md section 3, ACK).
 */
static void pool_mix_ack_hash(u8 h[32], const u8 iid[POOL_ID_LEN],
			      const u8 rid[POOL_ID_LEN], const u8 e_r[32])
{
	u8 buf[2 * POOL_ID_LEN + 32];

	memcpy(buf, iid, POOL_ID_LEN);
	memcpy(buf + POOL_ID_LEN, rid, POOL_ID_LEN);
	memcpy(buf + 2 * POOL_ID_LEN, e_r, 32);
	pool_mix_hash(h, buf, sizeof(buf));
}

/* ck, k = MIX(ck, DH(secret, pub)); false if the DH result is zero. */
static bool __must_check pool_mix_dh(u8 ck[32], u8 k[32], const u8 secret[32],
				     const u8 pub[32])
{
	u8 dh[32], okm[64];
	bool ok;

	ok = pool_x25519(dh, secret, pub);
	if (ok) {
		pool_hkdf(okm, sizeof(okm), ck, 32, dh, sizeof(dh),
			  pool_label_mix, sizeof(pool_label_mix) - 1);
		memcpy(ck, okm, 32);
		memcpy(k, okm + 32, 32);
	}
	memzero_explicit(dh, sizeof(dh));
	memzero_explicit(okm, sizeof(okm));
	return ok;
}

/* h = HASH(NAME); ck = h; h = HASH(h || S_r); h = HASH(h || E_i) */
static void pool_hs_start(u8 ck[32], u8 h[32], const u8 s_r[32],
			  const u8 e_i[32])
{
	pool_hash(h, pool_name, sizeof(pool_name) - 1, NULL, 0);
	memcpy(ck, h, 32);
	pool_mix_hash(h, s_r, 32);
	pool_mix_hash(h, e_i, 32);
}

/* Slices T (section 3) into this side's send and receive keys. */
static void pool_keys_from_okm(struct pool_keys *out, const u8 t[POOL_OKM_LEN],
			       bool initiator, bool with_seq)
{
	const u8 *i2r_key = t, *i2r_mac = t + 32;
	const u8 *r2i_key = t + 64, *r2i_mac = t + 96;
	u64 seq_i2r = get_unaligned_be64(t + 128) & GENMASK_ULL(47, 0);
	u64 seq_r2i = get_unaligned_be64(t + 136) & GENMASK_ULL(47, 0);

	memcpy(out->send_key, initiator ? i2r_key : r2i_key, 32);
	memcpy(out->send_mac, initiator ? i2r_mac : r2i_mac, 32);
	memcpy(out->recv_key, initiator ? r2i_key : i2r_key, 32);
	memcpy(out->recv_mac, initiator ? r2i_mac : i2r_mac, 32);
	memcpy(out->rk, t + 144, 32);
	if (with_seq) {
		out->send_seq0 = initiator ? seq_i2r : seq_r2i;
		out->recv_seq0 = initiator ? seq_r2i : seq_i2r;
	} else {
		/* rekey: sequences continue, these are not used */
		out->send_seq0 = 0;
		out->recv_seq0 = 0;
	}
}

/* T = HKDF(ck, h, "POOL/1 transport", 176) */
static void pool_transport_derive(struct pool_keys *out, const u8 ck[32],
				  const u8 h[32], bool initiator)
{
	u8 t[POOL_OKM_LEN];

	pool_hkdf(t, sizeof(t), ck, 32, h, 32, pool_label_transport,
		  sizeof(pool_label_transport) - 1);
	pool_keys_from_okm(out, t, initiator, true);
	memzero_explicit(t, sizeof(t));
}

void pool_rekey_derive(const u8 rk[32], const u8 dh[32], bool initiator,
		       struct pool_keys *out)
{
	u8 t[POOL_OKM_LEN];

	pool_hkdf(t, sizeof(t), rk, 32, dh, 32, pool_label_rekey,
		  sizeof(pool_label_rekey) - 1);
	pool_keys_from_okm(out, t, initiator, false);
	memzero_explicit(t, sizeof(t));
}

/* ---- initiator --------------------------------------------------------- */

/* hs->e_secret and hs->e_public are set; fills in the rest and the INIT. */
static void pool_hs_init_fill(struct pool_hs_initiator *hs,
			      const u8 peer_static[32], u64 now_ns,
			      u8 payload[POOL_INIT_LEN])
{
	hs->ts = now_ns;
	memcpy(hs->peer_static, peer_static, 32);
	pool_hs_mac_key(hs->mac_key, peer_static);
	memset(hs->ck, 0, sizeof(hs->ck));
	memset(hs->h, 0, sizeof(hs->h));

	memcpy(payload, hs->e_public, 32);
	put_unaligned_be64(now_ns, payload + 32);
}

void pool_hs_init_create(struct pool_hs_initiator *hs, const u8 peer_static[32],
			 u64 now_ns, u8 payload[POOL_INIT_LEN])
{
	pool_x25519_generate(hs->e_secret, hs->e_public);
	get_random_bytes(hs->iid, sizeof(hs->iid));
	pool_hs_init_fill(hs, peer_static, now_ns, payload);
}

int pool_hs_init_create_kat(struct pool_hs_initiator *hs,
			    const u8 peer_static[32], u64 now_ns,
			    const u8 e_secret[32], const u8 iid[POOL_ID_LEN],
			    u8 payload[POOL_INIT_LEN])
{
	memcpy(hs->e_secret, e_secret, 32);
	if (!pool_x25519_public(hs->e_public, hs->e_secret))
		return -EINVAL;
	memcpy(hs->iid, iid, POOL_ID_LEN);
	pool_hs_init_fill(hs, peer_static, now_ns, payload);
	return 0;
}

/* Leading `bits` bits of d are zero (bit 7 of byte 0 first). */
static bool pool_zero_bits(const u8 d[32], unsigned int bits)
{
	unsigned int i;

	for (i = 0; i < bits / 8; i++)
		if (d[i])
			return false;
	bits %= 8;
	return !bits || !(d[i] >> (8 - bits));
}

static void pool_pow_start(struct sha256_state *s, const u8 seed[32])
{
	sha256_init(s);
	sha256_update(s, pool_label_pow, sizeof(pool_label_pow) - 1);
	sha256_update(s, seed, 32);
}

static bool pool_pow_try(const struct sha256_state *base, u64 solution,
			 unsigned int difficulty)
{
	struct sha256_state s = *base;
	u8 be[8], digest[32];

	put_unaligned_be64(solution, be);
	sha256_update(&s, be, sizeof(be));
	sha256_final(&s, digest);
	return pool_zero_bits(digest, difficulty);
}

bool pool_puzzle_ok(const u8 seed[32], u64 solution, u8 difficulty)
{
	struct sha256_state base;

	pool_pow_start(&base, seed);
	return pool_pow_try(&base, solution, difficulty);
}

int pool_hs_solve_until(const u8 seed[32], u8 difficulty, u64 deadline_ns,
			u64 *solution)
{
	struct sha256_state base;
	u64 i;

	if (difficulty > POOL_MAX_DIFFICULTY)
		return -EINVAL;

	pool_pow_start(&base, seed);
	for (i = 0; !pool_pow_try(&base, i, difficulty); i++) {
		if ((i & 1023) == 1023) {
			if (signal_pending(current))
				return -EINTR;
			if (deadline_ns && ktime_get_ns() >= deadline_ns)
				return -ETIMEDOUT;
			cond_resched();
		}
	}
	*solution = i;
	return 0;
}

int pool_hs_solve(const u8 seed[32], u8 difficulty, u64 *solution)
{
	return pool_hs_solve_until(seed, difficulty, 0, solution);
}

int pool_hs_challenge_parse(const u8 payload[POOL_CHALLENGE_LEN], u8 seed[32],
			    u8 *difficulty)
{
	if (memchr_inv(payload + 33, 0, POOL_CHALLENGE_LEN - 33))
		return -EPROTO;
	memcpy(seed, payload, 32);
	*difficulty = payload[32];
	return 0;
}

int pool_hs_response_create(struct pool_hs_initiator *hs,
			    const struct pool_static *self, u64 solution,
			    u8 payload[POOL_RESPONSE_LEN])
{
	u8 *enc_static = payload + 48, *enc_proof = payload + 96;
	u8 k[32];
	int ret;

	pool_hs_start(hs->ck, hs->h, hs->peer_static, hs->e_public);

	memcpy(payload, hs->e_public, 32);
	put_unaligned_be64(hs->ts, payload + 32);
	put_unaligned_be64(solution, payload + 40);

	ret = -EINVAL;
	if (!pool_mix_dh(hs->ck, k, hs->e_secret, hs->peer_static))	/* es */
		goto out;
	memcpy(enc_static, self->public, 32);
	pool_hs_seal(enc_static, 32, hs->h, k);
	pool_mix_hash(hs->h, enc_static, 48);

	ret = -EINVAL;
	if (!pool_mix_dh(hs->ck, k, self->secret, hs->peer_static))	/* ss */
		goto out;
	memcpy(enc_proof, payload + 32, 16);
	pool_hs_seal(enc_proof, 16, hs->h, k);
	pool_mix_hash(hs->h, enc_proof, 32);
	ret = 0;
out:
	memzero_explicit(k, sizeof(k));
	return ret;
}

int pool_hs_ack_consume(struct pool_hs_initiator *hs,
			const struct pool_static *self,
			const u8 payload[POOL_ACK_LEN], const u8 rid[POOL_ID_LEN],
			struct pool_keys *out)
{
	const u8 *e_r = payload;
	u8 confirm[POOL_TAG_LEN];
	u8 k[32];
	int ret;

	pool_mix_ack_hash(hs->h, hs->iid, rid, e_r);
	ret = -EBADMSG;
	if (!pool_mix_dh(hs->ck, k, hs->e_secret, e_r) ||	/* ee */
	    !pool_mix_dh(hs->ck, k, self->secret, e_r))		/* se */
		goto out;
	memcpy(confirm, payload + 32, sizeof(confirm));
	ret = pool_hs_open(confirm, sizeof(confirm), hs->h, k);
	if (ret)
		goto out;
	pool_mix_hash(hs->h, payload + 32, POOL_TAG_LEN);
	pool_transport_derive(out, hs->ck, hs->h, true);
out:
	/* The handshake is over either way: wipe what could rebuild keys. */
	memzero_explicit(hs->e_secret, sizeof(hs->e_secret));
	memzero_explicit(hs->ck, sizeof(hs->ck));
	memzero_explicit(hs->h, sizeof(hs->h));
	memzero_explicit(k, sizeof(k));
	return ret;
}

/* ---- responder --------------------------------------------------------- */

void pool_cookie_init(struct pool_cookie *c)
{
	spin_lock_init(&c->lock);
	get_random_bytes(c->secret, sizeof(c->secret));
	c->rotated_at = ktime_get_boottime_seconds();
}

void pool_spent_init(struct pool_spent *sp)
{
	spin_lock_init(&sp->lock);
	sp->next = 0;
	memset(sp->tag, 0, sizeof(sp->tag));
}

bool pool_spent_mark(struct pool_spent *sp, const u8 seed[32])
{
	/* the seed is an HMAC under a secret: its first 8 bytes are tag enough */
	u64 tag = get_unaligned_le64(seed) | 1;
	bool fresh = true;
	u32 i;

	spin_lock_bh(&sp->lock);
	for (i = 0; i < POOL_SPENT_MAX; i++) {
		if (sp->tag[i] == tag) {
			fresh = false;
			break;
		}
	}
	if (fresh) {
		sp->tag[sp->next] = tag;
		sp->next = (sp->next + 1) % POOL_SPENT_MAX;
	}
	spin_unlock_bh(&sp->lock);
	return fresh;
}

/*
 * Rotation is aligned to whole periods from the first secret, so a secret
 * is current for one period and previous for exactly one more.
 */
static void pool_cookie_rotate(struct pool_cookie *c)
{
	u64 periods = div_u64(ktime_get_boottime_seconds() - c->rotated_at,
			      POOL_COOKIE_ROTATE_S);

	if (!periods)
		return;
	if (periods == 1)
		memcpy(c->secret[1], c->secret[0], sizeof(c->secret[1]));
	else
		get_random_bytes(c->secret[1], sizeof(c->secret[1]));
	get_random_bytes(c->secret[0], sizeof(c->secret[0]));
	c->rotated_at += periods * POOL_COOKIE_ROTATE_S;
}

void pool_cookie_seed_secret(const u8 secret[32], const u8 ip[16], u16 port,
			     const u8 iid[POOL_ID_LEN], const u8 e_i[32],
			     u64 ts, u8 seed[32])
{
	struct pool_hmac_ctx ctx;
	u8 be[8];

	pool_hmac_init(&ctx, secret, 32);
	pool_hmac_update(&ctx, pool_label_puzzle, sizeof(pool_label_puzzle) - 1);
	pool_hmac_update(&ctx, ip, 16);
	put_unaligned_be16(port, be);
	pool_hmac_update(&ctx, be, 2);
	pool_hmac_update(&ctx, iid, POOL_ID_LEN);
	pool_hmac_update(&ctx, e_i, 32);
	put_unaligned_be64(ts, be);
	pool_hmac_update(&ctx, be, 8);
	pool_hmac_final(&ctx, seed);
}

void pool_cookie_seed(struct pool_cookie *c, int which, const u8 ip[16],
		      u16 port, const u8 iid[POOL_ID_LEN], const u8 e_i[32],
		      u64 ts, u8 seed[32])
{
	u8 secret[32];

	spin_lock_bh(&c->lock);
	pool_cookie_rotate(c);
	memcpy(secret, c->secret[which ? 1 : 0], sizeof(secret));
	spin_unlock_bh(&c->lock);

	pool_cookie_seed_secret(secret, ip, port, iid, e_i, ts, seed);
	memzero_explicit(secret, sizeof(secret));
}

void pool_hs_init_parse(const u8 payload[POOL_INIT_LEN], u8 e_i[32], u64 *ts)
{
	memcpy(e_i, payload, 32);
	*ts = get_unaligned_be64(payload + 32);
}

void pool_hs_challenge_create(const u8 seed[32], u8 difficulty,
			      u8 payload[POOL_CHALLENGE_LEN])
{
	memcpy(payload, seed, 32);
	payload[32] = difficulty;
	memset(payload + 33, 0, POOL_CHALLENGE_LEN - 33);
}

void pool_hs_response_peek(const u8 payload[POOL_RESPONSE_LEN], u8 e_i[32],
			   u64 *ts, u64 *solution)
{
	memcpy(e_i, payload, 32);
	*ts = get_unaligned_be64(payload + 32);
	*solution = get_unaligned_be64(payload + 40);
}

int pool_hs_response_consume_trust(const struct pool_static *self,
				   const u8 iid[POOL_ID_LEN],
				   const u8 payload[POOL_RESPONSE_LEN],
				   pool_trust_fn trusted, void *arg,
				   struct pool_hs_responder *out)
{
	const u8 *e_i = payload, *clear = payload + 32;
	u8 buf[48], k[32];
	bool untrusted;
	int ret;

	pool_hs_start(out->ck, out->h, self->public, e_i);

	ret = -EBADMSG;
	if (!pool_mix_dh(out->ck, k, self->secret, e_i))		/* es */
		goto err;
	memcpy(buf, payload + 48, 48);
	ret = pool_hs_open(buf, 48, out->h, k);
	if (ret)
		goto err;
	memcpy(out->peer_static, buf, 32);
	pool_mix_hash(out->h, payload + 48, 48);

	/*
	 * A stranger costs the same DH and AEAD as a trusted peer, and only
	 * then is refused: the response time must not tell which keys are
	 * trusted (docs/protocol.md, RESPONSE step 4).
	 */
	untrusted = trusted && !trusted(out->peer_static, arg);

	ret = untrusted ? -ENOKEY : -EBADMSG;
	if (!pool_mix_dh(out->ck, k, self->secret, out->peer_static))	/* ss */
		goto err;
	memcpy(buf, payload + 96, 32);
	ret = pool_hs_open(buf, 32, out->h, k);
	if (untrusted)
		ret = -ENOKEY;
	if (ret)
		goto err;
	if (crypto_memneq(buf, clear, 16)) {
		ret = -EBADMSG;
		goto err;
	}
	pool_mix_hash(out->h, payload + 96, 32);

	memcpy(out->e_peer, e_i, 32);
	memcpy(out->iid, iid, POOL_ID_LEN);
	out->ts = get_unaligned_be64(clear);
	memzero_explicit(k, sizeof(k));
	memzero_explicit(buf, sizeof(buf));
	return 0;

err:
	memzero_explicit(k, sizeof(k));
	memzero_explicit(buf, sizeof(buf));
	memzero_explicit(out->ck, sizeof(out->ck));
	memzero_explicit(out->h, sizeof(out->h));
	return ret;
}

int pool_hs_ack_create_kat(struct pool_hs_responder *st, const u8 e_secret[32],
			   const u8 rid[POOL_ID_LEN], u8 payload[POOL_ACK_LEN],
			   struct pool_keys *out)
{
	u8 *e_r = payload, *confirm = payload + 32;
	u8 k[32];
	int ret = -EINVAL;

	if (!pool_x25519_public(e_r, e_secret))
		goto out;
	pool_mix_ack_hash(st->h, st->iid, rid, e_r);
	if (!pool_mix_dh(st->ck, k, e_secret, st->e_peer) ||		/* ee */
	    !pool_mix_dh(st->ck, k, e_secret, st->peer_static))	/* se */
		goto out;
	pool_hs_seal(confirm, 0, st->h, k);
	pool_mix_hash(st->h, confirm, POOL_TAG_LEN);
	ret = 0;
	pool_transport_derive(out, st->ck, st->h, false);
out:
	if (ret) {
		/*
		 * Fail safe for a caller that sends the ACK anyway: the
		 * initiator refuses a random confirm, and random keys
		 * authenticate nothing.
		 */
		get_random_bytes(payload, POOL_ACK_LEN);
		get_random_bytes(out, sizeof(*out));
	}
	memzero_explicit(st->ck, sizeof(st->ck));
	memzero_explicit(st->h, sizeof(st->h));
	memzero_explicit(k, sizeof(k));
	return ret;
}

int pool_hs_ack_create(struct pool_hs_responder *st, const u8 rid[POOL_ID_LEN],
		       u8 payload[POOL_ACK_LEN], struct pool_keys *out)
{
	u8 e_secret[32];
	int ret;

	curve25519_generate_secret(e_secret);
	ret = pool_hs_ack_create_kat(st, e_secret, rid, payload, out);
	memzero_explicit(e_secret, sizeof(e_secret));
	return ret;
}
