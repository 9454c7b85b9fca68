// Tests for GUE, GRE, per-flow outer sources and DSCP marking (issue 15): exact output bytes for each
// encapsulation and outer family, their MTU rules, and the config refusals with file:line.
import Testing
@testable import TulaCore
import TulaDatapath

enum Encap {
    /// One VIP per case on a dual-stack port; `extra` is spliced into the l3 IPv4 VIP `t4` and `extra6` into the
    /// IPv6 one `t6` (IPv6 backends: the outer header is IPv6).
    static func yaml(_ extra: String, _ extra6: String = "", l2Extra: String = "") -> String {
        """
        ports:
          - name: wan
            device: net_null0
            address: 10.0.1.2
            mac: 02:00:00:00:00:01
            gateway: 10.0.1.1
            gateway_mac: 02:00:00:00:00:fe
            address6: "2001:db8:1::2"
            gateway6: "2001:db8:1::1"
            gateway6_mac: "02:00:00:00:00:fd"
            mtu: 1500
        vips:
          - name: t4
            address: 10.0.1.100
            port: 443
            protocol: tcp
            mode: l3
            maglev_table_size: 251
        \(extra.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
            backends:
              - {address: 10.0.2.11}
          - name: t6
            address: "2001:db8:100::53"
            port: 53
            protocol: udp
            mode: l3
            maglev_table_size: 251
        \(extra6.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
            backends:
              - {address: "2001:db8:2::21"}
          - name: web
            address: 10.0.1.80
            port: 80
            protocol: tcp
            mode: l2
            maglev_table_size: 251
        \(l2Extra.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
            backends:
              - {address: 10.0.1.11, mac: "02:00:00:00:01:11"}
        """
    }
    static let portMAC = TestBytes.mac("02:00:00:00:00:01"), gatewayMAC = TestBytes.mac("02:00:00:00:00:fe")
    static let gateway6MAC = TestBytes.mac("02:00:00:00:00:fd"), clientMAC = TestBytes.mac("02:00:00:00:aa:01")

    /// The client's TCP packet to t4 (DF set, identification 0x1234).
    static func inner4(tos: UInt8 = 0, payload: Int = 4, dst: String = "10.0.1.100", dstPort: UInt16 = 443,
                       srcPort: UInt16 = 40000, df: Bool = true) -> [UInt8] {
        TestFrames.ipv4(src: "192.0.2.10", dst: dst, proto: 6,
                        payload: TestFrames.tcp(srcPort: srcPort, dstPort: dstPort, payload: [UInt8](repeating: 7, count: payload)),
                        tos: tos, flagsFragment: df ? 0x4000 : 0)
    }
    static func frame4(_ inner: [UInt8]) -> [UInt8] {
        TestFrames.ethernet(dst: portMAC, src: clientMAC, type: 0x0800, payload: inner)
    }
    static func hash4(srcPort: UInt16 = 40000, dstPort: UInt16 = 443) -> UInt64 {
        flowHash(src: IPv4Address("192.0.2.10")!.value, dst: IPv4Address("10.0.1.100")!.value,
                 srcPort: srcPort, dstPort: dstPort, proto: 6)
    }
    /// The client's UDP packet to t6.
    static func inner6(payload: Int = 4, tc: UInt8 = 0) -> [UInt8] {
        V6.ipv6(dst: "2001:db8:100::53", next: 17, payload: V6.udp(53, payload: payload), tc: tc)
    }
    static func ipv6Sum(src: [UInt8], dst: [UInt8], next: UInt8, _ payload: [UInt8]) -> UInt16 {
        let pseudo = UInt32(onesComplementSum(src + dst, 32)) + UInt32(payload.count) + UInt32(next)
        let sum = ~onesComplementSum(payload, payload.count, initial: pseudo)
        return sum == 0 ? 0xFFFF : sum
    }
}

