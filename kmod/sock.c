// SPDX-License-Identifier: GPL-2.0-only
/*
 * sock.c - what every POOL socket shares: addresses, non-blocking reads and
 * sends, installing and restoring our callbacks (the socket of a session, a
 * half-open connection or the listener), and the handshake packet framing.
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
int pool_sock_read(struct socket *sock, void *buf, size_t len)
{
	struct msghdr msg = { .msg_flags = MSG_DONTWAIT };
	struct kvec vec = { .iov_base = buf, .iov_len = len };

	return kernel_recvmsg(sock, &msg, &vec, 1, len, MSG_DONTWAIT);
}

/* ---- socket callbacks ---------------------------------------------------------- */

/*
 * Makes owner the socket's sk_user_data and installs the callbacks ours has,
 * saving the ones they replace in orig (the others NULL). The callbacks find
 * owner and orig under sk_callback_lock, so they never see half of this.
 */
void pool_sk_install(struct sock *sk, void *owner,
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
void pool_sk_restore(struct sock *sk, void *owner,
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

/* ---- handshake packets ------------------------------------------------------------ */

/* Encodes a handshake packet (flags, seq, ack, channel 0) MAC'ed with mk. */
void pool_hs_packet(u8 *out, u8 type, const u8 sid[16], u64 ts,
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
bool pool_hs_mac_ok(const u8 *raw, const u8 *payload, u16 len,
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

bool pool_hs_hdr_plain(const struct pool_hdr *h)
{
	return !h->flags && !h->seq && !h->ack && !h->channel;
}

int pool_sock_send_nb(struct socket *sock, const u8 *buf, size_t len)
{
	struct msghdr msg = { .msg_flags = MSG_DONTWAIT | MSG_NOSIGNAL };
	struct kvec vec = { .iov_base = (void *)buf, .iov_len = len };
	int ret = kernel_sendmsg(sock, &msg, &vec, 1, len);

	return ret == len ? 0 : (ret < 0 ? ret : -EAGAIN);
}
