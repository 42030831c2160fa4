// SPDX-License-Identifier: GPL-2.0-only
/*
 * journal.c - the hash-chained journal (docs/protocol.md section 6).
 *
 * A ring of POOL_JOURNAL_SIZE entries; the oldest are overwritten, readers
 * learn from first_seq what they missed. Entries are written from process
 * and softirq context (the socket callbacks), never from a hard interrupt:
 * a BH spinlock, no allocation. Readers copy in short chunks so the lock is
 * never held for long.
 *
 * Ownership and teardown: pool_journal_init() allocates the ring (vzalloc),
 * pool_journal_exit() frees it after every other user has stopped (it is the
 * last thing module exit does before the crypto code goes).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>
#include <linux/uaccess.h>
#include <linux/ktime.h>
#include <linux/seq_file.h>
#include <linux/string.h>

#include "pool.h"

static struct {
	spinlock_t			lock;
	struct pool_journal_entry	*ring;
	u64				next_seq;	/* seq of the next entry */
	u64				count;		/* entries written since load */
	bool				seeded;
	u8				head[POOL_HASH_LEN];
} journal;

/* The entry's hash (section 6), by the helper the self-test checks. */
static void pool_journal_hash(struct pool_journal_entry *e)
{
	pool_journal_hash_compute(e->hash, e->prev_hash, e->seq,
				  e->timestamp_ns, e->type, e->code,
				  e->config_version, e->peer_public_key,
				  e->detail, sizeof(e->detail));
}

static struct pool_journal_entry *pool_journal_slot(u64 seq)
{
	return &journal.ring[seq % POOL_JOURNAL_SIZE];
}

void pool_journal(u16 type, u16 code, const u8 *peer_key, const char *fmt, ...)
{
	struct pool_journal_entry e = {};
	va_list ap;

	if (!journal.ring)
		return;
	e.timestamp_ns = ktime_get_real_ns();
	e.type = type;
	e.code = code;
	e.config_version = READ_ONCE(pool_node.config_version);
	if (peer_key)
		memcpy(e.peer_public_key, peer_key, POOL_KEY_LEN);
	va_start(ap, fmt);
	vscnprintf(e.detail, sizeof(e.detail), fmt, ap);
	va_end(ap);

	spin_lock_bh(&journal.lock);
	e.seq = journal.next_seq++;
	memcpy(e.prev_hash, journal.head, POOL_HASH_LEN);
	pool_journal_hash(&e);
	memcpy(journal.head, e.hash, POOL_HASH_LEN);
	*pool_journal_slot(e.seq) = e;
	journal.count++;
	spin_unlock_bh(&journal.lock);
	pool_stat_inc(POOL_STAT_JOURNAL_ENTRIES);
}

u64 pool_journal_next(void)
{
	return READ_ONCE(journal.next_seq);
}

/* Oldest seq the ring holds; called under journal.lock. */
static u64 pool_journal_first(void)
{
	return journal.next_seq - min_t(u64, journal.count, POOL_JOURNAL_SIZE);
}

/* Entries copied per hold of journal.lock (about 11 KiB). */
#define POOL_JOURNAL_CHUNK	64

/*
 * A contiguous run from max(from_seq, first) into the caller's list. When
 * writers overwrite entries not yet copied, the run stops short (count <
 * total) and the caller reads again from its next seq. next_seq and
 * head_hash are the journal's as the last chunk was taken.
 */
int pool_journal_read(struct pool_journal_read *r)
{
	struct pool_journal_entry __user *out = u64_to_user_ptr(r->list.ptr);
	struct pool_journal_entry *buf;
	u32 cap = min_t(u32, r->list.capacity, POOL_JOURNAL_SIZE);
	u64 first, next, from, seq;
	u32 n = 0, total, end;
	int ret = 0;

	buf = cap ? kvmalloc_array(cap, sizeof(*buf), GFP_KERNEL) : NULL;
	if (cap && !buf)
		return -ENOMEM;

	spin_lock_bh(&journal.lock);
	first = pool_journal_first();
	from = max(r->from_seq, first);
	seq = from;
	for (;;) {
		next = journal.next_seq;
		memcpy(r->head_hash, journal.head, POOL_HASH_LEN);
		if (seq < pool_journal_first())
			break;	/* overwritten while we copied */
		end = min_t(u32, cap, n + POOL_JOURNAL_CHUNK);
		for (; seq < next && n < end; seq++)
			buf[n++] = *pool_journal_slot(seq);
		if (seq >= next || n >= cap)
			break;
		spin_unlock_bh(&journal.lock);
		cond_resched();
		spin_lock_bh(&journal.lock);
	}
	spin_unlock_bh(&journal.lock);
	total = from < next ? next - from : 0;

	if (n && copy_to_user(out, buf, n * sizeof(*buf)))
		ret = -EFAULT;
	kvfree(buf);
	r->list.count = n;
	r->list.total = total;
	r->list.reserved = 0;
	r->first_seq = first;
	r->next_seq = next;
	return ret;
}

int pool_journal_seed(const struct pool_journal_seed *s)
{
	struct pool_journal_entry *g;
	int ret = 0;

	spin_lock_bh(&journal.lock);
	if (journal.count != 1 || journal.seeded) {
		ret = -EBUSY;
		goto out;
	}
	g = pool_journal_slot(journal.next_seq - 1);
	if (g->type != POOL_JOURNAL_GENESIS || s->next_seq == U64_MAX) {
		ret = -EBUSY;
		goto out;
	}
	g->seq = s->next_seq;
	memcpy(g->prev_hash, s->head_hash, POOL_HASH_LEN);
	pool_journal_hash(g);
	memcpy(journal.head, g->hash, POOL_HASH_LEN);
	journal.next_seq = s->next_seq + 1;
	journal.seeded = true;
	/* the ring is indexed by seq: move the entry to its new slot */
	if (pool_journal_slot(g->seq) != g) {
		*pool_journal_slot(g->seq) = *g;
		memset(g, 0, sizeof(*g));
	}
out:
	spin_unlock_bh(&journal.lock);
	return ret;
}

