// SPDX-License-Identifier: GPL-2.0-only
/*
 * flow.c - per-session flow control (docs/protocol.md section 4a).
 *
 * A receiver grants its peer a byte budget for DATA: WINDOW(consumed,
 * window) lets the peer send until the cost of its DATA reaches consumed +
 * window. The sender never exceeds it, so the receiver can always read the
 * TCP stream to its end and the control packets queued behind DATA
 * (HEARTBEAT, REKEY, CLOSE) are never stuck behind a reader that stopped
 * reading. DATA beyond the budget closes the session (FLOW_VIOLATION).
 *
 * Locking: the send side (tx_sent, tx_limit) under tx_lock; the receive
 * side (rx_recv, rx_consumed, rx_limit, rx_window) under the session lock.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/workqueue.h>

#include "pool.h"

static u64 pool_flow_cost(u32 len)
{
	return (u64)len + POOL_FLOW_MSG_COST;
}

void pool_flow_init(struct pool_session *s)
{
	s->flow.tx_limit = POOL_FLOW_INITIAL_WINDOW;
	s->flow.rx_limit = POOL_FLOW_INITIAL_WINDOW;
	s->flow.rx_window = POOL_FLOW_INITIAL_WINDOW;
}

/* ---- send side ---------------------------------------------------------- */

bool pool_flow_tx_room(struct pool_session *s, u32 len)
{
	lockdep_assert_held(&s->tx_lock);
	return s->flow.tx_sent + pool_flow_cost(len) <= s->flow.tx_limit;
}

/* Unlocked peek for a writer's wait condition; rechecked under tx_lock. */
bool pool_flow_tx_maybe_room(struct pool_session *s, u32 len)
{
	return READ_ONCE(s->flow.tx_sent) + pool_flow_cost(len) <=
	       READ_ONCE(s->flow.tx_limit);
}

void pool_flow_tx_sent(struct pool_session *s, u32 len)
{
	lockdep_assert_held(&s->tx_lock);
	WRITE_ONCE(s->flow.tx_sent, s->flow.tx_sent + pool_flow_cost(len));
}

/* rx_work: a WINDOW from the peer. -EPROTO closes the session. */
int pool_flow_rx_window(struct pool_session *s, const u8 pt[POOL_WINDOW_PT_LEN])
{
	u64 consumed = get_unaligned_be64(pt);
	u32 window = get_unaligned_be32(pt + 8);
	int ret = 0;

	if (get_unaligned_be32(pt + 12) || window > POOL_FLOW_MAX_WINDOW)
		return -EPROTO;
	mutex_lock(&s->tx_lock);
	/* the peer cannot have consumed more than we sent */
	if (consumed > s->flow.tx_sent)
		ret = -EPROTO;
	else if (consumed + window > s->flow.tx_limit)
		WRITE_ONCE(s->flow.tx_limit, consumed + window);
	mutex_unlock(&s->tx_lock);
	if (!ret)
		wake_up_interruptible_all(&s->wait);
	return ret;
}

/* ---- receive side ---------------------------------------------------------- */

/* rx_work: a DATA of len plaintext bytes arrived; false if beyond the budget. */
bool pool_flow_rx_data(struct pool_session *s, u32 len)
{
	bool ok;

	spin_lock_bh(&s->lock);
	s->flow.rx_recv += pool_flow_cost(len);
	ok = s->flow.rx_recv <= s->flow.rx_limit;
	spin_unlock_bh(&s->lock);
	return ok;
}

/*
 * Queues the WINDOW, unless the session is closing: its teardown cancels
 * window_work once, after setting closing under the same lock, so a work
 * queued later (a process reading what was left, or ACCEPTing a session
 * that closed in the accept queue) would outlive the session.
 */
static void pool_flow_grant_locked(struct pool_session *s)
{
	lockdep_assert_held(&s->lock);
	if (!s->closing)
		queue_delayed_work(pool_node.wq, &s->window_work, 0);
}

/*
 * The process took a message of len bytes off the receive queue. A new
 * WINDOW goes out once a quarter of the window was consumed since the last,
 * not for every message.
 */
void pool_flow_consumed_locked(struct pool_session *s, u32 len)
{
	lockdep_assert_held(&s->lock);
	s->flow.rx_consumed += pool_flow_cost(len);
	if (s->flow.rx_consumed + s->flow.rx_window >=
	    s->flow.rx_limit + s->flow.rx_window / 4)
		pool_flow_grant_locked(s);
}

/* A process holds the session now (ACCEPT, ATTACH, CONNECT): the full window. */
void pool_flow_open(struct pool_session *s)
{
	spin_lock_bh(&s->lock);
	if (s->flow.rx_window < POOL_FLOW_WINDOW) {
		s->flow.rx_window = POOL_FLOW_WINDOW;
		pool_flow_grant_locked(s);
	}
	spin_unlock_bh(&s->lock);
}

void pool_window_work(struct work_struct *w)
{
	struct pool_session *s = container_of(to_delayed_work(w),
					      struct pool_session, window_work);
	u8 pt[POOL_WINDOW_PT_LEN] = {};
	u64 consumed;
	u32 window;
	int ret;

	if (READ_ONCE(s->closing))
		return;
	mutex_lock(&s->tx_lock);
	spin_lock_bh(&s->lock);
	consumed = s->flow.rx_consumed;
	window = s->flow.rx_window;
	/*
	 * Raised before the WINDOW can reach the peer, never lowered: DATA
	 * sent on it must find the limit already there.
	 */
	if (consumed + window > s->flow.rx_limit)
		s->flow.rx_limit = consumed + window;
	spin_unlock_bh(&s->lock);
	put_unaligned_be64(consumed, pt);
	put_unaligned_be32(window, pt + 8);
	ret = pool_send_locked(s, POOL_PKT_WINDOW, 0, 0, pt, sizeof(pt));
	mutex_unlock(&s->tx_lock);
	/* the ring's control reserve is full: the peer gets it a little later */
	if (ret == -ENOBUFS && !READ_ONCE(s->closing))
		queue_delayed_work(pool_node.wq, &s->window_work, HZ / 20 ?: 1);
}
