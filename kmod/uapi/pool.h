/* SPDX-License-Identifier: GPL-2.0-only WITH Linux-syscall-note */
/*
 * pool.h - the userspace ABI of pool.ko, the POOL/1 secure transport.
 *
 * This header is the single source of the ioctl ABI. The Python binding in
 * tools/ is checked against it by a test that compiles a C program printing
 * every size and offset. Rules that keep it stable:
 *   - fixed-width types only, natural alignment, explicit padding fields;
 *   - reserved fields must be zero on input (EINVAL otherwise) and are zeroed
 *     on output, so they can take meaning later without a new ioctl number;
 *   - every list call takes a struct pool_list: the caller passes a buffer
 *     and its capacity, the kernel returns how many items exist in total.
 *
 * Two kinds of file descriptors:
 *   /dev/pool       node-wide control (mode 0600): identity, trust store,
 *                   listener, connect/accept, lists, statistics, journal,
 *                   configuration versions. poll(): EPOLLIN while a session
 *                   waits in the accept queue.
 *   session fd      one per session (anon inode "[pool-session]"), returned
 *                   by CONNECT, ACCEPT and ATTACH. write() sends one message
 *                   on the fd's channel, read() returns one message (from any
 *                   channel), poll() reports EPOLLIN/EPOLLOUT/EPOLLHUP, and
 *                   the session closes (authenticated CLOSE, code 0) when its
 *                   last fd is closed. A read() buffer smaller than the next
 *                   message fails with EMSGSIZE and leaves it queued; read()
 *                   returns 0 once the peer has closed and the queue is empty.
 */
#ifndef _UAPI_LINUX_POOL_H
#define _UAPI_LINUX_POOL_H

#include <linux/types.h>
#include <linux/ioctl.h>

#define POOL_PROTOCOL_VERSION	1
#define POOL_DEFAULT_PORT	9253
#define POOL_KEY_LEN		32	/* X25519 keys */
#define POOL_ADDR_LEN		32	/* 256-bit POOL address */
#define POOL_HASH_LEN		32	/* SHA-256 */
#define POOL_SESSION_ID_LEN	16
#define POOL_NAME_LEN		32	/* peer names, NUL-terminated */
#define POOL_DETAIL_LEN		64	/* journal details, NUL-terminated */
#define POOL_MAX_MESSAGE	65519	/* 65535 on the wire less the 16-byte tag */
#define POOL_CHANNEL_ANY	0xffff

/* Session states (pool_session_info.state) */
enum pool_session_state {
	POOL_STATE_HANDSHAKE	= 1,	/* never reported: a session exists once its handshake is done */
	POOL_STATE_ESTABLISHED	= 2,
	POOL_STATE_REKEYING	= 3,	/* established, a rekey is in flight */
	POOL_STATE_CLOSING	= 4,	/* CLOSE sent or received, queue draining */
	POOL_STATE_CLOSED	= 5,
};

/* Session roles */
#define POOL_ROLE_INITIATOR	1
#define POOL_ROLE_RESPONDER	2

/* CLOSE error codes (also journal entry codes) */
enum pool_error_code {
	POOL_ERR_NONE		= 0x0,
	POOL_ERR_AUTH_FAIL	= 0x1,
	POOL_ERR_DECRYPT_FAIL	= 0x2,
	POOL_ERR_SEQ_INVALID	= 0x3,
	POOL_ERR_FRAG_TIMEOUT	= 0x4,
	POOL_ERR_MTU_EXCEEDED	= 0x5,
	POOL_ERR_CONFIG_REJECT	= 0x6,
	POOL_ERR_REKEY_FAIL	= 0x7,
	POOL_ERR_JOURNAL_FULL	= 0x8,
	POOL_ERR_OVERLOAD	= 0x9,
	POOL_ERR_VERSION_MISMATCH = 0xa,
	POOL_ERR_KEY_EXPIRED	= 0xb,	/* keys past their hard age or packet limit */
	POOL_ERR_FLOW_VIOLATION	= 0xc,	/* DATA beyond the advertised window */
	/* local reasons, journaled but never sent */
	POOL_ERR_PEER_DEAD	= 0x10,	/* silent for 3 heartbeats */
	POOL_ERR_LOCAL_CLOSE	= 0x11,	/* last fd closed, admin close, unload */
	POOL_ERR_UNKNOWN_PEER	= 0x12,	/* static key not in the trust store */
	POOL_ERR_BAD_PUZZLE	= 0x13,
	POOL_ERR_STALE_TIMESTAMP = 0x14,
	POOL_ERR_REPLAY		= 0x15,	/* INIT timestamp not newer than the last */
	POOL_ERR_MALFORMED	= 0x16,	/* framing, length, version, type */
	POOL_ERR_TIMEOUT	= 0x17,	/* handshake did not complete in time */
};

