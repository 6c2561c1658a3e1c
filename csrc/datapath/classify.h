/* SPDX-License-Identifier: BSD-3-Clause
 *
 * classify.h - the rx lcore's decision on one frame (forward, punt to the
 * kernel, drop) and the forwarding rewrite. Pure functions over frame bytes
 * and the tables (tables.h): the rx stage, the unit tests (kg_classify)
 * and the fuzzer drive the same code.
 *
 * Headers are read through DPDK's structs (rte_ether_hdr, rte_ipv4_hdr,
 * rte_ipv6_hdr, rte_udp_hdr...) and named constants. A frame starts 2-byte
 * aligned, as an mbuf's data does (rte_ether_hdr is __rte_aligned(2)); the
 * headers after it are no more aligned than that (the IPv4 header's 32-bit
 * fields are not 4-byte aligned), and DPDK declares their structs packed
 * (alignment 1): the compiler reads them at any address, with plain loads
 * on x86. On the fast path, the Ethernet type and the IPv4 fragment bits
 * are tested in network byte order against constants swapped at build time
 * (RTE_BE16()); other fields are converted with kg_ntoh16()/kg_ntoh32()
 * (below): the same verdicts on CPUs of either byte order.
 */
#ifndef KG_CLASSIFY_H
#define KG_CLASSIFY_H

#include <stddef.h>
#include <netinet/in.h>

#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_udp.h>
#include <rte_tcp.h>
#include <rte_sctp.h>
#include <rte_icmp.h>

#include "tables.h"

/* What DPDK has no name for. */
#define KG_IPV6_VERSION 6           /* IPVERSION's IPv6 counterpart */
#define KG_IPV6_VERSION_SHIFT 28    /* the version in rte_ipv6_hdr.vtc_flow */
/* ICMPv6 types the kernel keeps its links with (RFC 4443's registry):
 * MLD query, report, done 130-132; ND RS, RA, NS, NA, redirect 133-137;
 * (138-142: router renumbering, node information, inverse ND); MLDv2
 * report 143 */
#define KG_ICMP6_MLD_QUERY 130
#define KG_ICMP6_ND_REDIRECT 137
#define KG_ICMP6_MLD2_REPORT 143
/* The source and destination ports that open TCP, UDP and SCTP headers
 * alike: the flow hash's, and all that policing reads of them. */
#define KG_L4_PORTS_LEN offsetof(struct rte_udp_hdr, dgram_len)

_Static_assert(sizeof(struct rte_ether_hdr) == RTE_ETHER_HDR_LEN, "Ethernet header");
_Static_assert(sizeof(struct rte_ipv4_hdr) == 20 && sizeof(struct rte_ipv6_hdr) == 40,
	       "IP headers");
_Static_assert(offsetof(struct rte_udp_hdr, src_port) == 0 &&
	       offsetof(struct rte_tcp_hdr, src_port) == 0 &&
	       offsetof(struct rte_sctp_hdr, src_port) == 0 &&
	       offsetof(struct rte_udp_hdr, dst_port) == 2 &&
	       offsetof(struct rte_tcp_hdr, dst_port) == 2 &&
	       offsetof(struct rte_sctp_hdr, dst_port) == 2 && KG_L4_PORTS_LEN == 4,
	       "ports first in TCP, UDP and SCTP");

/* Network to host byte order, as rte_be_to_cpu_16/32, in a form the
 * compiler sees through: DPDK's x86 rte_bswap16/32 of a value not known at
 * build time are `asm volatile` (xchg, bswap), which the compiler may
 * neither move nor merge, and whose 16-bit form ties the value to one of
 * four registers. */
static __rte_always_inline uint16_t
kg_ntoh16(rte_be16_t x)
{
#if RTE_BYTE_ORDER == RTE_LITTLE_ENDIAN
	return __builtin_bswap16(x);
#else
	return x;
#endif
}

static __rte_always_inline uint32_t
kg_ntoh32(rte_be32_t x)
{
#if RTE_BYTE_ORDER == RTE_LITTLE_ENDIAN
	return __builtin_bswap32(x);
#else
	return x;
#endif
}

