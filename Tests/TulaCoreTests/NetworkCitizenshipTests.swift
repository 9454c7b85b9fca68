// Tests for the data path's network citizenship: ICMP echo and errors, PMTU, outer and IPv4 fragments, VLANs, ARP learning, unresolved next hops.
import Testing
@testable import TulaCore
@testable import TulaDatapath

/// The topology of these tests: `TestTopology`'s port (optionally with a VLAN, another MTU or no gateway
/// MAC) and one VIP per rule under test. VIP and backend counter slots are numbered in config order.
private enum Net {
    static let portMAC = TestTopology.portMAC
    static let gatewayMAC = TestTopology.gatewayMAC
    static let clientMAC = TestTopology.clientMAC
    static let client = "192.0.2.10"
    static let router = "198.51.100.1"
    static let portAddress = "10.0.1.2"

    // VIP slots.
    static let webVIP = 0, webAnyVIP = 1, dnsVIP = 2, ntpVIP = 3, poolVIP = 4, quietTCPVIP = 5, quietUDPVIP = 6
    static let halfQuietVIP = 7, halfLoudVIP = 8, tunnelVIP = 9, threeVIP = 10, bySourceVIP = 11, taggedVIP = 12
    static let unresolvedVIP = 13
    // Backend slots.
    static let webBackend = 0, webAnyBackend = 1, dnsBackendSlot = 2, poolBackendBase = 4, quietUDPBackend = 8
    static let tunnelBackendBase = 11, taggedBackend = 20, unresolvedBackend = 21

    static let webMAC = mac("02:00:00:00:01:11"), webAnyMAC = mac("02:00:00:00:01:12")
    static let poolMACs = ["02:00:00:00:03:01", "02:00:00:00:03:02", "02:00:00:00:03:03"].map(mac)
    static let quietUDPMAC = mac("02:00:00:00:04:42"), halfLoudMAC = mac("02:00:00:00:05:52")
    static let threeMACs = ["02:00:00:00:07:71", "02:00:00:00:07:72", "02:00:00:00:07:73"].map(mac)
    static let bySourceMACs = ["02:00:00:00:08:81", "02:00:00:00:08:82", "02:00:00:00:08:83"].map(mac)
    static let taggedMAC = mac("02:00:00:00:09:91")
    static let dnsBackend = "10.0.2.21"
    static let tunnelBackends = ["10.0.2.31", "10.0.2.32", "10.0.2.33"]

    static func mac(_ text: String) -> [UInt8] { TestBytes.mac(text) }

    /// One VIP entry of the YAML; backends are (address, mac, extra lines).
    static func vip(_ name: String, _ address: String, _ port: String, _ proto: String, _ mode: String,
                    table: Int = 251, extra: [String] = [], backends: [(String, String?, [String])]) -> [String] {
        var lines = ["  - name: \(name)", "    address: \(address)", "    port: \(port)", "    protocol: \(proto)",
                     "    mode: \(mode)", "    maglev_table_size: \(table)"]
        lines += extra.map { "    " + $0 }
        lines.append("    backends:")
        for (address, mac, more) in backends {
            lines.append("      - address: \(address)")
            if let mac { lines.append("        mac: \(mac)") }
            lines += more.map { "        " + $0 }
        }
        return lines
    }

    static func yaml(mtu: Int = 1500, vlan: Int? = nil, gatewayMAC: Bool = true,
                     poolWeights: [Int] = [1, 1, 1]) -> String {
        var lines = ["ports:", "  - name: wan", "    device: net_null0", "    address: 10.0.1.2",
                     "    mac: 02:00:00:00:00:01", "    gateway: 10.0.1.1", "    mtu: \(mtu)"]
        if gatewayMAC { lines.append("    gateway_mac: 02:00:00:00:00:fe") }
        if let vlan { lines.append("    vlan: \(vlan)") }
        lines += ["flow_idle_timeout: 30", "vips:"]
        lines += vip("web", "10.0.1.100", "443", "tcp", "l2", backends: [("10.0.1.11", "02:00:00:00:01:11", [])])
        lines += vip("web-any", "10.0.1.100", "\"*\"", "tcp", "l2", backends: [("10.0.1.12", "02:00:00:00:01:12", [])])
        lines += vip("dns", "10.0.1.101", "53", "udp", "l3", backends: [("10.0.2.21", nil, [])])
        lines += vip("ntp", "10.0.1.101", "123", "udp", "l3", backends: [("10.0.2.23", nil, [])])
        lines += vip("pool", "10.0.1.103", "443", "tcp", "l2", table: 1009, backends: [
            ("10.0.1.31", "02:00:00:00:03:01", ["weight: \(poolWeights[0])"]),
            ("10.0.1.32", "02:00:00:00:03:02", ["weight: \(poolWeights[1])"]),
            ("10.0.1.33", "02:00:00:00:03:03", ["weight: \(poolWeights[2])"]),
        ])
        lines += vip("quiet-tcp", "10.0.1.104", "80", "tcp", "l2", extra: ["icmp_echo: false"],
                     backends: [("10.0.1.41", "02:00:00:00:04:41", [])])
        lines += vip("quiet-udp", "10.0.1.104", "53", "udp", "l2", extra: ["icmp_echo: false"],
                     backends: [("10.0.1.42", "02:00:00:00:04:42", [])])
        lines += vip("half-quiet", "10.0.1.105", "80", "tcp", "l2", extra: ["icmp_echo: false"],
                     backends: [("10.0.1.51", "02:00:00:00:05:51", [])])
        lines += vip("half-loud", "10.0.1.105", "53", "udp", "l2", backends: [("10.0.1.52", "02:00:00:00:05:52", [])])
        lines += vip("tunnel", "10.0.1.106", "\"*\"", "tcp", "l3", table: 1009,
                     backends: tunnelBackends.map { ($0, nil, []) })
        lines += vip("three", "10.0.1.107", "443", "tcp", "l2", table: 1009, extra: ["hash: 3tuple"], backends: [
            ("10.0.1.71", "02:00:00:00:07:71", []), ("10.0.1.72", "02:00:00:00:07:72", []),
            ("10.0.1.73", "02:00:00:00:07:73", []),
        ])
        lines += vip("by-src", "10.0.1.108", "\"*\"", "tcp", "l2", table: 1009, extra: ["hash: src"], backends: [
            ("10.0.1.81", "02:00:00:00:08:81", []), ("10.0.1.82", "02:00:00:00:08:82", []),
            ("10.0.1.83", "02:00:00:00:08:83", []),
        ])
        lines += vip("tagged", "10.0.1.109", "80", "tcp", "l2", backends: [("10.0.1.91", "02:00:00:00:09:91", ["vlan: 300"])])
        lines += vip("unresolved", "10.0.1.110", "80", "tcp", "l2", backends: [("10.0.1.99", nil, [])])
        return lines.joined(separator: "\n") + "\n"
    }

    // MARK: Packets

    static func bytes(_ n: Int, seed: Int = 0) -> [UInt8] {
        (0..<n).map { UInt8(truncatingIfNeeded: ($0 &+ seed) &* 7 &+ 1) }
    }

    /// An Ethernet frame from the client to the port's MAC, optionally 802.1Q-tagged with TCI `vlan`.
    static func frame(_ ip: [UInt8], vlan: UInt16? = nil, dstMAC: [UInt8] = portMAC) -> [UInt8] {
        TestFrames.ethernet(dst: dstMAC, src: clientMAC, type: TestFrames.etherIPv4, vlan: vlan, payload: ip)
    }

    /// TCP `from`:`srcPort` -> `vip`:`port` as an IPv4 packet.
    static func tcp(_ vip: String, _ port: UInt16, from source: String = client, srcPort: UInt16 = 40000,
                    payload: Int = 0, tos: UInt8 = 0, flagsFragment: UInt16 = 0x4000) -> [UInt8] {
        TestFrames.ipv4(src: source, dst: vip, proto: 6,
                        payload: TestFrames.tcp(srcPort: srcPort, dstPort: port, payload: bytes(payload)),
                        tos: tos, flagsFragment: flagsFragment)
    }

    /// UDP from the client to `vip`:`port` as an IPv4 packet.
    static func udp(_ vip: String = "10.0.1.101", _ port: UInt16 = 53, srcPort: UInt16 = 40000, payload: Int = 4,
                    tos: UInt8 = 0, identification: UInt16 = 0x1234, flagsFragment: UInt16 = 0x4000,
                    options: [UInt8] = []) -> [UInt8] {
        TestFrames.ipv4(src: client, dst: vip, proto: 17,
                        payload: TestFrames.udp(srcPort: srcPort, dstPort: port, payload: bytes(payload)),
                        tos: tos, identification: identification, flagsFragment: flagsFragment, options: options)
    }

    /// An ICMP echo request from the client to `dst` as an IPv4 packet.
    static func echo(to dst: String, type: UInt8 = 8, code: UInt8 = 0, payload: [UInt8] = Array("abcdefgh".utf8),
                     tos: UInt8 = 0, ttl: UInt8 = 57, options: [UInt8] = [], flagsFragment: UInt16 = 0x4000) -> [UInt8] {
        TestFrames.ipv4(src: client, dst: dst, proto: 1,
                        payload: TestFrames.icmp(type: type, code: code, rest: [0x01, 0x02, 0x00, 0x01], payload: payload),
                        tos: tos, identification: 0xABCD, flagsFragment: flagsFragment, ttl: ttl, options: options)
    }

    /// What an ICMP error quotes of a packet the VIP sent (`vip`:`vport` -> client:`cport`): its IP header and
    /// the first `quote` bytes after it. `src` overrides the quoted source address.
    static func quoted(vip: String, vport: UInt16, cport: UInt16, client: String = Net.client, proto: UInt8 = 6,
                       quote: Int = 8, options: [UInt8] = [], src: String? = nil) -> [UInt8] {
        let l4 = proto == 17 ? TestFrames.udp(srcPort: vport, dstPort: cport, payload: bytes(600))
            : TestFrames.tcp(srcPort: vport, dstPort: cport, flags: 0x12, payload: bytes(600))
        let packet = TestFrames.ipv4(src: src ?? vip, dst: client, proto: proto, payload: l4, options: options)
        return Array(packet.prefix(20 + options.count + quote))
    }

    /// An ICMP error (type, code) from `source` to `vip` quoting `inner`, as an IPv4 packet.
    static func icmpError(type: UInt8 = 3, code: UInt8 = 4, to vip: String, from source: String = router,
                          quoting inner: [UInt8], flagsFragment: UInt16 = 0) -> [UInt8] {
        TestFrames.ipv4(src: source, dst: vip, proto: 1,
                        payload: TestFrames.icmp(type: type, code: code, rest: [0, 0, 0x05, 0x78], payload: inner),
                        identification: 0x0F0F, flagsFragment: flagsFragment, ttl: 250)
    }

