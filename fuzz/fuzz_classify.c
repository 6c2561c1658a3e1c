/* SPDX-License-Identifier: BSD-3-Clause
 *
 * fuzz_classify.c - libFuzzer harness over the classifier and the
 * forwarding rewrite (csrc/datapath/classify.h), with the real LPM tables.
 *
 * Input: byte 0 picks the ingress port (low 2 bits), the frame's
 * alignment (bits 2-3) and whether the exported kg_rewrite() is also fed a
 * forged verdict (bit 7); the rest is the frame. Checked on every input,
 * besides ASan/UBSan:
 *   - the verdict and its reason are in range;
 *   - a FORWARD never goes back out of its ingress port;
 *   - the rewrite never grows the frame, keeps a whole IP header, leaves a
 *     valid IPv4 header checksum and decrements TTL / hop limit by one;
 *   - a chain's way (datapath/segs.h): the classifier and the rewrite given
 *     only the first KG_SEGS_HEAD bytes (an exact-size heap copy: ASan sees
 *     any read past them) and the frame's whole length give the verdict
 *     and the rewritten bytes and length of the whole frame;
 *   - the policing class (datapath/police.h) is in range, of the whole
 *     frame and of a chain's view.
 * The frame starts 2-byte aligned, as an mbuf's data does, at each such
 * alignment (0, 2, 4, 6 bytes past an 8-byte boundary); the rx stage's way
 * and a chain's view are each at another than the plain one: UBSan checks
 * every header access at all of them.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_setup.h"

#include "kg_internal.h"

static const unsigned char mac0[6] = { 2, 0, 0, 0, 0, 0xa0 };
static const unsigned char mac1[6] = { 2, 0, 0, 0, 0, 0xa1 };
static const unsigned char mac2[6] = { 2, 0, 0, 0, 0, 0xa2 };

static unsigned int
ip4(int a, int b, int c, int d)
{
	unsigned char x[4] = { a, b, c, d };
	unsigned int v;

	memcpy(&v, x, 4);
	return v; /* network byte order in memory */
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* adjacencies 32 (port 1), 33 (port 0), 34 (never resolved), 35
	 * (port 2, small MTU); slot 3: 32 and 35 weighted 3:1; slot 4 punts */
	unsigned int grp[4] = { 32, 32, 32, 35 };
	unsigned char v6[16] = { 0x20, 0x01, 0x0d, 0xb8, 0, 1 };
	unsigned char zero6[16] = { 0 };
	int rc = 0;

	(void)argc;
	(void)argv;
	fuzz_tables();
	rc |= kg_fib_port(0, mac0, 1500);
	rc |= kg_fib_port(1, mac1, 1500);
	rc |= kg_fib_port(2, mac2, 1000);
	rc |= kg_fib_port_mtu6(1, 1400);
	rc |= kg_fib_forwarding(0, 1, 1);
	rc |= kg_fib_forwarding(1, 1, 1);
	rc |= kg_fib_forwarding(2, 1, 0);
	rc |= kg_adj_set(32, 1, mac1);
	rc |= kg_adj_set(33, 0, mac0);
	rc |= kg_adj_set(35, 2, mac2);
	rc |= kg_group_set(3, 100, grp, 4);
	rc |= kg_group_punt(4, KG_PUNT_NOT_FAST);
	rc |= kg_route4_add(ip4(10, 0, 0, 0), 24, KG_PUNT_GLEAN);
	rc |= kg_route4_add(ip4(10, 0, 0, 1), 32, KG_PUNT_LOCAL);
	rc |= kg_route4_add(ip4(10, 1, 0, 2), 32, 32);
	rc |= kg_route4_add(ip4(10, 0, 0, 2), 32, 33);   /* a neighbour on port 0 */
	rc |= kg_route4_add(ip4(10, 2, 0, 0), 16, 32);
	rc |= kg_route4_add(ip4(10, 3, 0, 0), 16, KG_NH_GROUP | 3);
	rc |= kg_route4_add(ip4(10, 5, 0, 0), 16, KG_NH_GROUP | 4);
	rc |= kg_route4_add(ip4(10, 4, 0, 0), 16, 34);   /* never resolved */
	rc |= kg_route4_add(ip4(10, 6, 0, 0), 16, 33);   /* back out of port 0 */
	rc |= kg_route4_add(0, 0, 35);                   /* default, small MTU */
	rc |= kg_route6_begin();
	rc |= kg_route6_add(v6, 48, 32);
	rc |= kg_route6_add(zero6, 0, KG_NH_GROUP | 3);  /* default */
	v6[15] = 1;
	rc |= kg_route6_add(v6, 128, KG_PUNT_LOCAL);
	kg_route6_end();
	if (rc != 0) {
		fprintf(stderr, "fuzz: a table set-up call failed\n");
		abort();
	}
	return 0;
}

