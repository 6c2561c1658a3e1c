/* SPDX-License-Identifier: BSD-3-Clause
 *
 * dns.h - DNS answers on the rx lcore, from the answer table that the
 * responder compiles (kni_gw/dnsfast.py) and control/dns.c publishes.
 *
 * A frame the classifier punts as local is looked at here first. It is a
 * query the table may answer when it is: IPv4 without options or fragments,
 * or IPv6 with UDP as the first next header; UDP to one of the table's
 * addresses and port, from a source port other than 0, its length the IP
 * payload's, its checksum right (the kernel drops a wrong one, and so is it
 * left to); a DNS query (QR 0, opcode QUERY, rcode 0) of one question of
 * class IN whose name has no compression, nothing in the answer and
 * authority sections, and nothing or one plain OPT (version 0, no flags, no
 * options, extended rcode 0) in the additional section, and not a byte
 * more. Everything else (TCP, DO, cookies, ECS, any option, trailing bytes,
 * a name the table does not hold) goes on to the kernel and the responder.
 *
 * The answer is written over the query, in place: Ethernet to the next hop
 * of the route back to the client (its MAC and port from the FIB, as the
 * kernel would route the reply; unresolved: punted), IP and UDP addresses
 * and ports swapped, TTL / hop limit 64 (Linux's defaults), IPv4 DF set and
 * ID 0, the query's ID, RD and question (name in the case it was asked)
 * kept, then the compiled rest of the answer; lengths and checksums set.
 *
 * Pure functions over frame bytes and the tables: the rx stage, the unit
 * tests (kg_dns_test) and the fuzzer drive the same code.
 */
#ifndef KG_DNS_H
#define KG_DNS_H

#include <rte_ip.h>

#include "datapath/classify.h"

#define KG_DNS_PORT_DEFAULT 53
#define KG_DNS_HDR 12
#define KG_DNS_OPT_LEN 11
#define KG_DNS_QR 0x8000
#define KG_DNS_OPCODE 0x7800
#define KG_DNS_AA 0x0400
#define KG_DNS_TC 0x0200
#define KG_DNS_RD 0x0100
#define KG_DNS_RCODE 0x000f
#define KG_DNS_TYPE_OPT 41
#define KG_DNS_CLASS_IN 1
#define KG_DNS_UDP_MAX 1232     /* the responder's EDNS payload size */
#define KG_DNS_TTL 64           /* net.ipv4.ip_default_ttl, net.ipv6.conf.*.hop_limit */

/* An answer of the table, for one family of client. */
struct kg_dns_ans {
	const uint8_t *body;
	uint16_t body_len, flags, an, ns, ar, min_payload;
};

struct kg_dns_rec {
	const uint8_t *name;    /* wire form, lower case */
	uint16_t name_len, qtype;
	uint8_t edns;
	struct kg_dns_ans ans[2];
};

/* The published table (control/dns.c builds it; read-only once published).
 * slot[]: (hash << 32) | (record index + 1), 0 for an empty slot; linear
 * probing, at most half full. */
struct kg_dns_table {
	uint64_t *slot;
	uint32_t mask;
	uint32_t n;
	struct kg_dns_rec *rec;
	uint16_t udp_port;
	uint32_t n4, n6;
	uint32_t addr4[KG_DNS_ADDRS_MAX];       /* host order */
	uint8_t addr6[KG_DNS_ADDRS_MAX][16];
	uint64_t rrl_cost, rrl_depth;           /* TSC cycles an answer costs, burst; 0: no limit */
	uint32_t rrl_slip;
	uint64_t memory;
};

/* The table the rx lcores answer from: ctl w (release, then waits for the
 * lcores before freeing the old one), rx r (acquire, once a burst). */
extern KG_LOCAL struct kg_dns_table *kg_dns_tab;

/* What kg_dns_find learnt of a query it may answer. */
struct kg_dns_q {
	const struct kg_dns_rec *rec;
	const struct kg_dns_ans *ans;
	uint32_t l3;            /* offset of the IP header */
	uint32_t qend;          /* offset of the end of the question */
	uint16_t qflags;
	uint8_t v6;
	unsigned int egress;    /* port index of the route back */
	uint64_t adj;           /* its adjacency word (next hop MAC) */
	uint64_t src_key;       /* the client's /24 or /56, for the rate limit */
};

