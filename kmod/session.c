// SPDX-License-Identifier: GPL-2.0-only
/*
 * session.c - the life of an established session and its file descriptors.
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
	if (s->rx_payload != s->rx_buf)
		kfree(s->rx_payload);
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

/* ---- tx ring ------------------------------------------------------------ */

bool pool_ring_room(struct pool_session *s, u32 len, bool ctrl)
{
	u32 used;

	spin_lock_bh(&s->ring_lock);
	used = pool_ring_used(s->ring_prod, s->ring_cons);
	spin_unlock_bh(&s->ring_lock);
	return used + len <= (ctrl ? POOL_RING_SIZE : POOL_RING_DATA);
}

static void pool_ring_publish(struct pool_session *s, u32 pos)
{
	spin_lock_bh(&s->ring_lock);
	s->ring_prod = pos;
	spin_unlock_bh(&s->ring_lock);
}

static bool pool_ring_empty(struct pool_session *s)
{
	bool empty;

	spin_lock_bh(&s->ring_lock);
	empty = s->ring_prod == s->ring_cons;
	spin_unlock_bh(&s->ring_lock);
	return empty;
}

/*
 * Seals the len plaintext bytes in s->tx_buf as one packet and queues it.
 * The caller checked ring room for POOL_HDR_LEN + len + 16.
 */
static int pool_seal(struct pool_session *s, u8 type, u16 flags, u8 channel,
		     u32 len)
{
	struct pool_hmac_ctx ctx;
	struct pool_hdr h = {};
	u8 raw[POOL_HDR_LEN];
	u8 nonce[POOL_NONCE_LEN];
	u32 pos;
	int ret;

	lockdep_assert_held(&s->tx_lock);

	h.seq = s->tx_seq + 1;
	memcpy(nonce, s->tx.nonce_prefix, 4);
	put_unaligned_be64(h.seq, nonce + 4);
	ret = pool_aead_encrypt(&s->tx.aead, nonce, s->tx_buf, len, NULL, 0);
	if (ret)
		return ret;
	s->tx_seq = h.seq;

	h.type = type;
	h.flags = flags | POOL_F_ENCRYPTED;
	h.ack = READ_ONCE(s->rx_top);
	memcpy(h.session_id, s->session_id, sizeof(h.session_id));
	h.timestamp = ktime_get_real_ns();
	h.payload_len = len + POOL_TAG_LEN;
	h.channel = channel;
	pool_hdr_encode(raw, &h);
	ctx = s->tx.hmac;
	pool_hmac_update(&ctx, raw, POOL_HDR_LEN);
	pool_hmac_update(&ctx, s->tx_buf, len + POOL_TAG_LEN);
	pool_hmac_final(&ctx, raw + POOL_HDR_MAC_OFF);
	memzero_explicit(&ctx, sizeof(ctx));

	pos = s->ring_prod;	/* only this producer moves it */
	pos = pool_ring_put(s->ring, pos, raw, POOL_HDR_LEN);
	pos = pool_ring_put(s->ring, pos, s->tx_buf, len + POOL_TAG_LEN);
	pool_ring_publish(s, pos);

	s->tx_since_rekey++;
	spin_lock_bh(&s->lock);
	s->packets_sent++;
	s->bytes_sent += POOL_HDR_LEN + len + POOL_TAG_LEN;
	spin_unlock_bh(&s->lock);
	pool_stat_inc(POOL_STAT_PACKETS_SENT);
	pool_stat_add(POOL_STAT_BYTES_SENT, POOL_HDR_LEN + len + POOL_TAG_LEN);
	queue_work(pool_node.wq, &s->tx_work);
	return 0;
}

