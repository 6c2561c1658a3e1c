/* SPDX-License-Identifier: BSD-3-Clause
 *
 * kni_gw.h - the narrow C API that Python sees.
 *
 * This header is read twice: by the C compiler (every csrc file includes it) and by
 * cffi's cdef (kni_gw/_build.py). Keep it plain C: no DPDK types, no
 * function-like macros, no includes, only integer #defines.
 *
 * Return convention: burst/count functions return a count; everything else
 * returns 0 or a negative errno value, and the caller turns it into a
 * message once.
 */
#ifndef KNI_GW_H
#define KNI_GW_H

#define KG_MAX_PORTS 16
#define KG_RX_LCORES 8  /* rx lcores per port (RSS spreads flows over them) */
#define KG_IFNAMSIZ 16
#define KG_ERRLEN 256

/* exception backends (DESIGN.md section 5) */
#define KG_BACKEND_TAP 0
#define KG_BACKEND_VIRTIO_USER 1

/* classifier verdicts */
#define KG_VERDICT_PUNT 0
#define KG_VERDICT_FORWARD 1
#define KG_VERDICT_DROP 2

/* Drop reasons: every mbuf freed by kni-gw is counted under one of these,
 * at the place where it was freed. Grouped by the stage that frees. */
#define KG_DROP_TO_KERNEL_FULL 0 /* rx: fifo to_kernel[N] full */
#define KG_DROP_FWD_FIFO_FULL 1  /* rx: egress fifo tx[M] full */
#define KG_DROP_PORT_DOWN_RX 2   /* rx: vEthN down, port not taking traffic */
#define KG_DROP_RUNT 3           /* rx: shorter than its headers say */
#define KG_DROP_BAD_HEADER 4     /* rx: bad IP version, IHL or length */
#define KG_DROP_BAD_CHECKSUM 5   /* rx: bad IPv4 header checksum */
#define KG_DROP_KERNEL_WRITE 6   /* exception: vEthN did not take it */
#define KG_DROP_KERNEL_FIFO_FULL 7 /* exception: from vEthN, fifo tx[N] full */
#define KG_DROP_TX_NIC 8         /* tx: port did not take it */
#define KG_DROP_PORT_DOWN_TX 9   /* tx: vEthN down, port not sending */
#define KG_DROP_POLICED 10       /* rx: punt over its class's rate (control-plane policing) */
/* Dropped for their size (datapath/segs.h): a frame longer than the device
 * it goes to takes, or a chain of segments that device cannot send. */
#define KG_DROP_FWD_TOO_BIG 11   /* rx: forwarded, the egress port cannot send it */
#define KG_DROP_TO_KERNEL_TOO_BIG 12   /* exception: vEthN's device cannot take it */
#define KG_DROP_FROM_KERNEL_TOO_BIG 13 /* exception: from vEthN, the port cannot send it */
#define KG_DROP_DNS_RRL 14       /* rx: a DNS answer in C over its client's response rate */
#define KG_DROP_MAX 15

/* Control-plane policing: punted frames are metered per port and class. */
#define KG_POLICE_ARP 0         /* ARP */
#define KG_POLICE_ND 1          /* ND, RS/RA, MLD */
#define KG_POLICE_ICMP 2        /* ICMP / ICMPv6 to a local address */
#define KG_POLICE_DNS 3         /* UDP/TCP port 53 to a local address */
#define KG_POLICE_LOCAL 4       /* anything else to a local address */
#define KG_POLICE_RESOLVE 5     /* next hop to resolve (glean, unresolved) */
#define KG_POLICE_ERROR 6       /* TTL, options, no route: ICMP errors to make */
#define KG_POLICE_MULTICAST 7   /* L2/IP multicast and broadcast */
#define KG_POLICE_TRANSIT 8     /* forwarded by the kernel: other routes, MTU, ... */
#define KG_POLICE_OTHER 9       /* not ours, martian, VLAN, other ethertypes */
#define KG_POLICE_ROUTING 10    /* OSPF, BGP, BFD, VRRP, PIM, RIP, LDP */
#define KG_POLICE_MAX 11
#define KG_POLICE_UNLIMITED 4294967295 /* police_pps: not policed (0 drops the whole class) */

