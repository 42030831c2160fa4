// SPDX-License-Identifier: GPL-2.0-only
/*
 * selftest.c - known-answer tests at module load: the primitives against
 * their RFC vectors, the header framing, then the POOL/1 construction
 * (selftest_vectors.c), then the pure arithmetic of the send ring, the
 * telemetry and the replay guard at their limits.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": selftest: " fmt

/* linear memory for the AEAD and HMAC tests (ad, data, tag) */
#define POOL_SELFTEST_SCRATCH	256

#include <linux/kernel.h>
#include <linux/errno.h>
#include <linux/init.h>
#include <linux/slab.h>
#include <linux/mm.h>
#include <linux/string.h>
#include <crypto/algapi.h>

#include "crypto.h"
#include "handshake.h"
#include "ring.h"
#include "telemetry.h"
#include "selftest.h"
#include "selftest_check.h"
#include "wire.h"


bool __init pool_same(const char *fn, const char *what, const u8 *got,
		      const u8 *want, size_t len)
{
	if (!memcmp(got, want, len))
		return true;
	pr_err("%s: %s mismatch\n", fn, what);
	pr_err("  got  %*phN\n", (int)min_t(size_t, len, 64), got);
	pr_err("  want %*phN\n", (int)min_t(size_t, len, 64), want);
	return false;
}

/* ---- RFC 7748 section 6.1 ---------------------------------------------- */

static const u8 rfc7748_alice_secret[] __initconst = {
	0x77, 0x07, 0x6d, 0x0a, 0x73, 0x18, 0xa5, 0x7d, 0x3c, 0x16, 0xc1, 0x72,
	0x51, 0xb2, 0x66, 0x45, 0xdf, 0x4c, 0x2f, 0x87, 0xeb, 0xc0, 0x99, 0x2a,
	0xb1, 0x77, 0xfb, 0xa5, 0x1d, 0xb9, 0x2c, 0x2a
};

static const u8 rfc7748_alice_public[] __initconst = {
	0x85, 0x20, 0xf0, 0x09, 0x89, 0x30, 0xa7, 0x54, 0x74, 0x8b, 0x7d, 0xdc,
	0xb4, 0x3e, 0xf7, 0x5a, 0x0d, 0xbf, 0x3a, 0x0d, 0x26, 0x38, 0x1a, 0xf4,
	0xeb, 0xa4, 0xa9, 0x8e, 0xaa, 0x9b, 0x4e, 0x6a
};

static const u8 rfc7748_bob_secret[] __initconst = {
	0x5d, 0xab, 0x08, 0x7e, 0x62, 0x4a, 0x8a, 0x4b, 0x79, 0xe1, 0x7f, 0x8b,
	0x83, 0x80, 0x0e, 0xe6, 0x6f, 0x3b, 0xb1, 0x29, 0x26, 0x18, 0xb6, 0xfd,
	0x1c, 0x2f, 0x8b, 0x27, 0xff, 0x88, 0xe0, 0xeb
};

static const u8 rfc7748_bob_public[] __initconst = {
	0xde, 0x9e, 0xdb, 0x7d, 0x7b, 0x7d, 0xc1, 0xb4, 0xd3, 0x5b, 0x61, 0xc2,
	0xec, 0xe4, 0x35, 0x37, 0x3f, 0x83, 0x43, 0xc8, 0x5b, 0x78, 0x67, 0x4d,
	0xad, 0xfc, 0x7e, 0x14, 0x6f, 0x88, 0x2b, 0x4f
};

static const u8 rfc7748_shared[] __initconst = {
	0x4a, 0x5d, 0x9d, 0x5b, 0xa4, 0xce, 0x2d, 0xe1, 0x72, 0x8e, 0x3b, 0xf4,
	0x80, 0x35, 0x0f, 0x25, 0xe0, 0x7e, 0x21, 0xc9, 0x47, 0xd1, 0x9e, 0x33,
	0x76, 0xf0, 0x9b, 0x3c, 0x1e, 0x16, 0x17, 0x42
};

