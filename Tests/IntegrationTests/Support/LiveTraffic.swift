// Live traffic for tests (root): a veth pair, and a thread that writes frames into one end through an
// AF_PACKET socket at a bounded rate while the appliance reads the other end.

import Foundation
import Testing

/// A veth pair with IPv6 off (so the kernel sends nothing of its own into it); `remove` deletes it.
struct VethPair {
    /// The end the appliance reads (`rx_iface_in=`).
    let inside: String
    /// The end the test writes into.
    let outside: String

    init() throws {
        let tag = String(UInt32.random(in: 0..<0xFFFFF), radix: 16)
        inside = "tlc\(tag)a"
        outside = "tlc\(tag)b"
        _ = try? VethPair.ip(["link", "del", inside])
        try VethPair.ip(["link", "add", inside, "type", "veth", "peer", "name", outside])
        for name in [inside, outside] {
            try "1\n".write(toFile: "/proc/sys/net/ipv6/conf/\(name)/disable_ipv6", atomically: false, encoding: .utf8)
            try VethPair.ip(["link", "set", name, "up"])
        }
    }

    func remove() { _ = try? VethPair.ip(["link", "del", inside]) }

    @discardableResult
    static func ip(_ args: [String]) throws -> String {
        let result = try BackgroundProcess.run("/usr/bin/env", [systemPath, "ip"] + args, timeout: 10)
        guard result.status == 0 else { throw ControlSocket.Failure(description: "ip \(args.joined(separator: " ")): \(result.stderr)") }
        return result.stdout
    }
}

/// Sends the current frame set round-robin into an interface at `packetsPerSecond` (token bucket, bursts of
/// at most 32), from its own thread, until `stop`.
final class TrafficSender: @unchecked Sendable {
    private let fd: Int32
    private let lock = NSLock()
    private var frames: [[UInt8]] = []
    private var nextFrame = 0
    private var sentFrames = 0
    private var stopping = false
    private var running = false
    private let finished = DispatchSemaphore(value: 0)

    init(interface: String) throws {
        fd = socket(AF_PACKET, Int32(SOCK_RAW.rawValue), 0) // protocol 0: send only, receive nothing
        guard fd >= 0 else { throw ControlSocket.Failure(description: "socket(AF_PACKET): \(String(cString: strerror(errno)))") }
        // struct sockaddr_ll (not imported into Swift): family, protocol (BE), ifindex, hatype, pkttype, halen, addr[8].
        var address = [UInt8](repeating: 0, count: 20)
        let family = UInt16(AF_PACKET), index = Int32(if_nametoindex(interface))
        withUnsafeBytes(of: family.littleEndian) { address.replaceSubrange(0..<2, with: $0) }
        withUnsafeBytes(of: index.littleEndian) { address.replaceSubrange(4..<8, with: $0) }
        let rc = address.withUnsafeBytes { Glibc.bind(fd, $0.baseAddress?.assumingMemoryBound(to: sockaddr.self), 20) }
        guard index > 0, rc == 0 else {
            close(fd)
            throw ControlSocket.Failure(description: "bind AF_PACKET to \(interface): \(String(cString: strerror(errno)))")
        }
    }

    deinit { _ = stop(); close(fd) }

    /// Replaces the frames sent from now on.
    func send(_ frames: [[UInt8]]) { lock.withLock { self.frames = frames } }

    /// Frames handed to the kernel so far.
    var sent: Int { lock.withLock { sentFrames } }

    func start(packetsPerSecond rate: Double) {
        lock.withLock { running = true }
        let thread = Thread { [self] in
            var tokens = 0.0, last = Date()
            while !lock.withLock({ stopping }) {
                let now = Date()
                tokens = min(32, tokens + now.timeIntervalSince(last) * rate)
                last = now
                while tokens >= 1 {
                    tokens -= 1
                    let frame: [UInt8]? = lock.withLock {
                        guard !frames.isEmpty else { return nil }
                        defer { nextFrame &+= 1 }
                        return frames[nextFrame % frames.count]
                    }
                    guard let frame else { break }
                    if frame.withUnsafeBytes({ Glibc.send(fd, $0.baseAddress, $0.count, 0) }) == frame.count {
                        lock.withLock { sentFrames += 1 }
                    }
                }
                usleep(500)
            }
            finished.signal()
        }
        thread.start()
    }

    /// Stops sending; returns the frames sent.
    func stop() -> Int {
        let wasRunning = lock.withLock {
            defer { stopping = true; running = false }
            return running
        }
        if wasRunning { finished.wait() }
        return sent
    }
}

/// A PATH assignment for `/usr/bin/env` that finds the system tools (ip, runuser) whatever the caller's PATH.
let systemPath = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"
