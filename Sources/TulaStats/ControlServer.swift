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
///
/// Fairness and bounds: each round of the loop answers at most one request per client, and a client whose
/// answer is still unsent gets no further answers (nor is more of its input read) until it reads, so a client
/// that pipelines requests and never reads costs one answer and is closed at its idle timeout. Non-root
/// clients are capped (`Limits.maxClients`, at most a quarter of RLIMIT_NOFILE) and the newest one over the
/// cap is turned away; root always gets in, up to half of RLIMIT_NOFILE, closing the longest-idle non-root
/// client when it must. Both are counted (`rejected_clients`, `evicted_clients`) and logged once per episode.
public final class ControlServer: @unchecked Sendable {
    /// Bounds on what clients may do.
    public struct Limits: Sendable {
        /// Longest request line, newline included, bytes.
        public var maxRequestBytes: Int
        /// A client that neither sends nor receives for this long is closed, seconds.
        public var idleTimeoutSeconds: Double
        /// Non-root connections served at once (lowered to a quarter of RLIMIT_NOFILE); more are turned away.
        public var maxClients: Int
        /// Connections of any kind served at once (root may use what non-root clients may not); nil: half of
        /// RLIMIT_NOFILE, and never more than that.
        public var maxTotalClients: Int?

        public init(maxRequestBytes: Int = controlMaxRequestBytes, idleTimeoutSeconds: Double = 10, maxClients: Int = 256,
                    maxTotalClients: Int? = nil) {
            self.maxRequestBytes = maxRequestBytes
            self.idleTimeoutSeconds = idleTimeoutSeconds
            self.maxClients = maxClients
            self.maxTotalClients = maxTotalClients
        }
    }

    /// Pending connections the kernel queues before `accept`.
    static let listenBacklog: Int32 = 1024
    /// How long a client may keep sending after its last answer before the connection is closed, seconds.
    static let drainSeconds = 1.0

    /// The socket file's path.
    public let path: String
    let limits: Limits
    let log: (@Sendable (LogLevel, String) -> Void)?
    private let listener: Int32
    private let wakeRead: Int32, wakeWrite: Int32
    private let socketIdentity: (device: UInt64, inode: UInt64)
    private let requestCount = ManagedAtomic<UInt64>(0)
    private let refusedCount = ManagedAtomic<UInt64>(0)
    private let clientCount = ManagedAtomic<UInt64>(0)
    private let rejectedCount = ManagedAtomic<UInt64>(0)
    private let evictedCount = ManagedAtomic<UInt64>(0)
    /// Non-root clients served at once: `Limits.maxClients`, at most a quarter of the fd limit.
    let nonRootCap: Int
    /// Clients of any kind served at once (root may use what non-root clients may not): half the fd limit.
    let totalCap: Int
    private let stopRequested = ManagedAtomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    private let lifecycle = NSLock()
    private var running = false, closed = false
    /// Whether the current episode of turned-away clients, evictions or fd exhaustion was logged (server thread only).
    private var capLogged = false, evictionLogged = false, fdLogged = false

