// Runs the built tula-appliance as a child process (each with its own EAL) and captures what it prints.

import Foundation
import Testing
import TulaCore

/// The root of the package (two levels above this file's folder).
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()

/// All integration tests share one parent suite so they run one at a time: each child process takes
/// hugepages (or a large --no-huge arena) and CPU, and timing-sensitive ones must not overlap.
@Suite(.serialized) struct Integration {}

struct ProcessResult {
    var status: Int32
    var stdout: String
    var stderr: String
    /// The summary when the process printed one JSON object.
    var json: [String: Any]? {
        guard let line = stdout.split(separator: "\n").last(where: { $0.hasPrefix("{") }) else { return nil }
        return try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
    }
}

enum Appliance {
    /// The debug build `swift build --build-tests` made (or `TULA_APPLIANCE` if set).
    static var binary: String {
        if let path = ProcessInfo.processInfo.environment["TULA_APPLIANCE"] { return path }
        return packageRoot.appendingPathComponent(".build/debug/tula-appliance").path
    }

    /// Runs `tula-appliance args...`; with `interruptAfter`, sends SIGINT after that many seconds.
    static func run(_ args: [String], interruptAfter: Double? = nil, timeout: Double = 120) throws -> ProcessResult {
        let child = try BackgroundProcess(executable: binary, args)
        if let interruptAfter {
            Thread.sleep(forTimeInterval: interruptAfter)
            child.interrupt()
        }
        return child.wait(timeout: timeout)
    }
}

/// A fresh temporary directory, removed by `cleanup()`.
struct Scratch {
    let path: String
    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("tula-test-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func file(_ name: String) -> String { "\(path)/\(name)" }
    func write(_ name: String, _ text: String) throws -> String {
        try text.write(toFile: file(name), atomically: true, encoding: .utf8)
        return file(name)
    }
    func cleanup() { try? FileManager.default.removeItem(atPath: path) }
}

/// Verdict counters of a summary, non-zero ones only.
func nonZeroVerdicts(_ json: [String: Any]) -> [String: Int] {
    ((json["verdicts"] as? [String: Int]) ?? [:]).filter { $0.value != 0 }
}
