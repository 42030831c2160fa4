/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * telemetry.h - arithmetic of the heartbeat telemetry, pure so that the
 * load-time self-test checks it at its limits.
 */
#ifndef _POOL_TELEMETRY_H
#define _POOL_TELEMETRY_H

#include <linux/math64.h>
#include <linux/minmax.h>
#include <linux/time64.h>
#include <linux/types.h>

/*
 * Bits per second over dt_ns, saturated at U32_MAX (the wire field). The
 * 128-bit intermediate keeps a byte count above 2.3 GB (2^64 / 8e9) per
 * interval from wrapping.
 */
static inline u32 pool_throughput_bps(u64 bytes, u64 dt_ns)
{
	if (!dt_ns)
		return 0;
	return min_t(u64, mul_u64_u64_div_u64(bytes, 8ULL * NSEC_PER_SEC, dt_ns), U32_MAX);
}

#endif
