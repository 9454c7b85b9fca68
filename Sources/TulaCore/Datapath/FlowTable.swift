// The per-lcore flow table: fixed size, one writer, pins a 5-tuple to its backend, with idle aging.

/// One pinned flow. 24 bytes; `meta == 0` marks an empty slot.
public struct FlowEntry: Sendable {
    public var src: UInt32
    public var dst: UInt32
    /// Source port << 16 | destination port.
    public var ports: UInt32
    /// Protocol | 0x100 (occupied).
    public var meta: UInt32
    /// Global backend index in `DataplaneTables.backends`.
    public var backend: UInt32
    /// Seconds (appliance clock) when the flow was last seen.
    public var lastSeen: UInt32
}

/// Open addressing over a power-of-two array; a flow lives in one of `probeLimit` slots after its home.
/// A new flow takes the first empty or expired slot there, else evicts the least recently seen.
/// The memory is the caller's (hugepage memory in the appliance), `FlowTable.bytes(capacity:)` long.
public struct FlowTable: @unchecked Sendable {
    public static let probeLimit = 4
    public let entries: UnsafeMutablePointer<FlowEntry>
    public let mask: UInt32
    /// Idle time after which a slot may be reused, seconds.
    public let idleTimeoutSeconds: UInt32

    public static func bytes(capacity: Int) -> Int { capacity * MemoryLayout<FlowEntry>.stride }

    /// `memory` must hold `bytes(capacity:)` zeroed bytes; `capacity` must be a power of two.
    public init(memory: UnsafeMutableRawPointer, capacity: Int, idleTimeoutSeconds: Int) {
        precondition(capacity > 0 && capacity & (capacity - 1) == 0, "flow table capacity must be a power of two")
        entries = memory.bindMemory(to: FlowEntry.self, capacity: capacity)
        mask = UInt32(capacity - 1)
        self.idleTimeoutSeconds = UInt32(idleTimeoutSeconds)
    }

    /// How a lookup ended.
    public enum Outcome: UInt8 { case hit, insertedEmpty, insertedExpired, insertedEvicted }

    /// Finds the flow's slot. On a hit, returns it with `.hit` (its `lastSeen` refreshed). Otherwise
    /// returns the slot the caller must fill (with `store`), and why that slot was free.
    @inline(__always)
    public func find(hash: UInt64, src: UInt32, dst: UInt32, ports: UInt32, proto: UInt8, now: UInt32)
        -> (UnsafeMutablePointer<FlowEntry>, Outcome) {
        let meta = UInt32(proto) | 0x100
        let home = UInt32(truncatingIfNeeded: hash) & mask
        var free: UnsafeMutablePointer<FlowEntry>? = nil
        var freeOutcome = Outcome.insertedEvicted
        var oldest = entries + Int(home)
        var i: UInt32 = 0
        while i < UInt32(FlowTable.probeLimit) {
            let e = entries + Int((home &+ i) & mask)
            if e.pointee.meta == 0 {
                if free == nil { free = e; freeOutcome = .insertedEmpty }
            } else if e.pointee.src == src && e.pointee.dst == dst && e.pointee.ports == ports && e.pointee.meta == meta {
                if now &- e.pointee.lastSeen <= idleTimeoutSeconds {
                    if e.pointee.lastSeen != now { e.pointee.lastSeen = now }
                    return (e, .hit)
                }
                return (e, .insertedExpired)
            } else if now &- e.pointee.lastSeen > idleTimeoutSeconds {
                if free == nil { free = e; freeOutcome = .insertedExpired }
            } else if e.pointee.lastSeen < oldest.pointee.lastSeen {
                oldest = e
            }
            i &+= 1
        }
        if let free { return (free, freeOutcome) }
        return (oldest, .insertedEvicted)
    }

    @inline(__always)
    public static func store(_ e: UnsafeMutablePointer<FlowEntry>, src: UInt32, dst: UInt32, ports: UInt32,
                             proto: UInt8, backend: UInt32, now: UInt32) {
        e.pointee = FlowEntry(src: src, dst: dst, ports: ports, meta: UInt32(proto) | 0x100, backend: backend, lastSeen: now)
    }
}

/// The flow-table slot the lookup of `frame` will start at, guessed without validating the frame, so the
/// caller can prefetch it for a whole burst before processing any frame of it (the lookups' cache misses
/// then overlap instead of coming one after the other). nil when the frame does not look like IPv4 TCP/UDP;
/// a wrong guess costs one useless prefetch (`processFrame` does all the checking).
public func flowSlotHint(_ p: UnsafeRawPointer, length: Int, flows: UnsafePointer<FlowTable>) -> UnsafeRawPointer? {
    guard length >= 42 else { return nil }
    var l2 = 14
    var etherType = UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 12, as: UInt16.self))
    if etherType == 0x8100 { etherType = UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 16, as: UInt16.self)); l2 = 18 }
    guard etherType == 0x0800 else { return nil }
    let ip = p + l2
    let ihl = Int(ip.load(as: UInt8.self) & 0x0F) &* 4
    let proto = ip.load(fromByteOffset: 9, as: UInt8.self)
    guard proto == 6 || proto == 17, length >= l2 &+ ihl &+ 4 else { return nil }
    let ports = UInt32(bigEndian: ip.loadUnaligned(fromByteOffset: ihl, as: UInt32.self))
    let hash = flowHash(src: UInt32(bigEndian: ip.loadUnaligned(fromByteOffset: 12, as: UInt32.self)),
                        dst: UInt32(bigEndian: ip.loadUnaligned(fromByteOffset: 16, as: UInt32.self)),
                        srcPort: UInt16(truncatingIfNeeded: ports >> 16), dstPort: UInt16(truncatingIfNeeded: ports),
                        proto: proto)
    return UnsafeRawPointer(flows.pointee.entries + Int(UInt32(truncatingIfNeeded: hash) & flows.pointee.mask))
}
