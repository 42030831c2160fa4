// SPDX-License-Identifier: GPL-2.0-only
/*
 * wire.c - POOL/1 header encoding and framing checks (docs/protocol.md
 * section 1), POOL addresses (section 2) and the journal hash (section 6).
 * Pure functions over byte buffers; nothing here allocates.
 */

#include <linux/kernel.h>
#include <linux/crc32.h>
#include <linux/errno.h>
#include <linux/string.h>

#include "crypto.h"
#include "wire.h"

void pool_hdr_encode(u8 out[POOL_HDR_LEN], const struct pool_hdr *h)
{
	out[0] = (POOL_WIRE_VERSION << 4) | (h->type & 0x0f);
	out[1] = 0;
	put_unaligned_be16(h->flags, out + 2);
	put_unaligned_be64(h->seq, out + 4);
	put_unaligned_be64(h->ack, out + 12);
	memcpy(out + 20, h->session_id, sizeof(h->session_id));
	put_unaligned_be64(h->timestamp, out + 36);
	put_unaligned_be16(h->payload_len, out + 44);
	out[46] = h->channel;
	out[47] = 0;
	memcpy(out + POOL_HDR_MAC_OFF, h->mac, POOL_MAC_LEN);
}

/* Exact payload length of a handshake packet of this type, 0 if none. */
static unsigned int pool_hs_payload_len(u8 type)
{
	switch (type) {
	case POOL_PKT_INIT:
		return POOL_INIT_LEN;
	case POOL_PKT_CHALLENGE:
		return POOL_CHALLENGE_LEN;
	case POOL_PKT_RESPONSE:
		return POOL_RESPONSE_LEN;
	case POOL_PKT_ACK:
		return POOL_ACK_LEN;
	case POOL_PKT_CLOSE:
		return POOL_HS_CLOSE_LEN;
	default:
		return 0;
	}
}

/*
 * Plaintext length of an encrypted packet of this type: the exact size for
 * the fixed-size types, -1 for variable ones, 0 for a type never encrypted.
 */
int pool_transport_pt_len(u8 type)
{
	switch (type) {
	case POOL_PKT_ACK:
		return POOL_ACK_PT_LEN;
	case POOL_PKT_HEARTBEAT:
		return POOL_HEARTBEAT_LEN;
	case POOL_PKT_REKEY:
		return POOL_REKEY_PT_LEN;
	case POOL_PKT_CLOSE:
		return POOL_CLOSE_PT_LEN;
	case POOL_PKT_CONFIG:
		return POOL_CONFIG_PT_LEN;
	case POOL_PKT_ROLLBACK:
		return POOL_ROLLBACK_PT_LEN;
	case POOL_PKT_WINDOW:
		return POOL_WINDOW_PT_LEN;
	case POOL_PKT_DATA:
		return -1;
	default:
		return 0;
	}
}

/*
 * Two shapes are valid:
 *  - handshake (INIT, CHALLENGE, RESPONSE, ACK, CLOSE): flags, sequence,
 *    acknowledgment and channel zero, payload of the exact size;
 *  - transport (DATA, ACK, HEARTBEAT, REKEY, CLOSE, CONFIG, ROLLBACK,
 *    WINDOW): ENCRYPTED set, no other flag but TELEMETRY on a HEARTBEAT,
 *    payload = plaintext of the type's size (DATA: any) + tag.
 * ACK and CLOSE exist in both shapes; the ENCRYPTED flag tells which one.
 */
int pool_hdr_decode(struct pool_hdr *h, const u8 in[POOL_HDR_LEN])
{
	int pt;

	if ((in[0] >> 4) != POOL_WIRE_VERSION || in[1] || in[47])
		return -EPROTO;

	h->type = in[0] & 0x0f;
	h->flags = get_unaligned_be16(in + 2);
	h->seq = get_unaligned_be64(in + 4);
	h->ack = get_unaligned_be64(in + 12);
	memcpy(h->session_id, in + 20, sizeof(h->session_id));
	h->timestamp = get_unaligned_be64(in + 36);
	h->payload_len = get_unaligned_be16(in + 44);
	h->channel = in[46];
	memcpy(h->mac, in + POOL_HDR_MAC_OFF, POOL_MAC_LEN);

	if (h->type > POOL_PKT_WINDOW || (h->flags & ~POOL_F_ALL))
		return -EPROTO;

	if (!(h->flags & POOL_F_ENCRYPTED)) {
		if (h->flags || h->seq || h->ack || h->channel ||
		    !pool_hs_payload_len(h->type) ||
		    h->payload_len != pool_hs_payload_len(h->type))
			return -EPROTO;
		return 0;
	}

	if (h->flags & ~(POOL_F_ENCRYPTED |
			 (h->type == POOL_PKT_HEARTBEAT ? POOL_F_TELEMETRY : 0)))
		return -EPROTO;
	pt = pool_transport_pt_len(h->type);
	if (!pt || h->payload_len < POOL_TAG_LEN)
		return -EPROTO;
	if (pt > 0 && h->payload_len != pt + POOL_TAG_LEN)
		return -EPROTO;
	return 0;
}

void pool_address_compute(u8 out[POOL_ADDR_BYTES], const u8 pub[32], u64 org,
			  u64 seg)
{
	u8 digest[POOL_HASH_BYTES];

	put_unaligned_be32(0x00010001, out);
	put_unaligned_be64(org, out + 4);
	put_unaligned_be64(seg, out + 12);
	pool_hash(digest, pub, 32, NULL, 0);
	memcpy(out + 20, digest, 8);
	/* CRC-32/ISO-HDLC, as zlib.crc32 */
	put_unaligned_be32(crc32_le(~0U, out, 28) ^ ~0U, out + 28);
}

void pool_journal_hash_compute(u8 out[POOL_HASH_BYTES],
			       const u8 prev_hash[POOL_HASH_BYTES], u64 seq,
			       u64 timestamp_ns, u16 type, u16 code,
			       u32 config_version, const u8 *peer_public_key,
			       const char *detail, size_t detail_max)
{
	static const u8 zero_key[32];
	struct sha256_state s;
	u8 fixed[8 + 8 + 2 + 2 + 4];

	put_unaligned_be64(seq, fixed);
	put_unaligned_be64(timestamp_ns, fixed + 8);
	put_unaligned_be16(type, fixed + 16);
	put_unaligned_be16(code, fixed + 18);
	put_unaligned_be32(config_version, fixed + 20);

	sha256_init(&s);
	sha256_update(&s, prev_hash, POOL_HASH_BYTES);
	sha256_update(&s, fixed, sizeof(fixed));
	sha256_update(&s, peer_public_key ?: zero_key, 32);
	if (detail)
		sha256_update(&s, (const u8 *)detail, strnlen(detail, detail_max));
	sha256_final(&s, out);
}
