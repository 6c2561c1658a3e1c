/* SPDX-License-Identifier: BSD-3-Clause
 *
 * police.h - control-plane policing on the rx lcore: the class of a punted
 * frame (what it carries), and the token buckets that meter each class per
 * port and rx queue, so that a flood at the gateway cannot starve the
 * kernel of what keeps its links and routing up.
 */
#ifndef KG_POLICE_H
#define KG_POLICE_H

#include <stdbool.h>
#include <netinet/ip6.h>

#include "datapath/classify.h"

/* A token bucket in TSC cycles: a frame costs `cost` cycles of credit, the
 * credit grows with time up to `depth`. Its rx lcore: w and r. */
struct kg_bucket {
	uint64_t credit;
	uint64_t last;
	uint64_t cost;   /* 0: unlimited */
	uint64_t depth;
};

/* May one more frame of this class go to the kernel now? */
static inline bool
kg_police_ok(struct kg_bucket *b, uint64_t now)
{
	if (b->cost == 0)
		return true;
	b->credit += now - b->last;
	b->last = now;
	if (b->credit > b->depth)
		b->credit = b->depth;
	if (b->credit < b->cost)
		return false;
	b->credit -= b->cost;
	return true;
}

/* Policing classes that go to the kernel through the priority fifo: a
 * flood in any other class cannot fill it. */
static inline int
kg_police_priority(int cls)
{
	return cls == KG_POLICE_ARP || cls == KG_POLICE_ND || cls == KG_POLICE_ICMP ||
	       cls == KG_POLICE_ROUTING;
}

/* What DPDK and netinet/in.h have no name for: the IP protocols and
 * well-known ports of routing and redundancy protocols, and DNS's port. */
#define KG_IPPROTO_OSPF 89
#define KG_IPPROTO_VRRP 112
#define KG_PORT_DNS 53            /* UDP and TCP */
#define KG_PORT_BGP 179           /* TCP, either port */
#define KG_PORT_RIP 520           /* UDP destination ports from here on */
#define KG_PORT_RIPNG 521
#define KG_PORT_LDP 646           /* LDP hellos */
#define KG_PORT_BFD 3784          /* single hop (RFC 5881) */
#define KG_PORT_BFD_ECHO 3785
#define KG_PORT_BFD_MULTIHOP 4784 /* RFC 5883 */
/* IPv6 extension headers (RFC 8200) count their length in 8 octets, past
 * a first 8 that every one has; the fragment header is only those. DPDK
 * has a struct for the fragment header only: the others are read as
 * netinet/ip6.h's struct ip6_ext (next header, length). */
#define KG_IPV6_EXT_UNIT 8
/* kg_upper_layer's protocol for a frame too short for its IP header: none
 * of IP's 0-255 */
#define KG_PROTO_CUT 256

_Static_assert(sizeof(struct rte_ipv6_fragment_ext) == KG_IPV6_EXT_UNIT, "fragment header");

/* The upper layer of an IP frame, for policing: protocol, offset of its
 * header (0 when not reachable: a later fragment, a cut frame), and for
 * IPv6 the extension headers (hop-by-hop, destination options, routing,
 * fragment) skipped, at most KG_EXT_MAX of them. */
