/* SPDX-License-Identifier: BSD-3-Clause
 *
 * classify.h - the rx lcore's decision on one frame (forward, punt to the
 * kernel, drop) and the forwarding rewrite. Pure functions over frame bytes
 * and the tables (tables.h): the rx stage, the unit tests (kg_classify)
 * and the fuzzer drive the same code.
 */
#ifndef KG_CLASSIFY_H
#define KG_CLASSIFY_H

#include "tables.h"

static inline int
kg_punt(struct kg_verdict *v, int reason)
{
	v->action = KG_VERDICT_PUNT;
	v->reason = reason;
	return KG_VERDICT_PUNT;
}

static inline int
kg_drop(struct kg_verdict *v, int reason)
{
	v->action = KG_VERDICT_DROP;
	v->reason = reason;
	return KG_VERDICT_DROP;
}

/* A next hop from the LPM: a punt reason, or an adjacency (picked from a
 * group slot's buckets by the flow hash). Fills v for FORWARD. */
static __rte_always_inline int
kg_nexthop(const struct kg_fib *f, uint32_t nh, uint32_t hash, uint32_t ip_len,
	   uint32_t mtu6, struct kg_verdict *v)
{
	uint64_t a;
	uint32_t egress, mtu;

	if (nh < KG_NH_FIRST_ADJ)
		return kg_punt(v, (int)nh);
	if (nh & KG_NH_GROUP) {
		uint64_t g = __atomic_load_n(&f->group[(nh & ~KG_NH_GROUP) % KG_GROUP_MAX],
					     __ATOMIC_ACQUIRE);
		uint32_t n = (uint32_t)(g >> 32), base = (uint32_t)g;

		if (n == 0)
			return kg_punt(v, base < KG_PUNT_MAX ? (int)base : KG_PUNT_NOT_FAST);
		nh = f->bucket[(base + (uint32_t)(((uint64_t)hash * n) >> 32)) &
			       (KG_BUCKET_MAX - 1)];
	}
	a = kg_load64(&f->adj[nh % KG_ADJ_MAX]);
	if (!(a & KG_ADJ_VALID))
		return kg_punt(v, KG_PUNT_UNRESOLVED);
	egress = (uint32_t)(a >> KG_ADJ_PORT_SHIFT) & 0xff;
	if (egress >= KG_MAX_PORTS)
		return kg_punt(v, KG_PUNT_UNRESOLVED);
	mtu = __atomic_load_n(&f->port_mtu[egress], __ATOMIC_RELAXED);
	if (mtu6) {
		uint32_t m6 = __atomic_load_n(&f->port_mtu6[egress], __ATOMIC_RELAXED);

		if (m6 && m6 < mtu)
			mtu = m6;
	}
	if (ip_len > mtu)
		return kg_punt(v, KG_PUNT_MTU);
	v->action = KG_VERDICT_FORWARD;
	v->reason = 0;
	v->egress = egress;
	v->adj_idx = nh % KG_ADJ_MAX;
	v->adj = a;
	return KG_VERDICT_FORWARD;
}

