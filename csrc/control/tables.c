/* SPDX-License-Identifier: BSD-3-Clause
 *
 * tables.c - create and edit the fast path's tables (see tables.h for who reads
 * and writes what). Called from the control thread only.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rte_errno.h>
#include <rte_cpuflags.h>
#include <rte_malloc.h>
#include <rte_vect.h>

#include "tables.h"
#include "kg_internal.h"

struct kg_fib kg_fib;

static void
fib_conf_defaults(const struct kg_fib_conf *conf, struct rte_fib_conf *c4,
		  struct rte_lpm6_config *c6)
{
	c4->type = RTE_FIB_DIR24_8;
	c4->default_nh = KG_PUNT_NO_ROUTE;
	c4->max_routes = conf->routes4 ? (int)conf->routes4 : 1 << 16;
	c4->dir24_8.nh_sz = RTE_FIB_DIR24_8_4B;
	c4->dir24_8.num_tbl8 = conf->tbl8s4 ? conf->tbl8s4 : 1 << 12;
	c6->max_rules = conf->routes6 ? conf->routes6 : 1 << 14;
	c6->number_tbl8s = conf->tbl8s6 ? conf->tbl8s6 : 1 << 14;
}

unsigned long long
kg_fib_size(const struct kg_fib_conf *conf)
{
	struct rte_fib_conf c4 = { 0 };
	struct rte_lpm6_config c6 = { 0 };

	fib_conf_defaults(conf, &c4, &c6);
	/* rte_fib DIR24_8 (4-byte entries): tbl24 (2^24) + tbl8 groups of
	 * 256, and its rte_rib: 2 nodes a route, ~212 B each in their mempool
	 * (measured: 1M routes take 422 MiB more than 1k); rte_lpm6: tbl24 +
	 * tbl8 groups of 256 + rules in a hash (~48 B); then the next-hop
	 * tables and the per-lcore stamps */
	return 4ULL * ((1ULL << 24) + 256ULL * (c4.dir24_8.num_tbl8 + 1))
	       + 2ULL * 212 * (uint64_t)c4.max_routes
	       + 4ULL * ((1ULL << 24) + 256ULL * c6.number_tbl8s)
	       + 48ULL * c6.max_rules + 4ULL * c6.number_tbl8s
	       + sizeof(uint64_t) * (KG_ADJ_MAX + KG_GROUP_MAX)
	       + sizeof(uint32_t) * KG_BUCKET_MAX
	       + (uint64_t)KG_STAMPS * KG_ADJ_MAX * KG_MAX_PORTS;
}

static uint64_t
heap_used(void)
{
	struct rte_malloc_socket_stats st;
	uint64_t sum = 0;
	int s;

	for (s = 0; s < RTE_MAX_NUMA_NODES; s++)
		if (rte_malloc_get_socket_stats(s, &st) == 0)
			sum += st.heap_allocsz_bytes;
	return sum;
}

/* The IPv4 FIB's AVX-512 lookup, where the CPU has it: 11% more frames a
 * second on one lcore (bench_fastpath.py, 22.9 -> 25.4 Mpps). rte_fib picks
 * it only under EAL's SIMD limit, 256 bits unless told otherwise; the limit
 * is raised for this choice alone and put back, so that drivers keep their
 * own. A limit the user forced (--force-max-simd-bitwidth) is kept. */
static void
fib4_vector_lookup(void)
{
#ifdef RTE_ARCH_X86
	uint16_t was = rte_vect_get_max_simd_bitwidth();

	if (was >= RTE_VECT_SIMD_512) {
		/* allowed already: rte_fib took the best it has */
		kg_fib.fib4_avx512 = rte_cpu_get_flag_enabled(RTE_CPUFLAG_AVX512F) > 0;
		return;
	}
	if (!rte_cpu_get_flag_enabled(RTE_CPUFLAG_AVX512F) ||
	    rte_vect_set_max_simd_bitwidth(RTE_VECT_SIMD_512) != 0)
		return;
	if (rte_fib_select_lookup(kg_fib.fib4, RTE_FIB_LOOKUP_DIR24_8_VECTOR_AVX512) == 0)
		kg_fib.fib4_avx512 = true;
	rte_vect_set_max_simd_bitwidth(was);
#endif
}

