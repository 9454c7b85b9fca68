// Tests for the YAML config loader: the bundled example, defaults, and one refusal per kind of mistake.
import Foundation
import Testing
@testable import TulaCore

/// A minimal valid config; mistakes below are made by replacing one line, so line numbers stay put.
let baseConfig = """
    ports:
      - name: wan
        device: net_pcap0
        address: 10.0.1.2
        gateway: 10.0.1.1
        gateway_mac: 02:00:00:00:00:fe
    vips:
      - name: web
        address: 10.0.1.100
        port: 443
        protocol: tcp
        mode: l2
        backends:
          - address: 10.0.1.11
            mac: 02:00:00:00:01:11

    """
// Line numbers of baseConfig:   1 ports:   2 - name: wan   3 device   4 address   5 gateway
// 6 gateway_mac   7 vips:   8 - name: web   9 address   10 port   11 protocol   12 mode
// 13 backends:   14 - address: 10.0.1.11   15 mac   (16 is the first line after the end)

/// baseConfig with each `(old, new)` edit applied; every `old` must occur in it.
private func variant(_ edits: (String, String)...) -> String {
    edits.reduce(baseConfig) { text, edit in
        precondition(text.contains(edit.0), "test bug: \(edit.0) is not in the config")
        return text.replacingOccurrences(of: edit.0, with: edit.1)
    }
}

/// The `ports:` section of baseConfig alone (lines 1-6).
private let portsOnly = baseConfig.components(separatedBy: "vips:")[0]

/// baseConfig with `lines` appended (starting at line 16).
private func appended(_ lines: String) -> String { baseConfig + lines }

/// The first backend's two lines (14-15).
private let firstBackend = "      - address: 10.0.1.11\n        mac: 02:00:00:00:01:11\n"

/// A second VIP to append at line 16.
private func secondVIP(name: String = "web2", port: String = "443") -> String {
    """
      - name: \(name)
        address: 10.0.1.100
        port: \(port)
        protocol: tcp
        mode: l2
        backends:
          - address: 10.0.1.12
            mac: 02:00:00:00:01:12

    """
}

/// One bad config and where and why it must be refused.
struct Mistake: Sendable, CustomTestStringConvertible {
    let what: String
    let yaml: String
    let line: Int
    let reason: String
    var testDescription: String { what }

    init(what: String, yaml: String, line: Int, reason: String) {
        self.what = what; self.yaml = yaml; self.line = line; self.reason = reason
    }

    /// A mistake named by the reason it must be refused with.
    init(yaml: String, line: Int, reason: String) {
        self.init(what: reason, yaml: yaml, line: line, reason: reason)
    }

    /// Loading `yaml` (as tula.yaml) is refused at `line` with a reason holding `reason`.
    func expectRefused(sourceLocation: SourceLocation = #_sourceLocation) {
        let error = #expect(throws: ConfigError.self, sourceLocation: sourceLocation) {
            _ = try ConfigLoader.parse(yaml: yaml, file: "tula.yaml")
        }
        guard let error else { return }
        #expect(error.file == "tula.yaml", sourceLocation: sourceLocation)
        #expect(error.line == line, "\(error)", sourceLocation: sourceLocation)
        #expect(error.reason.contains(reason), "\(error)", sourceLocation: sourceLocation)
    }
}

