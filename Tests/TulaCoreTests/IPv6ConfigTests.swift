// Tests for IPv6 in the control plane: address text (RFC 5952), the dual-stack config, its mistakes, edits, resolution.
import Foundation
import Testing
@testable import TulaCore
import TulaDatapath
@testable import TulaStats

/// The issue's dual-stack example: an IPv6 l2 VIP, a 6in6 VIP and a 4in6 VIP.
let dualStackConfig = """
    ports:
      - name: wan
        device: net_pcap0
        address: 10.0.1.2
        gateway: 10.0.1.1
        address6: "2001:db8:1::2"
        gateway6: "2001:db8:1::1"
        gateway6_mac: "02:00:00:00:00:fe"
    vips:
      - name: web6
        address: "2001:db8:100::80"
        port: 80
        protocol: tcp
        mode: l2
        backends:
          - {address: "2001:db8:1::11", mac: "02:00:00:00:01:11"}
      - name: video6
        address: "2001:db8:100::443"
        port: "*"
        protocol: udp
        mode: l3
        backends:
          - {address: "2001:db8:2::21"}
      - name: web4-over-v6
        address: 10.0.1.150
        port: 443
        protocol: tcp
        mode: l3
        backends:
          - {address: "2001:db8:2::31"}

    """
// Lines: 1 ports  2 - name  3 device  4 address  5 gateway  6 address6  7 gateway6  8 gateway6_mac  9 vips
// 10 - name: web6  11 address  12 port  13 protocol  14 mode  15 backends  16 backend
// 17 - name: video6  18 address  19 port  20 protocol  21 mode  22 backends  23 backend
// 24 - name: web4-over-v6  25 address  26 port  27 protocol  28 mode  29 backends  30 backend

private func dualStack(_ edits: (String, String)...) -> String {
    edits.reduce(dualStackConfig) { text, edit in
        precondition(text.contains(edit.0), "test bug: \(edit.0) is not in the config")
        return text.replacingOccurrences(of: edit.0, with: edit.1)
    }
}

