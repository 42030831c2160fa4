// SPDX-License-Identifier: GPL-2.0-only
/*
 * timers.c - heartbeats, telemetry, dead-peer detection and rekeying
 * (docs/protocol.md sections 4 and 5).
 *
 * Each session has two delayed works on pool_wq: hb_work (every
 * heartbeat_seconds) and rekey_work (when the keys are due). Both are
 * cancelled synchronously by the session teardown (session.c) and allocate
 * nothing but the next epoch's AEADs. Rekey state lives under tx_lock; the
 * receive keys are switched only from rx_work, at the exact packet the
 * protocol names, so no packet is ever read with the wrong epoch.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/jiffies.h>
#include <linux/ktime.h>
#include <linux/math64.h>

#include "pool.h"
#include "telemetry.h"

#define POOL_REKEY_INIT		1
#define POOL_REKEY_REPLY	2
#define POOL_REKEY_SWITCH	3

static unsigned long pool_hb_interval(void)
{
	return READ_ONCE(pool_node.params.heartbeat_seconds) * HZ;
}

static void pool_rekey_schedule(struct pool_session *s)
{
	u64 now = ktime_get_boottime_seconds();
	u64 due = s->rekey_started + READ_ONCE(pool_node.params.rekey_seconds);
	unsigned long delay = 1;

	if (s->rekey_state != POOL_RK_IDLE)
		delay = max_t(long, (long)(s->rekey_deadline - jiffies), 0) + 1;
	else if (due > now)
		delay = (due - now) * HZ;
	mod_delayed_work(pool_node.wq, &s->rekey_work, delay);
}

void pool_timers_start(struct pool_session *s)
{
	mutex_lock(&s->tx_lock);
	spin_lock_bh(&s->lock);
	/* a teardown that already began cancels nothing armed after it */
	if (!s->closing) {
		queue_delayed_work(pool_node.wq, &s->hb_work, pool_hb_interval());
		pool_rekey_schedule(s);
	}
	spin_unlock_bh(&s->lock);
	mutex_unlock(&s->tx_lock);
}

/* ---- heartbeats ------------------------------------------------------------ */

void pool_hb_work(struct work_struct *w)
{
	struct pool_session *s = container_of(to_delayed_work(w),
					      struct pool_session, hb_work);
	unsigned long interval = pool_hb_interval();
	u8 pt[POOL_HEARTBEAT_LEN];
	struct pool_telemetry t;
	u64 now = ktime_get_boottime_ns(), bytes;

	if (READ_ONCE(s->closing))
		return;

	/* flow control keeps the stream read, so silence is the peer's */
	if (time_after(jiffies, READ_ONCE(s->last_rx) + 3 * interval)) {
		pool_stat_inc(POOL_STAT_PEERS_DEAD);
		pool_session_close(s, POOL_ERR_PEER_DEAD, false);
		return;
	}

	mutex_lock(&s->tx_lock);
	spin_lock_bh(&s->lock);
	if (s->hb_count && !s->hb_answered)
		s->hb_lost++;
	s->tel_local.loss_rate_ppm = s->hb_count ?
		div64_u64(s->hb_lost * 1000000ULL, s->hb_count) : 0;
	bytes = s->bytes_sent + s->bytes_recv;
	s->tel_local.throughput_bps = pool_throughput_bps(bytes - s->tp_last_bytes,
							  now - s->tp_last_boot);
	s->tp_last_bytes = bytes;
	s->tp_last_boot = now;
	s->tel_local.queue_depth = min_t(u32, s->rxq_len, 0xffff);
	s->tel_local.rekey_count = s->epoch;
	s->tel_local.uptime_ns = now - s->established_boot;
	s->tel_local.config_version = READ_ONCE(pool_node.config_version);
	t = s->tel_local;
	spin_unlock_bh(&s->lock);

	put_unaligned_be64(t.rtt_ns, pt);
	put_unaligned_be64(t.jitter_ns, pt + 8);
	put_unaligned_be32(t.loss_rate_ppm, pt + 16);
	put_unaligned_be32(t.throughput_bps, pt + 20);
	put_unaligned_be16(t.mtu, pt + 24);
	put_unaligned_be16(t.queue_depth, pt + 26);
	put_unaligned_be64(t.uptime_ns, pt + 28);
	put_unaligned_be32(t.rekey_count, pt + 36);
	put_unaligned_be32(t.config_version, pt + 40);
	if (!pool_send_locked(s, POOL_PKT_HEARTBEAT, POOL_F_TELEMETRY, 0, pt,
			      sizeof(pt))) {
		spin_lock_bh(&s->lock);
		s->hb_seq = s->tx_seq;
		s->hb_answered = false;
		s->hb_count++;
		s->heartbeats_sent++;
		spin_unlock_bh(&s->lock);
	}
	mutex_unlock(&s->tx_lock);
	queue_delayed_work(pool_node.wq, &s->hb_work, interval);
}

