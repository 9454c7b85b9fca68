// Tests for the control socket: request parsing and encoding, line framing, responses, the summary's JSON
// round trip, Prometheus output (checked by a small exposition-format parser), the rate table, and the
// server itself in process (socket file rules, bad requests, idle and oversized clients, 200 clients).
import Foundation
import Testing
@testable import TulaCore
@testable import TulaDatapath
@testable import TulaStats

/// One l2 VIP with two backends (weights 1 and 2).
private let controlTestYAML = """
    ports:
      - name: wan
        device: net_null0
        address: 10.0.1.2
        mac: 02:00:00:00:00:01
    vips:
      - name: web
        address: 10.0.1.100
        port: 80
        protocol: tcp
        mode: l2
        backends:
          - address: 10.0.1.11
            mac: 02:00:00:00:01:11
          - address: 10.0.1.12
            mac: 02:00:00:00:01:12
            weight: 2

    """

func testConfig() throws -> TulaConfig { try ConfigLoader.parse(yaml: controlTestYAML, file: "control.yaml") }

/// A summary of `config` with distinct counter values: port rx = 1000 + k, VIP packets = 50, backends 20 and 30.
private func testSummary(_ config: TulaConfig, elapsed: Double = 10, scale: UInt64 = 1) throws -> Summary {
    let layout = CounterLayout(ports: config.ports.count)
    var slots = CounterSlots()
    try slots.assign(config)
    var c = [UInt64](repeating: 0, count: layout.count)
    c[layout.port(0) + CounterLayout.rxPackets] = 1000 * scale
    c[layout.port(0) + CounterLayout.rxBytes] = 125_000 * scale
    c[layout.port(0) + CounterLayout.txPackets] = 990 * scale
    c[layout.port(0) + CounterLayout.txBytes] = 123_750 * scale
    c[layout.verdict(0, .forwardedL2)] = 990 * scale
    c[layout.verdict(0, .noVIP)] = 10 * scale
    let vip = try #require(slots.slot(vip: "web"))
    c[layout.vip(vip) + CounterLayout.packets] = 50 * scale
    c[layout.vip(vip) + CounterLayout.bytes] = 5000 * scale
    c[layout.vip(vip) + CounterLayout.newFlows] = 5 * scale
    for (b, packets) in [(config.vips[0].backends[0].address, UInt64(20)), (config.vips[0].backends[1].address, 30)] {
        let slot = try #require(slots.slot(backend: BackendKey(vip: "web", address: b)))
        c[layout.backend(slot) + CounterLayout.packets] = packets * scale
        c[layout.backend(slot) + CounterLayout.bytes] = packets * 100 * scale
        c[layout.backend(slot) + CounterLayout.newFlows] = packets / 10 * scale
    }
    return Summary(config: config, counters: c, layout: layout, slots: slots, elapsedSeconds: elapsed, mbufsInUse: 77,
                   notes: [("workers", "1")])
}

@Suite struct ControlProtocolTests {
    // MARK: Requests

