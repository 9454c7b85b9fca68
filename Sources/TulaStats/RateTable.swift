// The `stats` table for people: ports, VIPs and backends with packet and bit rates from two samples.

import Foundation
import TulaCore
import TulaDatapath

/// Renders the counters of a running appliance as aligned tables, with per-second rates computed from an
/// earlier sample (rates show as `-` without one, or when a counter went backwards, e.g. a re-added backend).
public enum RateTable {
    /// `now` with rates over the time since `previous` (by the appliance's clock, `elapsedSeconds`).
    public static func render(_ now: Summary, since previous: Summary?, control: ControlServerCounters? = nil) -> String {
        let seconds = previous.map { now.elapsedSeconds - $0.elapsedSeconds } ?? 0
        let rate = Rates(seconds: seconds)
        var out = String(format: "tula: up %.1f s", now.elapsedSeconds)
        out += seconds > 0 ? String(format: ", rates over the last %.2f s", seconds) : ", no rates (one sample)"
        for (key, value) in now.notes { out += "; \(key) \(value)" }
        out += "\n\n"

        let before = previous.map { Dictionary($0.ports.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a }) } ?? [:]
        var ports = [["PORT", "RX PKT/S", "RX BIT/S", "TX PKT/S", "TX BIT/S", "RX PACKETS", "TX PACKETS", "DROPPED", "DROP/S"]]
        for p in now.ports {
            let old = before[p.name]
            ports.append([p.name, rate.packets(p.rxPackets, old?.rxPackets), rate.bits(p.rxBytes, old?.rxBytes),
                          rate.packets(p.txPackets, old?.txPackets), rate.bits(p.txBytes, old?.txBytes),
                          "\(p.rxPackets)", "\(p.txPackets)", "\(p.dropped)", rate.packets(p.dropped, old?.dropped)])
        }
        out += columns(ports) + "\n"

        let oldVIPs = previous.map { Dictionary($0.vips.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a }) } ?? [:]
        var vips = [["VIP / BACKEND", "WEIGHT", "PKT/S", "BIT/S", "NEW FLOWS/S", "PACKETS", "BYTES", "NEW FLOWS"]]
        for v in now.vips {
            let old = oldVIPs[v.name]
            vips.append(["\(v.name) \(v.endpoint) \(v.mode)", "", rate.packets(v.packets, old?.packets),
                         rate.bits(v.bytes, old?.bytes), rate.packets(v.newFlows, old?.newFlows),
                         "\(v.packets)", "\(v.bytes)", "\(v.newFlows)"])
            let oldBackends = Dictionary((old?.backends ?? []).map { ($0.address, $0) }, uniquingKeysWith: { a, _ in a })
            for b in v.backends {
                let ob = oldBackends[b.address]
                vips.append(["  -> \(b.address)", b.weight == 0 ? "0 (drain)" : "\(b.weight)", rate.packets(b.packets, ob?.packets),
                             rate.bits(b.bytes, ob?.bytes), rate.packets(b.newFlows, ob?.newFlows),
                             "\(b.packets)", "\(b.bytes)", "\(b.newFlows)"])
            }
        }
        out += columns(vips) + "\n"

        let drops = Verdict.allCases.filter { $0.isDrop && now.total($0) > 0 }
        out += "drops: " + (drops.isEmpty ? "none" : drops.map { "\($0.name) \(now.total($0))" }.joined(separator: ", ")) + "\n"
        out += "flows: \(now.flowsInUse) in use, \(now.flowInsertions) inserted, \(now.flowEvictions) evicted, \(now.flowExpiries) expired"
        if let mbufs = now.mbufsInUse { out += "; mbufs in use: \(mbufs)" }
        out += "\n"
        if let control {
            out += "control socket: \(control.requests) requests, \(control.refused) refused, \(control.clients) clients connected"
                + (control.rejectedClients + control.evictedClients > 0
                   ? ", \(control.rejectedClients) connections turned away, \(control.evictedClients) evicted for root" : "") + "\n"
        }
        return out
    }

    /// Per-second rates over a fixed interval, formatted.
    struct Rates {
        var seconds: Double

        func perSecond(_ now: UInt64, _ before: UInt64?) -> Double? {
            guard seconds > 0, let before, now >= before else { return nil }
            return Double(now - before) / seconds
        }

        func packets(_ now: UInt64, _ before: UInt64?) -> String {
            perSecond(now, before).map { RateTable.scaled($0, unit: "") } ?? "-"
        }

        func bits(_ nowBytes: UInt64, _ beforeBytes: UInt64?) -> String {
            perSecond(nowBytes, beforeBytes).map { RateTable.scaled($0 * 8, unit: "bit/s") } ?? "-"
        }
    }

    /// `value` with an SI prefix: `950`, `12.3k`, `1.05 Mbit/s`.
    static func scaled(_ value: Double, unit: String) -> String {
        let prefixes = ["", "k", "M", "G", "T"]
        var v = value, i = 0
        while v >= 1000 && i < prefixes.count - 1 { v /= 1000; i += 1 }
        let number = i == 0 ? String(format: "%.0f", v) : String(format: v < 10 ? "%.2f" : v < 100 ? "%.1f" : "%.0f", v)
        let suffix = prefixes[i] + unit
        return unit.isEmpty ? number + suffix : number + " " + suffix
    }

    /// Rows as aligned columns: the first left-aligned, the others right-aligned.
    static func columns(_ rows: [[String]]) -> String {
        let count = rows.map(\.count).max() ?? 0
        let widths = (0..<count).map { c in rows.map { c < $0.count ? $0[c].count : 0 }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { c, cell in
                let pad = String(repeating: " ", count: widths[c] - cell.count)
                return c == 0 ? cell + pad : pad + cell
            }.joined(separator: "  ")
        }.joined(separator: "\n") + "\n"
    }
}
