// SPDX-License-Identifier: GPL-2.0-only
/*
 * responder.c - the responder side of the handshake on a half-open connection:
 * INIT answered statelessly with a CHALLENGE, RESPONSE checked in the order of
 * docs/protocol.md, the session created and queued for ACCEPT.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/slab.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/inet.h>
#include <linux/random.h>
#include <linux/sched/signal.h>
#include <linux/ktime.h>
#include <net/sock.h>
#include <net/tcp.h>
#include <net/ipv6.h>
#include <crypto/algapi.h>

#include "pool.h"
#include "sock.h"

static void pool_hconn_fail(struct pool_hconn *hc, enum pool_stat stat,
			    u16 code, u16 wire_code, const u8 *peer,
			    const u8 mk[32], const char *what)
{
	u8 pkt[POOL_HDR_LEN + POOL_HS_CLOSE_LEN];
	__be16 c = cpu_to_be16(wire_code);
	u8 sid[16] = {};

	pool_fail_unauth(stat, code, peer, what);
	pool_stat_inc(POOL_STAT_HANDSHAKES_FAILED);
	if (peer)
		pool_peer_note(peer, false);
	if (wire_code && mk) {
		memcpy(sid, hc->hdr.session_id, POOL_ID_LEN);
		pool_hs_packet(pkt, POOL_PKT_CLOSE, sid, ktime_get_real_ns(),
			       (u8 *)&c, sizeof(c), mk);
		pool_sock_send_nb(hc->sock, pkt, sizeof(pkt));
	}
}

static bool pool_ts_fresh(u64 ts)
{
	return pool_abs_diff(ts, ktime_get_real_ns()) <= POOL_CLOCK_SKEW_NS;
}

/* INIT: answer with a CHALLENGE, statelessly. false: drop the connection. */
static bool pool_hconn_init(struct pool_hconn *hc, const struct pool_static *self)
{
	const u8 *payload = hc->buf + POOL_HDR_LEN;
	u8 pkt[POOL_HDR_LEN + POOL_CHALLENGE_LEN];
	u8 e_i[32], seed[32], ch[POOL_CHALLENGE_LEN], sid[16] = {};
	u64 ts;

	pool_stat_inc(POOL_STAT_INIT_RECEIVED);
	pool_hs_init_parse(payload, e_i, &ts);
	if (ts != hc->hdr.timestamp) {
		pool_hconn_fail(hc, POOL_STAT_MALFORMED, POOL_ERR_MALFORMED, 0,
				NULL, NULL, "INIT: timestamps differ");
		return false;
	}
	if (!pool_ts_fresh(ts)) {
		pool_hconn_fail(hc, POOL_STAT_STALE_TIMESTAMP,
				POOL_ERR_STALE_TIMESTAMP, 0, NULL, NULL,
				"INIT: stale timestamp");
		return false;
	}
	pool_cookie_seed(&pool_node.cookie, 0, hc->ip, hc->port,
			 hc->hdr.session_id, e_i, ts, seed);
	pool_hs_challenge_create(seed, READ_ONCE(pool_node.params.puzzle_difficulty), ch);
	memcpy(sid, hc->hdr.session_id, POOL_ID_LEN);
	pool_hs_packet(pkt, POOL_PKT_CHALLENGE, sid, ktime_get_real_ns(), ch,
		       sizeof(ch), self->mac_key);
	if (pool_sock_send_nb(hc->sock, pkt, sizeof(pkt)))
		return false;
	pool_stat_inc(POOL_STAT_CHALLENGE_SENT);
	return true;
}

/* pool_trust_fn for the responder: asked once enc_static is decrypted. */
static bool pool_hconn_trusted(const u8 peer_static[32], void *arg)
{
	return pool_peer_trusted(peer_static);
}

