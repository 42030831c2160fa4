/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * wire.h - POOL/1 packet layout (docs/protocol.md section 1) and its
 * encode/decode helpers. Only these helpers touch header bytes.
 */
#ifndef _POOL_WIRE_H
#define _POOL_WIRE_H

#include <linux/types.h>
#include <linux/version.h>
/*
 * <asm/unaligned.h> became <linux/unaligned.h> in 6.12. A version test, not
 * __has_include, which sparse does not know (it would check nothing).
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 12, 0)
#include <linux/unaligned.h>
#else
#include <asm/unaligned.h>
#endif

#define POOL_HDR_LEN		80
#define POOL_HDR_MAC_OFF	48
#define POOL_MAC_LEN		32
#define POOL_TAG_LEN		16
#define POOL_WIRE_VERSION	1
#define POOL_MAX_PAYLOAD	65535

enum pool_pkt_type {
	POOL_PKT_INIT = 0x0, POOL_PKT_CHALLENGE = 0x1, POOL_PKT_RESPONSE = 0x2,
	POOL_PKT_DATA = 0x3, POOL_PKT_ACK = 0x4, POOL_PKT_HEARTBEAT = 0x5,
	POOL_PKT_REKEY = 0x6, POOL_PKT_CLOSE = 0x7, POOL_PKT_CONFIG = 0x8,
	POOL_PKT_ROLLBACK = 0x9, POOL_PKT_DISCOVER = 0xa, POOL_PKT_JOURNAL = 0xb,
	POOL_PKT_WINDOW = 0xc,
};
/* DISCOVER and JOURNAL are reserved: no payload is defined, framing refuses them. */

#define POOL_F_ENCRYPTED	(1U << 0)
#define POOL_F_COMPRESSED	(1U << 1)
#define POOL_F_PRIORITY		(1U << 2)
#define POOL_F_FRAGMENT		(1U << 3)
#define POOL_F_LAST_FRAG	(1U << 4)
#define POOL_F_REQUIRE_ACK	(1U << 5)
#define POOL_F_TELEMETRY	(1U << 6)
#define POOL_F_ROLLBACK_READY	(1U << 7)
#define POOL_F_CONFIG_LOCKED	(1U << 8)
#define POOL_F_JOURNAL_SYNC	(1U << 9)
#define POOL_F_ALL		0x03ffU
/*
 * Of the flags, only ENCRYPTED (every transport packet) and TELEMETRY (on a
 * HEARTBEAT) have a meaning; the others are reserved and framing refuses them.
 */

/* Handshake payload sizes (docs/protocol.md section 3) */
#define POOL_INIT_LEN		40
#define POOL_CHALLENGE_LEN	40
#define POOL_RESPONSE_LEN	128
#define POOL_ACK_LEN		48
#define POOL_HS_CLOSE_LEN	2

/* Transport plaintext sizes (section 4) */
#define POOL_HEARTBEAT_LEN	44
#define POOL_ACK_PT_LEN		16
#define POOL_CLOSE_PT_LEN	2
#define POOL_REKEY_PT_LEN	40
#define POOL_CONFIG_PT_LEN	84
#define POOL_ROLLBACK_PT_LEN	72
#define POOL_WINDOW_PT_LEN	16

/* Host-order view of a header; encode/decode convert. */
struct pool_hdr {
	u8	type;
	u16	flags;
	u64	seq;
	u64	ack;
	u8	session_id[16];
	u64	timestamp;
	u16	payload_len;
	u8	channel;
	u8	mac[POOL_MAC_LEN];
};

/* Writes 80 bytes; the MAC field is copied from h->mac (zero it to sign). */
void pool_hdr_encode(u8 out[POOL_HDR_LEN], const struct pool_hdr *h);

/*
 * Parses and checks framing: version, reserved bytes, flag bits, known type,
 * payload_len within the range of the type (handshake types: exact sizes;
 * encrypted types: >= POOL_TAG_LEN). Returns 0 or -EPROTO.
 */
int pool_hdr_decode(struct pool_hdr *h, const u8 in[POOL_HDR_LEN]);
int pool_transport_pt_len(u8 type);

/* The 256-bit POOL address of a static public key (section 2). */
#define POOL_ADDR_BYTES		32
void pool_address_compute(u8 out[POOL_ADDR_BYTES], const u8 pub[32], u64 org,
			  u64 seg);

/*
 * Journal entry hash (section 6). peer_public_key may be NULL (all zero);
 * detail is hashed up to its first NUL or detail_max bytes.
 */
void pool_journal_hash_compute(u8 out[32], const u8 prev_hash[32], u64 seq,
			       u64 timestamp_ns, u16 type, u16 code,
			       u32 config_version, const u8 *peer_public_key,
			       const char *detail, size_t detail_max);

#endif
