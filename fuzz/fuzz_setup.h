/* SPDX-License-Identifier: BSD-3-Clause
 *
 * fuzz_setup.h - what every fuzz harness starts with: EAL without hugepages
 * or devices, and the fast path's tables (small), or abort.
 */
#ifndef KG_FUZZ_SETUP_H
#define KG_FUZZ_SETUP_H

#include <stdio.h>
#include <stdlib.h>

#include <rte_eal.h>

#include "kg_internal.h"

static inline void
fuzz_tables(void)
{
	char *eal[] = { "fuzz", "--no-huge", "-m", "256", "--no-shconf", "--no-pci",
			"--log-level=error", NULL };
	struct kg_fib_conf conf = { .routes4 = 1024, .tbl8s4 = 64, .routes6 = 1024, .tbl8s6 = 64 };
	char err[256] = "";

	if (rte_eal_init(7, eal) < 0 || kg_fib_create(&conf, err, sizeof(err)) < 0) {
		fprintf(stderr, "fuzz: set-up failed: %s\n", err);
		abort();
	}
}

#endif /* KG_FUZZ_SETUP_H */