/* RESPONSE: the checks of docs/protocol.md section 3, in order. */
static void pool_hconn_response(struct pool_hconn *hc,
				const struct pool_static *self)
{
	const u8 *payload = hc->buf + POOL_HDR_LEN;
	u8 pkt[POOL_HDR_LEN + POOL_ACK_LEN], ack[POOL_ACK_LEN];
	u8 e_i[32], seed[32], rid[POOL_ID_LEN], sid[16];
	const u8 *iid = hc->hdr.session_id;
	struct pool_hs_responder st;
	struct pool_session *s;
	struct pool_keys keys;
	u8 diff = READ_ONCE(pool_node.params.puzzle_difficulty);
	u64 ts, solution;
	bool ok;
	int ret;

	pool_stat_inc(POOL_STAT_RESPONSE_RECEIVED);
	pool_hs_response_peek(payload, e_i, &ts, &solution);
	/* 1. timestamp */
	if (!pool_ts_fresh(ts)) {
		pool_hconn_fail(hc, POOL_STAT_STALE_TIMESTAMP,
				POOL_ERR_STALE_TIMESTAMP, 0, NULL, NULL,
				"RESPONSE: stale timestamp");
		return;
	}
	/* 2. puzzle, current then previous cookie secret */
	pool_cookie_seed(&pool_node.cookie, 0, hc->ip, hc->port, iid, e_i, ts,
			 seed);
	ok = pool_puzzle_ok(seed, solution, diff);
	if (!ok) {
		pool_cookie_seed(&pool_node.cookie, 1, hc->ip, hc->port, iid,
				 e_i, ts, seed);
		ok = pool_puzzle_ok(seed, solution, diff);
	}
	if (!ok) {
		pool_hconn_fail(hc, POOL_STAT_BAD_PUZZLE, POOL_ERR_BAD_PUZZLE,
				0, NULL, NULL, "RESPONSE: bad puzzle solution");
		return;
	}
	/* 3. a puzzle answered once: a replayed RESPONSE costs no DH */
	if (!pool_spent_mark(&pool_node.spent, seed)) {
		pool_hconn_fail(hc, POOL_STAT_REPLAYED_INIT, POOL_ERR_REPLAY,
				0, NULL, NULL, "RESPONSE: puzzle already answered (replay)");
		return;
	}
	/*
	 * 4. enc_static (first DH here), the trust store, then the proof: a
	 * stranger is UNKNOWN_PEER whatever its proof says. Both get the same
	 * CLOSE (AUTH_FAIL) so a stranger does not learn which keys are trusted.
	 */
	ret = pool_hs_response_consume_trust(self, iid, payload,
					     pool_hconn_trusted, NULL, &st);
	if (ret == -ENOKEY) {
		pool_hconn_fail(hc, POOL_STAT_UNKNOWN_PEER,
				POOL_ERR_UNKNOWN_PEER, POOL_ERR_AUTH_FAIL,
				st.peer_static, self->mac_key,
				"RESPONSE: peer not in the trust store");
		goto wipe;
	}
	if (ret) {
		pool_hconn_fail(hc, POOL_STAT_AUTH_FAIL, POOL_ERR_AUTH_FAIL,
				POOL_ERR_AUTH_FAIL, NULL, self->mac_key,
				"RESPONSE: authentication failed");
		goto wipe;
	}
	/* 5. replay guard for what step 3 has forgotten */
	if (pool_peer_check_replay(st.peer_static, st.ts)) {
		pool_hconn_fail(hc, POOL_STAT_REPLAYED_INIT, POOL_ERR_REPLAY,
				0, st.peer_static, NULL,
				"RESPONSE: replayed INIT timestamp");
		goto wipe;
	}
	/* 6. room */
	if (atomic_read(&pool_node.nr_active) >=
	    READ_ONCE(pool_node.params.max_sessions)) {
		pool_hconn_fail(hc, POOL_STAT_OVERLOAD, POOL_ERR_OVERLOAD,
				POOL_ERR_OVERLOAD, st.peer_static,
				self->mac_key, "RESPONSE: no room for a session");
		goto wipe;
	}

	get_random_bytes(rid, sizeof(rid));
	ret = pool_hs_ack_create(&st, rid, ack, &keys);
	if (ret) {
		pool_hconn_fail(hc, POOL_STAT_OVERLOAD, POOL_ERR_OVERLOAD,
				POOL_ERR_OVERLOAD, st.peer_static, self->mac_key,
				"RESPONSE: no memory to answer");
		goto wipe;
	}
	memcpy(sid, iid, POOL_ID_LEN);
	memcpy(sid + POOL_ID_LEN, rid, POOL_ID_LEN);
	pool_hs_packet(pkt, POOL_PKT_ACK, sid, ktime_get_real_ns(), ack,
		       sizeof(ack), self->mac_key);

	pool_hconn_uninstall(hc);
	s = pool_session_create(hc->sock, POOL_ROLE_RESPONDER, &keys, iid, rid,
				st.peer_static, pkt, sizeof(pkt));
	if (IS_ERR(s)) {
		pool_hconn_fail(hc, POOL_STAT_OVERLOAD, POOL_ERR_OVERLOAD,
				PTR_ERR(s) == -EBUSY ? POOL_ERR_OVERLOAD : 0,
				st.peer_static, self->mac_key,
				"RESPONSE: session allocation failed");
		goto wipe;
	}
	hc->sock = NULL;	/* the session owns it now */
	pool_session_enqueue_accept(s);
wipe:
	memzero_explicit(&st, sizeof(st));
	memzero_explicit(&keys, sizeof(keys));
}

