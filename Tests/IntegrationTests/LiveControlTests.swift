// Live control of a running appliance while traffic flows through a veth pair: a reload, a backend added,
// removed and drained lose nothing and move only the flows they must; 200 stats clients disturb nothing;
// bad requests (non-root ones included) change nothing; the stats and ctl commands end to end.

import Foundation
import Testing
import TulaCore

extension Integration {
    @Suite struct LiveControl {
        /// Frames per second the sender writes into the veth pair (kept low enough for the pcap driver's ring).
        static let rate = 2000.0
        static let portMAC = MACAddress(2, 0, 0, 0, 0, 1)

        /// The VIP's address in `family` (10.0.1.100 or 2001:db8:100::80).
        static func vip(_ family: IPFamily) -> String { family == .v4 ? "10.0.1.100" : "2001:db8:100::80" }
        /// Backend `i`'s address in `family` (10.0.1.11... or 2001:db8:1::11...); its MAC is 02:00:00:00:01:(11 + i).
        static func backend(_ i: Int, _ family: IPFamily) -> String {
            family == .v4 ? "10.0.1.\(11 + i)" : "2001:db8:1::\(11 + i)"
        }

        /// One l2 VIP "web" (`vip(family)`, tcp/80) with backends `backend(0, family)`... (MAC 02:00:00:00:01:11...) of `weights`.
        static func config(device: String, socket: String, weights: [Int] = [1, 1, 1], workers: Int = 1,
                           family: IPFamily = .v4) -> String {
            var text = """
                ports:
                  - name: wan
                    device: "\(device)"
                    address: 10.0.1.2
                    mac: 02:00:00:00:00:01
                workers: \(workers)
                flows_per_worker: 65536
                stats_socket: \(socket)
                vips:
                  - name: web
                    address: "\(vip(family))"
                    port: 80
                    protocol: tcp
                    mode: l2
                    backends:

                """
            for (i, weight) in weights.enumerated() {
                text += "      - address: \"\(backend(i, family))\"\n        mac: 02:00:00:00:01:\(11 + i)\n        weight: \(weight)\n"
            }
            return text
        }

        /// A frame of flow `flow` (source 198.18.x.y or 2001:db8:ff::x:y, port 10000+flow, to the VIP), stamped with
        /// `phase` in the IPv4 identification field or the IPv6 flow label (Tula forwards the IP packet untouched,
        /// so the stamp comes out as it went in).
        static func frame(flow: Int, phase: Int, family: IPFamily = .v4) -> [UInt8] {
            let client: IPAddress = family == .v4 ? .v4(IPv4Address(198, 18, UInt8(flow >> 8), UInt8(flow & 0xFF)))
                                                  : .v6(IPv6Address(hi: 0x2001_0DB8_00FF_0000, lo: UInt64(flow)))
            var packet = SyntheticPacket(srcMAC: MACAddress(2, 0, 0, 0, 0xAA, 1), dstMAC: portMAC, src: client,
                                         dst: IPAddress(vip(family))!, proto: .tcp, srcPort: UInt16(10_000 + flow),
                                         dstPort: 80, payloadBytes: 16)
            packet.identification = UInt16(phase)
            var f = FrameBuilder.frame(packet)
            if family == .v6 { f[16] = UInt8(phase >> 8); f[17] = UInt8(phase & 0xFF) }
            return f
        }

        /// What one forwarded frame says: its flow, its phase stamp, and its backend (last byte of the destination MAC).
        struct Observed {
            var flow: Int, phase: Int, backend: UInt8

            init?(_ f: [UInt8]) {
                if f.count >= 54, f[12] == 0x08, f[13] == 0x00, f[23] == 6 {
                    flow = (Int(f[34]) << 8 | Int(f[35])) - 10_000
                    phase = Int(f[18]) << 8 | Int(f[19])
                } else if f.count >= 74, f[12] == 0x86, f[13] == 0xDD, f[20] == 6 {
                    flow = (Int(f[54]) << 8 | Int(f[55])) - 10_000
                    phase = Int(f[16]) << 8 | Int(f[17])
                } else {
                    return nil
                }
                backend = f[5]
            }
        }

