// The frame fuzz target: arbitrary bytes through processFrame (as the worker calls it) and a check of every output.

import TulaCore
import TulaDatapath

/// The fixed topology frames are fuzzed against: pcaps/golden/golden.yaml's port and VIPs (so the golden
/// captures are good seeds), the same port again on VLAN 100 with MTU 1280 (the least IPv6 allows: l3 IPv4
/// packets over 1260 bytes get "fragmentation needed" or go as outer fragments there, IPv6 ones over 1240 get
/// Packet Too Big), and more VIPs: `*` l3, an address with two port-specific UDP VIPs (its UDP fragments have no
/// VIP), 3-tuple and source hashing, a drained VIP, a backend VLAN and an unresolved backend. Dual stack: both
/// ports have `address6` and a resolved `gateway6`; IPv6 VIPs in l2 (one with a tagged backend, one with
/// `icmp_echo: false`, one unresolved), 6in6 (`*` UDP, TCP by source, two port-specific UDP VIPs on one
/// address) and IPv4 VIPs tunnelled 4in6. An output outgrows its input only as a neighbor advertisement (72
/// bytes of IPv6 for a 64-byte solicitation): the checker gives every frame the 96 bytes of tailroom an mbuf has.
public enum FrameTopology {
    public static let yaml = """
        ports:
          - {name: wan, device: net_null0, address: 10.0.1.2, mac: "02:00:00:00:00:01", gateway: 10.0.1.1,
             gateway_mac: "02:00:00:00:00:fe", address6: "2001:db8:1::2", gateway6: "2001:db8:1::1",
             gateway6_mac: "02:00:00:00:00:fd", mtu: 1500}
          - {name: lan, device: net_null1, address: 10.0.9.2, mac: "02:00:00:00:00:09", gateway: 10.0.9.1,
             gateway_mac: "02:00:00:00:09:fe", address6: "2001:db8:9::2", gateway6: "2001:db8:9::1",
             gateway6_mac: "02:00:00:00:09:fd", mtu: 1280, vlan: 100, kernel_interface: tk-fuzz}
        flow_idle_timeout: 30
        vips:
          - {name: web-l2, address: 10.0.1.100, port: 80, protocol: tcp, mode: l2, maglev_table_size: 251,
             backends: [{address: 10.0.1.11, mac: "02:00:00:00:01:11"}]}
          - {name: any-l2, address: 10.0.1.101, port: "*", protocol: tcp, mode: l2, maglev_table_size: 251,
             backends: [{address: 10.0.1.12, mac: "02:00:00:00:01:12"}]}
          - {name: exact-l2, address: 10.0.1.101, port: 443, protocol: tcp, mode: l2, icmp_echo: false,
             maglev_table_size: 251, backends: [{address: 10.0.1.13, mac: "02:00:00:00:01:13"}]}
          - {name: dns-l3, address: 10.0.1.102, port: 53, protocol: udp, mode: l3, hash: 3tuple, maglev_table_size: 251,
             backends: [{address: 10.0.2.21}, {address: 10.0.2.23}]}
          - {name: web-l3, address: 10.0.1.102, port: 443, protocol: tcp, mode: l3, maglev_table_size: 251,
             backends: [{address: 10.0.2.22}]}
          - {name: ntp-l3, address: 10.0.1.102, port: 123, protocol: udp, mode: l3, maglev_table_size: 251,
             backends: [{address: 10.0.2.24}]}
          - {name: tagged-l2, address: 10.0.1.103, port: 80, protocol: tcp, mode: l2, maglev_table_size: 251,
             backends: [{address: 10.0.1.14, mac: "02:00:00:00:01:14", vlan: 300}]}
          - {name: discard-l2, address: 10.0.1.104, port: 9, protocol: udp, mode: l2, icmp_echo: false,
             maglev_table_size: 251, backends: [{address: 10.0.1.15, mac: "02:00:00:00:01:15"}]}
          - {name: drained, address: 10.0.1.105, port: 80, protocol: udp, mode: l2, maglev_table_size: 251,
             backends: [{address: 10.0.1.21, mac: "02:00:00:00:02:21", weight: 0}]}
          - {name: tunnel, address: 10.0.1.106, port: "*", protocol: tcp, mode: l3, maglev_table_size: 251,
             backends: [{address: 10.0.2.31}, {address: 10.0.2.32}]}
          - {name: by-src, address: 10.0.1.108, port: "*", protocol: udp, mode: l2, hash: src, maglev_table_size: 251,
             backends: [{address: 10.0.1.81, mac: "02:00:00:00:08:81"}, {address: 10.0.1.82, mac: "02:00:00:00:08:82", weight: 3}]}
          - {name: unresolved, address: 10.0.1.110, port: 80, protocol: tcp, mode: l2, maglev_table_size: 251,
             backends: [{address: 10.0.1.99}]}
          - {name: web6-l2, address: "2001:db8:100::80", port: 80, protocol: tcp, mode: l2, maglev_table_size: 251,
             backends: [{address: "2001:db8:1::11", mac: "02:00:00:00:06:11"},
                        {address: "2001:db8:1::12", mac: "02:00:00:00:06:12", vlan: 300}]}
          - {name: quiet6-l2, address: "2001:db8:100::90", port: 80, protocol: tcp, mode: l2, icmp_echo: false,
             maglev_table_size: 251, backends: [{address: "2001:db8:1::13", mac: "02:00:00:00:06:13"}]}
          - {name: unresolved6, address: "2001:db8:100::110", port: 80, protocol: tcp, mode: l2, maglev_table_size: 251,
             backends: [{address: "2001:db8:1::99"}]}
          - {name: video6-l3, address: "2001:db8:100::443", port: "*", protocol: udp, mode: l3, maglev_table_size: 251,
             backends: [{address: "2001:db8:2::21"}, {address: "2001:db8:2::22"}]}
          - {name: web6-l3, address: "2001:db8:100::443", port: 443, protocol: tcp, mode: l3, hash: src,
             maglev_table_size: 251, backends: [{address: "2001:db8:2::23"}]}
          - {name: dns6-l3, address: "2001:db8:100::53", port: 53, protocol: udp, mode: l3, hash: 3tuple,
             maglev_table_size: 251, backends: [{address: "2001:db8:2::41"}, {address: "2001:db8:2::42"}]}
          - {name: ntp6-l3, address: "2001:db8:100::53", port: 123, protocol: udp, mode: l3, maglev_table_size: 251,
             backends: [{address: "2001:db8:2::43"}]}
          - {name: web4-over-v6, address: 10.0.1.150, port: 443, protocol: tcp, mode: l3, maglev_table_size: 251,
             backends: [{address: "2001:db8:2::31"}, {address: "2001:db8:2::32"}]}
          - {name: dns4-over-v6, address: 10.0.1.150, port: "*", protocol: udp, mode: l3, hash: src,
             maglev_table_size: 251, backends: [{address: "2001:db8:2::33"}]}

        """
}