private let v6Mistakes: [Mistake] = [
    Mistake(what: "an IPv6 l2 VIP with an IPv4 backend",
            yaml: dualStack(("{address: \"2001:db8:1::11\", mac:", "{address: 10.0.1.11, mac:")), line: 16,
            reason: "vips[0].backends[0]: an l2 VIP's backends are of the VIP's family: 10.0.1.11 is IPv4, the VIP is IPv6"),
    Mistake(what: "mixed backend families",
            yaml: dualStack(("      - {address: \"2001:db8:2::31\"}\n",
                             "      - {address: \"2001:db8:2::31\"}\n      - {address: 10.0.2.32}\n")), line: 31,
            reason: "vips[2].backends[1]: a VIP's backends are all of one family: 10.0.2.32 is IPv4, backends[0] 2001:db8:2::31 is IPv6"),
    Mistake(what: "an l3 IPv6 backend without gateway6 on the port",
            yaml: dualStack(("    gateway6: \"2001:db8:1::1\"\n    gateway6_mac: \"02:00:00:00:00:fe\"\n", "")), line: 19,
            reason: "vips[1].mode: l3 to IPv6 backends needs address6 and gateway6 on every port, but port \"wan\" has no gateway6"),
    Mistake(what: "an l3 IPv6 backend without address6 on the port",
            yaml: dualStack(("    address6: \"2001:db8:1::2\"\n    gateway6: \"2001:db8:1::1\"\n    gateway6_mac: \"02:00:00:00:00:fe\"\n", "")),
            line: 18, reason: "vips[1].mode: l3 to IPv6 backends needs address6 and gateway6 on every port, but port \"wan\" has no address6"),
    Mistake(what: "gateway6 without address6",
            yaml: dualStack(("    address6: \"2001:db8:1::2\"\n", "")), line: 6,
            reason: "ports[0].gateway6: gateway6 needs address6 on the port"),
    Mistake(what: "a bad IPv6 literal", yaml: dualStack(("\"2001:db8:100::80\"", "\"2001:db8::100::80\"")), line: 11,
            reason: "vips[0].address: invalid IPv6 address \"2001:db8::100::80\""),
    Mistake(what: "an IPv6 literal with a zone", yaml: dualStack(("\"2001:db8:1::11\"", "\"fe80::11%eth0\"")), line: 16,
            reason: "vips[0].backends[0].address: invalid IPv6 address \"fe80::11%eth0\""),
    Mistake(what: "a bad address6", yaml: dualStack(("address6: \"2001:db8:1::2\"", "address6: 10.0.1.3")), line: 6,
            reason: "ports[0].address6: invalid IPv6 address \"10.0.1.3\""),
    Mistake(what: "a multicast IPv6 VIP", yaml: dualStack(("\"2001:db8:100::80\"", "\"ff02::1\"")), line: 11,
            reason: "vips[0].address: ff02::1 is a multicast address"),
    Mistake(what: "an IPv4-mapped backend", yaml: dualStack(("\"2001:db8:1::11\"", "\"::ffff:10.0.1.11\"")), line: 16,
            reason: "::ffff:10.0.1.11 is an IPv4-mapped address; write the IPv4 address"),
    Mistake(what: "the port's own address6 as a VIP", yaml: dualStack(("\"2001:db8:100::80\"", "\"2001:db8:1::2\"")),
            line: 11, reason: "2001:db8:1::2 is the own address of port \"wan\""),
    Mistake(what: "an IPv6 VIP tunnelled to IPv4 backends (6in4)",
            yaml: dualStack(("      - {address: \"2001:db8:2::21\"}", "      - {address: 10.0.2.21}")), line: 23,
            reason: "an IPv6 VIP cannot be tunnelled to IPv4 backends (6in4 is not supported)"),
    Mistake(what: "address6 on a port with an MTU below 1280",
            yaml: dualStack(("    gateway: 10.0.1.1\n", "    gateway: 10.0.1.1\n    mtu: 1000\n")), line: 7,
            reason: "ports[0].address6: IPv6 needs a link MTU of at least 1280 (RFC 8200), but the port's mtu is 1000"),
    Mistake(what: "gateway6_mac without gateway6",
            yaml: dualStack(("    gateway6: \"2001:db8:1::1\"\n", ""), ("name: video6", "name: video6x"),
                            ("    mode: l3\n    backends:\n      - {address: \"2001:db8:2::21\"}", "    mode: l2\n    backends:\n      - {address: \"2001:db8:2::21\", mac: \"02:00:00:00:02:21\"}")),
            line: 7, reason: "ports[0].gateway6_mac: gateway6_mac needs gateway6"),
    Mistake(what: "a duplicate IPv6 VIP",
            yaml: dualStack(("address: \"2001:db8:100::443\"\n    port: \"*\"\n    protocol: udp",
                             "address: \"2001:db8:100::80\"\n    port: 80\n    protocol: tcp")), line: 17,
            reason: "duplicate VIP [2001:db8:100::80]:80/tcp, already defined by vips[0] \"web6\""),
]

@Suite struct IPv6ConfigTests {
    /// RFC 5952's rules: lowercase, no leading zeros, the longest zero run (first on a tie, at least two groups)
    /// as `::`, dotted quad only for IPv4-mapped addresses.
    @Test(arguments: [
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"), ("2001:0db8::0001", "2001:db8::1"),
        ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"), ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
        ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1"), ("0:0:0:0:0:0:0:0", "::"), ("::1", "::1"),
        ("fe80::", "fe80::"), ("::ffff:192.0.2.1", "::ffff:192.0.2.1"), ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"),
        ("2001:db8::0:1", "2001:db8::1"), ("0:1:0:0:0:0:0:0", "0:1::"),
    ])
    func addressesPrintCanonically(_ input: String, _ canonical: String) throws {
        let address = try #require(IPv6Address(input))
        #expect(address.description == canonical)
        #expect(IPv6Address(canonical) == address)
        #expect(IPAddress(input) == .v6(address))
    }

    @Test func addressBytesAndDerivedAddresses() throws {
        let a = try #require(IPv6Address("2001:db8:100::80"))
        #expect(a.hi == 0x2001_0DB8_0100_0000 && a.lo == 0x80)
        #expect(a.bytes == [0x20, 0x01, 0x0D, 0xB8, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80])
        let b = try #require(IPv6Address("2001:db8::12:3456"))
        #expect(b.solicitedNode.description == "ff02::1:ff12:3456")
        #expect(b.solicitedNode.multicastMAC.description == "33:33:ff:12:34:56")
        for bad in ["", "1.2.3.4", "2001:db8::1::2", "12345::", "2001:db8::g", "fe80::1%lo", ":::"] {
            #expect(IPv6Address(bad) == nil, "\(bad)")
        }
    }

