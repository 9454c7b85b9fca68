// Per-frame work: parse Ethernet/ARP/IPv4/TCP/UDP/ICMP, find the VIP and backend, rewrite in place, count.

import TulaCore

/// What to do with a frame after `processFrame`: its verdict, and for transmitted frames where the
/// frame now starts (relative to where it started; negative after IP-in-IP or a tag insertion) and how
/// long it is. An l3 packet too big for one frame (DF clear) is sent as `fragments` outer fragments to
/// `nextHop` instead, written by `writeOuterFragment` into new buffers.
public struct FrameOutcome: Sendable, Equatable {
    public var verdict: Verdict
    public var startShift: Int32
    public var length: UInt32
    public var fragments: UInt16 = 0
    public var nextHop: UInt32 = 0

    @inlinable @inline(__always) public init(_ verdict: Verdict, shift: Int32 = 0, length: UInt32 = 0) {
        self.verdict = verdict; startShift = shift; self.length = length
    }
}

/// The IPv4 checksum status a NIC reported for a frame (DPDK's RX_IP_CKSUM flags).
public enum ChecksumStatus: UInt8, Sendable { case unknown = 0, good = 1, bad = 2 }

/// Bytes the L3 mode prepends (outer IPv4 header).
public let ipInIPOverheadBytes = 20
/// Bytes an IPv6 outer header prepends (6in6, 4in6).
public let ipv6OverheadBytes = 40
/// Writable bytes an l3 output may need in front of the frame: the largest outer headers (IPv6 + GUE's UDP) plus an
/// inserted VLAN tag.
public let requiredHeadroomBytes = ipv6OverheadBytes + 8 + 4

/// Handles one received frame of `length` bytes at `frame` on port `port`, counts its verdict (and its
/// VIP, backend and flow-table counters) in `counters`, and rewrites it in place when it is to be sent.
/// `headroom` is how many writable bytes precede `frame`; the buffer must also have room for 96 bytes
/// past the IPv4 header (an ICMP reply can outgrow a tiny input, as mbufs allow). `now` is in seconds.
/// `flowHash` must be `frameFlowHash(frame, length: length)` (computed earlier to prefetch the flow's bucket).
/// The worker loop tries `FastPath.forward` first and calls this (out of line, `processFrameOutOfLine`) for what it declines.
/// Transparent, so the worker loop in another module gets it inlined (a call per frame cost ~40 instructions
/// of argument passing, register saves and result unpacking); what it reaches is `@usableFromInline`.
@_transparent
public func processFrame(_ frame: UnsafeMutableRawPointer, length: Int, headroom: Int, checksum: ChecksumStatus,
                         port: Int, tables: UnsafePointer<DataplaneTables>, flows: UnsafePointer<FlowTable>,
                         counters: UnsafeMutablePointer<UInt64>, now: UInt32, flowHash frameHash: UInt64) -> FrameOutcome {
    let outcome = classifyAndRewrite(frame, length: length, headroom: headroom, checksum: checksum, port: port,
                                     tables: tables, flows: flows, counters: counters, now: now, flowHash: frameHash)
    counters[tables.pointee.layout.verdict(port, outcome.verdict)] &+= 1
    return outcome
}

/// `processFrame` compiled once, out of line: what the worker loop calls for the frames `FastPath.forward`
/// declines, so the loop's own code stays the fast path's size.
@inline(never)
public func processFrameOutOfLine(_ frame: UnsafeMutableRawPointer, length: Int, headroom: Int, checksum: ChecksumStatus,
                                  port: Int, tables: UnsafePointer<DataplaneTables>, flows: UnsafePointer<FlowTable>,
                                  counters: UnsafeMutablePointer<UInt64>, now: UInt32, flowHash frameHash: UInt64) -> FrameOutcome {
    processFrame(frame, length: length, headroom: headroom, checksum: checksum, port: port, tables: tables, flows: flows,
                 counters: counters, now: now, flowHash: frameHash)
}

