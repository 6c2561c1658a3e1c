/* SPDX-License-Identifier: BSD-3-Clause
 *
 * fuzz_dns.c - libFuzzer harness over the DNS answers given in C
 * (csrc/datapath/dns.h): the query parser and the answer writer, with a
 * published answer table and real routes.
 *
 * Input: byte 0: bit 0 IPv6, bit 1 the input is a whole frame (else it is
 * a UDP payload, wrapped in Ethernet/IP/UDP to 10.0.0.1 or 2001:db8:0:1::1
 * port 53 with right lengths and checksums, so that the parser is reached),
 * bits 2-7 the tailroom the answer may use (in 32-byte steps). Checked on
 * every input, besides ASan/UBSan:
 *   - the parser reads nothing past the frame (an exact-size heap copy);
 *   - a query is answered only when it is well formed as the header says
 *     (a reference reading here: QR 0, opcode 0, rcode 0, one question of
 *     class IN without compression, nothing in answer and authority, at
 *     most a plain OPT, and no byte more) and names an entry of the table;
 *   - an answer keeps the query's ID and question bytes, sets QR, has the
 *     entry's counts and body (the rate limit's truncated answer: none of
 *     them, or the OPT alone), fits the room, and its IPv4 header and UDP
 *     checksums are right.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_setup.h"

#include "datapath/dns.h"
#include "kg_internal.h"

static const unsigned char mac0[6] = { 2, 0, 0, 0, 0, 0xa0 };
static const unsigned char peer[6] = { 2, 0, 0, 0, 0, 0xb0 };
static unsigned char body_small[40], body_big[1100];

static unsigned int
ip4(int a, int b, int c, int d)
{
	unsigned char x[4] = { a, b, c, d };
	unsigned int v;

	memcpy(&v, x, 4);
	return v;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const unsigned char names[] = "\7example\4test\0\3www\7example\4test\0"
					     "\2gw\7example\4test\0";
	unsigned char a6[16] = { 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1 };
	struct kg_dns_entry e[4];
	struct kg_dns_conf dc = { .udp_port = 53, .n_addr4 = 1, .n_addr6 = 1 };
	unsigned char bodies[sizeof(body_small) + sizeof(body_big)];
	char err[256] = "";
	unsigned int i;
	int rc = 0;

	(void)argc;
	(void)argv;
	fuzz_tables();
	for (i = 0; i < sizeof(body_small); i++)
		body_small[i] = (unsigned char)(i * 7 + 1);
	for (i = 0; i < sizeof(body_big); i++)
		body_big[i] = (unsigned char)(i * 13 + 5);
	memcpy(bodies, body_small, sizeof(body_small));
	memcpy(bodies + sizeof(body_small), body_big, sizeof(body_big));
	rc |= kg_fib_port(0, mac0, 1500);
	rc |= kg_adj_set(33, 0, peer);
	rc |= kg_route4_add(ip4(10, 0, 0, 1), 32, KG_PUNT_LOCAL);
	rc |= kg_route4_add(ip4(10, 0, 0, 0), 24, KG_PUNT_GLEAN);
	rc |= kg_route4_add(ip4(10, 0, 0, 2), 32, 33);
	rc |= kg_route4_add(0, 0, 33);
	rc |= kg_route6_begin();
	a6[15] = 1;
	rc |= kg_route6_add(a6, 128, KG_PUNT_LOCAL);
	memset(a6 + 8, 0, 8);
	rc |= kg_route6_add(a6, 0, 33);
	kg_route6_end();
	a6[15] = 1;
	dc.addr4[0] = ip4(10, 0, 0, 1);
	memcpy(dc.addr6[0], a6, 16);
	memset(e, 0, sizeof(e));
	/* example.test A, without and with EDNS; www.example.test AAAA (IPv4
	 * only, big); gw.example.test A (an odd question length) */
	for (i = 0; i < 3; i++) {
		e[i].name_off = i < 2 ? 0 : 14;
		e[i].name_len = i < 2 ? 14 : 18;
		e[i].qtype = i < 2 ? 1 : 28;
		e[i].edns = i == 1;
		e[i].ans[0] = (struct kg_dns_answer){ .body_off = i < 2 ? 0 : sizeof(body_small),
			.body_len = i < 2 ? sizeof(body_small) : sizeof(body_big),
			.flags = 0x0400, .an = 1, .ns = 0, .ar = (unsigned short)(i == 1),
			.min_payload = i == 1 ? 512 : 0 };
		e[i].ans[1] = e[i].ans[0];
		if (i == 2)
			e[i].ans[1].min_payload = 0xffff;
	}
	e[3] = e[0];
	e[3].name_off = 32;
	e[3].name_len = 17;
	rc |= kg_dns_publish(&dc, e, 4, names, sizeof(names) - 1, bodies, sizeof(bodies),
			     err, sizeof(err));
	if (rc != 0) {
		fprintf(stderr, "fuzz: a table set-up call failed: %s\n", err);
		abort();
	}
	return 0;
}