int
kg_fib4_avx512(void)
{
	return kg_fib.fib4_avx512;
}

int
kg_fib_create(const struct kg_fib_conf *conf, char *err, unsigned int errlen)
{
	struct rte_fib_conf c4 = { 0 };
	struct rte_lpm6_config c6 = { 0 };
	uint64_t before;
	unsigned int l;

	if (kg_fib.fib4)
		return 0;
	if (kg_rcu_create() < 0) {
		kg_err(err, errlen, "cannot allocate the lcore QSBR state");
		return -ENOMEM;
	}
	fib_conf_defaults(conf, &c4, &c6);
	before = heap_used();

	kg_fib.fib4 = rte_fib_create("kg_fib4", rte_socket_id(), &c4);
	if (kg_fib.fib4 == NULL) {
		kg_err(err, errlen,
		       "cannot create the IPv4 route table (%d routes): %s; give "
		       "EAL more memory (-m / --socket-mem / hugepages) or lower "
		       "--max-routes", c4.max_routes, rte_strerror(rte_errno));
		return -ENOMEM;
	}
	fib4_vector_lookup();
	kg_fib.lpm6 = rte_lpm6_create("kg_lpm6", rte_socket_id(), &c6);
	if (kg_fib.lpm6 == NULL) {
		kg_err(err, errlen,
		       "cannot create the IPv6 route table (%u routes): %s; give "
		       "EAL more memory (-m / --socket-mem / hugepages) or lower "
		       "--max-routes", c6.max_rules, rte_strerror(rte_errno));
		return -ENOMEM;
	}
	kg_fib.adj = rte_zmalloc("kg_adj", sizeof(uint64_t) * KG_ADJ_MAX,
				 RTE_CACHE_LINE_SIZE);
	kg_fib.group = rte_zmalloc("kg_group", sizeof(uint64_t) * KG_GROUP_MAX,
				   RTE_CACHE_LINE_SIZE);
	kg_fib.bucket = rte_zmalloc("kg_bucket", sizeof(uint32_t) * KG_BUCKET_MAX,
				    RTE_CACHE_LINE_SIZE);
	if (kg_fib.adj == NULL || kg_fib.group == NULL || kg_fib.bucket == NULL) {
		kg_err(err, errlen, "cannot allocate the next-hop tables");
		return -ENOMEM;
	}
	/* an unset slot punts */
	for (l = 0; l < KG_GROUP_MAX; l++)
		kg_fib.group[l] = KG_PUNT_UNRESOLVED;
	for (l = 0; l < RTE_MAX_LCORE; l++) {
		unsigned int k;

		if (kg.lcore[l].n_rx == 0)
			continue;
		for (k = 0; k < KG_STAMPS; k++) {
			kg_fib.stamp[l][k] = rte_zmalloc("kg_stamp", KG_ADJ_MAX, RTE_CACHE_LINE_SIZE);
			if (kg_fib.stamp[l][k] == NULL) {
				kg_err(err, errlen, "cannot allocate the neighbour stamps");
				return -ENOMEM;
			}
		}
	}
	kg_fib.epoch = 1;
	kg_fib.default4 = KG_NH_NONE;
	kg_fib.default6 = KG_NH_NONE;
	kg_fib.memory = heap_used() - before;
	return 0;
}

