// The control server under hostile clients: pipelining clients that never read, and a non-root connection flood.
import Foundation
import Testing
@testable import TulaCore
@testable import TulaStats

@Suite(.serialized) struct ControlServerBoundsTests {
    /// 150 clients pipeline 300 stats requests each and never read. Before, the server answered each client
    /// until its socket buffer filled (hundreds of stats computations per client per round) and root's
    /// `ctl` waited seconds; now every client gets one answer per round, stats are computed once per round,
    /// and root's change is answered within 100 ms.
    @Test func pipeliningClientsThatNeverReadDoNotStarveRoot() throws {
        let (directory, path) = socketPath()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let server = try ControlServer(path: path)
        let appliance = FakeAppliance(try testConfig())
        appliance.statsDelaySeconds = 0.002
        server.start(target: appliance)
        defer { server.stop() }
        let requests = String(repeating: ControlRequest.stats.line + "\n", count: 300)
        let hogs = try (0..<150).map { _ in try RawClient(path) }
        defer { for hog in hogs { hog.close() } }
        for hog in hogs { hog.send(requests) }
        Thread.sleep(forTimeInterval: 0.3)   // let the server get well into the backlog

        var times: [Double] = []
        for weight in [0, 1, 0, 1, 2] {
            let line = #"{"cmd":"set-weight","vip":"web","address":"10.0.1.11","weight":\#(weight)}"#
            let start = Date()
            let response = try ControlClient.send(line, to: path)
            times.append(Date().timeIntervalSince(start))
            #expect(try ControlResponse.decode(response).ok, "\(response)")
        }
        // The median holds the 100 ms the issue asks for; the worst has slack for a loaded machine (before the
        // fix every answer took over 10 s).
        let sorted = times.sorted()
        #expect(sorted[2] < 0.1, "root's set-weight took \(sorted.map { Int($0 * 1000) }) ms under 150 pipelining clients")
        #expect(sorted[4] < 0.5, "root's set-weight took \(sorted.map { Int($0 * 1000) }) ms under 150 pipelining clients")
        #expect(appliance.current.vips[0].backends[0].weight == 2)
    }

    /// A non-root user opens far more connections than the cap: the newest are turned away and counted,
    /// root still gets in (closing the longest-idle non-root client when every slot is taken).
    @Test func nonRootFloodIsCappedAndRootIsAlwaysServed() throws {
        let (directory, path) = socketPath()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let server = try ControlServer(path: path, limits: ControlServer.Limits(maxClients: 10, maxTotalClients: 12))
        server.start(target: FakeAppliance(try testConfig()))
        defer { server.stop() }
        #expect(chmod(path, 0o666) == 0)
        let flood = try NonRootFlood(socket: path, connections: 40)
        defer { flood.stop() }
        #expect(waitUntil { server.counters.clients == 10 && server.counters.rejectedClients == 30 },
                "\(server.counters)")

        // Root takes the two slots non-root clients may not, then a third by evicting one of them.
        let roots = try (0..<3).map { _ in try RawClient(path) }
        defer { for root in roots { root.close() } }
        for root in roots {
            root.send(ControlRequest.stats.line + "\n")
            let answer = root.readLine()
            #expect(answer.map { (try? ControlResponse.decode($0).ok) == true } ?? false, "\(String(describing: answer))")
        }
        #expect(server.counters.evictedClients == 1, "\(server.counters)")
        #expect(server.counters.clients == 12, "\(server.counters)")
        #expect(server.counters.rejectedClients == 30, "\(server.counters)")
    }

    @Test func capsFollowTheFileLimit() throws {
        let (directory, path) = socketPath()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var files = rlimit()
        #expect(getrlimit(Int32(RLIMIT_NOFILE.rawValue), &files) == 0)
        let server = try ControlServer(path: path, limits: ControlServer.Limits(maxClients: 1 << 30))
        defer { server.stop() }
        #expect(server.nonRootCap == Int(files.rlim_cur) / 4)
        #expect(server.totalCap == Int(files.rlim_cur) / 2)
    }
}

/// `setpriv` to user nobody, then a Python (without site-packages) that opens `connections` connections to
/// the socket and holds them until its standard input closes.
private final class NonRootFlood {
    let process = Process()
    private let input = Pipe()

    init(socket: String, connections: Int) throws {
        let script = """
            import socket, sys
            held = []
            for _ in range(int(sys.argv[2])):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(sys.argv[1])
                held.append(s)
            sys.stdin.read()
            """
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        process.arguments = ["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-S", "-c", script,
                             socket, "\(connections)"]
        process.standardInput = input
        try process.run()
    }

    func stop() {
        try? input.fileHandleForWriting.close()
        process.waitUntilExit()
    }
}

/// Polls `condition` every 20 ms for up to `seconds`.
func waitUntil(seconds: Double = 5, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        Thread.sleep(forTimeInterval: 0.02)
    }
    return condition()
}