static uint32_t
csum(const unsigned char *p, unsigned int n, uint32_t s)
{
	unsigned int i;

	for (i = 0; i + 1 < n; i += 2)
		s += (uint32_t)p[i] << 8 | p[i + 1];
	if (n & 1)
		s += (uint32_t)p[n - 1] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return s;
}

static unsigned int
be16(const unsigned char *p)
{
	return (unsigned int)p[0] << 8 | p[1];
}

/* The reference reading of a query the table may answer: the length of its
 * header and question, or 0. */
static unsigned int
well_formed(const unsigned char *d, unsigned int n, unsigned int *qtype, int *edns)
{
	unsigned int pos = 12, nl = 0;

	if (n < 12 || (be16(d + 2) & 0xf80f) || be16(d + 4) != 1 || be16(d + 6) || be16(d + 8) ||
	    be16(d + 10) > 1)
		return 0;
	while (pos < n && d[pos]) {
		if (d[pos] > 63)
			return 0;
		nl += d[pos] + 1u;
		pos += d[pos] + 1u;
	}
	if (pos >= n || nl + 1 > 255 || pos + 5 > n || be16(d + pos + 3) != 1)
		return 0;
	*qtype = be16(d + pos + 1);
	pos += 5;
	*edns = be16(d + 10) == 1;
	if (*edns)
		return pos + 11 == n && d[pos] == 0 && be16(d + pos + 1) == 41 && !d[pos + 5] &&
		       !d[pos + 6] && !be16(d + pos + 7) && !be16(d + pos + 9) ? pos : 0;
	return pos == n ? pos : 0;
}

