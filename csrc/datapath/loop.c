/* SPDX-License-Identifier: BSD-3-Clause
 *
 * loop.c - the polling loop: rx stage, exception stage, tx stage.
 *
 * One loop serves every role an lcore was given by --config. No system
 * call, printf or log in here, except the bounded idle back-off sleep and
 * the I/O the exception backend does by nature (TAP read/write).
 *
 * Accounting: every mbuf that enters is either handed to a fifo or device
 * (which then owns it) or freed here and counted under a drop reason.
 */
#include <time.h>

#include <rte_cycles.h>
#include <rte_prefetch.h>
#include <rte_vect.h>

#include "datapath/dns.h"
#include "datapath/rrl.h"
#include "datapath/segs.h"
#include "kg_internal.h"

#define load_relaxed(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define load_acquire(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)

/* Counter writes: the owning lcore is the only writer, so a plain add is
 * race-free; the store is done with relaxed atomics so that the control
 * thread's snapshot never reads a torn value. */
static inline void
ctr_add(unsigned long long *c, uint64_t v)
{
	__atomic_store_n(c, *c + v, __ATOMIC_RELAXED);
}

static inline void
drop_bulk(struct kg_port_counters *c, int reason, struct rte_mbuf **m,
	  unsigned int n)
{
	if (n == 0)
		return;
	rte_pktmbuf_free_bulk(m, n);
	ctr_add(&c->drops[reason], n);
}

/* Enqueue n mbufs to a fifo; free and count what did not fit. */
static inline unsigned int
fifo_put(struct rte_ring *r, struct rte_mbuf **m, unsigned int n,
	 struct kg_port_counters *c, int reason)
{
	unsigned int done;

	if (n == 0)
		return 0;
	done = rte_ring_enqueue_burst(r, (void **)m, n, NULL);
	drop_bulk(c, reason, m + done, n - done);
	return done;
}

/* The frames of a burst that a device can take for their size (segs.h),
 * kept at the start of m; the others are freed and counted under reason. */
static inline unsigned int
segs_filter(struct kg_port_counters *c, int reason, struct rte_mbuf **m,
	    unsigned int n, bool tx_segs, uint32_t max_frame)
{
	unsigned int k = kg_segs_filter(m, n, tx_segs, max_frame);

	if (unlikely(k < n))
		ctr_add(&c->drops[reason], n - k);
	return k;
}

/* The bytes of n frames. */
static inline uint64_t
burst_bytes(struct rte_mbuf **pkts, unsigned int n)
{
	uint64_t bytes = 0;
	unsigned int i;

	for (i = 0; i < n; i++)
		bytes += pkts[i]->pkt_len;
	return bytes;
}

/* Send n mbufs of `bytes` bytes in all on tx queue q of port p; free and
 * count what the port does not take. The caller owns q: its only writer.
 * Returns the number the port took. */
static inline unsigned int
tx_send(struct kg_port_counters *c, struct kg_port *p, uint16_t q,
	struct rte_mbuf **pkts, unsigned int n, uint64_t bytes)
{
	unsigned int sent;

	if (unlikely(!load_acquire(&p->admin_up) || !load_acquire(&p->started))) {
		drop_bulk(c, KG_DROP_PORT_DOWN_TX, pkts, n);
		return 0;
	}
	sent = rte_eth_tx_burst(p->port_id, q, pkts, n);
	if (unlikely(sent < n)) {
		/* the unsent are still ours: their lengths can be read */
		bytes -= burst_bytes(pkts + sent, n - sent);
		drop_bulk(c, KG_DROP_TX_NIC, pkts + sent, n - sent);
	}
	ctr_add(&c->tx_packets, sent);
	ctr_add(&c->tx_bytes, bytes);
	return sent;
}

/* tx stage: tx fifo -> port, on tx queue 0, which this lcore owns.
 * It drains up to KG_TX_BURSTS bursts a pass: taking one burst per pass, as
 * producers add one, would let a standing queue form after any hiccup, and
 * a thousand mbufs cycling through it fall out of the cache. */
static unsigned int
stage_tx(unsigned int lcore, struct kg_port *p, unsigned int pi)
{
	struct rte_mbuf *pkts[KG_BURST_MAX];
	struct kg_port_counters *c = &kg_stats[lcore].port[pi];
	unsigned int n, work = 0, round;

	for (round = 0; round < KG_TX_BURSTS; round++) {
		n = rte_ring_dequeue_burst(p->tx, (void **)pkts, kg.burst, NULL);
		if (n == 0)
			break;
		work += n;
		if (tx_send(c, p, 0, pkts, n, burst_bytes(pkts, n)) < n || n < kg.burst)
			break;
	}
	return work;
}

/* A frame punted as local that may be a DNS query to us (parsed: what
 * kg_dns_parse then kg_dns_match said of it): answered in place
 * from the table (returns the egress port index its answer leaves by),
 * dropped by the rate limit (returns KG_MAX_PORTS: freed and counted), or
 * -1: it goes on to the kernel as any local frame (a query the table does
 * not hold is counted as missed). */
