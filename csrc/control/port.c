/* SPDX-License-Identifier: BSD-3-Clause
 *
 * port.c - wire ports, their vEthN exception devices and fifos, and the
 * control operations that keep a port in step with its vEthN
 * (what KNI's config_network_if / change_mtu / config_mac_address did).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rte_dev.h>
#include <rte_errno.h>
#include <rte_malloc.h>

#include "kg_internal.h"

/* started and admin_up are published with release and read by the lcores
 * with acquire: what the control thread did to the port before (start,
 * MTU, MAC) is visible to an lcore that sees the flag, on any CPU. */
#define store_release(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

/* Drivers whose dev_stop cannot be undone by dev_start: net_af_packet
 * closes its sockets in dev_stop and never reopens them. Such a port stays
 * started; while its vEthN is down the rx lcore drains it and counts the
 * frames as port_down. */
static bool
driver_restartable(const char *driver)
{
	return strcmp(driver, "net_af_packet") != 0;
}

/* The classifier's copy of a port's MAC and MTU. */
static void
fib_port_sync(const struct kg_port *p)
{
	struct rte_ether_addr mac;
	uint16_t mtu = RTE_ETHER_MTU;

	rte_eth_macaddr_get(p->port_id, &mac);
	rte_eth_dev_get_mtu(p->port_id, &mtu);
	kg_fib_port((unsigned int)(p - kg.port), mac.addr_bytes, mtu);
}

static struct kg_port *
port_by_id(uint16_t port_id)
{
	unsigned int i;

	for (i = 0; i < kg.nb_ports; i++)
		if (kg.port[i].port_id == port_id)
			return &kg.port[i];
	return NULL;
}

/* Configure a port's queues: nb_rxq rx queues (spread by RSS when
 * rx_spread says so), nb_txq tx queues. */
static int
queues_setup(uint16_t pid, unsigned int nb_rxq, unsigned int nb_txq, int rx_spread,
	     unsigned int rx_desc, unsigned int tx_desc, bool scatter, char *err,
	     unsigned int errlen, const char *what)
{
	struct rte_eth_dev_info info;
	struct rte_eth_conf conf;
	uint16_t nb_rxd = rx_desc, nb_txd = tx_desc;
	unsigned int q;
	int ret;

	memset(&conf, 0, sizeof(conf));
	ret = rte_eth_dev_info_get(pid, &info);
	if (ret < 0) {
		kg_err(err, errlen, "%s: cannot read device info: %s", what,
		       rte_strerror(-ret));
		return ret;
	}
	if (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_MULTI_SEGS)
		conf.txmode.offloads |= RTE_ETH_TX_OFFLOAD_MULTI_SEGS;
	if (scatter && (info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_SCATTER))
		conf.rxmode.offloads |= RTE_ETH_RX_OFFLOAD_SCATTER;
	if (rx_spread == KG_SPREAD_RSS) {
		conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
		conf.rx_adv_conf.rss_conf.rss_hf = (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP |
						    RTE_ETH_RSS_UDP) &
						   info.flow_type_rss_offloads;
	}
	ret = rte_eth_dev_configure(pid, nb_rxq, nb_txq, &conf);
	if (ret < 0) {
		kg_err(err, errlen, "%s: cannot configure %u rx and %u tx queues: %s",
		       what, nb_rxq, nb_txq, rte_strerror(-ret));
		return ret;
	}
	ret = rte_eth_dev_adjust_nb_rx_tx_desc(pid, &nb_rxd, &nb_txd);
	if (ret < 0) {
		kg_err(err, errlen, "%s: bad descriptor counts: %s", what,
		       rte_strerror(-ret));
		return ret;
	}
	for (q = 0; q < nb_rxq; q++) {
		ret = rte_eth_rx_queue_setup(pid, q, nb_rxd, rte_eth_dev_socket_id(pid),
					     NULL, kg.pool);
		if (ret < 0) {
			kg_err(err, errlen, "%s: cannot set up rx queue %u: %s", what,
			       q, rte_strerror(-ret));
			return ret;
		}
	}
	for (q = 0; q < nb_txq; q++) {
		ret = rte_eth_tx_queue_setup(pid, q, nb_txd, rte_eth_dev_socket_id(pid),
					     NULL);
		if (ret < 0) {
			kg_err(err, errlen, "%s: cannot set up tx queue %u: %s", what,
			       q, rte_strerror(-ret));
			return ret;
		}
	}
	return 0;
}

