// ICMPv6 the appliance answers itself: neighbor advertisements, echo replies from a VIP, and Packet Too Big.

import TulaCore

/// Neighbor discovery (ICMPv6 types 133–137) after RFC 4861's validity checks: a Neighbor Solicitation for
/// the port's `address6` or an IPv6 VIP is answered with a solicited advertisement carrying the port's MAC;
/// an advertisement to us goes to the control plane; router messages and redirects are not for us.
@usableFromInline @inline(never)
func neighborDiscovery(_ packet: Packet, type: UInt8, icmp: UnsafeMutableRawPointer, icmpLength: Int,
                       port: UnsafePointer<PortTables>, tables: UnsafePointer<DataplaneTables>) -> FrameOutcome {
    let ip = packet.ip
    guard type == 135 || type == 136 else { return FrameOutcome(.ndIgnored) }
    // RFC 4861 7.1: hop limit 255 (not forwarded), code 0, at least 24 bytes, a valid checksum, and
    // options of non-zero length that fit.
    guard ip.load(fromByteOffset: 7, as: UInt8.self) == 255, icmp.load(fromByteOffset: 1, as: UInt8.self) == 0,
          icmpLength >= 24, packet.ihl == 40,
          onesComplementSum(icmp, icmpLength, initial: pseudoHeaderSum6(ip, length: icmpLength, next: 58)) == 0xFFFF
    else { return FrameOutcome(.malformedND) }
    var option = 24
    var sourceLinkLayer = false
    while option &+ 2 <= icmpLength {
        let size = Int(icmp.load(fromByteOffset: option &+ 1, as: UInt8.self)) &* 8
        guard size > 0, option &+ size <= icmpLength else { return FrameOutcome(.malformedND) }
        if icmp.load(fromByteOffset: option, as: UInt8.self) == 1 { sourceLinkLayer = true }
        option &+= size
    }
    let targetHi = be64(icmp, 8), targetLo = be64(icmp, 16)
    guard targetHi >> 56 != 0xFF else { return FrameOutcome(.malformedND) }
    let dstHi = be64(ip, 24), dstLo = be64(ip, 32)
    let p = port.pointee
    let toAddress6 = p.hasAddress6 && dstHi == p.address6Hi && dstLo == p.address6Lo
    if type == 136 {
        // RFC 4861 7.1.2: an advertisement to a multicast group has Solicited clear.
        guard dstHi >> 56 != 0xFF || icmp.load(fromByteOffset: 4, as: UInt8.self) & 0x40 == 0 else {
            return FrameOutcome(.malformedND)
        }
        // A solicited answer to us, or an unsolicited one to all nodes (ff02::1).
        let allNodes = dstHi == 0xFF02_0000_0000_0000 && dstLo == 1
        return toAddress6 || allNodes ? FrameOutcome(.ndLearned, shift: 0, length: UInt32(packet.l2 &+ packet.total))
                                      : FrameOutcome(.ndIgnored)
    }
    let srcHi = be64(ip, 8), srcLo = be64(ip, 16)
    let dad = srcHi | srcLo == 0
    // Duplicate address detection (unspecified source) must go to the solicited-node group, without a
    // source link-layer option.
    let solicitedNode = dstHi == 0xFF02_0000_0000_0000 && dstLo == 0x0000_0001_FF00_0000 | (targetLo & 0xFF_FFFF)
    if dad && (!solicitedNode || sourceLinkLayer) { return FrameOutcome(.malformedND) }
    let ours = (p.hasAddress6 && targetHi == p.address6Hi && targetLo == p.address6Lo)
        || tables.pointee.vip6Address(hi: targetHi, lo: targetLo) != nil
    guard ours, solicitedNode || (dstHi == targetHi && dstLo == targetLo) else { return FrameOutcome(.ndIgnored) }

    // The advertisement, in place: to the soliciting node (all nodes for DAD), from the target.
    let f = packet.frame
    if dad {
        put16(f, 0, 0x3333); put16(f, 2, 0); put16(f, 4, 1) // 33:33:00:00:00:01
    } else {
        copyMAC(f, to: 0, from: 6)
    }
    putMAC(f, 6, p.macWord0, p.macWord1)
    put32(ip, 0, 0x6000_0000)
    put16(ip, 4, 32)
    ip.storeBytes(of: 58, toByteOffset: 6, as: UInt8.self)
    ip.storeBytes(of: 255, toByteOffset: 7, as: UInt8.self)
    if dad {
        putAddress6(ip, 24, 0xFF02_0000_0000_0000, 1)
    } else {
        putAddress6(ip, 24, srcHi, srcLo)
    }
    putAddress6(ip, 8, targetHi, targetLo)
    icmp.storeBytes(of: 136, as: UInt8.self)
    icmp.storeBytes(of: 0, toByteOffset: 1, as: UInt8.self)
    put16(icmp, 2, 0)
    // Solicited (not for DAD, RFC 4861 7.2.4) and Override.
    put32(icmp, 4, dad ? 0x2000_0000 : 0x6000_0000)
    // Target at 8...23 stays. Target link-layer address option.
    icmp.storeBytes(of: 2, toByteOffset: 24, as: UInt8.self)
    icmp.storeBytes(of: 1, toByteOffset: 25, as: UInt8.self)
    putMAC(icmp, 26, p.macWord0, p.macWord1)
    put16(icmp, 2, ~onesComplementSum(icmp, 32, initial: pseudoHeaderSum6(ip, length: 32, next: 58)))
    return FrameOutcome(.ndReply, shift: 0, length: UInt32(packet.l2 &+ 72))
}