static bool __init pool_selftest_x25519(void)
{
	static const u8 zero[32];
	u8 out[32];

	CHECK(pool_x25519_public(out, rfc7748_alice_secret), "alice public");
	SAME(out, rfc7748_alice_public, 32, "alice public");
	CHECK(pool_x25519_public(out, rfc7748_bob_secret), "bob public");
	SAME(out, rfc7748_bob_public, 32, "bob public");
	CHECK(pool_x25519(out, rfc7748_alice_secret, rfc7748_bob_public),
	      "alice shared");
	SAME(out, rfc7748_shared, 32, "alice shared");
	CHECK(pool_x25519(out, rfc7748_bob_secret, rfc7748_alice_public),
	      "bob shared");
	SAME(out, rfc7748_shared, 32, "bob shared");
	/* A low-order point gives zero: the caller must be told. */
	CHECK(!pool_x25519(out, rfc7748_alice_secret, zero), "low-order point");
	return true;
}

/* ---- RFC 8439 section 2.8.2 -------------------------------------------- */

static const u8 rfc8439_key[] __initconst = {
	0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8b,
	0x8c, 0x8d, 0x8e, 0x8f, 0x90, 0x91, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97,
	0x98, 0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9e, 0x9f
};

static const u8 rfc8439_nonce[] __initconst = {
	0x07, 0x00, 0x00, 0x00, 0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47
};

static const u8 rfc8439_ad[] __initconst = {
	0x50, 0x51, 0x52, 0x53, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7
};

static const char rfc8439_pt[] __initconst =
	"Ladies and Gentlemen of the class of '99: If I could offer you only "
	"one tip for the future, sunscreen would be it.";
static const u8 rfc8439_ct[] __initconst = {
	0xd3, 0x1a, 0x8d, 0x34, 0x64, 0x8e, 0x60, 0xdb, 0x7b, 0x86, 0xaf, 0xbc,
	0x53, 0xef, 0x7e, 0xc2, 0xa4, 0xad, 0xed, 0x51, 0x29, 0x6e, 0x08, 0xfe,
	0xa9, 0xe2, 0xb5, 0xa7, 0x36, 0xee, 0x62, 0xd6, 0x3d, 0xbe, 0xa4, 0x5e,
	0x8c, 0xa9, 0x67, 0x12, 0x82, 0xfa, 0xfb, 0x69, 0xda, 0x92, 0x72, 0x8b,
	0x1a, 0x71, 0xde, 0x0a, 0x9e, 0x06, 0x0b, 0x29, 0x05, 0xd6, 0xa5, 0xb6,
	0x7e, 0xcd, 0x3b, 0x36, 0x92, 0xdd, 0xbd, 0x7f, 0x2d, 0x77, 0x8b, 0x8c,
	0x98, 0x03, 0xae, 0xe3, 0x28, 0x09, 0x1b, 0x58, 0xfa, 0xb3, 0x24, 0xe4,
	0xfa, 0xd6, 0x75, 0x94, 0x55, 0x85, 0x80, 0x8b, 0x48, 0x31, 0xd7, 0xbc,
	0x3f, 0xf4, 0xde, 0xf0, 0x8e, 0x4b, 0x7a, 0x9d, 0xe5, 0x76, 0xd2, 0x65,
	0x86, 0xce, 0xc6, 0x4b, 0x61, 0x16, 0x1a, 0xe1, 0x0b, 0x59, 0x4f, 0x09,
	0xe2, 0x6a, 0x7e, 0x90, 0x2e, 0xcb, 0xd0, 0x60, 0x06, 0x91
};

#define RFC8439_PT_LEN	(sizeof(rfc8439_pt) - 1)