#define KG_EXT_MAX 4
static inline uint32_t
kg_upper_layer(const uint8_t *frame, uint32_t len, uint32_t type, uint32_t *off)
{
	const struct rte_ether_hdr *eth = (const struct rte_ether_hdr *)frame;
	uint32_t next, o, k;

	*off = 0;
	if (type == RTE_ETHER_TYPE_IPV4) {
		const struct rte_ipv4_hdr *ip = (const struct rte_ipv4_hdr *)(eth + 1);

		if (len < sizeof(*eth) + sizeof(*ip))
			return KG_PROTO_CUT;
		o = sizeof(*eth) + rte_ipv4_hdr_len(ip);
		if ((rte_be_to_cpu_16(ip->fragment_offset) & RTE_IPV4_HDR_OFFSET_MASK) == 0 &&
		    o <= len)
			*off = o;
		return ip->next_proto_id;
	}
	if (len < sizeof(*eth) + sizeof(struct rte_ipv6_hdr))
		return KG_PROTO_CUT;
	next = ((const struct rte_ipv6_hdr *)(eth + 1))->proto;
	o = sizeof(*eth) + sizeof(struct rte_ipv6_hdr);
	for (k = 0; k < KG_EXT_MAX; k++) {
		if (next == IPPROTO_HOPOPTS || next == IPPROTO_DSTOPTS || next == IPPROTO_ROUTING) {
			const struct ip6_ext *ext;

			if (o + KG_IPV6_EXT_UNIT > len)
				return next;
			ext = (const struct ip6_ext *)(frame + o);
			next = ext->ip6e_nxt;
			o += ((uint32_t)ext->ip6e_len + 1) * KG_IPV6_EXT_UNIT;
		} else if (next == IPPROTO_FRAGMENT) {
			const struct rte_ipv6_fragment_ext *fh;

			if (o + sizeof(*fh) > len)
				return next;
			fh = (const struct rte_ipv6_fragment_ext *)(frame + o);
			if ((rte_be_to_cpu_16(fh->frag_data) & RTE_IPV6_EHDR_FO_MASK) != 0)
				return fh->next_header;    /* a later fragment: no header here */
			next = fh->next_header;
			o += sizeof(*fh);
		} else {
			break;
		}
	}
	if (o <= len)
		*off = o;
	return next;
}

/* Neighbour discovery (RS, RA, NS, NA, redirect) and MLD (queries, v1 and
 * v2 reports, done): ICMPv6 types the kernel needs to keep its links. */
static inline int
kg_is_nd(uint32_t proto, const uint8_t *l4, uint32_t avail)
{
	const struct rte_icmp_hdr *icmp = (const struct rte_icmp_hdr *)l4;

	if (proto != IPPROTO_ICMPV6 || avail < sizeof(icmp->icmp_type))
		return 0;
	return (icmp->icmp_type >= KG_ICMP6_MLD_QUERY && icmp->icmp_type <= KG_ICMP6_ND_REDIRECT) ||
	       icmp->icmp_type == KG_ICMP6_MLD2_REPORT;
}

/* Routing and redundancy protocols carried right over IP: OSPF, VRRP, PIM. */
static __rte_always_inline int
kg_is_routing_proto(uint32_t proto)
{
	return proto == KG_IPPROTO_OSPF || proto == KG_IPPROTO_VRRP || proto == IPPROTO_PIM;
}

/* Routing and redundancy protocols: OSPF, VRRP, PIM; BGP (TCP 179); BFD,
 * RIP, RIPng, LDP hellos (UDP). */
static inline int
kg_is_routing(uint32_t proto, const uint8_t *l4, uint32_t avail)
{
	const struct rte_tcp_hdr *tcp = (const struct rte_tcp_hdr *)l4;
	const struct rte_udp_hdr *udp = (const struct rte_udp_hdr *)l4;
	uint32_t dp;

	if (kg_is_routing_proto(proto))
		return 1;
	if ((proto != IPPROTO_TCP && proto != IPPROTO_UDP) || avail < KG_L4_PORTS_LEN)
		return 0;
	if (proto == IPPROTO_TCP)
		return rte_be_to_cpu_16(tcp->src_port) == KG_PORT_BGP ||
		       rte_be_to_cpu_16(tcp->dst_port) == KG_PORT_BGP;
	dp = rte_be_to_cpu_16(udp->dst_port);
	return dp == KG_PORT_BFD || dp == KG_PORT_BFD_ECHO || dp == KG_PORT_BFD_MULTIHOP ||
	       dp == KG_PORT_RIP || dp == KG_PORT_RIPNG || dp == KG_PORT_LDP;
}

/* A source no router speaks from: 0/8, 127/8, multicast, broadcast;
 * ::, ::1, v4-mapped, multicast (link-local is fine). The frame holds its
 * IP header (kg_upper_layer said so). */
static inline int
kg_martian_src(const uint8_t *frame, uint32_t type)
{
	const struct rte_ether_hdr *eth = (const struct rte_ether_hdr *)frame;

	const uint8_t *src6;

	if (type == RTE_ETHER_TYPE_IPV4) {
		uint32_t src = rte_be_to_cpu_32(((const struct rte_ipv4_hdr *)(eth + 1))->src_addr);

		/* 224/4 multicast, 240/4 reserved and broadcast alike */
		return kg_ipv4_martian_net(src) || IN_MULTICAST(src) || IN_BADCLASS(src);
	}
	src6 = ((const struct rte_ipv6_hdr *)(eth + 1))->src_addr;
	return kg_v6_multicast(src6) || (kg_v6_special(src6) && !kg_v6_linklocal(src6));
}

