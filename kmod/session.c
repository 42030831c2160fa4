// SPDX-License-Identifier: GPL-2.0-only
/*
 * session.c - the life of an established session: creation, references,
 * teardown, the accept queue and node-wide operations (sessfd.c: what its
 * file descriptors do).
 *
 * References (struct pool_session.ref):
 *   - the "network" reference, from pool_session_create() until the end of
 *     the teardown (pool_session_close_work());
 *   - one per open file descriptor (dropped in release);
 *   - one while the session waits in the accept queue;
 *   - short ones: lookups by index, a queued teardown.
 * The IDR entry is weak: pool_session_release() removes it under
 * sessions_lock and lookups use kref_get_unless_zero().
 *
 * Teardown order (pool_session_close_work, one per session, on pool_wq):
 *   1. closing set under lock (writers and readers' rx resumes stop);
 *   2. an authenticated CLOSE is queued if asked, the tx ring lingers up to
 *      POOL_CLOSE_LINGER while it drains;
 *   3. tx_dead under tx_lock: nothing queues tx work any more;
 *   4. socket callbacks restored (sock.c), then rx, tx, heartbeat and
 *      rekey work cancelled synchronously;
 *   5. socket shut down and released, direction keys destroyed (wiped);
 *   6. state CLOSED, readers woken (they drain the queue, then read 0);
 *   7. the network reference dropped.
 * pool_session_release() (last reference) frees the receive queue, the
 * buffers and the ring, and wipes the session.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/slab.h>
#include <linux/mm.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/anon_inodes.h>
#include <linux/poll.h>
#include <linux/uaccess.h>
#include <linux/sched/signal.h>
#include <linux/ktime.h>
#include <linux/random.h>
#include <net/sock.h>

#include "pool.h"

int pool_dir_init(struct pool_dir *d, const u8 key[32], const u8 mac[32])
{
	int ret = pool_aead_init(&d->aead, key, GFP_KERNEL);

	if (ret)
		return ret;
	pool_hmac_init(&d->hmac, mac, 32);
	memcpy(d->nonce_prefix, mac, sizeof(d->nonce_prefix));
	return 0;
}

void pool_dir_destroy(struct pool_dir *d)
{
	if (d->aead.tfm)
		pool_aead_destroy(&d->aead);
	memzero_explicit(&d->hmac, sizeof(d->hmac));
	memzero_explicit(d->nonce_prefix, sizeof(d->nonce_prefix));
}

static void pool_session_free_rxq(struct pool_session *s)
{
	struct pool_rxmsg *m, *tmp;

	list_for_each_entry_safe(m, tmp, &s->rxq, list) {
		list_del(&m->list);
		kfree(m->data);
		kfree(m);
	}
	s->rxq_len = 0;
	s->rxq_bytes = 0;
}

static void pool_session_release(struct kref *ref)
{
	struct pool_session *s = container_of(ref, struct pool_session, ref);

	spin_lock_bh(&pool_node.sessions_lock);
	if (idr_find(&pool_node.sessions, s->index) == s)
		idr_remove(&pool_node.sessions, s->index);
	spin_unlock_bh(&pool_node.sessions_lock);

	pool_session_free_rxq(s);
	kfree(s->rx_buf);	/* NULL after a teardown */
	kfree_sensitive(s->tx_buf);
	kvfree(s->ring);
	memzero_explicit(s->rk, sizeof(s->rk));
	memzero_explicit(s->rekey_secret, sizeof(s->rekey_secret));
	kfree_sensitive(s);
}

void pool_session_put(struct pool_session *s)
{
	kref_put(&s->ref, pool_session_release);
}

struct pool_session *pool_session_get_index(u32 index)
{
	struct pool_session *s;

	spin_lock_bh(&pool_node.sessions_lock);
	s = idr_find(&pool_node.sessions, index);
	if (s && !kref_get_unless_zero(&s->ref))
		s = NULL;
	spin_unlock_bh(&pool_node.sessions_lock);
	return s;
}

/* Next session at index >= *id, with a reference; skips dying ones. */
struct pool_session *pool_session_next(int *id)
{
	struct pool_session *s;

	spin_lock_bh(&pool_node.sessions_lock);
	for (;;) {
		s = idr_get_next(&pool_node.sessions, id);
		if (!s || kref_get_unless_zero(&s->ref))
			break;
		(*id)++;
	}
	spin_unlock_bh(&pool_node.sessions_lock);
	return s;
}

/* ---- creation and teardown -------------------------------------------------- */

