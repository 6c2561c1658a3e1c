/* SPDX-License-Identifier: BSD-3-Clause
 *
 * fib.h - the fast path's tables, mirrored from the kernel by the control
 * thread (kni_gw/netlink.py through fib.c), read by the rx lcores.
 *
 *   fib4     rte_fib (DIR24_8 over an rte_rib tree, O(log n) updates:
 *            rte_lpm's rule table is scanned linearly per depth, which made
 *            a 1M-route table quadratic to load). Updated live: entries are
 *            written atomically; DPDK 22.11's rte_fib has no RCU, so the
 *            control thread waits for the lcores' quiescence after each
 *            batch of edits (kg_route4_commit), and no tbl8 group freed in
 *            one batch is reused before every lookup of that batch is over.
 *   lpm6     rte_lpm6 (no RCU in DPDK 22.11): the control thread raises
 *            v6_writing, waits for the lcores, edits, lowers it. While it is
 *            raised the lcores punt IPv6, so the kernel forwards it.
 *   default4/default6  the next hop of the default route (0/0, ::/0),
 *            which the LPMs do not take (depth 0); KG_NH_NONE when absent.
 *   adj[]    one 64-bit word per next hop: MAC (bytes 0-5, wire order),
 *            egress port index (byte 6), valid flag (byte 7). Written and
 *            read whole, atomically: a lookup never sees a torn next hop.
 *   group[]  one 64-bit word per group slot: n << 32 | base, the slot's
 *            buckets being bucket[base .. base + n) (adjacency indexes,
 *            each repeated as its weight asks); n == 0: punt for reason
 *            `base`. A slot is re-pointed whole, atomically (a kernel
 *            nexthop object that changes moves every route through it at
 *            once); a bucket range is rewritten only once no lcore can
 *            still read it (kg_sync).
 *   stamp[l][kind]  per rx lcore, one byte per adjacency and kind: the
 *            period (epoch) in which lcore l last forwarded to it (used),
 *            forwarded a frame from its address with another source MAC
 *            (moved) or with its own (heard). Single writer (that lcore);
 *            ctl reads them in kg_adj_scan.
 *
 * Next-hop values: < KG_NH_FIRST_ADJ a punt reason, KG_NH_GROUP | g a
 * group slot, else an adjacency index.
 */
#ifndef KG_FIB_H
#define KG_FIB_H

#include <stdint.h>
#include <string.h>

#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_fib.h>
#include <rte_lpm6.h>

#include "kni_gw.h"

#define KG_ADJ_VALID (1ULL << 63)
#define KG_ADJ_PORT_SHIFT 48
#define KG_FRAG_MASK 0x3fff   /* MF flag and fragment offset */

_Static_assert(KG_PUNT_MAX <= KG_NH_FIRST_ADJ, "punt reasons below adjacencies");
_Static_assert((KG_BUCKET_MAX & (KG_BUCKET_MAX - 1)) == 0, "bucket pool size");
_Static_assert(KG_ADJ_MAX <= KG_NH_GROUP && KG_GROUP_MAX <= KG_NH_GROUP, "next-hop encoding");

struct kg_fib {
	struct rte_fib *fib4;           /* ctl: w (rte_fib API), rx: r */
	uint32_t v4_dirty;              /* ctl: w and r; edits since the last quiescence */
	struct rte_lpm6 *lpm6;          /* ctl: w while v6_writing, rx: r otherwise */
	uint32_t v6_writing;            /* ctl: w (atomic), rx: r (atomic) */
	uint32_t default4;              /* ctl: w (atomic), rx: r (atomic) */
	uint32_t default6;              /* ctl: w while v6_writing, rx: r otherwise */
	uint64_t *adj;                  /* [KG_ADJ_MAX] ctl: w (atomic), rx: r (atomic) */
	uint64_t *group;                /* [KG_GROUP_MAX] ctl: w (release), rx: r (acquire) */
	uint32_t *bucket;               /* [KG_BUCKET_MAX] ctl: w unused ranges, rx: r */
	uint8_t *stamp[RTE_MAX_LCORE][KG_STAMPS]; /* [KG_ADJ_MAX] per rx lcore: that lcore w, ctl r */
	uint8_t epoch;                  /* ctl: w (atomic), rx: r (atomic) */
	uint64_t port_mac[KG_MAX_PORTS]; /* ctl: w (atomic), rx: r; MAC in bytes 0-5 */
	uint32_t port_mtu[KG_MAX_PORTS]; /* ctl: w (atomic), rx: r */
	uint32_t port_mtu6[KG_MAX_PORTS]; /* ctl: w (atomic), rx: r; 0 = port_mtu */
	uint8_t fwd4[KG_MAX_PORTS];     /* ctl: w, rx: r; kernel forwarding sysctl */
	uint8_t fwd6[KG_MAX_PORTS];
	uint64_t memory;                /* ctl: w; bytes the tables take */
};

extern struct kg_fib kg_fib;

static inline uint64_t
kg_load64(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline uint32_t
kg_be16(const uint8_t *p)
{
	return ((uint32_t)p[0] << 8) | p[1];
}

static inline uint32_t
kg_be32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
	       ((uint32_t)p[2] << 8) | p[3];
}

/* The IPv4 next hop of ip (host order): KG_PUNT_NO_ROUTE when no prefix
 * holds it (the FIB's default value; the default route is kept beside). */
static inline uint32_t
kg_lookup4(const struct kg_fib *f, uint32_t ip)
{
	uint64_t nh;

	rte_fib_lookup_bulk(f->fib4, &ip, &nh, 1);
	return (uint32_t)nh;
}

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
static inline int
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

static inline int
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

		for (i = 0; i < ihl; i += 4) {
			memcpy(&w, ip + i, 4);
			s += w;
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
			uint64_t a = kg_load64(&f->adj[i % KG_ADJ_MAX]), m = 0;

			memcpy(&m, smac, 6);
			if ((a & KG_ADJ_VALID) && ((a >> KG_ADJ_PORT_SHIFT) & 0xff) == in) {
				if ((a & 0xffffffffffffULL) != m)
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
	/* any fragment (MF set or an offset) hashes without ports, so that
	 * all the fragments of a datagram take one path, as in Linux */
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

static inline int
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
	hash = kg_flow_hash(kg_be32(ip + 20) ^ kg_be32(ip + 16), kg_be32(ip + 36) ^ kg_be32(ip + 32),
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
static inline int
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
	if (memcmp(frame, &mac, 6) != 0)
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

static inline int
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
static inline uint32_t
kg_rewrite_frame(const struct kg_fib *f, uint8_t *frame, uint32_t len,
		 const struct kg_verdict *v)
{
	uint64_t src = kg_load64(&f->port_mac[v->egress % KG_MAX_PORTS]);
	uint8_t *ip = frame + 14;
	uint32_t newlen;

	memcpy(frame, &v->adj, 6);
	memcpy(frame + 6, &src, 6);
	if (frame[12] == 0x08) {
		uint32_t check = ((uint32_t)ip[11] << 8 | ip[10]) + rte_cpu_to_be_16(0x0100);
		uint16_t c;

		ip[8]--;
		c = (uint16_t)(check + (check >= 0xffff));
		ip[10] = (uint8_t)c;
		ip[11] = (uint8_t)(c >> 8);
		newlen = 14 + kg_be16(ip + 2);
	} else {
		ip[7]--;
		newlen = 14 + 40 + kg_be16(ip + 4);
	}
	return newlen < len ? newlen : len;
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

#endif /* KG_FIB_H */