static inline uint64_t
kg_dns_hash(const uint8_t *name, uint32_t len, uint32_t qtype, uint32_t edns)
{
	uint64_t h = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)qtype << 8 | edns | (uint64_t)len << 32);
	uint32_t i;

	for (i = 0; i < len; i += 8) {
		uint64_t w = 0;

		memcpy(&w, name + i, len - i >= 8 ? 8 : len - i);
		h = (h ^ w) * 0xff51afd7ed558ccdULL;
		h ^= h >> 32;
	}
	h *= 0xc4ceb9fe1a85ec53ULL;
	return h ^ (h >> 29);
}

static inline const struct kg_dns_rec *
kg_dns_lookup(const struct kg_dns_table *t, const uint8_t *name, uint32_t len, uint32_t qtype,
	      uint32_t edns)
{
	uint32_t h = (uint32_t)kg_dns_hash(name, len, qtype, edns), i, k;

	for (i = h & t->mask, k = 0; k <= t->mask; i = (i + 1) & t->mask, k++) {
		uint64_t s = t->slot[i];
		const struct kg_dns_rec *r;

		if (s == 0)
			return NULL;
		if ((uint32_t)(s >> 32) != h)
			continue;
		r = &t->rec[(uint32_t)s - 1];
		if (r->name_len == len && r->qtype == qtype && r->edns == edns &&
		    memcmp(r->name, name, len) == 0)
			return r;
	}
	return NULL;
}

/* The ones' complement sum of the UDP pseudo-header and datagram, folded
 * (0xffff when a datagram's checksum is right). */
static inline uint32_t
kg_dns_udp_sum(const uint8_t *ip, int v6, const uint8_t *udp, uint32_t ulen)
{
	uint32_t s = v6 ? rte_raw_cksum(ip + 8, 32) : rte_raw_cksum(ip + 12, 8);

	s += rte_cpu_to_be_16(IPPROTO_UDP) + rte_cpu_to_be_16((uint16_t)ulen);
	s += rte_raw_cksum(udp, ulen);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return s;
}

static inline int
kg_dns_addr4_ours(const struct kg_dns_table *t, uint32_t a)
{
	uint32_t i;

	for (i = 0; i < t->n4; i++)
		if (t->addr4[i] == a)
			return 1;
	return 0;
}

static inline int
kg_dns_addr6_ours(const struct kg_dns_table *t, const uint8_t *a)
{
	uint32_t i;

	for (i = 0; i < t->n6; i++)
		if (memcmp(t->addr6[i], a, 16) == 0)
			return 1;
	return 0;
}

/* Is this frame (punted as local by the classifier) a query the table
 * answers? KG_DNS_NOT_DNS, KG_DNS_MISS (a DNS query to us that the table
 * does not hold, or that it cannot answer here), or KG_DNS_ANSWERED with q
 * filled. src_nh: the FIB's next hop of the IPv4 source when the caller
 * looked it up already (the rx stage does a burst at once), else NULL. */