/* the highest code a CLOSE may carry; higher ones are local reasons */
#define POOL_ERR_SENT_MAX	POOL_ERR_FLOW_VIOLATION

/* ---- identity ---------------------------------------------------------- */

/*
 * SET_IDENTITY: private_key, org_id and segment_id in; public_key and
 * address out. GET_IDENTITY: everything out except private_key, which is
 * always returned zeroed. flags: POOL_IDENTITY_SET once a key is loaded.
 * Setting a different key closes every session (their peers trust the old
 * one); setting the same key again changes nothing.
 */
#define POOL_IDENTITY_SET	(1U << 0)

struct pool_identity {
	__u8	private_key[POOL_KEY_LEN];
	__u8	public_key[POOL_KEY_LEN];
	__u8	address[POOL_ADDR_LEN];
	__u64	org_id;
	__u64	segment_id;
	__u32	flags;
	__u32	reserved;
};

/* ---- trust store ------------------------------------------------------- */

/*
 * A trusted peer, keyed by its static public key. PEER_ADD fails with EEXIST
 * for a key already present and EINVAL for a low-order or all-zero key or the
 * node's own key; PEER_DEL reads only public_key (every other field must be
 * zero, EINVAL otherwise), fails with ENOENT for an unknown key and closes the
 * peer's sessions. The endpoint is informational for the kernel (poold uses it
 * to connect); name is for people.
 */
struct pool_peer {
	__u8	public_key[POOL_KEY_LEN];
	__u8	address[POOL_ADDR_LEN];		/* out: the peer's POOL address */
	char	name[POOL_NAME_LEN];
	__u8	endpoint_addr[16];		/* IPv6 or ::ffff:a.b.c.d */
	__u16	endpoint_port;			/* host order, 0 = none */
	__u16	flags;				/* reserved, zero */
	__u32	active_sessions;		/* out */
	__u64	last_handshake_ns;		/* out: CLOCK_REALTIME, 0 = never */
	__u64	last_init_timestamp;		/* out: replay guard */
	__u64	handshakes;			/* out */
	__u64	auth_failures;			/* out */
};

/* ---- lists --------------------------------------------------------------- */

/*
 * In: ptr (user buffer), capacity (items it holds). Out: count (items
 * written), total (items that exist; if total > count the buffer was short).
 */
struct pool_list {
	__u64	ptr;
	__u32	capacity;
	__u32	count;
	__u32	total;
	__u32	reserved;
};

/* ---- listener, connect, accept ---------------------------------------- */

/* port 0 means the module parameter `port`. Listening twice on the same port
 * is a no-op; on another port while listening: EBUSY (STOP first). */
struct pool_listen {
	__u16	port;
	__u16	flags;		/* reserved, zero */
	__u32	reserved;
};

/* fd_flags accepts O_CLOEXEC and O_NONBLOCK for the new session fd. */
struct pool_connect {
	__u8	addr[16];			/* IPv6 or ::ffff:a.b.c.d */
	__u16	port;				/* host order, 0 = module default */
	__u16	channel;			/* default channel for write() */
	__u32	scope_id;			/* IPv6 link-local scope, else 0 */
	__u8	peer_public_key[POOL_KEY_LEN];	/* must be in the trust store */
	__u32	timeout_ms;			/* 0 = 10000 */
	__u32	fd_flags;
	__s32	fd;				/* out */
	__u32	index;				/* out: session index */
};

/*
 * Takes the oldest established inbound session. timeout_ms 0 does not wait
 * (EAGAIN if none); POOL_ACCEPT_FOREVER waits until a session or a signal.
 */
