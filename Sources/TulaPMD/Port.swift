// One ethdev port: configure queues (rte_eth_dev_configure, rx/tx_queue_setup), start, stop, close.

import CDPDK
import TulaCore
import TulaStats

/// A configured DPDK port and what the data path needs to know about it.
public struct EthPort: Sendable {
    public let id: PortID
    public let name: String
    public let mac: MACAddress
    /// The device validates IPv4 checksums itself (RTE_ETH_RX_OFFLOAD_IPV4_CKSUM enabled).
    public let checksumOffload: Bool
    public let queues: Int

    /// Finds the port DPDK created for `config.device` (`rte_eth_dev_get_port_by_name`), configures
    /// `queues` RX/TX queue pairs (RSS when the device has it and there is more than one queue), sets the
    /// MTU and, when the config names a MAC, the port MAC (promiscuous mode if the device refuses), and starts it.
    public static func open(config: PortConfig, queues: Int, pool: OpaquePointer, descriptors: UInt16 = 1024) throws -> EthPort {
        let name = EAL.deviceName(config.device)
        var raw: UInt16 = 0
        var rc = rte_eth_dev_get_port_by_name(name, &raw)
        guard rc == 0 else { throw DPDKError(message: "port \(config.name): no DPDK device named \"\(name)\" (is the driver available?)") }
        let id = PortID(raw)
        var info = rte_eth_dev_info()
        rc = rte_eth_dev_info_get(raw, &info)
        guard rc == 0 else { throw DPDKError("rte_eth_dev_info_get(\(name))", rc) }
        guard Int(info.max_rx_queues) >= queues, Int(info.max_tx_queues) >= queues else {
            throw DPDKError(message: "port \(config.name): device \(name) has \(info.max_rx_queues) RX / \(info.max_tx_queues) TX queues, \(queues) needed (one per worker)")
        }
        var conf = rte_eth_conf()
        let rssOffloads = info.flow_type_rss_offloads & tula_rss_hf_ip_tcp_udp()
        if queues > 1 && rssOffloads != 0 {
            conf.rxmode.mq_mode = rte_eth_rx_mq_mode(tula_mq_rx_rss())
            conf.rx_adv_conf.rss_conf.rss_hf = rssOffloads
        }
        let checksumOffload = info.rx_offload_capa & tula_rx_offload_ipv4_cksum() != 0
        if checksumOffload { conf.rxmode.offloads |= tula_rx_offload_ipv4_cksum() }
        rc = rte_eth_dev_configure(raw, UInt16(queues), UInt16(queues), &conf)
        guard rc == 0 else { throw DPDKError("rte_eth_dev_configure(\(name))", rc) }
        var rxd = descriptors, txd = descriptors
        rc = rte_eth_dev_adjust_nb_rx_tx_desc(raw, &rxd, &txd)
        guard rc == 0 else { throw DPDKError("rte_eth_dev_adjust_nb_rx_tx_desc(\(name))", rc) }
        let socket = UInt32(bitPattern: rte_eth_dev_socket_id(raw))
        for q in 0..<UInt16(queues) {
            rc = rte_eth_rx_queue_setup(raw, q, rxd, socket, nil, pool)
            guard rc == 0 else { throw DPDKError("rte_eth_rx_queue_setup(\(name), \(q))", rc) }
            rc = rte_eth_tx_queue_setup(raw, q, txd, socket, nil)
            guard rc == 0 else { throw DPDKError("rte_eth_tx_queue_setup(\(name), \(q))", rc) }
        }
        // Not every vdev implements MTU changes; frames larger than the MTU are refused by Tula itself.
        _ = rte_eth_dev_set_mtu(raw, UInt16(config.mtu))
        var address = rte_ether_addr()
        rc = rte_eth_macaddr_get(raw, &address)
        guard rc == 0 else { throw DPDKError("rte_eth_macaddr_get(\(name))", rc) }
        var mac = withUnsafeBytes(of: address.addr_bytes) { MACAddress(reading: $0.baseAddress!) }
        if let wanted = config.mac, wanted != mac {
            var a = rte_ether_addr()
            withUnsafeMutableBytes(of: &a.addr_bytes) { wanted.write(to: $0.baseAddress!) }
            if rte_eth_dev_default_mac_addr_set(raw, &a) != 0 { _ = rte_eth_promiscuous_enable(raw) }
            mac = wanted
        }
        rc = rte_eth_dev_start(raw)
        guard rc == 0 else { throw DPDKError("rte_eth_dev_start(\(name))", rc) }
        return EthPort(id: id, name: name, mac: mac, checksumOffload: checksumOffload, queues: queues)
    }

    /// Frames a `net_pcap` device with `infinite_rx=1` loads into mbufs at start (0 for other devices).
    public static func preloadedFrames(device: String) -> Int {
        let args = device.split(separator: ",").map(String.init)
        guard EAL.deviceName(device).hasPrefix("net_pcap"), args.contains("infinite_rx=1") else { return 0 }
        return args.filter { $0.hasPrefix("rx_pcap=") }
            .reduce(0) { $0 + ((try? Pcap.count(path: String($1.dropFirst("rx_pcap=".count)))) ?? 0) }
    }

    /// The device's own counters (`rte_eth_stats_get`), nil when the driver has none.
    public func deviceCounters() -> Summary.DeviceCounters? {
        var stats = rte_eth_stats()
        guard rte_eth_stats_get(id.raw, &stats) == 0 else { return nil }
        return Summary.DeviceCounters(rxMissed: stats.imissed, rxNoMbuf: stats.rx_nombuf, rxErrors: stats.ierrors,
                                      txErrors: stats.oerrors)
    }

    /// `rte_eth_dev_stop` then `rte_eth_dev_close` (the pcap driver completes its tx file here).
    public func close() {
        _ = rte_eth_dev_stop(id.raw)
        _ = rte_eth_dev_close(id.raw)
    }
}