static unsigned int
check_forward(const unsigned char *before, unsigned char *f, unsigned int len,
	      const struct kg_verdict *v, unsigned int in)
{
	unsigned int n, i, sum = 0;

	assert(v->egress < KG_MAX_PORTS && v->egress != in);
	n = kg_rewrite_frame(&kg_fib, f, len, v);
	assert(n <= len);
	if (f[12] == 0x08) {
		assert(n >= 14 + 20);
		assert(f[14 + 8] == (unsigned char)(before[14 + 8] - 1));
		for (i = 0; i < 20; i += 2)
			sum += (unsigned int)f[14 + i] << 8 | f[15 + i];
		while (sum >> 16)
			sum = (sum & 0xffff) + (sum >> 16);
		assert(sum == 0xffff);
	} else {
		assert(n >= 14 + 40);
		assert(f[14 + 7] == (unsigned char)(before[14 + 7] - 1));
	}
	return n;
}

static void
check_police(const unsigned char *f, unsigned int len, int reason)
{
	int cls = kg_police_class(f, len, reason);

	assert(cls >= 0 && cls < KG_POLICE_MAX);
}

/* A heap copy of the frame `off` bytes into its allocation, which ends
 * where the frame does: ASan sees any read past the frame. */
static unsigned char *
frame_at(const unsigned char *frame, unsigned int len, unsigned int off, unsigned char **mem)
{
	*mem = malloc(off + len ? off + len : 1);
	memcpy(*mem + off, frame, len);
	return *mem + off;
}

static unsigned long fast_hits;         /* frames the fast lane took */

/* said at exit: that the fuzzer reached the fast lane, and how often */
__attribute__((destructor)) static void
report_fast(void)
{
	fprintf(stderr, "fuzz_classify: the fast lane took %lu frames\n", fast_hits);
}

/* The rx stage's fast lane on frame g (ips, nhs: its addresses and their
 * next hops, as the rx stage has them), where the rx stage runs it: what it
 * forwards, the classifier forwards the same way, and the two rewrites
 * give the same bytes. g is left as it was. */