@Suite struct EncapsulationTests {
    @Test func gueOverIPv4IsOuterUDPToPort6080WithAZeroChecksum() throws {
        let dp = try TestDataplane(yaml: Encap.yaml("encap: gue"))
        let inner = Encap.inner4(tos: 0x2A)
        let r = dp.process(Encap.frame4(inner))
        // Source port 0xC000 | hash bits 16...29; the hash of this 5-tuple gives 0xdb6a (checked against the golden
        // generator's independent flowHash in Python).
        let sport = 0xC000 | UInt16(truncatingIfNeeded: Encap.hash4() >> 16) & 0x3FFF
        #expect(sport == 0xDB6A)
        let udp = TestBytes.be16(sport) + [0x17, 0xC0] + TestBytes.be16(UInt16(8 + inner.count)) + [0, 0]
        let outer = TestFrames.ipv4(src: "10.0.1.2", dst: "10.0.2.11", proto: 17, payload: udp + inner, tos: 0x2A)
        let expected = Encap.gatewayMAC + Encap.portMAC + [0x08, 0x00] + outer
        #expect(r.outcome == FrameOutcome(.forwardedL3, shift: -28, length: UInt32(expected.count)))
        #expect(TestBytes.hexString(r.output) == TestBytes.hexString(expected))
        // By hand: 45 2a | total 20+8+44=72 (0x48) | id 1234 | DF | ttl 64, udp; UDP length 8+44.
        #expect(Array(r.output[14..<24]) == [0x45, 0x2A, 0x00, 0x48, 0x12, 0x34, 0x40, 0x00, 64, 17])
        #expect(Array(r.output[34..<42]) == [0xDB, 0x6A, 0x17, 0xC0, 0x00, 0x34, 0x00, 0x00])
        // Another port number: gue_port.
        let custom = try TestDataplane(yaml: Encap.yaml("encap: gue\ngue_port: 5555"))
        #expect(Array(custom.process(Encap.frame4(inner)).output[36..<38]) == [0x15, 0xB3])
    }

    @Test func greOverIPv4IsProtocol47WithAFourByteHeader() throws {
        let dp = try TestDataplane(yaml: Encap.yaml("encap: gre"))
        let inner = Encap.inner4()
        let r = dp.process(Encap.frame4(inner))
        let outer = TestFrames.ipv4(src: "10.0.1.2", dst: "10.0.2.11", proto: 47, payload: [0, 0, 0x08, 0x00] + inner)
        let expected = Encap.gatewayMAC + Encap.portMAC + [0x08, 0x00] + outer
        #expect(r.outcome == FrameOutcome(.forwardedL3, shift: -24, length: UInt32(expected.count)))
        #expect(TestBytes.hexString(r.output) == TestBytes.hexString(expected))
        #expect(Array(r.output[14..<24]) == [0x45, 0x00, 0x00, 0x44, 0x12, 0x34, 0x40, 0x00, 64, 47])
    }

    @Test func outerSourceIsPickedPerFlowFromThePrefix() throws {
        let dp = try TestDataplane(yaml: Encap.yaml("outer_source: 172.16.0.0/16"))
        var sources = Set<[UInt8]>()
        for srcPort in UInt16(40000)..<40016 {
            let inner = Encap.inner4(srcPort: srcPort)
            let r = dp.process(Encap.frame4(inner))
            let h = UInt32(truncatingIfNeeded: Encap.hash4(srcPort: srcPort) >> 32) & 0xFFFF
            let source = "172.16.\(h >> 8).\(h & 0xFF)"
            let expected = Encap.gatewayMAC + Encap.portMAC + [0x08, 0x00]
                + TestFrames.ipv4(src: source, dst: "10.0.2.11", proto: 4, payload: inner)
            #expect(TestBytes.hexString(r.output) == TestBytes.hexString(expected), "\(srcPort)")
            sources.insert(Array(r.output[26..<30]))
            // The same flow keeps its source.
            #expect(Array(dp.process(Encap.frame4(inner)).output[26..<30]) == Array(r.output[26..<30]))
        }
        #expect(sources.count >= 14, "16 flows spread over the /16")
        let first = dp.process(Encap.frame4(Encap.inner4())).output
        #expect(Array(first[26..<30]) == [172, 16, 0x22, 0x40], "hash bits 32...47 of the 5-tuple are 0x2240 (the golden generator's flow_hash)")
    }