/* Why a frame went to the kernel (DESIGN.md section 2). Values below
 * KG_NH_FIRST_ADJ stored as an LPM next hop mean "punt for this reason". */
#define KG_PUNT_NOT_IP 0        /* ARP, LLDP, ... any other ethertype */
#define KG_PUNT_LOCAL 1         /* to a local or broadcast address */
#define KG_PUNT_GLEAN 2         /* connected subnet, neighbour not resolved */
#define KG_PUNT_NOT_FAST 3      /* route not via a vEth, or of a special kind */
#define KG_PUNT_NO_ROUTE 4      /* no route at all */
#define KG_PUNT_UNRESOLVED 5    /* next hop's MAC not known yet */
#define KG_PUNT_TTL 6           /* TTL / hop limit <= 1 */
#define KG_PUNT_OPTIONS 7       /* IPv4 options, IPv6 hop-by-hop */
#define KG_PUNT_MTU 8           /* bigger than the egress MTU */
#define KG_PUNT_L2_MULTICAST 9  /* Ethernet broadcast / multicast */
#define KG_PUNT_NOT_OURS 10     /* Ethernet destination is not the port's MAC */
#define KG_PUNT_IP_MULTICAST 11 /* IP multicast / limited broadcast */
#define KG_PUNT_SPECIAL 12      /* martian, link-local, loopback, ... addresses */
#define KG_PUNT_VLAN 13         /* 802.1Q / 802.1ad tagged */
#define KG_PUNT_ICMPV6 14       /* ND, RS/RA, MLD, redirects */
#define KG_PUNT_FWD_OFF 15      /* forwarding disabled on the ingress vEth */
#define KG_PUNT_TABLE_FULL 16   /* a more specific route did not fit in the table */
#define KG_PUNT_MAX 17

/* Names of the reasons and classes above, for Python and people: defined
 * once, in names.c, and read through kg_name(). */
#define KG_NAME_DROP 0
#define KG_NAME_PUNT 1
#define KG_NAME_POLICE 2
/* The stage that counts a drop reason (kg_drop_stage). */
#define KG_STAGE_RX 0
#define KG_STAGE_EXC 1
#define KG_STAGE_TX 2

/* Next-hop encoding shared with Python (tables.h has the picture).
 * A route's next hop is a punt reason (< KG_NH_FIRST_ADJ), an adjacency
 * index, or KG_NH_GROUP | a group slot. A group slot holds either a punt
 * reason or a range of buckets (adjacency indexes, weights expanded). */
#define KG_NH_FIRST_ADJ 32      /* adjacency indexes start here */
#define KG_NH_GROUP 0x80000     /* flag: a group slot */
#define KG_NH_NONE 0xffffffff   /* no default route */
#define KG_ADJ_MAX 65536
#define KG_GROUP_MAX 65536
#define KG_BUCKET_MAX 1048576   /* bucket pool shared by the group slots */

/* Counters of one port. Each lcore owns one copy per port and is its only
 * writer; kg_stats_read() sums the copies. Which lcore writes what: */
struct kg_port_counters {
	unsigned long long rx_packets;  /* rx lcore: frames taken from the port */
	unsigned long long rx_bytes;    /* rx lcore */
	unsigned long long to_kernel;   /* rx lcore: enqueued to fifo to_kernel */
	unsigned long long forwarded;   /* rx lcore: enqueued to a tx fifo */
	unsigned long long kernel_tx;   /* exception lcore: written to vEthN */
	unsigned long long from_kernel; /* exception lcore: read from vEthN */
	unsigned long long tx_packets;  /* tx lcore: taken by the port */
	unsigned long long tx_bytes;    /* tx lcore */
	unsigned long long dns_answered; /* rx lcore: DNS queries answered in C (datapath/dns.h),
					  * enqueued for sending (rate-limit truncations included) */
	unsigned long long dns_missed;  /* rx lcore: DNS queries to us that the answer
					 * table did not hold (punted, as any local frame) */
	unsigned long long drops[15];   /* by KG_DROP_*, where they happened */
	unsigned long long punts[17];   /* rx: by KG_PUNT_* (frames let through) */
	unsigned long long policed[11]; /* rx: by KG_POLICE_* (frames dropped) */
};

