/* SPDX-License-Identifier: BSD-3-Clause
 *
 * rrl.h - the response-rate limit of the DNS answers given in C: a token
 * bucket per client prefix (/24, /56), in a fixed table per rx lcore whose
 * slots are picked by a keyed hash (a secret drawn at start: which prefixes
 * collide cannot be known from outside). A prefix that lands on a slot in
 * use takes it over with the bucket as it is: colliding prefixes share one
 * limit, so alternating between them never refills it; a slot idle for a
 * second's worth starts full. Over the limit, every rrl_slip-th answer is
 * sent truncated and empty (the client may retry over TCP), the others are
 * dropped, as NSD's and BIND's RRL do.
 */
#ifndef KG_RRL_H
#define KG_RRL_H

#include "datapath/dns.h"

#define KG_RRL_SLOTS 4096

struct kg_rrl_slot {
	uint64_t key;
	uint64_t credit;
	uint64_t last;
	uint32_t slips;
	uint32_t pad;
};

/* per rx lcore: allocated by ctl when a table with a limit is published,
 * then that lcore w and r */
extern KG_LOCAL struct kg_rrl_slot *kg_rrl[RTE_MAX_LCORE];
/* the hash key: ctl w once, before the first table with a limit is
 * published (release), lcores r */
extern KG_LOCAL uint64_t kg_rrl_seed;

/* KG_RRL_PASS, KG_RRL_SLIP, KG_RRL_DROP: kni_gw.h */

static inline uint32_t
kg_rrl_index(uint64_t key)
{
	uint64_t h;

	key |= 1ULL << 62;                      /* never 0, the empty slot's */
	h = (key ^ kg_rrl_seed) * 0x9e3779b97f4a7c15ULL;
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ULL;
	return (uint32_t)(h >> 40) & (KG_RRL_SLOTS - 1);
}

static inline int
kg_rrl_check(struct kg_rrl_slot *tab, const struct kg_dns_table *t, uint64_t key, uint64_t now)
{
	struct kg_rrl_slot *s;

	if (t->rrl_cost == 0 || tab == NULL)
		return KG_RRL_PASS;
	s = &tab[kg_rrl_index(key)];
	key |= 1ULL << 62;
	if (s->key != key) {
		/* a newcomer: a full bucket only in a slot idle long enough to
		 * have filled up; else it shares what is left */
		if (s->key == 0 || now - s->last >= t->rrl_depth) {
			s->credit = t->rrl_depth;
			s->last = now;
			s->slips = 0;
		}
		s->key = key;
	}
	s->credit += now - s->last;
	s->last = now;
	if (s->credit > t->rrl_depth)
		s->credit = t->rrl_depth;
	if (s->credit >= t->rrl_cost) {
		s->credit -= t->rrl_cost;
		return KG_RRL_PASS;
	}
	if (t->rrl_slip && ++s->slips >= t->rrl_slip) {
		s->slips = 0;
		return KG_RRL_SLIP;
	}
	return KG_RRL_DROP;
}

#endif /* KG_RRL_H */
