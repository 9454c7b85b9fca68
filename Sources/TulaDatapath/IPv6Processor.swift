// Per-frame work for IPv6: header and extension-header checks, fragments, VIP lookup, then the shared deliver path.

import TulaCore

/// Extension headers walked before TCP/UDP/ICMPv6 (Hop-by-Hop, Routing, Destination Options, Fragment).
@usableFromInline let maxExtensionHeaders = 4
/// Bytes of extension headers walked at most.
@usableFromInline let maxExtensionBytes = 128

/// Handles an IPv6 frame like `classifyAndRewrite`
/// does IPv4: checks it, answers neighbor discovery and echo, relays ICMPv6 errors about VIP flows, and
/// delivers TCP/UDP to a VIP's backend. Out of line, and it re-reads the tag itself: a call with fewer
/// arguments in the IPv4 loop cost that loop fewer instructions (13 per IPv4 frame with ten arguments).
@usableFromInline @inline(never)
func classifyIPv6(_ p: UnsafeMutableRawPointer, length: Int, headroom: Int, port: UnsafePointer<PortTables>,
                  tables: UnsafePointer<DataplaneTables>, flows: UnsafePointer<FlowTable>,
                  counters: UnsafeMutablePointer<UInt64>, now: UInt32, flowHash frameHash: UInt64) -> FrameOutcome {
    // The caller accepted the Ethernet header and at most one 802.1Q tag.
    let tagged = be16(p, 12) == 0x8100
    let l2 = tagged ? 18 : 14
    let inputTag = tagged ? Int32(be16(p, 14)) : untagged
    let ip = p + l2
    let available = length &- l2
    guard available >= 40, ip.load(as: UInt8.self) >> 4 == 6 else { return FrameOutcome(.malformedIPv6) }
    // Payload length 0 is a jumbogram's (RFC 2675), which no Ethernet frame carries.
    let payload = Int(be16(ip, 4))
    guard payload > 0, 40 &+ payload <= available else { return FrameOutcome(.malformedIPv6) }
    let total = 40 &+ payload
    let srcHi = be64(ip, 8), srcLo = be64(ip, 16), dstHi = be64(ip, 24), dstLo = be64(ip, 32)
    guard srcHi >> 56 != 0xFF else { return FrameOutcome(.badSourceAddress) }
    let toPort = p.loadUnaligned(as: UInt32.self) == port.pointee.macWord0
        && p.loadUnaligned(fromByteOffset: 4, as: UInt16.self) == port.pointee.macWord1
    // 33:33:xx:xx:xx:xx, IPv6 multicast (RFC 2464): neighbor solicitations come to the solicited-node group.
    let multicast = p.loadUnaligned(as: UInt16.self) == 0x3333
    guard toPort || multicast else { return FrameOutcome(.notOurMAC) }

    // Walk the extension headers to the upper layer.
    var next = ip.load(fromByteOffset: 6, as: UInt8.self)
    var offset = 40
    var headers = 0
    var isFragment = false
    while next == 0 || next == 43 || next == 60 || next == 44 {
        guard headers < maxExtensionHeaders else { return FrameOutcome(.extensionHeaderLimit) }
        // Hop-by-Hop Options may only come first (RFC 8200 4.3).
        guard next != 0 || headers == 0, offset &+ 8 <= total else { return FrameOutcome(.malformedIPv6) }
        let size = next == 44 ? 8 : (Int(ip.load(fromByteOffset: offset &+ 1, as: UInt8.self)) &+ 1) &* 8
        guard offset &+ size <= total else { return FrameOutcome(.malformedIPv6) }
        guard offset &+ size &- 40 <= maxExtensionBytes else { return FrameOutcome(.extensionHeaderLimit) }
        // Behind a non-first fragment's Fragment header is the fragment's data, not headers (RFC 8200 4.5).
        let nonFirstFragment = next == 44 && be16(ip, offset &+ 2) & 0xFFF8 != 0
        // An atomic fragment (offset 0, M clear) is a whole packet, handled as one (RFC 6946).
        if next == 44 && be16(ip, offset &+ 2) & 0xFFF9 != 0 { isFragment = true }
        next = ip.load(fromByteOffset: offset, as: UInt8.self)
        offset &+= size
        headers &+= 1
        if nonFirstFragment { break }
    }
    let srcUnspecified = srcHi == 0 && srcLo == 0
    let packet = Packet(frame: p, l2: l2, inputTag: inputTag, ip: ip, ihl: offset, total: total, headroom: headroom)
    if next == 58 {
        guard !isFragment else { return FrameOutcome(.fragment) }
        return handleICMPv6(packet, toPort: toPort, port: port, tables: tables, flows: flows, counters: counters, now: now)
    }
    guard toPort else { return FrameOutcome(.notOurMAC) }
    guard !srcUnspecified else { return FrameOutcome(.badSourceAddress) }
    guard next == 6 || next == 17 else { return FrameOutcome(ownOrElse6(dstHi, dstLo, port, .notTCPUDP)) }
    let proto = next

    if isFragment {
        // As for IPv4: the address's fragment VIP, hashed without ports, never pinned.
        guard let address = tables.pointee.vip6Address(hi: dstHi, lo: dstLo) else {
            return FrameOutcome(ownOrElse6(dstHi, dstLo, port, .noVIP))
        }
        let vipIndex = Int(proto == 6 ? address.pointee.fragmentTCP : address.pointee.fragmentUDP)
        guard vipIndex >= 0 else { return FrameOutcome(.fragment) }
        let vip = tables.pointee.vips + vipIndex
        let pick = pickHash6(vip.pointee.hash, srcHi: srcHi, srcLo: srcLo, dstHi: dstHi, dstLo: dstLo, ports: 0, proto: proto,
                             fiveTuple: flowHash6(srcHi: srcHi, srcLo: srcLo, dstHi: dstHi, dstLo: dstLo, srcPort: 0,
                                                  dstPort: 0, proto: proto))
        return deliverCold(packet, vip: vip, port: port, tables: tables, flows: flows, counters: counters, now: now,
                           flow: nil, pick: pick, isICMPError: false, ipv6: true)
    }

    let l4 = ip + offset
    let l4Length = total &- offset
    guard transportHeaderFits(l4, length: l4Length, proto: proto) else { return FrameOutcome(.malformedL4) }
    let ports = be32(l4, 0)
    let vipIndex = tables.pointee.findVIP6(hi: dstHi, lo: dstLo, proto: proto, port: UInt16(truncatingIfNeeded: ports))
    guard vipIndex >= 0 else { return FrameOutcome(ownOrElse6(dstHi, dstLo, port, .noVIP)) }
    let vip = tables.pointee.vips + vipIndex
    // The prefetch pass hashed frames without extension headers already (`frameFlowHash`).
    let hash = headers == 0 && frameHash != 0 ? frameHash
        : flowHash6(srcHi: srcHi, srcLo: srcLo, dstHi: dstHi, dstLo: dstLo,
                    srcPort: UInt16(truncatingIfNeeded: ports >> 16), dstPort: UInt16(truncatingIfNeeded: ports), proto: proto)
    assert(hash == flowHash6(srcHi: srcHi, srcLo: srcLo, dstHi: dstHi, dstLo: dstLo, srcPort: UInt16(truncatingIfNeeded: ports >> 16),
                             dstPort: UInt16(truncatingIfNeeded: ports), proto: proto), "flowHash is not frameFlowHash")
    let key = FlowKey(src: sourceFingerprint(srcHi, srcLo), dst: 0, ports: ports, proto: proto, hash: hash)
    if vip.pointee.quic {
        return deliverQUIC(packet, l4: l4, vipIndex: vipIndex, port: port, tables: tables, flows: flows, counters: counters,
                           now: now, key: key, pick: pickHash6(vip.pointee.hash, srcHi: srcHi, srcLo: srcLo, dstHi: dstHi,
                                                               dstLo: dstLo, ports: ports, proto: proto, fiveTuple: hash), ipv6: true)
    }
    return deliverCold(packet, vip: vip, port: port, tables: tables, flows: flows, counters: counters, now: now,
                       flow: (key, true),
                       pick: pickHash6(vip.pointee.hash, srcHi: srcHi, srcLo: srcLo, dstHi: dstHi, dstLo: dstLo,
                                       ports: ports, proto: proto, fiveTuple: hash),
                       isICMPError: false, ipv6: true)
}

