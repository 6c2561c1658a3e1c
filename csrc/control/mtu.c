/* SPDX-License-Identifier: BSD-3-Clause
 *
 * mtu.c - the MTU a port and its vEthN carry, exactly, and setting it on
 * both (kg_port_set_mtu). An MTU is never accepted and then broken: it is
 * taken only when every device on the way can carry its frames, else
 * refused with the limit that binds, in one line.
 *
 * A frame of MTU m is m + 18 bytes at most in an mbuf (the Ethernet header
 * and one VLAN tag; no CRC). m is accepted when
 *   - the port takes it, as ethdev checks it (min_mtu/max_mtu and
 *     max_rx_pktlen in dev_info);
 *   - vEthN's device takes it likewise. DPDK 22.11's net_tap says
 *     max_rx_pktlen 1522 (fixed in 23.03), so ethdev refuses it an MTU
 *     over 1504, and its tx drops frames longer than its MTU + 22: a vEthN
 *     on TAP carries 1504 at most there;
 *   - the port's rx puts such a frame into one mbuf as that PMD fills it,
 *     or the port scatters it over several (RTE_ETH_RX_OFFLOAD_SCATTER).
 *     One mbuf holds: data room - headroom; net_af_xdp: XDP_PACKET_HEADROOM
 *     less (the kernel writes the frame that far into the UMEM chunk, which
 *     is the mbuf); net_af_packet: what its ring frame holds, framesz - 66
 *     (tpacket_rcv's offset of the MAC header in a TPACKET_V2 frame);
 *   - vEthN's rx, likewise (TAP scatters: any length);
 *   - a frame longer than one mbuf of vEthN's rx comes from it as a chain:
 *     the port must send chains (RTE_ETH_TX_OFFLOAD_MULTI_SEGS;
 *     linearizing cannot help, the first segment is full); a chain from
 *     the port, likewise, must be taken by vEthN's device;
 *   - the port sends such a frame (net_af_packet: framesz - 32).
 * net_af_packet and net_af_xdp neither scatter nor (af_xdp) send chains in
 * 22.11: their MTU is bounded by one mbuf (--mbuf-size sizes it).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <linux/if_packet.h>
#include <rte_dev.h>
#include <rte_devargs.h>
#include <rte_errno.h>
#include <rte_kvargs.h>

#include "kg_internal.h"

#define FRAME_OVERHEAD (RTE_ETHER_HDR_LEN + RTE_VLAN_HLEN)
#define XDP_HEADROOM 256        /* XDP_PACKET_HEADROOM, linux/bpf.h */
#define AF_PACKET_FRAMESZ 2048  /* net_af_packet's default framesz */
/* where tpacket_rcv puts the MAC header in a TPACKET_V2 ring frame:
 * TPACKET_ALIGN(TPACKET2_HDRLEN + 16) - 14; and where the PMD's tx copies
 * a frame to: TPACKET2_HDRLEN - sizeof(struct sockaddr_ll) */
#define AF_PACKET_RX_OFF (TPACKET_ALIGN(TPACKET2_HDRLEN + 16) - RTE_ETHER_HDR_LEN)
#define AF_PACKET_TX_OFF (TPACKET2_HDRLEN - sizeof(struct sockaddr_ll))

#define store_relaxed(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)

/* The MTU range ethdev lets a device have, computed as rte_eth_dev_set_mtu
 * checks it (eth_dev_validate_mtu, eth_dev_get_overhead_len). */
static int
ethdev_mtu_range(uint16_t pid, uint32_t *min, uint32_t *max, const char **driver)
{
	struct rte_eth_dev_info info;
	uint32_t overhead;
	int ret = rte_eth_dev_info_get(pid, &info);

	if (ret < 0)
		return ret;
	if (info.max_mtu != UINT16_MAX && info.max_rx_pktlen > info.max_mtu)
		overhead = info.max_rx_pktlen - info.max_mtu;
	else
		overhead = RTE_ETHER_HDR_LEN + RTE_ETHER_CRC_LEN;
	*min = RTE_MAX((uint32_t)info.min_mtu, RTE_ETHER_MIN_LEN - overhead);
	*max = RTE_MIN((uint32_t)info.max_mtu,
		       info.max_rx_pktlen > overhead ? info.max_rx_pktlen - overhead : 0);
	*driver = info.driver_name;
	return 0;
}

static const char *
driver_of(uint16_t pid)
{
	struct rte_eth_dev_info info;

	return rte_eth_dev_info_get(pid, &info) == 0 ? info.driver_name : "?";
}