private let mistakes: [Mistake] = [
    Mistake(what: "unknown top-level key", yaml: appended("colour: blue\n"),
            line: 16, reason: "colour: unknown key (expected one of: ports, workers"),
    Mistake(what: "unknown nested key", yaml: variant(("    address: 10.0.1.2", "    adress: 10.0.1.2")),
            line: 4, reason: "ports[0].adress: unknown key"),
    Mistake(what: "unknown key in a backend", yaml: appended("        colour: red\n"),
            line: 16, reason: "vips[0].backends[0].colour: unknown key"),
    Mistake(what: "duplicate key", yaml: appended("        mac: 02:00:00:00:01:99\n"),
            line: 16, reason: "vips[0].backends[0].mac: duplicate key (first given on line 15)"),
    Mistake(what: "unknown mode", yaml: variant(("mode: l2", "mode: l4")),
            line: 12, reason: "vips[0].mode: unknown mode \"l4\" (expected l2 or l3)"),
    Mistake(what: "unknown protocol", yaml: variant(("protocol: tcp", "protocol: sctp")),
            line: 11, reason: "vips[0].protocol: unknown protocol \"sctp\" (expected tcp or udp)"),
    Mistake(what: "bad IPv4 address", yaml: variant(("address: 10.0.1.100", "address: 10.0.1.300")),
            line: 9, reason: "vips[0].address: invalid IP address \"10.0.1.300\""),
    Mistake(what: "bad MAC address", yaml: variant(("mac: 02:00:00:00:01:11", "mac: 02:00:00:00:01")),
            line: 15, reason: "vips[0].backends[0].mac: invalid MAC address \"02:00:00:00:01\""),
    Mistake(what: "port 0", yaml: variant(("port: 443", "port: 0")),
            line: 10, reason: "vips[0].port: 0 is out of range (expected 1...65535)"),
    Mistake(what: "port 70000", yaml: variant(("port: 443", "port: 70000")),
            line: 10, reason: "vips[0].port: 70000 is out of range"),
    Mistake(what: "port \"http\"", yaml: variant(("port: 443", "port: http")),
            line: 10, reason: "vips[0].port: expected a port number (1...65535) or \"*\", got \"http\""),
    Mistake(what: "unquoted * port", yaml: variant(("port: 443", "port: *")),
            line: 10, reason: "quote a wildcard port"),
    Mistake(what: "duplicate VIP", yaml: appended(secondVIP()),
            line: 16, reason: "vips[1]: duplicate VIP 10.0.1.100:443/tcp, already defined by vips[0] \"web\""),
    Mistake(what: "duplicate wildcard VIP",
            yaml: variant(("port: 443", "port: \"*\"")) + secondVIP(port: "'*'"),
            line: 16, reason: "duplicate VIP 10.0.1.100:*/tcp"),
    Mistake(what: "duplicate VIP name", yaml: appended(secondVIP(name: "web", port: "80")),
            line: 16, reason: "vips[1].name: duplicate VIP name \"web\" (already used by vips[0])"),
    Mistake(what: "duplicate port name",
            yaml: variant(("vips:", "  - name: wan\n    device: net_pcap1\n    address: 10.0.9.2\nvips:")),
            line: 7, reason: "ports[1].name: duplicate port name \"wan\""),
    Mistake(what: "duplicate backend address",
            yaml: appended("      - address: 10.0.1.11\n        mac: 02:00:00:00:01:12\n"),
            line: 16, reason: "vips[0].backends[1].address: duplicate backend 10.0.1.11 (already backends[0])"),
    Mistake(what: "VIP without backends key", yaml: variant(("    backends:\n", "    # backends: none\n"),
                                                          (firstBackend, "")),
            line: 8, reason: "vips[0]: VIP \"web\" has no backends"),
    Mistake(what: "VIP with empty backends", yaml: variant(("    backends:\n", "    backends: []\n"),
                                                         (firstBackend, "")),
            line: 13, reason: "vips[0].backends: VIP \"web\" has no backends"),
    Mistake(what: "negative weight", yaml: appended("        weight: -1\n"),
            line: 16, reason: "vips[0].backends[0].weight: must not be negative"),
    Mistake(what: "weight too large", yaml: appended("        weight: 1001\n"),
            line: 16, reason: "weight: 1001 is out of range (expected 0...1000)"),
    Mistake(what: "backend vlan out of range", yaml: appended("        vlan: 4095\n"),
            line: 16, reason: "vips[0].backends[0].vlan: 4095 is out of range (expected 1...4094)"),
    Mistake(what: "unknown hash mode", yaml: variant(("    mode: l2\n", "    mode: l2\n    hash: 4tuple\n")),
            line: 13, reason: "vips[0].hash: unknown hash \"4tuple\" (expected one of 5tuple, 3tuple, src)"),
    Mistake(what: "icmp_echo not a boolean", yaml: variant(("    mode: l2\n", "    mode: l2\n    icmp_echo: yes please\n")),
            line: 13, reason: "vips[0].icmp_echo: expected true or false"),
    Mistake(what: "l3 VIP without gateway",
            yaml: variant(("gateway: 10.0.1.1", "# no gateway"), ("mode: l2", "mode: l3")),
            line: 12, reason: "vips[0].mode: l3 needs a gateway on every port, but port \"wan\" has none"),
    Mistake(what: "IPv6 l2 backend without mac and no address6 to resolve it from",
            yaml: variant(("address: 10.0.1.100", "address: 2001:db8:1::100"), (firstBackend, "      - address: 2001:db8:1::11\n")),
            line: 14, reason: "vips[0].backends[0]: IPv6 backend 2001:db8:1::11 has no mac and no port has address6, the source of "
                + "the neighbor solicitations that resolve it: give a port address6 or the backend a mac"),
    Mistake(what: "port vlan out of range", yaml: variant(("gateway_mac: 02:00:00:00:00:fe", "gateway_mac: 02:00:00:00:00:fe\n    vlan: 0")),
            line: 7, reason: "ports[0].vlan: 0 is out of range (expected 1...4094)"),
    Mistake(what: "VIP address is the port's own", yaml: variant(("address: 10.0.1.100", "address: 10.0.1.2")),
            line: 9, reason: "vips[0].address: 10.0.1.2 is the own address of port \"wan\""),
    Mistake(what: "maglev table size not prime", yaml: appended("    maglev_table_size: 65536\n"),
            line: 16, reason: "vips[0].maglev_table_size: 65536 is not prime"),
    Mistake(what: "maglev table size too small for backends",
            yaml: variant(("    mode: l2\n", "    mode: l2\n    maglev_table_size: 257\n"))
                + "      - address: 10.0.1.12\n        mac: 02:00:00:00:01:12\n"
                + "      - address: 10.0.1.13\n        mac: 02:00:00:00:01:13\n",
            line: 13,
            reason: "vips[0].maglev_table_size: 257 is too small for 3 backends (needs a prime >= 300, e.g. 307)"),
    Mistake(what: "YAML syntax error", yaml: variant(("    port: 443", "     port: 443")),
            line: 10, reason: "invalid YAML: mapping values are not allowed in this context"),
    Mistake(what: "wrong type for workers", yaml: appended("workers: \"two\"\n"),
            line: 16, reason: "workers: expected a worker count (1...64) or a list of lcore ids, got \"two\""),
    Mistake(what: "quoted number", yaml: variant(("port: 443", "port: \"443\"")),
            line: 10, reason: "got \"443\" (write numbers without quotes)"),
    Mistake(what: "wrong type for weight", yaml: appended("        weight: 1.5\n"),
            line: 16, reason: "vips[0].backends[0].weight: expected a whole number, got 1.5"),
    Mistake(what: "wrong type for mtu", yaml: variant(("    address: 10.0.1.2", "    address: 10.0.1.2\n    mtu: big")),
            line: 5, reason: "ports[0].mtu: expected a whole number, got \"big\""),
    Mistake(what: "ports is not a list", yaml: "ports: wan\nvips: []\n",
            line: 1, reason: "ports: expected a list, got \"wan\""),
    Mistake(what: "missing ports", yaml: "vips: []\n", line: 1, reason: "missing required key \"ports\""),
    Mistake(what: "empty ports", yaml: "ports: []\nvips: []\n", line: 1, reason: "ports: at least one port is needed"),
    Mistake(what: "missing vips", yaml: portsOnly,
            line: 1, reason: "missing required key \"vips\""),
    Mistake(what: "missing required port device", yaml: variant(("    device: net_pcap0\n", "    # device\n")),
            line: 2, reason: "ports[0]: missing required key \"device\""),
    Mistake(what: "required key without value", yaml: variant(("name: web", "name:")),
            line: 8, reason: "vips[0].name: missing value"),
    Mistake(what: "invalid port name", yaml: variant(("name: wan", "name: wan port")),
            line: 2, reason: "ports[0].name: invalid port name \"wan port\""),
    Mistake(what: "flows_per_worker below range", yaml: appended("flows_per_worker: 1000\n"),
            line: 16, reason: "flows_per_worker: 1000 is out of range (expected 1024...67108864)"),
    Mistake(what: "relative stats socket", yaml: appended("stats_socket: tula.sock\n"),
            line: 16, reason: "stats_socket: must be an absolute path"),
    Mistake(what: "mtu out of range", yaml: variant(("    address: 10.0.1.2", "    address: 10.0.1.2\n    mtu: 9217")),
            line: 5, reason: "ports[0].mtu: 9217 is out of range (expected 68...9216)"),
    Mistake(what: "worker count 0", yaml: appended("workers: 0\n"), line: 16, reason: "workers: 0 is out of range"),
    Mistake(what: "duplicate lcore", yaml: appended("workers:\n  - 1\n  - 1\n"),
            line: 18, reason: "workers[1]: lcore 1 is listed twice"),
    Mistake(what: "empty document", yaml: "# nothing here\n", line: 1, reason: "the config is empty"),
    // libyaml finds these at the end of the text, which it puts on a line after the last: the text's last line.
    Mistake(what: "unclosed list, no line break", yaml: "[", line: 1, reason: "invalid YAML: did not find expected node content"),
    Mistake(what: "unclosed list, then a line break", yaml: "ports: [wan,\n", line: 1, reason: "invalid YAML"),
    Mistake(what: "top level is a list", yaml: "- ports\n",
            line: 1, reason: "expected a mapping of settings, got a list"),
]