static __rte_always_inline int
dns_answer(unsigned int lcore, const struct kg_dns_table *t, struct rte_mbuf *m, int parsed,
	   struct kg_dns_q *q, const uint32_t *src_nh, uint64_t now, struct kg_port_counters *c)
{
	uint8_t *frame = rte_pktmbuf_mtod(m, uint8_t *);
	uint32_t len, room = rte_pktmbuf_data_len(m) + rte_pktmbuf_tailroom(m);
	uint8_t epoch = __atomic_load_n(&kg_fib.epoch, __ATOMIC_RELAXED);
	uint8_t *stamp;
	int r = parsed;

	if (r == KG_DNS_ANSWERED)
		r = kg_dns_route(&kg_fib, frame, src_nh, q);
	if (r == KG_DNS_ANSWERED && q->qend + q->ans->body_len > room)
		r = KG_DNS_MISS;        /* no room for the answer here: the responder's */
	if (r != KG_DNS_ANSWERED) {
		if (r == KG_DNS_MISS)
			ctr_add(&c->dns_missed, 1);
		return -1;
	}
	/* liveness, as for forwarded frames: the next hop is in use; the
	 * client, when it is the next hop, heard or moved */
	stamp = kg_fib.stamp[lcore][KG_STAMP_USED];
	if (stamp[q->adj_idx] != epoch)
		__atomic_store_n(&stamp[q->adj_idx], epoch, __ATOMIC_RELAXED);
	if (q->moved || q->heard) {
		uint32_t k = q->moved ? q->moved : q->heard;

		stamp = kg_fib.stamp[lcore][q->moved ? KG_STAMP_MOVED : KG_STAMP_HEARD];
		if (stamp[k] != epoch)
			__atomic_store_n(&stamp[k], epoch, __ATOMIC_RELAXED);
	}
	r = kg_rrl_check(kg_rrl[lcore], t, q->src_key, now);
	if (r == KG_RRL_DROP) {
		rte_pktmbuf_free(m);
		ctr_add(&c->drops[KG_DROP_DNS_RRL], 1);
		return KG_MAX_PORTS;
	}
	len = kg_dns_build(t, &kg_fib, frame, room, q, r == KG_RRL_SLIP);
	m->data_len = (uint16_t)len;
	m->pkt_len = len;
	m->ol_flags = 0;
	return (int)q->egress;
}

/* What the rx stage keeps of one burst: where each frame goes, and the
 * state the classifier's path needs (rx_slow). */
struct rx_burst {
	struct rte_mbuf *pkts[KG_BURST_MAX];    /* the burst as received */
	unsigned int lcore, pi;
	struct kg_port_counters *c;
	struct kg_bucket *police;
	const struct kg_dns_table *dns;
	uint64_t now;                   /* the clock, read when a frame needs it; 0: not yet */
	uint8_t *used, *moved, *heard;  /* this lcore's liveness stamps */
	uint8_t epoch;
	uint32_t fwd_mask;              /* egress ports with frames in fwd[] or ans[] */
	unsigned int n_punt, n_hi;
	unsigned int n_fwd[KG_MAX_PORTS], n_ans[KG_MAX_PORTS];
	uint64_t out_bytes[KG_MAX_PORTS];  /* the bytes of fwd[e] and ans[e] */
	/* The burst's IPv4 addresses (host order) and their next hops: frame
	 * i's destination at [i], its source at [sx], nb <= sx (sxtot below).
	 * A source is listed once for a run of frames that share it. */
	uint64_t nhs[2 * KG_BURST_MAX];
	uint32_t ips[2 * KG_BURST_MAX];
	/* frame i's sx << 16 | the IP length kg_fast4_hdr_v4 gave (0: not
	 * for the fast lane) */
	uint32_t sxtot[KG_BURST_MAX];
	unsigned int nb;
	struct kg_dns_q dq[KG_BURST_MAX];
	uint8_t dparsed[KG_BURST_MAX];
	struct rte_mbuf *punt[KG_BURST_MAX], *punt_hi[KG_BURST_MAX];
	struct rte_mbuf *fwd[KG_MAX_PORTS][KG_BURST_MAX];
	/* DNS answers (datapath/dns.h), sent after the burst's forwarded frames */
	struct rte_mbuf *ans[KG_MAX_PORTS][KG_BURST_MAX];
};

/* Port e's lists of the burst, set up by the first frame that goes out of e. */
static __rte_always_inline void
out_open(struct rx_burst *b, unsigned int e)
{
	if (!(b->fwd_mask & (1u << e))) {
		b->fwd_mask |= 1u << e;
		b->n_fwd[e] = 0;
		b->n_ans[e] = 0;
		b->out_bytes[e] = 0;
	}
}

