// Backend health probes through the kernel's network stack: a TCP connect, or an HTTP/1.0 GET.

import Foundation

public enum HealthProber {
    /// Probes `address` as `check` says. A probe that could not be made for want of the appliance's own
    /// resources (file descriptors, memory, local ports) says nothing about the backend: `.unknown`.
    public static func probe(_ address: IPAddress, _ check: HealthCheckConfig) -> ProbeOutcome {
        let fd = socket(address.family == .v4 ? AF_INET : AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return ProbeOutcome(localErrno: errno, "socket") }
        return attempt(fd, address, check).map { error in
            error.code.map { ProbeOutcome(localErrno: $0, error.text) } ?? .failed(error.text)
        } ?? .passed
    }

    /// Why a probe on `fd` failed (with errno when a call failed), or nil when it passed.
    private static func attempt(_ fd: Int32, _ address: IPAddress, _ check: HealthCheckConfig) -> (text: String, code: Int32?)? {
        defer { close(fd) }
        var timeout = timeval(tv_sec: Int(check.timeoutSeconds), tv_usec: Int((check.timeoutSeconds.truncatingRemainder(dividingBy: 1)) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var connected: Int32
        switch address {
        case .v4(let a):
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = check.port.bigEndian
            sin.sin_addr.s_addr = a.value.bigEndian
            connected = withUnsafePointer(to: &sin) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        case .v6(let a):
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = check.port.bigEndian
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { a.write(to: $0.baseAddress!) }
            connected = withUnsafePointer(to: &sin6) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        }
        let endpoint = address.endpoint(String(check.port))
        // A signal (the appliance's own child processes end with SIGCHLD) interrupts a blocking connect, which then
        // goes on in the background: wait for it as a non-blocking connect would be waited for.
        if connected != 0 && errno == EINTR { connected = finishInterruptedConnect(fd, timeoutSeconds: check.timeoutSeconds) }
        guard connected == 0 else { let e = errno; return ("connect \(endpoint): \(String(cString: strerror(e)))", e) }
        guard check.kind == .http else { return nil }
        let request = "GET \(check.path) HTTP/1.0\r\nHost: \(address.family == .v4 ? address.description : "[\(address)]")\r\nUser-Agent: tula-health\r\nConnection: close\r\n\r\n"
        guard request.utf8.withContiguousStorageIfAvailable({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.utf8.count else {
            let e = errno
            return ("send: \(String(cString: strerror(e)))", e)
        }
        var buffer = [UInt8](repeating: 0, count: 512)
        var received = 0
        while received < 12 {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + received, $0.count - received, 0) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return (received == 0 ? "no HTTP response" : "truncated HTTP response", nil) }
            received += n
        }
        let line = String(decoding: buffer[0..<received], as: UTF8.self).split(separator: "\r\n").first ?? ""
        let parts = line.split(separator: " ")
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/"), let status = Int(parts[1]) else {
            return ("not an HTTP response: \(line.prefix(40))", nil)
        }
        return status == check.expectStatus ? nil : ("HTTP status \(status), expected \(check.expectStatus)", nil)
    }

    /// Waits (`poll`, restarted after signals) for a connect that a signal interrupted; 0 when it connected,
    /// else -1 with errno set to why (ETIMEDOUT when the timeout passed).
    private static func finishInterruptedConnect(_ fd: Int32, timeoutSeconds: Double) -> Int32 {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while true {
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { errno = ETIMEDOUT; return -1 }
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            let n = poll(&p, 1, Int32(max(1, left * 1000)))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { errno = ETIMEDOUT; return -1 }
            var error: Int32 = 0
            var size = socklen_t(MemoryLayout<Int32>.size)
            guard getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size) == 0 else { return -1 }
            if error == 0 { return 0 }
            errno = error
            return -1
        }
    }
}
