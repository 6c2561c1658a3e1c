/* SPDX-License-Identifier: BSD-3-Clause
 *
 * pool.c - the mbuf pool's free list: "kg_hot", a mempool driver of two
 * rings.
 *
 * An mbuf freed to DPDK's ring driver comes back out only once every other
 * free mbuf has: first in, first out over the whole pool. The pool is sized
 * for every queue and fifo full at once (pool_size, eal.c), so in normal
 * running most of it is free, and every mbuf that crosses lcores (a frame
 * punted to vEthN: the rx lcore allocates it, the exception lcore frees it)
 * is one no core has touched for that whole cycle. Measured (README,
 * Benchmarks): the exception path ran at 0.80-0.86x testpmd io with the
 * computed pool (about 8,600 mbufs for one port) and at 0.92-0.94x with
 * --mbufs 4096, which leaves less of it free.
 *
 * kg_hot keeps that whole capacity but cycles a short list: frees go to the
 * "hot" ring while it has room (KG_POOL_HOT mbufs, at most a quarter of
 * the pool), the overflow to the "cold" ring (which has room for all);
 * allocations take from the hot ring first. The lcores' cache
 * renewal (loop.c, cache_renew) goes through the cold ring instead, so
 * that it draws, as with DPDK's ring driver, mbufs the pool has not handed
 * out for longest: drawn from the hot ring, two rx lcores on one port ran
 * at 68.6-73.5 Mpps after a start that punted frames, against 72.4-79.7
 * through the cold ring (six alternating starts each). A stack (last in,
 * first out) would hand the renewal its own mbufs back, which costs two rx
 * lcores about a tenth (README).
 */
#include <errno.h>
#include <stdio.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_malloc.h>
#include <rte_mbuf_pool_ops.h>
#include <rte_mempool.h>
#include <rte_ring.h>

#include "kg_internal.h"

struct hot_pool {
	struct rte_ring *hot, *cold;
};

/* The hot list holds at most a quarter of the pool, so that the cold ring
 * keeps more than the lcores' caches' worth for their renewal (below). */
static unsigned int
hot_size(const struct rte_mempool *mp)
{
	return RTE_MAX(RTE_MIN(mp->size / 4, (unsigned int)KG_POOL_HOT), 1u);
}

static int
hot_alloc(struct rte_mempool *mp)
{
	char hot[RTE_RING_NAMESIZE], cold[RTE_RING_NAMESIZE];
	struct hot_pool *h;
	int err;

	if (snprintf(hot, sizeof(hot), "kgh_%s", mp->name) >= (int)sizeof(hot) ||
	    snprintf(cold, sizeof(cold), "kgc_%s", mp->name) >= (int)sizeof(cold))
		return -ENAMETOOLONG;
	h = rte_zmalloc_socket("kg_hot", sizeof(*h), RTE_CACHE_LINE_SIZE, mp->socket_id);
	if (h == NULL)
		return -ENOMEM;
	h->hot = rte_ring_create(hot, hot_size(mp), mp->socket_id, RING_F_EXACT_SZ);
	/* room for every object of the pool: an enqueue never fails */
	h->cold = rte_ring_create(cold, mp->size, mp->socket_id, RING_F_EXACT_SZ);
	if (h->hot == NULL || h->cold == NULL) {
		err = rte_errno ? rte_errno : ENOMEM;
		rte_ring_free(h->hot);
		rte_ring_free(h->cold);
		rte_free(h);
		return -err;
	}
	mp->pool_data = h;
	return 0;
}

static void
hot_free(struct rte_mempool *mp)
{
	struct hot_pool *h = mp->pool_data;

	rte_ring_free(h->hot);
	rte_ring_free(h->cold);
	rte_free(h);
}

/* What does not fit in the hot ring always fits in the cold one: every
 * object counted against its room is another of the pool's objects (only
 * an mbuf freed twice could overfill it: -ENOBUFS then, as DPDK's ring
 * driver returns). */
