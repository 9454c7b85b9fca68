// Rise/fall bookkeeping of backend health checks, and the config the data path sees (unhealthy = weight 0).

/// Health of every checked backend. Backends start healthy; `fall` failed probes in a row make one
/// unhealthy, `rise` passed probes in a row make it healthy again.
public struct BackendHealth: Sendable {
    public struct State: Sendable, Equatable {
        public var healthy = true
        public var passes = 0
        public var failures = 0
        public var lastError: String?
    }

    public private(set) var states: [BackendKey: State] = [:]

    public init() {}

    /// Follows a config change: checked backends keep their state, others are forgotten.
    public mutating func track(_ config: TulaConfig) {
        let keys = Set(config.vips.filter { $0.healthCheck != nil }.flatMap { v in
            v.backends.map { BackendKey(vip: v.name, address: $0.address) }
        })
        for key in states.keys where !keys.contains(key) { states[key] = nil }
        for key in keys where states[key] == nil { states[key] = State() }
    }

    /// Records one probe's result (`error` nil = passed). Returns true when the backend changed state.
    public mutating func record(_ key: BackendKey, error: String?, check: HealthCheckConfig) -> Bool {
        guard var s = states[key] else { return false }
        let wasHealthy = s.healthy
        if let error {
            s.failures += 1; s.passes = 0; s.lastError = error
            if s.failures >= check.fall { s.healthy = false }
        } else {
            s.passes += 1; s.failures = 0; s.lastError = nil
            if s.passes >= check.rise { s.healthy = true }
        }
        states[key] = s
        return s.healthy != wasHealthy
    }

    public func isHealthy(_ key: BackendKey) -> Bool { states[key]?.healthy ?? true }

    /// `config` with the weight of every unhealthy backend set to 0 (no new flows; pinned flows stay).
    public func effective(_ config: TulaConfig) -> TulaConfig {
        var out = config
        for v in out.vips.indices {
            for b in out.vips[v].backends.indices where !isHealthy(BackendKey(vip: out.vips[v].name, address: out.vips[v].backends[b].address)) {
                out.vips[v].backends[b].weight = 0
            }
        }
        return out
    }
}