static void pool_session_close_work(struct work_struct *w)
{
	struct pool_session *s = container_of(w, struct pool_session, close_work);
	struct socket *sock;
	/* local reasons travel as a normal close (code 0) */
	__be16 code = cpu_to_be16(s->close_code <= POOL_ERR_SENT_MAX ?
				  s->close_code : 0);
	bool was_active;

	if (s->close_send) {
		mutex_lock(&s->tx_lock);
		pool_send_locked(s, POOL_PKT_CLOSE, 0, 0, &code, sizeof(code));
		mutex_unlock(&s->tx_lock);
		wait_event_timeout(s->wait, pool_ring_empty(s) ||
				   READ_ONCE(s->tx_dead), POOL_CLOSE_LINGER);
	}
	mutex_lock(&s->tx_lock);
	s->tx_dead = true;
	mutex_unlock(&s->tx_lock);

	pool_sock_uninstall(s);
	cancel_work_sync(&s->rx_work);
	cancel_delayed_work_sync(&s->stall_work);
	cancel_work_sync(&s->tx_work);
	cancel_delayed_work_sync(&s->hb_work);
	cancel_delayed_work_sync(&s->rekey_work);
	cancel_delayed_work_sync(&s->window_work);

	mutex_lock(&s->tx_lock);
	sock = s->sock;
	s->sock = NULL;
	pool_dir_destroy(&s->tx);
	/* a closed session may wait long in the accept queue: keep it light */
	kfree_sensitive(s->tx_buf);
	s->tx_buf = NULL;
	kvfree(s->ring);
	s->ring = NULL;
	mutex_unlock(&s->tx_lock);
	if (sock) {
		kernel_sock_shutdown(sock, SHUT_RDWR);
		sock_release(sock);
	}
	pool_dir_destroy(&s->rx);
	if (s->rx_next_valid)
		pool_dir_destroy(&s->rx_next);
	s->rx_next_valid = false;
	kfree_sensitive(s->rx_buf);	/* the last plaintext received */
	s->rx_buf = NULL;

	spin_lock_bh(&s->lock);
	was_active = s->state != POOL_STATE_CLOSED;
	s->state = POOL_STATE_CLOSED;
	s->peer_closed = true;
	spin_unlock_bh(&s->lock);
	wake_up_all(&s->wait);

	if (was_active) {
		atomic_dec(&pool_node.nr_active);
		pool_stat_inc(POOL_STAT_SESSIONS_CLOSED);
		pool_journal(POOL_JOURNAL_DISCONNECT, s->close_code, s->peer_key,
			     "session %u closed", s->index);
	}
	pool_session_put(s);	/* the network reference */
	pool_session_put(s);	/* this work's */
}

/*
 * Starts the teardown once: code is journaled, and sent in an authenticated
 * CLOSE if send (codes that travel on the wire only).
 */
void pool_session_close(struct pool_session *s, u16 code, bool send)
{
	spin_lock_bh(&s->lock);
	if (s->closing) {
		spin_unlock_bh(&s->lock);
		return;
	}
	s->closing = true;
	s->close_code = code;
	s->close_send = send;
	if (s->state < POOL_STATE_CLOSING)
		s->state = POOL_STATE_CLOSING;
	kref_get(&s->ref);
	queue_work(pool_node.wq, &s->close_work);
	spin_unlock_bh(&s->lock);
	wake_up_all(&s->wait);
}

static void pool_fill_peer_addr(struct pool_session *s, struct socket *sock)
{
	struct sockaddr_storage ss = {};

	if (kernel_getpeername(sock, (struct sockaddr *)&ss) >= 0)
		pool_ip_from_sockaddr(&ss, s->peer_ip, &s->peer_port);
	memset(&ss, 0, sizeof(ss));
	if (kernel_getsockname(sock, (struct sockaddr *)&ss) >= 0) {
		u8 ip[16];

		pool_ip_from_sockaddr(&ss, ip, &s->local_port);
	}
}

/*
 * A session from completed handshake keys. The socket is handed over (on
 * success only); first (the responder's ACK) goes out before anything else.
 * Returns the session with two references: the network's and the caller's.
 */
