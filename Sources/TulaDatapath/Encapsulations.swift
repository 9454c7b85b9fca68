// Out-of-line outputs of VIPs that are not plain IPv4 IP-in-IP: IPv6 outers, GUE, GRE, per-flow outer source, DSCP.

import TulaCore

/// A VIP's tunnel settings beyond its mode, read only by the out-of-line paths (`VIPEntry.outOfLine`).
public struct VIPTunnel: Sendable {
    public var kind: Encapsulation = .ipip
    /// GUE: the outer UDP destination port.
    public var guePort: UInt16 = Encapsulation.defaultGUEPort
    /// The outer DSCP (0...63), or `VIPTunnel.keepDSCP` to copy the inner packet's.
    public var dscp: UInt8 = VIPTunnel.keepDSCP
    /// Rewrite the packet's own DSCP too (l2: the only header).
    public var remark: Bool = false
    /// Any of GUE, GRE, a per-flow source or DSCP: l3 output is built by `encapsulateVIP` (else, for an IPv6
    /// outer, by the leaner `encapsulate6`).
    public var general: Bool = false
    /// The outer source is picked per flow from a prefix: base | (hash bits & host mask).
    public var perFlowSource: Bool = false
    public var source4: UInt32 = 0
    public var source4HostMask: UInt32 = 0
    public var source6Hi: UInt64 = 0
    public var source6Lo: UInt64 = 0
    public var source6HostMaskHi: UInt64 = 0
    public var source6HostMaskLo: UInt64 = 0

    public static let keepDSCP: UInt8 = 0xFF
    @inlinable public init() {}
}

/// Bytes an l3 output prepends to the inner packet: outer IP header (20 or 40) plus the encapsulation's shim.
@inlinable
public func tunnelOverheadBytes(outer6: Bool, kind: Encapsulation) -> Int {
    (outer6 ? ipv6OverheadBytes : ipInIPOverheadBytes) + kind.shimBytes
}

/// The outer UDP source port of a GUE flow: the ephemeral range 49152...65535 (RFC 6335), 14 bits of the flow
/// hash (bits 16...29, apart from the flow label's 44...63), so a backend's RSS spreads flows across queues.
@inlinable @inline(__always)
public func gueSourcePort(_ hash: UInt64) -> UInt16 { 0xC000 | UInt16(truncatingIfNeeded: hash >> 16) & 0x3FFF }

/// The per-flow IPv4 outer source: the prefix's base with its host bits from hash bits 32...63.
@inlinable @inline(__always)
public func perFlowSource4(base: UInt32, hostMask: UInt32, hash: UInt64) -> UInt32 {
    base | UInt32(truncatingIfNeeded: hash >> 32) & hostMask
}

/// The per-flow IPv6 outer source: the prefix's base with its host bits from the hash (low half) and the
/// byte-swapped hash (high half).
@inlinable @inline(__always)
public func perFlowSource6(_ t: VIPTunnel, hash: UInt64) -> (UInt64, UInt64) {
    (t.source6Hi | hash.byteSwapped & t.source6HostMaskHi, t.source6Lo | (hash >> 32 | hash << 32) & t.source6HostMaskLo)
}

/// Sets the DSCP of the IP packet at `ip` (IPv6 when `ipv6`) to `dscp`, keeping ECN; an IPv4 header's checksum
/// is updated incrementally (RFC 1624).
@usableFromInline @inline(never)
func remarkDSCP(ip: UnsafeMutableRawPointer, ipv6: Bool, dscp: UInt8) {
    if ipv6 {
        let word = be32(ip, 0)
        put32(ip, 0, word & 0xF03F_FFFF | UInt32(dscp) << 22)
        return
    }
    let old = be16(ip, 0)
    let new = old & 0xFF03 | UInt16(dscp) << 2
    guard new != old else { return }
    put16(ip, 0, new)
    // HC' = ~(~HC + ~m + m')
    let sum = UInt32(~be16(ip, 10)) &+ UInt32(~old) &+ UInt32(new)
    put16(ip, 10, ~foldedSum(UInt64(sum)))
}