@usableFromInline @_transparent
func classifyAndRewrite(_ p: UnsafeMutableRawPointer, length: Int, headroom: Int, checksum: ChecksumStatus,
                        port portIndex: Int, tables: UnsafePointer<DataplaneTables>, flows: UnsafePointer<FlowTable>,
                        counters: UnsafeMutablePointer<UInt64>, now: UInt32, flowHash frameHash: UInt64) -> FrameOutcome {
    guard length >= 14 else { return FrameOutcome(.malformedFrame) }
    let port = tables.pointee.ports + portIndex
    var etherType = be16(p, 12)
    var l2 = 14
    var inputTag = untagged
    if etherType == 0x8100 {
        guard length >= 18 else { return FrameOutcome(.malformedFrame) }
        let tci = be16(p, 14)
        let vlan = port.pointee.vlan
        // VLAN id 0 is a priority tag on an untagged frame (802.1Q), accepted on any port.
        guard vlan == 0 || tci & 0x0FFF == vlan || tci & 0x0FFF == 0 else { return FrameOutcome(.wrongVLAN) }
        inputTag = Int32(tci)
        etherType = be16(p, 16)
        l2 = 18
    }
    if etherType == 0x0806 { return answerARP(p, length: length, l2: l2, port: port, tables: tables) }
    guard etherType == 0x0800 else {
        if etherType == 0x86DD {
            return classifyIPv6(p, length: length, headroom: headroom, port: port, tables: tables, flows: flows,
                                counters: counters, now: now, flowHash: frameHash)
        }
        return FrameOutcome(.notIP)
    }
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
    case .unknown: guard headerChecksumValid(ip, ihl) else { return FrameOutcome(.badIPChecksum) }
    }
    let isFragment = be16(ip, 6) & 0x3FFF != 0
    let proto = ip.load(fromByteOffset: 9, as: UInt8.self)
    let src = be32(ip, 12), dst = be32(ip, 16)
    let l4 = ip + ihl
    let l4Length = total &- ihl

    if proto == 1 {
        guard !isFragment else { return FrameOutcome(.fragment) }
        let packet = Packet(frame: p, l2: l2, inputTag: inputTag, ip: ip, ihl: ihl, total: total, headroom: headroom)
        return handleICMP(packet, l4: l4, l4Length: l4Length, src: src, dst: dst, port: port, tables: tables,
                          flows: flows, counters: counters, now: now)
    }
    guard proto == 6 || proto == 17 else { return FrameOutcome(ownOrElse(dst, port, .notTCPUDP)) }

    if isFragment {
        // No ports (or not in every fragment): the address's fragment VIP, and a hash without ports,
        // so every fragment of a datagram reaches the same backend. Never pinned in the flow table.
        guard let address = tables.pointee.vipAddress(dst) else { return FrameOutcome(ownOrElse(dst, port, .noVIP)) }
        let vipIndex = Int(proto == 6 ? address.pointee.fragmentTCP : address.pointee.fragmentUDP)
        guard vipIndex >= 0 else { return FrameOutcome(.fragment) }
        let vip = tables.pointee.vips + vipIndex
        let pick = vip.pointee.hash == .source ? flowHash(src: src, dst: 0, srcPort: 0, dstPort: 0, proto: 0)
                                               : flowHash(src: src, dst: dst, srcPort: 0, dstPort: 0, proto: proto)
        let packet = Packet(frame: p, l2: l2, inputTag: inputTag, ip: ip, ihl: ihl, total: total, headroom: headroom)
        return deliverCold(packet, vip: vip, port: port, tables: tables, flows: flows, counters: counters, now: now,
                           flow: nil, pick: pick, isICMPError: false)
    }

    guard transportHeaderFits(l4, length: l4Length, proto: proto) else { return FrameOutcome(.malformedL4) }
    let ports = be32(l4, 0)
    let vipIndex = tables.pointee.findVIPCode(address: dst, proto: proto, port: UInt16(truncatingIfNeeded: ports))
    guard vipIndex >= 0 else {
        guard vipIndex != -1 else { return FrameOutcome(ownOrElse(dst, port, .noVIP)) }
        // A quic VIP (code -2 - index): re-parsed out of line from the arguments, so other VIPs pay nothing for it.
        return classifyQUIC(p, headroom: headroom, port: port, tables: tables, flows: flows, counters: counters, now: now,
                            vipIndex: -2 &- vipIndex)
    }
    let vip = tables.pointee.vips + vipIndex
    let key = FlowKey(src: src, dst: dst, ports: ports, proto: proto)
    assert(key.bucket == frameHash, "flowHash is not frameFlowHash")
    let packet = Packet(frame: p, l2: l2, inputTag: inputTag, ip: ip, ihl: ihl, total: total, headroom: headroom)
    return deliver(packet, vip: vip, port: port, tables: tables, flows: flows, counters: counters, now: now,
                   flow: (key, true), pick: key.pickHash(vip.pointee.hash))
}

