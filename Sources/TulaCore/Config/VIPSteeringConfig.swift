// Prefix VIPs, port ranges and QUIC server ids in the config: parsing, containment and the ambiguity checks.

/// Longest total of ports that port ranges may add to the VIP index (each range port is one index entry).
public let maxRangePortsPerConfig = 262_144

extension VIPConfig {
    /// Prefix length of the address in bits: 32 (IPv4) or 128 (IPv6) for a single address.
    public var addressBits: Int { prefixLength ?? (address.family == .v4 ? 32 : 128) }

    /// `address` as written in the config: `203.0.113.0/28` for a prefix, the bare address otherwise.
    public var addressText: String { prefixLength.map { "\(address)/\($0)" } ?? address.description }

    /// `port` as written in the config: `8000-8099`, `443` or `*`.
    public var portText: String {
        guard let port else { return "*" }
        return portEnd.map { "\(port)-\($0)" } ?? String(port)
    }

    /// Whether `other` lies inside this VIP's address or prefix.
    public func covers(_ other: IPAddress) -> Bool {
        VIPConfig.masked(other, bits: addressBits) == address && other.family == address.family
    }

    /// `address` with every bit after the first `bits` cleared.
    public static func masked(_ address: IPAddress, bits: Int) -> IPAddress {
        switch address {
        case .v4(let a):
            return .v4(IPv4Address(bits == 0 ? 0 : a.value & ~(UInt32.max >> UInt32(bits))))
        case .v6(let a):
            if bits >= 64 { return .v6(IPv6Address(hi: a.hi, lo: bits == 128 ? a.lo : a.lo & ~(UInt64.max >> UInt64(bits - 64)))) }
            return .v6(IPv6Address(hi: bits == 0 ? 0 : a.hi & ~(UInt64.max >> UInt64(bits)), lo: 0))
        }
    }
}

extension ConfigLoader {
    /// A VIP `address`: a host address, or a prefix `NETWORK/LEN` (IPv4 8...32, IPv6 64...128) with no host bits
    /// set. A /32 (/128) is the single address. Returns the (network) address and the prefix length, nil for one address.
    static func decodeVIPAddress(_ node: ConfigNode) throws(ConfigError) -> (IPAddress, Int?) {
        let text = try node.string()
        guard let slash = text.firstIndex(of: "/") else { return (try node.hostIP(), nil) }
        let host = String(text[..<slash]), lengthText = String(text[text.index(after: slash)...])
        guard let address = IPAddress(host) else {
            throw node.error("invalid prefix \"\(text)\" (expected NETWORK/LENGTH like 203.0.113.0/28 or 2001:db8:100::/120)")
        }
        let bits = address.family == .v4 ? 32 : 128
        let shortest = address.family == .v4 ? 8 : 64
        guard let length = Int(lengthText), (shortest...bits).contains(length) else {
            throw node.error("prefix length of \"\(text)\" must be \(shortest)...\(bits) for an \(address.family == .v4 ? "IPv4" : "IPv6") VIP")
        }
        if let reason = address.notAHostReason { throw node.error(reason) }
        let network = VIPConfig.masked(address, bits: length)
        guard network == address else {
            throw node.error("\"\(text)\" has host bits set; the prefix is \(network)/\(length)")
        }
        return (address, length == bits ? nil : length)
    }

    /// A VIP `port`: 1...65535, `"*"`, or a range `"FIRST-LAST"` (FIRST < LAST). Returns the first port (nil for `*`) and the last of a range.
    static func decodeVIPPortOrRange(_ node: ConfigNode) throws(ConfigError) -> (UInt16?, UInt16?) {
        if case .scalar(let scalar) = node.node, !node.isInteger, let dash = scalar.string.firstIndex(of: "-") {
            let text = scalar.string
            guard let first = Int(text[..<dash]), let last = Int(text[text.index(after: dash)...]),
                  (1...65535).contains(first), (1...65535).contains(last) else {
                throw node.error("invalid port range \"\(text)\" (expected FIRST-LAST within 1...65535, like 8000-8099)")
            }
            guard first < last else { throw node.error("port range \"\(text)\" must run from a lower port to a higher one") }
            return (UInt16(first), UInt16(last))
        }
        return (try decodeVIPPortValue(node), nil)
    }

    /// Refuses a VIP that no packet could reach unambiguously: the same address (or prefix), protocol and port as an
    /// earlier VIP, or a port range overlapping another range on the same address (or prefix) and protocol.
    /// Prefixes of one length are equal or disjoint, and every other overlap has a winner (exact address over a
    /// longer prefix over a shorter one; then port over range over `*`).
    static func checkVIPAmbiguity(_ vip: VIPConfig, previous: [VIPConfig], node: ConfigNode) throws(ConfigError) {
        func rangePorts(_ v: VIPConfig) -> Int { v.portEnd.map { Int($0) - Int(v.port!) + 1 } ?? 0 }
        let rangeTotal = previous.reduce(rangePorts(vip)) { $0 + rangePorts($1) }
        if rangeTotal > maxRangePortsPerConfig {
            throw node.error("port ranges cover \(rangeTotal) ports in all; at most \(maxRangePortsPerConfig) "
                + "(each range port is one entry of the VIP index): use \"*\" or fewer, narrower ranges")
        }
        for (index, other) in previous.enumerated()
        where other.address == vip.address && other.addressBits == vip.addressBits && other.proto == vip.proto {
            let what = vip.prefixLength == nil ? vip.address.endpoint(vip.portText) + "/\(vip.proto)"
                                               : "\(vip.addressText) port \(vip.portText)/\(vip.proto)"
            if other.port == vip.port && other.portEnd == nil && vip.portEnd == nil {
                throw node.error("duplicate VIP \(what), already defined by vips[\(index)] \"\(other.name)\"")
            }
            if let a = vip.port, let aEnd = vip.portEnd, let b = other.port, let bEnd = other.portEnd, a <= bEnd, b <= aEnd {
                throw node.error("ambiguous VIP \(what): its port range overlaps \(other.portText) of vips[\(index)] "
                    + "\"\(other.name)\" on the same address and protocol")
            }
        }
    }

    /// QUIC settings of a VIP once its backends are known: `quic: true` needs UDP; server ids are unique within the
    /// VIP; ids are 1...65535 when any backend needs the 16-bit (version 1) layout, up to 2^24 - 1 otherwise.
    static func checkQUIC(_ vip: VIPConfig, quicNode: ConfigNode?, backendsNode: ConfigNode) throws(ConfigError) {
        if vip.quic, vip.proto != .udp, let quicNode {
            throw quicNode.error("quic: true needs protocol udp (QUIC runs over UDP), but VIP \"\(vip.name)\" is \(vip.proto)")
        }
        let items = try backendsNode.sequence()
        var seen: [UInt32: Int] = [:]
        for (i, b) in vip.backends.enumerated() {
            guard let id = b.quicServerID else { continue }
            guard vip.quic else {
                throw items[i].error("quic_server_id needs quic: true on VIP \"\(vip.name)\"")
            }
            if let first = seen[id] {
                throw items[i].error("duplicate quic_server_id \(id) (already backends[\(first)] of VIP \"\(vip.name)\")")
            }
            seen[id] = i
        }
    }
}