    @Test func dualStackExampleLoads() throws {
        let config = try ConfigLoader.parse(yaml: dualStackConfig, file: "tula.yaml")
        let port = config.ports[0]
        #expect(port.address6 == IPv6Address("2001:db8:1::2") && port.gateway6 == IPv6Address("2001:db8:1::1"))
        #expect(port.gateway6MAC == MACAddress("02:00:00:00:00:fe"))
        #expect(config.vips.map(\.address.description) == ["2001:db8:100::80", "2001:db8:100::443", "10.0.1.150"])
        #expect(config.vips.map(\.backendFamily) == [.v6, .v6, .v6])
        #expect(config.vips[2].backends[0].address == .v6(IPv6Address("2001:db8:2::31")!))
        // Written back and read again, the config is the same.
        var again = try ConfigLoader.parse(yaml: ConfigWriter.yaml(config), file: "saved.yaml")
        again.ports = again.ports.map { var p = $0; p.line = config.ports[0].line; return p }
        #expect(again.ports == config.ports)
        #expect(again.vips.map(\.address) == config.vips.map(\.address))
        #expect(again.vips.flatMap(\.backends).map(\.address) == config.vips.flatMap(\.backends).map(\.address))
    }

    @Test(arguments: v6Mistakes)
    func mistakeIsRefusedWithLineAndReason(_ mistake: Mistake) {
        mistake.expectRefused()
    }

