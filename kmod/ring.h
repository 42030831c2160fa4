/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * ring.h - the send ring's position arithmetic, pure so that the load-time
 * self-test runs it across the counters' wrap.
 *
 * Producer and consumer positions are free-running u32 byte counts; the ring
 * holds the bytes between them. A position maps to the offset pos mod SIZE,
 * which stays continuous across 2^32 only when SIZE divides 2^32: a size that
 * is not a power of two would place the bytes written just after the wrap
 * over bytes not yet sent whenever the ring is more than 2^32 mod SIZE full.
 */
#ifndef _POOL_RING_H
#define _POOL_RING_H

#include <linux/build_bug.h>
#include <linux/minmax.h>
#include <linux/string.h>
#include <linux/types.h>
#include <linux/uio.h>

#define POOL_RING_SIZE		(256U << 10)
#define POOL_RING_RESERVE	(8U << 10)	/* room kept for control packets */
#define POOL_RING_DATA		(POOL_RING_SIZE - POOL_RING_RESERVE)

static_assert((POOL_RING_SIZE & (POOL_RING_SIZE - 1)) == 0,
	      "the ring size must divide 2^32");

static inline u32 pool_ring_off(u32 pos)
{
	return pos & (POOL_RING_SIZE - 1);
}

/* Bytes queued between the consumer and the producer. */
static inline u32 pool_ring_used(u32 prod, u32 cons)
{
	return prod - cons;
}

/* Copies len bytes into the ring at pos (room checked by the caller); returns the new pos. */
static inline u32 pool_ring_put(u8 *ring, u32 pos, const u8 *src, u32 len)
{
	u32 off = pool_ring_off(pos);
	u32 chunk = min(len, POOL_RING_SIZE - off);

	memcpy(ring + off, src, chunk);
	memcpy(ring, src + chunk, len - chunk);
	return pos + len;
}

/* The len bytes from cons as one or two vectors; returns how many. */
static inline unsigned int pool_ring_peek(u8 *ring, u32 cons, u32 len, struct kvec vec[2])
{
	u32 off = pool_ring_off(cons);

	vec[0].iov_base = ring + off;
	vec[0].iov_len = min(len, POOL_RING_SIZE - off);
	if (vec[0].iov_len == len)
		return 1;
	vec[1].iov_base = ring;
	vec[1].iov_len = len - vec[0].iov_len;
	return 2;
}

#endif
