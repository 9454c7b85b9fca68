// Keeps a child process (tula-appliance run, or a client run as another user) going while a test talks to
// it, and a small client of the appliance's control socket written independently of the server's code.

import Foundation
import Testing

/// A child process whose output is collected while it runs; `interrupt` and `wait` end it.
final class BackgroundProcess: @unchecked Sendable {
    let process = Process()
    private let lock = NSLock()
    private var outData = Data(), errData = Data()
    private let drained = DispatchGroup()

    /// Starts `executable args...` with the test's environment plus `environment`.
    init(executable: String, _ args: [String], environment: [String: String] = [:]) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = args
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        process.currentDirectoryURL = packageRoot
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        for (pipe, isOut) in [(out, true), (err, false)] {
            drained.enter()
            DispatchQueue.global().async { [self] in
                let data = pipe.fileHandleForReading.readDataToEndOfFile()
                lock.withLock { if isOut { outData = data } else { errData = data } }
                drained.leave()
            }
        }
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }

    var isRunning: Bool { process.isRunning }

    func interrupt() { if process.isRunning { kill(process.processIdentifier, SIGINT) } }

    /// Waits for the exit (killing the child after `timeout` seconds) and returns what it printed.
    func wait(timeout: Double = 60) -> ProcessResult {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if process.isRunning {
            Issue.record("\(process.executableURL?.path ?? "?") \(process.arguments ?? []) did not finish within \(timeout) s")
            kill(process.processIdentifier, SIGKILL)
        }
        process.waitUntilExit()
        drained.wait()
        return lock.withLock {
            ProcessResult(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                          stderr: String(decoding: errData, as: UTF8.self))
        }
    }

    /// Runs a program to completion.
    static func run(_ executable: String, _ args: [String], timeout: Double = 60) throws -> ProcessResult {
        try BackgroundProcess(executable: executable, args).wait(timeout: timeout)
    }
}

/// `tula-appliance run` in the background, until `stop`.
final class RunningAppliance: @unchecked Sendable {
    let child: BackgroundProcess
    let socket: String
    /// EAL's `--file-prefix` for this child.
    let filePrefix = "tula-live-\(getpid())"

    /// Starts `tula-appliance run --config config --json -- --file-prefix <unique>` and waits until its control
    /// socket answers.
    /// With `fileLimit`, the appliance runs under `prlimit --nofile=N:N` (as after `ulimit -n N`); `ealArguments`
    /// go after `--file-prefix`.
    init(config: String, socket: String, timeout: Double = 30, fileLimit: Int? = nil, ealArguments: [String] = []) throws {
        self.socket = socket
        let command = [Appliance.binary, "run", "--config", config, "--json", "--", "--file-prefix", filePrefix] + ealArguments
        child = try fileLimit.map { try BackgroundProcess(executable: "/usr/bin/prlimit", ["--nofile=\($0):\($0)", "--"] + command) }
            ?? BackgroundProcess(executable: command[0], Array(command.dropFirst()))
        let deadline = Date().addingTimeInterval(timeout)
        while (try? ControlSocket.stats(socket)) == nil {
            guard child.isRunning, Date() < deadline else {
                child.interrupt()
                let result = child.wait(timeout: 10)
                throw ControlSocket.Failure(description: "the appliance did not come up: status \(result.status)\n\(result.stderr)")
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    /// SIGINT, then the exit status, the final JSON summary and stderr.
    func stop() -> ProcessResult {
        child.interrupt()
        let result = child.wait()
        RunningAppliance.removeEALFiles(prefix: filePrefix)
        return result
    }

    /// Removes what EAL leaves behind for `prefix` after its process exits: hugepage files (which keep their
    /// memory while they exist) and the runtime directory.
    static func removeEALFiles(prefix: String) {
        let mounts = (try? String(contentsOfFile: "/proc/mounts", encoding: .utf8)) ?? ""
        for line in mounts.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count > 2, fields[2] == "hugetlbfs" else { continue }
            let directory = String(fields[1])
            for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where name.hasPrefix(prefix + "map_") {
                try? FileManager.default.removeItem(atPath: "\(directory)/\(name)")
            }
        }
        try? FileManager.default.removeItem(atPath: "/var/run/dpdk/\(prefix)")
    }
}

/// A client of the control socket for tests: connect, send one line, read one line.
enum ControlSocket {
    struct Failure: Error, CustomStringConvertible { var description: String }

    /// A connected socket to `path`, with a 10 s receive timeout.
    static func connect(_ path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { throw Failure(description: "path too long: \(path)") }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes + [0]) }
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw Failure(description: "connect \(path): \(reason)")
        }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    static func send(_ fd: Int32, _ text: String) {
        let bytes = Array(text.utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            sent += n
        }
    }

    /// Reads up to the next newline (nil when the server closed first or 10 s passed).
    static func readLine(_ fd: Int32) -> String? {
        var data: [UInt8] = []
        var byte: UInt8 = 0
        while recv(fd, &byte, 1, 0) == 1 {
            if byte == UInt8(ascii: "\n") { return String(decoding: data, as: UTF8.self) }
            data.append(byte)
        }
        return nil
    }

    /// Sends `line` on a new connection and returns the parsed response object.
    static func request(_ line: String, socket path: String) throws -> [String: Any] {
        let fd = try connect(path)
        defer { close(fd) }
        send(fd, line + "\n")
        guard let response = readLine(fd) else { throw Failure(description: "no answer to \(line)") }
        return try parse(response)
    }

    static func parse(_ response: String) throws -> [String: Any] {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(response.utf8))) as? [String: Any], object["ok"] is Bool else {
            throw Failure(description: "not a response: \(response)")
        }
        return object
    }

    /// The `stats` object of a successful `stats` request.
    static func stats(_ path: String) throws -> [String: Any] {
        let response = try request(#"{"cmd":"stats"}"#, socket: path)
        guard response["ok"] as? Bool == true, let stats = response["stats"] as? [String: Any] else {
            throw Failure(description: "stats refused: \(response)")
        }
        return stats
    }
}

/// Reading a summary object (from `run --json` or a `stats` response).
extension Dictionary where Key == String, Value == Any {
    /// The first VIP's backends as (address, weight) pairs.
    var backendWeights: [String: Int] {
        let vips = self["vips"] as? [[String: Any]] ?? []
        let backends = vips.first?["backends"] as? [[String: Any]] ?? []
        return [String: Int](uniqueKeysWithValues: backends.compactMap { b in
            (b["address"] as? String).map { ($0, b["weight"] as? Int ?? -1) }
        })
    }

    /// A counter of the first VIP's backend `address` (e.g. "new_flows"), or nil when it has no such backend.
    func backend(_ address: String, _ key: String) -> Int? {
        let vips = self["vips"] as? [[String: Any]] ?? []
        let backends = vips.first?["backends"] as? [[String: Any]] ?? []
        return backends.first { $0["address"] as? String == address }?[key] as? Int
    }

    /// A counter of the first VIP (e.g. "new_flows").
    func vip(_ key: String) -> Int { ((self["vips"] as? [[String: Any]])?.first?[key] as? Int) ?? 0 }

    var rxPackets: Int { self["rx_packets"] as? Int ?? 0 }
}
