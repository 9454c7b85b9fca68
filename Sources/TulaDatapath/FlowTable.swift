// The per-lcore flow table: fixed size, one writer, pins a client flow of a VIP to its backend, with idle aging.

import TulaCore

/// One pinned flow: 16 bytes, four to a 64-byte bucket. A slot without `FlowEntry.occupied` is empty.
/// The VIP's counter slot stands for the destination address and protocol (a VIP has one of each), so
/// (source, ports, VIP slot) identifies a flow as the 5-tuple does.
public struct FlowEntry: Sendable {
    public var src: UInt32
    /// Source port << 16 | destination port.
    public var ports: UInt32
    /// `FlowEntry.occupied | VIP slot << 16 | backend slot`, plus `FlowEntry.spilled` in a bucket's first two slots.
    public var target: UInt32
    /// Seconds (appliance clock) when the flow was last seen.
    public var lastSeen: UInt32

    @inlinable public init(src: UInt32, ports: UInt32, target: UInt32, lastSeen: UInt32) {
        self.src = src; self.ports = ports; self.target = target; self.lastSeen = lastSeen
    }

    @inlinable public static var occupied: UInt32 { 0x8000_0000 }
    /// In the first slot of a bucket: some flow of this bucket was stored in the next bucket; in its second slot:
    /// in the bucket after that (set once, kept).
    @inlinable public static var spilled: UInt32 { 0x4000_0000 }
    /// The bits of `target` that are part of the flow's key (occupied, VIP slot).
    @inlinable static var keyBits: UInt32 { 0xBFFF_0000 }

    @inlinable static func key(vip: UInt32) -> UInt32 { occupied | vip << 16 }
    @inlinable public var isOccupied: Bool { target & FlowEntry.occupied != 0 }
    /// Global backend index in `DataplaneTables.backends`.
    @inline(__always) public var backend: UInt32 { target & 0xFFFF }
    /// The VIP's counter slot.
    @inline(__always) public var vip: UInt32 { (target >> 16) & 0x3FFF }
}

/// A power-of-two array of entries in buckets of `bucketSize` (one cache line). A flow lives in the bucket
/// its hash picks, so a lookup reads one line; when that bucket is full of live flows, a new flow goes to
/// the next bucket, or the one after it (and the full one is marked for each, so its lookups that miss also
/// read that line), and only when all three are full is the home bucket's least recently seen flow evicted.
/// Three buckets rather than two: with two, about one table in 14 holding 1 000 flows in 4 096 slots had two
/// crowded neighbouring buckets whose flows evicted each other on every packet. A new flow takes the first
/// empty or expired slot. The memory is the caller's (hugepage memory in the appliance),
/// `FlowTable.bytes(capacity:)` long and 64-byte aligned.
public struct FlowTable: @unchecked Sendable {
    @inlinable public static var bucketSize: Int { 4 }
    public let entries: UnsafeMutablePointer<FlowEntry>
    /// Buckets - 1.
    public let bucketMask: UInt32
    /// Idle time after which a slot may be reused, seconds.
    public let idleTimeoutSeconds: UInt32

    public static func bytes(capacity: Int) -> Int { capacity * MemoryLayout<FlowEntry>.stride }

    /// `memory` must hold `bytes(capacity:)` zeroed bytes; `capacity` must be a power of two, at least
    /// twice `bucketSize`.
    public init(memory: UnsafeMutableRawPointer, capacity: Int, idleTimeoutSeconds: Int) {
        precondition(capacity >= 2 * FlowTable.bucketSize && capacity & (capacity - 1) == 0,
                     "flow table capacity must be a power of two of at least \(2 * FlowTable.bucketSize)")
        entries = memory.bindMemory(to: FlowEntry.self, capacity: capacity)
        bucketMask = UInt32(capacity / FlowTable.bucketSize - 1)
        self.idleTimeoutSeconds = UInt32(idleTimeoutSeconds)
    }

