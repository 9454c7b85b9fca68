// The command line's contract: refused configs exit 2 with file:line, run stops cleanly on SIGINT.

import Foundation
import Testing
import TulaCore

extension Integration {
    @Suite struct CommandLine {
        let golden = packageRoot.appendingPathComponent("pcaps/golden").path

        @Test func invalidConfigIsRefusedBeforeEALWithFileAndLine() throws {
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let text = try String(contentsOfFile: "\(golden)/golden.yaml", encoding: .utf8)
                .replacingOccurrences(of: "mode: l3", with: "mode: l4")
            let config = try scratch.write("bad.yaml", text)
            let line = text.split(separator: "\n", omittingEmptySubsequences: false).firstIndex { $0.contains("mode: l4") }! + 1
            for command in [["replay", "--in", "\(golden)/l2.in.pcap", "--out", scratch.file("o.pcap")], ["run"], ["check-config"]] {
                let result = try Appliance.run([command[0], "--config", config] + command.dropFirst())
                #expect(result.status == 2)
                #expect(result.stderr.contains("\(config):\(line): "), "\(result.stderr)")
                #expect(!result.stderr.contains("EAL"), "EAL must not start for a refused config")
            }
            #expect(!FileManager.default.fileExists(atPath: scratch.file("o.pcap")))
        }

        @Test func missingCaptureIsAClearError() throws {
            let result = try Appliance.run(["replay", "--config", "\(golden)/golden.yaml", "--in", "/nonexistent.pcap", "--out", "/tmp/x.pcap"])
            #expect(result.status == 1)
            #expect(result.stderr.contains("/nonexistent.pcap: cannot read"))
        }

        @Test func dryRunShowsTheEALArguments() throws {
            let result = try Appliance.run(["run", "--config", "\(golden)/golden.yaml", "--dry-run", "--", "--file-prefix", "x"])
            #expect(result.status == 0)
            #expect(result.stdout.contains("--lcores 0@0,1@1 --main-lcore 0 --vdev net_pcap0 --no-pci"), "\(result.stdout)")
            #expect(result.stdout.hasSuffix("--file-prefix x\n"))
            // The memory line (make bench sizes its hugepage reservation by it): without hugepages every
            // mbuf takes a 4 KiB page, so that figure is the larger one.
            let numbers = result.stderr.split(separator: "\n").first { $0.contains("memory: ") }.map {
                $0.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
            } ?? []
            #expect(numbers.count == 3, "\(result.stderr)")
            if numbers.count == 3 { #expect(numbers[2] > numbers[0], "\(result.stderr)") }
        }

        /// A user who may not create files in the hugetlbfs mount runs without hugepages (and says so), instead of
        /// picking them and failing in EAL's init. Root, on the same machine, picks them when enough are free.
        @Test func nonRootRunFallsBackToNoHuge() throws {
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            #expect(chmod(scratch.path, 0o755) == 0)
            let binary = scratch.file("tula-appliance")
            try FileManager.default.copyItem(atPath: Appliance.binary, toPath: binary)
            let config = scratch.file("golden.yaml")
            try FileManager.default.copyItem(atPath: "\(golden)/golden.yaml", toPath: config)
            #expect(chmod(config, 0o644) == 0)
            let nobody = try BackgroundProcess.run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups",
                                                                        binary, "run", "--config", config, "--dry-run"])
            #expect(nobody.status == 0, "\(nobody.stderr)")
            #expect(nobody.stdout.contains("--no-huge -m "), "\(nobody.stdout)")
            #expect(nobody.stderr.contains("(0 MiB free)"), "\(nobody.stderr)")
            let root = try Appliance.run(["run", "--config", config, "--dry-run"])
            let free = root.stderr.split(separator: "(").dropFirst().first.flatMap { Int($0.split(separator: " ")[0]) } ?? 0
            if free >= 512 { #expect(!root.stdout.contains("--no-huge"), "root with \(free) MiB free: \(root.stdout)") }
        }

        /// Without hugepages every mbuf takes a 4 KiB page. A preloaded (`infinite_rx`) capture of 100k frames
        /// needs 100k mbufs, and an arena sized at an mbuf's own 2.4 KiB failed the pool (ENOMEM at start).
        @Test func largePreloadedCaptureRunsWithoutHugepages() throws {
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let example = packageRoot.appendingPathComponent("examples/streaming-dsr.yaml").path
            let frames = TrafficSynthesizer.packets(config: try ConfigLoader.load(path: example), flows: 1000, packets: 100_000)
            let input = scratch.file("large.pcap")
            try Pcap.write(frames.map { PcapRecord(data: $0) }, path: input)
            let text = try String(contentsOfFile: example, encoding: .utf8)
                .replacingOccurrences(of: "device: net_pcap0 ", with: "device: \"net_pcap0,rx_pcap=\(input),infinite_rx=1\" ")
                .replacingOccurrences(of: "stats_socket: /run/tula/tula.sock", with: "stats_socket: \(scratch.file("tula.sock"))")
            let config = try scratch.write("large.yaml", text)
            // Runs until it has gone round the whole capture (however busy the machine is), then stops.
            let appliance = try RunningAppliance(config: config, socket: scratch.file("tula.sock"), ealArguments: ["--no-huge"])
            let deadline = Date().addingTimeInterval(60)
            while (try? ControlSocket.stats(appliance.socket).rxPackets) ?? 0 <= 100_000 && Date() < deadline {
                Thread.sleep(forTimeInterval: 0.2)
            }
            let result = appliance.stop()
            #expect(result.status == 0, "\(result.stderr)")
            let json = try #require(result.json, "\(result.stderr)")
            #expect("\(json["notes"] ?? "")".contains("--no-huge"), "\(json["notes"] ?? "")")
            #expect((json["rx_packets"] as? Int ?? 0) > 100_000, "\(json)")
        }

        @Test func runForwardsUntilSIGINTAndCompletesTheOutput() throws {
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let out = scratch.file("run.out.pcap")
            let text = try String(contentsOfFile: "\(golden)/golden.yaml", encoding: .utf8)
                .replacingOccurrences(of: "device: \"net_pcap0\"", with: "device: \"net_pcap0,rx_pcap=\(golden)/l3.in.pcap,tx_pcap=\(out)\"")
            let config = try scratch.write("run.yaml", text)
            let result = try Appliance.run(["run", "--config", config, "--json", "--", "--file-prefix", "tula-test-\(getpid())"],
                                           interruptAfter: 2)
            #expect(result.status == 0, "\(result.stderr)")
            let json = try #require(result.json)
            let expectation = try #require(try JSONSerialization.jsonObject(
                with: Data(contentsOf: URL(fileURLWithPath: "\(golden)/l3.expected.json"))) as? [String: Any])
            #expect(json["rx_packets"] as? Int == expectation["rx_packets"] as? Int)
            #expect(json["tx_packets"] as? Int == expectation["tx_packets"] as? Int)
            #expect(json["mbufs_in_use"] as? Int == 0, "after stop every mbuf is back: \(json["mbufs_in_use"] ?? "missing")")
            let expected = try Pcap.read(path: "\(golden)/l3.expected.pcap").map(\.data)
            #expect(try Pcap.read(path: out).map(\.data) == expected)
        }
    }
}
