// SPDX-License-Identifier: GPL-2.0-only
/*
 * config.c - versioned configuration with commit-confirmed rollback
 * (POOL_IOC_CONFIG_*, uapi/pool.h).
 *
 * The active version carries the tunables (struct pool_params) and the
 * trust store; up to POOL_CONFIG_HISTORY earlier versions are kept so that
 * ROLLBACK, or the rollback work at the deadline of a tentative version,
 * can restore the previous one without userspace. Every field is validated before anything changes.
 *
 * Ownership and teardown: the snapshots' peer arrays are kvmalloc'ed here
 * and freed when replaced or by pool_config_exit(), which first cancels
 * the rollback work synchronously (module exit, after the sessions).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/slab.h>
#include <linux/mm.h>
#include <linux/uaccess.h>
#include <linux/ktime.h>

#include "pool.h"

#define POOL_CONFIG_MAX_PEERS	1024
#define POOL_CONFIG_HISTORY	8	/* versions ROLLBACK can go back through */

struct pool_cfg {
	u32			version;
	u8			hash[POOL_HASH_LEN];
	struct pool_params	params;
	struct pool_peer	*peers;		/* trust store snapshot */
	u32			npeers;
};

static struct {
	struct pool_cfg		active;		/* active.peers unused */
	struct pool_cfg		hist[POOL_CONFIG_HISTORY];	/* [depth-1] newest */
	u32			depth;
	bool			tentative;
	/*
	 * CLOCK_BOOTTIME: never stepped (NTP, date -s) and counting through
	 * suspend, so neither can cancel or postpone a rollback. Userspace sees
	 * it as CLOCK_REALTIME, converted when read.
	 */
	u64			deadline_boot_ns;
	bool			rollback_failed;	/* journaled, being retried */
	struct delayed_work	rollback_work;
} cfg;

/* A failed automatic rollback (out of memory) is tried again this often. */
#define POOL_ROLLBACK_RETRY	HZ

/* The tentative version's deadline on today's wall clock; 0 when there is none. */
static u64 pool_config_deadline_real(void)
{
	s64 left;

	if (!cfg.tentative)
		return 0;
	left = (s64)(cfg.deadline_boot_ns - ktime_get_boottime_ns());
	return ktime_get_real_ns() + left;
}

static void pool_config_arm(u64 delay_ns)
{
	mod_delayed_work(pool_node.wq, &cfg.rollback_work,
			 nsecs_to_jiffies(delay_ns) + 1);
}

#define cfg_prev	(cfg.hist[cfg.depth - 1])

static void pool_cfg_free(struct pool_cfg *c)
{
	kvfree(c->peers);
	c->peers = NULL;
	c->npeers = 0;
}

/* A snapshot of the live trust store into c->peers. */
static int pool_cfg_snapshot_peers(struct pool_cfg *c)
{
	u32 n = READ_ONCE(pool_node.nr_peers), total;

	for (;;) {
		c->peers = n ? kvcalloc(n, sizeof(*c->peers), GFP_KERNEL) : NULL;
		if (n && !c->peers)
			return -ENOMEM;
		c->npeers = pool_peer_list(c->peers, n, &total);
		if (total <= n)
			return 0;
		kvfree(c->peers);
		n = total;
	}
}

static void pool_params_apply(const struct pool_params *p)
{
	struct pool_session *s;
	int id = 0;

	WRITE_ONCE(pool_node.params.heartbeat_seconds, p->heartbeat_seconds);
	WRITE_ONCE(pool_node.params.rekey_seconds, p->rekey_seconds);
	WRITE_ONCE(pool_node.params.rekey_packets, p->rekey_packets);
	WRITE_ONCE(pool_node.params.puzzle_difficulty, p->puzzle_difficulty);
	WRITE_ONCE(pool_node.params.max_sessions, p->max_sessions);
	/* timers pick the new values up at once */
	while ((s = pool_session_next(&id))) {
		/* under s->lock: a teardown cancels these after it sets closing */
		spin_lock_bh(&s->lock);
		if (!s->closing) {
			mod_delayed_work(pool_node.wq, &s->rekey_work, 0);
			mod_delayed_work(pool_node.wq, &s->hb_work,
					 p->heartbeat_seconds * HZ);
		}
		spin_unlock_bh(&s->lock);
		pool_session_put(s);
		id++;
	}
}

