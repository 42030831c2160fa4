/* OpenSSL implementations of kmod/crypto.h and of the kernel library calls the shim declares. */
#include "shim.h"
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <zlib.h>
#include "crypto.h"
struct task_struct *current;
/* get_random_bytes: a queue the harness can preload, else RAND_bytes */
static u8 rq[4096]; static size_t rq_len, rq_pos;
void shim_random_push(const void *p, size_t n) { memcpy(rq + rq_len, p, n); rq_len += n; }
void get_random_bytes(void *buf, size_t n)
{
	if (rq_pos + n <= rq_len) { memcpy(buf, rq + rq_pos, n); rq_pos += n; return; }
	RAND_bytes(buf, (int)n);
}
u32 crc32_le(u32 crc, const u8 *p, size_t len) { return (u32)crc32(crc ^ ~0U, p, len) ^ ~0U; }
bool curve25519(u8 out[32], const u8 secret[32], const u8 pub[32])
{
	EVP_PKEY *a = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, secret, 32);
	EVP_PKEY *b = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, pub, 32);
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(a, NULL);
	size_t n = 32; int ok = c && EVP_PKEY_derive_init(c) > 0 && EVP_PKEY_derive_set_peer_ex(c, b, 0) > 0 && EVP_PKEY_derive(c, out, &n) > 0;
	EVP_PKEY_CTX_free(c); EVP_PKEY_free(a); EVP_PKEY_free(b);
	if (!ok) memset(out, 0, 32);
	return ok && memchr_inv(out, 0, 32);
}
bool curve25519_generate_public(u8 pub[32], const u8 secret[32])
{
	static const u8 base[32] = { 9 };
	return curve25519(pub, secret, base);
}
void curve25519_generate_secret(u8 s[32]) { get_random_bytes(s, 32); curve25519_clamp_secret(s); }

/* crypto.h on OpenSSL */
void pool_hash(u8 out[32], const u8 *a, size_t alen, const u8 *b, size_t blen)
{ struct sha256_state s; sha256_init(&s); sha256_update(&s, a, alen); if (b) sha256_update(&s, b, blen); sha256_final(&s, out); }
void pool_hmac_init(struct pool_hmac_ctx *ctx, const u8 *key, size_t keylen)
{
	u8 k[64] = {0}, pad[64];
	if (keylen > 64) sha256(key, keylen, k); else memcpy(k, key, keylen);
	for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x36;
	sha256_init(&ctx->inner); sha256_update(&ctx->inner, pad, 64);
	for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x5c;
	sha256_init(&ctx->outer); sha256_update(&ctx->outer, pad, 64);
}
void pool_hmac_update(struct pool_hmac_ctx *ctx, const u8 *d, size_t n) { sha256_update(&ctx->inner, d, n); }
void pool_hmac_final(struct pool_hmac_ctx *ctx, u8 out[32])
{ u8 ih[32]; sha256_final(&ctx->inner, ih); sha256_update(&ctx->outer, ih, 32); sha256_final(&ctx->outer, out); }
void pool_hmac(u8 out[32], const u8 *key, size_t keylen, const u8 *data, size_t len)
{ struct pool_hmac_ctx c; pool_hmac_init(&c, key, keylen); pool_hmac_update(&c, data, len); pool_hmac_final(&c, out); }
void pool_hkdf(u8 *out, size_t outlen, const u8 *salt, size_t saltlen, const u8 *ikm, size_t ikmlen, const u8 *info, size_t infolen)
{
	u8 prk[32], t[32]; size_t tl = 0, pos = 0; u8 i = 1; static const u8 zero[32];
	pool_hmac(prk, saltlen ? salt : zero, saltlen ? saltlen : 32, ikm, ikmlen);
	while (pos < outlen) {
		struct pool_hmac_ctx c; pool_hmac_init(&c, prk, 32); pool_hmac_update(&c, t, tl);
		pool_hmac_update(&c, info, infolen); pool_hmac_update(&c, &i, 1); pool_hmac_final(&c, t); tl = 32;
		size_t n = outlen - pos < 32 ? outlen - pos : 32; memcpy(out + pos, t, n); pos += n; i++;
	}
}
unsigned long shim_dh_calls, shim_aead_calls;  /* counted for dhcount.c */
bool pool_x25519(u8 out[32], const u8 secret[32], const u8 pub[32]) { shim_dh_calls++; return curve25519(out, secret, pub); }
void pool_x25519_generate(u8 secret[32], u8 pub[32]) { curve25519_generate_secret(secret); curve25519_generate_public(pub, secret); }
bool pool_x25519_public(u8 pub[32], const u8 secret[32]) { return curve25519_generate_public(pub, secret); }
static int aead(bool enc, const u8 key[32], const u8 nonce[12], u8 *buf, size_t len, const u8 *ad, size_t adlen)
{
	shim_aead_calls++;
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new(); int n, ok;
	ok = EVP_CipherInit_ex(c, EVP_chacha20_poly1305(), NULL, key, nonce, enc) > 0;
	if (adlen) ok = ok && EVP_CipherUpdate(c, NULL, &n, ad, (int)adlen) > 0;
	if (enc) {
		ok = ok && EVP_CipherUpdate(c, buf, &n, buf, (int)len) > 0 && EVP_CipherFinal_ex(c, buf + len, &n) > 0 &&
		     EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, 16, buf + len) > 0;
	} else {
		if (len < 16) { EVP_CIPHER_CTX_free(c); return -EMSGSIZE; }
		ok = ok && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, 16, buf + len - 16) > 0 &&
		     EVP_CipherUpdate(c, buf, &n, buf, (int)len - 16) > 0 && EVP_CipherFinal_ex(c, buf + len - 16, &n) > 0;
	}
	EVP_CIPHER_CTX_free(c);
	return ok ? 0 : -EBADMSG;
}
int pool_aead_init(struct pool_aead *a, const u8 key[32], gfp_t gfp) { (void)gfp; a->tfm = malloc(32); memcpy(a->tfm, key, 32); a->req = NULL; return 0; }
void pool_aead_destroy(struct pool_aead *a) { free(a->tfm); a->tfm = NULL; }
int pool_aead_encrypt(struct pool_aead *a, const u8 nonce[12], u8 *buf, size_t len, const u8 *ad, size_t adlen) { return aead(true, (u8 *)a->tfm, nonce, buf, len, ad, adlen); }
int pool_aead_decrypt(struct pool_aead *a, const u8 nonce[12], u8 *buf, size_t len, const u8 *ad, size_t adlen) { return aead(false, (u8 *)a->tfm, nonce, buf, len, ad, adlen); }
static const u8 zero_nonce[12];
void pool_hs_seal(u8 *buf, size_t len, const u8 ad[32], const u8 key[32]) { aead(true, key, zero_nonce, buf, len, ad, 32); }
int pool_hs_open(u8 *buf, size_t len, const u8 ad[32], const u8 key[32]) { return aead(false, key, zero_nonce, buf, len, ad, 32); }
int pool_crypto_init(void) { return 0; }
void pool_crypto_exit(void) { }