/* m goes out of port e: onto e's list of the burst (answer: its DNS answers'). */
static __rte_always_inline void
rx_out(struct rx_burst *b, unsigned int e, struct rte_mbuf *m, bool answer)
{
	out_open(b, e);
	b->out_bytes[e] += m->pkt_len;
	if (answer)
		b->ans[e][b->n_ans[e]++] = m;
	else
		b->fwd[e][b->n_fwd[e]++] = m;
}

/* A liveness stamp (tables.h): one store a period per entry, to this
 * lcore's own array. */
static __rte_always_inline void
stamp(uint8_t *s, uint32_t k, uint8_t epoch)
{
	if (s[k] != epoch)
		__atomic_store_n(&s[k], epoch, __ATOMIC_RELAXED);
}

/* Frame i of the burst, which the fast lane did not take, through the
 * classifier: forwarded, punted (DNS answered first where it can be,
 * policed), or dropped. Out of line, so that the fast lane's loop stays
 * small enough for the compiler to keep it in registers. */
static __rte_noinline void
rx_slow(struct rx_burst *b, struct rte_mbuf *m, unsigned int i)
{
	struct kg_port_counters *c = b->c;
	struct kg_verdict v;
	uint8_t *frame = rte_pktmbuf_mtod(m, uint8_t *);
	uint32_t flen = rte_pktmbuf_data_len(m), cap = flen;
	uint64_t pre[2];
	/* aligned as an mbuf's data: read through rte_ether_hdr (segs.h) */
	_Alignas(struct rte_ether_hdr) uint8_t head[KG_SEGS_HEAD];

	/* a chain: classified on a view of its headers, with its whole
	 * length (segs.h); its addresses were not in nhs[] */
	if (unlikely(m->nb_segs > 1))
		frame = kg_segs_head(m, head, &flen, &cap);
	pre[0] = b->nhs[i];
	pre[1] = b->nhs[b->sxtot[i] >> 16];
	switch (kg_classify_frame_pre(&kg_fib, b->pi, frame, flen,
				      m->nb_segs == 1 ? pre : NULL, &v)) {
	case KG_VERDICT_FORWARD: {
		uint32_t len = kg_rewrite_frame(&kg_fib, frame, flen, &v);

		if (unlikely(m->nb_segs > 1) &&
		    !kg_segs_forward(m, frame, cap, len, kg.port[v.egress].tx_segs)) {
			rte_pktmbuf_free(m);
			ctr_add(&c->drops[KG_DROP_FWD_TOO_BIG], 1);
			break;
		}
		/* liveness: this neighbour is in use (one store a period per
		 * adjacency, to this lcore's own array) */
		stamp(b->used, v.adj_idx, b->epoch);
		if (len < m->data_len) /* Ethernet padding goes, as in Linux */
			rte_pktmbuf_trim(m, m->data_len - len);
		rx_out(b, v.egress, m, false);
		break;
	}
	case KG_VERDICT_PUNT: {
		int cls;

		if (b->dns && v.reason == KG_PUNT_LOCAL && b->dparsed[i] != KG_DNS_NOT_DNS) {
			uint32_t snh = (uint32_t)pre[1];
			int r;

			b->now = b->now ? b->now : rte_rdtsc();
			r = dns_answer(b->lcore, b->dns, m, b->dparsed[i], &b->dq[i], &snh, b->now, c);
			if (r >= 0) {
				/* answered (or dropped by the rate limit, r == KG_MAX_PORTS) */
				if (r < KG_MAX_PORTS)
					rx_out(b, (unsigned int)r, m, true);
				break;
			}
		}
		cls = kg_police_class(frame, cap, v.reason);
		b->now = b->now ? b->now : rte_rdtsc();
		if (unlikely(!kg_police_ok(&b->police[cls], b->now))) {
			rte_pktmbuf_free(m);
			ctr_add(&c->drops[KG_DROP_POLICED], 1);
			ctr_add(&c->policed[cls], 1);
			break;
		}
		if (kg_police_priority(cls))
			b->punt_hi[b->n_hi++] = m;
		else
			b->punt[b->n_punt++] = m;
		ctr_add(&c->punts[v.reason < KG_PUNT_MAX ? v.reason : KG_PUNT_NOT_FAST], 1);
		break;
	}
	default:
		rte_pktmbuf_free(m);
		ctr_add(&c->drops[v.reason < KG_DROP_MAX ? v.reason : KG_DROP_BAD_HEADER], 1);
	}
	if (unlikely(v.moved))
		stamp(b->moved, v.moved, b->epoch);
	else if (v.heard)
		stamp(b->heard, v.heard, b->epoch);
}

/* The forwarding rewrite's MACs (kg_put_macs' 12 bytes: dst, the next
 * hop's, from the adjacency word; src, the port's), put into a frame's
 * first 12 bytes: on x86, with one 16-byte store that writes the frame's
 * next 4 bytes back as they were, rather than two stores. */
