// Tests for prefix VIPs, port ranges and QUIC connection-ID stickiness: lookup precedence, ARP / neighbor discovery /
// echo / fragments inside a prefix, QUIC short headers routed by server id (a migrated client too), config mistakes.
import Foundation
import Testing
@testable import TulaCore
import TulaDatapath
@testable import TulaStats

enum Steer {
    /// Every VIP has one l2 backend whose MAC ends in the byte named in the comment, so the output MAC says which VIP won.
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
          - {name: exact, address: 203.0.113.5, port: 443, protocol: tcp, mode: l2, maglev_table_size: 251,
             backends: [{address: 10.0.1.11, mac: "02:00:00:00:01:11"}]}
          - {name: p28-443, address: 203.0.113.0/28, port: 443, protocol: tcp, mode: l2, maglev_table_size: 251,
             backends: [{address: 10.0.1.12, mac: "02:00:00:00:01:12"}]}
          - {name: p28-range, address: 203.0.113.0/28, port: "8000-8099", protocol: tcp, mode: l2, maglev_table_size: 251,
             backends: [{address: 10.0.1.13, mac: "02:00:00:00:01:13"}]}
          - {name: p28-any, address: 203.0.113.0/28, port: "*", protocol: tcp, mode: l2, maglev_table_size: 251,
             backends: [{address: 10.0.1.14, mac: "02:00:00:00:01:14"}]}
          - {name: p24-443, address: 203.0.113.0/24, port: 443, protocol: tcp, mode: l2, maglev_table_size: 251,
             backends: [{address: 10.0.1.15, mac: "02:00:00:00:01:15"}]}
          - {name: exact-range, address: 203.0.113.5, port: "8000-8099", protocol: tcp, mode: l2, maglev_table_size: 251,
             backends: [{address: 10.0.1.16, mac: "02:00:00:00:01:16"}]}
          - {name: exact-8080, address: 203.0.113.5, port: 8080, protocol: tcp, mode: l2, maglev_table_size: 251,
             backends: [{address: 10.0.1.17, mac: "02:00:00:00:01:17"}]}
          - {name: v6-block, address: "2001:db8:100::/120", port: 443, protocol: tcp, mode: l2, maglev_table_size: 251,
             backends: [{address: "2001:db8:1::18", mac: "02:00:00:00:01:18"}]}
          - name: quic
            address: 198.51.100.10
            port: 443
            protocol: udp
            mode: l2
            quic: true
            maglev_table_size: 307
            backends:
              - {address: 10.0.1.21, mac: "02:00:00:00:01:21", quic_server_id: 257}
              - {address: 10.0.1.22, mac: "02:00:00:00:01:22", quic_server_id: 131844}
              - {address: 10.0.1.23, mac: "02:00:00:00:01:23", quic_server_id: 9}
          - {name: quic6, address: "2001:db8:200::443", port: 443, protocol: udp, mode: l2, quic: true, maglev_table_size: 251,
             backends: [{address: "2001:db8:1::31", mac: "02:00:00:00:01:31", quic_server_id: 5},
                        {address: "2001:db8:1::32", mac: "02:00:00:00:01:32", quic_server_id: 6}]}
        """
    static let portMAC = TestBytes.mac("02:00:00:00:00:01")
    static let clientMAC = TestBytes.mac("02:00:00:00:aa:01")

    static func tcp(to dst: String, port: UInt16, from src: String = "192.0.2.10", srcPort: UInt16 = 40000,
                    fragment: UInt16 = 0x4000) -> [UInt8] {
        TestFrames.ethernet(dst: portMAC, src: clientMAC, type: 0x0800,
                            payload: TestFrames.ipv4(src: src, dst: dst, proto: 6, payload: TestFrames.tcp(srcPort: srcPort, dstPort: port),
                                                     flagsFragment: fragment))
    }

    static func udp(to dst: String = "198.51.100.10", port: UInt16 = 443, from src: String, srcPort: UInt16,
                    payload: [UInt8]) -> [UInt8] {
        TestFrames.ethernet(dst: portMAC, src: clientMAC, type: 0x0800,
                            payload: TestFrames.ipv4(src: src, dst: dst, proto: 17,
                                                     payload: TestFrames.udp(srcPort: srcPort, dstPort: port, payload: payload)))
    }

    /// A version-1 connection ID (16-bit server id after the 2 version bits), 8 bytes.
    static func cidV1(_ id: UInt16) -> [UInt8] {
        [0x40 | UInt8(id >> 10), UInt8(truncatingIfNeeded: id >> 2), UInt8(truncatingIfNeeded: id << 6), 0xA1, 0xA2, 0xA3, 0xA4, 0xA5]
    }
    /// A version-2 connection ID (24-bit server id in bytes 1...3), 8 bytes.
    static func cidV2(_ id: UInt32) -> [UInt8] {
        [0x80, UInt8(id >> 16), UInt8(truncatingIfNeeded: id >> 8), UInt8(truncatingIfNeeded: id), 0xB1, 0xB2, 0xB3, 0xB4]
    }
    /// A QUIC 1-RTT (short header) packet: fixed bit set, then the destination CID, a packet number and protected bytes.
    static func shortHeader(_ cid: [UInt8]) -> [UInt8] { [0x41] + cid + [0x07] + [UInt8](repeating: 0x33, count: 20) }
    /// A QUIC Initial (long header): version 1, DCID and SCID lengths and values, then the rest.
    static func initial(dcid: [UInt8]) -> [UInt8] {
        [0xC3, 0, 0, 0, 1, UInt8(dcid.count)] + dcid + [8, 1, 2, 3, 4, 5, 6, 7, 8] + [UInt8](repeating: 0, count: 24)
    }

    static func backendByte(_ output: [UInt8]) -> UInt8 { output[5] }
}

@Suite struct SteeringTests {
    @Test func precedenceExactAddressThenLongerPrefixThenPortRangeAny() throws {
        let dp = try TestDataplane(yaml: Steer.yaml)
        let cases: [(String, UInt16, UInt8?, String)] = [
            ("203.0.113.5", 443, 0x11, "exact address and port"),
            ("203.0.113.5", 8080, 0x17, "a port beats a range on the same address"),
            ("203.0.113.5", 8001, 0x16, "a range on the exact address"),
            ("203.0.113.5", 22, 0x14, "nothing on the exact address: the /28's *"),
            ("203.0.113.6", 443, 0x12, "the /28's port beats the /24's"),
            ("203.0.113.6", 8099, 0x13, "the /28's range (last port)"),
            ("203.0.113.6", 8100, 0x14, "past the range: the /28's *"),
            ("203.0.113.15", 22, 0x14, "last address of the /28"),
            ("203.0.113.16", 443, 0x15, "outside the /28: the /24"),
            ("203.0.113.200", 22, nil, "the /24 has no *"),
            ("203.0.114.6", 443, nil, "outside every prefix"),
        ]
        for (dst, port, backend, why) in cases {
            let r = dp.process(Steer.tcp(to: dst, port: port))
            if let backend {
                #expect(r.outcome.verdict == .forwardedL2, "\(why)")
                #expect(r.outcome.verdict != .forwardedL2 || Steer.backendByte(r.output) == backend, "\(why)")
            } else {
                #expect(r.outcome.verdict == .noVIP, "\(why)")
            }
        }
        // The same prefix and port over UDP is no VIP: protocols never mix.
        #expect(dp.process(Steer.udp(to: "203.0.113.6", from: "192.0.2.10", srcPort: 1, payload: [1])).outcome.verdict == .noVIP)
        // An l2 prefix VIP still rewrites only the MACs.
        let input = Steer.tcp(to: "203.0.113.9", port: 8050)
        let r = dp.process(input)
        #expect(TestBytes.hexString(r.output) == TestBytes.hexString(TestBytes.mac("02:00:00:00:01:13") + Steer.portMAC + Array(input[12...])))
        #expect(dp.vipCounter(2, CounterLayout.packets) == 2, "8099 and 8050 to the /28 range")
    }

    @Test func ipv6PrefixVIPs() throws {
        let dp = try TestDataplane(yaml: Steer.yaml)
        let inside = V6.frame(V6.ipv6(dst: "2001:db8:100::ab", next: 6, payload: V6.tcp(443)), dstMAC: Steer.portMAC)
        let r = dp.process(inside)
        #expect(r.outcome.verdict == .forwardedL2 && Steer.backendByte(r.output) == 0x18)
        let outside = V6.frame(V6.ipv6(dst: "2001:db8:100::1ab", next: 6, payload: V6.tcp(443)), dstMAC: Steer.portMAC)
        #expect(dp.process(outside).outcome.verdict == .noVIP)
        // Neighbor discovery answers for any address of the prefix, with the exact advertisement bytes.
        let target = "2001:db8:100::ab"
        let ns = NDPFrames.solicitation(senderMAC: MACAddress(2, 0, 0, 0, 0xAA, 1), source: IPv6Address("2001:db8:1::99")!,
                                        target: IPv6Address(target)!, vlan: nil)
        let advert = V6.icmp6(src: target, dst: "2001:db8:1::99", [136, 0, 0, 0, 0x60, 0, 0, 0] + V6.a(target) + [2, 1] + Steer.portMAC)
        let expected = Steer.clientMAC + Steer.portMAC + [0x86, 0xDD, 0x60, 0, 0, 0, 0, 32, 58, 255]
            + V6.a(target) + V6.a("2001:db8:1::99") + advert
        let answer = dp.process(ns)
        #expect(answer.outcome == FrameOutcome(.ndReply, shift: 0, length: 86))
        #expect(TestBytes.hexString(answer.output) == TestBytes.hexString(expected))
        let outsideNS = NDPFrames.solicitation(senderMAC: MACAddress(2, 0, 0, 0, 0xAA, 1), source: IPv6Address("2001:db8:1::99")!,
                                               target: IPv6Address("2001:db8:100::1ab")!, vlan: nil)
        #expect(dp.process(outsideNS).outcome.verdict == .ndIgnored)
    }

    @Test func arpEchoAndFragmentsInsideAPrefix() throws {
        let dp = try TestDataplane(yaml: Steer.yaml)
        let request = TestFrames.ethernet(dst: TestBytes.mac("ff:ff:ff:ff:ff:ff"), src: Steer.clientMAC, type: 0x0806,
            payload: TestFrames.arp(op: 1, senderMAC: Steer.clientMAC, senderIP: "203.0.113.1", targetMAC: [0, 0, 0, 0, 0, 0],
                                    targetIP: "203.0.113.9"))
        let r = dp.process(request)
        let reply = Steer.clientMAC + Steer.portMAC + [0x08, 0x06]
            + TestFrames.arp(op: 2, senderMAC: Steer.portMAC, senderIP: "203.0.113.9", targetMAC: Steer.clientMAC, targetIP: "203.0.113.1")
        #expect(r.outcome == FrameOutcome(.arpReply, shift: 0, length: UInt32(request.count)))
        #expect(TestBytes.hexString(r.output) == TestBytes.hexString(reply))
        // 203.0.113.77 is in the /24 (a VIP with only port 443): answered too. 203.0.114.1 is in no prefix.
        var other = request
        other[14 + 24 ..< 14 + 28] = [203, 0, 113, 77]
        #expect(dp.process(other).outcome.verdict == .arpReply)
        other[14 + 24 ..< 14 + 28] = [203, 0, 114, 1]
        #expect(dp.process(other).outcome.verdict == .arpIgnored)

        let echo = TestFrames.ethernet(dst: Steer.portMAC, src: Steer.clientMAC, type: 0x0800,
            payload: TestFrames.ipv4(src: "192.0.2.10", dst: "203.0.113.9", proto: 1,
                                     payload: TestFrames.icmp(type: 8, code: 0, rest: [0, 7, 0, 1], payload: [9, 9])))
        let pong = dp.process(echo)
        #expect(pong.outcome.verdict == .icmpEchoReply)
        #expect(Array(pong.output[26..<34]) == TestBytes.ip("203.0.113.9") + TestBytes.ip("192.0.2.10"))
        #expect(pong.output[34] == 0, "echo reply")

        // A TCP fragment (offset 185 * 8) to an address of the /28 goes to its * VIP.
        let fragment = dp.process(Steer.tcp(to: "203.0.113.9", port: 443, fragment: 185))
        #expect(fragment.outcome.verdict == .forwardedL2 && Steer.backendByte(fragment.output) == 0x14)
        // 203.0.113.5 has TCP VIPs of its own on several ports and no *: its fragments have no VIP, as before.
        #expect(dp.process(Steer.tcp(to: "203.0.113.5", port: 443, fragment: 185)).outcome.verdict == .fragment)
    }

    @Test func quicShortHeadersFollowTheServerIDEvenAfterMigration() throws {
        let dp = try TestDataplane(yaml: Steer.yaml)
        // Hand-checked layout: server id 257 = 0b00000001_00000001 after the version bits 01.
        #expect(Steer.cidV1(257).prefix(3) == [0x40, 0x40, 0x40])
        #expect(quicServerID(Steer.shortHeader(Steer.cidV1(257)), length: 9) == 257)
        #expect(quicServerID(Steer.shortHeader(Steer.cidV2(131844)), length: 9) == 131844)
        #expect(quicServerID(Steer.shortHeader(Steer.cidV1(257)), length: 8) == 0, "shorter than 1 + 8 bytes")
        let quicVIP = 8
        let backendOfID: [UInt8: [UInt8]] = [0x21: Steer.cidV1(257), 0x22: Steer.cidV2(131844), 0x23: Steer.cidV1(9)]

        // Handshake from the client's first address: a long header goes by Maglev (fallback).
        let hello = dp.process(Steer.udp(from: "192.0.2.10", srcPort: 5000, payload: Steer.initial(dcid: [1, 2, 3, 4, 5, 6, 7, 8])))
        #expect(hello.outcome.verdict == .forwardedL2)
        let server = Steer.backendByte(hello.output)
        let cid = try #require(backendOfID[server])
        #expect(dp.vipCounter(quicVIP, CounterLayout.quicFallback) == 1 && dp.vipCounter(quicVIP, CounterLayout.quicRouted) == 0)

        // The client migrates to an address and port that Maglev (and, once pinned, the flow table) sends elsewhere.
        var migrated: UInt16? = nil
        for srcPort in UInt16(6000)..<6100 {
            let probe = dp.process(Steer.udp(from: "198.18.7.7", srcPort: srcPort, payload: Steer.initial(dcid: [9, 9, 9, 9, 9, 9, 9, 9])))
            if Steer.backendByte(probe.output) != server { migrated = srcPort; break }
        }
        let newPort = try #require(migrated)
        let fallbacks = dp.vipCounter(quicVIP, CounterLayout.quicFallback)
        let input = Steer.udp(from: "198.18.7.7", srcPort: newPort, payload: Steer.shortHeader(cid))
        let moved = dp.process(input)
        #expect(moved.outcome == FrameOutcome(.forwardedL2, shift: 0, length: UInt32(input.count)))
        #expect(TestBytes.hexString(moved.output)
            == TestBytes.hexString(TestBytes.mac("02:00:00:00:01:\(String(server, radix: 16))") + Steer.portMAC + Array(input[12...])))
        #expect(dp.vipCounter(quicVIP, CounterLayout.quicRouted) == 1)
        // The old address too, and every backend by its own id.
        for (byte, id) in backendOfID {
            let r = dp.process(Steer.udp(from: "192.0.2.10", srcPort: 5000, payload: Steer.shortHeader(id)))
            #expect(Steer.backendByte(r.output) == byte)
        }
        #expect(dp.vipCounter(quicVIP, CounterLayout.quicRouted) == 4)
        // Unknown id, a CID version without an id, and a too-short payload fall back to the flow table (pinned: same backend).
        for payload in [Steer.shortHeader(Steer.cidV1(999)), Steer.shortHeader([0x00] + [UInt8](repeating: 1, count: 7)), [0x41, 0x40, 0x40]] {
            let r = dp.process(Steer.udp(from: "198.18.7.7", srcPort: newPort, payload: payload))
            #expect(r.outcome.verdict == .forwardedL2 && Steer.backendByte(r.output) != server)
        }
        #expect(dp.vipCounter(quicVIP, CounterLayout.quicFallback) == fallbacks + 3)
        #expect(dp.vipCounter(0, CounterLayout.quicRouted) == 0, "non-QUIC VIPs never count QUIC")
    }

    @Test func quicOverIPv6() throws {
        let dp = try TestDataplane(yaml: Steer.yaml)
        for (client, srcPort) in [("2001:db8:ff::10", UInt16(5000)), ("2001:db8:ee::77", 61000)] {
            for (id, byte) in [(UInt16(5), UInt8(0x31)), (6, 0x32)] {
                let udp = TestFrames.udp(srcPort: srcPort, dstPort: 443, payload: Steer.shortHeader(Steer.cidV1(id)))
                let r = dp.process(V6.frame(V6.ipv6(src: client, dst: "2001:db8:200::443", next: 17, payload: udp), dstMAC: Steer.portMAC))
                #expect(r.outcome.verdict == .forwardedL2 && Steer.backendByte(r.output) == byte, "\(client) id \(id)")
            }
        }
        #expect(dp.vipCounter(9, CounterLayout.quicRouted) == 4 && dp.vipCounter(9, CounterLayout.quicFallback) == 0)
    }

    @Test func statsCarryTheQUICCountersAndPrefixText() throws {
        let config = try ConfigLoader.parse(yaml: Steer.yaml, file: "t.yaml")
        #expect(config.vips[1].addressText == "203.0.113.0/28" && config.vips[2].portText == "8000-8099")
        #expect(config.vips[8].quic && config.vips[8].backends.map(\.quicServerID) == [257, 131844, 9])
        // The writer's YAML loads back to the same config.
        let again = try ConfigLoader.parse(yaml: ConfigWriter.yaml(config), file: "w.yaml")
        #expect(again.vips.map(\.addressText) == config.vips.map(\.addressText))
        #expect(again.vips.map(\.portText) == config.vips.map(\.portText))
        #expect(again.vips.map(\.quic) == config.vips.map(\.quic))
        #expect(again.vips[8].backends.map(\.quicServerID) == [257, 131844, 9])
    }
}

private let steeringBase = """
    ports:
      - name: wan
        device: net_null0
        address: 10.0.1.2
        mac: 02:00:00:00:00:01
    vips:
      - name: a
        address: 203.0.113.0/28
        port: 8000-8099
        protocol: udp
        mode: l2
        backends:
          - {address: 10.0.1.11, mac: "02:00:00:00:01:11"}

