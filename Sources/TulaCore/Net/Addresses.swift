// IPv4 and MAC address value types: parsing from text, printing, and network-order bytes.

/// An IPv4 address held in host order (`10.0.1.2` is `0x0A00_0102`).
public struct IPv4Address: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var value: UInt32

    public init(_ value: UInt32) { self.value = value }

    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        value = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }

    /// Parses dotted-quad text (`10.0.1.2`); nil for anything else (no leading zeros, no shorthand).
    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var v: UInt32 = 0
        for part in parts {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy({ $0.isASCII && $0.isNumber }),
                  !(part.count > 1 && part.first == "0"), let octet = UInt8(part) else { return nil }
            v = v << 8 | UInt32(octet)
        }
        value = v
    }

    public var description: String {
        "\(value >> 24).\(value >> 16 & 0xFF).\(value >> 8 & 0xFF).\(value & 0xFF)"
    }

    public static func < (l: IPv4Address, r: IPv4Address) -> Bool { l.value < r.value }

    /// Why this address cannot be a host's (a VIP, a backend, a port or its gateway), or nil when it can:
    /// 0.0.0.0/8 (this network), 127.0.0.0/8 (loopback), 224.0.0.0/4 (multicast), 240.0.0.0/4 (reserved,
    /// with 255.255.255.255, the limited broadcast).
    public var notAHostReason: String? {
        switch value >> 24 {
        case 0: return "\(self) is in 0.0.0.0/8 (\"this network\"), not a host address"
        case 127: return "\(self) is a loopback address"
        case 224...239: return "\(self) is a multicast address"
        case 240...255: return value == .max ? "255.255.255.255 is the broadcast address"
                                             : "\(self) is in the reserved range 240.0.0.0/4"
        default: return nil
        }
    }
}

/// A 48-bit Ethernet MAC address.
public struct MACAddress: Hashable, Sendable, CustomStringConvertible {
    public var bytes: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)

    public init(_ b0: UInt8, _ b1: UInt8, _ b2: UInt8, _ b3: UInt8, _ b4: UInt8, _ b5: UInt8) {
        bytes = (b0, b1, b2, b3, b4, b5)
    }

    /// Reads six bytes at `pointer`.
    public init(reading pointer: UnsafeRawPointer) {
        bytes = (pointer.load(as: UInt8.self), pointer.load(fromByteOffset: 1, as: UInt8.self),
                 pointer.load(fromByteOffset: 2, as: UInt8.self), pointer.load(fromByteOffset: 3, as: UInt8.self),
                 pointer.load(fromByteOffset: 4, as: UInt8.self), pointer.load(fromByteOffset: 5, as: UInt8.self))
    }

    /// Parses `02:00:00:00:01:11` (colon or dash separated, either case); nil for anything else.
    public init?(_ text: String) {
        let parts = text.split(whereSeparator: { $0 == ":" || $0 == "-" })
        guard parts.count == 6, text.count == 17 else { return nil }
        var b = [UInt8]()
        for part in parts {
            guard part.count == 2, let octet = UInt8(part, radix: 16) else { return nil }
            b.append(octet)
        }
        bytes = (b[0], b[1], b[2], b[3], b[4], b[5])
    }

    public static let broadcast = MACAddress(0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF)
    public static let zero = MACAddress(0, 0, 0, 0, 0, 0)

    public var array: [UInt8] { [bytes.0, bytes.1, bytes.2, bytes.3, bytes.4, bytes.5] }

    /// Writes the six bytes at `pointer`.
    public func write(to pointer: UnsafeMutableRawPointer) {
        pointer.storeBytes(of: bytes.0, toByteOffset: 0, as: UInt8.self)
        pointer.storeBytes(of: bytes.1, toByteOffset: 1, as: UInt8.self)
        pointer.storeBytes(of: bytes.2, toByteOffset: 2, as: UInt8.self)
        pointer.storeBytes(of: bytes.3, toByteOffset: 3, as: UInt8.self)
        pointer.storeBytes(of: bytes.4, toByteOffset: 4, as: UInt8.self)
        pointer.storeBytes(of: bytes.5, toByteOffset: 5, as: UInt8.self)
    }

    public var description: String {
        array.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }
            .joined(separator: ":")
    }

    public static func == (l: MACAddress, r: MACAddress) -> Bool { l.array == r.array }
    public func hash(into h: inout Hasher) { h.combine(array) }
}

/// The L4 protocols a VIP can serve.
public enum L4Protocol: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case tcp = 6
    case udp = 17
    public var description: String { self == .tcp ? "tcp" : "udp" }
}

/// What a VIP hashes to pick a backend (key `hash`). Fragments carry no ports, so they always hash
/// without them: `3tuple` or `src` make whole packets and fragments of one client agree, at the cost of
/// spreading one client's connections less (all go to one backend).
public enum FlowHashMode: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// Source and destination address and port, and protocol (default).
    case fiveTuple = 0
    /// Source and destination address, and protocol.
    case threeTuple
    /// Source address only.
    case source
    public var description: String {
        switch self {
        case .fiveTuple: "5tuple"
        case .threeTuple: "3tuple"
        case .source: "src"
        }
    }
}

/// How a VIP hands packets to its backends.
public enum DSRMode: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// Destination MAC rewrite on the same L2 segment.
    case l2 = 0
    /// IP-in-IP encapsulation towards the backend through the gateway.
    case l3 = 1
    public var description: String { self == .l2 ? "l2" : "l3" }
}
