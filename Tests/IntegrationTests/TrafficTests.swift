// Many flows through the example config: weighted spread, per-flow pinning, and the same backend per flow
// whichever worker sees it.

import Foundation
import Testing
import TulaCore

extension Integration {
    @Suite struct Traffic {
        static let flows = 5999 // odd, so a flow's two packets are dealt to different workers
        let example = packageRoot.appendingPathComponent("examples/streaming-dsr.yaml").path

        /// Replays two packets of every flow; returns the backend each flow reached and the summary.
        func replay(workers: Int, scratch: Scratch) throws -> (backendOf: [Int: String], json: [String: Any]) {
            var text = try String(contentsOfFile: example, encoding: .utf8)
            text = text.replacingOccurrences(of: "workers: 1", with: "workers: \(workers)")
            let config = try scratch.write("tula-\(workers).yaml", text)
            let parsed = try ConfigLoader.load(path: config)
            let frames = TrafficSynthesizer.packets(config: parsed, flows: Traffic.flows, packets: 2 * Traffic.flows)
            let input = scratch.file("in-\(workers).pcap"), output = scratch.file("out-\(workers).pcap")
            try Pcap.write(frames.map { PcapRecord(data: $0) }, path: input)
            let result = try Appliance.run(["replay", "--config", config, "--in", input, "--out", output, "--json"])
            #expect(result.status == 0, "\(result.stderr)")
            let json = try #require(result.json)
            // Each output frame names its flow (inner 5-tuple) and its backend (L2: dst MAC; L3: outer dst IP).
            let flowIndex = Dictionary(frames.prefix(Traffic.flows).enumerated().map { (flowKey($0.element, ipOffset: 14), $0.offset) },
                                       uniquingKeysWith: { first, _ in first })
            var backendOf: [Int: String] = [:]
            for record in try Pcap.read(path: output) {
                let f = record.data
                let isIPIP = f[23] == 4
                let backend = isIPIP ? f[30...33].map(String.init).joined(separator: ".")
                                     : f[0...5].map { String(format: "%02x", $0) }.joined(separator: ":")
                let flow = try #require(flowIndex[flowKey(f, ipOffset: isIPIP ? 34 : 14)])
                if let earlier = backendOf[flow] {
                    #expect(earlier == backend, "flow \(flow) moved from \(earlier) to \(backend)")
                }
                backendOf[flow] = backend
            }
            #expect(backendOf.count == Traffic.flows)
            return (backendOf, json)
        }

        func flowKey(_ f: [UInt8], ipOffset o: Int) -> [UInt8] { Array(f[(o + 9)...(o + 9)]) + Array(f[(o + 12)..<(o + 24)]) }

        @Test func weightedSpreadAndCountersAddUp() throws {
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let (backendOf, json) = try replay(workers: 1, scratch: scratch)
            var flowsPer: [String: Int] = [:]
            for backend in backendOf.values { flowsPer[backend, default: 0] += 1 }
            let l2Flows = Double(Traffic.flows / 2 + 1), l3Flows = Double(Traffic.flows / 2)
            // streaming-dsr (l2) weights 1:1:2, video-l3 weights 1:1; 3000 flows each: a 3-point band is > 4 sigma.
            let expected: [(String, Double)] = [("02:00:00:00:01:11", 0.25 * l2Flows), ("02:00:00:00:01:12", 0.25 * l2Flows),
                                                ("02:00:00:00:01:13", 0.5 * l2Flows), ("10.0.2.21", 0.5 * l3Flows),
                                                ("10.0.2.22", 0.5 * l3Flows)]
            for (backend, share) in expected {
                let got = Double(flowsPer[backend] ?? 0)
                #expect(abs(got - share) / (backend.contains(":") ? l2Flows : l3Flows) < 0.03, "\(backend): \(got) flows, expected about \(share)")
            }
            // The summary's per-backend packet counts are exactly what came out.
            let vips = try #require(json["vips"] as? [[String: Any]])
            let summaryPackets = vips.flatMap { $0["backends"] as? [[String: Any]] ?? [] }.map { $0["packets"] as? Int ?? -1 }
            let outPackets = expected.map { 2 * (flowsPer[$0.0] ?? 0) }
            #expect(summaryPackets == outPackets)
            #expect(json["rx_packets"] as? Int == 2 * Traffic.flows)
            #expect(json["tx_packets"] as? Int == 2 * Traffic.flows)
            let newFlows = vips.map { $0["new_flows"] as? Int ?? -1 }.reduce(0, +)
            #expect(newFlows == Traffic.flows)
        }

        @Test func sameBackendWhicheverWorkerSeesTheFlow() throws {
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let one = try replay(workers: 1, scratch: scratch)
            let two = try replay(workers: 2, scratch: scratch)
            #expect(one.backendOf == two.backendOf)
            // With two workers each flow was learned on both lcores: twice the new flows.
            let newFlows = (two.json["vips"] as? [[String: Any]] ?? []).map { $0["new_flows"] as? Int ?? -1 }.reduce(0, +)
            #expect(newFlows == 2 * Traffic.flows)
        }
    }
}