#define POOL_ACCEPT_FOREVER	0xffffffffU

struct pool_accept {
	__u32	timeout_ms;
	__u32	fd_flags;
	__s32	fd;					/* out */
	__u32	index;					/* out */
	__u8	peer_public_key[POOL_KEY_LEN];		/* out */
};

/* ATTACH: a further fd for a live session, by index (diagnostics, handing a
 * session to another process). The session lives while any fd is open. */
struct pool_attach {
	__u32	index;
	__u32	fd_flags;
	__s32	fd;		/* out */
	__u32	reserved;
};

/* CLOSE: administrative close by index, sends CLOSE with code. */
struct pool_close {
	__u32	index;
	__u16	code;
	__u16	reserved;
};

/* ---- sessions ------------------------------------------------------------ */

/* What heartbeats measure; the same fields travel in HEARTBEAT payloads. */
struct pool_telemetry {
	__u64	rtt_ns;
	__u64	jitter_ns;
	__u32	loss_rate_ppm;
	__u32	throughput_bps;		/* saturates at 2^32-1 as on the wire */
	__u16	mtu;
	__u16	queue_depth;
	__u32	rekey_count;
	__u64	uptime_ns;
	__u32	config_version;
	__u32	reserved;
};

struct pool_session_info {
	__u32	index;
	__u8	state;			/* enum pool_session_state */
	__u8	role;			/* POOL_ROLE_* */
	__u16	channel;		/* default channel of write() */
	__u8	session_id[POOL_SESSION_ID_LEN];
	__u8	peer_public_key[POOL_KEY_LEN];
	__u8	peer_addr[16];
	__u16	peer_port;
	__u16	local_port;
	__u32	epoch;			/* key epoch, +1 per rekey */
	__u64	established_ns;		/* CLOCK_REALTIME */
	__u64	bytes_sent;
	__u64	bytes_recv;
	__u64	packets_sent;
	__u64	packets_recv;
	__u64	heartbeats_sent;
	__u64	heartbeats_recv;
	__u64	dropped;		/* packets refused (HMAC, sequence, tag): the first ends the session */
	__u32	rx_queue;		/* messages waiting for read() */
	__u32	fds;			/* open fds on the session */
	struct pool_telemetry local;	/* measured here */
	struct pool_telemetry peer;	/* last heartbeat from the peer */
};

/* Session fd ioctls: explicit channels and message metadata. */
struct pool_msg {
	__u64	ptr;
	__u32	len;		/* SEND: bytes; RECV: in capacity, out size */
	__u16	channel;	/* SEND: channel; RECV: in filter (ANY), out */
	__u16	flags;		/* POOL_MSG_* */
};

#define POOL_MSG_DONTWAIT	(1U << 0)

/* ---- statistics ---------------------------------------------------------- */

enum pool_stat {
	POOL_STAT_HANDSHAKES_INITIATED,
	POOL_STAT_HANDSHAKES_COMPLETED,
	POOL_STAT_HANDSHAKES_FAILED,
	POOL_STAT_INIT_RECEIVED,
	POOL_STAT_CHALLENGE_SENT,
	POOL_STAT_RESPONSE_RECEIVED,
	POOL_STAT_AUTH_FAIL,		/* bad static key proof or AEAD tag */
	POOL_STAT_UNKNOWN_PEER,
	POOL_STAT_BAD_PUZZLE,
	POOL_STAT_STALE_TIMESTAMP,
	POOL_STAT_REPLAYED_INIT,
	POOL_STAT_BAD_HMAC,
	POOL_STAT_REPLAY_DROP,
	POOL_STAT_DECRYPT_FAIL,
	POOL_STAT_MALFORMED,
	POOL_STAT_OVERLOAD,
	POOL_STAT_SESSIONS_OPENED,
	POOL_STAT_SESSIONS_CLOSED,
	POOL_STAT_SESSIONS_ACTIVE,
	POOL_STAT_PEERS_DEAD,
	POOL_STAT_REKEYS,
	POOL_STAT_PACKETS_SENT,
	POOL_STAT_PACKETS_RECV,
	POOL_STAT_BYTES_SENT,
	POOL_STAT_BYTES_RECV,
	POOL_STAT_JOURNAL_ENTRIES,
	POOL_STAT_CONFIG_APPLIED,
	POOL_STAT_CONFIG_CONFIRMED,
	POOL_STAT_CONFIG_ROLLED_BACK,
	POOL_STAT_LISTENING,		/* 0 or 1 */
	POOL_STAT_LISTEN_PORT,
	POOL_STAT_HALFOPEN_LIMITED,	/* refused: too many from its address, prefix or share */
	POOL_STAT_HALFOPEN_SILENT,	/* closed: no byte within 2 s */
	__POOL_STAT_COUNT
};