    @Test func dscpMarksTheOuterHeaderAndRemarkTheInnerOne() throws {
        // dscp 46 (EF): outer TOS 0xb8 | the inner ECN bits (01).
        let marked = try TestDataplane(yaml: Encap.yaml("dscp: 46"))
        let inner = Encap.inner4(tos: 0x29)
        let r = marked.process(Encap.frame4(inner))
        let expected = Encap.gatewayMAC + Encap.portMAC + [0x08, 0x00]
            + TestFrames.ipv4(src: "10.0.1.2", dst: "10.0.2.11", proto: 4, payload: inner, tos: 0xB9)
        #expect(r.outcome == FrameOutcome(.forwardedL3, shift: -20, length: UInt32(expected.count)))
        #expect(TestBytes.hexString(r.output) == TestBytes.hexString(expected), "the inner packet is untouched")

        let remarked = try TestDataplane(yaml: Encap.yaml("dscp: 46\nremark: true"))
        let r2 = remarked.process(Encap.frame4(inner))
        let newInner = Encap.inner4(tos: 0xB9)
        let expected2 = Encap.gatewayMAC + Encap.portMAC + [0x08, 0x00]
            + TestFrames.ipv4(src: "10.0.1.2", dst: "10.0.2.11", proto: 4, payload: newInner, tos: 0xB9)
        #expect(TestBytes.hexString(r2.output) == TestBytes.hexString(expected2), "inner TOS and checksum rewritten")

        // l2: remark rewrites the packet's own DSCP; MACs as usual.
        let l2 = try TestDataplane(yaml: Encap.yaml("", l2Extra: "dscp: 10\nremark: true"))
        let web = Encap.inner4(tos: 0xFE, dst: "10.0.1.80", dstPort: 80)
        let r3 = l2.process(Encap.frame4(web))
        let expected3 = TestBytes.mac("02:00:00:00:01:11") + Encap.portMAC + [0x08, 0x00]
            + Encap.inner4(tos: 0x2A, dst: "10.0.1.80", dstPort: 80)
        #expect(r3.outcome == FrameOutcome(.forwardedL2, shift: 0, length: UInt32(expected3.count)))
        #expect(TestBytes.hexString(r3.output) == TestBytes.hexString(expected3))
    }

    @Test func gueAndGreOverIPv6() throws {
        let dp = try TestDataplane(yaml: Encap.yaml("", "encap: gue\ndscp: 46"))
        let inner = Encap.inner6(tc: 0x03)
        let r = dp.process(V6.frame(inner))
        let hash = flowHash6(srcHi: IPv6Address(V6.client)!.hi, srcLo: IPv6Address(V6.client)!.lo,
                             dstHi: IPv6Address("2001:db8:100::53")!.hi, dstLo: IPv6Address("2001:db8:100::53")!.lo,
                             srcPort: 40000, dstPort: 53, proto: 17)
        let label = UInt32(truncatingIfNeeded: hash >> 44)
        let sport = 0xC000 | UInt16(truncatingIfNeeded: hash >> 16) & 0x3FFF
        var udp = TestBytes.be16(sport) + [0x17, 0xC0] + TestBytes.be16(UInt16(8 + inner.count)) + [0, 0] + inner
        let sum = Encap.ipv6Sum(src: V6.a("2001:db8:1::2"), dst: V6.a("2001:db8:2::21"), next: 17, udp)
        udp[6] = UInt8(sum >> 8); udp[7] = UInt8(sum & 0xFF)
        // Traffic class 0xbb: DSCP 46, the inner ECN 11.
        let expected = Encap.gateway6MAC + Encap.portMAC + [0x86, 0xDD]
            + [0x6B, 0xB0 | UInt8(label >> 16), UInt8(label >> 8 & 0xFF), UInt8(label & 0xFF)]
            + TestBytes.be16(UInt16(udp.count)) + [17, 64] + V6.a("2001:db8:1::2") + V6.a("2001:db8:2::21") + udp
        #expect(r.outcome == FrameOutcome(.forwardedL3, shift: -48, length: UInt32(expected.count)))
        #expect(TestBytes.hexString(r.output) == TestBytes.hexString(expected))
        // The UDP checksum verifies over the pseudo-header (sum of everything = 0xffff).
        let datagram = Array(r.output[(14 + 40)...])
        let check = UInt32(onesComplementSum(Array(r.output[22..<54]), 32)) + UInt32(datagram.count) + 17
        #expect(onesComplementSum(datagram, datagram.count, initial: check) == 0xFFFF)

        let gre = try TestDataplane(yaml: Encap.yaml("", "encap: gre\nouter_source: \"2001:db8:ff::/112\""))
        let g = gre.process(V6.frame(inner)).output
        #expect(g.count == 14 + 40 + 4 + inner.count)
        #expect(Array(g[18..<22]) == TestBytes.be16(UInt16(4 + inner.count)) + [47, 64])
        #expect(Array(g[22..<36]) == Array(V6.a("2001:db8:ff::")[0..<14]), "the /112's network part")
        let low = UInt16(truncatingIfNeeded: (hash >> 32 | hash << 32) & 0xFFFF)
        #expect(Array(g[36..<38]) == TestBytes.be16(low), "host bits from the flow hash")
        #expect(Array(g[54..<58]) == [0, 0, 0x86, 0xDD] && Array(g[58...]) == inner)
    }