void pool_heartbeat_rx(struct pool_session *s, const struct pool_hdr *h,
		       const u8 *pt)
{
	struct pool_telemetry t = {};
	u8 ack[POOL_ACK_PT_LEN];

	t.rtt_ns = get_unaligned_be64(pt);
	t.jitter_ns = get_unaligned_be64(pt + 8);
	t.loss_rate_ppm = get_unaligned_be32(pt + 16);
	t.throughput_bps = get_unaligned_be32(pt + 20);
	t.mtu = get_unaligned_be16(pt + 24);
	t.queue_depth = get_unaligned_be16(pt + 26);
	t.uptime_ns = get_unaligned_be64(pt + 28);
	t.rekey_count = get_unaligned_be32(pt + 36);
	t.config_version = get_unaligned_be32(pt + 40);
	spin_lock_bh(&s->lock);
	s->tel_peer = t;
	s->heartbeats_recv++;
	spin_unlock_bh(&s->lock);

	put_unaligned_be64(h->seq, ack);
	put_unaligned_be64(h->timestamp, ack + 8);
	pool_send_ctrl(s, POOL_PKT_ACK, 0, ack, sizeof(ack), true);
}

void pool_ack_rx(struct pool_session *s, const u8 *pt)
{
	u64 seq = get_unaligned_be64(pt);
	u64 ts = get_unaligned_be64(pt + 8);
	u64 now = ktime_get_real_ns();
	u64 rtt, diff;

	spin_lock_bh(&s->lock);
	if (seq == s->hb_seq && !s->hb_answered && now >= ts) {
		s->hb_answered = true;
		rtt = now - ts;
		if (s->last_rtt) {
			diff = rtt > s->last_rtt ? rtt - s->last_rtt :
						   s->last_rtt - rtt;
			if (diff >= s->tel_local.jitter_ns)
				s->tel_local.jitter_ns +=
					(diff - s->tel_local.jitter_ns) / 8;
			else
				s->tel_local.jitter_ns -=
					(s->tel_local.jitter_ns - diff) / 8;
		}
		s->last_rtt = rtt;
		s->tel_local.rtt_ns = rtt;
	}
	spin_unlock_bh(&s->lock);
}

/* ---- rekey ------------------------------------------------------------------- */

static int pool_rekey_send(struct pool_session *s, u8 kind, u32 epoch,
			   const u8 *pub)
{
	u8 pt[POOL_REKEY_PT_LEN] = {};

	pt[0] = kind;
	put_unaligned_be32(epoch, pt + 4);
	if (pub)
		memcpy(pt + 8, pub, 32);
	return pool_send_locked(s, POOL_PKT_REKEY, 0, 0, pt, sizeof(pt));
}

static void pool_rekey_done(struct pool_session *s, u32 epoch)
{
	s->rekey_state = POOL_RK_IDLE;
	s->rekey_started = ktime_get_boottime_seconds();
	spin_lock_bh(&s->lock);
	s->epoch = epoch;
	spin_unlock_bh(&s->lock);
	memzero_explicit(s->rekey_secret, sizeof(s->rekey_secret));
	pool_stat_inc(POOL_STAT_REKEYS);
	pool_journal(POOL_JOURNAL_REKEY, 0, s->peer_key, "session %u epoch %u",
		     s->index, epoch);
	pool_rekey_schedule(s);
}

/*
 * Our REKEY (INIT, or the REPLY that awaits a SWITCH) just went into the
 * ring as sequence tx_seq: the peer must complete the exchange within
 * POOL_REKEY_TIMEOUT of acknowledging it.
 */
static void pool_rekey_arm_timeout(struct pool_session *s)
{
	lockdep_assert_held(&s->tx_lock);
	s->rekey_sent_seq = s->tx_seq;
	s->rekey_deadline = jiffies + POOL_REKEY_TIMEOUT;
}