/// How one fuzz input is run: the port, the NIC's checksum report, the headroom and the clock.
struct FrameVariant {
    var port: Int
    var checksum: ChecksumStatus
    var headroom: Int
    var now: UInt32
    /// Give an untagged frame the port's VLAN tag first (for the VLAN port).
    var tagged: Bool
}

/// A VIP as the checker sees it: its config and its backends by MAC (l2, with their VLAN) and by address (l3).
struct VIPModel {
    let config: VIPConfig
    /// l2 backend MAC -> its configured VLAN (0: none).
    let l2: [[UInt8]: UInt16]
    /// l3 backend addresses, 4 or 16 bytes.
    let l3: Set<[UInt8]>
    /// l3 to IPv6 backends: an IPv6 outer header (6in6 or 4in6), 40 bytes.
    var tunnel6: Bool { config.mode == .l3 && config.backendFamily == .v6 }
    var overhead: Int { config.mode == .l2 ? 0 : tunnel6 ? 40 : 20 }

    init(_ config: VIPConfig) {
        self.config = config
        var l2: [[UInt8]: UInt16] = [:]
        var l3: Set<[UInt8]> = []
        for b in config.backends {
            if config.mode == .l3 { l3.insert(addressBytes(b.address)) } else if let mac = b.mac { l2[mac.array] = b.vlan ?? 0 }
        }
        self.l2 = l2; self.l3 = l3
    }
}

/// An address as its network bytes (4 for IPv4, 16 for IPv6).
func addressBytes(_ a: IPAddress) -> [UInt8] {
    switch a {
    case .v4(let v4): [UInt8(v4.value >> 24), UInt8(v4.value >> 16 & 0xFF), UInt8(v4.value >> 8 & 0xFF), UInt8(v4.value & 0xFF)]
    case .v6(let v6): v6.bytes
    }
}

/// Where a received packet must go, re-derived from its bytes and the config: the VIP, the hash its flow label
/// (6in6, 4in6) comes from, and whether it is an ICMP error relayed to the flow's backend.
struct Destination {
    let vip: VIPModel
    let hash: UInt64
    let icmpError: Bool
}

/// Runs frames through a `DataplaneHarness` of `FrameTopology` and checks every outcome (see `FuzzTargets.frame`).
final class FrameChecker {
    let harness: DataplaneHarness
    /// VIPs by address (network bytes), in config order.
    let vipsAt: [[UInt8]: [VIPModel]]
    let vipAddresses: Set<UInt32>

    /// Bytes every frame has after it, as an mbuf has (`processFrame` may write there: a reply can outgrow its
    /// input); the buffer ends there, so the address sanitizer catches anything written or read past it.
    static let tailroom = 96

    /// Each input runs in these four ways, on one flow table (so later runs meet the flows earlier ones pinned):
    /// software checksum with just enough headroom for an IPv6 outer header and a tag; NIC-checked checksum (the
    /// fuzzer need not get checksums right to reach the deeper code); the VLAN port (tagged, to its MAC: l3
    /// outputs take the port's tag), the smallest MTU IPv6 allows, and a clock past the idle timeout; and no
    /// headroom at all (l3 and tag insertion refused).
    static let variants = [
        FrameVariant(port: 0, checksum: .unknown, headroom: requiredHeadroomBytes, now: 1000, tagged: false),
        FrameVariant(port: 0, checksum: .good, headroom: requiredHeadroomBytes, now: 1000, tagged: false),
        FrameVariant(port: 1, checksum: .good, headroom: requiredHeadroomBytes, now: 2000, tagged: true),
        FrameVariant(port: 0, checksum: .good, headroom: 0, now: 2000, tagged: false),
    ]

    init() {
        do {
            harness = try DataplaneHarness(yaml: FrameTopology.yaml, file: "frame-topology.yaml", flowCapacity: 8)
        } catch {
            preconditionFailure("the frame topology does not load: \(error)")
        }
        var at: [[UInt8]: [VIPModel]] = [:]
        for vip in harness.config.vips { at[addressBytes(vip.address), default: []].append(VIPModel(vip)) }
        vipsAt = at
        vipAddresses = Set(harness.config.vips.compactMap { $0.address.v4?.value })
        precondition(FrameChecker.variants.allSatisfy { $0.headroom <= requiredHeadroomBytes })
    }

    /// The VIP a TCP or UDP packet to `address`:`port` goes to: the port's own before `*`.
    func vip(_ address: [UInt8], proto: UInt8, port: UInt16) -> VIPModel? {
        let candidates = (vipsAt[address] ?? []).filter { $0.config.proto.rawValue == proto }
        return candidates.first { $0.config.port == port } ?? candidates.first { $0.config.port == nil }
    }

    /// The VIP that takes `address`'s fragments of `proto`: its `*` VIP, else its only VIP of that protocol.
    func fragmentVIP(_ address: [UInt8], proto: UInt8) -> VIPModel? {
        let candidates = (vipsAt[address] ?? []).filter { $0.config.proto.rawValue == proto }
        return candidates.first { $0.config.port == nil } ?? (candidates.count == 1 ? candidates[0] : nil)
    }

    /// Some VIP on `address` answers echo requests.
    func answersEcho(_ address: [UInt8]) -> Bool { (vipsAt[address] ?? []).contains { $0.config.icmpEcho } }

    func run(_ input: UnsafeRawBufferPointer) {
        harness.reset()
        let original = [UInt8](input)
        for variant in FrameChecker.variants {
            var frame = original
            if variant.tagged, frame.count >= 14 {
                // As the VLAN port would receive it: tagged with its VLAN, and sent to its MAC rather than wan's.
                // A frame already sent to the VLAN port's MAC goes in as it is: untagged frames reach a VLAN port
                // too, and their outputs gain its tag (an IPv6 outer header and a tag in front of a 14-byte header).
                let port = harness.config.ports[variant.port]
                if Bytes.be16(frame, 12) != 0x8100 && Array(frame[0..<6]) != port.mac!.array {
                    let vlan = port.vlan ?? 0
                    frame.insert(contentsOf: [0x81, 0x00, UInt8(vlan >> 8), UInt8(vlan & 0xFF)], at: 12)
                }
                if Array(frame[0..<6]) == harness.config.ports[0].mac!.array { frame.replaceSubrange(0..<6, with: port.mac!.array) }
            }
            check(frame, variant)
        }
    }

