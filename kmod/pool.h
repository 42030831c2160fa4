/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * pool.h - internal types of pool.ko: the node, its sessions, half-open
 * handshakes and the trust store.
 *
 * Ownership (each file documents its own teardown order at its top):
 *   main.c     the node (static), the workqueue, module init/exit order
 *   peer.c     trust store entries (struct pool_peer_entry)
 *   session.c  struct pool_session: kref, creation, teardown, accept queue
 *   sessfd.c   a session's descriptors: send path and tx ring, rx queue, file ops
 *   sock.c, receive.c, send.c, listener.c, responder.c, initiator.c
 *              the sockets: shared helpers, a session's receive and send
 *              work, the listener and its half-open connections (struct
 *              pool_hconn, sock.h), the responder and initiator handshakes
 *   timers.c   heartbeat and rekey work of a session (no allocation)
 *   journal.c  the journal ring
 *   config.c   configuration versions and the rollback timer
 */
#ifndef _POOL_INTERNAL_H
#define _POOL_INTERNAL_H

#include <linux/types.h>
#include <linux/kref.h>
#include <linux/idr.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <linux/atomic.h>
#include <linux/net.h>

#include "uapi/pool.h"
#include "crypto.h"
#include "wire.h"
#include "handshake.h"
#include "ring.h"

/* The ABI's sizes and the wire helpers' (wire.c, checked by the self-test). */
static_assert(POOL_ADDR_LEN == POOL_ADDR_BYTES);
static_assert(POOL_HASH_LEN == POOL_HASH_BYTES);

#ifndef POOL_VERSION
#define POOL_VERSION "0.0.0"
#endif

/*
 * Half-open connections (responder side, handshake not done): at most
 * POOL_HALFOPEN_MAX, of which POOL_HALFOPEN_RESERVED only for connections
 * from a trusted peer's endpoint address; at most POOL_HALFOPEN_PER_ADDR
 * from one address and POOL_HALFOPEN_PER_PREFIX from one /24 (IPv4) or /64
 * (IPv6). One that sends nothing goes after POOL_HALFOPEN_FIRST_BYTE, any
 * other after POOL_HALFOPEN_TIMEOUT.
 */
#define POOL_HALFOPEN_MAX	128
#define POOL_HALFOPEN_RESERVED	32
#define POOL_HALFOPEN_PER_ADDR	8
#define POOL_HALFOPEN_PER_PREFIX 32
#define POOL_HALFOPEN_FIRST_BYTE (2 * HZ)
#define POOL_HALFOPEN_TIMEOUT	(10 * HZ)
#define POOL_CONNECT_TIMEOUT_MS	10000
/*
 * Flow control (flow.c): a DATA of n bytes costs n + POOL_FLOW_MSG_COST of
 * the receiver's window, which is POOL_FLOW_INITIAL_WINDOW until a process
 * holds the session (ACCEPT, ATTACH, CONNECT) and POOL_FLOW_WINDOW after.
 * The window bounds the receive queue; a peer may advertise up to
 * POOL_FLOW_MAX_WINDOW.
 */
#define POOL_FLOW_MSG_COST	256
#define POOL_FLOW_INITIAL_WINDOW (256U << 10)
#define POOL_FLOW_WINDOW	(4U << 20)
#define POOL_FLOW_MAX_WINDOW	(1U << 30)
/*
 * Keys: a rekey in flight must complete within POOL_REKEY_TIMEOUT of the
 * peer acknowledging our REKEY; keys are
 * never used to send past rekey_seconds + POOL_REJECT_AFTER_EXTRA_S or
 * rekey_packets + POOL_REJECT_AFTER_EXTRA_PACKETS, the larger tunables of
 * install time and now (the session closes with KEY_EXPIRED).
 */
#define POOL_REKEY_TIMEOUT	(15 * HZ)
#define POOL_REJECT_AFTER_EXTRA_S	60
#define POOL_REJECT_AFTER_EXTRA_PACKETS	(1ULL << 20)
#define POOL_CLOSE_LINGER	(2 * HZ)
#define POOL_RX_STALL		(5 * HZ)	/* a packet begun must be whole by then */
#define POOL_JOURNAL_SIZE	4096

/* Run-time tunables: module parameters at load, configuration versions later. */
struct pool_params {
	u32	heartbeat_seconds;
	u32	rekey_seconds;
	u64	rekey_packets;
	u32	puzzle_difficulty;
	u32	max_sessions;
};