/// The 32 bits an IPv6 flow's entry keeps of its source (the entry has room for 32; the VIP slot stands for
/// the destination): two mixes of the halves, so sources differing anywhere differ here but for 2^-32 chance.
@inlinable @inline(__always)
func sourceFingerprint(_ hi: UInt64, _ lo: UInt64) -> UInt32 {
    UInt32(truncatingIfNeeded: mix64(lo ^ mix64(hi)) >> 32)
}

/// The hash that picks an IPv6 flow's backend under the VIP's `hash` mode (`fiveTuple` is the 5-tuple's).
@inlinable @inline(__always)
func pickHash6(_ mode: FlowHashMode, srcHi: UInt64, srcLo: UInt64, dstHi: UInt64, dstLo: UInt64, ports: UInt32,
               proto: UInt8, fiveTuple: UInt64) -> UInt64 {
    switch mode {
    case .fiveTuple: fiveTuple
    case .threeTuple: flowHash6(srcHi: srcHi, srcLo: srcLo, dstHi: dstHi, dstLo: dstLo, srcPort: 0, dstPort: 0, proto: proto)
    case .source: flowHash6(srcHi: srcHi, srcLo: srcLo, dstHi: 0, dstLo: 0, srcPort: 0, dstPort: 0, proto: 0)
    }
}

