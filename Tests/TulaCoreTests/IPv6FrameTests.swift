// Tests for IPv6 frames through processFrame: exact bytes out for L2, 6in6, 4in6, neighbor discovery, echo,
// Packet Too Big, extension headers and fragments, and one named drop per kind of bad input.
import Testing
@testable import TulaCore
import TulaDatapath

/// Frame pieces for the dual-stack test topology.
enum V6 {
    static let yaml = """
        ports:
          - name: wan
            device: net_null0
            address: 10.0.1.2
            mac: 02:00:00:00:00:01
            address6: "2001:db8:1::2"
            gateway6: "2001:db8:1::1"
            gateway6_mac: "02:00:00:00:00:fe"
            mtu: 1500
        vips:
          - name: web6
            address: "2001:db8:100::80"
            port: 80
            protocol: tcp
            mode: l2
            maglev_table_size: 251
            backends:
              - {address: "2001:db8:1::11", mac: "02:00:00:00:01:11"}
          - name: video6
            address: "2001:db8:100::443"
            port: "*"
            protocol: udp
            mode: l3
            maglev_table_size: 251
            backends:
              - {address: "2001:db8:2::21"}
          - name: web4-over-v6
            address: 10.0.1.150
            port: 443
            protocol: tcp
            mode: l3
            maglev_table_size: 251
            backends:
              - {address: "2001:db8:2::31"}
          - name: quiet6
            address: "2001:db8:100::90"
            port: 80
            protocol: tcp
            mode: l2
            icmp_echo: false
            maglev_table_size: 251
            backends:
              - {address: "2001:db8:1::12", mac: "02:00:00:00:01:12"}
        """
    static let portMAC = TestBytes.mac("02:00:00:00:00:01")
    static let gatewayMAC = TestBytes.mac("02:00:00:00:00:fe")
    static let clientMAC = TestBytes.mac("02:00:00:00:aa:01")
    static let client = "2001:db8:ff::10", web6 = "2001:db8:100::80", video6 = "2001:db8:100::443"
    static let port6 = "2001:db8:1::2"

    static func a(_ text: String) -> [UInt8] { IPv6Address(text)!.bytes }

    /// An IPv6 header (traffic class `tc`, flow label 0) with `payload` after it.
    static func ipv6(src: String = client, dst: String, next: UInt8, payload: [UInt8], hopLimit: UInt8 = 64,
                     tc: UInt8 = 0, payloadLength: Int? = nil) -> [UInt8] {
        [0x60 | tc >> 4, tc << 4, 0, 0] + TestBytes.be16(UInt16(payloadLength ?? payload.count)) + [next, hopLimit]
            + a(src) + a(dst) + payload
    }

    static func frame(_ packet: [UInt8], dstMAC: [UInt8] = portMAC, srcMAC: [UInt8] = clientMAC) -> [UInt8] {
        dstMAC + srcMAC + [0x86, 0xDD] + packet
    }

    /// An ICMPv6 message with its checksum for (src, dst).
    static func icmp6(src: String, dst: String, _ message: [UInt8]) -> [UInt8] {
        var m = message
        m[2] = 0; m[3] = 0
        var pseudo = UInt32(onesComplementSum(a(src) + a(dst), 32)) + UInt32(m.count) + 58
        pseudo = (pseudo & 0xFFFF) + (pseudo >> 16)
        let sum = ~onesComplementSum(m, m.count, initial: pseudo)
        m[2] = UInt8(sum >> 8); m[3] = UInt8(sum & 0xFF)
        return m
    }

    static func tcp(_ dstPort: UInt16 = 80) -> [UInt8] { TestFrames.tcp(srcPort: 40000, dstPort: dstPort, payload: [1, 2, 3, 4]) }
    static func udp(_ dstPort: UInt16 = 53, payload: Int = 4) -> [UInt8] {
        TestFrames.udp(srcPort: 40000, dstPort: dstPort, payload: [UInt8](repeating: 0x5A, count: payload))
    }
}

struct V6DropCase: Sendable, CustomTestStringConvertible {
    var name: String
    var frame: [UInt8]
    var verdict: Verdict
    var testDescription: String { "\(verdict): \(name)" }
}

