/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * crypto.h - the primitives POOL/1 uses, behind one small interface:
 * SHA-256 and HMAC-SHA256 (lib sha256), HKDF-SHA256 (RFC 5869), X25519
 * (lib curve25519) and ChaCha20-Poly1305 with a 12-byte nonce (crypto API
 * "rfc7539(chacha20,poly1305)", synchronous only).
 */
#ifndef _POOL_CRYPTO_H
#define _POOL_CRYPTO_H

#include <linux/types.h>
#include <crypto/sha2.h>

#define POOL_HASH_BYTES	32
#define POOL_KEY_BYTES	32
#define POOL_NONCE_LEN	12

void pool_hash(u8 out[32], const u8 *a, size_t alen, const u8 *b, size_t blen);

struct pool_hmac_ctx {
	struct sha256_state inner;
	struct sha256_state outer;
};
void pool_hmac_init(struct pool_hmac_ctx *ctx, const u8 *key, size_t keylen);
void pool_hmac_update(struct pool_hmac_ctx *ctx, const u8 *data, size_t len);
void pool_hmac_final(struct pool_hmac_ctx *ctx, u8 out[32]);
void pool_hmac(u8 out[32], const u8 *key, size_t keylen, const u8 *data, size_t len);

void pool_hkdf(u8 *out, size_t outlen, const u8 *salt, size_t saltlen,
	       const u8 *ikm, size_t ikmlen, const u8 *info, size_t infolen);

/* false when the result is all zero (low-order point): the caller fails. */
bool __must_check pool_x25519(u8 out[32], const u8 secret[32], const u8 pub[32]);
/* Random clamped secret and its public key. */
void pool_x25519_generate(u8 secret[32], u8 pub[32]);
bool __must_check pool_x25519_public(u8 pub[32], const u8 secret[32]);

/*
 * One AEAD key with its preallocated request, for one direction of one
 * session: the hot path allocates nothing. Not for concurrent use; callers
 * serialise per direction. Buffers are linear kernel memory.
 */
struct pool_aead {
	struct crypto_aead *tfm;
	struct aead_request *req;
};
int pool_aead_init(struct pool_aead *a, const u8 key[32], gfp_t gfp);
void pool_aead_destroy(struct pool_aead *a);
/* In place: buf holds len plaintext bytes and room for 16 more. */
int pool_aead_encrypt(struct pool_aead *a, const u8 nonce[12], u8 *buf,
		      size_t len, const u8 *ad, size_t adlen);
/* In place: len includes the tag; -EBADMSG on a bad tag. */
int pool_aead_decrypt(struct pool_aead *a, const u8 nonce[12], u8 *buf,
		      size_t len, const u8 *ad, size_t adlen);
/* One-shot, for handshake messages (allocates). */
/* The handshake's AEAD (all-zero nonce, ad = the 32-byte hash), in place, allocation-free. */
void pool_hs_seal(u8 *buf, size_t len, const u8 ad[32], const u8 key[32]);
int pool_hs_open(u8 *buf, size_t len, const u8 ad[32], const u8 key[32]);

int pool_crypto_init(void);	/* allocates nothing persistent today */
void pool_crypto_exit(void);

#endif
