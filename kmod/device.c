// SPDX-License-Identifier: GPL-2.0-only
/*
 * device.c - /dev/pool (misc device, mode 0600): the node-wide ioctls of
 * uapi/pool.h. Arguments are copied in as fixed-size structs and checked
 * (reserved fields zero, lengths) before anything changes.
 *
 * Ownership: the misc device is registered last at load and deregistered
 * first at unload; an open /dev/pool pins the module (fops owner).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/miscdevice.h>
#include <linux/fs.h>
#include <linux/poll.h>
#include <linux/slab.h>
#include <linux/mm.h>
#include <linux/uaccess.h>
#include <crypto/algapi.h>

#include "pool.h"

#define POOL_LIST_MAX	4096

static void pool_identity_fill(struct pool_identity *id)
{
	memset(id, 0, sizeof(*id));
	spin_lock_bh(&pool_node.id_lock);
	if (pool_node.have_identity) {
		memcpy(id->public_key, pool_node.self.public, POOL_KEY_LEN);
		memcpy(id->address, pool_node.address, POOL_ADDR_LEN);
		id->flags = POOL_IDENTITY_SET;
	}
	id->org_id = pool_node.org_id;
	id->segment_id = pool_node.segment_id;
	spin_unlock_bh(&pool_node.id_lock);
}

static int pool_set_identity(struct pool_identity *id)
{
	struct pool_static self = {};
	bool changed_key, changed;
	u8 addr[POOL_ADDR_LEN];
	int ret = 0;

	/* flags is an output: ignored on input */
	if (id->reserved || !memchr_inv(id->private_key, 0, 32))
		return -EINVAL;
	memcpy(self.secret, id->private_key, 32);
	self.secret[0] &= 248;
	self.secret[31] &= 127;
	self.secret[31] |= 64;
	if (!pool_x25519_public(self.public, self.secret)) {
		ret = -EINVAL;
		goto out;
	}
	pool_hs_mac_key(self.mac_key, self.public);
	pool_address_compute(addr, self.public, id->org_id, id->segment_id);

	mutex_lock(&pool_node.lock);
	spin_lock_bh(&pool_node.id_lock);
	changed_key = !pool_node.have_identity ||
		      crypto_memneq(pool_node.self.secret, self.secret, 32);
	changed = changed_key || pool_node.org_id != id->org_id ||
		  pool_node.segment_id != id->segment_id;
	if (changed) {
		pool_node.self = self;
		pool_node.have_identity = true;
		pool_node.org_id = id->org_id;
		pool_node.segment_id = id->segment_id;
		memcpy(pool_node.address, addr, sizeof(addr));
	}
	spin_unlock_bh(&pool_node.id_lock);
	if (changed)
		pool_journal(POOL_JOURNAL_IDENTITY, 0, self.public,
			     "identity %s", changed_key ? "set" : "address");
	mutex_unlock(&pool_node.lock);
	/* peers trust the old key: its sessions cannot stay */
	if (changed_key)
		pool_close_all(POOL_ERR_LOCAL_CLOSE);
	pool_identity_fill(id);
out:
	memzero_explicit(&self, sizeof(self));
	return ret;
}

static int pool_ioc_peer_list(struct pool_list __user *uarg)
{
	struct pool_peer *buf = NULL;
	struct pool_list l;
	u32 total, n, cap;
	int ret = 0;

	if (copy_from_user(&l, uarg, sizeof(l)))
		return -EFAULT;
	if (l.reserved)
		return -EINVAL;
	cap = min_t(u32, l.capacity, POOL_LIST_MAX);
	if (cap) {
		buf = kvcalloc(cap, sizeof(*buf), GFP_KERNEL);
		if (!buf)
			return -ENOMEM;
	}
	n = pool_peer_list(buf, cap, &total);
	if (n && copy_to_user(u64_to_user_ptr(l.ptr), buf, n * sizeof(*buf)))
		ret = -EFAULT;
	kvfree(buf);
	l.count = n;
	l.total = total;
	if (!ret && copy_to_user(uarg, &l, sizeof(l)))
		ret = -EFAULT;
	return ret;
}