static unsigned char *
wrap(const unsigned char *p, unsigned int n, int v6, unsigned int *len)
{
	unsigned int l3 = v6 ? 40 : 20, flen = 14 + l3 + 8 + n;
	unsigned char *f = calloc(1, flen), *ip = f + 14, *u = ip + l3;
	uint32_t s;

	memcpy(f, mac0, 6);
	memcpy(f + 6, peer, 6);
	f[12] = v6 ? 0x86 : 0x08;
	f[13] = v6 ? 0xdd : 0x00;
	if (!v6) {
		ip[0] = 0x45;
		ip[2] = (unsigned char)((20 + 8 + n) >> 8);
		ip[3] = (unsigned char)(20 + 8 + n);
		ip[8] = 64;
		ip[9] = 17;
		memcpy(ip + 12, (unsigned char[]){ 10, 0, 0, 2 }, 4);
		memcpy(ip + 16, (unsigned char[]){ 10, 0, 0, 1 }, 4);
		s = ~csum(ip, 20, 0) & 0xffff;
		ip[10] = (unsigned char)(s >> 8);
		ip[11] = (unsigned char)s;
	} else {
		ip[0] = 0x60;
		ip[4] = (unsigned char)((8 + n) >> 8);
		ip[5] = (unsigned char)(8 + n);
		ip[6] = 17;
		ip[7] = 64;
		memcpy(ip + 8, (unsigned char[]){ 0x20, 1, 0xd, 0xb8, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 2 }, 16);
		memcpy(ip + 24, (unsigned char[]){ 0x20, 1, 0xd, 0xb8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1 }, 16);
	}
	u[0] = 0x9c;
	u[1] = 0x40;
	u[3] = 53;
	u[4] = (unsigned char)((8 + n) >> 8);
	u[5] = (unsigned char)(8 + n);
	memcpy(u + 8, p, n);
	s = csum(v6 ? ip + 8 : ip + 12, v6 ? 32 : 8, 17 + 8 + n);
	s = ~csum(u, 8 + n, s) & 0xffff;
	if (s == 0)
		s = 0xffff;
	u[6] = (unsigned char)(s >> 8);
	u[7] = (unsigned char)s;
	*len = flen;
	return f;
}

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	const struct kg_dns_table *t = kg_dns_tab;
	unsigned char *f, *exact, *out;
	unsigned int len, room, qlen, qtype, ulen, l3, n;
	struct kg_verdict v;
	struct kg_dns_q q;
	int v6, edns, r;

	if (size < 1 || size > 4000)
		return 0;
	v6 = data[0] & 1;
	if (data[0] & 2) {
		len = (unsigned int)size - 1;
		f = malloc(len ? len : 1);
		memcpy(f, data + 1, len);
	} else {
		f = wrap(data + 1, (unsigned int)size - 1, v6, &len);
	}
	room = len + (data[0] >> 2) * 32u;
	exact = malloc(len ? len : 1);
	memcpy(exact, f, len);
	r = KG_DNS_NOT_DNS;
	if (kg_classify_frame(&kg_fib, 0, exact, len, &v) == KG_VERDICT_PUNT && v.reason == KG_PUNT_LOCAL)
		r = kg_dns_find(t, &kg_fib, exact, len, NULL, &q);
	assert(r == KG_DNS_NOT_DNS || r == KG_DNS_MISS || r == KG_DNS_ANSWERED);
	if (r == KG_DNS_ANSWERED) {
		l3 = exact[12] == 0x86 ? 40 : 20;
		ulen = be16(exact + 14 + l3 + 4);
		qlen = well_formed(exact + 14 + l3 + 8, ulen - 8, &qtype, &edns);
		assert(qlen != 0);
		assert(q.rec->qtype == qtype && q.rec->edns == edns);
		{
			/* the entry's name is the query's, lowered byte by byte */
			const unsigned char *qn = exact + 14 + l3 + 8 + 12;
			const uint8_t *rn = kg_dns_rec_name(t, q.rec);
			unsigned int k;

			assert(q.rec->name_len == qlen - 12 - 4);
			for (k = 0; k < q.rec->name_len; k++)
				assert(rn[k] == (qn[k] >= 'A' && qn[k] <= 'Z' ? qn[k] + 32 : qn[k]));
		}
		assert(q.qend == 14 + l3 + 8 + qlen);
		out = malloc(room);
		memcpy(out, exact, len);
		n = kg_dns_build(t, &kg_fib, out, room, &q, data[0] & 4);
		if (n) {
			const unsigned char *d = out + 14 + l3 + 8;

			assert(n <= room && n == q.qend + kg_dns_body_len(t, &q, data[0] & 4));
			assert(memcmp(d, exact + 14 + l3 + 8, 2) == 0);                 /* ID */
			assert(memcmp(d + 4, exact + 14 + l3 + 8 + 4, 2) == 0);         /* one question */
			assert(memcmp(d + 12, exact + 14 + l3 + 8 + 12, qlen - 12) == 0);
			assert(d[2] & 0x80);
			if (!(data[0] & 4))
				assert(memcmp(d + qlen, t->bodies + q.ans->body_off, q.ans->body_len) == 0 &&
				       be16(d + 6) == q.ans->an && be16(d + 10) == q.ans->ar);
			ulen = n - 14 - l3;
			assert(be16(out + 14 + l3 + 4) == ulen);
			if (l3 == 20) {
				assert(csum(out + 14, 20, 0) == 0xffff);
				assert(csum(out + 34, ulen, csum(out + 26, 8, 17 + ulen)) == 0xffff);
			} else {
				assert(csum(out + 54, ulen, csum(out + 22, 32, 17 + ulen)) == 0xffff);
			}
		}
		free(out);
	}
	free(exact);
	free(f);
	return 0;
}