#define POOL_STATS_MAX	64	/* room to grow without an ABI change */

struct pool_stats {
	__u32	count;		/* out: entries filled (__POOL_STAT_COUNT) */
	__u32	reserved;
	__u64	value[POOL_STATS_MAX];
};

/* ---- journal ------------------------------------------------------------- */

enum pool_journal_type {
	POOL_JOURNAL_GENESIS	= 0,	/* first entry after load or SEED */
	POOL_JOURNAL_CONNECT	= 1,
	POOL_JOURNAL_DISCONNECT	= 2,
	POOL_JOURNAL_CONFIG	= 3,	/* apply (tentative or not), confirm */
	POOL_JOURNAL_ROLLBACK	= 4,
	POOL_JOURNAL_REKEY	= 5,
	POOL_JOURNAL_ERROR	= 6,
	POOL_JOURNAL_IDENTITY	= 7,
	POOL_JOURNAL_PEER	= 8,	/* trust store add/remove */
	POOL_JOURNAL_LISTEN	= 9,
};

/*
 * hash = SHA-256(prev_hash || seq be64 || timestamp_ns be64 || type be16 ||
 *                code be16 || config_version be32 || peer_public_key[32] ||
 *                detail up to its NUL)   -- see docs/protocol.md
 */
struct pool_journal_entry {
	__u64	seq;			/* position in the chain, 0-based */
	__u64	timestamp_ns;		/* CLOCK_REALTIME */
	__u16	type;			/* enum pool_journal_type */
	__u16	code;			/* enum pool_error_code or 0 */
	__u32	config_version;
	__u8	peer_public_key[POOL_KEY_LEN];	/* zero if none */
	__u8	prev_hash[POOL_HASH_LEN];
	__u8	hash[POOL_HASH_LEN];
	char	detail[POOL_DETAIL_LEN];
};

/*
 * JOURNAL_READ: entries with seq >= from_seq into list (oldest first).
 * The kernel keeps the newest entries in a ring; first_seq tells the oldest
 * it still holds, so userspace that fell behind knows it lost entries.
 */
struct pool_journal_read {
	struct pool_list list;
	__u64	from_seq;
	__u64	first_seq;	/* out */
	__u64	next_seq;	/* out: seq the next entry will get */
	__u8	head_hash[POOL_HASH_LEN];	/* out: hash of the newest entry */
};

/*
 * JOURNAL_SEED: continue a persisted chain after a module load. Allowed only
 * while the kernel's chain holds nothing but its GENESIS entry; that entry is
 * re-hashed onto (next_seq, head_hash). EBUSY afterwards.
 */
struct pool_journal_seed {
	__u64	next_seq;
	__u8	head_hash[POOL_HASH_LEN];
};

/* ---- versioned configuration --------------------------------------------- */

/*
 * CONFIG_APPLY makes `version` the active configuration. version must be
 * greater than the active one; hash is the SHA-256 of the canonical form that
 * userspace computed (docs/protocol.md), stored and journaled, not recomputed.
 * confirm_within_ms > 0 makes the version tentative: unless CONFIG_CONFIRM
 * names it before the deadline, the kernel restores the previous version by
 * itself (timer; no userspace needed). Peers are replaced by the list at
 * peers_ptr (peer_count entries of struct pool_peer; sessions to removed
 * peers close). Every field is validated before anything changes (EINVAL).
 */
#define POOL_CONFIG_TENTATIVE	(1U << 0)	/* out: awaiting confirmation */
#define POOL_CONFIG_HAS_PREV	(1U << 1)	/* out: a previous version exists */

