// The HTTP endpoint Prometheus scrapes (`metrics_listen`): GET /metrics and GET /healthz on SwiftNIO, bounded.

import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import TulaCore

/// What the metrics server asks of the running appliance.
public protocol MetricsSource: AnyObject, Sendable {
    /// The Prometheus exposition, the same text `tula-appliance stats --prometheus` prints.
    func metricsText() -> String
    /// nil when every port is up and the workers poll, else why not (for a 503).
    func notServingReason() -> String?
}

/// A small HTTP/1.1 server on one event-loop thread, off the data path. Bounds: `maxConnections` at once (a new
/// connection over that closes the longest-idle one that has no request under way, so a client holding idle
/// connections cannot lock a scraper out; counted), each request complete within `requestTimeoutSeconds` of the
/// connection's start or of the previous answer (a slowloris client, or an idle keep-alive one, is closed then),
/// `maxHeaderBytes` of head and no body (a request with one is answered 413 and closed without reading it).
/// /metrics is rendered at most every `cacheSeconds` however many clients ask. A client that sends its next
/// request before it has taken the previous answer (pipelining without reading) is closed, so no connection
/// holds more than one answer beyond what the kernel's socket buffer takes.
public final class MetricsServer: @unchecked Sendable {
    public struct Limits: Sendable {
        public var maxConnections = 64
        public var maxHeaderBytes = 8192
        public var requestTimeoutSeconds = 5.0
        public var cacheSeconds = 0.25
        public init() {}
    }

    public let address: String
    private let group: MultiThreadedEventLoopGroup
    private let channel: Channel
    let state: SharedState

    /// Binds `listen` (`HOST:PORT`, `[V6]:PORT`) and starts serving `source`; throws with the reason.
    public init(listen: String, source: MetricsSource, limits: Limits = Limits(),
                log: (@Sendable (LogLevel, String) -> Void)? = nil) throws {
        guard let (host, port) = TulaConfig.splitListen(listen) else {
            throw ControlServerError("metrics_listen: \"\(listen)\" is not HOST:PORT")
        }
        let state = SharedState(source: source, limits: limits, log: log)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.maxMessagesPerRead, value: 4)
            .childChannelInitializer { channel in
                guard state.admit(channel) else {
                    return channel.close()
                }
                channel.closeFuture.whenComplete { _ in state.release(channel) }
                return channel.pipeline.configureHTTPServerPipeline(withPipeliningAssistance: true,
                                                                    withErrorHandling: true).flatMap {
                    channel.pipeline.addHandler(HeadSizeGuard(limit: limits.maxHeaderBytes), position: .first)
                }.flatMap {
                    channel.pipeline.addHandler(MetricsHandler(state: state))
                }
            }
        do {
            channel = try bootstrap.bind(host: host, port: port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw ControlServerError("metrics_listen \(listen): cannot listen: \(error)")
        }
        self.group = group
        self.state = state
        address = listen
    }

    /// Connections closed on accept because `maxConnections` were open and none was idle, and idle ones closed
    /// to make room.
    public var refusedConnections: UInt64 { state.counts().refused }
    public var evictedConnections: UInt64 { state.counts().evicted }

    public func stop() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }

    /// State every connection shares (guarded by a lock: the event loop is one thread, but stop is not).
    final class SharedState: @unchecked Sendable {
        let source: MetricsSource
        let limits: Limits
        let log: (@Sendable (LogLevel, String) -> Void)?
        private let lock = NSLock()
        /// Open connections: when each last finished a request (or opened), and whether one is under way.
        private var open: [ObjectIdentifier: (channel: Channel, idleSince: Double, busy: Bool)] = [:]
        private var refused: UInt64 = 0, evicted: UInt64 = 0, capLogged = false
        private var cached = "", cachedAt = -Double.infinity

        init(source: MetricsSource, limits: Limits, log: (@Sendable (LogLevel, String) -> Void)?) {
            self.source = source; self.limits = limits; self.log = log
        }

        /// Takes `channel` in; at the cap, closes the longest-idle connection with no request under way to make
        /// room, or refuses when every one is busy.
        func admit(_ channel: Channel) -> Bool {
            var victim: Channel?
            var logCap = false
            let admitted: Bool = lock.withLock {
                if open.count >= limits.maxConnections {
                    logCap = !capLogged
                    capLogged = true
                    guard let oldest = open.filter({ !$0.value.busy }).min(by: { $0.value.idleSince < $1.value.idleSince }) else {
                        refused += 1
                        return false
                    }
                    open[oldest.key] = nil
                    victim = oldest.value.channel
                    evicted += 1
                } else if open.count < limits.maxConnections / 2 {
                    capLogged = false
                }
                open[ObjectIdentifier(channel)] = (channel, monotonicSeconds(), false)
                return true
            }
            if logCap { log?(.warning, "metrics: \(limits.maxConnections) connections open; closing the idlest for each new one") }
            victim?.close(promise: nil)
            return admitted
        }

        func release(_ channel: Channel) { lock.withLock { open[ObjectIdentifier(channel)] = nil } }

        /// Marks a request under way on `channel` (not to be evicted), or finished (idle from now).
        func busy(_ channel: Channel, _ busy: Bool) {
            lock.withLock {
                guard var entry = open[ObjectIdentifier(channel)] else { return }
                entry.busy = busy
                if !busy { entry.idleSince = monotonicSeconds() }
                open[ObjectIdentifier(channel)] = entry
            }
        }

        func counts() -> (open: Int, refused: UInt64, evicted: UInt64) { lock.withLock { (open.count, refused, evicted) } }

        func metrics(now: Double) -> String {
            lock.lock()
            if now - cachedAt < limits.cacheSeconds { defer { lock.unlock() }; return cached }
            lock.unlock()
            let text = source.metricsText()
            lock.withLock { cached = text; cachedAt = now }
            return text
        }
    }
}