void pool_hconn_work(struct work_struct *w)
{
	struct pool_hconn *hc = container_of(w, struct pool_hconn, work);
	struct pool_static self;
	bool have, done = false;
	u32 want;
	int ret;

	mutex_lock(&hc->mutex);
	/*
	 * Once the handshake has ended, hc->hdr may hold a rejected header
	 * (payload_len up to 65535): reading on would overrun hc->buf.
	 */
	if (hc->dead || hc->finished || !hc->sock)
		goto out;
	for (;;) {
		want = hc->have < POOL_HDR_LEN ? POOL_HDR_LEN - hc->have :
		       POOL_HDR_LEN + hc->hdr.payload_len - hc->have;
		if (WARN_ON_ONCE(want > sizeof(hc->buf) - hc->have)) {
			done = true;
			break;
		}
		ret = pool_sock_read(hc->sock, hc->buf + hc->have, want);
		if (ret == -EAGAIN)
			break;
		if (ret <= 0) {
			done = true;	/* closed by the peer */
			break;
		}
		hc->have += ret;
		WRITE_ONCE(hc->spoke, true);
		if (hc->have == POOL_HDR_LEN) {
			if (pool_hdr_decode(&hc->hdr, hc->buf) ||
			    (hc->hdr.type != POOL_PKT_INIT &&
			     hc->hdr.type != POOL_PKT_RESPONSE) ||
			    !pool_hs_hdr_plain(&hc->hdr) ||
			    hc->hdr.payload_len !=
			    (hc->hdr.type == POOL_PKT_INIT ? POOL_INIT_LEN :
							     POOL_RESPONSE_LEN) ||
			    ++hc->packets > POOL_HCONN_MAX_PACKETS) {
				pool_hconn_fail(hc, POOL_STAT_MALFORMED,
						POOL_ERR_MALFORMED, 0, NULL,
						NULL, "handshake: bad framing");
				done = true;
				break;
			}
		}
		if (hc->have < POOL_HDR_LEN ||
		    hc->have < POOL_HDR_LEN + hc->hdr.payload_len)
			continue;

		hc->have = 0;
		pool_node_self(&self, &have);
		if (!have) {
			done = true;
			break;
		}
		if (!pool_hs_mac_ok(hc->buf, hc->buf + POOL_HDR_LEN,
				    hc->hdr.payload_len, self.mac_key)) {
			pool_hconn_fail(hc, POOL_STAT_BAD_HMAC,
					POOL_ERR_AUTH_FAIL, 0, NULL, NULL,
					"handshake: bad header hmac");
			done = true;
		} else if (hc->hdr.type == POOL_PKT_INIT) {
			done = !pool_hconn_init(hc, &self);
		} else {
			pool_hconn_response(hc, &self);
			done = true;
		}
		memzero_explicit(&self, sizeof(self));
		if (done)
			break;
	}
	if (done) {
		hc->finished = true;
		/* no more work for this connection: its reap does the rest */
		if (hc->sock)
			pool_hconn_uninstall(hc);
		pool_hconn_reap_now(hc);
	}
out:
	mutex_unlock(&hc->mutex);
}
