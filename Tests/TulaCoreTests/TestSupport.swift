// Shared helpers for the data-path tests: hand-rolled frame builders, a seeded RNG and a dataplane harness.
import Testing
@testable import TulaCore
@testable import TulaDatapath
import TulaFuzzing

// MARK: - Bytes

/// Byte-level helpers that do not use the code under test (the checksum here is a separate, plain RFC 1071).
enum TestBytes {
    /// Bytes of a hex string; spaces, newlines and `|` separators are ignored.
    static func hex(_ text: String) -> [UInt8] {
        let digits = text.filter { $0.isHexDigit }
        precondition(digits.count % 2 == 0, "test bug: odd number of hex digits")
        var out: [UInt8] = []
        var index = digits.startIndex
        while index < digits.endIndex {
            let next = digits.index(index, offsetBy: 2)
            out.append(UInt8(digits[index..<next], radix: 16)!)
            index = next
        }
        return out
    }

    /// Lower-case hex without separators, for readable comparisons in failure messages.
    static func hexString(_ bytes: [UInt8]) -> String {
        bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    /// RFC 1071 ones'-complement sum, 16 bits at a time (odd byte padded with zero), not inverted.
    static func referenceSum(_ bytes: [UInt8]) -> UInt16 {
        var sum: UInt32 = 0
        var i = 0
        while i < bytes.count {
            sum += UInt32(bytes[i]) << 8 | (i + 1 < bytes.count ? UInt32(bytes[i + 1]) : 0)
            sum = (sum & 0xFFFF) + (sum >> 16)
            i += 2
        }
        return UInt16(sum)
    }

    static func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xFF)] }
    static func be16(_ bytes: [UInt8], at offset: Int) -> UInt16 {
        UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }

    /// Parses "a.b.c.d" into four bytes.
    static func ip(_ text: String) -> [UInt8] { text.split(separator: ".").map { UInt8($0)! } }
    /// Parses "aa:bb:cc:dd:ee:ff" into six bytes.
    static func mac(_ text: String) -> [UInt8] { text.split(separator: ":").map { UInt8($0, radix: 16)! } }
}

// MARK: - Frame builders

/// Builders for Ethernet, IPv4, TCP, UDP and ARP bytes with explicit, overridable fields.
enum TestFrames {
    static let etherIPv4: UInt16 = 0x0800, etherARP: UInt16 = 0x0806, etherVLAN: UInt16 = 0x8100
    static let etherIPv6: UInt16 = 0x86DD, etherQinQ: UInt16 = 0x88A8

    /// Ethernet II header (optionally one 802.1Q tag with TCI `vlan`) followed by `payload`.
    static func ethernet(dst: [UInt8], src: [UInt8], type: UInt16, vlan: UInt16? = nil,
                         payload: [UInt8] = []) -> [UInt8] {
        var out = dst + src
        if let vlan { out += TestBytes.be16(etherVLAN) + TestBytes.be16(vlan) }
        return out + TestBytes.be16(type) + payload
    }

    /// An IPv4 packet. `totalLength` and `checksum` default to the correct values; `ihl` defaults to
    /// 5 plus the options' words; `version` lets tests build a wrong one.
    static func ipv4(src: String, dst: String, proto: UInt8, payload: [UInt8], tos: UInt8 = 0,
                     identification: UInt16 = 0x1234, flagsFragment: UInt16 = 0x4000, ttl: UInt8 = 64,
                     options: [UInt8] = [], version: UInt8 = 4, ihl: UInt8? = nil,
                     totalLength: UInt16? = nil, checksum: UInt16? = nil) -> [UInt8] {
        precondition(options.count % 4 == 0, "test bug: options must be whole words")
        let headerLength = 20 + options.count
        var header: [UInt8] = [version << 4 | (ihl ?? UInt8(headerLength / 4)), tos]
        header += TestBytes.be16(totalLength ?? UInt16(headerLength + payload.count))
        header += TestBytes.be16(identification) + TestBytes.be16(flagsFragment) + [ttl, proto, 0, 0]
        header += TestBytes.ip(src) + TestBytes.ip(dst) + options
        let sum = checksum ?? ~TestBytes.referenceSum(header)
        header[10] = UInt8(sum >> 8); header[11] = UInt8(sum & 0xFF)
        return header + payload
    }