void
kg_fib_free(void)
{
	unsigned int l;

	rte_fib_free(kg_fib.fib4);
	rte_lpm6_free(kg_fib.lpm6);
	rte_free(kg_fib.adj);
	rte_free(kg_fib.group);
	rte_free(kg_fib.bucket);
	for (l = 0; l < RTE_MAX_LCORE; l++) {
		unsigned int k;

		for (k = 0; k < KG_STAMPS; k++)
			rte_free(kg_fib.stamp[l][k]);
	}
	memset(&kg_fib, 0, sizeof(kg_fib));
}

unsigned long long
kg_fib_memory(void)
{
	return kg_fib.memory;
}

static int
nh_ok(unsigned int nh)
{
	if (nh < KG_NH_FIRST_ADJ)
		return nh < KG_PUNT_MAX;
	if (nh & KG_NH_GROUP)
		return (nh & ~KG_NH_GROUP) < KG_GROUP_MAX;
	return nh < KG_ADJ_MAX;
}

int
kg_route4_add(unsigned int ip_be, unsigned char depth, unsigned int nh)
{
	if (kg_fib.fib4 == NULL)
		return -ENODEV;
	if (depth > 32 || !nh_ok(nh) || nh == KG_PUNT_NO_ROUTE)
		return -EINVAL;
	if (depth == 0) {
		__atomic_store_n(&kg_fib.default4, nh, __ATOMIC_RELEASE);
		return 0;
	}
	kg_fib.v4_dirty = 1;
	return rte_fib_add(kg_fib.fib4, rte_be_to_cpu_32(ip_be), depth, nh);
}

int
kg_route4_del(unsigned int ip_be, unsigned char depth)
{
	if (kg_fib.fib4 == NULL)
		return -ENODEV;
	if (depth > 32)
		return -EINVAL;
	if (depth == 0) {
		if (__atomic_load_n(&kg_fib.default4, __ATOMIC_RELAXED) == KG_NH_NONE)
			return -ENOENT;
		__atomic_store_n(&kg_fib.default4, KG_NH_NONE, __ATOMIC_RELEASE);
		return 0;
	}
	kg_fib.v4_dirty = 1;
	return rte_fib_delete(kg_fib.fib4, rte_be_to_cpu_32(ip_be), depth);
}

void
kg_route4_commit(void)
{
	/* rte_fib frees and reuses tbl8 groups at once: wait until no lookup
	 * begun before this point can still read one, before the next batch */
	if (kg_fib.v4_dirty) {
		kg_quiesce();
		kg_fib.v4_dirty = 0;
	}
}

int
kg_route6_begin(void)
{
	if (kg_fib.lpm6 == NULL)
		return -ENODEV;
	__atomic_store_n(&kg_fib.v6_writing, 1, __ATOMIC_SEQ_CST);
	kg_quiesce();
	return 0;
}

void
kg_route6_end(void)
{
	__atomic_store_n(&kg_fib.v6_writing, 0, __ATOMIC_RELEASE);
}

int
kg_route6_add(const unsigned char *ip, unsigned char depth, unsigned int nh)
{
	if (kg_fib.lpm6 == NULL)
		return -ENODEV;
	if (!__atomic_load_n(&kg_fib.v6_writing, __ATOMIC_RELAXED))
		return -EPERM;  /* outside kg_route6_begin/end */
	if (depth > 128 || !nh_ok(nh))
		return -EINVAL;
	if (depth == 0) {
		kg_fib.default6 = nh;
		return 0;
	}
	return rte_lpm6_add(kg_fib.lpm6, ip, depth, nh);
}

int
kg_route6_del(const unsigned char *ip, unsigned char depth)
{
	if (kg_fib.lpm6 == NULL)
		return -ENODEV;
	if (!__atomic_load_n(&kg_fib.v6_writing, __ATOMIC_RELAXED))
		return -EPERM;
	if (depth > 128)
		return -EINVAL;
	if (depth == 0) {
		if (kg_fib.default6 == KG_NH_NONE)
			return -ENOENT;
		kg_fib.default6 = KG_NH_NONE;
		return 0;
	}
	return rte_lpm6_delete(kg_fib.lpm6, ip, depth);
}

