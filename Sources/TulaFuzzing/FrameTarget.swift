// The frame fuzz target: arbitrary bytes through processFrame (as the worker calls it) and a check of every output.

import TulaCore
import TulaDatapath

/// The fixed topology frames are fuzzed against: pcaps/golden/golden.yaml's port and VIPs (so the golden
/// captures are good seeds), the same port again on VLAN 100 with MTU 576 (l3 packets over 556 bytes get
/// "fragmentation needed" or go as outer fragments there), and more VIPs: `*` l3, an address with two
/// port-specific UDP VIPs (its UDP fragments have no VIP), 3-tuple and source hashing, a drained VIP, a backend
/// VLAN and an unresolved backend. No output can outgrow its input here (the smallest MTU is 576), so the frame
/// buffer ends where the frame does.
public enum FrameTopology {
    public static let yaml = """
        ports:
          - {name: wan, device: net_null0, address: 10.0.1.2, mac: "02:00:00:00:00:01", gateway: 10.0.1.1,
             gateway_mac: "02:00:00:00:00:fe", mtu: 1500}
          - {name: lan, device: net_null1, address: 10.0.9.2, mac: "02:00:00:00:00:09", gateway: 10.0.9.1,
             gateway_mac: "02:00:00:00:09:fe", mtu: 576, vlan: 100}
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

/// Runs frames through a `DataplaneHarness` of `FrameTopology` and checks every outcome (see `FuzzTargets.frame`).
final class FrameChecker {
    let harness: DataplaneHarness
    /// l2 backend MAC -> its configured VLAN (0: none).
    let l2Backends: [[UInt8]: UInt16]
    let l3Backends: Set<UInt32>
    let vipAddresses: Set<UInt32>

    /// Each input runs in these four ways, on one flow table (so later runs meet the flows earlier ones pinned):
    /// software checksum with just enough headroom for IP-in-IP; NIC-checked checksum (the fuzzer need not
    /// get checksums right to reach the deeper code); the VLAN port (tagged, to its MAC), a smaller MTU, room
    /// for a tag only, and a clock past the idle timeout; and no headroom at all.
    static let variants = [
        FrameVariant(port: 0, checksum: .unknown, headroom: requiredHeadroomBytes, now: 1000, tagged: false),
        FrameVariant(port: 0, checksum: .good, headroom: requiredHeadroomBytes, now: 1000, tagged: false),
        FrameVariant(port: 1, checksum: .good, headroom: 4, now: 2000, tagged: true),
        FrameVariant(port: 0, checksum: .good, headroom: 0, now: 2000, tagged: false),
    ]

    init() {
        do {
            harness = try DataplaneHarness(yaml: FrameTopology.yaml, file: "frame-topology.yaml", flowCapacity: 8)
        } catch {
            preconditionFailure("the frame topology does not load: \(error)")
        }
        var l2: [[UInt8]: UInt16] = [:]
        var l3: Set<UInt32> = []
        for vip in harness.config.vips {
            for b in vip.backends {
                if vip.mode == .l3, let a = b.address.v4 { l3.insert(a.value) } else if let mac = b.mac { l2[mac.array] = b.vlan ?? 0 }
            }
        }
        l2Backends = l2; l3Backends = l3
        vipAddresses = Set(harness.config.vips.compactMap { $0.address.v4?.value })
    }

    func run(_ input: UnsafeRawBufferPointer) {
        harness.reset()
        let original = [UInt8](input)
        for variant in FrameChecker.variants {
            var frame = original
            if variant.tagged, frame.count >= 14 {
                // As the VLAN port would receive it: tagged with its VLAN, and sent to its MAC rather than wan's.
                let port = harness.config.ports[variant.port]
                if Bytes.be16(frame, 12) != 0x8100 {
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
        let run = harness.process(frame, headroom: v.headroom, checksum: v.checksum, now: v.now, port: v.port)
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

        let port = harness.config.ports[v.port]
        let portMAC = port.mac!.array
        let input = Parsed(frame)
        guard verdict.transmits else {
            precondition(run.outcome.fragments == 0, "\(verdict) with \(run.outcome.fragments) fragments")
            precondition(run.buffer[run.frameStart...].elementsEqual(frame), "\(verdict): the dropped frame was changed")
            precondition(run.buffer[..<run.frameStart].allSatisfy { $0 == 0xEE }, "\(verdict): the headroom was written")
            return
        }
        let from = run.frameStart + Int(run.outcome.startShift)
        let to = from + Int(run.outcome.length)
        precondition(from >= 0 && to <= run.buffer.count && from <= to,
                     "\(verdict): output [\(from), \(to)) is outside the buffer [0, \(run.buffer.count))")
        precondition(run.buffer[..<from].allSatisfy { $0 == 0xEE }, "\(verdict): bytes before the output were written")
        let out = Parsed(Array(run.buffer[from..<to]))
        precondition(out.bytes.count >= 14, "\(verdict): a \(out.bytes.count)-byte output")
        guard let inIP = input.ip else { preconditionFailure("\(verdict) for a frame that is not IPv4 or ARP") }
        /// What every ICMP answer shares: only to a header that checked out, back to the sender with the same tag
        /// and the port's MAC; returns its IPv4 packet.
        func icmpAnswerIP() -> [UInt8] {
            let name = verdict.name
            precondition(v.checksum != .unknown || Bytes.checksumValid(inIP, headerLength: input.ihl),
                         "\(name) to a packet with a bad header checksum")
            precondition(out.tci == input.tci, "\(name) changed the tag")
            precondition(Array(out.bytes[0..<6]) == Array(frame[6..<12]) && Array(out.bytes[6..<12]) == portMAC,
                         "\(name): Ethernet addresses")
            guard let ip = out.ip else { preconditionFailure("\(name) is not IPv4") }
            return ip
        }

        switch verdict {
        case .arpReply:
            precondition(out.etherType == 0x0806 && input.etherType == 0x0806, "arp-reply is not ARP")
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
            return
        case .forwardedL2:
            precondition(run.outcome.fragments == 0, "forwarded-l2 with fragments")
            precondition(v.checksum != .unknown || Bytes.checksumValid(inIP, headerLength: input.ihl),
                         "forwarded-l2 of a packet with a bad header checksum")
            guard let vlan = l2Backends[Array(out.bytes[0..<6])] else {
                preconditionFailure("forwarded-l2 to \(out.bytes[0..<6]), not an l2 backend")
            }
            precondition(Array(out.bytes[6..<12]) == portMAC, "forwarded-l2: source MAC is not the port's")
            precondition(out.etherType == 0x0800, "forwarded-l2: not IPv4")
            precondition(out.tci == expectedTag(input.tci, vlan), "forwarded-l2: tag \(String(describing: out.tci))")
            precondition(out.ip == inIP, "forwarded-l2 changed the IP packet")
            precondition(out.l2 + inIP.count == out.bytes.count, "forwarded-l2: trailing bytes")
            precondition(inIP.count <= port.mtu, "forwarded-l2: \(inIP.count) bytes over MTU \(port.mtu)")
        case .forwardedL3:
            precondition(v.checksum != .unknown || Bytes.checksumValid(inIP, headerLength: input.ihl),
                         "forwarded-l3 of a packet with a bad header checksum")
            if run.outcome.fragments > 0 {
                checkOuterFragments(frame, inner: inIP, count: Int(run.outcome.fragments), nextHop: run.outcome.nextHop,
                                    v: v)
                precondition(run.buffer[run.frameStart...].elementsEqual(frame), "fragmented: the frame was changed")
                return
            }
            checkOuter(out, inner: inIP, inputTCI: input.tci, v: v, dfFrom: inIP, more: false, offset: 0)
            precondition(Array(out.bytes[(out.l2 + 20)...]) == inIP, "forwarded-l3 changed the inner packet")
        case .icmpEchoReply:
            let ip = icmpAnswerIP()
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
            precondition(out.l2 + ip.count == out.bytes.count && ip.count == 20 + 8 + input.ihl + 8,
                         "icmp-frag-needed: lengths")
            precondition(ip[0] == 0x45 && Bytes.checksumValid(ip, headerLength: 20), "icmp-frag-needed: header")
            precondition(ip[9] == 1 && Bytes.be16(ip, 6) == 0, "icmp-frag-needed: protocol or fragment fields")
            precondition(Bytes.be32(ip, 12) == Bytes.be32(inIP, 16) && Bytes.be32(ip, 16) == Bytes.be32(inIP, 12),
                         "icmp-frag-needed: addresses")
            precondition(inIP.count + 20 > port.mtu && Bytes.be16(inIP, 6) & 0x4000 != 0,
                         "icmp-frag-needed for a packet that fits or may be fragmented")
            let icmp = Array(ip[20...])
            precondition(icmp[0] == 3 && icmp[1] == 4 && Bytes.sum(icmp) == 0xFFFF, "icmp-frag-needed: ICMP header")
            precondition(Int(Bytes.be16(icmp, 6)) == port.mtu - 20, "icmp-frag-needed: next-hop MTU")
            precondition(Array(icmp[8...]) == Array(inIP[..<(input.ihl + 8)]), "icmp-frag-needed: quote")
            precondition(ip.count <= port.mtu, "icmp-frag-needed over the MTU")
        default:
            preconditionFailure("\(verdict) transmits?")
        }
    }

    /// The tag an output should carry for input tag `tci` when the backend or port names `vlan` (0: none).
    func expectedTag(_ tci: UInt16?, _ vlan: UInt16) -> UInt16? {
        guard vlan != 0 else { return tci }
        return (tci ?? 0) & 0xF000 | vlan
    }

    /// An IP-in-IP frame to the gateway: Ethernet, tag, and the outer header for `payload` bytes of `inner`.
    func checkOuter(_ out: Parsed, inner: [UInt8], inputTCI: UInt16?, v: FrameVariant, dfFrom: [UInt8], more: Bool,
                    offset: Int) {
        let port = harness.config.ports[v.port]
        precondition(Array(out.bytes[0..<6]) == port.gatewayMAC!.array && Array(out.bytes[6..<12]) == port.mac!.array,
                     "forwarded-l3: Ethernet addresses")
        precondition(out.etherType == 0x0800 && out.tci == expectedTag(inputTCI, port.vlan ?? 0), "forwarded-l3: tag")
        guard let outer = out.ip else { preconditionFailure("forwarded-l3: the outer header does not parse") }
        precondition(out.l2 + outer.count == out.bytes.count, "forwarded-l3: outer total length")
        precondition(outer[0] == 0x45 && Bytes.checksumValid(outer, headerLength: 20), "forwarded-l3: outer header")
        precondition(outer[8] == 64 && outer[9] == 4 && outer[1] == inner[1], "forwarded-l3: TTL, protocol or TOS")
        precondition(Bytes.be32(outer, 12) == port.address.value && l3Backends.contains(Bytes.be32(outer, 16)),
                     "forwarded-l3: outer addresses")
        let flags = Bytes.be16(outer, 6)
        precondition(flags & 0x8000 == 0 && (flags & 0x2000 != 0) == more && Int(flags & 0x1FFF) * 8 == offset,
                     "forwarded-l3: fragment fields \(flags)")
        precondition(offset > 0 || more || flags & 0x4000 == Bytes.be16(dfFrom, 6) & 0x4000, "forwarded-l3: DF")
        precondition(outer.count <= port.mtu, "forwarded-l3: \(outer.count) bytes over MTU \(port.mtu)")
    }

    /// The outer fragments the worker would write with `writeOuterFragment`, each into a buffer of exactly the
    /// documented size, and their payloads put together again.
    func checkOuterFragments(_ frame: [UInt8], inner: [UInt8], count: Int, nextHop: UInt32, v: FrameVariant) {
        let port = harness.config.ports[v.port]
        precondition(count >= 2 && Bytes.be16(inner, 6) & 0x4000 == 0 && inner.count + 20 > port.mtu,
                     "forwarded-l3 as \(count) fragments of a \(inner.count)-byte packet (DF \(Bytes.be16(inner, 6)))")
        precondition(l3Backends.contains(nextHop), "outer fragments to \(nextHop), not an l3 backend")
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
            checkOuter(out, inner: inner, inputTCI: Parsed(frame).tci, v: v, dfFrom: inner, more: k < count - 1,
                       offset: payload.count)
            precondition(Bytes.be32(out.ip!, 16) == nextHop, "outer fragment \(k): destination")
            let id = Bytes.be16(out.ip!, 4)
            precondition(identification == nil || identification == id, "outer fragments with different ids")
            identification = id
            payload += out.bytes[(out.l2 + 20)...]
        }
        precondition(payload == inner, "the outer fragments do not add up to the packet")
    }
}

/// A frame parsed by the checker's own code (not the code under test): Ethernet, one tag, and the IPv4
/// packet (without padding) or the ARP packet.
struct Parsed {
    let bytes: [UInt8]
    let tci: UInt16?
    let etherType: UInt16
    let l2: Int
    /// The IPv4 packet up to its total length, or the ARP packet; nil when neither parses.
    let ip: [UInt8]?
    let ihl: Int

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
        guard bytes.count >= 14 else { tci = nil; etherType = 0; l2 = 0; ip = nil; ihl = 0; return }
        if Bytes.be16(bytes, 12) == 0x8100 && bytes.count >= 18 {
            tci = Bytes.be16(bytes, 14); etherType = Bytes.be16(bytes, 16); l2 = 18
        } else {
            tci = nil; etherType = Bytes.be16(bytes, 12); l2 = 14
        }
        let rest = bytes.count - l2
        if etherType == 0x0806, rest >= 28 {
            ip = Array(bytes[l2...]); ihl = 0
        } else if etherType == 0x0800, rest >= 20, bytes[l2] >> 4 == 4, Int(bytes[l2] & 0x0F) * 4 >= 20 {
            let h = Int(bytes[l2] & 0x0F) * 4, total = Int(Bytes.be16(bytes, l2 + 2))
            if h <= rest, total >= h, total <= rest { ip = Array(bytes[l2..<(l2 + total)]); ihl = h } else { ip = nil; ihl = 0 }
        } else {
            ip = nil; ihl = 0
        }
    }
}

/// Byte helpers of the checker's own: big-endian fields and a plain RFC 1071 sum.
enum Bytes {
    static func be16(_ b: [UInt8], _ o: Int) -> UInt16 { UInt16(b[o]) << 8 | UInt16(b[o + 1]) }
    static func be32(_ b: [UInt8], _ o: Int) -> UInt32 { UInt32(be16(b, o)) << 16 | UInt32(be16(b, o + 2)) }

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
}
