// Tests for processFrame: L2/L3 rewrites byte for byte, ARP replies, every drop reason, VIP matching, counters.
import Testing
@testable import TulaCore
@testable import TulaDatapath

private typealias T = TestTopology

/// Frames aimed at `TestTopology`'s VIPs, and the outputs the DSR modes must turn them into.
private enum Make {
    /// An IPv4 frame from the client to the port's MAC (or `dstMAC`), optionally 802.1Q-tagged.
    static func frame(_ ip: [UInt8], vlan: UInt16? = nil, dstMAC: [UInt8] = T.portMAC) -> [UInt8] {
        TestFrames.ethernet(dst: dstMAC, src: T.clientMAC, type: TestFrames.etherIPv4, vlan: vlan, payload: ip)
    }

    /// TCP from the client to `vip:port` (default: the `web` VIP).
    static func tcp(_ vip: String = "10.0.1.100", _ port: UInt16 = 443, srcPort: UInt16 = 40000,
                    payload: Int = 0) -> [UInt8] {
        TestFrames.ipv4(src: T.client, dst: vip, proto: 6,
                        payload: TestFrames.tcp(srcPort: srcPort, dstPort: port, payload: bytes(payload)))
    }

    /// UDP from the client to `vip:port` (default: the `dns` VIP, an l3 one).
    static func udp(_ vip: String = "10.0.1.101", _ port: UInt16 = 53, srcPort: UInt16 = 40000, payload: Int = 4,
                    tos: UInt8 = 0, identification: UInt16 = 0x1234, flagsFragment: UInt16 = 0x4000) -> [UInt8] {
        TestFrames.ipv4(src: T.client, dst: vip, proto: 17, payload: TestFrames.udp(srcPort: srcPort, dstPort: port,
                                                                                    payload: bytes(payload)),
                        tos: tos, identification: identification, flagsFragment: flagsFragment)
    }

    /// A frame from the client to `dst` carrying `l4` as protocol `proto`, with IPv4 fields overridable.
    static func ipFrame(_ l4: [UInt8], to dst: String = "10.0.1.100", proto: UInt8 = 6, flagsFragment: UInt16 = 0x4000,
                        options: [UInt8] = [], version: UInt8 = 4, ihl: UInt8? = nil, totalLength: UInt16? = nil,
                        checksum: UInt16? = nil) -> [UInt8] {
        frame(TestFrames.ipv4(src: T.client, dst: dst, proto: proto, payload: l4, flagsFragment: flagsFragment,
                              options: options, version: version, ihl: ihl, totalLength: totalLength,
                              checksum: checksum))
    }

    /// A bare 20-byte TCP SYN to port 443.
    static let syn = TestFrames.tcp(srcPort: 1, dstPort: 443)
    /// A UDP datagram to port 53 with 4 bytes of payload and the given length field.
    static func dnsQuery(length: UInt16? = nil) -> [UInt8] {
        TestFrames.udp(srcPort: 1, dstPort: 53, payload: [1, 2, 3, 4], length: length)
    }

    static func bytes(_ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) } }

    /// Where the IP packet starts and the frame without Ethernet padding (parsed test-side).
    static func split(_ frame: [UInt8]) -> (l2: Int, vlan: UInt16?, ip: [UInt8]) {
        let tagged = TestBytes.be16(frame, at: 12) == TestFrames.etherVLAN
        let l2 = tagged ? 18 : 14
        let total = Int(TestBytes.be16(frame, at: l2 + 2))
        return (l2, tagged ? TestBytes.be16(frame, at: 14) : nil, Array(frame[l2..<(l2 + total)]))
    }

    /// L2 DSR: only the MACs change (dst = backend, src = port), padding trimmed.
    static func l2Output(_ frame: [UInt8], backendMAC: [UInt8]) -> [UInt8] {
        let (l2, _, ip) = split(frame)
        return backendMAC + T.portMAC + frame[12..<l2] + ip
    }

    /// L3 DSR: Ethernet to the gateway (tag kept), then a fresh outer header built by the test's own builder.
    static func l3Output(_ frame: [UInt8], backend: String) -> [UInt8] {
        let (_, vlan, inner) = split(frame)
        let outer = TestFrames.ipv4(src: T.portAddress, dst: backend, proto: 4, payload: inner, tos: inner[1],
                                    identification: TestBytes.be16(inner, at: 4),
                                    flagsFragment: UInt16(inner[6] & 0x40) << 8, ttl: 64)
        return TestFrames.ethernet(dst: T.gatewayMAC, src: T.portMAC, type: TestFrames.etherIPv4, vlan: vlan,
                                   payload: outer)
    }

    static let webBackendMAC = TestBytes.mac("02:00:00:00:01:11")
    static let wildBackendMAC = TestBytes.mac("02:00:00:00:01:12")
    static let dnsBackend = "10.0.2.21", httpL3Backend = "10.0.2.22"

    static func arpRequest(for target: String, hlen: UInt8 = 6, plen: UInt8 = 4) -> [UInt8] {
        TestFrames.padded(TestFrames.ethernet(
            dst: TestBytes.mac("ff:ff:ff:ff:ff:ff"), src: T.clientMAC, type: TestFrames.etherARP,
            payload: TestFrames.arp(op: 1, senderMAC: T.clientMAC, senderIP: "10.0.1.50",
                                    targetMAC: [0, 0, 0, 0, 0, 0], targetIP: target, hlen: hlen, plen: plen)))
    }
}