        /// What a live run left behind.
        struct Outcome {
            var json: [String: Any]
            var output: [Observed]
            var sent: Int
            /// Frames the appliance sent itself (MLD reports of an IPv6 VIP's group), not forwarded ones.
            var controlFrames = 0
            var stderr: String

            /// Every received frame forwarded, nothing dropped for any reason, the capture complete.
            func expectNothingDropped(_ location: SourceLocation = #_sourceLocation) {
                let drops = ((json["drops"] as? [String: Int]) ?? [:]).filter { $0.value != 0 }
                #expect(drops.isEmpty, "drops: \(drops)", sourceLocation: location)
                let rx = json.rxPackets
                let port = (json["ports"] as? [[String: Any]])?.first ?? [:]
                #expect(port["forwarded"] as? Int == rx, sourceLocation: location)
                #expect(json["tx_packets"] as? Int == rx + controlFrames, sourceLocation: location)
                #expect(controlFrames <= 1, "\(controlFrames) frames of the appliance's own", sourceLocation: location)
                #expect(output.count == rx, "the capture holds every forwarded frame", sourceLocation: location)
                // Frames the kernel cannot queue for the pcap driver (its capture ring overflows when the
                // worker's CPU is busy with other work) never reach Tula and are not Tula's drops; this
                // only checks that the traffic flowed.
                #expect(Double(rx) >= 0.5 * Double(sent), "received \(rx) of \(sent) frames sent", sourceLocation: location)
            }
        }

        /// An appliance reading one end of a veth pair, fed by a TrafficSender on the other end.
        final class Rig {
            let scratch: Scratch
            let veth: VethPair
            let family: IPFamily
            let configPath: String, socket: String, capture: String
            private(set) var appliance: RunningAppliance?
            private(set) var sender: TrafficSender?
            private var phaseStart = Date()

            init(family: IPFamily = .v4) throws {
                self.family = family
                scratch = try Scratch()
                do { veth = try VethPair() } catch { scratch.cleanup(); throw error }
                socket = scratch.file("tula.sock")
                capture = scratch.file("out.pcap")
                configPath = scratch.file("tula.yaml")
            }

            func writeConfig(weights: [Int] = [1, 1, 1]) throws {
                let device = "net_pcap0,rx_iface_in=\(veth.inside),tx_pcap=\(capture)"
                try LiveControl.config(device: device, socket: socket, weights: weights, family: family)
                    .write(toFile: configPath, atomically: true, encoding: .utf8)
            }

            func start() throws {
                try writeConfig()
                appliance = try RunningAppliance(config: configPath, socket: socket)
                let sender = try TrafficSender(interface: veth.outside)
                sender.start(packetsPerSecond: LiveControl.rate)
                self.sender = sender
            }

            /// From now on, send flows `flows` round-robin, stamped `phase`.
            func traffic(flows: Range<Int>, phase: Int) {
                sender?.send(flows.map { LiveControl.frame(flow: $0, phase: phase, family: family) })
                phaseStart = Date()
            }

            /// Waits until the VIP has pinned `newFlows` flows and the phase has lasted `seconds`; returns the stats.
            @discardableResult
            func settle(newFlows: Int, seconds: Double = 1.2) throws -> [String: Any] {
                let deadline = Date().addingTimeInterval(15)
                while true {
                    let stats = try ControlSocket.stats(socket)
                    if stats.vip("new_flows") >= newFlows && Date().timeIntervalSince(phaseStart) >= seconds { return stats }
                    guard Date() < deadline else {
                        throw ControlSocket.Failure(description: "only \(stats.vip("new_flows")) of \(newFlows) flows pinned")
                    }
                    Thread.sleep(forTimeInterval: 0.1)
                }
            }

            /// `tula-appliance ctl ARGS --socket S`, which must succeed.
            func ctl(_ args: [String]) throws {
                let result = try Appliance.run(["ctl"] + args + ["--socket", socket], timeout: 30)
                guard result.status == 0 else { throw ControlSocket.Failure(description: "ctl \(args): \(result.stderr)") }
            }