static int pool_ioc_sessions(struct pool_list __user *uarg)
{
	struct pool_list l;
	int ret;

	if (copy_from_user(&l, uarg, sizeof(l)))
		return -EFAULT;
	if (l.reserved)
		return -EINVAL;
	ret = pool_session_list(u64_to_user_ptr(l.ptr), l.capacity, &l.count,
				&l.total);
	if (ret)
		return ret;
	return copy_to_user(uarg, &l, sizeof(l)) ? -EFAULT : 0;
}

static void pool_stats_fill(struct pool_stats *st)
{
	int i;

	memset(st, 0, sizeof(*st));
	st->count = __POOL_STAT_COUNT;
	for (i = 0; i < __POOL_STAT_COUNT; i++)
		st->value[i] = atomic64_read(&pool_node.stats[i]);
	st->value[POOL_STAT_SESSIONS_ACTIVE] = atomic_read(&pool_node.nr_active);
	st->value[POOL_STAT_LISTENING] = !!READ_ONCE(pool_node.listen_sock);
	st->value[POOL_STAT_LISTEN_PORT] = READ_ONCE(pool_node.listen_port);
}

/* The ioctl's results first; its session descriptor appears only if they reached the caller. */
static int pool_copy_out_publish(void __user *argp, const void *res, size_t len, struct pool_fd *pf)
{
	if (copy_to_user(argp, res, len)) {
		pool_fd_discard(pf);
		return -EFAULT;
	}
	pool_fd_publish(pf);
	return 0;
}

