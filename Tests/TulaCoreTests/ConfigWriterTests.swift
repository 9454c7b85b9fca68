// `ctl save`'s writer: every shipped config reads back the same, and the file is replaced atomically with a .bak.
import Foundation
import Testing
@testable import TulaCore

@Suite struct ConfigWriterTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static var shippedConfigs: [String] {
        ["examples/streaming-dsr.yaml", "examples/appliance.yaml", "examples/dual-stack.yaml", "examples/scale-out.yaml", "benchmarks/bench.yaml", "pcaps/golden/golden.yaml",
         "pcaps/golden/golden-vlan.yaml", "pcaps/golden/golden-v6.yaml"].map { root.appendingPathComponent($0).path }
    }

    @Test(arguments: shippedConfigs)
    func everyShippedConfigReadsBackTheSame(_ path: String) throws {
        let config = try ConfigLoader.load(path: path)
        let text = ConfigWriter.yaml(config, header: ["round trip"])
        #expect(try ConfigLoader.parse(yaml: text, file: "saved.yaml").withoutLines == config.withoutLines, "\(text)")
    }

    @Test func everySettingSurvivesAndAwkwardStringsAreQuoted() throws {
        var config = try ConfigLoader.load(path: Self.shippedConfigs[0])
        config.workers = .lcores([2, 3])
        config.gratuitousARP = true
        config.flowIdleTimeoutSeconds = 42
        config.statsSocket = "/run/tula dir/\"odd\" #sock"
        config.ports[0].vlan = 100
        config.ports[0].device = "net_pcap0,rx_pcap=/tmp/a b.pcap,infinite_rx=1"
        config.vips[0].name = "web: \"main\" # 1"
        config.vips[0].port = nil
        config.vips[0].hash = .source
        config.vips[0].icmpEcho = false
        var check = HealthCheckConfig(kind: .http, port: 8080)
        check.path = "/health?x=1#y"; check.expectStatus = 204; check.intervalSeconds = 3; check.timeoutSeconds = 2
        check.rise = 3; check.fall = 4
        config.vips[0].healthCheck = check
        config.vips[0].backends[0].vlan = 300
        config.vips[0].backends[0].weight = 0
        let text = ConfigWriter.yaml(config)
        #expect(try ConfigLoader.parse(yaml: text, file: "saved.yaml").withoutLines == config.withoutLines, "\(text)")
    }

    @Test func saveReplacesTheFileAndKeepsTheOldOneAsBak() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tula-save-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = "\(directory)/tula.yaml"
        let original = try String(contentsOfFile: Self.shippedConfigs[0], encoding: .utf8)
        try original.write(toFile: path, atomically: true, encoding: .utf8)
        #expect(chmod(path, 0o600) == 0)
        var config = try ConfigLoader.load(path: path)
        config.vips[0].backends.append(BackendConfig(address: .v4(IPv4Address(10, 0, 1, 99)), mac: MACAddress(2, 0, 0, 0, 1, 0x99)))
        let note = try ConfigWriter.save(config, to: path)
        #expect(note == "saved the running config to \(path) (the previous file is \(path).bak)")
        #expect(try String(contentsOfFile: "\(path).bak", encoding: .utf8) == original)
        #expect(try ConfigLoader.load(path: path).withoutLines == config.withoutLines)
        var info = stat()
        #expect(stat(path, &info) == 0 && info.st_mode & 0o777 == 0o600, "the file keeps its mode")
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).sorted() == ["tula.yaml", "tula.yaml.bak"])

        // Nowhere to write: refused, nothing changed.
        #expect(throws: ControlError.self) { try ConfigWriter.save(config, to: "/nonexistent-dir/tula.yaml") }
        #expect(throws: ControlError.self) { try ConfigWriter.save(config, to: directory) }
    }
}
