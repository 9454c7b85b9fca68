// Regression tests for the hostile review's input defects: YAML bombs, addresses no host can have, oversized
// socket paths, duplicate request keys, unquoted shell words, and probes that fail for the appliance's own reasons.
import Foundation
import Testing
@testable import TulaCore
@testable import TulaStats

/// ConfigTests' base config (lines: 4 port address, 5 gateway, 9 VIP address, 14 first backend, 16 appended).
private let minimalConfig = baseConfig

private func refusal(_ yaml: String) -> ConfigError? {
    #expect(throws: ConfigError.self) { _ = try ConfigLoader.parse(yaml: yaml, file: "h.yaml") }
}

@Suite struct YAMLBombTests {
    /// Before the bound, each of these overflowed the stack in Yams' recursive composer (exit 139), and a
    /// reload of such a file killed the running appliance.
    @Test(arguments: [
        ("flow sequences", "workers: " + String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000) + "\n", 1),
        ("flow mappings", "workers: " + String(repeating: "{a: ", count: 5000) + String(repeating: "}", count: 5000) + "\n", 1),
        ("block mappings", "workers: 1\n" + (0..<200).map { String(repeating: " ", count: $0) + "k\($0):\n" }.joined(), 66),
        ("block sequences", "workers:\n" + (0..<200).map { String(repeating: " ", count: $0) + "-\n" }.joined(), 65),
    ])
    func deepNestingIsRefusedWithItsLine(_ what: String, _ yaml: String, _ line: Int) {
        let error = refusal(yaml)
        #expect(error?.line == line, "\(what): \(String(describing: error))")
        #expect(error?.reason == "nesting deeper than \(YAMLBounds.maxDepth) levels", "\(what): \(String(describing: error))")
    }

    @Test func aliasesCountForTheDepthTheyCopy() {
        let ten = { (inner: String) in String(repeating: "[", count: 10) + inner + String(repeating: "]", count: 10) }
        var yaml = "a0: &a0 \(ten("1"))\n"
        for i in 1..<10 { yaml += "a\(i): &a\(i) \(ten("*a\(i - 1)"))\n" }
        let error = refusal(yaml)
        #expect(error?.reason == "nesting deeper than \(YAMLBounds.maxDepth) levels", "\(String(describing: error))")
        #expect(error?.line == 7, "\(String(describing: error))")   // a6 reaches 71 levels with its own mapping entry
    }

    @Test func tooManyAliasesAreRefused() {
        let yaml = "x: &x 1\nlist: [" + Array(repeating: "*x", count: YAMLBounds.maxAliases + 1).joined(separator: ", ") + "]\n"
        #expect(refusal(yaml)?.reason == "more than \(YAMLBounds.maxAliases) aliases (*name)")
    }

    @Test func oversizedTextAndFilesAreRefusedBeforeParsing() throws {
        let big = minimalConfig + "# " + String(repeating: "x", count: YAMLBounds.maxBytes) + "\n"
        #expect(refusal(big)?.reason.hasPrefix("the config is \(big.utf8.count) bytes; at most \(YAMLBounds.maxBytes)") == true)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tula-big-\(UUID().uuidString).yaml").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try big.write(toFile: path, atomically: true, encoding: .utf8)
        #expect(throws: ConfigError(file: path, line: 1, reason: "the config is \(big.utf8.count) bytes; at most "
                                    + "\(YAMLBounds.maxBytes) (4 MiB) are read")) { _ = try ConfigLoader.load(path: path) }
        #expect(throws: ConfigError(file: "/dev/zero", line: 1, reason: "cannot read file: not a regular file")) {
            _ = try ConfigLoader.load(path: "/dev/zero")
        }
    }

    @Test func sensibleAnchorsStillWork() throws {
        let pool = "    backends:\n      - address: 10.0.1.11\n        mac: 02:00:00:00:01:11\n"
        #expect(minimalConfig.contains(pool))
        let yaml = minimalConfig.replacingOccurrences(of: pool, with: pool.replacingOccurrences(of: "backends:", with: "backends: &pool"))
            + "  - name: web2\n    address: 10.0.1.101\n    port: 443\n    protocol: tcp\n    mode: l2\n    backends: *pool\n"
        let config = try ConfigLoader.parse(yaml: yaml, file: "h.yaml")
        #expect(config.vips.map(\.backends.count) == [1, 1])
    }
}

