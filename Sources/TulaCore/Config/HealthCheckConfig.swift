// A VIP's backend health check (key `health_check`): how to probe, how often, when to change state.

/// How the control plane probes each backend of a VIP. A backend that fails `fall` probes in a row gets
/// no new flows until it passes `rise` in a row (backends start healthy).
public struct HealthCheckConfig: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable, CustomStringConvertible {
        /// A TCP connect that completes within the timeout.
        case tcp
        /// An HTTP/1.0 GET whose status is `expectStatus`.
        case http
        public var description: String { rawValue }
    }

    public var kind: Kind = .tcp
    /// Port to probe on the backend's address (default: the VIP's port).
    public var port: UInt16
    public var path: String = "/"
    public var expectStatus: Int = 200
    public var intervalSeconds: Double = 2
    public var timeoutSeconds: Double = 1
    public var rise: Int = 2
    public var fall: Int = 3

    public init(kind: Kind = .tcp, port: UInt16) {
        self.kind = kind
        self.port = port
    }
}
