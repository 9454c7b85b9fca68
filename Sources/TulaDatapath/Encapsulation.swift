// Output Ethernet headers (VLAN tag kept, set or inserted), IP-in-IP, 6in6 and 4in6 encapsulation, and outer fragments (GUE, GRE, per-flow sources, DSCP: Encapsulations.swift).

import TulaCore

/// No 802.1Q tag on output.
@inlinable var untagged: Int32 { -1 }

/// The tag (TCI) an output should carry: `vlan` (with the input's priority) when set, else the input's.
@inlinable @inline(__always)
func outputTag(input: Int32, vlan: UInt16) -> Int32 {
    if vlan == 0 { return input }
    let priority = input == untagged ? 0 : UInt16(truncatingIfNeeded: input) & 0xF000
    return Int32(priority | vlan)
}

/// Writes an Ethernet header (with an 802.1Q tag unless `tag` is `untagged`) of `etherType` (IPv4 unless
/// told); returns its length (14 or 18).
@inlinable @inline(__always)
func writeEthernet(_ out: UnsafeMutableRawPointer, dst: (UInt32, UInt16), src: (UInt32, UInt16), tag: Int32,
                   etherType: UInt16 = 0x0800) -> Int {
    putMAC(out, 0, dst.0, dst.1)
    putMAC(out, 6, src.0, src.1)
    if tag == untagged {
        put16(out, 12, etherType)
        return 14
    }
    put16(out, 12, 0x8100)
    put16(out, 14, UInt16(truncatingIfNeeded: tag))
    put16(out, 16, etherType)
    return 18
}

/// Writes a 20-byte IPv4 header with TTL 64 and a valid checksum.
@inlinable @inline(__always)
func writeIPv4Header(_ ip: UnsafeMutableRawPointer, tos: UInt8, total: Int, identification: UInt16,
                     flagsFragment: UInt16, proto: UInt8, source: UInt32, destination: UInt32) {
    ip.storeBytes(of: 0x45, as: UInt8.self)
    ip.storeBytes(of: tos, toByteOffset: 1, as: UInt8.self)
    put16(ip, 2, UInt16(truncatingIfNeeded: total))
    put16(ip, 4, identification)
    put16(ip, 6, flagsFragment)
    ip.storeBytes(of: 64, toByteOffset: 8, as: UInt8.self)
    ip.storeBytes(of: proto, toByteOffset: 9, as: UInt8.self)
    put16(ip, 10, 0)
    put32(ip, 12, source)
    put32(ip, 16, destination)
    ip.storeBytes(of: headerChecksum20(ip), toByteOffset: 10, as: UInt16.self)
}

/// Writes an outer IPv4 header (protocol 4) carrying `payload` bytes.
@inlinable @inline(__always)
func writeOuterHeader(_ outer: UnsafeMutableRawPointer, tos: UInt8, payload: Int, identification: UInt16,
                      flagsFragment: UInt16, source: UInt32, destination: UInt32) {
    writeIPv4Header(outer, tos: tos, total: payload &+ ipInIPOverheadBytes, identification: identification,
                    flagsFragment: flagsFragment, proto: 4, source: source, destination: destination)
}

/// Builds the IP-in-IP frame in front of the inner packet at `ip` (`total` bytes): Ethernet to the gateway
/// tagged per `outputTag`, then the outer header (`writeIPInIPHeader`).
/// Returns where the frame starts relative to `ip`.
@inlinable @inline(__always)
func encapsulate(ip: UnsafeMutableRawPointer, total: Int, inputTag: Int32, port: UnsafePointer<PortTables>,
                 backend: UInt32) -> Int {
    let tag = outputTag(input: inputTag, vlan: port.pointee.vlan)
    let l2 = tag == untagged ? 14 : 18
    let start = -(ipInIPOverheadBytes + l2)
    _ = writeEthernet(ip + start, dst: (port.pointee.gatewayWord0, port.pointee.gatewayWord1),
                      src: (port.pointee.macWord0, port.pointee.macWord1), tag: tag)
    let source = port.pointee.address.bigEndian
    writeIPInIPHeader(ip, total: total, sourceRaw: source, sourceSum: ipInIPSourceSum(source), destinationRaw: backend.bigEndian)
    return start
}

