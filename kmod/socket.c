// SPDX-License-Identifier: GPL-2.0-only
/*
 * socket.c - in-kernel TCP: the dual-stack listener, the responder side of
 * the handshake on half-open connections, the initiator handshake of
 * CONNECT, and the receive and send work of established sessions.
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

struct pool_hconn {
	struct list_head	list;
	struct socket		*sock;
	struct work_struct	work;
	struct delayed_work	reap;
	struct mutex		mutex;
	bool			dead;
	bool			finished;	/* handshake ended, not timed out */
	bool			reaping;	/* reap running: never queue it again */
	u8			ip[16];
	u16			port;
	u32			have;
	u32			packets;
	struct pool_hdr		hdr;
	u8			buf[POOL_HDR_LEN + POOL_RESPONSE_LEN];
	struct pool_sk_cbs	orig;
};

#define POOL_HCONN_MAX_PACKETS	8

void pool_ip_from_sockaddr(const struct sockaddr_storage *ss, u8 ip[16],
			   u16 *port)
{
	const struct sockaddr_in *in4 = (const struct sockaddr_in *)ss;
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;

	memset(ip, 0, 16);
	*port = 0;
	if (ss->ss_family == AF_INET) {
		ip[10] = 0xff;
		ip[11] = 0xff;
		memcpy(ip + 12, &in4->sin_addr.s_addr, 4);
		*port = ntohs(in4->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		memcpy(ip, &in6->sin6_addr, 16);
		*port = ntohs(in6->sin6_port);
	}
}

/* Non-blocking read: bytes read, 0 at end of stream, -EAGAIN or an error. */
static int pool_sock_read(struct socket *sock, void *buf, size_t len)
{
	struct msghdr msg = { .msg_flags = MSG_DONTWAIT };
	struct kvec vec = { .iov_base = buf, .iov_len = len };

	return kernel_recvmsg(sock, &msg, &vec, 1, len, MSG_DONTWAIT);
}

static u64 pool_abs_diff(u64 a, u64 b)
{
	return a > b ? a - b : b - a;
}

/* ---- socket callbacks ---------------------------------------------------------- */

/*
 * Makes owner the socket's sk_user_data and installs the callbacks ours has,
 * saving the ones they replace in orig (the others NULL). The callbacks find
 * owner and orig under sk_callback_lock, so they never see half of this.
 */
static void pool_sk_install(struct sock *sk, void *owner,
			    const struct pool_sk_cbs *ours,
			    struct pool_sk_cbs *orig)
{
	write_lock_bh(&sk->sk_callback_lock);
	memset(orig, 0, sizeof(*orig));
	if (ours->data_ready) {
		orig->data_ready = sk->sk_data_ready;
		sk->sk_data_ready = ours->data_ready;
	}
	if (ours->state_change) {
		orig->state_change = sk->sk_state_change;
		sk->sk_state_change = ours->state_change;
	}
	if (ours->write_space) {
		orig->write_space = sk->sk_write_space;
		sk->sk_write_space = ours->write_space;
	}
	sk->sk_user_data = owner;
	write_unlock_bh(&sk->sk_callback_lock);
}

/*
 * Undoes pool_sk_install() if owner still owns the socket: once this
 * returns, no callback of owner's runs on it (a half-open connection's
 * socket passes to its session this way).
 */
static void pool_sk_restore(struct sock *sk, void *owner,
			    const struct pool_sk_cbs *orig)
{
	write_lock_bh(&sk->sk_callback_lock);
	if (sk->sk_user_data == owner) {
		sk->sk_user_data = NULL;
		if (orig->data_ready)
			sk->sk_data_ready = orig->data_ready;
		if (orig->state_change)
			sk->sk_state_change = orig->state_change;
		if (orig->write_space)
			sk->sk_write_space = orig->write_space;
	}
	write_unlock_bh(&sk->sk_callback_lock);
}

/* ---- session socket callbacks ----------------------------------------------- */

static void pool_sk_data_ready(struct sock *sk)
{
	struct pool_session *s;

	read_lock_bh(&sk->sk_callback_lock);
	s = sk->sk_user_data;
	if (s)
		queue_work(pool_node.wq, &s->rx_work);
	read_unlock_bh(&sk->sk_callback_lock);
}

static void pool_sk_state_change(struct sock *sk)
{
	void (*orig)(struct sock *sk) = NULL;
	struct pool_session *s;

	read_lock_bh(&sk->sk_callback_lock);
	s = sk->sk_user_data;
	if (s) {
		orig = s->orig.state_change;
		queue_work(pool_node.wq, &s->rx_work);
		queue_work(pool_node.wq, &s->tx_work);
	}
	read_unlock_bh(&sk->sk_callback_lock);
	if (orig)
		orig(sk);
}

static void pool_sk_write_space(struct sock *sk)
{
	void (*orig)(struct sock *sk) = NULL;
	struct pool_session *s;

	read_lock_bh(&sk->sk_callback_lock);
	s = sk->sk_user_data;
	if (s) {
		orig = s->orig.write_space;
		if (sk_stream_is_writeable(sk)) {
			clear_bit(SOCK_NOSPACE, &sk->sk_socket->flags);
			queue_work(pool_node.wq, &s->tx_work);
		}
	}
	read_unlock_bh(&sk->sk_callback_lock);
	if (orig)
		orig(sk);
}

static const struct pool_sk_cbs pool_session_cbs = {
	.data_ready	= pool_sk_data_ready,
	.state_change	= pool_sk_state_change,
	.write_space	= pool_sk_write_space,
};

void pool_sock_install(struct pool_session *s)
{
	pool_sk_install(s->sock->sk, s, &pool_session_cbs, &s->orig);
}

void pool_sock_uninstall(struct pool_session *s)
{
	if (s->sock)
		pool_sk_restore(s->sock->sk, s, &s->orig);
}

/* ---- transport receive -------------------------------------------------------- */

static bool pool_replay_ok(struct pool_session *s, u64 seq)
{
	u64 d;

	if (seq > s->rx_top)
		return true;
	d = s->rx_top - seq;
	if (d >= POOL_REPLAY_WINDOW)
		return false;
	return !(s->rx_bitmap[d / 64] & (1ULL << (d % 64)));
}

static void pool_replay_mark(struct pool_session *s, u64 seq)
{
	u64 *b = s->rx_bitmap;
	u64 sh, d;

	if (seq > s->rx_top) {
		sh = seq - s->rx_top;
		if (sh >= 128) {
			b[0] = 0;
			b[1] = 0;
		} else if (sh >= 64) {
			b[1] = b[0] << (sh - 64);
			b[0] = 0;
		} else {
			b[1] = (b[1] << sh) | (b[0] >> (64 - sh));
			b[0] <<= sh;
		}
		WRITE_ONCE(s->rx_top, seq);
	}
	d = s->rx_top - seq;
	b[d / 64] |= 1ULL << (d % 64);
}

static void pool_rx_drop(struct pool_session *s, enum pool_stat stat, u16 code,
			 const char *what)
{
	spin_lock_bh(&s->lock);
	s->dropped++;
	spin_unlock_bh(&s->lock);
	pool_fail(stat, code, s->peer_key, what);
}

static void pool_rx_deliver(struct pool_session *s, u8 *data, u32 len,
			    u8 channel)
{
	struct pool_rxmsg *m = kmalloc(sizeof(*m), GFP_KERNEL);

	if (!m) {
		kfree(data);
		pool_rx_drop(s, POOL_STAT_OVERLOAD, POOL_ERR_OVERLOAD,
			     "receive: out of memory");
		return;
	}
	if (!len) {
		kfree(data);
		data = NULL;
	}
	m->data = data;
	m->len = len;
	m->channel = channel;
	spin_lock_bh(&s->lock);
	list_add_tail(&m->list, &s->rxq);
	s->rxq_len++;
	s->rxq_bytes += len;
	spin_unlock_bh(&s->lock);
	wake_up_interruptible(&s->wait);
}

/* An authenticated, decrypted packet; returns false to stop reading. */
static bool pool_rx_dispatch(struct pool_session *s, const struct pool_hdr *h,
			     u8 *pt, u32 len)
{
	bool want = true;
	u16 code;

	switch (h->type) {
	case POOL_PKT_DATA:
		pool_rx_deliver(s, pt, len, h->channel);
		s->rx_payload = s->rx_buf;
		return true;
	case POOL_PKT_HEARTBEAT:
		want = len == POOL_HEARTBEAT_LEN;
		if (want)
			pool_heartbeat_rx(s, h, pt);
		break;
	case POOL_PKT_ACK:
		want = len == POOL_ACK_PT_LEN;
		if (want)
			pool_ack_rx(s, pt);
		break;
	case POOL_PKT_CLOSE:
		want = len == POOL_CLOSE_PT_LEN;
		if (!want)
			break;
		code = get_unaligned_be16(pt);
		spin_lock_bh(&s->lock);
		s->peer_closed = true;
		spin_unlock_bh(&s->lock);
		wake_up_all(&s->wait);
		pool_session_close(s, code, false);
		return false;
	case POOL_PKT_REKEY:
		want = len == POOL_REKEY_PT_LEN;
		if (want && pool_rekey_rx(s, pt, len)) {
			pool_fail(POOL_STAT_MALFORMED, POOL_ERR_REKEY_FAIL,
				  s->peer_key, "rekey: unexpected epoch");
			pool_session_close(s, POOL_ERR_REKEY_FAIL, true);
			return false;
		}
		break;
	case POOL_PKT_CONFIG:
	case POOL_PKT_ROLLBACK:
		want = len == pool_transport_pt_len(h->type);
		if (want)
			pool_config_peer_rx(s, h->type, pt);
		break;
	default:	/* DISCOVER, JOURNAL: nothing to do with them yet */
		break;
	}
	if (!want)
		pool_rx_drop(s, POOL_STAT_MALFORMED, POOL_ERR_MALFORMED,
			     "transport: bad plaintext length");
	return true;
}

/* Checks and consumes the complete packet in rx_hdr_raw/rx_payload. */
static bool pool_rx_packet(struct pool_session *s)
{
	const struct pool_hdr *h = &s->rx_hdr;
	u32 plen = h->payload_len;
	struct pool_hmac_ctx ctx;
	u8 mac[POOL_MAC_LEN], nonce[POOL_NONCE_LEN];
	u8 *p = s->rx_payload;

	/* 1. HMAC over the header (MAC zeroed) and ciphertext, constant time */
	memset(s->rx_hdr_raw + POOL_HDR_MAC_OFF, 0, POOL_MAC_LEN);
	ctx = s->rx.hmac;
	pool_hmac_update(&ctx, s->rx_hdr_raw, POOL_HDR_LEN);
	pool_hmac_update(&ctx, p, plen);
	pool_hmac_final(&ctx, mac);
	memzero_explicit(&ctx, sizeof(ctx));
	if (crypto_memneq(mac, h->mac, POOL_MAC_LEN)) {
		pool_rx_drop(s, POOL_STAT_BAD_HMAC, POOL_ERR_AUTH_FAIL,
			     "transport: bad header hmac");
		goto drop;
	}
	/* 2. replay window */
	if (!pool_replay_ok(s, h->seq)) {
		pool_rx_drop(s, POOL_STAT_REPLAY_DROP, POOL_ERR_SEQ_INVALID,
			     "transport: replayed or old sequence");
		goto drop;
	}
	/* 3. decryption */
	memcpy(nonce, s->rx.nonce_prefix, 4);
	put_unaligned_be64(h->seq, nonce + 4);
	if (pool_aead_decrypt(&s->rx.aead, nonce, p, plen, NULL, 0)) {
		pool_rx_drop(s, POOL_STAT_DECRYPT_FAIL, POOL_ERR_DECRYPT_FAIL,
			     "transport: decryption failed");
		goto drop;
	}
	pool_replay_mark(s, h->seq);
	WRITE_ONCE(s->last_rx, jiffies);
	spin_lock_bh(&s->lock);
	s->packets_recv++;
	s->bytes_recv += POOL_HDR_LEN + plen;
	spin_unlock_bh(&s->lock);
	pool_stat_inc(POOL_STAT_PACKETS_RECV);
	pool_stat_add(POOL_STAT_BYTES_RECV, POOL_HDR_LEN + plen);
	return pool_rx_dispatch(s, h, p, plen - POOL_TAG_LEN);

drop:
	if (p != s->rx_buf) {
		kfree(p);
		s->rx_payload = s->rx_buf;
	}
	return true;
}

static bool pool_rx_full(struct pool_session *s)
{
	bool full;

	spin_lock_bh(&s->lock);
	full = s->rxq_len >= POOL_RXQ_MAX_MSGS ||
	       s->rxq_bytes >= POOL_RXQ_MAX_BYTES;
	if (full)
		s->rx_stalled = true;
	spin_unlock_bh(&s->lock);
	return full;
}

void pool_rx_work(struct work_struct *w)
{
	struct pool_session *s = container_of(w, struct pool_session, rx_work);
	struct socket *sock = s->sock;
	int budget = 256, ret;
	u32 want;

	while (budget-- > 0) {
		if (READ_ONCE(s->closing) || !sock)
			return;
		if (s->rx_have < POOL_HDR_LEN) {
			/* only start a packet when the queue has room */
			if (!s->rx_have && pool_rx_full(s))
				return;
			ret = pool_sock_read(sock, s->rx_hdr_raw + s->rx_have,
					     POOL_HDR_LEN - s->rx_have);
			if (ret <= 0)
				goto stop;
			if (!s->rx_have)
				s->rx_progress = jiffies;	/* a packet begins */
			s->rx_have += ret;
			if (s->rx_have < POOL_HDR_LEN)
				continue;
			if (pool_hdr_decode(&s->rx_hdr, s->rx_hdr_raw) ||
			    !(s->rx_hdr.flags & POOL_F_ENCRYPTED) ||
			    s->rx_hdr.type <= POOL_PKT_RESPONSE) {
				pool_fail(POOL_STAT_MALFORMED, POOL_ERR_MALFORMED,
					  s->peer_key, "transport: bad framing");
				pool_session_close(s, POOL_ERR_MALFORMED, false);
				return;
			}
			if (s->rx_hdr.type == POOL_PKT_DATA) {
				s->rx_payload = kmalloc(s->rx_hdr.payload_len,
							GFP_KERNEL);
				if (!s->rx_payload) {
					s->rx_payload = s->rx_buf;
					pool_session_close(s, POOL_ERR_OVERLOAD,
							   true);
					return;
				}
			}
		}
		want = POOL_HDR_LEN + s->rx_hdr.payload_len - s->rx_have;
		if (want) {
			ret = pool_sock_read(sock, s->rx_payload + s->rx_have -
					     POOL_HDR_LEN, want);
			if (ret <= 0)
				goto stop;
			s->rx_have += ret;
			if (ret < want)
				continue;
		}
		s->rx_have = 0;
		if (!pool_rx_packet(s))
			return;
	}
	queue_work(pool_node.wq, &s->rx_work);	/* let others run */
	return;

stop:
	if (ret == -EAGAIN) {
		/* half a packet: it must be completed in time */
		if (s->rx_have)
			queue_delayed_work(pool_node.wq, &s->stall_work,
					   POOL_RX_STALL);
		return;
	}
	/* end of stream or a socket error without a CLOSE: the peer is gone */
	if (!READ_ONCE(s->closing))
		pool_stat_inc(POOL_STAT_PEERS_DEAD);
	pool_session_close(s, POOL_ERR_PEER_DEAD, false);
}

/*
 * A packet must arrive whole within POOL_RX_STALL of its first byte (64 KiB
 * in 5 s is 13 KB/s): one that does not, say a header announcing more than
 * ever follows, means the framing cannot be trusted.
 */
void pool_stall_work(struct work_struct *w)
{
	struct pool_session *s = container_of(to_delayed_work(w),
					      struct pool_session, stall_work);
	unsigned long due;

	if (READ_ONCE(s->closing) || !READ_ONCE(s->rx_have))
		return;
	due = READ_ONCE(s->rx_progress) + POOL_RX_STALL;
	if (time_before(jiffies, due)) {
		queue_delayed_work(pool_node.wq, &s->stall_work, due - jiffies);
		return;
	}
	pool_fail(POOL_STAT_MALFORMED, POOL_ERR_MALFORMED, s->peer_key,
		  "transport: packet truncated");
	pool_session_close(s, POOL_ERR_MALFORMED, false);
}

/* ---- transport send ------------------------------------------------------------ */

void pool_tx_work(struct work_struct *w)
{
	struct pool_session *s = container_of(w, struct pool_session, tx_work);
	struct socket *sock = s->sock;
	struct msghdr msg = {};
	struct kvec vec[2];
	u32 prod, cons, len;
	unsigned int n;
	int ret;

	if (!sock || READ_ONCE(s->tx_dead))
		return;
	for (;;) {
		spin_lock_bh(&s->ring_lock);
		prod = s->ring_prod;
		cons = s->ring_cons;
		spin_unlock_bh(&s->ring_lock);
		if (prod == cons)
			break;
		len = pool_ring_used(prod, cons);
		n = pool_ring_peek(s->ring, cons, len, vec);
		msg.msg_flags = MSG_DONTWAIT | MSG_NOSIGNAL;
		ret = kernel_sendmsg(sock, &msg, vec, n, len);
		if (ret == -EAGAIN)
			break;
		if (ret <= 0) {
			WRITE_ONCE(s->tx_dead, true);
			wake_up_all(&s->wait);
			if (!READ_ONCE(s->closing))
				pool_stat_inc(POOL_STAT_PEERS_DEAD);
			pool_session_close(s, POOL_ERR_PEER_DEAD, false);
			break;
		}
		spin_lock_bh(&s->ring_lock);
		s->ring_cons += ret;
		spin_unlock_bh(&s->ring_lock);
		wake_up_interruptible_all(&s->wait);
	}
	/* linger in teardown waits for an empty ring */
	wake_up_all(&s->wait);
}

/* ---- handshake packets ------------------------------------------------------------ */

/* Encodes a handshake packet (flags, seq, ack, channel 0) MAC'ed with mk. */
static void pool_hs_packet(u8 *out, u8 type, const u8 sid[16], u64 ts,
			   const u8 *payload, u16 len, const u8 mk[32])
{
	struct pool_hdr h = {};

	h.type = type;
	memcpy(h.session_id, sid, 16);
	h.timestamp = ts;
	h.payload_len = len;
	pool_hdr_encode(out, &h);
	memcpy(out + POOL_HDR_LEN, payload, len);
	pool_packet_mac(out + POOL_HDR_MAC_OFF, mk, out, payload, len);
}

/* MAC check of a received handshake packet, constant time. */
static bool pool_hs_mac_ok(const u8 *raw, const u8 *payload, u16 len,
			   const u8 mk[32])
{
	u8 hdr[POOL_HDR_LEN], mac[POOL_MAC_LEN];
	bool ok;

	memcpy(hdr, raw, POOL_HDR_LEN);
	memset(hdr + POOL_HDR_MAC_OFF, 0, POOL_MAC_LEN);
	pool_packet_mac(mac, mk, hdr, payload, len);
	ok = !crypto_memneq(mac, raw + POOL_HDR_MAC_OFF, POOL_MAC_LEN);
	memzero_explicit(mac, sizeof(mac));
	return ok;
}

static bool pool_hs_hdr_plain(const struct pool_hdr *h)
{
	return !h->flags && !h->seq && !h->ack && !h->channel;
}

static int pool_sock_send_nb(struct socket *sock, const u8 *buf, size_t len)
{
	struct msghdr msg = { .msg_flags = MSG_DONTWAIT | MSG_NOSIGNAL };
	struct kvec vec = { .iov_base = (void *)buf, .iov_len = len };
	int ret = kernel_sendmsg(sock, &msg, &vec, 1, len);

	return ret == len ? 0 : (ret < 0 ? ret : -EAGAIN);
}

/* ---- responder: half-open connections ------------------------------------------ */

static void pool_hconn_data_ready(struct sock *sk)
{
	struct pool_hconn *hc;

	read_lock_bh(&sk->sk_callback_lock);
	hc = sk->sk_user_data;
	if (hc)
		queue_work(pool_node.wq, &hc->work);
	read_unlock_bh(&sk->sk_callback_lock);
}

static void pool_hconn_state_change(struct sock *sk)
{
	void (*orig)(struct sock *sk) = NULL;
	struct pool_hconn *hc;

	read_lock_bh(&sk->sk_callback_lock);
	hc = sk->sk_user_data;
	if (hc) {
		orig = hc->orig.state_change;
		queue_work(pool_node.wq, &hc->work);
	}
	read_unlock_bh(&sk->sk_callback_lock);
	if (orig)
		orig(sk);
}

static const struct pool_sk_cbs pool_hconn_cbs = {
	.data_ready	= pool_hconn_data_ready,
	.state_change	= pool_hconn_state_change,
};

static void pool_hconn_uninstall(struct pool_hconn *hc)
{
	pool_sk_restore(hc->sock->sk, hc, &hc->orig);
}

/* Brings the reap forward; never once it runs (it frees the hconn). */
static void pool_hconn_reap_now(struct pool_hconn *hc)
{
	spin_lock_bh(&pool_node.hconn_lock);
	if (!hc->reaping)
		mod_delayed_work(pool_node.wq, &hc->reap, 0);
	spin_unlock_bh(&pool_node.hconn_lock);
}

static void pool_hconn_reap(struct work_struct *w)
{
	struct pool_hconn *hc = container_of(to_delayed_work(w),
					     struct pool_hconn, reap);

	spin_lock_bh(&pool_node.hconn_lock);
	hc->reaping = true;
	spin_unlock_bh(&pool_node.hconn_lock);

	mutex_lock(&hc->mutex);
	hc->dead = true;
	if (hc->sock)
		pool_hconn_uninstall(hc);
	mutex_unlock(&hc->mutex);
	cancel_work_sync(&hc->work);

	if (hc->sock) {
		if (!hc->finished) {
			pool_stat_inc(POOL_STAT_HANDSHAKES_FAILED);
			pool_journal(POOL_JOURNAL_ERROR, POOL_ERR_TIMEOUT, NULL,
				     "handshake: responder timeout");
		}
		kernel_sock_shutdown(hc->sock, SHUT_RDWR);
		sock_release(hc->sock);
		hc->sock = NULL;
	}
	spin_lock_bh(&pool_node.hconn_lock);
	list_del(&hc->list);
	pool_node.nr_hconns--;
	/*
	 * pool_hconn_work() or pool_hconns_exit() may have queued this reap
	 * again while it was running (waiting for hc->mutex): drop that
	 * instance, or it would run on freed memory. Once unlinked, nothing
	 * can find hc to queue it again.
	 */
	cancel_delayed_work(&hc->reap);
	spin_unlock_bh(&pool_node.hconn_lock);
	memzero_explicit(hc->buf, sizeof(hc->buf));
	kfree(hc);
}

/* Handshake failure on a half-open connection: counted, journaled, maybe told. */
static void pool_hconn_fail(struct pool_hconn *hc, enum pool_stat stat,
			    u16 code, u16 wire_code, const u8 *peer,
			    const u8 mk[32], const char *what)
{
	u8 pkt[POOL_HDR_LEN + POOL_HS_CLOSE_LEN];
	__be16 c = cpu_to_be16(wire_code);
	u8 sid[16] = {};

	pool_fail(stat, code, peer, what);
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
	ret = pool_hs_ack_create(&st, ack, &keys);
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

static void pool_hconn_work(struct work_struct *w)
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

/* ---- listener ---------------------------------------------------------------------- */

static void pool_listen_data_ready(struct sock *sk)
{
	read_lock_bh(&sk->sk_callback_lock);
	if (sk->sk_user_data)
		queue_work(pool_node.wq, &pool_node.accept_work);
	read_unlock_bh(&sk->sk_callback_lock);
}

static const struct pool_sk_cbs pool_listen_cbs = {
	.data_ready	= pool_listen_data_ready,
};

static void pool_accept_one(struct socket *newsock)
{
	struct sockaddr_storage ss = {};
	struct pool_hconn *hc;

	spin_lock_bh(&pool_node.hconn_lock);
	if (pool_node.nr_hconns >= POOL_HALFOPEN_MAX) {
		spin_unlock_bh(&pool_node.hconn_lock);
		pool_fail(POOL_STAT_OVERLOAD, POOL_ERR_OVERLOAD, NULL,
			  "handshake: too many half-open connections");
		goto drop;
	}
	pool_node.nr_hconns++;
	spin_unlock_bh(&pool_node.hconn_lock);

	hc = kzalloc(sizeof(*hc), GFP_KERNEL);
	if (!hc || kernel_getpeername(newsock, (struct sockaddr *)&ss) < 0) {
		kfree(hc);
		spin_lock_bh(&pool_node.hconn_lock);
		pool_node.nr_hconns--;
		spin_unlock_bh(&pool_node.hconn_lock);
		goto drop;
	}
	pool_ip_from_sockaddr(&ss, hc->ip, &hc->port);
	hc->sock = newsock;
	mutex_init(&hc->mutex);
	INIT_WORK(&hc->work, pool_hconn_work);
	INIT_DELAYED_WORK(&hc->reap, pool_hconn_reap);
	tcp_sock_set_nodelay(newsock->sk);

	spin_lock_bh(&pool_node.hconn_lock);
	list_add_tail(&hc->list, &pool_node.hconns);
	spin_unlock_bh(&pool_node.hconn_lock);
	/* the deadline first: once the callbacks run, the hconn may be reaped */
	queue_delayed_work(pool_node.wq, &hc->reap, POOL_HALFOPEN_TIMEOUT);

	pool_sk_install(newsock->sk, hc, &pool_hconn_cbs, &hc->orig);
	queue_work(pool_node.wq, &hc->work);
	return;
drop:
	kernel_sock_shutdown(newsock, SHUT_RDWR);
	sock_release(newsock);
}

static void pool_accept_work(struct work_struct *w)
{
	struct socket *newsock;
	int budget = 64;

	while (budget-- > 0) {
		if (!pool_node.listen_sock || READ_ONCE(pool_node.stopping))
			return;
		if (kernel_accept(pool_node.listen_sock, &newsock, O_NONBLOCK))
			return;
		pool_accept_one(newsock);
	}
	queue_work(pool_node.wq, &pool_node.accept_work);
}

int pool_listen(u16 port)
{
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6 };
	struct sockaddr_in a4 = { .sin_family = AF_INET };
	struct socket *sock;
	bool v6 = true;
	int ret;

	lockdep_assert_held(&pool_node.lock);
	if (!port)
		port = READ_ONCE(pool_param_port);
	if (pool_node.listen_sock)
		return port == pool_node.listen_port ? 0 : -EBUSY;
	if (!pool_node.have_identity)
		return -ENOKEY;

	ret = sock_create_kern(&init_net, AF_INET6, SOCK_STREAM, IPPROTO_TCP,
			       &sock);
	if (ret == -EAFNOSUPPORT) {
		v6 = false;
		ret = sock_create_kern(&init_net, AF_INET, SOCK_STREAM,
				       IPPROTO_TCP, &sock);
	}
	if (ret)
		return ret;
	sock_set_reuseaddr(sock->sk);
	if (v6) {
		/* dual stack: IPv4 clients arrive as ::ffff:a.b.c.d */
		lock_sock(sock->sk);
		sock->sk->sk_ipv6only = 0;
		release_sock(sock->sk);
		a6.sin6_port = htons(port);
		a6.sin6_addr = in6addr_any;
		ret = kernel_bind(sock, (struct sockaddr *)&a6, sizeof(a6));
	} else {
		a4.sin_port = htons(port);
		a4.sin_addr.s_addr = htonl(INADDR_ANY);
		ret = kernel_bind(sock, (struct sockaddr *)&a4, sizeof(a4));
	}
	if (!ret)
		ret = kernel_listen(sock, 128);
	if (ret) {
		sock_release(sock);
		return ret;
	}
	pool_node.listen_port = port;
	pool_node.listen_sock = sock;
	pool_sk_install(sock->sk, &pool_node, &pool_listen_cbs,
			&pool_node.listen_orig);
	queue_work(pool_node.wq, &pool_node.accept_work);
	pool_journal(POOL_JOURNAL_LISTEN, 0, NULL, "listen port %u%s", port,
		     v6 ? " dual-stack" : " ipv4");
	return 0;
}

void pool_listen_stop(void)
{
	struct socket *sock = pool_node.listen_sock;

	lockdep_assert_held(&pool_node.lock);
	if (!sock)
		return;
	pool_sk_restore(sock->sk, &pool_node, &pool_node.listen_orig);
	cancel_work_sync(&pool_node.accept_work);
	pool_node.listen_sock = NULL;
	kernel_sock_shutdown(sock, SHUT_RDWR);
	sock_release(sock);
	pool_journal(POOL_JOURNAL_LISTEN, 0, NULL, "stop port %u",
		     pool_node.listen_port);
	pool_node.listen_port = 0;
}

void pool_hconns_init(void)
{
	INIT_WORK(&pool_node.accept_work, pool_accept_work);
}

/* Module exit, after pool_listen_stop(): reap every half-open connection. */
void pool_hconns_exit(void)
{
	struct pool_hconn *hc;
	bool empty;

	for (;;) {
		spin_lock_bh(&pool_node.hconn_lock);
		list_for_each_entry(hc, &pool_node.hconns, list)
			if (!hc->reaping)
				mod_delayed_work(pool_node.wq, &hc->reap, 0);
		empty = list_empty(&pool_node.hconns);
		spin_unlock_bh(&pool_node.hconn_lock);
		if (empty)
			break;
		flush_workqueue(pool_node.wq);
	}
}

/* ---- initiator ------------------------------------------------------------------------ */

static void pool_sock_timeouts(struct socket *sock, long timeo)
{
	lock_sock(sock->sk);
	sock->sk->sk_rcvtimeo = timeo;
	sock->sk->sk_sndtimeo = timeo;
	release_sock(sock->sk);
}

static long pool_left(unsigned long deadline)
{
	long left = (long)(deadline - jiffies);

	return left > 0 ? left : 0;
}

static int pool_sock_send_all(struct socket *sock, const u8 *buf, size_t len,
			      unsigned long deadline)
{
	struct msghdr msg = {};
	struct kvec vec;
	int ret;

	while (len) {
		if (!pool_left(deadline))
			return -ETIMEDOUT;
		pool_sock_timeouts(sock, pool_left(deadline));
		vec.iov_base = (void *)buf;
		vec.iov_len = len;
		msg.msg_flags = MSG_NOSIGNAL;
		ret = kernel_sendmsg(sock, &msg, &vec, 1, len);
		if (ret == -EAGAIN)
			return -ETIMEDOUT;
		if (ret == -ERESTARTSYS)
			return -EINTR;
		if (ret <= 0)
			return ret ? ret : -EPIPE;
		buf += ret;
		len -= ret;
	}
	return 0;
}

static int pool_sock_recv_all(struct socket *sock, u8 *buf, size_t len,
			      unsigned long deadline)
{
	struct msghdr msg = {};
	struct kvec vec;
	int ret;

	while (len) {
		if (!pool_left(deadline))
			return -ETIMEDOUT;
		pool_sock_timeouts(sock, pool_left(deadline));
		vec.iov_base = buf;
		vec.iov_len = len;
		ret = kernel_recvmsg(sock, &msg, &vec, 1, len, MSG_WAITALL);
		if (ret == -EAGAIN)
			return -ETIMEDOUT;
		if (ret == -ERESTARTSYS)
			return -EINTR;
		if (ret < 0)
			return ret;
		if (!ret)
			return -ECONNRESET;
		buf += ret;
		len -= ret;
	}
	return 0;
}

/* Receives one handshake reply of type want into buf; a CLOSE maps to an errno. */
static int pool_hs_recv(struct socket *sock, const struct pool_hs_initiator *hs,
			u8 want, u16 want_len, u8 *buf, struct pool_hdr *h,
			unsigned long deadline, u16 *code)
{
	int ret;

	ret = pool_sock_recv_all(sock, buf, POOL_HDR_LEN, deadline);
	if (ret)
		return ret;
	if (pool_hdr_decode(h, buf) || !pool_hs_hdr_plain(h) ||
	    (h->type != want && h->type != POOL_PKT_CLOSE) ||
	    h->payload_len != (h->type == want ? want_len : POOL_HS_CLOSE_LEN)) {
		*code = POOL_ERR_MALFORMED;
		return -EPROTO;
	}
	ret = pool_sock_recv_all(sock, buf + POOL_HDR_LEN, h->payload_len,
				 deadline);
	if (ret)
		return ret;
	if (!pool_hs_mac_ok(buf, buf + POOL_HDR_LEN, h->payload_len,
			    hs->mac_key) ||
	    memcmp(h->session_id, hs->iid, POOL_ID_LEN)) {
		*code = POOL_ERR_AUTH_FAIL;
		return -EPROTO;
	}
	if (h->type == POOL_PKT_CLOSE) {
		*code = get_unaligned_be16(buf + POOL_HDR_LEN);
		switch (*code) {
		case POOL_ERR_AUTH_FAIL:
			return -EACCES;
		case POOL_ERR_OVERLOAD:
			return -EBUSY;
		default:
			return -ECONNREFUSED;
		}
	}
	return 0;
}

static int pool_initiate(struct socket *sock, const struct pool_static *self,
			 const u8 peer_key[32], unsigned long deadline,
			 struct pool_keys *keys, u8 rid[POOL_ID_LEN],
			 u8 iid[POOL_ID_LEN], u16 *code)
{
	u8 buf[POOL_HDR_LEN + POOL_RESPONSE_LEN];
	u8 payload[POOL_RESPONSE_LEN];
	struct pool_hs_initiator hs;
	struct pool_hdr h;
	u8 sid[16] = {}, seed[32], diff;
	u64 solution;
	int ret;

	pool_hs_init_create(&hs, peer_key, ktime_get_real_ns(), payload);
	memcpy(iid, hs.iid, POOL_ID_LEN);
	memcpy(sid, hs.iid, POOL_ID_LEN);
	pool_hs_packet(buf, POOL_PKT_INIT, sid, hs.ts, payload, POOL_INIT_LEN,
		       hs.mac_key);
	ret = pool_sock_send_all(sock, buf, POOL_HDR_LEN + POOL_INIT_LEN,
				 deadline);
	if (ret)
		goto out;

	ret = pool_hs_recv(sock, &hs, POOL_PKT_CHALLENGE, POOL_CHALLENGE_LEN,
			   buf, &h, deadline, code);
	if (ret)
		goto out;
	if (memchr_inv(h.session_id + POOL_ID_LEN, 0, POOL_ID_LEN) ||
	    pool_hs_challenge_parse(buf + POOL_HDR_LEN, seed, &diff)) {
		*code = POOL_ERR_MALFORMED;
		ret = -EPROTO;
		goto out;
	}
	ret = pool_hs_solve_until(seed, diff, ktime_get_ns() +
				  jiffies_to_nsecs(pool_left(deadline)),
				  &solution);
	if (ret) {
		*code = ret == -EINVAL ? POOL_ERR_MALFORMED : POOL_ERR_TIMEOUT;
		if (ret == -EINVAL)
			ret = -EPROTO;
		goto out;
	}
	ret = pool_hs_response_create(&hs, self, solution, payload);
	if (ret) {
		*code = POOL_ERR_AUTH_FAIL;
		goto out;
	}
	pool_hs_packet(buf, POOL_PKT_RESPONSE, sid, ktime_get_real_ns(),
		       payload, POOL_RESPONSE_LEN, hs.mac_key);
	ret = pool_sock_send_all(sock, buf, POOL_HDR_LEN + POOL_RESPONSE_LEN,
				 deadline);
	if (ret)
		goto out;

	ret = pool_hs_recv(sock, &hs, POOL_PKT_ACK, POOL_ACK_LEN, buf, &h,
			   deadline, code);
	if (ret)
		goto out;
	memcpy(rid, h.session_id + POOL_ID_LEN, POOL_ID_LEN);
	ret = pool_hs_ack_consume(&hs, self, buf + POOL_HDR_LEN, rid, keys);
	if (ret) {
		*code = POOL_ERR_AUTH_FAIL;
		ret = -EACCES;
	}
out:
	memzero_explicit(&hs, sizeof(hs));
	return ret;
}

/* On success pf holds the session's descriptor, to publish once c is copied out. */
int pool_connect(struct pool_connect *c, struct pool_fd *pf)
{
	struct sockaddr_storage ss = {};
	struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
	const struct in6_addr *ip = (const struct in6_addr *)c->addr;
	u8 iid[POOL_ID_LEN], rid[POOL_ID_LEN];
	struct pool_static self;
	struct pool_keys keys;
	struct pool_session *s;
	struct socket *sock;
	unsigned long deadline;
	u32 timeout = c->timeout_ms ? c->timeout_ms : POOL_CONNECT_TIMEOUT_MS;
	u16 port = c->port ? c->port : READ_ONCE(pool_param_port);
	u16 code = POOL_ERR_TIMEOUT;
	bool have;
	int ret, len;

	if (c->fd_flags & ~(O_CLOEXEC | O_NONBLOCK) || c->channel > 0xff)
		return -EINVAL;
	if (ipv6_addr_any(ip))
		return -EINVAL;
	pool_node_self(&self, &have);
	if (!have)
		return -ENOKEY;
	if (!pool_peer_trusted(c->peer_public_key)) {
		ret = -ENOKEY;
		goto out_self;
	}

	if (ipv6_addr_v4mapped(ip)) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons(port);
		a4->sin_addr.s_addr = ip->s6_addr32[3];
		len = sizeof(*a4);
	} else {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(port);
		a6->sin6_addr = *ip;
		a6->sin6_scope_id = c->scope_id;
		len = sizeof(*a6);
	}
	ret = sock_create_kern(&init_net, ss.ss_family, SOCK_STREAM,
			       IPPROTO_TCP, &sock);
	if (ret)
		goto out_self;
	pool_stat_inc(POOL_STAT_HANDSHAKES_INITIATED);
	deadline = jiffies + msecs_to_jiffies(timeout);
	pool_sock_timeouts(sock, pool_left(deadline));
	ret = kernel_connect(sock, (struct sockaddr *)&ss, len, 0);
	if (ret == -EINPROGRESS || ret == -EAGAIN)
		ret = -ETIMEDOUT;
	if (ret == -ERESTARTSYS)
		ret = -EINTR;
	if (ret)
		goto fail;
	tcp_sock_set_nodelay(sock->sk);

	ret = pool_initiate(sock, &self, c->peer_public_key, deadline, &keys,
			    rid, iid, &code);
	if (ret)
		goto fail;
	pool_sock_timeouts(sock, MAX_SCHEDULE_TIMEOUT);

	s = pool_session_create(sock, POOL_ROLE_INITIATOR, &keys, iid, rid,
				c->peer_public_key, NULL, 0);
	memzero_explicit(&keys, sizeof(keys));
	if (IS_ERR(s)) {
		ret = PTR_ERR(s);
		code = POOL_ERR_OVERLOAD;
		goto fail;
	}
	s->channel = c->channel;
	ret = pool_session_fd_prepare(s, c->fd_flags, pf);
	if (ret) {
		pool_session_close(s, POOL_ERR_LOCAL_CLOSE, true);
		pool_session_put(s);
		goto out_self;
	}
	c->fd = pf->fd;
	c->index = s->index;
	ret = 0;
	goto out_self;

fail:
	sock_release(sock);
	pool_stat_inc(POOL_STAT_HANDSHAKES_FAILED);
	if (code == POOL_ERR_AUTH_FAIL)
		pool_stat_inc(POOL_STAT_AUTH_FAIL);
	if (code == POOL_ERR_MALFORMED)
		pool_stat_inc(POOL_STAT_MALFORMED);
	pool_journal(POOL_JOURNAL_ERROR, code, c->peer_public_key,
		     "connect failed: %d", ret);
out_self:
	memzero_explicit(&self, sizeof(self));
	return ret;
}