/* buf: linear, room for the ad, the plaintext and the tag */
static bool __init pool_selftest_aead(u8 *buf)
{
	u8 *ad = buf, *data = buf + sizeof(rfc8439_ad);
	struct pool_aead a;
	bool ok = false;

	BUILD_BUG_ON(sizeof(rfc8439_ct) != RFC8439_PT_LEN + POOL_TAG_LEN);

	/* the handshake's (zero nonce; its known answers are the handshake vectors') */
	memcpy(data, rfc8439_pt, RFC8439_PT_LEN);
	pool_hs_seal(data, RFC8439_PT_LEN, rfc8439_key, rfc8439_key);
	CHECK(!pool_hs_open(data, sizeof(rfc8439_ct), rfc8439_key, rfc8439_key), "handshake open");
	SAME(data, rfc8439_pt, RFC8439_PT_LEN, "handshake round trip");
	pool_hs_seal(data, RFC8439_PT_LEN, rfc8439_key, rfc8439_key);
	data[0] ^= 1;
	CHECK(pool_hs_open(data, sizeof(rfc8439_ct), rfc8439_key, rfc8439_key) == -EBADMSG,
	      "handshake open of a flipped bit");

	/* the preallocated request of the data path */
	CHECK(!pool_aead_init(&a, rfc8439_key, GFP_KERNEL), "aead init");
	memcpy(ad, rfc8439_ad, sizeof(rfc8439_ad));
	memcpy(data, rfc8439_pt, RFC8439_PT_LEN);
	if (pool_aead_encrypt(&a, rfc8439_nonce, data, RFC8439_PT_LEN, ad,
			      sizeof(rfc8439_ad)) ||
	    !pool_same(__func__, "ciphertext", data, rfc8439_ct,
		       sizeof(rfc8439_ct)))
		goto out;
	if (pool_aead_decrypt(&a, rfc8439_nonce, data, sizeof(rfc8439_ct), ad,
			      sizeof(rfc8439_ad)) ||
	    !pool_same(__func__, "plaintext", data, rfc8439_pt,
		       RFC8439_PT_LEN))
		goto out;
	/* a flipped bit in the tag, then in the ad: -EBADMSG */
	memcpy(data, rfc8439_ct, sizeof(rfc8439_ct));
	data[sizeof(rfc8439_ct) - 1] ^= 1;
	if (pool_aead_decrypt(&a, rfc8439_nonce, data, sizeof(rfc8439_ct), ad,
			      sizeof(rfc8439_ad)) != -EBADMSG)
		goto out;
	memcpy(data, rfc8439_ct, sizeof(rfc8439_ct));
	ad[0] ^= 1;
	if (pool_aead_decrypt(&a, rfc8439_nonce, data, sizeof(rfc8439_ct), ad,
			      sizeof(rfc8439_ad)) != -EBADMSG)
		goto out;
	/* shorter than a tag */
	if (pool_aead_decrypt(&a, rfc8439_nonce, data, POOL_TAG_LEN - 1, NULL,
			      0) != -EMSGSIZE)
		goto out;
	ok = true;
out:
	pool_aead_destroy(&a);
	if (!ok)
		pr_err("%s: data path failed\n", __func__);
	return ok;
}

/* ---- RFC 4231 test cases 2 and 6, RFC 5869 test case 1 ---------------- */

static const u8 rfc4231_tc2[] __initconst = {
	0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26,
	0x08, 0x95, 0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83,
	0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec, 0x38, 0x43
};

static const u8 rfc4231_tc6[] __initconst = {
	0x60, 0xe4, 0x31, 0x59, 0x1e, 0xe0, 0xb6, 0x7f, 0x0d, 0x8a, 0x26, 0xaa,
	0xcb, 0xf5, 0xb7, 0x7f, 0x8e, 0x0b, 0xc6, 0x21, 0x37, 0x28, 0xc5, 0x14,
	0x05, 0x46, 0x04, 0x0f, 0x0e, 0xe3, 0x7f, 0x54
};

static const u8 rfc5869_tc1_salt[] __initconst = {
	0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b,
	0x0c
};

static const u8 rfc5869_tc1_info[] __initconst = {
	0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9
};

static const u8 rfc5869_tc1_okm[] __initconst = {
	0x3c, 0xb2, 0x5f, 0x25, 0xfa, 0xac, 0xd5, 0x7a, 0x90, 0x43, 0x4f, 0x64,
	0xd0, 0x36, 0x2f, 0x2a, 0x2d, 0x2d, 0x0a, 0x90, 0xcf, 0x1a, 0x5a, 0x4c,
	0x5d, 0xb0, 0x2d, 0x56, 0xec, 0xc4, 0xc5, 0xbf, 0x34, 0x00, 0x72, 0x08,
	0xd5, 0xb8, 0x87, 0x18, 0x58, 0x65
};