/*
 * Socket callbacks: the ones sock.c installs (NULL: left alone) and the
 * originals they replaced, restored from the same structure.
 */
struct pool_sk_cbs {
	void	(*data_ready)(struct sock *sk);
	void	(*state_change)(struct sock *sk);
	void	(*write_space)(struct sock *sk);
};

/* One trusted peer (peer.c). `info` uses the UAPI layout; out fields kept live. */
struct pool_peer_entry {
	struct list_head	list;
	struct pool_peer	info;
};

/* The node: one static instance, pool_node (main.c). */
struct pool_node {
	struct mutex		lock;		/* identity, listener, config, peers writers */

	spinlock_t		id_lock;	/* self, address: copied out under it */
	bool			have_identity;
	struct pool_static	self;
	u64			org_id, segment_id;
	u8			address[POOL_ADDR_LEN];

	spinlock_t		peers_lock;
	struct list_head	peers;
	u32			nr_peers;

	struct pool_params	params;		/* READ_ONCE fields */
	u32			config_version;

	spinlock_t		sessions_lock;	/* idr, accept queue */
	struct idr		sessions;
	struct list_head	accept_queue;
	u32			accept_len;
	wait_queue_head_t	accept_wait;
	atomic_t		nr_active;	/* sessions not yet torn down */

	spinlock_t		hconn_lock;
	struct list_head	hconns;
	u32			nr_hconns;

	struct socket		*listen_sock;
	u16			listen_port;
	struct work_struct	accept_work;
	struct pool_sk_cbs	listen_orig;

	struct pool_cookie	cookie;
	struct pool_spent	spent;		/* puzzle seeds answered */
	atomic64_t		stats[__POOL_STAT_COUNT];
	struct workqueue_struct	*wq;
	u64			load_ns;	/* ktime_get_boottime_ns() */
	bool			stopping;
};

extern struct pool_node pool_node;

static inline void pool_stat_inc(enum pool_stat s)
{
	atomic64_inc(&pool_node.stats[s]);
}

static inline void pool_stat_add(enum pool_stat s, u64 v)
{
	atomic64_add(v, &pool_node.stats[s]);
}

/* Keys of one direction and epoch, ready for the hot path. */
struct pool_dir {
	struct pool_aead	aead;
	struct pool_hmac_ctx	hmac;		/* after the key, before any data */
	u8			nonce_prefix[4];
};

struct pool_rxmsg {
	struct list_head	list;
	u32			len;
	u16			channel;
	u8			*data;		/* kmalloc'ed, len bytes (NULL if 0) */
};

enum pool_rekey_state {
	POOL_RK_IDLE,
	POOL_RK_INIT_SENT,	/* we sent INIT, wait for REPLY */
	POOL_RK_AWAIT_SWITCH,	/* we sent REPLY, tx on new keys, rx on old */
};

struct pool_session {
	struct kref		ref;
	u32			index;
	struct list_head	accept_entry;	/* in pool_node.accept_queue */
	bool			queued;		/* in the accept queue */

	u8			role;
	u8			state;		/* enum pool_session_state, under lock */
	bool			closing;	/* teardown queued */
	bool			peer_closed;	/* CLOSE received or connection lost */
	u16			close_code;
	bool			close_send;

	spinlock_t		lock;		/* state, rx queue, counters below */
	wait_queue_head_t	wait;		/* readers, writers, poll */
	atomic_t		fds;
	u16			channel;

	u8			session_id[POOL_SESSION_ID_LEN];
	u8			own_id[POOL_ID_LEN], peer_id[POOL_ID_LEN];
	u8			peer_key[POOL_KEY_LEN];
	u8			peer_ip[16];
	u16			peer_port, local_port;
	u64			established_ns;		/* CLOCK_REALTIME */
	u64			established_boot;	/* boottime */

	struct socket		*sock;		/* owned; NULL after teardown */
	struct pool_sk_cbs	orig;

	/* receive side: rx_work only */
	struct work_struct	rx_work;
	u8			rx_hdr_raw[POOL_HDR_LEN];
	struct pool_hdr		rx_hdr;
	u32			rx_have;	/* bytes of the current packet */
	u8			*rx_buf;	/* reused for non-DATA payloads */
	struct pool_dir		rx, rx_next;
	bool			rx_next_valid;
	u64			rx_top;		/* last sequence accepted: the next is + 1 */
	unsigned long		rx_progress;	/* jiffies of the current packet's first byte */
	struct delayed_work	stall_work;	/* a packet that stops half way */

