// SPDX-License-Identifier: GPL-2.0-only
/*
 * procfs.c - /proc/pool/{status,sessions,telemetry,peers,journal}: the node
 * for people, in aligned columns. IPv4 peers show as a.b.c.d, public keys
 * in base64 as WireGuard does.
 *
 * Ownership: the /proc/pool directory is created at load and removed with
 * its entries by pool_procfs_exit() (remove_proc_subtree waits for readers).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/math64.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/mm.h>
#include <net/ipv6.h>

#include "pool.h"

static struct proc_dir_entry *pool_proc_dir;

void pool_fmt_addr(char *buf, size_t len, const u8 ip[16])
{
	const struct in6_addr *a = (const struct in6_addr *)ip;

	if (ipv6_addr_v4mapped(a))
		snprintf(buf, len, "%pI4", ip + 12);
	else
		snprintf(buf, len, "%pI6c", ip);
}

static void pool_fmt_endpoint(char *buf, size_t len, const u8 ip[16], u16 port)
{
	const struct in6_addr *a = (const struct in6_addr *)ip;

	if (ipv6_addr_v4mapped(a))
		snprintf(buf, len, "%pI4:%u", ip + 12, port);
	else
		snprintf(buf, len, "[%pI6c]:%u", ip, port);
}

/* 32 bytes -> 44 characters of base64 and a NUL. */
static void pool_b64(char out[45], const u8 in[32])
{
	static const char tbl[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	int i, o = 0;
	u32 v;

	for (i = 0; i + 3 <= 30; i += 3) {
		v = in[i] << 16 | in[i + 1] << 8 | in[i + 2];
		out[o++] = tbl[(v >> 18) & 63];
		out[o++] = tbl[(v >> 12) & 63];
		out[o++] = tbl[(v >> 6) & 63];
		out[o++] = tbl[v & 63];
	}
	v = in[30] << 16 | in[31] << 8;
	out[o++] = tbl[(v >> 18) & 63];
	out[o++] = tbl[(v >> 12) & 63];
	out[o++] = tbl[(v >> 6) & 63];
	out[o++] = '=';
	out[o] = '\0';
}

static const char *pool_state_name(u8 state)
{
	switch (state) {
	case POOL_STATE_HANDSHAKE:	return "HANDSHAKE";
	case POOL_STATE_ESTABLISHED:	return "ESTABLISHED";
	case POOL_STATE_REKEYING:	return "REKEYING";
	case POOL_STATE_CLOSING:	return "CLOSING";
	case POOL_STATE_CLOSED:		return "CLOSED";
	default:			return "?";
	}
}

static int pool_status_show(struct seq_file *m, void *v)
{
	struct pool_params p = pool_node.params;
	struct pool_identity id = {};
	char key[45];
	bool have;
	int i;

	spin_lock_bh(&pool_node.id_lock);
	have = pool_node.have_identity;
	memcpy(id.public_key, pool_node.self.public, POOL_KEY_LEN);
	memcpy(id.address, pool_node.address, POOL_ADDR_LEN);
	spin_unlock_bh(&pool_node.id_lock);

	seq_printf(m, "%-18s POOL/%d pool.ko %s\n", "protocol:",
		   POOL_PROTOCOL_VERSION, POOL_VERSION);
	if (have) {
		pool_b64(key, id.public_key);
		seq_printf(m, "%-18s %s\n", "public key:", key);
		seq_printf(m, "%-18s ", "address:");
		for (i = 0; i < 8; i++)
			seq_printf(m, "%s%*phN", i ? ":" : "", 4, id.address + 4 * i);
		seq_putc(m, '\n');
	} else {
		seq_printf(m, "%-18s %s\n", "public key:", "(none)");
	}
	if (READ_ONCE(pool_node.listen_sock))
		seq_printf(m, "%-18s yes, port %u\n", "listening:",
			   READ_ONCE(pool_node.listen_port));
	else
		seq_printf(m, "%-18s no\n", "listening:");
	seq_printf(m, "%-18s %d / %u\n", "sessions:",
		   atomic_read(&pool_node.nr_active), p.max_sessions);
	seq_printf(m, "%-18s %u\n", "accept queue:",
		   READ_ONCE(pool_node.accept_len));
	seq_printf(m, "%-18s %u\n", "half-open:",
		   READ_ONCE(pool_node.nr_hconns));
	seq_printf(m, "%-18s %u\n", "peers:", READ_ONCE(pool_node.nr_peers));
	seq_printf(m, "%-18s %u\n", "config version:",
		   READ_ONCE(pool_node.config_version));
	seq_printf(m, "%-18s %u s\n", "heartbeat:", p.heartbeat_seconds);
	seq_printf(m, "%-18s %u s or %llu packets\n", "rekey:",
		   p.rekey_seconds, p.rekey_packets);
	seq_printf(m, "%-18s %u bits\n", "puzzle:", p.puzzle_difficulty);
	seq_printf(m, "%-18s %llu\n", "journal next seq:", pool_journal_next());
	return 0;
}

static int pool_sessions_show(struct seq_file *m, void *v)
{
	struct pool_session_info *i;
	struct pool_session *s;
	char ep[64], key[45];
	int id = 0;

	i = kmalloc(sizeof(*i), GFP_KERNEL);
	if (!i)
		return -ENOMEM;
	seq_printf(m, "%-5s %-11s %-4s %-46s %-44s %-5s %12s %12s %10s %10s %5s %3s\n",
		   "IDX", "STATE", "ROLE", "PEER", "PEER_KEY", "EPOCH", "BYTES_SENT",
		   "BYTES_RECV", "PKTS_SENT", "PKTS_RECV", "RXQ", "FDS");
	for (;;) {
		s = pool_session_next(&id);
		if (!s)
			break;
		pool_session_info(s, i);
		pool_session_put(s);
		pool_fmt_endpoint(ep, sizeof(ep), i->peer_addr, i->peer_port);
		pool_b64(key, i->peer_public_key);
		seq_printf(m, "%-5u %-11s %-4s %-46s %-44s %-5u %12llu %12llu %10llu %10llu %5u %3u\n",
			   i->index, pool_state_name(i->state),
			   i->role == POOL_ROLE_INITIATOR ? "out" : "in", ep, key,
			   i->epoch, i->bytes_sent, i->bytes_recv,
			   i->packets_sent, i->packets_recv, i->rx_queue, i->fds);
		id++;
	}
	kfree(i);
	return 0;
}

static int pool_telemetry_show(struct seq_file *m, void *v)
{
	struct pool_session_info *i;
	struct pool_session *s;
	int id = 0;

	i = kmalloc(sizeof(*i), GFP_KERNEL);
	if (!i)
		return -ENOMEM;
	seq_printf(m, "%-5s %10s %10s %9s %12s %5s %6s %6s %9s %6s %6s %10s %10s\n",
		   "IDX", "RTT_US", "JITTER_US", "LOSS_PPM", "THRU_BPS", "MTU",
		   "QUEUE", "REKEYS", "UPTIME_S", "HB_TX", "HB_RX",
		   "PEER_RTT", "PEER_LOSS");
	for (;;) {
		s = pool_session_next(&id);
		if (!s)
			break;
		pool_session_info(s, i);
		pool_session_put(s);
		seq_printf(m, "%-5u %10llu %10llu %9u %12u %5u %6u %6u %9llu %6llu %6llu %10llu %10u\n",
			   i->index, div_u64(i->local.rtt_ns, NSEC_PER_USEC),
			   div_u64(i->local.jitter_ns, NSEC_PER_USEC), i->local.loss_rate_ppm,
			   i->local.throughput_bps, i->local.mtu,
			   i->local.queue_depth, i->local.rekey_count,
			   div_u64(i->local.uptime_ns, NSEC_PER_SEC),
			   i->heartbeats_sent, i->heartbeats_recv,
			   div_u64(i->peer.rtt_ns, NSEC_PER_USEC), i->peer.loss_rate_ppm);
		id++;
	}
	kfree(i);
	return 0;
}

static int pool_peers_show(struct seq_file *m, void *v)
{
	struct pool_peer *buf;
	char key[45], ep[64];
	u32 n, total, k;

	n = READ_ONCE(pool_node.nr_peers) + 8;
	buf = kvcalloc(n, sizeof(*buf), GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	n = pool_peer_list(buf, n, &total);
	seq_printf(m, "%-20s %-44s %-46s %6s %10s %9s %-20s\n", "NAME", "PUBLIC_KEY",
		   "ENDPOINT", "ACTIVE", "HANDSHAKES", "AUTH_FAIL",
		   "LAST_HANDSHAKE_NS");
	for (k = 0; k < n; k++) {
		pool_b64(key, buf[k].public_key);
		if (buf[k].endpoint_port)
			pool_fmt_endpoint(ep, sizeof(ep), buf[k].endpoint_addr,
					  buf[k].endpoint_port);
		else
			strscpy(ep, "-", sizeof(ep));
		seq_printf(m, "%-20.*s %-44s %-46s %6u %10llu %9llu %-20llu\n",
			   POOL_NAME_LEN, buf[k].name[0] ? buf[k].name : "-",
			   key, ep, buf[k].active_sessions, buf[k].handshakes,
			   buf[k].auth_failures, buf[k].last_handshake_ns);
	}
	kvfree(buf);
	return 0;
}

static int pool_journal_proc_show(struct seq_file *m, void *v)
{
	pool_journal_show(m);
	return 0;
}

/* Root only, like /dev/pool: the trust store, peer addresses and the journal are here. */
#define POOL_PROC_MODE	0400

int pool_procfs_init(void)
{
	pool_proc_dir = proc_mkdir("pool", NULL);
	if (!pool_proc_dir)
		return -ENOMEM;
	if (!proc_create_single("status", POOL_PROC_MODE, pool_proc_dir, pool_status_show) ||
	    !proc_create_single("sessions", POOL_PROC_MODE, pool_proc_dir, pool_sessions_show) ||
	    !proc_create_single("telemetry", POOL_PROC_MODE, pool_proc_dir, pool_telemetry_show) ||
	    !proc_create_single("peers", POOL_PROC_MODE, pool_proc_dir, pool_peers_show) ||
	    !proc_create_single("journal", POOL_PROC_MODE, pool_proc_dir, pool_journal_proc_show)) {
		remove_proc_subtree("pool", NULL);
		return -ENOMEM;
	}
	return 0;
}

void pool_procfs_exit(void)
{
	remove_proc_subtree("pool", NULL);
}
