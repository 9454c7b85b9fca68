// Renders a Summary in the Prometheus text exposition format (version 0.0.4): HELP and TYPE lines, tula_ names.

import Foundation

/// The Prometheus text format of a summary. Counters end in `_total`; labels are `port` (appliance port
/// name), `verdict`, `vip` (VIP name) and `backend` (backend address). The metric names are listed in
/// the README ("Stats and live control").
public enum PrometheusExposition {
    /// Every metric family of `summary`, and of the control server when `control` is given.
    public static func render(_ summary: Summary, control: ControlServerCounters? = nil) -> String {
        var families: [Family] = []
        func add(_ name: String, _ type: Family.Kind, _ help: String, _ samples: [Sample]) {
            families.append(Family(name: name, kind: type, help: help, samples: samples))
        }
        let s = summary
        add("tula_uptime_seconds", .gauge, "Seconds since the workers started.", [Sample([], s.elapsedSeconds)])

        func perPort(_ value: (Summary.Port) -> UInt64) -> [Sample] { s.ports.map { Sample([("port", $0.name)], value($0)) } }
        add("tula_port_rx_packets_total", .counter, "Frames received on the port.", perPort(\.rxPackets))
        add("tula_port_rx_bytes_total", .counter, "Bytes received on the port.", perPort(\.rxBytes))
        add("tula_port_tx_packets_total", .counter, "Frames sent on the port.", perPort(\.txPackets))
        add("tula_port_tx_bytes_total", .counter, "Bytes sent on the port.", perPort(\.txBytes))
        add("tula_port_to_kernel_packets_total", .counter, "Frames for the appliance's own address passed to the port's kernel interface.",
            perPort { $0.verdicts[.toKernel] ?? 0 })
        add("tula_port_from_kernel_packets_total", .counter, "Frames the port's kernel interface sent out through the port.",
            perPort(\.fromKernel))
        add("tula_port_kernel_dropped_packets_total", .counter, "Frames for the kernel interface dropped by its rate limit.",
            perPort { $0.verdicts[.kernelDropped] ?? 0 })
        add("tula_port_dropped_packets_total", .counter, "Received frames dropped, all reasons together.", perPort(\.dropped))
        add("tula_port_verdicts_total", .counter,
            "Received frames by verdict: forwarded, answered, or dropped for the named reason.",
            s.ports.flatMap { p in
                p.verdicts.sorted { $0.key.rawValue < $1.key.rawValue }.map { Sample([("port", p.name), ("verdict", $0.key.name)], $0.value) }
            })

        add("tula_vip_info", .gauge, "One series per VIP naming its address, port, protocol and mode; always 1.",
            s.vips.map { Sample([("vip", $0.name), ("address", $0.address), ("vip_port", $0.port), ("protocol", $0.proto),
                                 ("mode", $0.mode)], UInt64(1)) })
        func perVIP(_ value: (Summary.VIP) -> UInt64) -> [Sample] { s.vips.map { Sample([("vip", $0.name)], value($0)) } }
        add("tula_vip_packets_total", .counter, "Frames forwarded for the VIP.", perVIP(\.packets))
        add("tula_vip_bytes_total", .counter, "Bytes forwarded for the VIP (frames as received).", perVIP(\.bytes))
        add("tula_vip_new_flows_total", .counter, "Flows pinned to a backend of the VIP.", perVIP(\.newFlows))
        let quicVIPs = s.vips.filter(\.quic)
        if !quicVIPs.isEmpty {
            add("tula_vip_quic_routed_total", .counter, "QUIC short-header packets sent to the backend their connection ID names.",
                quicVIPs.map { Sample([("vip", $0.name)], $0.quicRouted) })
            add("tula_vip_quic_fallback_total", .counter, "QUIC packets of a quic VIP sent by flow table and Maglev (long header, no or unknown server id).",
                quicVIPs.map { Sample([("vip", $0.name)], $0.quicFallback) })
        }

        func perBackend(_ value: (Summary.Backend) -> Double) -> [Sample] {
            s.vips.flatMap { v in v.backends.map { Sample([("vip", v.name), ("backend", $0.address)], value($0)) } }
        }
        add("tula_backend_packets_total", .counter, "Frames forwarded to the backend.", perBackend { Double($0.packets) })
        add("tula_backend_bytes_total", .counter, "Bytes forwarded to the backend (frames as received).", perBackend { Double($0.bytes) })
        add("tula_backend_new_flows_total", .counter, "Flows pinned to the backend.", perBackend { Double($0.newFlows) })
        add("tula_backend_weight", .gauge, "The backend's weight; 0 means draining.", perBackend { Double($0.weight) })

        add("tula_flows_in_use", .gauge, "Flow-table slots in use, all workers.", [Sample([], s.flowsInUse)])
        add("tula_flow_insertions_total", .counter, "Flows pinned in the flow tables.", [Sample([], s.flowInsertions)])
        add("tula_flow_evictions_total", .counter, "Live flows evicted from a full flow-table bucket.", [Sample([], s.flowEvictions)])
        add("tula_flow_expiries_total", .counter, "Flow-table slots reused after the idle timeout.", [Sample([], s.flowExpiries)])
        if let mbufs = s.mbufsInUse {
            add("tula_mbufs_in_use", .gauge, "Packet buffers taken from the mempool.", [Sample([], mbufs)])
        }
        if let control {
            add("tula_control_requests_total", .counter, "Requests answered by the control socket.", [Sample([], control.requests)])
            add("tula_control_refused_total", .counter, "Control requests answered with an error.", [Sample([], control.refused)])
            add("tula_control_clients", .gauge, "Clients connected to the control socket.", [Sample([], control.clients)])
            add("tula_control_rejected_clients_total", .counter, "Control connections turned away: non-root clients at their cap.",
                [Sample([], control.rejectedClients)])
            add("tula_control_evicted_clients_total", .counter, "Non-root control connections closed to make room for root.",
                [Sample([], control.evictedClients)])
        }
        return families.map(\.text).joined()
    }

    /// One sample: label pairs and a value.
    struct Sample {
        var labels: [(String, String)]
        var value: String
        init(_ labels: [(String, String)], _ value: UInt64) { self.labels = labels; self.value = String(value) }
        init(_ labels: [(String, String)], _ value: Double) {
            self.labels = labels
            self.value = value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
        }
    }

    /// One metric family: HELP, TYPE and its samples, contiguous.
    struct Family {
        enum Kind: String { case counter, gauge }
        var name: String
        var kind: Kind
        var help: String
        var samples: [Sample]

        var text: String {
            var out = "# HELP \(name) \(escapeHelp(help))\n# TYPE \(name) \(kind.rawValue)\n"
            for sample in samples {
                out += name
                if !sample.labels.isEmpty {
                    out += "{" + sample.labels.map { "\($0.0)=\"\(escapeLabel($0.1))\"" }.joined(separator: ",") + "}"
                }
                out += " \(sample.value)\n"
            }
            return out
        }
    }

    /// A label value with `\`, `"` and newlines escaped.
    static func escapeLabel(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }

    /// HELP text with `\` and newlines escaped.
    static func escapeHelp(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
    }
}
