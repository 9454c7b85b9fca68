// Tests for the kernel exception path: which frames processFrame hands to the port's kernel interface
// (`to-kernel`), which it keeps, and the `kernel_interface` config keys and their errors.
import Testing
@testable import TulaCore
import TulaDatapath

/// A dual-stack port with a kernel interface (and optionally a VLAN), one IPv4 VIP and one IPv6 VIP.
private enum K {
    static func yaml(kernel: Bool = true, vlan: Int? = nil) -> String {
        var port = """
            ports:
              - name: wan
                device: net_null0
                address: 10.0.1.2
                mac: 02:00:00:00:00:01
                address6: "2001:db8:1::2"
                mtu: 1500

            """
        if kernel { port += "    kernel_interface: tula-wan\n" }
        if let vlan { port += "    vlan: \(vlan)\n" }
        return port + """
            vips:
              - name: web
                address: 10.0.1.100
                port: 80
                protocol: tcp
                mode: l2
                maglev_table_size: 251
                backends:
                  - {address: 10.0.1.11, mac: "02:00:00:00:01:11"}
              - name: web6
                address: "2001:db8:100::80"
                port: 80
                protocol: tcp
                mode: l2
                maglev_table_size: 251
                backends:
                  - {address: "2001:db8:1::11", mac: "02:00:00:00:01:11"}
            """
    }
    static let portMAC = TestBytes.mac("02:00:00:00:00:01")
    static let clientMAC = TestBytes.mac("02:00:00:00:aa:01")
    static let portAddress = "10.0.1.2", client = "10.0.1.50"

    static func ipv4(dst: String, proto: UInt8, payload: [UInt8], vlan: UInt16? = nil, fragment: UInt16 = 0x4000) -> [UInt8] {
        TestFrames.ethernet(dst: portMAC, src: clientMAC, type: TestFrames.etherIPv4, vlan: vlan,
                            payload: TestFrames.ipv4(src: client, dst: dst, proto: proto, payload: payload, flagsFragment: fragment))
    }
    static func bgp(_ dst: String = portAddress) -> [UInt8] { ipv4(dst: dst, proto: 6, payload: TestFrames.tcp(srcPort: 40000, dstPort: 179)) }
    static func echo(_ dst: String) -> [UInt8] { ipv4(dst: dst, proto: 1, payload: TestFrames.icmp(type: 8, code: 0)) }
    static func arp(op: UInt16, target: String, sender: String = client) -> [UInt8] {
        TestFrames.ethernet(dst: op == 1 ? [UInt8](repeating: 0xFF, count: 6) : portMAC, src: clientMAC, type: TestFrames.etherARP,
                            payload: TestFrames.arp(op: op, senderMAC: clientMAC, senderIP: sender,
                                                    targetMAC: op == 1 ? [0, 0, 0, 0, 0, 0] : portMAC, targetIP: target))
    }
}

@Suite struct KernelPathTests {
    /// Frames to the port's own address: the kernel's with an interface, dropped (or answered) as before without.
    @Test(arguments: [
        ("BGP (TCP 179) to the port address", K.bgp(), Verdict.toKernel, Verdict.noVIP),
        ("BFD (UDP 3784) to the port address",
         K.ipv4(dst: K.portAddress, proto: 17, payload: TestFrames.udp(srcPort: 49152, dstPort: 3784, payload: [1, 2, 3, 4])),
         .toKernel, .noVIP),
        ("ICMP echo to the port address", K.echo(K.portAddress), .toKernel, .noVIP),
        ("ICMP unreachable to the port address",
         K.ipv4(dst: K.portAddress, proto: 1, payload: TestFrames.icmp(type: 3, code: 3, payload: [UInt8](repeating: 0, count: 28))),
         .toKernel, .noVIP),
        ("OSPF (protocol 89) to the port address", K.ipv4(dst: K.portAddress, proto: 89, payload: [0, 0, 0, 0]), .toKernel, .notTCPUDP),
        ("a TCP fragment to the port address",
         K.ipv4(dst: K.portAddress, proto: 6, payload: TestFrames.tcp(srcPort: 1, dstPort: 179), fragment: 0x2000), .toKernel, .noVIP),
        ("ARP request for the port address", K.arp(op: 1, target: K.portAddress), .toKernel, .arpReply),
    ])
    func ownAddressGoesToTheKernel(_ name: String, _ frame: [UInt8], _ with: Verdict, _ without: Verdict) throws {
        let dp = try TestDataplane(yaml: K.yaml())
        let r = dp.process(frame)
        #expect(r.outcome.verdict == with, "\(name)")
        #expect(dp.verdictCount(.toKernel) == (with == .toKernel ? 1 : 0))
        // Handed over untouched: the kernel sees the frame as it arrived.
        #expect(r.inPlace == frame, "\(name): a frame for the kernel is not rewritten")
        let plain = try TestDataplane(yaml: K.yaml(kernel: false))
        #expect(plain.process(frame).outcome.verdict == without, "\(name) without kernel_interface")
        #expect(plain.verdictCount(.toKernel) == 0)
    }