/// Closes a connection whose request head grows past the limit before NIO's parser buffers it, and answers 431.
final class HeadSizeGuard: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    private let limit: Int
    /// Bytes since the end of the last request head (a blank line).
    private var pending = 0
    /// The last four bytes seen, the newest in the low byte.
    private var tail: UInt32 = 0

    init(limit: Int) { self.limit = limit }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        for byte in buffer.readableBytesView {
            pending += 1
            tail = tail << 8 | UInt32(byte)
            if tail == 0x0D0A_0D0A || tail & 0xFFFF == 0x0A0A { pending = 0 }   // CRLF CRLF, or LF LF
        }
        guard pending <= limit else {
            let body = "request head larger than \(limit) bytes\n"
            var out = context.channel.allocator.buffer(capacity: 128 + body.utf8.count)
            out.writeString("HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\n"
                            + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)")
            context.writeAndFlush(NIOAny(out)).whenComplete { _ in context.close(promise: nil) }
            return
        }
        context.fireChannelRead(data)
    }
}

/// Answers GET /metrics and GET /healthz; 404 for other paths, 405 for other methods, 413 for a body.
final class MetricsHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let state: MetricsServer.SharedState
    private var head: HTTPRequestHead?
    private var rejected = false
    private var deadline: Scheduled<Void>?
    /// Answers written but not yet taken by the socket.
    private var unsent = 0

    init(state: MetricsServer.SharedState) { self.state = state }

    func channelActive(context: ChannelHandlerContext) {
        armDeadline(context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        context.fireChannelInactive()
    }

    /// Closes the connection unless the next request is complete within `requestTimeoutSeconds`.
    private func armDeadline(_ context: ChannelHandlerContext) {
        deadline?.cancel()
        let channel = context.channel
        deadline = context.eventLoop.scheduleTask(in: .milliseconds(Int64(state.limits.requestTimeoutSeconds * 1000))) {
            channel.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let request):
            // The next request while the last answer still waits to be sent: a client that does not read.
            guard unsent == 0 else {
                context.close(promise: nil)
                return
            }
            head = request
            rejected = false
            state.busy(context.channel, true)
        case .body:
            // A scrape has no body: answer 413 at once and close without reading the rest.
            if !rejected {
                rejected = true
                respond(context, .payloadTooLarge, "a request body is not accepted\n", close: true)
            }
        case .end:
            guard let request = head, !rejected else { return }
            head = nil
            let path = request.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? request.uri
            let keepAlive = request.isKeepAlive
            switch (request.method, path) {
            case (.GET, "/metrics"), (.HEAD, "/metrics"):
                respond(context, .ok, state.metrics(now: monotonicSeconds()),
                        contentType: "text/plain; version=0.0.4; charset=utf-8", close: !keepAlive, headOnly: request.method == .HEAD)
            case (.GET, "/healthz"), (.HEAD, "/healthz"):
                if let reason = state.source.notServingReason() {
                    respond(context, .serviceUnavailable, "not serving: \(reason)\n", close: !keepAlive, headOnly: request.method == .HEAD)
                } else {
                    respond(context, .ok, "ok\n", close: !keepAlive, headOnly: request.method == .HEAD)
                }
            case (_, "/metrics"), (_, "/healthz"):
                respond(context, .methodNotAllowed, "only GET\n", close: !keepAlive, extra: [("Allow", "GET, HEAD")])
            default:
                respond(context, .notFound, "not found: try /metrics or /healthz\n", close: !keepAlive)
            }
            if keepAlive { armDeadline(context) }
            state.busy(context.channel, false)
        }
    }

    private func respond(_ context: ChannelHandlerContext, _ status: HTTPResponseStatus, _ body: String,
                         contentType: String = "text/plain; charset=utf-8", close: Bool, headOnly: Bool = false,
                         extra: [(String, String)] = []) {
        var headers = HTTPHeaders([("Content-Type", contentType), ("Content-Length", "\(body.utf8.count)")] + extra)
        if close { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        if !headOnly {
            var buffer = context.channel.allocator.buffer(capacity: body.utf8.count)
            buffer.writeString(body)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        unsent += 1
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        done.whenComplete { _ in
            let (handler, context) = loopBound.value
            handler.unsent -= 1
            if close { context.close(promise: nil) }
        }
    }
}
