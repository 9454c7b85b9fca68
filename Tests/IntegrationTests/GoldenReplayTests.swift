// Replays every golden capture through the appliance and compares the output bytes and counters exactly.

import Foundation
import Testing
import TulaCore

/// One golden scenario: `pcaps/golden/NAME.{in,expected}.pcap`, `NAME.expected.json`, and the config it runs with.
struct GoldenScenario: Sendable, CustomTestStringConvertible {
    var name: String
    var config: String = "golden.yaml"
    var testDescription: String { config == "golden.yaml" ? name : "\(name) (\(config))" }
}

extension Integration {
    @Suite struct GoldenReplay {
        /// Every scenario `pcaps/generate_golden.py` writes, with its config (see pcaps/README.md).
        static let scenarios: [GoldenScenario] = [
            GoldenScenario(name: "l2"), GoldenScenario(name: "l3"), GoldenScenario(name: "wildcard"),
            GoldenScenario(name: "arp"), GoldenScenario(name: "malformed"), GoldenScenario(name: "vlan"),
            GoldenScenario(name: "icmp"), GoldenScenario(name: "fragments"),
            GoldenScenario(name: "vlan-config", config: "golden-vlan.yaml"), GoldenScenario(name: "mixed"),
            GoldenScenario(name: "v6-l2", config: "golden-v6.yaml"), GoldenScenario(name: "v6-l3", config: "golden-v6.yaml"),
            GoldenScenario(name: "v6-nd", config: "golden-v6.yaml"), GoldenScenario(name: "v6-icmp", config: "golden-v6.yaml"),
            GoldenScenario(name: "v6-exthdr", config: "golden-v6.yaml"),
            GoldenScenario(name: "v6-fragments", config: "golden-v6.yaml"),
            GoldenScenario(name: "v6-malformed", config: "golden-v6.yaml"),
            GoldenScenario(name: "encap", config: "golden-encap.yaml"),
        ]
        static let golden = packageRoot.appendingPathComponent("pcaps/golden").path

        /// Replays `scenario` into `out` (`tula-appliance replay ... --json`).
        static func replay(_ scenario: GoldenScenario, out: String) throws -> ProcessResult {
            try Appliance.run(["replay", "--config", "\(golden)/\(scenario.config)",
                               "--in", "\(golden)/\(scenario.name).in.pcap", "--out", out, "--json"])
        }

        @Test(arguments: scenarios)
        func outputMatchesExpected(_ scenario: GoldenScenario) throws {
            let golden = Self.golden, name = scenario.name
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let out = scratch.file("\(name).out.pcap")
            let result = try Self.replay(scenario, out: out)
            #expect(result.status == 0, "\(result.stderr)")
            let got = try Pcap.read(path: out).map(\.data)
            let expected = try Pcap.read(path: "\(golden)/\(name).expected.pcap").map(\.data)
            #expect(got.count == expected.count)
            for (i, (g, e)) in zip(got, expected).enumerated() where g != e {
                Issue.record("\(name) frame \(i): got \(hex(g)), expected \(hex(e))")
            }
            let json = try #require(result.json, "no JSON summary in: \(result.stdout)")
            let expectation = try #require(try JSONSerialization.jsonObject(
                with: Data(contentsOf: URL(fileURLWithPath: "\(golden)/\(name).expected.json"))) as? [String: Any])
            #expect(json["rx_packets"] as? Int == expectation["rx_packets"] as? Int)
            #expect(json["tx_packets"] as? Int == expectation["tx_packets"] as? Int)
            #expect(nonZeroVerdicts(json) == expectation["verdicts"] as? [String: Int])
            // rx == forwarded + replied + to_control + dropped on every port.
            for port in json["ports"] as? [[String: Any]] ?? [] {
                let sum = (port["forwarded"] as? Int ?? -1) + (port["replied"] as? Int ?? -1)
                    + (port["to_control"] as? Int ?? -1) + (port["dropped"] as? Int ?? -1)
                #expect(port["rx_packets"] as? Int == sum)
            }
        }

        /// A scenario the generator writes but the table above forgets would never be replayed.
        @Test func everyGoldenCaptureIsReplayed() throws {
            let files = try FileManager.default.contentsOfDirectory(atPath: Self.golden)
            let inputs = Set(files.filter { $0.hasSuffix(".in.pcap") }.map { String($0.dropLast(".in.pcap".count)) })
            #expect(inputs == Set(Self.scenarios.map(\.name)))
            for scenario in Self.scenarios {
                #expect(files.contains(scenario.config), "\(scenario.name): no \(scenario.config)")
            }
        }
    }
}

func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