static __rte_always_inline int
kg_punt(struct kg_verdict *v, int reason)
{
	v->action = KG_VERDICT_PUNT;
	v->reason = reason;
	return KG_VERDICT_PUNT;
}

static __rte_always_inline int
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

static __rte_always_inline uint32_t
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

/* L4 ports of a first fragment or unfragmented TCP/UDP/SCTP packet, else 0:
 * source port << 16 | destination port. */
static __rte_always_inline uint32_t
kg_l4_ports(const uint8_t *l4, const uint8_t *end, uint8_t proto, int frag)
{
	rte_be32_t ports;

	if (frag || (proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != IPPROTO_SCTP) ||
	    l4 + KG_L4_PORTS_LEN > end)
		return 0;
	/* both ports in one load (two 16-bit ones are not merged) */
	memcpy(&ports, l4, KG_L4_PORTS_LEN);
	return kg_ntoh32(ports);
}

/* 0/8 ("this network") and 127/8 (loopback): IPv4 networks (host order)
 * never seen on a wire */
static __rte_always_inline int
kg_ipv4_martian_net(uint32_t a)
{
	uint32_t net = a >> IN_CLASSA_NSHIFT;

	return net == 0 || net == IN_LOOPBACKNET;
}

/* The sum of an IPv4 header's first five 32-bit words, loaded as native
 * words (memcpy: not 4-byte aligned). Folded, it is the ones' complement
 * sum of the header's 16-bit words, in either byte order. */
static __rte_always_inline uint64_t
kg_ipv4_sum20(const uint8_t *hb)
{
	uint32_t w0, w1, w2, w3, w4;

	memcpy(&w0, hb, 4);
	memcpy(&w1, hb + 4, 4);
	memcpy(&w2, hb + 8, 4);
	memcpy(&w3, hb + 12, 4);
	memcpy(&w4, hb + 16, 4);
	return (uint64_t)w0 + w1 + w2 + w3 + w4;
}