struct pool_session *pool_session_create(struct socket *sock, u8 role,
					 const struct pool_keys *keys,
					 const u8 iid[POOL_ID_LEN],
					 const u8 rid[POOL_ID_LEN],
					 const u8 peer_key[POOL_KEY_LEN],
					 const u8 *first, size_t first_len)
{
	struct pool_session *s;
	u32 max = READ_ONCE(pool_node.params.max_sessions);
	int ret, id;

	if (atomic_inc_return(&pool_node.nr_active) > max) {
		atomic_dec(&pool_node.nr_active);
		return ERR_PTR(-EBUSY);
	}
	ret = -ENOMEM;
	s = kzalloc(sizeof(*s), GFP_KERNEL);
	if (!s)
		goto err_count;
	kref_init(&s->ref);
	INIT_LIST_HEAD(&s->accept_entry);
	INIT_LIST_HEAD(&s->rxq);
	spin_lock_init(&s->lock);
	spin_lock_init(&s->ring_lock);
	mutex_init(&s->tx_lock);
	init_waitqueue_head(&s->wait);
	INIT_WORK(&s->rx_work, pool_rx_work);
	INIT_WORK(&s->tx_work, pool_tx_work);
	INIT_WORK(&s->close_work, pool_session_close_work);
	INIT_DELAYED_WORK(&s->hb_work, pool_hb_work);
	INIT_DELAYED_WORK(&s->rekey_work, pool_rekey_work);
	INIT_DELAYED_WORK(&s->stall_work, pool_stall_work);
	INIT_DELAYED_WORK(&s->window_work, pool_window_work);
	pool_flow_init(s);

	s->tx_buf = kmalloc(POOL_MAX_PAYLOAD + 1, GFP_KERNEL);
	s->rx_buf = kmalloc(POOL_MAX_PAYLOAD + 1, GFP_KERNEL);
	s->ring = kvmalloc(POOL_RING_SIZE, GFP_KERNEL);
	if (!s->tx_buf || !s->rx_buf || !s->ring)
		goto err_free;

	ret = pool_dir_init(&s->tx, keys->send_key, keys->send_mac);
	if (ret)
		goto err_free;
	ret = pool_dir_init(&s->rx, keys->recv_key, keys->recv_mac);
	if (ret)
		goto err_tx;

	s->role = role;
	s->state = POOL_STATE_ESTABLISHED;
	s->tx_seq = keys->send_seq0;
	s->rx_top = keys->recv_seq0;
	memcpy(s->rk, keys->rk, sizeof(s->rk));
	memcpy(s->session_id, iid, POOL_ID_LEN);
	memcpy(s->session_id + POOL_ID_LEN, rid, POOL_ID_LEN);
	memcpy(s->own_id, role == POOL_ROLE_INITIATOR ? iid : rid, POOL_ID_LEN);
	memcpy(s->peer_id, role == POOL_ROLE_INITIATOR ? rid : iid, POOL_ID_LEN);
	memcpy(s->peer_key, peer_key, POOL_KEY_LEN);
	s->established_ns = ktime_get_real_ns();
	s->established_boot = ktime_get_boottime_ns();
	s->tp_last_boot = s->established_boot;
	s->rekey_started = ktime_get_boottime_seconds();
	mutex_lock(&s->tx_lock);	/* not yet visible: for lockdep's sake */
	pool_tx_limits_reset(s);
	mutex_unlock(&s->tx_lock);
	s->last_rx = jiffies;
	s->hb_answered = true;
	s->tel_local.mtu = 1500;
	pool_fill_peer_addr(s, sock);

	if (first_len)
		s->ring_prod = pool_ring_put(s->ring, 0, first, first_len);

	/* The index is reserved now and the session published under it last, whole. */
	idr_preload(GFP_KERNEL);
	spin_lock_bh(&pool_node.sessions_lock);
	id = idr_alloc_cyclic(&pool_node.sessions, NULL, 0, INT_MAX, GFP_NOWAIT);
	spin_unlock_bh(&pool_node.sessions_lock);
	idr_preload_end();
	if (id < 0) {
		ret = id;
		goto err_rx;
	}
	s->index = id;
	s->sock = sock;

	kref_get(&s->ref);	/* the caller's */
	pool_sock_install(s);
	pool_timers_start(s);
	queue_work(pool_node.wq, &s->rx_work);
	if (first_len)
		queue_work(pool_node.wq, &s->tx_work);

	spin_lock_bh(&pool_node.sessions_lock);
	idr_replace(&pool_node.sessions, s, id);
	spin_unlock_bh(&pool_node.sessions_lock);

	pool_stat_inc(POOL_STAT_SESSIONS_OPENED);
	pool_stat_inc(POOL_STAT_HANDSHAKES_COMPLETED);
	pool_peer_note(peer_key, true);
	pool_journal(POOL_JOURNAL_CONNECT, 0, peer_key, "%s session %u",
		     role == POOL_ROLE_INITIATOR ? "connect" : "accept", id);
	return s;

err_rx:
	pool_dir_destroy(&s->rx);
err_tx:
	pool_dir_destroy(&s->tx);
err_free:
	kvfree(s->ring);
	kfree(s->rx_buf);
	kfree(s->tx_buf);
	kfree_sensitive(s);	/* holds the rekey chaining key */
err_count:
	atomic_dec(&pool_node.nr_active);
	return ERR_PTR(ret);
}

/* ---- accept queue and node-wide operations ------------------------------ */

/*
 * Takes over the caller's reference. The queue is bounded by max_sessions:
 * beyond it, the oldest session that has already closed is dropped.
 */
