// The client side of the control socket: connect to a Unix socket path, send one request line, read one response line.

import Foundation
import TulaCore

/// Why a control request could not be made or answered; `description` is meant for the operator.
public struct ControlClientError: Error, Sendable, CustomStringConvertible {
    /// What went wrong: no socket file, a socket nobody listens on (stale), no permission, anything else.
    public enum Kind: Sendable { case notFound, notListening, permissionDenied, failed }
    public var kind: Kind
    /// The message for the operator, naming the socket path.
    public var description: String
}

/// Sends requests to a running appliance's control socket.
public enum ControlClient {
    /// Connects to the socket at `path`, sends `line` and a newline, and returns the response line
    /// (without its newline). Gives up after `timeoutSeconds`.
    public static func send(_ line: String, to path: String, timeoutSeconds: Double = 10) throws(ControlClientError) -> String {
        let fd = try connect(path)
        defer { close(fd) }
        var timeout = timeval(tv_sec: Int(timeoutSeconds), tv_usec: Int(timeoutSeconds.truncatingRemainder(dividingBy: 1) * 1e6))
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let request = Array((line + "\n").utf8)
        var sent = 0
        while sent < request.count {
            let n = request[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw failure("cannot send to \(path): \(errnoText())") }
            sent += n
        }
        var response: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while !response.contains(UInt8(ascii: "\n")) {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { break }
            guard n > 0 else {
                let reason = errno == EAGAIN ? "no answer within \(timeoutSeconds) s" : errnoText()
                throw failure("cannot read the answer from \(path): \(reason)")
            }
            response += chunk[..<n]
        }
        guard let end = response.firstIndex(of: UInt8(ascii: "\n")) else {
            throw failure("\(path) closed the connection without a complete answer")
        }
        return String(decoding: response[..<end], as: UTF8.self)
    }

    /// A connected stream socket to `path`, with errors that say what to do.
    static func connect(_ path: String) throws(ControlClientError) -> Int32 {
        let address: sockaddr_un
        do { address = try UnixSocketAddress.make(path) } catch { throw failure(error.message) }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw failure("socket(AF_UNIX): \(errnoText())") }
        let rc = UnixSocketAddress.withPointer(address) { Glibc.connect(fd, $0, $1) }
        guard rc == 0 else {
            let code = errno
            close(fd)
            switch code {
            case ENOENT:
                throw ControlClientError(kind: .notFound, description: "is tula-appliance run going? socket \(path) not found")
            case ECONNREFUSED:
                throw ControlClientError(kind: .notListening,
                                         description: "is tula-appliance run going? nothing listens on socket \(path) (stale socket file)")
            case EACCES, EPERM:
                throw ControlClientError(kind: .permissionDenied,
                                         description: "permission denied on socket \(path) (run as root or as a member of its group)")
            default:
                throw failure("cannot connect to \(path): \(String(cString: strerror(code)))")
            }
        }
        return fd
    }

    static func failure(_ message: String) -> ControlClientError { ControlClientError(kind: .failed, description: message) }
}

/// `sockaddr_un` for a filesystem path.
enum UnixSocketAddress {
    /// Longest path that fits `sun_path` with its terminating NUL, in bytes.
    static let maxPathBytes = TulaConfig.maxSocketPathBytes

    static func make(_ path: String) throws(ControlError) -> sockaddr_un {
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty, bytes.count <= maxPathBytes, !bytes.contains(0) else {
            throw ControlError("socket path \(path) is empty or longer than \(maxPathBytes) bytes")
        }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return address
    }

    /// Calls `body` with the address as a `sockaddr` pointer and its length (for bind and connect).
    static func withPointer<R>(_ address: sockaddr_un, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        var copy = address
        return withUnsafePointer(to: &copy) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }
}
