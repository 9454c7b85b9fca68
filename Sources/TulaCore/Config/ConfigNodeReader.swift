// Typed, line-aware readers over Yams' composed node tree, so every config error names a key path and line.
import Yams

/// A YAML node together with its key path (`vips[1].mode`) and file, for error messages.
struct ConfigNode {
    let node: Node
    /// Key path from the document root; empty for the root itself.
    let path: String
    let file: String
    /// 1-based line that errors about this node point at.
    let line: Int

    /// An error at this node's line, prefixed with its key path.
    func error(_ message: String) -> ConfigError {
        error(message, line: line)
    }

    /// An error prefixed with this node's key path, at `line`.
    func error(_ message: String, line: Int) -> ConfigError {
        ConfigError(file: file, line: line, reason: path.isEmpty ? message : "\(path): \(message)")
    }

    /// The document root.
    init(root node: Node, file: String) {
        self.init(node: node, path: "", file: file, line: node.mark?.line ?? 1)
    }

    private init(node: Node, path: String, file: String, line: Int) {
        self.node = node
        self.path = path
        self.file = file
        self.line = line
    }

    /// The value of `key` in this mapping. A list or mapping value points at its key's line
    /// (`backends:`), not at its first item.
    func child(_ node: Node, key: String, keyLine: Int) -> ConfigNode {
        let isScalar = if case .scalar = node { true } else { false }
        return ConfigNode(node: node, path: path.isEmpty ? key : "\(path).\(key)", file: file,
                          line: isScalar ? node.mark?.line ?? keyLine : keyLine)
    }

    /// Item `index` of this list.
    func child(_ node: Node, index: Int) -> ConfigNode {
        ConfigNode(node: node, path: "\(path)[\(index)]", file: file, line: node.mark?.line ?? line)
    }

    // MARK: Shape

    /// True for an explicit YAML null (`key:` with nothing after it, `~`, `null`).
    var isNull: Bool {
        guard case .scalar(let scalar) = node else { return false }
        return scalar.style == .plain && hasTag(.null)
    }

    /// True for an unquoted integer scalar.
    var isInteger: Bool {
        guard case .scalar(let scalar) = node else { return false }
        return scalar.style == .plain && hasTag(.int)
    }

    /// Whether the node's resolved tag is `name` (Yams keeps `Tag.name` internal; its description is the name).
    private func hasTag(_ name: Tag.Name) -> Bool {
        node.tag.description == name.rawValue
    }

