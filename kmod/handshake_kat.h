/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * handshake_kat.h - deterministic variants of the handshake steps that
 * take their randomness as arguments, for the known-answer self-test
 * (selftest.c). Not for the session code.
 */
#ifndef _POOL_HANDSHAKE_KAT_H
#define _POOL_HANDSHAKE_KAT_H

#include "handshake.h"

int pool_hs_init_create_kat(struct pool_hs_initiator *hs,
			    const u8 peer_static[32], u64 now_ns,
			    const u8 e_secret[32], const u8 iid[POOL_ID_LEN],
			    u8 payload[POOL_INIT_LEN]);
void pool_cookie_seed_secret(const u8 secret[32], const u8 ip[16], u16 port,
			     const u8 iid[POOL_ID_LEN], const u8 e_i[32],
			     u64 ts, u8 seed[32]);
int pool_hs_ack_create_kat(struct pool_hs_responder *st, const u8 e_secret[32],
			   const u8 rid[POOL_ID_LEN], u8 payload[POOL_ACK_LEN],
			   struct pool_keys *out);

#endif