    /// Runs `frame` once and checks the outcome, the counters and the bytes.
    func check(_ frame: [UInt8], _ v: FrameVariant) {
        let layout = harness.layout
        let before = (0..<harness.config.ports.count).flatMap { p in
            (0..<Verdict.count).map { harness.counters[layout.verdict(p, Verdict(rawValue: UInt8($0))!)] }
        }
        // The worker tries the fast path first: what it takes must come out exactly as processFrame has it.
        let (run, _, mismatch) = harness.processComparingFastPath(frame, headroom: v.headroom, tailroom: FrameChecker.tailroom,
                                                                   checksum: v.checksum, now: v.now, port: v.port)
        if let mismatch { preconditionFailure("fast path: \(mismatch)") }
        let verdict = run.outcome.verdict
        precondition(Verdict.named(verdict.name) == verdict, "verdict \(verdict.rawValue) has no name of its own")
        precondition(verdict != .noMbuf && verdict != .txFull, "processFrame gave the worker's verdict \(verdict)")
        let after = (0..<harness.config.ports.count).flatMap { p in
            (0..<Verdict.count).map { harness.counters[layout.verdict(p, Verdict(rawValue: UInt8($0))!)] }
        }
        for i in 0..<before.count {
            let expected = before[i] &+ (i == v.port * Verdict.count + Int(verdict.rawValue) ? 1 : 0)
            precondition(after[i] == expected, "verdict counter \(i) went from \(before[i]) to \(after[i]) for \(verdict)")
        }

        let frameEnd = run.frameStart + frame.count
        if verdict == .toKernel { checkToKernel(frame, v) }
        guard verdict.transmits else {
            precondition(run.outcome.fragments == 0, "\(verdict) with \(run.outcome.fragments) fragments")
            precondition(run.buffer[run.frameStart..<frameEnd].elementsEqual(frame), "\(verdict): the dropped frame was changed")
            precondition(run.buffer[..<run.frameStart].allSatisfy { $0 == 0xEE }, "\(verdict): the headroom was written")
            precondition(run.buffer[frameEnd...].allSatisfy { $0 == 0xEE }, "\(verdict): the tailroom was written")
            return
        }
        let from = run.frameStart + Int(run.outcome.startShift)
        let to = from + Int(run.outcome.length)
        precondition(from >= 0 && to <= run.buffer.count && from <= to,
                     "\(verdict): output [\(from), \(to)) is outside the buffer [0, \(run.buffer.count))")
        precondition(run.buffer[..<from].allSatisfy { $0 == 0xEE }, "\(verdict): bytes before the output were written")
        precondition(run.buffer[max(to, frameEnd)...].allSatisfy { $0 == 0xEE }, "\(verdict): bytes after the output were written")
        let out = Parsed(Array(run.buffer[from..<to]))
        precondition(out.bytes.count >= 14, "\(verdict): a \(out.bytes.count)-byte output")
        // Written in front of the frame at most: an outer header (IPv4 20, IPv6 40) and a tag for l3, a tag for l2.
        let front = verdict == .forwardedL3 ? (out.etherType == 0x86DD ? 40 : 20) + 4 : verdict == .forwardedL2 ? 4 : 0
        precondition(run.frameStart - from <= front, "\(verdict): the output starts \(run.frameStart - from) bytes early")
        let input = Parsed(frame)
        switch input.etherType {
        case 0x0806: checkARP(frame, input, out, verdict, v)
        case 0x0800: checkIPv4(frame, input, out, run, verdict, v)
        case 0x86DD: checkIPv6(frame, input, out, verdict, v)
        default: preconditionFailure("\(verdict) for ethertype \(input.etherType)")
        }
    }

    /// `to-kernel` only on a port with a kernel interface, for its own address: an ARP request for `address`,
    /// IPv4 to `address` or IPv6 to `address6`, sent to the port's MAC (VIP traffic never goes to the kernel).
    func checkToKernel(_ frame: [UInt8], _ v: FrameVariant) {
        let port = harness.config.ports[v.port]
        precondition(port.kernelInterface != nil, "to-kernel on a port without kernel_interface")
        let input = Parsed(frame)
        switch input.etherType {
        case 0x0806:
            guard let arp = input.ip else { preconditionFailure("to-kernel for ARP that does not parse") }
            precondition(Bytes.be16(arp, 6) == 1 && Bytes.be32(arp, 24) == port.address.value,
                         "to-kernel for ARP that is not a request for the port address")
        case 0x0800:
            guard let ip = input.ip else { preconditionFailure("to-kernel for IPv4 that does not parse") }
            precondition(Bytes.be32(ip, 16) == port.address.value, "to-kernel for IPv4 to another address")
            precondition(Array(frame[0..<6]) == port.mac!.array, "to-kernel for IPv4 to another MAC")
        case 0x86DD:
            guard let ip6 = input.ip6, let own = port.address6 else { preconditionFailure("to-kernel for IPv6 without address6") }
            precondition(Array(ip6[24..<40]) == own.bytes, "to-kernel for IPv6 to another address")
            precondition(Array(frame[0..<6]) == port.mac!.array, "to-kernel for IPv6 to another MAC")
        default:
            preconditionFailure("to-kernel for ethertype \(input.etherType)")
        }
    }

    func checkARP(_ frame: [UInt8], _ input: Parsed, _ out: Parsed, _ verdict: Verdict, _ v: FrameVariant) {
        let port = harness.config.ports[v.port]
        let portMAC = port.mac!.array
        precondition(verdict == .arpReply && input.ip != nil, "\(verdict) for ARP")
        precondition(out.etherType == 0x0806, "arp-reply is not ARP")
        precondition(out.bytes.count == frame.count, "arp-reply changed the frame's length")
        precondition(out.tci == input.tci, "arp-reply changed the tag")
        let a = out.l2, q = input.l2
        precondition(Array(out.bytes[0..<6]) == Array(frame[6..<12]) && Array(out.bytes[6..<12]) == portMAC,
                     "arp-reply: Ethernet addresses")
        precondition(Bytes.be16(out.bytes, a + 6) == 2 && Bytes.be16(frame, q + 6) == 1, "arp-reply: operation")
        precondition(Array(out.bytes[(a + 8)..<(a + 14)]) == portMAC, "arp-reply: sender MAC")
        let target = Bytes.be32(frame, q + 24)
        precondition(target == port.address.value || vipAddresses.contains(target), "arp-reply for \(target)")
        precondition(Bytes.be32(out.bytes, a + 14) == target, "arp-reply: sender address")
        precondition(Array(out.bytes[(a + 18)..<(a + 28)]) == Array(frame[(q + 8)..<(q + 18)]), "arp-reply: target")
        precondition(Array(out.bytes[(a + 28)...]) == Array(frame[(q + 28)...]), "arp-reply changed the padding")
    }

