// Where each counter lives in a worker's flat block of UInt64 counters.

import TulaCore

/// Offsets into one lcore's counter block: per port (rx/tx and one counter per verdict), the flow table's,
/// then per VIP slot and per backend slot (see `CounterSlots`). Every lcore has a block with this layout;
/// readers sum them. Only slots below the high-water marks are ever non-zero.
public struct CounterLayout: Sendable, Equatable {
    public let portCount: Int
    public let vipCount: Int
    public let backendCount: Int

    /// Per port: `fromKernel` counts frames its kernel interface sent out through it (also in `txPackets`).
    public static let rxPackets = 0, rxBytes = 1, txPackets = 2, txBytes = 3, fromKernel = 4, firstVerdict = 5
    @inlinable public static var perPort: Int { firstVerdict + Verdict.count }
    /// Flow table: slots in use, insertions, evictions of live flows, reuses of expired slots.
    public static let flowsInUse = 0, flowInsertions = 1, flowEvictions = 2, flowExpiries = 3, perFlowTable = 4
    /// Per VIP and per backend: packets, bytes, new flows; per VIP also QUIC packets routed by server id and QUIC
    /// packets that fell back to Maglev (`quic: true` VIPs; zero in backend slots).
    public static let packets = 0, bytes = 1, newFlows = 2, quicRouted = 3, quicFallback = 4, perTarget = 5

    public init(ports: Int, vips: Int = CounterSlots.maxVIPs, backends: Int = CounterSlots.maxBackends) {
        portCount = ports; vipCount = vips; backendCount = backends
    }

    @inlinable @inline(__always) public func port(_ p: Int) -> Int { p &* CounterLayout.perPort }
    @inlinable @inline(__always) public func verdict(_ p: Int, _ v: Verdict) -> Int {
        p &* CounterLayout.perPort &+ CounterLayout.firstVerdict &+ Int(v.rawValue)
    }
    @inlinable @inline(__always) public var flowTable: Int { portCount &* CounterLayout.perPort }
    @inlinable @inline(__always) public var vipBase: Int { flowTable &+ CounterLayout.perFlowTable }
    @inlinable @inline(__always) public func vip(_ slot: Int) -> Int { vipBase &+ slot &* CounterLayout.perTarget }
    @inlinable @inline(__always) public var backendBase: Int { vipBase &+ vipCount &* CounterLayout.perTarget }
    @inlinable @inline(__always) public func backend(_ slot: Int) -> Int { backendBase &+ slot &* CounterLayout.perTarget }
    /// Number of UInt64 counters in a block.
    public var count: Int { backend(backendCount) }
}

/// Counts one delivered packet of `bytes` (as received) in its VIP's and its backend's counter slots (`vip` and
/// `backend` point at each slot's first counter): what `deliver` and the fast path count for every packet sent.
@inlinable @inline(__always)
public func countDelivered(vip: UnsafeMutablePointer<UInt64>, backend: UnsafeMutablePointer<UInt64>, bytes: UInt64) {
    vip[CounterLayout.packets] &+= 1
    vip[CounterLayout.bytes] &+= bytes
    backend[CounterLayout.packets] &+= 1
    backend[CounterLayout.bytes] &+= bytes
}