/// Ones'-complement sum of the IPv6 pseudo-header (RFC 8200 8.1) of an upper-layer message of `length`
/// bytes with next header `next`, folded, not inverted: the `initial` of the message's own sum.
@inlinable @inline(__always)
func pseudoHeaderSum6(_ ip: UnsafeRawPointer, length: Int, next: UInt8) -> UInt32 {
    UInt32(foldedSum(UInt64(onesComplementSum(ip + 8, 32)) &+ UInt64(length) &+ UInt64(next)))
}

/// ICMPv6 to the appliance: neighbor discovery (answered or handed to the control plane), echo requests to
/// an answering VIP, and errors about a VIP flow (relayed to its backend). Everything else is not forwarded.
@usableFromInline @inline(never)
func handleICMPv6(_ packet: Packet, toPort: Bool, port: UnsafePointer<PortTables>, tables: UnsafePointer<DataplaneTables>,
                  flows: UnsafePointer<FlowTable>, counters: UnsafeMutablePointer<UInt64>, now: UInt32) -> FrameOutcome {
    let ip = packet.ip
    let icmp = ip + packet.ihl
    let icmpLength = packet.total &- packet.ihl
    guard icmpLength >= 8 else { return FrameOutcome(.malformedL4) }
    let type = icmp.load(as: UInt8.self)
    // MLD queries and reports (130-132, 143): link-local control the appliance does not act on (it sends its own
    // reports on a timer), counted with neighbor discovery's ignored messages.
    if type == 130 || type == 131 || type == 132 || type == 143 { return FrameOutcome(.ndIgnored) }
    if type >= 133 && type <= 137 {
        return neighborDiscovery(packet, type: type, icmp: icmp, icmpLength: icmpLength, port: port, tables: tables)
    }
    guard toPort else { return FrameOutcome(.notOurMAC) }
    let srcHi = be64(ip, 8), srcLo = be64(ip, 16), dstHi = be64(ip, 24), dstLo = be64(ip, 32)
    guard srcHi | srcLo != 0 else { return FrameOutcome(.badSourceAddress) }
    // ICMPv6 other than neighbor discovery to the port's own address6 is the kernel's (when it has an interface).
    if ownOrElse6(dstHi, dstLo, port, .noVIP) == .toKernel { return FrameOutcome(.toKernel) }
    guard let address = tables.pointee.vip6Address(hi: dstHi, lo: dstLo) else { return FrameOutcome(.noVIP) }
    if type == 128 {
        guard address.pointee.echo, icmp.load(fromByteOffset: 1, as: UInt8.self) == 0 else { return FrameOutcome(.icmpIgnored) }
        return answerEcho6(packet, port: port)
    }
    // Destination Unreachable, Packet Too Big, Time Exceeded: the quoted packet went from the VIP to the
    // client (VIP port -> client port), directly TCP or UDP.
    guard type >= 1 && type <= 3 else { return FrameOutcome(.icmpIgnored) }
    let inner = icmp + 8
    guard icmpLength >= 8 &+ 40 &+ 4 else { return FrameOutcome(.malformedL4) }
    guard inner.load(as: UInt8.self) >> 4 == 6 else { return FrameOutcome(.malformedL4) }
    let innerProto = inner.load(fromByteOffset: 6, as: UInt8.self)
    guard innerProto == 6 || innerProto == 17, be64(inner, 8) == dstHi, be64(inner, 16) == dstLo else {
        return FrameOutcome(.icmpIgnored)
    }
    let innerPorts = be32(inner, 40)
    let vipPort = UInt16(truncatingIfNeeded: innerPorts >> 16), clientPort = UInt16(truncatingIfNeeded: innerPorts)
    let vipIndex = tables.pointee.findVIP6(hi: dstHi, lo: dstLo, proto: innerProto, port: vipPort)
    guard vipIndex >= 0 else { return FrameOutcome(.noVIP) }
    let vip = tables.pointee.vips + vipIndex
    let clientHi = be64(inner, 24), clientLo = be64(inner, 32)
    let ports = UInt32(clientPort) << 16 | UInt32(vipPort)
    let hash = flowHash6(srcHi: clientHi, srcLo: clientLo, dstHi: dstHi, dstLo: dstLo, srcPort: clientPort,
                         dstPort: vipPort, proto: innerProto)
    let key = FlowKey(src: sourceFingerprint(clientHi, clientLo), dst: 0, ports: ports, proto: innerProto, hash: hash)
    return deliverCold(packet, vip: vip, port: port, tables: tables, flows: flows, counters: counters, now: now,
                       flow: (key, false),
                       pick: pickHash6(vip.pointee.hash, srcHi: clientHi, srcLo: clientLo, dstHi: dstHi, dstLo: dstLo,
                                       ports: ports, proto: innerProto, fiveTuple: hash),
                       isICMPError: true, ipv6: true)
}