    static func arp(op: UInt16, senderIP: String, targetIP: String, vlan: UInt16? = nil,
                    dstMAC: [UInt8] = portMAC) -> [UInt8] {
        TestFrames.padded(TestFrames.ethernet(
            dst: dstMAC, src: mac("02:00:00:00:01:11"), type: TestFrames.etherARP, vlan: vlan,
            payload: TestFrames.arp(op: op, senderMAC: mac("02:00:00:00:01:11"), senderIP: senderIP,
                                    targetMAC: op == 1 ? [0, 0, 0, 0, 0, 0] : portMAC, targetIP: targetIP)))
    }

    // MARK: Models of outputs

    /// Where the IP packet starts, the input tag, and the IP packet without Ethernet padding.
    static func split(_ frame: [UInt8]) -> (l2: Int, vlan: UInt16?, ip: [UInt8]) {
        let tagged = TestBytes.be16(frame, at: 12) == TestFrames.etherVLAN
        let l2 = tagged ? 18 : 14
        let total = Int(TestBytes.be16(frame, at: l2 + 2))
        return (l2, tagged ? TestBytes.be16(frame, at: 14) : nil, Array(frame[l2..<(l2 + total)]))
    }

    static func dotted(_ bytes: ArraySlice<UInt8>) -> String { bytes.map(String.init).joined(separator: ".") }

    /// L2 DSR with output tag `tag` (nil: untagged): MACs rewritten, IP packet untouched, padding gone.
    static func l2Output(_ frame: [UInt8], backendMAC: [UInt8], tag: UInt16?) -> [UInt8] {
        TestFrames.ethernet(dst: backendMAC, src: portMAC, type: TestFrames.etherIPv4, vlan: tag, payload: split(frame).ip)
    }
    /// L2 DSR keeping the input's tagging.
    static func l2Output(_ frame: [UInt8], backendMAC: [UInt8]) -> [UInt8] {
        l2Output(frame, backendMAC: backendMAC, tag: split(frame).vlan)
    }

    /// L3 DSR with output tag `tag`: Ethernet to `gateway`, a fresh outer header from the test's builder.
    static func l3Output(_ frame: [UInt8], backend: String, tag: UInt16?, gateway: [UInt8] = gatewayMAC) -> [UInt8] {
        let inner = split(frame).ip
        let outer = TestFrames.ipv4(src: portAddress, dst: backend, proto: 4, payload: inner, tos: inner[1],
                                    identification: TestBytes.be16(inner, at: 4),
                                    flagsFragment: UInt16(inner[6] & 0x40) << 8, ttl: 64)
        return TestFrames.ethernet(dst: gateway, src: portMAC, type: TestFrames.etherIPv4, vlan: tag, payload: outer)
    }
    static func l3Output(_ frame: [UInt8], backend: String) -> [UInt8] {
        l3Output(frame, backend: backend, tag: split(frame).vlan)
    }

    /// ICMP fragmentation needed from the VIP to the client for `frame`, built with the test's builders.
    static func fragmentationNeeded(for frame: [UInt8], mtu: Int) -> [UInt8] {
        let (_, vlan, ip) = split(frame)
        let ihl = Int(ip[0] & 0x0F) * 4
        let icmp = TestFrames.icmp(type: 3, code: 4, rest: [0, 0] + TestBytes.be16(UInt16(mtu - 20)),
                                   payload: Array(ip.prefix(ihl + 8)))
        let reply = TestFrames.ipv4(src: dotted(ip[16..<20]), dst: dotted(ip[12..<16]), proto: 1, payload: icmp,
                                    identification: 0, flagsFragment: 0, ttl: 64)
        return TestFrames.ethernet(dst: Array(frame[6..<12]), src: portMAC, type: TestFrames.etherIPv4, vlan: vlan,
                                   payload: reply)
    }

    /// Which of `macs` an l2 output went to.
    static func backend(_ output: [UInt8], in macs: [[UInt8]]) -> Int? { macs.firstIndex(of: Array(output.prefix(6))) }

    /// The outer destination of an l3 output.
    static func outerDestination(_ output: [UInt8]) -> String {
        let l2 = TestBytes.be16(output, at: 12) == TestFrames.etherVLAN ? 18 : 14
        return dotted(output[(l2 + 16)..<(l2 + 20)])
    }
}

extension TestDataplane {
    /// Verdict counters that are not zero.
    var verdicts: [Verdict: UInt64] {
        var out: [Verdict: UInt64] = [:]
        for v in Verdict.allCases where verdictCount(v) != 0 { out[v] = verdictCount(v) }
        return out
    }

    /// VIP, backend and flow-table counters that are not zero, by index.
    var targetCounters: [Int: UInt64] {
        var out: [Int: UInt64] = [:]
        for i in layout.flowTable..<layout.count where counters[i] != 0 { out[i] = counters[i] }
        return out
    }

    /// Runs `processFrame` with other tables (a reloaded config) on this dataplane's flows and counters.
    func process(_ frame: [UInt8], using other: UnsafeMutablePointer<DataplaneTables>, now: UInt32 = 1000)
        -> ProcessedFrame {
        let headroom = 64
        var buffer = [UInt8](repeating: 0xEE, count: headroom) + frame
        let outcome = buffer.withUnsafeMutableBytes { raw in
            processFrame(raw.baseAddress! + headroom, length: frame.count, headroom: headroom, checksum: .unknown,
                         port: 0, tables: other, flows: flows, counters: counters, now: now,
                         flowHash: frameFlowHash(raw.baseAddress! + headroom, length: frame.count))
        }
        var output: [UInt8] = []
        if outcome.verdict.transmits {
            let from = headroom + Int(outcome.startShift)
            output = Array(buffer[from..<(from + Int(outcome.length))])
        }
        return ProcessedFrame(outcome: outcome, output: output, inPlace: Array(buffer[headroom...]))
    }

    /// Writes every outer fragment of `frame` (as `processFrame` left it) with `writeOuterFragment`, into
    /// buffers of exactly the documented size (`mtu + 18`) followed by a guard region that must stay untouched.
    func outerFragments(of frame: [UInt8], outcome: FrameOutcome, identification: UInt16,
                        sourceLocation: SourceLocation = #_sourceLocation) -> [[UInt8]] {
        let capacity = Int(tables.pointee.ports[0].mtuBytes) + 18
        var fragments: [[UInt8]] = []
        for index in 0..<Int(outcome.fragments) {
            var out = [UInt8](repeating: 0xEE, count: capacity + 64)
            let length = frame.withUnsafeBytes { f in
                out.withUnsafeMutableBytes { o in
                    writeOuterFragment(o.baseAddress!, frame: f.baseAddress!, index: index, nextHop: outcome.nextHop,
                                       identification: identification, port: UnsafePointer(tables.pointee.ports))
                }
            }
            #expect(length <= capacity, "fragment \(index) is larger than the buffer", sourceLocation: sourceLocation)
            #expect(out[length...].allSatisfy { $0 == 0xEE }, "fragment \(index) wrote past its length",
                    sourceLocation: sourceLocation)
            fragments.append(Array(out[..<min(length, out.count)]))
        }
        return fragments
    }
}

/// A frame that must be dropped (or ignored) under `verdict`, untouched, with no other counter moving.
struct CitizenDropCase: Sendable, CustomTestStringConvertible {
    var name: String
    var frame: [UInt8]
    var verdict: Verdict
    var vlanPort = false
    var testDescription: String { "\(verdict): \(name)" }
}

@Suite struct NetworkCitizenshipTests {
    static let yaml = Net.yaml()
    static let vlanYAML = Net.yaml(vlan: 100)

    static func expectOnly(_ verdict: Verdict, _ dp: TestDataplane, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(dp.verdicts == [verdict: 1], sourceLocation: sourceLocation)
        #expect(dp.targetCounters.isEmpty, "no VIP, backend or flow counter moves", sourceLocation: sourceLocation)
    }

    // MARK: - 1. ICMP echo

    /// An echo request (id 0x0102, seq 1, "abcdefgh") from the client to web's address 10.0.1.100, TTL 57,
    /// padded to 60 bytes. IP checksum: 4500+0024+abcd+4000+3901+c000+020a+0a00+0164 = 0x3762, ~ = 0xc89d.
    /// ICMP checksum: 0800+0102+0001+6162+6364+6566+6768 = 0x9a98, ~ = 0x6567.
    static let echoInput = """
        02 00 00 00 00 01 | 02 00 00 00 aa 01 | 08 00
        45 00 00 24 ab cd 40 00 39 01 c8 9d c0 00 02 0a 0a 00 01 64
        08 00 65 67 01 02 00 01 61 62 63 64 65 66 67 68
        00 00 00 00 00 00 00 00 00 00
        """
    /// Back to the client from the port MAC; addresses swapped, TTL 64, ID/flags/TOS kept. IP checksum:
    /// 4500+0024+abcd+4000+4001+0a00+0164+c000+020a = 0x3e62, ~ = 0xc19d. ICMP type 0: 0x9a98 - 0x0800 =
    /// 0x9298, ~ = 0x6d67. Padding gone (50 bytes).
    static let echoExpected = """
        02 00 00 00 aa 01 | 02 00 00 00 00 01 | 08 00
        45 00 00 24 ab cd 40 00 40 01 c1 9d 0a 00 01 64 c0 00 02 0a
        00 00 6d 67 01 02 00 01 61 62 63 64 65 66 67 68
        """