static int
hot_enqueue(struct rte_mempool *mp, void * const *objs, unsigned int n)
{
	struct hot_pool *h = mp->pool_data;
	unsigned int k = rte_ring_mp_enqueue_burst(h->hot, objs, n, NULL);

	if (k < n && rte_ring_mp_enqueue_bulk(h->cold, objs + k, n - k, NULL) == 0)
		return -ENOBUFS;
	return 0;
}

/* All n or none, as a mempool driver must. Between its two rings another
 * lcore's failed attempt can hold some hot objects for a moment, so a
 * request near the pool's end can fail with enough free: DPDK's get then
 * counts it as a failed allocation, as any shortage. */
static int
hot_dequeue(struct rte_mempool *mp, void **objs, unsigned int n)
{
	struct hot_pool *h = mp->pool_data;
	unsigned int k = rte_ring_mc_dequeue_burst(h->hot, objs, n, NULL);

	if (k == n || rte_ring_mc_dequeue_bulk(h->cold, objs + k, n - k, NULL) != 0)
		return 0;
	if (k != 0)
		hot_enqueue(mp, objs, k);
	return -ENOBUFS;
}

static unsigned int
hot_count(const struct rte_mempool *mp)
{
	const struct hot_pool *h = mp->pool_data;

	return rte_ring_count(h->hot) + rte_ring_count(h->cold);
}

static struct rte_mempool_ops hot_ops = {
	.name = "kg_hot",
	.alloc = hot_alloc,
	.free = hot_free,
	.enqueue = hot_enqueue,
	.dequeue = hot_dequeue,
	.get_count = hot_count,
};

/* The pool's driver: DPDK's choice (rte_mbuf_best_mempool_ops) where the
 * user named one (EAL's --mbuf-pool-ops-name), the platform has its own (a
 * hardware pool), or a port's driver refuses kg_hot; else kg_hot,
 * registered once a process, after EAL's own drivers so that their indices
 * in the ops table stay those of a secondary process.
 * A secondary has no kg_hot: dpdk-dumpcap and dpdk-pdump only copy frames
 * into pools of their own, but a tool that reads this pool's counts (say
 * dpdk-proc-info --show-mempool) calls a driver it does not have, and
 * crashes: run kni-gw with --mbuf-pool-ops-name ring_mp_mc for such tools
 * (README). */
const char *
kg_pool_ops(void)
{
	static int registered;
	unsigned int i;

	if (rte_eal_mbuf_user_pool_ops() != NULL || rte_mbuf_platform_mempool_ops() != NULL)
		return rte_mbuf_best_mempool_ops();
	if (registered == 0)
		registered = rte_mempool_register_ops(&hot_ops) >= 0 ? 1 : -1;
	if (registered < 0)
		return rte_mbuf_best_mempool_ops();
	for (i = 0; i < kg.nb_ports; i++)
		if (rte_eth_dev_pool_ops_supported(kg.port[i].port_id, hot_ops.name) < 0)
			return rte_mbuf_best_mempool_ops();
	return hot_ops.name;
}

/* An lcore's cache goes back to the pool and refills (loop.c, cache_renew),
 * on the cache's lcore. With kg_hot, through the cold ring (above): in at
 * its head, out from its tail, while it holds more than a cache's worth
 * (else the cache would get its own mbufs back). Otherwise, and with
 * another driver, a flush: the next allocation refills the cache. */
void
kg_pool_renew(struct rte_mempool *mp, struct rte_mempool_cache *c)
{
	struct hot_pool *h = mp->pool_data;

	if (rte_mempool_get_ops(mp->ops_index)->enqueue != hot_enqueue ||
	    rte_ring_count(h->cold) <= c->size) {
		rte_mempool_cache_flush(c, mp);
		return;
	}
	if (rte_ring_mp_enqueue_bulk(h->cold, c->objs, c->len, NULL) == c->len)
		c->len = rte_ring_mc_dequeue_burst(h->cold, c->objs, c->size, NULL);
}
