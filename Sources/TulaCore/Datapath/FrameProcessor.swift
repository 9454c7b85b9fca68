// Per-frame work: parse Ethernet/ARP/IPv4/TCP/UDP, find the VIP and backend, rewrite in place, count.

/// What to do with a frame after `processFrame`: its verdict, and for transmitted frames where the
/// frame now starts (relative to where it started: 0, or -20 after IP-in-IP) and how long it is.
public struct FrameOutcome: Sendable, Equatable {
    public var verdict: Verdict
    public var startShift: Int32
    public var length: UInt32

    @inline(__always) public init(_ verdict: Verdict, shift: Int32 = 0, length: UInt32 = 0) {
        self.verdict = verdict; startShift = shift; self.length = length
    }
}

/// The IPv4 checksum status a NIC reported for a frame (DPDK's RX_IP_CKSUM flags).
public enum ChecksumStatus: UInt8, Sendable { case unknown = 0, good = 1, bad = 2 }

/// Bytes the L3 mode prepends (outer IPv4 header).
public let ipInIPOverheadBytes = 20

@inline(__always) func be16(_ p: UnsafeRawPointer, _ o: Int) -> UInt16 {
    UInt16(bigEndian: p.loadUnaligned(fromByteOffset: o, as: UInt16.self))
}
@inline(__always) func be32(_ p: UnsafeRawPointer, _ o: Int) -> UInt32 {
    UInt32(bigEndian: p.loadUnaligned(fromByteOffset: o, as: UInt32.self))
}
@inline(__always) func put16(_ p: UnsafeMutableRawPointer, _ o: Int, _ v: UInt16) {
    p.storeBytes(of: v.bigEndian, toByteOffset: o, as: UInt16.self)
}
@inline(__always) func put32(_ p: UnsafeMutableRawPointer, _ o: Int, _ v: UInt32) {
    p.storeBytes(of: v.bigEndian, toByteOffset: o, as: UInt32.self)
}
@inline(__always) func putMAC(_ p: UnsafeMutableRawPointer, _ o: Int, _ w0: UInt32, _ w1: UInt16) {
    p.storeBytes(of: w0, toByteOffset: o, as: UInt32.self)
    p.storeBytes(of: w1, toByteOffset: o + 4, as: UInt16.self)
}

/// Handles one received frame of `length` bytes at `frame` on port `port`, counts its verdict (and its
/// VIP, backend and flow-table counters) in `counters`, and rewrites it in place when it is to be sent.
/// `headroom` is how many writable bytes precede `frame` (L3 mode needs 20). `now` is in seconds.
@inline(__always)
public func processFrame(_ frame: UnsafeMutableRawPointer, length: Int, headroom: Int, checksum: ChecksumStatus,
                         port: Int, tables: UnsafePointer<DataplaneTables>, flows: UnsafePointer<FlowTable>,
                         counters: UnsafeMutablePointer<UInt64>, now: UInt32) -> FrameOutcome {
    let outcome = classifyAndRewrite(frame, length: length, headroom: headroom, checksum: checksum, port: port,
                                     tables: tables, flows: flows, counters: counters, now: now)
    let layout = tables.pointee.layout
    counters[layout.verdict(port, outcome.verdict)] &+= 1
    return outcome
}

