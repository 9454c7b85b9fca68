// The worker's fast path takes exactly the established IPv4 flows it should, and does with them what processFrame does.

import Testing
import TulaCore
import TulaDatapath

@Suite struct FastPathTests {
    /// A frame of `TestTopology`: `client`:`srcPort` to `vip`:`dstPort`, TCP unless told.
    static func frame(vip: String = "10.0.1.100", dstPort: UInt16 = 443, srcPort: UInt16 = 40000, udp: Bool = false,
                      options: [UInt8] = [], flagsFragment: UInt16 = 0x4000, vlan: UInt16? = nil,
                      checksum: UInt16? = nil, tos: UInt8 = 0) -> [UInt8] {
        let l4 = udp ? TestFrames.udp(srcPort: srcPort, dstPort: dstPort, payload: [1, 2, 3, 4])
                     : TestFrames.tcp(srcPort: srcPort, dstPort: dstPort, flags: 0x10, payload: [1, 2, 3, 4])
        return TestFrames.ethernet(dst: TestTopology.portMAC, src: TestTopology.clientMAC, type: TestFrames.etherIPv4,
                                   vlan: vlan,
                                   payload: TestFrames.ipv4(src: TestTopology.client, dst: vip, proto: udp ? 17 : 6,
                                                            payload: l4, tos: tos, flagsFragment: flagsFragment,
                                                            options: options, checksum: checksum))
    }

    /// Runs `frame` through the fast path and then processFrame from the same state (the harness's comparison);
    /// fails on any difference, and returns whether the fast path took it.
    static func run(_ d: TestDataplane, _ frame: [UInt8], checksum: ChecksumStatus = .unknown, now: UInt32 = 1000,
                    headroom: Int = 64, sourceLocation: SourceLocation = #_sourceLocation) -> (took: Bool, verdict: Verdict) {
        let (run, took, mismatch) = d.harness.processComparingFastPath(frame, headroom: headroom, tailroom: 96,
                                                                      checksum: checksum, now: now)
        #expect(mismatch == nil, "\(mismatch ?? "")", sourceLocation: sourceLocation)
        return (took, run.outcome.verdict)
    }

    /// A flow's first packet pins it (processFrame); its next ones take the fast path, l2 and l3 (IP-in-IP with
    /// the inner TOS, identification and DF), TCP and UDP, exact and `*` VIPs, with the NIC's checksum or software's.
    @Test func establishedFlowsTakeTheFastPathAndComeOutAsProcessFrameHasThem() throws {
        let d = try TestDataplane()
        let cases: [(String, [UInt8], Verdict)] = [
            ("l2 tcp exact port", Self.frame(), .forwardedL2),
            ("l2 tcp `*` port", Self.frame(dstPort: 8080), .forwardedL2),
            ("l3 udp", Self.frame(vip: "10.0.1.101", dstPort: 53, udp: true, tos: 0xB8), .forwardedL3),
            ("l3 tcp, DF clear", Self.frame(vip: "10.0.1.101", dstPort: 80, flagsFragment: 0), .forwardedL3),
            ("l2 pool", Self.frame(vip: "10.0.1.103"), .forwardedL2),
        ]
        for (name, frame, verdict) in cases {
            let first = Self.run(d, frame)
            #expect(!first.took && first.verdict == verdict, "\(name): a new flow goes through processFrame")
            for status in [ChecksumStatus.unknown, .good] {
                let next = Self.run(d, frame, checksum: status)
                #expect(next.took && next.verdict == verdict, "\(name), checksum \(status): the pinned flow's next packet")
            }
        }
        #expect(d.verdictCount(.forwardedL2) == 9 && d.verdictCount(.forwardedL3) == 6)
    }

