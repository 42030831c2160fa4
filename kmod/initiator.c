// SPDX-License-Identifier: GPL-2.0-only
/*
 * initiator.c - the initiator handshake of CONNECT, blocking in the calling
 * process with a deadline, then the session and its descriptor.
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