/* What Python knows about a port besides the lcore counters. */
struct kg_port_info {
	unsigned short port_id;     /* DPDK port id of the wire port */
	unsigned short exc_port_id; /* DPDK port id of the vEthN device */
	unsigned char mac[6];
	unsigned short mtu;
	unsigned short max_mtu;     /* the largest MTU the port and vEthN carry (control/mtu.c) */
	int admin_up;               /* 1 when vEthN is up (port forwarding) */
	int started;                /* 1 when the port is started */
	int link_up;                /* port link, as the PMD reports it */
	unsigned int link_speed;    /* Mbps */
	unsigned int if_index;      /* kernel netdev behind the port, or 0 */
	char driver[32];
	/* hardware counters of the wire port and of the vEth device */
	unsigned long long hw_ipackets, hw_imissed, hw_ierrors, hw_rx_nombuf;
	unsigned long long hw_opackets, hw_oerrors;
	unsigned long long exc_ipackets, exc_opackets, exc_oerrors;
	unsigned int to_kernel_fifo_used; /* fifo occupancy now */
	unsigned int tx_fifo_used;
	/* queues: how many, and how the rx queues are spread */
	unsigned int nb_rxq, nb_txq;
	int rx_spread;              /* KG_SPREAD_* */
	int tx_fifo_fallback;       /* 1: the driver has too few tx queues; forwarded
				       frames reach it through its tx lcore's fifo */
};
#define KG_SPREAD_NONE 0        /* one rx queue */
#define KG_SPREAD_RSS 1         /* the NIC's RSS (IP, TCP, UDP) */
#define KG_SPREAD_DRIVER 2      /* the driver's own (af_packet fanout hash, af_xdp
				   the netdev's RSS, pcap one file per queue) */

struct kg_port_conf {
	unsigned short port;     /* DPDK port id */
	unsigned short lcore_rx[8]; /* KG_RX_LCORES: its rx lcores, one rx queue each */
	unsigned short nb_rx_lcores;
	unsigned short lcore_tx;
	unsigned short lcore_exc; /* exception I/O; = lcore_tx when not given */
	char ifname[16];          /* vEthN */
};

/* The fast path's tables. Sizes; 0 takes the default (Python sizes them
 * from --max-routes, see kni_gw/config.py table_sizes). */
struct kg_fib_conf {
	unsigned int routes4;   /* IPv4 routes [65536] */
	unsigned int tbl8s4;    /* IPv4 groups for prefixes longer than /24 [4096] */
	unsigned int routes6;   /* IPv6 rules [16384] */
	unsigned int tbl8s6;    /* IPv6 groups [16384] */
};
struct kg_config {
	unsigned int nb_ports;
	struct kg_port_conf port[16];
	int backend;              /* KG_BACKEND_* */
	int promisc;              /* -P */
	unsigned int rx_desc;     /* descriptors per rx queue */
	unsigned int tx_desc;     /* descriptors per tx queue */
	unsigned int fifo_size;   /* entries per fifo, power of two */
	unsigned int burst;       /* <= 64 */
	unsigned int idle_sleep_us; /* upper bound of idle back-off; 0 = busy poll */
	unsigned int mbufs;       /* 0: computed; out: the pool size made */
	unsigned int mbuf_size;   /* data room of an mbuf, headroom included;
	                             0: RTE_MBUF_DEFAULT_BUF_SIZE (2176) */
	unsigned int mbuf_cache;  /* out */
	struct kg_fib_conf fib;
	unsigned int police_pps[11];   /* per KG_POLICE_* class, per port; 0 = drop all,
	                                  KG_POLICE_UNLIMITED = not policed */
	unsigned int police_burst[11];
};

/* EAL and set-up. kg_eal_init() pins the calling thread: call it from the
 * thread that is to become the EAL main lcore. Once per process. */
