// The backend side of `encap: gue`: Linux's fou port (`ip fou add port 6080 gue`), its commands, observation and check.

/// One receive port of Linux's `fou` module, as `ip fou show` (`ip -6 fou show`) lists it.
public struct FouPort: Sendable, Equatable {
    public var port: UInt16
    /// `gue` (GUE, the inner protocol from the packet) rather than `ipproto N`.
    public var gue: Bool
    /// The outer family it listens on (`ip -6 fou` ports: IPv6).
    public var family: IPFamily

    public init(port: UInt16, gue: Bool, family: IPFamily) {
        self.port = port; self.gue = gue; self.family = family
    }

    /// The ports in `ip fou show` output (one per line: `port 6080 gue`, `port 5555 ipproto 4`, with `-6` for IPv6
    /// ports when both families are listed); `family` is the family of the command that printed it.
    public static func parse(_ output: String, family: IPFamily) -> [FouPort] {
        output.split(separator: "\n").compactMap { line in
            let words = line.split(separator: " ").map(String.init)
            guard let i = words.firstIndex(of: "port"), i + 1 < words.count, let port = UInt16(words[i + 1]) else { return nil }
            return FouPort(port: port, gue: words.contains("gue"), family: words.contains("-6") ? .v6 : family)
        }
    }
}

extension HostState {
    /// The modules besides ipip and ip6_tunnel the doctor looks for.
    public static let otherModules = ["fou", "ip_gre", "ip6_gre"]
}

extension BackendCommand {
    /// `ip fou add port PORT gue` (`ip -6 fou add ...` for IPv6 outer headers).
    static func addFouPort(_ port: UInt16, family: IPFamily, comment: String? = nil) -> Self {
        Self(["ip"] + (family == .v4 ? [] : ["-6"]) + ["fou", "add", "port", String(port), "gue"], comment: comment)
    }

    /// `ip fou del port PORT` (`ip -6 fou del ...`).
    static func deleteFouPort(_ port: UInt16, family: IPFamily) -> Self {
        Self(["ip"] + (family == .v4 ? [] : ["-6"]) + ["fou", "del", "port", String(port)])
    }
}

extension BackendSetup {
    /// For `encap: gue` (l3): the fou module and its GUE port. Linux's GUE receive path hands a variant-1 packet to the
    /// handler of its inner IP version (IPIP or IPv6), which is the tunnel device above: it still holds the VIP.
    var gueCommands: [BackendCommand] {
        guard mode == .l3, encap == .gue else { return [] }
        return [
            .loadModule("fou", comment: "GUE: the fou module takes UDP port \(guePort) and hands the inner packet (GUE variant 1, "
                        + "no GUE header) to the tunnel above"),
            .addFouPort(guePort, family: tunnel.outerFamily),
        ]
    }

    /// The fou module is loaded and port `guePort` is a GUE port of the outer family.
    func gueFindings(_ host: HostState) -> [BackendFinding] {
        let family = tunnel.outerFamily
        let module: BackendFinding = host.modulesLoaded.contains("fou") ? .ok(.fouModule, "the fou module is loaded")
            : .problem(.fouModule, "the fou kernel module is not loaded: the host cannot receive GUE", fix: [.loadModule("fou")])
        let port: BackendFinding
        if host.fouPorts.contains(where: { $0.port == guePort && $0.family == family && $0.gue }) {
            port = .ok(.guePort, "UDP port \(guePort) is a GUE port (\(family))")
        } else if host.fouPorts.contains(where: { $0.port == guePort && $0.family == family }) {
            port = .problem(.guePort, "fou port \(guePort) (\(family)) decapsulates a fixed protocol, not GUE",
                            fix: [.deleteFouPort(guePort, family: family), .addFouPort(guePort, family: family)])
        } else {
            port = .problem(.guePort, "no fou GUE port \(guePort) (\(family)): the kernel answers Tula's GUE packets with port unreachable",
                            fix: [.addFouPort(guePort, family: family)])
        }
        return [module, port]
    }
}