    /// A TCP segment (checksum left 0: Tula does not check L4 checksums). `options` must be whole words
    /// unless `dataOffset` overrides the header length field.
    static func tcp(srcPort: UInt16, dstPort: UInt16, flags: UInt8 = 0x02, options: [UInt8] = [],
                    dataOffset: UInt8? = nil, payload: [UInt8] = []) -> [UInt8] {
        let offset = dataOffset ?? UInt8((20 + options.count) / 4)
        return TestBytes.be16(srcPort) + TestBytes.be16(dstPort) + [0, 0, 0, 1, 0, 0, 0, 0, offset << 4, flags]
            + [0xFF, 0xFF, 0, 0, 0, 0] + options + payload
    }

    /// A UDP datagram (checksum 0 = none); `length` defaults to the correct value.
    static func udp(srcPort: UInt16, dstPort: UInt16, payload: [UInt8] = [], length: UInt16? = nil) -> [UInt8] {
        TestBytes.be16(srcPort) + TestBytes.be16(dstPort) + TestBytes.be16(length ?? UInt16(8 + payload.count))
            + [0, 0] + payload
    }

    /// An ARP packet for Ethernet/IPv4 (hlen and plen overridable).
    static func arp(op: UInt16, senderMAC: [UInt8], senderIP: String, targetMAC: [UInt8], targetIP: String,
                    hlen: UInt8 = 6, plen: UInt8 = 4) -> [UInt8] {
        TestBytes.be16(1) + TestBytes.be16(0x0800) + [hlen, plen] + TestBytes.be16(op)
            + senderMAC + TestBytes.ip(senderIP) + targetMAC + TestBytes.ip(targetIP)
    }

    /// An ICMP message: type, code, checksum, the 4 "rest of header" bytes, then `payload`. The checksum
    /// defaults to the correct one (reference sum over the whole message).
    static func icmp(type: UInt8, code: UInt8, rest: [UInt8] = [0, 0, 0, 0], payload: [UInt8] = [],
                     checksum: UInt16? = nil) -> [UInt8] {
        precondition(rest.count == 4, "test bug: the rest of the ICMP header is 4 bytes")
        var message = [type, code, 0, 0] + rest + payload
        let sum = checksum ?? ~TestBytes.referenceSum(message)
        message[2] = UInt8(sum >> 8); message[3] = UInt8(sum & 0xFF)
        return message
    }

    /// `frame` padded with zeros to the 60-byte Ethernet minimum.
    static func padded(_ frame: [UInt8]) -> [UInt8] { frame + [UInt8](repeating: 0, count: max(0, 60 - frame.count)) }
}

// MARK: - Deterministic randomness

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny seeded generator, so statistical tests are reproducible.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

// MARK: - Dataplane harness

/// The topology every frame test uses. One port (wan, 10.0.1.2, 02:00:00:00:00:01, gateway 02:00:00:00:00:fe).
enum TestTopology {
    static let portMAC = TestBytes.mac("02:00:00:00:00:01")
    static let gatewayMAC = TestBytes.mac("02:00:00:00:00:fe")
    static let clientMAC = TestBytes.mac("02:00:00:00:aa:01")
    static let client = "192.0.2.10"
    static let portAddress = "10.0.1.2"

    /// VIP and backend counter slots: `DataplaneTables.build(config:portMACs:)` numbers them in config order.
    static let webVIP = 0, wildVIP = 1, dnsVIP = 2, httpL3VIP = 3, drainedVIP = 4, poolVIP = 5, ntpVIP = 6
    static let poolBackendBase = 6
    static let poolBackendMACs = ["02:00:00:00:03:01", "02:00:00:00:03:02", "02:00:00:00:03:03"]
        .map(TestBytes.mac)