    /// What the fast path must leave to processFrame, pinned flow or not: each is declined untouched, and
    /// processFrame gives it its verdict (the comparison checks nothing was written or counted).
    @Test func everythingElseIsDeclinedUntouched() throws {
        let d = try TestDataplane()
        let pinned = Self.frame()
        _ = Self.run(d, pinned)
        #expect(Self.run(d, pinned).took)
        var otherMAC = pinned
        otherMAC[5] = 0x02
        var shortLength = pinned
        shortLength = Array(shortLength.prefix(40))
        var badUDPLength = Self.frame(vip: "10.0.1.101", dstPort: 53, udp: true)
        _ = Self.run(d, badUDPLength)
        badUDPLength[14 + 20 + 5] = 200
        let declined: [(String, [UInt8], ChecksumStatus, UInt32, Int)] = [
            ("tagged IPv6", TestFrames.ethernet(dst: TestTopology.portMAC, src: TestTopology.clientMAC,
                                               type: TestFrames.etherIPv6, vlan: 0, payload: [0x60] + [UInt8](repeating: 0, count: 60)),
             .unknown, 1000, 64),
            ("IPv4 options", Self.frame(options: [1, 1, 1, 0]), .unknown, 1000, 64),
            ("bad header checksum", Self.frame(checksum: 0x1234), .unknown, 1000, 64),
            ("NIC says the checksum is bad", pinned, .bad, 1000, 64),
            ("a fragment", Self.frame(flagsFragment: 0x2000), .unknown, 1000, 64),
            ("not our MAC", otherMAC, .unknown, 1000, 64),
            ("cut short", shortLength, .unknown, 1000, 64),
            ("UDP length past the packet", badUDPLength, .unknown, 1000, 64),
            ("idle past the timeout", pinned, .unknown, 1000 + 31, 64),
            ("new flow", Self.frame(srcPort: 40001), .unknown, 2000, 64),
            ("l3 without headroom", Self.frame(vip: "10.0.1.101", dstPort: 80), .unknown, 2000, 23),
            ("drained VIP", Self.frame(vip: "10.0.1.102", dstPort: 80), .unknown, 2000, 64),
            ("no VIP", Self.frame(vip: "10.0.1.199"), .unknown, 2000, 64),
        ]
        for (name, frame, status, now, headroom) in declined {
            if name == "l3 without headroom" { _ = Self.run(d, frame, now: now) } // pinned first, with headroom
            let r = Self.run(d, frame, checksum: status, now: now, headroom: headroom)
            #expect(!r.took, "\(name) must be declined (processFrame said \(r.verdict))")
        }
    }

    /// Tagged IPv4 keeps its tag: l2 to a backend without a VLAN, l3 with the tag `encapsulate` gives (the input's
    /// on a port without a VLAN, the port's with the input's priority on a VLAN port); another VLAN, or a backend
    /// with a VLAN of its own (a tag to rewrite), is processFrame's.
    @Test func taggedFramesTakeTheFastPathWithTheirTag() throws {
        let d = try TestDataplane()
        for (name, frame, verdict) in [("l2, priority tag", Self.frame(vlan: 0x6000), Verdict.forwardedL2),
                                       ("l2, VLAN 7", Self.frame(dstPort: 8080, vlan: 0x2007), .forwardedL2),
                                       ("l3, VLAN 7", Self.frame(vip: "10.0.1.101", dstPort: 80, vlan: 0xA007), .forwardedL3)] {
            #expect(Self.run(d, frame) == (false, verdict), "\(name): a new flow goes through processFrame")
            #expect(Self.run(d, frame) == (true, verdict), "\(name): the pinned flow's next packet")
        }
        let vlanPort = try TestDataplane(yaml: """
            ports:
              - {name: wan, device: net_null0, address: 10.0.1.2, mac: "02:00:00:00:00:01", gateway: 10.0.1.1,
                 gateway_mac: "02:00:00:00:00:fe", vlan: 100}
            vips:
              - {name: web, address: 10.0.1.100, port: 443, protocol: tcp, mode: l3, maglev_table_size: 251,
                 backends: [{address: 10.0.2.21}]}
              - {name: retag, address: 10.0.1.100, port: 80, protocol: tcp, mode: l2, maglev_table_size: 251,
                 backends: [{address: 10.0.1.21, mac: "02:00:00:00:02:21", vlan: 300}]}
            """)
        let ours = Self.frame(vlan: 0xE064), other = Self.frame(srcPort: 40002, vlan: 0x00C8)
        #expect(Self.run(vlanPort, ours) == (false, .forwardedL3))
        #expect(Self.run(vlanPort, ours) == (true, .forwardedL3), "VLAN 100 on the VLAN-100 port, l3")
        #expect(Self.run(vlanPort, other) == (false, .wrongVLAN))
        let retag = Self.frame(dstPort: 80, vlan: 0x0064)
        #expect(Self.run(vlanPort, retag) == (false, .forwardedL2))
        #expect(Self.run(vlanPort, retag) == (false, .forwardedL2), "a backend VLAN rewrites the tag: processFrame's")
    }

