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
#define KG_DROP_MALFORMED 3      /* rx: classifier cannot parse the frame */
#define KG_DROP_KERNEL_WRITE 4   /* exception: vEthN did not take it */
#define KG_DROP_KERNEL_FIFO_FULL 5 /* exception: from vEthN, fifo tx[N] full */
#define KG_DROP_TX_NIC 6         /* tx: port did not take it */
#define KG_DROP_PORT_DOWN_TX 7   /* tx: vEthN down, port not sending */
#define KG_DROP_MAX 8

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
	unsigned long long drops[8];    /* by KG_DROP_*, where they happened */
};

/* What Python knows about a port besides the lcore counters. */
struct kg_port_info {
	unsigned short port_id;     /* DPDK port id of the wire port */
	unsigned short exc_port_id; /* DPDK port id of the vEthN device */
	unsigned char mac[6];
	unsigned short mtu;
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
};

struct kg_port_conf {
	unsigned short port;     /* DPDK port id */
	unsigned short lcore_rx;
	unsigned short lcore_tx;
	unsigned short lcore_exc; /* exception I/O; = lcore_tx when not given */
	char ifname[16];          /* vEthN */
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
	unsigned int mbuf_cache;  /* out */
};

/* EAL and set-up. kg_eal_init() pins the calling thread: call it from the
 * thread that is to become the EAL main lcore. Once per process. */
int kg_eal_init(int argc, char **argv);
int kg_eal_port_count(void);
int kg_lcore_enabled(unsigned int lcore_id);
unsigned int kg_main_lcore(void);
int kg_setup(struct kg_config *cfg, char *err, unsigned int errlen);
/* Runs every lcore's loop (the caller's too); returns after kg_stop(). */
int kg_run(void);
void kg_stop(void);
/* Stops and closes the ports (removing vEthN) and releases EAL memory. */
void kg_teardown(void);

/* Control operations, from the control thread while kg_run() runs. */
int kg_port_admin(unsigned short port, int up);
int kg_port_set_mtu(unsigned short port, unsigned short mtu);
int kg_port_set_mac(unsigned short port, const unsigned char *mac);
int kg_port_promisc(unsigned short port, int on);
int kg_port_allmulti(unsigned short port, int on);
int kg_port_info(unsigned short port, struct kg_port_info *out);

/* Statistics: sums of the per-lcore counters, one entry per configured
 * port, in configuration order. Returns the number of entries. */
int kg_stats_read(struct kg_port_counters *out, unsigned int n);
unsigned int kg_mbufs_in_use(void);
unsigned int kg_mbufs_total(void);

/* The classifier: a pure function over frame bytes (csrc/classify.c). */
int kg_classify(const unsigned char *frame, unsigned int len,
		unsigned short *out_port, int *reason);

const char *kg_strerror(int err);

#endif /* KNI_GW_H */