#if defined(RTE_ARCH_X86) && defined(__SSE4_1__)
typedef __m128i fast_macs_t;

static __rte_always_inline fast_macs_t
fast_macs(uint64_t dst, uint64_t src)
{
	/* kg_put_macs' words, put together in registers: through memory, the
	 * 16-byte load after two smaller stores cannot take their data until
	 * they are written (perf put 2% of the rx lcore's samples just after
	 * it, though it runs once a next hop a burst; the rate did not move
	 * in ten alternating rounds, 57.8 against 57.6 Mpps, but a burst
	 * through many next hops pays it at each) */
	return _mm_set_epi64x((long long)(uint32_t)(src >> 16),
			      (long long)((dst & KG_MAC48_MASK) | src << 48));
}

static __rte_always_inline void
fast_macs_put(uint8_t *frame, fast_macs_t t)
{
	__m128i f = _mm_loadu_si128((const __m128i *)frame);

	/* 16-bit words 0-5 (bytes 0-11) from t, 6-7 the frame's */
	_mm_storeu_si128((__m128i *)frame, _mm_blend_epi16(f, t, 0x3f));
}
#else
typedef struct {
	uint64_t w0;
	uint32_t w1;
} fast_macs_t;

static __rte_always_inline fast_macs_t
fast_macs(uint64_t dst, uint64_t src)
{
	_Alignas(8) uint8_t m12[2 * RTE_ETHER_ADDR_LEN];
	fast_macs_t t;

	kg_put_macs(m12, dst, src);
	memcpy(&t.w0, m12, 8);
	memcpy(&t.w1, m12 + 8, 4);
	return t;
}

static __rte_always_inline void
fast_macs_put(uint8_t *frame, fast_macs_t t)
{
	memcpy(frame, &t.w0, 8);
	memcpy(frame + 8, &t.w1, 4);
}
#endif

/* The fast lane meets next hop nh (stage_rx): what it gives, once a
 * burst. Returns the egress port's MTU, 0 where nh is not for the fast lane
 * (kg_fast4_adj); *idx: the adjacency's index, *e: the egress port, *macs:
 * the rewrite's MACs. */
static __rte_always_inline uint32_t
fast_nexthop(const struct rx_burst *b, uint32_t nh, uint32_t *idx, uint32_t *e,
	     fast_macs_t *macs)
{
	uint64_t a = kg_fast4_adj(&kg_fib, b->pi, nh);

	if (a == 0)
		return 0;
	*e = (uint32_t)(a >> KG_ADJ_PORT_SHIFT) & 0xff;
	*idx = nh % KG_ADJ_MAX;
	*macs = fast_macs(a, kg_load64(&kg_fib.port_mac[*e]));
	return __atomic_load_n(&kg_fib.port_mtu[*e], __ATOMIC_RELAXED);
}

/* The fast lane starts (or resumes) a run of frames out of port e: where
 * the next goes on e's list. */
static __rte_always_inline struct rte_mbuf **
fast_run(struct rx_burst *b, uint32_t e)
{
	out_open(b, e);
	return &b->fwd[e][b->n_fwd[e]];
}

/* The run through `run` (NULL: none) on port e's list ends: its count and
 * its bytes (*bytes, then 0) are written back. Returns NULL. */
static __rte_always_inline struct rte_mbuf **
fast_run_end(struct rx_burst *b, uint32_t e, struct rte_mbuf **run, uint32_t *bytes)
{
	if (run) {
		b->n_fwd[e] = (unsigned int)(run - b->fwd[e]);
		b->out_bytes[e] += *bytes;
		*bytes = 0;
	}
	return NULL;
}

/* Whether no frame of the burst can be a DNS query to us: every one is
 * IPv4 that the fast lane may take (its IP length in sxtot[]), to an
 * address not ours (what the DNS pass passes over at once). Then that
 * pass is skipped: tested in a loop the compiler vectorises, rather than
 * frame by frame in it. With a zone loaded, one lcore forwarded 55.9
 * against 54.0 Mpps (six alternating rounds; the build before, without a
 * zone, 58.0 in the same rounds). */
static __rte_always_inline bool
dns_none(struct rx_burst *b)
{
	uint32_t maybe = 0;
	unsigned int i;

	for (i = 0; i < b->nb; i++)
		maybe |= ((b->sxtot[i] & 0xffff) == 0) | ((uint32_t)b->nhs[i] == KG_PUNT_LOCAL);
	if (maybe)
		return false;
	memset(b->dparsed, KG_DNS_NOT_DNS, b->nb);
	return true;
}

/* rx stage: rx queue -> classify -> this lcore's tx queue of the egress
 * port | to_kernel fifo | drop. Where the egress port's driver gave this
 * lcore no tx queue of its own, forwarded frames go to the port's tx fifo
 * (its tx lcore sends them). */