/* Drivers that spread flows over their rx queues without RSS offload:
 * net_af_packet (the kernel's PACKET_FANOUT_HASH over its sockets),
 * net_af_xdp (each queue is a queue of the netdev, spread by its RSS),
 * net_pcap (a file per queue: a benchmark harness); net_tap as a wire
 * port too (the kernel picks a queue per flow). */
static bool
driver_spreads(const char *driver)
{
	return strcmp(driver, "net_af_packet") == 0 || strcmp(driver, "net_af_xdp") == 0 ||
	       strcmp(driver, "net_pcap") == 0;
}

/* Drivers whose every rx queue receives whether or not it is set up:
 * net_af_packet opens all `qpairs` sockets in one fanout group at probe, so
 * a queue nobody polls would swallow its share of the flows. All of them
 * are polled (spread over the port's rx lcores). */
static bool
driver_all_queues_live(const char *driver)
{
	return strcmp(driver, "net_af_packet") == 0;
}

/* Drivers that configure as many rx as tx queues, or refuse. */
static bool
driver_paired_queues(const char *driver)
{
	return strcmp(driver, "net_tap") == 0;
}

/* The lcores that forward: the rx lcores of every port. */
static unsigned int
forwarding_lcores(uint16_t *out)
{
	bool seen[RTE_MAX_LCORE] = { false };
	unsigned int i, j, n = 0;

	for (i = 0; i < kg.nb_ports; i++)
		for (j = 0; j < kg.port[i].n_rxl; j++)
			if (!seen[kg.port[i].rxl[j]]) {
				seen[kg.port[i].rxl[j]] = true;
				out[n++] = kg.port[i].rxl[j];
			}
	return n;
}

/* A port's queues: how many rx queues and how flows reach them, which tx
 * queue each forwarding lcore owns (or the fifo fallback), and the rx
 * queues each lcore polls. Refuses what the driver cannot do, in one line. */
