/* SPDX-License-Identifier: BSD-3-Clause
 *
 * dns.c - the DNS answer table (datapath/dns.h): built from what
 * kni_gw/dnsfast.py compiled, checked, published with RCU; the per-lcore
 * state of the response-rate limit; the test entry point.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <rte_malloc.h>
#include <rte_random.h>

#include "datapath/dns.h"
#include "datapath/rrl.h"
#include "kg_internal.h"

struct kg_dns_table *kg_dns_tab;
struct kg_rrl_slot *kg_rrl[RTE_MAX_LCORE];
uint64_t kg_rrl_seed;

/* The rate limit's hash key, drawn once, before any lcore can use it. */
static void
rrl_seed(void)
{
	if (kg_rrl_seed == 0)
		kg_rrl_seed = rte_rand() | 1;
}

static uint32_t
pow2_at_least(uint32_t n)
{
	uint32_t p = 16;

	while (p < n)
		p <<= 1;
	return p;
}

static int
check_answer(const struct kg_dns_answer *a, unsigned int bodies_len, char *err, unsigned int errlen,
	     unsigned int i)
{
	if (a->min_payload == 0xffff)
		return 0;       /* no answer for this family */
	if ((unsigned long long)a->body_off + a->body_len > bodies_len) {
		kg_err(err, errlen, "dns table: entry %u: answer outside the bodies", i);
		return -EINVAL;
	}
	if (a->body_len > KG_DNS_UDP_MAX) {
		kg_err(err, errlen, "dns table: entry %u: answer of %u bytes", i, a->body_len);
		return -EINVAL;
	}
	return 0;
}

static void
publish(struct kg_dns_table *t)
{
	struct kg_dns_table *old = __atomic_exchange_n(&kg_dns_tab, t, __ATOMIC_ACQ_REL);

	if (old) {
		kg_quiesce();
		rte_free(old);
	}
}

/* One allocation: the table, its slots, names and bodies. */
int
kg_dns_publish(const struct kg_dns_conf *conf, const struct kg_dns_entry *e, unsigned int n,
	       const unsigned char *names, unsigned int names_len,
	       const unsigned char *bodies, unsigned int bodies_len, char *err, unsigned int errlen)
{
	struct kg_dns_table *t;
	uint32_t nslot = pow2_at_least(n + n / 3 + 1), i, l;
	size_t sz;
	uint8_t *p, *nm, *bd;

	if (conf->n_addr4 > KG_DNS_ADDRS_MAX || conf->n_addr6 > KG_DNS_ADDRS_MAX || conf->udp_port == 0) {
		kg_err(err, errlen, "dns table: bad addresses or port");
		return -EINVAL;
	}
	for (i = 0; i < n; i++) {
		if ((unsigned long long)e[i].name_off + e[i].name_len > names_len ||
		    e[i].name_len == 0 || e[i].name_len > KG_DNS_NAME_MAX || e[i].edns > 1) {
			kg_err(err, errlen, "dns table: entry %u: bad name", i);
			return -EINVAL;
		}
		if (check_answer(&e[i].ans[0], bodies_len, err, errlen, i) < 0 ||
		    check_answer(&e[i].ans[1], bodies_len, err, errlen, i) < 0)
			return -EINVAL;
	}
	sz = RTE_ALIGN_CEIL(sizeof(*t), KG_DNS_SLOT) + (size_t)nslot * sizeof(struct kg_dns_rec) +
	     names_len + bodies_len + 64;
	t = rte_zmalloc("kg_dns_table", sz, KG_DNS_SLOT);
	if (t == NULL) {
		kg_err(err, errlen, "dns table: no memory for %zu bytes", sz);
		return -ENOMEM;
	}
	p = (uint8_t *)t + RTE_ALIGN_CEIL(sizeof(*t), KG_DNS_SLOT);
	t->slot = (struct kg_dns_rec *)p;
	p += (size_t)nslot * sizeof(struct kg_dns_rec);
	nm = p;
	memcpy(nm, names, names_len);
	bd = nm + names_len;
	memcpy(bd, bodies, bodies_len);
	t->names = nm;
	t->bodies = bd;
	t->mask = nslot - 1;
	t->n = n;
	t->memory = sz;
	t->udp_port = conf->udp_port;
	t->n4 = conf->n_addr4;
	t->n6 = conf->n_addr6;
	for (i = 0; i < t->n4; i++)
		t->addr4[i] = rte_be_to_cpu_32(conf->addr4[i]);
	memcpy(t->addr6, conf->addr6, sizeof(t->addr6));
	if (conf->rrl_rate) {
		t->rrl_cost = rte_get_tsc_hz() / conf->rrl_rate;
		t->rrl_depth = rte_get_tsc_hz();       /* a second's worth */
		if (t->rrl_cost == 0)
			t->rrl_cost = 1;
		t->rrl_slip = conf->rrl_slip;
		rrl_seed();      /* published with the table (release) */
		for (l = 0; l < RTE_MAX_LCORE; l++) {
			if (kg.lcore[l].n_rx == 0 || kg_rrl[l])
				continue;
			kg_rrl[l] = rte_zmalloc_socket("kg_rrl", KG_RRL_SLOTS * sizeof(struct kg_rrl_slot),
						       RTE_CACHE_LINE_SIZE, (int)rte_lcore_to_socket_id(l));
			if (kg_rrl[l] == NULL) {
				rte_free(t);
				kg_err(err, errlen, "dns table: no memory for the rate limit");
				return -ENOMEM;
			}
		}
	}
	for (i = 0; i < n; i++) {
		const uint8_t *name = nm + e[i].name_off;
		uint32_t h = kg_dns_hash(name, e[i].name_len, e[i].qtype, e[i].edns), s, k;
		struct kg_dns_rec *r;

		if (kg_dns_lookup(t, name, e[i].name_len, e[i].qtype, e[i].edns, h) != NULL) {
			rte_free(t);
			kg_err(err, errlen, "dns table: entry %u: a second entry for one question", i);
			return -EINVAL;
		}
		for (s = h & t->mask; t->slot[s].name_len; s = (s + 1) & t->mask)
			;
		r = &t->slot[s];
		r->hash = h;
		r->name_len = (uint8_t)e[i].name_len;
		r->edns = e[i].edns;
		r->qtype = e[i].qtype;
		r->name_off = e[i].name_off;
		if (e[i].name_len <= KG_DNS_INLINE)
			memcpy(r->name, name, e[i].name_len);
		for (k = 0; k < 2; k++) {
			const struct kg_dns_answer *a = &e[i].ans[k];

			if (a->min_payload == 0xffff) {
				r->ans[k].body_len = KG_DNS_NO_ANSWER;
				continue;
			}
			r->ans[k] = (struct kg_dns_ans){
				.body_off = a->body_off, .body_len = a->body_len, .flags = a->flags,
				.an = a->an, .ns = a->ns, .ar = a->ar, .min_payload = a->min_payload,
				.body_sum = rte_raw_cksum(bd + a->body_off, a->body_len),
			};
		}
	}
	publish(t);
	return 0;
}

