/* SPDX-License-Identifier: BSD-3-Clause
 *
 * rcu.c - the writer side of the lcores' QSBR (rcu.h has the picture).
 */
#include <errno.h>

#include <rte_malloc.h>

#include "kg_internal.h"

struct rte_rcu_qsbr *kg_qsbr;

int
kg_rcu_create(void)
{
	size_t sz;

	if (kg_qsbr)
		return 0;
	sz = rte_rcu_qsbr_get_memsize(RTE_MAX_LCORE);
	kg_qsbr = rte_zmalloc("kg_qsbr", sz, RTE_CACHE_LINE_SIZE);
	if (kg_qsbr == NULL)
		return -ENOMEM;
	if (rte_rcu_qsbr_init(kg_qsbr, RTE_MAX_LCORE) < 0) {
		kg_rcu_free();
		return -ENOMEM;
	}
	return 0;
}

void
kg_rcu_free(void)
{
	rte_free(kg_qsbr);
	kg_qsbr = NULL;
}

/* Wait until every lcore has passed a quiescent point (or sleeps), so that
 * none still acts on what the control thread has just changed. */
void
kg_quiesce(void)
{
	if (__atomic_load_n(&kg.running, __ATOMIC_ACQUIRE) && kg_qsbr)
		rte_rcu_qsbr_synchronize(kg_qsbr, RTE_QSBR_THRID_INVALID);
}
