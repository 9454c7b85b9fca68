// Tula's commands in DPDK's telemetry socket (`dpdk-telemetry.py`): /tula/stats, /tula/vips, /tula/backends,VIP.

import CDPDK
import Foundation
import TulaCore
import TulaDatapath
import TulaStats

/// Registers Tula's commands with `rte_telemetry_register_cmd`, beside DPDK's own (`/ethdev/stats,0`, ...).
/// Each answers from the same summary the stats socket serves. Telemetry keys may hold only letters, digits,
/// `_` and `/`, and containers are flat arrays, so VIPs and backends come as columns: `name`, `packets`, ... with
/// one entry per VIP (or backend) in config order.
public enum TulaTelemetry {
    nonisolated(unsafe) private static var source: Appliance?

    /// Makes `appliance` answer the commands (once per process; later calls only change the source).
    public static func register(_ appliance: Appliance) {
        let first = source == nil
        source = appliance
        guard first else { return }
        _ = rte_telemetry_register_cmd("/tula/stats", statsCallback,
                                       "Tula's totals: packets, bytes, every verdict, flows, mbufs. No parameters")
        _ = rte_telemetry_register_cmd("/tula/vips", vipsCallback,
                                       "Tula's VIPs as columns: name, address, packets, bytes, new_flows, backends, healthy_backends")
        _ = rte_telemetry_register_cmd("/tula/backends", backendsCallback,
                                       "One VIP's backends as columns: address, weight, health, packets, bytes, new_flows. Parameter: VIP name")
    }

    /// `forwarded-l2` -> `forwarded_l2`: the characters telemetry accepts in a key.
    static func key(_ name: String) -> String {
        String(name.map { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "/" ? $0 : "_" })
    }

    private static let statsCallback: telemetry_cb = { _, _, data in
        guard let data, let summary = source?.summary() else { return -EINVAL }
        rte_tel_data_start_dict(data)
        let ports = summary.ports
        var values: [(String, UInt64)] = [
            ("rx_packets", summary.rxPackets), ("tx_packets", summary.txPackets),
            ("rx_bytes", ports.reduce(0) { $0 + $1.rxBytes }), ("tx_bytes", ports.reduce(0) { $0 + $1.txBytes }),
            ("forwarded", ports.reduce(0) { $0 + $1.forwarded }), ("replied", ports.reduce(0) { $0 + $1.replied }),
            ("to_control", ports.reduce(0) { $0 + $1.toControl }), ("dropped", ports.reduce(0) { $0 + $1.dropped }),
            ("flows_in_use", summary.flowsInUse), ("flow_insertions", summary.flowInsertions),
            ("flow_evictions", summary.flowEvictions), ("flow_expiries", summary.flowExpiries),
        ]
        if let mbufs = summary.mbufsInUse { values.append(("mbufs_in_use", mbufs)) }
        for verdict in Verdict.allCases {
            values.append(("verdict_" + key(verdict.name), ports.reduce(0) { $0 + ($1.verdicts[verdict] ?? 0) }))
        }
        for (name, value) in values { rte_tel_data_add_dict_u64(data, name, value) }
        return 0
    }

    private static let vipsCallback: telemetry_cb = { _, _, data in
        guard let data, let summary = source?.summary() else { return -EINVAL }
        rte_tel_data_start_dict(data)
        let vips = summary.vips
        addStrings(data, "name", vips.map(\.name))
        addStrings(data, "address", vips.map(\.endpoint))
        addStrings(data, "mode", vips.map(\.mode))
        addNumbers(data, "packets", vips.map(\.packets))
        addNumbers(data, "bytes", vips.map(\.bytes))
        addNumbers(data, "new_flows", vips.map(\.newFlows))
        addNumbers(data, "backends", vips.map { UInt64($0.backends.count) })
        addNumbers(data, "healthy_backends", vips.map { UInt64($0.backends.filter { $0.health != "unhealthy" }.count) })
        return 0
    }

    private static let backendsCallback: telemetry_cb = { _, params, data in
        guard let data, let summary = source?.summary() else { return -EINVAL }
        let name = params.map { String(cString: $0) } ?? ""
        guard let vip = summary.vips.first(where: { $0.name == name }) else { return -EINVAL }
        rte_tel_data_start_dict(data)
        let backends = vip.backends
        addStrings(data, "address", backends.map(\.address))
        addNumbers(data, "weight", backends.map { UInt64(max(0, $0.weight)) })
        addStrings(data, "health", backends.map(\.health))
        addNumbers(data, "packets", backends.map(\.packets))
        addNumbers(data, "bytes", backends.map(\.bytes))
        addNumbers(data, "new_flows", backends.map(\.newFlows))
        return 0
    }

    private static func addNumbers(_ data: OpaquePointer, _ name: String, _ values: [UInt64]) {
        guard let array = rte_tel_data_alloc() else { return }
        rte_tel_data_start_array(array, RTE_TEL_U64_VAL)
        for value in values.prefix(Int(RTE_TEL_MAX_ARRAY_ENTRIES)) { rte_tel_data_add_array_u64(array, value) }
        rte_tel_data_add_dict_container(data, name, array, 0)
    }

    private static func addStrings(_ data: OpaquePointer, _ name: String, _ values: [String]) {
        guard let array = rte_tel_data_alloc() else { return }
        rte_tel_data_start_array(array, RTE_TEL_STRING_VAL)
        for value in values.prefix(Int(RTE_TEL_MAX_ARRAY_ENTRIES)) { rte_tel_data_add_array_string(array, value) }
        rte_tel_data_add_dict_container(data, name, array, 0)
    }
}