/*
 * A rekey in flight past its deadline. One the peer has not acknowledged
 * yet may still sit in a congested path's buffers (ours or the network's),
 * so its clock restarts instead: what fails is a peer that read our REKEY
 * and did not answer.
 */
static bool pool_rekey_timed_out(struct pool_session *s)
{
	lockdep_assert_held(&s->tx_lock);
	if (s->rekey_state == POOL_RK_IDLE || !time_after(jiffies, s->rekey_deadline))
		return false;
	if (READ_ONCE(s->peer_acked) >= s->rekey_sent_seq)
		return true;
	s->rekey_deadline = jiffies + POOL_REKEY_TIMEOUT;
	return false;
}

/* Starts a rekey if due and none is in flight. */
void pool_rekey_start(struct pool_session *s)
{
	u64 age = ktime_get_boottime_seconds() - s->rekey_started;

	lockdep_assert_held(&s->tx_lock);
	if (s->tx_dead || s->rekey_state != POOL_RK_IDLE)
		return;
	if (age < READ_ONCE(pool_node.params.rekey_seconds) &&
	    s->tx_since_rekey < READ_ONCE(pool_node.params.rekey_packets))
		return;
	pool_x25519_generate(s->rekey_secret, s->rekey_public);
	s->rekey_epoch = s->epoch + 1;
	if (pool_rekey_send(s, POOL_REKEY_INIT, s->rekey_epoch,
			    s->rekey_public)) {
		memzero_explicit(s->rekey_secret, sizeof(s->rekey_secret));
		return;	/* ring full of control packets: next time */
	}
	s->rekey_state = POOL_RK_INIT_SENT;
	pool_rekey_arm_timeout(s);
}

void pool_rekey_work(struct work_struct *w)
{
	struct pool_session *s = container_of(to_delayed_work(w),
					      struct pool_session, rekey_work);
	bool timed_out;

	if (READ_ONCE(s->closing))
		return;
	mutex_lock(&s->tx_lock);
	/* a rekey the peer never completes must not leave the keys in use for ever */
	timed_out = pool_rekey_timed_out(s);
	if (!timed_out) {
		pool_rekey_start(s);
		if (!s->tx_dead)
			pool_rekey_schedule(s);
	}
	mutex_unlock(&s->tx_lock);
	if (timed_out) {
		pool_fail(POOL_STAT_MALFORMED, POOL_ERR_REKEY_FAIL, s->peer_key,
			  "rekey: not completed in time");
		pool_session_close(s, POOL_ERR_REKEY_FAIL, true);
	}
}

/* Keys of epoch n+1 from our ephemeral secret and the peer's public key. */
static int pool_rekey_keys(struct pool_session *s, const u8 secret[32],
			   const u8 pub[32], struct pool_dir *tx,
			   struct pool_dir *rx)
{
	struct pool_keys k;
	u8 dh[32];
	int ret;

	if (!pool_x25519(dh, secret, pub)) {
		memzero_explicit(dh, sizeof(dh));
		return -EINVAL;
	}
	pool_rekey_derive(s->rk, dh, s->role == POOL_ROLE_INITIATOR, &k);
	memzero_explicit(dh, sizeof(dh));
	ret = pool_dir_init(tx, k.send_key, k.send_mac);
	if (!ret) {
		ret = pool_dir_init(rx, k.recv_key, k.recv_mac);
		if (ret)
			pool_dir_destroy(tx);
	}
	if (!ret)
		memcpy(s->rk, k.rk, sizeof(s->rk));
	memzero_explicit(&k, sizeof(k));
	return ret;
}

/* New send keys: their age, use and the tunables they were installed under. */
void pool_tx_limits_reset(struct pool_session *s)
{
	lockdep_assert_held(&s->tx_lock);
	s->tx_since_rekey = 0;
	s->tx_keys_boot_s = ktime_get_boottime_seconds();
	s->tx_keys_rekey_seconds = READ_ONCE(pool_node.params.rekey_seconds);
	s->tx_keys_rekey_packets = READ_ONCE(pool_node.params.rekey_packets);
}

/*
 * The send keys' hard limit: rekey_seconds + 60 s, rekey_packets + 2^20,
 * with the larger of the tunables in force when the keys were installed and
 * now. Lowering them must not expire keys at once (their rekey starts now
 * and needs a round trip); raising them postpones the rekey and the limit.
 */
