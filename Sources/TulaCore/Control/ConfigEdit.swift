// Live changes to a running config (add/remove a backend, set a weight) and which changes need a restart.

/// Why a control request was refused. The running config is unchanged when this is thrown.
public struct ControlError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// One change an operator makes to the backends of a running appliance.
public enum ConfigEdit: Sendable, Equatable {
    case addBackend(vip: String, backend: BackendConfig)
    case removeBackend(vip: String, address: IPAddress)
    /// Weight 0 drains: no new flows, pinned flows stay until they age out.
    case setWeight(vip: String, address: IPAddress, weight: Int)

    /// The config with this change made, checked by the same rules as the config file.
    public func applied(to config: TulaConfig) throws(ControlError) -> TulaConfig {
        var next = config
        let name: String
        switch self {
        case .addBackend(let vip, _), .removeBackend(let vip, _), .setWeight(let vip, _, _): name = vip
        }
        guard let v = next.vips.firstIndex(where: { $0.name == name }) else {
            throw ControlError("no VIP named \"\(name)\"")
        }
        switch self {
        case .addBackend(_, let backend):
            guard !next.vips[v].backends.contains(where: { $0.address == backend.address }) else {
                throw ControlError("VIP \(name) already has backend \(backend.address)")
            }
            try ConfigEdit.checkWeight(backend.weight)
            if let reason = backend.address.notAHostReason { throw ControlError(reason) }
            let family = next.vips[v].backendFamily
            guard backend.address.family == family else {
                throw ControlError("VIP \(name)'s backends are \(family); \(backend.address) is \(backend.address.family)")
            }
            if next.vips[v].mode == .l3 && backend.vlan != nil {
                throw ControlError("a backend vlan applies to l2 VIPs only")
            }
            guard next.vips[v].tableSize >= 100 * (next.vips[v].backends.count + 1) else {
                throw ControlError("VIP \(name): maglev_table_size \(next.vips[v].tableSize) is too small for \(next.vips[v].backends.count + 1) backends (needs 100 per backend)")
            }
            guard next.vips.reduce(0, { $0 + $1.backends.count }) < CounterSlots.maxBackends else {
                throw ControlError("at most \(CounterSlots.maxBackends) backends in all")
            }
            next.vips[v].backends.append(backend)
        case .removeBackend(_, let address):
            guard let b = next.vips[v].backends.firstIndex(where: { $0.address == address }) else {
                throw ControlError("VIP \(name) has no backend \(address)")
            }
            guard next.vips[v].backends.count > 1 else {
                throw ControlError("\(address) is the last backend of VIP \(name); set its weight to 0 to drain it instead")
            }
            next.vips[v].backends.remove(at: b)
        case .setWeight(_, let address, let weight):
            guard let b = next.vips[v].backends.firstIndex(where: { $0.address == address }) else {
                throw ControlError("VIP \(name) has no backend \(address)")
            }
            try ConfigEdit.checkWeight(weight)
            next.vips[v].backends[b].weight = weight
        }
        return next
    }

    static func checkWeight(_ weight: Int) throws(ControlError) {
        guard (0...1000).contains(weight) else { throw ControlError("weight \(weight) is out of range 0...1000") }
    }
}

extension TulaConfig {
    /// Why `next` cannot replace this config without a restart (ports, workers and the flow table are
    /// fixed at start), or nil when it can be applied live.
    public func restartRequired(for next: TulaConfig) -> String? {
        // Line numbers are not settings: a file with a comment added (or one `ctl save` wrote) is the same.
        if next.withoutLines.ports != withoutLines.ports { return "ports changed; restart the appliance to apply" }
        if next.workers != workers { return "workers changed; restart the appliance to apply" }
        if next.flowsPerWorker != flowsPerWorker || next.flowIdleTimeoutSeconds != flowIdleTimeoutSeconds {
            return "flows_per_worker or flow_idle_timeout changed; restart the appliance to apply"
        }
        if next.statsSocket != statsSocket { return "stats_socket changed; restart the appliance to apply" }
        if next.adaptivePolling != adaptivePolling { return "poll changed; restart the appliance to apply" }
        if next.metricsListen != metricsListen { return "metrics_listen changed; restart the appliance to apply" }
        if next.vips.count > CounterSlots.maxVIPs { return "at most \(CounterSlots.maxVIPs) VIPs" }
        return nil
    }
}
