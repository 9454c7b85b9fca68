// IPv6 addresses and the two-family IPAddress: parsing, RFC 5952 text, host-address rules, network-order bytes.
import Foundation

/// An IPv6 address as two host-order 64-bit halves (`2001:db8::1` is hi 0x2001_0db8_0000_0000, lo 1).
public struct IPv6Address: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var hi: UInt64
    public var lo: UInt64

    public init(hi: UInt64, lo: UInt64) { self.hi = hi; self.lo = lo }

    /// Parses IPv6 text as `inet_pton(AF_INET6)` does (`::` shorthand, embedded dotted quad); nil otherwise.
    /// A zone (`%eth0`) is refused: a config address names one host everywhere.
    public init?(_ text: String) {
        guard !text.isEmpty, text.utf8.count <= 45, text.contains(":") else { return nil }
        var raw = in6_addr()
        guard inet_pton(AF_INET6, text, &raw) == 1 else { return nil }
        self = withUnsafeBytes(of: &raw) { IPv6Address(networkBytes: $0.baseAddress!) }
    }

    /// Reads 16 network-order bytes.
    public init(networkBytes p: UnsafeRawPointer) {
        hi = UInt64(bigEndian: p.loadUnaligned(as: UInt64.self))
        lo = UInt64(bigEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
    }

    /// Writes the 16 network-order bytes at `p`.
    public func write(to p: UnsafeMutableRawPointer) {
        p.storeBytes(of: hi.bigEndian, as: UInt64.self)
        p.storeBytes(of: lo.bigEndian, toByteOffset: 8, as: UInt64.self)
    }

    /// The 16 network-order bytes.
    public var bytes: [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: hi >> (56 - 8 * $0)) } + (0..<8).map { UInt8(truncatingIfNeeded: lo >> (56 - 8 * $0)) }
    }

    /// The eight 16-bit groups.
    public var groups: [UInt16] {
        (0..<4).map { UInt16(truncatingIfNeeded: hi >> (48 - 16 * $0)) } + (0..<4).map { UInt16(truncatingIfNeeded: lo >> (48 - 16 * $0)) }
    }

    /// RFC 5952 text: lowercase, no leading zeros, the longest run (of at least two) zero groups as `::`
    /// (the first one on a tie), and IPv4-mapped addresses with a dotted quad (`::ffff:192.0.2.1`).
    public var description: String {
        let g = groups
        if hi == 0 && lo >> 32 == 0xFFFF {
            return "::ffff:" + IPv4Address(UInt32(truncatingIfNeeded: lo)).description
        }
        var bestStart = -1, bestLength = 0, i = 0
        while i < 8 {
            guard g[i] == 0 else { i += 1; continue }
            var j = i
            while j < 8 && g[j] == 0 { j += 1 }
            if j - i > bestLength { bestStart = i; bestLength = j - i }
            i = j
        }
        func hex(_ range: Range<Int>) -> String { range.map { String(g[$0], radix: 16) }.joined(separator: ":") }
        guard bestLength >= 2 else { return hex(0..<8) }
        return hex(0..<bestStart) + "::" + hex((bestStart + bestLength)..<8)
    }

    public static func < (l: IPv6Address, r: IPv6Address) -> Bool { (l.hi, l.lo) < (r.hi, r.lo) }

    public var isMulticast: Bool { hi >> 56 == 0xFF }
    public var isUnspecified: Bool { hi == 0 && lo == 0 }

    /// The solicited-node multicast address of this address (ff02::1:ffXX:XXXX, RFC 4291 2.7.1).
    public var solicitedNode: IPv6Address {
        IPv6Address(hi: 0xFF02_0000_0000_0000, lo: 0x0000_0001_FF00_0000 | (lo & 0xFF_FFFF))
    }

    /// The Ethernet multicast MAC of a multicast IPv6 address (33:33 + its last 32 bits, RFC 2464 7).
    public var multicastMAC: MACAddress {
        MACAddress(0x33, 0x33, UInt8(truncatingIfNeeded: lo >> 24), UInt8(truncatingIfNeeded: lo >> 16),
                   UInt8(truncatingIfNeeded: lo >> 8), UInt8(truncatingIfNeeded: lo))
    }

    /// Why this address cannot be a host's (a VIP, a backend, a port or its gateway), or nil when it can:
    /// `::` (unspecified), `::1` (loopback), `ff00::/8` (multicast), `::ffff:0:0/96` (IPv4-mapped: write the
    /// IPv4 address instead).
    public var notAHostReason: String? {
        if isUnspecified { return ":: is the unspecified address, not a host address" }
        if hi == 0 && lo == 1 { return "::1 is the loopback address" }
        if isMulticast { return "\(self) is a multicast address" }
        if hi == 0 && lo >> 32 == 0xFFFF { return "\(self) is an IPv4-mapped address; write the IPv4 address" }
        return nil
    }
}

/// The IP family of an address.
public enum IPFamily: Sendable, CustomStringConvertible {
    case v4, v6
    public var description: String { self == .v4 ? "IPv4" : "IPv6" }
}

/// An address of either family: what a VIP or a backend has.
public enum IPAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    case v4(IPv4Address)
    case v6(IPv6Address)

    /// Dotted quad for IPv4, IPv6 text otherwise; nil for anything else.
    public init?(_ text: String) {
        if let a = IPv4Address(text) { self = .v4(a) } else if let a = IPv6Address(text) { self = .v6(a) } else { return nil }
    }

    public var family: IPFamily { if case .v4 = self { .v4 } else { .v6 } }
    public var v4: IPv4Address? { if case .v4(let a) = self { a } else { nil } }
    public var v6: IPv6Address? { if case .v6(let a) = self { a } else { nil } }

    /// Dotted quad or RFC 5952 text.
    public var description: String {
        switch self {
        case .v4(let a): a.description
        case .v6(let a): a.description
        }
    }

    /// `address:port` for IPv4, `[address]:port` for IPv6.
    public func endpoint(_ port: String) -> String {
        family == .v4 ? "\(self):\(port)" : "[\(self)]:\(port)"
    }

    public var notAHostReason: String? {
        switch self {
        case .v4(let a): a.notAHostReason
        case .v6(let a): a.notAHostReason
        }
    }

    /// IPv4 before IPv6, then by value.
    public static func < (l: IPAddress, r: IPAddress) -> Bool {
        switch (l, r) {
        case (.v4(let a), .v4(let b)): a < b
        case (.v6(let a), .v6(let b)): a < b
        case (.v4, .v6): true
        case (.v6, .v4): false
        }
    }
}