/// The part of an IP-in-IP outer header's ones'-complement sum that depends on the port only (TTL 64, protocol 4,
/// the source address as stored), in native byte order: what `writeIPInIPHeader` adds the rest to.
@inlinable @inline(__always)
func ipInIPSourceSum(_ sourceRaw: UInt32) -> UInt64 { 0x0440 &+ UInt64(sourceRaw) }

/// Writes the 20-byte outer IPv4 header of IP-in-IP in front of the inner packet at `ip` (`total` bytes), from
/// values in registers: version 4, IHL 5, the inner TOS, identification and DF, the outer total length, TTL 64,
/// protocol 4, `sourceRaw` to `destinationRaw` (addresses as stored), and the checksum summed from the same values
/// (`sourceSum` is `ipInIPSourceSum(sourceRaw)`), so nothing written is read back.
@inlinable @inline(__always)
func writeIPInIPHeader(_ ip: UnsafeMutableRawPointer, total: Int, sourceRaw: UInt32, sourceSum: UInt64, destinationRaw: UInt32) {
    let outerTotal = UInt64(UInt16(truncatingIfNeeded: total &+ ipInIPOverheadBytes).byteSwapped)
    // Bytes 0-7: 0x45, the inner TOS, the outer total length, the inner identification, the inner DF flag.
    let word0 = ip.loadUnaligned(as: UInt64.self) & 0x0040_FFFF_0000_FF00 | 0x45 | outerTotal << 16
    var sum = sourceSum &+ (word0 & 0xFFFF_FFFF) &+ (word0 >> 32) &+ UInt64(destinationRaw)
    sum = (sum & 0xFFFF) &+ (sum >> 16)
    sum = (sum & 0xFFFF) &+ (sum >> 16)
    sum = (sum & 0xFFFF) &+ (sum >> 16)
    let outer = ip - ipInIPOverheadBytes
    outer.storeBytes(of: word0, as: UInt64.self)
    outer.storeBytes(of: 0x0440 | UInt32(truncatingIfNeeded: ~sum & 0xFFFF) << 16, toByteOffset: 8, as: UInt32.self)
    outer.storeBytes(of: sourceRaw, toByteOffset: 12, as: UInt32.self)
    outer.storeBytes(of: destinationRaw, toByteOffset: 16, as: UInt32.self)
}

/// Builds the IPv6-outer frame in front of the packet at `ip` (`total` bytes; IPv6 when `inner6`, else IPv4):
/// Ethernet to the IPv6 gateway tagged per `outputTag`, then a 40-byte IPv6 header from the port's `address6`
/// to `backend`, next header 41 (6in6) or 4 (4in6), hop limit 64, the inner traffic class, and `label` as the
/// flow label (RFC 6438). Returns where the frame starts relative to `ip`. Out of line: IPv4-to-IPv4 l3 is
/// the common tunnel, and this keeps its loop small. Used for IPv6 outers
/// without GUE, GRE, outer_source or dscp (`VIPTunnel.general` false); those go to `encapsulateVIP`.
@usableFromInline @inline(never)
func encapsulate6(ip: UnsafeMutableRawPointer, total: Int, inner6: Bool, inputTag: Int32, port: UnsafePointer<PortTables>,
                  backend: UnsafePointer<BackendEntry>, label: UInt32) -> Int {
    let tag = outputTag(input: inputTag, vlan: port.pointee.vlan)
    let l2 = tag == untagged ? 14 : 18
    let start = -(ipv6OverheadBytes + l2)
    _ = writeEthernet(ip + start, dst: (port.pointee.gateway6Word0, port.pointee.gateway6Word1),
                      src: (port.pointee.macWord0, port.pointee.macWord1), tag: tag, etherType: 0x86DD)
    let trafficClass = inner6 ? UInt32(be16(ip, 0) >> 4 & 0xFF) : UInt32(ip.load(fromByteOffset: 1, as: UInt8.self))
    let outer = ip - ipv6OverheadBytes
    put32(outer, 0, 0x6000_0000 | trafficClass << 20 | label & 0xF_FFFF)
    put16(outer, 4, UInt16(truncatingIfNeeded: total))
    outer.storeBytes(of: inner6 ? 41 : 4, toByteOffset: 6, as: UInt8.self)
    outer.storeBytes(of: 64, toByteOffset: 7, as: UInt8.self)
    putAddress6(outer, 8, port.pointee.address6Hi, port.pointee.address6Lo)
    putAddress6(outer, 24, backend.pointee.address6Hi, backend.pointee.address6Lo)
    return start
}