static __rte_always_inline int
kg_dns_find(const struct kg_dns_table *t, const struct kg_fib *f, unsigned int in,
	    const uint8_t *frame, uint32_t len, const uint32_t *src_nh, struct kg_dns_q *q)
{
	const uint8_t *ip = frame + RTE_ETHER_HDR_LEN, *udp, *d;
	uint32_t ulen, dlen, pos, n, qtype, edns, payload, nh, hash;
	uint8_t name[KG_DNS_NAME_MAX + 1];
	uint16_t qflags;
	int v6;

	if (len < RTE_ETHER_HDR_LEN + 20)
		return KG_DNS_NOT_DNS;
	if (frame[12] == 0x08 && frame[13] == 0x00) {
		/* IPv4: no options, not a fragment, UDP filling the packet */
		if (ip[0] != 0x45 || (kg_be16(ip + 6) & KG_FRAG_MASK) || ip[9] != IPPROTO_UDP)
			return KG_DNS_NOT_DNS;
		n = kg_be16(ip + 2);
		if (n < 28 || RTE_ETHER_HDR_LEN + n > len || !kg_dns_addr4_ours(t, kg_be32(ip + 16)))
			return KG_DNS_NOT_DNS;
		udp = ip + 20;
		ulen = n - 20;
		v6 = 0;
	} else if (frame[12] == 0x86 && frame[13] == 0xdd) {
		if (len < RTE_ETHER_HDR_LEN + 48 || ip[6] != IPPROTO_UDP)
			return KG_DNS_NOT_DNS;
		n = kg_be16(ip + 4);
		if (n < 8 || RTE_ETHER_HDR_LEN + 40 + n > len || !kg_dns_addr6_ours(t, ip + 24))
			return KG_DNS_NOT_DNS;
		udp = ip + 40;
		ulen = n;
		v6 = 1;
	} else {
		return KG_DNS_NOT_DNS;
	}
	if (kg_be16(udp + 2) != t->udp_port)
		return KG_DNS_NOT_DNS;
	/* a query to our DNS port: from here on, what is not answered is a miss */
	if (kg_be16(udp + 4) != ulen || kg_be16(udp) == 0)
		return KG_DNS_MISS;
	if ((udp[6] | udp[7]) || v6) {
		if (kg_dns_udp_sum(ip, v6, udp, ulen) != 0xffff)
			return KG_DNS_MISS;
	}
	d = udp + 8;
	dlen = ulen - 8;
	if (dlen < KG_DNS_HDR + 1 + 4)
		return KG_DNS_MISS;
	qflags = (uint16_t)kg_be16(d + 2);
	if (qflags & (KG_DNS_QR | KG_DNS_OPCODE | KG_DNS_RCODE))
		return KG_DNS_MISS;
	/* one question; nothing in answer and authority; at most an OPT */
	if (kg_be16(d + 4) != 1 || kg_be16(d + 6) != 0 || kg_be16(d + 8) != 0 || kg_be16(d + 10) > 1)
		return KG_DNS_MISS;
	edns = kg_be16(d + 10);
	/* the name, lower case, without compression */
	pos = KG_DNS_HDR;
	n = 0;
	for (;;) {
		uint32_t l = d[pos], j;

		if (l == 0)
			break;
		if (l > 63 || n + l + 1 >= KG_DNS_NAME_MAX || pos + 1 + l >= dlen)
			return KG_DNS_MISS;
		name[n++] = (uint8_t)l;
		for (j = 1; j <= l; j++) {
			uint8_t c = d[pos + j];

			name[n++] = c + (uint8_t)((uint8_t)(c - 'A') < 26u) * 32;
		}
		pos += 1 + l;
	}
	name[n++] = 0;
	pos++;
	if (pos + 4 > dlen || kg_be16(d + pos + 2) != KG_DNS_CLASS_IN)
		return KG_DNS_MISS;
	qtype = kg_be16(d + pos);
	pos += 4;
	q->qend = (uint32_t)(d - frame) + pos;
	payload = 512;
	if (edns) {
		/* root owner, type OPT, payload, ext rcode 0, version 0, no
		 * flags, no options: nothing more */
		if (pos + KG_DNS_OPT_LEN != dlen || d[pos] != 0 ||
		    kg_be16(d + pos + 1) != KG_DNS_TYPE_OPT || kg_be32(d + pos + 5) != 0 ||
		    kg_be16(d + pos + 9) != 0)
			return KG_DNS_MISS;
		payload = kg_be16(d + pos + 3);
		payload = payload > KG_DNS_UDP_MAX ? KG_DNS_UDP_MAX : payload < 512 ? 512 : payload;
	} else if (pos != dlen) {
		return KG_DNS_MISS;
	}
	q->rec = kg_dns_lookup(t, name, n, qtype, edns);
	if (q->rec == NULL)
		return KG_DNS_MISS;
	q->ans = &q->rec->ans[v6];
	if (q->ans->body == NULL || payload < q->ans->min_payload)
		return KG_DNS_MISS;
	/* the route back, as the kernel would take it */
	if (!v6) {
		uint32_t src = kg_be32(ip + 12);

		nh = src_nh ? *src_nh : kg_lookup4(f, src);
		if (nh == KG_PUNT_NO_ROUTE)
			nh = __atomic_load_n(&f->default4, __ATOMIC_RELAXED);
		hash = kg_flow_hash(kg_be32(ip + 16), src,
				    ((uint32_t)IPPROTO_UDP << 24) ^ kg_be16(udp + 2) << 16 ^ kg_be16(udp));
		q->src_key = (uint64_t)(src & 0xffffff00u);
	} else {
		if (__atomic_load_n(&f->v6_writing, __ATOMIC_ACQUIRE))
			return KG_DNS_MISS;
		if (rte_lpm6_lookup(f->lpm6, ip + 8, &nh) != 0)
			nh = f->default6;
		hash = kg_flow_hash(kg_be32(ip + 36) ^ kg_be32(ip + 32), kg_be32(ip + 20) ^ kg_be32(ip + 16),
				    ((uint32_t)IPPROTO_UDP << 24) ^ kg_be16(udp + 2) << 16 ^ kg_be16(udp));
		q->src_key = (1ULL << 63) | (uint64_t)kg_be32(ip + 8) << 24 | kg_be32(ip + 12) >> 8;
	}
	if (nh == KG_NH_NONE || nh < KG_NH_FIRST_ADJ)
		return KG_DNS_MISS;
	{
		struct kg_verdict v;

		/* the reply is at most this long: the egress MTU is checked on it */
		if (kg_nexthop(f, nh, hash, (v6 ? 40 : 20) + 8 + (q->qend - (uint32_t)(d - frame)) +
			       q->ans->body_len, v6, &v) != KG_VERDICT_FORWARD)
			return KG_DNS_MISS;
		q->egress = v.egress;
		q->adj = v.adj;
	}
	q->l3 = RTE_ETHER_HDR_LEN;
	q->qflags = qflags;
	q->v6 = (uint8_t)v6;
	return KG_DNS_ANSWERED;
}