/// `.toKernel` when `dst` (host order) is the port's own IPv4 address and the port has a kernel interface,
/// else `otherwise`. Out of line: only frames that are no VIP's get here.
@usableFromInline @inline(never)
func ownOrElse(_ dst: UInt32, _ port: UnsafePointer<PortTables>, _ otherwise: Verdict) -> Verdict {
    port.pointee.kernel && dst == port.pointee.address ? .toKernel : otherwise
}

/// `.toKernel` when `hi`/`lo` is the port's own `address6` and the port has a kernel interface, else `otherwise`.
@usableFromInline @inline(never)
func ownOrElse6(_ hi: UInt64, _ lo: UInt64, _ port: UnsafePointer<PortTables>, _ otherwise: Verdict) -> Verdict {
    port.pointee.kernel && port.pointee.hasAddress6 && hi == port.pointee.address6Hi && lo == port.pointee.address6Lo
        ? .toKernel : otherwise
}

/// Whether the TCP (`proto` 6) or UDP header at `l4` fits the `length` bytes of the IP payload: TCP at least 20
/// bytes with its data offset within them, UDP at least 8 with its length within them. Shared by IPv4 and IPv6;
/// transparent, so the IPv4 loop keeps it inlined.
@usableFromInline @_transparent
func transportHeaderFits(_ l4: UnsafeRawPointer, length: Int, proto: UInt8) -> Bool {
    if proto == 6 {
        guard length >= 20 else { return false }
        let dataOffset = Int(l4.load(fromByteOffset: 12, as: UInt8.self) >> 4) &* 4
        return dataOffset >= 20 && dataOffset <= length
    }
    guard length >= 8 else { return false }
    let udpLength = Int(be16(l4, 4))
    return udpLength >= 8 && udpLength <= length
}

/// Where the parts of a received IPv4 (or IPv6) frame are: for IPv6, `ihl` is the offset of the L4 header
/// (past any extension headers) and `total` is 40 + the payload length. Built just before each call that takes one: the rare paths
/// take it by address, and one built once up front was stored to the stack for every packet.
@usableFromInline struct Packet {
    @usableFromInline var frame: UnsafeMutableRawPointer
    @usableFromInline var l2: Int
    @usableFromInline var inputTag: Int32
    @usableFromInline var ip: UnsafeMutableRawPointer
    @usableFromInline var ihl: Int
    @usableFromInline var total: Int
    @usableFromInline var headroom: Int

    @inlinable init(frame: UnsafeMutableRawPointer, l2: Int, inputTag: Int32, ip: UnsafeMutableRawPointer, ihl: Int,
                    total: Int, headroom: Int) {
        self.frame = frame; self.l2 = l2; self.inputTag = inputTag; self.ip = ip; self.ihl = ihl
        self.total = total; self.headroom = headroom
    }
}

/// A client-to-VIP 5-tuple, addresses and ports in host order (an IPv6 flow keeps a fingerprint of its source).
@usableFromInline struct FlowKey {
    @usableFromInline var src: UInt32
    @usableFromInline var dst: UInt32
    /// Source port << 16 | destination port.
    @usableFromInline var ports: UInt32
    @usableFromInline var proto: UInt8
    /// The 5-tuple's `flowHash` (the contract: it picks the backend).
    @usableFromInline var hash: UInt64
    /// Where the flow lives in the flow table: `flowBucketHash` for IPv4, the contract hash for IPv6.
    @usableFromInline var bucket: UInt64

