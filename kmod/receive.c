// SPDX-License-Identifier: GPL-2.0-only
/*
 * receive.c - the receive work of established sessions: framing, the sequence
 * check, authentication and decryption, dispatch by packet type, delivery
 * into the session's receive queue within the window it advertised (flow.c).
 * The stream is always read to its end: flow control, not a stalled reader,
 * bounds the queue.
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

/* ---- transport receive -------------------------------------------------------- */

/*
 * TCP delivers a genuine stream whole and in order, so a receiver accepts
 * exactly the next sequence number. A packet that fails a check means the
 * stream was altered: dropping it would leave a hole the application cannot
 * see (an injected segment takes the place of a genuine message), so the
 * session ends instead, telling the peer why in a CLOSE sealed with our own
 * keys, which the alteration did not touch (docs/protocol.md section 4b).
 */
static bool pool_rx_reject(struct pool_session *s, enum pool_stat stat,
			   u16 code, const char *what)
{
	spin_lock_bh(&s->lock);
	s->dropped++;
	spin_unlock_bh(&s->lock);
	if (stat == POOL_STAT_BAD_HMAC)
		/* anyone who can inject into the TCP stream causes these */
		pool_fail_unauth(stat, code, s->peer_key, what);
	else
		pool_fail(stat, code, s->peer_key, what);
	/* a local reason (MALFORMED) has no wire code: the connection just ends */
	pool_session_close(s, code, code <= POOL_ERR_SENT_MAX);
	return false;
}

/*
 * Queues a copy of an authenticated message (pt lives in the session's
 * rx_buf). False if out of memory: the stream would have a hole, so the
 * caller closes the session instead of dropping the message.
 */
static bool pool_rx_deliver(struct pool_session *s, const u8 *pt, u32 len,
			    u8 channel)
{
	struct pool_rxmsg *m = kmalloc(sizeof(*m), GFP_KERNEL);
	u8 *data = len ? kmemdup(pt, len, GFP_KERNEL) : NULL;

	if (!m || (len && !data)) {
		kfree(m);
		kfree(data);
		return false;
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
	return true;
}

/* An authenticated, decrypted packet; returns false to stop reading. */
static bool pool_rx_dispatch(struct pool_session *s, const struct pool_hdr *h,
			     u8 *pt, u32 len)
{
	bool want = true;
	u16 code;

	switch (h->type) {
	case POOL_PKT_DATA:
		if (!pool_flow_rx_data(s, len)) {
			pool_fail(POOL_STAT_MALFORMED, POOL_ERR_FLOW_VIOLATION,
				  s->peer_key, "flow control: DATA beyond the window");
			pool_session_close(s, POOL_ERR_FLOW_VIOLATION, true);
			return false;
		}
		if (!pool_rx_deliver(s, pt, len, h->channel)) {
			pool_fail(POOL_STAT_OVERLOAD, POOL_ERR_OVERLOAD,
				  s->peer_key, "receive: out of memory");
			pool_session_close(s, POOL_ERR_OVERLOAD, true);
			return false;
		}
		return true;
	case POOL_PKT_WINDOW:
		want = len == POOL_WINDOW_PT_LEN;
		if (want && pool_flow_rx_window(s, pt)) {
			pool_fail(POOL_STAT_MALFORMED, POOL_ERR_FLOW_VIOLATION,
				  s->peer_key, "flow control: bad WINDOW");
			pool_session_close(s, POOL_ERR_FLOW_VIOLATION, true);
			return false;
		}
		break;
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
	default:	/* framing let no other type through */
		break;
	}
	if (!want)
		return pool_rx_reject(s, POOL_STAT_MALFORMED, POOL_ERR_MALFORMED,
				      "transport: bad plaintext length");
	return true;
}

/*
 * Checks and consumes the complete packet in rx_hdr_raw/rx_buf. Nothing is
 * allocated for a packet before it authenticated: a message is copied out of
 * rx_buf only once its HMAC, sequence and tag all checked out.
 */
static bool pool_rx_packet(struct pool_session *s)
{
	const struct pool_hdr *h = &s->rx_hdr;
	u32 plen = h->payload_len;
	struct pool_hmac_ctx ctx;
	u8 mac[POOL_MAC_LEN], nonce[POOL_NONCE_LEN];
	u8 *p = s->rx_buf;

	/* 1. HMAC over the header (MAC zeroed) and ciphertext, constant time */
	memset(s->rx_hdr_raw + POOL_HDR_MAC_OFF, 0, POOL_MAC_LEN);
	ctx = s->rx.hmac;
	pool_hmac_update(&ctx, s->rx_hdr_raw, POOL_HDR_LEN);
	pool_hmac_update(&ctx, p, plen);
	pool_hmac_final(&ctx, mac);
	memzero_explicit(&ctx, sizeof(ctx));
	if (crypto_memneq(mac, h->mac, POOL_MAC_LEN))
		return pool_rx_reject(s, POOL_STAT_BAD_HMAC, POOL_ERR_AUTH_FAIL,
				      "transport: bad header hmac");
	/* authentic, so only the peer itself can have got this wrong */
	if (memcmp(h->session_id, s->session_id, POOL_SESSION_ID_LEN))
		return pool_rx_reject(s, POOL_STAT_MALFORMED, POOL_ERR_MALFORMED,
				      "transport: wrong session id");
	/* 2. the next sequence number, nothing else: no gap, no repeat */
	if (h->seq != s->rx_top + 1)
		return pool_rx_reject(s, POOL_STAT_REPLAY_DROP, POOL_ERR_SEQ_INVALID,
				      "transport: sequence out of order");
	/* 3. decryption */
	memcpy(nonce, s->rx.nonce_prefix, 4);
	put_unaligned_be64(h->seq, nonce + 4);
	if (pool_aead_decrypt(&s->rx.aead, nonce, p, plen, NULL, 0))
		return pool_rx_reject(s, POOL_STAT_DECRYPT_FAIL, POOL_ERR_DECRYPT_FAIL,
				      "transport: decryption failed");
	WRITE_ONCE(s->rx_top, h->seq);
	WRITE_ONCE(s->last_rx, jiffies);
	if (h->ack > s->peer_acked)
		WRITE_ONCE(s->peer_acked, h->ack);
	spin_lock_bh(&s->lock);
	s->packets_recv++;
	s->bytes_recv += POOL_HDR_LEN + plen;
	spin_unlock_bh(&s->lock);
	pool_stat_inc(POOL_STAT_PACKETS_RECV);
	pool_stat_add(POOL_STAT_BYTES_RECV, POOL_HDR_LEN + plen);
	return pool_rx_dispatch(s, h, p, plen - POOL_TAG_LEN);
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
				pool_rx_reject(s, POOL_STAT_MALFORMED,
					       POOL_ERR_MALFORMED,
					       "transport: bad framing");
				return;
			}
		}
		want = POOL_HDR_LEN + s->rx_hdr.payload_len - s->rx_have;
		if (want) {
			ret = pool_sock_read(sock, s->rx_buf + s->rx_have -
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
	/* once the send side broke, nothing more can arrive: see pool_tx_work */
	if (ret == -EAGAIN && !READ_ONCE(s->tx_dead)) {
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
	pool_rx_reject(s, POOL_STAT_MALFORMED, POOL_ERR_MALFORMED,
		       "transport: packet truncated");
}