/* Rewrites the query into its answer, in place; `trunc`: the empty
 * truncated answer of the rate limit's slip instead. Returns the frame's new
 * length, or 0 when it does not fit in room bytes. */
static __rte_always_inline uint32_t
kg_dns_build(const struct kg_fib *f, uint8_t *frame, uint32_t room, const struct kg_dns_q *q,
	     int trunc)
{
	uint8_t *ip = frame + q->l3, *udp = ip + (q->v6 ? 40 : 20), *d = udp + 8;
	const struct kg_dns_ans *a = q->ans;
	uint32_t body = trunc ? 0 : a->body_len, end = q->qend + body, ulen, sum;
	uint16_t flags = (uint16_t)(a->flags | KG_DNS_QR | (q->qflags & KG_DNS_RD));
	uint8_t t[16];

	if (end > room)
		return 0;
	if (trunc)
		flags = (uint16_t)((flags & (KG_DNS_QR | KG_DNS_AA | KG_DNS_RD | KG_DNS_RCODE)) | KG_DNS_TC);
	else
		memcpy(frame + q->qend, a->body, body);
	d[2] = (uint8_t)(flags >> 8);
	d[3] = (uint8_t)flags;
	d[6] = (uint8_t)((trunc ? 0 : a->an) >> 8);
	d[7] = (uint8_t)(trunc ? 0 : a->an);
	d[8] = (uint8_t)((trunc ? 0 : a->ns) >> 8);
	d[9] = (uint8_t)(trunc ? 0 : a->ns);
	d[10] = (uint8_t)((trunc ? 0 : a->ar) >> 8);
	d[11] = (uint8_t)(trunc ? 0 : a->ar);
	/* UDP: ports swapped */
	ulen = end - (uint32_t)(udp - frame);
	memcpy(t, udp, 2);
	memcpy(udp, udp + 2, 2);
	memcpy(udp + 2, t, 2);
	udp[4] = (uint8_t)(ulen >> 8);
	udp[5] = (uint8_t)ulen;
	udp[6] = udp[7] = 0;
	if (!q->v6) {
		memcpy(t, ip + 12, 4);
		memcpy(ip + 12, ip + 16, 4);
		memcpy(ip + 16, t, 4);
		ip[1] = 0;                              /* TOS */
		ip[2] = (uint8_t)((ulen + 20) >> 8);
		ip[3] = (uint8_t)(ulen + 20);
		ip[4] = ip[5] = 0;                      /* ID */
		ip[6] = 0x40;                           /* DF */
		ip[7] = 0;
		ip[8] = KG_DNS_TTL;
		ip[10] = ip[11] = 0;
		sum = (uint16_t)~rte_raw_cksum(ip, 20);
		memcpy(ip + 10, &(uint16_t){ (uint16_t)sum }, 2);
	} else {
		memcpy(t, ip + 8, 16);
		memcpy(ip + 8, ip + 24, 16);
		memcpy(ip + 24, t, 16);
		ip[0] = 0x60;                           /* version; no traffic class, no flow label */
		ip[1] = ip[2] = ip[3] = 0;
		ip[4] = (uint8_t)(ulen >> 8);
		ip[5] = (uint8_t)ulen;
		ip[7] = KG_DNS_TTL;
	}
	sum = (uint16_t)~kg_dns_udp_sum(ip, q->v6, udp, ulen);
	if (sum == 0)
		sum = 0xffff;
	memcpy(udp + 6, &(uint16_t){ (uint16_t)sum }, 2);
	/* Ethernet: to the next hop, from the egress port */
	kg_put_mac48(frame, q->adj);
	kg_put_mac48(frame + 6, kg_load64(&f->port_mac[q->egress % KG_MAX_PORTS]));
	return end;
}

#endif /* KG_DNS_H */