    /// What the node is, for "expected X, got Y" messages.
    var kindDescription: String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .scalar(let scalar):
            if isNull { return "nothing" }
            if scalar.style == .plain && !hasTag(.str) { return scalar.string }
            return "\"\(scalar.string)\""
        }
    }

    /// A hint for a quoted number (`"443"`), appended to "expected a number" errors; empty otherwise.
    var quotedNumberHint: String {
        guard case .scalar(let scalar) = node, scalar.style != .plain, Int(scalar.string) != nil else { return "" }
        return " (write numbers without quotes)"
    }

    /// The node's mapping, with its keys checked against `allowed`.
    func mapping(allowed: [String]) throws(ConfigError) -> MappingReader {
        try MappingReader(self, allowed: allowed)
    }

    /// The node's list items.
    func sequence() throws(ConfigError) -> [ConfigNode] {
        guard case .sequence(let items) = node else { throw error("expected a list, got \(kindDescription)") }
        return items.enumerated().map { child($0.element, index: $0.offset) }
    }

    // MARK: Scalars

    /// The scalar's text exactly as written (quoted or not); refuses lists, mappings and null.
    func string() throws(ConfigError) -> String {
        guard case .scalar(let scalar) = node, !isNull else {
            throw error("expected a text value, got \(kindDescription)")
        }
        return scalar.string
    }

    /// Like `string()`, but refuses empty or all-blank text.
    func nonEmptyString() throws(ConfigError) -> String {
        let text = try string()
        guard text.contains(where: { !$0.isWhitespace }) else { throw error("must not be empty") }
        return text
    }

    /// An unquoted integer within `range`.
    func int(in range: ClosedRange<Int>) throws(ConfigError) -> Int {
        guard isInteger else { throw error("expected a whole number, got \(kindDescription)\(quotedNumberHint)") }
        guard let value = node.int else { throw error("\(kindDescription) is out of range (expected \(range))") }
        guard range.contains(value) else { throw error("\(value) is out of range (expected \(range))") }
        return value
    }

    /// `true` or `false`.
    func bool() throws(ConfigError) -> Bool {
        guard case .scalar(let scalar) = node, scalar.style == .plain, let value = node.bool else {
            throw error("expected true or false, got \(kindDescription)")
        }
        return value
    }

    /// A dotted-quad IPv4 address.
    func ipv4() throws(ConfigError) -> IPv4Address {
        let text = try string()
        guard let address = IPv4Address(text) else {
            throw error("invalid IPv4 address \"\(text)\" (expected dotted quad like 10.0.1.2)")
        }
        return address
    }

    /// An IPv4 address that a host can have (not 0/8, loopback, multicast, reserved or broadcast).
    func hostIPv4() throws(ConfigError) -> IPv4Address {
        let address = try ipv4()
        if let reason = address.notAHostReason { throw error(reason) }
        return address
    }

    /// An IPv6 address a host can have (not unspecified, loopback, multicast or IPv4-mapped).
    func hostIPv6() throws(ConfigError) -> IPv6Address {
        let text = try string()
        guard let address = IPv6Address(text) else {
            throw error("invalid IPv6 address \"\(text)\" (expected IPv6 text like 2001:db8::1)")
        }
        if let reason = address.notAHostReason { throw error(reason) }
        return address
    }

    /// A host address of either family: a dotted quad or IPv6 text.
    func hostIP() throws(ConfigError) -> IPAddress {
        let text = try string()
        if text.contains(":") { return .v6(try hostIPv6()) }
        guard let address = IPv4Address(text) else {
            throw error("invalid IP address \"\(text)\" (expected a dotted quad like 10.0.1.2 or IPv6 text like 2001:db8::1)")
        }
        if let reason = address.notAHostReason { throw error(reason) }
        return .v4(address)
    }

    /// A MAC address like `02:00:00:00:01:11`.
    func mac() throws(ConfigError) -> MACAddress {
        let text = try string()
        guard let mac = MACAddress(text) else {
            throw error("invalid MAC address \"\(text)\" (expected six hex bytes like 02:00:00:00:01:11)")
        }
        return mac
    }

    /// One case of `Value`, written as its description (`mode: l2`); `what` names the setting in errors.
    func choice<Value: CaseIterable & CustomStringConvertible>(what: String) throws(ConfigError) -> Value {
        let text = try string()
        if let match = Value.allCases.first(where: { $0.description == text }) { return match }
        let words = Value.allCases.map(\.description)
        let expected = words.count == 2 ? "\(words[0]) or \(words[1])" : "one of " + words.joined(separator: ", ")
        throw error("unknown \(what) \"\(text)\" (expected \(expected))")
    }
}

/// The fields of one YAML mapping, keyed by name, after refusing unknown, duplicate and non-text keys.
struct MappingReader {
    /// The mapping node itself.
    let owner: ConfigNode
    private let allowed: [String]
    private var fields: [String: ConfigNode] = [:]

    init(_ owner: ConfigNode, allowed: [String]) throws(ConfigError) {
        guard case .mapping(let mapping) = owner.node else {
            throw owner.error("expected a mapping of settings, got \(owner.kindDescription)")
        }
        self.owner = owner
        self.allowed = allowed
        for (keyNode, valueNode) in mapping {
            let line = keyNode.mark?.line ?? owner.line
            guard case .scalar(let keyScalar) = keyNode else {
                throw owner.error("keys must be plain words, not lists or mappings", line: line)
            }
            let key = keyScalar.string
            let value = owner.child(valueNode, key: key, keyLine: line)
            guard allowed.contains(key) else {
                throw value.error("unknown key (expected one of: \(allowed.joined(separator: ", ")))", line: line)
            }
            if let first = fields[key] {
                throw value.error("duplicate key (first given on line \(first.line))", line: line)
            }
            fields[key] = value
        }
    }

    /// The value for `key`, or nil when it is absent or explicitly null.
    func optional(_ key: String) -> ConfigNode? {
        assert(allowed.contains(key), "reading undeclared config key \(key)")
        guard let value = fields[key], !value.isNull else { return nil }
        return value
    }

    /// The value for `key`; an error at the mapping (absent) or the key (null) when there is none.
    func required(_ key: String) throws(ConfigError) -> ConfigNode {
        if let value = optional(key) { return value }
        if let present = fields[key] { throw present.error("missing value") }
        throw owner.error("missing required key \"\(key)\"")
    }
}