int kg_eal_init(int argc, char **argv);
int kg_lcore_enabled(unsigned int lcore_id);
int kg_setup(struct kg_config *cfg, char *err, unsigned int errlen);
/* Runs every lcore's loop (the caller's too); returns after kg_stop(). */
int kg_run(void);
void kg_stop(void);
/* Stops and closes the ports (removing vEthN) and releases EAL memory. */
void kg_teardown(void);

/* Control operations, from the control thread while kg_run() runs. */
int kg_port_admin(unsigned short port, int up);
/* Sets the MTU of the port and of vEthN's device when both can carry it
 * (control/mtu.c); else -EINVAL (or the device's error) and err says which
 * limit, in one line. Nothing is changed on a refusal. */
int kg_port_set_mtu(unsigned short port, unsigned short mtu, char *err, unsigned int errlen);
int kg_port_set_mac(unsigned short port, const unsigned char *mac);
int kg_port_promisc(unsigned short port, int on);
int kg_port_allmulti(unsigned short port, int on);
int kg_port_info(unsigned short port, struct kg_port_info *out);

/* Statistics: sums of the per-lcore counters, one entry per configured
 * port, in configuration order. Returns the number of entries. */
int kg_stats_read(struct kg_port_counters *out, unsigned int n);
/* One lcore's own counters, per configured port; -ENOENT if it has no role. */
int kg_stats_read_lcore(unsigned int lcore, struct kg_port_counters *out, unsigned int n);
unsigned int kg_mbufs_in_use(void);
unsigned int kg_mbufs_total(void);
unsigned int kg_mbufs_withheld(void);
/* The mempool driver of the mbuf pool: kg_hot, or DPDK's choice where
 * the user, the platform or a port asks for it (csrc/control/pool.c). */
const char *kg_mbuf_pool_ops(void);

int kg_fib_create(const struct kg_fib_conf *conf, char *err, unsigned int errlen);
/* Bytes the tables of this configuration take (what kg_fib_create asks of
 * EAL's memory), without creating them. */
unsigned long long kg_fib_size(const struct kg_fib_conf *conf);
/* Routes: ip in network byte order; depth 0 is the default route. nh as
 * above (KG_PUNT_NO_ROUTE is not a next hop: it is what a miss returns).
 * 0, or -ENOSPC when the table is full (nothing changed then). */
int kg_route4_add(unsigned int ip_be, unsigned char depth, unsigned int nh);
int kg_route4_del(unsigned int ip_be, unsigned char depth);
/* Ends a batch of IPv4 edits: waits for the lcores' quiescence if any. */
void kg_route4_commit(void);
/* IPv6 changes come in batches: begin() stops IPv6 lookups (the lcores punt
 * IPv6 meanwhile) and waits for the lcores, end() resumes them. */
int kg_route6_begin(void);
int kg_route6_add(const unsigned char *ip, unsigned char depth, unsigned int nh);
int kg_route6_del(const unsigned char *ip, unsigned char depth);
void kg_route6_end(void);
/* Adjacency: a next hop's MAC and egress port (configuration index), set
 * and cleared atomically. */
int kg_adj_set(unsigned int idx, unsigned int port_index, const unsigned char *mac);
int kg_adj_clear(unsigned int idx);
/* Group slot: write n buckets at [base, base + n) of the bucket pool (a
 * range no reader can be using), then point the slot at them, atomically:
 * every route through the slot moves at once. */
int kg_group_set(unsigned int slot, unsigned int base, const unsigned int *adj, unsigned int n);
/* Group slot that punts for `reason` (a next hop the fast path cannot use). */
int kg_group_punt(unsigned int slot, unsigned int reason);
/* Forwarding on/off per ingress port (the kernel's forwarding sysctls). */
int kg_fib_forwarding(unsigned int port_index, int ipv4, int ipv6);
/* Port MAC and MTU as the classifier sees them (set by kg_setup and the
 * port operations; exposed for tests of the classifier without ports). */
