/* SPDX-License-Identifier: BSD-3-Clause
 *
 * eal.c - EAL start and stop, the mbuf pool, lcore roles, statistics.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mbuf_pool_ops.h>
#include <rte_errno.h>
#include <rte_malloc.h>
#include <rte_cycles.h>
#include <rte_mempool.h>
#include <rte_pdump.h>
#include <rte_version.h>

#include "kg_internal.h"

struct kg_dp kg;
struct kg_lcore_stats kg_stats[RTE_MAX_LCORE];

#define MBUF_CACHE 256

int
kg_eal_init(int argc, char **argv)
{
	sigset_t all;
	int ret;

	if (kg.eal_ready)
		return -EALREADY;
	/* Signals belong to the Python main thread: block them here so that
	 * EAL's threads, created from this one, inherit the mask. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);

	ret = rte_eal_init(argc, argv);
	if (ret < 0)
		return rte_errno ? -rte_errno : -EINVAL;
	kg.eal_ready = true;
	/* let dpdk-dumpcap / dpdk-pdump (secondary processes) capture the
	 * ports; without shared memory (--no-huge) they cannot attach anyway */
	if (rte_pdump_init() < 0)
		RTE_LOG(WARNING, EAL, "kni-gw: packet capture unavailable: %s\n",
			rte_strerror(rte_errno));
	return 0;
}

int
kg_lcore_enabled(unsigned int lcore_id)
{
	return lcore_id < RTE_MAX_LCORE && rte_lcore_is_enabled(lcore_id);
}

/* Every lcore --config names must be enabled; record each port's lcores.
 * The rx queues each lcore polls are planned with the ports (port.c). */
static int
roles_setup(const struct kg_config *cfg, char *err, unsigned int errlen)
{
	unsigned int i, j;

	memset(kg.lcore, 0, sizeof(kg.lcore));
	for (i = 0; i < cfg->nb_ports; i++) {
		const struct kg_port_conf *pc = &cfg->port[i];
		struct kg_port *p = &kg.port[i];
		unsigned int l[KG_RX_LCORES + 2], n = 0;

		if (pc->nb_rx_lcores == 0 || pc->nb_rx_lcores > KG_RX_LCORES) {
			kg_err(err, errlen, "port %u: between 1 and %d rx lcores",
			       pc->port, KG_RX_LCORES);
			return -EINVAL;
		}
		for (j = 0; j < pc->nb_rx_lcores; j++)
			l[n++] = pc->lcore_rx[j];
		l[n++] = pc->lcore_tx;
		l[n++] = pc->lcore_exc;
		for (j = 0; j < n; j++) {
			if (!kg_lcore_enabled(l[j])) {
				kg_err(err, errlen,
				       "lcore %u (port %u) is not enabled by -l/-c",
				       l[j], pc->port);
				return -EINVAL;
			}
			kg.lcore[l[j]].active = true;
		}
		p->port_id = pc->port;
		p->n_rxl = pc->nb_rx_lcores;
		for (j = 0; j < pc->nb_rx_lcores; j++)
			p->rxl[j] = pc->lcore_rx[j];
		p->lcore_tx = pc->lcore_tx;
		p->lcore_exc = pc->lcore_exc;
		snprintf(p->ifname, sizeof(p->ifname), "%s", pc->ifname);
		kg.lcore[pc->lcore_tx].tx[kg.lcore[pc->lcore_tx].n_tx++] = (uint8_t)i;
		kg.lcore[pc->lcore_exc].exc[kg.lcore[pc->lcore_exc].n_exc++] = (uint8_t)i;
	}
	return 0;
}

/* Pool: every place that can hold an mbuf at once, plus lcore caches. */
static unsigned int
pool_size(const struct kg_config *cfg, unsigned int nb_lcores)
{
	unsigned int n = 0, i;

	for (i = 0; i < kg.nb_ports; i++)
		n += kg.port[i].nb_rxq * cfg->rx_desc   /* wire queues */
		   + kg.port[i].nb_txq * cfg->tx_desc
		   + cfg->rx_desc + cfg->tx_desc        /* vEth queues */
		   + 3 * cfg->fifo_size                 /* to_kernel (two) + tx fifos */
		   + 4 * cfg->burst;                    /* bursts in flight */
	/* not rounded to a power of two: the memory is per mbuf, and a
	 * rounding could double it for one more queue */
	return n + (nb_lcores + 1) * MBUF_CACHE * 3 / 2;
}

