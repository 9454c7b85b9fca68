// Tests for backend-setup and doctor with `encap: gue` and `encap: gre`: the exact commands and the checks of fou and GRE.
import Testing
@testable import TulaCore

private let vip = IPAddress.v4(IPv4Address(10, 0, 1, 100))
private let backend = IPAddress.v4(IPv4Address(10, 0, 2, 11))
private let vip6 = IPAddress("2001:db8:1::100")!
private let backend6 = IPAddress("2001:db8:2::11")!

/// A host with lo holding the VIP, eth0 holding `address`, ARP sysctls set, and `tunnel` if given.
private func host(address: IPAddress, tunnel: HostState.Interface?, modules: Set<String>, fou: [FouPort] = []) -> HostState {
    let lo = HostState.Interface(name: "lo", flags: ["LOOPBACK", "UP"], addresses: [.init(vip, 32)])
    let eth0 = HostState.Interface(name: "eth0", kind: "veth", flags: ["BROADCAST", "UP"],
                                   addresses: [.init(address, address.family == .v4 ? 24 : 64)])
    var state = HostState(interfaces: [lo, eth0] + (tunnel.map { [$0] } ?? []),
                          conf: ["all": ["arp_ignore": 1, "arp_announce": 2], "ipip0": ["rp_filter": 2], "gre1": ["rp_filter": 2]],
                          ipipModuleLoaded: true, ip6TunnelModuleLoaded: true)
    state.modulesLoaded = modules
    state.fouPorts = fou
    return state
}

@Suite struct BackendEncapsulationTests {
    @Test func gueAddsTheFouPortAfterTheIPIPTunnel() {
        let setup = BackendSetup(vip: vip, mode: .l3, backendAddress: backend, encap: .gue)
        #expect(setup.commands.map(\.description) == [
            "ip addr add 10.0.1.100/32 dev lo",
            "sysctl -w net.ipv4.conf.all.arp_ignore=1",
            "sysctl -w net.ipv4.conf.all.arp_announce=2",
            "modprobe ipip",
            "ip link add ipip0 type ipip local 10.0.2.11 remote any",
            "ip link set ipip0 up",
            "ip addr add 10.0.1.100/32 dev ipip0",
            "modprobe fou",
            "ip fou add port 6080 gue",
            "sysctl -w net.ipv4.conf.ipip0.rp_filter=2",
        ])
        // IPv6 outer (4in6 over GUE), another port.
        let v6 = BackendSetup(vip: vip, mode: .l3, backendAddress: backend6, encap: .gue, guePort: 5555)
        #expect(v6.commands.map(\.description).suffix(6) == [
            "ip -6 tunnel add ip6tnl1 mode ipip6 local 2001:db8:2::11 remote any",
            "ip link set ip6tnl1 up",
            "ip addr add 10.0.1.100/32 dev ip6tnl1",
            "modprobe fou",
            "ip -6 fou add port 5555 gue",
            "sysctl -w net.ipv4.conf.ip6tnl1.rp_filter=2",
        ])
        #expect(setup.script.contains("# GUE: the fou module takes UDP port 6080"))
    }

    @Test func greReplacesTheTunnel() {
        let setup = BackendSetup(vip: vip, mode: .l3, backendAddress: backend, encap: .gre)
        #expect(setup.commands.map(\.description).dropFirst(3) == [
            "modprobe ip_gre",
            "ip tunnel add gre1 mode gre local 10.0.2.11 remote any",
            "ip link set gre1 up",
            "ip addr add 10.0.1.100/32 dev gre1",
            "sysctl -w net.ipv4.conf.gre1.rp_filter=2",
        ])
        let v6 = BackendSetup(vip: vip6, mode: .l3, backendAddress: backend6, encap: .gre)
        #expect(v6.commands.map(\.description) == [
            "ip -6 addr add 2001:db8:1::100/128 dev lo nodad",
            "modprobe ip6_gre",
            "ip -6 tunnel add ip6gre1 mode ip6gre local 2001:db8:2::11 remote any",
            "ip link set ip6gre1 up",
            "ip -6 addr add 2001:db8:1::100/128 dev ip6gre1 nodad",
        ])
    }

    @Test func doctorChecksTheFouPort() {
        let setup = BackendSetup(vip: vip, mode: .l3, backendAddress: backend, encap: .gue)
        let ipip0 = HostState.Interface(name: "ipip0", kind: "ipip", flags: ["NOARP", "UP"], addresses: [.init(vip, 32)],
                                        tunnelLocal: backend)
        let ready = host(address: backend, tunnel: ipip0, modules: ["fou"], fou: [FouPort(port: 6080, gue: true, family: .v4)])
        #expect(setup.diagnose(ready).isHealthy, "\(setup.diagnose(ready).report)")
        let bare = host(address: backend, tunnel: ipip0, modules: [])
        let d = setup.diagnose(bare)
        #expect(d.problems.map(\.check) == [.fouModule, .guePort])
        #expect(d.fixes.map(\.description) == ["modprobe fou", "ip fou add port 6080 gue"])
        // A fou port on 6080 that is not GUE, and one of the wrong family, are not enough.
        let wrong = host(address: backend, tunnel: ipip0, modules: ["fou"],
                         fou: [FouPort(port: 6080, gue: false, family: .v4), FouPort(port: 6080, gue: true, family: .v6)])
        #expect(setup.diagnose(wrong).fixes.map(\.description) == ["ip fou del port 6080", "ip fou add port 6080 gue"])
    }

    @Test func doctorChecksTheGRETunnel() {
        let setup = BackendSetup(vip: vip, mode: .l3, backendAddress: backend, encap: .gre)
        let gre1 = HostState.Interface(name: "gre1", kind: "gre", flags: ["NOARP", "UP"], addresses: [.init(vip, 32)],
                                       tunnelLocal: backend)
        #expect(setup.diagnose(host(address: backend, tunnel: gre1, modules: ["ip_gre"])).isHealthy)
        let none = setup.diagnose(host(address: backend, tunnel: nil, modules: []))
        #expect(none.fixes.map(\.description) == [
            "modprobe ip_gre",
            "ip tunnel add gre1 mode gre local 10.0.2.11 remote any",
            "ip link set gre1 up",
            "ip addr add 10.0.1.100/32 dev gre1",
        ])
    }

    @Test func fouShowOutputIsParsed() {
        #expect(FouPort.parse("port 6080 gue\nport 5555 ipproto 4\n", family: .v4)
            == [FouPort(port: 6080, gue: true, family: .v4), FouPort(port: 5555, gue: false, family: .v4)])
        #expect(FouPort.parse("port 6080 gue -6 local 2001:db8::1\n", family: .v4) == [FouPort(port: 6080, gue: true, family: .v6)])
        #expect(FouPort.parse("", family: .v6).isEmpty)
    }
}