    func checkIPv4(_ frame: [UInt8], _ input: Parsed, _ out: Parsed, _ run: DataplaneHarness.Run, _ verdict: Verdict,
                   _ v: FrameVariant) {
        let port = harness.config.ports[v.port]
        let portMAC = port.mac!.array
        let name = verdict.name
        guard let inIP = input.ip else { preconditionFailure("\(name) for an IPv4 frame that does not parse") }
        precondition(v.checksum != .unknown || Bytes.checksumValid(inIP, headerLength: input.ihl),
                     "\(name) of a packet with a bad header checksum")
        precondition(Array(frame[0..<6]) == portMAC, "\(name) of a frame to another MAC")
        /// What every ICMP answer shares: back to the sender with the same tag and the port's MAC; returns its
        /// IPv4 packet.
        func icmpAnswerIP() -> [UInt8] {
            precondition(out.tci == input.tci, "\(name) changed the tag")
            precondition(Array(out.bytes[0..<6]) == Array(frame[6..<12]) && Array(out.bytes[6..<12]) == portMAC,
                         "\(name): Ethernet addresses")
            guard let ip = out.ip else { preconditionFailure("\(name) is not IPv4") }
            return ip
        }

        switch verdict {
        case .forwardedL2:
            guard let d = destination4(inIP, ihl: input.ihl) else { preconditionFailure("forwarded-l2 to no VIP") }
            checkForwardedL2(out, packet: inIP, input: input, vip: d.vip, v: v)
            precondition(run.outcome.fragments == 0, "forwarded-l2 with fragments")
        case .forwardedL3:
            guard let d = destination4(inIP, ihl: input.ihl), d.vip.config.mode == .l3 else {
                preconditionFailure("forwarded-l3 to no l3 VIP")
            }
            if d.vip.tunnel6 {
                precondition(run.outcome.fragments == 0, "4in6 as outer fragments")
                checkOuter6(out, inner: inIP, inner6: false, inputTCI: input.tci, d: d, v: v)
                return
            }
            if run.outcome.fragments > 0 {
                checkOuterFragments(frame, inner: inIP, count: Int(run.outcome.fragments), nextHop: run.outcome.nextHop,
                                    vip: d.vip, v: v)
                precondition(run.buffer[run.frameStart..<(run.frameStart + frame.count)].elementsEqual(frame),
                             "fragmented: the frame was changed")
                return
            }
            checkOuter(out, inner: inIP, inputTCI: input.tci, v: v, vip: d.vip, dfFrom: inIP, more: false, offset: 0)
            precondition(Array(out.bytes[(out.l2 + 20)...]) == inIP, "forwarded-l3 changed the inner packet")
        case .icmpEchoReply:
            let ip = icmpAnswerIP()
            precondition(inIP[9] == 1 && Bytes.be16(inIP, 6) & 0x3FFF == 0, "icmp-reply to a fragment or not ICMP")
            let vipAddress = Array(inIP[16..<20])
            precondition(answersEcho(vipAddress), "icmp-reply from \(vipAddress), where no VIP answers echo")
            precondition(out.l2 + ip.count == out.bytes.count && ip.count == inIP.count, "icmp-reply: lengths")
            precondition(out.ihl == input.ihl && Bytes.checksumValid(ip, headerLength: out.ihl),
                         "icmp-reply: header checksum")
            precondition(Bytes.be32(ip, 12) == Bytes.be32(inIP, 16) && Bytes.be32(ip, 16) == Bytes.be32(inIP, 12),
                         "icmp-reply: addresses")
            precondition(ip[8] == 64 && ip[9] == 1 && ip[0] == inIP[0], "icmp-reply: TTL, protocol, version")
            let icmp = Array(ip[out.ihl...]), request = Array(inIP[input.ihl...])
            precondition(request[0] == 8 && request[1] == 0 && icmp[0] == 0 && icmp[1] == 0, "icmp-reply: type")
            precondition(icmp[4...] == request[4...], "icmp-reply changed the echo data")
            precondition(Bytes.sum(request) != 0xFFFF || Bytes.sum(icmp) == 0xFFFF,
                         "icmp-reply: a valid request got a reply with a bad ICMP checksum")
        case .icmpFragNeeded:
            let ip = icmpAnswerIP()
            guard let d = destination4(inIP, ihl: input.ihl), d.vip.config.mode == .l3, !d.icmpError else {
                preconditionFailure("icmp-frag-needed for a packet to no l3 VIP, or an ICMP error")
            }
            let overhead = d.vip.overhead
            precondition(out.l2 + ip.count == out.bytes.count && ip.count == 20 + 8 + input.ihl + 8,
                         "icmp-frag-needed: lengths")
            precondition(ip[0] == 0x45 && Bytes.checksumValid(ip, headerLength: 20), "icmp-frag-needed: header")
            precondition(ip[9] == 1 && Bytes.be16(ip, 6) == 0, "icmp-frag-needed: protocol or fragment fields")
            precondition(Bytes.be32(ip, 12) == Bytes.be32(inIP, 16) && Bytes.be32(ip, 16) == Bytes.be32(inIP, 12),
                         "icmp-frag-needed: addresses")
            precondition(inIP.count + overhead > port.mtu && Bytes.be16(inIP, 6) & 0x4000 != 0,
                         "icmp-frag-needed for a packet that fits or may be fragmented")
            let icmp = Array(ip[20...])
            precondition(icmp[0] == 3 && icmp[1] == 4 && Bytes.sum(icmp) == 0xFFFF, "icmp-frag-needed: ICMP header")
            precondition(Int(Bytes.be16(icmp, 6)) == port.mtu - overhead, "icmp-frag-needed: next-hop MTU")
            precondition(Array(icmp[8...]) == Array(inIP[..<(input.ihl + 8)]), "icmp-frag-needed: quote")
            precondition(ip.count <= port.mtu, "icmp-frag-needed over the MTU")
        default:
            preconditionFailure("\(verdict) for IPv4")
        }
    }

