// The backend side of DSR, DPDK-free: the commands a backend host needs for a VIP, and a pure diagnosis of a host's observed state.

import Foundation

// MARK: - Commands

/// One command an operator runs on a backend host, with the comment printed above it (if any).
public struct BackendCommand: Sendable, Equatable, CustomStringConvertible {
    /// The program and its arguments (an interface name may hold any character Linux allows: `description`
    /// quotes what the shell would otherwise interpret).
    public var argv: [String]
    /// A `#` comment line printed before the command, saying why it is needed.
    public var comment: String?

    public init(_ argv: [String], comment: String? = nil) {
        self.argv = argv
        self.comment = comment
    }

    /// The command as one line of POSIX shell: arguments with anything but `[A-Za-z0-9_./=:@%+,-]` are single-quoted.
    public var description: String { argv.map(BackendCommand.shellQuoted).joined(separator: " ") }

    /// `word` as the shell reads it back unchanged: as is when it is made of safe characters, else in single quotes.
    /// A placeholder for the operator to fill in (`<backend-ip>`) is left as it is, to be edited, not run.
    public static func shellQuoted(_ word: String) -> String {
        let safe = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./=:@%+,-")
        if !word.isEmpty && word.allSatisfy(safe.contains) { return word }
        if word.count > 2, word.first == "<", word.last == ">", word.dropFirst().dropLast().allSatisfy({ $0.isLowercase || $0 == "-" }) {
            return word
        }
        return "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    /// `ip addr add ADDRESS/PREFIX dev DEV`.
    static func addAddress(_ address: IPv4Address, prefix: Int = 32, dev: String, comment: String? = nil) -> Self {
        Self(["ip", "addr", "add", "\(address)/\(prefix)", "dev", dev], comment: comment)
    }

    /// `ip addr del ADDRESS/PREFIX dev DEV`.
    static func deleteAddress(_ address: IPv4Address, prefix: Int, dev: String) -> Self {
        Self(["ip", "addr", "del", "\(address)/\(prefix)", "dev", dev])
    }

    /// `ip link set DEV up`.
    static func linkUp(_ dev: String) -> Self { Self(["ip", "link", "set", dev, "up"]) }

    /// `sysctl -w net.ipv4.conf.INTERFACE.KEY=VALUE` (`all` is an interface name here).
    static func sysctl(interface: String, _ key: String, _ value: Int, comment: String? = nil) -> Self {
        Self(["sysctl", "-w", "\(HostState.sysctlName(interface: interface, key))=\(value)"], comment: comment)
    }

    /// `modprobe ipip`.
    static func loadIpip(comment: String? = nil) -> Self { Self(["modprobe", "ipip"], comment: comment) }

    /// `ip link add NAME type ipip local LOCAL remote any`.
    static func createTunnel(_ name: String, local: String) -> Self {
        Self(["ip", "link", "add", name, "type", "ipip", "local", local, "remote", "any"])
    }

    /// `ip tunnel change NAME mode ipip local LOCAL remote any`: a new local end, keeping the tunnel's addresses.
    static func changeTunnelLocal(_ name: String, local: String) -> Self {
        Self(["ip", "tunnel", "change", name, "mode", "ipip", "local", local, "remote", "any"])
    }
}

// MARK: - What a backend needs

/// What one backend host must be set up for: one VIP in one DSR mode.
public struct BackendSetup: Sendable, Equatable {
    /// The tunnel interface the guide creates for l3.
    public static let tunnelName = "ipip0"
    /// The file `--persist` writes, under `/etc/sysctl.d` by default.
    public static let sysctlFileName = "99-dsr.conf"
    public static let defaultSysctlDirectory = "/etc/sysctl.d"
    /// Stands for the backend's own address in commands when it is not known.
    public static let addressPlaceholder = "<backend-ip>"
    /// The `rp_filter` value (loose) that lets decapsulated packets in: their source is the client, reached via another interface.
    static let looseReversePathFilter = 2

    public var vip: IPv4Address
    public var mode: DSRMode
    /// The backend's own address: the local end of the l3 tunnel (required to print l3 commands without a placeholder).
    public var backendAddress: IPv4Address?

    public init(vip: IPv4Address, mode: DSRMode, backendAddress: IPv4Address? = nil) {
        self.vip = vip
        self.mode = mode
        self.backendAddress = backendAddress
    }

    var tunnelLocal: String { backendAddress?.description ?? Self.addressPlaceholder }

