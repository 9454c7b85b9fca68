// The end-of-run summary: counters summed over lcores and named after the config, as text or JSON.

import Foundation
import TulaCore
import TulaDatapath

/// Named totals for one run, built from summed counters and the config that produced them.
public struct Summary: Sendable {
    public struct Port: Sendable {
        public var name: String
        public var rxPackets, rxBytes, txPackets, txBytes: UInt64
        public var verdicts: [Verdict: UInt64]
        /// Frames the port's kernel interface sent out through the port (part of `txPackets`).
        public var fromKernel: UInt64 = 0
        /// What the device itself counted (rte_eth_stats_get), when known: frames it could not hand to
        /// Tula (no descriptor: `rxMissed`; no mbuf: `rxNoMbuf`), and receive/transmit errors.
        public var device: DeviceCounters? = nil
        public var forwarded: UInt64 { (verdicts[.forwardedL2] ?? 0) + (verdicts[.forwardedL3] ?? 0) }
        public var replied: UInt64 { verdicts.filter { $0.key.isReply }.values.reduce(0, +) }
        /// Handed to the control plane (ARP replies for neighbour resolution).
        public var toControl: UInt64 { verdicts.filter { $0.key.isToControl }.values.reduce(0, +) }
        public var dropped: UInt64 { verdicts.filter { $0.key.isDrop }.values.reduce(0, +) }
    }
    public struct Backend: Sendable {
        public var address: String
        public var weight: Int
        /// "up" or "down" by the VIP's health check, "unchecked" without one.
        public var health: String = "unchecked"
        public var packets, bytes, newFlows: UInt64
    }
    public struct VIP: Sendable {
        public var name, address, port, proto, mode: String
        public var packets, bytes, newFlows: UInt64
        public var backends: [Backend]
        /// `quic: true` VIPs: short-header packets sent by their connection ID's server id, and QUIC packets that fell back to Maglev.
        public var quic: Bool = false
        public var quicRouted: UInt64 = 0, quicFallback: UInt64 = 0
        /// `address:port/proto`, the address bracketed when it is IPv6 (`[2001:db8::80]:80/tcp`).
        public var endpoint: String { (address.contains(":") ? "[\(address)]" : address) + ":\(port)/\(proto)" }
    }

    /// A port's own counters, as the driver reports them.
    public struct DeviceCounters: Sendable, Equatable {
        public var rxMissed, rxNoMbuf, rxErrors, txErrors: UInt64
        public init(rxMissed: UInt64, rxNoMbuf: UInt64, rxErrors: UInt64, txErrors: UInt64) {
            self.rxMissed = rxMissed; self.rxNoMbuf = rxNoMbuf; self.rxErrors = rxErrors; self.txErrors = txErrors
        }
    }

    /// A next hop resolved by ARP: its address, state (incomplete, reachable, failed) and MAC.
    public struct Neighbor: Sendable {
        public var address: String
        public var state: String
        public var mac: String?
        public init(address: String, state: String, mac: String?) { self.address = address; self.state = state; self.mac = mac }
    }

    public var ports: [Port]
    public var neighbors: [Neighbor]
    public var vips: [VIP]
    public var elapsedSeconds: Double
    public var flowsInUse, flowInsertions, flowEvictions, flowExpiries: UInt64
    /// Mbufs taken from the pool (in queues, in flight, in per-lcore caches), when known.
    public var mbufsInUse: UInt64?
    /// Extra facts about the run (memory mode, workers, ...), printed as is.
    public var notes: [(String, String)]