static unsigned int
stage_rx(unsigned int lcore, const struct kg_rxq_ref *ref)
{
	const unsigned int pi = ref->port;
	struct kg_port *p = &kg.port[pi];
	struct rx_burst b;
	struct kg_port_counters *c = &kg_stats[lcore].port[pi];
	unsigned int i, nb, out, ns;
	uint64_t bytes = 0, mac, last_src;
	/* the fast lane's memory of a burst (below) */
	uint32_t def4, m_raw = KG_NH_NONE, m_nh = KG_NH_NONE, m_mtu = 0, m_idx = 0, m_e = 0;
	uint32_t m_sn = 0;
	uint64_t m_smac = UINT64_MAX;   /* no MAC: the first source is looked at */
	fast_macs_t m_macs = { 0 };
	struct rte_mbuf **run = NULL;   /* the next slot of m_e's list while a run forwards */
	uint32_t run_bytes = 0;         /* the bytes of that run so far */
	bool fast;

	if (!load_acquire(&p->started))
		return 0;
	nb = rte_eth_rx_burst(p->port_id, ref->queue, b.pkts, kg.burst);
	if (nb == 0)
		return 0;
	ctr_add(&c->rx_packets, nb);

	if (unlikely(!load_acquire(&p->admin_up))) {
		/* vEthN is down: the port takes no traffic. Only ports that
		 * cannot be stopped and restarted get here. */
		ctr_add(&c->rx_bytes, burst_bytes(b.pkts, nb));
		drop_bulk(c, KG_DROP_PORT_DOWN_RX, b.pkts, nb);
		return nb;
	}
	b.lcore = lcore;
	b.pi = pi;
	b.c = c;
	b.police = p->police[ref->slot];
	b.dns = __atomic_load_n(&kg_dns_tab, __ATOMIC_ACQUIRE);
	b.now = 0;
	b.used = kg_fib.stamp[lcore][KG_STAMP_USED];
	b.moved = kg_fib.stamp[lcore][KG_STAMP_MOVED];
	b.heard = kg_fib.stamp[lcore][KG_STAMP_HEARD];
	b.epoch = __atomic_load_n(&kg_fib.epoch, __ATOMIC_RELAXED);
	b.fwd_mask = 0;
	b.n_punt = 0;
	b.n_hi = 0;

	/* One pass over the burst: its bytes counted, each frame's IPv4
	 * destination and source read for a lookup of the whole burst at once
	 * (a source once for a run of frames that share it), and the fast
	 * lane's header checks done (classify.h: kg_fast4_hdr). It needs
	 * forwarding on on this port, and a unicast port MAC (the classifier
	 * punts multicast destinations first). */
	mac = kg_load64(&kg_fib.port_mac[pi]);
	fast = kg_fib.fwd4[pi] && !(mac & 1);
	b.nb = nb;
	ns = nb;        /* the next source's place in ips[] */
	last_src = UINT64_MAX;
	if (likely(fast)) {
		/* (a loop of its own: one loop testing `fast` on each frame
		 * forwarded about 2% less in alternating runs) */
		for (i = 0; i < nb; i++) {
			struct rte_mbuf *m = b.pkts[i];
			const uint8_t *fr = rte_pktmbuf_mtod(m, const uint8_t *);
			/* a chain is read as if it had no headers: not for the
			 * fast lane, and its addresses are not looked up here
			 * (rx_slow reads them) */
			uint32_t len = likely(m->nb_segs == 1) ? rte_pktmbuf_data_len(m) : 0;
			uint32_t ip2[2], tot;
			/* the length and type tested once for both below */
			bool v4 = kg_pre4_frame(fr, len);

			bytes += m->pkt_len;
			kg_pre4_addrs_v4(fr, v4, ip2);
			/* the addresses stored before the checks: fewer values
			 * live across them (3-4% more frames in alternating runs) */
			b.ips[i] = ip2[0];
			if (ip2[1] != last_src) {
				last_src = ip2[1];
				b.ips[ns++] = ip2[1];
			}
			tot = kg_fast4_hdr_v4(mac, fr, v4, len, ip2[0], ip2[1]);
			b.sxtot[i] = (ns - 1) << 16 | tot;
		}
	} else {
		for (i = 0; i < nb; i++) {
			uint32_t ip2[2];

			bytes += b.pkts[i]->pkt_len;
			kg_pre4_addrs(rte_pktmbuf_mtod(b.pkts[i], const uint8_t *),
				      rte_pktmbuf_data_len(b.pkts[i]), ip2);
			b.ips[i] = ip2[0];
			if (ip2[1] != last_src) {
				last_src = ip2[1];
				b.ips[ns++] = ip2[1];
			}
			b.sxtot[i] = (ns - 1) << 16;
		}
	}
	ctr_add(&c->rx_bytes, bytes);
	rte_fib_lookup_bulk(kg_fib.fib4, b.ips, b.nhs, (int)ns);
	/* DNS queries to us: read, and their answers' slots fetched, for the
	 * whole burst before any is answered (datapath/dns.h) */
	if (b.dns && !dns_none(&b)) {
		for (i = 0; i < nb; i++) {
			const uint8_t *fr = rte_pktmbuf_mtod(b.pkts[i], const uint8_t *);
			uint32_t flen = rte_pktmbuf_data_len(b.pkts[i]);

			/* IPv4 to a local address (its lookup is done), or IPv6:
			 * forwarded frames are passed over at once */
			b.dparsed[i] = KG_DNS_NOT_DNS;
			if (b.pkts[i]->nb_segs != 1 || flen < RTE_ETHER_HDR_LEN ||
			    (b.nhs[i] != KG_PUNT_LOCAL && !(fr[12] == 0x86 && fr[13] == 0xdd)))
				continue;
			b.dparsed[i] = (uint8_t)kg_dns_parse(b.dns, fr, flen, &b.dq[i]);
			if (b.dparsed[i] == KG_DNS_ANSWERED)
				kg_dns_prefetch_slot(b.dns, b.dq[i].hash);
		}
		/* then their answers looked up, and the bodies fetched */
		for (i = 0; i < nb; i++) {
			if (b.dparsed[i] != KG_DNS_ANSWERED)
				continue;
			b.dparsed[i] = (uint8_t)kg_dns_match(b.dns, &b.dq[i]);
			if (b.dparsed[i] == KG_DNS_ANSWERED)
				rte_prefetch0(b.dns->bodies + b.dq[i].ans->body_off);
		}
	}

	/* The fast lane forwards what it can; the rest goes through the
	 * classifier (rx_slow), in the burst's order. What it derives from a
	 * next hop (kg_fast4_adj, the egress port's MTU and MACs), and a
	 * source's liveness, it keeps for the frames after that share them:
	 * each is looked at once a burst, as if the burst's frames after the
	 * first had come an instant earlier. m_mtu 0: the next hop m_nh is not
	 * for the fast lane (KG_NH_NONE never is). Its frames go onto their
	 * egress port's list a run at a time (`run`), the list's count written
	 * back when the run ends: when the next hop changes, before the
	 * classifier takes a frame (it may add to the same list), at the end. */
	def4 = __atomic_load_n(&kg_fib.default4, __ATOMIC_RELAXED);
	for (i = 0; i < nb; i++) {
		struct rte_mbuf *m = b.pkts[i];
		uint32_t tot = b.sxtot[i] & 0xffff, nh = (uint32_t)b.nhs[i], sn, len;
		uint8_t *frame;
		uint64_t smac;

		if (unlikely(tot == 0))
			goto slow;
		if (unlikely(nh != m_raw)) {
			/* rte_fib's answer (m_raw), then the next hop it stands
			 * for: the default route's where it found no route */
			m_raw = nh;
			if (nh == KG_PUNT_NO_ROUTE)
				nh = def4;
			if (nh != m_nh) {
				run = fast_run_end(&b, m_e, run, &run_bytes);
				m_nh = nh;
				m_mtu = fast_nexthop(&b, nh, &m_idx, &m_e, &m_macs);
			}
		}
		if (unlikely(tot > m_mtu))
			goto slow;
		sn = (uint32_t)b.nhs[b.sxtot[i] >> 16];
		frame = rte_pktmbuf_mtod(m, uint8_t *);
		smac = kg_mac48(frame + RTE_ETHER_ADDR_LEN);
		if (unlikely(sn != m_sn || smac != m_smac)) {
			uint32_t moved, heard;

			/* a source of ours is the classifier's (m_sn never is:
			 * its frames never get here) */
			if (sn == KG_PUNT_LOCAL)
				goto slow;
			m_sn = sn;
			m_smac = smac;
			kg_src_liveness(&kg_fib, pi, frame, sn, &moved, &heard);
			if (unlikely(moved))
				stamp(b.moved, moved, b.epoch);
			else if (heard)
				stamp(b.heard, heard, b.epoch);
		}
		fast_macs_put(frame, m_macs);
		kg_ipv4_ttl_dec((struct rte_ipv4_hdr *)(frame + sizeof(struct rte_ether_hdr)));
		len = sizeof(struct rte_ether_hdr) + tot;
		if (unlikely(len < m->data_len)) /* Ethernet padding goes, as in Linux */
			rte_pktmbuf_trim(m, m->data_len - len);
		if (unlikely(run == NULL)) {
			run = fast_run(&b, m_e);
			/* liveness: this neighbour is in use */
			stamp(b.used, m_idx, b.epoch);
		}
		*run++ = m;
		run_bytes += len;
		continue;
slow:
		run = fast_run_end(&b, m_e, run, &run_bytes);     /* the classifier may add to the list */
		rx_slow(&b, m, i);
	}
	fast_run_end(&b, m_e, run, &run_bytes);

	out = fifo_put(p->to_kernel_hi, b.punt_hi, b.n_hi, c, KG_DROP_TO_KERNEL_FULL);
	out += fifo_put(p->to_kernel, b.punt, b.n_punt, c, KG_DROP_TO_KERNEL_FULL);
	ctr_add(&c->to_kernel, out);
	while (b.fwd_mask) {
		unsigned int e = __builtin_ctz(b.fwd_mask);
		uint8_t q = kg.port[e].txq[lcore];
		unsigned int nf = b.n_fwd[e], na = b.n_ans[e], k;

		b.fwd_mask &= b.fwd_mask - 1;
		for (k = 0; k < na; k++)        /* nf + na <= nb: room in fwd[e] */
			b.fwd[e][nf + k] = b.ans[e][k];
		if (likely(q != KG_TXQ_FIFO)) {
			ctr_add(&c->forwarded, nf);
			if (na)
				ctr_add(&c->dns_answered, na);
			tx_send(&kg_stats[lcore].port[e], &kg.port[e], q, b.fwd[e], nf + na,
				b.out_bytes[e]);
			continue;
		}
		out = fifo_put(kg.port[e].tx, b.fwd[e], nf + na, c, KG_DROP_FWD_FIFO_FULL);
		ctr_add(&c->forwarded, RTE_MIN(out, nf));
		if (out > nf)
			ctr_add(&c->dns_answered, out - nf);
	}
	return nb;
}

