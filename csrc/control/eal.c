/* SPDX-License-Identifier: BSD-3-Clause
 *
 * eal.c - EAL start and stop, the mbuf pool, lcore roles, statistics.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <rte_eal.h>
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

static void
lcore_add(uint8_t *list, uint16_t *n, unsigned int pi)
{
	list[(*n)++] = (uint8_t)pi;
}

static int
roles_setup(const struct kg_config *cfg, char *err, unsigned int errlen)
{
	unsigned int i;

	memset(kg.lcore, 0, sizeof(kg.lcore));
	for (i = 0; i < cfg->nb_ports; i++) {
		const struct kg_port_conf *pc = &cfg->port[i];
		unsigned int l[3] = { pc->lcore_rx, pc->lcore_tx, pc->lcore_exc };
		unsigned int j;

		for (j = 0; j < 3; j++) {
			if (!kg_lcore_enabled(l[j])) {
				kg_err(err, errlen,
				       "lcore %u (port %u) is not enabled by -l/-c",
				       l[j], pc->port);
				return -EINVAL;
			}
			kg.lcore[l[j]].active = true;
		}
		lcore_add(kg.lcore[pc->lcore_rx].rx, &kg.lcore[pc->lcore_rx].n_rx, i);
		lcore_add(kg.lcore[pc->lcore_tx].tx, &kg.lcore[pc->lcore_tx].n_tx, i);
		lcore_add(kg.lcore[pc->lcore_exc].exc, &kg.lcore[pc->lcore_exc].n_exc, i);
	}
	return 0;
}

/* Pool: every place that can hold an mbuf at once, plus lcore caches. */
static unsigned int
pool_size(const struct kg_config *cfg, unsigned int nb_lcores)
{
	unsigned int per_port, n, pow2 = 1;

	per_port = 2 * cfg->rx_desc + 2 * cfg->tx_desc /* wire + vEth queues */
		 + 3 * cfg->fifo_size                  /* to_kernel (two) + tx fifos */
		 + 4 * cfg->burst;                     /* bursts in flight */
	n = per_port * cfg->nb_ports + (nb_lcores + 1) * MBUF_CACHE * 3 / 2;
	while (pow2 - 1 < n)
		pow2 <<= 1;
	return pow2 - 1;
}

int
kg_setup(struct kg_config *cfg, char *err, unsigned int errlen)
{
	unsigned int i, nb_lcores = 0, avail;
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
	ret = roles_setup(cfg, err, errlen);
	if (ret < 0)
		return ret;
	for (i = 0; i < RTE_MAX_LCORE; i++)
		nb_lcores += kg.lcore[i].active;

	kg.burst = cfg->burst;
	kg.idle_sleep_us = cfg->idle_sleep_us;
	kg.exc_poll_cycles = rte_get_tsc_hz() / 1000000 * KG_EXC_POLL_US;
	for (i = 0; i < cfg->nb_ports; i++) {
		unsigned int c;

		for (c = 0; c < KG_POLICE_MAX; c++) {
			struct kg_bucket *b = &kg.port[i].police[c];
			uint64_t hz = rte_get_tsc_hz();

			memset(b, 0, sizeof(*b));
			if (cfg->police_pps[c] == KG_POLICE_UNLIMITED)
				continue;      /* cost 0: not policed */
			if (cfg->police_pps[c] == 0) {
				/* drop all: no credit ever reaches the cost */
				b->cost = UINT64_MAX;
				continue;
			}
			b->cost = hz / cfg->police_pps[c];
			if (b->cost == 0)
				b->cost = 1;
			b->depth = b->cost * RTE_MAX(cfg->police_burst[c], 1u);
			b->credit = b->depth;
			b->last = rte_rdtsc();
		}
	}
	kg.nb_ports = cfg->nb_ports;
	for (i = 0; i < cfg->nb_ports; i++) {
		struct kg_port *p = &kg.port[i];

		p->port_id = cfg->port[i].port;
		p->lcore_rx = cfg->port[i].lcore_rx;
		p->lcore_tx = cfg->port[i].lcore_tx;
		p->lcore_exc = cfg->port[i].lcore_exc;
		snprintf(p->ifname, sizeof(p->ifname), "%s", cfg->port[i].ifname);
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
	kg.pool = rte_pktmbuf_pool_create("kg_mbuf_pool", cfg->mbufs,
					  cfg->mbuf_cache, 0,
					  (uint16_t)cfg->mbuf_size,
					  rte_socket_id());
	if (kg.pool == NULL) {
		kg_err(err, errlen,
		       "cannot create a pool of %u mbufs: %s (give EAL more "
		       "memory with -m/--socket-mem, or reserve more hugepages)",
		       cfg->mbufs, rte_strerror(rte_errno));
		return -ENOMEM;
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
	if (kg.pool) {
		rte_mempool_free(kg.pool);
		kg.pool = NULL;
	}
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
	return kg.pool ? rte_mempool_in_use_count(kg.pool) : 0;
}

unsigned int
kg_mbufs_total(void)
{
	return kg.pool ? kg.pool->size : 0;
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