static __rte_always_inline int
kg_classify_ipv4(const struct kg_fib *f, unsigned int in, const struct rte_ether_hdr *eth,
		 uint32_t avail, const uint64_t *pre, struct kg_verdict *v)
{
	const struct rte_ipv4_hdr *ip = (const struct rte_ipv4_hdr *)(eth + 1);
	uint32_t ihl, tot, sum, i, src, dst, nh, frag;

	if (avail < sizeof(*ip))
		return kg_drop(v, KG_DROP_RUNT);
	if (ip->version != IPVERSION || (ihl = rte_ipv4_hdr_len(ip)) < sizeof(*ip))
		return kg_drop(v, KG_DROP_BAD_HEADER);
	if (avail < ihl)
		return kg_drop(v, KG_DROP_RUNT);
	tot = kg_ntoh16(ip->total_length);
	if (tot < ihl)
		return kg_drop(v, KG_DROP_BAD_HEADER);
	if (tot > avail)
		return kg_drop(v, KG_DROP_RUNT);
	/* the header checksum, as ip_rcv verifies it: a ones' complement sum
	 * of native 32-bit words folds to 0xffff in either byte order (the
	 * header as words, whatever its fields; memcpy: not 4-byte aligned) */
	{
		const uint8_t *hb = (const uint8_t *)ip;
		uint64_t s = 0;
		uint32_t w;

		if (likely(ihl == sizeof(*ip))) {
			s = kg_ipv4_sum20(hb);  /* the usual header, unrolled */
		} else {
			for (i = 0; i < ihl; i += 4) {
				memcpy(&w, hb + i, 4);
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

	src = kg_ntoh32(ip->src_addr);
	dst = kg_ntoh32(ip->dst_addr);
	/* multicast and limited broadcast destinations are the kernel's */
	if (IN_MULTICAST(dst) || dst == INADDR_BROADCAST)
		return kg_punt(v, KG_PUNT_IP_MULTICAST);
	/* what the kernel calls martian: 0/8, 127/8, multicast or broadcast
	 * sources, 0/8 or 127/8 destinations */
	if (kg_ipv4_martian_net(src) || IN_MULTICAST(src) ||
	    src == INADDR_BROADCAST || kg_ipv4_martian_net(dst))
		return kg_punt(v, KG_PUNT_SPECIAL);
	nh = pre ? (uint32_t)pre[0] : kg_lookup4(f, dst);
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
	i = pre ? (uint32_t)pre[1] : kg_lookup4(f, src);
	if (i != KG_PUNT_NO_ROUTE) {
		if (i == KG_PUNT_LOCAL)
			return kg_punt(v, KG_PUNT_SPECIAL);
		if (i >= KG_NH_FIRST_ADJ && !(i & KG_NH_GROUP)) {
			uint64_t a = kg_load64(&f->adj[i % KG_ADJ_MAX]);

			if ((a & KG_ADJ_VALID) && ((a >> KG_ADJ_PORT_SHIFT) & 0xff) == in) {
				if ((a & KG_MAC48_MASK) != kg_mac48(eth->src_addr.addr_bytes))
					v->moved = i % KG_ADJ_MAX;
				else
					v->heard = i % KG_ADJ_MAX;
			}
		}
	}
	if (ihl != sizeof(*ip))
		return kg_punt(v, KG_PUNT_OPTIONS);
	if (ip->time_to_live <= 1)
		return kg_punt(v, KG_PUNT_TTL);
	if (!(nh & KG_NH_GROUP))
		return kg_nexthop(f, nh, 0, tot, 0, v);
	/* ECMP: the flow hash picks the path. Any fragment (MF set or an
	 * offset) hashes without ports, so that all the fragments of a
	 * datagram take one path, as in Linux */
	frag = (ip->fragment_offset & RTE_BE16(KG_FRAG_MASK)) != 0;
	return kg_nexthop(f, nh,
			  kg_flow_hash(src, dst, ((uint32_t)ip->next_proto_id << 24) ^
				       kg_l4_ports((const uint8_t *)(ip + 1),
						   (const uint8_t *)ip + tot,
						   ip->next_proto_id, frag)),
			  tot, 0, v);
}

static __rte_always_inline int
kg_v6_multicast(const uint8_t *a)
{
	return a[0] == 0xff;                /* ff00::/8 */
}

static __rte_always_inline int
kg_v6_linklocal(const uint8_t *a)
{
	return a[0] == 0xfe && (a[1] & 0xc0) == 0x80;   /* fe80::/10 */
}

/* always inlined, as gcc did on its own before the header structs: else
 * stage_rx calls it out of line on every IPv6 frame */
static __rte_always_inline int
kg_v6_special(const uint8_t *a)
{
	static const uint8_t zero[16];

	if (kg_v6_linklocal(a))
		return 1;
	if (memcmp(a, zero, 10) != 0)
		return 0;
	/* v4-mapped ::ffff:0:0/96; unspecified ::, loopback ::1 */
	if (a[10] == 0xff && a[11] == 0xff)
		return 1;
	return memcmp(a + 10, zero, 5) == 0 && (a[15] == 0 || a[15] == 1);
}

/* The low 64 bits of an IPv6 address (host part) folded into one word of
 * the flow hash. */
static __rte_always_inline uint32_t
kg_v6_hash_word(const uint8_t *a)
{
	return kg_be32(a + 12) ^ kg_be32(a + 8);
}

static __rte_always_inline int
kg_classify_ipv6(const struct kg_fib *f, unsigned int in, const struct rte_ether_hdr *eth,
		 uint32_t avail, struct kg_verdict *v)
{
	const struct rte_ipv6_hdr *ip = (const struct rte_ipv6_hdr *)(eth + 1);
	const struct rte_icmp_hdr *icmp;
	uint32_t plen, nh, hash;
	uint8_t next;

	if (avail < sizeof(*ip))
		return kg_drop(v, KG_DROP_RUNT);
	if ((kg_ntoh32(ip->vtc_flow) >> KG_IPV6_VERSION_SHIFT) != KG_IPV6_VERSION)
		return kg_drop(v, KG_DROP_BAD_HEADER);
	plen = kg_ntoh16(ip->payload_len);
	if (plen + sizeof(*ip) > avail)
		return kg_drop(v, KG_DROP_RUNT);
	next = ip->proto;
	if (kg_v6_multicast(ip->dst_addr))
		return kg_punt(v, KG_PUNT_IP_MULTICAST);
	if (kg_v6_multicast(ip->src_addr) || kg_v6_special(ip->src_addr) ||
	    kg_v6_special(ip->dst_addr))
		return kg_punt(v, KG_PUNT_SPECIAL);
	/* MLD, ND, RS/RA, redirect (rte_icmp_hdr: ICMPv6 opens like ICMP) */
	icmp = (const struct rte_icmp_hdr *)(ip + 1);
	if (next == IPPROTO_ICMPV6 && plen >= sizeof(icmp->icmp_type) &&
	    icmp->icmp_type >= KG_ICMP6_MLD_QUERY && icmp->icmp_type <= KG_ICMP6_MLD2_REPORT)
		return kg_punt(v, KG_PUNT_ICMPV6);
	if (__atomic_load_n(&f->v6_writing, __ATOMIC_ACQUIRE))
		return kg_punt(v, next == IPPROTO_HOPOPTS ? KG_PUNT_OPTIONS : KG_PUNT_NOT_FAST);
	if (rte_lpm6_lookup(f->lpm6, ip->dst_addr, &nh) != 0) {
		nh = f->default6;
		if (nh == KG_NH_NONE)
			return kg_punt(v, next == IPPROTO_HOPOPTS ? KG_PUNT_OPTIONS : KG_PUNT_NO_ROUTE);
	}
	/* to a local address: local whatever its options (policed as such) */
	if (nh < KG_NH_FIRST_ADJ && (nh == KG_PUNT_LOCAL || next != IPPROTO_HOPOPTS))
		return kg_punt(v, (int)nh);
	if (next == IPPROTO_HOPOPTS)
		return kg_punt(v, KG_PUNT_OPTIONS);    /* hop-by-hop, not to us */
	if (!f->fwd6[in])
		return kg_punt(v, KG_PUNT_FWD_OFF);
	if (ip->hop_limits <= 1)
		return kg_punt(v, KG_PUNT_TTL);
	hash = !(nh & KG_NH_GROUP) ? 0 :
	       kg_flow_hash(kg_v6_hash_word(ip->src_addr), kg_v6_hash_word(ip->dst_addr),
			    ((uint32_t)next << 24) ^
			    kg_l4_ports((const uint8_t *)(ip + 1),
					(const uint8_t *)(ip + 1) + plen, next, 0));
	return kg_nexthop(f, nh, hash, plen + sizeof(*ip), 1, v);
}

/* Whether a frame is one whose IPv4 addresses the classifier looks up:
 * long enough for the Ethernet and IPv4 headers, of type IPv4. */
static __rte_always_inline bool
kg_pre4_frame(const uint8_t *frame, uint32_t len)
{
	const struct rte_ether_hdr *eth = (const struct rte_ether_hdr *)frame;

	return len >= sizeof(*eth) + sizeof(struct rte_ipv4_hdr) &&
	       eth->ether_type == RTE_BE16(RTE_ETHER_TYPE_IPV4);
}

/* The IPv4 addresses the classifier will look up in a frame (destination,
 * source), for a lookup of a whole burst at once (kg_lookup4_burst); zeros
 * for a frame that is not IPv4 or too short (its verdict does not use them).
 * v4: kg_pre4_frame's answer. */
static __rte_always_inline void
kg_pre4_addrs_v4(const uint8_t *frame, bool v4, uint32_t *ips)
{
	if (v4) {
		const struct rte_ipv4_hdr *ip =
			(const struct rte_ipv4_hdr *)(frame + sizeof(struct rte_ether_hdr));

		ips[0] = kg_ntoh32(ip->dst_addr);
		ips[1] = kg_ntoh32(ip->src_addr);
	} else {
		ips[0] = ips[1] = 0;
	}
}

static inline void
kg_pre4_addrs(const uint8_t *frame, uint32_t len, uint32_t *ips)
{
	kg_pre4_addrs_v4(frame, kg_pre4_frame(frame, len), ips);
}

/* The verdict for one frame received on port index `in`. pre: the next
 * hops of its IPv4 destination and source looked up beforehand, as
 * rte_fib_lookup_bulk gives them (the rx stage looks up a burst's in one
 * call, as l3fwd does), or NULL. */
static __rte_always_inline int
kg_classify_l3(const struct kg_fib *f, unsigned int in, const uint8_t *frame,
	       uint32_t len, const uint64_t *pre, struct kg_verdict *v)
{
	const struct rte_ether_hdr *eth = (const struct rte_ether_hdr *)frame;
	uint64_t mac;
	rte_be16_t type;

	v->moved = 0;
	v->heard = 0;
	if (unlikely(len < sizeof(*eth)))
		return kg_drop(v, KG_DROP_RUNT);
	if (rte_is_multicast_ether_addr(&eth->dst_addr))
		return kg_punt(v, KG_PUNT_L2_MULTICAST);
	mac = kg_load64(&f->port_mac[in]);
	if (kg_mac48(eth->dst_addr.addr_bytes) != mac)
		return kg_punt(v, KG_PUNT_NOT_OURS);
	/* compared in network byte order, to constants swapped at build time */
	type = eth->ether_type;
	if (likely(type == RTE_BE16(RTE_ETHER_TYPE_IPV4)))
		return kg_classify_ipv4(f, in, eth, len - sizeof(*eth), pre, v);
	if (type == RTE_BE16(RTE_ETHER_TYPE_IPV6))
		return kg_classify_ipv6(f, in, eth, len - sizeof(*eth), v);
	if (type == RTE_BE16(RTE_ETHER_TYPE_VLAN) || type == RTE_BE16(RTE_ETHER_TYPE_QINQ))
		return kg_punt(v, KG_PUNT_VLAN);
	return kg_punt(v, KG_PUNT_NOT_IP);
}

static __rte_always_inline int
kg_classify_frame_pre(const struct kg_fib *f, unsigned int in, const uint8_t *frame,
		      uint32_t len, const uint64_t *pre, struct kg_verdict *v)
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

/* IPv4 first octets the fast lane leaves to the classifier, as a
 * destination or a source: 0/8, 127/8, multicast 224/4 and 255 (the limited
 * broadcast among them). */
static const uint8_t kg_v4_special_octet[256] = {
	[0] = 1, [IN_LOOPBACKNET] = 1,
	[224 ... 239] = 1, [255] = 1,
};

/* The fast lane: whether kg_classify_frame_pre forwards this frame by the
 * plain rule (IPv4 without options, unicast, nothing martian, through a
 * route with one next hop), checked in as few instructions as the checks
 * take; the rx stage runs it in a small loop of its own and gives what it
 * refuses to the classifier, which then says why. It comes in two halves,
 * which the rx stage runs apart (the first on every frame as it reads the
 * burst's addresses, the second once for each next hop a burst meets):
 *
 * kg_fast4_hdr, the frame's headers alone:
 * - the Ethernet destination is the port's MAC (mac: kg_mac48, unicast),
 *   the type IPv4, version 4 and no options: two words of the header;
 * - the length and TTL, as kg_classify_ipv4 reads them;
 * - the header checksum: the sum of the header's 16-bit words is 0 modulo
 *   0xffff (the ones' complement sum is 0xffff; in either byte order, and
 *   five native 32-bit words give the same sum modulo 0xffff);
 * - no destination or source (dst, src: host order) of kg_v4_special_octet
 *   (a superset of what the classifier punts as special or multicast).
 * Returns the IP total length; 0: not for the fast lane.
 *
 * kg_fast4_adj, the destination's next hop nh as rte_fib gave it
 * (kg_pre4_addrs), the default route's in its place where it found no
 * route: a single adjacency, valid, out of another port than in. Returns
 * the adjacency word; 0: not for the fast lane.
 *
 * And then (kg_fast4): the egress port's MTU holds the packet, and the
 * source's next hop sn is not one of our addresses. Forwarding must be on
 * on the port (the caller checks that once a burst). kg_classify_fast
 * (tests) and the fuzzer hold kg_fast4 to the classifier. */
static __rte_always_inline uint32_t
kg_fast4_hdr_v4(uint64_t mac, const uint8_t *frame, bool v4, uint32_t len, uint32_t dst,
		uint32_t src)
{
	const struct rte_ether_hdr *eth = (const struct rte_ether_hdr *)frame;
	const struct rte_ipv4_hdr *ip = (const struct rte_ipv4_hdr *)(eth + 1);
	uint64_t w;
	uint32_t tot;

	/* the length and type, as kg_pre4_addrs tests them (v4: the rx stage
	 * tests them once for both) */
	if (!v4)
		return 0;
	memcpy(&w, frame, 8);
	w ^= rte_cpu_to_le_64(mac);
#if RTE_BYTE_ORDER == RTE_LITTLE_ENDIAN
	w <<= 16;               /* the frame's first 6 bytes alone, without a mask */
#else
	w &= rte_cpu_to_le_64(KG_MAC48_MASK);
#endif
	if (w != 0 ||
	    ip->version_ihl != (IPVERSION << 4 | sizeof(*ip) / RTE_IPV4_IHL_MULTIPLIER))
		return 0;
	tot = kg_ntoh16(ip->total_length);
	/* sizeof(*ip) <= tot <= len - sizeof(*eth), in one comparison */
	if (tot - sizeof(*ip) > len - sizeof(*eth) - sizeof(*ip) || ip->time_to_live <= 1)
		return 0;
	if (kg_ipv4_sum20((const uint8_t *)ip) % 0xffff != 0 ||
	    (kg_v4_special_octet[dst >> 24] | kg_v4_special_octet[src >> 24]) != 0)
		return 0;
	return tot;
}

static __rte_always_inline uint32_t
kg_fast4_hdr(uint64_t mac, const uint8_t *frame, uint32_t len, uint32_t dst, uint32_t src)
{
	return kg_fast4_hdr_v4(mac, frame, kg_pre4_frame(frame, len), len, dst, src);
}

static __rte_always_inline uint64_t
kg_fast4_adj(const struct kg_fib *f, unsigned int in, uint32_t nh)
{
	uint64_t a;
	uint32_t egress;

	/* a single adjacency: KG_NH_FIRST_ADJ <= nh, no group flag (nor
	 * KG_NH_NONE, which has it) */
	if (nh - KG_NH_FIRST_ADJ >= KG_NH_GROUP - KG_NH_FIRST_ADJ)
		return 0;
	a = kg_load64(&f->adj[nh % KG_ADJ_MAX]);
	egress = (uint32_t)(a >> KG_ADJ_PORT_SHIFT) & 0xff;
	if (!(a & KG_ADJ_VALID) || egress >= KG_MAX_PORTS || egress == in)
		return 0;
	return a;
}

/* Both halves and the rest, on one frame: returns the adjacency word,
 * *nh_out its index; 0: not for the fast lane. */
static __rte_always_inline uint64_t
kg_fast4(const struct kg_fib *f, unsigned int in, uint64_t mac, const uint8_t *frame,
	 uint32_t len, uint32_t dst, uint32_t src, uint32_t nh, uint32_t sn, uint32_t *nh_out)
{
	uint32_t tot = kg_fast4_hdr(mac, frame, len, dst, src);
	uint64_t a;

	if (tot == 0 || sn == KG_PUNT_LOCAL)
		return 0;
	if (nh == KG_PUNT_NO_ROUTE)
		nh = __atomic_load_n(&f->default4, __ATOMIC_RELAXED);
	a = kg_fast4_adj(f, in, nh);
	if (a == 0 || tot > __atomic_load_n(&f->port_mtu[(a >> KG_ADJ_PORT_SHIFT) & 0xff],
					     __ATOMIC_RELAXED))
		return 0;
	*nh_out = nh % KG_ADJ_MAX;
	return a;
}

/* The source's liveness, as kg_classify_ipv4 reads it from sn (the
 * source's next hop): the adjacency that heard the frame's source MAC
 * (*heard), or that has another MAC (*moved). */
static __rte_always_inline void
kg_src_liveness(const struct kg_fib *f, unsigned int in, const uint8_t *frame, uint32_t sn,
		uint32_t *moved, uint32_t *heard)
{
	uint64_t sa;

	*moved = 0;
	*heard = 0;
	if (sn < KG_NH_FIRST_ADJ || (sn & KG_NH_GROUP))
		return;
	sa = kg_load64(&f->adj[sn % KG_ADJ_MAX]);
	if ((sa & KG_ADJ_VALID) && ((sa >> KG_ADJ_PORT_SHIFT) & 0xff) == in) {
		if ((sa & KG_MAC48_MASK) != kg_mac48(frame + RTE_ETHER_ADDR_LEN))
			*moved = sn % KG_ADJ_MAX;
		else
			*heard = sn % KG_ADJ_MAX;
	}
}

/* TTL - 1, the checksum updated incrementally exactly as Linux's
 * ip_decrease_ttl() does. */
_Static_assert(offsetof(struct rte_ipv4_hdr, hdr_checksum) ==
	       offsetof(struct rte_ipv4_hdr, time_to_live) + 2, "TTL, protocol, checksum");

static __rte_always_inline void
kg_ipv4_ttl_dec(struct rte_ipv4_hdr *ip)
{
	/* The TTL, the protocol and the checksum are one 32-bit word, read
	 * and written once. A TTL of 0 becomes 255, as the byte's decrement
	 * would make it. */
	uint8_t *p = (uint8_t *)ip + offsetof(struct rte_ipv4_hdr, time_to_live);
	uint32_t w, check;

	memcpy(&w, p, 4);
#if RTE_BYTE_ORDER == RTE_LITTLE_ENDIAN
	/* ip_decrease_ttl() as Linux runs it on these CPUs: the checksum,
	 * read as a native u16 (w's high half), gets htons(0x0100) == 1 and
	 * the fold of 0xffff. Adding 0xffff to w takes 1 from the TTL (no
	 * borrow from the protocol while the TTL is not 0) and carries 1 into
	 * the checksum; a checksum of 0xfffe or 0xffff gets the fold's 1 more
	 * (0xffff's carry leaves w). */
	if (likely(w & 0xff)) {
		w += 0xffff + ((uint32_t)(w >= 0xfffe0000u) << 16);
		memcpy(p, &w, 4);
		return;
	}
#endif
	/* the same arithmetic in network byte order: Linux's bytes on either
	 * kind of CPU */
	w = kg_ntoh32(w);
	check = (w & 0xffff) + 0x0100;
	check += check >= 0xffff;
	w = ((w - (1u << 24)) & 0xffff0000u) | (check & 0xffff);
	w = rte_cpu_to_be_32(w);
	memcpy(p, &w, 4);
}

/* Forwarding rewrite of an IPv4 frame, as the Linux kernel does it:
 * destination MAC of the next hop (adjacency word a), source MAC of the
 * egress port, TTL - 1 with the checksum updated incrementally exactly as
 * ip_decrease_ttl() does, and Ethernet padding after the IP packet left
 * out of the length returned. */
static __rte_always_inline uint32_t
kg_rewrite4(const struct kg_fib *f, uint8_t *frame, uint32_t len, uint64_t a,
	    unsigned int egress)
{
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(frame + sizeof(struct rte_ether_hdr));
	uint32_t newlen;

	kg_put_macs(frame, a, kg_load64(&f->port_mac[egress % KG_MAX_PORTS]));
	kg_ipv4_ttl_dec(ip);
	newlen = sizeof(struct rte_ether_hdr) + kg_ntoh16(ip->total_length);
	return newlen < len ? newlen : len;
}

/* The forwarding rewrite of a frame the classifier forwards (v): IPv4 as
 * kg_rewrite4, IPv6 likewise with the hop limit. Returns the new length. */
static __rte_always_inline uint32_t
kg_rewrite_frame(const struct kg_fib *f, uint8_t *frame, uint32_t len,
		 const struct kg_verdict *v)
{
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)frame;
	struct rte_ipv6_hdr *ip = (struct rte_ipv6_hdr *)(eth + 1);
	uint32_t newlen;

	if (eth->ether_type == RTE_BE16(RTE_ETHER_TYPE_IPV4))
		return kg_rewrite4(f, frame, len, v->adj, v->egress);
	kg_put_macs(eth->dst_addr.addr_bytes, v->adj,
		    kg_load64(&f->port_mac[v->egress % KG_MAX_PORTS]));
	ip->hop_limits--;
	newlen = sizeof(*eth) + sizeof(*ip) + kg_ntoh16(ip->payload_len);
	return newlen < len ? newlen : len;
}

#endif /* KG_CLASSIFY_H */
