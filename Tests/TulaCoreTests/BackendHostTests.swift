// Tests for the backend side of DSR: the guide's commands per mode, the persisted sysctl file, and the doctor's diagnosis.
import Foundation
import Testing
@testable import TulaCore

private let vip = IPv4Address(10, 0, 1, 100)
private let backend = IPv4Address(10, 0, 1, 11)
private let l2 = BackendSetup(vip: vip, mode: .l2)
private let l3 = BackendSetup(vip: vip, mode: .l3, backendAddress: backend)

/// A host as the tests describe it: `lo` (up) and `eth0` (up, holding the backend address), every sysctl 0 unless set.
private struct Host {
    var loAddresses: [HostState.InterfaceAddress] = []
    var loUp = true
    var eth0Addresses = [HostState.InterfaceAddress(backend, 24)]
    var tunnel: HostState.Interface?
    var conf: [String: [String: Int]] = [:]
    var ipip = false

    /// Sets `net.ipv4.conf.<interface>.<key>`.
    mutating func set(_ interface: String, _ key: String, _ value: Int) { conf[interface, default: [:]][key] = value }

    /// The host configured exactly as the guide says for `mode`.
    static func configured(_ mode: DSRMode) -> Host {
        var host = Host(loAddresses: [.init(vip, 32)])
        host.set("all", "arp_ignore", 1)
        host.set("all", "arp_announce", 2)
        if mode == .l3 {
            host.ipip = true
            host.tunnel = .init(name: "ipip0", kind: "ipip", flags: ["POINTOPOINT", "NOARP", "UP"], addresses: [.init(vip, 32)],
                                tunnelLocal: .v4(backend))
            host.set("ipip0", "rp_filter", 2)
        }
        return host
    }

    var state: HostState {
        let lo = HostState.Interface(name: "lo", flags: loUp ? ["LOOPBACK", "UP"] : ["LOOPBACK"], addresses: loAddresses)
        let eth0 = HostState.Interface(name: "eth0", kind: "veth", flags: ["BROADCAST", "MULTICAST", "UP"], addresses: eth0Addresses)
        return HostState(interfaces: [lo, eth0] + (tunnel.map { [$0] } ?? []), conf: conf, ipipModuleLoaded: ipip)
    }
}

/// The checks that report a problem, and every fix as shell text.
private func problems(_ setup: BackendSetup, _ host: Host) -> (checks: [BackendCheck], fixes: [String]) {
    let diagnosis = setup.diagnose(host.state)
    return (diagnosis.problems.map(\.check), diagnosis.fixes.map(\.description))
}

@Suite struct BackendHostCommands {
    @Test func l2IsTheGuidesThreeCommands() {
        #expect(l2.commands.map(\.description) == [
            "ip addr add 10.0.1.100/32 dev lo",
            "sysctl -w net.ipv4.conf.all.arp_ignore=1",
            "sysctl -w net.ipv4.conf.all.arp_announce=2",
        ])
    }

    @Test func l3AddsTheTunnelWithTheBackendAsLocalEnd() {
        #expect(l3.commands.dropFirst(3).map(\.description) == [
            "modprobe ipip",
            "ip link add ipip0 type ipip local 10.0.1.11 remote any",
            "ip link set ipip0 up",
            "ip addr add 10.0.1.100/32 dev ipip0",
            "sysctl -w net.ipv4.conf.ipip0.rp_filter=2",
        ])
        #expect(l3.commands.prefix(3) == l2.commands[...])
        #expect(BackendSetup(vip: vip, mode: .l3).commands[4].description == "ip link add ipip0 type ipip local <backend-ip> remote any")
    }

    @Test func scriptIsRunnableShellWithTheGuidesComments() {
        let lines = l2.script.split(separator: "\n").map(String.init)
        #expect(lines == [
            "# Tula DSR backend setup for VIP 10.0.1.100 (l2); run as root on each backend.",
            "# Add the VIP to the loopback interface",
            "ip addr add 10.0.1.100/32 dev lo",
            "# Suppress ARP responses for the VIP",
            "sysctl -w net.ipv4.conf.all.arp_ignore=1",
            "sysctl -w net.ipv4.conf.all.arp_announce=2",
        ])
        #expect(l3.script.split(separator: "\n").filter { !$0.hasPrefix("#") }.map(String.init) == l3.commands.map(\.description))
    }

    @Test func sysctlFileHoldsTheSettingsOfTheMode() {
        let settings = { (s: BackendSetup) in s.sysctlFile.split(separator: "\n").filter { !$0.hasPrefix("#") } }
        #expect(settings(l2) == ["net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2"])
        #expect(settings(l3) == ["net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2", "net.ipv4.conf.ipip0.rp_filter=2"])
    }

    @Test func sysctlNamesWriteDotsInInterfaceNamesAsSlashes() {
        #expect(HostState.sysctlName(interface: "eth0.100", "arp_ignore") == "net.ipv4.conf.eth0/100.arp_ignore")
    }
}

