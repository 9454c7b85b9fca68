// Finds the release build of tula-appliance for tests that inspect machine code, building it when stale.

import Foundation

/// The release binary in its own scratch path. `swift test` holds the lock of `.build` while tests run, so a
/// nested `swift build` there would deadlock; `.build-release` (git-ignored, also used by `make bench`) does not.
enum ReleaseBuild {
    static let scratchPath = packageRoot.appendingPathComponent(".build-release").path
    static let binaryPath = "\(scratchPath)/release/tula-appliance"

    /// What `binary()` did, for the test log.
    struct Outcome: Sendable {
        var path: String
        var built: Bool
        var buildSeconds: Double
    }

    /// `TULA_RELEASE_BINARY` when set; otherwise `.build-release/release/tula-appliance`, first running
    /// `swift build -c release --product tula-appliance --scratch-path .build-release` when the binary is missing
    /// or older than any file under Sources/ or Package.swift. Once per test process: the suites that ask
    /// (HotLoop, InstructionBudget) run concurrently and share one check and at most one build.
    static func binary() async throws -> Outcome {
        try await Once.shared.outcome()
    }

    /// The first caller's build task; later callers await the same one.
    private actor Once {
        static let shared = Once()
        private var task: Task<Outcome, any Error>?

        func outcome() async throws -> Outcome {
            if task == nil { task = Task { try await ReleaseBuild.findOrBuild() } }
            return try await task!.value
        }
    }

    private static func findOrBuild() async throws -> Outcome {
        if let path = ProcessInfo.processInfo.environment["TULA_RELEASE_BINARY"] {
            return Outcome(path: path, built: false, buildSeconds: 0)
        }
        let fm = FileManager.default
        let binaryDate = (try? fm.attributesOfItem(atPath: binaryPath)[.modificationDate] as? Date) ?? nil
        if let binaryDate, binaryDate >= newestSourceDate() {
            return Outcome(path: binaryPath, built: false, buildSeconds: 0)
        }
        let start = Date()
        let log = try await run("/usr/bin/env", ["swift", "build", "-c", "release", "--product", "tula-appliance",
                                                 "--scratch-path", scratchPath])
        guard log.status == 0, fm.isExecutableFile(atPath: binaryPath) else {
            throw ReleaseBuildError("release build failed (status \(log.status)):\n\(log.output.suffix(4000))")
        }
        return Outcome(path: binaryPath, built: true, buildSeconds: Date().timeIntervalSince(start))
    }

    /// Newest modification date of the inputs of the release build.
    static func newestSourceDate() -> Date {
        let fm = FileManager.default
        var newest = Date.distantPast
        var paths = [packageRoot.appendingPathComponent("Package.swift").path]
        let sources = packageRoot.appendingPathComponent("Sources").path
        if let walker = fm.enumerator(atPath: sources) {
            for case let relative as String in walker { paths.append("\(sources)/\(relative)") }
        }
        for path in paths {
            if let date = (try? fm.attributesOfItem(atPath: path)[.modificationDate]) as? Date, date > newest { newest = date }
        }
        return newest
    }

    /// Runs a tool to completion with stdout and stderr going to a temporary file (no pipe to fill up), and
    /// returns its exit status and everything it printed. Awaits the exit without blocking a thread of the
    /// test pool (a release build takes minutes; the other tests keep running meanwhile).
    static func run(_ executable: String, _ arguments: [String]) async throws -> (status: Int32, output: String) {
        let logPath = FileManager.default.temporaryDirectory.appendingPathComponent("tula-tool-\(UUID().uuidString).log").path
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: logPath) }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.currentDirectoryURL = packageRoot
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        let status: Int32 = try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do { try process.run() } catch {
                process.terminationHandler = nil
                continuation.resume(throwing: error)
            }
        }
        try handle.close()
        let output = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return (status, output)
    }
}

struct ReleaseBuildError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
