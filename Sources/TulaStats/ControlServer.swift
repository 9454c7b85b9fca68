// The control socket server: one thread polls a Unix listening socket and its clients and answers each
// request line through a ControlTarget (never touching the data path itself).

import Atomics
import Foundation
import TulaCore

/// Why the control socket could not be set up.
public struct ControlServerError: Error, Sendable, CustomStringConvertible {
    /// The reason, naming the socket path.
    public var description: String
    init(_ description: String) { self.description = description }
}

/// Serves the line protocol of `ControlRequest` on a Unix stream socket.
///
/// `init` claims the socket path (creating the parent directory, replacing a stale socket file left by
/// a dead process, refusing when a live process listens there) and creates the socket with mode 0660;
/// `start` runs the poll loop on a dedicated thread; `stop` ends it, closes every connection and removes
/// the socket file. Clients are non-blocking with per-client buffers: a slow or idle client never holds
/// up the others, idle ones are closed after `Limits.idleTimeoutSeconds`. Requests that change the config
/// are accepted only from peers whose SO_PEERCRED user id is 0.
public final class ControlServer: @unchecked Sendable {
    /// Bounds on what clients may do.
    public struct Limits: Sendable {
        /// Longest request line, newline included, bytes.
        public var maxRequestBytes: Int
        /// A client that neither sends nor receives for this long is closed, seconds.
        public var idleTimeoutSeconds: Double
        /// Connections served at once; more wait in the listen backlog.
        public var maxClients: Int

        public init(maxRequestBytes: Int = controlMaxRequestBytes, idleTimeoutSeconds: Double = 10, maxClients: Int = 1024) {
            self.maxRequestBytes = maxRequestBytes
            self.idleTimeoutSeconds = idleTimeoutSeconds
            self.maxClients = maxClients
        }
    }

    /// Pending connections the kernel queues before `accept`.
    static let listenBacklog: Int32 = 1024
    /// How long a client may keep sending after its last answer before the connection is closed, seconds.
    static let drainSeconds = 1.0

    /// The socket file's path.
    public let path: String
    let limits: Limits
    let log: (@Sendable (String) -> Void)?
    private let listener: Int32
    private let wakeRead: Int32, wakeWrite: Int32
    private let socketIdentity: (device: UInt64, inode: UInt64)
    private let requestCount = ManagedAtomic<UInt64>(0)
    private let refusedCount = ManagedAtomic<UInt64>(0)
    private let clientCount = ManagedAtomic<UInt64>(0)
    private let stopRequested = ManagedAtomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    private let lifecycle = NSLock()
    private var running = false, closed = false