    /// The guide's commands, in order. l3 adds the ipip tunnel holding the VIP and, beyond the guide, a loose reverse-path
    /// filter on the tunnel (a host with strict `rp_filter=1` silently drops every decapsulated packet).
    public var commands: [BackendCommand] {
        var list: [BackendCommand] = [
            .addAddress(vip, dev: "lo", comment: "Add the VIP to the loopback interface"),
            .sysctl(interface: "all", "arp_ignore", 1, comment: "Suppress ARP responses for the VIP"),
            .sysctl(interface: "all", "arp_announce", 2),
        ]
        if mode == .l3 {
            list += [
                .loadIpip(comment: "L3 DSR: an IP-in-IP tunnel receives the encapsulated packets and holds the VIP"),
                .createTunnel(Self.tunnelName, local: tunnelLocal),
                .linkUp(Self.tunnelName),
                .addAddress(vip, dev: Self.tunnelName),
                .sysctl(interface: Self.tunnelName, "rp_filter", Self.looseReversePathFilter,
                        comment: "Accept the decapsulated packets (client source address, arriving on the tunnel)"),
            ]
        }
        return list
    }

    /// The commands as a shell script: comments, then one command per line.
    public var script: String {
        var text = "# Tula DSR backend setup for VIP \(vip) (\(mode)); run as root on each backend.\n"
        for command in commands {
            if let comment = command.comment { text += "# \(comment)\n" }
            text += "\(command)\n"
        }
        return text
    }

    /// The `sysctl -w` settings of `commands` as `key=value` lines: the contents of `99-dsr.conf`.
    public var sysctlFile: String {
        let settings = commands.filter { $0.argv.first == "sysctl" }.map { $0.argv.last! }
        return "# Written by tula-appliance backend-setup: DSR backend for VIP \(vip) (\(mode)).\n"
            + settings.joined(separator: "\n") + "\n"
    }
}

// MARK: - What a host looks like

/// A snapshot of the parts of a Linux host that DSR depends on, as `ip -d -j addr show`, `/proc/sys/net/ipv4/conf`
/// and `/sys/module` show them. Filled in by the doctor; pure data, so the diagnosis is a pure function of it.
public struct HostState: Sendable, Equatable {
    /// One network interface.
    public struct Interface: Sendable, Equatable {
        public var name: String
        /// `linkinfo.info_kind` (`veth`, `ipip`, ...); nil for plain devices and loopback.
        public var kind: String?
        /// Flags as `ip` prints them (`UP`, `LOOPBACK`, `NOARP`, ...).
        public var flags: Set<String>
        /// IPv4 addresses with their prefix lengths.
        public var addresses: [InterfaceAddress]
        /// For tunnels: the local end (nil when `any`).
        public var tunnelLocal: IPv4Address?

        public init(name: String, kind: String? = nil, flags: Set<String>, addresses: [InterfaceAddress] = [],
                    tunnelLocal: IPv4Address? = nil) {
            self.name = name
            self.kind = kind
            self.flags = flags
            self.addresses = addresses
            self.tunnelLocal = tunnelLocal
        }

        public var isUp: Bool { flags.contains("UP") }
        public var isLoopback: Bool { flags.contains("LOOPBACK") }
        public var isIPIPTunnel: Bool { kind == "ipip" }
        /// Whether ARP requests can arrive here (and so the host could answer one for the VIP).
        public var answersARP: Bool { !isLoopback && !flags.contains("NOARP") }
        /// The prefix lengths with which `address` is configured here.
        func prefixes(of address: IPv4Address) -> [Int] { addresses.filter { $0.address == address }.map(\.prefixLength) }
    }

    /// An IPv4 address on an interface.
    public struct InterfaceAddress: Sendable, Equatable {
        public var address: IPv4Address
        public var prefixLength: Int
        public init(_ address: IPv4Address, _ prefixLength: Int) {
            self.address = address
            self.prefixLength = prefixLength
        }
    }

    /// The sysctl keys the diagnosis reads from `net.ipv4.conf.<interface>`.
    public static let sysctlKeys = ["arp_ignore", "arp_announce", "rp_filter"]

    public var interfaces: [Interface]
    /// `net.ipv4.conf.<name>.<key>` values by name (`all`, `default` and each interface) and key; a missing value reads as 0.
    public var conf: [String: [String: Int]]
    /// Whether the `ipip` module is loaded or built in.
    public var ipipModuleLoaded: Bool