/* net_af_packet's framesz= (its devargs), or its default. */
static uint32_t
af_packet_framesz(uint16_t pid)
{
	struct rte_eth_dev_info info;
	const struct rte_devargs *da;
	struct rte_kvargs *kv;
	uint32_t fs = AF_PACKET_FRAMESZ;

	if (rte_eth_dev_info_get(pid, &info) != 0 || info.device == NULL)
		return fs;
	da = rte_dev_devargs(info.device);
	if (da == NULL || da->args == NULL || da->args[0] == '\0')
		return fs;
	kv = rte_kvargs_parse(da->args, NULL);
	if (kv != NULL) {
		const char *v = rte_kvargs_get(kv, "framesz");

		if (v != NULL && atoi(v) > 0)
			fs = (uint32_t)atoi(v);
		rte_kvargs_free(kv);
	}
	return fs;
}

/* The longest frame device pid's rx puts into one mbuf; how says where
 * that bound comes from. */
static uint32_t
rx_room(uint16_t pid, char *how, size_t n)
{
	const char *driver = driver_of(pid);
	uint32_t data_room = rte_pktmbuf_data_room_size(kg.pool);
	uint32_t room = data_room - RTE_PKTMBUF_HEADROOM;

	if (strcmp(driver, "net_af_xdp") == 0) {
		room = room > XDP_HEADROOM ? room - XDP_HEADROOM : 0;
	} else if (strcmp(driver, "net_af_packet") == 0) {
		uint32_t fs = af_packet_framesz(pid);
		uint32_t ring = fs > AF_PACKET_RX_OFF ? fs - AF_PACKET_RX_OFF : 0;

		if (ring < room) {
			snprintf(how, n, "one ring frame, which holds %u bytes of it (framesz=%u)",
				 ring, fs);
			return ring;
		}
	}
	snprintf(how, n, "one mbuf, which holds %u bytes of it (--mbuf-size %u)", room,
		 data_room);
	return room;
}

/* The longest frame the port sends (net_af_packet drops longer ones and
 * says it sent them). */
static uint32_t
tx_max_frame(uint16_t pid)
{
	if (strcmp(driver_of(pid), "net_af_packet") == 0)
		return af_packet_framesz(pid) - AF_PACKET_TX_OFF;
	return UINT32_MAX;
}

/* The longest frame vEthN's device takes at MTU mtu: net_tap's tx drops
 * what is longer than its MTU + 22 (pmd_tx_burst), and the rest of the
 * burst with it. */
static uint32_t
exc_max_frame(const struct kg_port *p, uint16_t mtu)
{
	if (strcmp(driver_of(p->exc_port_id), "net_tap") == 0)
		return (uint32_t)mtu + RTE_ETHER_HDR_LEN + RTE_ETHER_CRC_LEN + RTE_VLAN_HLEN;
	return UINT32_MAX;
}

struct limit {
	uint32_t mtu;
	char why[200];
};

static void __rte_format_printf(3, 4)
limit_to(struct limit *l, uint32_t mtu, const char *fmt, ...)
{
	va_list ap;

	if (mtu >= l->mtu)
		return;
	l->mtu = mtu;
	va_start(ap, fmt);
	vsnprintf(l->why, sizeof(l->why), fmt, ap);
	va_end(ap);
}

static uint32_t
room_mtu(uint32_t room)
{
	return room > FRAME_OVERHEAD ? room - FRAME_OVERHEAD : 0;
}

/* The largest MTU port p and vEthN carry, and why not more. */
static struct limit
mtu_limit(const struct kg_port *p, uint32_t *min)
{
	struct limit l = { .mtu = UINT16_MAX, .why = "" };
	const char *wire, *exc;
	uint32_t lo, hi, exc_lo;
	char how[120];

	*min = RTE_ETHER_MIN_MTU;
	if (ethdev_mtu_range(p->port_id, &lo, &hi, &wire) == 0) {
		*min = lo;
		limit_to(&l, hi, "%s takes no more", wire);
	} else {
		wire = "the port";
	}
	if (ethdev_mtu_range(p->exc_port_id, &exc_lo, &hi, &exc) == 0)
		limit_to(&l, hi, "%s's device (%s) takes no more", p->ifname, exc);
	else
		exc = "?";
	if (!p->rx_segs && room_mtu(p->rx_room) < l.mtu) {
		rx_room(p->port_id, how, sizeof(how));
		limit_to(&l, room_mtu(p->rx_room), "%s receives a frame into %s", wire, how);
	}
	if (!p->exc_rx_segs) {
		if (room_mtu(p->exc_rx_room) < l.mtu) {
			rx_room(p->exc_port_id, how, sizeof(how));
			limit_to(&l, room_mtu(p->exc_rx_room),
				 "%s's device (%s) receives a frame into %s", p->ifname, exc, how);
		}
	} else if (!p->tx_segs) {
		limit_to(&l, room_mtu(p->exc_rx_room),
			 "%s hands frames over %u bytes in several mbufs, and %s sends no such chain",
			 p->ifname, p->exc_rx_room, wire);
	}
	if (p->rx_segs && !p->exc_tx_segs)
		limit_to(&l, room_mtu(p->rx_room),
			 "%s hands frames over %u bytes in several mbufs, and %s's device (%s) takes no such chain",
			 wire, p->rx_room, p->ifname, exc);
	if (p->tx_max_frame != UINT32_MAX)
		limit_to(&l, room_mtu(p->tx_max_frame), "%s sends frames of %u bytes at most", wire,
			 p->tx_max_frame);
	return l;
}

