/*
 * The responder's work on the vectors' RESPONSE (kmod/handshake.c), counted: the DHs and AEAD
 * operations for a trusted static key and for the same key untrusted must be the same, or the
 * response time tells a stranger which keys are in the trust store. Prints both counts;
 * exit status 0 when they match and the untrusted one is refused.
 */
#include "shim.h"
#include "crypto.h"
#include "handshake.h"
#include "wire.h"
#include "vectors.h"

extern unsigned long shim_dh_calls, shim_aead_calls;

static bool trust_all(const u8 peer_static[32], void *arg) { (void)peer_static; (void)arg; return true; }
static bool trust_none(const u8 peer_static[32], void *arg) { (void)peer_static; (void)arg; return false; }

static int run(pool_trust_fn fn, const struct pool_static *sr, unsigned long *dh, unsigned long *aead)
{
	struct pool_hs_responder rsp;
	int ret;

	shim_dh_calls = shim_aead_calls = 0;
	ret = pool_hs_response_consume_trust(sr, pool_vec_handshake_iid,
					     pool_vec_handshake_response_packet + POOL_HDR_LEN, fn, NULL, &rsp);
	*dh = shim_dh_calls;
	*aead = shim_aead_calls;
	return ret;
}

int main(void)
{
	struct pool_static sr;
	unsigned long dh_t, aead_t, dh_u, aead_u;
	int rt, ru;

	memcpy(sr.secret, pool_vec_handshake_responder_static_secret, 32);
	if (!pool_x25519_public(sr.public, sr.secret))
		return 2;
	pool_hs_mac_key(sr.mac_key, sr.public);
	rt = run(trust_all, &sr, &dh_t, &aead_t);
	ru = run(trust_none, &sr, &dh_u, &aead_u);
	printf("trusted: %d, %lu DH, %lu AEAD; untrusted: %d, %lu DH, %lu AEAD\n", rt, dh_t, aead_t, ru, dh_u, aead_u);
	return !(rt == 0 && ru == -ENOKEY && dh_t == dh_u && aead_t == aead_u);
}