    public init(interfaces: [Interface], conf: [String: [String: Int]], ipipModuleLoaded: Bool) {
        self.interfaces = interfaces
        self.conf = conf
        self.ipipModuleLoaded = ipipModuleLoaded
    }

    /// `net.ipv4.conf.<interface>.<key>`; a dot in an interface name (a VLAN, `eth0.100`) is written `/` in sysctl keys.
    public static func sysctlName(interface: String, _ key: String) -> String {
        "net.ipv4.conf.\(interface.replacingOccurrences(of: ".", with: "/")).\(key)"
    }

    /// A conf value, 0 when absent.
    public func value(_ interface: String, _ key: String) -> Int { conf[interface]?[key] ?? 0 }

    public func interface(named name: String) -> Interface? { interfaces.first { $0.name == name } }

    /// The host's own address when there is exactly one global IPv4 address on its up, ARP-capable interfaces
    /// (other than `vip`): the natural local end of an l3 tunnel.
    public func primaryAddress(excluding vip: IPv4Address) -> IPv4Address? {
        let candidates = Set(interfaces.filter { $0.isUp && $0.answersARP && !$0.isIPIPTunnel }
            .flatMap(\.addresses).map(\.address).filter { $0 != vip })
        return candidates.count == 1 ? candidates.first : nil
    }

    /// The interfaces from `ip -d -j addr show` output (IPv4 addresses only).
    public static func interfaces(fromIPAddressJSON data: Data) throws -> [Interface] {
        guard let list = try JSONSerialization.jsonObject(with: data) as? [[String: Any]] else {
            throw HostStateError("`ip -j addr show` did not print a JSON array")
        }
        return list.compactMap { item in
            guard let name = item["ifname"] as? String else { return nil }
            let linkInfo = item["linkinfo"] as? [String: Any]
            let info = linkInfo?["info_data"] as? [String: Any]
            let addresses = (item["addr_info"] as? [[String: Any]] ?? []).compactMap { a -> InterfaceAddress? in
                guard a["family"] as? String == "inet", let text = a["local"] as? String, let address = IPv4Address(text),
                      let prefix = a["prefixlen"] as? Int else { return nil }
                return InterfaceAddress(address, prefix)
            }
            return Interface(name: name, kind: linkInfo?["info_kind"] as? String, flags: Set(item["flags"] as? [String] ?? []),
                             addresses: addresses, tunnelLocal: (info?["local"] as? String).flatMap(IPv4Address.init))
        }
    }
}

/// A host observation that could not be read or parsed.
public struct HostStateError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

// MARK: - Diagnosis

/// The things the doctor checks, in the order their fixes must run.
public enum BackendCheck: String, Sendable, CaseIterable {
    case vipOnLoopback = "vip-on-lo"
    case vipNotElsewhere = "vip-not-elsewhere"
    case arpIgnore = "arp_ignore"
    case arpAnnounce = "arp_announce"
    case ipipModule = "ipip-module"
    case tunnel = "tunnel"
    case vipOnTunnel = "vip-on-tunnel"
    case tunnelReversePathFilter = "tunnel-rp_filter"
}

/// The result of one check: fine, or a problem with the commands that fix it.
public struct BackendFinding: Sendable, Equatable {
    public var check: BackendCheck
    public var isProblem: Bool
    public var message: String
    /// Commands that fix the problem, in order; empty when the check passed.
    public var fixes: [BackendCommand]

    static func ok(_ check: BackendCheck, _ message: String) -> Self {
        Self(check: check, isProblem: false, message: message, fixes: [])
    }
    static func problem(_ check: BackendCheck, _ message: String, fix: [BackendCommand]) -> Self {
        Self(check: check, isProblem: true, message: message, fixes: fix)
    }
}

/// Every finding for one host and one `BackendSetup`.
public struct BackendDiagnosis: Sendable, Equatable {
    public var findings: [BackendFinding]

    public var problems: [BackendFinding] { findings.filter(\.isProblem) }
    public var isHealthy: Bool { problems.isEmpty }
    /// Every fix, in check order, without repeats: what `backend-setup --apply` runs.
    public var fixes: [BackendCommand] {
        var seen: [[String]] = []
        return problems.flatMap(\.fixes).filter { fix in
            if seen.contains(fix.argv) { return false }
            seen.append(fix.argv)
            return true
        }
    }

