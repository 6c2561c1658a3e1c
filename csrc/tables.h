/* SPDX-License-Identifier: BSD-3-Clause
 *
 * tables.h - the fast path's tables, mirrored from the kernel by the control
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
 *   adj[]    one 64-bit word per next hop: MAC (bits 0-47, its first
 *            byte lowest: kg_mac48), egress port index (bits 48-55),
 *            valid flag (bit 63); the same on CPUs of either byte order. Written and
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
#ifndef KG_TABLES_H
#define KG_TABLES_H

#include <stdbool.h>
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
/* MF flag and fragment offset: set in any fragment of an IPv4 datagram */
#define KG_FRAG_MASK (RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK)

_Static_assert(KG_FRAG_MASK == 0x3fff, "IPv4 fragment bits");
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
	uint64_t port_mac[KG_MAX_PORTS]; /* ctl: w (atomic), rx: r; kg_mac48 */
	uint32_t port_mtu[KG_MAX_PORTS]; /* ctl: w (atomic), rx: r */
	uint32_t port_mtu6[KG_MAX_PORTS]; /* ctl: w (atomic), rx: r; 0 = port_mtu */
	uint8_t fwd4[KG_MAX_PORTS];     /* ctl: w, rx: r; kernel forwarding sysctl */
	uint8_t fwd6[KG_MAX_PORTS];
	uint64_t memory;                /* ctl: w; bytes the tables take */
	bool fib4_avx512;               /* ctl: w; fib4 looks up with AVX-512 */
};

/* in this shared object only: reached PC-relative, not through the GOT */
#ifndef KG_LOCAL
#define KG_LOCAL __attribute__((visibility("hidden")))
#endif

extern KG_LOCAL struct kg_fib kg_fib;

static __rte_always_inline uint64_t
kg_load64(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* A MAC address as a number, its first byte in bits 0-7, and back: the
 * adjacency and port words hold MACs this way on any CPU (on a little-endian
 * one the compiler makes each a plain load or store). */
static __rte_always_inline uint64_t
kg_mac48(const uint8_t *p)
{
#if RTE_BYTE_ORDER == RTE_LITTLE_ENDIAN
	/* two loads; the shifts below would be assembled byte by byte */
	uint32_t lo;
	uint16_t hi;

	memcpy(&lo, p, 4);
	memcpy(&hi, p + 4, 2);
	return (uint64_t)lo | (uint64_t)hi << 32;
#else
	return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
	       (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40;
#endif
}

static __rte_always_inline void
kg_put_mac48(uint8_t *p, uint64_t w)
{
#if RTE_BYTE_ORDER == RTE_LITTLE_ENDIAN
	uint32_t lo = (uint32_t)w;
	uint16_t hi = (uint16_t)(w >> 32);

	memcpy(p, &lo, 4);
	memcpy(p + 4, &hi, 2);
#else
	p[0] = (uint8_t)w;
	p[1] = (uint8_t)(w >> 8);
	p[2] = (uint8_t)(w >> 16);
	p[3] = (uint8_t)(w >> 24);
	p[4] = (uint8_t)(w >> 32);
	p[5] = (uint8_t)(w >> 40);
#endif
}

/* An Ethernet header's two addresses at once (dst, then src): two stores. */
static __rte_always_inline void
kg_put_macs(uint8_t *p, uint64_t dst, uint64_t src)
{
#if RTE_BYTE_ORDER == RTE_LITTLE_ENDIAN
	uint64_t w0 = (dst & 0xffffffffffffULL) | src << 48;
	uint32_t w1 = (uint32_t)(src >> 16);

	memcpy(p, &w0, 8);
	memcpy(p + 8, &w1, 4);
#else
	kg_put_mac48(p, dst);
	kg_put_mac48(p + 6, src);
#endif
}

#define KG_MAC48_MASK 0xffffffffffffULL

static __rte_always_inline uint32_t
kg_be16(const uint8_t *p)
{
	return ((uint32_t)p[0] << 8) | p[1];
}

static __rte_always_inline uint32_t
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
#endif /* KG_TABLES_H */