/* scratch: at least 131 bytes */
static bool __init pool_selftest_hmac_hkdf(u8 *scratch)
{
	static const char tc2_data[] __initconst = "what do ya want for nothing?";
	static const char tc6_data[] __initconst =
		"Test Using Larger Than Block-Size Key - Hash Key First";
	struct pool_hmac_ctx ctx;
	u8 out[42];

	pool_hmac(out, (const u8 *)"Jefe", 4, (const u8 *)tc2_data,
		  sizeof(tc2_data) - 1);
	SAME(out, rfc4231_tc2, 32, "HMAC RFC 4231 case 2");

	/* the same, fed in pieces */
	pool_hmac_init(&ctx, (const u8 *)"Jefe", 4);
	pool_hmac_update(&ctx, (const u8 *)tc2_data, 5);
	pool_hmac_update(&ctx, NULL, 0);
	pool_hmac_update(&ctx, (const u8 *)tc2_data + 5, sizeof(tc2_data) - 6);
	pool_hmac_final(&ctx, out);
	SAME(out, rfc4231_tc2, 32, "HMAC RFC 4231 case 2, in pieces");

	/* a key longer than the block is hashed first */
	memset(scratch, 0xaa, 131);
	pool_hmac(out, scratch, 131, (const u8 *)tc6_data,
		  sizeof(tc6_data) - 1);
	SAME(out, rfc4231_tc6, 32, "HMAC RFC 4231 case 6");

	memset(scratch, 0x0b, 22);
	pool_hkdf(out, sizeof(out), rfc5869_tc1_salt, sizeof(rfc5869_tc1_salt),
		  scratch, 22, rfc5869_tc1_info, sizeof(rfc5869_tc1_info));
	SAME(out, rfc5869_tc1_okm, sizeof(rfc5869_tc1_okm), "HKDF RFC 5869 case 1");
	return true;
}

/* ---- framing ----------------------------------------------------------- */

