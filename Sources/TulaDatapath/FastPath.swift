// The per-frame fast path: IPv4 (tagged or not) and untagged IPv6 TCP/UDP of a pinned flow of a VIP, sent l2, by IP-in-IP or by 6in6.

import TulaCore

/// What the fast path reads, loaded once per burst (the port's facts, the tables' pointers and the counter
/// offsets), so the per-frame code keeps them in registers instead of reloading them through pointers that
/// its own counter stores might alias.
///
/// `forward` takes a frame only when every check `processFrame` makes passes and the flow is already pinned
/// (the common case of established traffic); it then does exactly what `processFrame` would do (same bytes
/// out, same counters). Anything else (ARP, neighbor discovery, ICMP, tagged IPv6, a change of VLAN tag, IPv4
/// options, IPv6 extension headers, fragments, new flows, QUIC, GUE, GRE and the other `general` tunnels, IPv4 inside IPv6,
/// unresolved next hops, any malformed or too-big frame) is declined before anything is written, and the caller
/// hands the frame to `processFrame`, which gives it its verdict.
public struct FastPath {
    /// The port's MAC as the top 48 bits of a little-endian load of a frame's first 8 bytes shifted left by 16.
    @usableFromInline let portMAC: UInt64
    @usableFromInline let macWord0: UInt32
    @usableFromInline let macWord1: UInt16
    @usableFromInline let mtu: UInt32
    /// l3 output is possible: the gateway's MAC is known and the port is untagged.
    @usableFromInline let l3Ready: Bool
    /// The outer Ethernet header of l3 output (gateway MAC, port MAC), as an 8-byte and a 4-byte store.
    @usableFromInline let outerEthernet0: UInt64
    @usableFromInline let outerEthernet1: UInt32
    /// The port's address as stored in a header, and the part of the outer IPv4 header's ones'-complement sum
    /// that is the same for every packet (TTL and protocol, source address), in native byte order.
    @usableFromInline let sourceRaw: UInt32
    @usableFromInline let outerSum: UInt64
    @usableFromInline let vipIndex: UnsafeMutablePointer<VIPSlot>
    @usableFromInline let vipIndexMask: Int
    /// The IPv4 prefix lengths that have prefix VIPs (`VIPSteering.prefixLengths4`), 0 when none.
    @usableFromInline let prefixLengths4: UInt64
    @usableFromInline let vips: UnsafeMutablePointer<VIPEntry>
    @usableFromInline let backends: UnsafeMutablePointer<BackendEntry>
    @usableFromInline let flows: FlowTable
    @usableFromInline let counters: UnsafeMutablePointer<UInt64>
    /// The first VIP and the first backend counter slot.
    @usableFromInline let vipCounters: UnsafeMutablePointer<UInt64>
    @usableFromInline let backendCounters: UnsafeMutablePointer<UInt64>
    /// Indexes of the port's forwarded-l2 and forwarded-l3 counters.
    public let verdictL2: Int
    public let verdictL3: Int
    @usableFromInline let now: UInt32
    /// What only IPv6 frames read (out of line, `forward6`).
    @usableFromInline let tables: UnsafePointer<DataplaneTables>
    @usableFromInline let port: UnsafePointer<PortTables>

    @inlinable @inline(__always)
    public init(port index: Int, tables: UnsafePointer<DataplaneTables>, counters: UnsafeMutablePointer<UInt64>, now: UInt32,
                flows: FlowTable) {
        let t = tables.pointee
        let port = t.ports[index]
        self.tables = tables
        self.port = UnsafePointer(t.ports + index)
        portMAC = (UInt64(port.macWord0) | UInt64(port.macWord1) << 32) << 16
        macWord0 = port.macWord0
        macWord1 = port.macWord1
        mtu = port.mtuBytes
        l3Ready = port.gatewayResolved && port.vlan == 0
        outerEthernet0 = UInt64(port.gatewayWord0) | UInt64(port.gatewayWord1) << 32 | UInt64(port.macWord0 & 0xFFFF) << 48
        outerEthernet1 = port.macWord0 >> 16 | UInt32(port.macWord1) << 16
        sourceRaw = port.address.bigEndian
        // Bytes 8-9 (TTL 64, protocol 4) and the source address; the rest is added per packet.
        outerSum = ipInIPSourceSum(port.address.bigEndian)
        vipIndex = t.vipIndex
        vipIndexMask = t.vipIndexMask
        prefixLengths4 = t.steering.prefixLengths4
        vips = t.vips
        backends = t.backends
        self.flows = flows
        self.counters = counters
        vipCounters = counters + t.layout.vipBase
        backendCounters = counters + t.layout.backendBase
        verdictL2 = t.layout.verdict(index, .forwardedL2)
        verdictL3 = t.layout.verdict(index, .forwardedL3)
        self.now = now
    }