    /// VIP traffic never goes to the kernel; neither do frames for other hosts or ARP about others.
    @Test(arguments: [
        ("TCP to the VIP", K.ipv4(dst: "10.0.1.100", proto: 6, payload: TestFrames.tcp(srcPort: 40000, dstPort: 80)), Verdict.forwardedL2),
        ("TCP to the VIP's address on another port", K.ipv4(dst: "10.0.1.100", proto: 6, payload: TestFrames.tcp(srcPort: 1, dstPort: 179)), .noVIP),
        ("ICMP echo to the VIP", K.echo("10.0.1.100"), .icmpEchoReply),
        ("TCP to another address", K.bgp("10.0.1.3"), .noVIP),
        ("ARP request for the VIP", K.arp(op: 1, target: "10.0.1.100"), .arpReply),
        ("ARP request for another host", K.arp(op: 1, target: "10.0.1.3"), .arpIgnored),
        // Replies to the port address go to neighbour resolution, which copies them to the kernel itself.
        ("ARP reply to the port address", K.arp(op: 2, target: K.portAddress), .arpLearned),
    ])
    func otherFramesStayWithTula(_ name: String, _ frame: [UInt8], _ verdict: Verdict) throws {
        let dp = try TestDataplane(yaml: K.yaml())
        #expect(dp.process(frame).outcome.verdict == verdict, "\(name)")
        #expect(dp.verdictCount(.toKernel) == 0, "\(name)")
    }

    @Test func ipv6ToTheOwnAddressGoesToTheKernelButNeighborDiscoveryStaysWithTula() throws {
        let dp = try TestDataplane(yaml: K.yaml())
        let bgp = V6.frame(V6.ipv6(dst: V6.port6, next: 6, payload: V6.tcp(179)))
        #expect(dp.process(bgp).outcome.verdict == .toKernel)
        let echo = V6.frame(V6.ipv6(dst: V6.port6, next: 58, payload: V6.icmp6(src: V6.client, dst: V6.port6, [128, 0, 0, 0, 0, 1, 0, 1])))
        #expect(dp.process(echo).outcome.verdict == .toKernel)
        let vip = V6.frame(V6.ipv6(dst: V6.web6, next: 6, payload: V6.tcp(80)))
        #expect(dp.process(vip).outcome.verdict == .forwardedL2)
        // A solicitation for address6 is still answered by Tula (same MAC as the kernel interface).
        let ns = V6.icmp6(src: V6.client, dst: "ff02::1:ff00:2",
                          [135, 0, 0, 0, 0, 0, 0, 0] + V6.a(V6.port6) + [1, 1] + V6.clientMAC)
        let solicitation = V6.frame(V6.ipv6(dst: "ff02::1:ff00:2", next: 58, payload: ns, hopLimit: 255),
                                    dstMAC: [0x33, 0x33, 0xff, 0, 0, 2])
        #expect(dp.process(solicitation).outcome.verdict == .ndReply)
        #expect(dp.verdictCount(.toKernel) == 2)
        let plain = try TestDataplane(yaml: K.yaml(kernel: false))
        #expect(plain.process(bgp).outcome.verdict == .noVIP)
    }