/* exception stage: to_kernel fifos (priority first) -> vEthN, and vEthN -> tx fifo.
 *
 * Reading vEthN is a system call even when it has nothing. While the lcore
 * is busy (its previous pass did work) vEthN is read at most once per
 * KG_EXC_POLL_US, so that a loaded lcore does not pay a syscall per burst;
 * the kernel's frames then wait at most that long, and a few passes: an
 * lcore busy with other stages reads the clock only every
 * KG_EXC_CLOCK_PASSES passes (now is 0 on the passes between). An unloaded
 * lcore reads it on every pass. */
static unsigned int
stage_exc(unsigned int lcore, struct kg_port *p, unsigned int pi, bool busy,
	  uint64_t now)
{
	struct rte_mbuf *pkts[KG_BURST_MAX];
	struct kg_port_counters *c = &kg_stats[lcore].port[pi];
	unsigned int n, sent, work = 0, round;

	/* Up to KG_QUIET_PASSES bursts a pass, as the tx stage does: what
	 * gathered while a busy lcore passed this stage over (kg_lcore_loop)
	 * goes at its next poll, and no standing queue forms. */
	for (round = 0; round < KG_QUIET_PASSES; round++) {
		unsigned int ok, i;

		/* the priority fifo first: ARP, ND, routing protocols, ICMP to us */
		n = rte_ring_dequeue_burst(p->to_kernel_hi, (void **)pkts, kg.burst, NULL);
		if (n < kg.burst)
			n += rte_ring_dequeue_burst(p->to_kernel, (void **)pkts + n,
						    kg.burst - n, NULL);
		if (n == 0)
			break;
		/* these mbufs were last written by the rx lcore, on another
		 * core: fetch their headers, then their frames, all at once,
		 * rather than one miss after another inside the TAP's writes */
		for (i = 0; i < n; i++) {
			rte_prefetch0(pkts[i]);
			rte_prefetch0(&pkts[i]->cacheline1); /* m->next: tx and free read it */
		}
		for (i = 0; i < n; i++)
			rte_prefetch0(rte_pktmbuf_mtod(pkts[i], void *));
		ok = segs_filter(c, KG_DROP_TO_KERNEL_TOO_BIG, pkts, n, p->exc_tx_segs,
				 load_relaxed(&p->exc_max_frame));
		sent = rte_eth_tx_burst(p->exc_port_id, 0, pkts, ok);
		ctr_add(&c->kernel_tx, sent);
		drop_bulk(c, KG_DROP_KERNEL_WRITE, pkts + sent, ok - sent);
		work += n;
		if (sent < ok || n < kg.burst)
			break;
	}
	if (busy && (now == 0 || now - p->exc_last_poll < kg.exc_poll_cycles))
		return work;
	p->exc_last_poll = now;

	n = rte_eth_rx_burst(p->exc_port_id, 0, pkts, kg.burst);
	if (n) {
		ctr_add(&c->from_kernel, n);
		fifo_put(p->tx, pkts, segs_filter(c, KG_DROP_FROM_KERNEL_TOO_BIG, pkts, n,
						  p->tx_segs, p->tx_max_frame),
			 c, KG_DROP_KERNEL_FIFO_FULL);
		work += n;
	}
	return work;
}