    /// The first entry of the bucket a flow with `hash` lives in (or spills from).
    @inlinable @inline(__always)
    public func bucket(_ hash: UInt64) -> UnsafeMutablePointer<FlowEntry> {
        entries + Int(UInt32(truncatingIfNeeded: hash) & bucketMask) &* FlowTable.bucketSize
    }

    /// The bucket `distance` (1 or 2) after `hash`'s (the first one follows the last).
    @inlinable @inline(__always)
    func spillBucket(_ hash: UInt64, _ distance: UInt32) -> UnsafeMutablePointer<FlowEntry> {
        entries + Int((UInt32(truncatingIfNeeded: hash) &+ distance) & bucketMask) &* FlowTable.bucketSize
    }

    /// How a lookup ended.
    public enum Outcome: UInt8 { case hit, insertedEmpty, insertedExpired, insertedEvicted }

    /// Finds the flow's slot. On a hit, returns it with `.hit` (its `lastSeen` refreshed). Otherwise
    /// returns the slot the caller must fill (with `store`), and why that slot was free. Transparent: in the
    /// large `processFrame` a plain `@inline(__always)` was not honoured.
    @_transparent
    public func find(hash: UInt64, src: UInt32, ports: UInt32, vip: UInt32, now: UInt32)
        -> (UnsafeMutablePointer<FlowEntry>, Outcome) {
        let key = FlowEntry.key(vip: vip)
        let home = bucket(hash)
        if let e = FlowTable.match(home, src: src, ports: ports, key: key) { return refresh(e, now: now) }
        if FlowTable.spilled(home), let e = matchSpilled(home, src: src, ports: ports, key: key) { return refresh(e, now: now) }
        return place(hash, home: home, now: now)
    }

    /// Some flow of the bucket at `home` was stored in one of the two buckets after it.
    @inlinable @inline(__always)
    static func spilled(_ home: UnsafeMutablePointer<FlowEntry>) -> Bool {
        (home[0].target | home[1].target) & FlowEntry.spilled != 0
    }

    /// The flow's entry in the buckets the bucket at `home` spilled into (the next one, the one after, as its first
    /// two slots say), if any. Also the fast path's (which calls it out of line: most lookups end in the home bucket).
    @inlinable @inline(__always)
    func matchSpilled(_ home: UnsafeMutablePointer<FlowEntry>, src: UInt32, ports: UInt32,
                             key: UInt32) -> UnsafeMutablePointer<FlowEntry>? {
        let index = UInt32(truncatingIfNeeded: entries.distance(to: home) / FlowTable.bucketSize)
        for distance in 1...2 where home[distance &- 1].target & FlowEntry.spilled != 0 {
            let spill = entries + Int((index &+ UInt32(distance)) & bucketMask) &* FlowTable.bucketSize
            if let e = FlowTable.match(spill, src: src, ports: ports, key: key) { return e }
        }
        return nil
    }

    /// The entry of `bucket` holding the flow, if any.
    @inlinable @inline(__always)
    static func match(_ bucket: UnsafeMutablePointer<FlowEntry>, src: UInt32, ports: UInt32,
                      key: UInt32) -> UnsafeMutablePointer<FlowEntry>? {
        var i = 0
        while i < FlowTable.bucketSize {
            let e = bucket + i
            if e.pointee.src == src && e.pointee.ports == ports && e.pointee.target & FlowEntry.keyBits == key {
                return e
            }
            i &+= 1
        }
        return nil
    }

    /// A found flow: a hit (seen now) unless it was idle too long, then its slot is to be refilled.
    @inlinable @inline(__always)
    func refresh(_ e: UnsafeMutablePointer<FlowEntry>, now: UInt32) -> (UnsafeMutablePointer<FlowEntry>, Outcome) {
        guard now &- e.pointee.lastSeen <= idleTimeoutSeconds else { return (e, .insertedExpired) }
        if e.pointee.lastSeen != now { e.pointee.lastSeen = now }
        return (e, .hit)
    }

