// Builds valid Ethernet/IPv4/TCP/UDP frames (correct checksums) for synthetic traffic and tests.

/// A client-to-VIP packet description.
public struct SyntheticPacket: Sendable {
    public var srcMAC: MACAddress
    public var dstMAC: MACAddress
    public var vlan: UInt16?
    public var src: IPv4Address
    public var dst: IPv4Address
    public var proto: L4Protocol
    public var srcPort: UInt16
    public var dstPort: UInt16
    public var payloadBytes: Int
    public var tos: UInt8 = 0
    public var dontFragment = true
    public var identification: UInt16 = 0

    public init(srcMAC: MACAddress, dstMAC: MACAddress, vlan: UInt16? = nil, src: IPv4Address, dst: IPv4Address,
                proto: L4Protocol, srcPort: UInt16, dstPort: UInt16, payloadBytes: Int) {
        self.srcMAC = srcMAC; self.dstMAC = dstMAC; self.vlan = vlan; self.src = src; self.dst = dst
        self.proto = proto; self.srcPort = srcPort; self.dstPort = dstPort; self.payloadBytes = payloadBytes
    }
}

public enum FrameBuilder {
    /// The frame's bytes: Ethernet (optional 802.1Q), IPv4 (IHL 5), TCP (ACK|PSH, no options) or UDP,
    /// then `payloadBytes` bytes of a fixed pattern; all checksums valid.
    public static func frame(_ p: SyntheticPacket) -> [UInt8] {
        var f: [UInt8] = p.dstMAC.array + p.srcMAC.array
        if let vlan = p.vlan { f += [0x81, 0x00, UInt8(vlan >> 8 & 0x0F), UInt8(vlan & 0xFF)] }
        f += [0x08, 0x00]
        let l4Header = p.proto == .tcp ? 20 : 8
        let total = 20 + l4Header + p.payloadBytes
        let ipStart = f.count
        f += [0x45, p.tos, UInt8(total >> 8), UInt8(total & 0xFF), UInt8(p.identification >> 8),
              UInt8(p.identification & 0xFF), p.dontFragment ? 0x40 : 0, 0, 64, p.proto.rawValue, 0, 0]
        f += bytes32(p.src.value) + bytes32(p.dst.value)
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
            put16(ip, 10, internetChecksum(ip, 20))
            let l4Length = total - 20
            // Pseudo-header: addresses, protocol, L4 length.
            var pseudo = UInt32(onesComplementSum(ip + 12, 8)) + UInt32(p.proto.rawValue) + UInt32(l4Length)
            pseudo = (pseudo & 0xFFFF) + (pseudo >> 16)
            let sum = ~onesComplementSum(b.baseAddress! + l4Start, l4Length, initial: pseudo)
            put16(b.baseAddress! + l4Start, p.proto == .tcp ? 16 : 6, p.proto == .udp && sum == 0 ? 0xFFFF : sum)
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
            let client = IPv4Address(0xC612_0000 | UInt32(truncatingIfNeeded: rng.next()) & 0xFFFF) // 198.18.0.0/15 benchmark range
            let dstPort = vip.port ?? UInt16(1 + rng.next() % 65535)
            return SyntheticPacket(srcMAC: MACAddress(0x02, 0, 0, 0, 0xAA, UInt8(i & 0xFF)), dstMAC: portMAC,
                                   src: client, dst: vip.address, proto: vip.proto,
                                   srcPort: UInt16(1024 + i % 64512), dstPort: dstPort, payloadBytes: payloadBytes)
        }
        let frames = templates.map(FrameBuilder.frame)
        return (0..<packets).map { frames[$0 % flows] }
    }
}