int
kg_adj_set(unsigned int idx, unsigned int port_index, const unsigned char *mac)
{
	uint64_t w;

	if (kg_fib.adj == NULL)
		return -ENODEV;
	if (idx < KG_NH_FIRST_ADJ || idx >= KG_ADJ_MAX || port_index >= KG_MAX_PORTS)
		return -EINVAL;
	w = kg_mac48(mac);
	w |= (uint64_t)port_index << KG_ADJ_PORT_SHIFT | KG_ADJ_VALID;
	__atomic_store_n(&kg_fib.adj[idx], w, __ATOMIC_RELEASE);
	return 0;
}

int
kg_adj_clear(unsigned int idx)
{
	if (kg_fib.adj == NULL)
		return -ENODEV;
	if (idx < KG_NH_FIRST_ADJ || idx >= KG_ADJ_MAX)
		return -EINVAL;
	__atomic_store_n(&kg_fib.adj[idx], 0, __ATOMIC_RELEASE);
	return 0;
}

int
kg_group_set(unsigned int slot, unsigned int base, const unsigned int *adj, unsigned int n)
{
	unsigned int i;

	if (kg_fib.group == NULL)
		return -ENODEV;
	if (slot >= KG_GROUP_MAX || n == 0 || base >= KG_BUCKET_MAX ||
	    n > KG_BUCKET_MAX - base)
		return -EINVAL;
	for (i = 0; i < n; i++)
		if (adj[i] < KG_NH_FIRST_ADJ || adj[i] >= KG_ADJ_MAX)
			return -EINVAL;
	for (i = 0; i < n; i++)
		kg_fib.bucket[base + i] = adj[i];
	/* the buckets are visible before the slot points at them */
	__atomic_store_n(&kg_fib.group[slot], (uint64_t)n << 32 | base, __ATOMIC_RELEASE);
	return 0;
}

int
kg_group_punt(unsigned int slot, unsigned int reason)
{
	if (kg_fib.group == NULL)
		return -ENODEV;
	if (slot >= KG_GROUP_MAX || reason >= KG_PUNT_MAX)
		return -EINVAL;
	__atomic_store_n(&kg_fib.group[slot], (uint64_t)reason, __ATOMIC_RELEASE);
	return 0;
}

int
kg_fib_forwarding(unsigned int port_index, int ipv4, int ipv6)
{
	if (port_index >= KG_MAX_PORTS)
		return -EINVAL;
	__atomic_store_n(&kg_fib.fwd4[port_index], ipv4 ? 1 : 0, __ATOMIC_RELAXED);
	__atomic_store_n(&kg_fib.fwd6[port_index], ipv6 ? 1 : 0, __ATOMIC_RELAXED);
	return 0;
}

int
kg_fib_port(unsigned int port_index, const unsigned char *mac, unsigned int mtu)
{
	if (port_index >= KG_MAX_PORTS)
		return -EINVAL;
	__atomic_store_n(&kg_fib.port_mac[port_index], kg_mac48(mac), __ATOMIC_RELAXED);
	__atomic_store_n(&kg_fib.port_mtu[port_index], mtu, __ATOMIC_RELAXED);
	return 0;
}

int
kg_fib_port_mtu6(unsigned int port_index, unsigned int mtu)
{
	if (port_index >= KG_MAX_PORTS)
		return -EINVAL;
	__atomic_store_n(&kg_fib.port_mtu6[port_index], mtu, __ATOMIC_RELAXED);
	return 0;
}