    /// One `ok` or `problem` line per finding, each problem followed by its `fix:` lines.
    public var report: String {
        findings.map { f in
            f.isProblem ? (["problem  \(f.message)"] + f.fixes.map { "         fix: \($0)" }).joined(separator: "\n")
                        : "ok       \(f.message)"
        }.joined(separator: "\n") + "\n"
    }
}

extension BackendSetup {
    /// Checks `host` against what this setup needs, naming each problem with its fix. Pure: everything comes from `host`.
    /// Effective kernel values are `max(all, interface)` for arp_ignore, arp_announce and rp_filter, as the kernel uses them.
    public func diagnose(_ host: HostState) -> BackendDiagnosis {
        var findings = [vipPlacement(on: "lo", check: .vipOnLoopback, host: host), vipNotElsewhere(host),
                        arpIgnore(host), arpAnnounce(host)]
        if mode == .l3 {
            let tunnel = self.tunnel(in: host)
            findings += [ipipModule(host), tunnelFinding(tunnel, host: host),
                         vipPlacement(on: tunnel?.name ?? Self.tunnelName, check: .vipOnTunnel, host: host),
                         tunnelReversePathFilter(tunnel, host: host)]
        }
        return BackendDiagnosis(findings: findings)
    }

    /// The ipip tunnel that holds (or should hold) the VIP: one holding it, else `ipip0`.
    func tunnel(in host: HostState) -> HostState.Interface? {
        let tunnels = host.interfaces.filter(\.isIPIPTunnel)
        return tunnels.first { !$0.prefixes(of: vip).isEmpty } ?? tunnels.first { $0.name == Self.tunnelName }
    }

    /// The VIP is on `dev` as a /32, and `dev` is up.
    func vipPlacement(on dev: String, check: BackendCheck, host: HostState) -> BackendFinding {
        let interface = host.interface(named: dev)
        let prefixes = interface?.prefixes(of: vip) ?? []
        if prefixes.isEmpty {
            return .problem(check, "the VIP \(vip) is not on \(dev): the kernel drops the packets Tula sends for it",
                            fix: [.addAddress(vip, dev: dev)] + (interface.map { $0.isUp ? [] : [.linkUp(dev)] } ?? []))
        }
        if let wide = prefixes.first(where: { $0 != 32 }) {
            return .problem(check, "the VIP is on \(dev) as \(vip)/\(wide), not /32: the host takes the whole subnet as local",
                            fix: [.deleteAddress(vip, prefix: wide, dev: dev)] + (prefixes.contains(32) ? [] : [.addAddress(vip, dev: dev)]))
        }
        if let interface, !interface.isUp {
            return .problem(check, "\(dev) holds the VIP but is down", fix: [.linkUp(dev)])
        }
        return .ok(check, "the VIP \(vip)/32 is on \(dev)")
    }

    /// The VIP is on no interface where ARP arrives (the host would answer ARP for it and take traffic from Tula).
    func vipNotElsewhere(_ host: HostState) -> BackendFinding {
        let holders = host.interfaces.filter { $0.answersARP && !$0.prefixes(of: vip).isEmpty }
        guard !holders.isEmpty else { return .ok(.vipNotElsewhere, "the VIP is on no ARP-speaking interface") }
        return .problem(.vipNotElsewhere,
                        "the VIP is on \(holders.map(\.name).joined(separator: ", ")): the host answers ARP for it and takes the VIP from Tula",
                        fix: holders.flatMap { i in i.prefixes(of: vip).map { BackendCommand.deleteAddress(vip, prefix: $0, dev: i.name) } })
    }

    /// The interfaces whose effective ARP settings matter: the up, ARP-speaking ones; `default` (future interfaces) if none.
    func arpInterfaces(_ host: HostState) -> [String] {
        let names = host.interfaces.filter { $0.isUp && $0.answersARP }.map(\.name)
        return names.isEmpty ? ["default"] : names
    }

    /// Effective `arp_ignore` must be 1 or 2: answer ARP only for addresses on the receiving interface (never the VIP on lo).
    func arpIgnore(_ host: HostState) -> BackendFinding {
        let good = 1...2
        return effectiveSetting(.arpIgnore, host: host, want: "1 or 2", isGood: good.contains,
                                harm: "the host must answer ARP only for addresses of the receiving interface, never for the VIP") { all, own, name in
            (all > good.upperBound || max(all, own) < good.lowerBound ? [.sysctl(interface: "all", "arp_ignore", 1)] : [])
                + (own > good.upperBound ? [.sysctl(interface: name, "arp_ignore", 1)] : [])
        }
    }