static int
port_plan(unsigned int pi, char *err, unsigned int errlen)
{
	struct kg_port *p = &kg.port[pi];
	struct rte_eth_dev_info info;
	uint16_t fwd[RTE_MAX_LCORE];
	unsigned int nfwd, need, q, i;
	int ret;

	ret = rte_eth_dev_info_get(p->port_id, &info);
	if (ret < 0) {
		kg_err(err, errlen, "port %u: %s", p->port_id, rte_strerror(-ret));
		return ret;
	}
	/* rx: one queue per rx lcore (more where every queue is live) */
	p->nb_rxq = p->n_rxl;
	if (driver_all_queues_live(info.driver_name) && info.max_rx_queues > p->nb_rxq)
		p->nb_rxq = RTE_MIN(info.max_rx_queues, KG_RXQ_MAX);
	if (info.max_rx_queues < p->n_rxl) {
		kg_err(err, errlen,
		       "port %u (%s): %u rx lcores need %u rx queues, the driver offers %u%s",
		       p->port_id, info.driver_name, p->n_rxl, p->n_rxl, info.max_rx_queues,
		       strcmp(info.driver_name, "net_af_packet") == 0 ? " (give it qpairs=N)" :
		       strcmp(info.driver_name, "net_af_xdp") == 0 ? " (give it queue_count=N)" : "");
		return -EINVAL;
	}
	if (p->nb_rxq == 1)
		p->rx_spread = KG_SPREAD_NONE;
	else if (info.flow_type_rss_offloads & (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP))
		p->rx_spread = KG_SPREAD_RSS;
	else if (driver_spreads(info.driver_name) || driver_paired_queues(info.driver_name))
		p->rx_spread = KG_SPREAD_DRIVER;
	else {
		kg_err(err, errlen,
		       "port %u (%s): cannot spread flows over %u rx lcores: the driver has no RSS",
		       p->port_id, info.driver_name, p->n_rxl);
		return -EINVAL;
	}

	/* tx: queue 0 for the tx lcore, one more per other forwarding lcore */
	memset(p->txq, KG_TXQ_FIFO, sizeof(p->txq));
	p->txq[p->lcore_tx] = 0;
	nfwd = forwarding_lcores(fwd);
	need = 1;
	for (i = 0; i < nfwd; i++)
		need += fwd[i] != p->lcore_tx;
	if (info.max_tx_queues >= need) {
		p->nb_txq = need;
		q = 1;
		for (i = 0; i < nfwd; i++)
			if (fwd[i] != p->lcore_tx)
				p->txq[fwd[i]] = (uint8_t)q++;
		p->tx_fifo_fallback = false;
	} else {
		p->nb_txq = 1;
		p->tx_fifo_fallback = true;
	}
	/* net_tap takes as many rx queues as tx queues: the extra rx queues
	 * are live (the kernel spreads over them) and polled like the others */
	if (driver_paired_queues(info.driver_name) && p->nb_rxq != p->nb_txq) {
		p->nb_rxq = p->nb_txq = RTE_MAX(p->nb_rxq, p->nb_txq);
		if (p->rx_spread == KG_SPREAD_NONE)
			p->rx_spread = KG_SPREAD_DRIVER;
	}

	for (q = 0; q < p->nb_rxq; q++) {
		unsigned int slot = q % p->n_rxl;
		struct kg_lcore *lc = &kg.lcore[p->rxl[slot]];

		lc->rx[lc->n_rx++] = (struct kg_rxq_ref){ .port = (uint8_t)pi,
							  .queue = (uint8_t)q,
							  .slot = (uint8_t)slot };
	}
	return 0;
}

int
kg_port_plan_all(const struct kg_config *cfg, char *err, unsigned int errlen)
{
	unsigned int i;
	int ret;

	(void)cfg;
	for (i = 0; i < kg.nb_ports; i++) {
		ret = port_plan(i, err, errlen);
		if (ret < 0)
			return ret;
	}
	return 0;
}

/* Create vEthN through the backend, with the wire port's MAC and MTU. */
static int
exc_create(struct kg_port *p, int backend, const struct kg_config *cfg,
	   char *err, unsigned int errlen)
{
	struct rte_ether_addr mac;
	char args[256], macs[RTE_ETHER_ADDR_FMT_SIZE];
	uint16_t mtu = RTE_ETHER_MTU;
	int ret;

	rte_eth_macaddr_get(p->port_id, &mac);
	rte_ether_format_addr(macs, sizeof(macs), &mac);
	rte_eth_dev_get_mtu(p->port_id, &mtu);

	if (backend == KG_BACKEND_VIRTIO_USER) {
		snprintf(p->exc_name, sizeof(p->exc_name), "virtio_user_kg%u",
			 p->port_id);
		snprintf(args, sizeof(args),
			 "path=/dev/vhost-net,iface=%s,mac=%s,queues=1,queue_size=%u",
			 p->ifname, macs, cfg->rx_desc);
	} else {
		snprintf(p->exc_name, sizeof(p->exc_name), "net_tap_kg%u",
			 p->port_id);
		snprintf(args, sizeof(args), "iface=%s,mac=%s", p->ifname, macs);
	}
	ret = rte_eal_hotplug_add("vdev", p->exc_name, args);
	if (ret < 0) {
		p->exc_name[0] = '\0';
		kg_err(err, errlen, "cannot create %s (%s %s): %s", p->ifname,
		       backend == KG_BACKEND_TAP ? "tap" : "virtio-user", args,
		       rte_strerror(-ret));
		return ret;
	}
	ret = rte_eth_dev_get_port_by_name(p->exc_name, &p->exc_port_id);
	if (ret < 0) {
		kg_err(err, errlen, "%s: created but not found", p->ifname);
		return ret;
	}
	ret = queues_setup(p->exc_port_id, 1, 1, KG_SPREAD_NONE, cfg->rx_desc,
			   cfg->tx_desc, true, err, errlen, p->ifname);
	if (ret < 0)
		return ret;
	ret = rte_eth_dev_start(p->exc_port_id);
	if (ret < 0) {
		kg_err(err, errlen, "%s: cannot start: %s", p->ifname,
		       rte_strerror(-ret));
		return ret;
	}
	/* Not fatal: a backend may not let us set them. */
	rte_eth_dev_set_mtu(p->exc_port_id, mtu);
	/* vEthN starts down, as a KNI interface did: the operator brings it
	 * up, and the port follows (kg_port_admin). */
	rte_eth_dev_set_link_down(p->exc_port_id);
	return 0;
}