    /// Names the counters `c` (summed over lcores) after `config`, whose VIPs and backends have the
    /// counter slots in `slots`.
    public init(config: TulaConfig, counters c: [UInt64], layout: CounterLayout, slots: CounterSlots,
                elapsedSeconds: Double, mbufsInUse: UInt64? = nil, neighbors: [Neighbor] = [],
                health: (BackendKey) -> Bool? = { _ in nil }, notes: [(String, String)] = []) {
        self.neighbors = neighbors
        ports = config.ports.enumerated().map { p, port in
            let base = layout.port(p)
            var verdicts: [Verdict: UInt64] = [:]
            for v in Verdict.allCases { verdicts[v] = c[layout.verdict(p, v)] }
            return Port(name: port.name, rxPackets: c[base + CounterLayout.rxPackets], rxBytes: c[base + CounterLayout.rxBytes],
                        txPackets: c[base + CounterLayout.txPackets], txBytes: c[base + CounterLayout.txBytes],
                        verdicts: verdicts, fromKernel: c[base + CounterLayout.fromKernel])
        }
        vips = config.vips.map { vip in
            let vb = slots.slot(vip: vip.name).map(layout.vip)
            let backends = vip.backends.map { b -> Backend in
                let key = BackendKey(vip: vip.name, address: b.address)
                let bb = slots.slot(backend: key).map(layout.backend)
                return Backend(address: b.address.description, weight: b.weight,
                               health: health(key).map { $0 ? "up" : "down" } ?? "unchecked",
                               packets: bb.map { c[$0 + CounterLayout.packets] } ?? 0,
                               bytes: bb.map { c[$0 + CounterLayout.bytes] } ?? 0,
                               newFlows: bb.map { c[$0 + CounterLayout.newFlows] } ?? 0)
            }
            var summary = VIP(name: vip.name, address: vip.addressText, port: vip.portText,
                       proto: vip.proto.description, mode: vip.mode.description,
                       packets: vb.map { c[$0 + CounterLayout.packets] } ?? 0, bytes: vb.map { c[$0 + CounterLayout.bytes] } ?? 0,
                       newFlows: vb.map { c[$0 + CounterLayout.newFlows] } ?? 0, backends: backends)
            if vip.quic {
                summary.quic = true
                summary.quicRouted = vb.map { c[$0 + CounterLayout.quicRouted] } ?? 0
                summary.quicFallback = vb.map { c[$0 + CounterLayout.quicFallback] } ?? 0
            }
            return summary
        }
        self.mbufsInUse = mbufsInUse
        let f = layout.flowTable
        flowsInUse = c[f + CounterLayout.flowsInUse]
        flowInsertions = c[f + CounterLayout.flowInsertions]
        flowEvictions = c[f + CounterLayout.flowEvictions]
        flowExpiries = c[f + CounterLayout.flowExpiries]
        self.elapsedSeconds = elapsedSeconds
        self.notes = notes
    }

    public var rxPackets: UInt64 { ports.reduce(0) { $0 + $1.rxPackets } }
    public var txPackets: UInt64 { ports.reduce(0) { $0 + $1.txPackets } }
    public func total(_ v: Verdict) -> UInt64 { ports.reduce(0) { $0 + ($1.verdicts[v] ?? 0) } }