    """

private func steeringVIP(_ address: String, _ port: String, proto: String = "udp", extra: String = "",
                         backends: String = "      - {address: 10.0.1.12, mac: \"02:00:00:00:01:12\"}\n") -> String {
    steeringBase + "  - name: b\n    address: \(address)\n    port: \(port)\n    protocol: \(proto)\n    mode: l2\n" + extra
        + "    backends:\n" + backends
}

private let steeringMistakes: [Mistake] = [
    Mistake(what: "host bits in a prefix", yaml: steeringVIP("203.0.113.5/28", "80"),
            line: 15, reason: "vips[1].address: \"203.0.113.5/28\" has host bits set; the prefix is 203.0.113.0/28"),
    Mistake(what: "IPv4 prefix too short", yaml: steeringVIP("10.0.0.0/4", "80"),
            line: 15, reason: "vips[1].address: prefix length of \"10.0.0.0/4\" must be 8...32"),
    Mistake(what: "IPv6 prefix too short", yaml: steeringVIP("\"2001:db8::/48\"", "80"),
            line: 15, reason: "must be 64...128 for an IPv6 VIP"),
    Mistake(what: "prefix holding the port's address", yaml: steeringVIP("10.0.1.0/24", "80"),
            line: 15, reason: "is the own address of port \"wan\""),
    Mistake(what: "reversed range", yaml: steeringVIP("203.0.113.0/28", "9000-8000"),
            line: 16, reason: "vips[1].port: port range \"9000-8000\" must run from a lower port to a higher one"),
    Mistake(what: "range past 65535", yaml: steeringVIP("203.0.113.0/28", "9000-70000"),
            line: 16, reason: "invalid port range \"9000-70000\""),
    Mistake(what: "overlapping ranges on one prefix", yaml: steeringVIP("203.0.113.0/28", "8050-8150"),
            line: 14, reason: "vips[1]: ambiguous VIP 203.0.113.0/28 port 8050-8150/udp: its port range overlaps 8000-8099 of vips[0] \"a\""),
    Mistake(what: "the same prefix and range twice", yaml: steeringVIP("203.0.113.0/28", "8000-8099"),
            line: 14, reason: "ambiguous VIP 203.0.113.0/28 port 8000-8099/udp"),
    Mistake(what: "the same prefix and port twice", yaml: steeringVIP("203.0.113.0/28", "80") + "  - name: c\n    address: 203.0.113.0/28\n    port: 80\n    protocol: udp\n    mode: l2\n    backends:\n      - {address: 10.0.1.13, mac: \"02:00:00:00:01:13\"}\n",
            line: 21, reason: "vips[2]: duplicate VIP 203.0.113.0/28 port 80/udp, already defined by vips[1] \"b\""),
    Mistake(what: "too many range ports", yaml: steeringVIP("203.0.113.0/27", "1-65535") + "  - name: c\n    address: 203.0.113.0/26\n    port: 1-65535\n    protocol: udp\n    mode: l2\n    backends:\n      - {address: 10.0.1.13, mac: \"02:00:00:00:01:13\"}\n"
            + "  - name: d\n    address: 203.0.113.0/25\n    port: 1-65535\n    protocol: udp\n    mode: l2\n    backends:\n      - {address: 10.0.1.14, mac: \"02:00:00:00:01:14\"}\n"
            + "  - name: e\n    address: 203.0.113.0/24\n    port: 1-65535\n    protocol: udp\n    mode: l2\n    backends:\n      - {address: 10.0.1.15, mac: \"02:00:00:00:01:15\"}\n",
            line: 35, reason: "vips[4]: port ranges cover 262240 ports in all; at most 262144"),
    Mistake(what: "quic on a TCP VIP", yaml: steeringVIP("203.0.113.5", "443", proto: "tcp", extra: "    quic: true\n"),
            line: 19, reason: "vips[1].quic: quic: true needs protocol udp (QUIC runs over UDP), but VIP \"b\" is tcp"),
    Mistake(what: "duplicate quic_server_id", yaml: steeringVIP("203.0.113.5", "443", extra: "    quic: true\n",
            backends: "      - {address: 10.0.1.12, mac: \"02:00:00:00:01:12\", quic_server_id: 7}\n      - {address: 10.0.1.13, mac: \"02:00:00:00:01:13\", quic_server_id: 7}\n"),
            line: 22, reason: "vips[1].backends[1]: duplicate quic_server_id 7 (already backends[0] of VIP \"b\")"),
    Mistake(what: "quic_server_id without quic", yaml: steeringVIP("203.0.113.5", "443",
            backends: "      - {address: 10.0.1.12, mac: \"02:00:00:00:01:12\", quic_server_id: 7}\n"),
            line: 20, reason: "vips[1].backends[0]: quic_server_id needs quic: true on VIP \"b\""),
    Mistake(what: "quic_server_id 0", yaml: steeringVIP("203.0.113.5", "443", extra: "    quic: true\n",
            backends: "      - {address: 10.0.1.12, mac: \"02:00:00:00:01:12\", quic_server_id: 0}\n"),
            line: 21, reason: "quic_server_id: 0 is out of range"),
]

@Suite struct SteeringConfigTests {
    @Test(arguments: steeringMistakes)
    func mistakeIsRefusedWithLineAndReason(_ mistake: Mistake) {
        mistake.expectRefused()
    }

    @Test func unambiguousOverlapsAreAccepted() throws {
        // Nested prefixes, a port inside a range, a range and * on one prefix, and an exact address inside a prefix.
        let yaml = steeringVIP("203.0.113.0/24", "8000-8099") + "  - name: c\n    address: 203.0.113.0/28\n    port: 8050\n    protocol: udp\n    mode: l2\n    backends:\n      - {address: 10.0.1.13, mac: \"02:00:00:00:01:13\"}\n"
            + "  - name: d\n    address: 203.0.113.3\n    port: \"*\"\n    protocol: udp\n    mode: l2\n    backends:\n      - {address: 10.0.1.14, mac: \"02:00:00:00:01:14\"}\n"
        let config = try ConfigLoader.parse(yaml: yaml, file: "t.yaml")
        #expect(config.vips.map(\.addressText) == ["203.0.113.0/28", "203.0.113.0/24", "203.0.113.0/28", "203.0.113.3"])
        #expect(config.vips[0].port == 8000 && config.vips[0].portEnd == 8099)
        // A /32 is the single address.
        let single = try ConfigLoader.parse(yaml: steeringVIP("203.0.113.9/32", "80"), file: "t.yaml")
        #expect(single.vips[1].prefixLength == nil && single.vips[1].addressText == "203.0.113.9")
    }
}

@Suite struct SteeringStatsTests {
    @Test func quicCountersInTextJSONAndMetrics() throws {
        let config = try ConfigLoader.parse(yaml: Steer.yaml, file: "t.yaml")
        let layout = CounterLayout(ports: config.ports.count)
        var slots = CounterSlots()
        try slots.assign(config)
        var c = [UInt64](repeating: 0, count: layout.count)
        let quic = try #require(slots.slot(vip: "quic"))
        c[layout.vip(quic) + CounterLayout.quicRouted] = 41
        c[layout.vip(quic) + CounterLayout.quicFallback] = 3
        let summary = Summary(config: config, counters: c, layout: layout, slots: slots, elapsedSeconds: 1, mbufsInUse: 0, notes: [])
        let q = try #require(summary.vips.first { $0.name == "quic" })
        #expect(q.quic && q.quicRouted == 41 && q.quicFallback == 3)
        #expect(summary.vips[1].address == "203.0.113.0/28" && summary.vips[2].port == "8000-8099")
        #expect(summary.text().contains("quic 198.51.100.10:443/udp l2: 0 packets, 0 new flows, QUIC 41 routed by connection ID, 3 fallback"))
        // JSON: the quic VIP has both counters, other VIPs neither; they read back.
        let json = summary.json()
        #expect(json.contains("\"quic_routed\":41") && json.contains("\"quic_fallback\":3"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        let back = try Summary(json: object)
        #expect(back.vips.first { $0.name == "quic" }?.quicRouted == 41 && back.vips.first { $0.name == "exact" }?.quic == false)
        let metrics = PrometheusExposition.render(summary)
        #expect(metrics.contains("tula_vip_quic_routed_total{vip=\"quic\"} 41\n"))
        #expect(metrics.contains("tula_vip_quic_fallback_total{vip=\"quic\"} 3\n"))
        #expect(metrics.contains("tula_vip_quic_fallback_total{vip=\"quic6\"} 0\n"))
        #expect(!metrics.contains("tula_vip_quic_routed_total{vip=\"exact\"}"))
    }
}