    /// Where a new flow would go: a free or expired slot of its bucket, else of the next bucket, else of the one
    /// after, else its bucket's least recently seen slot (`store` marks the bucket spilled when it fills another).
    /// Out of line: only new flows get here.
    @usableFromInline @inline(never)
    func place(_ hash: UInt64, home: UnsafeMutablePointer<FlowEntry>, now: UInt32) -> (UnsafeMutablePointer<FlowEntry>, Outcome) {
        if let free = freeSlot(home, now: now) { return free }
        if let free = freeSlot(spillBucket(hash, 1), now: now) { return free }
        if let free = freeSlot(spillBucket(hash, 2), now: now) { return free }
        var oldest = home
        for i in 1..<FlowTable.bucketSize where home[i].lastSeen < oldest.pointee.lastSeen { oldest = home + i }
        return (oldest, .insertedEvicted)
    }

    /// The first empty or expired slot of `bucket`.
    func freeSlot(_ bucket: UnsafeMutablePointer<FlowEntry>, now: UInt32) -> (UnsafeMutablePointer<FlowEntry>, Outcome)? {
        for i in 0..<FlowTable.bucketSize {
            let e = bucket + i
            if !e.pointee.isOccupied { return (e, .insertedEmpty) }
            if now &- e.pointee.lastSeen > idleTimeoutSeconds { return (e, .insertedExpired) }
        }
        return nil
    }

    /// Fills the slot `find` returned for the flow with `hash` (keeping a bucket's spilled marks if it is one of
    /// its first two slots), and marks the flow's bucket spilled (first slot: into the next bucket; second slot:
    /// into the one after) when the slot is in another bucket. Only a flow that
    /// is really stored marks it: lookups that store nothing (ICMP errors, frames dropped after the lookup)
    /// leave the bucket's lookups at one line.
    @inlinable @inline(__always)
    public func store(_ e: UnsafeMutablePointer<FlowEntry>, hash: UInt64, src: UInt32, ports: UInt32, vip: UInt32,
                      backend: UInt32, now: UInt32) {
        e.pointee = FlowEntry(src: src, ports: ports,
                              target: FlowEntry.key(vip: vip) | backend | (e.pointee.target & FlowEntry.spilled),
                              lastSeen: now)
        let home = bucket(hash)
        if e < home || e >= home + FlowTable.bucketSize {
            let next = spillBucket(hash, 1)
            home[e >= next && e < next + FlowTable.bucketSize ? 0 : 1].target |= FlowEntry.spilled
        }
    }
}

/// Where an IPv4 flow lives in the flow table: two multiplies over its 5-tuple as the frame holds it (`addresses`
/// the native 8-byte load of source and destination, `ports` the native 4-byte load of the ports), the
/// well-mixed high half returned as the low bits `bucket` uses. Not the contract `flowHash`, which only a new
/// flow needs (it picks the backend): a pinned flow's packets never compute it. The constants are fixed, like
/// the flow hash's seed; a sender who crafts colliding tuples fills its buckets, which then spill and evict
/// their own oldest flows, as any full bucket does.
@inlinable @inline(__always)
public func flowBucketHash(addresses: UInt64, ports: UInt32, proto: UInt8) -> UInt64 {
    // A product's high half depends on every bit of the multiplicand, its low half only on the low bits: folding
    // the first product's high half down lets the second multiply carry every bit up to the result.
    // The bucket comes from the low bits of the result: the byte swap puts the product's top bytes, its best mixed,
    // there (its bits 32-41 alone left two neighbouring buckets with six flows each in the bench's 1 000).
    let mixed = addresses &* 0x9E37_79B9_7F4A_7C15
    let product = ((mixed ^ mixed >> 32) ^ (UInt64(ports) << 8 | UInt64(proto))) &* 0xC2B2_AE3D_27D4_EB4F
    return UInt64(UInt32(truncatingIfNeeded: product >> 32).byteSwapped)
}