    @Test func echoReplyHandCheckedReference() throws {
        let dp = try TestDataplane(yaml: Self.yaml)
        let input = TestBytes.hex(Self.echoInput)
        #expect(input == TestFrames.padded(Net.frame(Net.echo(to: "10.0.1.100"))),
                "the builders agree with the hand-written frame")
        let r = dp.process(input)
        #expect(r.outcome == FrameOutcome(.icmpEchoReply, shift: 0, length: 50))
        #expect(TestBytes.hexString(r.output) == TestBytes.hexString(TestBytes.hex(Self.echoExpected)))
        try #require(r.output.count == 50)
        #expect(TestBytes.referenceSum(Array(r.output[14..<34])) == 0xFFFF)
        #expect(TestBytes.referenceSum(Array(r.output[34..<50])) == 0xFFFF)
        Self.expectOnly(.icmpEchoReply, dp)
    }

    struct EchoCase: Sendable, CustomTestStringConvertible {
        var name: String
        var vip: String
        var vlan: UInt16? = nil
        var options: [UInt8] = []
        var payload: [UInt8] = Array("abcdefgh".utf8)
        var tos: UInt8 = 0
        var testDescription: String { name }
    }

    static let echoCases: [EchoCase] = [
        EchoCase(name: "tagged input keeps its tag", vip: "10.0.1.100", vlan: 0xA064),
        EchoCase(name: "IP options (IHL 6) are kept", vip: "10.0.1.100", options: [0x01, 0x01, 0x01, 0x00]),
        EchoCase(name: "odd ICMP length, TOS kept", vip: "10.0.1.106", payload: Net.bytes(33), tos: 0xB8),
        EchoCase(name: "no payload", vip: "10.0.1.101", payload: []),
        EchoCase(name: "1472 bytes of payload (1500-byte packet)", vip: "10.0.1.103", payload: Net.bytes(1472)),
        EchoCase(name: "one VIP of the address has icmp_echo, another not", vip: "10.0.1.105"),
        // 0000+0102+0001+fefc = 0xffff: the reply's checksum field may be 0000 or ffff, both verify.
        EchoCase(name: "reply message summing to 0xffff", vip: "10.0.1.100", payload: [0xFE, 0xFC]),
    ]

    /// The reply to `input`: the test's own model, every field but the ICMP checksum (which must verify).
    @Test(arguments: echoCases)
    func echoReplyFields(_ c: EchoCase) throws {
        let dp = try TestDataplane(yaml: Self.yaml)
        let ip = Net.echo(to: c.vip, payload: c.payload, tos: c.tos, options: c.options)
        let input = TestFrames.padded(Net.frame(ip, vlan: c.vlan))
        let r = dp.process(input)
        let l2 = c.vlan == nil ? 14 : 18
        try #require(r.outcome == FrameOutcome(.icmpEchoReply, shift: 0, length: UInt32(l2 + ip.count)))
        let ihl = 20 + c.options.count
        let replyICMP = Array(r.output[(l2 + ihl)...])
        #expect(TestBytes.referenceSum(replyICMP) == 0xFFFF, "ICMP checksum over the whole message")
        var expectedICMP = TestFrames.icmp(type: 0, code: 0, rest: [0x01, 0x02, 0x00, 0x01], payload: c.payload)
        expectedICMP[2...3] = replyICMP[2...3]
        let expected = TestFrames.ethernet(
            dst: Net.clientMAC, src: Net.portMAC, type: TestFrames.etherIPv4, vlan: c.vlan,
            payload: TestFrames.ipv4(src: c.vip, dst: Net.client, proto: 1, payload: expectedICMP, tos: c.tos,
                                     identification: 0xABCD, flagsFragment: 0x4000, ttl: 64, options: c.options))
        #expect(TestBytes.hexString(r.output) == TestBytes.hexString(expected))
        Self.expectOnly(.icmpEchoReply, dp)
    }

    static let icmpDropCases: [CitizenDropCase] = [
        CitizenDropCase(name: "echo to an address whose VIPs all have icmp_echo: false",
                        frame: Net.frame(Net.echo(to: "10.0.1.104")), verdict: .icmpIgnored),
        CitizenDropCase(name: "echo to a non-VIP", frame: Net.frame(Net.echo(to: "10.0.1.200")), verdict: .noVIP),
        CitizenDropCase(name: "ICMP of 7 bytes",
                        frame: Net.frame(TestFrames.ipv4(src: Net.client, dst: "10.0.1.100", proto: 1,
                                                         payload: [8, 0, 0xF7, 0xFF, 0, 0, 0])),
                        verdict: .malformedL4),
        CitizenDropCase(name: "ICMP of 0 bytes",
                        frame: TestFrames.padded(Net.frame(TestFrames.ipv4(src: Net.client, dst: "10.0.1.100",
                                                                           proto: 1, payload: []))),
                        verdict: .malformedL4),
        CitizenDropCase(name: "echo as a first fragment (MF)",
                        frame: Net.frame(Net.echo(to: "10.0.1.100", flagsFragment: 0x2000)), verdict: .fragment),
        CitizenDropCase(name: "echo as a later fragment (offset 1)",
                        frame: Net.frame(Net.echo(to: "10.0.1.100", flagsFragment: 0x0001)), verdict: .fragment),
        CitizenDropCase(name: "timestamp request (type 13)", frame: Net.frame(Net.echo(to: "10.0.1.100", type: 13)),
                        verdict: .icmpIgnored),
        CitizenDropCase(name: "echo with code 1", frame: Net.frame(Net.echo(to: "10.0.1.100", code: 1)),
                        verdict: .icmpIgnored),
        CitizenDropCase(name: "echo reply (type 0) to a VIP", frame: Net.frame(Net.echo(to: "10.0.1.100", type: 0)),
                        verdict: .icmpIgnored),
        CitizenDropCase(name: "redirect (type 5) to a VIP", frame: Net.frame(Net.echo(to: "10.0.1.100", type: 5)),
                        verdict: .icmpIgnored),
        // ICMP errors about VIP flows.
        CitizenDropCase(name: "error with 8 + 19 bytes",
                        frame: Net.frame(Net.icmpError(to: "10.0.1.103", quoting: Array(
                            Net.quoted(vip: "10.0.1.103", vport: 443, cport: 40000).prefix(19)))),
                        verdict: .malformedL4),
        CitizenDropCase(name: "error with 8 + 20 + 7 bytes",
                        frame: Net.frame(Net.icmpError(to: "10.0.1.103", quoting: Net.quoted(
                            vip: "10.0.1.103", vport: 443, cport: 40000, quote: 7))),
                        verdict: .malformedL4),
        CitizenDropCase(name: "error quoting IHL 6 with 8 + 24 + 7 bytes",
                        frame: Net.frame(Net.icmpError(to: "10.0.1.103", quoting: Net.quoted(
                            vip: "10.0.1.103", vport: 443, cport: 40000, quote: 7, options: [1, 1, 1, 0]))),
                        verdict: .malformedL4),
        CitizenDropCase(name: "error quoting IP version 6",
                        frame: Net.frame(Net.icmpError(to: "10.0.1.103", quoting: {
                            var q = Net.quoted(vip: "10.0.1.103", vport: 443, cport: 40000); q[0] = 0x65; return q
                        }())),
                        verdict: .malformedL4),
        CitizenDropCase(name: "error quoting IHL 4",
                        frame: Net.frame(Net.icmpError(to: "10.0.1.103", quoting: {
                            var q = Net.quoted(vip: "10.0.1.103", vport: 443, cport: 40000); q[0] = 0x44; return q
                        }())),
                        verdict: .malformedL4),
        CitizenDropCase(name: "error quoting ICMP",
                        frame: Net.frame(Net.icmpError(to: "10.0.1.103", quoting: Array(TestFrames.ipv4(
                            src: "10.0.1.103", dst: Net.client, proto: 1,
                            payload: TestFrames.icmp(type: 0, code: 0)).prefix(28)))),
                        verdict: .icmpIgnored),
        CitizenDropCase(name: "error whose quoted source is another VIP",
                        frame: Net.frame(Net.icmpError(to: "10.0.1.103", quoting: Net.quoted(
                            vip: "10.0.1.103", vport: 443, cport: 40000, src: "10.0.1.100"))),
                        verdict: .icmpIgnored),
        CitizenDropCase(name: "error quoting a VIP port without VIP",
                        frame: Net.frame(Net.icmpError(to: "10.0.1.103", quoting: Net.quoted(
                            vip: "10.0.1.103", vport: 80, cport: 40000))),
                        verdict: .noVIP),
        CitizenDropCase(name: "error quoting udp from a tcp-only VIP address",
                        frame: Net.frame(Net.icmpError(to: "10.0.1.103", quoting: Net.quoted(
                            vip: "10.0.1.103", vport: 443, cport: 40000, proto: 17))),
                        verdict: .noVIP),
        CitizenDropCase(name: "error to a non-VIP",
                        frame: Net.frame(Net.icmpError(to: "10.0.1.200", quoting: Net.quoted(
                            vip: "10.0.1.200", vport: 443, cport: 40000))),
                        verdict: .noVIP),
        CitizenDropCase(name: "error as a fragment",
                        frame: Net.frame(Net.icmpError(to: "10.0.1.103", quoting: Net.quoted(
                            vip: "10.0.1.103", vport: 443, cport: 40000), flagsFragment: 0x2000)),
                        verdict: .fragment),
    ]

    @Test(arguments: icmpDropCases)
    func icmpIsDroppedUntouched(_ c: CitizenDropCase) throws {
        let dp = try TestDataplane(yaml: Self.yaml)
        let r = dp.process(c.frame)
        #expect(r.outcome == FrameOutcome(c.verdict))
        #expect(r.inPlace == c.frame, "a dropped frame is not rewritten")
        Self.expectOnly(c.verdict, dp)
    }

    // MARK: - 2. ICMP errors go to the flow's backend

    static let errorKinds: [(UInt8, UInt8)] = [(3, 1), (3, 3), (3, 4), (11, 0)]

    @Test(arguments: errorKinds)
    func icmpErrorReachesTheBackendOwningTheFlowL2(type: UInt8, code: UInt8) throws {
        let dp = try TestDataplane(yaml: Self.yaml)
        var owner: [UInt16: Int] = [:]
        let ports = (0..<30).map { UInt16(40000 + 7 * $0) }
        for cport in ports {
            let r = dp.process(TestFrames.padded(Net.frame(Net.tcp("10.0.1.103", 443, srcPort: cport))))
            let b = try #require(Net.backend(r.output, in: Net.poolMACs))
            owner[cport] = b
        }
        try #require(Set(owner.values).count == 3, "30 flows reach all 3 backends, so the test can tell them apart")
        let flowCounters = (0..<CounterLayout.perFlowTable).map { dp.flowCounter($0) }
        let newFlows = (0..<3).map { dp.backendCounter(Net.poolBackendBase + $0, CounterLayout.newFlows) }
        #expect(flowCounters[CounterLayout.flowInsertions] == 30)

        for cport in ports {
            let input = Net.frame(Net.icmpError(type: type, code: code, to: "10.0.1.103", quoting: Net.quoted(
                vip: "10.0.1.103", vport: 443, cport: cport)))
            let r = dp.process(input)
            let expected = Net.l2Output(input, backendMAC: Net.poolMACs[owner[cport]!])
            #expect(r.outcome == FrameOutcome(.forwardedL2, shift: 0, length: UInt32(expected.count)))
            #expect(TestBytes.hexString(r.output) == TestBytes.hexString(expected), "client port \(cport)")
        }
        #expect((0..<CounterLayout.perFlowTable).map { dp.flowCounter($0) } == flowCounters,
                "ICMP errors insert no flow")
        #expect((0..<3).map { dp.backendCounter(Net.poolBackendBase + $0, CounterLayout.newFlows) } == newFlows)
        #expect(dp.vipCounter(Net.poolVIP, CounterLayout.newFlows) == 30)
        #expect(dp.vipCounter(Net.poolVIP, CounterLayout.packets) == 60)
        for b in 0..<3 {
            #expect(dp.backendCounter(Net.poolBackendBase + b, CounterLayout.packets)
                    == UInt64(2 * owner.values.filter { $0 == b }.count))
        }
        #expect(dp.verdicts == [.forwardedL2: 60])
    }

    /// Without a pinned flow, the error goes where the flow's first packet would go, and pins nothing:
    /// the flow's first packet afterwards is still a new flow.
    @Test func icmpErrorWithoutAFlowPicksTheFlowsBackendAndInsertsNothing() throws {
        let dp = try TestDataplane(yaml: Self.yaml)
        var viaICMP: [UInt16: Int] = [:]
        let ports = (0..<30).map { UInt16(50000 + 11 * $0) }
        for cport in ports {
            let r = dp.process(Net.frame(Net.icmpError(to: "10.0.1.103", quoting: Net.quoted(
                vip: "10.0.1.103", vport: 443, cport: cport))))
            let b = try #require(Net.backend(r.output, in: Net.poolMACs))
            viaICMP[cport] = b
        }
        #expect(Set(viaICMP.values).count == 3)
        #expect((0..<CounterLayout.perFlowTable).allSatisfy { dp.flowCounter($0) == 0 }, "no flow inserted")
        #expect(dp.vipCounter(Net.poolVIP, CounterLayout.newFlows) == 0)
        #expect((0..<3).allSatisfy { dp.backendCounter(Net.poolBackendBase + $0, CounterLayout.newFlows) == 0 })
        for cport in ports {
            let r = dp.process(Net.frame(Net.tcp("10.0.1.103", 443, srcPort: cport)))
            #expect(Net.backend(r.output, in: Net.poolMACs) == viaICMP[cport], "client port \(cport)")
        }
        #expect(dp.flowCounter(CounterLayout.flowInsertions) == 30)
        #expect(dp.vipCounter(Net.poolVIP, CounterLayout.newFlows) == 30)
    }

    /// Proof that the error follows the flow table, not just the same hash: after a reload that drains the
    /// flow's backend (weight 0, so Maglev never picks it), the error still reaches it, while the error about
    /// a never-seen flow that Maglev used to give that backend now goes elsewhere.
    @Test(arguments: [0, 1, 2])
    func icmpErrorFollowsThePinnedFlowAfterItsBackendIsDrained(drained: Int) throws {
        let dp = try TestDataplane(yaml: Self.yaml)
        var pinnedPort: UInt16?
        var cport: UInt16 = 40000
        while pinnedPort == nil && cport < 40300 {
            let r = dp.process(Net.frame(Net.tcp("10.0.1.103", 443, srcPort: cport)))
            if Net.backend(r.output, in: Net.poolMACs) == drained { pinnedPort = cport }
            cport += 1
        }
        let pinned = try #require(pinnedPort)
        // A flow never seen whose error goes to `drained` under the first config.
        var unseenPort: UInt16?
        var probe: UInt16 = 60000
        while unseenPort == nil && probe < 60300 {
            let r = dp.process(Net.frame(Net.icmpError(to: "10.0.1.103", quoting: Net.quoted(
                vip: "10.0.1.103", vport: 443, cport: probe))))
            if Net.backend(r.output, in: Net.poolMACs) == drained { unseenPort = probe }
            probe += 1
        }
        let unseen = try #require(unseenPort)
        let insertions = dp.flowCounter(CounterLayout.flowInsertions)

        var weights = [1, 1, 1]
        weights[drained] = 0
        let config = try ConfigLoader.parse(yaml: Net.yaml(poolWeights: weights), file: "drained.yaml")
        let reloaded = DataplaneTables.build(config: config, portMACs: config.ports.map { $0.mac! })
        defer { DataplaneTables.destroy(reloaded) }

        let error = Net.frame(Net.icmpError(to: "10.0.1.103", quoting: Net.quoted(vip: "10.0.1.103", vport: 443,
                                                                                 cport: pinned)))
        let r = dp.process(error, using: reloaded)
        #expect(r.outcome.verdict == .forwardedL2)
        #expect(r.output == Net.l2Output(error, backendMAC: Net.poolMACs[drained]), "the pinned flow's backend")
        let control = dp.process(Net.frame(Net.icmpError(to: "10.0.1.103", quoting: Net.quoted(
            vip: "10.0.1.103", vport: 443, cport: unseen))), using: reloaded)
        #expect(control.outcome.verdict == .forwardedL2)
        #expect(Net.backend(control.output, in: Net.poolMACs) != drained,
                "a drained backend gets no flow that was not pinned to it")
        #expect(dp.flowCounter(CounterLayout.flowInsertions) == insertions)
    }

    @Test(arguments: errorKinds)
    func icmpErrorReachesTheBackendOwningTheFlowL3(type: UInt8, code: UInt8) throws {
        let dp = try TestDataplane(yaml: Self.yaml)
        var owner: [UInt16: String] = [:]
        let ports = (0..<30).map { UInt16(30000 + 13 * $0) }
        for cport in ports {
            let r = dp.process(Net.frame(Net.tcp("10.0.1.106", 8080, srcPort: cport)))
            try #require(r.outcome.verdict == .forwardedL3)
            owner[cport] = Net.outerDestination(r.output)
        }
        try #require(Set(owner.values) == Set(Net.tunnelBackends))
        let insertions = dp.flowCounter(CounterLayout.flowInsertions)
        for cport in ports {
            // Quotes the whole 20-byte TCP header, as Linux does.
            let input = Net.frame(Net.icmpError(type: type, code: code, to: "10.0.1.106", quoting: Net.quoted(
                vip: "10.0.1.106", vport: 8080, cport: cport, quote: 20)))
            let r = dp.process(input)
            let expected = Net.l3Output(input, backend: owner[cport]!)
            #expect(r.outcome == FrameOutcome(.forwardedL3, shift: -20, length: UInt32(expected.count)))
            #expect(TestBytes.hexString(r.output) == TestBytes.hexString(expected), "client port \(cport)")
        }
        #expect(dp.flowCounter(CounterLayout.flowInsertions) == insertions)
        #expect(dp.vipCounter(Net.tunnelVIP, CounterLayout.newFlows) == 30)
        #expect(dp.verdicts == [.forwardedL3: 60])
    }

    /// Port unreachable from the client itself about a DNS answer (udp, l3); the minimal quote (header + 8)
    /// and a quoted header with options are both enough.
    @Test(arguments: [[UInt8](), [0x01, 0x01, 0x01, 0x00]])
    func portUnreachableFromTheClientAboutUDP(options: [UInt8]) throws {
        let dp = try TestDataplane(yaml: Self.yaml)
        let input = Net.frame(Net.icmpError(type: 3, code: 3, to: "10.0.1.101", from: Net.client, quoting: Net.quoted(
            vip: "10.0.1.101", vport: 53, cport: 33333, proto: 17, options: options)))
        let r = dp.process(input)
        let expected = Net.l3Output(input, backend: Net.dnsBackend)
        #expect(r.outcome == FrameOutcome(.forwardedL3, shift: -20, length: UInt32(expected.count)))
        #expect(TestBytes.hexString(r.output) == TestBytes.hexString(expected))
        #expect(dp.verdicts == [.forwardedL3: 1])
        #expect(dp.vipCounter(Net.dnsVIP, CounterLayout.packets) == 1)
        #expect(dp.flowCounter(CounterLayout.flowInsertions) == 0)
    }

    /// RFC 1122 3.2.2 (and RFC 1812 4.3.2.7): no ICMP error about an ICMP error. An error too big to tunnel
    /// with DF set must not be answered with "fragmentation needed".
    @Test func icmpErrorIsNeverAnsweredWithFragmentationNeeded() throws {
        let dp = try TestDataplane(yaml: Net.yaml(mtu: 576))
        // 20 + 8 + 548 = 576 bytes: fits the MTU, but not with the outer header.
        let quote = Net.quoted(vip: "10.0.1.101", vport: 53, cport: 33333, proto: 17, quote: 528)
        let input = Net.frame(Net.icmpError(type: 3, code: 3, to: "10.0.1.101", from: Net.client, quoting: quote,
                                            flagsFragment: 0x4000))
        try #require(input.count == 14 + 576)
        let r = dp.process(input)
        #expect(r.outcome.verdict != .icmpFragNeeded, "an ICMP error must not trigger an ICMP error")
        #expect(dp.verdictCount(.icmpFragNeeded) == 0)
    }

    // MARK: - 3. PMTU: fragmentation needed

    /// UDP 192.0.2.10:40000 -> dns 10.0.1.101:53 with IHL 6 (options 01 01 01 00), DF, total 1481
    /// (0x05c9): 1481 + 20 > 1500. Its header checksum: 4600+05c9+1234+4000+4011+c000+020a+0a00+0165+0101+0100
    /// = 0xad7f, ~ = 0x5280. The UDP header: 9c40 0035, length 1457 (0x05b1), checksum 0.
    static let quotedHeader = """
        46 00 05 c9 12 34 40 00 40 11 52 80 c0 00 02 0a 0a 00 01 65 01 01 01 00
        9c 40 00 35 05 b1 00 00
        """
    /// Back to the client; IP 45 00, total 28 + 32 = 60 (0x3c), ID 0, no flags, TTL 64, proto 1, from the VIP.
    /// IP checksum: 4500+003c+4001+0a00+0165+c000+020a = 0x52ad, ~ = 0xad52. ICMP 3/4, next-hop MTU 1480
    /// (0x05c8); checksum over the 40-byte message: 0304+05c8+(quoted header 0xad7f+0x5280)+9c40+0035+05b1
    /// = 0xaaf2, ~ = 0x550d.
    static let fragNeededExpected = """
        02 00 00 00 aa 01 | 02 00 00 00 00 01 | 08 00
        45 00 00 3c 00 00 00 00 40 01 ad 52 0a 00 01 65 c0 00 02 0a
        03 04 55 0d 00 00 05 c8
        46 00 05 c9 12 34 40 00 40 11 52 80 c0 00 02 0a 0a 00 01 65 01 01 01 00
        9c 40 00 35 05 b1 00 00
        """

    @Test func fragmentationNeededHandCheckedReference() throws {
        let dp = try TestDataplane(yaml: Self.yaml)
        let input = Net.frame(Net.udp(payload: 1449, options: [0x01, 0x01, 0x01, 0x00]))
        #expect(Array(input[14..<46]) == TestBytes.hex(Self.quotedHeader), "the builders agree with the hand-written header")
        let r = dp.process(input)
        #expect(r.outcome == FrameOutcome(.icmpFragNeeded, shift: 0, length: 74))
        #expect(TestBytes.hexString(r.output) == TestBytes.hexString(TestBytes.hex(Self.fragNeededExpected)))
        try #require(r.output.count == 74)
        #expect(TestBytes.referenceSum(Array(r.output[14..<34])) == 0xFFFF)
        #expect(TestBytes.referenceSum(Array(r.output[34..<74])) == 0xFFFF, "ICMP checksum over the whole message")
        Self.expectOnly(.icmpFragNeeded, dp)
    }

    struct PMTUCase: Sendable, CustomTestStringConvertible {
        var mtu: Int
        var inner: Int
        var vlan: UInt16? = nil
        var tcp = false
        var options: [UInt8] = []
        var testDescription: String {
            "MTU \(mtu), inner \(inner)\(tcp ? " tcp" : "")\(vlan.map { " tagged \($0)" } ?? "")\(options.isEmpty ? "" : " IHL 6")"
        }
    }

    static let pmtuCases: [PMTUCase] = [
        PMTUCase(mtu: 1500, inner: 1481),
        PMTUCase(mtu: 1500, inner: 1500),
        PMTUCase(mtu: 1500, inner: 1500, vlan: 0xA064),
        PMTUCase(mtu: 1500, inner: 1500, tcp: true),
        PMTUCase(mtu: 576, inner: 557),
        PMTUCase(mtu: 576, inner: 576, options: [0x94, 0x04, 0x00, 0x00]),
        PMTUCase(mtu: 1280, inner: 1400, vlan: 0x0FFE, tcp: true),
    ]

    @Test(arguments: pmtuCases)
    func fragmentationNeededMatchesTheModel(_ c: PMTUCase) throws {
        let dp = try TestDataplane(yaml: Net.yaml(mtu: c.mtu))
        let header = 20 + c.options.count
        let ip = c.tcp ? TestFrames.ipv4(src: Net.client, dst: "10.0.1.106", proto: 6,
                                         payload: TestFrames.tcp(srcPort: 40000, dstPort: 443, flags: 0x18,
                                                                 payload: Net.bytes(c.inner - header - 20)),
                                         options: c.options)
            : Net.udp(payload: c.inner - header - 8, options: c.options)
        try #require(ip.count == c.inner)
        let input = Net.frame(ip, vlan: c.vlan)
        let r = dp.process(input)
        let expected = Net.fragmentationNeeded(for: input, mtu: c.mtu)
        #expect(r.outcome == FrameOutcome(.icmpFragNeeded, shift: 0, length: UInt32(expected.count)))
        #expect(TestBytes.hexString(r.output) == TestBytes.hexString(expected))
        Self.expectOnly(.icmpFragNeeded, dp)
    }

    /// Inner + 20 == MTU fits: tunnelled whole, DF copied.
    @Test(arguments: [576, 1500])
    func innerOfMTUMinus20IsTunnelledWhole(mtu: Int) throws {
        let dp = try TestDataplane(yaml: Net.yaml(mtu: mtu))
        let input = Net.frame(Net.udp(payload: mtu - 20 - 28))
        let r = dp.process(input)
        let expected = Net.l3Output(input, backend: Net.dnsBackend)
        #expect(r.outcome == FrameOutcome(.forwardedL3, shift: -20, length: UInt32(expected.count)))
        #expect(r.output == expected)
    }

    // MARK: - 4. Outer fragments

    struct OuterFragmentCase: Sendable, CustomTestStringConvertible {
        var mtu: Int
        var inner: Int
        var portVLAN: Int? = nil
        var inputTag: UInt16? = nil
        /// Inner bytes per fragment (`(min(mtu, 2030) - 20) & ~7`).
        var share: Int
        var testDescription: String {
            "MTU \(mtu), inner \(inner)\(portVLAN.map { ", port vlan \($0)" } ?? "")\(inputTag.map { ", input tag \($0)" } ?? "")"
        }
    }

    static let outerFragmentCases: [OuterFragmentCase] = [
        OuterFragmentCase(mtu: 1500, inner: 1481, share: 1480),
        OuterFragmentCase(mtu: 1500, inner: 1500, share: 1480),
        OuterFragmentCase(mtu: 576, inner: 557, share: 552),
        OuterFragmentCase(mtu: 576, inner: 1104, share: 552),
        OuterFragmentCase(mtu: 576, inner: 1500, share: 552),
        OuterFragmentCase(mtu: 68, inner: 200, share: 48),
        // A jumbo port: each fragment frame must still fit a 2048-byte mbuf.
        OuterFragmentCase(mtu: 9000, inner: 9000, share: 2008),
        OuterFragmentCase(mtu: 576, inner: 1500, portVLAN: 100, share: 552),
        OuterFragmentCase(mtu: 576, inner: 1500, portVLAN: 100, inputTag: 0xA064, share: 552),
        OuterFragmentCase(mtu: 1500, inner: 1500, inputTag: 0x60C8, share: 1480),
    ]

    @Test(arguments: outerFragmentCases)
    func outerFragmentsRebuildTheInnerPacket(_ c: OuterFragmentCase) throws {
        let dp = try TestDataplane(yaml: Net.yaml(mtu: c.mtu, vlan: c.portVLAN))
        let ip = Net.udp(payload: c.inner - 28, tos: 0xB9, identification: 0xBEEF, flagsFragment: 0)
        let input = Net.frame(ip, vlan: c.inputTag)
        let r = dp.process(input)
        let count = (c.inner + c.share - 1) / c.share
        #expect(c.share == outerFragmentPayload(mtu: UInt32(c.mtu)))
        #expect(r.outcome.verdict == .forwardedL3)
        #expect(Int(r.outcome.fragments) == count)
        #expect(r.outcome.nextHop == IPv4Address(Net.dnsBackend)!.value)
        #expect(r.inPlace == input, "the received frame is left for writeOuterFragment")
        try #require(Int(r.outcome.fragments) == count)

        let identification: UInt16 = 0x7A5E
        let fragments = dp.outerFragments(of: r.inPlace, outcome: r.outcome, identification: identification)
        let tag: UInt16? = c.portVLAN.map { UInt16($0) | (c.inputTag ?? 0) & 0xF000 } ?? c.inputTag
        let l2 = tag == nil ? 14 : 18
        var rebuilt: [UInt8] = []
        for (k, fragment) in fragments.enumerated() {
            let offset = k * c.share
            let share = min(c.share, c.inner - offset)
            let last = k == count - 1
            try #require(fragment.count == l2 + 20 + share, "fragment \(k)")
            #expect(Array(fragment[0..<12]) == Net.gatewayMAC + Net.portMAC)
            if let tag {
                #expect(Array(fragment[12..<18]) == [0x81, 0x00] + TestBytes.be16(tag) + [0x08, 0x00])
            } else {
                #expect(Array(fragment[12..<14]) == [0x08, 0x00])
            }
            let outer = Array(fragment[l2..<(l2 + 20)])
            #expect(outer[0] == 0x45)
            #expect(outer[1] == 0xB9, "TOS copied")
            #expect(Int(TestBytes.be16(outer, at: 2)) == 20 + share)
            #expect(TestBytes.be16(outer, at: 4) == identification)
            #expect(TestBytes.be16(outer, at: 6) == (last ? 0 : 0x2000) | UInt16(offset / 8), "fragment \(k)")
            #expect(outer[8] == 64 && outer[9] == 4)
            #expect(outer[12..<20] == [10, 0, 1, 2, 10, 0, 2, 21])
            #expect(TestBytes.referenceSum(outer) == 0xFFFF, "outer checksum of fragment \(k)")
            if !last { #expect(share % 8 == 0) }
            // The whole fragment, from the test's builders.
            let expected = TestFrames.ethernet(
                dst: Net.gatewayMAC, src: Net.portMAC, type: TestFrames.etherIPv4, vlan: tag,
                payload: TestFrames.ipv4(src: Net.portAddress, dst: Net.dnsBackend, proto: 4,
                                         payload: Array(ip[offset..<(offset + share)]), tos: 0xB9,
                                         identification: identification,
                                         flagsFragment: (last ? 0 : 0x2000) | UInt16(offset / 8), ttl: 64))
            #expect(TestBytes.hexString(fragment) == TestBytes.hexString(expected), "fragment \(k)")
            rebuilt += fragment[(l2 + 20)...]
        }
        #expect(rebuilt == ip, "the fragments' payloads are the inner packet exactly")
        #expect(dp.verdicts == [.forwardedL3: 1])
        #expect(dp.vipCounter(Net.dnsVIP, CounterLayout.packets) == 1)
        #expect(dp.vipCounter(Net.dnsVIP, CounterLayout.bytes) == UInt64(input.count))
    }

    /// The next hop of outer fragments is the flow's backend (tunnel has three).
    @Test func outerFragmentsGoToTheFlowsBackend() throws {
        let dp = try TestDataplane(yaml: Net.yaml(mtu: 576))
        var seen = Set<String>()
        for cport in (0..<20).map({ UInt16(20000 + 3 * $0) }) {
            let small = dp.process(Net.frame(Net.tcp("10.0.1.106", 443, srcPort: cport)))
            let backend = Net.outerDestination(small.output)
            seen.insert(backend)
            let big = dp.process(Net.frame(Net.tcp("10.0.1.106", 443, srcPort: cport, payload: 1000, flagsFragment: 0)))
            #expect(big.outcome.fragments == 2)
            #expect(big.outcome.nextHop == IPv4Address(backend)!.value)
            for fragment in dp.outerFragments(of: big.inPlace, outcome: big.outcome, identification: 1) {
                #expect(Net.outerDestination(fragment) == backend)
            }
        }
        #expect(seen.count == 3)
    }

    // MARK: - 5. IPv4 fragments

    /// `l4` split into IPv4 fragments of `size` bytes (a multiple of 8), as frames from `source` to `vip`.
    static func fragments(of l4: [UInt8], size: Int, to vip: String, from source: String, proto: UInt8 = 6,
                          identification: UInt16) -> [[UInt8]] {
        stride(from: 0, to: l4.count, by: size).map { offset in
            let end = min(offset + size, l4.count)
            let flags: UInt16 = (end < l4.count ? 0x2000 : 0) | UInt16(offset / 8)
            return Net.frame(TestFrames.ipv4(src: source, dst: vip, proto: proto, payload: Array(l4[offset..<end]),
                                             identification: identification, flagsFragment: flags))
        }
    }

    static func clientAddress(_ n: Int) -> String { "198.18.\(n / 200).\(n % 200 + 1)" }

    @Test func fragmentsOfADatagramReachOneBackendAndInsertNoFlow() throws {
        let dp = try TestDataplane(yaml: Self.yaml)
        var used = Set<Int>()
        var frames = 0
        for d in 0..<60 {
            let l4 = TestFrames.tcp(srcPort: UInt16(30000 + d), dstPort: 443, flags: 0x18, payload: Net.bytes(1000))
            var parts = Self.fragments(of: l4, size: 400, to: "10.0.1.103", from: Self.clientAddress(d),
                                       identification: UInt16(d))
            if d % 2 == 1 { parts = [parts[2], parts[0], parts[1]] } // out of order
            var backend: Int?
            for part in parts {
                let r = dp.process(part)
                frames += 1
                let b = try #require(Net.backend(r.output, in: Net.poolMACs), "datagram \(d)")
                #expect(r.output == Net.l2Output(part, backendMAC: Net.poolMACs[b]))
                if backend == nil { backend = b }
                #expect(b == backend, "datagram \(d): every fragment on one backend")
            }
            used.insert(backend!)
        }
        #expect(used.count == 3, "60 datagrams from 60 clients spread over all backends")
        #expect(dp.verdicts == [.forwardedL2: UInt64(frames)])
        #expect((0..<CounterLayout.perFlowTable).allSatisfy { dp.flowCounter($0) == 0 }, "fragments insert no flow")
        #expect(dp.vipCounter(Net.poolVIP, CounterLayout.newFlows) == 0)
        #expect(dp.vipCounter(Net.poolVIP, CounterLayout.packets) == UInt64(frames))
    }

    struct FragmentVIPCase: Sendable, CustomTestStringConvertible {
        var name: String
        var frame: [UInt8]
        var verdict: Verdict
        var vip: Int? = nil
        var backendMAC: [UInt8]? = nil
        var testDescription: String { name }
    }

    static let fragmentVIPCases: [FragmentVIPCase] = [
        FragmentVIPCase(name: "first fragment to port 443 goes to the address's `*` VIP, not the 443 one",
                        frame: Net.frame(Net.tcp("10.0.1.100", 443, payload: 40, flagsFragment: 0x2000)),
                        verdict: .forwardedL2, vip: Net.webAnyVIP, backendMAC: Net.webAnyMAC),
        FragmentVIPCase(name: "later tcp fragment goes to the `*` VIP",
                        frame: Net.frame(TestFrames.ipv4(src: Net.client, dst: "10.0.1.100", proto: 6,
                                                         payload: Net.bytes(24), flagsFragment: 0x0005)),
                        verdict: .forwardedL2, vip: Net.webAnyVIP, backendMAC: Net.webAnyMAC),
        FragmentVIPCase(name: "the only udp VIP of an address takes its udp fragments",
                        frame: Net.frame(Net.udp("10.0.1.104", 53, flagsFragment: 0x2000)),
                        verdict: .forwardedL2, vip: Net.quietUDPVIP, backendMAC: Net.quietUDPMAC),
        FragmentVIPCase(name: "two port-specific udp VIPs and no `*`: no fragment VIP",
                        frame: Net.frame(Net.udp("10.0.1.101", 53, flagsFragment: 0x2000)), verdict: .fragment),
        FragmentVIPCase(name: "later fragment, two port-specific udp VIPs",
                        frame: Net.frame(TestFrames.ipv4(src: Net.client, dst: "10.0.1.101", proto: 17,
                                                         payload: Net.bytes(24), flagsFragment: 0x0003)),
                        verdict: .fragment),
        FragmentVIPCase(name: "fragment to a non-VIP",
                        frame: Net.frame(Net.tcp("10.0.1.200", 443, flagsFragment: 0x2000)), verdict: .noVIP),
        FragmentVIPCase(name: "later tcp fragment to an l3 `*` VIP",
                        frame: Net.frame(TestFrames.ipv4(src: Net.client, dst: "10.0.1.106", proto: 6,
                                                         payload: Net.bytes(24), flagsFragment: 0x0003)),
                        verdict: .forwardedL3, vip: Net.tunnelVIP),
    ]

    @Test(arguments: fragmentVIPCases)
    func fragmentGoesToTheAddresssFragmentVIP(_ c: FragmentVIPCase) throws {
        let dp = try TestDataplane(yaml: Self.yaml)
        let r = dp.process(c.frame)
        #expect(r.outcome.verdict == c.verdict)
        #expect(dp.verdicts == [c.verdict: 1])
        if let vip = c.vip {
            #expect(dp.vipCounter(vip, CounterLayout.packets) == 1)
        } else {
            #expect(r.inPlace == c.frame)
            #expect(dp.targetCounters.isEmpty)
        }
        if let mac = c.backendMAC { #expect(r.output == Net.l2Output(c.frame, backendMAC: mac)) }
        #expect(dp.flowCounter(CounterLayout.flowInsertions) == 0)
    }

    @Test func threeTupleHashMakesWholePacketsAndFragmentsOfAClientAgree() throws {
        let dp = try TestDataplane(yaml: Self.yaml)
        var used = Set<Int>()
        for n in 0..<40 {
            let source = Self.clientAddress(n)
            var backends = Set<Int>()
            for sport in [UInt16(1024), 33000, 65535] {
                let r = dp.process(Net.frame(Net.tcp("10.0.1.107", 443, from: source, srcPort: sport)))
                backends.insert(try #require(Net.backend(r.output, in: Net.threeMACs)))
            }
            let l4 = TestFrames.tcp(srcPort: 44444, dstPort: 443, flags: 0x18, payload: Net.bytes(500))
            for part in Self.fragments(of: l4, size: 256, to: "10.0.1.107", from: source, identification: UInt16(n)) {
                let r = dp.process(part)
                backends.insert(try #require(Net.backend(r.output, in: Net.threeMACs)))
            }
            #expect(backends.count == 1, "client \(source): whole packets and fragments on one backend")
            used.formUnion(backends)
        }
        #expect(used.count == 3, "clients still spread over the backends")
        #expect(dp.vipCounter(Net.threeVIP, CounterLayout.newFlows) == 120, "whole packets are still flows")
    }

    @Test func sourceHashKeepsAClientOnOneBackendAcrossPorts() throws {
        let dp = try TestDataplane(yaml: Self.yaml)
        var used = Set<Int>()
        for n in 0..<40 {
            let source = Self.clientAddress(n)
            var backends = Set<Int>()
            for (dport, sport) in [(UInt16(80), UInt16(1025)), (443, 2000), (8080, 40000), (22, 65000)] {
                let r = dp.process(Net.frame(Net.tcp("10.0.1.108", dport, from: source, srcPort: sport)))
                backends.insert(try #require(Net.backend(r.output, in: Net.bySourceMACs)))
            }
            let l4 = TestFrames.tcp(srcPort: 5555, dstPort: 8443, flags: 0x18, payload: Net.bytes(300))
            for part in Self.fragments(of: l4, size: 160, to: "10.0.1.108", from: source, identification: 7) {
                let r = dp.process(part)
                backends.insert(try #require(Net.backend(r.output, in: Net.bySourceMACs)))
            }
            #expect(backends.count == 1, "client \(source): every port and fragment on one backend")
            used.formUnion(backends)
        }
        #expect(used.count == 3)
    }

    /// The default 5tuple spreads one client's connections; its fragments (no ports) stay on one backend.
    @Test func fiveTupleSpreadsOneClientOverBackends() throws {
        let dp = try TestDataplane(yaml: Self.yaml)
        var whole = Set<Int>()
        for sport in (0..<30).map({ UInt16(20000 + 17 * $0) }) {
            let r = dp.process(Net.frame(Net.tcp("10.0.1.103", 443, srcPort: sport)))
            whole.insert(try #require(Net.backend(r.output, in: Net.poolMACs)))
        }
        #expect(whole.count >= 2, "one client's connections spread over several backends")
        #expect(whole.count == 3)
        var fragmented = Set<Int>()
        for sport in (0..<10).map({ UInt16(20000 + 17 * $0) }) {
            let r = dp.process(Net.frame(Net.tcp("10.0.1.103", 443, srcPort: sport, payload: 40, flagsFragment: 0x2000)))
            fragmented.insert(try #require(Net.backend(r.output, in: Net.poolMACs)))
        }
        #expect(fragmented.count == 1)
    }

    // MARK: - 6. VLANs

    static let vlanDropCases: [CitizenDropCase] = [
        CitizenDropCase(name: "tcp tagged 200", frame: Net.frame(Net.tcp("10.0.1.100", 443), vlan: 200),
                        verdict: .wrongVLAN, vlanPort: true),
        CitizenDropCase(name: "tcp tagged 200 with priority 5", frame: Net.frame(Net.tcp("10.0.1.100", 443), vlan: 0xA0C8),
                        verdict: .wrongVLAN, vlanPort: true),
        CitizenDropCase(name: "ARP request tagged 200",
                        frame: Net.arp(op: 1, senderIP: "10.0.1.50", targetIP: "10.0.1.100", vlan: 200,
                                       dstMAC: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
                        verdict: .wrongVLAN, vlanPort: true),
        CitizenDropCase(name: "ARP reply tagged 200", frame: Net.arp(op: 2, senderIP: "10.0.1.11", targetIP: "10.0.1.2",
                                                                      vlan: 200),
                        verdict: .wrongVLAN, vlanPort: true),
        CitizenDropCase(name: "echo tagged 4095", frame: Net.frame(Net.echo(to: "10.0.1.100"), vlan: 0x0FFF),
                        verdict: .wrongVLAN, vlanPort: true),
    ]

    @Test(arguments: vlanDropCases)
    func wrongVLANIsDroppedUntouched(_ c: CitizenDropCase) throws {
        let dp = try TestDataplane(yaml: c.vlanPort ? Self.vlanYAML : Self.yaml)
        let r = dp.process(c.frame)
        #expect(r.outcome == FrameOutcome(c.verdict))
        #expect(r.inPlace == c.frame)
        Self.expectOnly(c.verdict, dp)
    }

    /// On a port with vlan 100, frames tagged 100 (any priority), priority-tagged (VID 0) and untagged frames
    /// are accepted; an l2 backend without a vlan keeps the input's tagging.
    @Test(arguments: [nil, UInt16(100), 0xA064, 0xE064, 0xA000])
    func portVLANAcceptsItsTagAndUntagged(tag: UInt16?) throws {
        let dp = try TestDataplane(yaml: Self.vlanYAML)
        let input = TestFrames.padded(Net.frame(Net.tcp("10.0.1.100", 443), vlan: tag))
        let r = dp.process(input)
        let expected = Net.l2Output(input, backendMAC: Net.webMAC, tag: tag)
        #expect(r.outcome == FrameOutcome(.forwardedL2, shift: 0, length: UInt32(expected.count)))
        #expect(TestBytes.hexString(r.output) == TestBytes.hexString(expected))
    }

    /// `FrameProcessorTests.l3Input` (UDP to dns, padded) on a port with vlan 100: the outer frame gains the
    /// tag 81 00 00 64 in front of the hand-checked outer header of `FrameProcessorTests.l3Expected`.
    static let l3Input = """
        02 00 00 00 00 01 | 02 00 00 00 aa 01 | 08 00
        45 00 00 20 12 34 40 00 40 11 5b 2a c0 00 02 0a 0a 00 01 65
        9c 40 00 35 00 0c 00 00 61 62 63 64
        00 00 00 00 00 00 00 00 00 00 00 00 00 00
        """
    static let l3TaggedExpected = """
        02 00 00 00 00 fe | 02 00 00 00 00 01 | 81 00 00 64 | 08 00
        45 00 00 34 12 34 40 00 40 04 11 7c 0a 00 01 02 0a 00 02 15
        45 00 00 20 12 34 40 00 40 11 5b 2a c0 00 02 0a 0a 00 01 65
        9c 40 00 35 00 0c 00 00 61 62 63 64
        """

    @Test func l3OutputGetsThePortVLANHandChecked() throws {
        let dp = try TestDataplane(yaml: Self.vlanYAML)
        let r = dp.process(TestBytes.hex(Self.l3Input))
        #expect(r.outcome == FrameOutcome(.forwardedL3, shift: -24, length: 46 + 24))
        #expect(TestBytes.hexString(r.output) == TestBytes.hexString(TestBytes.hex(Self.l3TaggedExpected)))
    }

    /// l3 output on a vlan-100 port: inserted for untagged input (shift -24, +24 bytes), VID 100 with the
    /// input's priority for tagged input, including a priority tag (shift -20, +20 bytes).
    @Test(arguments: [nil, UInt16(100), 0xA064, 0xE064, 0xA000])
    func l3OutputIsTaggedWithThePortVLAN(tag: UInt16?) throws {
        let dp = try TestDataplane(yaml: Self.vlanYAML)
        let input = Net.frame(Net.udp(payload: 100), vlan: tag)
        let r = dp.process(input)
        let outputTag = 100 | (tag ?? 0) & 0xF000
        let expected = Net.l3Output(input, backend: Net.dnsBackend, tag: outputTag)
        let shift: Int32 = tag == nil ? -24 : -20
        #expect(r.outcome == FrameOutcome(.forwardedL3, shift: shift, length: UInt32(input.count) + UInt32(-shift)))
        #expect(TestBytes.hexString(r.output) == TestBytes.hexString(expected))
    }

    /// SYN 192.0.2.10:40000 -> tagged 10.0.1.109:80, padded. IP checksum:
    /// 4500+0028+abcd+4000+4006+c000+020a+0a00+016d = 0x3e74, ~ = 0xc18b.
    static let l2UntaggedInput = """
        02 00 00 00 00 01 | 02 00 00 00 aa 01 | 08 00
        45 00 00 28 ab cd 40 00 40 06 c1 8b c0 00 02 0a 0a 00 01 6d
        9c 40 00 50 00 00 00 01 00 00 00 00 50 02 ff ff 00 00 00 00
        00 00 00 00 00 00
        """
    /// To backend 10.0.1.91's MAC with its vlan 300 (0x012c) inserted; IP and TCP untouched (58 bytes).
    static let l2InsertedExpected = """
        02 00 00 00 09 91 | 02 00 00 00 00 01 | 81 00 01 2c | 08 00
        45 00 00 28 ab cd 40 00 40 06 c1 8b c0 00 02 0a 0a 00 01 6d
        9c 40 00 50 00 00 00 01 00 00 00 00 50 02 ff ff 00 00 00 00
        """

    @Test func l2BackendVLANIsInsertedHandChecked() throws {
        let dp = try TestDataplane(yaml: Self.yaml)
        let input = TestBytes.hex(Self.l2UntaggedInput)
        #expect(input == TestFrames.padded(Net.frame(TestFrames.ipv4(
            src: Net.client, dst: "10.0.1.109", proto: 6, payload: TestFrames.tcp(srcPort: 40000, dstPort: 80),
            identification: 0xABCD))), "the builders agree with the hand-written frame")
        let r = dp.process(input)
        #expect(r.outcome == FrameOutcome(.forwardedL2, shift: -4, length: 58))
        #expect(TestBytes.hexString(r.output) == TestBytes.hexString(TestBytes.hex(Self.l2InsertedExpected)))
        #expect(dp.backendCounter(Net.taggedBackend, CounterLayout.bytes) == 54, "counted as received, without padding")
    }

    struct BackendVLANCase: Sendable, CustomTestStringConvertible {
        var portVLAN: Int?
        var inputTag: UInt16?
        var testDescription: String { "port vlan \(portVLAN.map(String.init) ?? "none"), input \(inputTag.map { String($0, radix: 16) } ?? "untagged")" }
    }

    static let backendVLANCases: [BackendVLANCase] = [
        BackendVLANCase(portVLAN: nil, inputTag: nil),
        BackendVLANCase(portVLAN: nil, inputTag: 0x00C8),
        BackendVLANCase(portVLAN: nil, inputTag: 0xE0C8),
        BackendVLANCase(portVLAN: 100, inputTag: nil),
        BackendVLANCase(portVLAN: 100, inputTag: 0xA064),
    ]

    /// An l2 backend with vlan 300: tag inserted for untagged input (shift -4), VID replaced (priority kept)
    /// for tagged input.
    @Test(arguments: backendVLANCases)
    func l2BackendVLANReplacesOrInsertsTheTag(_ c: BackendVLANCase) throws {
        let dp = try TestDataplane(yaml: Net.yaml(vlan: c.portVLAN))
        let input = TestFrames.padded(Net.frame(Net.tcp("10.0.1.109", 80, payload: 3), vlan: c.inputTag))
        let r = dp.process(input)
        let tag = 300 | (c.inputTag ?? 0) & 0xF000
        let expected = Net.l2Output(input, backendMAC: Net.taggedMAC, tag: tag)
        #expect(r.outcome == FrameOutcome(.forwardedL2, shift: c.inputTag == nil ? -4 : 0, length: UInt32(expected.count)))
        #expect(TestBytes.hexString(r.output) == TestBytes.hexString(expected))
    }

    /// Inserting a tag needs 4 bytes in front of the frame.
    @Test(arguments: [(0, Verdict.tooBig), (3, .tooBig), (4, .forwardedL2)])
    func l2TagInsertionNeedsFourBytesOfHeadroom(headroom: Int, verdict: Verdict) throws {
        let dp = try TestDataplane(yaml: Self.yaml)
        let r = dp.process(Net.frame(Net.tcp("10.0.1.109", 80)), headroom: headroom)
        #expect(r.outcome.verdict == verdict)
    }

    /// ARP and echo replies go back the way they came: tagged input, tagged reply (same TCI); untagged, untagged.
    @Test(arguments: [nil, UInt16(100), 0xA064])
    func repliesKeepTheInputTagging(tag: UInt16?) throws {
        let dp = try TestDataplane(yaml: Self.vlanYAML)
        let l2 = tag == nil ? 14 : 18
        let request = Net.arp(op: 1, senderIP: "10.0.1.50", targetIP: "10.0.1.100", vlan: tag,
                              dstMAC: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
        let arp = dp.process(request)
        #expect(arp.outcome == FrameOutcome(.arpReply, shift: 0, length: UInt32(request.count)))
        #expect(Array(arp.output[0..<12]) == Net.mac("02:00:00:00:01:11") + Net.portMAC)
        if let tag {
            #expect(Array(arp.output[12..<18]) == [0x81, 0x00] + TestBytes.be16(tag) + [0x08, 0x06])
        } else {
            #expect(Array(arp.output[12..<14]) == [0x08, 0x06])
        }
        #expect(TestBytes.be16(arp.output, at: l2 + 6) == 2)

        let echo = dp.process(Net.frame(Net.echo(to: "10.0.1.100"), vlan: tag))
        #expect(echo.outcome.verdict == .icmpEchoReply)
        if let tag {
            #expect(Array(echo.output[12..<18]) == [0x81, 0x00] + TestBytes.be16(tag) + [0x08, 0x00])
        } else {
            #expect(Array(echo.output[12..<14]) == [0x08, 0x00])
        }
        #expect(dp.verdicts == [.arpReply: 1, .icmpEchoReply: 1])
    }

    // MARK: - 7. ARP learning

    static let arpLearnCases: [CitizenDropCase] = [
        CitizenDropCase(name: "reply to the port address from a backend",
                        frame: Net.arp(op: 2, senderIP: "10.0.1.11", targetIP: "10.0.1.2"), verdict: .arpLearned),
        CitizenDropCase(name: "reply to the port address from the gateway",
                        frame: Net.arp(op: 2, senderIP: "10.0.1.1", targetIP: "10.0.1.2"), verdict: .arpLearned),
        CitizenDropCase(name: "tagged reply on a vlan port",
                        frame: Net.arp(op: 2, senderIP: "10.0.1.11", targetIP: "10.0.1.2", vlan: 100),
                        verdict: .arpLearned, vlanPort: true),
        CitizenDropCase(name: "reply to another address",
                        frame: Net.arp(op: 2, senderIP: "10.0.1.11", targetIP: "10.0.1.50"), verdict: .arpIgnored),
        CitizenDropCase(name: "reply to a VIP", frame: Net.arp(op: 2, senderIP: "10.0.1.11", targetIP: "10.0.1.100"),
                        verdict: .arpIgnored),
        CitizenDropCase(name: "reply whose sender is the port address (a conflict, not a neighbour)",
                        frame: Net.arp(op: 2, senderIP: "10.0.1.2", targetIP: "10.0.1.2"), verdict: .arpIgnored),
        CitizenDropCase(name: "request from another host for another host",
                        frame: Net.arp(op: 1, senderIP: "10.0.1.11", targetIP: "10.0.1.50"), verdict: .arpIgnored),
    ]

    @Test(arguments: arpLearnCases)
    func arpReplyToThePortIsHandedToTheControlPlane(_ c: CitizenDropCase) throws {
        let dp = try TestDataplane(yaml: c.vlanPort ? Self.vlanYAML : Self.yaml)
        let r = dp.process(c.frame)
        #expect(r.outcome.verdict == c.verdict)
        #expect(r.inPlace == c.frame, "the frame reaches the control plane (or is dropped) untouched")
        #expect(r.outcome.verdict.isToControl == (c.verdict == .arpLearned))
        #expect(!r.outcome.verdict.transmits)
        Self.expectOnly(c.verdict, dp)
    }

    // MARK: - 8. Unresolved next hops

    @Test func l2BackendWithoutMACIsUnresolved() throws {
        let dp = try TestDataplane(yaml: Self.yaml)
        let input = Net.frame(Net.tcp("10.0.1.110", 80))
        let r = dp.process(input)
        #expect(r.outcome == FrameOutcome(.unresolvedNextHop))
        #expect(r.inPlace == input)
        #expect(dp.verdicts == [.unresolvedNextHop: 1])
        for field in [CounterLayout.packets, CounterLayout.bytes] {
            #expect(dp.vipCounter(Net.unresolvedVIP, field) == 0)
            #expect(dp.backendCounter(Net.unresolvedBackend, field) == 0)
        }
    }

    /// A drop is a drop: a packet that never left must not create a pinned flow or count as a new flow
    /// (like every other drop, see `FrameProcessorTests.dropIsNamedCountedAndLeavesFrameAlone`).
    /// The same holds for the other drops `deliver` decides after picking the backend.
    struct LateDropCase: Sendable, CustomTestStringConvertible {
        var name: String
        var gatewayMAC = true
        var frame: [UInt8]
        var headroom = 64
        var verdict: Verdict
        var testDescription: String { "\(verdict): \(name)" }
    }

    static let lateDropCases: [LateDropCase] = [
        LateDropCase(name: "l2 backend without MAC", frame: Net.frame(Net.tcp("10.0.1.110", 80)),
                     verdict: .unresolvedNextHop),
        LateDropCase(name: "l3 gateway without MAC", gatewayMAC: false, frame: Net.frame(Net.udp()),
                     verdict: .unresolvedNextHop),
        LateDropCase(name: "l2 tag insertion with 3 bytes of headroom", frame: Net.frame(Net.tcp("10.0.1.109", 80)),
                     headroom: 3, verdict: .tooBig),
    ]

    @Test(arguments: lateDropCases)
    func dropAfterTheBackendPickLeavesNoFlowBehind(_ c: LateDropCase) throws {
        let dp = try TestDataplane(yaml: Net.yaml(gatewayMAC: c.gatewayMAC))
        let r = dp.process(c.frame, headroom: c.headroom)
        #expect(r.outcome == FrameOutcome(c.verdict))
        #expect(r.inPlace == c.frame)
        #expect(dp.verdicts == [c.verdict: 1])
        #expect(dp.targetCounters.isEmpty, "no VIP, backend or flow counter moves: \(dp.targetCounters)")
    }

    @Test func l2BackendResolvedByNeighbourTable() throws {
        let mac = Net.mac("02:00:00:00:09:99")
        let dp = try TestDataplane(yaml: Self.yaml, neighbors: [IPAddress("10.0.1.99")!: MACAddress("02:00:00:00:09:99")!])
        let input = TestFrames.padded(Net.frame(Net.tcp("10.0.1.110", 80)))
        let r = dp.process(input)
        let expected = Net.l2Output(input, backendMAC: mac)
        #expect(r.outcome == FrameOutcome(.forwardedL2, shift: 0, length: UInt32(expected.count)))
        #expect(TestBytes.hexString(r.output) == TestBytes.hexString(expected))
        #expect(dp.backendCounter(Net.unresolvedBackend, CounterLayout.packets) == 1)
    }

    /// A configured MAC wins over what ARP says (the neighbour table only fills gaps).
    @Test func configuredMACsWinOverNeighbours() throws {
        let other = MACAddress("02:00:00:00:0e:0e")!
        let dp = try TestDataplane(yaml: Self.yaml, neighbors: [IPAddress("10.0.1.11")!: other,
                                                                IPAddress("10.0.1.1")!: other])
        let web = Net.frame(Net.tcp("10.0.1.100", 443))
        #expect(dp.process(web).output == Net.l2Output(web, backendMAC: Net.webMAC))
        let dns = Net.frame(Net.udp())
        #expect(dp.process(dns).output == Net.l3Output(dns, backend: Net.dnsBackend))
    }

    @Test func l3GatewayWithoutMACIsUnresolved() throws {
        let dp = try TestDataplane(yaml: Net.yaml(gatewayMAC: false))
        let input = Net.frame(Net.udp())
        let r = dp.process(input)
        #expect(r.outcome == FrameOutcome(.unresolvedNextHop))
        #expect(r.inPlace == input)
        #expect(dp.verdicts == [.unresolvedNextHop: 1])
        #expect(dp.vipCounter(Net.dnsVIP, CounterLayout.packets) == 0)
        #expect(dp.backendCounter(Net.dnsBackendSlot, CounterLayout.packets) == 0)
        // l2 VIPs do not need the gateway, and PMTU replies go back to the client.
        #expect(dp.process(Net.frame(Net.tcp("10.0.1.100", 443))).outcome.verdict == .forwardedL2)
        #expect(dp.process(Net.frame(Net.udp(payload: 1453))).outcome.verdict == .icmpFragNeeded)
    }

    @Test func l3GatewayResolvedByNeighbourTable() throws {
        let mac = Net.mac("02:00:00:00:0f:01")
        let dp = try TestDataplane(yaml: Net.yaml(mtu: 576, gatewayMAC: false),
                                   neighbors: [IPAddress("10.0.1.1")!: MACAddress("02:00:00:00:0f:01")!])
        let input = Net.frame(Net.udp())
        let r = dp.process(input)
        let expected = Net.l3Output(input, backend: Net.dnsBackend, tag: nil, gateway: mac)
        #expect(r.outcome == FrameOutcome(.forwardedL3, shift: -20, length: UInt32(expected.count)))
        #expect(TestBytes.hexString(r.output) == TestBytes.hexString(expected))
        // Outer fragments go to the resolved gateway too.
        let big = dp.process(Net.frame(Net.udp(payload: 1000, flagsFragment: 0)))
        #expect(big.outcome.verdict == .forwardedL3)
        let fragments = dp.outerFragments(of: big.inPlace, outcome: big.outcome, identification: 9)
        #expect(fragments.count == 2)
        #expect(fragments.allSatisfy { Array($0.prefix(6)) == mac })
    }

    // MARK: - 9. Counters add up

    @Test func countersAddUpOverAMixedBatch() throws {
        let dp = try TestDataplane(yaml: Self.vlanYAML)
        let syn = Net.frame(Net.tcp("10.0.1.103", 443, srcPort: 41000))
        let tunnelSyn = Net.frame(Net.tcp("10.0.1.106", 22, srcPort: 41001))
        let l4 = TestFrames.tcp(srcPort: 41002, dstPort: 443, flags: 0x18, payload: Net.bytes(1000))
        var batch: [([UInt8], Verdict)] = [
            (Net.frame(Net.echo(to: "10.0.1.100")), .icmpEchoReply),
            (Net.frame(Net.echo(to: "10.0.1.105"), vlan: 100), .icmpEchoReply),
            (Net.frame(Net.echo(to: "10.0.1.104")), .icmpIgnored),
            (Net.frame(Net.echo(to: "10.0.1.100", type: 13)), .icmpIgnored),
            (Net.frame(Net.echo(to: "10.0.1.200")), .noVIP),
            (Net.frame(TestFrames.ipv4(src: Net.client, dst: "10.0.1.100", proto: 1, payload: [8, 0, 0, 0])),
             .malformedL4),
            (syn, .forwardedL2),
            (Net.frame(Net.icmpError(to: "10.0.1.103", quoting: Net.quoted(vip: "10.0.1.103", vport: 443,
                                                                          cport: 41000))), .forwardedL2),
            (tunnelSyn, .forwardedL3),
            (Net.frame(Net.icmpError(type: 11, code: 0, to: "10.0.1.106", quoting: Net.quoted(
                vip: "10.0.1.106", vport: 22, cport: 41001))), .forwardedL3),
            (Net.frame(Net.icmpError(to: "10.0.1.103", quoting: Net.quoted(vip: "10.0.1.103", vport: 80,
                                                                          cport: 41000))), .noVIP),
            (Net.frame(Net.icmpError(to: "10.0.1.103", quoting: Array(TestFrames.ipv4(
                src: "10.0.1.103", dst: Net.client, proto: 1, payload: TestFrames.icmp(type: 0, code: 0)).prefix(28)))),
             .icmpIgnored),
            (Net.frame(Net.udp(payload: 1453)), .icmpFragNeeded),
            (Net.frame(Net.udp(payload: 1453, flagsFragment: 0)), .forwardedL3),
            (Net.frame(Net.udp(flagsFragment: 0x2000)), .fragment),
            (Net.arp(op: 2, senderIP: "10.0.1.11", targetIP: "10.0.1.2"), .arpLearned),
            (Net.arp(op: 2, senderIP: "10.0.1.11", targetIP: "10.0.1.50"), .arpIgnored),
            (Net.arp(op: 1, senderIP: "10.0.1.50", targetIP: "10.0.1.103", dstMAC: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
             .arpReply),
            (Net.frame(Net.tcp("10.0.1.100", 443), vlan: 200), .wrongVLAN),
            (Net.frame(Net.tcp("10.0.1.110", 80)), .unresolvedNextHop),
        ]
        for part in Self.fragments(of: l4, size: 400, to: "10.0.1.103", from: Net.client, identification: 77) {
            batch.append((part, .forwardedL2))
        }
        for (n, (frame, verdict)) in batch.enumerated() {
            let r = dp.process(frame)
            #expect(r.outcome.verdict == verdict, "frame \(n)")
        }
        let expected: [Verdict: UInt64] = [
            .forwardedL2: 5, .forwardedL3: 3, .icmpEchoReply: 2, .icmpFragNeeded: 1, .arpReply: 1, .arpLearned: 1,
            .icmpIgnored: 3, .noVIP: 2, .malformedL4: 1, .fragment: 1, .arpIgnored: 1, .wrongVLAN: 1,
            .unresolvedNextHop: 1,
        ]
        #expect(dp.verdicts == expected)
        let total = Verdict.allCases.map { dp.verdictCount($0) }.reduce(0, +)
        #expect(total == UInt64(dp.processed))
        #expect(dp.processed == batch.count && batch.count == 23)
        func sum(_ include: (Verdict) -> Bool) -> UInt64 {
            Verdict.allCases.filter(include).map { dp.verdictCount($0) }.reduce(0, +)
        }
        let forwarded = sum(\.isForward), replied = sum(\.isReply), control = sum(\.isToControl), dropped = sum(\.isDrop)
        #expect([forwarded, replied, control, dropped] == [8, 4, 1, 10])
        #expect(forwarded + replied + control + dropped == UInt64(dp.processed), "rx == forwarded + replied + control + dropped")
        #expect(sum(\.transmits) == 12)
        // Every class is disjoint and covers every verdict.
        for v in Verdict.allCases {
            #expect([v.isForward, v.isReply, v.isToControl, v.isDrop].filter { $0 }.count == 1, "\(v)")
        }
        #expect(dp.vipCounter(Net.poolVIP, CounterLayout.packets) == 5)
        #expect(dp.vipCounter(Net.poolVIP, CounterLayout.newFlows) == 1)
        #expect(dp.vipCounter(Net.tunnelVIP, CounterLayout.packets) == 2)
        #expect(dp.vipCounter(Net.dnsVIP, CounterLayout.packets) == 1)
    }
}