/* A control packet (not DATA) with its plaintext. */
int pool_send_locked(struct pool_session *s, u8 type, u16 flags, u8 channel,
		     const void *pt, size_t len)
{
	lockdep_assert_held(&s->tx_lock);
	if (s->tx_dead)
		return -EPIPE;
	if (len > POOL_MAX_MESSAGE)
		return -EMSGSIZE;
	if (!pool_ring_room(s, POOL_HDR_LEN + len + POOL_TAG_LEN, true))
		return -ENOBUFS;
	if (pt != s->tx_buf)
		memcpy(s->tx_buf, pt, len);
	return pool_seal(s, type, flags, channel, len);
}

int pool_send_ctrl(struct pool_session *s, u8 type, u16 flags,
		   const void *pt, size_t len, bool block)
{
	int ret;

	if (block)
		mutex_lock(&s->tx_lock);
	else if (!mutex_trylock(&s->tx_lock))
		return -EAGAIN;
	ret = pool_send_locked(s, type, flags, 0, pt, len);
	mutex_unlock(&s->tx_lock);
	return ret;
}

static bool pool_tx_ready(struct pool_session *s, u32 pkt)
{
	return READ_ONCE(s->tx_dead) || READ_ONCE(s->closing) ||
	       pool_ring_room(s, pkt, false);
}

/*
 * One message from user memory on channel; write() and SEND. The bytes are
 * copied in before tx_lock is taken: a buffer that faults slowly (FUSE,
 * userfaultfd) must not hold up the session's work, CONFIG announcements
 * (under pool_node.lock) or the automatic rollback behind them.
 */
static ssize_t pool_send_data(struct pool_session *s, const void __user *buf,
			      size_t len, u16 channel, bool nonblock)
{
	u32 pkt = POOL_HDR_LEN + len + POOL_TAG_LEN;
	u8 *pt;
	u64 limit;
	int ret;

	if (len > POOL_MAX_MESSAGE)
		return -EMSGSIZE;
	if (channel > 0xff)
		return -EINVAL;
	pt = kvmalloc(len, GFP_KERNEL);
	if (!pt)
		return -ENOMEM;
	if (copy_from_user(pt, buf, len)) {
		ret = -EFAULT;
		goto free;
	}
	for (;;) {
		if (mutex_lock_interruptible(&s->tx_lock)) {
			ret = -ERESTARTSYS;
			goto free;
		}
		if (s->tx_dead || s->closing) {
			ret = -EPIPE;
			goto unlock;
		}
		if (pool_ring_room(s, pkt, false))
			break;
		mutex_unlock(&s->tx_lock);
		ret = -EAGAIN;
		if (nonblock)
			goto free;
		ret = wait_event_interruptible(s->wait, pool_tx_ready(s, pkt));
		if (ret)
			goto free;
	}
	memcpy(s->tx_buf, pt, len);
	ret = pool_seal(s, POOL_PKT_DATA, 0, channel, len);
	limit = READ_ONCE(pool_node.params.rekey_packets);
	if (!ret && s->tx_since_rekey >= limit && s->rekey_state == POOL_RK_IDLE)
		mod_delayed_work(pool_node.wq, &s->rekey_work, 0);
unlock:
	mutex_unlock(&s->tx_lock);
free:
	kvfree_sensitive(pt, len);
	return ret ? ret : len;
}

/* ---- receive queue --------------------------------------------------------- */

static bool pool_rx_readable(struct pool_session *s, u16 channel)
{
	struct pool_rxmsg *m;
	bool ok = false;

	spin_lock_bh(&s->lock);
	if (s->peer_closed || s->state == POOL_STATE_CLOSED) {
		ok = true;
	} else {
		list_for_each_entry(m, &s->rxq, list) {
			if (channel == POOL_CHANNEL_ANY || m->channel == channel) {
				ok = true;
				break;
			}
		}
	}
	spin_unlock_bh(&s->lock);
	return ok;
}

void pool_session_rx_resume(struct pool_session *s)
{
	bool resume;

	spin_lock_bh(&s->lock);
	resume = s->rx_stalled && !s->closing &&
		 s->rxq_len < POOL_RXQ_MAX_MSGS / 2 &&
		 s->rxq_bytes < POOL_RXQ_MAX_BYTES / 2;
	if (resume) {
		s->rx_stalled = false;
		queue_work(pool_node.wq, &s->rx_work);
	}
	spin_unlock_bh(&s->lock);
}