    /// One JSON object: rx/tx totals, elapsed time, verdicts and drops by name, ports, VIPs with backends.
    public func json() -> String {
        var verdicts: [String: UInt64] = [:]
        var drops: [String: UInt64] = [:]
        for v in Verdict.allCases {
            verdicts[v.name] = total(v)
            if v.isDrop { drops[v.name] = total(v) }
        }
        var object: [String: Any] = [
            "rx_packets": rxPackets,
            "tx_packets": txPackets,
            "elapsed_seconds": (elapsedSeconds * 1e6).rounded() / 1e6,
            "verdicts": verdicts,
            "drops": drops,
            "flows": ["in_use": flowsInUse, "insertions": flowInsertions, "evictions": flowEvictions, "expiries": flowExpiries],
            "ports": ports.map { p -> [String: Any] in
                var port: [String: Any] = [
                    "name": p.name, "rx_packets": p.rxPackets, "rx_bytes": p.rxBytes, "tx_packets": p.txPackets,
                    "tx_bytes": p.txBytes, "forwarded": p.forwarded, "replied": p.replied,
                    "to_control": p.toControl, "dropped": p.dropped, "from_kernel": p.fromKernel,
                    "to_kernel": p.verdicts[.toKernel] ?? 0, "kernel_dropped": p.verdicts[.kernelDropped] ?? 0,
                    "verdicts": Dictionary(uniqueKeysWithValues: p.verdicts.map { ($0.key.name, $0.value) })]
                if let d = p.device {
                    port["device"] = ["rx_missed": d.rxMissed, "rx_nombuf": d.rxNoMbuf, "rx_errors": d.rxErrors, "tx_errors": d.txErrors]
                }
                return port
            },
            "vips": vips.map { v -> [String: Any] in
                var vip: [String: Any] = ["name": v.name, "address": v.address, "port": v.port, "protocol": v.proto, "mode": v.mode,
                 "packets": v.packets, "bytes": v.bytes, "new_flows": v.newFlows,
                 "backends": v.backends.map { b -> [String: Any] in
                     ["address": b.address, "weight": b.weight, "health": b.health, "packets": b.packets, "bytes": b.bytes, "new_flows": b.newFlows]
                 }]
                if v.quic { vip["quic_routed"] = v.quicRouted; vip["quic_fallback"] = v.quicFallback }
                return vip
            },
            "notes": Dictionary(notes, uniquingKeysWith: { _, last in last }),
        ]
        if let mbufsInUse { object["mbufs_in_use"] = mbufsInUse }
        object["neighbors"] = neighbors.map { n -> [String: Any] in
            var entry: [String: Any] = ["address": n.address, "state": n.state]
            if let mac = n.mac { entry["mac"] = mac }
            return entry
        }
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    /// A table for people.
    public func text() -> String {
        var out = ""
        let rate = elapsedSeconds > 0 ? Double(rxPackets) / elapsedSeconds : 0
        out += String(format: "tula: %llu packets in, %llu out in %.3f s (%.0f pps)\n", rxPackets, txPackets, elapsedSeconds, rate)
        for (k, v) in notes { out += "  \(k): \(v)\n" }
        out += "ports:\n"
        for p in ports {
            if let d = p.device, d.rxMissed + d.rxNoMbuf + d.rxErrors + d.txErrors > 0 {
                out += "  \(p.name) device: rx missed \(d.rxMissed), rx no mbuf \(d.rxNoMbuf), rx errors \(d.rxErrors), tx errors \(d.txErrors)\n"
            }
            out += "  \(p.name): rx \(p.rxPackets) (\(p.rxBytes) B), tx \(p.txPackets) (\(p.txBytes) B), "
            out += "forwarded \(p.forwarded), replied \(p.replied), to control \(p.toControl), dropped \(p.dropped)\n"
            let toKernel = p.verdicts[.toKernel] ?? 0, kernelDropped = p.verdicts[.kernelDropped] ?? 0
            if toKernel + kernelDropped + p.fromKernel > 0 {
                out += "  \(p.name) kernel: to kernel \(toKernel), from kernel \(p.fromKernel), kernel dropped \(kernelDropped)\n"
            }
        }
        out += "vips:\n"
        for v in vips {
            out += "  \(v.name) \(v.endpoint) \(v.mode): \(v.packets) packets, \(v.newFlows) new flows"
                + (v.quic ? ", QUIC \(v.quicRouted) routed by connection ID, \(v.quicFallback) fallback" : "") + "\n"
            for b in v.backends {
                out += "    -> \(b.address) (weight \(b.weight)\(b.health == "unchecked" ? "" : ", " + b.health)): \(b.packets) packets, \(b.bytes) bytes, \(b.newFlows) new flows\n"
            }
        }
        out += "verdicts:\n"
        for v in Verdict.allCases where total(v) > 0 { out += "  \(v.name): \(total(v))\n" }
        out += "flows: \(flowsInUse) in use, \(flowInsertions) inserted, \(flowEvictions) evicted, \(flowExpiries) expired\n"
        return out
    }
}
