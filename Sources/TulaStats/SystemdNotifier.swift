// The sd_notify protocol without libsystemd: READY, STATUS, RELOADING, STOPPING and WATCHDOG datagrams to $NOTIFY_SOCKET.

import Foundation
import TulaCore

/// Talks to systemd for a `Type=notify` service: one datagram per call on the `AF_UNIX` socket named by
/// `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace), as sd_notify(3) describes.
/// `WATCHDOG_USEC` (for this process: `WATCHDOG_PID` unset or ours) asks for `WATCHDOG=1` at least that often.
public final class SystemdNotifier: @unchecked Sendable {
    private let fd: Int32
    private let address: sockaddr_un
    private let addressLength: socklen_t
    /// How often to send WATCHDOG=1, seconds: half of WATCHDOG_USEC, as systemd advises; nil without a watchdog.
    public let watchdogInterval: Double?

    /// A notifier for `environment`'s NOTIFY_SOCKET; nil when there is none (not started by systemd) or it is
    /// unusable (then the reason is logged once).
    public init?(environment: [String: String] = ProcessInfo.processInfo.environment) {
        guard let path = environment["NOTIFY_SOCKET"], !path.isEmpty else { return nil }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        let abstract = bytes.first == UInt8(ascii: "@")
        if abstract { bytes[0] = 0 }
        guard (path.hasPrefix("/") || abstract), bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            Log.warning("NOTIFY_SOCKET=\(path) is not a socket path systemd would give; not notifying")
            return nil
        }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            Log.warning("cannot notify systemd: socket: \(errnoText())")
            return nil
        }
        self.fd = fd
        self.address = address
        // The path's bytes (and the NUL of a filesystem path) after sun_family: an abstract name has no terminator.
        addressLength = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (abstract ? 0 : 1))
        if let usec = environment["WATCHDOG_USEC"].flatMap(UInt64.init), usec > 0,
           environment["WATCHDOG_PID"].map({ pid_t($0) == getpid() }) ?? true {
            watchdogInterval = Double(usec) / 2e6
        } else {
            watchdogInterval = nil
        }
    }

    deinit { close(fd) }

    /// Sends `fields` (`KEY=value`, one per line) as one datagram; false when systemd did not take it.
    @discardableResult
    public func send(_ fields: [String]) -> Bool {
        let message = Array(fields.map { $0.replacingOccurrences(of: "\n", with: " ") }.joined(separator: "\n").utf8)
        var address = self.address
        let sent = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { target in
                message.withUnsafeBytes { Glibc.sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), target, addressLength) }
            }
        }
        return sent == message.count
    }

    public func ready(status: String) { send(["READY=1", "STATUS=\(status)"]) }
    public func status(_ status: String) { send(["STATUS=\(status)"]) }
    /// `RELOADING=1` with the monotonic time systemd 253+ wants beside it.
    public func reloading() { send(["RELOADING=1", "MONOTONIC_USEC=\(UInt64(monotonicSeconds() * 1e6))"]) }
    public func stopping() { send(["STOPPING=1", "STATUS=stopping"]) }
    public func watchdog() { send(["WATCHDOG=1"]) }
}