/*
 * Takes the first message on channel (or any). Returns it, or NULL with
 * *err: 0 at end of stream, -EAGAIN if nothing yet, -EMSGSIZE with *need.
 */
static struct pool_rxmsg *pool_rx_take(struct pool_session *s, u16 channel,
				       size_t cap, bool skip_empty, int *err,
				       u32 *need, u16 *need_chan)
{
	struct pool_rxmsg *m, *tmp;

	spin_lock_bh(&s->lock);
	list_for_each_entry_safe(m, tmp, &s->rxq, list) {
		if (channel != POOL_CHANNEL_ANY && m->channel != channel)
			continue;
		if (!m->len && skip_empty) {
			list_del(&m->list);
			s->rxq_len--;
			kfree(m);
			continue;
		}
		if (m->len > cap) {
			*need = m->len;
			*need_chan = m->channel;
			*err = -EMSGSIZE;
			spin_unlock_bh(&s->lock);
			return NULL;
		}
		list_del(&m->list);
		s->rxq_len--;
		s->rxq_bytes -= m->len;
		spin_unlock_bh(&s->lock);
		return m;
	}
	*err = (s->peer_closed || s->state == POOL_STATE_CLOSED) ? 0 : -EAGAIN;
	spin_unlock_bh(&s->lock);
	return NULL;
}

static void pool_rx_putback(struct pool_session *s, struct pool_rxmsg *m)
{
	spin_lock_bh(&s->lock);
	list_add(&m->list, &s->rxq);
	s->rxq_len++;
	s->rxq_bytes += m->len;
	spin_unlock_bh(&s->lock);
}

static ssize_t pool_recv(struct pool_session *s, void __user *buf, size_t cap,
			 u16 channel, bool nonblock, bool skip_empty,
			 u32 *need, u16 *chan_out)
{
	struct pool_rxmsg *m;
	ssize_t len;
	int err, ret;

	for (;;) {
		m = pool_rx_take(s, channel, cap, skip_empty, &err, need,
				 chan_out);
		if (m)
			break;
		if (err != -EAGAIN || nonblock)
			return err;
		ret = wait_event_interruptible(s->wait,
					       pool_rx_readable(s, channel));
		if (ret)
			return ret;
	}
	if (m->len && copy_to_user(buf, m->data, m->len)) {
		pool_rx_putback(s, m);
		return -EFAULT;
	}
	len = m->len;
	*chan_out = m->channel;
	*need = m->len;
	kfree(m->data);
	kfree(m);
	pool_session_rx_resume(s);
	return len;
}

/* ---- file operations ------------------------------------------------------- */

static ssize_t pool_session_read(struct file *file, char __user *buf,
				 size_t count, loff_t *ppos)
{
	struct pool_session *s = file->private_data;
	u32 need;
	u16 chan;

	/* read() cannot tell an empty message from the end: it skips them */
	return pool_recv(s, buf, count, POOL_CHANNEL_ANY,
			 file->f_flags & O_NONBLOCK, true, &need, &chan);
}

static ssize_t pool_session_write(struct file *file, const char __user *buf,
				  size_t count, loff_t *ppos)
{
	struct pool_session *s = file->private_data;

	if (!count)
		return 0;
	return pool_send_data(s, buf, count, READ_ONCE(s->channel),
			      file->f_flags & O_NONBLOCK);
}