	/* receive queue, under lock */
	struct list_head	rxq;
	u32			rxq_len, rxq_bytes;

	/* flow control (flow.c) */
	struct {
		u64		tx_sent, tx_limit;	/* tx_lock */
		u64		rx_recv, rx_consumed, rx_limit;	/* lock */
		u32		rx_window;		/* lock */
	} flow;
	struct delayed_work	window_work;
	/* send side */
	struct mutex		tx_lock;	/* keys, sequence, ring producer */
	struct pool_dir		tx;
	u64			tx_seq;		/* last sequence used */
	u64			tx_since_rekey;
	/* the send keys: installed at (boottime s), under these tunables */
	u64			tx_keys_boot_s;
	u64			tx_keys_rekey_seconds, tx_keys_rekey_packets;
	u8			*tx_buf;	/* payload scratch, 64 KiB, linear */
	u8			*ring;		/* bytes waiting for the socket */
	u32			ring_prod, ring_cons;	/* free running, ring_lock */
	spinlock_t		ring_lock;
	struct work_struct	tx_work;
	bool			tx_dead;	/* socket gone or broken */

	/* timers.c */
	struct delayed_work	hb_work;
	struct delayed_work	rekey_work;
	struct work_struct	close_work;
	unsigned long		last_rx;	/* jiffies of the last valid packet */
	u64			hb_seq, hb_ts;	/* last heartbeat sent */
	bool			hb_answered;
	u64			hb_lost, hb_count;
	u64			tp_last_bytes;
	u64			tp_last_boot;
	u64			last_rtt;

	/* rekey: rx_work and rekey_work, under tx_lock */
	u32			epoch;
	u8			rk[32];
	enum pool_rekey_state	rekey_state;
	u32			rekey_epoch;
	u8			rekey_secret[32];
	u8			rekey_public[32];
	u64			rekey_started;	/* boottime s of the current keys */
	unsigned long		rekey_deadline;	/* jiffies: the rekey in flight ends by then */
	u64			rekey_sent_seq;	/* sequence of our REKEY in flight */
	u64			peer_acked;	/* highest acknowledgment from the peer (rx_work) */

	/* counters (under lock or single writer) */
	u64			bytes_sent, bytes_recv;
	u64			packets_sent, packets_recv;
	u64			heartbeats_sent, heartbeats_recv;
	u64			dropped;
	struct pool_telemetry	tel_local, tel_peer;

	/* the peer's last CONFIG or ROLLBACK announcement, under lock */
	bool			peer_config_seen;
	bool			peer_config_tentative;
	u32			peer_config_version;
};

/* main.c */
extern ushort pool_param_port;
bool pool_valid_params(const struct pool_params *p);

/* device.c */
int pool_device_init(void);
void pool_device_exit(void);

/* peer.c */
int pool_peer_add(const struct pool_peer *in, struct pool_peer *out);
int pool_peer_del(const u8 key[POOL_KEY_LEN]);
bool pool_peer_trusted(const u8 key[POOL_KEY_LEN]);
bool pool_peer_is_endpoint(const u8 ip[16]);
int pool_peer_check_replay(const u8 key[POOL_KEY_LEN], u64 ts);
void pool_peer_note(const u8 key[POOL_KEY_LEN], bool handshake_ok);
int pool_peer_list(struct pool_peer *out, u32 cap, u32 *total);
int pool_peer_replace(const struct pool_peer *list, u32 n);
void pool_peer_flush(void);
bool pool_key_is_self(const u8 key[POOL_KEY_LEN]);
void pool_node_self(struct pool_static *out, bool *have);

/* A session descriptor reserved, its file made, not yet visible to the process. */
struct pool_fd {
	struct file	*file;
	int		fd;
};

/* session.c */
struct pool_session *pool_session_create(struct socket *sock, u8 role,
					 const struct pool_keys *keys,
					 const u8 iid[POOL_ID_LEN],
					 const u8 rid[POOL_ID_LEN],
					 const u8 peer_key[POOL_KEY_LEN],
					 const u8 *first, size_t first_len);
void pool_session_put(struct pool_session *s);
struct pool_session *pool_session_get_index(u32 index);
struct pool_session *pool_session_next(int *id);
void pool_session_close(struct pool_session *s, u16 code, bool send);
void pool_session_enqueue_accept(struct pool_session *s);
int pool_session_accept(struct pool_accept *a, struct pool_fd *pf);
void pool_close_all(u16 code);
void pool_close_peer(const u8 key[POOL_KEY_LEN]);
int pool_session_list(struct pool_session_info __user *out, u32 cap, u32 *count, u32 *total);
u32 pool_peer_active(const u8 key[POOL_KEY_LEN]);
int pool_dir_init(struct pool_dir *d, const u8 key[32], const u8 mac[32]);
void pool_dir_destroy(struct pool_dir *d);
void pool_sessions_exit(void);

