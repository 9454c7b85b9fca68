// The HTTP metrics endpoint (metrics_listen) of a running appliance: the same numbers as the stats socket, promtool's
// approval, /healthz, and hostile clients (slowloris, a huge request, 1,000 connections) that disturb neither
// forwarding nor the stats socket.

import Foundation
import Testing
import TulaCore

extension Integration {
    @Suite struct MetricsEndpoint {
        /// A TCP connection to 127.0.0.1:`port` with a receive timeout.
        static func connect(_ port: Int, timeout: Int = 10) -> Int32? {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = UInt16(port).bigEndian
            address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
            let rc = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard rc == 0 else { close(fd); return nil }
            var t = timeval(tv_sec: timeout, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &t, socklen_t(MemoryLayout<timeval>.size))
            return fd
        }

        static func send(_ fd: Int32, _ text: String) -> Bool {
            let bytes = Array(text.utf8)
            return bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
        }

        /// Everything until the server closes.
        static func readAll(_ fd: Int32) -> String {
            var data: [UInt8] = [], chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n <= 0 { break }
                data += chunk[..<n]
            }
            return String(decoding: data, as: UTF8.self)
        }

        /// One request with `Connection: close`: (status code, body).
        static func request(_ port: Int, _ path: String, method: String = "GET") throws -> (Int, String) {
            let fd = try #require(connect(port), "cannot connect to 127.0.0.1:\(port)")
            defer { close(fd) }
            _ = send(fd, "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            let response = readAll(fd)
            let status = Int(response.split(separator: " ").dropFirst().first ?? "") ?? 0
            let body = response.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
            return (status, body)
        }

        /// A port nobody listens on now.
        static func freePort() -> Int {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
            _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
            return Int(UInt16(bigEndian: address.sin_port))
        }

        static func value(_ exposition: String, _ series: String) -> Double? {
            exposition.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap { Double($0.split(separator: " ").last!) }
        }

        @Test func metricsHealthAndHostileClients() throws {
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let input = scratch.file("in.pcap")
            try Pcap.write((0..<64).map { PcapRecord(data: LiveControl.frame(flow: $0, phase: 0)) }, path: input)
            let socket = scratch.file("tula.sock")
            let port = Self.freePort()
            // Frames forever (infinite_rx), so "forwarding goes on" can be watched while the clients attack.
            let config = try scratch.write("tula.yaml",
                LiveControl.config(device: "net_pcap0,rx_pcap=\(input),infinite_rx=1", socket: socket)
                    + "metrics_listen: \"127.0.0.1:\(port)\"\n")
            let appliance = try RunningAppliance(config: config, socket: socket)
            var running = true
            defer { if running { _ = appliance.stop() } }

            // The same numbers as the stats socket: rx between two socket samples taken around the scrape.
            let series = "tula_port_rx_packets_total{port=\"wan\"}"
            let before = try Appliance.run(["stats", "--socket", socket, "--prometheus"]).stdout
            let (status, metrics) = try Self.request(port, "/metrics")
            let after = try Appliance.run(["stats", "--socket", socket, "--prometheus"]).stdout
            #expect(status == 200)
            let (low, mid, high) = (Self.value(before, series) ?? -1, Self.value(metrics, series) ?? -2, Self.value(after, series) ?? -3)
            #expect(low <= mid && mid <= high && low > 0, "\(low) \(mid) \(high)")
            let families = { (text: String) in Set(text.split(separator: "\n").filter { $0.hasPrefix("# TYPE") }) }
            #expect(families(metrics) == families(before))
            #expect(Self.value(metrics, "tula_backend_weight{vip=\"web\",backend=\"10.0.1.12\"}") == 1)
            if FileManager.default.isExecutableFile(atPath: "/usr/bin/promtool") {
                let path = scratch.file("metrics.txt")
                try metrics.write(toFile: path, atomically: true, encoding: .utf8)
                let check = try BackgroundProcess.run("/bin/sh", ["-c", "/usr/bin/promtool check metrics < \(path)"])
                #expect(check.status == 0, "promtool: \(check.stdout)\(check.stderr)")
            }
            #expect(try Self.request(port, "/healthz") == (200, "ok\n"))
            #expect(try Self.request(port, "/").0 == 404)
            #expect(try Self.request(port, "/metrics/../admin").0 == 404)
            #expect(try Self.request(port, "/metrics", method: "POST").0 == 405)
            #expect(try Self.request(port, "/metrics", method: "HEAD") == (200, ""))

            // Hostile clients, all at once.
            var files = rlimit()
            getrlimit(Int32(RLIMIT_NOFILE.rawValue), &files)
            if files.rlim_cur < 4096 { files.rlim_cur = min(4096, files.rlim_max); setrlimit(Int32(RLIMIT_NOFILE.rawValue), &files) }
            let crowd = (0..<1000).compactMap { _ in Self.connect(port, timeout: 1) }
            defer { for fd in crowd { close(fd) } }
            #expect(crowd.count >= 900, "\(crowd.count) connections opened")
            let slow = try #require(Self.connect(port))
            defer { close(slow) }
            let rxBefore = try ControlSocket.stats(socket).rxPackets
            let start = Date()
            // Slowloris: a header byte every 0.4 s never completes a request; the server hangs up within its 5 s.
            var slowClosedAfter: Double?
            _ = Self.send(slow, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            var worstStats = 0.0
            while Date().timeIntervalSince(start) < 8, slowClosedAfter == nil {
                if !Self.send(slow, "a") { slowClosedAfter = Date().timeIntervalSince(start); break }
                let t = Date()
                _ = try ControlSocket.stats(socket)
                worstStats = max(worstStats, Date().timeIntervalSince(t))
                Thread.sleep(forTimeInterval: 0.4)
                var probe = [UInt8](repeating: 0, count: 1)
                if recv(slow, &probe, 1, Int32(MSG_DONTWAIT)) == 0 { slowClosedAfter = Date().timeIntervalSince(start) }
            }
            #expect(slowClosedAfter.map { $0 < 7 } == true, "slowloris still connected after \(Date().timeIntervalSince(start)) s")
            #expect(worstStats < 0.1, "the stats socket took \(Int(worstStats * 1000)) ms under attack")
            let rxAfter = try ControlSocket.stats(socket).rxPackets
            #expect(rxAfter > rxBefore + 10_000, "forwarding went on: \(rxBefore) -> \(rxAfter)")
            for fd in crowd { close(fd) }

            // A 100 MB request head and a 100 MB body: answered and closed long before 100 MB are sent.
            for prefix in ["GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ", "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n"] {
                let fd = try #require(Self.connect(port))
                _ = Self.send(fd, prefix)
                let chunk = String(repeating: "a", count: 65536)
                var sent = 0
                while sent < 100_000_000, Self.send(fd, chunk) { sent += chunk.utf8.count }
                let answer = Self.readAll(fd)
                close(fd)
                #expect(sent < 10_000_000, "\(sent) bytes taken before the server hung up")
                #expect(answer.hasPrefix("HTTP/1.1 431") || answer.hasPrefix("HTTP/1.1 413") || answer.isEmpty, "\(answer.prefix(80))")
            }
            #expect(try Self.request(port, "/healthz") == (200, "ok\n"), "the endpoint serves again once they are gone")

            // 64 idle connections (the cap) do not lock a scraper out: the idlest one makes room.
            let idle = (0..<64).compactMap { _ in Self.connect(port, timeout: 2) }
            defer { for fd in idle { close(fd) } }
            Thread.sleep(forTimeInterval: 0.2)
            #expect(try Self.request(port, "/healthz") == (200, "ok\n"), "a scrape with 64 idle connections open")
            for fd in idle { close(fd) }

            // A client that pipelines requests and never reads holds at most what the socket buffers take; it is
            // closed, and the appliance does not grow.
            let rss = { () -> Int in
                let status = (try? String(contentsOfFile: "/proc/\(appliance.child.process.processIdentifier)/status", encoding: .utf8)) ?? ""
                return status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") }
                    .flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") } ?? 0
            }
            let rssBefore = rss()
            let greedy = try #require(Self.connect(port, timeout: 3))
            var small = 16 * 1024
            setsockopt(greedy, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
            let burst = String(repeating: "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", count: 500)
            var requests = 0
            for _ in 0..<40 where Self.send(greedy, burst) { requests += 500 }
            Thread.sleep(forTimeInterval: 1)
            let rssDuring = rss()
            let answers = Self.readAll(greedy).components(separatedBy: "HTTP/1.1 200").count - 1
            close(greedy)
            #expect(answers < requests, "\(answers) answers to \(requests) pipelined requests: the client was never cut off")
            #expect(rssDuring - rssBefore < 32 * 1024, "RSS grew from \(rssBefore) to \(rssDuring) KiB")

            let result = appliance.stop()
            running = false
            #expect(result.status == 0, "\(result.stderr)")
        }
    }
}
