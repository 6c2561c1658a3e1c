/* SPDX-License-Identifier: BSD-3-Clause
 *
 * segs.h - frames in several segments (chained mbufs), and frames too big
 * for the device they go to: what the rx and exception stages do with them.
 *
 * Chains come from a device with scattered rx: vEthN's TAP (it reads a
 * frame into as many mbufs as it needs: any kernel frame longer than one
 * mbuf), virtio-user with mergeable buffers, a NIC at an MTU larger than
 * one mbuf. net_af_packet and net_af_xdp never make chains (DPDK 22.11:
 * one mbuf per frame, no scattered rx).
 *
 * Classifying a chain. The classifier (classify.h) stays a pure function
 * over contiguous bytes: a chain is classified on a view of its first
 * KG_SEGS_HEAD bytes (the first segment itself when it holds them, else a
 * copy) with its true length. The classifier reads no further than an
 * IPv4 header with options (74 bytes) or the IPv6 header and the L4 ports
 * (58 bytes) whatever the length it is given: the fuzzer checks, under
 * ASan, that a KG_SEGS_HEAD-byte view gives the verdict of the whole frame.
 * Policing (police.h) looks at the view only: a chain's IPv6 extension
 * headers past it are not followed (its class is then by reason).
 *
 * Forwarding a chain. The rewrite is applied to the view and written back
 * into the segments; the Ethernet padding (what follows the IP packet) is
 * trimmed across segments (rte_pktmbuf_trim only trims in the last one).
 *
 * Sending. A device that cannot send chains (no RTE_ETH_TX_OFFLOAD_MULTI_SEGS;
 * net_af_xdp's tx sends pkt_len bytes from the first segment) gets a chain
 * linearized when it fits the first segment's buffer; otherwise the frame
 * is freed and counted under a *_too_big reason, as is a frame longer than
 * the device takes (vEthN's TAP refuses frames past its MTU and gives up
 * the rest of the burst with it).
 */
#ifndef KG_SEGS_H
#define KG_SEGS_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <rte_mbuf.h>

#include "kni_gw.h"

/* The view of a chain to classify: its first KG_SEGS_HEAD bytes (kni_gw.h)
 * at the address returned, the first segment's own data when it holds
 * them, else copied into buf (KG_SEGS_HEAD bytes, aligned at least as an
 * rte_ether_hdr, as an mbuf's data is: the classifier reads the view
 * through DPDK's header structs). *len: the frame's length; *cap: the
 * bytes readable at the address returned. */
static inline uint8_t *
kg_segs_head(const struct rte_mbuf *m, uint8_t *buf, uint32_t *len, uint32_t *cap)
{
	uint32_t n = RTE_MIN(m->pkt_len, (uint32_t)KG_SEGS_HEAD);

	*len = m->pkt_len;
	if (rte_pktmbuf_data_len(m) >= n) {
		*cap = rte_pktmbuf_data_len(m);
		return rte_pktmbuf_mtod(m, uint8_t *);
	}
	*cap = n;
	return (uint8_t *)(uintptr_t)rte_pktmbuf_read(m, 0, n, buf);
}

/* Copy n bytes into the chain from its start. */
static inline void
kg_segs_put(struct rte_mbuf *m, const uint8_t *src, uint32_t n)
{
	for (; m != NULL && n; m = m->next) {
		uint32_t k = RTE_MIN(n, (uint32_t)rte_pktmbuf_data_len(m));

		memcpy(rte_pktmbuf_mtod(m, uint8_t *), src, k);
		src += k;
		n -= k;
	}
}

/* Cut a frame, chained or not, to len bytes (<= its length): the segment
 * in which len ends keeps what comes before, the ones after are freed. */
static inline void
kg_segs_trim(struct rte_mbuf *m, uint32_t len)
{
	struct rte_mbuf *s = m, *rest;
	uint32_t off = 0;
	uint16_t n = 1;

	if (len >= m->pkt_len)
		return;
	while (off + rte_pktmbuf_data_len(s) < len && s->next != NULL) {
		off += rte_pktmbuf_data_len(s);
		s = s->next;
		n++;
	}
	s->data_len = (uint16_t)(len - off);
	rest = s->next;
	s->next = NULL;
	while (rest != NULL) {
		struct rte_mbuf *next = rest->next;

		rte_pktmbuf_free_seg(rest);
		rest = next;
	}
	m->nb_segs = n;
	m->pkt_len = len;
}

/* May m go to a device that takes frames of max_frame bytes at most, and
 * chains only if tx_segs? A chain for a device that takes none is
 * linearized when it fits the first segment's buffer. true: it may (m
 * may have become one segment); false: the caller frees and counts it. */
static inline bool
kg_segs_fit(struct rte_mbuf *m, bool tx_segs, uint32_t max_frame)
{
	if (unlikely(m->pkt_len > max_frame))
		return false;
	return m->nb_segs == 1 || tx_segs || rte_pktmbuf_linearize(m) == 0;
}

/* A chain classified FORWARD and rewritten on its view `head` (cap bytes,
 * from kg_segs_head): the rewrite written back, the frame trimmed to len,
 * and made sendable by the egress (kg_segs_fit). false: the egress cannot
 * send it (the caller frees and counts it). */
static inline bool
kg_segs_forward(struct rte_mbuf *m, const uint8_t *head, uint32_t cap, uint32_t len,
		bool tx_segs)
{
	if (head != rte_pktmbuf_mtod(m, const uint8_t *))
		kg_segs_put(m, head, cap);
	kg_segs_trim(m, len);
	return kg_segs_fit(m, tx_segs, UINT32_MAX);
}

/* The frames of a burst a device can take (kg_segs_fit), kept in order at
 * the start of pkts; the others are freed. Returns how many are kept. */
static inline unsigned int
kg_segs_filter(struct rte_mbuf **pkts, unsigned int n, bool tx_segs, uint32_t max_frame)
{
	unsigned int i, k = 0;

	for (i = 0; i < n; i++) {
		struct rte_mbuf *m = pkts[i];

		if (likely(m->nb_segs == 1 && m->pkt_len <= max_frame) ||
		    kg_segs_fit(m, tx_segs, max_frame))
			pkts[k++] = m;
		else
			rte_pktmbuf_free(m);
	}
	return k;
}

#endif /* KG_SEGS_H */