/* Announces CONFIG or ROLLBACK to every session; never waited for. */
static void pool_config_announce(u8 type, const u8 *pt, size_t len)
{
	struct pool_session *s;
	int id = 0;

	while ((s = pool_session_next(&id))) {
		if (!READ_ONCE(s->closing))
			pool_send_ctrl(s, type, 0, pt, len, true);
		pool_session_put(s);
		id++;
	}
}

static void pool_config_announce_config(void)
{
	u8 pt[POOL_CONFIG_PT_LEN] = {};

	put_unaligned_be32(cfg.active.version, pt);
	put_unaligned_be32(cfg.depth ? cfg_prev.version : 0, pt + 4);
	memcpy(pt + 8, cfg.active.hash, 32);
	if (cfg.depth)
		memcpy(pt + 40, cfg_prev.hash, 32);
	put_unaligned_be64(pool_config_deadline_real(), pt + 72);
	put_unaligned_be32(cfg.tentative ? 1 : 0, pt + 80);
	pool_config_announce(POOL_PKT_CONFIG, pt, sizeof(pt));
}

static void pool_config_fill(struct pool_config *c)
{
	memset(c, 0, sizeof(*c));
	c->version = cfg.active.version;
	memcpy(c->hash, cfg.active.hash, POOL_HASH_LEN);
	c->flags = (cfg.tentative ? POOL_CONFIG_TENTATIVE : 0) |
		   (cfg.depth ? POOL_CONFIG_HAS_PREV : 0);
	if (cfg.depth) {
		c->prev_version = cfg_prev.version;
		memcpy(c->prev_hash, cfg_prev.hash, POOL_HASH_LEN);
	}
	c->deadline_ns = pool_config_deadline_real();
	c->heartbeat_seconds = pool_node.params.heartbeat_seconds;
	c->rekey_seconds = pool_node.params.rekey_seconds;
	c->rekey_packets = pool_node.params.rekey_packets;
	c->puzzle_difficulty = pool_node.params.puzzle_difficulty;
	c->max_sessions = pool_node.params.max_sessions;
	c->peer_count = READ_ONCE(pool_node.nr_peers);
}

int pool_config_get(struct pool_config *c)
{
	mutex_lock(&pool_node.lock);
	pool_config_fill(c);
	mutex_unlock(&pool_node.lock);
	return 0;
}