static void
check_fast(unsigned int in, unsigned char *g, unsigned int len, const uint32_t *ips,
	   const uint64_t *nhs)
{
	struct kg_verdict v;
	uint32_t adj_idx = 0, moved, heard;
	uint64_t mac = kg_load64(&kg_fib.port_mac[in]), a;
	unsigned char *mem, *c, *dmem, *d;
	int r;

	if (!kg_fib.fwd4[in] || (mac & 1))
		return;
	a = kg_fast4(&kg_fib, in, mac, g, len, ips[0], ips[1], (uint32_t)nhs[0],
		     (uint32_t)nhs[1], &adj_idx);
	if (a == 0)
		return;
	r = kg_classify_frame(&kg_fib, in, g, len, &v);
	assert(r == KG_VERDICT_FORWARD && a == v.adj && adj_idx == v.adj_idx &&
	       ((a >> KG_ADJ_PORT_SHIFT) & 0xff) == v.egress);
	kg_src_liveness(&kg_fib, in, g, (uint32_t)nhs[1], &moved, &heard);
	assert(moved == v.moved && heard == v.heard);
	c = frame_at(g, len, 0, &mem);
	d = frame_at(g, len, 0, &dmem);
	assert(kg_rewrite4(&kg_fib, c, len, a, v.egress) == kg_rewrite_frame(&kg_fib, d, len, &v));
	assert(memcmp(c, d, len) == 0);
	free(mem);
	free(dmem);
	fast_hits++;
}

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct kg_verdict v, h;
	unsigned char *f, *fmem, *g, *gmem, *head, *hmem, *copy;
	unsigned int in, len, off, hn, n;
	int r;

	if (size < 1 || size > 9000)
		return 0;
	in = data[0] & 3;
	len = (unsigned int)size - 1;
	off = (data[0] >> 1) & 6;
	f = frame_at(data + 1, len, off, &fmem);
	g = frame_at(data + 1, len, (off + 2) & 6, &gmem);
	copy = malloc(len ? len : 1);
	memcpy(copy, data + 1, len);

	r = kg_classify_frame(&kg_fib, in, f, len, &v);
	assert(r == v.action);
	{
		/* the rx stage's way: lookups done beforehand for the burst */
		struct kg_verdict w;
		uint32_t ips[2];
		uint64_t nhs[2];

		kg_pre4_addrs(g, len, ips);
		rte_fib_lookup_bulk(kg_fib.fib4, ips, nhs, 2);
		assert(kg_classify_frame_pre(&kg_fib, in, g, len, nhs, &w) == r);
		assert(w.action == v.action && w.reason == v.reason && w.moved == v.moved &&
		       w.heard == v.heard);
		if (r == KG_VERDICT_FORWARD)
			assert(w.egress == v.egress && w.adj == v.adj && w.adj_idx == v.adj_idx);
		check_fast(in, g, len, ips, nhs);
	}
	/* the same frame with its IPv4 header checksum made right, so that
	 * the fast lane is asked about more than the rare frame the fuzzer
	 * gets right by itself */
	if (len >= sizeof(struct rte_ether_hdr) + sizeof(struct rte_ipv4_hdr)) {
		struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(g + sizeof(struct rte_ether_hdr));
		uint32_t ips[2], ihl = (ip->version_ihl & 0xf) * 4u;
		uint64_t nhs[2];

		if (ihl >= sizeof(*ip) && sizeof(struct rte_ether_hdr) + ihl <= len) {
			ip->hdr_checksum = 0;
			ip->hdr_checksum = rte_ipv4_cksum(ip);
			kg_pre4_addrs(g, len, ips);
			rte_fib_lookup_bulk(kg_fib.fib4, ips, nhs, 2);
			check_fast(in, g, len, ips, nhs);
			memcpy(g, data + 1, len);
		}
	}
	/* a chain's view: the first KG_SEGS_HEAD bytes, the whole length */
	hn = len < KG_SEGS_HEAD ? len : KG_SEGS_HEAD;
	head = frame_at(data + 1, hn, (off + 4) & 6, &hmem);
	assert(kg_classify_frame(&kg_fib, in, head, len, &h) == r);
	assert(h.action == v.action && h.reason == v.reason && h.moved == v.moved &&
	       h.heard == v.heard);
	if (r == KG_VERDICT_FORWARD)
		assert(h.egress == v.egress && h.adj == v.adj && h.adj_idx == v.adj_idx);
	assert(v.moved == 0 || (v.moved >= KG_NH_FIRST_ADJ && v.moved < KG_ADJ_MAX));
	assert(v.heard == 0 || (v.heard >= KG_NH_FIRST_ADJ && v.heard < KG_ADJ_MAX));
	assert(!(v.moved && v.heard));
	/* the rx stage polices what it punts; local and special frames are
	 * the ones whose headers it reads furthest */
	if (r == KG_VERDICT_PUNT) {
		check_police(g, len, v.reason);
		check_police(head, hn, v.reason);    /* a chain's: its view only */
	}
	check_police(g, len, KG_PUNT_LOCAL);
	check_police(g, len, KG_PUNT_SPECIAL);
	switch (r) {
	case KG_VERDICT_PUNT:
		assert(v.reason >= 0 && v.reason < KG_PUNT_MAX);
		break;
	case KG_VERDICT_DROP:
		assert(v.reason >= 0 && v.reason < KG_DROP_MAX);
		break;
	case KG_VERDICT_FORWARD:
		assert(v.adj_idx >= KG_NH_FIRST_ADJ && v.adj_idx < KG_ADJ_MAX);
		n = check_forward(copy, f, len, &v, in);
		assert(kg_rewrite_frame(&kg_fib, head, len, &h) == n);
		assert(memcmp(head, f, hn) == 0);
		break;
	default:
		abort();
	}
	if (data[0] & 0x80) {
		/* the exported rewrite with a verdict that lies */
		struct kg_verdict forged = { .action = KG_VERDICT_FORWARD,
					     .egress = data[0] >> 2 & 0x1f,
					     .adj = 0x0102030405060708ULL };

		memcpy(f, data + 1, len);
		assert(kg_rewrite(f, len, &forged) <= len);
	}
	free(fmem);
	free(gmem);
	free(hmem);
	free(copy);
	return 0;
}
