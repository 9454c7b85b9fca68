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

    /// `ip addr add ADDRESS/PREFIX dev DEV` for IPv4; `ip -6 addr add ADDRESS/PREFIX dev DEV nodad` for IPv6 (no
    /// duplicate address detection: a VIP is an address Tula answers for, so a DAD probe for it on a segment with Tula
    /// would fail; on `lo` and tunnels, which are NOARP, the kernel skips DAD anyway).
    static func addAddress(_ address: IPAddress, prefix: Int? = nil, dev: String, comment: String? = nil) -> Self {
        let text = "\(address)/\(prefix ?? address.hostPrefix)"
        return Self(address.family == .v4 ? ["ip", "addr", "add", text, "dev", dev] : ["ip", "-6", "addr", "add", text, "dev", dev, "nodad"],
                    comment: comment)
    }

    /// `ip addr del ADDRESS/PREFIX dev DEV` (`ip -6 addr del` for IPv6).
    static func deleteAddress(_ address: IPAddress, prefix: Int, dev: String) -> Self {
        Self(["ip"] + (address.family == .v4 ? [] : ["-6"]) + ["addr", "del", "\(address)/\(prefix)", "dev", dev])
    }

    /// `ip link set DEV up`.
    static func linkUp(_ dev: String) -> Self { Self(["ip", "link", "set", dev, "up"]) }

    /// `sysctl -w net.ipv4.conf.INTERFACE.KEY=VALUE` (`net.ipv6.conf` for `.v6`; `all` is an interface name here).
    static func sysctl(interface: String, _ key: String, _ value: Int, family: IPFamily = .v4, comment: String? = nil) -> Self {
        Self(["sysctl", "-w", "\(HostState.sysctlName(interface: interface, key, family: family))=\(value)"], comment: comment)
    }

    /// `modprobe MODULE`.
    static func loadModule(_ module: String, comment: String? = nil) -> Self { Self(["modprobe", module], comment: comment) }

    /// The tunnel's creation: `ip link add NAME type ipip local LOCAL remote any` for IPv4 outer headers,
    /// `ip -6 tunnel add NAME mode ip6ip6|ipip6 local LOCAL remote any` for IPv6 ones.
    static func createTunnel(_ tunnel: BackendTunnel, name: String, local: String) -> Self {
        switch tunnel {
        case .ipip: Self(["ip", "link", "add", name, "type", "ipip", "local", local, "remote", "any"])
        case .ip6ip6, .ipip6, .ip6gre: Self(["ip", "-6", "tunnel", "add", name, "mode", tunnel.mode, "local", local, "remote", "any"])
        case .gre: Self(["ip", "tunnel", "add", name, "mode", "gre", "local", local, "remote", "any"])
        }
    }

    /// `ip tunnel change NAME mode ipip local LOCAL remote any` (`ip -6 tunnel change ... mode ip6ip6|ipip6` for IPv6):
    /// a new local end (and mode), keeping the tunnel's addresses.
    static func changeTunnel(_ tunnel: BackendTunnel, name: String, local: String) -> Self {
        Self(["ip"] + (tunnel.outerFamily == .v4 ? [] : ["-6"]) + ["tunnel", "change", name, "mode", tunnel.mode, "local", local, "remote", "any"])
    }
}

extension IPAddress {
    /// The prefix length of a single host: 32 or 128.
    var hostPrefix: Int { family == .v4 ? 32 : 128 }

    /// fe80::/10: an address that never names a host beyond its link.
    var isLinkLocal: Bool { v6.map { $0.hi >> 54 == 0x3FA } ?? false }
}

// MARK: - What a backend needs

/// The tunnel an l3 backend decapsulates Tula's packets with, by the VIP's family and the outer header's.
public enum BackendTunnel: Sendable, Equatable, CaseIterable {
    /// IPv4 VIP over IPv4 (IP-in-IP, protocol 4): `ipip`.
    case ipip
    /// IPv6 VIP over IPv6 (6in6, next header 41): `ip6tnl` in mode `ip6ip6`.
    case ip6ip6
    /// IPv4 VIP over IPv6 (4in6, next header 4): `ip6tnl` in mode `ipip6`.
    case ipip6
    /// `encap: gre` with IPv4 outer headers (protocol 47): `gre` (BackendEncapsulation.swift).
    case gre
    /// `encap: gre` with IPv6 outer headers (next header 47): `ip6gre`.
    case ip6gre