void
kg_dns_unpublish(void)
{
	publish(NULL);
}

unsigned long long
kg_dns_memory(void)
{
	const struct kg_dns_table *t = __atomic_load_n(&kg_dns_tab, __ATOMIC_ACQUIRE);
	unsigned long long m = t ? t->memory : 0;
	unsigned int l;

	for (l = 0; l < RTE_MAX_LCORE; l++)
		if (kg_rrl[l])
			m += KG_RRL_SLOTS * sizeof(struct kg_rrl_slot);
	return m;
}

/* At teardown: nothing runs any more. */
void
kg_dns_free(void)
{
	unsigned int l;

	rte_free(kg_dns_tab);
	kg_dns_tab = NULL;
	for (l = 0; l < RTE_MAX_LCORE; l++) {
		rte_free(kg_rrl[l]);
		kg_rrl[l] = NULL;
	}
}

int
kg_rrl_test(unsigned int rate, unsigned int slip, const unsigned long long *keys,
	    const unsigned long long *us, unsigned int n, int *out)
{
	struct kg_rrl_slot *tab = calloc(KG_RRL_SLOTS, sizeof(*tab));
	struct kg_dns_table t = { 0 };
	uint64_t hz = rte_get_tsc_hz();
	unsigned int i;

	if (tab == NULL)
		return -ENOMEM;
	rrl_seed();
	t.rrl_cost = rate ? RTE_MAX(hz / rate, (uint64_t)1) : 0;
	t.rrl_depth = hz;
	t.rrl_slip = slip;
	for (i = 0; i < n; i++)
		out[i] = kg_rrl_check(tab, &t, keys[i], hz + us[i] * hz / 1000000);
	free(tab);
	return 0;
}

unsigned int
kg_rrl_slot(unsigned long long key)
{
	rrl_seed();
	return kg_rrl_index(key);
}

int
kg_dns_test(unsigned int in_port, unsigned char *frame, unsigned int len, unsigned int room,
	    unsigned int *out_len, unsigned int *egress)
{
	const struct kg_dns_table *t = __atomic_load_n(&kg_dns_tab, __ATOMIC_ACQUIRE);
	struct kg_verdict v;
	struct kg_dns_q q;
	int r;

	*out_len = 0;
	if (t == NULL || in_port >= KG_MAX_PORTS || len > room ||
	    kg_classify_frame(&kg_fib, in_port, frame, len, &v) != KG_VERDICT_PUNT ||
	    v.reason != KG_PUNT_LOCAL)
		return KG_DNS_NOT_DNS;
	r = kg_dns_find(t, &kg_fib, frame, len, NULL, &q);
	if (r != KG_DNS_ANSWERED)
		return r;
	*out_len = kg_dns_build(t, &kg_fib, frame, room, &q, 0);
	*egress = q.egress;
	return *out_len ? KG_DNS_ANSWERED : KG_DNS_MISS;
}
