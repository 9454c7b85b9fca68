// QUIC connection-ID stickiness: short-header packets to a `quic: true` VIP go to the backend whose server id their
// destination connection ID carries, whatever the client's address and port (migration, NAT rebinding).
//
// Connection-ID layout (modelled on Katran's; the backends' QUIC stacks must issue CIDs this way). Server-chosen
// CIDs are at least 8 bytes; the first two bits of the first CID byte are the layout version:
//   version 1 (01): a 16-bit server id in the 16 bits after the version bits:
//                   id = (cid[0] & 0x3F) << 10 | cid[1] << 2 | cid[2] >> 6
//   version 2 (10): a 24-bit server id in bytes 1...3: id = cid[1] << 16 | cid[2] << 8 | cid[3]
//   versions 0 and 3, and id 0: no server id.
// A short-header packet (first payload byte's top bit 0) carries the destination CID right after that byte.
// Long-header packets (Initial, Handshake, 0-RTT, Retry: the client does not know the server's CID yet), payloads
// shorter than 1 + 8 bytes, CIDs without a server id and ids no backend of the VIP has fall back to the flow table
// and Maglev, as any UDP packet. A routed packet does not touch the flow table.

import TulaCore

/// Shortest server-chosen connection ID Tula reads a server id from, bytes.
public let quicMinConnectionIDBytes = 8

/// A slot of the QUIC server-id index: `DataplaneTables.quicKey(vip, id)` (0: empty) and the backend slot.
public struct QUICSlot: Sendable {
    public var key: UInt64
    public var backend: UInt32

    @inlinable public init(key: UInt64, backend: UInt32) { self.key = key; self.backend = backend }
}

/// The server id in a QUIC short-header UDP payload of `length` bytes, or 0 when it has none (see the file comment).
@inlinable @inline(__always)
public func quicServerID(_ payload: UnsafeRawPointer, length: Int) -> UInt32 {
    guard length >= 1 &+ quicMinConnectionIDBytes else { return 0 }
    guard payload.load(as: UInt8.self) & 0x80 == 0 else { return 0 }
    let c0 = UInt32(payload.load(fromByteOffset: 1, as: UInt8.self))
    let c1 = UInt32(payload.load(fromByteOffset: 2, as: UInt8.self))
    let c2 = UInt32(payload.load(fromByteOffset: 3, as: UInt8.self))
    switch c0 >> 6 {
    case 1: return (c0 & 0x3F) << 10 | c1 << 2 | c2 >> 6
    case 2: return c1 << 16 | c2 << 8 | UInt32(payload.load(fromByteOffset: 4, as: UInt8.self))
    default: return 0
    }
}

extension DataplaneTables {
    /// The QUIC index key of (VIP index, server id); never 0 for an id of 1 or more.
    @inlinable @inline(__always)
    public static func quicKey(_ vip: Int, _ id: UInt32) -> UInt64 { UInt64(truncatingIfNeeded: vip) << 32 | UInt64(id) }

    /// The backend slot with server id `id` in VIP `vip`, or nil.
    @inlinable @inline(__always)
    public func quicBackend(vip: Int, id: UInt32) -> UInt32? {
        guard id != 0, let index = steering.quicIndex else { return nil }
        let key = DataplaneTables.quicKey(vip, id)
        var i = DataplaneTables.indexSlot(key, mask: steering.quicIndexMask)
        while true {
            let slot = index[i]
            if slot.key == key { return slot.backend }
            if slot.key == 0 { return nil }
            i = (i &+ 1) & steering.quicIndexMask
        }
    }
}

/// A UDP packet to a `quic` VIP: to the backend its connection ID names (counted `quic_routed`), else as any UDP
/// packet (flow table, then Maglev by `pick`; counted `quic_fallback`). IPv4 and IPv6 (`ipv6`). Out of line, so other VIPs pay one flag test.
@usableFromInline @inline(never)
func deliverQUIC(_ packet: Packet, l4: UnsafeMutableRawPointer, vipIndex: Int, port: UnsafePointer<PortTables>,
                 tables: UnsafePointer<DataplaneTables>, flows: UnsafePointer<FlowTable>,
                 counters: UnsafeMutablePointer<UInt64>, now: UInt32, key: FlowKey, pick: UInt64,
                 ipv6: Bool = false) -> FrameOutcome {
    let vip = tables.pointee.vips + vipIndex
    let vc = tables.pointee.layout.vip(Int(vip.pointee.slot))
    let udpLength = Int(be16(l4, 4))
    let id = quicServerID(l4 + 8, length: udpLength &- 8)
    if let backend = tables.pointee.quicBackend(vip: vipIndex, id: id),
       tables.pointee.backends[Int(backend)].vipSlot == vip.pointee.slot {
        counters[vc &+ CounterLayout.quicRouted] &+= 1
        return deliver(packet, vip: vip, port: port, tables: tables, flows: flows, counters: counters, now: now,
                       flow: nil, pick: pick, ipv6: ipv6, backendOverride: backend)
    }
    counters[vc &+ CounterLayout.quicFallback] &+= 1
    return deliver(packet, vip: vip, port: port, tables: tables, flows: flows, counters: counters, now: now,
                   flow: (key, true), pick: pick, ipv6: ipv6)
}

/// `deliverQUIC` for an IPv4 UDP frame that `classifyAndRewrite` has already checked and matched to the quic VIP
/// `vipIndex`: takes only what the caller has in registers anyway and finds the headers again (cheap, and only
/// quic VIPs pay it), so the per-packet path of other VIPs keeps no parsed values alive for this call.
@usableFromInline @inline(never)
func classifyQUIC(_ p: UnsafeMutableRawPointer, headroom: Int, port: UnsafePointer<PortTables>,
                  tables: UnsafePointer<DataplaneTables>, flows: UnsafePointer<FlowTable>,
                  counters: UnsafeMutablePointer<UInt64>, now: UInt32, vipIndex: Int) -> FrameOutcome {
    let tagged = be16(p, 12) == 0x8100
    let l2 = tagged ? 18 : 14
    let inputTag = tagged ? Int32(be16(p, 14)) : untagged
    let ip = p + l2
    let ihl = Int(ip.load(as: UInt8.self) & 0x0F) &* 4
    let total = Int(be16(ip, 2))
    let src = be32(ip, 12), dst = be32(ip, 16)
    let l4 = ip + ihl
    let ports = be32(l4, 0)
    let key = FlowKey(src: src, dst: dst, ports: ports, proto: 17)
    let packet = Packet(frame: p, l2: l2, inputTag: inputTag, ip: ip, ihl: ihl, total: total, headroom: headroom)
    let vip = tables.pointee.vips + vipIndex
    return deliverQUIC(packet, l4: l4, vipIndex: vipIndex, port: port, tables: tables, flows: flows, counters: counters,
                       now: now, key: key, pick: key.pickHash(vip.pointee.hash))
}
