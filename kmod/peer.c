// SPDX-License-Identifier: GPL-2.0-only
/*
 * peer.c - the node identity and the trust store.
 *
 * The trust store is a short list of static public keys (struct
 * pool_peer_entry), read from work items (responder handshake) and written
 * by ioctls under pool_node.lock; peers_lock protects the list itself.
 *
 * Ownership and teardown: entries are kzalloc'ed by pool_peer_add() or
 * pool_peer_replace() and freed by pool_peer_del(), pool_peer_replace() or
 * pool_peer_flush() (module exit, after every session is gone). Sessions
 * never point at an entry: they keep a copy of the key, so removing a peer
 * only has to close its sessions (pool_close_peer()).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/ktime.h>
#include <crypto/algapi.h>

#include "pool.h"

void pool_node_self(struct pool_static *out, bool *have)
{
	spin_lock_bh(&pool_node.id_lock);
	*have = pool_node.have_identity;
	*out = pool_node.self;
	spin_unlock_bh(&pool_node.id_lock);
}

bool pool_key_is_self(const u8 key[POOL_KEY_LEN])
{
	bool same;

	spin_lock_bh(&pool_node.id_lock);
	same = pool_node.have_identity &&
	       !crypto_memneq(pool_node.self.public, key, POOL_KEY_LEN);
	spin_unlock_bh(&pool_node.id_lock);
	return same;
}

/* All-zero and low-order points: X25519 with them gives zero for any scalar. */
static bool pool_key_usable(const u8 key[POOL_KEY_LEN])
{
	static const u8 probe[32] = {
		0x58, 0x1d, 0x3a, 0x9c, 0x17, 0x64, 0xe2, 0x0b, 0x93, 0x4f, 0x2a,
		0xc8, 0x71, 0x05, 0xbe, 0x36, 0xd9, 0x60, 0x8e, 0x12, 0x4b, 0xf7,
		0x29, 0x83, 0x5c, 0xa1, 0x0e, 0x67, 0xd4, 0x3b, 0x95, 0x48,
	};
	u8 out[32];
	bool ok;

	if (!memchr_inv(key, 0, POOL_KEY_LEN))
		return false;
	ok = pool_x25519(out, probe, key);
	memzero_explicit(out, sizeof(out));
	return ok;
}

static struct pool_peer_entry *pool_peer_find(const u8 key[POOL_KEY_LEN])
{
	struct pool_peer_entry *p;

	list_for_each_entry(p, &pool_node.peers, list)
		if (!memcmp(p->info.public_key, key, POOL_KEY_LEN))
			return p;
	return NULL;
}

static int pool_peer_validate(const struct pool_peer *in)
{
	if (in->flags || !memchr(in->name, 0, POOL_NAME_LEN))
		return -EINVAL;
	if (!pool_key_usable(in->public_key) || pool_key_is_self(in->public_key))
		return -EINVAL;
	return 0;
}

static void pool_peer_fill(struct pool_peer_entry *e, const struct pool_peer *in)
{
	memset(&e->info, 0, sizeof(e->info));
	memcpy(e->info.public_key, in->public_key, POOL_KEY_LEN);
	memcpy(e->info.name, in->name, POOL_NAME_LEN);
	memcpy(e->info.endpoint_addr, in->endpoint_addr, 16);
	e->info.endpoint_port = in->endpoint_port;
	pool_address_compute(e->info.address, in->public_key,
			     READ_ONCE(pool_node.org_id),
			     READ_ONCE(pool_node.segment_id));
}

int pool_peer_add(const struct pool_peer *in, struct pool_peer *out)
{
	struct pool_peer_entry *e;
	int ret;

	ret = pool_peer_validate(in);
	if (ret)
		return ret;
	e = kzalloc(sizeof(*e), GFP_KERNEL);
	if (!e)
		return -ENOMEM;
	pool_peer_fill(e, in);

	spin_lock_bh(&pool_node.peers_lock);
	if (pool_peer_find(in->public_key)) {
		spin_unlock_bh(&pool_node.peers_lock);
		kfree(e);
		return -EEXIST;
	}
	list_add_tail(&e->list, &pool_node.peers);
	pool_node.nr_peers++;
	*out = e->info;
	spin_unlock_bh(&pool_node.peers_lock);

	pool_journal(POOL_JOURNAL_PEER, 0, in->public_key, "add %s", in->name);
	return 0;
}

int pool_peer_del(const u8 key[POOL_KEY_LEN])
{
	struct pool_peer_entry *e;

	spin_lock_bh(&pool_node.peers_lock);
	e = pool_peer_find(key);
	if (e) {
		list_del(&e->list);
		pool_node.nr_peers--;
	}
	spin_unlock_bh(&pool_node.peers_lock);
	if (!e)
		return -ENOENT;
	pool_journal(POOL_JOURNAL_PEER, 0, key, "remove %s", e->info.name);
	kfree(e);
	pool_close_peer(key);
	return 0;
}

bool pool_peer_trusted(const u8 key[POOL_KEY_LEN])
{
	bool found;

	spin_lock_bh(&pool_node.peers_lock);
	found = pool_peer_find(key);
	spin_unlock_bh(&pool_node.peers_lock);
	return found;
}