@inline(__always)
func classifyAndRewrite(_ p: UnsafeMutableRawPointer, length: Int, headroom: Int, checksum: ChecksumStatus,
                        port portIndex: Int, tables: UnsafePointer<DataplaneTables>, flows: UnsafePointer<FlowTable>,
                        counters: UnsafeMutablePointer<UInt64>, now: UInt32) -> FrameOutcome {
    guard length >= 14 else { return FrameOutcome(.malformedFrame) }
    var etherType = be16(p, 12)
    var l2 = 14
    if etherType == 0x8100 {
        guard length >= 18 else { return FrameOutcome(.malformedFrame) }
        etherType = be16(p, 16)
        l2 = 18
    }
    let port = tables.pointee.ports + portIndex
    if etherType == 0x0806 { return answerARP(p, length: length, l2: l2, port: port, tables: tables) }
    guard etherType == 0x0800 else { return FrameOutcome(.notIPv4) }
    guard p.loadUnaligned(as: UInt32.self) == port.pointee.macWord0,
          p.loadUnaligned(fromByteOffset: 4, as: UInt16.self) == port.pointee.macWord1 else {
        return FrameOutcome(.notOurMAC)
    }

    // IPv4 header.
    let ip = p + l2
    let available = length &- l2
    guard available >= 20 else { return FrameOutcome(.malformedIPv4) }
    let versionIHL = ip.load(as: UInt8.self)
    let ihl = Int(versionIHL & 0x0F) &* 4
    guard versionIHL >> 4 == 4, ihl >= 20, ihl <= available else { return FrameOutcome(.malformedIPv4) }
    let total = Int(be16(ip, 2))
    guard total >= ihl, total <= available else { return FrameOutcome(.malformedIPv4) }
    switch checksum {
    case .good: break
    case .bad: return FrameOutcome(.badIPChecksum)
    case .unknown: guard onesComplementSum(ip, ihl) == 0xFFFF else { return FrameOutcome(.badIPChecksum) }
    }
    guard be16(ip, 6) & 0x3FFF == 0 else { return FrameOutcome(.fragment) }

    // TCP or UDP header.
    let proto = ip.load(fromByteOffset: 9, as: UInt8.self)
    let l4 = ip + ihl
    let l4Length = total &- ihl
    if proto == 6 {
        guard l4Length >= 20 else { return FrameOutcome(.malformedL4) }
        let dataOffset = Int(l4.load(fromByteOffset: 12, as: UInt8.self) >> 4) &* 4
        guard dataOffset >= 20, dataOffset <= l4Length else { return FrameOutcome(.malformedL4) }
    } else if proto == 17 {
        guard l4Length >= 8 else { return FrameOutcome(.malformedL4) }
        let udpLength = Int(be16(l4, 4))
        guard udpLength >= 8, udpLength <= l4Length else { return FrameOutcome(.malformedL4) }
    } else {
        return FrameOutcome(.notTCPUDP)
    }
    let src = be32(ip, 12), dst = be32(ip, 16)
    let ports = be32(l4, 0)
    let dstPort = UInt16(truncatingIfNeeded: ports)

    // VIP, MTU, backend.
    let t = tables.pointee
    let vipIndex = t.findVIP(address: dst, proto: proto, port: dstPort)
    guard vipIndex >= 0 else { return FrameOutcome(.noVIP) }
    let vip = t.vips + vipIndex
    let mode = vip.pointee.mode
    let overhead = mode == .l3 ? ipInIPOverheadBytes : 0
    guard UInt32(total &+ overhead) <= port.pointee.mtuBytes, headroom >= overhead else {
        return FrameOutcome(.tooBig)
    }
    let hash = flowHash(src: src, dst: dst, srcPort: UInt16(truncatingIfNeeded: ports >> 16), dstPort: dstPort, proto: proto)
    let (entry, found) = flows.pointee.find(hash: hash, src: src, dst: dst, ports: ports, proto: proto, now: now)
    let vipSlot = vip.pointee.slot
    var backend = entry.pointee.backend
    let layout = t.layout
    // A pinned flow keeps its backend while that backend still serves this VIP (even at weight 0).
    if found != .hit || t.backends[Int(backend)].vipSlot != vipSlot {
        let slot = vip.pointee.table[Int(reduce(hash, vip.pointee.tableSize))]
        guard slot != Maglev.none else { return FrameOutcome(.noBackend) }
        backend = UInt32(slot)
        FlowTable.store(entry, src: src, dst: dst, ports: ports, proto: proto, backend: backend, now: now)
        let f = layout.flowTable
        counters[f &+ CounterLayout.flowInsertions] &+= 1
        switch found {
        case .insertedEmpty: counters[f &+ CounterLayout.flowsInUse] &+= 1
        case .insertedEvicted: counters[f &+ CounterLayout.flowEvictions] &+= 1
        case .insertedExpired, .hit: counters[f &+ CounterLayout.flowExpiries] &+= 1
        }
        counters[layout.vip(Int(vipSlot)) &+ CounterLayout.newFlows] &+= 1
        counters[layout.backend(Int(backend)) &+ CounterLayout.newFlows] &+= 1
    }
    let frameLength = l2 &+ total
    let vc = layout.vip(Int(vipSlot)), bc = layout.backend(Int(backend))
    counters[vc &+ CounterLayout.packets] &+= 1
    counters[vc &+ CounterLayout.bytes] &+= UInt64(frameLength)
    counters[bc &+ CounterLayout.packets] &+= 1
    counters[bc &+ CounterLayout.bytes] &+= UInt64(frameLength)

    let b = t.backends + Int(backend)
    if mode == .l2 {
        putMAC(p, 0, b.pointee.macWord0, b.pointee.macWord1)
        putMAC(p, 6, port.pointee.macWord0, port.pointee.macWord1)
        return FrameOutcome(.forwardedL2, shift: 0, length: UInt32(frameLength))
    }
    encapsulate(p, l2: l2, ip: ip, total: total, port: port, backend: b.pointee.address)
    return FrameOutcome(.forwardedL3, shift: -Int32(ipInIPOverheadBytes), length: UInt32(frameLength &+ ipInIPOverheadBytes))
}

