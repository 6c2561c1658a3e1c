/* SPDX-License-Identifier: BSD-3-Clause
 *
 * kg_internal.h - dataplane state shared by the C files (never by Python).
 *
 * Ownership: every field says who writes (w) and who reads (r).
 *   ctl    = the control thread (Python main thread, via cffi)
 *   setup  = the dataplane thread before kg_run() launches the lcores
 *   rx/tx/exc = the rx, tx or exception lcore of that port
 */
#ifndef KG_INTERNAL_H
#define KG_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <rte_common.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>

#include "datapath/police.h"
#include "kni_gw.h"
#include "rcu.h"
#include "tables.h"

#define KG_BURST_MAX 64
#define KG_IDLE_SPINS 256 /* empty polls before the first back-off sleep */
#define KG_TX_BURSTS 4     /* bursts a tx stage may send per pass, see stage_tx */
#define KG_EXC_POLL_US 50 /* vEthN read interval of a busy lcore, see stage_exc */
#define KG_EXC_CLOCK_PASSES 8 /* a busy lcore reads the clock for it every 8 passes */
_Static_assert((KG_EXC_CLOCK_PASSES & (KG_EXC_CLOCK_PASSES - 1)) == 0, "a power of 2");
#define KG_QUIET_PASSES 4 /* exception and tx stages that found nothing, polled every 4 passes
			   while the lcore's rx stages have frames (kg_lcore_loop) */
_Static_assert((KG_QUIET_PASSES & (KG_QUIET_PASSES - 1)) == 0, "a power of 2");
#define KG_CACHE_RENEW_MS 1000 /* an lcore's mbuf cache goes back to the pool, see cache_renew */
#ifndef KG_POOL_HOT
#define KG_POOL_HOT 2048       /* free mbufs that cycle first (pool.c) */
#endif

_Static_assert(KG_DROP_MAX == 15, "kg_port_counters.drops[] size");
_Static_assert(KG_DNS_ADDRS_MAX == 32, "kg_dns_conf.addr4[], addr6[] size");
_Static_assert(KG_POLICE_MAX == 11, "kg_port_counters.policed[] size");

_Static_assert(KG_PUNT_MAX == 17, "kg_port_counters.punts[] size");

#define KG_RXQ_MAX 16      /* rx queues per port */
#define KG_TXQ_FIFO 0xff   /* kg_port.txq[]: no tx queue of its own, forward
			    * through the port's tx fifo (its tx lcore sends) */

_Static_assert(sizeof(((struct kg_port_conf *)0)->lcore_rx) ==
	       KG_RX_LCORES * sizeof(unsigned short), "kg_port_conf.lcore_rx[] size");

/* Queues. A port has nb_rxq rx queues, queue q polled by its rx lcore
 * rxl[q % n_rxl] (one per rx lcore; more only where the driver keeps every
 * queue live, see port.c rx_queues). Tx queue 0 belongs to the port's tx
 * lcore: the kernel's frames (tx fifo) and its own forwarded frames. Every
 * other lcore that forwards (an rx lcore of any port) owns tx queue
 * txq[lcore] of every port and sends its forwarded frames there itself, so
 * that no forwarded frame crosses a core; where the driver has too few tx
 * queues, txq[lcore] is KG_TXQ_FIFO and the tx fifo carries them. */
struct kg_port {
	uint16_t port_id;     /* setup: w */
	uint16_t exc_port_id; /* setup: w; the vEthN ethdev */
	uint16_t lcore_tx, lcore_exc; /* setup: w */
	uint16_t rxl[KG_RX_LCORES];   /* setup: w; the rx lcores */
	uint16_t n_rxl;               /* setup: w */
	uint16_t nb_rxq, nb_txq;      /* setup: w */
	uint8_t rx_spread;            /* setup: w; KG_SPREAD_* */
	bool tx_fifo_fallback;        /* setup: w; some txq[] are KG_TXQ_FIFO */
	uint8_t txq[RTE_MAX_LCORE];   /* setup: w, lcores: r */
	bool restartable;     /* setup: w; false when stop cannot be undone */
	bool started;         /* ctl: w (release), lcores: r (acquire) */
	bool admin_up;        /* ctl: w (release), lcores: r (acquire) */
	struct rte_ring *to_kernel; /* rx lcores: produce, exc: consume */
	struct rte_ring *to_kernel_hi; /* the same, for what keeps links and routing up
					* (ARP, ND, routing protocols, ICMP to us): drained first */
	struct rte_ring *tx;        /* exc (+ forwarding lcores without a txq): produce, tx: consume */
	uint64_t exc_last_poll;     /* exc: w, exc: r (TSC of the last vEthN read) */
	/* per rx lcore of the port (its slot in rxl[]): setup w, then that lcore w and r.
	 * Each takes 1/n_rxl of the class's rate, so the port's limit holds. */
	struct kg_bucket police[KG_RX_LCORES][KG_POLICE_MAX];
	/* What the port and vEthN's device carry (control/mtu.c, datapath/segs.h) */
	bool rx_segs, tx_segs;         /* setup: w; scattered rx, multi-segment tx on */
	bool exc_rx_segs, exc_tx_segs; /* setup: w; the same on vEthN's device */
	uint32_t rx_room, exc_rx_room; /* setup: w; longest frame rx puts in one mbuf */
	uint32_t tx_max_frame;         /* setup: w; longest frame the port sends */
	uint32_t exc_max_frame;        /* ctl: w (atomic), exc: r; longest frame vEthN's device takes */
	uint16_t exc_mtu;              /* ctl: w; MTU of vEthN's device, as DPDK has it */
	uint16_t max_mtu;              /* setup: w; the largest MTU both carry */
	char ifname[KG_IFNAMSIZ];
	char exc_name[48];    /* vdev name of the vEthN device */
};