static __poll_t pool_session_poll(struct file *file, poll_table *wait)
{
	struct pool_session *s = file->private_data;
	__poll_t mask = 0;

	poll_wait(file, &s->wait, wait);
	spin_lock_bh(&s->lock);
	if (!list_empty(&s->rxq))
		mask |= EPOLLIN | EPOLLRDNORM;
	if (s->peer_closed || s->state == POOL_STATE_CLOSED)
		mask |= EPOLLIN | EPOLLRDNORM | EPOLLRDHUP | EPOLLHUP;
	spin_unlock_bh(&s->lock);
	if (READ_ONCE(s->tx_dead) || READ_ONCE(s->closing))
		mask |= EPOLLHUP;
	else if (pool_ring_room(s, POOL_HDR_LEN + POOL_MAX_PAYLOAD, false))
		mask |= EPOLLOUT | EPOLLWRNORM;
	return mask;
}

static int pool_session_file_release(struct inode *inode, struct file *file)
{
	struct pool_session *s = file->private_data;

	if (atomic_dec_and_test(&s->fds))
		pool_session_close(s, POOL_ERR_LOCAL_CLOSE, true);
	pool_session_put(s);
	return 0;
}

void pool_session_info(struct pool_session *s, struct pool_session_info *i)
{
	memset(i, 0, sizeof(*i));
	spin_lock_bh(&s->lock);
	i->index = s->index;
	i->state = s->state;
	if (i->state == POOL_STATE_ESTABLISHED && s->rekey_state != POOL_RK_IDLE)
		i->state = POOL_STATE_REKEYING;
	i->role = s->role;
	i->channel = s->channel;
	memcpy(i->session_id, s->session_id, sizeof(i->session_id));
	memcpy(i->peer_public_key, s->peer_key, POOL_KEY_LEN);
	memcpy(i->peer_addr, s->peer_ip, 16);
	i->peer_port = s->peer_port;
	i->local_port = s->local_port;
	i->epoch = s->epoch;
	i->established_ns = s->established_ns;
	i->bytes_sent = s->bytes_sent;
	i->bytes_recv = s->bytes_recv;
	i->packets_sent = s->packets_sent;
	i->packets_recv = s->packets_recv;
	i->heartbeats_sent = s->heartbeats_sent;
	i->heartbeats_recv = s->heartbeats_recv;
	i->dropped = s->dropped;
	i->rx_queue = s->rxq_len;
	i->fds = atomic_read(&s->fds);
	i->local = s->tel_local;
	i->local.queue_depth = min_t(u32, s->rxq_len, 0xffff);
	i->local.rekey_count = s->epoch;
	i->local.uptime_ns = ktime_get_boottime_ns() - s->established_boot;
	i->local.config_version = READ_ONCE(pool_node.config_version);
	i->local.reserved = 0;
	i->peer = s->tel_peer;
	spin_unlock_bh(&s->lock);
}

static long pool_session_ioctl(struct file *file, unsigned int cmd,
			       unsigned long arg)
{
	struct pool_session *s = file->private_data;
	void __user *argp = (void __user *)arg;
	struct pool_session_info info;
	struct pool_msg msg;
	u32 chan, need = 0;
	u16 got = 0;
	ssize_t ret;

	switch (cmd) {
	case POOL_SESS_IOC_INFO:
		pool_session_info(s, &info);
		return copy_to_user(argp, &info, sizeof(info)) ? -EFAULT : 0;
	case POOL_SESS_IOC_SET_CHANNEL:
		if (get_user(chan, (u32 __user *)argp))
			return -EFAULT;
		if (chan > 0xff)
			return -EINVAL;
		WRITE_ONCE(s->channel, chan);
		return 0;
	case POOL_SESS_IOC_SEND:
		if (copy_from_user(&msg, argp, sizeof(msg)))
			return -EFAULT;
		if (msg.flags & ~POOL_MSG_DONTWAIT)
			return -EINVAL;
		ret = pool_send_data(s, u64_to_user_ptr(msg.ptr), msg.len,
				     msg.channel,
				     (msg.flags & POOL_MSG_DONTWAIT) ||
				     (file->f_flags & O_NONBLOCK));
		return ret < 0 ? ret : 0;
	case POOL_SESS_IOC_RECV:
		if (copy_from_user(&msg, argp, sizeof(msg)))
			return -EFAULT;
		if (msg.flags & ~POOL_MSG_DONTWAIT)
			return -EINVAL;
		if (msg.channel != POOL_CHANNEL_ANY && msg.channel > 0xff)
			return -EINVAL;
		/* end of stream: 0 with len 0 and channel POOL_CHANNEL_ANY */
		got = POOL_CHANNEL_ANY;
		ret = pool_recv(s, u64_to_user_ptr(msg.ptr), msg.len,
				msg.channel,
				(msg.flags & POOL_MSG_DONTWAIT) ||
				(file->f_flags & O_NONBLOCK), false, &need,
				&got);
		if (ret < 0 && ret != -EMSGSIZE)
			return ret;
		msg.len = need;
		msg.channel = got;
		if (copy_to_user(argp, &msg, sizeof(msg)))
			return -EFAULT;
		return ret < 0 ? ret : 0;
	default:
		return -ENOTTY;
	}
}