bool pool_tx_keys_expired(struct pool_session *s)
{
	u64 secs = max_t(u64, s->tx_keys_rekey_seconds,
			 READ_ONCE(pool_node.params.rekey_seconds));
	u64 pkts = max_t(u64, s->tx_keys_rekey_packets,
			 READ_ONCE(pool_node.params.rekey_packets));

	lockdep_assert_held(&s->tx_lock);
	return s->tx_since_rekey >= pkts + POOL_REJECT_AFTER_EXTRA_PACKETS ||
	       ktime_get_boottime_seconds() >=
	       s->tx_keys_boot_s + secs + POOL_REJECT_AFTER_EXTRA_S;
}

static void pool_tx_switch(struct pool_session *s, struct pool_dir *tx)
{
	struct pool_dir old = s->tx;

	s->tx = *tx;
	pool_tx_limits_reset(s);
	pool_dir_destroy(&old);
	memzero_explicit(tx, sizeof(*tx));
}

/* rx_work: a REKEY packet. Non-zero closes the session with REKEY_FAIL. */
int pool_rekey_rx(struct pool_session *s, const u8 *pt, size_t len)
{
	u8 kind = pt[0];
	u32 epoch = get_unaligned_be32(pt + 4);
	const u8 *pub = pt + 8;
	u8 secret[32], public[32];
	struct pool_dir tx = {}, rx = {};
	int ret = -EPROTO;

	if (len != POOL_REKEY_PT_LEN || pt[1] || pt[2] || pt[3])
		return -EPROTO;
	mutex_lock(&s->tx_lock);
	switch (kind) {
	case POOL_REKEY_INIT:
		if (epoch != s->epoch + 1 ||
		    s->rekey_state == POOL_RK_AWAIT_SWITCH)
			break;
		if (s->rekey_state == POOL_RK_INIT_SENT) {
			/* both started: the lower own id wins (equal: initiator) */
			u64 own = get_unaligned_be64(s->own_id);
			u64 peer = get_unaligned_be64(s->peer_id);

			if (own < peer ||
			    (own == peer && s->role == POOL_ROLE_INITIATOR)) {
				ret = 0;
				break;
			}
			memzero_explicit(s->rekey_secret,
					 sizeof(s->rekey_secret));
			s->rekey_state = POOL_RK_IDLE;
		}
		pool_x25519_generate(secret, public);
		ret = pool_rekey_keys(s, secret, pub, &tx, &rx);
		memzero_explicit(secret, sizeof(secret));
		if (ret)
			break;
		ret = pool_rekey_send(s, POOL_REKEY_REPLY, epoch, public);
		if (ret) {
			pool_dir_destroy(&tx);
			pool_dir_destroy(&rx);
			break;
		}
		pool_tx_switch(s, &tx);
		s->rx_next = rx;
		s->rx_next_valid = true;
		s->rekey_epoch = epoch;
		s->rekey_state = POOL_RK_AWAIT_SWITCH;
		pool_rekey_arm_timeout(s);
		break;
	case POOL_REKEY_REPLY:
		if (s->rekey_state != POOL_RK_INIT_SENT || epoch != s->rekey_epoch)
			break;
		ret = pool_rekey_keys(s, s->rekey_secret, pub, &tx, &rx);
		if (ret)
			break;
		/* receive with n+1 from the next packet on */
		pool_dir_destroy(&s->rx);
		s->rx = rx;
		ret = pool_rekey_send(s, POOL_REKEY_SWITCH, epoch, NULL);
		if (ret) {
			pool_dir_destroy(&tx);
			break;
		}
		pool_tx_switch(s, &tx);
		pool_rekey_done(s, epoch);
		break;
	case POOL_REKEY_SWITCH:
		if (s->rekey_state != POOL_RK_AWAIT_SWITCH ||
		    epoch != s->rekey_epoch || !s->rx_next_valid)
			break;
		pool_dir_destroy(&s->rx);
		s->rx = s->rx_next;
		memzero_explicit(&s->rx_next, sizeof(s->rx_next));
		s->rx_next_valid = false;
		pool_rekey_done(s, epoch);
		ret = 0;
		break;
	default:
		break;
	}
	mutex_unlock(&s->tx_lock);
	memzero_explicit(&rx, sizeof(rx));
	return ret;
}