static int
port_setup(struct kg_port *p, const struct kg_config *cfg, char *err,
	   unsigned int errlen)
{
	struct rte_eth_dev_info info;
	char what[32];
	int ret;

	snprintf(what, sizeof(what), "port %u", p->port_id);
	ret = rte_eth_dev_info_get(p->port_id, &info);
	if (ret < 0) {
		kg_err(err, errlen, "%s: %s", what, rte_strerror(-ret));
		return ret;
	}
	p->restartable = driver_restartable(info.driver_name);
	/* scattered rx where the port has it: a frame longer than one mbuf
	 * then comes as a chain, which the rx stage handles (segs.h) */
	ret = queues_setup(p->port_id, p->nb_rxq, p->nb_txq, p->rx_spread, cfg->rx_desc,
			   cfg->tx_desc, true, err, errlen, what);
	if (ret < 0)
		return ret;
	if (cfg->promisc) {
		ret = rte_eth_promiscuous_enable(p->port_id);
		if (ret < 0) {
			kg_err(err, errlen, "%s: cannot enable promiscuous mode: %s",
			       what, rte_strerror(-ret));
			return ret;
		}
	}
	ret = rte_eth_dev_start(p->port_id);
	if (ret < 0) {
		kg_err(err, errlen, "%s: cannot start: %s", what,
		       rte_strerror(-ret));
		return ret;
	}
	store_release(&p->started, true);
	fib_port_sync(p);
	ret = exc_create(p, cfg->backend, cfg, err, errlen);
	if (ret < 0)
		return ret;
	/* what the port and vEthN carry; their MTU must be in it */
	return kg_mtu_setup(p, err, errlen);
}

/* How many lcores put frames in port pi's tx fifo: its exception lcore
 * (vEthN -> port), and the forwarding lcores that have no tx queue of
 * their own on it. */
static unsigned int
tx_fifo_producers(unsigned int pi)
{
	const struct kg_port *p = &kg.port[pi];
	bool seen[RTE_MAX_LCORE] = { false };
	uint16_t fwd[RTE_MAX_LCORE];
	unsigned int i, n = 1, nfwd = forwarding_lcores(fwd);

	seen[p->lcore_exc] = true;
	for (i = 0; i < nfwd; i++) {
		if (p->txq[fwd[i]] == KG_TXQ_FIFO && !seen[fwd[i]]) {
			seen[fwd[i]] = true;
			n++;
		}
	}
	return n;
}