static bool __init pool_selftest_framing(void)
{
	struct pool_hdr h = {
		.type = POOL_PKT_DATA,
		.flags = POOL_F_ENCRYPTED,
		.seq = 0x0102030405060708ULL,
		.ack = 0x1112131415161718ULL,
		.timestamp = 0x2122232425262728ULL,
		.payload_len = 0x1234,
		.channel = 0x42,
	};
	struct pool_hdr d;
	u8 b[POOL_HDR_LEN], c[POOL_HDR_LEN];

	memset(h.session_id, 0x5a, sizeof(h.session_id));
	memset(h.mac, 0xa5, sizeof(h.mac));
	pool_hdr_encode(b, &h);
	CHECK(b[0] == 0x13 && b[1] == 0 && b[2] == 0x00 && b[3] == 0x01 &&
	      b[4] == 0x01 && b[11] == 0x08 && b[12] == 0x11 && b[20] == 0x5a &&
	      b[36] == 0x21 && b[44] == 0x12 && b[45] == 0x34 && b[46] == 0x42 &&
	      b[47] == 0 && b[48] == 0xa5 && b[79] == 0xa5, "header layout");
	CHECK(!pool_hdr_decode(&d, b), "decode");
	pool_hdr_encode(c, &d);
	SAME(c, b, POOL_HDR_LEN, "re-encoded header");

#define BAD(off, val, what)						\
	do {								\
		memcpy(c, b, POOL_HDR_LEN);				\
		c[off] = (val);						\
		CHECK(pool_hdr_decode(&d, c) == -EPROTO, what);		\
	} while (0)
	BAD(0, 0x23, "version 2 refused");
	BAD(0, 0x03, "version 0 refused");
	BAD(0, 0x1d, "type 0xd refused");
	BAD(0, 0x1a, "reserved type DISCOVER refused");
	BAD(0, 0x1b, "reserved type JOURNAL refused");
	BAD(3, 0x21, "reserved flag REQUIRE_ACK refused");
	BAD(3, 0x41, "TELEMETRY on DATA refused");
	BAD(1, 0x01, "reserved byte 1 refused");
	BAD(47, 0x80, "reserved byte 47 refused");
	BAD(2, 0x04, "flag bit 10 refused");
	BAD(3, 0x20, "DATA without ENCRYPTED refused");
#undef BAD
	memcpy(c, b, POOL_HDR_LEN);
	c[44] = 0;
	c[45] = POOL_TAG_LEN - 1;
	CHECK(pool_hdr_decode(&d, c) == -EPROTO, "DATA shorter than a tag refused");
	c[45] = POOL_TAG_LEN;
	CHECK(!pool_hdr_decode(&d, c), "empty DATA decode");
	c[0] = 0x15;
	CHECK(pool_hdr_decode(&d, c) == -EPROTO, "HEARTBEAT of the wrong size refused");
	c[45] = POOL_HEARTBEAT_LEN + POOL_TAG_LEN;
	CHECK(!pool_hdr_decode(&d, c), "HEARTBEAT decode");
	c[3] = POOL_F_ENCRYPTED | POOL_F_TELEMETRY;
	CHECK(!pool_hdr_decode(&d, c), "HEARTBEAT with TELEMETRY decode");
	c[0] = 0x1c;
	c[3] = POOL_F_ENCRYPTED;
	c[45] = POOL_WINDOW_PT_LEN + POOL_TAG_LEN;
	CHECK(!pool_hdr_decode(&d, c), "WINDOW decode");

	/* handshake shape: exact sizes, zero flags/seq/ack/channel */
	memset(&h, 0, sizeof(h));
	h.type = POOL_PKT_INIT;
	h.payload_len = POOL_INIT_LEN;
	pool_hdr_encode(b, &h);
	CHECK(!pool_hdr_decode(&d, b), "INIT decode");
	h.payload_len = POOL_INIT_LEN + 1;
	pool_hdr_encode(b, &h);
	CHECK(pool_hdr_decode(&d, b) == -EPROTO, "long INIT refused");
	h.payload_len = POOL_INIT_LEN;
	h.seq = 1;
	pool_hdr_encode(b, &h);
	CHECK(pool_hdr_decode(&d, b) == -EPROTO, "INIT with a sequence refused");
	h.seq = 0;
	h.flags = POOL_F_ENCRYPTED;
	pool_hdr_encode(b, &h);
	CHECK(pool_hdr_decode(&d, b) == -EPROTO, "encrypted INIT refused");
	h.type = POOL_PKT_CLOSE;
	h.payload_len = POOL_CLOSE_PT_LEN + POOL_TAG_LEN;
	pool_hdr_encode(b, &h);
	CHECK(!pool_hdr_decode(&d, b), "transport CLOSE decode");
	h.flags = 0;
	h.payload_len = POOL_HS_CLOSE_LEN;
	pool_hdr_encode(b, &h);
	CHECK(!pool_hdr_decode(&d, b), "handshake CLOSE decode");
	h.type = POOL_PKT_HEARTBEAT;
	pool_hdr_encode(b, &h);
	CHECK(pool_hdr_decode(&d, b) == -EPROTO, "clear HEARTBEAT refused");
	return true;
}

/* ---- the send ring across its counters' wrap ------------------------------ */

/* The byte at offset i of the test stream (no period a ring offset could hide). */
static u8 __init pool_ring_byte(u64 i)
{
	return (u8)(i ^ (i >> 8) ^ ((i >> 16) * 7));
}

static u32 __init pool_ring_rand(u32 *seed, u32 below)
{
	*seed = *seed * 1103515245 + 12345;
	return 1 + (*seed >> 8) % below;
}

/*
 * A producer keeps the ring full with packets of up to 64 KiB while a
 * consumer takes what a socket would, from 3 ring sizes below 2^32 to 5
 * above: every byte must come out as it went in.
 */
