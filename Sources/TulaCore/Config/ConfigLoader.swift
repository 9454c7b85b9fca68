// Loads tula.yaml into a TulaConfig, refusing any bad config with "<file>:<line>: <reason>".
import Foundation
import Yams

/// Reads and validates the appliance's YAML config (schema: DESIGN.md, README).
///
/// The loader walks Yams' composed node tree itself, so every refusal carries the line of the
/// offending node: YAML syntax errors, unknown or duplicate keys, wrong value types, values out
/// of range, and semantic mistakes (duplicate VIPs or names, VIPs without backends, an l2 backend
/// without a MAC, an l3 VIP on a port without gateway, a non-prime Maglev table size, ...).
/// `flows_per_worker` is rounded up to a power of two.
public enum ConfigLoader {
    /// Reads the file at `path` and parses it; errors name `path` as given.
    public static func load(path: String) throws(ConfigError) -> TulaConfig {
        // Refuse an oversized file (or /dev/zero) before reading it whole.
        var info = stat()
        if stat(path, &info) == 0 {
            let kind = info.st_mode & S_IFMT
            if kind != S_IFREG && kind != S_IFDIR {
                throw ConfigError(file: path, line: 1, reason: "cannot read file: not a regular file")
            }
            if kind == S_IFREG && Int(info.st_size) > YAMLBounds.maxBytes {
                throw ConfigError(file: path, line: 1, reason: "the config is \(info.st_size) bytes; at most "
                    + "\(YAMLBounds.maxBytes) (\(YAMLBounds.maxBytes >> 20) MiB) are read")
            }
        }
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigError(file: path, line: 1, reason: "cannot read file: \(readFailure(path: path))")
        }
        return try parse(yaml: text, file: path)
    }

    /// Parses and validates YAML text; `file` is only used in error messages.
    public static func parse(yaml: String, file: String) throws(ConfigError) -> TulaConfig {
        do throws(ConfigError) {
            try YAMLBounds.check(yaml, file: file)
            let root = try composeRoot(yaml: yaml, file: file)
            return try decodeConfig(root)
        } catch {
            // libyaml puts the end of the text on a line of its own (past the last line break, or one more when
            // the text ends without one): a mistake found there is on the text's last line.
            var clamped = error
            clamped.line = min(error.line, lineCount(yaml))
            throw clamped
        }
    }

    /// Lines of `text` as an editor shows them, counting the line breaks YAML knows (LF, CR LF, CR, NEL, LS,
    /// PS); a last line without a break counts; at least 1.
    static func lineCount(_ text: String) -> Int {
        var breaks = 0
        var previous: Unicode.Scalar = "\n"
        var afterBreak = true
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\n": if previous != "\r" { breaks += 1 }; afterBreak = true
            case "\r", "\u{85}", "\u{2028}", "\u{2029}": breaks += 1; afterBreak = true
            default: afterBreak = false
            }
            previous = scalar
        }
        return max(1, breaks + (afterBreak ? 0 : 1))
    }

    // MARK: - YAML

    private static func composeRoot(yaml: String, file: String) throws(ConfigError) -> ConfigNode {
        let composed: Node?
        do {
            composed = try Yams.compose(yaml: yaml)
        } catch {
            throw syntaxError(error, yaml: yaml, file: file)
        }
        guard let composed else { throw ConfigError(file: file, line: 1, reason: "the config is empty") }
        return ConfigNode(root: composed, file: file)
    }

    /// Turns a Yams parse failure into a ConfigError at the line libyaml reported.
    private static func syntaxError(_ error: any Error, yaml: String, file: String) -> ConfigError {
        guard let yamlError = error as? YamlError else {
            return ConfigError(file: file, line: 1, reason: "invalid YAML: \(error)")
        }
        switch yamlError {
        case let .scanner(context, problem, mark, _), let .parser(context, problem, mark, _),
             let .composer(context, problem, mark, _):
            var reason = "invalid YAML: \(problem)"
            if let context { reason += " (\(context.text) on line \(context.mark.line))" }
            if context?.text.contains("alias") == true {
                reason += "; a bare * starts a YAML alias: quote a wildcard port as port: \"*\""
            }
            return ConfigError(file: file, line: mark.line, reason: reason)
        case let .reader(problem, offset, _, _):
            let line = offset.map { lineNumber(atCharacterOffset: $0, in: yaml) } ?? 1
            return ConfigError(file: file, line: line, reason: "invalid YAML: \(problem)")
        default:
            return ConfigError(file: file, line: 1, reason: "invalid YAML: \(yamlError)")
        }
    }

    private static func lineNumber(atCharacterOffset offset: Int, in text: String) -> Int {
        1 + text.prefix(offset).filter { $0 == "\n" || $0 == "\r\n" }.count
    }

    private static func readFailure(path: String) -> String {
        var isDirectory: ObjCBool = false
        if !FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) { return "no such file" }
        if isDirectory.boolValue { return "it is a directory" }
        if !FileManager.default.isReadableFile(atPath: path) { return "permission denied" }
        return "not valid UTF-8 text"
    }

    // MARK: - Top level

    private enum Key {
        static let top = ["ports", "workers", "flows_per_worker", "flow_idle_timeout", "stats_socket", "metrics_listen",
                          "gratuitous_arp", "poll", "vips"]
        static let port = ["name", "device", "address", "mac", "gateway", "gateway_mac", "address6", "gateway6",
                           "gateway6_mac", "mtu", "vlan",
                           "kernel_interface", "kernel_rate", "kernel_burst", "kernel_prefix_length", "kernel_prefix_length6"]
        static let vip = ["name", "address", "port", "protocol", "mode", "hash", "icmp_echo", "health_check",
                          "maglev_table_size", "backends", "quic"] + ConfigLoader.encapsulationKeys
        static let healthCheck = ["type", "port", "path", "expect_status", "interval", "timeout", "rise", "fall"]
        static let backend = ["address", "mac", "weight", "vlan", "quic_server_id"]
    }

    private static func decodeConfig(_ root: ConfigNode) throws(ConfigError) -> TulaConfig {
        let fields = try root.mapping(allowed: Key.top)
        let ports = try decodePorts(fields.required("ports"))
        let workers = try fields.optional("workers").map(decodeWorkers) ?? .count(1)
        let flows = try fields.optional("flows_per_worker")?.int(in: TulaConfig.flowsPerWorkerRange)
            ?? TulaConfig.defaultFlowsPerWorker
        let idleTimeout = try fields.optional("flow_idle_timeout")?.int(in: TulaConfig.flowIdleTimeoutRange)
            ?? TulaConfig.defaultFlowIdleTimeoutSeconds
        let statsSocket = try fields.optional("stats_socket").map(decodeSocketPath) ?? TulaConfig.defaultStatsSocket
        let vipsNode = try fields.required("vips")
        let vips = try decodeVIPs(vipsNode, ports: ports)
        guard vips.count <= CounterSlots.maxVIPs else { throw vipsNode.error("at most \(CounterSlots.maxVIPs) VIPs, got \(vips.count)") }
        let backendCount = vips.reduce(0) { $0 + $1.backends.count }
        guard backendCount <= CounterSlots.maxBackends else {
            throw vipsNode.error("at most \(CounterSlots.maxBackends) backends in all, got \(backendCount)")
        }
        var config = TulaConfig(ports: ports, workers: workers, flowsPerWorker: roundUpToPowerOfTwo(flows),
                                flowIdleTimeoutSeconds: idleTimeout, statsSocket: statsSocket, vips: vips)
        config.gratuitousARP = try fields.optional("gratuitous_arp")?.bool() ?? false
        if let node = fields.optional("poll") {
            switch try node.nonEmptyString() {
            case "busy": config.adaptivePolling = false
            case "adaptive": config.adaptivePolling = true
            case let other: throw node.error("poll must be busy or adaptive, not \"\(other)\"")
            }
        }
        if let listenNode = fields.optional("metrics_listen") {
            let listen = try listenNode.nonEmptyString()
            guard TulaConfig.splitListen(listen) != nil else {
                throw listenNode.error("expected HOST:PORT with an IPv4 address or a bracketed IPv6 one "
                    + "(e.g. \"127.0.0.1:9469\", \"[::1]:9469\"), got \"\(listen)\"")
            }
            config.metricsListen = listen
        }
        return config
    }

    /// `workers: 2` (a count) or `workers: [1, 2]` (lcore ids).
    private static func decodeWorkers(_ node: ConfigNode) throws(ConfigError) -> WorkerSpec {
        let maxWorkers = 64
        if node.isInteger { return .count(try node.int(in: 1...maxWorkers)) }
        guard case .sequence = node.node else {
            throw node.error("expected a worker count (1...\(maxWorkers)) or a list of lcore ids, "
                + "got \(node.kindDescription)\(node.quotedNumberHint)")
        }
        let items = try node.sequence()
        guard !items.isEmpty else { throw node.error("the lcore list must not be empty") }
        guard items.count <= maxWorkers else { throw node.error("at most \(maxWorkers) workers, got \(items.count)") }
        var lcores: [Int] = []
        for item in items {
            let lcore = try item.int(in: 0...1023)
            guard !lcores.contains(lcore) else { throw item.error("lcore \(lcore) is listed twice") }
            lcores.append(lcore)
        }
        return .lcores(lcores)
    }

    private static func decodeSocketPath(_ node: ConfigNode) throws(ConfigError) -> String {
        let path = try node.nonEmptyString()
        guard path.hasPrefix("/") else { throw node.error("must be an absolute path, got \"\(path)\"") }
        guard path.utf8.count <= TulaConfig.maxSocketPathBytes else {
            throw node.error("the path is \(path.utf8.count) bytes; a Unix socket path has at most "
                + "\(TulaConfig.maxSocketPathBytes)")
        }
        return path
    }

    /// The smallest power of two >= `value` (for value >= 1).
    static func roundUpToPowerOfTwo(_ value: Int) -> Int {
        value <= 1 ? 1 : 1 << (Int.bitWidth - (value - 1).leadingZeroBitCount)
    }

    // MARK: - Ports

    /// The smallest MTU an IPv6 link may have (RFC 8200 5).
    static let minimumIPv6MTU = 1280

    private static func decodePorts(_ node: ConfigNode) throws(ConfigError) -> [PortConfig] {
        let items = try node.sequence()
        guard !items.isEmpty else { throw node.error("at least one port is needed") }
        var ports: [PortConfig] = []
        for item in items { ports.append(try decodePort(item, previous: ports)) }
        return ports
    }

    private static func decodePort(_ node: ConfigNode, previous: [PortConfig]) throws(ConfigError) -> PortConfig {
        let fields = try node.mapping(allowed: Key.port)
        let nameNode = try fields.required("name")
        let name = try nameNode.nonEmptyString()
        guard name.allSatisfy(isPortNameCharacter) else {
            throw nameNode.error("invalid port name \"\(name)\" (use letters, digits, _ and -)")
        }
        if let index = previous.firstIndex(where: { $0.name == name }) {
            throw nameNode.error("duplicate port name \"\(name)\" (already used by ports[\(index)])")
        }
        var port = PortConfig(
            name: name,
            device: try fields.required("device").nonEmptyString(),
            address: try fields.required("address").hostIPv4(),
            mac: try fields.optional("mac")?.mac(),
            gateway: try fields.optional("gateway")?.hostIPv4(),
            gatewayMAC: try fields.optional("gateway_mac")?.mac(),
            mtu: try fields.optional("mtu")?.int(in: 68...9216) ?? 1500,
            line: node.line)
        port.vlan = try fields.optional("vlan").map(decodeVLAN)
        if let node = fields.optional("address6") {
            port.address6 = try node.hostIPv6()
            guard port.mtu >= minimumIPv6MTU else {
                throw node.error("IPv6 needs a link MTU of at least \(minimumIPv6MTU) (RFC 8200), but the port's mtu is \(port.mtu)")
            }
        }
        if let node = fields.optional("gateway6") {
            guard port.address6 != nil else {
                throw node.error("gateway6 needs address6 on the port (the source of IPv6 tunnels and neighbor solicitations)")
            }
            port.gateway6 = try node.hostIPv6()
            if port.gateway6 == port.address6 { throw node.error("gateway6 is the port's own address6") }
        }
        if let node = fields.optional("gateway6_mac") {
            guard port.gateway6 != nil else { throw node.error("gateway6_mac needs gateway6") }
            port.gateway6MAC = try node.mac()
        }
        if let node = fields.optional("kernel_interface") {
            let name = try node.nonEmptyString()
            if let why = kernelInterfaceNameProblem(name) { throw node.error(why) }
            if let index = previous.firstIndex(where: { $0.kernelInterface == name }) {
                throw node.error("kernel_interface \"\(name)\" is already used by ports[\(index)]")
            }
            port.kernelInterface = name
        }
        if let node = fields.optional("kernel_rate") {
            guard port.kernelInterface != nil else { throw node.error("kernel_rate needs kernel_interface") }
            port.kernelRate = try node.int(in: 1...10_000_000)
        }
        if let node = fields.optional("kernel_burst") {
            guard port.kernelInterface != nil else { throw node.error("kernel_burst needs kernel_interface") }
            port.kernelBurst = try node.int(in: 1...1_000_000)
        }
        if let node = fields.optional("kernel_prefix_length") {
            guard port.kernelInterface != nil else { throw node.error("kernel_prefix_length needs kernel_interface") }
            port.kernelPrefixLength = try node.int(in: 1...32)
        }
        if let node = fields.optional("kernel_prefix_length6") {
            guard port.kernelInterface != nil, port.address6 != nil else {
                throw node.error("kernel_prefix_length6 needs kernel_interface and address6")
            }
            port.kernelPrefixLength6 = try node.int(in: 1...128)
        }
        return port
    }

    /// Why `name` cannot be a Linux interface name (at most 15 bytes, IFNAMSIZ - 1; no `/`, `:`, whitespace;
    /// not `.` or `..`), nil when it can. Whether it is taken is checked when the appliance starts.
    public static func kernelInterfaceNameProblem(_ name: String) -> String? {
        if name.utf8.count > 15 { return "kernel_interface \"\(name)\" is too long: Linux interface names have at most 15 bytes" }
        if name == "." || name == ".." { return "kernel_interface \"\(name)\" is not a valid interface name" }
        if let bad = name.first(where: { !$0.isASCII || $0 == "/" || $0 == ":" || $0.isWhitespace || $0 == "," || $0 == "=" }) {
            return "kernel_interface \"\(name)\" has \"\(bad)\", which an interface name (or a DPDK device argument) cannot hold"
        }
        return nil
    }

    private static func isPortNameCharacter(_ c: Character) -> Bool {
        c.isASCII && (c.isLetter || c.isNumber || c == "_" || c == "-")
    }

    // MARK: - VIPs

    private static func decodeVIPs(_ node: ConfigNode, ports: [PortConfig]) throws(ConfigError) -> [VIPConfig] {
        var vips: [VIPConfig] = []
        for item in try node.sequence() { vips.append(try decodeVIP(item, ports: ports, previous: vips)) }
        return vips
    }

    private static func decodeVIP(_ node: ConfigNode, ports: [PortConfig],
                                  previous: [VIPConfig]) throws(ConfigError) -> VIPConfig {
        let fields = try node.mapping(allowed: Key.vip)

        let nameNode = try fields.required("name")
        let name = try nameNode.nonEmptyString()
        // Names go into logs, Prometheus labels and DPDK telemetry answers (whose whole output is bounded).
        guard name.utf8.count <= VIPConfig.maxNameBytes, !name.hasControlCharacters else {
            throw nameNode.error("a VIP name is at most \(VIPConfig.maxNameBytes) bytes without control characters")
        }
        if let index = previous.firstIndex(where: { $0.name == name }) {
            throw nameNode.error("duplicate VIP name \"\(name)\" (already used by vips[\(index)])")
        }

        let addressNode = try fields.required("address")
        let (address, prefixLength) = try decodeVIPAddress(addressNode)
        if let port = ports.first(where: { VIPConfig.masked(.v4($0.address), bits: prefixLength ?? 32) == address
                                           || $0.address6.map { VIPConfig.masked(.v6($0), bits: prefixLength ?? 128) } == address }) {
            throw addressNode.error(
                "\(address) is the own address of port \"\(port.name)\"; a VIP needs an address of its own")
        }

        if address.family == .v6, let port = ports.first(where: { $0.mtu < minimumIPv6MTU }) {
            throw addressNode.error("IPv6 needs a link MTU of at least \(minimumIPv6MTU) (RFC 8200), but port "
                + "\"\(port.name)\" has mtu \(port.mtu)")
        }
        let (port, portEnd) = try decodeVIPPortOrRange(fields.required("port"))
        let proto: L4Protocol = try fields.required("protocol").choice(what: "protocol")
        var steering = VIPConfig(name: name, address: address, port: port, proto: proto, mode: .l2, backends: [])
        (steering.prefixLength, steering.portEnd) = (prefixLength, portEnd)
        try checkVIPAmbiguity(steering, previous: previous, node: node)

        let modeNode = try fields.required("mode")
        let mode: DSRMode = try modeNode.choice(what: "mode")

        let tableSizeNode = fields.optional("maglev_table_size")
        let tableSize = try tableSizeNode.map(decodeTableSize) ?? VIPConfig.defaultTableSize

        guard let backendsNode = fields.optional("backends") else {
            throw node.error("VIP \"\(name)\" has no backends")
        }
        let backends = try decodeBackends(backendsNode, mode: mode, vipName: name, vipFamily: address.family)
        if mode == .l3 { try checkPortsCanRoute(ports, family: backends[0].address.family, modeNode: modeNode) }
        // An IPv6 l2 backend without a MAC is resolved by neighbor solicitations from a port's address6: without one it
        // would stay unresolved, every packet for it dropped as unresolved-next-hop.
        if mode == .l2, address.family == .v6, !ports.contains(where: { $0.address6 != nil }),
           let index = backends.firstIndex(where: { $0.mac == nil }) {
            throw try backendsNode.sequence()[index].error("IPv6 backend \(backends[index].address) has no mac and no port has "
                + "address6, the source of the neighbor solicitations that resolve it: give a port address6 or the backend a mac")
        }
        try checkTableSize(tableSize, fits: backends.count, tableSizeNode: tableSizeNode, backendsNode: backendsNode)
        var vip = VIPConfig(name: name, address: address, port: port, proto: proto, mode: mode,
                            tableSize: tableSize, backends: backends, line: node.line)
        vip.hash = try fields.optional("hash")?.choice(what: "hash") ?? .fiveTuple
        vip.icmpEcho = try fields.optional("icmp_echo")?.bool() ?? true
        (vip.prefixLength, vip.portEnd) = (prefixLength, portEnd)
        vip.quic = try fields.optional("quic")?.bool() ?? false
        try checkQUIC(vip, quicNode: fields.optional("quic"), backendsNode: backendsNode)
        vip.encapsulation = try decodeEncapsulation(fields, mode: mode, outerFamily: backends[0].address.family)
        vip.healthCheck = try fields.optional("health_check").map { node throws(ConfigError) in
            try decodeHealthCheck(node, vipPort: port)
        }
        return vip
    }

    /// A port number 1...65535, or `"*"` for every port (nil).
    static func decodeVIPPortValue(_ node: ConfigNode) throws(ConfigError) -> UInt16? {
        if node.isInteger { return UInt16(try node.int(in: 1...65535)) }
        if case .scalar(let scalar) = node.node, scalar.string == "*" { return nil }
        throw node.error(
            "expected a port number (1...65535) or \"*\", got \(node.kindDescription)\(node.quotedNumberHint)")
    }

    /// l3 sends through each port's gateway of the backends' family, so every port needs one (its MAC may come
    /// from ARP or neighbor discovery); IPv6 tunnels also need the port's `address6` as their source.
    private static func checkPortsCanRoute(_ ports: [PortConfig], family: IPFamily, modeNode: ConfigNode) throws(ConfigError) {
        switch family {
        case .v4:
            if let port = ports.first(where: { $0.gateway == nil }) {
                throw modeNode.error("l3 needs a gateway on every port, but port \"\(port.name)\" has none")
            }
        case .v6:
            if let port = ports.first(where: { $0.address6 == nil || $0.gateway6 == nil }) {
                throw modeNode.error("l3 to IPv6 backends needs address6 and gateway6 on every port, but port "
                    + "\"\(port.name)\" has no \(port.address6 == nil ? "address6" : "gateway6")")
            }
        }
    }

    /// `health_check:` of a VIP; `port` defaults to the VIP's (required for a `*` VIP).
    private static func decodeHealthCheck(_ node: ConfigNode, vipPort: UInt16?) throws(ConfigError) -> HealthCheckConfig {
        let fields = try node.mapping(allowed: Key.healthCheck)
        let kind: HealthCheckConfig.Kind = try fields.optional("type")?.choice(what: "health check type") ?? .tcp
        guard let port = try fields.optional("port").map({ node throws(ConfigError) in UInt16(try node.int(in: 1...65535)) }) ?? vipPort else {
            throw node.error("a \"*\" VIP's health check needs a port")
        }
        var check = HealthCheckConfig(kind: kind, port: port)
        if let pathNode = fields.optional("path") {
            guard kind == .http else { throw pathNode.error("path applies to http checks only") }
            check.path = try pathNode.nonEmptyString()
            guard check.path.hasPrefix("/"), !check.path.contains(where: { $0.isWhitespace }) else {
                throw pathNode.error("expected an absolute URL path without spaces, got \"\(check.path)\"")
            }
        }
        if let statusNode = fields.optional("expect_status") {
            guard kind == .http else { throw statusNode.error("expect_status applies to http checks only") }
            check.expectStatus = try statusNode.int(in: 100...599)
        }
        check.intervalSeconds = Double(try fields.optional("interval")?.int(in: 1...3600) ?? 2)
        let timeoutNode = fields.optional("timeout")
        check.timeoutSeconds = Double(try timeoutNode?.int(in: 1...3600) ?? 1)
        if check.timeoutSeconds > check.intervalSeconds, let timeoutNode {
            throw timeoutNode.error("timeout \(Int(check.timeoutSeconds)) s is longer than the interval \(Int(check.intervalSeconds)) s")
        }
        check.rise = try fields.optional("rise")?.int(in: 1...100) ?? 2
        check.fall = try fields.optional("fall")?.int(in: 1...100) ?? 3
        return check
    }

    /// An 802.1Q VLAN id, 1...4094.
    private static func decodeVLAN(_ node: ConfigNode) throws(ConfigError) -> UInt16 {
        UInt16(try node.int(in: 1...4094))
    }

    private static func decodeTableSize(_ node: ConfigNode) throws(ConfigError) -> Int {
        let size = try node.int(in: VIPConfig.tableSizeRange)
        guard Maglev.isPrime(size) else {
            throw node.error("\(size) is not prime (Maglev needs a prime table size, e.g. \(nextPrime(atLeast: size)))")
        }
        return size
    }

    /// Maglev spreads well only with at least 100 table slots per backend.
    private static func checkTableSize(_ tableSize: Int, fits backendCount: Int, tableSizeNode: ConfigNode?,
                                       backendsNode: ConfigNode) throws(ConfigError) {
        let minimumSize = 100 * backendCount
        guard tableSize < minimumSize else { return }
        let advice = "a prime >= \(minimumSize), e.g. \(nextPrime(atLeast: minimumSize))"
        if let tableSizeNode {
            throw tableSizeNode.error("\(tableSize) is too small for \(backendCount) backends (needs \(advice))")
        }
        throw backendsNode.error("\(backendCount) backends are too many for the default "
            + "maglev_table_size \(tableSize); set maglev_table_size to \(advice)")
    }

    private static func endpoint(_ address: IPAddress, _ port: UInt16?, _ proto: L4Protocol) -> String {
        address.endpoint(port.map(String.init) ?? "*") + "/\(proto)"
    }

    // MARK: - Backends

    private static func decodeBackends(_ node: ConfigNode, mode: DSRMode, vipName: String,
                                       vipFamily: IPFamily) throws(ConfigError) -> [BackendConfig] {
        let items = try node.sequence()
        guard !items.isEmpty else { throw node.error("VIP \"\(vipName)\" has no backends") }
        guard items.count <= CounterSlots.maxBackends else {
            throw node.error("at most \(CounterSlots.maxBackends) backends in all, got \(items.count)")
        }
        var backends: [BackendConfig] = []
        for item in items {
            let backend = try decodeBackend(item, mode: mode, previous: backends)
            let family = backend.address.family
            if mode == .l2 && family != vipFamily {
                throw item.error("an l2 VIP's backends are of the VIP's family: \(backend.address) is \(family), the VIP "
                    + "is \(vipFamily) (l3 can tunnel \(vipFamily) to \(family) backends)")
            }
            if let first = backends.first, first.address.family != family {
                throw item.error("a VIP's backends are all of one family: \(backend.address) is \(family), "
                    + "backends[0] \(first.address) is \(first.address.family)")
            }
            if mode == .l3 && vipFamily == .v6 && family == .v4 {
                throw item.error("an IPv6 VIP cannot be tunnelled to IPv4 backends (6in4 is not supported); use IPv6 backends")
            }
            backends.append(backend)
        }
        return backends
    }

    private static func decodeBackend(_ node: ConfigNode, mode: DSRMode,
                                      previous: [BackendConfig]) throws(ConfigError) -> BackendConfig {
        let fields = try node.mapping(allowed: Key.backend)
        let addressNode = try fields.required("address")
        let address = try addressNode.hostIP()
        if let index = previous.firstIndex(where: { $0.address == address }) {
            throw addressNode.error("duplicate backend \(address) (already backends[\(index)])")
        }
        let mac = try fields.optional("mac")?.mac()
        let weight = try fields.optional("weight").map(decodeWeight) ?? 1
        var backend = BackendConfig(address: address, mac: mac, weight: weight, line: node.line)
        if let vlanNode = fields.optional("vlan") {
            guard mode == .l2 else {
                throw vlanNode.error("a backend vlan applies to l2 VIPs only (l3 output is tagged with the port's vlan)")
            }
            backend.vlan = try decodeVLAN(vlanNode)
        }
        backend.quicServerID = try fields.optional("quic_server_id").map { node throws(ConfigError) in
            UInt32(try node.int(in: 1...0xFF_FFFF))
        }
        return backend
    }

    private static func decodeWeight(_ node: ConfigNode) throws(ConfigError) -> Int {
        if node.isInteger, let weight = node.node.int, weight < 0 {
            throw node.error("must not be negative, got \(weight) (0 drains the backend)")
        }
        return try node.int(in: BackendConfig.weightRange)
    }

    // MARK: - Primes

    static func nextPrime(atLeast n: Int) -> Int {
        var candidate = max(n, 2)
        while !Maglev.isPrime(candidate) { candidate += 1 }
        return candidate
    }
}
