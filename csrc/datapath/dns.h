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
#include <rte_memcpy.h>
#include <rte_prefetch.h>

#include "datapath/classify.h"

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
	uint32_t body_off;      /* in the table's bodies */
	uint16_t body_len, flags, an, ns, ar, min_payload;
	uint16_t body_sum;      /* ones' complement sum of the body (native words) */
};

/* One question and its answers, in one open-addressing slot of two cache
 * lines (the rx stage prefetches both): name_len 0 is an empty slot. Names
 * of up to KG_DNS_INLINE bytes are kept in the slot, longer ones in the
 * table's names (name_off). */
#define KG_DNS_SLOT 128
#define KG_DNS_INLINE (KG_DNS_SLOT - 8 - 2 * (int)sizeof(struct kg_dns_ans) - 4)
struct kg_dns_rec {
	uint32_t hash;
	uint8_t name_len;
	uint8_t edns;
	uint16_t qtype;
	struct kg_dns_ans ans[2];       /* client on IPv4, on IPv6; body_len 0xffff: none */
	uint32_t name_off;
	uint8_t name[KG_DNS_INLINE];
} __rte_aligned(KG_DNS_SLOT);
_Static_assert(sizeof(struct kg_dns_rec) == KG_DNS_SLOT, "kg_dns_rec is two cache lines");
#define KG_DNS_NO_ANSWER 0xffff