int kg_fib_port(unsigned int port_index, const unsigned char *mac, unsigned int mtu);
/* The egress IPv6 MTU of a port (net.ipv6.conf.<vEth>.mtu); 0: the port's. */
int kg_fib_port_mtu6(unsigned int port_index, unsigned int mtu);
/* Waits until no lcore can still use what was unlinked before the call. */
void kg_sync(void);
unsigned long long kg_fib_memory(void);
/* 1 when the IPv4 table is looked up with AVX-512 (control/tables.c). */
int kg_fib4_avx512(void);
/* Neighbour liveness. The rx lcores stamp the adjacencies they forward to
 * ("used"), and, for frames forwarded from a neighbour's address, its
 * adjacency as "heard" (same source MAC) or "moved" (another source MAC).
 * kg_adj_scan() ends the current period: it fills out[kind] (kind 0 used,
 * 1 moved, 2 heard; out is max entries per kind) with the adjacency
 * indexes stamped during it, their counts in n[kind]. Returns 0. */
#define KG_STAMP_USED 0
#define KG_STAMP_MOVED 1
#define KG_STAMP_HEARD 2
#define KG_STAMPS 3
int kg_adj_scan(unsigned int *out, unsigned int *n, unsigned int max);

/* The classifier and the forwarding rewrite, over frame bytes and the
 * tables above: pure functions, unit-tested and fuzzed without ports. A
 * frame starts at an even address, as an mbuf's data does (its headers
 * are read through DPDK's structs; rte_ether_hdr is 2-byte aligned). */
struct kg_verdict {
	int action;             /* KG_VERDICT_* */
	int reason;             /* KG_PUNT_* or KG_DROP_* */
	unsigned int egress;    /* port index, FORWARD only */
	unsigned int adj_idx;   /* adjacency index, FORWARD only */
	unsigned long long adj; /* adjacency word, FORWARD only */
	unsigned int moved;     /* adjacency of the frame's source address whose
				 * MAC is not the frame's source MAC, or 0 */
	unsigned int heard;     /* adjacency of the frame's source address whose
				 * MAC is the frame's source MAC, or 0 */
};
int kg_classify(unsigned int in_port, const unsigned char *frame,
		unsigned int len, struct kg_verdict *v);
/* The rx stage's fast lane on the same frame (its addresses looked up as
 * the rx stage does): KG_VERDICT_FORWARD with v filled, or 0 where the rx
 * stage would leave the frame to the classifier. Wherever it forwards,
 * kg_classify must give the same v. */
int kg_classify_fast(unsigned int in_port, const unsigned char *frame,
		     unsigned int len, struct kg_verdict *v);
/* The policing class (KG_POLICE_*) of a frame the classifier punted, or
 * -1 when it does not punt it. */
int kg_police(unsigned int in_port, const unsigned char *frame, unsigned int len);
/* Rewrites a frame classified FORWARD in place; returns its new length. */
unsigned int kg_rewrite(unsigned char *frame, unsigned int len,
			const struct kg_verdict *v);
/* The rx stage's way with a frame in several segments (datapath/segs.h),
 * for tests: the frame is cut into a chain of mbufs (`first` bytes in the
 * first segment, after `first_off` bytes of headroom, then `seg` bytes a
 * segment), classified on its first KG_SEGS_HEAD bytes with its whole
 * length, and, when forwarded, rewritten, trimmed and made sendable by an
 * egress that takes chains (tx_segs) or not. out gets the frame as it
 * would leave (up to *out_len bytes; *out_len is set to its length).
 * Returns its segment count when it leaves, 0 when it is dropped as too
 * big for the egress (KG_DROP_FWD_TOO_BIG), or a negative errno. */
#define KG_SEGS_HEAD 128
int kg_segs_test(unsigned int in_port, const unsigned char *frame, unsigned int len,
		 unsigned int first_off, unsigned int first, unsigned int seg, int tx_segs,
		 struct kg_verdict *v, unsigned char *out, unsigned int *out_len);

/* DNS answers in C (datapath/dns.h, control/dns.c; kni_gw/dnsfast.py
 * compiles the responder's answers into them). One table is published at a
 * time, swapped whole with RCU: an lcore answers from the old one or the new
 * one, never from a mix.
 *
 * An entry is a question (name in wire form, lower case; type; class IN;
 * without EDNS or with a plain OPT) and its answer for a client on IPv4
 * (ans[0]) and on IPv6 (ans[1]): the header flags (RD comes from the query),
 * the section counts and the bytes after the question, at body_off in the
 * bodies blob. An EDNS query whose payload size (as the responder reads it:
 * max(512, min(payload, 1232))) is below min_payload is not answered. */
