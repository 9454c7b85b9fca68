// Replays every golden capture through the appliance and compares the output bytes and counters exactly.

import Foundation
import Testing
import TulaCore

extension Integration {
    @Suite struct GoldenReplay {
        static let scenarios = ["l2", "l3", "wildcard", "arp", "malformed", "vlan", "mixed"]
        let golden = packageRoot.appendingPathComponent("pcaps/golden").path

        @Test(arguments: scenarios)
        func outputMatchesExpected(_ scenario: String) throws {
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let out = scratch.file("\(scenario).out.pcap")
            let result = try Appliance.run(["replay", "--config", "\(golden)/golden.yaml", "--in", "\(golden)/\(scenario).in.pcap",
                                            "--out", out, "--json"])
            #expect(result.status == 0, "\(result.stderr)")
            let got = try Pcap.read(path: out).map(\.data)
            let expected = try Pcap.read(path: "\(golden)/\(scenario).expected.pcap").map(\.data)
            #expect(got.count == expected.count)
            for (i, (g, e)) in zip(got, expected).enumerated() where g != e {
                Issue.record("\(scenario) frame \(i): got \(hex(g)), expected \(hex(e))")
            }
            let json = try #require(result.json, "no JSON summary in: \(result.stdout)")
            let expectation = try #require(try JSONSerialization.jsonObject(
                with: Data(contentsOf: URL(fileURLWithPath: "\(golden)/\(scenario).expected.json"))) as? [String: Any])
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
    }
}

func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