    func checkIPv6(_ frame: [UInt8], _ input: Parsed, _ out: Parsed, _ verdict: Verdict, _ v: FrameVariant) {
        let port = harness.config.ports[v.port]
        let portMAC = port.mac!.array
        let name = verdict.name
        guard let inIP = input.ip6 else { preconditionFailure("\(name) for an IPv6 frame that does not parse") }
        guard let walk = Walk6(inIP) else { preconditionFailure("\(name) past an extension header chain that breaks the rules") }
        let source = Array(inIP[8..<24]), destination = Array(inIP[24..<40])
        precondition(source[0] != 0xFF, "\(name) of a packet from a multicast address")
        if verdict == .ndReply {
            checkNeighborAdvertisement(frame, input, out, inIP, walk, v)
            return
        }
        // Everything else was to our MAC, from a unicast source.
        precondition(Array(frame[0..<6]) == portMAC, "\(name) of a frame to another MAC")
        precondition(source.contains { $0 != 0 }, "\(name) of a packet from ::")
        /// What every ICMPv6 answer shares: back to the sender with the same tag, the port's MAC, an IPv6 header
        /// of the length it says; returns the IPv6 packet.
        func icmpAnswerIP() -> [UInt8] {
            precondition(out.tci == input.tci, "\(name) changed the tag")
            precondition(Array(out.bytes[0..<6]) == Array(frame[6..<12]) && Array(out.bytes[6..<12]) == portMAC,
                         "\(name): Ethernet addresses")
            guard let ip = out.ip6, out.l2 + ip.count == out.bytes.count else { preconditionFailure("\(name): IPv6 length") }
            return ip
        }

        switch verdict {
        case .forwardedL2:
            guard let d = destination6(inIP, walk) else { preconditionFailure("forwarded-l2 to no VIP") }
            checkForwardedL2(out, packet: inIP, input: input, vip: d.vip, v: v)
        case .forwardedL3:
            guard let d = destination6(inIP, walk), d.vip.tunnel6 else { preconditionFailure("forwarded-l3 to no 6in6 VIP") }
            checkOuter6(out, inner: inIP, inner6: true, inputTCI: input.tci, d: d, v: v)
        case .icmpEchoReply:
            let ip = icmpAnswerIP()
            let o = walk.offset
            precondition(walk.upper == 58 && !walk.fragment && inIP[o] == 128 && inIP[o + 1] == 0,
                         "icmp-reply to a packet that is not an echo request")
            precondition(answersEcho(destination), "icmp-reply from \(destination), where no VIP answers echo")
            precondition(ip.count == inIP.count, "icmp-reply: length")
            precondition(ip[0..<7] == inIP[0..<7] && ip[7] == 64, "icmp-reply: IPv6 header")
            precondition(Array(ip[8..<24]) == destination && Array(ip[24..<40]) == source, "icmp-reply: addresses")
            precondition(ip[40..<o] == inIP[40..<o], "icmp-reply changed the extension headers")
            precondition(ip[o] == 129 && ip[o + 1] == 0 && ip[(o + 4)...] == inIP[(o + 4)...], "icmp-reply: message")
            precondition(!Bytes.icmp6Valid(inIP, offset: o) || Bytes.icmp6Valid(ip, offset: o),
                         "icmp-reply: a valid request got a reply with a bad ICMPv6 checksum")
        case .icmpPacketTooBig:
            let ip = icmpAnswerIP()
            guard let d = destination6(inIP, walk), d.vip.tunnel6, !d.icmpError else {
                preconditionFailure("icmp6-packet-too-big for a packet to no 6in6 VIP, or an ICMP error")
            }
            precondition(inIP.count + 40 > port.mtu, "icmp6-packet-too-big for a packet that fits")
            let quoted = min(inIP.count, 1280 - 48)
            precondition(ip.count == 48 + quoted && ip.count <= 1280, "icmp6-packet-too-big: \(ip.count) bytes")
            precondition(Bytes.be32(ip, 0) == 0x6000_0000 && ip[6] == 58 && ip[7] == 64, "icmp6-packet-too-big: IPv6 header")
            precondition(Array(ip[8..<24]) == destination && Array(ip[24..<40]) == source, "icmp6-packet-too-big: addresses")
            precondition(ip[40] == 2 && ip[41] == 0 && Bytes.icmp6Valid(ip, offset: 40), "icmp6-packet-too-big: ICMPv6 header")
            precondition(Int(Bytes.be32(ip, 44)) == port.mtu - 40, "icmp6-packet-too-big: MTU \(Bytes.be32(ip, 44))")
            precondition(ip[48...] == inIP[..<quoted], "icmp6-packet-too-big: quote")
        default:
            preconditionFailure("\(verdict) for IPv6")
        }
    }

    /// An l2 output of either family: the packet untouched, to a backend of `vip`, from the port, tagged as the
    /// input or as the backend's VLAN says, within the MTU.
    func checkForwardedL2(_ out: Parsed, packet: [UInt8], input: Parsed, vip: VIPModel, v: FrameVariant) {
        let port = harness.config.ports[v.port]
        precondition(vip.config.mode == .l2, "forwarded-l2 for the l3 VIP \(vip.config.name)")
        guard let vlan = vip.l2[Array(out.bytes[0..<6])] else {
            preconditionFailure("forwarded-l2 to \(out.bytes[0..<6]), not a backend of \(vip.config.name)")
        }
        precondition(Array(out.bytes[6..<12]) == port.mac!.array, "forwarded-l2: source MAC is not the port's")
        precondition(out.etherType == input.etherType, "forwarded-l2: ethertype \(out.etherType)")
        precondition(out.tci == expectedTag(input.tci, vlan), "forwarded-l2: tag \(String(describing: out.tci))")
        precondition(Array(out.bytes[out.l2...]) == packet, "forwarded-l2 changed the IP packet or kept padding")
        precondition(packet.count <= port.mtu, "forwarded-l2: \(packet.count) bytes over MTU \(port.mtu)")
    }