static inline uint32_t
kg_flow_hash(uint32_t a, uint32_t b, uint32_t c)
{
	/* a small avalanche mix (murmur3 finaliser) over the flow's words */
	uint32_t h = a * 0x9e3779b1u ^ b;

	h ^= c * 0x85ebca6bu;
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

/* L4 ports of a first fragment or unfragmented TCP/UDP/SCTP packet, else 0. */
static inline uint32_t
kg_l4_ports(const uint8_t *l4, const uint8_t *end, uint8_t proto, int frag)
{
	if (frag || (proto != 6 && proto != 17 && proto != 132) || l4 + 4 > end)
		return 0;
	return kg_be32(l4);
}

static __rte_always_inline int
kg_classify_ipv4(const struct kg_fib *f, unsigned int in, const uint8_t *smac,
		 const uint8_t *ip, uint32_t avail, const uint32_t *pre, struct kg_verdict *v)
{
	uint32_t ihl, tot, sum, i, src, dst, nh, frag;

	if (avail < 20)
		return kg_drop(v, KG_DROP_RUNT);
	if ((ip[0] >> 4) != 4 || (ihl = (uint32_t)(ip[0] & 0xf) * 4) < 20)
		return kg_drop(v, KG_DROP_BAD_HEADER);
	if (avail < ihl)
		return kg_drop(v, KG_DROP_RUNT);
	tot = kg_be16(ip + 2);
	if (tot < ihl)
		return kg_drop(v, KG_DROP_BAD_HEADER);
	if (tot > avail)
		return kg_drop(v, KG_DROP_RUNT);
	/* the header checksum, as ip_rcv verifies it: a ones' complement sum
	 * of native 32-bit words folds to 0xffff in either byte order */
	{
		uint64_t s = 0;
		uint32_t w;

		if (likely(ihl == 20)) {
			/* the usual header, unrolled */
			uint32_t w0, w1, w2, w3, w4;

			memcpy(&w0, ip, 4);
			memcpy(&w1, ip + 4, 4);
			memcpy(&w2, ip + 8, 4);
			memcpy(&w3, ip + 12, 4);
			memcpy(&w4, ip + 16, 4);
			s = (uint64_t)w0 + w1 + w2 + w3 + w4;
		} else {
			for (i = 0; i < ihl; i += 4) {
				memcpy(&w, ip + i, 4);
				s += w;
			}
		}
		s = (s & 0xffffffffu) + (s >> 32);
		s = (s & 0xffffffffu) + (s >> 32);
		sum = (uint32_t)(s & 0xffff) + (uint32_t)(s >> 16);
		sum = (sum & 0xffff) + (sum >> 16);
		sum = (sum & 0xffff) + (sum >> 16);
	}
	if (sum != 0xffff)
		return kg_drop(v, KG_DROP_BAD_CHECKSUM);

	src = kg_be32(ip + 12);
	dst = kg_be32(ip + 16);
	/* multicast and limited broadcast destinations are the kernel's */
	if ((dst >> 28) == 0xe || dst == 0xffffffffu)
		return kg_punt(v, KG_PUNT_IP_MULTICAST);
	/* what the kernel calls martian: 0/8, 127/8, multicast or broadcast
	 * sources, 0/8 or 127/8 destinations */
	if ((src >> 24) == 0 || (src >> 24) == 127 || (src >> 28) == 0xe ||
	    src == 0xffffffffu || (dst >> 24) == 0 || (dst >> 24) == 127)
		return kg_punt(v, KG_PUNT_SPECIAL);
	nh = pre ? pre[0] : kg_lookup4(f, dst);
	if (nh == KG_PUNT_NO_ROUTE) {
		nh = __atomic_load_n(&f->default4, __ATOMIC_RELAXED);
		if (nh == KG_NH_NONE)
			return kg_punt(v, KG_PUNT_NO_ROUTE);
	}
	if (nh < KG_NH_FIRST_ADJ)
		return kg_punt(v, (int)nh);
	if (!f->fwd4[in])
		return kg_punt(v, KG_PUNT_FWD_OFF);
	/* the source: one of our own addresses is martian; a neighbour's
	 * address says the neighbour is alive (heard) or, sent from another
	 * MAC than its adjacency's, that it may have moved (the control side
	 * asks the kernel to check it) */
	i = pre ? pre[1] : kg_lookup4(f, src);
	if (i != KG_PUNT_NO_ROUTE) {
		if (i == KG_PUNT_LOCAL)
			return kg_punt(v, KG_PUNT_SPECIAL);
		if (i >= KG_NH_FIRST_ADJ && !(i & KG_NH_GROUP)) {
			uint64_t a = kg_load64(&f->adj[i % KG_ADJ_MAX]);

			if ((a & KG_ADJ_VALID) && ((a >> KG_ADJ_PORT_SHIFT) & 0xff) == in) {
				if ((a & KG_MAC48_MASK) != kg_mac48(smac))
					v->moved = i % KG_ADJ_MAX;
				else
					v->heard = i % KG_ADJ_MAX;
			}
		}
	}
	if (ihl != 20)
		return kg_punt(v, KG_PUNT_OPTIONS);
	if (ip[8] <= 1)
		return kg_punt(v, KG_PUNT_TTL);
	if (!(nh & KG_NH_GROUP))
		return kg_nexthop(f, nh, 0, tot, 0, v);
	/* ECMP: the flow hash picks the path. Any fragment (MF set or an
	 * offset) hashes without ports, so that all the fragments of a
	 * datagram take one path, as in Linux */
	frag = kg_be16(ip + 6) & KG_FRAG_MASK;
	return kg_nexthop(f, nh,
			  kg_flow_hash(src, dst, ((uint32_t)ip[9] << 24) ^
				       kg_l4_ports(ip + 20, ip + tot, ip[9], frag != 0)),
			  tot, 0, v);
}

static inline int
kg_v6_linklocal(const uint8_t *a)
{
	return a[0] == 0xfe && (a[1] & 0xc0) == 0x80;
}

static inline int
kg_v6_special(const uint8_t *a)
{
	static const uint8_t zero[16];

	/* link-local fe80::/10 */
	if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
		return 1;
	if (memcmp(a, zero, 10) != 0)
		return 0;
	/* v4-mapped ::ffff:0:0/96; unspecified ::, loopback ::1 */
	if (a[10] == 0xff && a[11] == 0xff)
		return 1;
	return memcmp(a + 10, zero, 5) == 0 && (a[15] == 0 || a[15] == 1);
}

static __rte_always_inline int
kg_classify_ipv6(const struct kg_fib *f, unsigned int in, const uint8_t *ip,
		 uint32_t avail, struct kg_verdict *v)
{
	uint32_t plen, nh, hash;
	uint8_t next;

	if (avail < 40)
		return kg_drop(v, KG_DROP_RUNT);
	if ((ip[0] >> 4) != 6)
		return kg_drop(v, KG_DROP_BAD_HEADER);
	plen = kg_be16(ip + 4);
	if (plen + 40 > avail)
		return kg_drop(v, KG_DROP_RUNT);
	next = ip[6];
	if (ip[24] == 0xff)
		return kg_punt(v, KG_PUNT_IP_MULTICAST);
	if (ip[8] == 0xff || kg_v6_special(ip + 8) || kg_v6_special(ip + 24))
		return kg_punt(v, KG_PUNT_SPECIAL);
	if (next == 58 && plen >= 1 && ip[40] >= 130 && ip[40] <= 143)
		return kg_punt(v, KG_PUNT_ICMPV6);     /* MLD, ND, RS/RA, redirect */
	if (__atomic_load_n(&f->v6_writing, __ATOMIC_ACQUIRE))
		return kg_punt(v, next == 0 ? KG_PUNT_OPTIONS : KG_PUNT_NOT_FAST);
	if (rte_lpm6_lookup(f->lpm6, ip + 24, &nh) != 0) {
		nh = f->default6;
		if (nh == KG_NH_NONE)
			return kg_punt(v, next == 0 ? KG_PUNT_OPTIONS : KG_PUNT_NO_ROUTE);
	}
	/* to a local address: local whatever its options (policed as such) */
	if (nh < KG_NH_FIRST_ADJ && (nh == KG_PUNT_LOCAL || next != 0))
		return kg_punt(v, (int)nh);
	if (next == 0)
		return kg_punt(v, KG_PUNT_OPTIONS);    /* hop-by-hop, not to us */
	if (!f->fwd6[in])
		return kg_punt(v, KG_PUNT_FWD_OFF);
	if (ip[7] <= 1)
		return kg_punt(v, KG_PUNT_TTL);
	hash = !(nh & KG_NH_GROUP) ? 0 :
	       kg_flow_hash(kg_be32(ip + 20) ^ kg_be32(ip + 16), kg_be32(ip + 36) ^ kg_be32(ip + 32),
			    ((uint32_t)next << 24) ^ kg_l4_ports(ip + 40, ip + 40 + plen, next, 0));
	return kg_nexthop(f, nh, hash, plen + 40, 1, v);
}

/* The IPv4 addresses the classifier will look up in a frame (destination,
 * source), for a lookup of a whole burst at once (kg_lookup4_burst); zeros
 * for a frame that is not IPv4 or too short (its verdict does not use them). */
static inline void
kg_pre4_addrs(const uint8_t *frame, uint32_t len, uint32_t *ips)
{
	if (len >= 14 + 20 && frame[12] == 0x08 && frame[13] == 0x00) {
		ips[0] = kg_be32(frame + 14 + 16);
		ips[1] = kg_be32(frame + 14 + 12);
	} else {
		ips[0] = ips[1] = 0;
	}
}

/* The verdict for one frame received on port index `in`. pre: the next
 * hops of its IPv4 destination and source looked up beforehand (the rx
 * stage looks up a burst's in one rte_fib call, as l3fwd does), or NULL. */
static __rte_always_inline int
kg_classify_l3(const struct kg_fib *f, unsigned int in, const uint8_t *frame,
	       uint32_t len, const uint32_t *pre, struct kg_verdict *v)
{
	uint64_t mac;
	uint32_t type;

	v->moved = 0;
	v->heard = 0;
	if (unlikely(len < 14))
		return kg_drop(v, KG_DROP_RUNT);
	if (frame[0] & 1)
		return kg_punt(v, KG_PUNT_L2_MULTICAST);
	mac = kg_load64(&f->port_mac[in]);
	if (kg_mac48(frame) != mac)
		return kg_punt(v, KG_PUNT_NOT_OURS);
	type = kg_be16(frame + 12);
	if (likely(type == 0x0800))
		return kg_classify_ipv4(f, in, frame + 6, frame + 14, len - 14, pre, v);
	if (type == 0x86dd)
		return kg_classify_ipv6(f, in, frame + 14, len - 14, v);
	if (type == 0x8100 || type == 0x88a8)
		return kg_punt(v, KG_PUNT_VLAN);
	return kg_punt(v, KG_PUNT_NOT_IP);
}

static __rte_always_inline int
kg_classify_frame_pre(const struct kg_fib *f, unsigned int in, const uint8_t *frame,
		      uint32_t len, const uint32_t *pre, struct kg_verdict *v)
{
	int r = kg_classify_l3(f, in, frame, len, pre, v);

	/* out of the interface it came in on: the kernel also sends a
	 * redirect, so it is the kernel's to forward */
	if (r == KG_VERDICT_FORWARD && v->egress == in)
		return kg_punt(v, KG_PUNT_NOT_FAST);
	return r;
}

static inline int
kg_classify_frame(const struct kg_fib *f, unsigned int in, const uint8_t *frame,
		  uint32_t len, struct kg_verdict *v)
{
	return kg_classify_frame_pre(f, in, frame, len, NULL, v);
}

/* Forwarding rewrite, as the Linux kernel does it: destination MAC of the
 * next hop, source MAC of the egress port, TTL/hop limit - 1 with the IPv4
 * checksum updated incrementally exactly as ip_decrease_ttl() does, and
 * Ethernet padding after the IP packet removed. Returns the new length. */
static __rte_always_inline uint32_t
kg_rewrite_frame(const struct kg_fib *f, uint8_t *frame, uint32_t len,
		 const struct kg_verdict *v)
{
	uint64_t src = kg_load64(&f->port_mac[v->egress % KG_MAX_PORTS]);
	uint8_t *ip = frame + 14;
	uint32_t newlen;

	kg_put_mac48(frame, v->adj);
	kg_put_mac48(frame + 6, src);
	if (frame[12] == 0x08) {
		/* ip_decrease_ttl()'s arithmetic done in network byte order:
		 * the same bytes as Linux on either kind of CPU */
		uint32_t check = kg_be16(ip + 10) + 0x0100;

		ip[8]--;
		check += check >= 0xffff;
		ip[10] = (uint8_t)(check >> 8);
		ip[11] = (uint8_t)check;
		newlen = 14 + kg_be16(ip + 2);
	} else {
		ip[7]--;
		newlen = 14 + 40 + kg_be16(ip + 4);
	}
	return newlen < len ? newlen : len;
}

#endif /* KG_CLASSIFY_H */