/* The rx stage's policing decision on one frame, for tests. */
int
kg_police(unsigned int in_port, const unsigned char *frame, unsigned int len)
{
	struct kg_verdict v;

	if (in_port >= KG_MAX_PORTS ||
	    kg_classify_frame(&kg_fib, in_port, frame, len, &v) != KG_VERDICT_PUNT)
		return -1;
	return kg_police_class(frame, len, v.reason);
}

static void
idle_sleep(unsigned int us)
{
	struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)us * 1000 };

	nanosleep(&ts, NULL);
}

/* An lcore's mbufs cycle through its mempool cache, last in, first out:
 * with drivers that allocate at each rx burst and free at once on tx
 * (net_pcap, net_null; a descriptor-ring NIC keeps its rings' worth in
 * flight), the same few dozen mbufs carry all its traffic, whichever the
 * cache was left holding. Measured (README, Benchmarks): after a start
 * during which frames were punted into vEthN, two rx lcores on one port ran
 * a tenth to a third slower for the life of the process, and at full speed
 * from the moment their caches went back to the pool and refilled from it.
 * Why those mbufs were slow is not known: this treats the symptom. Each
 * lcore hands its cache back at least KG_CACHE_RENEW_MS apart (a busy
 * lcore looks every 1024 passes; an idle one, every 1024 back-off sleeps):
 * about two microseconds a second. Renewals take the mbufs the pool has
 * not handed out for longest (kg_pool_renew, pool.c), so in time every
 * mbuf of the pool carries frames: net_af_xdp takes only those inside its
 * umem, which umem_fit (eal.c) sees to. */