    /// IPv6 too: an established flow to an l2 VIP or a 6in6 one (the flow label from the contract hash) takes the
    /// fast path; 4in6, extension headers and a multicast source do not.
    @Test func establishedIPv6FlowsTakeTheFastPath() throws {
        let d = try TestDataplane(yaml: V6.yaml)
        let l2 = V6.frame(V6.ipv6(dst: V6.web6, next: 6, payload: V6.tcp()))
        let sixInSix = V6.frame(V6.ipv6(dst: V6.video6, next: 17, payload: V6.udp(5353), tc: 0x28))
        for (name, frame, verdict) in [("l2", l2, Verdict.forwardedL2), ("6in6", sixInSix, .forwardedL3)] {
            #expect(Self.run(d, frame) == (false, verdict), "\(name): a new flow goes through processFrame")
            #expect(Self.run(d, frame) == (true, verdict), "\(name): the pinned flow's next packet")
        }
        let fourInSix = Self.frame(vip: "10.0.1.150", dstPort: 443)
        #expect(Self.run(d, fourInSix).verdict == .forwardedL3)
        #expect(!Self.run(d, fourInSix).took, "4in6 is built out of line")
        let hopByHop = V6.frame(V6.ipv6(dst: V6.web6, next: 0, payload: [6, 0, 1, 4, 0, 0, 0, 0] + V6.tcp()))
        #expect(Self.run(d, hopByHop) == (false, .forwardedL2))
        #expect(Self.run(d, hopByHop) == (false, .forwardedL2), "extension headers are processFrame's")
        let multicastSource = V6.frame(V6.ipv6(src: "ff02::1", dst: V6.web6, next: 6, payload: V6.tcp()))
        #expect(!Self.run(d, multicastSource).took)
    }

    /// A prefix VIP's established flows take the fast path too (its lookup out of line), to any address of the prefix.
    @Test func prefixVIPFlowsTakeTheFastPath() throws {
        let d = try TestDataplane(yaml: """
            ports:
              - {name: wan, device: net_null0, address: 10.0.1.2, mac: "02:00:00:00:00:01", gateway: 10.0.1.1,
                 gateway_mac: "02:00:00:00:00:fe"}
            vips:
              - {name: block, address: 10.0.4.0/24, port: 443, protocol: tcp, mode: l2, maglev_table_size: 251,
                 backends: [{address: 10.0.1.11, mac: "02:00:00:00:01:11"}]}
            """)
        for host in [0, 7, 255] {
            let frame = Self.frame(vip: "10.0.4.\(host)")
            #expect(Self.run(d, frame) == (false, .forwardedL2))
            #expect(Self.run(d, frame) == (true, .forwardedL2), "10.0.4.\(host)")
        }
        #expect(Self.run(d, Self.frame(vip: "10.0.5.1")) == (false, .noVIP))
    }

    /// A flow pinned to a backend that no longer serves its VIP (a config change moved the slot) is re-picked by
    /// processFrame, not forwarded by the fast path.
    @Test func aFlowWhoseBackendLeftItsVIPIsDeclined() throws {
        let d = try TestDataplane()
        let frame = Self.frame()
        _ = Self.run(d, frame)
        let slot = Int(d.tables.pointee.vips[TestTopology.webVIP].table[0])
        let saved = d.tables.pointee.backends[slot].vipSlot
        d.tables.pointee.backends[slot].vipSlot = 99
        #expect(!Self.run(d, frame).took)
        d.tables.pointee.backends[slot].vipSlot = saved
    }
}