/// Builds the l3 frame of a VIP whose output is not plain IPv4 IP-in-IP (`VIPEntry.outOfLine`) in front of the
/// packet at `ip` (`total` bytes; IPv6 when `inner6`): Ethernet to the gateway of the outer family tagged per
/// `outputTag`; the outer header (IPv4: TTL 64, DF and identification copied from the inner packet, valid
/// checksum; IPv6: hop limit 64, `flowLabel(hash)`), from the port's address or the per-flow source; DSCP from
/// the VIP or copied, ECN copied; then GUE's UDP header or GRE's 4 bytes. Returns where the frame starts
/// relative to `ip`.
///
/// GUE is variant 1 (no GUE header: the inner IP version says what follows). Over IPv4 its UDP checksum is
/// zero (optional over IPv4 by RFC 768, allowed by the GUE draft, accepted by Linux fou); over IPv6 it is computed
/// over the whole datagram (RFC 8200 8.1; Linux does not accept zero-checksum IPv6 UDP by default).
@usableFromInline @inline(never)
func encapsulateVIP(ip: UnsafeMutableRawPointer, total: Int, inner6: Bool, inputTag: Int32, port: UnsafePointer<PortTables>,
                    vip: UnsafePointer<VIPEntry>, backend: UnsafePointer<BackendEntry>, hash: UInt64) -> Int {
    let t = vip.pointee.tunnel
    let outer6 = vip.pointee.tunnel6
    if t.dscp != VIPTunnel.keepDSCP && t.remark { remarkDSCP(ip: ip, ipv6: inner6, dscp: t.dscp) }
    var trafficClass = inner6 ? UInt8(truncatingIfNeeded: be16(ip, 0) >> 4) : ip.load(fromByteOffset: 1, as: UInt8.self)
    if t.dscp != VIPTunnel.keepDSCP { trafficClass = t.dscp << 2 | trafficClass & 3 }
    let shim = t.kind.shimBytes
    let afterOuter = total &+ shim
    let tag = outputTag(input: inputTag, vlan: port.pointee.vlan)
    let l2 = tag == untagged ? 14 : 18
    let outerLength = outer6 ? ipv6OverheadBytes : ipInIPOverheadBytes
    let start = -(outerLength &+ shim &+ l2)
    let outer = ip - (outerLength &+ shim)
    let proto: UInt8 = t.kind == .gue ? 17 : t.kind == .gre ? 47 : inner6 ? 41 : 4
    if outer6 {
        _ = writeEthernet(ip + start, dst: (port.pointee.gateway6Word0, port.pointee.gateway6Word1),
                          src: (port.pointee.macWord0, port.pointee.macWord1), tag: tag, etherType: 0x86DD)
        put32(outer, 0, 0x6000_0000 | UInt32(trafficClass) << 20 | flowLabel(hash) & 0xF_FFFF)
        put16(outer, 4, UInt16(truncatingIfNeeded: afterOuter))
        outer.storeBytes(of: proto, toByteOffset: 6, as: UInt8.self)
        outer.storeBytes(of: 64, toByteOffset: 7, as: UInt8.self)
        if t.perFlowSource {
            let (hi, lo) = perFlowSource6(t, hash: hash)
            putAddress6(outer, 8, hi, lo)
        } else {
            putAddress6(outer, 8, port.pointee.address6Hi, port.pointee.address6Lo)
        }
        putAddress6(outer, 24, backend.pointee.address6Hi, backend.pointee.address6Lo)
    } else {
        _ = writeEthernet(ip + start, dst: (port.pointee.gatewayWord0, port.pointee.gatewayWord1),
                          src: (port.pointee.macWord0, port.pointee.macWord1), tag: tag)
        let source = t.perFlowSource ? perFlowSource4(base: t.source4, hostMask: t.source4HostMask, hash: hash)
                                     : port.pointee.address
        writeIPv4Header(outer, tos: trafficClass, total: afterOuter &+ ipInIPOverheadBytes, identification: be16(ip, 4),
                        flagsFragment: be16(ip, 6) & 0x4000, proto: proto, source: source,
                        destination: backend.pointee.address)
    }
    let s = ip - shim
    switch t.kind {
    case .ipip: break
    case .gre:
        put16(s, 0, 0)
        put16(s, 2, inner6 ? 0x86DD : 0x0800)
    case .gue:
        put16(s, 0, gueSourcePort(hash))
        put16(s, 2, t.guePort)
        put16(s, 4, UInt16(truncatingIfNeeded: afterOuter))
        put16(s, 6, 0)
        if outer6 {
            // Pseudo-header: both addresses, the UDP length and next header 17 (RFC 8200 8.1).
            let pseudo = UInt32(onesComplementSum(outer + 8, 32)) &+ UInt32(truncatingIfNeeded: afterOuter) &+ 17
            let sum = ~onesComplementSum(s, afterOuter, initial: pseudo)
            put16(s, 6, sum == 0 ? 0xFFFF : sum)
        }
    }
    return start
}
