// ICMP the appliance answers itself: echo replies from a VIP and "fragmentation needed" for l3 PMTU.

import TulaCore

/// Turns an echo request (IPv4 at `ip`, `total` bytes, header `ihl`) into the reply, in place: addresses
/// swapped, TTL 64, type 0, checksums updated; Ethernet back to the sender (tag kept).
@usableFromInline @inline(never) // cold: keeps the per-packet loop small
func answerEcho(_ p: UnsafeMutableRawPointer, l2: Int, ip: UnsafeMutableRawPointer, ihl: Int,
                port: UnsafePointer<PortTables>) -> FrameOutcome {
    let icmp = ip + ihl
    put16(icmp, 2, updatedChecksum(be16(icmp, 2), old: 0x0800, new: 0x0000))
    icmp.storeBytes(of: 0, as: UInt8.self)
    let src = ip.loadUnaligned(fromByteOffset: 12, as: UInt32.self)
    ip.storeBytes(of: ip.loadUnaligned(fromByteOffset: 16, as: UInt32.self), toByteOffset: 12, as: UInt32.self)
    ip.storeBytes(of: src, toByteOffset: 16, as: UInt32.self)
    ip.storeBytes(of: 64, toByteOffset: 8, as: UInt8.self)
    put16(ip, 10, 0)
    put16(ip, 10, internetChecksum(ip, ihl))
    copyMAC(p, to: 0, from: 6)
    putMAC(p, 6, port.pointee.macWord0, port.pointee.macWord1)
    return FrameOutcome(.icmpEchoReply, shift: 0, length: UInt32(l2 &+ Int(be16(ip, 2))))
}

/// Bytes of the offending packet quoted after its header (RFC 792).
let quotedPayloadBytes = 8

/// Replaces a too-big l3 packet with ICMP type 3 code 4 from the VIP to the client, next-hop MTU = port MTU
/// − `overhead` (20, or 40 for 4in6), quoting the packet's header and first 8 payload bytes; Ethernet back to the sender (tag kept).
@usableFromInline @inline(never) // cold: keeps the per-packet loop small
func answerFragmentationNeeded(_ p: UnsafeMutableRawPointer, l2: Int, ip: UnsafeMutableRawPointer, ihl: Int,
                               port: UnsafePointer<PortTables>, overhead: UInt32) -> FrameOutcome {
    let quoted = ihl &+ quotedPayloadBytes
    let client = be32(ip, 12), vip = be32(ip, 16)
    // Move the quoted bytes 28 further (back to front: the regions overlap).
    var i = quoted &- 1
    while i >= 0 {
        (ip + 28).storeBytes(of: ip.load(fromByteOffset: i, as: UInt8.self), toByteOffset: i, as: UInt8.self)
        i &-= 1
    }
    let total = 28 &+ quoted
    writeIPv4Header(ip, tos: 0, total: total, identification: 0, flagsFragment: 0, proto: 1, source: vip, destination: client)
    let icmp = ip + 20
    put16(icmp, 0, 0x0304)
    put16(icmp, 2, 0)
    put16(icmp, 4, 0)
    put16(icmp, 6, UInt16(truncatingIfNeeded: port.pointee.mtuBytes &- overhead))
    put16(icmp, 2, internetChecksum(icmp, 8 &+ quoted))
    copyMAC(p, to: 0, from: 6)
    putMAC(p, 6, port.pointee.macWord0, port.pointee.macWord1)
    return FrameOutcome(.icmpFragNeeded, shift: 0, length: UInt32(l2 &+ total))
}
