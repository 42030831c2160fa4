/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * selftest.h - known-answer tests run at module load (docs/protocol.md
 * section 8). Non-zero means a primitive or the POOL/1 construction is
 * broken: the module must refuse to load (-ELIBBAD).
 */
#ifndef _POOL_SELFTEST_H
#define _POOL_SELFTEST_H

int pool_selftest(void);

#endif
