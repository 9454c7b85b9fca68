// A child started with posix_spawn and reaped with wait4: exit status, peak RSS, and signals at chosen moments.

import Foundation
import Testing

/// Unlike `BackgroundProcess` (Foundation's Process reaps the child itself), this one reaps with `wait4`, so the
/// child's own peak resident set size (`ru_maxrss`) is known. Output goes to files in `directory`.
final class SpawnedChild {
    let pid: pid_t
    private let stdoutPath: String, stderrPath: String
    private var reaped: (status: Int32, peakRSSBytes: Int)?

    /// Starts `executable args...` with the current environment plus `environment`.
    init(_ executable: String, _ args: [String], environment: [String: String] = [:], directory: String) throws {
        stdoutPath = "\(directory)/child-\(UUID().uuidString).out"
        stderrPath = "\(directory)/child-\(UUID().uuidString).err"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdoutPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + args).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for p in argv + envp { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, nil, argv, envp)
        guard rc == 0 else { throw CocoaError(.executableLoad, userInfo: ["errno": rc]) }
        self.pid = pid
    }

    deinit { if reaped == nil { kill(pid, SIGKILL); var s: Int32 = 0; waitpid(pid, &s, 0) } }

    func signal(_ s: Int32) { if reaped == nil { kill(pid, s) } }

    /// Whether the child has not exited yet (reaps it when it has).
    var isRunning: Bool { poll() == nil }

    private func poll() -> (status: Int32, peakRSSBytes: Int)? {
        if let reaped { return reaped }
        var status: Int32 = 0
        var usage = rusage()
        guard wait4(pid, &status, WNOHANG, &usage) == pid else { return nil }
        // WIFEXITED / WEXITSTATUS / WTERMSIG are macros Swift does not import; a signal death reads as 128 + signal.
        let code = status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
        reaped = (code, Int(usage.ru_maxrss) * 1024)
        return reaped
    }

    /// Waits for the exit (SIGKILL after `timeout` s): what it printed, its status and its peak RSS in bytes.
    func wait(timeout: Double = 60) -> (result: ProcessResult, peakRSSBytes: Int) {
        let deadline = Date().addingTimeInterval(timeout)
        var killed = false
        while poll() == nil {
            if Date() > deadline && !killed {
                Issue.record("child \(pid) did not finish within \(timeout) s")
                kill(pid, SIGKILL)
                killed = true
            }
            Thread.sleep(forTimeInterval: 0.005)
        }
        let (status, peak) = reaped!
        let out = (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? ""
        let err = (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? ""
        try? FileManager.default.removeItem(atPath: stdoutPath)
        try? FileManager.default.removeItem(atPath: stderrPath)
        return (ProcessResult(status: status, stdout: out, stderr: err), peak)
    }
}