static const struct file_operations pool_session_fops = {
	.owner		= THIS_MODULE,
	.read		= pool_session_read,
	.write		= pool_session_write,
	.poll		= pool_session_poll,
	.release	= pool_session_file_release,
	.unlocked_ioctl	= pool_session_ioctl,
	.compat_ioctl	= compat_ptr_ioctl,
};

/*
 * A file for s under a reserved but not yet installed descriptor: the ioctl
 * copies its results (read from s while the unpublished file keeps it alive)
 * to user space first and publishes the descriptor only then, so no other
 * thread can close it early and a failed copy leaks nothing. Consumes the
 * caller's reference on success.
 */
int pool_session_fd_prepare(struct pool_session *s, u32 fd_flags, struct pool_fd *pf)
{
	struct file *file;
	int fd;

	if (fd_flags & ~(O_CLOEXEC | O_NONBLOCK))
		return -EINVAL;
	fd = get_unused_fd_flags(fd_flags & O_CLOEXEC);
	if (fd < 0)
		return fd;
	atomic_inc(&s->fds);
	file = anon_inode_getfile("[pool-session]", &pool_session_fops, s, O_RDWR | fd_flags);
	if (IS_ERR(file)) {
		atomic_dec(&s->fds);
		put_unused_fd(fd);
		return PTR_ERR(file);
	}
	pf->fd = fd;
	pf->file = file;
	return 0;
}

void pool_fd_publish(struct pool_fd *pf)
{
	fd_install(pf->fd, pf->file);
}

/* Releases the file (and with it the session reference it held) and the descriptor. */
void pool_fd_discard(struct pool_fd *pf)
{
	fput(pf->file);
	put_unused_fd(pf->fd);
}

/* ---- creation and teardown -------------------------------------------------- */

static void pool_session_close_work(struct work_struct *w)
{
	struct pool_session *s = container_of(w, struct pool_session, close_work);
	struct socket *sock;
	/* local reasons travel as a normal close (code 0) */
	__be16 code = cpu_to_be16(s->close_code <= POOL_ERR_VERSION_MISMATCH ?
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
	if (s->rx_payload != s->rx_buf)
		kfree(s->rx_payload);
	kfree(s->rx_buf);
	s->rx_buf = NULL;
	s->rx_payload = NULL;

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

	s->tx_buf = kmalloc(POOL_MAX_PAYLOAD + 1, GFP_KERNEL);
	s->rx_buf = kmalloc(POOL_MAX_PAYLOAD + 1, GFP_KERNEL);
	s->ring = kvmalloc(POOL_RING_SIZE, GFP_KERNEL);
	if (!s->tx_buf || !s->rx_buf || !s->ring)
		goto err_free;
	s->rx_payload = s->rx_buf;

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
	/* everything at or below the first expected sequence counts as seen */
	memset(s->rx_bitmap, 0xff, sizeof(s->rx_bitmap));
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
