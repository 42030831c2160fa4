/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * handshake.h - the POOL/1 handshake (docs/protocol.md section 3) as pure
 * functions over byte buffers: no sockets, no sessions, no allocation.
 * responder.c and initiator.c drive them.
 */
#ifndef _POOL_HANDSHAKE_H
#define _POOL_HANDSHAKE_H

#include <linux/types.h>
#include <linux/spinlock.h>
#include "wire.h"

#define POOL_ID_LEN		8	/* iid / rid */
#define POOL_CLOCK_SKEW_NS	(30ULL * NSEC_PER_SEC)
/*
 * 2^20 tries on average: about 1 s at the 1.2 M tries/s a server core
 * manages, and inside the 10 s handshake budget with probability 1 - e^-11.
 * Above it a difficulty stops being a cost and becomes a refusal.
 */
#define POOL_MAX_DIFFICULTY	20
#define POOL_COOKIE_ROTATE_S	120

/* The node's static identity, as the handshake needs it. */
struct pool_static {
	u8	secret[32];
	u8	public[32];
	u8	mac_key[32];	/* mk for packets addressed to us: HASH("POOL/1 mac" || S) */
};

/* Transport keys of one epoch, already oriented: send/recv for this side. */
struct pool_keys {
	u8	send_key[32];
	u8	send_mac[32];
	u8	recv_key[32];
	u8	recv_mac[32];
	u64	send_seq0;	/* first packet sent uses send_seq0 + 1 */
	u64	recv_seq0;
	u8	rk[32];		/* rekey chaining key */
};

/* Initiator state, from INIT until the ACK is consumed. */
struct pool_hs_initiator {
	u8	e_secret[32];
	u8	e_public[32];
	u8	iid[POOL_ID_LEN];
	u64	ts;
	u8	peer_static[32];
	u8	mac_key[32];	/* mk of the responder */
	u8	ck[32];
	u8	h[32];
};

/* What a responder derives from a valid RESPONSE; on its stack, then wiped. */
struct pool_hs_responder {
	u8	peer_static[32];
	u8	e_peer[32];	/* E_i */
	u8	iid[POOL_ID_LEN];
	u64	ts;
	u8	ck[32];
	u8	h[32];
};

/* mk for any static public key. */
void pool_hs_mac_key(u8 out[32], const u8 static_public[32]);
/* HMAC of a packet: header with MAC field zeroed, then payload. */
void pool_packet_mac(u8 out[32], const u8 key[32], const u8 hdr[POOL_HDR_LEN],
		     const u8 *payload, size_t len);

/* Initiator */
void pool_hs_init_create(struct pool_hs_initiator *hs, const u8 peer_static[32],
			 u64 now_ns, u8 payload[POOL_INIT_LEN]);
/* Solves the puzzle; -EINVAL if difficulty > POOL_MAX_DIFFICULTY, -EINTR on a signal. */
int pool_hs_solve(const u8 seed[32], u8 difficulty, u64 *solution);
/* The same, giving up with -ETIMEDOUT at deadline_ns (ktime_get_ns(); 0: never). */
int pool_hs_solve_until(const u8 seed[32], u8 difficulty, u64 deadline_ns,
			u64 *solution);
int pool_hs_response_create(struct pool_hs_initiator *hs, const struct pool_static *self,
			    u64 solution, u8 payload[POOL_RESPONSE_LEN]);
/*
 * -EBADMSG if the confirm tag fails. Wipes hs->e_secret, ck and h whatever
 * the outcome; iid, ts, peer_static and mac_key stay. rid is the ACK
 * header's: it is bound into h with iid, so a rewritten one fails the tag.
 */
int pool_hs_ack_consume(struct pool_hs_initiator *hs, const struct pool_static *self,
			const u8 payload[POOL_ACK_LEN], const u8 rid[POOL_ID_LEN],
			struct pool_keys *out);

/* Responder: cookie secret, rotated lazily on use every POOL_COOKIE_ROTATE_S. */
struct pool_cookie {
	spinlock_t	lock;
	u8		secret[2][32];	/* [0] current, [1] previous */
	u64		rotated_at;	/* ktime_get_boottime_seconds() */
};
void pool_cookie_init(struct pool_cookie *c);

/*
 * The puzzle seeds of the last POOL_SPENT_MAX RESPONSEs that passed the
 * puzzle check: a seed answered before is a replay, refused before any DH
 * (docs/protocol.md, RESPONSE step 3). Legitimate seeds never repeat (iid
 * and E_i are fresh); one forgotten here is still caught by the per-peer
 * timestamp guard, only later.
 */
#define POOL_SPENT_MAX	4096
struct pool_spent {
	spinlock_t	lock;
	u32		next;
	u64		tag[POOL_SPENT_MAX];	/* 0: empty */
};
void pool_spent_init(struct pool_spent *sp);
/* Records the seed; false if it was already there. */
bool pool_spent_mark(struct pool_spent *sp, const u8 seed[32]);
/* which: 0 current, 1 previous */
void pool_cookie_seed(struct pool_cookie *c, int which, const u8 ip[16], u16 port,
		      const u8 iid[POOL_ID_LEN], const u8 e_i[32], u64 ts, u8 seed[32]);
bool pool_puzzle_ok(const u8 seed[32], u64 solution, u8 difficulty);

/* Parses INIT (checks nothing but sizes). */
void pool_hs_init_parse(const u8 payload[POOL_INIT_LEN], u8 e_i[32], u64 *ts);
void pool_hs_challenge_create(const u8 seed[32], u8 difficulty, u8 payload[POOL_CHALLENGE_LEN]);
int pool_hs_challenge_parse(const u8 payload[POOL_CHALLENGE_LEN], u8 seed[32], u8 *difficulty);
/* Clear fields of a RESPONSE, for the cheap checks before any DH. */
void pool_hs_response_peek(const u8 payload[POOL_RESPONSE_LEN], u8 e_i[32], u64 *ts, u64 *solution);
/*
 * The DH part of RESPONSE checking, in the order of docs/protocol.md
 * section 3 step 3: decrypts enc_static (-EBADMSG, AUTH_FAIL, if its tag
 * fails), then asks trusted(S_i, arg) (in the caller's context) before the
 * ss DH: -ENOKEY (UNKNOWN_PEER) if it says no, with out->peer_static set;
 * then decrypts enc_proof and checks it repeats ts/solution (-EBADMSG).
 * trusted may be NULL (every key trusted). The caller then checks the replay
 * guard.
 */
typedef bool (*pool_trust_fn)(const u8 peer_static[32], void *arg);
int pool_hs_response_consume_trust(const struct pool_static *self,
				   const u8 iid[POOL_ID_LEN],
				   const u8 payload[POOL_RESPONSE_LEN],
				   pool_trust_fn trusted, void *arg,
				   struct pool_hs_responder *out);
/*
 * The ACK payload for responder id rid (the header's, bound into h) and the
 * keys. 0, or -EINVAL if a DH result is zero: then payload and out are
 * random (useless to anyone, never uninitialised); the caller should drop
 * the connection. Wipes st->ck/h.
 */
int pool_hs_ack_create(struct pool_hs_responder *st, const u8 rid[POOL_ID_LEN],
		       u8 payload[POOL_ACK_LEN], struct pool_keys *out);

/*
 * Rekey: new keys for epoch n+1 from rk and the ephemeral DH (section 5).
 * send_seq0/recv_seq0 are set to 0: sequences continue across rekeys.
 */
void pool_rekey_derive(const u8 rk[32], const u8 dh[32], bool initiator,
		       struct pool_keys *out);

#endif