@Suite struct ConfigLimitTests {
    @Test(arguments: [
        ("VIP 0.0.0.0", ("    address: 10.0.1.100", "    address: 0.0.0.0"), 9, "vips[0].address: 0.0.0.0 is in 0.0.0.0/8"),
        ("broadcast backend", ("      - address: 10.0.1.11", "      - address: 255.255.255.255"), 14,
         "vips[0].backends[0].address: 255.255.255.255 is the broadcast address"),
        ("multicast VIP", ("    address: 10.0.1.100", "    address: 239.1.1.1"), 9, "239.1.1.1 is a multicast address"),
        ("loopback backend", ("      - address: 10.0.1.11", "      - address: 127.0.0.1"), 14, "127.0.0.1 is a loopback address"),
        ("reserved gateway", ("    gateway: 10.0.1.1", "    gateway: 240.0.0.1"), 5, "240.0.0.1 is in the reserved range"),
        ("port address 0", ("    address: 10.0.1.2", "    address: 0.1.2.3"), 4, "ports[0].address: 0.1.2.3 is in 0.0.0.0/8"),
    ])
    func addressesNoHostCanHaveAreRefused(_ what: String, _ edit: (String, String), _ line: Int, _ reason: String) {
        #expect(minimalConfig.contains(edit.0))
        let error = refusal(minimalConfig.replacingOccurrences(of: edit.0, with: edit.1))
        #expect(error?.line == line, "\(what): \(String(describing: error))")
        #expect(error?.reason.contains(reason) == true, "\(what): \(String(describing: error))")
    }

    @Test func longOrControlCharacterVIPNamesAreRefused() {
        for name in [String(repeating: "v", count: VIPConfig.maxNameBytes + 1), "web\\u0007"] {
            let error = refusal(minimalConfig.replacingOccurrences(of: "  - name: web\n", with: "  - name: \"\(name)\"\n"))
            #expect(error?.line == 8 && error?.reason.contains("at most 64 bytes without control characters") == true,
                    "\(String(describing: error))")
        }
        let longest = String(repeating: "v", count: VIPConfig.maxNameBytes)
        #expect(throws: Never.self) {
            _ = try ConfigLoader.parse(yaml: minimalConfig.replacingOccurrences(of: "  - name: web\n", with: "  - name: \(longest)\n"), file: "h.yaml")
        }
    }

    @Test func socketPathLongerThanSunPathIsRefused() throws {
        let fits = "/run/" + String(repeating: "t", count: TulaConfig.maxSocketPathBytes - 5)
        #expect(try ConfigLoader.parse(yaml: minimalConfig + "stats_socket: \(fits)\n", file: "h.yaml").statsSocket == fits)
        let error = refusal(minimalConfig + "stats_socket: \(fits)x\n")
        #expect(error?.line == 16)
        #expect(error?.reason == "stats_socket: the path is 108 bytes; a Unix socket path has at most 107", "\(String(describing: error))")
    }

    /// Before, a VIP with more backends than the largest table could serve was told to use a table size
    /// above `maglev_table_size`'s own maximum.
    @Test func tooManyBackendsNeverSuggestATableSizeOutOfRange() {
        let backends = (0..<(CounterSlots.maxBackends + 1)).map { i in "      - {address: 10.9.\(i / 256).\(i % 256)}\n" }
        let one = "      - address: 10.0.1.11\n        mac: 02:00:00:00:01:11\n"
        #expect(minimalConfig.contains(one))
        let yaml = minimalConfig.replacingOccurrences(of: one, with: backends.joined())
        let error = refusal(yaml)
        #expect(error?.reason == "vips[0].backends: at most \(CounterSlots.maxBackends) backends in all, got \(CounterSlots.maxBackends + 1)",
                "\(String(describing: error))")
        let anyTooSmall = (1...CounterSlots.maxBackends).allSatisfy { 100 * $0 <= VIPConfig.tableSizeRange.upperBound }
        #expect(anyTooSmall, "the advice for the most backends a VIP may have fits maglev_table_size's range")
    }
}

