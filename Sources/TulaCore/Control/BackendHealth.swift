// Rise/fall bookkeeping of backend health checks, and the config the data path sees (unhealthy = weight 0).
import Glibc

/// What one health probe found.
public enum ProbeOutcome: Sendable, Equatable {
    /// The backend answered as the check expects.
    case passed
    /// The backend did not (the reason).
    case failed(String)
    /// The probe could not be made for want of the appliance's own resources: the backend's state stays.
    case unknown(String)

    /// Errno values that describe the prober's own host rather than the backend: out of file descriptors,
    /// memory or buffers, or of local ports.
    public static let localErrnos: Set<Int32> = [EMFILE, ENFILE, ENOMEM, ENOBUFS, EADDRNOTAVAIL]

    /// `.unknown` when `code` is one of `localErrnos`, else `.failed`; the text is "`call`: strerror".
    public init(localErrno code: Int32, _ call: String) {
        let text = call.contains(":") ? call : "\(call): \(String(cString: strerror(code)))"
        self = ProbeOutcome.localErrnos.contains(code) ? .unknown(text) : .failed(text)
    }
}

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

    /// Records one probe's outcome; `.unknown` changes nothing. Returns true when the backend changed state.
    public mutating func record(_ key: BackendKey, _ outcome: ProbeOutcome, check: HealthCheckConfig) -> Bool {
        switch outcome {
        case .passed: return record(key, error: nil, check: check)
        case .failed(let reason): return record(key, error: reason, check: check)
        case .unknown: return false
        }
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