            /// Stops the traffic, lets the appliance take in what is queued, stops it and reads its capture.
            func finish() throws -> Outcome {
                let sent = sender?.stop() ?? 0
                var last = -1
                for _ in 0..<30 {
                    let rx = try ControlSocket.stats(socket).rxPackets
                    if rx == last { break }
                    last = rx
                    Thread.sleep(forTimeInterval: 0.3)
                }
                let result = try #require(appliance).stop()
                appliance = nil
                #expect(result.status == 0, "\(result.stderr)")
                let json = try #require(result.json, "\(result.stdout)\n\(result.stderr)")
                let captured = try Pcap.read(path: capture)
                let output = captured.compactMap { Observed($0.data) }
                var outcome = Outcome(json: json, output: output, sent: sent, stderr: result.stderr)
                outcome.controlFrames = captured.count - output.count
                return outcome
            }

            func cleanup() {
                _ = sender?.stop()
                if let appliance { _ = appliance.stop() }
                veth.remove()
                scratch.cleanup()
            }
        }

        /// Runs `body` against a live appliance with traffic, then stops everything (always) and returns the outcome.
        func live(family: IPFamily = .v4, _ body: (Rig) throws -> Void) throws -> Outcome {
            let rig = try Rig(family: family)
            defer { rig.cleanup() }
            try rig.start()
            try body(rig)
            return try rig.finish()
        }

        @Test(arguments: [IPFamily.v4, .v6])
        func changesUnderTrafficLoseNothingAndMoveOnlyTheFlowsTheyMust(_ family: IPFamily) throws {
            let b = (0..<4).map { LiveControl.backend($0, family) }
            var weightsAfterReload: [String: Int] = [:]
            var pinnedToRemoved = 0
            let run = try live(family: family) { rig in
                rig.traffic(flows: 0..<120, phase: 0)
                try rig.settle(newFlows: 120)
                // 1. Reload a config file in which 10.0.1.13's weight went from 1 to 2.
                try rig.writeConfig(weights: [1, 1, 2])
                try rig.ctl(["reload"])
                weightsAfterReload = try ControlSocket.stats(rig.socket).backendWeights
                rig.traffic(flows: 0..<180, phase: 1)
                try rig.settle(newFlows: 180)
                // 2. Add 10.0.1.14.
                try rig.ctl(["add-backend", "--vip", "web", "--address", b[3], "--mac", "02:00:00:00:01:14"])
                rig.traffic(flows: 0..<240, phase: 2)
                pinnedToRemoved = try rig.settle(newFlows: 240).backend(b[1], "new_flows") ?? -1
                // 3. Remove 10.0.1.12: its flows are pinned again elsewhere (new flows of the VIP).
                try rig.ctl(["remove-backend", "--vip", "web", "--address", b[1]])
                rig.traffic(flows: 0..<300, phase: 3)
                try rig.settle(newFlows: 300 + pinnedToRemoved)
                // 4. Drain 10.0.1.11.
                try rig.ctl(["set-weight", "--vip", "web", "--address", b[0], "--weight", "0"])
                rig.traffic(flows: 0..<400, phase: 4)
                try rig.settle(newFlows: 400 + pinnedToRemoved, seconds: 1.5)
            }
            #expect(weightsAfterReload == [b[0]: 1, b[1]: 1, b[2]: 2])
            run.expectNothingDropped()
            #expect(run.json.backendWeights == [b[0]: 0, b[2]: 2, b[3]: 1])
            #expect((run.json["flows"] as? [String: Int])?["evictions"] == 0)

            let byFlow = Dictionary(grouping: run.output, by: \.flow) // each in capture (= processing) order
            #expect(byFlow.count == 400, "every flow came out")
            var moved = 0
            for (flow, frames) in byFlow {
                guard let first = frames.first?.backend else { continue }
                if first == 0x12 {
                    // The removed backend's flows: on it until the removal, then on one other backend for good.
                    moved += 1
                    #expect(frames.filter { $0.backend == 0x12 }.allSatisfy { $0.phase <= 2 }, "flow \(flow) on 10.0.1.12 after its removal")
                    let after = frames.drop { $0.backend == 0x12 }
                    #expect(!after.isEmpty && Set(after.map(\.backend)).count == 1 && !after.contains { $0.backend == 0x12 },
                            "flow \(flow) of the removed backend: \(frames.map(\.backend))")
                } else {
                    #expect(frames.allSatisfy { $0.backend == first }, "flow \(flow) left backend \(first): \(frames.map(\.backend))")
                }
                if frames[0].phase == 4 { #expect(first != 0x11, "new flow \(flow) went to the drained backend") }
            }
            #expect(moved == pinnedToRemoved && moved > 0, "\(moved) flows moved, \(pinnedToRemoved) were pinned to 10.0.1.12")
            #expect(run.output.contains { $0.phase == 4 && $0.backend == 0x11 }, "the drained backend keeps its flows")
            #expect(byFlow.values.contains { $0.first?.backend == 0x14 }, "the added backend gets new flows")
            // The counters agree with the capture: a backend's new flows are the flows that reached it.
            for (address, mac) in [(b[0], UInt8(0x11)), (b[2], 0x13), (b[3], 0x14)] {
                let reached = byFlow.values.filter { $0.contains { $0.backend == mac } }.count
                #expect(run.json.backend(address, "new_flows") == reached, "\(address)")
            }
        }