/// Writes an IPv6 address (host-order halves) at `p + o`.
@inlinable @inline(__always)
func putAddress6(_ p: UnsafeMutableRawPointer, _ o: Int, _ hi: UInt64, _ lo: UInt64) {
    p.storeBytes(of: hi.bigEndian, toByteOffset: o, as: UInt64.self)
    p.storeBytes(of: lo.bigEndian, toByteOffset: o &+ 8, as: UInt64.self)
}

/// Reads an IPv6 address half (8 bytes at `p + o`) in host order.
@inlinable @inline(__always)
func be64(_ p: UnsafeRawPointer, _ o: Int) -> UInt64 { UInt64(bigEndian: p.loadUnaligned(fromByteOffset: o, as: UInt64.self)) }

/// Bytes of frame an mbuf holds (DPDK's default data room, RTE_MBUF_DEFAULT_DATAROOM).
public let mbufDataRoomBytes = 2048

/// Inner bytes per outer fragment at `mtu` (a multiple of 8; each fragment frame fits an mbuf).
@inlinable @inline(__always)
public func outerFragmentPayload(mtu: UInt32) -> Int {
    (min(Int(mtu), mbufDataRoomBytes &- 18) &- ipInIPOverheadBytes) & ~7
}

/// Writes outer fragment `index` of the IP-in-IP packet that carries the inner IPv4 packet of the received
/// `frame` (as classified by `processFrame`, whose outcome gave the fragment count and next hop) into
/// `out`, which must hold `mtu + 18` bytes. Returns the fragment's frame length.
public func writeOuterFragment(_ out: UnsafeMutableRawPointer, frame: UnsafeRawPointer, index: Int, nextHop: UInt32,
                               identification: UInt16, port: UnsafePointer<PortTables>) -> Int {
    let tagged = be16(frame, 12) == 0x8100
    let ip = frame + (tagged ? 18 : 14)
    let inputTag: Int32 = tagged ? Int32(be16(frame, 14)) : untagged
    let total = Int(be16(ip, 2))
    let per = outerFragmentPayload(mtu: port.pointee.mtuBytes)
    let offset = index &* per
    let length = min(per, total &- offset)
    let last = offset &+ length >= total
    let l2 = writeEthernet(out, dst: (port.pointee.gatewayWord0, port.pointee.gatewayWord1),
                           src: (port.pointee.macWord0, port.pointee.macWord1),
                           tag: outputTag(input: inputTag, vlan: port.pointee.vlan))
    let flags: UInt16 = (last ? 0 : 0x2000) | UInt16(truncatingIfNeeded: offset >> 3)
    writeOuterHeader(out + l2, tos: ip.load(fromByteOffset: 1, as: UInt8.self), payload: length,
                     identification: identification, flagsFragment: flags,
                     source: port.pointee.address, destination: nextHop)
    // The outer header's total length is 20 + this fragment's share.
    (out + l2 + ipInIPOverheadBytes).copyMemory(from: ip + offset, byteCount: length)
    return l2 &+ ipInIPOverheadBytes &+ length
}