    @Test func aTaggedFrameForTheKernelComesFromThePortsVLAN() throws {
        let dp = try TestDataplane(yaml: K.yaml(vlan: 7))
        #expect(dp.process(K.ipv4(dst: K.portAddress, proto: 6, payload: TestFrames.tcp(srcPort: 1, dstPort: 22), vlan: 7)).outcome.verdict
            == .toKernel)
        #expect(dp.process(K.ipv4(dst: K.portAddress, proto: 6, payload: TestFrames.tcp(srcPort: 1, dstPort: 22), vlan: 8)).outcome.verdict
            == .wrongVLAN)
    }

    @Test func toKernelIsHandedToControlAndKernelDroppedIsADrop() {
        #expect(Verdict.toKernel.isToControl && !Verdict.toKernel.isDrop && !Verdict.toKernel.transmits)
        #expect(Verdict.kernelDropped.isDrop)
        #expect(Verdict.named("to-kernel") == .toKernel && Verdict.named("kernel-dropped") == .kernelDropped)
    }

    @Test func configKeys() throws {
        let config = try ConfigLoader.parse(yaml: K.yaml().replacingOccurrences(of: "    kernel_interface: tula-wan\n", with: """
                kernel_interface: tula-wan
                kernel_rate: 500
                kernel_burst: 50
                kernel_prefix_length: 24

            """), file: "k.yaml")
        let port = config.ports[0]
        #expect(port.kernelInterface == "tula-wan" && port.kernelRate == 500 && port.kernelBurst == 50 && port.kernelPrefixLength == 24)
        #expect(port.kernelPrefixLength6 == 128)
        // Written back and read again, the same.
        #expect(try ConfigLoader.parse(yaml: ConfigWriter.yaml(config), file: "w.yaml").withoutLines == config.withoutLines)
    }

    @Test(arguments: [
        ("    kernel_interface: a-name-that-is-too-long\n", "too long"),
        ("    kernel_interface: \"bad/name\"\n", "cannot hold"),
        ("    kernel_rate: 10\n", "kernel_rate needs kernel_interface"),
        ("    kernel_interface: k0\n    kernel_rate: 0\n", "kernel_rate: 0 is out of range"),
        ("    kernel_interface: k0\n    kernel_prefix_length: 33\n", "kernel_prefix_length: 33 is out of range"),
    ])
    func badKernelKeysAreRefusedWithTheirLine(_ lines: String, _ reason: String) throws {
        let yaml = K.yaml(kernel: false).replacingOccurrences(of: "    mtu: 1500\n", with: "    mtu: 1500\n" + lines)
        do {
            _ = try ConfigLoader.parse(yaml: yaml, file: "k.yaml")
            Issue.record("accepted: \(lines)")
        } catch {
            #expect(error.description.hasPrefix("k.yaml:"), "\(error.description)")
            #expect(error.description.contains(reason), "\(error.description)")
        }
    }

    @Test func pollKey() throws {
        #expect(try ConfigLoader.parse(yaml: K.yaml(), file: "p.yaml").adaptivePolling == false)
        let adaptive = try ConfigLoader.parse(yaml: "poll: adaptive\n" + K.yaml(), file: "p.yaml")
        #expect(adaptive.adaptivePolling)
        #expect(try ConfigLoader.parse(yaml: ConfigWriter.yaml(adaptive), file: "w.yaml").adaptivePolling)
        #expect(try ConfigLoader.parse(yaml: "poll: busy\n" + K.yaml(), file: "p.yaml").adaptivePolling == false)
        do {
            _ = try ConfigLoader.parse(yaml: "poll: lazy\n" + K.yaml(), file: "p.yaml")
            Issue.record("poll: lazy accepted")
        } catch {
            #expect(error.description.hasPrefix("p.yaml:1:") && error.description.contains("busy or adaptive"), "\(error.description)")
        }
        #expect(adaptive.restartRequired(for: try ConfigLoader.parse(yaml: K.yaml(), file: "p.yaml")) != nil)
    }

    @Test func twoPortsCannotShareAKernelInterface() throws {
        let yaml = """
            ports:
              - {name: a, device: net_null0, address: 10.0.1.2, kernel_interface: k0}
              - {name: b, device: net_null1, address: 10.0.2.2, kernel_interface: k0}
            vips: []
            """
        #expect(throws: ConfigError.self) { try ConfigLoader.parse(yaml: yaml, file: "k.yaml") }
    }
}
