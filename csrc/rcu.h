/* SPDX-License-Identifier: BSD-3-Clause
 *
 * rcu.h - the one QSBR variable and its life cycle, both sides.
 *
 * Readers are the lcores: each registers and goes online when its loop
 * starts, reports a quiescent state once per pass (nothing read from the
 * tables is held past it), goes offline while it sleeps idle (so that a
 * writer never waits for a sleeper) and unregisters when it stops.
 * The writer is the control thread: after an edit that an lcore may still
 * be acting on (a tbl8 group freed, a bucket range re-pointed, a port
 * stopped), kg_quiesce() waits until every online lcore has passed a
 * quiescent state. DPDK 22.11's rte_fib and rte_lpm6 have no RCU of their
 * own: their edits are fenced this way (see tables.h).
 */
#ifndef KG_RCU_H
#define KG_RCU_H

#include <rte_rcu_qsbr.h>

/* control/rcu.c: the writer side */
int kg_rcu_create(void);     /* idempotent; 0 or -ENOMEM */
void kg_rcu_free(void);
void kg_quiesce(void);

#ifndef KG_LOCAL
#define KG_LOCAL __attribute__((visibility("hidden")))
#endif
extern KG_LOCAL struct rte_rcu_qsbr *kg_qsbr;

/* the reader side, called by lcore `id` from its own loop */
static inline void
kg_rcu_reader_start(unsigned int id)
{
	rte_rcu_qsbr_thread_register(kg_qsbr, id);
	rte_rcu_qsbr_thread_online(kg_qsbr, id);
}

static inline void
kg_rcu_reader_quiescent(unsigned int id)
{
	rte_rcu_qsbr_quiescent(kg_qsbr, id);
}

static inline void
kg_rcu_reader_offline(unsigned int id)
{
	rte_rcu_qsbr_thread_offline(kg_qsbr, id);
}

static inline void
kg_rcu_reader_online(unsigned int id)
{
	rte_rcu_qsbr_thread_online(kg_qsbr, id);
}

static inline void
kg_rcu_reader_stop(unsigned int id)
{
	rte_rcu_qsbr_thread_offline(kg_qsbr, id);
	rte_rcu_qsbr_thread_unregister(kg_qsbr, id);
}

#endif /* KG_RCU_H */
