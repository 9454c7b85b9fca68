// The named fate of every received frame: forwarded, answered, or dropped for one reason.

import TulaCore

/// What happened to one received frame. Each case has a counter; for every port
/// `rx == forwarded + replied + dropped`.
public enum Verdict: UInt8, CaseIterable, Sendable, CustomStringConvertible {
    case forwardedL2 = 0
    case forwardedL3
    case arpReply
    /// An ICMP echo request to a VIP, answered by the appliance.
    case icmpEchoReply
    /// An l3 packet too big to tunnel with DF set: answered with ICMP fragmentation needed.
    case icmpFragNeeded
    /// An ARP reply to the appliance, handed to the control plane (neighbour resolution).
    case arpLearned
    /// Shorter than an Ethernet header, or an 802.1Q tag cut short.
    case malformedFrame
    /// An ethertype other than IPv4, IPv6 or ARP (after at most one 802.1Q tag).
    case notIP
    case malformedARP
    /// Well-formed ARP that is not a request for one of our addresses.
    case arpIgnored
    /// IPv4 whose Ethernet destination is not the port's MAC.
    case notOurMAC
    /// Tagged with a VLAN other than the port's.
    case wrongVLAN
    case malformedIPv4
    case badIPChecksum
    /// A fragment to an address whose VIPs cannot take fragments (several port-specific VIPs, no `*`).
    case fragment
    case notTCPUDP
    /// ICMP that is neither an echo request to an answering VIP nor an error about a VIP flow.
    case icmpIgnored
    case malformedL4
    case noVIP
    /// The VIP has no backend that takes new flows (all drained).
    case noBackend
    /// The frame that would go out exceeds the port MTU.
    case tooBig
    /// The backend's (l2) or gateway's (l3) MAC is not resolved yet.
    case unresolvedNextHop
    /// No mbuf was left to build outer fragments.
    case noMbuf
    /// A Neighbor Solicitation for the port's `address6` or an IPv6 VIP, answered with an advertisement.
    case ndReply
    /// A Neighbor Advertisement to the appliance, handed to the control plane (neighbor resolution).
    case ndLearned
    /// Neighbor discovery that fails RFC 4861's checks (hop limit 255, code 0, lengths, checksum).
    case malformedND
    /// Well-formed neighbor discovery that is not for us (other targets, router solicitations and advertisements).
    case ndIgnored
    /// IPv6 version, payload length or a header cut short.
    case malformedIPv6
    /// An IPv6 source that no host has: multicast, or unspecified outside duplicate address detection.
    case badSourceAddress
    /// More IPv6 extension headers than Tula walks (4 headers, 128 bytes) before TCP/UDP.
    case extensionHeaderLimit
    /// An l3 IPv6 packet too big to tunnel: answered with ICMPv6 Packet Too Big.
    case icmpPacketTooBig
    /// For the port's own address (IPv4 `address` or `address6`) and passed to its kernel interface
    /// (`kernel_interface`): TCP, UDP, ICMP other than neighbor discovery, other IP protocols, fragments,
    /// ARP requests for the address. Handed over, neither sent nor dropped (the TAP may still refuse it:
    /// then it becomes `kernelDropped`).
    case toKernel
    /// Would have gone to the kernel interface, but the port's token bucket (`kernel_rate`, `kernel_burst`)
    /// was empty or the ring to the kernel was full.
    case kernelDropped
    /// The TX queue refused the frame (the last case: `count` relies on it).
    case txFull

    /// The stable name used in summaries, JSON and metrics.
    public var name: String {
        switch self {
        case .forwardedL2: "forwarded-l2"
        case .forwardedL3: "forwarded-l3"
        case .arpReply: "arp-reply"
        case .icmpEchoReply: "icmp-reply"
        case .icmpFragNeeded: "icmp-frag-needed"
        case .arpLearned: "arp-learned"
        case .wrongVLAN: "wrong-vlan"
        case .icmpIgnored: "icmp-ignored"
        case .unresolvedNextHop: "unresolved-next-hop"
        case .noMbuf: "no-mbuf"
        case .malformedFrame: "malformed-frame"
        case .notIP: "not-ip"
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
        case .ndReply: "nd-reply"
        case .ndLearned: "nd-learned"
        case .malformedND: "malformed-nd"
        case .ndIgnored: "nd-ignored"
        case .malformedIPv6: "malformed-ipv6"
        case .badSourceAddress: "bad-source-address"
        case .extensionHeaderLimit: "ipv6-extension-limit"
        case .icmpPacketTooBig: "icmp6-packet-too-big"
        case .toKernel: "to-kernel"
        case .kernelDropped: "kernel-dropped"
        }
    }

    public var description: String { name }

    /// Frames with this verdict leave the appliance.
    @inlinable public var transmits: Bool { isForward || isReply }
    @inlinable public var isForward: Bool { self == .forwardedL2 || self == .forwardedL3 }
    @inlinable public var isReply: Bool {
        self == .arpReply || self == .icmpEchoReply || self == .icmpFragNeeded || self == .ndReply || self == .icmpPacketTooBig
    }
    /// Consumed by the control plane (neither sent nor dropped).
    @inlinable public var isToControl: Bool { self == .arpLearned || self == .ndLearned || self == .toKernel }
    public var isDrop: Bool { !transmits && !isToControl }

    /// Number of verdicts (`txFull` is the last case). A literal computation, not `allCases.count`: a lazy
    /// static would put a `swift_once` on the packet path.
    @inlinable public static var count: Int { Int(Verdict.txFull.rawValue) + 1 }
    public static func named(_ name: String) -> Verdict? { allCases.first { $0.name == name } }
}