int pool_config_apply(struct pool_config *c)
{
	struct pool_params p = {
		.heartbeat_seconds	= c->heartbeat_seconds,
		.rekey_seconds		= c->rekey_seconds,
		.rekey_packets		= c->rekey_packets,
		.puzzle_difficulty	= c->puzzle_difficulty,
		.max_sessions		= c->max_sessions,
	};
	struct pool_cfg old = {};
	struct pool_peer *peers = NULL;
	u32 ms = c->confirm_within_ms;
	int ret;

	/* flags, prev_* and deadline_ns are outputs: ignored on input */
	if (c->reserved || c->peer_count > POOL_CONFIG_MAX_PEERS ||
	    !pool_valid_params(&p) || ms > 24U * 3600 * 1000)
		return -EINVAL;
	if (c->peer_count) {
		peers = kvcalloc(c->peer_count, sizeof(*peers), GFP_KERNEL);
		if (!peers)
			return -ENOMEM;
		if (copy_from_user(peers, u64_to_user_ptr(c->peers_ptr),
				   c->peer_count * sizeof(*peers))) {
			kvfree(peers);
			return -EFAULT;
		}
	}

	mutex_lock(&pool_node.lock);
	ret = -EINVAL;
	if (c->version <= cfg.active.version)
		goto out;
	old = cfg.active;
	old.params = pool_node.params;
	ret = pool_cfg_snapshot_peers(&old);
	if (ret)
		goto out;
	/* validates every peer before it changes the trust store */
	ret = pool_peer_replace(peers, c->peer_count);
	if (ret) {
		pool_cfg_free(&old);
		goto out;
	}
	pool_params_apply(&p);

	if (cfg.depth == POOL_CONFIG_HISTORY) {
		pool_cfg_free(&cfg.hist[0]);
		memmove(&cfg.hist[0], &cfg.hist[1],
			(POOL_CONFIG_HISTORY - 1) * sizeof(cfg.hist[0]));
		cfg.depth--;
	}
	cfg.hist[cfg.depth++] = old;
	cfg.active.version = c->version;
	memcpy(cfg.active.hash, c->hash, POOL_HASH_LEN);
	cfg.active.params = p;
	WRITE_ONCE(pool_node.config_version, c->version);
	cfg.tentative = ms > 0;
	if (cfg.tentative) {
		cfg.deadline_boot_ns = ktime_get_boottime_ns() + (u64)ms * NSEC_PER_MSEC;
		pool_config_arm((u64)ms * NSEC_PER_MSEC);
	} else {
		cfg.deadline_boot_ns = 0;
		cancel_delayed_work(&cfg.rollback_work);
	}
	pool_stat_inc(POOL_STAT_CONFIG_APPLIED);
	pool_journal(POOL_JOURNAL_CONFIG, 0, NULL, "apply %u%s hash %*phN",
		     c->version, cfg.tentative ? " tentative" : "", 8, c->hash);
	pool_config_fill(c);
	pool_config_announce_config();
	ret = 0;
out:
	mutex_unlock(&pool_node.lock);
	kvfree(peers);
	return ret;
}

int pool_config_confirm(const struct pool_config_ref *r)
{
	int ret = 0;

	if (r->reserved)
		return -EINVAL;
	mutex_lock(&pool_node.lock);
	if (r->version != cfg.active.version) {
		ret = -ESTALE;
	} else if (cfg.tentative) {
		cfg.tentative = false;
		cfg.deadline_boot_ns = 0;
		cancel_delayed_work(&cfg.rollback_work);
		pool_stat_inc(POOL_STAT_CONFIG_CONFIRMED);
		pool_journal(POOL_JOURNAL_CONFIG, 0, NULL, "confirm %u",
			     r->version);
		pool_config_announce_config();
	}
	mutex_unlock(&pool_node.lock);
	return ret;
}

static int pool_config_restore(const char *why)
{
	u8 pt[POOL_ROLLBACK_PT_LEN] = {};
	struct pool_cfg from = cfg.active;
	int ret;

	lockdep_assert_held(&pool_node.lock);
	if (!cfg.depth)
		return -ENOENT;
	ret = pool_peer_replace(cfg_prev.peers, cfg_prev.npeers);
	if (ret)
		return ret;
	pool_params_apply(&cfg_prev.params);
	cfg.active.version = cfg_prev.version;
	memcpy(cfg.active.hash, cfg_prev.hash, POOL_HASH_LEN);
	cfg.active.params = cfg_prev.params;
	pool_cfg_free(&cfg_prev);
	memset(&cfg_prev, 0, sizeof(cfg_prev));
	cfg.depth--;
	cfg.tentative = false;
	cfg.deadline_boot_ns = 0;
	WRITE_ONCE(pool_node.config_version, cfg.active.version);
	pool_stat_inc(POOL_STAT_CONFIG_ROLLED_BACK);
	pool_journal(POOL_JOURNAL_ROLLBACK, 0, NULL, "%u -> %u (%s)",
		     from.version, cfg.active.version, why);

	put_unaligned_be32(cfg.active.version, pt);
	memcpy(pt + 4, cfg.active.hash, 32);
	put_unaligned_be32(from.version, pt + 36);
	memcpy(pt + 40, from.hash, 32);
	pool_config_announce(POOL_PKT_ROLLBACK, pt, sizeof(pt));
	return 0;
}