static bool
any_port_af_xdp(void)
{
	struct rte_eth_dev_info info;
	unsigned int i;

	for (i = 0; i < kg.nb_ports; i++)
		if (rte_eth_dev_info_get(kg.port[i].port_id, &info) == 0 &&
		    strcmp(info.driver_name, "net_af_xdp") == 0)
			return true;
	return false;
}

/* rte_pktmbuf_pool_create(), on the driver kg_pool_ops() chooses (pool.c),
 * with objects packed end to end when asked: RTE_MEMPOOL_F_NO_IOVA_CONTIG
 * lets an object cross a page boundary. */
static struct rte_mempool *
pool_create(const struct kg_config *cfg, bool packed)
{
	struct rte_pktmbuf_pool_private priv = {
		.mbuf_data_room_size = (uint16_t)cfg->mbuf_size,
	};
	struct rte_mempool *mp;
	int ret;

	mp = rte_mempool_create_empty("kg_mbuf_pool", cfg->mbufs,
				      sizeof(struct rte_mbuf) + cfg->mbuf_size,
				      cfg->mbuf_cache, sizeof(priv), rte_socket_id(),
				      packed ? RTE_MEMPOOL_F_NO_IOVA_CONTIG : 0);
	if (mp == NULL)
		return NULL;
	ret = rte_mempool_set_ops_byname(mp, kg_pool_ops(), NULL);
	if (ret != 0)
		goto fail;
	rte_pktmbuf_pool_init(mp, &priv);
	ret = rte_mempool_populate_default(mp);
	if (ret < 0)
		goto fail;
	rte_mempool_obj_iter(mp, rte_pktmbuf_init, NULL);
	return mp;
fail:
	rte_mempool_free(mp);
	rte_errno = -ret;       /* for the caller's message */
	return NULL;
}

/* net_af_xdp (DPDK 22.11) registers the pool as its umem: from the page
 * of the pool's first memory chunk, populated_size x object size bytes
 * long. That holds only if the objects lie end to end; where they skip
 * page boundaries (hugepages: some bytes a page; --no-huge: one object
 * per 4 KiB page) the last objects lie past the umem's end, the kernel
 * drops the fill-ring entries that carry them, and every such mbuf is
 * lost, with the port's reception, once the pool's ring hands them out.
 * Those objects are taken out of the pool here and never used.
 * Packed (no hugepages), objects cross 4 KiB pages: fine for AF_XDP in copy
 * mode (veth, and any driver without zero-copy), but a zero-copy driver
 * refuses chunks that cross pages its DMA map does not join, which
 * ordinary pages are not: zero-copy AF_XDP needs hugepages. */
struct umem_span {
	uintptr_t base;
	uint64_t size, frame;
	unsigned int past;
};

/* the kernel's test of a fill entry (xp_check_unaligned), on the address
 * the PMD puts there: the object's header, from the umem's base */
static bool
umem_past(const struct rte_mempool *mp, const struct umem_span *u, const void *obj)
{
	uint64_t off = (uintptr_t)obj - mp->header_size - u->base;

	return off >= u->size || off + u->frame > u->size;
}

static void
umem_count(struct rte_mempool *mp, void *arg, void *obj, unsigned int idx)
{
	struct umem_span *u = arg;

	(void)idx;
	u->past += umem_past(mp, u, obj);
}

static int
umem_fit(struct rte_mempool *mp, char *err, unsigned int errlen)
{
	uintptr_t first = (uintptr_t)STAILQ_FIRST(&mp->mem_list)->addr;
	struct umem_span u = {
		.base = first & ~((uintptr_t)getpagesize() - 1),
		.frame = rte_mempool_calc_obj_size(mp->elt_size, mp->flags, NULL),
	};
	unsigned int i, n = mp->size, in = 0;
	void **objs;

	u.size = (uint64_t)mp->populated_size * u.frame + (first - u.base);
	rte_mempool_obj_iter(mp, umem_count, &u);
	if (u.past == 0)
		return 0;
	objs = malloc(n * sizeof(*objs));
	kg.withheld = malloc(u.past * sizeof(*kg.withheld));
	if (objs == NULL || kg.withheld == NULL ||
	    rte_mempool_ops_dequeue_bulk(mp, objs, n) != 0) {
		free(objs);
		kg_err(err, errlen, "cannot sort the mbuf pool for net_af_xdp's umem");
		return -ENOMEM;
	}
	/* back in their order, but for the ones past the umem */
	for (i = 0; i < n; i++) {
		if (umem_past(mp, &u, objs[i]))
			kg.withheld[kg.nb_withheld++] = objs[i];
		else
			objs[in++] = objs[i];
	}
	rte_mempool_ops_enqueue_bulk(mp, objs, in);
	free(objs);
	return 0;
}