    /// The interface the setup creates.
    public var name: String {
        switch self {
        case .ipip: BackendSetup.tunnelName
        case .ip6ip6, .ipip6: BackendSetup.tunnel6Name
        case .gre: BackendSetup.greTunnelName
        case .ip6gre: BackendSetup.gre6TunnelName
        }
    }
    /// The kernel module that decapsulates.
    public var module: String {
        switch self {
        case .ipip: "ipip"
        case .ip6ip6, .ipip6: "ip6_tunnel"
        case .gre: "ip_gre"
        case .ip6gre: "ip6_gre"
        }
    }
    /// `linkinfo.info_kind` of such an interface in `ip -d -j addr show`.
    var linkKind: String {
        switch self {
        case .ipip: "ipip"
        case .ip6ip6, .ipip6: "ip6tnl"
        case .gre: "gre"
        case .ip6gre: "ip6gre"
        }
    }
    /// The `mode` word of `ip tunnel` (and `proto` in `ip -d -j` output for ip6tnl).
    var mode: String {
        switch self {
        case .ipip: "ipip"
        case .ip6ip6: "ip6ip6"
        case .ipip6: "ipip6"
        case .gre: "gre"
        case .ip6gre: "ip6gre"
        }
    }
    /// The family of the outer header Tula adds.
    public var outerFamily: IPFamily { self == .ipip || self == .gre ? .v4 : .v6 }
    /// What Tula sends through it, for messages.
    var payload: String {
        switch self {
        case .ipip: "IP-in-IP"
        case .ip6ip6: "6in6 (IPv6 in IPv6, next header 41)"
        case .ipip6: "4in6 (IPv4 in IPv6, next header 4)"
        case .gre: "GRE (protocol 47)"
        case .ip6gre: "GRE over IPv6 (next header 47)"
        }
    }
}

/// What one backend host must be set up for: one VIP in one DSR mode.
public struct BackendSetup: Sendable, Equatable {
    /// The tunnel interface the guide creates for l3 with IPv4 outer headers.
    public static let tunnelName = "ipip0"
    /// The tunnel interface created for l3 with IPv6 outer headers (6in6 or 4in6); `ip6tnl0` is the module's own
    /// catch-all device, which cannot take a local address.
    public static let tunnel6Name = "ip6tnl1"
    /// The GRE tunnels (`encap: gre`); `gre0` and `ip6gre0` are the modules' own catch-all devices.
    public static let greTunnelName = "gre1"
    public static let gre6TunnelName = "ip6gre1"
    /// The file `--persist` writes, under `/etc/sysctl.d` by default.
    public static let sysctlFileName = "99-dsr.conf"
    public static let defaultSysctlDirectory = "/etc/sysctl.d"
    /// Stands for the backend's own address in commands when it is not known.
    public static let addressPlaceholder = "<backend-ip>"
    /// The `rp_filter` value (loose) that lets decapsulated packets in: their source is the client, reached via another interface.
    static let looseReversePathFilter = 2

    public var vip: IPAddress
    public var mode: DSRMode
    /// The backend's own address: the local end of the l3 tunnel (required to print l3 commands without a placeholder).
    /// Its family is the family of Tula's outer header: an IPv4 VIP with an IPv6 backend address is 4in6.
    public var backendAddress: IPAddress?

    /// The VIP's `encap` (l3): GRE swaps the tunnel; GUE adds a `fou` port in front of the IP-in-IP one.
    public var encap: Encapsulation = .ipip
    /// The VIP's `gue_port` (GUE only).
    public var guePort: UInt16 = Encapsulation.defaultGUEPort