        @Test func twoHundredStatsClientsDuringTrafficDisturbNothing() throws {
            var answered = 0
            let run = try live { rig in
                rig.traffic(flows: 0..<150, phase: 0)
                try rig.settle(newFlows: 150, seconds: 0.5)
                for _ in 0..<2 {
                    // 200 connections open at once, each with a request in flight, answered in any order.
                    let fds = try (0..<200).map { _ in try ControlSocket.connect(rig.socket) }
                    for fd in fds { ControlSocket.send(fd, #"{"cmd":"stats"}"# + "\n") }
                    for fd in fds {
                        if let line = ControlSocket.readLine(fd), let response = try? ControlSocket.parse(line),
                           response["ok"] as? Bool == true, (response["stats"] as? [String: Any])?.rxPackets ?? 0 > 0 {
                            answered += 1
                        }
                        close(fd)
                    }
                }
                Thread.sleep(forTimeInterval: 0.5)
            }
            #expect(answered == 400)
            run.expectNothingDropped()
            for (flow, frames) in Dictionary(grouping: run.output, by: \.flow) {
                #expect(Set(frames.map(\.backend)).count == 1, "flow \(flow) moved")
            }
        }

        @Test func badRequestsAreRefusedAndTheRunningConfigStays() throws {
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            // The socket directory belongs to group nogroup with the setgid bit, so the socket (0660) is created
            // in that group and `nobody` can connect: the non-root check then reaches the server's SO_PEERCRED test.
            let directory = scratch.file("run")
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
            #expect(chown(directory, 0, 65534) == 0 && chmod(directory, 0o2770) == 0)
            let socket = "\(directory)/tula.sock"
            // A stale socket file, as a crashed appliance leaves it: the new appliance replaces it.
            let stale = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(socket.utf8) + [0]) }
            #expect(withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(stale, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            } == 0)
            close(stale)

            let input = scratch.file("in.pcap")
            try Pcap.write((0..<30).map { PcapRecord(data: LiveControl.frame(flow: $0 % 10, phase: 0)) }, path: input)
            let good = LiveControl.config(device: "net_pcap0,rx_pcap=\(input),tx_pcap=\(scratch.file("out.pcap"))", socket: socket)
            let configPath = try scratch.write("tula.yaml", good)
            // As after `ulimit -n 1024`, where 1,100 idle non-root connections once took every descriptor.
            let appliance = try RunningAppliance(config: configPath, socket: socket, fileLimit: 1024)
            var running = true
            defer { if running { _ = appliance.stop() } }
            let initial = ["10.0.1.11": 1, "10.0.1.12": 1, "10.0.1.13": 1]
            #expect(try ControlSocket.stats(socket).backendWeights == initial)
            var info = stat()
            #expect(stat(socket, &info) == 0 && info.st_mode & 0o777 == 0o660 && info.st_gid == 65534)

            // Each bad request: an error reply, and the backends and weights stay.
            let bad: [(String, String)] = [
                (#"{"cmd":"shutdown"}"#, "unknown command"),
                (#"{"cmd":"stats""#, "malformed request"),
                (#"["stats"]"#, "malformed request"),
                (#"{"cmd":"set-weight","vip":"nope","address":"10.0.1.11","weight":0}"#, "no VIP named"),
                (#"{"cmd":"set-weight","vip":"web","address":"10.0.1.11","weight":-1}"#, "out of range"),
                (#"{"cmd":"remove-backend","vip":"web","address":"10.0.1.99"}"#, "has no backend"),
                (#"{"cmd":"add-backend","vip":"web","address":"10.0.1.11","mac":"02:00:00:00:01:11"}"#, "already has backend"),
            ]
            for (line, reason) in bad {
                let response = try ControlSocket.request(line, socket: socket)
                #expect(response["ok"] as? Bool == false && (response["error"] as? String ?? "").contains(reason), "\(line): \(response)")
                #expect(try ControlSocket.stats(socket).backendWeights == initial, "\(line)")
            }
            let fd = try ControlSocket.connect(socket)
            ControlSocket.send(fd, String(repeating: "x", count: 5000) + "\n")
            let oversized = ControlSocket.readLine(fd).flatMap { try? ControlSocket.parse($0) }
            let oversizedError = oversized?["error"] as? String
            #expect(oversizedError?.contains("longer than 4096 bytes") == true, "\(String(describing: oversized))")
            #expect(ControlSocket.readLine(fd) == nil, "the server closes after an oversized line")
            close(fd)

            // Reloads of an invalid file, and of one that needs a restart, are refused (socket and SIGHUP).
            // A nesting bomb once overflowed the stack of the reload and killed the appliance.
            let bomb = "workers: " + String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000) + "\n"
            for (text, reason) in [("vips: [\n", "reload refused: \(configPath):"),
                                   (bomb, "reload refused: \(configPath):1: nesting deeper than 64 levels"),
                                   (good.replacingOccurrences(of: "workers: 1", with: "workers: 2"), "workers changed")] {
                try text.write(toFile: configPath, atomically: true, encoding: .utf8)
                let reload = try Appliance.run(["ctl", "reload", "--socket", socket])
                #expect(reload.status == 1 && reload.stderr.contains(reason), "\(reload.stderr)")
                kill(appliance.child.process.processIdentifier, SIGHUP)
                Thread.sleep(forTimeInterval: 0.3)
                #expect(try ControlSocket.stats(socket).backendWeights == initial)
            }
            try good.write(toFile: configPath, atomically: true, encoding: .utf8)

            // A non-root peer may read the stats but not change anything. It runs a copy of the binary in the
            // scratch directory, which `nobody` can reach wherever the package is checked out.
            #expect(chmod(scratch.path, 0o755) == 0)
            let binary = scratch.file("tula-appliance")
            try FileManager.default.copyItem(atPath: Appliance.binary, toPath: binary)
            let nobody = [systemPath, "runuser", "-u", "nobody", "--", binary]
            let refused = try BackgroundProcess.run("/usr/bin/env", nobody + ["ctl", "set-weight", "--socket", socket, "--vip", "web",
                                                                               "--address", "10.0.1.11", "--weight", "0"])
            #expect(refused.status == 1 && refused.stderr.contains("permission denied: set-weight"), "\(refused.stderr)")
            let nobodyStats = try BackgroundProcess.run("/usr/bin/env", nobody + ["stats", "--socket", socket, "--json"])
            #expect(nobodyStats.status == 0, "\(nobodyStats.stderr)")
            #expect(try ControlSocket.stats(socket).backendWeights == initial)

            // 1,100 idle connections from `nobody`: 256 (a quarter of the fd limit) are served, the rest turned
            // away and counted, and root's requests are answered throughout.
            let flood = try BackgroundProcess(executable: "/usr/bin/prlimit", ["--nofile=4096:4096", "--", "/usr/bin/setpriv",
                "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-S", "-c",
                "import socket, sys, time\nheld = []\nfor _ in range(1100):\n    s = socket.socket(socket.AF_UNIX)\n"
                + "    s.connect(sys.argv[1])\n    held.append(s)\nprint(len(held), flush=True)\ntime.sleep(30)\n", socket])
            var flooded: [String: Int] = [:]
            for _ in 0..<100 {
                flooded = try ControlSocket.request(#"{"cmd":"stats"}"#, socket: socket)["control"] as? [String: Int] ?? [:]
                if flooded["rejected_clients"] == 1100 - 256 { break }
                Thread.sleep(forTimeInterval: 0.05)
            }
            let rejected = flooded["rejected_clients"], clients = flooded["clients"]
            #expect(rejected == 1100 - 256 && clients == 256 + 1, "\(flooded); flood: \(flood.isRunning ? "running" : "\(flood.wait())")")
            let underFlood = Date()
            #expect(try ControlSocket.request(#"{"cmd":"set-weight","vip":"web","address":"10.0.1.11","weight":1}"#,
                                              socket: socket)["ok"] as? Bool == true)
            #expect(Date().timeIntervalSince(underFlood) < 0.5)
            kill(flood.process.processIdentifier, SIGKILL)
            _ = flood.wait()

            // The stats command: table with rates, JSON, Prometheus, socket from --config, a clear error without a socket.
            let table = try Appliance.run(["stats", "--socket", socket, "--interval", "0.2"])
            #expect(table.status == 0 && table.stdout.contains("RX PKT/S") && table.stdout.contains("web 10.0.1.100:80/tcp l2")
                    && table.stdout.contains("-> 10.0.1.13"), "\(table.stdout)\(table.stderr)")
            let json = try Appliance.run(["stats", "--config", configPath, "--json"])
            let object = try #require(json.json, "\(json.stdout)\(json.stderr)")
            #expect(object.rxPackets == 30)
            let control = try #require(object["control"] as? [String: Int])
            #expect(control["refused"] ?? 0 >= bad.count + 4, "\(control)")
            let prometheus = try Appliance.run(["stats", "--socket", socket, "--prometheus"])
            #expect(prometheus.stdout.contains("# TYPE tula_port_rx_packets_total counter\ntula_port_rx_packets_total{port=\"wan\"} 30\n"))
            #expect(prometheus.stdout.contains("tula_backend_weight{vip=\"web\",backend=\"10.0.1.12\"} 1\n"))
            let missing = try Appliance.run(["stats", "--socket", scratch.file("none.sock")])
            #expect(missing.status == 1 && missing.stderr.contains("is tula-appliance run going? socket \(scratch.file("none.sock")) not found"))

            // A second appliance on the same socket is refused before EAL starts; the first keeps serving.
            let second = try Appliance.run(["run", "--config", configPath, "--", "--file-prefix", "tula-live2-\(getpid())"], timeout: 30)
            #expect(second.status == 1 && second.stderr.contains("already listening on \(socket)") && !second.stderr.contains("EAL"),
                    "\(second.stderr)")
            #expect(try ControlSocket.stats(socket).backendWeights == initial)

            let result = appliance.stop()
            running = false
            #expect(result.status == 0)
            #expect(!FileManager.default.fileExists(atPath: socket), "the socket is removed on exit")
            #expect(result.stderr.contains("SIGHUP: ") && result.stderr.contains("the running config stays"), "\(result.stderr)")
            #expect(result.stderr.contains("control: refused set-weight from uid 65534"), "\(result.stderr)")
            #expect(result.json?.backendWeights == initial)
        }
    }
}