    /// An IPv6 flow (or any flow whose table position is its contract hash).
    @inlinable @inline(__always) init(src: UInt32, dst: UInt32, ports: UInt32, proto: UInt8, hash: UInt64) {
        self.src = src; self.dst = dst; self.ports = ports; self.proto = proto; self.hash = hash; bucket = hash
    }

    /// An IPv4 flow: both hashes from the tuple.
    @inlinable @inline(__always) init(src: UInt32, dst: UInt32, ports: UInt32, proto: UInt8) {
        self.init(src: src, dst: dst, ports: ports, proto: proto,
                  hash: flowHash(src: src, dst: dst, srcPort: UInt16(truncatingIfNeeded: ports >> 16),
                                 dstPort: UInt16(truncatingIfNeeded: ports), proto: proto))
        bucket = flowBucketHash(src: src, dst: dst, ports: ports, proto: proto)
    }

    /// The hash that picks a backend under the VIP's `hash` mode.
    @inlinable @inline(__always) func pickHash(_ mode: FlowHashMode) -> UInt64 {
        switch mode {
        case .fiveTuple: hash
        case .threeTuple: flowHash(src: src, dst: dst, srcPort: 0, dstPort: 0, proto: proto)
        case .source: flowHash(src: src, dst: 0, srcPort: 0, dstPort: 0, proto: 0)
        }
    }
}