    /// Claims `path`: see the type's description. `log` receives one line per change request (made or refused).
    public init(path: String, limits: Limits = Limits(), log: (@Sendable (LogLevel, String) -> Void)? = nil) throws(ControlServerError) {
        self.path = path
        self.limits = limits
        self.log = log
        var files = rlimit()
        let fdLimit = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &files) == 0 && files.rlim_cur != rlim_t.max
            ? Int(clamping: files.rlim_cur) : 1024
        nonRootCap = max(1, min(limits.maxClients, fdLimit / 4))
        totalCap = max(nonRootCap + 1, min(limits.maxTotalClients ?? .max, fdLimit / 2))
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
                              clients: clientCount.load(ordering: .relaxed), rejectedClients: rejectedCount.load(ordering: .relaxed),
                              evictedClients: evictedCount.load(ordering: .relaxed))
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

        /// A complete request line waits in `input`, to be answered in a later round.
        var pendingLine = false

        /// Reads only while nothing is pending: input stays within one request line plus one read.
        var events: Int16 {
            if dead { return 0 }
            if draining { return Int16(POLLIN) }
            if !output.isEmpty { return Int16(POLLOUT) }
            return peerClosed || pendingLine ? 0 : Int16(POLLIN)
        }

        var isRoot: Bool { uid == 0 }
    }

    private func serve(_ target: any ControlTarget) {
        /// The connected clients, in the order they are given their turn; rotated every round so no one always
        /// goes first.
        var turn: [Client] = []
        var acceptPausedUntil = 0.0
        var scratch = [UInt8](repeating: 0, count: 4096)
        var stats = StatsCache()
        while !stopRequested.load(ordering: .relaxed) {
            var now = monotonicSeconds()
            let accepting = now >= acceptPausedUntil
            let order = turn
            var fds = [pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            if accepting { fds.append(pollfd(fd: listener, events: Int16(POLLIN), revents: 0)) }
            let first = fds.count
            fds += order.map { pollfd(fd: $0.fd, events: $0.events, revents: 0) }
            var deadline = now + 1
            for c in order { deadline = min(deadline, c.draining ? c.drainDeadline : c.lastActivity + limits.idleTimeoutSeconds) }
            if !accepting { deadline = min(deadline, acceptPausedUntil) }
            // A client with a request waiting for its turn: poll without sleeping.
            if order.contains(where: { $0.pendingLine && $0.output.isEmpty && !$0.dead }) { deadline = now }
            let timeoutMs = Int32(max(0, min(1000, (deadline - now) * 1000)).rounded(.up))
            guard poll(&fds, nfds_t(fds.count), timeoutMs) >= 0 || errno == EINTR else {
                log?(.error, "control: poll failed (\(errnoText())); the control socket stops answering")
                break
            }
            if fds[0].revents != 0 { while read(wakeRead, &scratch, scratch.count) > 0 {} }
            now = monotonicSeconds()
            stats.round += 1
            for (i, c) in order.enumerated() {
                service(c, revents: fds[first + i].revents, target: target, scratch: &scratch, stats: &stats, now: now)
            }
            if accepting && fds[1].revents != 0 {
                acceptPausedUntil = acceptAll(into: &turn, now: now)
            }
            for c in turn where !c.dead {
                if c.draining ? now >= c.drainDeadline : now - c.lastActivity >= limits.idleTimeoutSeconds {
                    if !c.draining { farewell(c, "idle for \(limits.idleTimeoutSeconds) s; closing") }
                    c.dead = true
                }
            }
            for c in turn where c.dead { close(c.fd) }
            turn.removeAll { $0.dead }
            if turn.count > 1 { turn.append(turn.removeFirst()) }
            clientCount.store(UInt64(turn.count), ordering: .relaxed)
        }
        for c in turn { close(c.fd) }
        clientCount.store(0, ordering: .relaxed)
    }

    /// The stats answer, computed at most once per round however many clients ask for it in that round.
    private struct StatsCache {
        var round: UInt64 = 0
        var madeInRound: UInt64 = .max
        var line: [UInt8] = []
    }

    /// Sends one last error line to a client about to be closed (best effort: never blocks).
    private func farewell(_ c: Client, _ message: String) {
        let bye = ControlServer.line(ControlResponse.error(message))
        _ = bye.withUnsafeBytes { send(c.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Accepts every pending connection, applying the caps (see the type's description); returns until when
    /// accepting should pause (out of file descriptors), or 0.
    private func acceptAll(into clients: inout [Client], now: Double) -> Double {
        var rejectedNow = 0, evictedNow = 0
        defer {
            if rejectedNow > 0 {
                rejectedCount.wrappingIncrement(by: UInt64(rejectedNow), ordering: .relaxed)
                if !capLogged { log?(.warning, "control: turning away non-root clients: \(nonRootCap) connected, the cap") }
                capLogged = true
            } else if clients.filter({ !$0.isRoot }).count < nonRootCap / 2 {
                capLogged = false
            }
            if evictedNow > 0 {
                evictedCount.wrappingIncrement(by: UInt64(evictedNow), ordering: .relaxed)
                if !evictionLogged { log?(.warning, "control: closing idle non-root clients to let root in (\(totalCap) clients at most)") }
                evictionLogged = true
            }
        }
        while true {
            let fd = accept(listener, nil, nil)
            guard fd >= 0 else {
                if errno == EMFILE || errno == ENFILE {
                    if !fdLogged { log?(.warning, "control: out of file descriptors accepting a client (\(errnoText())); pausing") }
                    fdLogged = true
                    return now + 0.1
                }
                fdLogged = false
                return 0
            }
            ControlServer.setNonBlocking(fd)
            let client = Client(fd: fd, uid: ControlServer.peerUID(fd), limit: limits.maxRequestBytes, now: now)
            let live = clients.filter { !$0.dead }
            let nonRoot = live.filter { !$0.isRoot }
            var admit = live.count < totalCap && (client.isRoot || nonRoot.count < nonRootCap)
            if !admit && client.isRoot, let victim = nonRoot.min(by: { $0.lastActivity < $1.lastActivity }) {
                farewell(victim, "closing to make room for a root client")
                victim.dead = true
                evictedNow += 1
                admit = true
            }
            guard admit else {
                farewell(client, "too many control clients (\(client.isRoot ? totalCap : nonRootCap)); try again later")
                close(fd)
                rejectedNow += 1
                continue
            }
            clients.append(client)
        }
    }

    /// The user id of the process at the other end (`getsockopt(SO_PEERCRED)`; struct ucred is pid, uid, gid).
    static func peerUID(_ fd: Int32) -> UInt32? {
        var credentials: (Int32, UInt32, UInt32) = (0, 0, 0)
        var length = socklen_t(MemoryLayout<(Int32, UInt32, UInt32)>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0, length >= 12 else { return nil }
        return credentials.1
    }

    /// Reads what `c` sent (or discards it while draining), writes what it can, and answers at most one request.
    private func service(_ c: Client, revents: Int16, target: any ControlTarget, scratch: inout [UInt8],
                         stats: inout StatsCache, now: Double) {
        if c.dead { return }
        if revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 && (c.draining || !c.pendingLine) {
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
        if !c.draining { pump(c, target: target, stats: &stats, now: now) }
    }

    /// Writes pending output; once it is all sent, answers the next complete line (one per round) or closes.
    private func pump(_ c: Client, target: any ControlTarget, stats: inout StatsCache, now: Double) {
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
            if !line.allSatisfy(\.isWhitespace) { answer(c, line, target: target, stats: &stats) }
        case .oversized:
            requestCount.wrappingIncrement(ordering: .relaxed)
            refuse(c, "request line longer than \(limits.maxRequestBytes) bytes; closing")
            c.closing = true
        case .needMore:
            if c.peerClosed {
                if let last = c.input.finish(), !last.allSatisfy(\.isWhitespace) { answer(c, last, target: target, stats: &stats) }
                c.closing = true
            }
        }
        c.pendingLine = c.input.hasLine || (c.closing && !c.dead)
        if !c.output.isEmpty { _ = flush(c, now: now) }
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
    private func answer(_ c: Client, _ line: String, target: any ControlTarget, stats: inout StatsCache) {
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
            log?(.warning, "control: refused \(request.command) from \(peer): not root")
            refuse(c, refusal)
            return
        }
        do {
            switch request {
            case .stats:
                if stats.madeInRound != stats.round {
                    stats.line = ControlServer.line(ControlResponse.ok(stats: target.statsSummary(), server: counters))
                    stats.madeInRound = stats.round
                }
                queue(c, bytes: stats.line)
            case .edit(let change):
                try target.edit(change)
                let done = ControlServer.describe(change)
                log?(.info, "control: \(done) (\(peer))")
                queue(c, ControlResponse.ok(message: done))
            case .reload:
                try target.reload()
                log?(.info, "control: reloaded the config file (\(peer))")
                queue(c, ControlResponse.ok(message: "reloaded the config file"))
            case .save(let path):
                let done = try target.save(to: path)
                log?(.info, "control: \(done) (\(peer))")
                queue(c, ControlResponse.ok(message: done))
            }
        } catch {
            log?(.warning, "control: \(request.command) refused: \(error.message); the running config stays")
            refuse(c, error.message)
        }
    }

    private func refuse(_ c: Client, _ message: String) {
        refusedCount.wrappingIncrement(ordering: .relaxed)
        queue(c, ControlResponse.error(message))
    }

    private func queue(_ c: Client, _ response: String) { queue(c, bytes: ControlServer.line(response)) }

    /// Queues a response line already encoded; clients given the same array share its storage.
    private func queue(_ c: Client, bytes: [UInt8]) {
        c.output = bytes
        c.written = 0
    }

    /// `response` and its newline as the bytes sent.
    static func line(_ response: String) -> [UInt8] { Array((response + "\n").utf8) }

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