@Suite struct ControlRequestHardeningTests {
    @Test(arguments: [
        #"{"cmd":"stats","cmd":"reload"}"#,
        #"{"cmd":"set-weight","vip":"web","address":"10.0.1.11","weight":1,"weight":0}"#,
        #"{"cmd":"stats","c\u006dd":"reload"}"#,
    ])
    func duplicateKeysAreRefused(_ line: String) {
        #expect(throws: ControlError.self) { _ = try ControlRequest.parse(line) }
        do { _ = try ControlRequest.parse(line) } catch { #expect(error.message.contains("is given twice"), "\(error.message)") }
    }

    @Test func keysInsideStringsAndNestedValuesAreNotKeys() {
        #expect(duplicateTopLevelKey(#"{"cmd":"stats","vip":"cmd"}"#) == nil)
        #expect(duplicateTopLevelKey(#"{"a":{"b":1,"b":2},"c":"\"a\""}"#) == nil)
        #expect(duplicateTopLevelKey(#"{"a":[1,{"a":2}],"a":3}"#) == "a")
    }

    @Test func backendsMustBeHostAddresses() {
        let line = #"{"cmd":"add-backend","vip":"web","address":"255.255.255.255"}"#
        do {
            _ = try ControlRequest.parse(line)
            Issue.record("accepted \(line)")
        } catch {
            #expect(error.message == "address: 255.255.255.255 is the broadcast address")
        }
    }
}

@Suite struct ShellQuotingTests {
    @Test func fixLinesQuoteWhatTheShellWouldInterpret() {
        #expect(BackendCommand(["ip", "link", "set", "eth0.100", "up"]).description == "ip link set eth0.100 up")
        #expect(BackendCommand(["ip", "link", "set", "x$(reboot)", "up"]).description == "ip link set 'x$(reboot)' up")
        #expect(BackendCommand(["ip", "link", "set", "it's", "up"]).description == #"ip link set 'it'\''s' up"#)
        #expect(BackendCommand(["echo", ""]).description == "echo ''")
    }
}

@Suite struct ProbeOutcomeTests {
    private var check: HealthCheckConfig { var c = HealthCheckConfig(port: 80); c.fall = 1; return c }

    @Test func theAppliancesOwnShortagesAreUnknownNotFailures() {
        #expect(ProbeOutcome(localErrno: EMFILE, "socket") == .unknown("socket: Too many open files"))
        #expect(ProbeOutcome(localErrno: ENFILE, "socket") == .unknown("socket: Too many open files in system"))
        #expect(ProbeOutcome(localErrno: ECONNREFUSED, "connect 10.0.1.11:80: Connection refused")
                == .failed("connect 10.0.1.11:80: Connection refused"))
    }

    @Test func unknownOutcomesLeaveTheBackendAsItWas() throws {
        let config = try ConfigLoader.parse(yaml: minimalConfig, file: "h.yaml")
        var withCheck = config
        withCheck.vips[0].healthCheck = check
        var health = BackendHealth()
        health.track(withCheck)
        let key = BackendKey(vip: "web", address: .v4(IPv4Address(10, 0, 1, 11)))
        for _ in 0..<5 {
            let changed = health.record(key, .unknown("socket: Too many open files"), check: check)
            #expect(!changed)
        }
        #expect(health.isHealthy(key))
        #expect(health.states[key]?.failures == 0)
        let changed = health.record(key, .failed("connect: refused"), check: check)
        #expect(changed)   // fall 1: a real failure counts
        #expect(!health.isHealthy(key))
    }
}