    /// Effective `arp_announce` must be 2: ARP requests carry the interface's own address, never the VIP.
    func arpAnnounce(_ host: HostState) -> BackendFinding {
        effectiveSetting(.arpAnnounce, host: host, want: "2", isGood: { $0 >= 2 },
                         harm: "ARP requests must carry the interface's own address, never the VIP (that teaches the segment this MAC for it)") { _, _, _ in
            [.sysctl(interface: "all", "arp_announce", 2)]
        }
    }

    /// Checks the sysctl named by `check` on every ARP-speaking interface, where the kernel uses `max(all, interface)`.
    /// `fix(all, own, interface)` gives the commands that make one interface's effective value good.
    func effectiveSetting(_ check: BackendCheck, host: HostState, want: String, isGood: (Int) -> Bool, harm: String,
                          fix: (Int, Int, String) -> [BackendCommand]) -> BackendFinding {
        let key = check.rawValue, all = host.value("all", key)
        var good: [String] = [], bad: [String] = [], fixes: [BackendCommand] = []
        for name in arpInterfaces(host) {
            let own = host.value(name, key)
            let text = "\(name == "default" ? "new interfaces" : name) (\(effective(key, all: all, name, own)))"
            guard !isGood(max(all, own)) else { good.append(text); continue }
            bad.append(text)
            for command in fix(all, own, name) where !fixes.contains(command) { fixes.append(command) }
        }
        return bad.isEmpty ? .ok(check, "\(key) is \(want) on \(good.joined(separator: ", "))")
            : .problem(check, "\(key) must be \(want) on \(bad.joined(separator: ", ")): \(harm)", fix: fixes)
    }

    /// `effective KEY N = max(all=A, NAME=B)`.
    func effective(_ key: String, all: Int, _ name: String, _ own: Int) -> String {
        "effective \(key) \(max(all, own)) = max(all=\(all), \(name)=\(own))"
    }

    func ipipModule(_ host: HostState) -> BackendFinding {
        host.ipipModuleLoaded ? .ok(.ipipModule, "the ipip module is loaded")
            : .problem(.ipipModule, "the ipip kernel module is not loaded: the host cannot decapsulate IP-in-IP", fix: [.loadIpip()])
    }

    /// The tunnel exists, is up, and its local end is the backend's address (when known).
    func tunnelFinding(_ tunnel: HostState.Interface?, host: HostState) -> BackendFinding {
        let local = backendAddress ?? host.primaryAddress(excluding: vip)
        guard let tunnel else {
            return .problem(.tunnel, "there is no ipip tunnel (\(Self.tunnelName)) to receive the encapsulated packets",
                            fix: [.createTunnel(Self.tunnelName, local: local?.description ?? Self.addressPlaceholder), .linkUp(Self.tunnelName)])
        }
        if let local, let configured = tunnel.tunnelLocal, configured != local {
            return .problem(.tunnel, "\(tunnel.name)'s local end is \(configured), but Tula sends to \(local)",
                            fix: [.changeTunnelLocal(tunnel.name, local: local.description)] + (tunnel.isUp ? [] : [.linkUp(tunnel.name)]))
        }
        guard tunnel.isUp else { return .problem(.tunnel, "the tunnel \(tunnel.name) is down", fix: [.linkUp(tunnel.name)]) }
        return .ok(.tunnel, "the ipip tunnel \(tunnel.name) is up (local \(tunnel.tunnelLocal?.description ?? "any"))")
    }

    /// Strict reverse-path filtering (effective 1) drops decapsulated packets: their source, the client, is routed elsewhere.
    func tunnelReversePathFilter(_ tunnel: HostState.Interface?, host: HostState) -> BackendFinding {
        let name = tunnel?.name ?? Self.tunnelName
        let source = tunnel == nil ? "default" : name  // a tunnel yet to be created starts with the `default` value
        let key = "rp_filter", all = host.value("all", key), own = host.value(source, key)
        let values = effective(key, all: all, source, own)
        guard max(all, own) == 1 else { return .ok(.tunnelReversePathFilter, "rp_filter on \(name) is not strict (\(values))") }
        return .problem(.tunnelReversePathFilter, "rp_filter on \(name) is strict (\(values)): decapsulated client packets are dropped",
                        fix: [.sysctl(interface: name, key, Self.looseReversePathFilter)])
    }
}