/* 0 and records ts if newer than the last accepted INIT of the peer. */
int pool_peer_check_replay(const u8 key[POOL_KEY_LEN], u64 ts)
{
	struct pool_peer_entry *e;
	int ret = 0;

	spin_lock_bh(&pool_node.peers_lock);
	e = pool_peer_find(key);
	if (!e)
		ret = -ENOENT;
	else if (ts <= e->info.last_init_timestamp)
		ret = -EALREADY;
	else
		e->info.last_init_timestamp = ts;
	spin_unlock_bh(&pool_node.peers_lock);
	return ret;
}

/* Whether ip (16 bytes, IPv4 mapped) is a trusted peer's endpoint address. */
bool pool_peer_is_endpoint(const u8 ip[16])
{
	struct pool_peer_entry *e;
	bool found = false;

	spin_lock_bh(&pool_node.peers_lock);
	list_for_each_entry(e, &pool_node.peers, list) {
		if (e->info.endpoint_port && !memcmp(e->info.endpoint_addr, ip, 16)) {
			found = true;
			break;
		}
	}
	spin_unlock_bh(&pool_node.peers_lock);
	return found;
}

void pool_peer_note(const u8 key[POOL_KEY_LEN], bool handshake_ok)
{
	struct pool_peer_entry *e;

	spin_lock_bh(&pool_node.peers_lock);
	e = pool_peer_find(key);
	if (e && handshake_ok) {
		e->info.handshakes++;
		e->info.last_handshake_ns = ktime_get_real_ns();
	} else if (e) {
		e->info.auth_failures++;
	}
	spin_unlock_bh(&pool_node.peers_lock);
}

/* Copies up to cap entries into out (kernel memory). */
int pool_peer_list(struct pool_peer *out, u32 cap, u32 *total)
{
	struct pool_peer_entry *e;
	u32 n = 0, i;

	spin_lock_bh(&pool_node.peers_lock);
	list_for_each_entry(e, &pool_node.peers, list) {
		if (n < cap)
			out[n] = e->info;
		n++;
	}
	spin_unlock_bh(&pool_node.peers_lock);
	*total = n;
	n = min(n, cap);
	for (i = 0; i < n; i++)
		out[i].active_sessions = pool_peer_active(out[i].public_key);
	return n;
}

/*
 * Replaces the trust store by list[0..n) (configuration versions). Every
 * entry is validated first; kept peers keep their counters and replay guard.
 */
int pool_peer_replace(const struct pool_peer *list, u32 n)
{
	struct pool_peer_entry *e, *tmp, *old;
	LIST_HEAD(fresh);
	LIST_HEAD(gone);
	u32 i, j;
	int ret;

	for (i = 0; i < n; i++) {
		ret = pool_peer_validate(&list[i]);
		if (ret)
			return ret;
		for (j = 0; j < i; j++)
			if (!memcmp(list[i].public_key, list[j].public_key,
				    POOL_KEY_LEN))
				return -EINVAL;
	}
	for (i = 0; i < n; i++) {
		e = kzalloc(sizeof(*e), GFP_KERNEL);
		if (!e)
			goto nomem;
		pool_peer_fill(e, &list[i]);
		list_add_tail(&e->list, &fresh);
	}

	spin_lock_bh(&pool_node.peers_lock);
	list_for_each_entry(e, &fresh, list) {
		old = pool_peer_find(e->info.public_key);
		if (!old)
			continue;
		e->info.last_init_timestamp = old->info.last_init_timestamp;
		e->info.last_handshake_ns = old->info.last_handshake_ns;
		e->info.handshakes = old->info.handshakes;
		e->info.auth_failures = old->info.auth_failures;
	}
	list_splice_init(&pool_node.peers, &gone);
	list_splice_init(&fresh, &pool_node.peers);
	pool_node.nr_peers = n;
	/* keys that are still trusted are not "gone" */
	list_for_each_entry_safe(e, tmp, &gone, list) {
		if (pool_peer_find(e->info.public_key)) {
			list_del(&e->list);
			kfree(e);
		}
	}
	spin_unlock_bh(&pool_node.peers_lock);

	list_for_each_entry_safe(e, tmp, &gone, list) {
		pool_journal(POOL_JOURNAL_PEER, 0, e->info.public_key,
			     "remove %s (config)", e->info.name);
		pool_close_peer(e->info.public_key);
		list_del(&e->list);
		kfree(e);
	}
	return 0;

nomem:
	list_for_each_entry_safe(e, tmp, &fresh, list) {
		list_del(&e->list);
		kfree(e);
	}
	return -ENOMEM;
}

void pool_peer_flush(void)
{
	struct pool_peer_entry *e, *tmp;

	spin_lock_bh(&pool_node.peers_lock);
	list_for_each_entry_safe(e, tmp, &pool_node.peers, list) {
		list_del(&e->list);
		kfree(e);
	}
	pool_node.nr_peers = 0;
	spin_unlock_bh(&pool_node.peers_lock);
}