    public init(vip: IPAddress, mode: DSRMode, backendAddress: IPAddress? = nil, encap: Encapsulation = .ipip,
                guePort: UInt16 = Encapsulation.defaultGUEPort) {
        self.vip = vip
        self.mode = mode
        self.backendAddress = backendAddress
        self.encap = encap
        self.guePort = guePort
    }

    public init(vip: IPv4Address, mode: DSRMode, backendAddress: IPv4Address? = nil) {
        self.init(vip: .v4(vip), mode: mode, backendAddress: backendAddress.map(IPAddress.v4))
    }

    /// Why Tula cannot send this VIP to this backend, or nil: an IPv6 VIP is tunnelled only to IPv6 backends.
    public var unsupportedReason: String? {
        guard mode == .l3, vip.family == .v6, let backendAddress, backendAddress.family == .v4 else { return nil }
        return "an IPv6 VIP cannot be tunnelled to an IPv4 backend address (6in4 is not supported): use the backend's IPv6 address"
    }

    /// The l3 tunnel: the VIP's family inside, the backend address's outside (the VIP's own family without one; an IPv6
    /// VIP always has an IPv6 outer header).
    public var tunnel: BackendTunnel {
        if mode == .l3 && encap == .gre { return (backendAddress?.family ?? vip.family) == .v4 ? .gre : .ip6gre }
        return switch (vip.family, backendAddress?.family ?? vip.family) {
        case (.v4, .v4): .ipip
        case (.v4, .v6): .ipip6
        case (.v6, _): .ip6ip6
        }
    }

    var tunnelLocal: String { backendAddress?.description ?? Self.addressPlaceholder }

