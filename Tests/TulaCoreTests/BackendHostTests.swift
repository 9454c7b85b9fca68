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
                                tunnelLocal: backend)
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
        host.tunnel?.tunnelLocal = IPv4Address(10, 0, 1, 99)
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
        #expect(host.state.primaryAddress(excluding: vip) == backend)
        host.eth0Addresses.append(.init(IPv4Address(10, 0, 1, 12), 24))
        #expect(host.state.primaryAddress(excluding: vip) == nil)
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
        #expect(interfaces[0].addresses == [.init(IPv4Address(127, 0, 0, 1), 8), .init(vip, 32)])
        #expect(interfaces[0].isLoopback && interfaces[0].isUp && !interfaces[0].answersARP)
        #expect(interfaces[1].kind == "veth" && interfaces[1].answersARP)
        #expect(interfaces[2].isIPIPTunnel && !interfaces[2].isUp && !interfaces[2].answersARP)
        #expect(interfaces[2].tunnelLocal == backend)
        #expect(throws: HostStateError.self) { try HostState.interfaces(fromIPAddressJSON: Data("{}".utf8)) }
    }
}