static bool __init pool_selftest_ring(void)
{
	const u32 packet_max = POOL_MAX_PAYLOAD + POOL_HDR_LEN + POOL_TAG_LEN;
	u32 prod, cons, len, seed = 1, i;
	u64 in = 0, out = 0, taken;
	struct kvec vec[2];
	unsigned int n, v;
	bool ok = false;
	u8 *ring, *buf;

	ring = kvmalloc(POOL_RING_SIZE, GFP_KERNEL);
	buf = kvmalloc(packet_max, GFP_KERNEL);
	if (!ring || !buf) {
		pr_err("%s: out of memory\n", __func__);
		goto out;
	}
	prod = cons = 0U - 3 * POOL_RING_SIZE;
	while (out < 8ULL * POOL_RING_SIZE) {
		for (;;) {
			len = pool_ring_rand(&seed, packet_max);
			if (pool_ring_used(prod, cons) + len > POOL_RING_SIZE)
				break;
			for (i = 0; i < len; i++)
				buf[i] = pool_ring_byte(in + i);
			prod = pool_ring_put(ring, prod, buf, len);
			in += len;
		}
		len = pool_ring_rand(&seed, pool_ring_used(prod, cons));
		n = pool_ring_peek(ring, cons, len, vec);
		taken = out;
		for (v = 0; v < n; v++) {
			const u8 *p = vec[v].iov_base;

			for (i = 0; i < vec[v].iov_len; i++, out++) {
				if (p[i] != pool_ring_byte(out)) {
					pr_err("%s: stream byte %llu came out wrong (ring position %u)\n",
					       __func__, out, (u32)(cons + (out - taken)));
					goto out;
				}
			}
		}
		cons += len;
	}
	ok = pool_ring_used(prod, cons) == in - out;
	if (!ok)
		pr_err("%s: %u bytes queued, %llu expected\n", __func__,
		       pool_ring_used(prod, cons), in - out);
out:
	kvfree(buf);
	kvfree(ring);
	return ok;
}

/* ---- puzzle seeds answered once ------------------------------------------ */

static bool __init pool_selftest_spent(void)
{
	struct pool_spent *sp = kvmalloc(sizeof(*sp), GFP_KERNEL);
	u8 seed[32] = { 0x5e, 0xed };
	bool ok = false;
	u32 i;

	if (!sp) {
		pr_err("%s: out of memory\n", __func__);
		return false;
	}
	pool_spent_init(sp);
	if (!pool_spent_mark(sp, seed) || pool_spent_mark(sp, seed)) {
		pr_err("%s: a seed was not refused the second time\n", __func__);
		goto out;
	}
	for (i = 1; i <= POOL_SPENT_MAX; i++) {
		u8 other[32] = {};

		put_unaligned_le32(i, other + 4);
		if (!pool_spent_mark(sp, other)) {
			pr_err("%s: fresh seed %u refused\n", __func__, i);
			goto out;
		}
	}
	/* POOL_SPENT_MAX later seeds: the first is forgotten (step 5 catches it) */
	ok = pool_spent_mark(sp, seed);
	if (!ok)
		pr_err("%s: the oldest seed was not forgotten\n", __func__);
out:
	kvfree(sp);
	return ok;
}

/* ---- telemetry arithmetic ------------------------------------------------ */

static bool __init pool_selftest_telemetry(void)
{
	/* 2.5 GB in 10 s: 2 Gbit/s; the product 2e19 does not fit 64 bits */
	CHECK(pool_throughput_bps(2500000000ULL, 10ULL * NSEC_PER_SEC) == 2000000000U,
	      "throughput above 2.3 GB per interval");
	CHECK(pool_throughput_bps(125000, NSEC_PER_SEC) == 1000000, "throughput of 1 Mbit/s");
	CHECK(pool_throughput_bps(1ULL << 40, NSEC_PER_SEC) == U32_MAX, "throughput saturated");
	CHECK(pool_throughput_bps(12345, 0) == 0, "throughput over no time");
	return true;
}

int __init pool_selftest(void)
{
	u8 *scratch;
	bool ok;

	scratch = kzalloc(POOL_SELFTEST_SCRATCH, GFP_KERNEL);
	if (!scratch)
		return -ENOMEM;

	ok = pool_selftest_x25519() &&
	     pool_selftest_aead(scratch) &&
	     pool_selftest_hmac_hkdf(scratch) &&
	     pool_selftest_framing() &&
	     pool_selftest_vectors() &&
	     pool_selftest_ring() &&
	     pool_selftest_telemetry() &&
	     pool_selftest_spent();

	kfree_sensitive(scratch);
	if (!ok) {
		pr_err("known-answer tests failed\n");
		return -ELIBBAD;
	}
	pr_info("known-answer tests passed\n");
	return 0;
}