@Suite struct ConfigTests {
    private static var packageRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
    }

    @Test func bundledExampleParsesCompletely() throws {
        let path = Self.packageRoot.appendingPathComponent("examples/streaming-dsr.yaml").path
        let config = try ConfigLoader.load(path: path)

        #expect(config.ports == [
            PortConfig(name: "wan", device: "net_pcap0", address: IPv4Address(10, 0, 1, 2),
                       mac: MACAddress(0x02, 0, 0, 0, 0, 0x01), gateway: IPv4Address(10, 0, 1, 1),
                       gatewayMAC: MACAddress(0x02, 0, 0, 0, 0, 0xFE), mtu: 1500, line: 3),
        ])
        #expect(config.workers == .count(1))
        #expect(config.flowsPerWorker == 65536)
        #expect(config.flowIdleTimeoutSeconds == 300)
        #expect(config.statsSocket == "/run/tula/tula.sock")
        #expect(config.vips.count == 2)

        let streaming = try #require(config.vips.first)
        #expect(streaming.name == "streaming-dsr")
        #expect(streaming.address == .v4(IPv4Address(10, 0, 1, 100)))
        #expect(streaming.port == 443)
        #expect(streaming.proto == .tcp)
        #expect(streaming.mode == .l2)
        #expect(streaming.tableSize == 65537)
        #expect(streaming.line == 14)
        #expect(streaming.backends == [
            BackendConfig(address: .v4(IPv4Address(10, 0, 1, 11)), mac: MACAddress(2, 0, 0, 0, 1, 0x11), line: 20),
            BackendConfig(address: .v4(IPv4Address(10, 0, 1, 12)), mac: MACAddress(2, 0, 0, 0, 1, 0x12), line: 23),
            BackendConfig(address: .v4(IPv4Address(10, 0, 1, 13)), mac: MACAddress(2, 0, 0, 0, 1, 0x13), weight: 2,
                          line: 26),
        ])

        let video = try #require(config.vips.last)
        #expect(video == VIPConfig(
            name: "video-l3", address: .v4(IPv4Address(10, 0, 1, 200)), port: nil, proto: .udp, mode: .l3,
            tableSize: 65537,
            backends: [BackendConfig(address: .v4(IPv4Address(10, 0, 2, 21)), mac: nil, weight: 1, line: 35),
                       BackendConfig(address: .v4(IPv4Address(10, 0, 2, 22)), mac: nil, weight: 1, line: 37)],
            line: 29))
    }

    @Test func defaultsApply() throws {
        let config = try ConfigLoader.parse(yaml: baseConfig, file: "tula.yaml")
        #expect(config.workers == .count(1))
        #expect(config.flowsPerWorker == 1_048_576)
        #expect(config.flowIdleTimeoutSeconds == 300)
        #expect(config.statsSocket == "/run/tula/tula.sock")
        let port = try #require(config.ports.first)
        #expect(port.mtu == 1500)
        #expect(port.mac == nil)
        #expect(port.line == 2)
        let vip = try #require(config.vips.first)
        #expect(vip.tableSize == 65537)
        #expect(vip.line == 8)
        #expect(vip.backends == [BackendConfig(address: .v4(IPv4Address(10, 0, 1, 11)),
                                               mac: MACAddress(2, 0, 0, 0, 1, 0x11), weight: 1, line: 14)])
    }

    @Test func optionalSettingsAreRead() throws {
        let yaml = appended("""
            workers: [2, 3]
            flow_idle_timeout: 60
            stats_socket: /tmp/tula.sock

            """)
        let config = try ConfigLoader.parse(yaml: yaml, file: "tula.yaml")
        #expect(config.workers == .lcores([2, 3]))
        #expect(config.flowIdleTimeoutSeconds == 60)
        #expect(config.statsSocket == "/tmp/tula.sock")
    }

    @Test func emptyVIPListIsAllowed() throws {
        let config = try ConfigLoader.parse(yaml: portsOnly + "vips: []\n", file: "t.yaml")
        #expect(config.vips.isEmpty)
    }

    @Test func allZeroWeightsAreAllowed() throws {
        let config = try ConfigLoader.parse(yaml: appended("        weight: 0\n"), file: "t.yaml")
        #expect(config.vips.first?.backends.first?.weight == 0)
    }

    @Test(arguments: [(1024, 1024), (1025, 2048), (65536, 65536), (100_000, 131_072), (67_108_864, 67_108_864)])
    func flowsPerWorkerRoundsUpToPowerOfTwo(given: Int, expected: Int) throws {
        let config = try ConfigLoader.parse(yaml: appended("flows_per_worker: \(given)\n"), file: "t.yaml")
        #expect(config.flowsPerWorker == expected)
    }

    @Test(arguments: mistakes)
    func mistakeIsRefusedWithLineAndReason(_ mistake: Mistake) {
        mistake.expectRefused()
    }

    @Test func defaultTableSizeTooSmallBlamesBackends() {
        let backends = (0..<700).map { i in
            "      - {address: 10.9.\(i / 256).\(i % 256), mac: \"02:00:00:00:01:11\"}\n"
        }
        let yaml = variant(("    backends:\n", "    backends:\n" + backends.joined()))
        let error = #expect(throws: ConfigError.self) { _ = try ConfigLoader.parse(yaml: yaml, file: "t.yaml") }
        #expect(error?.line == 13)
        #expect(error?.reason.contains("vips[0].backends: 701 backends are too many for the default maglev_table_size "
            + "65537; set maglev_table_size to a prime >= 70100, e.g. 70111") == true, "\(String(describing: error))")
    }

    @Test func errorDescriptionIsFileLineReason() {
        let error = ConfigError(file: "tula.yaml", line: 14,
                                reason: "vips[1].mode: unknown mode \"l4\" (expected l2 or l3)")
        #expect(error.description == "tula.yaml:14: vips[1].mode: unknown mode \"l4\" (expected l2 or l3)")
    }

    @Test func unreadableFileIsReportedOnLineOne() {
        let path = "/nonexistent/tula-\(UInt32.random(in: 0...UInt32.max)).yaml"
        #expect(throws: ConfigError(file: path, line: 1, reason: "cannot read file: no such file")) {
            _ = try ConfigLoader.load(path: path)
        }
    }
}