    /// The VIP and flow hash of an IPv4 packet per the contract: TCP/UDP by (destination, protocol, port),
    /// fragments by the address's fragment VIP (hashed without ports), ICMP errors by the quoted packet (the
    /// reversed tuple). Nil when it has none (and must not be forwarded).
    func destination4(_ ip: [UInt8], ihl: Int) -> Destination? {
        let proto = ip[9], dst = Array(ip[16..<20])
        let src32 = Bytes.be32(ip, 12), dst32 = Bytes.be32(ip, 16)
        let fragment = Bytes.be16(ip, 6) & 0x3FFF != 0
        if proto == 1 {
            let inner = ihl + 8
            guard !fragment, ip.count >= inner + 20, ip[ihl] == 3 || ip[ihl] == 11 else { return nil }
            let innerIHL = Int(ip[inner] & 0x0F) * 4
            guard ip[inner] >> 4 == 4, innerIHL >= 20, ip.count >= inner + innerIHL + 8 else { return nil }
            let innerProto = ip[inner + 9]
            guard innerProto == 6 || innerProto == 17, Array(ip[(inner + 12)..<(inner + 16)]) == dst else { return nil }
            let vipPort = Bytes.be16(ip, inner + innerIHL), clientPort = Bytes.be16(ip, inner + innerIHL + 2)
            guard let vip = vip(dst, proto: innerProto, port: vipPort) else { return nil }
            return Destination(vip: vip, hash: Hash.v4(Bytes.be32(ip, inner + 16), dst32, clientPort, vipPort, innerProto),
                               icmpError: true)
        }
        guard proto == 6 || proto == 17 else { return nil }
        if fragment {
            guard let vip = fragmentVIP(dst, proto: proto) else { return nil }
            let hash = vip.config.hash == .source ? Hash.v4(src32, 0, 0, 0, 0) : Hash.v4(src32, dst32, 0, 0, proto)
            return Destination(vip: vip, hash: hash, icmpError: false)
        }
        guard ip.count >= ihl + 4 else { return nil }
        let sport = Bytes.be16(ip, ihl), dport = Bytes.be16(ip, ihl + 2)
        guard let vip = vip(dst, proto: proto, port: dport) else { return nil }
        return Destination(vip: vip, hash: Hash.v4(src32, dst32, sport, dport, proto), icmpError: false)
    }

    /// `destination4` for IPv6 (past the extension headers `walk` found); ICMPv6 errors quote TCP or UDP directly.
    func destination6(_ ip: [UInt8], _ walk: Walk6) -> Destination? {
        let src = Array(ip[8..<24]), dst = Array(ip[24..<40])
        let zero = [UInt8](repeating: 0, count: 16)
        guard src[0] != 0xFF, src != zero else { return nil }
        let o = walk.offset
        if walk.upper == 58 {
            let inner = o + 8
            guard !walk.fragment, ip.count >= inner + 44, (1...3).contains(ip[o]), ip[inner] >> 4 == 6 else { return nil }
            let innerProto = ip[inner + 6]
            guard innerProto == 6 || innerProto == 17, Array(ip[(inner + 8)..<(inner + 24)]) == dst else { return nil }
            let vipPort = Bytes.be16(ip, inner + 40), clientPort = Bytes.be16(ip, inner + 42)
            guard let vip = vip(dst, proto: innerProto, port: vipPort) else { return nil }
            return Destination(vip: vip, hash: Hash.v6(Array(ip[(inner + 24)..<(inner + 40)]), dst, clientPort, vipPort,
                                                       innerProto),
                               icmpError: true)
        }
        let proto = walk.upper
        guard proto == 6 || proto == 17 else { return nil }
        if walk.fragment {
            guard let vip = fragmentVIP(dst, proto: proto) else { return nil }
            let hash = vip.config.hash == .source ? Hash.v6(src, zero, 0, 0, 0) : Hash.v6(src, dst, 0, 0, proto)
            return Destination(vip: vip, hash: hash, icmpError: false)
        }
        guard ip.count >= o + 4 else { return nil }
        let sport = Bytes.be16(ip, o), dport = Bytes.be16(ip, o + 2)
        guard let vip = vip(dst, proto: proto, port: dport) else { return nil }
        return Destination(vip: vip, hash: Hash.v6(src, dst, sport, dport, proto), icmpError: false)
    }

    /// A neighbor advertisement answering a valid solicitation (RFC 4861 7.1) for our address6 or an IPv6 VIP:
    /// to the soliciting node (all nodes for duplicate address detection), from the target, with the port's MAC.
    func checkNeighborAdvertisement(_ frame: [UInt8], _ input: Parsed, _ out: Parsed, _ inIP: [UInt8], _ walk: Walk6,
                                    _ v: FrameVariant) {
        let port = harness.config.ports[v.port]
        let portMAC = port.mac!.array
        let source = Array(inIP[8..<24]), destination = Array(inIP[24..<40])
        // The solicitation.
        let toUs = Array(frame[0..<6]) == portMAC || frame[0] == 0x33 && frame[1] == 0x33
        precondition(toUs, "nd-reply to a frame for another MAC")
        precondition(walk.headers == 0 && walk.upper == 58 && inIP[7] == 255, "nd-reply: extension headers or hop limit")
        let length = inIP.count - 40
        precondition(length >= 24 && inIP[40] == 135 && inIP[41] == 0 && Bytes.icmp6Valid(inIP, offset: 40),
                     "nd-reply to a message that is not a valid solicitation")
        var option = 24, sourceLinkLayer = false
        while option + 2 <= length {
            let size = Int(inIP[40 + option + 1]) * 8
            precondition(size > 0 && option + size <= length, "nd-reply to a solicitation with a bad option")
            if inIP[40 + option] == 1 { sourceLinkLayer = true }
            option += size
        }
        let target = Array(inIP[48..<64])
        precondition(target == port.address6?.bytes || vipsAt[target] != nil, "nd-reply for \(target), not ours")
        var solicitedNode = [UInt8](repeating: 0, count: 16)
        solicitedNode[0] = 0xFF; solicitedNode[1] = 0x02; solicitedNode[11] = 1; solicitedNode[12] = 0xFF
        solicitedNode[13..<16] = target[13..<16]
        precondition(destination == solicitedNode || destination == target, "nd-reply to a solicitation sent to \(destination)")
        let dad = source.allSatisfy { $0 == 0 }
        precondition(!dad || destination == solicitedNode && !sourceLinkLayer, "nd-reply to a malformed DAD solicitation")
        // The advertisement.
        var allNodes = [UInt8](repeating: 0, count: 16)
        allNodes[0] = 0xFF; allNodes[1] = 0x02; allNodes[15] = 1
        precondition(out.bytes.count == out.l2 + 72 && out.etherType == 0x86DD && out.tci == input.tci,
                     "nd-reply: length, ethertype or tag")
        precondition(Array(out.bytes[0..<6]) == (dad ? [0x33, 0x33, 0, 0, 0, 1] : Array(frame[6..<12]))
                     && Array(out.bytes[6..<12]) == portMAC, "nd-reply: Ethernet addresses")
        guard let ip = out.ip6, ip.count == 72 else { preconditionFailure("nd-reply: IPv6 length") }
        precondition(Bytes.be32(ip, 0) == 0x6000_0000 && ip[6] == 58 && ip[7] == 255, "nd-reply: IPv6 header")
        precondition(Array(ip[8..<24]) == target && Array(ip[24..<40]) == (dad ? allNodes : source), "nd-reply: addresses")
        precondition(ip[40] == 136 && ip[41] == 0 && Bytes.icmp6Valid(ip, offset: 40), "nd-reply: ICMPv6 header")
        precondition(Bytes.be32(ip, 44) == (dad ? 0x2000_0000 : 0x6000_0000), "nd-reply: flags")
        precondition(Array(ip[48..<64]) == target && Array(ip[64..<72]) == [2, 1] + portMAC, "nd-reply: target or option")
    }

