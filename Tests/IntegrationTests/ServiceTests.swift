// `run` as a systemd service: the sd_notify protocol against a fake NOTIFY_SOCKET, and priority-prefixed log lines.

import Foundation
import Testing
import TulaCore

extension Integration {
    @Suite struct Service {
        /// A datagram socket standing in for systemd's notify socket.
        final class FakeNotifySocket {
            let path: String
            let fd: Int32

            init(path: String) throws {
                self.path = path
                fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
                var address = sockaddr_un()
                address.sun_family = sa_family_t(AF_UNIX)
                withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8) + [0]) }
                let rc = withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
                }
                guard rc == 0 else { throw ControlSocket.Failure(description: "bind \(path): \(String(cString: strerror(errno)))") }
            }

            deinit { close(fd); unlink(path) }

            /// The next datagram within `seconds`, split into its KEY=value lines; nil on timeout.
            func next(within seconds: Double) -> [String]? {
                var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
                guard poll(&fds, 1, Int32(seconds * 1000)) == 1 else { return nil }
                var buffer = [UInt8](repeating: 0, count: 4096)
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                guard n > 0 else { return nil }
                return String(decoding: buffer[..<n], as: UTF8.self).split(separator: "\n").map(String.init)
            }

            /// Datagrams until one contains `field` (or `seconds` pass); all of them, the matching one last.
            func until(_ field: String, within seconds: Double) -> [[String]] {
                var seen: [[String]] = []
                let deadline = Date().addingTimeInterval(seconds)
                while Date() < deadline, let message = next(within: deadline.timeIntervalSinceNow) {
                    seen.append(message)
                    if message.contains(field) { break }
                }
                return seen
            }
        }

        @Test func notifyProtocolReadyStatusWatchdogReloadStopping() throws {
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let notify = try FakeNotifySocket(path: scratch.file("notify.sock"))
            let input = scratch.file("in.pcap")
            try Pcap.write((0..<30).map { PcapRecord(data: LiveControl.frame(flow: $0 % 10, phase: 0)) }, path: input)
            let config = try scratch.write("tula.yaml", LiveControl.config(
                device: "net_pcap0,rx_pcap=\(input),tx_pcap=\(scratch.file("out.pcap"))", socket: scratch.file("tula.sock")))
            let prefix = "tula-svc-\(getpid())"
            let child = try BackgroundProcess(executable: Appliance.binary,
                                              ["run", "--config", config, "--", "--file-prefix", prefix],
                                              environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000",
                                                            "TULA_LOG_PRIORITY": "1"])
            defer { RunningAppliance.removeEALFiles(prefix: prefix) }

            let start = notify.until("READY=1", within: 20)
            let ready = try #require(start.last, "no datagram from the appliance")
            #expect(ready.contains("READY=1"), "\(start)")
            #expect(ready.contains("STATUS=ports up 1/1, VIPs 1, backends healthy 3/3, 0 pps"), "\(ready)")

            // WATCHDOG_USEC=400000: a ping at least every 200 ms while the worker polls.
            var pings = 0
            let watchStart = Date()
            while Date().timeIntervalSince(watchStart) < 1.0, let message = notify.next(within: 1) {
                if message == ["WATCHDOG=1"] { pings += 1 }
            }
            #expect(pings >= 4, "\(pings) watchdog pings in 1 s")

            kill(child.process.processIdentifier, SIGHUP)
            let reload = notify.until("READY=1", within: 10).filter { $0 != ["WATCHDOG=1"] }
            #expect(reload.first?.first == "RELOADING=1" && reload.first?.contains { $0.hasPrefix("MONOTONIC_USEC=") } == true,
                    "\(reload)")
            #expect(reload.last?.contains("READY=1") == true, "\(reload)")

            child.interrupt()
            let stop = notify.until("STOPPING=1", within: 10)
            #expect(stop.last?.contains("STOPPING=1") == true, "\(stop)")
            let result = child.wait()
            #expect(result.status == 0, "\(result.stderr)")
            // Every log line carries its syslog priority: info for the reload, none without one.
            let lines = result.stderr.split(separator: "\n").filter { $0.contains("tula-appliance:") }
            #expect(!lines.isEmpty && lines.allSatisfy { $0.hasPrefix("<3>") || $0.hasPrefix("<4>") || $0.hasPrefix("<6>") },
                    "\(lines)")
            #expect(lines.contains { $0 == "<6>tula-appliance: SIGHUP: reloaded \(config)" }, "\(lines)")
        }

        /// `ctl add-backend` then `ctl save`: after a restart on the same file the backend is still there; the file
        /// it replaced is kept as .bak.
        @Test func savedLiveChangesSurviveARestart() throws {
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let input = scratch.file("in.pcap")
            try Pcap.write((0..<10).map { PcapRecord(data: LiveControl.frame(flow: $0, phase: 0)) }, path: input)
            let socket = scratch.file("tula.sock")
            let original = LiveControl.config(device: "net_pcap0,rx_pcap=\(input),tx_pcap=\(scratch.file("out.pcap"))", socket: socket)
            let config = try scratch.write("tula.yaml", original)
            var appliance = try RunningAppliance(config: config, socket: socket)
            let add = try Appliance.run(["ctl", "add-backend", "--socket", socket, "--vip", "web", "--address", "10.0.1.40",
                                         "--mac", "02:00:00:00:01:40", "--weight", "5"])
            #expect(add.status == 0, "\(add.stderr)")
            let save = try Appliance.run(["ctl", "save", "--socket", socket])
            #expect(save.status == 0 && save.stdout.contains("saved the running config to \(config) (the previous file is \(config).bak)"),
                    "\(save.stdout)\(save.stderr)")
            let relative = try Appliance.run(["ctl", "save", "--socket", socket, "--to", "x.yaml"])
            #expect(relative.status != 0 && relative.stderr.contains("must be an absolute path"), "\(relative.stderr)")
            #expect(appliance.stop().status == 0)
            #expect(try String(contentsOfFile: config + ".bak", encoding: .utf8) == original)

            appliance = try RunningAppliance(config: config, socket: socket)
            let weights = try ControlSocket.stats(socket).backendWeights
            #expect(appliance.stop().status == 0)
            #expect(weights == ["10.0.1.11": 1, "10.0.1.12": 1, "10.0.1.13": 1, "10.0.1.40": 5], "\(weights)")
        }

        /// A config that does not load stops `run` at once with file:line and exit status 2, the status the
        /// unit's RestartPreventExitStatus= names, so systemd does not restart it in a loop.
        @Test func badConfigExitsTwoWithFileAndLine() throws {
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let config = try scratch.write("tula.yaml", "ports: []\nworkers: 0\n")
            let result = try BackgroundProcess.run(Appliance.binary, ["run", "--config", config],
                                                   timeout: 20)
            #expect(result.status == 2)
            #expect(result.stderr.contains("\(config):1: ") || result.stderr.contains("\(config):2: "), "\(result.stderr)")
            let missing = try BackgroundProcess.run(Appliance.binary, ["run", "--config", scratch.file("none.yaml")], timeout: 20)
            #expect(missing.status == 2 && missing.stderr.contains("none.yaml:1: cannot read file: no such file"), "\(missing.stderr)")
        }
    }
}