@Suite struct ConfigNetworkOptionTests {
    @Test func macsMayBeLeftToARPAndNetworkOptionsAreRead() throws {
        let yaml = variant(("gateway_mac: 02:00:00:00:00:fe", "vlan: 100"), ("    mode: l2\n", "    mode: l2\n    hash: src\n    icmp_echo: false\n"),
                           ("        mac: 02:00:00:00:01:11\n", "        vlan: 200\n"))
            + "gratuitous_arp: true\n"
        let config = try ConfigLoader.parse(yaml: yaml, file: "t.yaml")
        #expect(config.ports[0].gatewayMAC == nil)
        #expect(config.ports[0].vlan == 100)
        #expect(config.vips[0].hash == .source)
        #expect(config.vips[0].icmpEcho == false)
        #expect(config.vips[0].backends[0].mac == nil)
        #expect(config.vips[0].backends[0].vlan == 200)
        #expect(config.gratuitousARP)
    }

    @Test func defaultsOfNetworkOptions() throws {
        let config = try ConfigLoader.parse(yaml: baseConfig, file: "t.yaml")
        #expect(config.vips[0].hash == .fiveTuple)
        #expect(config.vips[0].icmpEcho)
        #expect(config.ports[0].vlan == nil)
        #expect(!config.gratuitousARP)
    }
}