    /// The tag an output should carry for input tag `tci` when the backend or port names `vlan` (0: none).
    func expectedTag(_ tci: UInt16?, _ vlan: UInt16) -> UInt16? {
        guard vlan != 0 else { return tci }
        return (tci ?? 0) & 0xF000 | vlan
    }

    /// A 6in6 or 4in6 frame: Ethernet to the IPv6 gateway, tagged as IPv4 l3 output, a 40-byte IPv6 header from
    /// the port's address6 to a backend of the VIP (traffic class the inner one's, flow label from the flow's
    /// hash, hop limit 64), then the inner packet unchanged.
    func checkOuter6(_ out: Parsed, inner: [UInt8], inner6: Bool, inputTCI: UInt16?, d: Destination, v: FrameVariant) {
        let port = harness.config.ports[v.port]
        precondition(Array(out.bytes[0..<6]) == port.gateway6MAC!.array && Array(out.bytes[6..<12]) == port.mac!.array,
                     "forwarded-l3 (IPv6 outer): Ethernet addresses")
        precondition(out.etherType == 0x86DD && out.tci == expectedTag(inputTCI, port.vlan ?? 0),
                     "forwarded-l3 (IPv6 outer): ethertype or tag")
        precondition(out.bytes.count == out.l2 + 40 + inner.count, "forwarded-l3 (IPv6 outer): length")
        let outer = Array(out.bytes[out.l2..<(out.l2 + 40)])
        let word = Bytes.be32(outer, 0)
        let trafficClass = inner6 ? UInt32(Bytes.be16(inner, 0) >> 4 & 0xFF) : UInt32(inner[1])
        precondition(word >> 28 == 6 && word >> 20 & 0xFF == trafficClass, "forwarded-l3 (IPv6 outer): version or traffic class")
        precondition(word & 0xF_FFFF == UInt32(truncatingIfNeeded: d.hash >> 44) & 0xF_FFFF,
                     "forwarded-l3 (IPv6 outer): flow label \(word & 0xF_FFFF)")
        precondition(Int(Bytes.be16(outer, 4)) == inner.count && outer[6] == (inner6 ? 41 : 4) && outer[7] == 64,
                     "forwarded-l3 (IPv6 outer): payload length, next header or hop limit")
        precondition(Array(outer[8..<24]) == port.address6!.bytes, "forwarded-l3 (IPv6 outer): source")
        precondition(d.vip.l3.contains(Array(outer[24..<40])), "forwarded-l3 (IPv6 outer): not a backend of \(d.vip.config.name)")
        precondition(Array(out.bytes[(out.l2 + 40)...]) == inner, "forwarded-l3 (IPv6 outer) changed the inner packet")
        precondition(40 + inner.count <= port.mtu, "forwarded-l3 (IPv6 outer): \(40 + inner.count) bytes over MTU \(port.mtu)")
    }

    /// An IP-in-IP frame to the gateway: Ethernet, tag, and the outer header for `payload` bytes of `inner`.
    func checkOuter(_ out: Parsed, inner: [UInt8], inputTCI: UInt16?, v: FrameVariant, vip: VIPModel, dfFrom: [UInt8],
                    more: Bool, offset: Int) {
        let port = harness.config.ports[v.port]
        precondition(Array(out.bytes[0..<6]) == port.gatewayMAC!.array && Array(out.bytes[6..<12]) == port.mac!.array,
                     "forwarded-l3: Ethernet addresses")
        precondition(out.etherType == 0x0800 && out.tci == expectedTag(inputTCI, port.vlan ?? 0), "forwarded-l3: tag")
        guard let outer = out.ip else { preconditionFailure("forwarded-l3: the outer header does not parse") }
        precondition(out.l2 + outer.count == out.bytes.count, "forwarded-l3: outer total length")
        precondition(outer[0] == 0x45 && Bytes.checksumValid(outer, headerLength: 20), "forwarded-l3: outer header")
        precondition(outer[8] == 64 && outer[9] == 4 && outer[1] == inner[1], "forwarded-l3: TTL, protocol or TOS")
        precondition(Bytes.be32(outer, 12) == port.address.value && vip.l3.contains(Array(outer[16..<20])),
                     "forwarded-l3: outer addresses")
        let flags = Bytes.be16(outer, 6)
        precondition(flags & 0x8000 == 0 && (flags & 0x2000 != 0) == more && Int(flags & 0x1FFF) * 8 == offset,
                     "forwarded-l3: fragment fields \(flags)")
        precondition(offset > 0 || more || flags & 0x4000 == Bytes.be16(dfFrom, 6) & 0x4000, "forwarded-l3: DF")
        precondition(outer.count <= port.mtu, "forwarded-l3: \(outer.count) bytes over MTU \(port.mtu)")
    }

    /// The outer fragments the worker would write with `writeOuterFragment`, each into a buffer of exactly the
    /// documented size, and their payloads put together again.
    func checkOuterFragments(_ frame: [UInt8], inner: [UInt8], count: Int, nextHop: UInt32, vip: VIPModel, v: FrameVariant) {
        let port = harness.config.ports[v.port]
        precondition(count >= 2 && Bytes.be16(inner, 6) & 0x4000 == 0 && inner.count + 20 > port.mtu,
                     "forwarded-l3 as \(count) fragments of a \(inner.count)-byte packet (DF \(Bytes.be16(inner, 6)))")
        let hop: [UInt8] = [UInt8(nextHop >> 24), UInt8(nextHop >> 16 & 0xFF), UInt8(nextHop >> 8 & 0xFF), UInt8(nextHop & 0xFF)]
        precondition(vip.l3.contains(hop), "outer fragments to \(nextHop), not a backend of \(vip.config.name)")
        let capacity = min(port.mtu, mbufDataRoomBytes - 18) + 18
        var payload: [UInt8] = []
        var identification: UInt16? = nil
        for k in 0..<count {
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
            defer { buffer.deallocate() }
            let length = frame.withUnsafeBytes {
                writeOuterFragment(buffer, frame: $0.baseAddress!, index: k, nextHop: nextHop, identification: 0x5151,
                                   port: harness.tables.pointee.ports + v.port)
            }
            precondition(length > 0 && length <= capacity, "outer fragment \(k): \(length) bytes")
            let out = Parsed([UInt8](UnsafeRawBufferPointer(start: buffer, count: length)))
            checkOuter(out, inner: inner, inputTCI: Parsed(frame).tci, v: v, vip: vip, dfFrom: inner,
                       more: k < count - 1, offset: payload.count)
            precondition(Bytes.be32(out.ip!, 16) == nextHop, "outer fragment \(k): destination")
            let id = Bytes.be16(out.ip!, 4)
            precondition(identification == nil || identification == id, "outer fragments with different ids")
            identification = id
            payload += out.bytes[(out.l2 + 20)...]
        }
        precondition(payload == inner, "the outer fragments do not add up to the packet")
    }
}

