// SPDX-License-Identifier: GPL-2.0-only
/*
 * listener.c - the dual-stack listener and the half-open connections it accepts:
 * their lifetime (allocation, socket callbacks, the 10 s reap) and module exit.
 * responder.c runs their handshake.
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

/* ---- half-open connections ------------------------------------------------------ */

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

void pool_hconn_uninstall(struct pool_hconn *hc)
{
	pool_sk_restore(hc->sock->sk, hc, &hc->orig);
}

/* Brings the reap forward; never once it runs (it frees the hconn). */
void pool_hconn_reap_now(struct pool_hconn *hc)
{
	spin_lock_bh(&pool_node.hconn_lock);
	hc->reap_asked = true;
	if (!hc->reaping)
		mod_delayed_work(pool_node.wq, &hc->reap, 0);
	spin_unlock_bh(&pool_node.hconn_lock);
}

static void pool_hconn_reap(struct work_struct *w)
{
	struct pool_hconn *hc = container_of(to_delayed_work(w),
					     struct pool_hconn, reap);

	spin_lock_bh(&pool_node.hconn_lock);
	if (!hc->reap_asked && READ_ONCE(hc->spoke) && time_before(jiffies, hc->deadline)) {
		/* it spoke within POOL_HALFOPEN_FIRST_BYTE: its handshake has the whole time */
		queue_delayed_work(pool_node.wq, &hc->reap, hc->deadline - jiffies);
		spin_unlock_bh(&pool_node.hconn_lock);
		return;
	}
	hc->reaping = true;
	spin_unlock_bh(&pool_node.hconn_lock);

	mutex_lock(&hc->mutex);
	hc->dead = true;
	if (hc->sock)
		pool_hconn_uninstall(hc);
	mutex_unlock(&hc->mutex);
	cancel_work_sync(&hc->work);

	if (hc->sock) {
		if (!hc->finished && READ_ONCE(hc->spoke)) {
			pool_fail_unauth(POOL_STAT_HANDSHAKES_FAILED, POOL_ERR_TIMEOUT, NULL,
					 "handshake: responder timeout");
		} else if (!hc->finished) {
			pool_stat_inc(POOL_STAT_HANDSHAKES_FAILED);
			pool_fail_unauth(POOL_STAT_HALFOPEN_SILENT, POOL_ERR_TIMEOUT, NULL,
					 "handshake: nothing received within 2 s");
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

/* Whether a and b (16-byte, IPv4 mapped) are in one /24 (IPv4) or /64 (IPv6). */
static bool pool_same_prefix(const u8 a[16], const u8 b[16])
{
	if (ipv6_addr_v4mapped((const struct in6_addr *)a))
		return !memcmp(a, b, 15);
	return !memcmp(a, b, 8);
}

/*
 * NULL if one more half-open connection from ip fits the limits of pool.h,
 * otherwise why not. hconn_lock held.
 */
static const char *pool_hconn_admit(const u8 ip[16], bool known, enum pool_stat *stat)
{
	u32 from_addr = 0, from_prefix = 0;
	struct pool_hconn *hc;

	lockdep_assert_held(&pool_node.hconn_lock);
	*stat = POOL_STAT_OVERLOAD;
	if (pool_node.nr_hconns >= POOL_HALFOPEN_MAX)
		return "too many half-open connections";
	*stat = POOL_STAT_HALFOPEN_LIMITED;
	if (!known && pool_node.nr_hconns >= POOL_HALFOPEN_MAX - POOL_HALFOPEN_RESERVED)
		return "half-open share of unknown addresses used up";
	list_for_each_entry(hc, &pool_node.hconns, list) {
		if (!memcmp(hc->ip, ip, 16))
			from_addr++;
		if (pool_same_prefix(hc->ip, ip))
			from_prefix++;
	}
	if (from_addr >= POOL_HALFOPEN_PER_ADDR)
		return "too many half-open connections from one address";
	if (from_prefix >= POOL_HALFOPEN_PER_PREFIX)
		return "too many half-open connections from one prefix";
	return NULL;
}

static void pool_accept_one(struct socket *newsock)
{
	struct sockaddr_storage ss = {};
	struct pool_hconn *hc;
	enum pool_stat stat;
	const char *refused;
	u8 ip[16];
	u16 port;
	bool known;

	if (kernel_getpeername(newsock, (struct sockaddr *)&ss) < 0)
		goto drop;
	pool_ip_from_sockaddr(&ss, ip, &port);
	known = pool_peer_is_endpoint(ip);

	spin_lock_bh(&pool_node.hconn_lock);
	refused = pool_hconn_admit(ip, known, &stat);
	if (!refused)
		pool_node.nr_hconns++;
	spin_unlock_bh(&pool_node.hconn_lock);
	if (refused) {
		pool_fail_unauth(stat, POOL_ERR_OVERLOAD, NULL, refused);
		goto drop;
	}

	hc = kzalloc(sizeof(*hc), GFP_KERNEL);
	if (!hc) {
		spin_lock_bh(&pool_node.hconn_lock);
		pool_node.nr_hconns--;
		spin_unlock_bh(&pool_node.hconn_lock);
		goto drop;
	}
	memcpy(hc->ip, ip, 16);
	hc->port = port;
	hc->deadline = jiffies + POOL_HALFOPEN_TIMEOUT;
	hc->sock = newsock;
	mutex_init(&hc->mutex);
	INIT_WORK(&hc->work, pool_hconn_work);
	INIT_DELAYED_WORK(&hc->reap, pool_hconn_reap);
	tcp_sock_set_nodelay(newsock->sk);

	spin_lock_bh(&pool_node.hconn_lock);
	list_add_tail(&hc->list, &pool_node.hconns);
	spin_unlock_bh(&pool_node.hconn_lock);
	/* the deadline first: once the callbacks run, the hconn may be reaped */
	queue_delayed_work(pool_node.wq, &hc->reap, POOL_HALFOPEN_FIRST_BYTE);

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
		list_for_each_entry(hc, &pool_node.hconns, list) {
			hc->reap_asked = true;
			if (!hc->reaping)
				mod_delayed_work(pool_node.wq, &hc->reap, 0);
		}
		empty = list_empty(&pool_node.hconns);
		spin_unlock_bh(&pool_node.hconn_lock);
		if (empty)
			break;
		flush_workqueue(pool_node.wq);
	}
}
