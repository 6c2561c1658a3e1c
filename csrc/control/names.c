/* SPDX-License-Identifier: BSD-3-Clause
 *
 * names.c - the one place where the drop reasons, punt reasons and
 * policing classes of kni_gw.h get their names (and drop reasons their
 * stage). Python, the statistics, the metrics and the README's tables are
 * read from here (kg_name, kg_drop_stage): add a reason in kni_gw.h and
 * here, nowhere else.
 */
#include <errno.h>
#include <stddef.h>

#include "kni_gw.h"

static const struct {
	const char *name;
	int stage;
} drops[KG_DROP_MAX] = {
	[KG_DROP_TO_KERNEL_FULL] = { "to_kernel_full", KG_STAGE_RX },
	[KG_DROP_FWD_FIFO_FULL] = { "fwd_fifo_full", KG_STAGE_RX },
	[KG_DROP_PORT_DOWN_RX] = { "port_down_rx", KG_STAGE_RX },
	[KG_DROP_RUNT] = { "runt", KG_STAGE_RX },
	[KG_DROP_BAD_HEADER] = { "bad_header", KG_STAGE_RX },
	[KG_DROP_BAD_CHECKSUM] = { "bad_checksum", KG_STAGE_RX },
	[KG_DROP_KERNEL_WRITE] = { "kernel_write", KG_STAGE_EXC },
	[KG_DROP_KERNEL_FIFO_FULL] = { "kernel_fifo_full", KG_STAGE_EXC },
	[KG_DROP_TX_NIC] = { "tx_nic", KG_STAGE_TX },
	[KG_DROP_PORT_DOWN_TX] = { "port_down_tx", KG_STAGE_TX },
	[KG_DROP_POLICED] = { "policed", KG_STAGE_RX },
	[KG_DROP_FWD_TOO_BIG] = { "fwd_too_big", KG_STAGE_RX },
	[KG_DROP_TO_KERNEL_TOO_BIG] = { "to_kernel_too_big", KG_STAGE_EXC },
	[KG_DROP_FROM_KERNEL_TOO_BIG] = { "from_kernel_too_big", KG_STAGE_EXC },
	[KG_DROP_DNS_RRL] = { "dns_rrl", KG_STAGE_RX },
};

static const char *const punts[KG_PUNT_MAX] = {
	[KG_PUNT_NOT_IP] = "not_ip",
	[KG_PUNT_LOCAL] = "local",
	[KG_PUNT_GLEAN] = "glean",
	[KG_PUNT_NOT_FAST] = "not_fast",
	[KG_PUNT_NO_ROUTE] = "no_route",
	[KG_PUNT_UNRESOLVED] = "unresolved",
	[KG_PUNT_TTL] = "ttl",
	[KG_PUNT_OPTIONS] = "options",
	[KG_PUNT_MTU] = "mtu",
	[KG_PUNT_L2_MULTICAST] = "l2_multicast",
	[KG_PUNT_NOT_OURS] = "not_ours",
	[KG_PUNT_IP_MULTICAST] = "ip_multicast",
	[KG_PUNT_SPECIAL] = "special",
	[KG_PUNT_VLAN] = "vlan",
	[KG_PUNT_ICMPV6] = "icmpv6",
	[KG_PUNT_FWD_OFF] = "forwarding_off",
	[KG_PUNT_TABLE_FULL] = "table_full",
};

static const char *const police[KG_POLICE_MAX] = {
	[KG_POLICE_ARP] = "arp",
	[KG_POLICE_ND] = "nd",
	[KG_POLICE_ICMP] = "icmp",
	[KG_POLICE_DNS] = "dns",
	[KG_POLICE_LOCAL] = "local",
	[KG_POLICE_RESOLVE] = "resolve",
	[KG_POLICE_ERROR] = "error",
	[KG_POLICE_MULTICAST] = "multicast",
	[KG_POLICE_TRANSIT] = "transit",
	[KG_POLICE_OTHER] = "other",
	[KG_POLICE_ROUTING] = "routing",
};

const char *
kg_name(int kind, unsigned int idx)
{
	switch (kind) {
	case KG_NAME_DROP:
		return idx < KG_DROP_MAX ? drops[idx].name : NULL;
	case KG_NAME_PUNT:
		return idx < KG_PUNT_MAX ? punts[idx] : NULL;
	case KG_NAME_POLICE:
		return idx < KG_POLICE_MAX ? police[idx] : NULL;
	}
	return NULL;
}

int
kg_drop_stage(unsigned int reason)
{
	return reason < KG_DROP_MAX ? drops[reason].stage : -EINVAL;
}
