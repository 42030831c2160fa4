// SPDX-License-Identifier: GPL-2.0-only
/*
 * main.c - pool.ko: the POOL/1 secure transport. Module parameters, load
 * and unload.
 *
 * Load order: parameters checked, crypto, known-answer self-tests (refuse
 * with -ELIBBAD), node state and workqueue, journal (GENESIS), config,
 * procfs, and last /dev/pool, the door through which userspace comes in.
 *
 * Unload order (the reverse, and nothing may be left running):
 *   1. /dev/pool goes away (no fd is open: each pins the module);
 *   2. procfs entries go away (waits for readers);
 *   3. the listener stops (callback restored, accept work cancelled);
 *   4. half-open handshakes are reaped;
 *   5. sessions are closed: only those no fd holds can exist (session fds
 *      pin the module too), i.e. unaccepted ones and teardowns in flight;
 *   6. the config rollback timer is cancelled;
 *   7. the workqueue is destroyed (drains whatever is left);
 *   8. trust store, journal, crypto; the identity is wiped.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/kernel.h>
#include <linux/ktime.h>

#include "pool.h"

struct pool_node pool_node;

ushort pool_param_port = POOL_DEFAULT_PORT;
module_param_named(port, pool_param_port, ushort, 0444);
MODULE_PARM_DESC(port, "TCP port of the listener and default for connect (9253)");

static uint heartbeat_seconds = 5;
module_param(heartbeat_seconds, uint, 0444);
MODULE_PARM_DESC(heartbeat_seconds, "Heartbeat interval in seconds, 1..3600 (5)");

static uint rekey_seconds = 3600;
module_param(rekey_seconds, uint, 0444);
MODULE_PARM_DESC(rekey_seconds, "Rekey after this many seconds, 5..2^31 (3600)");

static unsigned long long rekey_packets = 1ULL << 30;
module_param(rekey_packets, ullong, 0444);
MODULE_PARM_DESC(rekey_packets, "Rekey after this many packets, 1..2^32-1 (2^30)");

static uint puzzle_difficulty = 16;
module_param(puzzle_difficulty, uint, 0444);
MODULE_PARM_DESC(puzzle_difficulty, "Handshake puzzle difficulty in bits, 0..20 (16)");

static uint max_sessions = 256;
module_param(max_sessions, uint, 0444);
MODULE_PARM_DESC(max_sessions, "Maximum number of sessions, 1..65536 (256)");

bool pool_valid_params(const struct pool_params *p)
{
	return p->heartbeat_seconds >= 1 && p->heartbeat_seconds <= 3600 &&
	       p->rekey_seconds >= 5 && p->rekey_seconds <= (1U << 31) &&
	       p->rekey_packets >= 1 && p->rekey_packets < (1ULL << 32) &&
	       p->puzzle_difficulty <= POOL_MAX_DIFFICULTY &&
	       p->max_sessions >= 1 && p->max_sessions <= 65536;
}

static int __init pool_init(void)
{
	struct pool_params p = {
		.heartbeat_seconds	= heartbeat_seconds,
		.rekey_seconds		= rekey_seconds,
		.rekey_packets		= rekey_packets,
		.puzzle_difficulty	= puzzle_difficulty,
		.max_sessions		= max_sessions,
	};
	int ret, i;

	if (!pool_param_port || !pool_valid_params(&p)) {
		pr_err("invalid module parameter: port 1..65535, heartbeat_seconds 1..3600, rekey_seconds 5..2^31, rekey_packets 1..2^32-1, puzzle_difficulty 0..20, max_sessions 1..65536\n");
		return -EINVAL;
	}

	ret = pool_crypto_init();
	if (ret)
		return ret;
	ret = pool_selftest();
	if (ret) {
		pr_err("known-answer self-tests failed (%d): refusing to load\n",
		       ret);
		ret = -ELIBBAD;
		goto err_crypto;
	}

	mutex_init(&pool_node.lock);
	spin_lock_init(&pool_node.id_lock);
	spin_lock_init(&pool_node.peers_lock);
	INIT_LIST_HEAD(&pool_node.peers);
	spin_lock_init(&pool_node.sessions_lock);
	idr_init(&pool_node.sessions);
	INIT_LIST_HEAD(&pool_node.accept_queue);
	init_waitqueue_head(&pool_node.accept_wait);
	atomic_set(&pool_node.nr_active, 0);
	spin_lock_init(&pool_node.hconn_lock);
	INIT_LIST_HEAD(&pool_node.hconns);
	for (i = 0; i < __POOL_STAT_COUNT; i++)
		atomic64_set(&pool_node.stats[i], 0);
	pool_node.params = p;
	pool_node.load_ns = ktime_get_boottime_ns();
	pool_cookie_init(&pool_node.cookie);
	pool_spent_init(&pool_node.spent);
	pool_hconns_init();
	pool_unauth_init();

	pool_node.wq = alloc_workqueue("pool", WQ_UNBOUND | WQ_MEM_RECLAIM, 0);
	if (!pool_node.wq) {
		ret = -ENOMEM;
		goto err_crypto;
	}
	ret = pool_journal_init();
	if (ret)
		goto err_wq;
	pool_config_init();
	ret = pool_procfs_init();
	if (ret)
		goto err_config;
	ret = pool_device_init();
	if (ret)
		goto err_procfs;

	pr_info("POOL/1 %s loaded (port %u, self-tests passed)\n", POOL_VERSION,
		pool_param_port);
	return 0;

err_procfs:
	pool_procfs_exit();
err_config:
	pool_config_exit();
	pool_journal_exit();
err_wq:
	destroy_workqueue(pool_node.wq);
err_crypto:
	pool_crypto_exit();
	return ret;
}

static void __exit pool_exit(void)
{
	pool_device_exit();
	pool_procfs_exit();

	mutex_lock(&pool_node.lock);
	WRITE_ONCE(pool_node.stopping, true);
	pool_listen_stop();
	mutex_unlock(&pool_node.lock);

	pool_hconns_exit();
	pool_sessions_exit();
	/* no half-open connection nor session is left to report anything */
	pool_unauth_exit();
	pool_config_exit();
	destroy_workqueue(pool_node.wq);
	idr_destroy(&pool_node.sessions);
	pool_peer_flush();
	pool_journal_exit();
	pool_crypto_exit();
	memzero_explicit(&pool_node.self, sizeof(pool_node.self));
	memzero_explicit(&pool_node.cookie, sizeof(pool_node.cookie));
	pr_info("unloaded\n");
}

module_init(pool_init);
module_exit(pool_exit);

MODULE_LICENSE("GPL v2");
MODULE_DESCRIPTION("POOL/1: mutually authenticated, encrypted transport sessions");
MODULE_AUTHOR("The POOL operations suite authors");
MODULE_VERSION(POOL_VERSION);
MODULE_SOFTDEP("pre: chacha20poly1305");