/// Turns an ICMPv6 echo request to a VIP into the reply, in place: addresses swapped (the pseudo-header sum
/// stays), hop limit 64, type 129, checksum updated; Ethernet back to the sender (tag kept).
@usableFromInline @inline(never)
func answerEcho6(_ packet: Packet, port: UnsafePointer<PortTables>) -> FrameOutcome {
    let ip = packet.ip, icmp = ip + packet.ihl
    put16(icmp, 2, updatedChecksum(be16(icmp, 2), old: 0x8000, new: 0x8100))
    icmp.storeBytes(of: 129, as: UInt8.self)
    let srcHi = be64(ip, 8), srcLo = be64(ip, 16)
    putAddress6(ip, 8, be64(ip, 24), be64(ip, 32))
    putAddress6(ip, 24, srcHi, srcLo)
    ip.storeBytes(of: 64, toByteOffset: 7, as: UInt8.self)
    copyMAC(packet.frame, to: 0, from: 6)
    putMAC(packet.frame, 6, port.pointee.macWord0, port.pointee.macWord1)
    return FrameOutcome(.icmpEchoReply, shift: 0, length: UInt32(packet.l2 &+ packet.total))
}

/// The most of an offending packet a Packet Too Big quotes: the reply stays within the IPv6 minimum MTU
/// (RFC 4443 3.2: 1280 − 40 − 8).
let packetTooBigQuoteBytes = 1232

/// Replaces an IPv6 packet too big for its tunnel with ICMPv6 Packet Too Big from the VIP to the client,
/// MTU = port MTU − `overhead`, quoting as much of the packet as fits 1280 bytes; Ethernet back to the
/// sender (tag kept). The reply is at most 48 bytes longer than the input's first 1232 bytes.
@usableFromInline @inline(never)
func answerPacketTooBig(_ packet: Packet, port: UnsafePointer<PortTables>, overhead: UInt32) -> FrameOutcome {
    let ip = packet.ip
    let quoted = min(packet.total, packetTooBigQuoteBytes)
    let clientHi = be64(ip, 8), clientLo = be64(ip, 16), vipHi = be64(ip, 24), vipLo = be64(ip, 32)
    (ip + 48).copyMemory(from: ip, byteCount: quoted) // memmove: the regions overlap
    put32(ip, 0, 0x6000_0000)
    put16(ip, 4, UInt16(truncatingIfNeeded: 8 &+ quoted))
    ip.storeBytes(of: 58, toByteOffset: 6, as: UInt8.self)
    ip.storeBytes(of: 64, toByteOffset: 7, as: UInt8.self)
    putAddress6(ip, 8, vipHi, vipLo)
    putAddress6(ip, 24, clientHi, clientLo)
    let icmp = ip + 40
    put32(icmp, 0, 0x0200_0000)
    put32(icmp, 4, port.pointee.mtuBytes &- overhead)
    put16(icmp, 2, ~onesComplementSum(icmp, 8 &+ quoted, initial: pseudoHeaderSum6(ip, length: 8 &+ quoted, next: 58)))
    copyMAC(packet.frame, to: 0, from: 6)
    putMAC(packet.frame, 6, port.pointee.macWord0, port.pointee.macWord1)
    return FrameOutcome(.icmpPacketTooBig, shift: 0, length: UInt32(packet.l2 &+ 48 &+ quoted))
}
