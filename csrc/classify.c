/* SPDX-License-Identifier: BSD-3-Clause
 *
 * classify.c - what happens to one frame received on a wire port.
 *
 * A pure function over the frame's bytes: no DPDK state, no I/O, so it is
 * unit-tested and fuzzed without ports. The rx stage (lcore.c) sorts each
 * burst by its verdict: PUNT to the port's vEthN, FORWARD to an egress
 * port's tx fifo, or DROP with a counted reason.
 *
 * The fast path (FORWARD: routes, neighbours and local addresses mirrored
 * from the kernel) is not built yet, so every well-formed frame is punted
 * and the kernel decides, as DESIGN.md section 2 says it must for anything
 * the fast path cannot handle.
 */
#include "kni_gw.h"

#define ETH_HDR_LEN 14

int
kg_classify(const unsigned char *frame, unsigned int len,
	    unsigned short *out_port, int *reason)
{
	(void)frame;
	*out_port = 0;
	if (len < ETH_HDR_LEN) {
		/* a runt: nothing, not even the kernel, can use it */
		*reason = KG_DROP_MALFORMED;
		return KG_VERDICT_DROP;
	}
	*reason = 0;
	return KG_VERDICT_PUNT;
}
