// SPDX-License-Identifier: GPL-2.0-only
/*
 * sessfd.c - what a session's file descriptors do: the send path (sealing
 * into the tx ring, whose consumer is send.c), the receive queue (filled by
 * receive.c), read/write/poll/ioctl, and making a descriptor that the ioctl
 * publishes only once its results reached the caller. session.c owns the
 * session's life.
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

bool pool_ring_empty(struct pool_session *s)
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

	/* keys past their hard limit send nothing but the CLOSE that says so */
	if (type != POOL_PKT_CLOSE && pool_tx_keys_expired(s)) {
		if (!READ_ONCE(s->closing)) {
			pool_fail(POOL_STAT_MALFORMED, POOL_ERR_KEY_EXPIRED,
				  s->peer_key, "keys past their hard limit");
			pool_session_close(s, POOL_ERR_KEY_EXPIRED, true);
		}
		return -EKEYEXPIRED;
	}

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

static bool pool_tx_ready(struct pool_session *s, u32 len)
{
	return READ_ONCE(s->tx_dead) || READ_ONCE(s->closing) ||
	       (pool_ring_room(s, POOL_HDR_LEN + len + POOL_TAG_LEN, false) &&
		pool_flow_tx_maybe_room(s, len));
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
		/* room in the ring, and in the peer's window (flow.c) */
		if (pool_ring_room(s, pkt, false) && pool_flow_tx_room(s, len))
			break;
		mutex_unlock(&s->tx_lock);
		ret = -EAGAIN;
		if (nonblock)
			goto free;
		ret = wait_event_interruptible(s->wait, pool_tx_ready(s, len));
		if (ret)
			goto free;
	}
	memcpy(s->tx_buf, pt, len);
	ret = pool_seal(s, POOL_PKT_DATA, 0, channel, len);
	if (!ret)
		pool_flow_tx_sent(s, len);
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
			pool_flow_consumed_locked(s, 0);
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
	spin_lock_bh(&s->lock);
	pool_flow_consumed_locked(s, len);
	spin_unlock_bh(&s->lock);
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
	else if (pool_tx_ready(s, POOL_MAX_MESSAGE))	/* any message fits */
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
	/* held now: the full receive window (the file keeps s alive here) */
	pool_flow_open(s);
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
