// One line per event on stderr, with a syslog priority prefix (<3>, <4>, <6>) when stderr is the systemd journal.
import Foundation

/// How serious an event is; the raw value is its syslog priority.
public enum LogLevel: Int32, Sendable {
    case error = 3
    case warning = 4
    case info = 6

    /// The word after `tula-appliance:` (nothing for plain information).
    var label: String {
        switch self {
        case .error: "error: "
        case .warning: "warning: "
        case .info: ""
        }
    }
}

/// Tula's log: `tula-appliance: [error: |warning: ]message`, one line per event, no colours. Under systemd (stderr
/// connected to journald, as `JOURNAL_STREAM` says) each line starts with `<N>`, which journald reads as the
/// line's priority (`SyslogLevelPrefix=yes`, its default), so `journalctl -p warning -u tula` shows warnings and
/// errors only. `TULA_LOG_PRIORITY=1` asks for the prefix anywhere, `=0` never.
public enum Log {
    /// Whether lines carry the `<N>` prefix (decided once, from the environment and stderr).
    public static let prefixed: Bool = {
        let environment = ProcessInfo.processInfo.environment
        if let forced = environment["TULA_LOG_PRIORITY"] { return forced == "1" }
        guard let stream = environment["JOURNAL_STREAM"] else { return false }
        let parts = stream.split(separator: ":")
        var info = stat()
        guard parts.count == 2, fstat(2, &info) == 0 else { return false }
        return UInt64(parts[0]) == UInt64(info.st_dev) && UInt64(parts[1]) == UInt64(info.st_ino)
    }()

    private static let lock = NSLock()

    /// The line as written, without its newline.
    public static func line(_ level: LogLevel, _ message: String, prefixed: Bool = Log.prefixed) -> String {
        let oneLine = message.replacingOccurrences(of: "\n", with: " ")
        return (prefixed ? "<\(level.rawValue)>" : "") + "tula-appliance: \(level.label)\(oneLine)"
    }

    /// Writes one line to stderr (whole: lines of concurrent threads never interleave).
    public static func write(_ level: LogLevel, _ message: String) {
        let bytes = Array((line(level, message) + "\n").utf8)
        lock.withLock {
            var sent = 0
            while sent < bytes.count {
                let n = bytes[sent...].withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
                if n <= 0 { if errno == EINTR { continue }; return }
                sent += n
            }
        }
    }

    public static func error(_ message: String) { write(.error, message) }
    public static func warning(_ message: String) { write(.warning, message) }
    public static func info(_ message: String) { write(.info, message) }
}
