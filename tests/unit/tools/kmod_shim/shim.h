/*
 * Userspace shim: just enough of the kernel API to compile kmod/selftest.c,
 * handshake.c and wire.c against OpenSSL, so that the unit tests run the
 * module's known-answer self-test (tests/vectors) without a VM. Not kernel code.
 */
#ifndef SHIM_H
#define SHIM_H
#include <stdint.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <time.h>
#include <openssl/sha.h>
#include <openssl/rand.h>
#include <openssl/crypto.h>
typedef uint8_t u8; typedef uint16_t u16; typedef uint32_t u32; typedef uint64_t u64;
typedef int8_t s8; typedef int16_t s16; typedef int32_t s32; typedef int64_t s64;
#include <linux/types.h>
typedef unsigned int gfp_t;
#define GFP_KERNEL 0
#define __init
#define __initconst
#define __initdata
#define __exit
#define __maybe_unused __attribute__((__unused__))
#define __must_check __attribute__((warn_unused_result))
#define likely(x) (x)
#define unlikely(x) (x)
#define NSEC_PER_SEC 1000000000ULL
#define NSEC_PER_USEC 1000ULL
#define U32_MAX ((u32)~0U)
#define LINUX_VERSION_CODE 0x060100
#define KERNEL_VERSION(a, b, c) (((a) << 16) + ((b) << 8) + (c))
#define min_t(t, a, b) ((t)(a) < (t)(b) ? (t)(a) : (t)(b))
#define max_t(t, a, b) ((t)(a) > (t)(b) ? (t)(a) : (t)(b))
#define min(a, b) ((a) < (b) ? (a) : (b))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define GENMASK_ULL(h, l) (((~0ULL) << (l)) & (~0ULL >> (63 - (h))))
#define BUILD_BUG_ON(c) _Static_assert(!(c), #c)
#define static_assert(c, ...) _Static_assert(c, #c)
#define lockdep_assert_held(l) ((void)(l))
#ifndef pr_fmt
#define pr_fmt(fmt) fmt
#endif
#define pr_err(fmt, ...) fprintf(stderr, pr_fmt(fmt), ##__VA_ARGS__)
#define pr_info(fmt, ...) fprintf(stderr, pr_fmt(fmt), ##__VA_ARGS__)
#define pr_warn(fmt, ...) fprintf(stderr, pr_fmt(fmt), ##__VA_ARGS__)
#define pr_debug(fmt, ...) do { } while (0)
#define WARN_ON(x) (x)
#define WARN_ON_ONCE(x) (x)
static inline void memzero_explicit(void *p, size_t n) { OPENSSL_cleanse(p, n); }
static inline void *memchr_inv(const void *p, int c, size_t n)
{ const u8 *b = p; for (size_t i = 0; i < n; i++) if (b[i] != (u8)c) return (void *)(b + i); return NULL; }
static inline int crypto_memneq(const void *a, const void *b, size_t n) { return CRYPTO_memcmp(a, b, n) != 0; }
static inline u16 get_unaligned_be16(const void *p) { const u8 *b = p; return (u16)(b[0] << 8 | b[1]); }
static inline u32 get_unaligned_be32(const void *p) { const u8 *b = p; return (u32)b[0] << 24 | (u32)b[1] << 16 | (u32)b[2] << 8 | b[3]; }
static inline u64 get_unaligned_be64(const void *p) { const u8 *b = p; return (u64)get_unaligned_be32(b) << 32 | get_unaligned_be32(b + 4); }
static inline void put_unaligned_be16(u16 v, void *p) { u8 *b = p; b[0] = v >> 8; b[1] = v; }
static inline void put_unaligned_be32(u32 v, void *p) { u8 *b = p; b[0] = v >> 24; b[1] = v >> 16; b[2] = v >> 8; b[3] = v; }
static inline void put_unaligned_be64(u64 v, void *p) { put_unaligned_be32(v >> 32, p); put_unaligned_be32((u32)v, (u8 *)p + 4); }
static inline void cond_resched(void) { }
struct task_struct { int dummy; };
extern struct task_struct *current;
static inline int signal_pending(struct task_struct *t) { (void)t; return 0; }
static inline void *kmalloc(size_t n, gfp_t g) { (void)g; return malloc(n); }
static inline void *kzalloc(size_t n, gfp_t g) { (void)g; return calloc(1, n); }
static inline void kfree(const void *p) { free((void *)p); }
static inline void kfree_sensitive(const void *p) { free((void *)p); }
static inline void *kvmalloc(size_t n, gfp_t g) { (void)g; return malloc(n); }
static inline void kvfree(const void *p) { free((void *)p); }
struct kvec { void *iov_base; size_t iov_len; };
static inline u64 mul_u64_u64_div_u64(u64 a, u64 b, u64 c) { return (u64)((unsigned __int128)a * b / c); }
static inline u64 div_u64(u64 a, u32 b) { return a / b; }
static inline u32 get_unaligned_le32(const void *p) { const u8 *b = p; return (u32)b[3] << 24 | (u32)b[2] << 16 | (u32)b[1] << 8 | b[0]; }
static inline u64 get_unaligned_le64(const void *p) { return (u64)get_unaligned_le32((const u8 *)p + 4) << 32 | get_unaligned_le32(p); }
static inline void put_unaligned_le32(u32 v, void *p) { u8 *b = p; b[0] = v; b[1] = v >> 8; b[2] = v >> 16; b[3] = v >> 24; }
void get_random_bytes(void *buf, size_t n);
static inline u64 ktime_get_ns(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return ts.tv_sec * NSEC_PER_SEC + ts.tv_nsec; }
static inline u64 ktime_get_real_ns(void) { struct timespec ts; clock_gettime(CLOCK_REALTIME, &ts); return ts.tv_sec * NSEC_PER_SEC + ts.tv_nsec; }
static inline u64 ktime_get_boottime_seconds(void) { return ktime_get_ns() / NSEC_PER_SEC; }
typedef int spinlock_t;
#define spin_lock_init(l) (*(l) = 0)
#define spin_lock_bh(l) ((void)(l))
#define spin_unlock_bh(l) ((void)(l))
u32 crc32_le(u32 crc, const u8 *p, size_t len);
/* sha256 library */
#define SHA256_DIGEST_SIZE 32
#define SHA256_BLOCK_SIZE 64
struct sha256_state { SHA256_CTX c; };
static inline void sha256_init(struct sha256_state *s) { SHA256_Init(&s->c); }
static inline void sha256_update(struct sha256_state *s, const u8 *d, size_t n) { SHA256_Update(&s->c, d, n); }
static inline void sha256_final(struct sha256_state *s, u8 *out) { SHA256_Final(out, &s->c); }
static inline void sha256(const u8 *d, size_t n, u8 *out) { SHA256(d, n, out); }
/* curve25519 library */
#define CURVE25519_KEY_SIZE 32
bool curve25519(u8 out[32], const u8 secret[32], const u8 basepoint[32]);
bool curve25519_generate_public(u8 pub[32], const u8 secret[32]);
void curve25519_generate_secret(u8 secret[32]);
static inline void curve25519_clamp_secret(u8 s[32]) { s[0] &= 248; s[31] = (s[31] & 127) | 64; }
#endif