static void
cache_renew(unsigned int lcore)
{
	struct rte_mempool_cache *c = rte_mempool_default_cache(kg.pool, lcore);

	if (c != NULL)
		kg_pool_renew(kg.pool, c);
}

int
kg_lcore_loop(void *arg)
{
	unsigned int lcore = rte_lcore_id();
	const struct kg_lcore *lc = &kg.lcore[lcore];
	unsigned int idle = 0, sleep_us = 1, i, passes = 0;
	const unsigned int max_sleep = kg.idle_sleep_us, quiet_mask = kg.quiet_mask;
	uint64_t renew = rte_rdtsc() + kg.cache_renew_cycles;
	bool busy = false, exc_busy = false, other_busy = false;

	(void)arg;
	if (!lc->active)
		return 0;

	kg_rcu_reader_start(lcore);

	while (!load_acquire(&kg.stop)) {
		unsigned int work = 0, w;

		for (i = 0; i < lc->n_rx; i++)
			work += stage_rx(lcore, &lc->rx[i]);
		/* The exception and tx stages, on a pass whose rx stages had
		 * frames, only every KG_QUIET_PASSES passes while their last
		 * poll (of both together) found nothing: their rings' frames
		 * then wait at most that many passes, and each drains up to
		 * that many bursts a pass. Empty, their polls took about 1.5%
		 * of a forwarding lcore's cycles (perf), 0.4% so. Not where
		 * the fifos are small for it (quiet_mask 0: eal.c). */
		if (work && !other_busy && (passes & quiet_mask) != 0)
			goto polled;
		w = 0;
		if (lc->n_exc) {
			/* The clock, for stage_exc's vEthN reads. On a pass
			 * busy with other stages only, reading it would cost
			 * about as much as forwarding a frame: it is read
			 * every KG_EXC_CLOCK_PASSES such passes (vEthN then
			 * waits at most KG_EXC_POLL_US and that many passes). */
			uint64_t now = !busy || exc_busy ||
				       (passes & (KG_EXC_CLOCK_PASSES - 1)) == 0 ? rte_rdtsc() : 0;
			unsigned int we = 0;

			for (i = 0; i < lc->n_exc; i++)
				we += stage_exc(lcore, &kg.port[lc->exc[i]], lc->exc[i], busy, now);
			exc_busy = we != 0;
			w += we;
		}
		for (i = 0; i < lc->n_tx; i++)
			w += stage_tx(lcore, &kg.port[lc->tx[i]], lc->tx[i]);
		other_busy = w != 0;
		work += w;
polled:
		/* Nothing of the shared state read above is held past here. */
		kg_rcu_reader_quiescent(lcore);
		if (unlikely((++passes & 1023) == 0) && rte_rdtsc() >= renew) {
			cache_renew(lcore);
			renew = rte_rdtsc() + kg.cache_renew_cycles;
		}

		busy = work != 0;
		if (work) {
			idle = 0;
			sleep_us = 1;
			continue;
		}
		if (max_sleep == 0 || ++idle < KG_IDLE_SPINS)
			continue;
		/* Idle back-off: offline while asleep, so that a control
		 * operation waiting for quiescence never waits for a sleeper. */
		kg_rcu_reader_offline(lcore);
		idle_sleep(sleep_us);
		kg_rcu_reader_online(lcore);
		sleep_us = RTE_MIN(sleep_us * 2, max_sleep);
	}

	kg_rcu_reader_stop(lcore);
	return 0;
}