    @Test func liveEditsKeepOneFamilyPerVIP() throws {
        let config = try ConfigLoader.parse(yaml: dualStackConfig, file: "tula.yaml")
        let added = try ConfigEdit.addBackend(vip: "web6", backend: BackendConfig(address: IPAddress("2001:db8:1::12")!,
                                                                                    mac: MACAddress("02:00:00:00:01:12")))
            .applied(to: config)
        #expect(added.vips[0].backends.map(\.address.description) == ["2001:db8:1::11", "2001:db8:1::12"])
        #expect(throws: ControlError("VIP web6's backends are IPv6; 10.0.1.12 is IPv4")) {
            _ = try ConfigEdit.addBackend(vip: "web6", backend: BackendConfig(address: IPAddress("10.0.1.12")!)).applied(to: config)
        }
        #expect(throws: ControlError("ff02::1 is a multicast address")) {
            _ = try ConfigEdit.addBackend(vip: "video6", backend: BackendConfig(address: IPAddress("ff02::1")!)).applied(to: config)
        }
        let drained = try ConfigEdit.setWeight(vip: "web6", address: IPAddress("2001:db8:1:0::11")!, weight: 0).applied(to: config)
        #expect(drained.vips[0].backends[0].weight == 0)
    }

    @Test func gateway6AndMACLessIPv6BackendsAreResolvedByNeighborDiscovery() throws {
        let config = try ConfigLoader.parse(yaml: dualStack(("    gateway6_mac: \"02:00:00:00:00:fe\"\n", ""),
                                                            (", mac: \"02:00:00:00:01:11\"}", "}")), file: "tula.yaml")
        #expect(NeighborResolver.targets(config) == [.v6(IPv6Address("2001:db8:1::11")!): [0],
                                                     .v6(IPv6Address("2001:db8:1::1")!): [0]],
                "the IPv4 gateway is not asked: no l3 VIP tunnels to IPv4")
    }

    @Test func statsAndMetricsShowIPv6InCanonicalForm() throws {
        // Written in a non-canonical spelling: every output uses RFC 5952's.
        let config = try ConfigLoader.parse(yaml: dualStack(("\"2001:db8:1::11\"", "\"2001:DB8:1:0:0:0:0:0011\"")),
                                            file: "tula.yaml")
        let layout = CounterLayout(ports: 1)
        var slots = CounterSlots()
        try slots.assign(config)
        var counters = [UInt64](repeating: 0, count: layout.count)
        counters[layout.backend(try #require(slots.slot(backend: BackendKey(vip: "web6", address: IPAddress("2001:db8:1::11")!))))
                 + CounterLayout.packets] = 7
        let summary = Summary(config: config, counters: counters, layout: layout, slots: slots, elapsedSeconds: 1,
                              neighbors: [Summary.Neighbor(address: "2001:db8:1::1", state: "reachable", mac: "02:00:00:00:00:fe")])
        let families = try ExpositionParser.parse(PrometheusExposition.render(summary))
        #expect(families["tula_backend_packets_total"]?.samples.first { $0.labels["backend"] == "2001:db8:1::11" }?.value == 7)
        #expect(families["tula_vip_info"]?.samples.contains { $0.labels["address"] == "2001:db8:100::80" } == true)
        let json = summary.json()
        #expect(json.contains(#""address":"2001:db8:1::11""#) && json.contains(#""address":"2001:db8:100::80""#))
        #expect(summary.text().contains("web6 [2001:db8:100::80]:80/tcp l2"), "\(summary.text())")
    }

    @Test func theSolicitedNodeGroupsOfEveryIPv6AddressAreReported() throws {
        let config = try ConfigLoader.parse(yaml: dualStackConfig, file: "tula.yaml")
        let groups = NDPFrames.solicitedNodeGroups(config)
        #expect(groups.map(\.description) == ["ff02::1:ff00:2", "ff02::1:ff00:80", "ff02::1:ff00:443"])
        let report = NDPFrames.listenerReport(senderMAC: MACAddress(2, 0, 0, 0, 0, 1), groups: groups, vlan: nil)
        #expect(report.count == 14 + 40 + 8 + 8 + 3 * 20)
        #expect(Array(report[0..<6]) == TestBytes.mac("33:33:00:00:00:16") && report[20] == 0 && report[21] == 1,
                "to ff02::16's MAC, Hop-by-Hop first, hop limit 1")
        #expect(Array(report[54..<62]) == [58, 0, 5, 2, 0, 0, 1, 0], "Router Alert (MLD)")
        #expect(report[62] == 143 && Array(report[68..<70]) == [0, 3], "an MLDv2 report with three records")
    }

    @Test func neighborDiscoveryFramesAreWellFormed() throws {
        let mac = MACAddress(2, 0, 0, 0, 0, 1)
        let source = IPv6Address("2001:db8:1::2")!, target = IPv6Address("2001:db8:1::1")!
        let ns = NDPFrames.solicitation(senderMAC: mac, source: source, target: target, vlan: nil)
        #expect(TestBytes.hexString(ns) == "3333ff000001" + "020000000001" + "86dd" + "6000000000203aff"
            + "20010db8000100000000000000000002" + "ff0200000000000000000001ff000001"
            + "8700" + String(format: "%04x", ICMPv6Checksum.of(ns)) + "00000000" + "20010db8000100000000000000000001"
            + "0101020000000001")
        #expect(ICMPv6Checksum.verifies(ns))
        let na = NDPFrames.unsolicitedAdvertisement(senderMAC: mac, address: IPv6Address("2001:db8:100::80")!, vlan: 7)
        #expect(na.count == 90 && na[12] == 0x81 && na[16] == 0x86 && na[17] == 0xDD)
        #expect(ICMPv6Checksum.verifies(Array(na[0..<12] + na[16...])))
        // A worker hands an advertisement over: its target and link-layer address are learned.
        let answer = NDPFrames.frame(dstMAC: mac, srcMAC: MACAddress(2, 0, 0, 0, 0, 0xFE), vlan: nil,
                                     source: target, destination: source,
                                     icmp: [136, 0, 0, 0, 0x60, 0, 0, 0] + target.bytes + [2, 1, 2, 0, 0, 0, 0, 0xFE])
        let learned = answer.withUnsafeBytes { NDPFrames.advertised(in: $0.baseAddress!, length: answer.count) }
        #expect(learned?.0 == target && learned?.1 == MACAddress(2, 0, 0, 0, 0, 0xFE))
        // Without a target link-layer option there is nothing to learn.
        let bare = Array(answer.dropLast(8))
        var shortened = bare
        shortened[19] = 24
        #expect(shortened.withUnsafeBytes { NDPFrames.advertised(in: $0.baseAddress!, length: shortened.count) } == nil)
    }
}

/// The ICMPv6 checksum of an untagged Ethernet/IPv6/ICMPv6 frame without extension headers.
enum ICMPv6Checksum {
    static func sum(_ frame: [UInt8], zeroingChecksum: Bool) -> UInt16 {
        var icmp = Array(frame[54...])
        if zeroingChecksum { icmp[2] = 0; icmp[3] = 0 }
        var pseudo = UInt32(onesComplementSum(Array(frame[22..<54]), 32)) + UInt32(icmp.count) + 58
        pseudo = (pseudo & 0xFFFF) + (pseudo >> 16)
        return onesComplementSum(icmp, icmp.count, initial: pseudo)
    }
    /// The checksum the frame should carry.
    static func of(_ frame: [UInt8]) -> UInt16 { ~sum(frame, zeroingChecksum: true) }
    static func verifies(_ frame: [UInt8]) -> Bool { sum(frame, zeroingChecksum: false) == 0xFFFF }
}