int pool_config_rollback(const struct pool_config_ref *r)
{
	int ret;

	if (r->reserved)
		return -EINVAL;
	mutex_lock(&pool_node.lock);
	if (r->version != cfg.active.version)
		ret = -ESTALE;
	else
		ret = pool_config_restore("operator");
	if (!ret)
		cancel_delayed_work(&cfg.rollback_work);
	mutex_unlock(&pool_node.lock);
	return ret;
}

/*
 * A peer's CONFIG or ROLLBACK (plaintext of its length checked): kept in the
 * session, where its telemetry shows the version, and journaled under the
 * peer's key once per change, so a repeated announcement adds no entry.
 * Nothing here acts on it: a peer's version is the peer's business.
 */
void pool_config_peer_rx(struct pool_session *s, u8 type, const u8 *pt)
{
	u32 version = get_unaligned_be32(pt);
	bool tentative = type == POOL_PKT_CONFIG &&
			 (get_unaligned_be32(pt + 80) & 1);
	bool news;

	spin_lock_bh(&s->lock);
	news = !s->peer_config_seen || s->peer_config_version != version ||
	       s->peer_config_tentative != tentative;
	s->peer_config_seen = true;
	s->peer_config_version = version;
	s->peer_config_tentative = tentative;
	s->tel_peer.config_version = version;
	spin_unlock_bh(&s->lock);
	if (!news)
		return;
	if (type == POOL_PKT_ROLLBACK)
		pool_journal(POOL_JOURNAL_ROLLBACK, 0, s->peer_key,
			     "peer %u -> %u", get_unaligned_be32(pt + 36),
			     version);
	else
		pool_journal(POOL_JOURNAL_CONFIG, 0, s->peer_key,
			     "peer at %u%s hash %*phN", version,
			     tentative ? " tentative" : "", 8, pt + 8);
}

/*
 * At the deadline of a tentative version. Early (the work's jiffies and the
 * deadline's clock can disagree by a tick): armed again for what is left. A
 * restore that fails is journaled once and tried again until it succeeds;
 * meanwhile CONFIG_GET shows the version tentative with its deadline passed.
 */
static void pool_config_rollback_work(struct work_struct *w)
{
	s64 left;
	int ret;

	mutex_lock(&pool_node.lock);
	if (!cfg.tentative)
		goto out;
	left = (s64)(cfg.deadline_boot_ns - ktime_get_boottime_ns());
	if (left > 0) {
		pool_config_arm(left);
		goto out;
	}
	ret = pool_config_restore("not confirmed before the deadline");
	if (ret) {
		if (!cfg.rollback_failed)
			pool_journal(POOL_JOURNAL_ROLLBACK, 0, NULL,
				     "%u: automatic rollback failed (%d), retrying",
				     cfg.active.version, ret);
		cfg.rollback_failed = true;
		mod_delayed_work(pool_node.wq, &cfg.rollback_work, POOL_ROLLBACK_RETRY);
	} else {
		cfg.rollback_failed = false;
	}
out:
	mutex_unlock(&pool_node.lock);
}

void pool_config_init(void)
{
	memset(&cfg, 0, sizeof(cfg));
	cfg.active.params = pool_node.params;
	INIT_DELAYED_WORK(&cfg.rollback_work, pool_config_rollback_work);
}

void pool_config_exit(void)
{
	cancel_delayed_work_sync(&cfg.rollback_work);
	while (cfg.depth)
		pool_cfg_free(&cfg.hist[--cfg.depth]);
}
