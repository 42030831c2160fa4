// SPDX-License-Identifier: GPL-2.0-only
/*
 * crypto.c - the primitives of POOL/1 (see crypto.h).
 *
 * SHA-256 comes from the sha256 library, HMAC and HKDF are built on it
 * here, X25519 is the curve25519 library and ChaCha20-Poly1305 is the
 * synchronous "rfc7539(chacha20,poly1305)" AEAD of the crypto API.
 *
 * Ownership: a struct pool_aead owns its tfm and its request; both are
 * allocated by pool_aead_init() and freed by pool_aead_destroy(), which
 * also wipes the key schedule (crypto_free_aead() zeroes the tfm context).
 * pool_hs_seal()/pool_hs_open() (the handshake's) allocate nothing.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/errno.h>
#include <linux/mm.h>
#include <linux/scatterlist.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <crypto/aead.h>
#include <crypto/chacha20poly1305.h>
#include <crypto/algapi.h>
#include <crypto/curve25519.h>
#include <crypto/sha2.h>

#include "crypto.h"
#include "wire.h"

#define POOL_AEAD_ALG	"rfc7539(chacha20,poly1305)"

/* sha256_update() takes an unsigned int length. */
static void pool_sha256_update(struct sha256_state *s, const u8 *data,
			       size_t len)
{
	while (len) {
		unsigned int chunk = min_t(size_t, len, SZ_1G);

		sha256_update(s, data, chunk);
		data += chunk;
		len -= chunk;
	}
}

void pool_hash(u8 out[POOL_HASH_BYTES], const u8 *a, size_t alen,
	       const u8 *b, size_t blen)
{
	struct sha256_state s;

	sha256_init(&s);
	pool_sha256_update(&s, a, alen);
	pool_sha256_update(&s, b, blen);
	sha256_final(&s, out);
}

void pool_hmac_init(struct pool_hmac_ctx *ctx, const u8 *key, size_t keylen)
{
	u8 block[SHA256_BLOCK_SIZE];
	int i;

	memset(block, 0, sizeof(block));
	if (keylen > SHA256_BLOCK_SIZE) {
		sha256_init(&ctx->inner);
		pool_sha256_update(&ctx->inner, key, keylen);
		sha256_final(&ctx->inner, block);
	} else if (keylen) {
		memcpy(block, key, keylen);
	}

	for (i = 0; i < SHA256_BLOCK_SIZE; i++)
		block[i] ^= 0x36;
	sha256_init(&ctx->inner);
	sha256_update(&ctx->inner, block, SHA256_BLOCK_SIZE);

	for (i = 0; i < SHA256_BLOCK_SIZE; i++)
		block[i] ^= 0x36 ^ 0x5c;
	sha256_init(&ctx->outer);
	sha256_update(&ctx->outer, block, SHA256_BLOCK_SIZE);

	memzero_explicit(block, sizeof(block));
}

void pool_hmac_update(struct pool_hmac_ctx *ctx, const u8 *data, size_t len)
{
	pool_sha256_update(&ctx->inner, data, len);
}

/* Leaves ctx wiped. */
void pool_hmac_final(struct pool_hmac_ctx *ctx, u8 out[POOL_HASH_BYTES])
{
	u8 inner[SHA256_DIGEST_SIZE];

	sha256_final(&ctx->inner, inner);
	sha256_update(&ctx->outer, inner, sizeof(inner));
	sha256_final(&ctx->outer, out);
	memzero_explicit(inner, sizeof(inner));
	memzero_explicit(ctx, sizeof(*ctx));
}

void pool_hmac(u8 out[POOL_HASH_BYTES], const u8 *key, size_t keylen,
	       const u8 *data, size_t len)
{
	struct pool_hmac_ctx ctx;

	pool_hmac_init(&ctx, key, keylen);
	pool_hmac_update(&ctx, data, len);
	pool_hmac_final(&ctx, out);
}

/*
 * RFC 5869: PRK = HMAC(salt, IKM), T(i) = HMAC(PRK, T(i-1) || info || i).
 * out may not overlap the inputs. At most 255 * 32 bytes; a larger request
 * is a bug in the caller and yields zeroes.
 */
void pool_hkdf(u8 *out, size_t outlen, const u8 *salt, size_t saltlen,
	       const u8 *ikm, size_t ikmlen, const u8 *info, size_t infolen)
{
	struct pool_hmac_ctx ctx;
	u8 prk[POOL_HASH_BYTES];
	u8 t[POOL_HASH_BYTES];
	u8 counter;
	size_t n;

	if (WARN_ON_ONCE(outlen > 255 * POOL_HASH_BYTES)) {
		memset(out, 0, outlen);
		return;
	}

	pool_hmac(prk, salt, saltlen, ikm, ikmlen);

	for (counter = 1; outlen; counter++) {
		pool_hmac_init(&ctx, prk, sizeof(prk));
		if (counter > 1)
			pool_hmac_update(&ctx, t, sizeof(t));
		pool_hmac_update(&ctx, info, infolen);
		pool_hmac_update(&ctx, &counter, 1);
		pool_hmac_final(&ctx, t);

		n = min_t(size_t, outlen, sizeof(t));
		memcpy(out, t, n);
		out += n;
		outlen -= n;
	}

	memzero_explicit(prk, sizeof(prk));
	memzero_explicit(t, sizeof(t));
}

bool pool_x25519(u8 out[POOL_KEY_BYTES], const u8 secret[POOL_KEY_BYTES],
		 const u8 pub[POOL_KEY_BYTES])
{
	return curve25519(out, secret, pub);
}