/// A frame parsed by the checker's own code (not the code under test): Ethernet, one tag, and the IPv4 or IPv6
/// packet (without padding) or the ARP packet.
struct Parsed {
    let bytes: [UInt8]
    let tci: UInt16?
    let etherType: UInt16
    let l2: Int
    /// The IPv4 packet up to its total length, or the ARP packet; nil when neither parses.
    let ip: [UInt8]?
    let ihl: Int
    /// The IPv6 packet up to 40 + its payload length; nil when it does not parse (or is a jumbogram).
    let ip6: [UInt8]?

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
        var tci: UInt16? = nil, etherType: UInt16 = 0, l2 = 0
        var ip: [UInt8]? = nil, ihl = 0, ip6: [UInt8]? = nil
        if bytes.count >= 18 && Bytes.be16(bytes, 12) == 0x8100 {
            tci = Bytes.be16(bytes, 14); etherType = Bytes.be16(bytes, 16); l2 = 18
        } else if bytes.count >= 14 {
            etherType = Bytes.be16(bytes, 12); l2 = 14
        }
        let rest = bytes.count - l2
        if etherType == 0x0806, rest >= 28 {
            ip = Array(bytes[l2...])
        } else if etherType == 0x0800, rest >= 20, bytes[l2] >> 4 == 4, Int(bytes[l2] & 0x0F) * 4 >= 20 {
            let h = Int(bytes[l2] & 0x0F) * 4, total = Int(Bytes.be16(bytes, l2 + 2))
            if h <= rest, total >= h, total <= rest { ip = Array(bytes[l2..<(l2 + total)]); ihl = h }
        } else if etherType == 0x86DD, rest >= 40, bytes[l2] >> 4 == 6 {
            let payload = Int(Bytes.be16(bytes, l2 + 4))
            if payload > 0, 40 + payload <= rest { ip6 = Array(bytes[l2..<(l2 + 40 + payload)]) }
        }
        self.tci = tci; self.etherType = etherType; self.l2 = l2; self.ip = ip; self.ihl = ihl; self.ip6 = ip6
    }
}

/// An IPv6 packet's extension headers, walked by the contract's rules: Hop-by-Hop (first only), Routing,
/// Destination Options ((length + 1) * 8 bytes) and Fragment (8 bytes), at most 4 of them and 128 bytes, each
/// inside the packet. Nil when the chain breaks a rule (the packet must not be forwarded or answered).
struct Walk6 {
    /// The upper-layer protocol and where it starts.
    let upper: UInt8
    let offset: Int
    let headers: Int
    let fragment: Bool

    init?(_ ip: [UInt8]) {
        var next = ip[6], offset = 40, headers = 0, fragment = false
        while next == 0 || next == 43 || next == 60 || next == 44 {
            guard headers < 4, next != 0 || headers == 0, offset + 8 <= ip.count else { return nil }
            let size = next == 44 ? 8 : (Int(ip[offset + 1]) + 1) * 8
            guard offset + size <= ip.count, offset + size - 40 <= 128 else { return nil }
            if next == 44 { fragment = true }
            next = ip[offset]
            offset += size
            headers += 1
        }
        upper = next; self.offset = offset; self.headers = headers; self.fragment = fragment
    }
}

/// The flow hashes of the contract, written out again: a 64-bit mix of the addresses, then of ports and protocol.
enum Hash {
    static let seed: UInt64 = 0x7475_6C61_6473_7231

    static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    static func v4(_ src: UInt32, _ dst: UInt32, _ sport: UInt16, _ dport: UInt16, _ proto: UInt8) -> UInt64 {
        mix(mix((UInt64(src) << 32 | UInt64(dst)) ^ seed) ^ (UInt64(sport) << 48 | UInt64(dport) << 32 | UInt64(proto)))
    }

    static func v6(_ src: [UInt8], _ dst: [UInt8], _ sport: UInt16, _ dport: UInt16, _ proto: UInt8) -> UInt64 {
        var h = mix(Bytes.be64(src, 0) ^ seed)
        h = mix(h ^ Bytes.be64(src, 8))
        h = mix(h ^ Bytes.be64(dst, 0))
        h = mix(h ^ Bytes.be64(dst, 8))
        return mix(h ^ (UInt64(sport) << 48 | UInt64(dport) << 32 | UInt64(proto)))
    }
}

/// Byte helpers of the checker's own: big-endian fields and a plain RFC 1071 sum.
enum Bytes {
    static func be16(_ b: [UInt8], _ o: Int) -> UInt16 { UInt16(b[o]) << 8 | UInt16(b[o + 1]) }
    static func be32(_ b: [UInt8], _ o: Int) -> UInt32 { UInt32(be16(b, o)) << 16 | UInt32(be16(b, o + 2)) }
    static func be64(_ b: [UInt8], _ o: Int) -> UInt64 { UInt64(be32(b, o)) << 32 | UInt64(be32(b, o + 4)) }

    /// Ones'-complement sum of `b` in 16-bit big-endian words (odd byte padded), folded, not inverted.
    static func sum(_ b: some Collection<UInt8>) -> UInt16 {
        var s: UInt32 = 0
        var high = true
        for byte in b {
            s += high ? UInt32(byte) << 8 : UInt32(byte)
            high.toggle()
            if s > 0xFFFF { s = (s & 0xFFFF) + (s >> 16) }
        }
        return UInt16(s)
    }

    static func checksumValid(_ ip: [UInt8], headerLength: Int) -> Bool {
        headerLength >= 20 && ip.count >= headerLength && sum(ip[..<headerLength]) == 0xFFFF
    }

    /// The ICMPv6 message at `offset` of the IPv6 packet `ip` (to its end) has a valid checksum: the sum over
    /// the pseudo-header (addresses, length, next header 58) and the message.
    static func icmp6Valid(_ ip: [UInt8], offset: Int) -> Bool {
        let length = ip.count - offset
        let pseudo = Array(ip[8..<40]) + [UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF),
                                           UInt8(length & 0xFF), 0, 0, 0, 58]
        return sum(pseudo + ip[offset...]) == 0xFFFF
    }
}