    /// The VIP index entry for `key`, or -1 (`DataplaneTables.probe`): the home slot inline, collisions out of line.
    @inlinable @inline(__always)
    func probe(_ key: UInt64) -> Int {
        let i = DataplaneTables.indexSlot(key, mask: vipIndexMask)
        let slot = vipIndex[i]
        if slot.key == key { return Int(Int32(bitPattern: slot.vip)) }
        if slot.key == 0 { return -1 }
        return FastPath.probeOn(vipIndex, mask: vipIndexMask, key: key, from: i)
    }

    /// `probe` past a home slot that holds another key.
    @usableFromInline @inline(never)
    static func probeOn(_ index: UnsafeMutablePointer<VIPSlot>, mask: Int, key: UInt64, from home: Int) -> Int {
        DataplaneTables.probe(index, mask: mask, key: key, from: (home &+ 1) & mask)
    }

    /// The VIP index entry of a destination without a VIP of its own port: its `*` VIP, else a prefix VIP's
    /// (`DataplaneTables.findVIPCode` past the exact probe). Out of line, so port-specific VIPs pay nothing for it.
    @usableFromInline @inline(never)
    func otherVIP(_ dstRaw: UInt32, _ proto: UInt8, port: UInt16) -> Int {
        let any = probe(DataplaneTables.rawVIPKey(dstRaw, proto, 0))
        if any != -1 || prefixLengths4 == 0 { return any }
        return DataplaneTables.findPrefixVIP(vipIndex, mask: vipIndexMask, lengths: prefixLengths4, address: dstRaw.byteSwapped,
                                             proto: proto, port: port)
    }

    /// The backend the flow (`src`, `ports`) of VIP slot `vipSlot` is pinned to in its home `bucket` (or the two after
    /// it, where the home bucket spilled), if it is there, not idle too long, the backend still serves the VIP, and (`l2`)
    /// has a known MAC and no VLAN of its own (`FlowTable.find`'s hit, then `deliver`'s checks). The flow is then
    /// seen now: the caller takes the frame (nothing may decline it after this).
    @inlinable @inline(__always)
    func pinnedBackend(_ bucket: UnsafeMutablePointer<FlowEntry>, src: UInt32, ports: UInt32, vipSlot: UInt32,
                       l2: Bool) -> UnsafeMutablePointer<BackendEntry>? {
        let key = FlowEntry.key(vip: vipSlot)
        var found = FlowTable.match(bucket, src: src, ports: ports, key: key)
        if found == nil && FlowTable.spilled(bucket) { found = matchSpilled(bucket, src: src, ports: ports, key: key) }
        guard let e = found, now &- e.pointee.lastSeen <= flows.idleTimeoutSeconds else { return nil }
        let b = backends + Int(e.pointee.backend)
        guard b.pointee.vipSlot == vipSlot, !l2 || (b.pointee.resolved && b.pointee.vlan == 0) else { return nil }
        if e.pointee.lastSeen != now { e.pointee.lastSeen = now }
        return b
    }

    /// `FlowTable.matchSpilled`, out of line: most lookups end in the home bucket.
    @usableFromInline @inline(never)
    func matchSpilled(_ bucket: UnsafeMutablePointer<FlowEntry>, src: UInt32, ports: UInt32,
                      key: UInt32) -> UnsafeMutablePointer<FlowEntry>? {
        flows.matchSpilled(bucket, src: src, ports: ports, key: key)
    }

