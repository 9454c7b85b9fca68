/* CDPDK: DPDK headers for Swift plus static-inline tula_* shims for macros, inline functions and mbuf fields. */
#ifndef TULA_CDPDK_H
#define TULA_CDPDK_H

#include <stdint.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_malloc.h>
#include <rte_telemetry.h>
#include <rte_prefetch.h>
#include <rte_ring.h>

/* rte_eth_rx_burst */
static inline uint16_t tula_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n) {
    return rte_eth_rx_burst(port, queue, pkts, n);
}
/* rte_eth_tx_burst */
static inline uint16_t tula_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n) {
    return rte_eth_tx_burst(port, queue, pkts, n);
}
/* rte_pktmbuf_mtod */
static inline void *tula_mbuf_data(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, void *); }
static inline uint16_t tula_mbuf_data_len(const struct rte_mbuf *m) { return m->data_len; }
static inline uint32_t tula_mbuf_pkt_len(const struct rte_mbuf *m) { return m->pkt_len; }
static inline uint16_t tula_mbuf_nb_segs(const struct rte_mbuf *m) { return m->nb_segs; }
static inline uint16_t tula_mbuf_headroom(const struct rte_mbuf *m) { return rte_pktmbuf_headroom(m); }
/* 0: unknown, 1: good, 2: bad — from RTE_MBUF_F_RX_IP_CKSUM_MASK */
static inline uint8_t tula_mbuf_ip_cksum_status(const struct rte_mbuf *m) {
    uint64_t f = m->ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK;
    if (f == RTE_MBUF_F_RX_IP_CKSUM_GOOD) return 1;
    if (f == RTE_MBUF_F_RX_IP_CKSUM_BAD) return 2;
    return 0;
}
/* Moves the start of a single-segment mbuf by delta bytes (negative: into the headroom) and sets its length. */
static inline void tula_mbuf_reshape(struct rte_mbuf *m, int32_t delta, uint32_t new_len) {
    m->data_off = (uint16_t)((int32_t)m->data_off + delta);
    m->data_len = (uint16_t)new_len;
    m->pkt_len = new_len;
}
/* rte_pktmbuf_free_bulk */
static inline void tula_free_bulk(struct rte_mbuf **pkts, unsigned n) { rte_pktmbuf_free_bulk(pkts, n); }
/* rte_pktmbuf_free */
static inline void tula_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }
/* rte_pktmbuf_alloc */
static inline struct rte_mbuf *tula_mbuf_alloc(struct rte_mempool *mp) { return rte_pktmbuf_alloc(mp); }
static inline uint16_t tula_mbuf_port(const struct rte_mbuf *m) { return m->port; }
static inline void tula_mbuf_set_port(struct rte_mbuf *m, uint16_t port) { m->port = port; }
/* rte_ring_sp_enqueue: 0 on success */
static inline int tula_ring_enqueue(struct rte_ring *r, void *obj) { return rte_ring_sp_enqueue(r, obj); }
/* rte_ring_mp_enqueue: 0 on success (control threads may share a ring) */
static inline int tula_ring_mp_enqueue(struct rte_ring *r, void *obj) { return rte_ring_mp_enqueue(r, obj); }
/* rte_ring_sc_dequeue_burst */
static inline unsigned tula_ring_dequeue_burst(struct rte_ring *r, void **objs, unsigned n) {
    return rte_ring_sc_dequeue_burst(r, objs, n, NULL);
}
static inline unsigned tula_ring_flags_sp_sc(void) { return RING_F_SP_ENQ | RING_F_SC_DEQ; }
static inline unsigned tula_ring_flags_sc(void) { return RING_F_SC_DEQ; }
/* rte_prefetch0 */
static inline void tula_prefetch0(const void *p) { rte_prefetch0(p); }
/* rte_rdtsc */
static inline uint64_t tula_rdtsc(void) { return rte_rdtsc(); }
/* rte_errno (a per-lcore macro) */
static inline int tula_errno(void) { return rte_errno; }
/* RTE_MBUF_DEFAULT_BUF_SIZE */
static inline uint16_t tula_default_buf_size(void) { return RTE_MBUF_DEFAULT_BUF_SIZE; }
/* rte_mempool_avail_count / in_use_count */
static inline unsigned tula_mempool_in_use(const struct rte_mempool *mp) { return rte_mempool_in_use_count(mp); }
/* Offload capability bits that Swift cannot import as macros. */
static inline uint64_t tula_rss_hf_ip_tcp_udp(void) { return RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP; }
static inline uint32_t tula_mq_rx_rss(void) { return RTE_ETH_MQ_RX_RSS; }
static inline uint32_t tula_mq_rx_none(void) { return RTE_ETH_MQ_RX_NONE; }
static inline uint64_t tula_rx_offload_ipv4_cksum(void) { return RTE_ETH_RX_OFFLOAD_IPV4_CKSUM; }
/* rte_eth_link_get_nowait's link_status (a bitfield Swift cannot read): 1 up, 0 down, -1 unknown port. */
static inline int tula_link_up(uint16_t port) {
    struct rte_eth_link link;
    if (rte_eth_link_get_nowait(port, &link) != 0) return -1;
    return link.link_status;
}

#endif
