// DPDK's own telemetry client (Debian's dpdk-telemetry.py) against a running appliance: /ethdev/stats and Tula's commands.

import Foundation
import Testing
import TulaCore

extension Integration {
    @Suite struct Telemetry {
        @Test func dpdkTelemetryReadsTheSameNumbersAsTheStatsSocket() throws {
            let client = "/usr/bin/dpdk-telemetry.py"
            try #require(FileManager.default.isExecutableFile(atPath: client), "dpdk-telemetry.py (Debian package dpdk) is missing")
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let input = scratch.file("in.pcap")
            try Pcap.write((0..<40).map { PcapRecord(data: LiveControl.frame(flow: $0 % 20, phase: 0)) }, path: input)
            let socket = scratch.file("tula.sock")
            let config = try scratch.write("tula.yaml", LiveControl.config(
                device: "net_pcap0,rx_pcap=\(input),tx_pcap=\(scratch.file("out.pcap"))", socket: socket))
            let appliance = try RunningAppliance(config: config, socket: socket)
            var running = true
            defer { if running { _ = appliance.stop() } }
            var stats: [String: Any] = [:]
            for _ in 0..<100 {
                stats = try ControlSocket.stats(socket)
                if stats.rxPackets == 40 { break }
                Thread.sleep(forTimeInterval: 0.05)
            }
            #expect(stats.rxPackets == 40)

            let commands = "/tula/stats\n/tula/vips\n/tula/backends,web\n/tula/backends,nope\n/ethdev/stats,0\n"
            let run = try BackgroundProcess(executable: "/bin/sh",
                                            ["-c", "printf '\(commands)' | /usr/bin/python3 \(client) -f \(appliance.filePrefix)"])
            let result = run.wait(timeout: 30)
            #expect(result.status == 0, "\(result.stderr)")
            // One JSON object per command, in order: (command, answer).
            var replies: [(String, Any)] = []
            for line in result.stdout.split(separator: "\n") where line.hasPrefix("{") {
                if let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], let first = object.first {
                    replies.append((first.key, first.value))
                }
            }
            #expect(replies.map(\.0) == ["/tula/stats", "/tula/vips", "/tula/backends", "/tula/backends", "/ethdev/stats"],
                    "\(result.stdout)")
            let answers = [String: Any](replies.prefix(3).map { ($0.0, $0.1) } + replies.suffix(1).map { ($0.0, $0.1) }) { a, _ in a }
            #expect(replies.count == 5 && replies[3].1 is NSNull, "an unknown VIP gets null")
            let tula = try #require(answers["/tula/stats"] as? [String: Any], "\(result.stdout)")
            #expect(tula["rx_packets"] as? Int == 40)
            #expect(tula["verdict_forwarded_l2"] as? Int == 40)
            #expect(tula["dropped"] as? Int == 0)
            #expect(tula["flows_in_use"] as? Int == 20)
            let vips = try #require(answers["/tula/vips"] as? [String: Any])
            #expect(vips["name"] as? [String] == ["web"])
            #expect(vips["packets"] as? [Int] == [40])
            let backends = try #require(answers["/tula/backends"] as? [String: Any])
            #expect(backends["address"] as? [String] == ["10.0.1.11", "10.0.1.12", "10.0.1.13"])
            #expect((backends["packets"] as? [Int])?.reduce(0, +) == 40)
            let ethdev = try #require(answers["/ethdev/stats"] as? [String: Any])
            #expect(ethdev["ipackets"] as? Int == 40)

            let result2 = appliance.stop()
            running = false
            #expect(result2.status == 0)
        }
    }
}
