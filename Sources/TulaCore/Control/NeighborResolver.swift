// ARP and neighbor-discovery resolution of next hops (l2 backends and l3 gateways without a configured MAC): request, retry,
// refresh and give up, as a pure state machine driven by the control plane's clock.

/// The resolution state of every next hop the config gives no MAC for.
public struct NeighborResolver: Sendable {
    public enum State: String, Sendable { case incomplete, reachable, failed }

    public struct Neighbor: Sendable, Equatable {
        public var address: IPAddress
        /// Ports to ask on (the gateway's own port; every port for an l2 backend).
        public var ports: [Int]
        public var state: State
        public var mac: MACAddress?
        /// Requests sent since the last reply.
        public var unanswered: Int
        public var lastRequest: Double
        public var lastReply: Double
    }

    /// Seconds between requests while a next hop does not answer.
    public var retryInterval = 1.0
    /// Unanswered requests before a next hop counts as failed (its MAC is forgotten).
    public var maxUnanswered = 3
    /// Seconds between requests to a failed next hop.
    public var failedRetryInterval = 5.0
    /// Seconds after a reply before a reachable next hop is asked again.
    public var refreshInterval = 30.0

    public private(set) var neighbors: [IPAddress: Neighbor] = [:]

    public init() {}

    /// The next hops `config` needs resolved: l2 backends without a MAC (asked on every port) and the
    /// gateways (`gateway`, `gateway6`) of ports without their MAC when some l3 VIP tunnels to that family.
    public static func targets(_ config: TulaConfig) -> [IPAddress: [Int]] {
        var targets: [IPAddress: [Int]] = [:]
        let allPorts = Array(config.ports.indices)
        for vip in config.vips where vip.mode == .l2 {
            for backend in vip.backends where backend.mac == nil { targets[backend.address] = allPorts }
        }
        if config.vips.contains(where: { $0.mode == .l3 && $0.backendFamily == .v4 }) {
            for (i, port) in config.ports.enumerated() where port.gatewayMAC == nil {
                if let gateway = port.gateway { targets[.v4(gateway), default: []].append(i) }
            }
        }
        if config.vips.contains(where: { $0.mode == .l3 && $0.backendFamily == .v6 }) {
            for (i, port) in config.ports.enumerated() where port.gateway6MAC == nil {
                if let gateway = port.gateway6 { targets[.v6(gateway), default: []].append(i) }
            }
        }
        return targets
    }

    /// Follows a config change: new next hops start incomplete, gone ones are forgotten, known ones stay.
    public mutating func track(_ targets: [IPAddress: [Int]]) {
        for address in neighbors.keys where targets[address] == nil { neighbors[address] = nil }
        for (address, ports) in targets {
            if neighbors[address] == nil {
                neighbors[address] = Neighbor(address: address, ports: ports, state: .incomplete, mac: nil,
                                              unanswered: 0, lastRequest: -.infinity, lastReply: -.infinity)
            } else {
                neighbors[address]?.ports = ports
            }
        }
    }

    /// An ARP reply or neighbor advertisement from `address` with `mac`. Returns true when the usable MACs changed.
    public mutating func learned(_ address: IPAddress, mac: MACAddress, now: Double) -> Bool {
        guard var n = neighbors[address] else { return false }
        let changed = n.mac != mac
        n.mac = mac; n.state = .reachable; n.unanswered = 0; n.lastReply = now
        neighbors[address] = n
        return changed
    }

    /// The requests due at `now` (address and port), after counting the unanswered ones: a next hop that
    /// has not answered `maxUnanswered` requests becomes failed. `macsChanged` is true when one did.
    public mutating func due(now: Double) -> (requests: [(IPAddress, Int)], macsChanged: Bool) {
        var requests: [(IPAddress, Int)] = []
        var changed = false
        for address in neighbors.keys.sorted() {
            var n = neighbors[address]!
            if n.unanswered >= maxUnanswered && n.state != .failed && now - n.lastRequest >= retryInterval {
                changed = changed || n.mac != nil
                n.state = .failed; n.mac = nil
            }
            let since: Double, wait: Double
            switch n.state {
            case .reachable where n.unanswered == 0: (since, wait) = (now - n.lastReply, refreshInterval)
            case .reachable, .incomplete: (since, wait) = (now - n.lastRequest, retryInterval)
            case .failed: (since, wait) = (now - n.lastRequest, failedRetryInterval)
            }
            if since >= wait {
                n.lastRequest = now
                n.unanswered += 1
                requests += n.ports.map { (address, $0) }
            }
            neighbors[address] = n
        }
        return (requests, changed)
    }

    /// MACs of reachable next hops.
    public var resolved: [IPAddress: MACAddress] {
        neighbors.compactMapValues { $0.state == .reachable ? $0.mac : nil }
    }
}
