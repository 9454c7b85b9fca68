// A VIP's tunnel choice (`encap`, `gue_port`, `outer_source`) and DSCP marking (`dscp`, `remark`): model and decoding.

/// How an l3 VIP wraps packets for its backends (key `encap`).
public enum Encapsulation: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// IP-in-IP (IPv4 protocol 4; IPv6 outer: next header 41 or 4). Default.
    case ipip = 0
    /// GUE variant 1 (draft-ietf-intarea-gue): outer IP + UDP to `gue_port`, then the inner IP packet directly.
    case gue = 1
    /// Plain GRE (RFC 2784): outer IP (protocol 47) + a 4-byte GRE header, protocol 0x0800 or 0x86DD.
    case gre = 2
    public var description: String {
        switch self {
        case .ipip: "ipip"
        case .gue: "gue"
        case .gre: "gre"
        }
    }
    /// Bytes between the outer IP header and the inner packet: 0 (ipip), 8 (UDP), 4 (GRE).
    public var shimBytes: Int {
        switch self {
        case .ipip: 0
        case .gue: 8
        case .gre: 4
        }
    }
    /// Default GUE destination port (Linux `ip fou add port 6080 gue`, what Katran and GLB use).
    public static let defaultGUEPort: UInt16 = 6080
}

/// An address prefix (`172.16.0.0/16`, `2001:db8:ff::/112`): the network address and its length.
public struct IPPrefix: Sendable, Equatable, CustomStringConvertible {
    public var address: IPAddress
    public var length: Int
    public init(address: IPAddress, length: Int) { self.address = address; self.length = length }
    public var description: String { "\(address)/\(length)" }

    /// Parses `a.b.c.d/n` or `ipv6/n`; a bare address is a full-length prefix. Nil when malformed.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2 else { return nil }
        if text.contains(":") {
            guard let a = IPv6Address(String(parts[0])) else { return nil }
            address = .v6(a)
        } else {
            guard let a = IPv4Address(String(parts[0])) else { return nil }
            address = .v4(a)
        }
        let maxLength = address.family == .v4 ? 32 : 128
        if parts.count == 2 {
            guard let n = Int(parts[1]), String(n) == parts[1], (0...maxLength).contains(n) else { return nil }
            length = n
        } else {
            length = maxLength
        }
    }

    /// The host bits (IPv4: in the low 32 bits; IPv6: (hi, lo) halves).
    public var hostMask4: UInt32 { length >= 32 ? 0 : UInt32.max >> UInt32(length) }
    public var hostMask6: (hi: UInt64, lo: UInt64) {
        let hi: UInt64 = length >= 64 ? 0 : UInt64.max >> UInt64(length)
        let lo: UInt64 = length >= 128 ? 0 : length <= 64 ? UInt64.max : UInt64.max >> UInt64(length - 64)
        return (hi, lo)
    }
    /// Whether the address has host bits set (`172.16.0.1/16`).
    public var hasHostBits: Bool {
        switch address {
        case .v4(let a): return a.value & hostMask4 != 0
        case .v6(let a): let m = hostMask6; return a.hi & m.hi != 0 || a.lo & m.lo != 0
        }
    }
}

/// Tunnel and marking settings of one VIP. Defaults: IP-in-IP from the port's address, DSCP copied.
public struct EncapsulationConfig: Sendable, Equatable {
    /// Key `encap` (l3 only).
    public var kind: Encapsulation = .ipip
    /// Key `gue_port` (gue only): the outer UDP destination port, 1...65535.
    public var guePort: UInt16 = Encapsulation.defaultGUEPort
    /// Key `outer_source` (l3 only): outer source addresses, one per flow picked by the flow hash; nil: the port's address.
    public var outerSource: IPPrefix? = nil
    /// Key `dscp`, 0...63: the outer header's DSCP (ECN stays the inner packet's); nil: copied from the inner packet.
    public var dscp: UInt8? = nil
    /// Key `remark`: also rewrite the packet's own DSCP (the only header l2 has).
    public var remark: Bool = false

    public init() {}

    /// True for today's IP-in-IP from the port's address with the inner DSCP: the inlined fast path.
    public var isDefault: Bool { self == EncapsulationConfig() }
}

extension ConfigLoader {
    /// The VIP keys this file decodes.
    static let encapsulationKeys = ["encap", "gue_port", "outer_source", "dscp", "remark"]

    /// Decodes and checks `encap`, `gue_port`, `outer_source`, `dscp` and `remark` of a VIP of `mode` whose outer
    /// family (l3) is `outerFamily`.
    static func decodeEncapsulation(_ fields: MappingReader, mode: DSRMode,
                                    outerFamily: IPFamily) throws(ConfigError) -> EncapsulationConfig {
        var e = EncapsulationConfig()
        if let node = fields.optional("encap") {
            e.kind = try node.choice(what: "encap")
            guard mode == .l3 else {
                throw node.error("encap applies to l3 VIPs only (an l2 VIP rewrites MACs and adds no header)")
            }
        }
        if let node = fields.optional("gue_port") {
            if node.isInteger, node.node.int == 0 {
                throw node.error("GUE port 0 is not a port a backend can listen on (expected 1...65535; default 6080)")
            }
            e.guePort = UInt16(try node.int(in: 1...65535))
            guard e.kind == .gue else { throw node.error("gue_port needs encap: gue (this VIP uses \(e.kind))") }
        }
        if let node = fields.optional("outer_source") {
            let text = try node.string()
            guard let prefix = IPPrefix(text) else {
                throw node.error("invalid prefix \"\(text)\" (expected an address/length like 172.16.0.0/16 or 2001:db8:ff::/112)")
            }
            guard mode == .l3 else { throw node.error("outer_source applies to l3 VIPs only") }
            guard prefix.address.family == outerFamily else {
                throw node.error("outer_source \(prefix) is \(prefix.address.family), but this VIP's outer header is "
                    + "\(outerFamily) (the backends' family): the backends could not route back to it")
            }
            guard !prefix.hasHostBits else {
                throw node.error("outer_source \(text) has host bits set (expected the network address of the prefix)")
            }
            if case .v4(let a) = prefix.address, let reason = a.notAHostReason, prefix.length == 32 {
                throw node.error(reason)
            }
            e.outerSource = prefix
        }
        if let node = fields.optional("dscp") {
            e.dscp = UInt8(try node.int(in: 0...63))
        }
        if let node = fields.optional("remark") {
            e.remark = try node.bool()
            guard !e.remark || e.dscp != nil else { throw node.error("remark: true needs dscp: N (the value to write)") }
        }
        if mode == .l2, e.dscp != nil, !e.remark, let node = fields.optional("dscp") {
            throw node.error("an l2 VIP has no outer header to mark: add remark: true to rewrite the packet's own DSCP")
        }
        return e
    }
}