/* The policing class of a frame punted for `reason` (KG_POLICE_*). Only
 * punted frames get here, and only their headers are looked at again.
 * What keeps the links and the routing up (ARP, ND/MLD, routing protocols)
 * is recognised first, whatever the reason (multicast, link-local, IPv6
 * options): a flood of broadcast, martian or transit frames never shares
 * their buckets. Traffic to the gateway's own addresses is policed by what
 * it carries (icmp, dns, local), options or not. */
static inline int
kg_police_class(const uint8_t *frame, uint32_t len, int reason)
{
	const struct rte_ether_hdr *eth = (const struct rte_ether_hdr *)frame;
	uint32_t type, proto, off, l4 = 0;
	const uint8_t *up;

	if (len < sizeof(*eth))
		return reason == KG_PUNT_LOCAL ? KG_POLICE_LOCAL : KG_POLICE_OTHER;
	type = rte_be_to_cpu_16(eth->ether_type);
	if (type == RTE_ETHER_TYPE_ARP)
		return KG_POLICE_ARP;
	if (type != RTE_ETHER_TYPE_IPV4 && type != RTE_ETHER_TYPE_IPV6)
		return KG_POLICE_OTHER;
	proto = kg_upper_layer(frame, len, type, &off);
	if (proto == KG_PROTO_CUT)        /* too short for its IP header */
		return reason == KG_PUNT_LOCAL ? KG_POLICE_LOCAL : KG_POLICE_OTHER;
	up = frame + off;
	if (off && kg_is_nd(proto, up, len - off))
		return KG_POLICE_ND;
	if (!kg_martian_src(frame, type) &&
	    (off ? kg_is_routing(proto, up, len - off) : kg_is_routing_proto(proto)))
		return KG_POLICE_ROUTING;

	switch (reason) {
	case KG_PUNT_ICMPV6:
		return KG_POLICE_ND;
	case KG_PUNT_GLEAN:
	case KG_PUNT_UNRESOLVED:
		return KG_POLICE_RESOLVE;
	case KG_PUNT_TTL:
	case KG_PUNT_NO_ROUTE:
		return KG_POLICE_ERROR;
	case KG_PUNT_L2_MULTICAST:
	case KG_PUNT_IP_MULTICAST:
		return KG_POLICE_MULTICAST;
	case KG_PUNT_NOT_FAST:
	case KG_PUNT_MTU:
	case KG_PUNT_OPTIONS:
	case KG_PUNT_FWD_OFF:
	case KG_PUNT_TABLE_FULL:
		return KG_POLICE_TRANSIT;
	case KG_PUNT_LOCAL:
		break;
	case KG_PUNT_SPECIAL:
		/* IPv6 link-local unicast to this port (its MAC matched) from a
		 * source that is no martian: the gateway's own link traffic */
		if (type == RTE_ETHER_TYPE_IPV6) {
			const struct rte_ipv6_hdr *ip = (const struct rte_ipv6_hdr *)(eth + 1);

			if (kg_v6_linklocal(ip->dst_addr) && !kg_v6_multicast(ip->src_addr) &&
			    (kg_v6_linklocal(ip->src_addr) || !kg_v6_special(ip->src_addr)))
				break;
		}
		return KG_POLICE_OTHER;
	default:
		return KG_POLICE_OTHER;
	}
	/* to a local address: what is it? */
	if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6)
		return KG_POLICE_ICMP;
	if ((proto == IPPROTO_UDP || proto == IPPROTO_TCP) && off && off + KG_L4_PORTS_LEN <= len)
		l4 = rte_be_to_cpu_16(((const struct rte_udp_hdr *)up)->dst_port);  /* TCP's too */
	return l4 == KG_PORT_DNS ? KG_POLICE_DNS : KG_POLICE_LOCAL;
}

#endif /* KG_POLICE_H */