    @Test func everyCommandParsesAndRoundTrips() throws {
        let web = "web", b = try #require(IPAddress("10.0.1.14"))
        let cases: [(String, ControlRequest)] = [
            (#"{"cmd":"stats"}"#, .stats),
            (#"{"cmd":"reload"}"#, .reload),
            (#"{"cmd":"save"}"#, .save(to: nil)),
            (#"{"cmd":"save","to":"/etc/tula/new.yaml"}"#, .save(to: "/etc/tula/new.yaml")),
            (#"{"cmd":"add-backend","vip":"web","address":"10.0.1.14","mac":"02:00:00:00:01:14","weight":3}"#,
             .edit(.addBackend(vip: web, backend: BackendConfig(address: b, mac: MACAddress(2, 0, 0, 0, 1, 0x14), weight: 3)))),
            (#"{"address":"10.0.1.14","cmd":"add-backend","vip":"web"}"#,
             .edit(.addBackend(vip: web, backend: BackendConfig(address: b, mac: nil, weight: 1)))),
            (#"{"cmd":"remove-backend","vip":"web","address":"10.0.1.14"}"#, .edit(.removeBackend(vip: web, address: b))),
            (#" { "cmd" : "set-weight", "vip":"web", "address":"10.0.1.14", "weight":0 } "#,
             .edit(.setWeight(vip: web, address: b, weight: 0))),
            // IPv6 addresses in any valid spelling; the request line carries the RFC 5952 form.
            (#"{"cmd":"add-backend","vip":"web6","address":"2001:DB8:0:0::13"}"#,
             .edit(.addBackend(vip: "web6", backend: BackendConfig(address: .v6(IPv6Address(hi: 0x2001_0DB8_0000_0000, lo: 0x13)))))),
            (#"{"cmd":"remove-backend","vip":"web6","address":"2001:db8::13"}"#,
             .edit(.removeBackend(vip: "web6", address: .v6(IPv6Address(hi: 0x2001_0DB8_0000_0000, lo: 0x13))))),
        ]
        for (line, expected) in cases {
            let request = try ControlRequest.parse(line)
            #expect(request == expected, "\(line)")
            #expect(try ControlRequest.parse(request.line) == request, "\(request.line)")
            #expect(ControlRequest.commands.contains(request.command))
        }
    }

    @Test func badRequestsSayWhatIsWrong() {
        let cases: [(String, String)] = [
            ("", "malformed request"),
            ("stats", "malformed request"),
            (#"{"cmd":"stats""#, "malformed request"),
            (#"["stats"]"#, "malformed request"),
            (#"{"cmd":"stats"} trailing"#, "malformed request"),
            (#"{}"#, #"missing key "cmd""#),
            (#"{"cmd":42}"#, "cmd: expected a string"),
            (#"{"cmd":"shutdown"}"#, #"unknown command "shutdown""#),
            (#"{"cmd":"stats","verbose":true}"#, #"stats: unknown key "verbose""#),
            (#"{"cmd":"set-weight","vip":"web","address":"10.0.1.11","wieght":0}"#, #"missing key "weight""#),
            (#"{"cmd":"set-weight","vip":"web","address":"10.0.1.11","weight":"0"}"#, "weight: expected an integer"),
            (#"{"cmd":"set-weight","vip":"web","address":"10.0.1.11","weight":0.5}"#, "weight: expected an integer"),
            (#"{"cmd":"set-weight","vip":"web","address":"10.0.1.11","weight":true}"#, "weight: expected an integer"),
            (#"{"cmd":"remove-backend","vip":"web","address":"10.0.1.256"}"#, #"address: "10.0.1.256" is not an IPv4 or IPv6 address"#),
            (#"{"cmd":"remove-backend","vip":"web","address":"2001:db8::1::2"}"#, #"address: "2001:db8::1::2" is not an IPv4 or IPv6 address"#),
            (#"{"cmd":"add-backend","vip":"web","address":"ff02::1"}"#, #"address: ff02::1 is a multicast address"#),
            (#"{"cmd":"remove-backend","address":"10.0.1.11"}"#, #"missing key "vip""#),
            (#"{"cmd":"add-backend","vip":"web","address":"10.0.1.14","mac":"02:00:00"}"#, #"mac: "02:00:00" is not a MAC address"#),
            (#"{"cmd":"save","to":"tula.yaml"}"#, #"to: "tula.yaml" must be an absolute path"#),
        ]
        for (line, reason) in cases {
            #expect(throws: ControlError.self, "\(line)") { try ControlRequest.parse(line) }
            do {
                _ = try ControlRequest.parse(line)
            } catch {
                #expect(error.message.contains(reason), "\(line): \(error.message)")
            }
        }
    }

    @Test func onlyRootMayChangeTheConfig() throws {
        let edit = ControlRequest.edit(.setWeight(vip: "web", address: .v4(IPv4Address(10, 0, 1, 11)), weight: 0))
        #expect(ControlRequest.stats.refusal(peerUID: 1000) == nil)
        #expect(ControlRequest.stats.refusal(peerUID: nil) == nil)
        #expect(edit.refusal(peerUID: 0) == nil)
        #expect(ControlRequest.reload.refusal(peerUID: 0) == nil)
        #expect(ControlRequest.save(to: nil).refusal(peerUID: 1000) != nil)
        #expect(try #require(edit.refusal(peerUID: 65534)).contains("permission denied: set-weight"))
        #expect(try #require(ControlRequest.reload.refusal(peerUID: nil)).contains("unidentified"))
    }

    // MARK: Framing and responses

    @Test func lineBufferSplitsLinesAndRefusesOversizedOnes() {
        var buffer = LineBuffer(limit: 16)
        buffer.append(Array("ab\r\ncd\n".utf8) + Array("ef".utf8))
        #expect(buffer.next() == .line("ab"))
        #expect(buffer.next() == .line("cd"))
        #expect(buffer.next() == .needMore)
        buffer.append(Array("g\n".utf8))
        #expect(buffer.next() == .line("efg"))
        #expect(buffer.finish() == nil)

        var exact = LineBuffer(limit: 16)
        exact.append(Array(String(repeating: "x", count: 15).utf8) + [UInt8(ascii: "\n")])
        #expect(exact.next() == .line(String(repeating: "x", count: 15)), "15 bytes and the newline fit a 16-byte limit")

        var tooLong = LineBuffer(limit: 16)
        tooLong.append(Array(String(repeating: "x", count: 16).utf8) + [UInt8(ascii: "\n")])
        #expect(tooLong.next() == .oversized)

        var noNewline = LineBuffer(limit: 16)
        noNewline.append(Array(String(repeating: "x", count: 15).utf8))
        #expect(noNewline.next() == .needMore)
        noNewline.append([UInt8(ascii: "x")])
        #expect(noNewline.next() == .oversized)

        var last = LineBuffer()
        last.append(Array(#"{"cmd":"stats"}"#.utf8))
        #expect(last.next() == .needMore)
        #expect(last.finish() == #"{"cmd":"stats"}"#)
    }

    @Test func responsesAreOneLineOfJSON() throws {
        let message = "bad \"quote\", back\\slash,\nnewline and \u{1} control"
        let line = ControlResponse.error(message)
        #expect(!line.contains("\n"))
        let (ok, object) = try ControlResponse.decode(line)
        #expect(!ok)
        #expect(object["error"] as? String == message)
        let good = try ControlResponse.decode(ControlResponse.ok(message: "done"))
        #expect(good.ok && good.object["message"] as? String == "done")
        #expect(throws: ControlError.self) { try ControlResponse.decode("{\"error\":1}") }
        #expect(throws: ControlError.self) { try ControlResponse.decode("not json") }
    }

    @Test func statsResponseCarriesTheSummaryAndServerCounters() throws {
        let config = try testConfig()
        let summary = try testSummary(config)
        let line = ControlResponse.ok(stats: summary, server: ControlServerCounters(requests: 7, refused: 2, clients: 3))
        let (ok, object) = try ControlResponse.decode(line)
        #expect(ok)
        let control = ControlServerCounters(json: try #require(object["control"] as? [String: Any]))
        #expect(control == ControlServerCounters(requests: 7, refused: 2, clients: 3))
        let back = try Summary(json: try #require(object["stats"] as? [String: Any]))
        #expect(back.json() == summary.json(), "the summary survives the JSON round trip")
        #expect(back.ports[0].verdicts[.noVIP] == 10)
        #expect(back.vips[0].backends.map(\.weight) == [1, 2])
        #expect(back.mbufsInUse == 77)
        #expect(throws: ControlError.self) { try Summary(json: ["rx_packets": 1]) }
    }

    // MARK: Prometheus

    @Test func prometheusOutputIsValidExpositionFormat() throws {
        var summary = try testSummary(try testConfig())
        summary.vips[0].name = "we\"b\\1\nx" // label escaping
        let text = PrometheusExposition.render(summary, control: ControlServerCounters(requests: 4, refused: 1, clients: 2))
        let families = try ExpositionParser.parse(text)
        #expect(families["tula_port_rx_packets_total"]?.kind == "counter")
        #expect(families["tula_backend_weight"]?.kind == "gauge")
        func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
            families[name]?.samples.first { $0.labels == labels }?.value
        }
        #expect(value("tula_port_rx_packets_total", ["port": "wan"]) == 1000)
        #expect(value("tula_port_tx_bytes_total", ["port": "wan"]) == 123_750)
        #expect(value("tula_port_verdicts_total", ["port": "wan", "verdict": "no-vip"]) == 10)
        #expect(value("tula_port_dropped_packets_total", ["port": "wan"]) == 10)
        #expect(value("tula_vip_packets_total", ["vip": "we\"b\\1\nx"]) == 50)
        #expect(value("tula_backend_packets_total", ["vip": "we\"b\\1\nx", "backend": "10.0.1.12"]) == 30)
        #expect(value("tula_backend_weight", ["vip": "we\"b\\1\nx", "backend": "10.0.1.12"]) == 2)
        #expect(value("tula_uptime_seconds") == 10)
        #expect(value("tula_mbufs_in_use") == 77)
        #expect(value("tula_control_refused_total") == 1)
        #expect(families["tula_port_verdicts_total"]?.samples.count == Verdict.allCases.count)
    }

    @Test func expositionParserCatchesMistakes() {
        let bad = [
            "tula_x_total 1\n",                                                       // no HELP/TYPE
            "# HELP tula_x_total x\n# TYPE tula_x_total counter\ntula_x_total{a=\"1} 1\n", // unterminated label
            "# HELP tula_x x\n# TYPE tula_x counter\ntula_x 1\n",                     // counter without _total
            "# HELP tula_x x\n# TYPE tula_x gauge\ntula_x 1\ntula_x 2\n",             // duplicate series
            "# HELP tula_a a\n# TYPE tula_a gauge\ntula_a 1\n# HELP tula_b b\n# TYPE tula_b gauge\ntula_b 1\ntula_a{x=\"1\"} 1\n",
            "# HELP tula_x x\n# TYPE tula_x gauge\ntula_x one\n",
        ]
        for text in bad {
            #expect(throws: ExpositionParser.Failure.self, "\(text)") { try ExpositionParser.parse(text) }
        }
    }

    // MARK: Table

    @Test func rateTableComputesRatesFromTwoSamples() throws {
        let config = try testConfig()
        let before = try testSummary(config, elapsed: 10)
        var after = try testSummary(config, elapsed: 12, scale: 3)
        after.vips[0].backends[1].packets = 1 // went backwards (slot handed to a new backend): no rate
        let table = RateTable.render(after, since: before, control: ControlServerCounters(requests: 9, refused: 0, clients: 1))
        // rx: 2000 packets and 250000 bytes in 2 s: 1000 pps, 1 Mbit/s; VIP: 50 pps, 5000 bytes/s = 40 kbit/s.
        let wan = try #require(table.split(separator: "\n").first { $0.hasPrefix("wan") })
        #expect(wan.contains("1.00k") && wan.contains("1.00 Mbit/s"), "\(wan)")
        let vip = try #require(table.split(separator: "\n").first { $0.hasPrefix("web ") })
        #expect(vip.contains("50") && vip.contains("40.0 kbit/s"), "\(vip)")
        let drained = try #require(table.split(separator: "\n").first { $0.contains("10.0.1.12") })
        #expect(drained.contains("  -  "), "\(drained)")
        #expect(table.contains("drops: no-vip 30"))
        #expect(table.contains("control socket: 9 requests"))
        let single = RateTable.render(after, since: nil)
        #expect(single.contains("no rates"))
        #expect(RateTable.scaled(999, unit: "") == "999")
        #expect(RateTable.scaled(1_234_567, unit: "bit/s") == "1.23 Mbit/s")
    }
}

// MARK: - The server, in process

/// A stand-in for a running appliance: a config that `edit` changes, and a `reload` that fails on demand.
final class FakeAppliance: ControlTarget, @unchecked Sendable {
    private let lock = NSLock()
    private var config: TulaConfig
    var reloadError: ControlError?
    private(set) var reloads = 0
    /// How long each stats answer takes to compute (the real appliance's summary is not free).
    var statsDelaySeconds = 0.0

    init(_ config: TulaConfig) { self.config = config }

    var current: TulaConfig { lock.withLock { config } }

    func statsSummary() -> Summary {
        if statsDelaySeconds > 0 { Thread.sleep(forTimeInterval: statsDelaySeconds) }
        return lock.withLock {
            var slots = CounterSlots()
            _ = try? slots.assign(config)
            let layout = CounterLayout(ports: config.ports.count)
            return Summary(config: config, counters: [UInt64](repeating: 0, count: layout.count), layout: layout, slots: slots,
                           elapsedSeconds: 1)
        }
    }

    func edit(_ change: ConfigEdit) throws(ControlError) {
        lock.lock()
        defer { lock.unlock() }
        config = try change.applied(to: config)
    }

    func reload() throws(ControlError) {
        lock.lock()
        defer { lock.unlock() }
        if let reloadError { throw reloadError }
        reloads += 1
    }

    func save(to path: String?) throws(ControlError) -> String {
        guard let path else { throw ControlError("save: no file") }
        return try ConfigWriter.save(current, to: path)
    }
}

/// A raw client for the server tests: sends bytes, reads lines, sees the server close.
struct RawClient {
    let fd: Int32

    init(_ path: String) throws {
        fd = try ControlClient.connect(path)
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    func send(_ text: String) {
        let bytes = Array(text.utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            sent += n
        }
    }

    /// Everything until the server closes (or 5 s pass), as lines.
    func readToEnd() -> [String] {
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            data += chunk[..<n]
        }
        return String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
    }

    /// One response line.
    func readLine() -> String? {
        var data: [UInt8] = []
        var byte: UInt8 = 0
        while recv(fd, &byte, 1, 0) == 1 {
            if byte == UInt8(ascii: "\n") { return String(decoding: data, as: UTF8.self) }
            data.append(byte)
        }
        return nil
    }

    func close() { Glibc.close(fd) }
}

/// A fresh directory for sockets (a nested path that does not exist yet).
func socketPath() -> (directory: String, path: String) {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tula-ctl-\(UUID().uuidString.prefix(8))").path
    return (directory, "\(directory)/run/tula.sock")
}

func isError(_ line: String?, containing text: String) -> Bool {
    guard let line, let (ok, object) = try? ControlResponse.decode(line) else { return false }
    return !ok && (object["error"] as? String ?? "").contains(text)
}

extension ControlProtocolTests {
    @Suite struct Server {
        @Test func socketIsCreatedWithMode0660AndRemovedOnStop() throws {
            let (directory, path) = socketPath()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let server = try ControlServer(path: path)
            var info = stat()
            #expect(stat(path, &info) == 0)
            #expect(info.st_mode & S_IFMT == S_IFSOCK)
            #expect(info.st_mode & 0o777 == 0o660)
            server.start(target: FakeAppliance(try testConfig()))
            let response = try ControlResponse.decode(try ControlClient.send(ControlRequest.stats.line, to: path))
            #expect(response.ok)
            let stats = try Summary(json: try #require(response.object["stats"] as? [String: Any]))
            #expect(stats.vips.first?.backends.map(\.address) == ["10.0.1.11", "10.0.1.12"])
            server.stop()
            #expect(!FileManager.default.fileExists(atPath: path))
            #expect(throws: ControlClientError.self) { try ControlClient.send(ControlRequest.stats.line, to: path) }
        }

        @Test func staleSocketIsReplacedLiveOneRefused() throws {
            let (directory, path) = socketPath()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            // A stale socket: bound, then closed without unlinking (as after a crash).
            let stale = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            let address = try UnixSocketAddress.make(path)
            #expect(UnixSocketAddress.withPointer(address) { bind(stale, $0, $1) } == 0)
            close(stale)
            let first = try ControlServer(path: path)
            first.start(target: FakeAppliance(try testConfig()))
            #expect(throws: ControlServerError.self) { try ControlServer(path: path) }
            do {
                _ = try ControlServer(path: path)
            } catch {
                #expect(error.description.contains("another tula-appliance is already listening on \(path)"))
            }
            #expect(try ControlResponse.decode(try ControlClient.send(ControlRequest.stats.line, to: path)).ok,
                    "the refused second server leaves the first one alone")
            first.stop()
            #expect(FileManager.default.createFile(atPath: path, contents: Data("x".utf8)))
            #expect(throws: ControlServerError.self) { try ControlServer(path: path) }
        }

        @Test func badRequestsGetAnErrorAndChangeNothing() throws {
            let (directory, path) = socketPath()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let server = try ControlServer(path: path)
            let appliance = FakeAppliance(try testConfig())
            appliance.reloadError = ControlError("reload refused: control.yaml:3: bad")
            server.start(target: appliance)
            defer { server.stop() }
            let before = appliance.current
            let bad = [
                ("{\"cmd\":\"frobnicate\"}", "unknown command"),
                ("{\"cmd\":", "malformed request"),
                (#"{"cmd":"set-weight","vip":"nope","address":"10.0.1.11","weight":0}"#, "no VIP named"),
                (#"{"cmd":"set-weight","vip":"web","address":"10.0.1.11","weight":1001}"#, "out of range"),
                (#"{"cmd":"remove-backend","vip":"web","address":"10.0.1.99"}"#, "has no backend"),
                (#"{"cmd":"add-backend","vip":"web","address":"10.0.1.11","mac":"02:00:00:00:01:11"}"#, "already has backend"),
                (#"{"cmd":"reload"}"#, "reload refused"),
            ]
            for (line, reason) in bad {
                let response = try ControlClient.send(line, to: path)
                #expect(isError(response, containing: reason), "\(line) -> \(response)")
            }
            // Oversized: an error, then the server closes the connection (with or without a newline).
            for tail in ["", "\n"] {
                let client = try RawClient(path)
                client.send(String(repeating: "x", count: 5000) + tail)
                let lines = client.readToEnd()
                client.close()
                #expect(lines.count == 1 && isError(lines.first, containing: "longer than 4096 bytes"), "\(lines)")
            }
            #expect(appliance.current == before)
            #expect(server.counters.refused == UInt64(bad.count + 2))
            #expect(server.counters.requests == UInt64(bad.count + 2))
            if getuid() == 0 {
                let add = #"{"cmd":"add-backend","vip":"web","address":"10.0.1.13","mac":"02:00:00:00:01:13","weight":0}"#
                #expect(try ControlResponse.decode(try ControlClient.send(add, to: path)).ok)
                #expect(appliance.current.vips[0].backends.map(\.weight) == [1, 2, 0])
            }
        }

        @Test func pipelinedAndUnterminatedRequestsAreAnswered() throws {
            let (directory, path) = socketPath()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let server = try ControlServer(path: path)
            server.start(target: FakeAppliance(try testConfig()))
            defer { server.stop() }
            let client = try RawClient(path)
            client.send("{\"cmd\":\"stats\"}\n\n{\"cmd\":\"nope\"}\r\n{\"cmd\":\"stats\"}")
            shutdown(client.fd, Int32(SHUT_WR))
            let lines = client.readToEnd()
            client.close()
            #expect(lines.count == 3, "\(lines)")
            #expect(lines.map { (try? ControlResponse.decode($0).ok) ?? nil } == [true, false, true])
        }

        @Test func idleClientsTimeOutWithoutHoldingUpOthers() throws {
            let (directory, path) = socketPath()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let server = try ControlServer(path: path, limits: ControlServer.Limits(idleTimeoutSeconds: 0.3))
            server.start(target: FakeAppliance(try testConfig()))
            defer { server.stop() }
            let idle = try RawClient(path)
            idle.send("{\"cmd\":") // half a request, then nothing
            #expect(try ControlResponse.decode(try ControlClient.send(ControlRequest.stats.line, to: path)).ok)
            let start = Date()
            let lines = idle.readToEnd()
            idle.close()
            #expect(isError(lines.first, containing: "idle"), "\(lines)")
            #expect(Date().timeIntervalSince(start) < 2)
        }

        @Test func twoHundredConcurrentClientsAllGetAnswers() throws {
            let (directory, path) = socketPath()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let server = try ControlServer(path: path)
            server.start(target: FakeAppliance(try testConfig()))
            defer { server.stop() }
            let clients = try (0..<200).map { _ in try RawClient(path) }
            for client in clients { client.send(ControlRequest.stats.line + "\n") }
            let answers = clients.map { $0.readLine() }
            #expect(server.counters.clients == 200)
            for client in clients { client.close() }
            #expect(answers.allSatisfy { $0.map { (try? ControlResponse.decode($0).ok) == true } ?? false })
            #expect(server.counters.requests == 200)
        }
    }
}

// MARK: - A Prometheus text-format checker (promtool is not available here)

/// Parses the Prometheus text exposition format strictly enough to catch what `promtool check metrics`
/// would: names, label syntax and escaping, HELP/TYPE before samples, one contiguous block per family,
/// counters named `_total`, no duplicate series, numeric values.
enum ExpositionParser {
    struct Failure: Error, CustomStringConvertible { var description: String }
    struct Sample { var labels: [String: String]; var value: Double }
    struct Family { var kind = ""; var help: String?; var samples: [Sample] = [] }

    static func parse(_ text: String) throws -> [String: Family] {
        guard text.hasSuffix("\n") else { throw Failure(description: "the text must end with a newline") }
        var families: [String: Family] = [:]
        var closed = Set<String>(), current: String?
        var series = Set<String>()
        func open(_ name: String, line: Int) throws {
            if current != name {
                if closed.contains(name) { throw Failure(description: "line \(line): family \(name) is not contiguous") }
                if let current { closed.insert(current) }
                current = name
            }
        }
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().enumerated() {
            let line = String(raw), n = i + 1
            if line.hasPrefix("# HELP ") || line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false).map(String.init)
                guard parts.count == 4, isMetricName(parts[2]) else { throw Failure(description: "line \(n): bad comment \(line)") }
                let name = parts[2]
                try open(name, line: n)
                var family = families[name] ?? Family()
                guard family.samples.isEmpty else { throw Failure(description: "line \(n): \(parts[1]) after samples of \(name)") }
                if parts[1] == "HELP" {
                    guard family.help == nil else { throw Failure(description: "line \(n): second HELP for \(name)") }
                    family.help = parts[3]
                } else {
                    guard family.kind.isEmpty, ["counter", "gauge", "histogram", "summary", "untyped"].contains(parts[3]) else {
                        throw Failure(description: "line \(n): bad or second TYPE for \(name)")
                    }
                    guard (parts[3] == "counter") == name.hasSuffix("_total") else {
                        throw Failure(description: "line \(n): \(name): counters, and only counters, end in _total")
                    }
                    family.kind = parts[3]
                }
                families[name] = family
                continue
            }
            guard !line.hasPrefix("#"), !line.isEmpty else { throw Failure(description: "line \(n): unexpected \(line)") }
            let (name, labels, rest) = try sampleParts(line, line: n)
            try open(name, line: n)
            guard var family = families[name], !family.kind.isEmpty, family.help != nil else {
                throw Failure(description: "line \(n): sample of \(name) before its HELP and TYPE")
            }
            guard let value = Double(rest), !(family.kind == "counter" && value < 0) else {
                throw Failure(description: "line \(n): bad value \(rest)")
            }
            let key = name + labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
            guard series.insert(key).inserted else { throw Failure(description: "line \(n): duplicate series \(key)") }
            family.samples.append(Sample(labels: labels, value: value))
            families[name] = family
        }
        return families
    }

    static func isMetricName(_ s: String) -> Bool { s.range(of: "^[a-zA-Z_:][a-zA-Z0-9_:]*$", options: .regularExpression) != nil }
    static func isLabelName(_ s: String) -> Bool {
        s.range(of: "^[a-zA-Z_][a-zA-Z0-9_]*$", options: .regularExpression) != nil && !s.hasPrefix("__")
    }

    /// `name{a="x",b="y"} value` split into its parts, label values unescaped.
    static func sampleParts(_ line: String, line n: Int) throws -> (String, [String: String], String) {
        var chars = Array(line)[...]
        var name = ""
        while let c = chars.first, c != "{", c != " " { name.append(c); chars = chars.dropFirst() }
        guard isMetricName(name) else { throw Failure(description: "line \(n): bad metric name \(name)") }
        var labels: [String: String] = [:]
        if chars.first == "{" {
            chars = chars.dropFirst()
            while chars.first != "}" {
                var label = ""
                while let c = chars.first, c != "=" { label.append(c); chars = chars.dropFirst() }
                guard isLabelName(label), chars.dropFirst().first == "\"" else { throw Failure(description: "line \(n): bad label \(label)") }
                chars = chars.dropFirst(2)
                var value = ""
                while true {
                    guard let c = chars.first else { throw Failure(description: "line \(n): unterminated label value") }
                    chars = chars.dropFirst()
                    if c == "\"" { break }
                    if c == "\\" {
                        guard let e = chars.first, ["\\", "\"", "n"].contains(e) else { throw Failure(description: "line \(n): bad escape") }
                        value.append(e == "n" ? "\n" : e)
                        chars = chars.dropFirst()
                    } else {
                        value.append(c)
                    }
                }
                guard labels.updateValue(value, forKey: label) == nil else { throw Failure(description: "line \(n): label \(label) twice") }
                if chars.first == "," { chars = chars.dropFirst() } else if chars.first != "}" {
                    throw Failure(description: "line \(n): expected , or }")
                }
            }
            chars = chars.dropFirst()
        }
        guard chars.first == " " else { throw Failure(description: "line \(n): expected a space before the value") }
        return (name, labels, String(chars.dropFirst()))
    }
}