/// Sends a packet of `vip` to its backend: the flow's pinned backend when `flow` is given and pinned,
/// else the Maglev pick by `pick` (pinned when `flow.insert`); checks MTU and next-hop resolution, counts,
/// and rewrites (l2) or encapsulates (l3: IPv4 outer, or IPv6 outer for `tunnel6` VIPs). `ipv6` says the
/// packet is IPv6 (never fragmented: too big for the tunnel is answered with Packet Too Big). Transparent: `@inline(__always)` alone was not honoured in
/// `processFrame` (the optimizer stops inlining into callers that large), which cost a call and copies of
/// `Packet` through the stack per packet.
@usableFromInline @_transparent
func deliver(_ packet: Packet, vip: UnsafeMutablePointer<VIPEntry>, port: UnsafePointer<PortTables>,
             tables: UnsafePointer<DataplaneTables>, flows: UnsafePointer<FlowTable>, counters: UnsafeMutablePointer<UInt64>,
             now: UInt32, flow: (key: FlowKey, insert: Bool)?, pick: UInt64, isICMPError: Bool = false,
             ipv6: Bool = false, backendOverride: UInt32 = UInt32(Maglev.none)) -> FrameOutcome {
    let mode = vip.pointee.mode
    let total = packet.total
    var fragments = 0
    if UInt32(total) &+ vip.pointee.overheadBytes > port.pointee.mtuBytes {
        guard mode == .l3 else { return FrameOutcome(.tooBig) }
        // Never an ICMP error about an ICMP error (RFC 1122 3.2.2, RFC 4443 2.4).
        if ipv6 {
            return isICMPError ? FrameOutcome(.tooBig) : answerPacketTooBig(packet, port: port, overhead: vip.pointee.overheadBytes)
        }
        if be16(packet.ip, 6) & 0x4000 != 0 && !isICMPError {
            return answerFragmentationNeeded(packet.frame, l2: packet.l2, ip: packet.ip, ihl: packet.ihl, port: port,
                                             overhead: vip.pointee.overheadBytes)
        }
        // ICMP errors and DF-clear packets go out as outer fragments; an IPv6 outer header is never fragmented.
        // GUE and GRE are not fragmented either: fragments of the outer packet would split its shim header.
        guard !vip.pointee.tunnel6 && vip.pointee.tunnel.kind == .ipip else { return FrameOutcome(.tooBig) }
        let per = outerFragmentPayload(mtu: port.pointee.mtuBytes)
        guard per > 0 else { return FrameOutcome(.tooBig) }
        fragments = (total &+ per &- 1) / per
    }
    guard mode == .l2 || packet.headroom >= Int(vip.pointee.overheadBytes) &+ 4 else { return FrameOutcome(.tooBig) }

    // Backend: pinned, or picked (and pinned once the packet is sure to go out).
    let vipSlot = vip.pointee.slot
    let layout = tables.pointee.layout
    var backend = backendOverride // QUIC: the backend the connection ID names
    var entry: UnsafeMutablePointer<FlowEntry>? = nil
    var found = FlowTable.Outcome.insertedEmpty
    if let flow {
        let k = flow.key
        (entry, found) = flows.pointee.find(hash: k.bucket, src: k.src, ports: k.ports, vip: vipSlot, now: now)
        if found == .hit, let entry, tables.pointee.backends[Int(entry.pointee.backend)].vipSlot == vipSlot {
            backend = entry.pointee.backend
        }
    }
    let picked = backend == UInt32(Maglev.none)
    if picked {
        let slot = vip.pointee.table[Int(reduce(pick, vip.pointee.tableSize))]
        guard slot != Maglev.none else { return FrameOutcome(.noBackend) }
        backend = UInt32(slot)
    }
    let b = tables.pointee.backends + Int(backend)
    guard mode == .l2 ? b.pointee.resolved
                      : (vip.pointee.tunnel6 ? port.pointee.gateway6Resolved : port.pointee.gatewayResolved) else {
        return FrameOutcome(.unresolvedNextHop)
    }
    // An l2 output that gains a VLAN tag needs 4 bytes in front of the frame.
    if mode == .l2 && packet.inputTag == untagged && b.pointee.vlan != 0 && packet.headroom < 4 {
        return FrameOutcome(.tooBig)
    }
    if picked, let flow, flow.insert, let entry {
        pinNewFlow(flow.key, at: entry, found: found, vipSlot: vipSlot, backend: backend, flows: flows,
                   layout: layout, counters: counters, now: now)
    }
    let inLength = UInt64(packet.l2 &+ total)
    countDelivered(vip: counters + layout.vip(Int(vipSlot)), backend: counters + layout.backend(Int(backend)), bytes: inLength)

    if mode == .l2 {
        // `remark: true` (Encapsulations.swift).
        if vip.pointee.outOfLine { remarkDSCP(ip: packet.ip, ipv6: ipv6, dscp: vip.pointee.tunnel.dscp) }
        let tag = outputTag(input: packet.inputTag, vlan: b.pointee.vlan)
        let p = packet.frame
        if tag == packet.inputTag {
            putMAC(p, 0, b.pointee.macWord0, b.pointee.macWord1)
            putMAC(p, 6, port.pointee.macWord0, port.pointee.macWord1)
            if tag != untagged { put16(p, 14, UInt16(truncatingIfNeeded: tag)) }
            return FrameOutcome(.forwardedL2, shift: 0, length: UInt32(packet.l2 &+ total))
        }
        if packet.inputTag != untagged {
            put16(p, 14, UInt16(truncatingIfNeeded: tag))
            putMAC(p, 0, b.pointee.macWord0, b.pointee.macWord1)
            putMAC(p, 6, port.pointee.macWord0, port.pointee.macWord1)
            return FrameOutcome(.forwardedL2, shift: 0, length: UInt32(18 &+ total))
        }
        // Insert a tag: MACs and tag move 4 bytes forward, the ethertype stays where it is.
        putMAC(p, -4, b.pointee.macWord0, b.pointee.macWord1)
        putMAC(p, 2, port.pointee.macWord0, port.pointee.macWord1)
        put16(p, 8, 0x8100)
        put16(p, 10, UInt16(truncatingIfNeeded: tag))
        return FrameOutcome(.forwardedL2, shift: -4, length: UInt32(18 &+ total))
    }
    if vip.pointee.outOfLine && fragments == 0 {
        // IPv6 outer, GUE, GRE, per-flow source, DSCP (Encapsulations.swift); outer fragments stay IP-in-IP.
        let hash = flow?.key.hash ?? pick
        let start = vip.pointee.tunnel.general
            ? encapsulateVIP(ip: packet.ip, total: total, inner6: ipv6, inputTag: packet.inputTag, port: port,
                             vip: vip, backend: b, hash: hash)
            : encapsulate6(ip: packet.ip, total: total, inner6: ipv6, inputTag: packet.inputTag, port: port,
                           backend: b, label: flowLabel(hash))
        return FrameOutcome(.forwardedL3, shift: Int32(packet.l2 &+ start), length: UInt32(-start &+ total))
    }
    if fragments > 0 {
        var outcome = FrameOutcome(.forwardedL3, shift: 0, length: UInt32(packet.l2 &+ total))
        outcome.fragments = UInt16(truncatingIfNeeded: fragments)
        outcome.nextHop = b.pointee.address
        return outcome
    }
    let start = encapsulate(ip: packet.ip, total: total, inputTag: packet.inputTag, port: port, backend: b.pointee.address)
    return FrameOutcome(.forwardedL3, shift: Int32(packet.l2 &+ start), length: UInt32(-start &+ total))
}