    /// Counts a packet of `bytes` (as received) for its VIP and backend.
    @inlinable @inline(__always)
    func count(vipSlot: UInt32, backend b: UnsafeMutablePointer<BackendEntry>, bytes: Int) {
        countDelivered(vip: vipCounters + Int(vipSlot) &* CounterLayout.perTarget,
                       backend: backendCounters + backends.distance(to: b) &* CounterLayout.perTarget,
                       bytes: UInt64(truncatingIfNeeded: bytes))
    }

    /// l2 output: the backend's MAC to the port's.
    @inlinable @inline(__always)
    func rewriteL2(_ p: UnsafeMutableRawPointer, _ b: UnsafeMutablePointer<BackendEntry>) {
        putMAC(p, 0, b.pointee.macWord0, b.pointee.macWord1)
        putMAC(p, 6, macWord0, macWord1)
    }

    /// `forward` for an IPv6 frame to the port's MAC: a TCP or UDP header right after the IPv6 header (no extension
    /// headers), to an IPv6 VIP that is not quic, l2 or l3 with an IPv6 outer header and neither GUE,
    /// GRE, an outer source prefix nor DSCP (`encapsulate6`, its flow label from the contract hash). The checks
    /// are `classifyIPv6`'s and `deliver`'s. Out of line: IPv4 frames pay nothing for it.
    @usableFromInline @inline(never)
    func forward6(_ p: UnsafeMutableRawPointer, length: Int, headroom: Int,
                  bucket: UnsafeMutablePointer<FlowEntry>) -> (shift: Int32, length: UInt32) {
        let declined: (shift: Int32, length: UInt32) = (0, 0)
        let ip = p + 14
        let available = length &- 14
        guard available >= 44, ip.load(as: UInt8.self) >> 4 == 6 else { return declined }
        let payload = Int(be16(ip, 4))
        let total = 40 &+ payload
        let proto = ip.load(fromByteOffset: 6, as: UInt8.self)
        guard payload > 0, total <= available, proto == 6 || proto == 17 else { return declined }
        let srcHi = be64(ip, 8), srcLo = be64(ip, 16), dstHi = be64(ip, 24), dstLo = be64(ip, 32)
        guard srcHi >> 56 != 0xFF, srcHi | srcLo != 0 else { return declined }
        let l4 = ip + 40
        guard transportHeaderFits(l4, length: payload, proto: proto) else { return declined }
        let ports = be32(l4, 0)
        let index = tables.pointee.findVIP6(hi: dstHi, lo: dstLo, proto: proto, port: UInt16(truncatingIfNeeded: ports))
        guard index >= 0 else { return declined }
        let vip = vips + index
        let l3 = vip.pointee.mode == .l3
        guard !vip.pointee.quic, UInt32(truncatingIfNeeded: total) &+ vip.pointee.overheadBytes <= mtu,
              l3 ? (vip.pointee.tunnel6 && !vip.pointee.tunnel.general && port.pointee.gateway6Resolved
                    && headroom >= Int(vip.pointee.overheadBytes) &+ 4)
                 : !vip.pointee.outOfLine else { return declined }
        let vipSlot = vip.pointee.slot
        guard let b = pinnedBackend(bucket, src: sourceFingerprint(srcHi, srcLo), ports: ports, vipSlot: vipSlot, l2: !l3) else {
            return declined
        }
        count(vipSlot: vipSlot, backend: b, bytes: 14 &+ total)
        if !l3 {
            counters[verdictL2] &+= 1
            rewriteL2(p, b)
            return (0, UInt32(truncatingIfNeeded: 14 &+ total))
        }
        counters[verdictL3] &+= 1
        let hash = flowHash6(srcHi: srcHi, srcLo: srcLo, dstHi: dstHi, dstLo: dstLo,
                             srcPort: UInt16(truncatingIfNeeded: ports >> 16), dstPort: UInt16(truncatingIfNeeded: ports), proto: proto)
        let start = encapsulate6(ip: ip, total: total, inner6: true, inputTag: untagged, port: port, backend: b,
                                 label: flowLabel(hash))
        return (Int32(truncatingIfNeeded: 14 &+ start), UInt32(truncatingIfNeeded: total &- start))
    }

