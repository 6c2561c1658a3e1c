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

/* The upper layer of an IP frame, for policing: protocol, offset of its
 * header (0 when not reachable: a later fragment, a cut frame), and for
 * IPv6 the extension headers (hop-by-hop, destination options, routing,
 * fragment) skipped, at most KG_EXT_MAX of them. */
#define KG_EXT_MAX 4
static inline uint32_t
kg_upper_layer(const uint8_t *frame, uint32_t len, uint32_t type, uint32_t *off)
{
	uint32_t next, o, k;

	*off = 0;
	if (type == 0x0800) {
		if (len < 34)
			return 256;
		o = 14 + (uint32_t)(frame[14] & 0xf) * 4;
		if ((kg_be16(frame + 20) & 0x1fff) == 0 && o <= len)
			*off = o;
		return frame[23];
	}
	if (len < 54)
		return 256;
	next = frame[20];
	o = 54;
	for (k = 0; k < KG_EXT_MAX; k++) {
		if (next == 0 || next == 60 || next == 43) {
			if (o + 8 > len)
				return next;
			next = frame[o];
			o += ((uint32_t)frame[o + 1] + 1) * 8;
		} else if (next == 44) {
			if (o + 8 > len)
				return next;
			if ((kg_be16(frame + o + 2) & 0xfff8) != 0)
				return frame[o];    /* a later fragment: no header here */
			next = frame[o];
			o += 8;
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
	if (proto != 58 || avail < 1)
		return 0;
	return (l4[0] >= 130 && l4[0] <= 137) || l4[0] == 143;
}

/* Routing and redundancy protocols: OSPF, VRRP, PIM; BGP (TCP 179); BFD,
 * RIP, RIPng, LDP hellos (UDP). */
static inline int
kg_is_routing(uint32_t proto, const uint8_t *l4, uint32_t avail)
{
	uint32_t sp, dp;

	if (proto == 89 || proto == 112 || proto == 103)
		return 1;
	if ((proto != 6 && proto != 17) || avail < 4)
		return 0;
	sp = kg_be16(l4);
	dp = kg_be16(l4 + 2);
	if (proto == 6)
		return sp == 179 || dp == 179;
	return dp == 3784 || dp == 3785 || dp == 4784 || dp == 520 || dp == 521 ||
	       dp == 646;
}

/* A source no router speaks from: 0/8, 127/8, multicast, broadcast;
 * ::, ::1, v4-mapped, multicast (link-local is fine). */
static inline int
kg_martian_src(const uint8_t *frame, uint32_t type)
{
	if (type == 0x0800)
		return frame[26] == 0 || frame[26] == 127 || frame[26] >= 224;
	return frame[22] == 0xff || (kg_v6_special(frame + 22) && !kg_v6_linklocal(frame + 22));
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
	uint32_t type, proto, off, l4 = 0;
	const uint8_t *up;

	if (len < 14)
		return reason == KG_PUNT_LOCAL ? KG_POLICE_LOCAL : KG_POLICE_OTHER;
	type = kg_be16(frame + 12);
	if (type == 0x0806)
		return KG_POLICE_ARP;
	if (type != 0x0800 && type != 0x86dd)
		return KG_POLICE_OTHER;
	proto = kg_upper_layer(frame, len, type, &off);
	if (proto > 255)                  /* too short for its IP header */
		return reason == KG_PUNT_LOCAL ? KG_POLICE_LOCAL : KG_POLICE_OTHER;
	up = frame + off;
	if (off && kg_is_nd(proto, up, len - off))
		return KG_POLICE_ND;
	if (!kg_martian_src(frame, type) &&
	    (off ? kg_is_routing(proto, up, len - off) : (proto == 89 || proto == 112 || proto == 103)))
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
		if (type == 0x86dd && kg_v6_linklocal(frame + 38) && frame[22] != 0xff &&
		    (kg_v6_linklocal(frame + 22) || !kg_v6_special(frame + 22)))
			break;
		return KG_POLICE_OTHER;
	default:
		return KG_POLICE_OTHER;
	}
	/* to a local address: what is it? */
	if (proto == 1 || proto == 58)
		return KG_POLICE_ICMP;
	if ((proto == 17 || proto == 6) && off && off + 4 <= len)
		l4 = kg_be16(up + 2);
	return l4 == 53 ? KG_POLICE_DNS : KG_POLICE_LOCAL;
}

#endif /* KG_POLICE_H */
