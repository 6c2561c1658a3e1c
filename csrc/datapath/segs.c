/* SPDX-License-Identifier: BSD-3-Clause
 *
 * segs.c - the rx stage's way with a chain (segs.h), driven by tests
 * without ports: kg_segs_test() cuts a frame into a chain of real mbufs
 * and does what stage_rx (loop.c) does with it. Keep the two in step.
 */
#include <errno.h>
#include <string.h>

#include "datapath/segs.h"
#include "kg_internal.h"

static struct rte_mempool *test_pool;

/* A chain of mbufs holding frame: `first` bytes after first_off bytes of
 * headroom, then `seg` bytes a segment (no headroom, as a TAP fills them). */
static struct rte_mbuf *
chain_of(const unsigned char *frame, uint32_t len, uint32_t first_off, uint32_t first,
	 uint32_t seg)
{
	struct rte_mbuf *m, *last;
	uint32_t done, k;

	m = rte_pktmbuf_alloc(test_pool);
	if (m == NULL)
		return NULL;
	k = RTE_MIN(first, len);
	if (first_off + k > m->buf_len) {
		rte_pktmbuf_free(m);
		return NULL;
	}
	m->data_off = (uint16_t)first_off;
	memcpy(rte_pktmbuf_mtod(m, uint8_t *), frame, k);
	m->data_len = (uint16_t)k;
	for (done = k, last = m; done < len; done += k) {
		struct rte_mbuf *s = rte_pktmbuf_alloc(test_pool);

		if (s == NULL) {
			rte_pktmbuf_free(m);
			return NULL;
		}
		k = RTE_MIN(seg, len - done);
		k = RTE_MIN(k, (uint32_t)s->buf_len);
		s->data_off = 0;
		memcpy(rte_pktmbuf_mtod(s, uint8_t *), frame + done, k);
		s->data_len = (uint16_t)k;
		last->next = s;
		last = s;
		m->nb_segs++;
	}
	m->pkt_len = len;
	return m;
}

int
kg_segs_test(unsigned int in, const unsigned char *frame, unsigned int len,
	     unsigned int first_off, unsigned int first, unsigned int seg, int tx_segs,
	     struct kg_verdict *v, unsigned char *out, unsigned int *out_len)
{
	struct rte_mbuf *m, *s;
	_Alignas(struct rte_ether_hdr) uint8_t head[KG_SEGS_HEAD];  /* as in stage_rx */
	uint8_t *frame_view;
	uint32_t flen, cap, sum = 0;
	unsigned int nsegs = 0;

	if (in >= KG_MAX_PORTS || len == 0 || first == 0 || seg == 0)
		return -EINVAL;
	if (test_pool == NULL)
		test_pool = rte_pktmbuf_pool_create("kg_segs_test", 2047, 0, 0,
						    RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
	if (test_pool == NULL)
		return -ENOMEM;
	m = chain_of(frame, len, first_off, first, seg);
	if (m == NULL)
		return -ENOMEM;

	/* stage_rx */
	frame_view = rte_pktmbuf_mtod(m, uint8_t *);
	flen = rte_pktmbuf_data_len(m);
	cap = flen;
	if (m->nb_segs > 1)
		frame_view = kg_segs_head(m, head, &flen, &cap);
	if (kg_classify_frame(&kg_fib, in, frame_view, flen, v) == KG_VERDICT_FORWARD) {
		uint32_t n = kg_rewrite_frame(&kg_fib, frame_view, flen, v);

		if (m->nb_segs > 1 && !kg_segs_forward(m, frame_view, cap, n, tx_segs != 0)) {
			rte_pktmbuf_free(m);
			return 0;
		}
		if (n < m->data_len)
			rte_pktmbuf_trim(m, m->data_len - n);
	}

	/* the frame as it leaves, and the chain's bookkeeping checked */
	for (s = m; s != NULL; s = s->next) {
		uint32_t k = rte_pktmbuf_data_len(s);

		if (sum + k <= *out_len)
			memcpy(out + sum, rte_pktmbuf_mtod(s, uint8_t *), k);
		sum += k;
		nsegs++;
	}
	if (sum != m->pkt_len || nsegs != m->nb_segs || sum > *out_len) {
		rte_pktmbuf_free(m);
		return -EPROTO;
	}
	*out_len = sum;
	rte_pktmbuf_free(m);
	return (int)nsegs;
}