static long pool_dev_ioctl(struct file *file, unsigned int cmd,
			   unsigned long arg)
{
	void __user *argp = (void __user *)arg;
	union {
		struct pool_identity id;
		struct pool_peer peer;
		struct pool_listen listen;
		struct pool_connect conn;
		struct pool_accept acc;
		struct pool_attach att;
		struct pool_close cl;
		struct pool_journal_read jr;
		struct pool_journal_seed js;
		struct pool_config cfg;
		struct pool_config_ref ref;
	} u;
	struct pool_stats *st;
	struct pool_session *s;
	struct pool_fd pf;
	int ret;

	if (_IOC_TYPE(cmd) != POOL_IOC_MAGIC)
		return -ENOTTY;
	if (_IOC_DIR(cmd) & _IOC_WRITE && _IOC_SIZE(cmd) <= sizeof(u) &&
	    cmd != POOL_IOC_SESSIONS && cmd != POOL_IOC_PEER_LIST &&
	    copy_from_user(&u, argp, _IOC_SIZE(cmd)))
		return -EFAULT;

	switch (cmd) {
	case POOL_IOC_SET_IDENTITY:
		ret = pool_set_identity(&u.id);
		memzero_explicit(u.id.private_key, sizeof(u.id.private_key));
		if (ret)
			return ret;
		return copy_to_user(argp, &u.id, sizeof(u.id)) ? -EFAULT : 0;
	case POOL_IOC_GET_IDENTITY:
		pool_identity_fill(&u.id);
		return copy_to_user(argp, &u.id, sizeof(u.id)) ? -EFAULT : 0;
	case POOL_IOC_PEER_ADD: {
		struct pool_peer out;

		mutex_lock(&pool_node.lock);
		ret = pool_peer_add(&u.peer, &out);
		mutex_unlock(&pool_node.lock);
		if (ret)
			return ret;
		return copy_to_user(argp, &out, sizeof(out)) ? -EFAULT : 0;
	}
	case POOL_IOC_PEER_DEL:
		/* only the key is read: anything else is a caller's mistake */
		if (memchr_inv(u.peer.name, 0, sizeof(u.peer) - offsetof(struct pool_peer, name)) ||
		    memchr_inv(u.peer.address, 0, sizeof(u.peer.address)))
			return -EINVAL;
		mutex_lock(&pool_node.lock);
		ret = pool_peer_del(u.peer.public_key);
		mutex_unlock(&pool_node.lock);
		return ret;
	case POOL_IOC_PEER_LIST:
		return pool_ioc_peer_list(argp);
	case POOL_IOC_LISTEN:
		if (u.listen.flags || u.listen.reserved)
			return -EINVAL;
		mutex_lock(&pool_node.lock);
		ret = pool_listen(u.listen.port);
		mutex_unlock(&pool_node.lock);
		return ret;
	case POOL_IOC_STOP:
		mutex_lock(&pool_node.lock);
		pool_listen_stop();
		mutex_unlock(&pool_node.lock);
		return 0;
	case POOL_IOC_CONNECT:
		u.conn.fd = -1;
		u.conn.index = 0;
		ret = pool_connect(&u.conn, &pf);
		if (ret)
			return ret;
		return pool_copy_out_publish(argp, &u.conn, sizeof(u.conn), &pf);
	case POOL_IOC_ACCEPT:
		ret = pool_session_accept(&u.acc, &pf);
		if (ret)
			return ret;
		return pool_copy_out_publish(argp, &u.acc, sizeof(u.acc), &pf);
	case POOL_IOC_ATTACH:
		if (u.att.reserved || u.att.fd_flags & ~(O_CLOEXEC | O_NONBLOCK))
			return -EINVAL;
		s = pool_session_get_index(u.att.index);
		if (!s)
			return -ENOENT;
		if (READ_ONCE(s->state) == POOL_STATE_CLOSED) {
			pool_session_put(s);
			return -ENOENT;
		}
		ret = pool_session_fd_prepare(s, u.att.fd_flags, &pf);
		if (ret) {
			pool_session_put(s);
			return ret;
		}
		u.att.fd = pf.fd;
		return pool_copy_out_publish(argp, &u.att, sizeof(u.att), &pf);
	case POOL_IOC_CLOSE:
		if (u.cl.reserved || u.cl.code > POOL_ERR_SENT_MAX)
			return -EINVAL;
		s = pool_session_get_index(u.cl.index);
		if (!s)
			return -ENOENT;
		ret = READ_ONCE(s->closing) ? -ENOENT : 0;
		pool_session_close(s, u.cl.code, true);
		pool_session_put(s);
		return ret;
	case POOL_IOC_SESSIONS:
		return pool_ioc_sessions(argp);
	case POOL_IOC_STATS:
		st = kmalloc(sizeof(*st), GFP_KERNEL);
		if (!st)
			return -ENOMEM;
		pool_stats_fill(st);
		ret = copy_to_user(argp, st, sizeof(*st)) ? -EFAULT : 0;
		kfree(st);
		return ret;
	case POOL_IOC_JOURNAL_READ:
		if (u.jr.list.reserved)
			return -EINVAL;
		ret = pool_journal_read(&u.jr);
		if (ret)
			return ret;
		return copy_to_user(argp, &u.jr, sizeof(u.jr)) ? -EFAULT : 0;
	case POOL_IOC_JOURNAL_SEED:
		return pool_journal_seed(&u.js);
	case POOL_IOC_CONFIG_GET:
		ret = pool_config_get(&u.cfg);
		if (ret)
			return ret;
		return copy_to_user(argp, &u.cfg, sizeof(u.cfg)) ? -EFAULT : 0;
	case POOL_IOC_CONFIG_APPLY:
		ret = pool_config_apply(&u.cfg);
		if (ret)
			return ret;
		return copy_to_user(argp, &u.cfg, sizeof(u.cfg)) ? -EFAULT : 0;
	case POOL_IOC_CONFIG_CONFIRM:
		return pool_config_confirm(&u.ref);
	case POOL_IOC_CONFIG_ROLLBACK:
		return pool_config_rollback(&u.ref);
	default:
		return -ENOTTY;
	}
}

static __poll_t pool_dev_poll(struct file *file, poll_table *wait)
{
	poll_wait(file, &pool_node.accept_wait, wait);
	return READ_ONCE(pool_node.accept_len) ? EPOLLIN | EPOLLRDNORM : 0;
}

static const struct file_operations pool_dev_fops = {
	.owner		= THIS_MODULE,
	.unlocked_ioctl	= pool_dev_ioctl,
	.compat_ioctl	= compat_ptr_ioctl,
	.poll		= pool_dev_poll,
	.llseek		= noop_llseek,
};

static struct miscdevice pool_misc = {
	.minor	= MISC_DYNAMIC_MINOR,
	.name	= "pool",
	.fops	= &pool_dev_fops,
	.mode	= 0600,
};

int pool_device_init(void)
{
	return misc_register(&pool_misc);
}

void pool_device_exit(void)
{
	misc_deregister(&pool_misc);
}
