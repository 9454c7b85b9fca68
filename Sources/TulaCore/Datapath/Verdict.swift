// The named fate of every received frame: forwarded, answered, or dropped for one reason.

/// What happened to one received frame. Each case has a counter; for every port
/// `rx == forwarded + replied + dropped`.
public enum Verdict: UInt8, CaseIterable, Sendable, CustomStringConvertible {
    case forwardedL2 = 0
    case forwardedL3
    case arpReply
    /// Shorter than an Ethernet header, or an 802.1Q tag cut short.
    case malformedFrame
    /// An ethertype other than IPv4 or ARP (after at most one 802.1Q tag).
    case notIPv4
    case malformedARP
    /// Well-formed ARP that is not a request for one of our addresses.
    case arpIgnored
    /// IPv4 whose Ethernet destination is not the port's MAC.
    case notOurMAC
    case malformedIPv4
    case badIPChecksum
    case fragment
    case notTCPUDP
    case malformedL4
    case noVIP
    /// The VIP has no backend that takes new flows (all drained).
    case noBackend
    /// The frame that would go out exceeds the port MTU.
    case tooBig
    /// The TX queue refused the frame.
    case txFull

    /// The stable name used in summaries, JSON and metrics.
    public var name: String {
        switch self {
        case .forwardedL2: "forwarded-l2"
        case .forwardedL3: "forwarded-l3"
        case .arpReply: "arp-reply"
        case .malformedFrame: "malformed-frame"
        case .notIPv4: "not-ipv4"
        case .malformedARP: "malformed-arp"
        case .arpIgnored: "arp-ignored"
        case .notOurMAC: "not-our-mac"
        case .malformedIPv4: "malformed-ipv4"
        case .badIPChecksum: "bad-ip-checksum"
        case .fragment: "fragment"
        case .notTCPUDP: "not-tcp-udp"
        case .malformedL4: "malformed-l4"
        case .noVIP: "no-vip"
        case .noBackend: "no-backend"
        case .tooBig: "too-big"
        case .txFull: "tx-full"
        }
    }

    public var description: String { name }

    /// Frames with this verdict leave the appliance.
    public var transmits: Bool { self == .forwardedL2 || self == .forwardedL3 || self == .arpReply }
    public var isForward: Bool { self == .forwardedL2 || self == .forwardedL3 }
    public var isReply: Bool { self == .arpReply }
    public var isDrop: Bool { !transmits }

    public static let count = Verdict.allCases.count
    public static func named(_ name: String) -> Verdict? { allCases.first { $0.name == name } }
}
