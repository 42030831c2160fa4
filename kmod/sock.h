/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * sock.h - what the socket files share (sock.c, receive.c, send.c,
 * listener.c, responder.c, initiator.c).
 *
 * Socket callbacks (softirq) only queue work on pool_node.wq; everything
 * else runs in work items or in the calling process.
 *
 * Ownership and teardown:
 *   listener   created by pool_listen(), released by pool_listen_stop():
 *              callback restored, accept work cancelled, socket released.
 *   pool_hconn a responder connection until its handshake completes. It is
 *              allocated by the accept work and freed only by its reap work,
 *              which runs at the 10 s deadline or at once when the handshake
 *              ends (success hands the socket to a session first). Once the
 *              reap runs (hc->reaping, under hconn_lock) nobody queues it
 *              again, so it runs exactly once: reap
 *              marks it dead under its mutex, restores the callbacks,
 *              cancels the handshake work, releases the socket (if still
 *              owned), unlinks and frees. Module exit reaps them all after
 *              the listener has stopped.
 *   sessions   their sockets belong to session.c once created.
 */
#ifndef _POOL_SOCK_H
#define _POOL_SOCK_H

#include "pool.h"

struct pool_hconn {
	struct list_head	list;
	struct socket		*sock;
	struct work_struct	work;
	struct delayed_work	reap;
	struct mutex		mutex;
	bool			dead;
	bool			finished;	/* handshake ended, not timed out */
	bool			reaping;	/* reap running: never queue it again */
	bool			reap_asked;	/* brought forward: reap at once */
	bool			spoke;		/* a byte arrived: it gets the whole timeout */
	unsigned long		deadline;	/* jiffies: accepted + POOL_HALFOPEN_TIMEOUT */
	u8			ip[16];
	u16			port;
	u32			have;
	u32			packets;
	struct pool_hdr		hdr;
	u8			buf[POOL_HDR_LEN + POOL_RESPONSE_LEN];
	struct pool_sk_cbs	orig;
};

#define POOL_HCONN_MAX_PACKETS	8

static inline u64 pool_abs_diff(u64 a, u64 b)
{
	return a > b ? a - b : b - a;
}

/* sock.c */
int pool_sock_read(struct socket *sock, void *buf, size_t len);
int pool_sock_send_nb(struct socket *sock, const u8 *buf, size_t len);
void pool_sk_install(struct sock *sk, void *owner, const struct pool_sk_cbs *ours,
		     struct pool_sk_cbs *orig);
void pool_sk_restore(struct sock *sk, void *owner, const struct pool_sk_cbs *orig);
void pool_hs_packet(u8 *out, u8 type, const u8 sid[16], u64 ts, const u8 *payload, u16 len,
		    const u8 mk[32]);
bool pool_hs_mac_ok(const u8 *raw, const u8 *payload, u16 len, const u8 mk[32]);
bool pool_hs_hdr_plain(const struct pool_hdr *h);

/* listener.c */
void pool_hconn_uninstall(struct pool_hconn *hc);
void pool_hconn_reap_now(struct pool_hconn *hc);

/* responder.c */
void pool_hconn_work(struct work_struct *w);

#endif