/// Stores a new flow's backend in the slot `find` gave and counts it (flow table, VIP and backend new flows).
/// Out of line: it runs once per flow, and inlined its values crowded the per-packet path's registers.
@usableFromInline @inline(never)
func pinNewFlow(_ k: FlowKey, at entry: UnsafeMutablePointer<FlowEntry>, found: FlowTable.Outcome, vipSlot: UInt32,
                backend: UInt32, flows: UnsafePointer<FlowTable>, layout: CounterLayout,
                counters: UnsafeMutablePointer<UInt64>, now: UInt32) {
    flows.pointee.store(entry, hash: k.bucket, src: k.src, ports: k.ports, vip: vipSlot, backend: backend, now: now)
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

/// `deliver` for the rare callers (fragments, ICMP errors, IPv6), so the TCP/UDP path keeps its inlined copy.
@usableFromInline @inline(never)
func deliverCold(_ packet: Packet, vip: UnsafeMutablePointer<VIPEntry>, port: UnsafePointer<PortTables>,
                 tables: UnsafePointer<DataplaneTables>, flows: UnsafePointer<FlowTable>, counters: UnsafeMutablePointer<UInt64>,
                 now: UInt32, flow: (key: FlowKey, insert: Bool)?, pick: UInt64, isICMPError: Bool,
                 ipv6: Bool = false) -> FrameOutcome {
    deliver(packet, vip: vip, port: port, tables: tables, flows: flows, counters: counters, now: now, flow: flow,
            pick: pick, isICMPError: isICMPError, ipv6: ipv6)
}

/// ICMP to the appliance: echo requests to a VIP are answered; errors (destination unreachable, time
/// exceeded) about a VIP flow go to the backend that owns the flow (the quoted packet's tuple, reversed).
@usableFromInline @inline(never) // cold: keeps the per-packet loop small
func handleICMP(_ packet: Packet, l4: UnsafeMutableRawPointer, l4Length: Int, src: UInt32, dst: UInt32,
                port: UnsafePointer<PortTables>, tables: UnsafePointer<DataplaneTables>, flows: UnsafePointer<FlowTable>,
                counters: UnsafeMutablePointer<UInt64>, now: UInt32) -> FrameOutcome {
    // Every ICMP message to the port's own address (echo, errors about the kernel's own connections) is the kernel's.
    if port.pointee.kernel && dst == port.pointee.address { return FrameOutcome(.toKernel) }
    guard l4Length >= 8 else { return FrameOutcome(.malformedL4) }
    let t = tables.pointee
    guard let address = t.vipAddress(dst) else { return FrameOutcome(.noVIP) }
    let type = l4.load(as: UInt8.self)
    if type == 8 {
        guard address.pointee.echo, l4.load(fromByteOffset: 1, as: UInt8.self) == 0 else { return FrameOutcome(.icmpIgnored) }
        return answerEcho(packet.frame, l2: packet.l2, ip: packet.ip, ihl: packet.ihl, port: port)
    }
    guard type == 3 || type == 11 else { return FrameOutcome(.icmpIgnored) }
    // The quoted packet went from the VIP to the client: VIP -> client, VIP port -> client port.
    let inner = l4 + 8
    guard l4Length >= 8 &+ 20 else { return FrameOutcome(.malformedL4) }
    let innerIHL = Int(inner.load(as: UInt8.self) & 0x0F) &* 4
    guard inner.load(as: UInt8.self) >> 4 == 4, innerIHL >= 20, l4Length >= 8 &+ innerIHL &+ 8 else {
        return FrameOutcome(.malformedL4)
    }
    let innerProto = inner.load(fromByteOffset: 9, as: UInt8.self)
    guard innerProto == 6 || innerProto == 17, be32(inner, 12) == dst else { return FrameOutcome(.icmpIgnored) }
    let innerPorts = be32(inner, innerIHL)
    let vipPort = UInt16(truncatingIfNeeded: innerPorts >> 16), clientPort = UInt16(truncatingIfNeeded: innerPorts)
    let vipIndex = t.findVIP(address: dst, proto: innerProto, port: vipPort)
    guard vipIndex >= 0 else { return FrameOutcome(.noVIP) }
    let vip = t.vips + vipIndex
    let key = FlowKey(src: be32(inner, 16), dst: dst, ports: UInt32(clientPort) << 16 | UInt32(vipPort), proto: innerProto)
    return deliverCold(packet, vip: vip, port: port, tables: tables, flows: flows, counters: counters, now: now,
                       flow: (key, false), pick: key.pickHash(vip.pointee.hash), isICMPError: true)
}

/// ARP: requests for the port's address or a VIP are answered in place; replies to the port's address go
/// to the control plane (neighbour resolution, which also copies them to the kernel interface if there is
/// one); anything else is not for us. With a kernel interface, requests for the port's address go to the
/// kernel, which answers them itself (with the same MAC) and so learns the asker.
@usableFromInline @inline(never) // cold: keeps the per-packet loop small
func answerARP(_ p: UnsafeMutableRawPointer, length: Int, l2: Int, port: UnsafePointer<PortTables>,
               tables: UnsafePointer<DataplaneTables>) -> FrameOutcome {
    guard length &- l2 >= 28 else { return FrameOutcome(.malformedARP) }
    let a = p + l2
    guard be16(a, 0) == 1, be16(a, 2) == 0x0800, a.load(fromByteOffset: 4, as: UInt8.self) == 6,
          a.load(fromByteOffset: 5, as: UInt8.self) == 4 else { return FrameOutcome(.malformedARP) }
    let operation = be16(a, 6)
    let target = be32(a, 24)
    if operation == 2 && target == port.pointee.address && be32(a, 14) != target {
        return FrameOutcome(.arpLearned, shift: 0, length: UInt32(length))
    }
    guard operation == 1, target == port.pointee.address || tables.pointee.vipAddress(target) != nil else {
        return FrameOutcome(.arpIgnored)
    }
    if port.pointee.kernel && target == port.pointee.address { return FrameOutcome(.toKernel, shift: 0, length: UInt32(length)) }
    let senderMAC0 = a.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
    let senderMAC1 = a.loadUnaligned(fromByteOffset: 12, as: UInt16.self)
    let senderIP = a.loadUnaligned(fromByteOffset: 14, as: UInt32.self)
    put16(a, 6, 2)
    putMAC(a, 8, port.pointee.macWord0, port.pointee.macWord1)
    put32(a, 14, target)
    putMAC(a, 18, senderMAC0, senderMAC1)
    a.storeBytes(of: senderIP, toByteOffset: 24, as: UInt32.self)
    copyMAC(p, to: 0, from: 6)
    putMAC(p, 6, port.pointee.macWord0, port.pointee.macWord1)
    return FrameOutcome(.arpReply, shift: 0, length: UInt32(length))
}