static const char *const pool_journal_types[] = {
	"GENESIS", "CONNECT", "DISCONNECT", "CONFIG", "ROLLBACK",
	"REKEY", "ERROR", "IDENTITY", "PEER", "LISTEN",
};

void pool_journal_show(struct seq_file *m)
{
	struct pool_journal_entry e;
	u64 first, next, seq;

	spin_lock_bh(&journal.lock);
	first = pool_journal_first();
	next = journal.next_seq;
	spin_unlock_bh(&journal.lock);

	seq_printf(m, "%-8s %-20s %-10s %-6s %-6s %-16s %-16s %s\n", "SEQ",
		   "TIMESTAMP_NS", "TYPE", "CODE", "CONFIG", "PEER", "HASH",
		   "DETAIL");
	for (seq = first; seq < next; seq++) {
		spin_lock_bh(&journal.lock);
		if (seq < pool_journal_first()) {
			spin_unlock_bh(&journal.lock);
			continue;
		}
		e = *pool_journal_slot(seq);
		spin_unlock_bh(&journal.lock);
		seq_printf(m, "%-8llu %-20llu %-10s 0x%-4x %-6u %*phN %*phN %s\n",
			   e.seq, e.timestamp_ns,
			   e.type < ARRAY_SIZE(pool_journal_types) ?
			   pool_journal_types[e.type] : "?",
			   e.code, e.config_version, 8, e.peer_public_key, 8,
			   e.hash, e.detail);
	}
}

int pool_journal_init(void)
{
	spin_lock_init(&journal.lock);
	journal.ring = vzalloc(array_size(POOL_JOURNAL_SIZE,
					  sizeof(*journal.ring)));
	if (!journal.ring)
		return -ENOMEM;
	journal.next_seq = 0;
	journal.count = 0;
	journal.seeded = false;
	memset(journal.head, 0, sizeof(journal.head));
	pool_journal(POOL_JOURNAL_GENESIS, 0, NULL, "pool.ko %s loaded",
		     POOL_VERSION);
	return 0;
}

void pool_journal_exit(void)
{
	vfree(journal.ring);
	journal.ring = NULL;
}

void pool_fail(enum pool_stat stat, u16 code, const u8 *peer_key,
	       const char *what)
{
	pool_stat_inc(stat);
	pool_journal(POOL_JOURNAL_ERROR, code, peer_key, "%s", what);
}

/*
 * Unauthenticated events (a handshake refused, a half-open connection
 * refused, dropped or timed out) can come from anyone at any rate: each
 * reason (error code) is journaled at most once per second and the rest of
 * that second goes into one "N more" entry, so a flood cannot push the
 * authenticated history (configuration, sessions) out of the ring. Every
 * event is still counted in its statistic.
 */
#define POOL_UNAUTH_REASONS	32
#define POOL_UNAUTH_INTERVAL	HZ

static struct {
	spinlock_t		lock;
	struct {
		unsigned long	since;		/* jiffies of the last entry journaled */
		u32		more;		/* events since, not journaled */
		char		what[48];
	} reason[POOL_UNAUTH_REASONS];
	struct delayed_work	flush;
} unauth;

static void pool_unauth_flush(struct work_struct *w)
{
	char what[sizeof(unauth.reason[0].what)];
	u16 code;
	u32 n;

	for (code = 0; code < POOL_UNAUTH_REASONS; code++) {
		spin_lock_bh(&unauth.lock);
		n = unauth.reason[code].more;
		unauth.reason[code].more = 0;
		if (n)
			unauth.reason[code].since = jiffies;
		memcpy(what, unauth.reason[code].what, sizeof(what));
		spin_unlock_bh(&unauth.lock);
		if (n)
			pool_journal(POOL_JOURNAL_ERROR, code, NULL, "%u more: %s", n, what);
	}
}

void pool_fail_unauth(enum pool_stat stat, u16 code, const u8 *peer_key,
		      const char *what)
{
	bool now;

	pool_stat_inc(stat);
	if (code >= POOL_UNAUTH_REASONS) {
		pool_journal(POOL_JOURNAL_ERROR, code, peer_key, "%s", what);
		return;
	}
	spin_lock_bh(&unauth.lock);
	now = !unauth.reason[code].since ||
	      time_after_eq(jiffies, unauth.reason[code].since + POOL_UNAUTH_INTERVAL);
	if (now) {
		unauth.reason[code].since = jiffies;
	} else {
		unauth.reason[code].more++;
		strscpy(unauth.reason[code].what, what, sizeof(unauth.reason[code].what));
	}
	spin_unlock_bh(&unauth.lock);
	if (now)
		pool_journal(POOL_JOURNAL_ERROR, code, peer_key, "%s", what);
	else
		queue_delayed_work(pool_node.wq, &unauth.flush, POOL_UNAUTH_INTERVAL);
}

void pool_unauth_init(void)
{
	memset(&unauth.reason, 0, sizeof(unauth.reason));
	spin_lock_init(&unauth.lock);
	INIT_DELAYED_WORK(&unauth.flush, pool_unauth_flush);
}

/* Module exit, once no connection can be refused any more; journals what is pending. */
void pool_unauth_exit(void)
{
	cancel_delayed_work_sync(&unauth.flush);
	pool_unauth_flush(&unauth.flush.work);
}