/* The published table (control/dns.c builds it; read-only once published). */
struct kg_dns_table {
	struct kg_dns_rec *slot;        /* mask + 1 slots, at most 3/4 used */
	uint32_t mask;
	uint32_t n;
	const uint8_t *names, *bodies;
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

/* A query as kg_dns_parse read it, then what the lookup and the route back
 * found. */
struct kg_dns_q {
	uint32_t hash;
	uint16_t qtype;
	uint8_t edns, v6;
	uint16_t payload;       /* as the responder reads it: max(512, min(payload, 1232)) */
	uint16_t qflags;
	uint32_t l4;            /* offset of the UDP header */
	uint32_t qend;          /* offset of the end of the question */
	uint32_t name_len;
	uint8_t name[KG_DNS_NAME_MAX + 1 + 8];  /* wire form, lower case, zeros after */
	const struct kg_dns_rec *rec;
	const struct kg_dns_ans *ans;
	unsigned int egress;    /* port index of the route back */
	uint64_t adj;           /* its adjacency word (next hop MAC) */
	uint32_t adj_idx;       /* its adjacency (neighbour liveness: used) */
	uint32_t moved, heard;  /* the client's own adjacency, when it is the next
				 * hop: frame from another MAC (moved) or its own */
	uint64_t src_key;       /* the client's /24 or /56, for the rate limit */
};

/* The hash of a question: its name taken 8 bytes at a time as native
 * words (the last one zero-padded), its type, shape and length. */
static inline uint64_t
kg_dns_hash_init(uint32_t len, uint32_t qtype, uint32_t edns)
{
	return 0x9e3779b97f4a7c15ULL ^ ((uint64_t)qtype << 8 | edns | (uint64_t)len << 32);
}

static inline uint64_t
kg_dns_hash_step(uint64_t h, uint64_t w)
{
	h = (h ^ w) * 0xff51afd7ed558ccdULL;
	return h ^ (h >> 32);
}

static inline uint32_t
kg_dns_hash_final(uint64_t h)
{
	h *= 0xc4ceb9fe1a85ec53ULL;
	return (uint32_t)(h ^ (h >> 29));
}

static inline uint32_t
kg_dns_hash(const uint8_t *name, uint32_t len, uint32_t qtype, uint32_t edns)
{
	uint64_t h = kg_dns_hash_init(len, qtype, edns);
	uint32_t i;

	for (i = 0; i < len; i += 8) {
		uint64_t w = 0;

		memcpy(&w, name + i, len - i >= 8 ? 8 : len - i);
		h = kg_dns_hash_step(h, w);
	}
	return kg_dns_hash_final(h);
}

/* Names equal, byte for byte (both already lower case). */
static inline int
kg_dns_name_eq(const uint8_t *a, const uint8_t *b, uint32_t len)
{
	uint32_t i = 0;

	for (; i + 8 <= len; i += 8) {
		uint64_t x, y;

		memcpy(&x, a + i, 8);
		memcpy(&y, b + i, 8);
		if (x != y)
			return 0;
	}
	for (; i < len; i++)
		if (a[i] != b[i])
			return 0;
	return 1;
}

/* ASCII upper case to lower case in the 8 bytes of w, the others kept
 * (label lengths, 0-63, are never letters: a wire name is lowered whole). */
static inline uint64_t
kg_lower8(uint64_t w)
{
	const uint64_t hi = 0x8080808080808080ULL;
	uint64_t low7 = w & ~hi;
	uint64_t ge_a = low7 + 0x3f3f3f3f3f3f3f3fULL;  /* bit 7 set from 'A' (0x41) up */
	uint64_t gt_z = low7 + 0x2525252525252525ULL;  /* bit 7 set above 'Z' (0x5a) */
	uint64_t upper = (ge_a ^ gt_z) & ~w & hi;

	return w | upper >> 2;
}

static inline const uint8_t *
kg_dns_rec_name(const struct kg_dns_table *t, const struct kg_dns_rec *r)
{
	return r->name_len <= KG_DNS_INLINE ? r->name : t->names + r->name_off;
}

static inline void
kg_dns_prefetch_slot(const struct kg_dns_table *t, uint32_t hash)
{
	const uint8_t *p = (const uint8_t *)&t->slot[hash & t->mask];

	rte_prefetch0(p);
	rte_prefetch0(p + 64);
}

static inline const struct kg_dns_rec *
kg_dns_lookup(const struct kg_dns_table *t, const uint8_t *name, uint32_t len, uint32_t qtype,
	      uint32_t edns, uint32_t h)
{
	uint32_t i, k;

	for (i = h & t->mask, k = 0; k <= t->mask; i = (i + 1) & t->mask, k++) {
		const struct kg_dns_rec *r = &t->slot[i];

		if (r->name_len == 0)
			return NULL;
		if (r->hash == h && r->name_len == len && r->qtype == qtype && r->edns == edns &&
		    kg_dns_name_eq(kg_dns_rec_name(t, r), name, len))
			return r;
	}
	return NULL;
}

static inline uint32_t
kg_fold(uint32_t s)
{
	s = (s & 0xffff) + (s >> 16);
	return (s & 0xffff) + (s >> 16);
}

/* The ones' complement sum of the UDP pseudo-header and datagram, folded
 * (0xffff when a datagram's checksum is right). */
static inline uint32_t
kg_dns_udp_sum(const uint8_t *ip, int v6, const uint8_t *udp, uint32_t ulen)
{
	uint32_t s = v6 ? rte_raw_cksum(ip + 8, 32) : rte_raw_cksum(ip + 12, 8);

	s += rte_cpu_to_be_16(IPPROTO_UDP) + rte_cpu_to_be_16((uint16_t)ulen);
	s += rte_raw_cksum(udp, ulen);
	return kg_fold(s);
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

/* Is this a query the table may answer, as far as its own bytes tell?
 * KG_DNS_NOT_DNS (not UDP to our addresses and port), KG_DNS_MISS (a DNS
 * query to us that is answered elsewhere), or KG_DNS_ANSWERED with q's
 * question part filled (name, hash, type, shape, offsets). Reads nothing
 * past len. */
static __rte_always_inline int
kg_dns_parse(const struct kg_dns_table *t, const uint8_t *frame, uint32_t len, struct kg_dns_q *q)
{
	const uint8_t *ip = frame + RTE_ETHER_HDR_LEN, *udp, *d;
	uint32_t ulen, dlen, pos, n, payload;
	int v6;

	if (len < RTE_ETHER_HDR_LEN + 20)
		return KG_DNS_NOT_DNS;
	if (frame[12] == 0x08 && frame[13] == 0x00) {
		/* IPv4: no options, not a fragment, UDP filling the packet */
		if (ip[0] != 0x45 || ip[9] != IPPROTO_UDP || (kg_be16(ip + 6) & KG_FRAG_MASK))
			return KG_DNS_NOT_DNS;
		n = kg_be16(ip + 2);
		if (n < 28 || RTE_ETHER_HDR_LEN + n > len || kg_be16(ip + 22) != t->udp_port ||
		    !kg_dns_addr4_ours(t, kg_be32(ip + 16)))
			return KG_DNS_NOT_DNS;
		udp = ip + 20;
		ulen = n - 20;
		v6 = 0;
	} else if (frame[12] == 0x86 && frame[13] == 0xdd) {
		if (len < RTE_ETHER_HDR_LEN + 48 || ip[6] != IPPROTO_UDP)
			return KG_DNS_NOT_DNS;
		n = kg_be16(ip + 4);
		if (n < 8 || RTE_ETHER_HDR_LEN + 40 + n > len || kg_be16(ip + 42) != t->udp_port ||
		    !kg_dns_addr6_ours(t, ip + 24))
			return KG_DNS_NOT_DNS;
		udp = ip + 40;
		ulen = n;
		v6 = 1;
	} else {
		return KG_DNS_NOT_DNS;
	}
	/* a query to our DNS port: from here on, what is not answered is a miss */
	if (kg_be16(udp + 4) != ulen || kg_be16(udp) == 0)
		return KG_DNS_MISS;
	/* the checksum: optional over IPv4 (0: none), required over IPv6,
	 * where Linux drops a datagram with 0 */
	if (udp[6] | udp[7]) {
		if (kg_dns_udp_sum(ip, v6, udp, ulen) != 0xffff)
			return KG_DNS_MISS;
	} else if (v6) {
		return KG_DNS_MISS;
	}
	d = udp + 8;
	dlen = ulen - 8;
	if (dlen < KG_DNS_HDR + 1 + 4)
		return KG_DNS_MISS;
	q->qflags = (uint16_t)kg_be16(d + 2);
	if (q->qflags & (KG_DNS_QR | KG_DNS_OPCODE | KG_DNS_RCODE))
		return KG_DNS_MISS;
	/* one question; nothing in answer and authority; at most an OPT */
	if (kg_be16(d + 4) != 1 || kg_be16(d + 6) != 0 || kg_be16(d + 8) != 0 || kg_be16(d + 10) > 1)
		return KG_DNS_MISS;
	q->edns = (uint8_t)kg_be16(d + 10);
	/* the name, without compression: its labels walked */
	pos = KG_DNS_HDR;
	for (;;) {
		uint32_t l = d[pos];

		if (l == 0)
			break;
		if (l > 63 || pos + 1 + l >= dlen)
			return KG_DNS_MISS;
		pos += 1 + l;
	}
	pos++;
	n = pos - KG_DNS_HDR;           /* its length, the root's byte included */
	if (n > KG_DNS_NAME_MAX || pos + 4 > dlen || kg_be16(d + pos + 2) != KG_DNS_CLASS_IN)
		return KG_DNS_MISS;
	q->qtype = (uint16_t)kg_be16(d + pos);
	pos += 4;
	/* then lowered and hashed 8 bytes at a time, in registers (bytes
	 * stored one by one and read back as a word would stall): the name
	 * and the 4 bytes after it are in the message, so a word that would
	 * run past its end is read as the message's last 8 bytes, shifted */
	{
		uint64_t h = kg_dns_hash_init(n, q->qtype, q->edns), w;
		uint32_t i;

		for (i = 0; i < n; i += 8) {
			uint32_t at = KG_DNS_HDR + i;

			if (at + 8 <= dlen) {
				memcpy(&w, d + at, 8);
			} else {
				memcpy(&w, d + dlen - 8, 8);
#if RTE_BYTE_ORDER == RTE_LITTLE_ENDIAN
				w >>= 8 * (at + 8 - dlen);
#else
				w <<= 8 * (at + 8 - dlen);
#endif
			}
			if (n - i < 8) {        /* past the name: zeros */
#if RTE_BYTE_ORDER == RTE_LITTLE_ENDIAN
				w &= (1ULL << (8 * (n - i))) - 1;
#else
				w &= ~0ULL << (8 * (8 - (n - i)));
#endif
			}
			w = kg_lower8(w);
			memcpy(q->name + i, &w, 8);
			h = kg_dns_hash_step(h, w);
		}
		q->hash = kg_dns_hash_final(h);
	}
	payload = 512;
	if (q->edns) {
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
	q->name_len = n;
	q->payload = (uint16_t)payload;
	q->v6 = (uint8_t)v6;
	q->l4 = (uint32_t)(udp - frame);
	q->qend = (uint32_t)(d - frame) + pos;
	return KG_DNS_ANSWERED;
}

/* src_nh below: the FIB's next hop of the IPv4 source when the caller
 * looked it up already (the rx stage does a burst at once), else NULL. */
/* The table's answer to a parsed query: KG_DNS_ANSWERED (q->rec, q->ans
 * set) or KG_DNS_MISS. */
static __rte_always_inline int
kg_dns_match(const struct kg_dns_table *t, struct kg_dns_q *q)
{
	q->rec = kg_dns_lookup(t, q->name, q->name_len, q->qtype, q->edns, q->hash);
	if (q->rec == NULL)
		return KG_DNS_MISS;
	q->ans = &q->rec->ans[q->v6];
	if (q->ans->body_len == KG_DNS_NO_ANSWER || q->payload < q->ans->min_payload)
		return KG_DNS_MISS;
	return KG_DNS_ANSWERED;
}

/* The route back to a matched query's client, as the kernel would take it:
 * KG_DNS_ANSWERED or KG_DNS_MISS. */
static __rte_always_inline int
kg_dns_route(const struct kg_fib *f, const uint8_t *frame, const uint32_t *src_nh,
	     struct kg_dns_q *q)
{
	const uint8_t *ip = frame + RTE_ETHER_HDR_LEN, *udp = frame + q->l4;
	uint32_t nh, hash, ports = ((uint32_t)IPPROTO_UDP << 24) ^ kg_be16(udp + 2) << 16 ^ kg_be16(udp);
	struct kg_verdict v;

	if (!q->v6) {
		uint32_t src = kg_be32(ip + 12);

		nh = src_nh ? *src_nh : kg_lookup4(f, src);
		if (nh == KG_PUNT_NO_ROUTE)
			nh = __atomic_load_n(&f->default4, __ATOMIC_RELAXED);
		hash = kg_flow_hash(kg_be32(ip + 16), src, ports);
		q->src_key = (uint64_t)(src & 0xffffff00u);
	} else {
		if (__atomic_load_n(&f->v6_writing, __ATOMIC_ACQUIRE))
			return KG_DNS_MISS;
		if (rte_lpm6_lookup(f->lpm6, ip + 8, &nh) != 0)
			nh = f->default6;
		hash = kg_flow_hash(kg_be32(ip + 36) ^ kg_be32(ip + 32), kg_be32(ip + 20) ^ kg_be32(ip + 16),
				    ports);
		q->src_key = (1ULL << 63) | (uint64_t)kg_be32(ip + 8) << 24 | kg_be32(ip + 12) >> 8;
	}
	if (nh == KG_NH_NONE || nh < KG_NH_FIRST_ADJ)
		return KG_DNS_MISS;
	/* the reply is at most this long: the egress MTU is checked on it */
	if (kg_nexthop(f, nh, hash, q->qend - RTE_ETHER_HDR_LEN + q->ans->body_len, q->v6, &v) !=
	    KG_VERDICT_FORWARD)
		return KG_DNS_MISS;
	q->egress = v.egress;
	q->adj = v.adj;
	q->adj_idx = v.adj_idx;
	/* the client is its own next hop: its MAC is as the kernel has it
	 * (heard), or the query came from another one (moved: the control
	 * side asks the kernel to check), as for forwarded frames */
	q->moved = q->heard = 0;
	if (!(nh & KG_NH_GROUP)) {
		if ((v.adj & KG_MAC48_MASK) != kg_mac48(frame + 6))
			q->moved = v.adj_idx;
		else
			q->heard = v.adj_idx;
	}
	return KG_DNS_ANSWERED;
}

/* Parse, look up, route back: the whole decision on one frame (punted as
 * local by the classifier). */
static inline int
kg_dns_find(const struct kg_dns_table *t, const struct kg_fib *f, const uint8_t *frame,
	    uint32_t len, const uint32_t *src_nh, struct kg_dns_q *q)
{
	int r = kg_dns_parse(t, frame, len, q);

	if (r == KG_DNS_ANSWERED)
		r = kg_dns_match(t, q);
	return r == KG_DNS_ANSWERED ? kg_dns_route(f, frame, src_nh, q) : r;
}

static inline void
kg_put16(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* The length of what follows the question in the answer: the compiled
 * body, or for the rate limit's truncated answer (trunc) nothing but the
 * OPT of an EDNS query's answer (its last 11 bytes). */
static inline uint32_t
kg_dns_body_len(const struct kg_dns_table *t, const struct kg_dns_q *q, int trunc)
{
	const struct kg_dns_ans *a = q->ans;
	const uint8_t *opt;

	if (!trunc)
		return a->body_len;
	if (!q->edns || a->ar == 0 || a->body_len < KG_DNS_OPT_LEN)
		return 0;
	opt = t->bodies + a->body_off + a->body_len - KG_DNS_OPT_LEN;
	return opt[0] == 0 && kg_be16(opt + 1) == KG_DNS_TYPE_OPT && kg_be16(opt + 9) == 0 ?
	       KG_DNS_OPT_LEN : 0;
}

/* Rewrites the query into its answer, in place; `trunc`: the empty
 * truncated answer of the rate limit's slip instead. Returns the frame's new
 * length, or 0 when it does not fit in room bytes. The checksums are summed
 * from the values written and the sums of the question (read, as it was
 * received) and of the body (kept in the table), never from bytes just
 * written. */
static __rte_always_inline uint32_t
kg_dns_build(const struct kg_dns_table *t, const struct kg_fib *f, uint8_t *frame, uint32_t room,
	     const struct kg_dns_q *q, int trunc)
{
	uint8_t *ip = frame + RTE_ETHER_HDR_LEN, *udp = frame + q->l4, *d = udp + 8;
	const struct kg_dns_ans *a = q->ans;
	const uint8_t *src = t->bodies + a->body_off;
	uint32_t body = kg_dns_body_len(t, q, trunc), end = q->qend + body, ulen = end - q->l4;
	uint32_t qlen = q->qend - (q->l4 + 8 + KG_DNS_HDR);
	uint32_t flags = a->flags | KG_DNS_QR | (q->qflags & KG_DNS_RD);
	uint32_t an = trunc ? 0 : a->an, ns = trunc ? 0 : a->ns, ar = trunc ? body != 0 : a->ar;
	uint32_t sum, addr_sum, sport, dport, id, bs;
	uint8_t tmp[16];

	if (end > room)
		return 0;
	if (trunc) {
		/* empty, TC, but the OPT kept for an EDNS query (RFC 6891 §7):
		 * the compiled answer's last record */
		flags = (flags & (KG_DNS_QR | KG_DNS_AA | KG_DNS_RD | KG_DNS_RCODE)) | KG_DNS_TC;
		src += a->body_len - body;
	}
	/* sums of what is read, before anything is written */
	addr_sum = q->v6 ? rte_raw_cksum(ip + 8, 32) : rte_raw_cksum(ip + 12, 8);
	sum = rte_raw_cksum(d + KG_DNS_HDR, qlen);
	if (body) {
		bs = trunc ? rte_raw_cksum(src, body) : a->body_sum;
		sum += (qlen & 1) ? (uint16_t)(bs << 8 | bs >> 8) : bs;
		rte_memcpy(frame + q->qend, src, body);
	}
	sport = kg_be16(udp);
	dport = kg_be16(udp + 2);
	id = kg_be16(d);
	/* DNS header */
	kg_put16(d + 2, flags);
	kg_put16(d + 6, an);
	kg_put16(d + 8, ns);
	kg_put16(d + 10, ar);
	/* UDP: ports swapped; the checksum from the parts' sums (host order
	 * values go in through rte_cpu_to_be_16: the sums are of native words) */
	kg_put16(udp, dport);
	kg_put16(udp + 2, sport);
	kg_put16(udp + 4, ulen);
	sum += addr_sum;
	sum += rte_cpu_to_be_16(IPPROTO_UDP) + 2 * rte_cpu_to_be_16((uint16_t)ulen);
	sum += rte_cpu_to_be_16((uint16_t)sport) + rte_cpu_to_be_16((uint16_t)dport);
	sum += rte_cpu_to_be_16((uint16_t)id) + rte_cpu_to_be_16((uint16_t)flags) +
	       rte_cpu_to_be_16(1) + rte_cpu_to_be_16((uint16_t)an) +
	       rte_cpu_to_be_16((uint16_t)ns) + rte_cpu_to_be_16((uint16_t)ar);
	sum = (uint16_t)~kg_fold(sum);
	if (sum == 0)
		sum = 0xffff;
	memcpy(udp + 6, &(uint16_t){ (uint16_t)sum }, 2);
	if (!q->v6) {
		memcpy(tmp, ip + 12, 4);
		memcpy(ip + 12, ip + 16, 4);
		memcpy(ip + 16, tmp, 4);
		ip[1] = 0;                              /* TOS */
		kg_put16(ip + 2, ulen + 20);
		ip[4] = ip[5] = 0;                      /* ID */
		ip[6] = 0x40;                           /* DF */
		ip[7] = 0;
		ip[8] = KG_DNS_TTL;
		sum = addr_sum + rte_cpu_to_be_16(0x4500) + rte_cpu_to_be_16((uint16_t)(ulen + 20)) +
		      rte_cpu_to_be_16(0x4000) + rte_cpu_to_be_16(KG_DNS_TTL << 8 | IPPROTO_UDP);
		memcpy(ip + 10, &(uint16_t){ (uint16_t)~kg_fold(sum) }, 2);
	} else {
		memcpy(tmp, ip + 8, 16);
		memcpy(ip + 8, ip + 24, 16);
		memcpy(ip + 24, tmp, 16);
		ip[0] = 0x60;                           /* version; no traffic class, no flow label */
		ip[1] = ip[2] = ip[3] = 0;
		kg_put16(ip + 4, ulen);
		ip[7] = KG_DNS_TTL;
	}
	/* Ethernet: to the next hop, from the egress port */
	kg_put_macs(frame, q->adj, kg_load64(&f->port_mac[q->egress % KG_MAX_PORTS]));
	return end;
}

#endif /* KG_DNS_H */