    /// The guide's commands, in order. An IPv4 VIP goes on `lo` with ARP suppressed; an IPv6 VIP only on `lo` (with
    /// `nodad`): Linux answers a neighbor solicitation only for an address of the interface it arrived on, and solicits
    /// from that interface's own addresses, so there is nothing to suppress. l3 adds the tunnel holding the VIP and, for
    /// an IPv4 VIP, beyond the guide, a loose reverse-path filter on the tunnel (a host with strict `rp_filter=1` silently
    /// drops every decapsulated packet; IPv6 has no such sysctl).
    public var commands: [BackendCommand] {
        var list: [BackendCommand]
        switch vip {
        case .v4:
            list = [
                .addAddress(vip, dev: "lo", comment: "Add the VIP to the loopback interface"),
                .sysctl(interface: "all", "arp_ignore", 1, comment: "Suppress ARP responses for the VIP"),
                .sysctl(interface: "all", "arp_announce", 2),
            ]
        case .v6:
            list = [.addAddress(vip, dev: "lo", comment: "Add the VIP to the loopback interface (no sysctl: Linux answers neighbor "
                                + "solicitations only for addresses of the receiving interface)")]
        }
        if mode == .l3 {
            let t = tunnel
            list += [
                .loadModule(t.module, comment: t == .ipip ? "L3 DSR: an IP-in-IP tunnel receives the encapsulated packets and holds the VIP"
                                : "L3 DSR: a\(t == .ip6gre ? "n" : "") \(t.linkKind) tunnel receives the encapsulated packets, \(t.payload), and holds the VIP"),
                .createTunnel(t, name: t.name, local: tunnelLocal),
                .linkUp(t.name),
                .addAddress(vip, dev: t.name),
            ] + gueCommands
            if vip.family == .v4 {
                list.append(.sysctl(interface: t.name, "rp_filter", Self.looseReversePathFilter,
                                    comment: "Accept the decapsulated packets (client source address, arriving on the tunnel)"))
            }
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

    /// The `sysctl -w` settings of `commands` as `key=value` lines (none for an IPv6 VIP in l2 or 6in6).
    public var sysctlSettings: [String] { commands.filter { $0.argv.first == "sysctl" }.map { $0.argv.last! } }

    /// The contents of `99-dsr.conf`: the settings, after a comment line.
    public var sysctlFile: String {
        "# Written by tula-appliance backend-setup: DSR backend for VIP \(vip) (\(mode)).\n"
            + sysctlSettings.joined(separator: "\n") + "\n"
    }
}

// MARK: - What a host looks like

/// A snapshot of the parts of a Linux host that DSR depends on, as `ip -d -j addr show`, `/proc/sys/net/ipv4/conf`,
/// `/proc/sys/net/ipv6/conf` and `/sys/module` show them. Filled in by the doctor; pure data, so the diagnosis is a pure
/// function of it.
public struct HostState: Sendable, Equatable {
    /// One network interface.
    public struct Interface: Sendable, Equatable {
        public var name: String
        /// `linkinfo.info_kind` (`veth`, `ipip`, `ip6tnl`, ...); nil for plain devices and loopback.
        public var kind: String?
        /// Flags as `ip` prints them (`UP`, `LOOPBACK`, `NOARP`, ...).
        public var flags: Set<String>
        /// IPv4 and IPv6 addresses with their prefix lengths.
        public var addresses: [InterfaceAddress]
        /// For tunnels: the local end (nil when `any`).
        public var tunnelLocal: IPAddress?
        /// For ip6tnl tunnels: `ip6ip6`, `ipip6` or `any` (what it decapsulates).
        public var tunnelMode: String?

        public init(name: String, kind: String? = nil, flags: Set<String>, addresses: [InterfaceAddress] = [],
                    tunnelLocal: IPAddress? = nil, tunnelMode: String? = nil) {
            self.name = name
            self.kind = kind
            self.flags = flags
            self.addresses = addresses
            self.tunnelLocal = tunnelLocal
            self.tunnelMode = tunnelMode
        }

        public var isUp: Bool { flags.contains("UP") }
        public var isLoopback: Bool { flags.contains("LOOPBACK") }
        public var isIPIPTunnel: Bool { kind == "ipip" }
        /// An IPv4 or IPv6 tunnel (the interfaces that hold the VIP for l3, never a host's own address).
        var isTunnel: Bool { ["ipip", "ip6tnl", "gre", "ip6gre"].contains(kind ?? "") }
        /// Whether ARP requests and neighbor solicitations can arrive here (and so the host could answer one for the VIP).
        public var answersARP: Bool { !isLoopback && !flags.contains("NOARP") }
        /// The prefix lengths with which `address` is configured here.
        func prefixes(of address: IPAddress) -> [Int] { addresses.filter { $0.address == address }.map(\.prefixLength) }
    }

    /// An IPv4 or IPv6 address on an interface.
    public struct InterfaceAddress: Sendable, Equatable {
        public var address: IPAddress
        public var prefixLength: Int
        public init(_ address: IPAddress, _ prefixLength: Int) {
            self.address = address
            self.prefixLength = prefixLength
        }
        public init(_ address: IPv4Address, _ prefixLength: Int) { self.init(.v4(address), prefixLength) }
    }

    /// The sysctl keys the diagnosis reads from `net.ipv4.conf.<interface>`.
    public static let sysctlKeys = ["arp_ignore", "arp_announce", "rp_filter"]
    /// The sysctl keys the diagnosis reads from `net.ipv6.conf.<interface>`.
    public static let sysctl6Keys = ["disable_ipv6"]

    public var interfaces: [Interface]
    /// `net.ipv4.conf.<name>.<key>` values by name (`all`, `default` and each interface) and key; a missing value reads as 0.
    public var conf: [String: [String: Int]]
    /// `net.ipv6.conf.<name>.<key>` values, the same way (the doctor records `disable_ipv6` as 1 where IPv6 is absent).
    public var conf6: [String: [String: Int]]
    /// Whether the `ipip` module is loaded or built in.
    public var ipipModuleLoaded: Bool
    /// Whether the `ip6_tunnel` module is loaded or built in.
    public var ip6TunnelModuleLoaded: Bool
    /// Other modules loaded or built in, of `HostState.otherModules` (`fou`, `ip_gre`, `ip6_gre`).
    public var modulesLoaded: Set<String> = []
    /// The `ip fou show` / `ip -6 fou show` receive ports (GUE or a fixed IP protocol).
    public var fouPorts: [FouPort] = []

    public init(interfaces: [Interface], conf: [String: [String: Int]], ipipModuleLoaded: Bool,
                conf6: [String: [String: Int]] = [:], ip6TunnelModuleLoaded: Bool = false) {
        self.interfaces = interfaces
        self.conf = conf
        self.ipipModuleLoaded = ipipModuleLoaded
        self.conf6 = conf6
        self.ip6TunnelModuleLoaded = ip6TunnelModuleLoaded
    }

    /// `net.ipv4.conf.<interface>.<key>` (`net.ipv6.conf` for `.v6`); a dot in an interface name (a VLAN, `eth0.100`)
    /// is written `/` in sysctl keys.
    public static func sysctlName(interface: String, _ key: String, family: IPFamily = .v4) -> String {
        "net.ipv\(family == .v4 ? 4 : 6).conf.\(interface.replacingOccurrences(of: ".", with: "/")).\(key)"
    }

    /// A conf value, 0 when absent.
    public func value(_ interface: String, _ key: String) -> Int { conf[interface]?[key] ?? 0 }

    /// An IPv6 conf value, 0 when absent.
    public func value6(_ interface: String, _ key: String) -> Int { conf6[interface]?[key] ?? 0 }

    public func interface(named name: String) -> Interface? { interfaces.first { $0.name == name } }

    /// The host's own address of `family` when there is exactly one global one on its up, ARP-capable interfaces (other
    /// than `vip`; IPv6 link-local addresses do not count): the natural local end of an l3 tunnel.
    public func primaryAddress(_ family: IPFamily, excluding vip: IPAddress) -> IPAddress? {
        let candidates = Set(interfaces.filter { $0.isUp && $0.answersARP && !$0.isTunnel }.flatMap(\.addresses).map(\.address)
            .filter { $0.family == family && $0 != vip && !$0.isLinkLocal })
        return candidates.count == 1 ? candidates.first : nil
    }

    /// The interfaces from `ip -d -j addr show` output (IPv4 and IPv6 addresses).
    public static func interfaces(fromIPAddressJSON data: Data) throws -> [Interface] {
        guard let list = try JSONSerialization.jsonObject(with: data) as? [[String: Any]] else {
            throw HostStateError("`ip -j addr show` did not print a JSON array")
        }
        return list.compactMap { item in
            guard let name = item["ifname"] as? String else { return nil }
            let linkInfo = item["linkinfo"] as? [String: Any]
            let info = linkInfo?["info_data"] as? [String: Any]
            let kind = linkInfo?["info_kind"] as? String
            let addresses = (item["addr_info"] as? [[String: Any]] ?? []).compactMap { a -> InterfaceAddress? in
                guard let family = a["family"] as? String, family == "inet" || family == "inet6",
                      let text = a["local"] as? String, let address = IPAddress(text), address.family == (family == "inet" ? .v4 : .v6),
                      let prefix = a["prefixlen"] as? Int else { return nil }
                return InterfaceAddress(address, prefix)
            }
            // `any` (ipip) and `::` (ip6tnl) are a wildcard local end.
            let local = (info?["local"] as? String).flatMap(IPAddress.init).flatMap { $0.v6?.isUnspecified == true ? nil : $0 }
            return Interface(name: name, kind: kind, flags: Set(item["flags"] as? [String] ?? []), addresses: addresses,
                             tunnelLocal: local, tunnelMode: kind == "ip6tnl" ? info?["proto"] as? String : nil)
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
    case ipv6OnLoopback = "ipv6-on-lo"
    case vipOnLoopback = "vip-on-lo"
    case vipNotElsewhere = "vip-not-elsewhere"
    case arpIgnore = "arp_ignore"
    case arpAnnounce = "arp_announce"
    case ipipModule = "ipip-module"
    case ip6TunnelModule = "ip6_tunnel-module"
    case greModule = "gre-module"
    case tunnel = "tunnel"
    case ipv6OnTunnel = "ipv6-on-tunnel"
    case vipOnTunnel = "vip-on-tunnel"
    case tunnelReversePathFilter = "tunnel-rp_filter"
    case fouModule = "fou-module"
    case guePort = "gue-port"
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
    /// Effective kernel values are `max(all, interface)` for arp_ignore, arp_announce and rp_filter, as the kernel uses them;
    /// `disable_ipv6` is per interface (writing `all` only copies the value to every interface).
    public func diagnose(_ host: HostState) -> BackendDiagnosis {
        var findings: [BackendFinding] = []
        if vip.family == .v6 { findings.append(ipv6Enabled(on: "lo", check: .ipv6OnLoopback, host: host)) }
        findings += [vipPlacement(on: "lo", check: .vipOnLoopback, host: host), vipNotElsewhere(host)]
        if vip.family == .v4 { findings += [arpIgnore(host), arpAnnounce(host)] }
        if mode == .l3 {
            let device = self.tunnel(in: host), name = device?.name ?? tunnel.name
            findings += [tunnelModule(host), tunnelFinding(device, host: host)]
            if vip.family == .v6 { findings.append(ipv6Enabled(on: name, check: .ipv6OnTunnel, host: host, inheritsDefault: device == nil)) }
            findings.append(vipPlacement(on: name, check: .vipOnTunnel, host: host))
            if vip.family == .v4 { findings.append(tunnelReversePathFilter(device, host: host)) }
            if encap == .gue { findings += gueFindings(host) }
        }
        return BackendDiagnosis(findings: findings)
    }

    /// The tunnel that holds (or should hold) the VIP: one of the right kind holding it, else the one the setup creates.
    func tunnel(in host: HostState) -> HostState.Interface? {
        let tunnels = host.interfaces.filter { $0.kind == tunnel.linkKind }
        return tunnels.first { !$0.prefixes(of: vip).isEmpty } ?? tunnels.first { $0.name == tunnel.name }
    }

    /// IPv6 is on for `dev` (`net.ipv6.conf.<dev>.disable_ipv6` is 0); a device yet to be created starts with `default`'s value.
    func ipv6Enabled(on dev: String, check: BackendCheck, host: HostState, inheritsDefault: Bool = false) -> BackendFinding {
        let source = inheritsDefault ? "default" : dev, key = "disable_ipv6", value = host.value6(source, key)
        guard value != 0 else { return .ok(check, "IPv6 is enabled on \(dev)") }
        let state = inheritsDefault ? "\(dev) would start with IPv6 disabled" : "IPv6 is disabled on \(dev)"
        return .problem(check, "\(state) (\(HostState.sysctlName(interface: source, key, family: .v6))=\(value)): "
            + "it cannot hold the IPv6 VIP nor take packets for it", fix: [.sysctl(interface: dev, key, 0, family: .v6)])
    }

    /// The VIP is on `dev` as a host address (/32, /128), and `dev` is up.
    func vipPlacement(on dev: String, check: BackendCheck, host: HostState) -> BackendFinding {
        let interface = host.interface(named: dev)
        let prefixes = interface?.prefixes(of: vip) ?? [], full = vip.hostPrefix
        if prefixes.isEmpty {
            return .problem(check, "the VIP \(vip) is not on \(dev): the kernel drops the packets Tula sends for it",
                            fix: [.addAddress(vip, dev: dev)] + (interface.map { $0.isUp ? [] : [.linkUp(dev)] } ?? []))
        }
        if let wide = prefixes.first(where: { $0 != full }) {
            return .problem(check, "the VIP is on \(dev) as \(vip)/\(wide), not /\(full): the host takes the whole subnet as local",
                            fix: [.deleteAddress(vip, prefix: wide, dev: dev)] + (prefixes.contains(full) ? [] : [.addAddress(vip, dev: dev)]))
        }
        if let interface, !interface.isUp {
            return .problem(check, "\(dev) holds the VIP but is down", fix: [.linkUp(dev)])
        }
        return .ok(check, "the VIP \(vip)/\(full) is on \(dev)")
    }

    /// The VIP is on no interface where ARP requests (neighbor solicitations for IPv6) arrive: the host would answer
    /// them and take traffic from Tula.
    func vipNotElsewhere(_ host: HostState) -> BackendFinding {
        let (speaking, answers) = vip.family == .v4 ? ("ARP-speaking", "ARP") : ("neighbor-discovery", "neighbor solicitations")
        let holders = host.interfaces.filter { $0.answersARP && !$0.prefixes(of: vip).isEmpty }
        guard !holders.isEmpty else { return .ok(.vipNotElsewhere, "the VIP is on no \(speaking) interface") }
        return .problem(.vipNotElsewhere,
                        "the VIP is on \(holders.map(\.name).joined(separator: ", ")): the host answers \(answers) for it and takes the VIP from Tula",
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

    /// The module that decapsulates: `ipip`, or `ip6_tunnel` for IPv6 outer headers.
    func tunnelModule(_ host: HostState) -> BackendFinding {
        let t = tunnel
        let (check, loaded) = switch t {
        case .ipip: (BackendCheck.ipipModule, host.ipipModuleLoaded)
        case .ip6ip6, .ipip6: (BackendCheck.ip6TunnelModule, host.ip6TunnelModuleLoaded)
        case .gre, .ip6gre: (BackendCheck.greModule, host.modulesLoaded.contains(t.module))
        }
        return loaded ? .ok(check, "the \(t.module) module is loaded")
            : .problem(check, "the \(t.module) kernel module is not loaded: the host cannot decapsulate \(t.payload)",
                       fix: [.loadModule(t.module)])
    }

    /// The tunnel exists, decapsulates what Tula sends (ip6tnl: mode `ip6ip6`/`ipip6` as needed, or `any`), is up, and
    /// its local end is the backend's address (when known).
    func tunnelFinding(_ device: HostState.Interface?, host: HostState) -> BackendFinding {
        let t = tunnel
        let local = backendAddress ?? host.primaryAddress(t.outerFamily, excluding: vip)
        guard let device else {
            return .problem(.tunnel, "there is no \(t.linkKind) tunnel (\(t.name)) to receive the encapsulated packets, \(t.payload)",
                            fix: [.createTunnel(t, name: t.name, local: local?.description ?? Self.addressPlaceholder), .linkUp(t.name)])
        }
        let up: [BackendCommand] = device.isUp ? [] : [.linkUp(device.name)]
        if let mode = device.tunnelMode, t != .ipip, mode != t.mode, mode != "any" {
            let keep = (local ?? device.tunnelLocal)?.description ?? "any"
            return .problem(.tunnel, "\(device.name) is in mode \(mode), but Tula sends \(t.payload): it needs mode \(t.mode) (or any)",
                            fix: [.changeTunnel(t, name: device.name, local: keep)] + up)
        }
        if let local, let configured = device.tunnelLocal, configured != local {
            return .problem(.tunnel, "\(device.name)'s local end is \(configured), but Tula sends to \(local)",
                            fix: [.changeTunnel(t, name: device.name, local: local.description)] + up)
        }
        guard device.isUp else { return .problem(.tunnel, "the tunnel \(device.name) is down", fix: up) }
        let mode = device.tunnelMode.map { ", mode \($0)" } ?? ""
        return .ok(.tunnel, "the \(t.linkKind) tunnel \(device.name) is up (local \(device.tunnelLocal?.description ?? "any")\(mode))")
    }

    /// Strict reverse-path filtering (effective 1) drops decapsulated IPv4 packets: their source, the client, is routed
    /// elsewhere. (IPv6 has no such sysctl.)
    func tunnelReversePathFilter(_ device: HostState.Interface?, host: HostState) -> BackendFinding {
        let name = device?.name ?? tunnel.name
        let source = device == nil ? "default" : name  // a tunnel yet to be created starts with the `default` value
        let key = "rp_filter", all = host.value("all", key), own = host.value(source, key)
        let values = effective(key, all: all, source, own)
        guard max(all, own) == 1 else { return .ok(.tunnelReversePathFilter, "rp_filter on \(name) is not strict (\(values))") }
        return .problem(.tunnelReversePathFilter, "rp_filter on \(name) is strict (\(values)): decapsulated client packets are dropped",
                        fix: [.sysctl(interface: name, key, Self.looseReversePathFilter)])
    }
}