    static let yaml = """
        ports:
          - name: wan
            device: net_null0
            address: 10.0.1.2
            mac: 02:00:00:00:00:01
            gateway: 10.0.1.1
            gateway_mac: 02:00:00:00:00:fe
            mtu: 1500
        flow_idle_timeout: 30
        vips:
          - name: web                # 0: exact port, l2
            address: 10.0.1.100
            port: 443
            protocol: tcp
            mode: l2
            maglev_table_size: 251
            backends:
              - address: 10.0.1.11
                mac: 02:00:00:00:01:11
          - name: web-any            # 1: every other tcp port on the same address, l2
            address: 10.0.1.100
            port: "*"
            protocol: tcp
            mode: l2
            maglev_table_size: 251
            backends:
              - address: 10.0.1.12
                mac: 02:00:00:00:01:12
          - name: dns                # 2: udp, l3
            address: 10.0.1.101
            port: 53
            protocol: udp
            mode: l3
            maglev_table_size: 251
            backends:
              - address: 10.0.2.21
          - name: http-l3            # 3: tcp, l3
            address: 10.0.1.101
            port: 80
            protocol: tcp
            mode: l3
            maglev_table_size: 251
            backends:
              - address: 10.0.2.22
          - name: drained            # 4: every backend at weight 0
            address: 10.0.1.102
            port: 80
            protocol: tcp
            mode: l2
            maglev_table_size: 251
            backends:
              - address: 10.0.1.21
                mac: 02:00:00:00:02:21
                weight: 0
              - address: 10.0.1.22
                mac: 02:00:00:00:02:22
                weight: 0
          - name: pool               # 5: three backends, for distribution and counters
            address: 10.0.1.103
            port: 443
            protocol: tcp
            mode: l2
            maglev_table_size: 1009
            backends:
              - address: 10.0.1.31
                mac: 02:00:00:00:03:01
              - address: 10.0.1.32
                mac: 02:00:00:00:03:02
              - address: 10.0.1.33
                mac: 02:00:00:00:03:03
          - name: ntp                # 6: a second port-specific udp VIP on .101: udp fragments there have no VIP
            address: 10.0.1.101
            port: 123
            protocol: udp
            mode: l3
            maglev_table_size: 251
            backends:
              - address: 10.0.2.23

        """
}

/// What `TestDataplane.process` saw: the outcome, the bytes to transmit (empty unless the verdict
/// transmits), and the frame's original region after the call (to check drops leave it alone).
struct ProcessedFrame {
    var outcome: FrameOutcome
    var output: [UInt8]
    var inPlace: [UInt8]
}

/// Tables from YAML through `ConfigLoader.parse` and `DataplaneTables.build`, a zeroed flow table and a
/// counter block (TulaFuzzing's `DataplaneHarness`, shared with the frame fuzz target); one per test (the
/// flow table and counters are mutable state).
final class TestDataplane {
    let harness: DataplaneHarness
    var tables: UnsafeMutablePointer<DataplaneTables> { harness.tables }
    var flows: UnsafeMutablePointer<FlowTable> { harness.flows }
    var counters: UnsafeMutablePointer<UInt64> { harness.counters }
    var counterCount: Int { harness.counterCount }
    /// Frames given to `process`.
    private(set) var processed = 0

    /// `neighbors` are the MACs ARP resolved for next hops the config gives no MAC for.
    init(yaml: String = TestTopology.yaml, flowCapacity: Int = 1024,
         neighbors: [IPAddress: MACAddress] = [:]) throws {
        harness = try DataplaneHarness(yaml: yaml, file: "test.yaml", flowCapacity: flowCapacity, neighbors: neighbors)
    }

    var layout: CounterLayout { tables.pointee.layout }

    /// Bytes before the headroom that `processFrame` must never write (checked on every call).
    static let guardBytes = 64

    /// Runs `processFrame` on a copy of `frame` placed after `headroom` bytes of writable space.
    func process(_ frame: [UInt8], headroom: Int = 64, checksum: ChecksumStatus = .unknown,
                 now: UInt32 = 1000, port: Int = 0,
                 sourceLocation: SourceLocation = #_sourceLocation) -> ProcessedFrame {
        processed += 1
        let run = harness.process(frame, headroom: headroom, guardBytes: Self.guardBytes, tailroom: 96, checksum: checksum,
                                  now: now, port: port)
        #expect(run.buffer[..<Self.guardBytes].allSatisfy { $0 == 0xEE }, "processFrame wrote before its headroom",
                sourceLocation: sourceLocation)
        return ProcessedFrame(outcome: run.outcome, output: run.output, inPlace: run.inPlace)
    }

    func verdictCount(_ verdict: Verdict, port: Int = 0) -> UInt64 { counters[layout.verdict(port, verdict)] }
    func vipCounter(_ vip: Int, _ field: Int) -> UInt64 { counters[layout.vip(vip) + field] }
    func backendCounter(_ backend: Int, _ field: Int) -> UInt64 { counters[layout.backend(backend) + field] }
    func flowCounter(_ field: Int) -> UInt64 { counters[layout.flowTable + field] }
}