    /// Claims `path`: see the type's description. `log` receives one line per change request (made or refused).
    public init(path: String, limits: Limits = Limits(), log: (@Sendable (String) -> Void)? = nil) throws(ControlServerError) {
        self.path = path
        self.limits = limits
        self.log = log
        let address: sockaddr_un
        do { address = try UnixSocketAddress.make(path) } catch { throw ControlServerError("stats_socket: \(error.message)") }
        let parent = (path as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o755])
        } catch {
            throw ControlServerError("cannot create the directory \(parent) of the stats socket: \(error.localizedDescription)")
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ControlServerError("socket(AF_UNIX): \(errnoText())") }
        do throws(ControlServerError) {
            try ControlServer.bind(fd, address, path: path)
            guard chmod(path, 0o660) == 0 else { throw ControlServerError("chmod 0660 \(path): \(errnoText())") }
            guard listen(fd, ControlServer.listenBacklog) == 0 else { throw ControlServerError("listen on \(path): \(errnoText())") }
            ControlServer.setNonBlocking(fd)
            var info = stat()
            guard stat(path, &info) == 0 else { throw ControlServerError("stat \(path): \(errnoText())") }
            socketIdentity = (UInt64(info.st_dev), UInt64(info.st_ino))
            var pipeFDs: [Int32] = [-1, -1]
            guard pipe(&pipeFDs) == 0 else { throw ControlServerError("pipe: \(errnoText())") }
            wakeRead = pipeFDs[0]; wakeWrite = pipeFDs[1]
            ControlServer.setNonBlocking(wakeRead); ControlServer.setNonBlocking(wakeWrite)
        } catch {
            close(fd)
            throw error
        }
        listener = fd
    }

    deinit { stop() }

    /// Binds `fd` to `path`, replacing a socket file nobody listens on; refuses when someone does.
    private static func bind(_ fd: Int32, _ address: sockaddr_un, path: String) throws(ControlServerError) {
        if UnixSocketAddress.withPointer(address, { Glibc.bind(fd, $0, $1) }) == 0 { return }
        guard errno == EADDRINUSE else { throw ControlServerError("cannot bind the stats socket \(path): \(errnoText())") }
        var info = stat()
        guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFSOCK else {
            throw ControlServerError("\(path) exists and is not a socket; remove it or change stats_socket")
        }
        do throws(ControlClientError) {
            close(try ControlClient.connect(path))
        } catch {
            guard error.kind == .notListening else { throw ControlServerError("cannot check \(path): \(error)") }
            // A stale socket of a process that is gone: replace it.
            guard unlink(path) == 0, UnixSocketAddress.withPointer(address, { Glibc.bind(fd, $0, $1) }) == 0 else {
                throw ControlServerError("cannot replace the stale stats socket \(path): \(errnoText())")
            }
            return
        }
        throw ControlServerError("another tula-appliance is already listening on \(path); stop it or change stats_socket")
    }

    static func setNonBlocking(_ fd: Int32) {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
    }

    /// What the server has done so far.
    public var counters: ControlServerCounters {
        ControlServerCounters(requests: requestCount.load(ordering: .relaxed), refused: refusedCount.load(ordering: .relaxed),
                              clients: clientCount.load(ordering: .relaxed))
    }

    /// Starts answering requests on a dedicated thread.
    public func start(target: any ControlTarget) {
        lifecycle.lock()
        defer { lifecycle.unlock() }
        guard !running, !closed else { return }
        running = true
        let thread = Thread { [self] in
            serve(target)
            finished.signal()
        }
        thread.name = "tula-control"
        thread.start()
    }

    /// Stops the thread, closes every connection and the listening socket, and removes the socket file
    /// (unless another process has replaced it since). Safe to call more than once.
    public func stop() {
        lifecycle.lock()
        defer { lifecycle.unlock() }
        guard !closed else { return }
        closed = true
        if running {
            stopRequested.store(true, ordering: .relaxed)
            var byte: UInt8 = 1
            _ = write(wakeWrite, &byte, 1)
            finished.wait()
        }
        close(listener); close(wakeRead); close(wakeWrite)
        var info = stat()
        if stat(path, &info) == 0, UInt64(info.st_dev) == socketIdentity.device, UInt64(info.st_ino) == socketIdentity.inode {
            unlink(path)
        }
    }

    // MARK: - The poll loop (server thread only)

    /// One connection and its buffers.
    private final class Client {
        let fd: Int32
        /// The peer's user id from SO_PEERCRED (nil if the kernel did not say).
        let uid: UInt32?
        var input: LineBuffer
        var output: [UInt8] = []
        var written = 0
        var lastActivity: Double
        /// The peer has shut down its sending side.
        var peerClosed = false
        /// Answer what is pending, then close.
        var closing = false
        /// Our side is shut down; input is read and discarded until EOF or `drainDeadline`.
        var draining = false
        var drainDeadline = 0.0
        var dead = false

        init(fd: Int32, uid: UInt32?, limit: Int, now: Double) {
            self.fd = fd; self.uid = uid; input = LineBuffer(limit: limit); lastActivity = now
        }

        var events: Int16 {
            if dead { return 0 }
            if draining { return Int16(POLLIN) }
            if !output.isEmpty { return Int16(POLLOUT) }
            return peerClosed ? 0 : Int16(POLLIN)
        }
    }

    private func serve(_ target: any ControlTarget) {
        var clients: [Int32: Client] = [:]
        var acceptPausedUntil = 0.0
        var scratch = [UInt8](repeating: 0, count: 4096)
        while !stopRequested.load(ordering: .relaxed) {
            var now = monotonicSeconds()
            let accepting = clients.count < limits.maxClients && now >= acceptPausedUntil
            let order = Array(clients.values)
            var fds = [pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            if accepting { fds.append(pollfd(fd: listener, events: Int16(POLLIN), revents: 0)) }
            let first = fds.count
            fds += order.map { pollfd(fd: $0.fd, events: $0.events, revents: 0) }
            var deadline = now + 1
            for c in order { deadline = min(deadline, c.draining ? c.drainDeadline : c.lastActivity + limits.idleTimeoutSeconds) }
            if !accepting && clients.count < limits.maxClients { deadline = min(deadline, acceptPausedUntil) }
            let timeoutMs = Int32(max(0, min(1000, (deadline - now) * 1000)).rounded(.up))
            guard poll(&fds, nfds_t(fds.count), timeoutMs) >= 0 || errno == EINTR else {
                log?("control: poll failed (\(errnoText())); the control socket stops answering")
                break
            }
            if fds[0].revents != 0 { while read(wakeRead, &scratch, scratch.count) > 0 {} }
            now = monotonicSeconds()
            for (i, c) in order.enumerated() where fds[first + i].revents != 0 {
                service(c, revents: fds[first + i].revents, target: target, scratch: &scratch, now: now)
            }
            if accepting && fds[1].revents != 0 {
                acceptPausedUntil = acceptAll(into: &clients, now: now)
            }
            for c in clients.values where !c.dead {
                if c.draining ? now >= c.drainDeadline : now - c.lastActivity >= limits.idleTimeoutSeconds {
                    if !c.draining {
                        let bye = Array((ControlResponse.error("idle for \(limits.idleTimeoutSeconds) s; closing") + "\n").utf8)
                        _ = bye.withUnsafeBytes { send(c.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                    }
                    c.dead = true
                }
            }
            for c in clients.values where c.dead {
                close(c.fd)
                clients[c.fd] = nil
            }
            clientCount.store(UInt64(clients.count), ordering: .relaxed)
        }
        for c in clients.values { close(c.fd) }
        clientCount.store(0, ordering: .relaxed)
    }

    /// Accepts every pending connection (up to `maxClients`); returns until when accepting should pause
    /// (out of file descriptors), or 0.
    private func acceptAll(into clients: inout [Int32: Client], now: Double) -> Double {
        while clients.count < limits.maxClients {
            let fd = accept(listener, nil, nil)
            guard fd >= 0 else {
                return errno == EMFILE || errno == ENFILE ? now + 0.1 : 0
            }
            ControlServer.setNonBlocking(fd)
            clients[fd] = Client(fd: fd, uid: ControlServer.peerUID(fd), limit: limits.maxRequestBytes, now: now)
        }
        return 0
    }

    /// The user id of the process at the other end (`getsockopt(SO_PEERCRED)`; struct ucred is pid, uid, gid).
    static func peerUID(_ fd: Int32) -> UInt32? {
        var credentials: (Int32, UInt32, UInt32) = (0, 0, 0)
        var length = socklen_t(MemoryLayout<(Int32, UInt32, UInt32)>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0, length >= 12 else { return nil }
        return credentials.1
    }

    /// Reads what `c` sent (or discards it while draining), then answers and writes what it can.
    private func service(_ c: Client, revents: Int16, target: any ControlTarget, scratch: inout [UInt8], now: Double) {
        if revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
            let n = scratch.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                if !c.draining {
                    c.input.append(scratch[..<n])
                    c.lastActivity = now
                }
            } else if n == 0 {
                if c.draining { c.dead = true; return }
                c.peerClosed = true
            } else if errno != EAGAIN && errno != EINTR {
                c.dead = true
                return
            }
        }
        if !c.draining { pump(c, target: target, now: now) }
    }

    /// Writes pending output, then answers the next complete line, until blocked or done.
    private func pump(_ c: Client, target: any ControlTarget, now: Double) {
        while !c.dead {
            if !c.output.isEmpty {
                guard flush(c, now: now) else { return }
            }
            if c.closing {
                if c.peerClosed {
                    c.dead = true
                } else {
                    shutdown(c.fd, Int32(SHUT_WR))
                    c.draining = true
                    c.drainDeadline = now + min(ControlServer.drainSeconds, limits.idleTimeoutSeconds)
                }
                return
            }
            switch c.input.next() {
            case .line(let line):
                if !line.allSatisfy(\.isWhitespace) { answer(c, line, target: target) }
            case .oversized:
                requestCount.wrappingIncrement(ordering: .relaxed)
                refuse(c, "request line longer than \(limits.maxRequestBytes) bytes; closing")
                c.closing = true
            case .needMore:
                guard c.peerClosed else { return }
                if let last = c.input.finish(), !last.allSatisfy(\.isWhitespace) { answer(c, last, target: target) }
                c.closing = true
            }
        }
    }

    /// Sends as much of `c.output` as the socket takes; true when all of it is sent.
    private func flush(_ c: Client, now: Double) -> Bool {
        while c.written < c.output.count {
            let n = c.output[c.written...].withUnsafeBytes { send(c.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                c.written += n
                c.lastActivity = now
            } else {
                if errno != EAGAIN && errno != EINTR { c.dead = true }
                return false
            }
        }
        c.output = []
        c.written = 0
        return true
    }

    /// Parses, authorizes and carries out one request; queues the response line.
    private func answer(_ c: Client, _ line: String, target: any ControlTarget) {
        requestCount.wrappingIncrement(ordering: .relaxed)
        let request: ControlRequest
        do {
            request = try ControlRequest.parse(line)
        } catch {
            refuse(c, error.message)
            return
        }
        let peer = c.uid.map { "uid \($0)" } ?? "unknown peer"
        if let refusal = request.refusal(peerUID: c.uid) {
            log?("control: refused \(request.command) from \(peer): not root")
            refuse(c, refusal)
            return
        }
        do {
            switch request {
            case .stats:
                queue(c, ControlResponse.ok(stats: target.statsSummary(), server: counters))
            case .edit(let change):
                try target.edit(change)
                let done = ControlServer.describe(change)
                log?("control: \(done) (\(peer))")
                queue(c, ControlResponse.ok(message: done))
            case .reload:
                try target.reload()
                log?("control: reloaded the config file (\(peer))")
                queue(c, ControlResponse.ok(message: "reloaded the config file"))
            }
        } catch {
            log?("control: \(request.command) refused: \(error.message); the running config stays")
            refuse(c, error.message)
        }
    }

    private func refuse(_ c: Client, _ message: String) {
        refusedCount.wrappingIncrement(ordering: .relaxed)
        queue(c, ControlResponse.error(message))
    }

    private func queue(_ c: Client, _ response: String) {
        c.output = Array((response + "\n").utf8)
        c.written = 0
    }

    /// A sentence saying what a successful change did.
    static func describe(_ change: ConfigEdit) -> String {
        switch change {
        case .addBackend(let vip, let backend):
            "added backend \(backend.address) to VIP \(vip) with weight \(backend.weight)"
        case .removeBackend(let vip, let address):
            "removed backend \(address) from VIP \(vip)"
        case .setWeight(let vip, let address, let weight):
            "set the weight of backend \(address) of VIP \(vip) to \(weight)" + (weight == 0 ? " (draining: no new flows)" : "")
        }
    }
}

/// Seconds on the monotonic clock.
func monotonicSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}
