// Builds valid Ethernet/IPv4 or IPv6/TCP/UDP frames (correct checksums) for synthetic traffic and tests.

/// A client-to-VIP packet description.
public struct SyntheticPacket: Sendable {
    public var srcMAC: MACAddress
    public var dstMAC: MACAddress
    public var vlan: UInt16?
    /// Client and VIP; both of one family.
    public var src: IPAddress
    public var dst: IPAddress
    public var proto: L4Protocol
    public var srcPort: UInt16
    public var dstPort: UInt16
    public var payloadBytes: Int
    public var tos: UInt8 = 0
    public var dontFragment = true
    public var identification: UInt16 = 0

    public init(srcMAC: MACAddress, dstMAC: MACAddress, vlan: UInt16? = nil, src: IPAddress, dst: IPAddress,
                proto: L4Protocol, srcPort: UInt16, dstPort: UInt16, payloadBytes: Int) {
        self.srcMAC = srcMAC; self.dstMAC = dstMAC; self.vlan = vlan; self.src = src; self.dst = dst
        self.proto = proto; self.srcPort = srcPort; self.dstPort = dstPort; self.payloadBytes = payloadBytes
    }
}

public enum FrameBuilder {
    /// The frame's bytes: Ethernet (optional 802.1Q), IPv4 (IHL 5; or IPv6 with hop limit 64 and no extension
    /// headers), TCP (ACK|PSH, no options) or UDP, then `payloadBytes` bytes of a fixed pattern; all checksums valid.
    public static func frame(_ p: SyntheticPacket) -> [UInt8] {
        var f: [UInt8] = p.dstMAC.array + p.srcMAC.array
        if let vlan = p.vlan { f += [0x81, 0x00, UInt8(vlan >> 8 & 0x0F), UInt8(vlan & 0xFF)] }
        let l4Header = p.proto == .tcp ? 20 : 8
        let l4Length = l4Header + p.payloadBytes
        let ipStart = f.count + 2
        let pseudo: UInt32
        switch (p.src, p.dst) {
        case (.v4(let src), .v4(let dst)):
            let total = 20 + l4Length
            f += [0x08, 0x00, 0x45, p.tos, UInt8(total >> 8), UInt8(total & 0xFF), UInt8(p.identification >> 8),
                  UInt8(p.identification & 0xFF), p.dontFragment ? 0x40 : 0, 0, 64, p.proto.rawValue, 0, 0]
            f += bytes32(src.value) + bytes32(dst.value)
            pseudo = UInt32(onesComplementSum(f.withUnsafeBytes { Array($0[(ipStart + 12)...]) }, 8))
        case (.v6(let src), .v6(let dst)):
            f += [0x86, 0xDD, 0x60 | p.tos >> 4, p.tos << 4, 0, 0] + bytes16(UInt16(l4Length)) + [p.proto.rawValue, 64]
            f += src.bytes + dst.bytes
            pseudo = UInt32(onesComplementSum(src.bytes + dst.bytes, 32))
        default:
            preconditionFailure("a synthetic packet's addresses are of one family")
        }
        let l4Start = f.count
        f += bytes16(p.srcPort) + bytes16(p.dstPort)
        if p.proto == .tcp {
            f += bytes32(0x1000_0000 &+ UInt32(p.srcPort)) + bytes32(1) + [0x50, 0x18, 0xFF, 0xFF, 0, 0, 0, 0]
        } else {
            f += bytes16(UInt16(8 + p.payloadBytes)) + [0, 0]
        }
        f += (0..<p.payloadBytes).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) }
        f.withUnsafeMutableBytes { b in
            let ip = b.baseAddress! + ipStart
            if p.src.family == .v4 { put16(ip, 10, internetChecksum(ip, 20)) }
            // Pseudo-header: addresses, protocol, L4 length.
            var sum = pseudo + UInt32(p.proto.rawValue) + UInt32(l4Length)
            sum = (sum & 0xFFFF) + (sum >> 16)
            let checksum = ~onesComplementSum(b.baseAddress! + l4Start, l4Length, initial: sum)
            put16(b.baseAddress! + l4Start, p.proto == .tcp ? 16 : 6, p.proto == .udp && checksum == 0 ? 0xFFFF : checksum)
        }
        return f
    }

    static func bytes16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xFF)] }
    static func bytes32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
}

/// A deterministic pseudo-random generator (SplitMix64), so synthetic traffic is the same on every run.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return mix64(state)
    }
}

/// Synthetic client traffic towards the VIPs of a config: `flows` distinct 5-tuples spread over the VIPs,
/// each sending its packets in turn (round-robin over flows), `packets` frames in all.
public enum TrafficSynthesizer {
    public static func packets(config: TulaConfig, flows: Int, packets: Int, payloadBytes: Int = 64,
                               seed: UInt64 = 1) -> [[UInt8]] {
        precondition(!config.vips.isEmpty && flows > 0)
        var rng = SplitMix64(seed: seed)
        let portMAC = config.ports[0].mac ?? MACAddress(0x02, 0, 0, 0, 0, 0x01)
        let templates: [SyntheticPacket] = (0..<flows).map { i in
            let vip = config.vips[i % config.vips.count]
            let r = rng.next()
            // The benchmark ranges: 198.18.0.0/15 and 2001:2::/48 (RFC 2544, RFC 5180).
            let client: IPAddress = vip.address.family == .v4
                ? .v4(IPv4Address(0xC612_0000 | UInt32(truncatingIfNeeded: r) & 0xFFFF))
                : .v6(IPv6Address(hi: 0x2001_0002_0000_0000, lo: r | 1))
            let dstPort = vip.port ?? UInt16(1 + rng.next() % 65535)
            return SyntheticPacket(srcMAC: MACAddress(0x02, 0, 0, 0, 0xAA, UInt8(i & 0xFF)), dstMAC: portMAC,
                                   src: client, dst: vip.address, proto: vip.proto,
                                   srcPort: UInt16(1024 + i % 64512), dstPort: dstPort, payloadBytes: payloadBytes)
        }
        let frames = templates.map(FrameBuilder.frame)
        return (0..<packets).map { frames[$0 % flows] }
    }
}