int
kg_setup(struct kg_config *cfg, char *err, unsigned int errlen)
{
	unsigned int i, nb_lcores = 0, avail;
	bool af_xdp;
	int ret;

	if (!kg.eal_ready) {
		kg_err(err, errlen, "EAL is not initialised");
		return -EINVAL;
	}
	if (cfg->nb_ports == 0 || cfg->nb_ports > KG_MAX_PORTS) {
		kg_err(err, errlen, "between 1 and %d ports", KG_MAX_PORTS);
		return -EINVAL;
	}
	if (cfg->burst == 0 || cfg->burst > KG_BURST_MAX ||
	    !rte_is_power_of_2(cfg->fifo_size)) {
		kg_err(err, errlen, "bad burst %u or fifo size %u", cfg->burst,
		       cfg->fifo_size);
		return -EINVAL;
	}
	avail = rte_eth_dev_count_avail();
	memset(&kg.port, 0, sizeof(kg.port));
	kg.nb_ports = 0;
	for (i = 0; i < cfg->nb_ports; i++) {
		const struct kg_port_conf *pc = &cfg->port[i];

		if (!rte_eth_dev_is_valid_port(pc->port)) {
			kg_err(err, errlen,
			       "port %u does not exist: EAL found %u port(s) "
			       "(add one with -a PCI or --vdev, or fix -p)",
			       pc->port, avail);
			return -ENODEV;
		}
	}
	kg.nb_ports = cfg->nb_ports;
	ret = roles_setup(cfg, err, errlen);
	if (ret == 0)
		ret = kg_port_plan_all(cfg, err, errlen);
	if (ret < 0) {
		kg.nb_ports = 0;
		return ret;
	}
	for (i = 0; i < RTE_MAX_LCORE; i++)
		nb_lcores += kg.lcore[i].active;

	kg.burst = cfg->burst;
	/* quiet passes (kg_lcore_loop) only where a fifo holds twice what
	 * producers at full bursts put in while its consumer passes it over:
	 * --fifo-size 64 with bursts of 32 does not */
	kg.quiet_mask = cfg->fifo_size >= 2 * KG_QUIET_PASSES * cfg->burst ? KG_QUIET_PASSES - 1 : 0;
	kg.idle_sleep_us = cfg->idle_sleep_us;
	kg.exc_poll_cycles = rte_get_tsc_hz() / 1000000 * KG_EXC_POLL_US;
	kg.cache_renew_cycles = rte_get_tsc_hz() / 1000 * KG_CACHE_RENEW_MS;
	for (i = 0; i < cfg->nb_ports; i++) {
		unsigned int c, r, n = kg.port[i].n_rxl;

		for (r = 0; r < n; r++)
		for (c = 0; c < KG_POLICE_MAX; c++) {
			struct kg_bucket *b = &kg.port[i].police[r][c];
			uint64_t hz = rte_get_tsc_hz();
			unsigned int pps = cfg->police_pps[c];

			memset(b, 0, sizeof(*b));
			if (pps == KG_POLICE_UNLIMITED)
				continue;      /* cost 0: not policed */
			if (pps == 0) {
				/* drop all: no credit ever reaches the cost */
				b->cost = UINT64_MAX;
				continue;
			}
			/* each rx lcore of the port meters its share */
			b->cost = hz * n / pps;
			if (b->cost == 0)
				b->cost = 1;
			b->depth = b->cost * RTE_MAX(cfg->police_burst[c] / n, 1u);
			b->credit = b->depth;
			b->last = rte_rdtsc();
		}
	}

	if (cfg->mbufs == 0)
		cfg->mbufs = pool_size(cfg, nb_lcores);
	cfg->mbuf_cache = RTE_MIN(MBUF_CACHE, cfg->mbufs / 2);
	if (cfg->mbuf_size == 0)
		cfg->mbuf_size = RTE_MBUF_DEFAULT_BUF_SIZE;
	if (cfg->mbuf_size <= RTE_PKTMBUF_HEADROOM || cfg->mbuf_size > UINT16_MAX) {
		kg_err(err, errlen, "bad mbuf size %u", cfg->mbuf_size);
		return -EINVAL;
	}
	/* Without hugepages, objects that keep off page boundaries take a 4 KiB
	 * page each; packed, they also fit net_af_xdp's umem (umem_fit). */
	af_xdp = any_port_af_xdp();
	kg.pool = pool_create(cfg, af_xdp && !rte_eal_has_hugepages());
	if (kg.pool == NULL) {
		kg_err(err, errlen,
		       "cannot create a pool of %u mbufs: %s (give EAL more "
		       "memory with -m/--socket-mem, or reserve more hugepages)",
		       cfg->mbufs, rte_strerror(rte_errno));
		return -ENOMEM;
	}
	if (af_xdp) {
		ret = umem_fit(kg.pool, err, errlen);
		if (ret < 0)
			return ret;
	}

	ret = kg_fib_create(&cfg->fib, err, errlen);
	if (ret < 0)
		return ret;
	memset(kg_stats, 0, sizeof(kg_stats));
	return kg_port_setup_all(cfg, err, errlen);
}