/// `flowBucketHash` of a tuple in host order (ports as source << 16 | destination).
@inlinable @inline(__always)
public func flowBucketHash(src: UInt32, dst: UInt32, ports: UInt32, proto: UInt8) -> UInt64 {
    flowBucketHash(addresses: UInt64(src.bigEndian) | UInt64(dst.bigEndian) << 32, ports: ports.bigEndian, proto: proto)
}

/// The flow-table position hash of `frame` as `processFrame` will compute it (`flowBucketHash` for IPv4, the
/// contract `flowHash6` for IPv6), read without validating anything, so the caller can prefetch the flow's
/// bucket for a whole burst before processing any frame of it (the lookups' cache misses then overlap instead
/// of coming one after the other), and hand the hash to `processFrame`. 0 when the frame does not look like
/// IPv4 or IPv6 TCP/UDP (`processFrame` does all the checking); for an untagged IPv4 frame without options, a
/// value whatever its protocol (only TCP and UDP ever use it). Untagged option-less IPv4 is read inline;
/// everything else by `frameFlowHashOther`, out of line.
@inlinable @inline(__always)
public func frameFlowHash(_ p: UnsafeRawPointer, length: Int) -> UInt64 {
    guard length >= 42, p.loadUnaligned(fromByteOffset: 12, as: UInt16.self) == 0x0008,
          p.load(fromByteOffset: 14, as: UInt8.self) == 0x45 else { return frameFlowHashOther(p, length: length) }
    return flowBucketHash(addresses: p.loadUnaligned(fromByteOffset: 26, as: UInt64.self),
                          ports: p.loadUnaligned(fromByteOffset: 34, as: UInt32.self),
                          proto: p.load(fromByteOffset: 23, as: UInt8.self))
}

/// `frameFlowHash` of a frame that is not untagged IPv4 without options.
@usableFromInline @inline(never)
func frameFlowHashOther(_ p: UnsafeRawPointer, length: Int) -> UInt64 {
    guard length >= 42 else { return 0 }
    var l2 = 14
    var etherType = UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 12, as: UInt16.self))
    if etherType == 0x8100 { etherType = UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 16, as: UInt16.self)); l2 = 18 }
    guard etherType == 0x0800 else { return etherType == 0x86DD ? frameFlowHash6(p + l2, available: length &- l2) : 0 }
    let ip = p + l2
    let ihl = Int(ip.load(as: UInt8.self) & 0x0F) &* 4
    let proto = ip.load(fromByteOffset: 9, as: UInt8.self)
    guard proto == 6 || proto == 17, length >= l2 &+ ihl &+ 4 else { return 0 }
    return flowBucketHash(addresses: ip.loadUnaligned(fromByteOffset: 12, as: UInt64.self),
                          ports: ip.loadUnaligned(fromByteOffset: ihl, as: UInt32.self), proto: proto)
}

/// `frameFlowHash` of an IPv6 packet (`available` bytes at `ip`) whose TCP or UDP header follows the IPv6 header
/// directly (with extension headers, 0: `classifyIPv6` hashes those itself).
@inline(__always)
func frameFlowHash6(_ ip: UnsafeRawPointer, available: Int) -> UInt64 {
    let next = ip.load(fromByteOffset: 6, as: UInt8.self)
    guard available >= 44, next == 6 || next == 17 else { return 0 }
    let ports = UInt32(bigEndian: ip.loadUnaligned(fromByteOffset: 40, as: UInt32.self))
    return flowHash6(srcHi: UInt64(bigEndian: ip.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
                     srcLo: UInt64(bigEndian: ip.loadUnaligned(fromByteOffset: 16, as: UInt64.self)),
                     dstHi: UInt64(bigEndian: ip.loadUnaligned(fromByteOffset: 24, as: UInt64.self)),
                     dstLo: UInt64(bigEndian: ip.loadUnaligned(fromByteOffset: 32, as: UInt64.self)),
                     srcPort: UInt16(truncatingIfNeeded: ports >> 16), dstPort: UInt16(truncatingIfNeeded: ports), proto: next)
}