/* sessfd.c */
int pool_session_fd_prepare(struct pool_session *s, u32 fd_flags, struct pool_fd *pf);
void pool_fd_publish(struct pool_fd *pf);
void pool_fd_discard(struct pool_fd *pf);
void pool_session_info(struct pool_session *s, struct pool_session_info *i);
int pool_send_ctrl(struct pool_session *s, u8 type, u16 flags,
		   const void *pt, size_t len, bool block);
int pool_send_locked(struct pool_session *s, u8 type, u16 flags, u8 channel,
		     const void *pt, size_t len);
bool pool_ring_room(struct pool_session *s, u32 len, bool ctrl);
bool pool_ring_empty(struct pool_session *s);

/* flow.c */
void pool_flow_init(struct pool_session *s);
bool pool_flow_tx_room(struct pool_session *s, u32 len);
bool pool_flow_tx_maybe_room(struct pool_session *s, u32 len);
void pool_flow_tx_sent(struct pool_session *s, u32 len);
int pool_flow_rx_window(struct pool_session *s, const u8 pt[POOL_WINDOW_PT_LEN]);
bool pool_flow_rx_data(struct pool_session *s, u32 len);
void pool_flow_consumed_locked(struct pool_session *s, u32 len);
void pool_flow_open(struct pool_session *s);
void pool_window_work(struct work_struct *w);
/* listener.c */
int pool_listen(u16 port);
void pool_listen_stop(void);
void pool_hconns_init(void);
void pool_hconns_exit(void);

/* initiator.c */
int pool_connect(struct pool_connect *c, struct pool_fd *pf);

/* sock.c */
void pool_sock_install(struct pool_session *s);
void pool_sock_uninstall(struct pool_session *s);
void pool_ip_from_sockaddr(const struct sockaddr_storage *ss, u8 ip[16], u16 *port);

/* receive.c */
void pool_rx_work(struct work_struct *w);
void pool_stall_work(struct work_struct *w);

/* send.c */
void pool_tx_work(struct work_struct *w);

/* timers.c */
void pool_timers_start(struct pool_session *s);
void pool_hb_work(struct work_struct *w);
void pool_rekey_work(struct work_struct *w);
void pool_rekey_start(struct pool_session *s);
void pool_tx_limits_reset(struct pool_session *s);
bool pool_tx_keys_expired(struct pool_session *s);
int pool_rekey_rx(struct pool_session *s, const u8 *pt, size_t len);
void pool_heartbeat_rx(struct pool_session *s, const struct pool_hdr *h, const u8 *pt);
void pool_ack_rx(struct pool_session *s, const u8 *pt);

/* journal.c */
int pool_journal_init(void);
void pool_journal_exit(void);
void pool_journal(u16 type, u16 code, const u8 *peer_key, const char *fmt, ...)
	__printf(4, 5);
int pool_journal_read(struct pool_journal_read *r);
int pool_journal_seed(const struct pool_journal_seed *s);
struct seq_file;
void pool_journal_show(struct seq_file *m);
u64 pool_journal_next(void);

/* A network failure: counted, journaled. */
void pool_fail(enum pool_stat stat, u16 code, const u8 *peer_key, const char *what);
/* pool_fail() for what anyone on the network can cause: journaled at most once a second per code. */
void pool_fail_unauth(enum pool_stat stat, u16 code, const u8 *peer_key, const char *what);
void pool_unauth_init(void);
void pool_unauth_exit(void);

/* procfs.c */
int pool_procfs_init(void);
void pool_procfs_exit(void);
void pool_fmt_addr(char *buf, size_t len, const u8 ip[16]);

/* config.c */
void pool_config_init(void);
void pool_config_exit(void);
int pool_config_get(struct pool_config *c);
int pool_config_apply(struct pool_config *c);
int pool_config_confirm(const struct pool_config_ref *r);
int pool_config_rollback(const struct pool_config_ref *r);
void pool_config_peer_rx(struct pool_session *s, u8 type, const u8 *pt);

/* selftest.c (crypto helper) */
int pool_selftest(void);

#endif
