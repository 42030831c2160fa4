/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * selftest_check.h - the checks the self-test files share (selftest.c,
 * selftest_vectors.c): each test function returns false at the first
 * failure, after saying what failed.
 */
#ifndef _POOL_SELFTEST_CHECK_H
#define _POOL_SELFTEST_CHECK_H

#include <linux/init.h>
#include <linux/printk.h>
#include <linux/types.h>

bool __init pool_same(const char *fn, const char *what, const u8 *got,
		      const u8 *want, size_t len);

#define CHECK(cond, what)						\
	do {								\
		if (!(cond)) {						\
			pr_err("%s: %s failed\n", __func__, what);	\
			return false;					\
		}							\
	} while (0)

#define SAME(got, want, len, what)					\
	do {								\
		if (!pool_same(__func__, what, got, want, len))	\
			return false;					\
	} while (0)

/* selftest_vectors.c: the POOL/1 construction against tests/vectors */
bool __init pool_selftest_vectors(void);

#endif