uint16_t
kg_mtu_max(const struct kg_port *p)
{
	return p->max_mtu;
}

int
kg_mtu_setup(struct kg_port *p, char *err, unsigned int errlen)
{
	struct rte_eth_conf conf;
	struct limit l;
	uint16_t mtu = RTE_ETHER_MTU;
	uint32_t min;
	char how[120];

	if (rte_eth_dev_conf_get(p->port_id, &conf) == 0) {
		p->rx_segs = (conf.rxmode.offloads & RTE_ETH_RX_OFFLOAD_SCATTER) != 0;
		p->tx_segs = (conf.txmode.offloads & RTE_ETH_TX_OFFLOAD_MULTI_SEGS) != 0;
	}
	if (rte_eth_dev_conf_get(p->exc_port_id, &conf) == 0) {
		p->exc_rx_segs = (conf.rxmode.offloads & RTE_ETH_RX_OFFLOAD_SCATTER) != 0;
		p->exc_tx_segs = (conf.txmode.offloads & RTE_ETH_TX_OFFLOAD_MULTI_SEGS) != 0;
	}
	p->rx_room = rx_room(p->port_id, how, sizeof(how));
	p->exc_rx_room = rx_room(p->exc_port_id, how, sizeof(how));
	p->tx_max_frame = tx_max_frame(p->port_id);
	p->exc_mtu = RTE_ETHER_MTU;
	rte_eth_dev_get_mtu(p->exc_port_id, &p->exc_mtu);
	store_relaxed(&p->exc_max_frame, exc_max_frame(p, p->exc_mtu));

	rte_eth_dev_get_mtu(p->port_id, &mtu);
	l = mtu_limit(p, &min);
	p->max_mtu = (uint16_t)l.mtu;    /* what the devices and the pool allow: fixed */
	if (mtu > l.mtu) {
		kg_err(err, errlen, "port %u: its MTU %u cannot be carried: MTU %u at most: %s",
		       p->port_id, mtu, l.mtu, l.why);
		return -EINVAL;
	}
	return 0;
}

int
kg_mtu_set(struct kg_port *p, uint16_t mtu, char *err, unsigned int errlen)
{
	uint32_t min, exc_min, exc_max;
	uint16_t exc_mtu = p->exc_mtu, old_exc = p->exc_mtu;
	const char *exc;
	struct limit l = mtu_limit(p, &min);
	int ret;

	if (mtu < min) {
		kg_err(err, errlen, "MTU %u at least: %s takes no less", min, driver_of(p->port_id));
		return -EINVAL;
	}
	if (mtu > l.mtu) {
		kg_err(err, errlen, "MTU %u at most: %s", l.mtu, l.why);
		return -EINVAL;
	}
	/* vEthN's device: what it takes never shrinks below the default MTU,
	 * so that a smaller MTU changes nothing on the exception path */
	if (ethdev_mtu_range(p->exc_port_id, &exc_min, &exc_max, &exc) == 0)
		exc_mtu = (uint16_t)RTE_MIN(RTE_MAX((uint32_t)mtu, (uint32_t)RTE_ETHER_MTU), exc_max);
	if (exc_mtu != old_exc) {
		if (exc_mtu < old_exc)
			store_relaxed(&p->exc_max_frame, exc_max_frame(p, exc_mtu));
		ret = rte_eth_dev_set_mtu(p->exc_port_id, exc_mtu);
		if (ret < 0) {
			store_relaxed(&p->exc_max_frame, exc_max_frame(p, old_exc));
			kg_err(err, errlen, "%s's device refused MTU %u: %s", p->ifname, exc_mtu,
			       rte_strerror(-ret));
			return ret;
		}
		p->exc_mtu = exc_mtu;
		store_relaxed(&p->exc_max_frame, exc_max_frame(p, exc_mtu));
	}
	ret = rte_eth_dev_set_mtu(p->port_id, mtu);
	if (ret < 0) {
		kg_err(err, errlen, "%s refused it: %s", driver_of(p->port_id), rte_strerror(-ret));
		if (exc_mtu != old_exc) {
			if (old_exc < exc_mtu)
				store_relaxed(&p->exc_max_frame, exc_max_frame(p, old_exc));
			if (rte_eth_dev_set_mtu(p->exc_port_id, old_exc) == 0)
				p->exc_mtu = old_exc;
			store_relaxed(&p->exc_max_frame, exc_max_frame(p, p->exc_mtu));
		}
		return ret;
	}
	return 0;
}