struct pool_config {
	__u32	version;
	__u32	flags;
	__u8	hash[POOL_HASH_LEN];
	__u32	prev_version;			/* out */
	__u32	confirm_within_ms;		/* in; 0 = confirmed at once */
	__u8	prev_hash[POOL_HASH_LEN];	/* out */
	__u64	deadline_ns;			/* out: CLOCK_REALTIME, 0 if none (kept on CLOCK_BOOTTIME) */
	__u32	heartbeat_seconds;
	__u32	rekey_seconds;
	__u64	rekey_packets;
	__u32	puzzle_difficulty;
	__u32	max_sessions;
	__u64	peers_ptr;
	__u32	peer_count;
	__u32	reserved;
};

/* CONFIG_ROLLBACK: version must be the active version (a guard against racing
 * operators); restores the previous one. ENOENT if there is none. */
struct pool_config_ref {
	__u32	version;
	__u32	reserved;
};

/* ---- ioctl numbers -------------------------------------------------------- */

#define POOL_IOC_MAGIC	'P'

/* /dev/pool */
#define POOL_IOC_SET_IDENTITY	_IOWR(POOL_IOC_MAGIC, 0x01, struct pool_identity)
#define POOL_IOC_GET_IDENTITY	_IOR(POOL_IOC_MAGIC, 0x02, struct pool_identity)
#define POOL_IOC_PEER_ADD	_IOWR(POOL_IOC_MAGIC, 0x03, struct pool_peer)
#define POOL_IOC_PEER_DEL	_IOW(POOL_IOC_MAGIC, 0x04, struct pool_peer)
#define POOL_IOC_PEER_LIST	_IOWR(POOL_IOC_MAGIC, 0x05, struct pool_list)
#define POOL_IOC_LISTEN		_IOW(POOL_IOC_MAGIC, 0x06, struct pool_listen)
#define POOL_IOC_STOP		_IO(POOL_IOC_MAGIC, 0x07)
#define POOL_IOC_CONNECT	_IOWR(POOL_IOC_MAGIC, 0x08, struct pool_connect)
#define POOL_IOC_ACCEPT		_IOWR(POOL_IOC_MAGIC, 0x09, struct pool_accept)
#define POOL_IOC_ATTACH		_IOWR(POOL_IOC_MAGIC, 0x0a, struct pool_attach)
#define POOL_IOC_CLOSE		_IOW(POOL_IOC_MAGIC, 0x0b, struct pool_close)
#define POOL_IOC_SESSIONS	_IOWR(POOL_IOC_MAGIC, 0x0c, struct pool_list)
#define POOL_IOC_STATS		_IOR(POOL_IOC_MAGIC, 0x0d, struct pool_stats)
#define POOL_IOC_JOURNAL_READ	_IOWR(POOL_IOC_MAGIC, 0x0e, struct pool_journal_read)
#define POOL_IOC_JOURNAL_SEED	_IOW(POOL_IOC_MAGIC, 0x0f, struct pool_journal_seed)
#define POOL_IOC_CONFIG_GET	_IOR(POOL_IOC_MAGIC, 0x10, struct pool_config)
#define POOL_IOC_CONFIG_APPLY	_IOWR(POOL_IOC_MAGIC, 0x11, struct pool_config)
#define POOL_IOC_CONFIG_CONFIRM	_IOW(POOL_IOC_MAGIC, 0x12, struct pool_config_ref)
#define POOL_IOC_CONFIG_ROLLBACK _IOW(POOL_IOC_MAGIC, 0x13, struct pool_config_ref)

/* session fd */
#define POOL_SESS_IOC_INFO	_IOR(POOL_IOC_MAGIC, 0x40, struct pool_session_info)
#define POOL_SESS_IOC_SEND	_IOW(POOL_IOC_MAGIC, 0x41, struct pool_msg)
#define POOL_SESS_IOC_RECV	_IOWR(POOL_IOC_MAGIC, 0x42, struct pool_msg)
#define POOL_SESS_IOC_SET_CHANNEL _IOW(POOL_IOC_MAGIC, 0x43, __u32)

#endif /* _UAPI_LINUX_POOL_H */