@Suite struct IPv6FrameTests {
    @Test func l2RewritesOnlyTheMACs() throws {
        let dp = try TestDataplane(yaml: V6.yaml)
        let input = V6.frame(V6.ipv6(dst: V6.web6, next: 6, payload: V6.tcp(), hopLimit: 7, tc: 0xB8))
        let r = dp.process(input)
        #expect(r.outcome == FrameOutcome(.forwardedL2, shift: 0, length: UInt32(input.count)))
        #expect(TestBytes.hexString(r.output) == TestBytes.hexString(TestBytes.mac("02:00:00:00:01:11") + V6.portMAC
            + Array(input[12...])), "the IPv6 packet is untouched, hop limit 7 included")
        // Padding after the payload is not sent on.
        let padded = dp.process(input + [0, 0, 0, 0])
        #expect(padded.outcome.length == UInt32(input.count))
        #expect(dp.verdictCount(.forwardedL2) == 2 && dp.vipCounter(0, CounterLayout.packets) == 2)
        #expect(dp.flowCounter(CounterLayout.flowInsertions) == 1, "an IPv6 flow is pinned once")
    }

    @Test func sixInSixCarriesTrafficClassAndFlowLabel() throws {
        let dp = try TestDataplane(yaml: V6.yaml)
        let inner = V6.ipv6(dst: V6.video6, next: 17, payload: V6.udp(), tc: 0xB8)
        let r = dp.process(V6.frame(inner))
        // Flow label 0xd88c7: the top 20 bits of flowHash6(client, VIP, 40000, 53, udp), computed independently.
        let expected = V6.gatewayMAC + V6.portMAC + [0x86, 0xDD, 0x6B, 0x8D, 0x88, 0xC7, 0x00, 0x34, 41, 64]
            + V6.a("2001:db8:1::2") + V6.a("2001:db8:2::21") + inner
        #expect(r.outcome == FrameOutcome(.forwardedL3, shift: -40, length: UInt32(expected.count)))
        #expect(TestBytes.hexString(r.output) == TestBytes.hexString(expected))
    }

    @Test func fourInSixCarriesTheIPv4Packet() throws {
        let dp = try TestDataplane(yaml: V6.yaml)
        let inner = TestFrames.ipv4(src: "192.0.2.10", dst: "10.0.1.150", proto: 6,
                                    payload: TestFrames.tcp(srcPort: 40000, dstPort: 443), tos: 0x10)
        let r = dp.process(TestFrames.ethernet(dst: V6.portMAC, src: V6.clientMAC, type: 0x0800, payload: inner))
        // Flow label 0xb46a8 = top 20 bits of flowHash(192.0.2.10, 10.0.1.150, 40000, 443, tcp).
        let expected = V6.gatewayMAC + V6.portMAC + [0x86, 0xDD, 0x61, 0x0B, 0x46, 0xA8]
            + TestBytes.be16(UInt16(inner.count)) + [4, 64] + V6.a("2001:db8:1::2") + V6.a("2001:db8:2::31") + inner
        #expect(r.outcome == FrameOutcome(.forwardedL3, shift: -40, length: UInt32(expected.count)))
        #expect(TestBytes.hexString(r.output) == TestBytes.hexString(expected))
    }

    @Test func neighborSolicitationsForOurAddressesAreAnswered() throws {
        let dp = try TestDataplane(yaml: V6.yaml)
        for target in [V6.port6, V6.web6] {
            let ns = NDPFrames.solicitation(senderMAC: MACAddress(2, 0, 0, 0, 0xAA, 1), source: IPv6Address("2001:db8:1::99")!,
                                            target: IPv6Address(target)!, vlan: nil)
            let r = dp.process(ns)
            let advert = V6.icmp6(src: target, dst: "2001:db8:1::99",
                                  [136, 0, 0, 0, 0x60, 0, 0, 0] + V6.a(target) + [2, 1] + V6.portMAC)
            let expected = V6.clientMAC + V6.portMAC + [0x86, 0xDD, 0x60, 0, 0, 0, 0, 32, 58, 255]
                + V6.a(target) + V6.a("2001:db8:1::99") + advert
            #expect(r.outcome == FrameOutcome(.ndReply, shift: 0, length: 86), "\(target)")
            #expect(TestBytes.hexString(r.output) == TestBytes.hexString(expected), "\(target)")
        }
        // Duplicate address detection: from ::, answered to all nodes without the Solicited flag.
        let dadMessage = V6.icmp6(src: "::", dst: "ff02::1:ff00:80", [135, 0, 0, 0, 0, 0, 0, 0] + V6.a(V6.web6))
        let dad = V6.frame(V6.ipv6(src: "::", dst: "ff02::1:ff00:80", next: 58, payload: dadMessage, hopLimit: 255),
                           dstMAC: TestBytes.mac("33:33:ff:00:00:80"))
        let r = dp.process(dad)
        #expect(r.outcome.verdict == .ndReply)
        #expect(Array(r.output[0..<6]) == TestBytes.mac("33:33:00:00:00:01"))
        #expect(Array(r.output[38..<54]) == V6.a("ff02::1") && r.output[58] == 0x20)
        #expect(ICMPv6Checksum.verifies(r.output))
        #expect(dp.verdictCount(.ndReply) == 3)
    }

    @Test func echoToAVIPIsAnswered() throws {
        let dp = try TestDataplane(yaml: V6.yaml)
        let request = V6.icmp6(src: V6.client, dst: V6.web6, [128, 0, 0, 0, 0x12, 0x34, 0, 1, 0xAB, 0xCD])
        let r = dp.process(V6.frame(V6.ipv6(dst: V6.web6, next: 58, payload: request, hopLimit: 9)))
        let reply = V6.icmp6(src: V6.web6, dst: V6.client, [129, 0, 0, 0, 0x12, 0x34, 0, 1, 0xAB, 0xCD])
        #expect(r.outcome == FrameOutcome(.icmpEchoReply, shift: 0, length: 14 + 40 + 10))
        #expect(TestBytes.hexString(r.output)
            == TestBytes.hexString(V6.clientMAC + V6.portMAC + [0x86, 0xDD] + V6.ipv6(src: V6.web6, dst: V6.client, next: 58, payload: reply)))
        let quiet = V6.icmp6(src: V6.client, dst: "2001:db8:100::90", [128, 0, 0, 0, 0, 1, 0, 1])
        #expect(dp.process(V6.frame(V6.ipv6(dst: "2001:db8:100::90", next: 58, payload: quiet))).outcome.verdict == .icmpIgnored)
    }

    @Test func tooBigForTheTunnelIsAnsweredWithPacketTooBig() throws {
        let dp = try TestDataplane(yaml: V6.yaml)
        // 1461 bytes of IPv6: one more than 1500 - 40 allows.
        let inner = V6.ipv6(dst: V6.video6, next: 17, payload: V6.udp(payload: 1461 - 48))
        let r = dp.process(V6.frame(inner))
        #expect(r.outcome == FrameOutcome(.icmpPacketTooBig, shift: 0, length: 14 + 48 + 1232))
        let out = r.output
        #expect(Array(out[0..<14]) == V6.clientMAC + V6.portMAC + [0x86, 0xDD])
        #expect(Array(out[14..<22]) == [0x60, 0, 0, 0, 0x04, 0xD8, 58, 64], "payload length 8 + 1232")
        #expect(Array(out[22..<38]) == V6.a(V6.video6) && Array(out[38..<54]) == V6.a(V6.client))
        #expect(Array(out[54..<56]) == [2, 0] && Array(out[58..<62]) == [0, 0, 0x05, 0xB4], "MTU 1460")
        #expect(Array(out[62...]) == Array(inner.prefix(1232)), "as much of the packet as fits 1280 bytes")
        #expect(ICMPv6Checksum.verifies(out))
        // 4in6: an IPv4 packet with DF set gets fragmentation needed with MTU 1460.
        let big4 = TestFrames.ipv4(src: "192.0.2.10", dst: "10.0.1.150", proto: 6,
                                   payload: TestFrames.tcp(srcPort: 40000, dstPort: 443, payload: [UInt8](repeating: 1, count: 1421)))
        let frag = dp.process(TestFrames.ethernet(dst: V6.portMAC, src: V6.clientMAC, type: 0x0800, payload: big4))
        #expect(frag.outcome.verdict == .icmpFragNeeded)
        #expect(Array(frag.output[14 + 20 + 6..<14 + 20 + 8]) == [0x05, 0xB4])
        // Without DF it cannot be tunnelled (an IPv6 outer header is never fragmented).
        var noDF = big4
        noDF[6] = 0
        noDF[10] = 0; noDF[11] = 0
        let sum = ~onesComplementSum(Array(noDF[0..<20]), 20)
        noDF[10] = UInt8(sum >> 8); noDF[11] = UInt8(sum & 0xFF)
        #expect(dp.process(TestFrames.ethernet(dst: V6.portMAC, src: V6.clientMAC, type: 0x0800, payload: noDF)).outcome.verdict == .tooBig)
    }

    @Test func extensionHeadersAreWalkedAndFragmentsStayTogether() throws {
        let dp = try TestDataplane(yaml: V6.yaml)
        let hopByHop: [UInt8] = [60, 0, 1, 4, 0, 0, 0, 0], destination: [UInt8] = [6, 0, 1, 4, 0, 0, 0, 0]
        let input = V6.frame(V6.ipv6(dst: V6.web6, next: 0, payload: hopByHop + destination + V6.tcp()))
        let r = dp.process(input)
        #expect(r.outcome.verdict == .forwardedL2)
        #expect(Array(r.output[12...]) == Array(input[12...]))
        // The first and a later fragment of one datagram: no ports, one label, both to the fragment VIP.
        let first = V6.frame(V6.ipv6(dst: V6.video6, next: 44, payload: [17, 0, 0x00, 0x01, 0, 0, 0, 7] + V6.udp(payload: 16)))
        let later = V6.frame(V6.ipv6(dst: V6.video6, next: 44, payload: [17, 0, 0x00, 0x18, 0, 0, 0, 7] + [UInt8](repeating: 9, count: 8)))
        let a = dp.process(first), b = dp.process(later)
        #expect(a.outcome.verdict == .forwardedL3 && b.outcome.verdict == .forwardedL3)
        #expect(Array(a.output[14..<18]) == Array(b.output[14..<18]), "the same flow label")
        #expect(dp.flowCounter(CounterLayout.flowInsertions) == 1, "fragments are never pinned (only the TCP flow is)")
    }

    static let dropCases: [V6DropCase] = [
        V6DropCase(name: "39 bytes of IPv6", frame: Array(V6.frame(V6.ipv6(dst: V6.web6, next: 6, payload: [])).prefix(14 + 39)),
                   verdict: .malformedIPv6),
        V6DropCase(name: "version 4 in an IPv6 frame",
                   frame: V6.frame([0x40] + Array(V6.ipv6(dst: V6.web6, next: 6, payload: V6.tcp()).dropFirst())),
                   verdict: .malformedIPv6),
        V6DropCase(name: "payload length 0", frame: V6.frame(V6.ipv6(dst: V6.web6, next: 6, payload: V6.tcp(), payloadLength: 0)),
                   verdict: .malformedIPv6),
        V6DropCase(name: "payload longer than the frame",
                   frame: V6.frame(V6.ipv6(dst: V6.web6, next: 6, payload: V6.tcp(), payloadLength: 100)), verdict: .malformedIPv6),
        V6DropCase(name: "multicast source", frame: V6.frame(V6.ipv6(src: "ff02::1", dst: V6.web6, next: 6, payload: V6.tcp())),
                   verdict: .badSourceAddress),
        V6DropCase(name: "unspecified source to a VIP", frame: V6.frame(V6.ipv6(src: "::", dst: V6.web6, next: 6, payload: V6.tcp())),
                   verdict: .badSourceAddress),
        V6DropCase(name: "another unicast MAC", frame: V6.frame(V6.ipv6(dst: V6.web6, next: 6, payload: V6.tcp()),
                                                               dstMAC: TestBytes.mac("02:00:00:00:00:99")), verdict: .notOurMAC),
        V6DropCase(name: "TCP to a VIP through a multicast MAC",
                   frame: V6.frame(V6.ipv6(dst: V6.web6, next: 6, payload: V6.tcp()), dstMAC: TestBytes.mac("33:33:00:00:00:01")),
                   verdict: .notOurMAC),
        V6DropCase(name: "TCP data offset 4", frame: V6.frame(V6.ipv6(dst: V6.web6, next: 6,
                   payload: TestFrames.tcp(srcPort: 1, dstPort: 80, dataOffset: 4))), verdict: .malformedL4),
        V6DropCase(name: "UDP length past the packet", frame: V6.frame(V6.ipv6(dst: V6.video6, next: 17,
                   payload: TestFrames.udp(srcPort: 1, dstPort: 53, length: 40))), verdict: .malformedL4),
        V6DropCase(name: "no next header (59)", frame: V6.frame(V6.ipv6(dst: V6.web6, next: 59, payload: [0, 0, 0, 0])),
                   verdict: .notTCPUDP),
        V6DropCase(name: "five extension headers", frame: V6.frame(V6.ipv6(dst: V6.web6, next: 60,
                   payload: [60, 0, 1, 4, 0, 0, 0, 0] + [60, 0, 1, 4, 0, 0, 0, 0] + [60, 0, 1, 4, 0, 0, 0, 0]
                       + [60, 0, 1, 4, 0, 0, 0, 0] + [6, 0, 1, 4, 0, 0, 0, 0] + V6.tcp())), verdict: .extensionHeaderLimit),
        V6DropCase(name: "136 bytes of destination options", frame: V6.frame(V6.ipv6(dst: V6.web6, next: 60,
                   payload: [6, 16, 1, 130] + [UInt8](repeating: 0, count: 132) + V6.tcp())), verdict: .extensionHeaderLimit),
        V6DropCase(name: "hop-by-hop after a routing header", frame: V6.frame(V6.ipv6(dst: V6.web6, next: 43,
                   payload: [0, 0, 0, 0, 0, 0, 0, 0] + [6, 0, 1, 4, 0, 0, 0, 0] + V6.tcp())), verdict: .malformedIPv6),
        V6DropCase(name: "an extension header past the payload", frame: V6.frame(V6.ipv6(dst: V6.web6, next: 60,
                   payload: [6, 3, 1, 4, 0, 0, 0, 0])), verdict: .malformedIPv6),
        V6DropCase(name: "no IPv6 VIP on that port", frame: V6.frame(V6.ipv6(dst: V6.web6, next: 6, payload: V6.tcp(81))),
                   verdict: .noVIP),
        V6DropCase(name: "NS with hop limit 64",
                   frame: V6.frame(V6.ipv6(src: "2001:db8:1::99", dst: "ff02::1:ff00:2", next: 58,
                   payload: V6.icmp6(src: "2001:db8:1::99", dst: "ff02::1:ff00:2", [135, 0, 0, 0, 0, 0, 0, 0] + V6.a(V6.port6)), hopLimit: 64),
                                   dstMAC: TestBytes.mac("33:33:ff:00:00:02")), verdict: .malformedND),
        V6DropCase(name: "NS with a bad checksum",
                   frame: V6.frame(V6.ipv6(src: "2001:db8:1::99", dst: "ff02::1:ff00:2", next: 58,
                   payload: [135, 0, 0x12, 0x34, 0, 0, 0, 0] + V6.a(V6.port6), hopLimit: 255),
                                   dstMAC: TestBytes.mac("33:33:ff:00:00:02")), verdict: .malformedND),
        V6DropCase(name: "NS for another host",
                   frame: V6.frame(V6.ipv6(src: "2001:db8:1::99", dst: "ff02::1:ff00:7", next: 58,
                   payload: V6.icmp6(src: "2001:db8:1::99", dst: "ff02::1:ff00:7", [135, 0, 0, 0, 0, 0, 0, 0] + V6.a("2001:db8:1::7")), hopLimit: 255),
                                   dstMAC: TestBytes.mac("33:33:ff:00:00:07")), verdict: .ndIgnored),
        V6DropCase(name: "router advertisement",
                   frame: V6.frame(V6.ipv6(src: "fe80::1", dst: "ff02::1", next: 58,
                   payload: V6.icmp6(src: "fe80::1", dst: "ff02::1", [134, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), hopLimit: 255),
                                   dstMAC: TestBytes.mac("33:33:00:00:00:01")), verdict: .ndIgnored),
        V6DropCase(name: "MLD query to all nodes",
                   frame: V6.frame(V6.ipv6(src: "fe80::1", dst: "ff02::1", next: 0,
                   payload: [58, 0, 5, 2, 0, 0, 1, 0] + V6.icmp6(src: "fe80::1", dst: "ff02::1", [130, 0, 0, 0, 0x27, 0x10, 0, 0] + [UInt8](repeating: 0, count: 16)),
                   hopLimit: 1), dstMAC: TestBytes.mac("33:33:00:00:00:01")), verdict: .ndIgnored),
        V6DropCase(name: "ICMPv6 fragment", frame: V6.frame(V6.ipv6(dst: V6.web6, next: 44, payload: [58, 0, 0, 1, 0, 0, 0, 1] + [128, 0, 0, 0])),
                   verdict: .fragment),
    ]

    @Test(arguments: dropCases)
    func badInputIsDroppedUnderItsName(_ c: V6DropCase) throws {
        let dp = try TestDataplane(yaml: V6.yaml)
        let r = dp.process(c.frame)
        #expect(r.outcome == FrameOutcome(c.verdict))
        #expect(dp.verdictCount(c.verdict) == 1)
        #expect(r.inPlace == c.frame, "a dropped frame is left as it came")
    }

    @Test func aNeighborAdvertisementToUsGoesToTheControlPlane() throws {
        let dp = try TestDataplane(yaml: V6.yaml)
        let advert = V6.icmp6(src: "2001:db8:1::1", dst: V6.port6,
                              [136, 0, 0, 0, 0x60, 0, 0, 0] + V6.a("2001:db8:1::1") + [2, 1] + V6.gatewayMAC)
        let frame = V6.frame(V6.ipv6(src: "2001:db8:1::1", dst: V6.port6, next: 58, payload: advert, hopLimit: 255),
                             srcMAC: V6.gatewayMAC)
        let r = dp.process(frame)
        #expect(r.outcome == FrameOutcome(.ndLearned, shift: 0, length: UInt32(frame.count)))
        let learned = r.inPlace.withUnsafeBytes { NDPFrames.advertised(in: $0.baseAddress!, length: frame.count) }
        #expect(learned?.0 == IPv6Address("2001:db8:1::1") && learned?.1 == MACAddress("02:00:00:00:00:fe"))
    }

    @Test func anICMPv6ErrorAboutAFlowGoesToItsBackend() throws {
        let dp = try TestDataplane(yaml: V6.yaml)
        // The backend's answer went web6:80 -> client:40000; a router on the way says Packet Too Big.
        let quoted = V6.ipv6(src: V6.web6, dst: V6.client, next: 6, payload: TestFrames.tcp(srcPort: 80, dstPort: 40000))
        let error = V6.icmp6(src: "2001:db8:9::1", dst: V6.web6, [2, 0, 0, 0, 0, 0, 0x05, 0x00] + quoted)
        let input = V6.frame(V6.ipv6(src: "2001:db8:9::1", dst: V6.web6, next: 58, payload: error))
        let r = dp.process(input)
        #expect(r.outcome.verdict == .forwardedL2)
        #expect(Array(r.output[0..<12]) == TestBytes.mac("02:00:00:00:01:11") + V6.portMAC)
        #expect(Array(r.output[12...]) == Array(input[12...]))
    }

    @Test func countersAddUp() throws {
        let dp = try TestDataplane(yaml: V6.yaml)
        var frames = Self.dropCases.map(\.frame)
        frames.append(V6.frame(V6.ipv6(dst: V6.web6, next: 6, payload: V6.tcp())))
        frames.append(V6.frame(V6.ipv6(dst: V6.video6, next: 17, payload: V6.udp())))
        frames.append(NDPFrames.solicitation(senderMAC: MACAddress(2, 0, 0, 0, 0xAA, 1), source: IPv6Address("2001:db8:1::99")!,
                                             target: IPv6Address(V6.port6)!, vlan: nil))
        for f in frames { _ = dp.process(f) }
        let total = Verdict.allCases.map { dp.verdictCount($0) }.reduce(0, +)
        #expect(total == UInt64(frames.count))
        #expect(dp.verdictCount(.forwardedL2) == 1 && dp.verdictCount(.forwardedL3) == 1 && dp.verdictCount(.ndReply) == 1)
    }
}