    /// Forwards the frame of `length` bytes at `p` (with `headroom` writable bytes before it) if it is fast-path
    /// traffic; `bucket` is the flow table's bucket of its `frameFlowHash` (`FlowTable.bucket`). Returns where the output starts relative to `p` and its
    /// length, or a length of 0 when declined (nothing was written or counted). The verdict is `forwardedL2` for
    /// a shift of 0 and `forwardedL3` otherwise; its counter is counted here.
    @_transparent
    public func forward(_ p: UnsafeMutableRawPointer, length: Int, headroom: Int, checksum: ChecksumStatus,
                        bucket: UnsafeMutablePointer<FlowEntry>) -> (shift: Int32, length: UInt32) {
        let declined: (shift: Int32, length: UInt32) = (0, 0)
        // Ethernet to the port's MAC, IPv4, a 20-byte header. The reads stay within the first 26 bytes until the
        // total length is checked against `length` (the buffer holds at least that much, as `processFrame` requires).
        guard p.loadUnaligned(as: UInt64.self) << 16 == portMAC else { return declined }
        let etherType = p.loadUnaligned(fromByteOffset: 12, as: UInt16.self)
        guard etherType == 0x0008 else {
            if etherType == 0xDD86 { return forward6(p, length: length, headroom: headroom, bucket: bucket) }
            return etherType == 0x0081 ? forwardTagged(p, length: length, headroom: headroom, checksum: checksum, bucket: bucket)
                                       : declined
        }
        return forward4(p, l2: 14, tag: untagged, length: length, headroom: headroom, checksum: checksum, bucket: bucket)
    }

    /// `forward` for an IPv4 frame with one 802.1Q tag (TCI `tag`) that the port accepts (`classifyAndRewrite`'s
    /// check). Out of line: untagged frames pay one compare for it.
    @usableFromInline @inline(never)
    func forwardTagged(_ p: UnsafeMutableRawPointer, length: Int, headroom: Int, checksum: ChecksumStatus,
                       bucket: UnsafeMutablePointer<FlowEntry>) -> (shift: Int32, length: UInt32) {
        let tci = be16(p, 14)
        let vlan = port.pointee.vlan
        // VLAN id 0 is a priority tag on an untagged frame (802.1Q), accepted on any port.
        guard vlan == 0 || tci & 0x0FFF == vlan || tci & 0x0FFF == 0,
              p.loadUnaligned(fromByteOffset: 16, as: UInt16.self) == 0x0008 else { return (0, 0) }
        return forward4(p, l2: 18, tag: Int32(tci), length: length, headroom: headroom, checksum: checksum, bucket: bucket)
    }