/* One rx queue an lcore polls. */
struct kg_rxq_ref {
	uint8_t port;   /* index into kg_dp.port[] */
	uint8_t queue;  /* rx queue id */
	uint8_t slot;   /* this lcore's slot in the port's rxl[] (its policers) */
};

/* What one lcore does: the rx queues it polls, the ports whose tx and
 * exception work it runs. */
struct kg_lcore {
	uint16_t n_rx, n_tx, n_exc;  /* setup: w, lcore: r */
	struct kg_rxq_ref rx[KG_MAX_PORTS * KG_RXQ_MAX];
	uint8_t tx[KG_MAX_PORTS];    /* indexes into kg_dp.port[] */
	uint8_t exc[KG_MAX_PORTS];
	bool active;
};

/* Per-lcore counters: one cache-aligned block per lcore, written by that
 * lcore only, read (snapshot, relaxed loads) by ctl. */
struct kg_lcore_stats {
	struct kg_port_counters port[KG_MAX_PORTS];
} __rte_cache_aligned;

struct kg_dp {
	unsigned int nb_ports;                /* setup: w */
	struct kg_port port[KG_MAX_PORTS];
	struct kg_lcore lcore[RTE_MAX_LCORE]; /* setup: w */
	struct rte_mempool *pool;             /* setup: w */
	void **withheld;                      /* setup: w; mbufs kept out of the pool */
	unsigned int nb_withheld;             /* (eal.c, umem_fit) */
	unsigned int burst;                   /* setup: w */
	unsigned int quiet_mask;              /* setup: w; KG_QUIET_PASSES - 1, or 0 (no pass
						 skipped) where the fifos are too small for it */
	unsigned int idle_sleep_us;           /* setup: w */
	uint64_t exc_poll_cycles;             /* setup: w; KG_EXC_POLL_US in TSC cycles */
	uint64_t cache_renew_cycles;          /* setup: w; KG_CACHE_RENEW_MS in TSC cycles */
	bool stop;                            /* ctl: w, lcores: r (atomic) */
	bool eal_ready;                       /* setup: w */
	bool running;                         /* dataplane thread: w, ctl: r */
};

extern KG_LOCAL struct kg_dp kg;
extern KG_LOCAL struct kg_lcore_stats kg_stats[RTE_MAX_LCORE];

/* datapath/loop.c */
int kg_lcore_loop(void *arg);

/* control/pool.c */
const char *kg_pool_ops(void);
void kg_pool_renew(struct rte_mempool *mp, struct rte_mempool_cache *c);

/* control/port.c */
int kg_port_plan_all(const struct kg_config *cfg, char *err, unsigned int errlen);
int kg_port_setup_all(struct kg_config *cfg, char *err, unsigned int errlen);
void kg_port_close_all(void);

/* control/mtu.c */
int kg_mtu_setup(struct kg_port *p, char *err, unsigned int errlen);
int kg_mtu_set(struct kg_port *p, uint16_t mtu, char *err, unsigned int errlen);
uint16_t kg_mtu_max(const struct kg_port *p);

/* control/tables.c */
void kg_fib_free(void);

/* control/dns.c */
void kg_dns_free(void);

#define kg_err(err, errlen, ...) snprintf((err), (errlen), __VA_ARGS__)

#endif /* KG_INTERNAL_H */