/// Writes the IP-in-IP frame 20 bytes before `p`: Ethernet to the gateway (VLAN tag kept), then the outer
/// IPv4 header (TOS, identification and DF copied from the inner header, TTL 64, protocol 4).
@inline(__always)
func encapsulate(_ p: UnsafeMutableRawPointer, l2: Int, ip: UnsafeMutableRawPointer, total: Int,
                 port: UnsafePointer<PortTables>, backend: UInt32) {
    let tos = ip.load(fromByteOffset: 1, as: UInt8.self)
    let identification = ip.loadUnaligned(fromByteOffset: 4, as: UInt16.self)
    let dontFragment = ip.load(fromByteOffset: 6, as: UInt8.self) & 0x40
    let tag = p.loadUnaligned(fromByteOffset: 12, as: UInt32.self) // VLAN TPID+TCI when l2 == 18
    let out = p - ipInIPOverheadBytes
    putMAC(out, 0, port.pointee.gatewayWord0, port.pointee.gatewayWord1)
    putMAC(out, 6, port.pointee.macWord0, port.pointee.macWord1)
    if l2 == 18 { out.storeBytes(of: tag, toByteOffset: 12, as: UInt32.self) }
    put16(out, l2 - 2, 0x0800)
    let outer = out + l2
    outer.storeBytes(of: 0x45, as: UInt8.self)
    outer.storeBytes(of: tos, toByteOffset: 1, as: UInt8.self)
    put16(outer, 2, UInt16(truncatingIfNeeded: total &+ ipInIPOverheadBytes))
    outer.storeBytes(of: identification, toByteOffset: 4, as: UInt16.self)
    outer.storeBytes(of: dontFragment, toByteOffset: 6, as: UInt8.self)
    outer.storeBytes(of: 0, toByteOffset: 7, as: UInt8.self)
    outer.storeBytes(of: 64, toByteOffset: 8, as: UInt8.self)
    outer.storeBytes(of: 4, toByteOffset: 9, as: UInt8.self)
    put16(outer, 10, 0)
    put32(outer, 12, port.pointee.address)
    put32(outer, 16, backend)
    put16(outer, 10, internetChecksum(outer, 20))
}

/// Answers an ARP request for the port's address or a VIP in place; anything else is not for us.
@inline(__always)
func answerARP(_ p: UnsafeMutableRawPointer, length: Int, l2: Int, port: UnsafePointer<PortTables>,
               tables: UnsafePointer<DataplaneTables>) -> FrameOutcome {
    guard length &- l2 >= 28 else { return FrameOutcome(.malformedARP) }
    let a = p + l2
    guard be16(a, 0) == 1, be16(a, 2) == 0x0800, a.load(fromByteOffset: 4, as: UInt8.self) == 6,
          a.load(fromByteOffset: 5, as: UInt8.self) == 4 else { return FrameOutcome(.malformedARP) }
    let target = be32(a, 24)
    guard be16(a, 6) == 1, target == port.pointee.address || tables.pointee.isVIPAddress(target) else {
        return FrameOutcome(.arpIgnored)
    }
    let senderMAC0 = a.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
    let senderMAC1 = a.loadUnaligned(fromByteOffset: 12, as: UInt16.self)
    let senderIP = a.loadUnaligned(fromByteOffset: 14, as: UInt32.self)
    put16(a, 6, 2)
    putMAC(a, 8, port.pointee.macWord0, port.pointee.macWord1)
    put32(a, 14, target)
    putMAC(a, 18, senderMAC0, senderMAC1)
    a.storeBytes(of: senderIP, toByteOffset: 24, as: UInt32.self)
    let ethSource0 = p.loadUnaligned(fromByteOffset: 6, as: UInt32.self)
    let ethSource1 = p.loadUnaligned(fromByteOffset: 10, as: UInt16.self)
    putMAC(p, 0, ethSource0, ethSource1)
    putMAC(p, 6, port.pointee.macWord0, port.pointee.macWord1)
    return FrameOutcome(.arpReply, shift: 0, length: UInt32(length))
}