#define KG_DNS_NAME_MAX 255
struct kg_dns_answer {
	unsigned int body_off;
	unsigned short body_len;
	unsigned short flags;
	unsigned short an, ns, ar;
	unsigned short min_payload;
};
struct kg_dns_entry {
	unsigned int name_off;          /* in the names blob */
	unsigned short name_len;
	unsigned short qtype;
	unsigned char edns;             /* 1: the query has a plain OPT */
	struct kg_dns_answer ans[2];    /* client on IPv4, on IPv6 */
};
/* What the table answers: queries to these addresses (network byte order),
 * on this UDP port; per-source response-rate limit (RRL): at most rrl_rate
 * answers a second to one /24 (IPv4) or /56 (IPv6), a second's worth as
 * burst; 0: no limit. Over it, every rrl_slip-th query gets an empty
 * truncated answer (TC: the client retries over TCP, which the responder
 * answers) and the others are dropped (KG_DROP_DNS_RRL); slip 0 drops all. */
#define KG_DNS_ADDRS_MAX 32
struct kg_dns_conf {
	unsigned short udp_port;
	unsigned int n_addr4, n_addr6;
	unsigned int addr4[32];               /* KG_DNS_ADDRS_MAX */
	unsigned char addr6[32][16];
	unsigned int rrl_rate;
	unsigned int rrl_slip;
};
/* Builds a table from these arrays (copied; checked: every offset inside its
 * blob) and publishes it; the previous one is freed once no lcore can read
 * it. 0, -EINVAL (err says what), -ENOMEM. */
int kg_dns_publish(const struct kg_dns_conf *conf, const struct kg_dns_entry *e, unsigned int n,
		   const unsigned char *names, unsigned int names_len,
		   const unsigned char *bodies, unsigned int bodies_len, char *err, unsigned int errlen);
/* No table: every DNS query goes to the responder. */
void kg_dns_unpublish(void);
/* Bytes the published table takes, 0 when none. */
unsigned long long kg_dns_memory(void);
/* The rx stage's way with one frame received on port in_port, for tests
 * and the fuzzer: KG_DNS_ANSWERED (frame rewritten in place into the
 * answer, up to room bytes; *out_len its length, *egress the port index it
 * leaves by), KG_DNS_MISS (a DNS query to us the table does not hold),
 * KG_DNS_NOT_DNS (anything else, the table present or not). Rate limits are
 * not applied. */
#define KG_DNS_NOT_DNS 0
#define KG_DNS_MISS 1
#define KG_DNS_ANSWERED 2
int kg_dns_test(unsigned int in_port, unsigned char *frame, unsigned int len, unsigned int room,
		unsigned int *out_len, unsigned int *egress);

/* The response-rate limit (datapath/rrl.h) on its own, for tests: n
 * answers to client prefixes keys[i] at times us[i] (microseconds), on a
 * fresh table of buckets with this rate and slip; out[i] gets
 * KG_RRL_PASS, KG_RRL_SLIP or KG_RRL_DROP. kg_rrl_slot: the slot a prefix
 * takes (prefixes that share one share a bucket). */
#define KG_RRL_PASS 0
#define KG_RRL_SLIP 1
#define KG_RRL_DROP 2
int kg_rrl_test(unsigned int rate, unsigned int slip, const unsigned long long *keys,
		const unsigned long long *us, unsigned int n, int *out);
unsigned int kg_rrl_slot(unsigned long long key);

/* Name of reason/class idx of a kind (KG_NAME_*), or NULL past the end. */
const char *kg_name(int kind, unsigned int idx);
/* KG_STAGE_* of a drop reason, or -EINVAL. */
int kg_drop_stage(unsigned int reason);

const char *kg_strerror(int err);
const char *kg_dpdk_version(void);

#endif /* KNI_GW_H */