@Suite struct FrameProcessorTests {
    // MARK: - Hand-checked references

    /// A TCP SYN to web (10.0.1.100:443) in a 60-byte frame: 40 bytes of IP plus 6 bytes of Ethernet padding.
    /// IP checksum by hand: 4500+0028+abcd+4000+4006+c000+020a+0a00+0164 = 0x3e6b, ~ = 0xc194.
    static let l2Input = """
        02 00 00 00 00 01 | 02 00 00 00 aa 01 | 08 00
        45 00 00 28 ab cd 40 00 40 06 c1 94 c0 00 02 0a 0a 00 01 64
        9c 40 01 bb 00 00 00 01 00 00 00 00 50 02 ff ff 00 00 00 00
        00 00 00 00 00 00
        """
    /// dst MAC := backend 10.0.1.11's, src MAC := port's; padding gone; IP and TCP untouched (54 bytes).
    static let l2Expected = """
        02 00 00 00 01 11 | 02 00 00 00 00 01 | 08 00
        45 00 00 28 ab cd 40 00 40 06 c1 94 c0 00 02 0a 0a 00 01 64
        9c 40 01 bb 00 00 00 01 00 00 00 00 50 02 ff ff 00 00 00 00
        """

    @Test func l2HandCheckedReference() throws {
        let dp = try TestDataplane()
        let input = TestBytes.hex(Self.l2Input)
        #expect(input == TestFrames.padded(Make.frame(TestFrames.ipv4(
            src: T.client, dst: "10.0.1.100", proto: 6, payload: TestFrames.tcp(srcPort: 40000, dstPort: 443),
            identification: 0xABCD))), "the builders agree with the hand-written frame")
        let r = dp.process(input)
        #expect(r.outcome == FrameOutcome(.forwardedL2, shift: 0, length: 54))
        #expect(TestBytes.hexString(r.output) == TestBytes.hexString(TestBytes.hex(Self.l2Expected)))
    }

    /// UDP 192.0.2.10:40000 -> dns 10.0.1.101:53, 4 bytes "abcd", padded to 60 bytes.
    /// Inner checksum: 4500+0020+1234+4000+4011+c000+020a+0a00+0165 = 0xa4d5, ~ = 0x5b2a.
    static let l3Input = """
        02 00 00 00 00 01 | 02 00 00 00 aa 01 | 08 00
        45 00 00 20 12 34 40 00 40 11 5b 2a c0 00 02 0a 0a 00 01 65
        9c 40 00 35 00 0c 00 00 61 62 63 64
        00 00 00 00 00 00 00 00 00 00 00 00 00 00
        """
    /// Ethernet to the gateway from the port; outer IPv4: TOS 00 copied, total 0x20+20 = 0x34, ID 1234 and DF
    /// copied, TTL 64, protocol 4, 10.0.1.2 -> 10.0.2.21. Outer checksum by hand:
    /// 4500+0034+1234+4000+4004+0a00+0102+0a00+0215 = 0xee83, ~ = 0x117c. Inner packet byte for byte.
    static let l3Expected = """
        02 00 00 00 00 fe | 02 00 00 00 00 01 | 08 00
        45 00 00 34 12 34 40 00 40 04 11 7c 0a 00 01 02 0a 00 02 15
        45 00 00 20 12 34 40 00 40 11 5b 2a c0 00 02 0a 0a 00 01 65
        9c 40 00 35 00 0c 00 00 61 62 63 64
        """

    @Test func l3HandCheckedReference() throws {
        let dp = try TestDataplane()
        let input = TestBytes.hex(Self.l3Input)
        #expect(input == TestFrames.padded(Make.frame(TestFrames.ipv4(
            src: T.client, dst: "10.0.1.101", proto: 17,
            payload: TestFrames.udp(srcPort: 40000, dstPort: 53, payload: Array("abcd".utf8))))),
                "the builders agree with the hand-written frame")
        let r = dp.process(input)
        #expect(r.outcome == FrameOutcome(.forwardedL3, shift: -20, length: 66))
        #expect(TestBytes.hexString(r.output) == TestBytes.hexString(TestBytes.hex(Self.l3Expected)))
        #expect(Make.l3Output(input, backend: Make.dnsBackend) == r.output, "the test-side L3 model agrees")
    }

    // MARK: - L3 header fields

    @Test(arguments: [UInt8(0x00), 0xB8, 0xB9, 0x03], [true, false])
    func l3CopiesTOSAndDFAndChecksums(tos: UInt8, dontFragment: Bool) throws {
        let dp = try TestDataplane()
        let input = Make.frame(Make.udp(payload: 100, tos: tos, identification: 0xBEEF,
                                        flagsFragment: dontFragment ? 0x4000 : 0))
        let r = dp.process(input)
        try #require(r.outcome == FrameOutcome(.forwardedL3, shift: -20, length: UInt32(input.count + 20)))
        let outer = Array(r.output[14..<34])
        #expect(outer[0] == 0x45)
        #expect(outer[1] == tos)
        #expect(TestBytes.be16(outer, at: 2) == UInt16(input.count - 14 + 20))
        #expect(outer[4...5] == [0xBE, 0xEF])
        #expect(outer[6...7] == (dontFragment ? [0x40, 0x00] : [0x00, 0x00]))
        #expect(outer[8...9] == [64, 4])
        #expect(TestBytes.referenceSum(outer) == 0xFFFF)
        #expect(Array(r.output[34...]) == Array(input[14...]))
        #expect(r.output == Make.l3Output(input, backend: Make.dnsBackend))
    }

    // MARK: - VLAN

    @Test(arguments: [DSRMode.l2, .l3])
    func vlanTagIsKept(mode: DSRMode) throws {
        let dp = try TestDataplane()
        let tci: UInt16 = 0xA064 // PCP 5, VID 100
        let input = Make.frame(mode == .l2 ? Make.tcp(payload: 30) : Make.udp(payload: 30), vlan: tci)
        let r = dp.process(input)
        let expected = mode == .l2 ? Make.l2Output(input, backendMAC: Make.webBackendMAC)
                                   : Make.l3Output(input, backend: Make.dnsBackend)
        try #require(r.outcome == FrameOutcome(mode == .l2 ? .forwardedL2 : .forwardedL3, shift: mode == .l2 ? 0 : -20,
                                               length: UInt32(expected.count)))
        #expect(r.output[12..<18] == [0x81, 0x00, 0xA0, 0x64, 0x08, 0x00])
        #expect(TestBytes.hexString(r.output) == TestBytes.hexString(expected))
    }

    // MARK: - ARP

    struct ARPCase: Sendable, CustomTestStringConvertible {
        var target: String
        var reply: String
        var testDescription: String { "ARP for \(target)" }
    }

    /// Replies written by hand: to the asker (02:00:00:00:aa:01, 10.0.1.50) from the port MAC, opcode 2,
    /// sender = (port MAC, asked address), target = the asker; the 18 bytes of padding stay.
    static let arpCases = [
        ARPCase(target: "10.0.1.100", reply: """
            02 00 00 00 aa 01 | 02 00 00 00 00 01 | 08 06
            00 01 08 00 06 04 00 02 | 02 00 00 00 00 01 | 0a 00 01 64 | 02 00 00 00 aa 01 | 0a 00 01 32
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            """),
        ARPCase(target: "10.0.1.2", reply: """
            02 00 00 00 aa 01 | 02 00 00 00 00 01 | 08 06
            00 01 08 00 06 04 00 02 | 02 00 00 00 00 01 | 0a 00 01 02 | 02 00 00 00 aa 01 | 0a 00 01 32
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            """),
    ]

    @Test(arguments: arpCases)
    func arpRequestForOurAddressIsAnswered(_ c: ARPCase) throws {
        let dp = try TestDataplane()
        let r = dp.process(Make.arpRequest(for: c.target))
        #expect(r.outcome == FrameOutcome(.arpReply, shift: 0, length: 60))
        #expect(TestBytes.hexString(r.output) == TestBytes.hexString(TestBytes.hex(c.reply)))
        #expect(dp.verdictCount(.arpReply) == 1)
    }

    // MARK: - Drops

    struct DropCase: Sendable, CustomTestStringConvertible {
        var name: String
        var frame: [UInt8]
        var verdict: Verdict
        var checksum: ChecksumStatus = .unknown
        var headroom = 64
        var testDescription: String { "\(verdict): \(name)" }
    }

    static let web = Make.frame(Make.tcp())
    static let dropCases: [DropCase] = [
        DropCase(name: "13 bytes", frame: Array(web.prefix(13)), verdict: .malformedFrame),
        DropCase(name: "0x8100 with 16 bytes", frame: Array(Make.frame(Make.tcp(), vlan: 100).prefix(16)),
                 verdict: .malformedFrame),
        DropCase(name: "IPv6 with payload length 0", frame: TestFrames.ethernet(dst: T.portMAC, src: T.clientMAC, type: TestFrames.etherIPv6,
                                                         payload: [0x60] + [UInt8](repeating: 0, count: 39)),
                 verdict: .malformedIPv6),
        DropCase(name: "LLDP", frame: TestFrames.ethernet(dst: T.portMAC, src: T.clientMAC, type: 0x88CC,
                                                         payload: [UInt8](repeating: 0, count: 46)),
                 verdict: .notIP),
        DropCase(name: "QinQ 0x88a8 outer tag",
                 frame: T.portMAC + T.clientMAC + [0x88, 0xA8, 0x00, 0x64, 0x81, 0x00, 0x00, 0xC8, 0x08, 0x00]
                     + Make.tcp(),
                 verdict: .notIP),
        DropCase(name: "two 802.1Q tags",
                 frame: TestFrames.ethernet(dst: T.portMAC, src: T.clientMAC, type: TestFrames.etherVLAN, vlan: 100,
                                            payload: [0x00, 0xC8, 0x08, 0x00] + Make.tcp()),
                 verdict: .notIP),
        DropCase(name: "another unicast MAC",
                 frame: Make.frame(Make.tcp(), dstMAC: TestBytes.mac("02:00:00:00:00:99")), verdict: .notOurMAC),
        DropCase(name: "broadcast MAC", frame: Make.frame(Make.tcp(), dstMAC: TestBytes.mac("ff:ff:ff:ff:ff:ff")),
                 verdict: .notOurMAC),
        DropCase(name: "version 6", frame: Make.ipFrame(Make.syn, version: 6), verdict: .malformedIPv4),
        DropCase(name: "IHL 4", frame: Make.ipFrame(Make.syn, ihl: 4), verdict: .malformedIPv4),
        DropCase(name: "IHL 15 beyond the bytes", frame: Make.ipFrame(Make.syn, ihl: 15), verdict: .malformedIPv4),
        DropCase(name: "total length > bytes", frame: Make.ipFrame(Make.syn, totalLength: 41), verdict: .malformedIPv4),
        DropCase(name: "total length < IHL*4", frame: Make.ipFrame(Make.syn, totalLength: 19), verdict: .malformedIPv4),
        DropCase(name: "19 bytes of IP", frame: Array(web.prefix(14 + 19)), verdict: .malformedIPv4),
        DropCase(name: "wrong checksum", frame: Make.ipFrame(Make.syn, checksum: 0x1234), verdict: .badIPChecksum),
        DropCase(name: "valid checksum but the NIC says bad", frame: web, verdict: .badIPChecksum, checksum: .bad),
        // Fragments carry no ports (after the first): with two port-specific UDP VIPs on 10.0.1.101 and no
        // `*`, no VIP can take them.
        DropCase(name: "MF set, two udp VIPs", frame: Make.frame(Make.udp(flagsFragment: 0x2000)), verdict: .fragment),
        DropCase(name: "offset 185, two udp VIPs", frame: Make.frame(Make.udp(flagsFragment: 0x00B9)),
                 verdict: .fragment),
        DropCase(name: "DF and offset 1, two udp VIPs", frame: Make.frame(Make.udp(flagsFragment: 0x4001)),
                 verdict: .fragment),
        DropCase(name: "ICMP fragment",
                 frame: Make.ipFrame([0x08, 0, 0xF7, 0xFF, 0, 0, 0, 0], proto: 1, flagsFragment: 0x2000),
                 verdict: .fragment),
        DropCase(name: "GRE to a VIP", frame: Make.ipFrame([0, 0, 0x08, 0x00], proto: 47), verdict: .notTCPUDP),
        DropCase(name: "SCTP to a VIP", frame: Make.ipFrame([UInt8](repeating: 0, count: 12), proto: 132),
                 verdict: .notTCPUDP),
        DropCase(name: "TCP 19 bytes", frame: Make.ipFrame(Array(Make.syn.prefix(19))), verdict: .malformedL4),
        DropCase(name: "TCP data offset 4",
                 frame: Make.ipFrame(TestFrames.tcp(srcPort: 1, dstPort: 443, dataOffset: 4)),
                 verdict: .malformedL4),
        DropCase(name: "TCP data offset 6 beyond 20-byte segment",
                 frame: Make.ipFrame(TestFrames.tcp(srcPort: 1, dstPort: 443, dataOffset: 6)), verdict: .malformedL4),
        DropCase(name: "UDP 7 bytes",
                 frame: Make.ipFrame(Array(Make.dnsQuery().prefix(7)), to: "10.0.1.101", proto: 17),
                 verdict: .malformedL4),
        DropCase(name: "UDP length 7", frame: Make.ipFrame(Make.dnsQuery(length: 7), to: "10.0.1.101", proto: 17),
                 verdict: .malformedL4),
        DropCase(name: "UDP length > payload",
                 frame: Make.ipFrame(Make.dnsQuery(length: 13), to: "10.0.1.101", proto: 17),
                 verdict: .malformedL4),
        DropCase(name: "unknown address", frame: Make.frame(Make.tcp("10.0.1.200")), verdict: .noVIP),
        DropCase(name: "udp port without VIP", frame: Make.frame(Make.udp("10.0.1.101", 54)), verdict: .noVIP),
        DropCase(name: "udp to a tcp-only VIP address", frame: Make.frame(Make.udp("10.0.1.100", 443)),
                 verdict: .noVIP),
        DropCase(name: "tcp to a udp VIP port", frame: Make.frame(Make.tcp("10.0.1.101", 53)), verdict: .noVIP),
        DropCase(name: "the port's own address", frame: Make.frame(Make.tcp("10.0.1.2", 22)), verdict: .noVIP),
        DropCase(name: "all weights 0", frame: Make.frame(Make.tcp("10.0.1.102", 80)), verdict: .noBackend),
        DropCase(name: "l2 total 1501 at MTU 1500", frame: Make.frame(Make.tcp(payload: 1461)), verdict: .tooBig),
        // l3 needs 24 bytes in front: the outer header and room for a VLAN tag.
        DropCase(name: "l3 with 23 bytes of headroom", frame: Make.frame(Make.udp()), verdict: .tooBig, headroom: 23),
        DropCase(name: "l3 with 19 bytes of headroom", frame: Make.frame(Make.udp()), verdict: .tooBig, headroom: 19),
        DropCase(name: "l3 with no headroom", frame: Make.frame(Make.udp()), verdict: .tooBig, headroom: 0),
        DropCase(name: "ARP for another host", frame: Make.arpRequest(for: "10.0.1.50"), verdict: .arpIgnored),
        DropCase(name: "ARP for the gateway", frame: Make.arpRequest(for: "10.0.1.1"), verdict: .arpIgnored),
        DropCase(name: "ARP reply (opcode 2) about a VIP", frame: {
            var f = Make.arpRequest(for: "10.0.1.100"); f[21] = 2; return f
        }(), verdict: .arpIgnored),
        DropCase(name: "ARP hlen 8", frame: Make.arpRequest(for: "10.0.1.100", hlen: 8), verdict: .malformedARP),
        DropCase(name: "ARP plen 16", frame: Make.arpRequest(for: "10.0.1.100", plen: 16), verdict: .malformedARP),
        DropCase(name: "ARP 27 bytes", frame: Array(Make.arpRequest(for: "10.0.1.100").prefix(14 + 27)),
                 verdict: .malformedARP),
    ]

    @Test(arguments: dropCases)
    func dropIsNamedCountedAndLeavesFrameAlone(_ c: DropCase) throws {
        let dp = try TestDataplane()
        let r = dp.process(c.frame, headroom: c.headroom, checksum: c.checksum)
        #expect(r.outcome == FrameOutcome(c.verdict))
        #expect(r.inPlace == c.frame, "a dropped frame is not rewritten")
        #expect(dp.verdictCount(c.verdict) == 1)
        #expect(Verdict.allCases.map { dp.verdictCount($0) }.reduce(0, +) == 1)
        let targets = dp.layout.flowTable..<dp.layout.count
        #expect(targets.allSatisfy { dp.counters[$0] == 0 }, "no VIP, backend or flow counter moves")
    }

    /// An l3 packet that fits the MTU only without the outer header is not a drop: with DF the client gets
    /// ICMP "fragmentation needed" (a reply), without DF it is tunnelled as outer fragments (here 1480 + 1).
    @Test(arguments: [true, false])
    func l3InnerOf1481BytesAtMTU1500(dontFragment: Bool) throws {
        let dp = try TestDataplane()
        let r = dp.process(Make.frame(Make.udp(payload: 1453, flagsFragment: dontFragment ? 0x4000 : 0)))
        #expect(r.outcome.verdict == (dontFragment ? .icmpFragNeeded : .forwardedL3))
        #expect(r.outcome.fragments == (dontFragment ? 0 : 2))
        #expect(r.outcome.nextHop == (dontFragment ? 0 : 0x0A00_0215))
    }

    // MARK: - Boundaries that must pass

    struct AcceptCase: Sendable, CustomTestStringConvertible {
        var name: String
        var frame: [UInt8]
        var expected: [UInt8]
        var mode: DSRMode
        var checksum: ChecksumStatus = .unknown
        var headroom = 64
        var testDescription: String { name }
    }

    static func l2(_ name: String, _ frame: [UInt8], checksum: ChecksumStatus = .unknown,
                   backendMAC: [UInt8] = Make.webBackendMAC) -> AcceptCase {
        AcceptCase(name: name, frame: frame, expected: Make.l2Output(frame, backendMAC: backendMAC), mode: .l2,
                   checksum: checksum)
    }
    static func l3(_ name: String, _ frame: [UInt8], headroom: Int = 64,
                   backend: String = Make.dnsBackend) -> AcceptCase {
        AcceptCase(name: name, frame: frame, expected: Make.l3Output(frame, backend: backend), mode: .l3,
                   headroom: headroom)
    }

    static let acceptCases: [AcceptCase] = [
        l2("60-byte frame carrying 40 bytes of IP comes out 54 bytes", TestFrames.padded(Make.frame(Make.tcp()))),
        l2("total length equals the bytes present", Make.frame(Make.tcp(payload: 10))),
        l2("l2 total 1500 at MTU 1500", Make.frame(Make.tcp(payload: 1460))),
        l2("wrong checksum but the NIC says good", Make.ipFrame(Make.syn, checksum: 0x1234), checksum: .good),
        l2("IP options (IHL 6)", Make.ipFrame(Make.syn, options: [0x01, 0x01, 0x01, 0x00])),
        l2("TCP data offset 15 (40 bytes of options) filling the segment",
           Make.ipFrame(TestFrames.tcp(srcPort: 1, dstPort: 443, options: [UInt8](repeating: 1, count: 40)))),
        l2("DF without fragmentation", Make.frame(Make.tcp())),
        l2("tcp fragment goes to the address's `*` VIP",
           Make.ipFrame([UInt8](repeating: 9, count: 24), flagsFragment: 0x0003), backendMAC: Make.wildBackendMAC),
        l3("UDP length equals the bytes present", Make.frame(Make.udp(payload: 0))),
        l3("UDP length 8 with trailing bytes inside the IP packet",
           Make.ipFrame(Make.dnsQuery(length: 8), to: "10.0.1.101", proto: 17)),
        l3("l3 inner 1480 at MTU 1500", Make.frame(Make.udp(payload: 1452))),
        l3("l3 with exactly 24 bytes of headroom", Make.frame(Make.udp()), headroom: 24),
        l3("padded l3 frame is trimmed before encapsulation", TestFrames.padded(Make.frame(Make.udp(payload: 0)))),
        l3("tcp fragment goes to the address's only tcp VIP",
           Make.ipFrame(TestFrames.tcp(srcPort: 1, dstPort: 80), to: "10.0.1.101", flagsFragment: 0x2000),
           backend: Make.httpL3Backend),
    ]

    @Test(arguments: acceptCases)
    func boundaryFrameIsForwarded(_ c: AcceptCase) throws {
        let dp = try TestDataplane()
        let r = dp.process(c.frame, headroom: c.headroom, checksum: c.checksum)
        #expect(r.outcome == FrameOutcome(c.mode == .l3 ? .forwardedL3 : .forwardedL2, shift: c.mode == .l3 ? -20 : 0,
                                          length: UInt32(c.expected.count)))
        #expect(TestBytes.hexString(r.output) == TestBytes.hexString(c.expected))
    }

    // MARK: - VIP matching

    @Test(arguments: [(UInt16(443), true), (80, false), (8443, false), (1, false), (65535, false)])
    func exactPortWinsOverWildcard(port: UInt16, exact: Bool) throws {
        let dp = try TestDataplane()
        let input = Make.frame(Make.tcp("10.0.1.100", port))
        let r = dp.process(input)
        #expect(r.outcome.verdict == .forwardedL2)
        #expect(r.output == Make.l2Output(input, backendMAC: exact ? Make.webBackendMAC : Make.wildBackendMAC))
        #expect(dp.vipCounter(exact ? T.webVIP : T.wildVIP, CounterLayout.packets) == 1)
        #expect(dp.vipCounter(exact ? T.wildVIP : T.webVIP, CounterLayout.packets) == 0)
    }

    @Test func sameAddressDifferentProtocolsPickTheirOwnVIP() throws {
        let dp = try TestDataplane()
        let tcp = dp.process(Make.frame(Make.tcp("10.0.1.101", 80)))
        let udp = dp.process(Make.frame(Make.udp("10.0.1.101", 53)))
        #expect(tcp.output == Make.l3Output(Make.frame(Make.tcp("10.0.1.101", 80)), backend: Make.httpL3Backend))
        #expect(udp.output == Make.l3Output(Make.frame(Make.udp("10.0.1.101", 53)), backend: Make.dnsBackend))
    }

    // MARK: - Counters and flows

    @Test func countersAddUpOverAMixedBatch() throws {
        let dp = try TestDataplane()
        var outcomes: [Verdict] = []
        func run(_ frame: [UInt8]) -> ProcessedFrame {
            let r = dp.process(frame)
            outcomes.append(r.outcome.verdict)
            return r
        }
        // pool: 20 flows x 2 packets (padded when short: padding must not be counted).
        var poolPackets = [UInt64](repeating: 0, count: 3), poolBytes = [UInt64](repeating: 0, count: 3)
        var poolFlows = [UInt64](repeating: 0, count: 3)
        var poolTotalBytes: UInt64 = 0
        for n in 0..<20 {
            var backendOfFlow: Int?
            for size in [n, 100 + n] {
                let r = run(TestFrames.padded(Make.frame(Make.tcp("10.0.1.103", 443, srcPort: UInt16(50000 + n),
                                                                  payload: size))))
                let b = try #require(T.poolBackendMACs.firstIndex(of: Array(r.output.prefix(6))))
                if backendOfFlow == nil { backendOfFlow = b; poolFlows[b] += 1 }
                #expect(b == backendOfFlow, "a flow stays on its backend")
                poolPackets[b] += 1; poolBytes[b] += UInt64(54 + size); poolTotalBytes += UInt64(54 + size)
            }
        }
        #expect(poolFlows.allSatisfy { $0 > 0 }, "20 flows reach all 3 backends")
        for size in [0, 10, 20] { _ = run(TestFrames.padded(Make.frame(Make.tcp(srcPort: 41000, payload: size)))) }
        _ = run(Make.frame(Make.tcp("10.0.1.100", 80)))
        for src in [UInt16(1), 2] { _ = run(TestFrames.padded(Make.frame(Make.udp(srcPort: src)))) }
        _ = run(Make.frame(Make.tcp("10.0.1.200")))
        _ = run(Array(Self.web.prefix(13)))
        _ = run(TestFrames.ethernet(dst: T.portMAC, src: T.clientMAC, type: TestFrames.etherIPv6, payload: [0x60]))
        _ = run(Make.ipFrame(Make.syn, checksum: 0x1234))
        for src in [UInt16(1), 2] { _ = run(Make.frame(Make.tcp("10.0.1.102", 80, srcPort: src))) }
        _ = run(Make.arpRequest(for: "10.0.1.103"))
        _ = run(Make.arpRequest(for: "10.0.1.77"))

        let expected: [Verdict: UInt64] = [.forwardedL2: 44, .forwardedL3: 2, .arpReply: 1, .arpIgnored: 1,
                                           .noVIP: 1, .malformedFrame: 1, .malformedIPv6: 1, .badIPChecksum: 1,
                                           .noBackend: 2]
        for v in Verdict.allCases {
            #expect(dp.verdictCount(v) == expected[v, default: 0], "\(v)")
            #expect(dp.verdictCount(v) == UInt64(outcomes.filter { $0 == v }.count), "\(v)")
        }
        #expect(Verdict.allCases.map { dp.verdictCount($0) }.reduce(0, +) == UInt64(dp.processed))
        #expect(dp.processed == 54)

        // Per VIP: packets, bytes (frame without padding, before encapsulation), new flows.
        let vips: [(Int, UInt64, UInt64, UInt64)] = [
            (T.webVIP, 3, 54 + 64 + 74, 1), (T.wildVIP, 1, 54, 1), (T.dnsVIP, 2, 46 + 46, 2),
            (T.httpL3VIP, 0, 0, 0), (T.drainedVIP, 0, 0, 0), (T.poolVIP, 40, poolTotalBytes, 20),
        ]
        for (vip, packets, bytes, flows) in vips {
            #expect([dp.vipCounter(vip, CounterLayout.packets), dp.vipCounter(vip, CounterLayout.bytes),
                     dp.vipCounter(vip, CounterLayout.newFlows)] == [packets, bytes, flows], "VIP \(vip)")
        }
        // Per backend (global index: web 0, wild 1, dns 2, http-l3 3, drained 4-5, pool 6-8).
        var backends: [(Int, UInt64, UInt64, UInt64)] = [(0, 3, 192, 1), (1, 1, 54, 1), (2, 2, 92, 2), (3, 0, 0, 0),
                                                         (4, 0, 0, 0), (5, 0, 0, 0)]
        for b in 0..<3 { backends.append((T.poolBackendBase + b, poolPackets[b], poolBytes[b], poolFlows[b])) }
        for (backend, packets, bytes, flows) in backends {
            #expect([dp.backendCounter(backend, CounterLayout.packets), dp.backendCounter(backend, CounterLayout.bytes),
                     dp.backendCounter(backend, CounterLayout.newFlows)] == [packets, bytes, flows],
                    "backend \(backend)")
        }
        #expect([dp.flowCounter(CounterLayout.flowsInUse), dp.flowCounter(CounterLayout.flowInsertions),
                 dp.flowCounter(CounterLayout.flowEvictions), dp.flowCounter(CounterLayout.flowExpiries)]
                == [24, 24, 0, 0])
    }

    @Test(arguments: [(UInt32(30), false), (31, true)])
    func idleFlowIsNewAgainOnlyAfterTimeout(idle: UInt32, expired: Bool) throws {
        let dp = try TestDataplane()
        let first = dp.process(Make.frame(Make.tcp()), now: 1000)
        let second = dp.process(Make.frame(Make.tcp()), now: 1000 + idle)
        #expect(first.output == second.output)
        #expect(dp.vipCounter(T.webVIP, CounterLayout.newFlows) == (expired ? 2 : 1))
        #expect(dp.backendCounter(0, CounterLayout.newFlows) == (expired ? 2 : 1))
        #expect([dp.flowCounter(CounterLayout.flowsInUse), dp.flowCounter(CounterLayout.flowInsertions),
                  dp.flowCounter(CounterLayout.flowExpiries)] == [1, expired ? 2 : 1, expired ? 1 : 0])
    }
}
