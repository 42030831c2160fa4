// SPDX-License-Identifier: GPL-2.0-only
/*
 * send.c - the send work of established sessions: drains the session's ring
 * (session.c is its producer) into the socket without blocking.
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
			/*
			 * The connection is broken, but the peer may have said
			 * why first: a CLOSE can wait unread in the receive
			 * queue, ahead of the reset that broke the send side.
			 * The receive work reads to the end of what arrived and
			 * ends the session with the peer's code, or PEER_DEAD.
			 */
			WRITE_ONCE(s->tx_dead, true);
			wake_up_all(&s->wait);
			queue_work(pool_node.wq, &s->rx_work);
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