@Suite struct BackendHostDiagnosis {
    @Test func aHostSetUpAsTheGuideSaysIsHealthy() {
        for (setup, mode) in [(l2, DSRMode.l2), (l3, .l3)] {
            let diagnosis = setup.diagnose(Host.configured(mode).state)
            #expect(diagnosis.isHealthy, "\(diagnosis.report)")
            #expect(diagnosis.findings.count == (mode == .l2 ? 4 : 8))
            #expect(diagnosis.report.split(separator: "\n").allSatisfy { $0.hasPrefix("ok ") })
        }
    }

    @Test func aFreshHostNeedsExactlyTheSetupCommands() {
        var host = Host()
        host.set("default", "rp_filter", 1)  // a distribution with strict reverse-path filtering
        #expect(l2.diagnose(host.state).fixes.map(\.argv) == l2.commands.map(\.argv))
        #expect(l3.diagnose(host.state).fixes.map(\.argv) == l3.commands.map(\.argv))
        let diagnosis = l2.diagnose(host.state)
        #expect(diagnosis.problems.map(\.check) == [.vipOnLoopback, .arpIgnore, .arpAnnounce])
        #expect(diagnosis.report.contains("""
            problem  the VIP 10.0.1.100 is not on lo: the kernel drops the packets Tula sends for it
                     fix: ip addr add 10.0.1.100/32 dev lo
            """))
        #expect(diagnosis.report.contains("problem  arp_ignore must be 1 or 2 on eth0 (effective arp_ignore 0 = max(all=0, eth0=0))"))
    }

    @Test func theBedsMisconfiguredBackendIsDiagnosedPrecisely() {
        var host = Host.configured(.l2)
        host.loAddresses = []
        host.set("all", "arp_ignore", 0)
        let found = problems(l2, host)
        #expect(found.checks == [.vipOnLoopback, .arpIgnore])
        #expect(found.fixes == ["ip addr add 10.0.1.100/32 dev lo", "sysctl -w net.ipv4.conf.all.arp_ignore=1"])
    }

    @Test func effectiveARPValuesAreTheMaximumOfAllAndTheInterface() {
        var host = Host(loAddresses: [.init(vip, 32)])
        host.set("eth0", "arp_ignore", 1)
        host.set("eth0", "arp_announce", 2)
        #expect(l2.diagnose(host.state).isHealthy, "interface values alone are enough when all=0")

        host.set("all", "arp_ignore", 1)
        host.set("eth0", "arp_ignore", 8)  // max(1, 8) = 8: never answer ARP at all
        #expect(problems(l2, host).fixes == ["sysctl -w net.ipv4.conf.eth0.arp_ignore=1"])

        host.set("eth0", "arp_ignore", 0)
        host.set("all", "arp_ignore", 3)
        #expect(problems(l2, host).fixes == ["sysctl -w net.ipv4.conf.all.arp_ignore=1"])

        host.set("all", "arp_ignore", 2)
        host.set("eth0", "arp_announce", 1)
        #expect(problems(l2, host).fixes == ["sysctl -w net.ipv4.conf.all.arp_announce=2"])
    }

    @Test func withoutARPInterfacesTheDefaultsAreJudged() {
        var host = Host.configured(.l2)
        host.eth0Addresses = []
        let state = HostState(interfaces: host.state.interfaces.filter { $0.name == "lo" }, conf: host.conf, ipipModuleLoaded: false)
        let diagnosis = l2.diagnose(state)
        #expect(diagnosis.isHealthy)
        #expect(diagnosis.findings.first { $0.check == .arpIgnore }?.message == "arp_ignore is 1 or 2 on new interfaces (effective arp_ignore 1 = max(all=1, default=0))")
    }

    @Test func aVIPWithAWidePrefixIsReplacedByA32() {
        var host = Host.configured(.l2)
        host.loAddresses = [.init(vip, 24)]
        #expect(problems(l2, host).fixes == ["ip addr del 10.0.1.100/24 dev lo", "ip addr add 10.0.1.100/32 dev lo"])
    }

    @Test func aVIPOnAnARPInterfaceIsRemovedFromIt() {
        var host = Host.configured(.l2)
        host.eth0Addresses.append(.init(vip, 32))
        let found = problems(l2, host)
        #expect(found.checks == [.vipNotElsewhere])
        #expect(found.fixes == ["ip addr del 10.0.1.100/32 dev eth0"])
    }

    @Test func aDownLoopbackIsBroughtUp() {
        var host = Host.configured(.l2)
        host.loUp = false
        #expect(problems(l2, host).fixes == ["ip link set lo up"])
        host.loAddresses = []  // a fresh network namespace: lo down and empty
        #expect(problems(l2, host).fixes == ["ip addr add 10.0.1.100/32 dev lo", "ip link set lo up"])
    }

    @Test func l3WithoutTheModuleNeedsTheWholeTunnel() {
        var host = Host.configured(.l3)
        host.ipip = false
        host.tunnel = nil
        host.conf["ipip0"] = nil
        let found = problems(BackendSetup(vip: vip, mode: .l3), host)  // no --backend-address: eth0's address is used
        #expect(found.checks == [.ipipModule, .tunnel, .vipOnTunnel])
        #expect(found.fixes == ["modprobe ipip", "ip link add ipip0 type ipip local 10.0.1.11 remote any", "ip link set ipip0 up",
                                "ip addr add 10.0.1.100/32 dev ipip0"])
    }

    @Test func theTunnelsLocalEndMustBeTheBackendAddress() {
        var host = Host.configured(.l3)
        host.tunnel?.tunnelLocal = .v4(IPv4Address(10, 0, 1, 99))
        host.tunnel?.flags.remove("UP")
        #expect(problems(l3, host).fixes == ["ip tunnel change ipip0 mode ipip local 10.0.1.11 remote any", "ip link set ipip0 up"])
        host.tunnel?.tunnelLocal = nil  // `local any` accepts every destination
        #expect(problems(l3, host).fixes == ["ip link set ipip0 up"])
    }

    @Test func aTunnelWithAnotherNameHoldingTheVIPIsAccepted() {
        var host = Host.configured(.l3)
        host.tunnel?.name = "tun-dsr"
        host.conf["tun-dsr"] = host.conf["ipip0"]
        #expect(l3.diagnose(host.state).isHealthy)
    }

    @Test func strictReversePathFilteringOnTheTunnelIsAProblem() {
        var host = Host.configured(.l3)
        host.set("all", "rp_filter", 1)
        #expect(l3.diagnose(host.state).isHealthy, "max(all=1, ipip0=2) = 2 is loose")
        host.set("ipip0", "rp_filter", 0)
        #expect(problems(l3, host).fixes == ["sysctl -w net.ipv4.conf.ipip0.rp_filter=2"])
    }

    @Test func theBackendAddressIsInferredOnlyWhenUnambiguous() {
        var host = Host()
        #expect(host.state.primaryAddress(.v4, excluding: .v4(vip)) == .v4(backend))
        host.eth0Addresses.append(.init(IPv4Address(10, 0, 1, 12), 24))
        #expect(host.state.primaryAddress(.v4, excluding: .v4(vip)) == nil)
        let fixes = problems(BackendSetup(vip: vip, mode: .l3), host).fixes
        #expect(fixes.contains("ip link add ipip0 type ipip local <backend-ip> remote any"))
    }

    @Test func interfacesAreReadFromIPAddressJSON() throws {
        let json = """
            [{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"link_type":"loopback",
              "addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8},{"family":"inet","local":"10.0.1.100","prefixlen":32},
                           {"family":"inet6","local":"::1","prefixlen":128}]},
             {"ifindex":2,"ifname":"eth0","flags":["BROADCAST","MULTICAST","UP"],"linkinfo":{"info_kind":"veth"},
              "addr_info":[{"family":"inet","local":"10.0.1.11","prefixlen":24}]},
             {"ifindex":3,"ifname":"ipip0","flags":["POINTOPOINT","NOARP"],"link_type":"ipip",
              "linkinfo":{"info_kind":"ipip","info_data":{"proto":"ipip","remote":"any","local":"10.0.1.11","ttl":0}},"addr_info":[]}]
            """
        let interfaces = try HostState.interfaces(fromIPAddressJSON: Data(json.utf8))
        #expect(interfaces.map(\.name) == ["lo", "eth0", "ipip0"])
        #expect(interfaces[0].addresses == [.init(IPv4Address(127, 0, 0, 1), 8), .init(vip, 32), .init(IPAddress("::1")!, 128)])
        #expect(interfaces[0].isLoopback && interfaces[0].isUp && !interfaces[0].answersARP)
        #expect(interfaces[1].kind == "veth" && interfaces[1].answersARP)
        #expect(interfaces[2].isIPIPTunnel && !interfaces[2].isUp && !interfaces[2].answersARP)
        #expect(interfaces[2].tunnelLocal == .v4(backend) && interfaces[2].tunnelMode == nil)
        #expect(throws: HostStateError.self) { try HostState.interfaces(fromIPAddressJSON: Data("{}".utf8)) }
    }
}

// MARK: - IPv6 VIPs and IPv6 tunnels

private let vip6 = IPAddress("2001:db8:1::100")!
private let backend6 = IPAddress("2001:db8:1::11")!
private let l2v6 = BackendSetup(vip: vip6, mode: .l2)
private let sixInSix = BackendSetup(vip: vip6, mode: .l3, backendAddress: backend6)
private let fourInSix = BackendSetup(vip: .v4(vip), mode: .l3, backendAddress: backend6)

/// A dual-stack host: `eth0` holds the IPv4 and IPv6 backend addresses and a link-local one; IPv6 enabled everywhere
/// unless `conf6` says otherwise.
private struct Host6 {
    var base = Host()
    var tunnel: HostState.Interface?
    var conf6: [String: [String: Int]] = [:]
    var ip6Tunnel = false

    init(vipOnLo: Bool = false) {
        base.eth0Addresses += [.init(backend6, 64), .init(IPAddress("fe80::ff:fe00:111")!, 64)]
        if vipOnLo { base.loAddresses = [.init(vip6, 128)] }
    }

    mutating func set6(_ interface: String, _ key: String, _ value: Int) { conf6[interface, default: [:]][key] = value }

    /// The host as `backend-setup` leaves it for `setup`.
    static func configured(_ setup: BackendSetup) -> Host6 {
        var host = Host6()
        host.base.loAddresses = [.init(setup.vip, setup.vip.family == .v4 ? 32 : 128)]
        if setup.vip.family == .v4 {
            host.base.set("all", "arp_ignore", 1)
            host.base.set("all", "arp_announce", 2)
        }
        if setup.mode == .l3 {
            host.ip6Tunnel = true
            host.tunnel = .init(name: "ip6tnl1", kind: "ip6tnl", flags: ["POINTOPOINT", "NOARP", "UP"],
                                addresses: [.init(setup.vip, setup.vip.family == .v4 ? 32 : 128)], tunnelLocal: backend6,
                                tunnelMode: setup.vip.family == .v4 ? "ipip6" : "ip6ip6")
            if setup.vip.family == .v4 { host.base.set("ip6tnl1", "rp_filter", 2) }
        }
        return host
    }

    var state: HostState {
        var s = base.state
        s.interfaces += tunnel.map { [$0] } ?? []
        s.conf6 = conf6
        s.ip6TunnelModuleLoaded = ip6Tunnel
        return s
    }
}

private func problems(_ setup: BackendSetup, _ host: Host6) -> (checks: [BackendCheck], fixes: [String]) {
    let diagnosis = setup.diagnose(host.state)
    return (diagnosis.problems.map(\.check), diagnosis.fixes.map(\.description))
}

@Suite struct BackendHostIPv6Commands {
    @Test func anIPv6VIPInL2IsOnlyTheVIPOnLoWithNodadAndNoSysctl() {
        #expect(l2v6.commands.map(\.description) == ["ip -6 addr add 2001:db8:1::100/128 dev lo nodad"])
        #expect(l2v6.script.split(separator: "\n").map(String.init) == [
            "# Tula DSR backend setup for VIP 2001:db8:1::100 (l2); run as root on each backend.",
            "# Add the VIP to the loopback interface (no sysctl: Linux answers neighbor solicitations only for addresses of the receiving interface)",
            "ip -6 addr add 2001:db8:1::100/128 dev lo nodad",
        ])
        #expect(l2v6.sysctlSettings.isEmpty)
    }

    @Test func sixInSixAddsAnIp6ip6TunnelHoldingTheVIP() {
        #expect(sixInSix.tunnel == .ip6ip6)
        #expect(sixInSix.commands.map(\.description) == [
            "ip -6 addr add 2001:db8:1::100/128 dev lo nodad",
            "modprobe ip6_tunnel",
            "ip -6 tunnel add ip6tnl1 mode ip6ip6 local 2001:db8:1::11 remote any",
            "ip link set ip6tnl1 up",
            "ip -6 addr add 2001:db8:1::100/128 dev ip6tnl1 nodad",
        ])
        #expect(sixInSix.sysctlSettings.isEmpty, "IPv6 has no rp_filter sysctl")
        #expect(BackendSetup(vip: vip6, mode: .l3).commands[2].description
                == "ip -6 tunnel add ip6tnl1 mode ip6ip6 local <backend-ip> remote any")
    }

    @Test func fourInSixKeepsTheARPSettingsAndTunnelsWithIpip6() {
        #expect(fourInSix.tunnel == .ipip6)
        #expect(fourInSix.commands.map(\.description) == [
            "ip addr add 10.0.1.100/32 dev lo",
            "sysctl -w net.ipv4.conf.all.arp_ignore=1",
            "sysctl -w net.ipv4.conf.all.arp_announce=2",
            "modprobe ip6_tunnel",
            "ip -6 tunnel add ip6tnl1 mode ipip6 local 2001:db8:1::11 remote any",
            "ip link set ip6tnl1 up",
            "ip addr add 10.0.1.100/32 dev ip6tnl1",
            "sysctl -w net.ipv4.conf.ip6tnl1.rp_filter=2",
        ])
        #expect(fourInSix.sysctlSettings == ["net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2",
                                             "net.ipv4.conf.ip6tnl1.rp_filter=2"])
    }

    @Test func anIPv6VIPCannotBeTunnelledToAnIPv4Backend() {
        #expect(BackendSetup(vip: vip6, mode: .l3, backendAddress: .v4(backend)).unsupportedReason?.contains("6in4") == true)
        #expect(BackendSetup(vip: vip6, mode: .l2, backendAddress: .v4(backend)).unsupportedReason == nil, "l2 has no tunnel")
        #expect(sixInSix.unsupportedReason == nil && fourInSix.unsupportedReason == nil && l3.unsupportedReason == nil)
        #expect(l3.tunnel == .ipip)
    }

    @Test func ipv6SysctlNames() {
        #expect(HostState.sysctlName(interface: "eth0.100", "disable_ipv6", family: .v6) == "net.ipv6.conf.eth0/100.disable_ipv6")
    }
}

@Suite struct BackendHostIPv6Diagnosis {
    @Test func hostsSetUpByTheCommandsAreHealthy() {
        for (setup, count) in [(l2v6, 3), (sixInSix, 7), (fourInSix, 8)] {
            let diagnosis = setup.diagnose(Host6.configured(setup).state)
            #expect(diagnosis.isHealthy, "\(diagnosis.report)")
            #expect(diagnosis.findings.count == count, "\(diagnosis.report)")
        }
        #expect(l2v6.diagnose(Host6.configured(l2v6).state).findings.map(\.check) == [.ipv6OnLoopback, .vipOnLoopback, .vipNotElsewhere])
        #expect(sixInSix.diagnose(Host6.configured(sixInSix).state).report.contains(
            "ok       the ip6tnl tunnel ip6tnl1 is up (local 2001:db8:1::11, mode ip6ip6)"))
    }

    @Test func aFreshHostNeedsExactlyTheSetupCommands() {
        var host = Host6()
        host.base.set("default", "rp_filter", 1)  // strict reverse-path filtering: 4in6 needs the tunnel's loosened
        for setup in [l2v6, sixInSix, fourInSix] {
            #expect(setup.diagnose(host.state).fixes.map(\.argv) == setup.commands.map(\.argv), "\(setup.tunnel)")
        }
        #expect(l2v6.diagnose(host.state).report.contains("""
            problem  the VIP 2001:db8:1::100 is not on lo: the kernel drops the packets Tula sends for it
                     fix: ip -6 addr add 2001:db8:1::100/128 dev lo nodad
            """))
        #expect(problems(l2v6, host).checks == [.vipOnLoopback], "no ARP check for an IPv6 VIP")
    }

    /// What the bed does to a backend: IPv6 turned off on lo, which also removes the VIP from it.
    @Test func ipv6DisabledOnLoIsNamedAndFixedFirst() {
        var host = Host6()
        host.set6("lo", "disable_ipv6", 1)
        let diagnosis = l2v6.diagnose(host.state)
        #expect(diagnosis.problems.map(\.check) == [.ipv6OnLoopback, .vipOnLoopback])
        #expect(diagnosis.fixes.map(\.description) == ["sysctl -w net.ipv6.conf.lo.disable_ipv6=0",
                                                        "ip -6 addr add 2001:db8:1::100/128 dev lo nodad"])
        #expect(diagnosis.report.contains("problem  IPv6 is disabled on lo (net.ipv6.conf.lo.disable_ipv6=1)"))
        host.set6("all", "disable_ipv6", 1)
        host.set6("lo", "disable_ipv6", 0)
        #expect(problems(l2v6, host).checks == [.vipOnLoopback], "disable_ipv6 is per interface; `all` only copies itself to them")
    }

    @Test func anIPv6VIPOnAnNDPInterfaceOrWithAWidePrefixIsFixed() {
        var host = Host6(vipOnLo: true)
        host.base.eth0Addresses.append(.init(vip6, 64))
        let diagnosis = l2v6.diagnose(host.state)
        #expect(diagnosis.problems.map(\.check) == [.vipNotElsewhere])
        #expect(diagnosis.fixes.map(\.description) == ["ip -6 addr del 2001:db8:1::100/64 dev eth0"])
        #expect(diagnosis.report.contains("the host answers neighbor solicitations for it and takes the VIP from Tula"))

        host = Host6()
        host.base.loAddresses = [.init(vip6, 64)]
        #expect(problems(l2v6, host).fixes == ["ip -6 addr del 2001:db8:1::100/64 dev lo", "ip -6 addr add 2001:db8:1::100/128 dev lo nodad"])
    }

    @Test func sixInSixOnAHostWithoutTheModuleAndIPv6OffForNewInterfaces() {
        var host = Host6(vipOnLo: true)
        host.set6("default", "disable_ipv6", 1)
        let found = problems(BackendSetup(vip: vip6, mode: .l3), host)  // no --backend-address: eth0's global IPv6 address
        #expect(found.checks == [.ip6TunnelModule, .tunnel, .ipv6OnTunnel, .vipOnTunnel])
        #expect(found.fixes == ["modprobe ip6_tunnel", "ip -6 tunnel add ip6tnl1 mode ip6ip6 local 2001:db8:1::11 remote any",
                                "ip link set ip6tnl1 up", "sysctl -w net.ipv6.conf.ip6tnl1.disable_ipv6=0",
                                "ip -6 addr add 2001:db8:1::100/128 dev ip6tnl1 nodad"])
    }

    @Test func theTunnelsModeAndLocalEndMustMatchWhatTulaSends() {
        var host = Host6.configured(sixInSix)
        host.tunnel?.tunnelMode = "ipip6"
        #expect(problems(sixInSix, host).fixes == ["ip -6 tunnel change ip6tnl1 mode ip6ip6 local 2001:db8:1::11 remote any"])
        host.tunnel?.tunnelMode = "any"
        #expect(sixInSix.diagnose(host.state).isHealthy, "mode any decapsulates both")
        host.tunnel?.tunnelLocal = IPAddress("2001:db8:1::99")
        host.tunnel?.flags.remove("UP")
        #expect(problems(sixInSix, host).fixes == ["ip -6 tunnel change ip6tnl1 mode ip6ip6 local 2001:db8:1::11 remote any",
                                                   "ip link set ip6tnl1 up"])
        var four = Host6.configured(fourInSix)
        four.tunnel?.tunnelMode = "ip6ip6"
        #expect(problems(fourInSix, four).fixes == ["ip -6 tunnel change ip6tnl1 mode ipip6 local 2001:db8:1::11 remote any"])
    }

    @Test func theModulesCatchAllTunnelHoldingTheVIPIsAccepted() {
        var host = Host6.configured(sixInSix)
        host.tunnel = .init(name: "ip6tnl0", kind: "ip6tnl", flags: ["NOARP", "UP"], addresses: [.init(vip6, 128)], tunnelMode: "ip6ip6")
        #expect(sixInSix.diagnose(host.state).isHealthy, "\(sixInSix.diagnose(host.state).report)")
    }

    @Test func fourInSixNeedsALooseReversePathFilterOnTheTunnel() {
        var host = Host6.configured(fourInSix)
        host.base.set("ip6tnl1", "rp_filter", 1)
        #expect(problems(fourInSix, host).fixes == ["sysctl -w net.ipv4.conf.ip6tnl1.rp_filter=2"])
        host.base.set("ip6tnl1", "rp_filter", 2)
        host.ip6Tunnel = false
        #expect(problems(fourInSix, host).fixes == ["modprobe ip6_tunnel"])
    }

    @Test func theIPv6BackendAddressIsInferredFromGlobalAddressesOnly() {
        var host = Host6()
        #expect(host.state.primaryAddress(.v6, excluding: vip6) == backend6, "the link-local address does not count")
        host.base.eth0Addresses.append(.init(IPAddress("2001:db8:1::12")!, 64))
        #expect(host.state.primaryAddress(.v6, excluding: vip6) == nil)
    }

    @Test func ip6TunnelsAndIPv6AddressesAreReadFromIPAddressJSON() throws {
        let json = """
            [{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],
              "addr_info":[{"family":"inet6","local":"2001:db8:1::100","prefixlen":128,"scope":"global"}]},
             {"ifindex":2,"ifname":"eth0","flags":["BROADCAST","MULTICAST","UP"],"linkinfo":{"info_kind":"veth"},
              "addr_info":[{"family":"inet6","local":"2001:db8:1::11","prefixlen":64,"scope":"global","nodad":true},
                           {"family":"inet6","local":"fe80::ff:fe00:111","prefixlen":64,"scope":"link"}]},
             {"ifindex":3,"ifname":"ip6tnl0","flags":["NOARP"],"linkinfo":{"info_kind":"ip6tnl","info_data":{"proto":"ip6ip6",
              "remote":"::","local":"::","ttl":0,"encap_limit":0}},"addr_info":[]},
             {"ifindex":4,"ifname":"ip6tnl1","flags":["POINTOPOINT","NOARP","UP"],"linkinfo":{"info_kind":"ip6tnl",
              "info_data":{"proto":"ipip6","remote":"::","local":"2001:db8:1::11","ttl":64,"encap_limit":4}},
              "addr_info":[{"family":"inet","local":"10.0.1.100","prefixlen":32}]}]
            """
        let interfaces = try HostState.interfaces(fromIPAddressJSON: Data(json.utf8))
        #expect(interfaces[0].addresses == [.init(vip6, 128)])
        #expect(interfaces[1].addresses.map(\.address) == [backend6, IPAddress("fe80::ff:fe00:111")!])
        #expect(interfaces[2].tunnelLocal == nil && interfaces[2].tunnelMode == "ip6ip6")
        #expect(interfaces[3].tunnelLocal == backend6 && interfaces[3].tunnelMode == "ipip6" && !interfaces[3].answersARP)
        var host = Host6.configured(fourInSix)
        host.tunnel = interfaces[3]
        #expect(fourInSix.diagnose(host.state).isHealthy, "\(fourInSix.diagnose(host.state).report)")
    }
}