int
kg_run(void)
{
	int ret;

	__atomic_store_n(&kg.stop, false, __ATOMIC_RELEASE);
	__atomic_store_n(&kg.running, true, __ATOMIC_RELEASE);
	ret = rte_eal_mp_remote_launch(kg_lcore_loop, NULL, CALL_MAIN);
	rte_eal_mp_wait_lcore();
	__atomic_store_n(&kg.running, false, __ATOMIC_RELEASE);
	return ret;
}

void
kg_stop(void)
{
	__atomic_store_n(&kg.stop, true, __ATOMIC_RELEASE);
}

void
kg_teardown(void)
{
	if (!kg.eal_ready)
		return;
	kg_port_close_all();
	kg.nb_ports = 0;
	kg_fib_free();
	kg_dns_free();
	if (kg.pool) {
		rte_mempool_free(kg.pool);
		kg.pool = NULL;
	}
	free(kg.withheld);
	kg.withheld = NULL;
	kg.nb_withheld = 0;
	kg_rcu_free();
	rte_pdump_uninit();
	rte_eal_cleanup();
	kg.eal_ready = false;
}

int
kg_stats_read(struct kg_port_counters *out, unsigned int n)
{
	const unsigned int nfield = sizeof(struct kg_port_counters) /
				    sizeof(unsigned long long);
	unsigned int i, l, f;

	n = RTE_MIN(n, kg.nb_ports);
	for (i = 0; i < n; i++) {
		unsigned long long *dst = (unsigned long long *)&out[i];

		memset(&out[i], 0, sizeof(out[i]));
		for (l = 0; l < RTE_MAX_LCORE; l++) {
			const unsigned long long *src;

			if (!kg.lcore[l].active)
				continue;
			src = (const unsigned long long *)&kg_stats[l].port[i];
			for (f = 0; f < nfield; f++)
				dst[f] += __atomic_load_n(&src[f],
							  __ATOMIC_RELAXED);
		}
	}
	return (int)n;
}

int
kg_stats_read_lcore(unsigned int lcore, struct kg_port_counters *out, unsigned int n)
{
	const unsigned int nfield = sizeof(struct kg_port_counters) /
				    sizeof(unsigned long long);
	unsigned int i, f;

	if (lcore >= RTE_MAX_LCORE || !kg.lcore[lcore].active)
		return -ENOENT;
	n = RTE_MIN(n, kg.nb_ports);
	for (i = 0; i < n; i++) {
		unsigned long long *dst = (unsigned long long *)&out[i];
		const unsigned long long *src = (const unsigned long long *)&kg_stats[lcore].port[i];

		for (f = 0; f < nfield; f++)
			dst[f] = __atomic_load_n(&src[f], __ATOMIC_RELAXED);
	}
	return (int)n;
}

unsigned int
kg_mbufs_in_use(void)
{
	unsigned int n = kg.pool ? rte_mempool_in_use_count(kg.pool) : 0;

	/* the count reads the caches unlocked: it may come out short */
	return n > kg.nb_withheld ? n - kg.nb_withheld : 0;
}

unsigned int
kg_mbufs_total(void)
{
	return kg.pool ? kg.pool->size - kg.nb_withheld : 0;
}

unsigned int
kg_mbufs_withheld(void)
{
	return kg.nb_withheld;
}

const char *
kg_mbuf_pool_ops(void)
{
	return kg.pool ? rte_mempool_get_ops(kg.pool->ops_index)->name : "";
}

const char *
kg_dpdk_version(void)
{
	return rte_version();
}

const char *
kg_strerror(int err)
{
	return rte_strerror(err < 0 ? -err : err);
}