int
kg_adj_scan(unsigned int *out, unsigned int *n, unsigned int max)
{
	static uint64_t seen[KG_STAMPS][KG_ADJ_MAX / 64];
	uint8_t e;
	unsigned int l, a, k;

	for (k = 0; k < KG_STAMPS; k++)
		n[k] = 0;
	if (kg_fib.adj == NULL)
		return -ENODEV;
	/* a new period starts; what was stamped with the old one is read.
	 * (An lcore that read the old epoch just before may still stamp it:
	 * that shows in the next scan but one, or not at all, which is
	 * harmless for a liveness hint.) 0 means never: skipped. */
	e = __atomic_fetch_add(&kg_fib.epoch, 1, __ATOMIC_ACQ_REL);
	if (e == 255)
		__atomic_store_n(&kg_fib.epoch, 1, __ATOMIC_RELEASE);
	memset(seen, 0, sizeof(seen));
	for (l = 0; l < RTE_MAX_LCORE; l++) {
		if (kg_fib.stamp[l][0] == NULL)
			continue;
		for (k = 0; k < KG_STAMPS; k++) {
			const uint8_t *s = kg_fib.stamp[l][k];

			for (a = KG_NH_FIRST_ADJ; a < KG_ADJ_MAX; a++) {
				if (__atomic_load_n(&s[a], __ATOMIC_RELAXED) != e ||
				    (seen[k][a / 64] & 1ULL << (a % 64)) || n[k] >= max)
					continue;
				seen[k][a / 64] |= 1ULL << (a % 64);
				out[k * max + n[k]++] = a;
			}
		}
	}
	return 0;
}

void
kg_sync(void)
{
	kg_quiesce();
}

int
kg_classify(unsigned int in_port, const unsigned char *frame, unsigned int len,
	    struct kg_verdict *v)
{
	if (kg_fib.fib4 == NULL || in_port >= KG_MAX_PORTS) {
		memset(v, 0, sizeof(*v));
		return kg_punt(v, KG_PUNT_NOT_FAST);
	}
	return kg_classify_frame(&kg_fib, in_port, frame, len, v);
}

int
kg_classify_fast(unsigned int in_port, const unsigned char *frame, unsigned int len,
		 struct kg_verdict *v)
{
	uint32_t ips[2], nh, sn, adj_idx = 0, moved, heard;
	uint64_t mac, a;

	memset(v, 0, sizeof(*v));
	if (kg_fib.fib4 == NULL || in_port >= KG_MAX_PORTS)
		return 0;
	/* as the rx stage decides it, burst by burst and frame by frame */
	mac = kg_load64(&kg_fib.port_mac[in_port]);
	if (!kg_fib.fwd4[in_port] || (mac & 1))
		return 0;
	kg_pre4_addrs(frame, len, ips);
	nh = kg_lookup4(&kg_fib, ips[0]);
	sn = kg_lookup4(&kg_fib, ips[1]);
	a = kg_fast4(&kg_fib, in_port, mac, frame, len, ips[0], ips[1], nh, sn, &adj_idx);
	if (a == 0)
		return 0;
	kg_src_liveness(&kg_fib, in_port, frame, sn, &moved, &heard);
	v->action = KG_VERDICT_FORWARD;
	v->egress = (uint32_t)(a >> KG_ADJ_PORT_SHIFT) & 0xff;
	v->adj_idx = adj_idx;
	v->adj = a;
	v->moved = moved;
	v->heard = heard;
	return KG_VERDICT_FORWARD;
}

unsigned int
kg_rewrite(unsigned char *frame, unsigned int len, const struct kg_verdict *v)
{
	const struct rte_ether_hdr *eth = (const struct rte_ether_hdr *)frame;

	/* only what kg_classify() let through is rewritten: check its shape
	 * again, so that any bytes and verdict are safe here */
	if (v->action != KG_VERDICT_FORWARD ||
	    len < sizeof(*eth) + sizeof(struct rte_ipv6_hdr) ||   /* the larger IP header */
	    !(eth->ether_type == RTE_BE16(RTE_ETHER_TYPE_IPV4) ||
	      eth->ether_type == RTE_BE16(RTE_ETHER_TYPE_IPV6)))
		return len;
	return kg_rewrite_frame(&kg_fib, frame, len, v);
}