    /// The IPv4 fast path behind an Ethernet header of `l2` bytes (14, or 18 with the tag `tag`), both constants
    /// where it is inlined. A tagged frame keeps its tag: l2 output only to a backend without a VLAN of its own, l3
    /// output with the tag `encapsulate` gives it (`outputTag`).
    @inlinable @inline(__always)
    func forward4(_ p: UnsafeMutableRawPointer, l2: Int, tag: Int32, length: Int, headroom: Int, checksum: ChecksumStatus,
                  bucket: UnsafeMutablePointer<FlowEntry>) -> (shift: Int32, length: UInt32) {
        let declined: (shift: Int32, length: UInt32) = (0, 0)
        let ip = p + l2
        let head = ip.loadUnaligned(as: UInt64.self)    // version/IHL, TOS, total length, identification, flags
        let total = Int(UInt16(truncatingIfNeeded: head >> 16).byteSwapped)
        // Version 4 with IHL 5; not a fragment (no offset, no more-fragments flag).
        guard head & 0xFF == 0x45, head & 0xFF3F_0000_0000_0000 == 0, total >= 28, total <= length &- l2 else {
            return declined
        }
        switch checksum {
        case .good: break
        case .bad: return declined
        case .unknown:
            // The header's ones'-complement sum folds to 0xFFFF exactly when the plain sum of its 32-bit words is a
            // non-zero multiple of 0xFFFF (2^16 and 2^32 are 1 modulo 0xFFFF); it is never zero (version 4).
            let sum = (head & 0xFFFF_FFFF) &+ (head >> 32) &+ UInt64(ip.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
                &+ UInt64(ip.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
                &+ UInt64(ip.loadUnaligned(fromByteOffset: 16, as: UInt32.self))
            guard sum % 0xFFFF == 0 else { return declined }
        }
        let proto = ip.load(fromByteOffset: 9, as: UInt8.self)
        let l4 = ip + 20
        let l4Length = total &- 20
        if proto == 6 {
            guard l4Length >= 20 else { return declined }
            let dataOffset = Int(l4.load(fromByteOffset: 12, as: UInt8.self) >> 4) &* 4
            guard dataOffset >= 20, dataOffset <= l4Length else { return declined }
        } else {
            guard proto == 17 else { return declined }
            let udpLength = Int(be16(l4, 4))
            guard udpLength >= 8, udpLength <= l4Length else { return declined }
        }
        let dstRaw = ip.loadUnaligned(fromByteOffset: 16, as: UInt32.self)
        var code = probe(DataplaneTables.rawVIPKey(dstRaw, proto, l4.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
        if code == -1 { code = otherVIP(dstRaw, proto, port: be16(l4, 2)) }
        guard code >= 0 else { return declined } // no VIP, or a quic VIP
        let vip = vips + code
        guard !vip.pointee.outOfLine, UInt32(truncatingIfNeeded: total) &+ vip.pointee.overheadBytes <= mtu else {
            return declined
        }
        let vipSlot = vip.pointee.slot
        let src = be32(ip, 12), ports = be32(l4, 0)
        // Two tails, so neither tests the mode again.
        if vip.pointee.mode == .l2 {
            guard let b = pinnedBackend(bucket, src: src, ports: ports, vipSlot: vipSlot, l2: true) else { return declined }
            count(vipSlot: vipSlot, backend: b, bytes: l2 &+ total)
            counters[verdictL2] &+= 1
            rewriteL2(p, b)   // a tag stays as it came (the backend has no VLAN of its own)
            return (0, UInt32(truncatingIfNeeded: l2 &+ total))
        }
        // Untagged output only from an untagged port (`l3Ready`); a tagged frame's output is tagged in any case.
        guard tag == untagged ? l3Ready : port.pointee.gatewayResolved, headroom >= ipInIPOverheadBytes &+ 4,
              let b = pinnedBackend(bucket, src: src, ports: ports, vipSlot: vipSlot, l2: false) else { return declined }
        count(vipSlot: vipSlot, backend: b, bytes: l2 &+ total)
        counters[verdictL3] &+= 1
        // IP-in-IP (as `encapsulate`), the port's parts of the outer header loaded once per burst.
        writeIPInIPHeader(ip, total: total, sourceRaw: sourceRaw, sourceSum: outerSum, destinationRaw: b.pointee.address.bigEndian)
        let outer = ip - ipInIPOverheadBytes
        let frame = outer - l2
        frame.storeBytes(of: outerEthernet0, as: UInt64.self)
        frame.storeBytes(of: outerEthernet1, toByteOffset: 8, as: UInt32.self)
        if tag == untagged {
            frame.storeBytes(of: 0x0008, toByteOffset: 12, as: UInt16.self)
        } else {
            let outputTCI = UInt16(truncatingIfNeeded: outputTag(input: tag, vlan: port.pointee.vlan))
            frame.storeBytes(of: 0x0081, toByteOffset: 12, as: UInt16.self)
            frame.storeBytes(of: outputTCI.bigEndian, toByteOffset: 14, as: UInt16.self)
            frame.storeBytes(of: 0x0008, toByteOffset: 16, as: UInt16.self)
        }
        return (-Int32(ipInIPOverheadBytes), UInt32(truncatingIfNeeded: l2 &+ ipInIPOverheadBytes &+ total))
    }
}