static int
fifos_setup(unsigned int pi, unsigned int size, char *err, unsigned int errlen)
{
	struct kg_port *p = &kg.port[pi];
	char name[RTE_RING_NAMESIZE];
	unsigned int flags;

	/* to_kernel: produced by the port's rx lcores */
	flags = RING_F_SC_DEQ | (p->n_rxl == 1 ? RING_F_SP_ENQ : 0);
	snprintf(name, sizeof(name), "kg_tokern_%u", p->port_id);
	p->to_kernel = rte_ring_create(name, size, rte_socket_id(), flags);
	snprintf(name, sizeof(name), "kg_tokhi_%u", p->port_id);
	p->to_kernel_hi = rte_ring_create(name, size, rte_socket_id(), flags);
	flags = RING_F_SC_DEQ;
	if (tx_fifo_producers(pi) == 1)
		flags |= RING_F_SP_ENQ;
	snprintf(name, sizeof(name), "kg_tx_%u", p->port_id);
	p->tx = rte_ring_create(name, size, rte_socket_id(), flags);
	if (p->to_kernel == NULL || p->to_kernel_hi == NULL || p->tx == NULL) {
		kg_err(err, errlen, "port %u: cannot create fifos of %u: %s",
		       p->port_id, size, rte_strerror(rte_errno));
		return -rte_errno;
	}
	return 0;
}

int
kg_port_setup_all(struct kg_config *cfg, char *err, unsigned int errlen)
{
	unsigned int i;
	int ret;

	for (i = 0; i < kg.nb_ports; i++) {
		ret = fifos_setup(i, cfg->fifo_size, err, errlen);
		if (ret < 0)
			return ret;
	}
	for (i = 0; i < kg.nb_ports; i++) {
		ret = port_setup(&kg.port[i], cfg, err, errlen);
		if (ret < 0)
			return ret;
	}
	return 0;
}

static void
fifo_free(struct rte_ring **r)
{
	void *m;

	if (*r == NULL)
		return;
	while (rte_ring_dequeue(*r, &m) == 0)
		rte_pktmbuf_free(m);
	rte_ring_free(*r);
	*r = NULL;
}

void
kg_port_close_all(void)
{
	unsigned int i;

	for (i = 0; i < kg.nb_ports; i++) {
		struct kg_port *p = &kg.port[i];

		if (p->exc_name[0]) {
			rte_eth_dev_stop(p->exc_port_id);
			rte_eth_dev_close(p->exc_port_id);
			rte_eal_hotplug_remove("vdev", p->exc_name);
			p->exc_name[0] = '\0';
		}
		if (rte_eth_dev_is_valid_port(p->port_id)) {
			rte_eth_dev_stop(p->port_id);
			rte_eth_dev_close(p->port_id);
		}
		store_release(&p->started, false);
		fifo_free(&p->to_kernel);
		fifo_free(&p->to_kernel_hi);
		fifo_free(&p->tx);
	}
}

int
kg_port_admin(unsigned short port_id, int up)
{
	struct kg_port *p = port_by_id(port_id);
	int ret;

	if (p == NULL)
		return -ENODEV;
	if (!up) {
		/* down whatever happens next: the rx lcore drains a port that
		 * is still started and counts its frames as port_down */
		store_release(&p->admin_up, false);
		if (p->restartable && p->started) {
			store_release(&p->started, false);
			kg_quiesce();
			ret = rte_eth_dev_stop(p->port_id);
			if (ret < 0) {
				/* still running: say so, so that a later up does
				 * not start it twice */
				store_release(&p->started, true);
				return ret;
			}
		}
		return 0;
	}
	if (!p->started) {
		ret = rte_eth_dev_start(p->port_id);
		if (ret < 0)
			return ret;
		store_release(&p->started, true);
	}
	store_release(&p->admin_up, true);
	return 0;
}

int
kg_port_set_mtu(unsigned short port_id, unsigned short mtu, char *err, unsigned int errlen)
{
	struct kg_port *p = port_by_id(port_id);
	int ret;

	if (p == NULL)
		return -ENODEV;
	ret = kg_mtu_set(p, mtu, err, errlen);
	fib_port_sync(p);
	return ret;
}