    @Test func mtuRulesSubtractEachEncapsulationsOverhead() throws {
        for (extra, overhead) in [("encap: gue", 28), ("encap: gre", 24), ("outer_source: 172.16.0.0/16", 20)] {
            let dp = try TestDataplane(yaml: Encap.yaml(extra))
            // Largest that fits: 1500 - overhead bytes of inner packet (20 IP + 20 TCP + payload).
            let fits = dp.process(Encap.frame4(Encap.inner4(payload: 1500 - overhead - 40)))
            #expect(fits.outcome.verdict == .forwardedL3 && fits.output.count == 14 + 1500, "\(extra)")
            let big = dp.process(Encap.frame4(Encap.inner4(payload: 1500 - overhead - 39)))
            #expect(big.outcome.verdict == .icmpFragNeeded, "\(extra)")
            #expect(Array(big.output[14 + 20 + 6..<14 + 20 + 8]) == TestBytes.be16(UInt16(1500 - overhead)), "\(extra)")
            let noDF = dp.process(Encap.frame4(Encap.inner4(payload: 1500 - overhead - 39, df: false)))
            // IP-in-IP sends outer fragments; GUE and GRE are not fragmented (named drop).
            #expect(noDF.outcome.verdict == (overhead == 20 ? .forwardedL3 : .tooBig), "\(extra)")
        }
        for (extra6, overhead) in [("encap: gue", 48), ("encap: gre", 44)] {
            let dp = try TestDataplane(yaml: Encap.yaml("", extra6))
            let fits = dp.process(V6.frame(Encap.inner6(payload: 1500 - overhead - 48)))
            #expect(fits.outcome.verdict == .forwardedL3 && fits.output.count == 14 + 1500, "\(extra6)")
            let big = dp.process(V6.frame(Encap.inner6(payload: 1500 - overhead - 47)))
            #expect(big.outcome.verdict == .icmpPacketTooBig, "\(extra6)")
            #expect(Array(big.output[58..<62]) == [0, 0] + TestBytes.be16(UInt16(1500 - overhead)), "\(extra6)")
        }
    }

    /// Lines: the t4 VIP's extra settings start at line 19, t6's at 28, web's (l2) at 37.
    static let mistakes: [Mistake] = [
        Mistake(yaml: Encap.yaml("outer_source: \"2001:db8:ff::/112\""), line: 19,
                reason: "vips[0].outer_source: outer_source 2001:db8:ff::/112 is IPv6, but this VIP's outer header is IPv4"),
        Mistake(yaml: Encap.yaml("", "outer_source: 172.16.0.0/16"), line: 28, reason: "is IPv4, but this VIP's outer header is IPv6"),
        Mistake(yaml: Encap.yaml("outer_source: 172.16.0.1/16"), line: 19, reason: "has host bits set"),
        Mistake(yaml: Encap.yaml("outer_source: 172.16.0.0/33"), line: 19, reason: "invalid prefix"),
        Mistake(yaml: Encap.yaml("encap: gue\ngue_port: 0"), line: 20, reason: "vips[0].gue_port: GUE port 0"),
        Mistake(yaml: Encap.yaml("encap: gre\ngue_port: 6081"), line: 20, reason: "gue_port needs encap: gue"),
        Mistake(yaml: Encap.yaml("encap: vxlan"), line: 19, reason: "unknown encap \"vxlan\" (expected one of ipip, gue, gre)"),
        Mistake(yaml: Encap.yaml("dscp: 64"), line: 19, reason: "64 is out of range (expected 0...63)"),
        Mistake(yaml: Encap.yaml("remark: true"), line: 19, reason: "remark: true needs dscp"),
        Mistake(yaml: Encap.yaml("", l2Extra: "dscp: 10"), line: 37, reason: "an l2 VIP has no outer header to mark"),
        Mistake(yaml: Encap.yaml("", l2Extra: "encap: gre"), line: 37, reason: "encap applies to l3 VIPs only"),
    ]

    @Test(arguments: EncapsulationTests.mistakes)
    func badEncapsulationSettingsAreRefusedWithTheirLine(_ mistake: Mistake) {
        mistake.expectRefused()
    }

    @Test func settingsSurviveTheWriter() throws {
        let config = try ConfigLoader.parse(yaml: Encap.yaml("encap: gue\ngue_port: 5555\nouter_source: 172.16.0.0/16\ndscp: 46\nremark: true",
                                                             "encap: gre", l2Extra: "dscp: 8\nremark: true"), file: "tula.yaml")
        #expect(config.vips[0].encapsulation.kind == .gue && config.vips[0].encapsulation.guePort == 5555)
        #expect(config.vips[0].encapsulation.outerSource?.description == "172.16.0.0/16")
        var again = try ConfigLoader.parse(yaml: ConfigWriter.yaml(config), file: "saved.yaml")
        for i in again.vips.indices { again.vips[i].line = config.vips[i].line; for b in again.vips[i].backends.indices { again.vips[i].backends[b].line = config.vips[i].backends[b].line } }
        #expect(again.vips == config.vips)
    }
}