void pool_x25519_generate(u8 secret[POOL_KEY_BYTES], u8 pub[POOL_KEY_BYTES])
{
	/* A clamped secret has bit 254 set: never zero, never low order. */
	do {
		curve25519_generate_secret(secret);
	} while (WARN_ON_ONCE(!curve25519_generate_public(pub, secret)));
}

bool pool_x25519_public(u8 pub[POOL_KEY_BYTES], const u8 secret[POOL_KEY_BYTES])
{
	return curve25519_generate_public(pub, secret);
}

/*
 * Scatterlists need addresses in the linear map: never the (virtually
 * mapped) stack or vmalloc memory.
 */
static bool pool_linear(const void *p, size_t len)
{
	return !len || (virt_addr_valid(p) && virt_addr_valid(p + len - 1));
}

int pool_aead_init(struct pool_aead *a, const u8 key[POOL_KEY_BYTES],
		   gfp_t gfp)
{
	int ret;

	a->req = NULL;
	a->tfm = crypto_alloc_aead(POOL_AEAD_ALG, 0, CRYPTO_ALG_ASYNC);
	if (IS_ERR(a->tfm)) {
		ret = PTR_ERR(a->tfm);
		a->tfm = NULL;
		return ret;
	}

	ret = crypto_aead_setkey(a->tfm, key, POOL_KEY_BYTES);
	if (!ret)
		ret = crypto_aead_setauthsize(a->tfm, POOL_TAG_LEN);
	if (ret)
		goto err;

	a->req = aead_request_alloc(a->tfm, gfp);
	if (!a->req) {
		ret = -ENOMEM;
		goto err;
	}
	aead_request_set_callback(a->req, 0, NULL, NULL);
	return 0;

err:
	crypto_free_aead(a->tfm);
	a->tfm = NULL;
	return ret;
}

void pool_aead_destroy(struct pool_aead *a)
{
	/* aead_request_free() wipes the request, crypto_free_aead() the key. */
	aead_request_free(a->req);
	a->req = NULL;
	crypto_free_aead(a->tfm);
	a->tfm = NULL;
}

/* len: plaintext bytes for encryption, ciphertext and tag for decryption. */
static int pool_aead_crypt(struct pool_aead *a, bool encrypt,
			   const u8 nonce[POOL_NONCE_LEN], u8 *buf, size_t len,
			   const u8 *ad, size_t adlen)
{
	u8 iv[POOL_NONCE_LEN];
	struct scatterlist sg[2];
	size_t total = encrypt ? len + POOL_TAG_LEN : len;
	int ret;

	if (WARN_ON_ONCE(!a->tfm || !a->req))
		return -EINVAL;
	if (total > POOL_MAX_PAYLOAD || total < POOL_TAG_LEN ||
	    adlen > POOL_MAX_PAYLOAD)
		return -EMSGSIZE;
	if (WARN_ON_ONCE(!pool_linear(buf, total) || !pool_linear(ad, adlen)))
		return -EFAULT;

	/* The template may write to the IV buffer: use our own copy. */
	memcpy(iv, nonce, sizeof(iv));

	if (adlen) {
		sg_init_table(sg, 2);
		sg_set_buf(&sg[0], ad, adlen);
		sg_set_buf(&sg[1], buf, total);
	} else {
		sg_init_one(sg, buf, total);
	}

	aead_request_set_ad(a->req, adlen);
	aead_request_set_crypt(a->req, sg, sg, encrypt ? len : total, iv);
	ret = encrypt ? crypto_aead_encrypt(a->req) :
			crypto_aead_decrypt(a->req);
	memzero_explicit(iv, sizeof(iv));
	return ret;
}

int pool_aead_encrypt(struct pool_aead *a, const u8 nonce[POOL_NONCE_LEN],
		      u8 *buf, size_t len, const u8 *ad, size_t adlen)
{
	return pool_aead_crypt(a, true, nonce, buf, len, ad, adlen);
}

int pool_aead_decrypt(struct pool_aead *a, const u8 nonce[POOL_NONCE_LEN],
		      u8 *buf, size_t len, const u8 *ad, size_t adlen)
{
	return pool_aead_crypt(a, false, nonce, buf, len, ad, adlen);
}

/*
 * The handshake's AEAD: ChaCha20-Poly1305 under the all-zero nonce (the
 * library's 64-bit nonce 0), from lib/crypto as WireGuard's is: no tfm, no
 * allocation, any memory (handshake messages live on the stack), so a
 * handshake, even a hostile one, allocates nothing for it. ad is the 32-byte
 * handshake hash.
 */
void pool_hs_seal(u8 *buf, size_t len, const u8 ad[32], const u8 key[POOL_KEY_BYTES])
{
	chacha20poly1305_encrypt(buf, buf, len, ad, 32, 0, key);
}

/* Opens len bytes, the tag included, in place: 0, or -EBADMSG. */
int pool_hs_open(u8 *buf, size_t len, const u8 ad[32], const u8 key[POOL_KEY_BYTES])
{
	if (len < POOL_TAG_LEN)
		return -EMSGSIZE;
	return chacha20poly1305_decrypt(buf, buf, len, ad, 32, 0, key) ? 0 : -EBADMSG;
}

/* Fails the load early, with a clear message, if the AEAD is unavailable. */
int pool_crypto_init(void)
{
	struct crypto_aead *tfm;

	tfm = crypto_alloc_aead(POOL_AEAD_ALG, 0, CRYPTO_ALG_ASYNC);
	if (IS_ERR(tfm)) {
		pr_err("crypto: no synchronous %s: %ld\n", POOL_AEAD_ALG,
		       PTR_ERR(tfm));
		return PTR_ERR(tfm);
	}
	crypto_free_aead(tfm);
	return 0;
}

void pool_crypto_exit(void)
{
}