int
kg_port_set_mac(unsigned short port_id, const unsigned char *mac)
{
	struct kg_port *p = port_by_id(port_id);
	struct rte_ether_addr a;
	int ret;

	if (p == NULL)
		return -ENODEV;
	memcpy(a.addr_bytes, mac, RTE_ETHER_ADDR_LEN);
	if (!rte_is_valid_assigned_ether_addr(&a))
		return -EINVAL;
	ret = rte_eth_dev_default_mac_addr_set(p->port_id, &a);
	fib_port_sync(p);
	return ret;
}

int
kg_port_promisc(unsigned short port_id, int on)
{
	struct kg_port *p = port_by_id(port_id);

	if (p == NULL)
		return -ENODEV;
	return on ? rte_eth_promiscuous_enable(p->port_id) :
		    rte_eth_promiscuous_disable(p->port_id);
}

int
kg_port_allmulti(unsigned short port_id, int on)
{
	struct kg_port *p = port_by_id(port_id);

	if (p == NULL)
		return -ENODEV;
	return on ? rte_eth_allmulticast_enable(p->port_id) :
		    rte_eth_allmulticast_disable(p->port_id);
}

int
kg_port_info(unsigned short port_id, struct kg_port_info *out)
{
	struct kg_port *p = port_by_id(port_id);
	struct rte_eth_dev_info info;
	struct rte_eth_stats st;
	struct rte_eth_link link;
	struct rte_ether_addr mac;
	uint16_t mtu = 0;

	if (p == NULL)
		return -ENODEV;
	memset(out, 0, sizeof(*out));
	out->port_id = p->port_id;
	out->exc_port_id = p->exc_port_id;
	if (rte_eth_macaddr_get(p->port_id, &mac) == 0)
		memcpy(out->mac, mac.addr_bytes, 6);
	if (rte_eth_dev_get_mtu(p->port_id, &mtu) == 0)
		out->mtu = mtu;
	if (p->exc_name[0])
		out->max_mtu = kg_mtu_max(p);
	out->admin_up = __atomic_load_n(&p->admin_up, __ATOMIC_ACQUIRE);
	out->started = __atomic_load_n(&p->started, __ATOMIC_ACQUIRE);
	memset(&link, 0, sizeof(link));
	if (rte_eth_link_get_nowait(p->port_id, &link) == 0) {
		out->link_up = link.link_status == RTE_ETH_LINK_UP;
		out->link_speed = link.link_speed;
	}
	if (rte_eth_dev_info_get(p->port_id, &info) == 0) {
		out->if_index = info.if_index;
		snprintf(out->driver, sizeof(out->driver), "%s",
			 info.driver_name);
	}
	if (rte_eth_stats_get(p->port_id, &st) == 0) {
		out->hw_ipackets = st.ipackets;
		out->hw_imissed = st.imissed;
		out->hw_ierrors = st.ierrors;
		out->hw_rx_nombuf = st.rx_nombuf;
		out->hw_opackets = st.opackets;
		out->hw_oerrors = st.oerrors;
	}
	if (p->exc_name[0] && rte_eth_stats_get(p->exc_port_id, &st) == 0) {
		out->exc_ipackets = st.ipackets;
		out->exc_opackets = st.opackets;
		out->exc_oerrors = st.oerrors;
	}
	if (p->to_kernel)
		out->to_kernel_fifo_used = rte_ring_count(p->to_kernel);
	if (p->to_kernel_hi)
		out->to_kernel_fifo_used += rte_ring_count(p->to_kernel_hi);
	if (p->tx)
		out->tx_fifo_used = rte_ring_count(p->tx);
	out->nb_rxq = p->nb_rxq;
	out->nb_txq = p->nb_txq;
	out->rx_spread = p->rx_spread;
	out->tx_fifo_fallback = p->tx_fifo_fallback;
	return 0;
}