void pool_session_enqueue_accept(struct pool_session *s)
{
	struct pool_session *old = NULL, *q;

	spin_lock_bh(&pool_node.sessions_lock);
	if (pool_node.accept_len >= READ_ONCE(pool_node.params.max_sessions)) {
		list_for_each_entry(q, &pool_node.accept_queue, accept_entry) {
			if (READ_ONCE(q->state) == POOL_STATE_CLOSED) {
				old = q;
				list_del_init(&q->accept_entry);
				q->queued = false;
				pool_node.accept_len--;
				break;
			}
		}
	}
	list_add_tail(&s->accept_entry, &pool_node.accept_queue);
	s->queued = true;
	pool_node.accept_len++;
	spin_unlock_bh(&pool_node.sessions_lock);
	wake_up_interruptible(&pool_node.accept_wait);
	if (old)
		pool_session_put(old);
}

static struct pool_session *pool_accept_take(void)
{
	struct pool_session *s = NULL;

	spin_lock_bh(&pool_node.sessions_lock);
	if (!list_empty(&pool_node.accept_queue)) {
		s = list_first_entry(&pool_node.accept_queue,
				     struct pool_session, accept_entry);
		list_del_init(&s->accept_entry);
		s->queued = false;
		pool_node.accept_len--;
	}
	spin_unlock_bh(&pool_node.sessions_lock);
	return s;
}

static void pool_accept_putback(struct pool_session *s)
{
	spin_lock_bh(&pool_node.sessions_lock);
	list_add(&s->accept_entry, &pool_node.accept_queue);
	s->queued = true;
	pool_node.accept_len++;
	spin_unlock_bh(&pool_node.sessions_lock);
}

/* On success pf holds the session's descriptor, to publish once a is copied out. */
int pool_session_accept(struct pool_accept *a, struct pool_fd *pf)
{
	struct pool_session *s;
	long left;
	int ret;

	if (a->fd_flags & ~(O_CLOEXEC | O_NONBLOCK))
		return -EINVAL;
	left = a->timeout_ms == POOL_ACCEPT_FOREVER ? MAX_SCHEDULE_TIMEOUT :
	       (long)msecs_to_jiffies(a->timeout_ms);
	for (;;) {
		s = pool_accept_take();
		if (s)
			break;
		if (!a->timeout_ms)
			return -EAGAIN;
		if (!left)
			return -ETIMEDOUT;
		left = wait_event_interruptible_timeout(pool_node.accept_wait,
				READ_ONCE(pool_node.accept_len) > 0, left);
		if (left < 0)
			return left;
	}
	ret = pool_session_fd_prepare(s, a->fd_flags, pf);
	if (ret) {
		pool_accept_putback(s);
		return ret;
	}
	a->fd = pf->fd;
	a->index = s->index;
	memcpy(a->peer_public_key, s->peer_key, POOL_KEY_LEN);
	return 0;
}

void pool_close_all(u16 code)
{
	struct pool_session *s;
	int id = 0;

	while ((s = pool_session_next(&id))) {
		pool_session_close(s, code, true);
		pool_session_put(s);
		id++;
	}
}

void pool_close_peer(const u8 key[POOL_KEY_LEN])
{
	struct pool_session *s;
	int id = 0;

	while ((s = pool_session_next(&id))) {
		if (!memcmp(s->peer_key, key, POOL_KEY_LEN))
			pool_session_close(s, POOL_ERR_AUTH_FAIL, true);
		pool_session_put(s);
		id++;
	}
}

u32 pool_peer_active(const u8 key[POOL_KEY_LEN])
{
	struct pool_session *s;
	int id = 0;
	u32 n = 0;

	while ((s = pool_session_next(&id))) {
		if (!memcmp(s->peer_key, key, POOL_KEY_LEN) &&
		    !READ_ONCE(s->closing))
			n++;
		pool_session_put(s);
		id++;
	}
	return n;
}

int pool_session_list(struct pool_session_info __user *out, u32 cap,
		      u32 *count, u32 *total)
{
	struct pool_session_info info;
	struct pool_session *s;
	int id = 0, ret = 0;
	u32 n = 0, t = 0;

	while ((s = pool_session_next(&id))) {
		if (n < cap && !ret) {
			pool_session_info(s, &info);
			if (copy_to_user(&out[n], &info, sizeof(info)))
				ret = -EFAULT;
			else
				n++;
		}
		t++;
		pool_session_put(s);
		id++;
	}
	*count = n;
	*total = t;
	return ret;
}

/* Module exit: nothing holds an fd (they pin the module). */
void pool_sessions_exit(void)
{
	struct pool_session *s;

	pool_close_all(POOL_ERR_LOCAL_CLOSE);
	flush_workqueue(pool_node.wq);
	while ((s = pool_accept_take()))
		pool_session_put(s);
	flush_workqueue(pool_node.wq);
}
