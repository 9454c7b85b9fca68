// Neighbor discovery frames the control plane sends (solicitations, unsolicited advertisements, MLD reports) and reads (advertisements).

public enum NDPFrames {
    /// A Neighbor Solicitation for `target` from `source` (the port's address6) at `senderMAC`, to the target's
    /// solicited-node group (RFC 4861 7.2.2), with a source link-layer address option. 86 or 90 bytes.
    public static func solicitation(senderMAC: MACAddress, source: IPv6Address, target: IPv6Address, vlan: UInt16?) -> [UInt8] {
        let group = target.solicitedNode
        let body: [UInt8] = [135, 0, 0, 0, 0, 0, 0, 0] + target.bytes + [1, 1] + senderMAC.array
        return frame(dstMAC: group.multicastMAC, srcMAC: senderMAC, vlan: vlan, source: source, destination: group, icmp: body)
    }

    /// An unsolicited Neighbor Advertisement of `address` (a VIP) at `senderMAC` to all nodes (ff02::1),
    /// Override set (RFC 4861 7.2.6), with a target link-layer address option. 86 or 90 bytes.
    public static func unsolicitedAdvertisement(senderMAC: MACAddress, address: IPv6Address, vlan: UInt16?) -> [UInt8] {
        let allNodes = IPv6Address(hi: 0xFF02_0000_0000_0000, lo: 1)
        let body: [UInt8] = [136, 0, 0, 0, 0x20, 0, 0, 0] + address.bytes + [2, 1] + senderMAC.array
        return frame(dstMAC: allNodes.multicastMAC, srcMAC: senderMAC, vlan: vlan, source: address, destination: allNodes, icmp: body)
    }

    /// Seconds between the MLDv2 reports Tula sends for its solicited-node groups: well inside MLD's default
    /// Multicast Listener Interval (260 s, RFC 3810 9.4), so snooping switches keep forwarding solicitations.
    public static let listenerReportIntervalSeconds = 60.0

    /// The solicited-node groups a config's IPv6 addresses (every port's `address6`, every IPv6 VIP) belong to,
    /// sorted and without repeats.
    public static func solicitedNodeGroups(_ config: TulaConfig) -> [IPv6Address] {
        let addresses = config.ports.compactMap(\.address6) + config.vips.compactMap { $0.address.v6 }
        return Set(addresses.map(\.solicitedNode)).sorted()
    }

    /// An MLDv2 Report (RFC 3810 5.2) that this host listens to `groups` (EXCLUDE mode, no sources), so switches
    /// that snoop MLD forward the neighbor solicitations sent to them. From `::` (the port has no link-local
    /// address, which RFC 3810 5.2.13 allows for), to ff02::16, hop limit 1, with a Hop-by-Hop Router Alert.
    public static func listenerReport(senderMAC: MACAddress, groups: [IPv6Address], vlan: UInt16?) -> [UInt8] {
        let reportsGroup = IPv6Address(hi: 0xFF02_0000_0000_0000, lo: 0x16)
        var icmp: [UInt8] = [143, 0, 0, 0, 0, 0] + FrameBuilder.bytes16(UInt16(groups.count))
        for g in groups { icmp += [2, 0, 0, 0] + g.bytes }
        let unspecified = IPv6Address(hi: 0, lo: 0)
        var f = reportsGroup.multicastMAC.array + senderMAC.array
        if let vlan { f += [0x81, 0x00, UInt8(vlan >> 8), UInt8(vlan & 0xFF)] }
        // Hop-by-Hop: next header 58, length 0, Router Alert (MLD), PadN of 0 bytes.
        let hopByHop: [UInt8] = [58, 0, 5, 2, 0, 0, 1, 0]
        f += [0x86, 0xDD, 0x60, 0, 0, 0] + FrameBuilder.bytes16(UInt16(hopByHop.count + icmp.count)) + [0, 1]
        f += unspecified.bytes + reportsGroup.bytes + hopByHop
        return f + withChecksum(icmp, source: unspecified, destination: reportsGroup)
    }

    /// The target and its link-layer address of a Neighbor Advertisement frame (optionally 802.1Q-tagged),
    /// when it is a well-formed one (hop limit 255, code 0, no extension headers) with a target link-layer
    /// address option. Workers have checked the checksum before handing it over.
    public static func advertised(in frame: UnsafeRawPointer, length: Int) -> (IPv6Address, MACAddress)? {
        guard length >= 14 else { return nil }
        let l2 = be16(frame, 12) == 0x8100 ? 18 : 14
        guard length >= l2 + 40 + 24, be16(frame, l2 - 2) == 0x86DD else { return nil }
        let ip = frame + l2
        let icmpLength = min(Int(be16(ip, 4)), length - l2 - 40)
        guard ip.load(fromByteOffset: 6, as: UInt8.self) == 58, ip.load(fromByteOffset: 7, as: UInt8.self) == 255,
              icmpLength >= 24 else { return nil }
        let icmp = ip + 40
        guard icmp.load(as: UInt8.self) == 136, icmp.load(fromByteOffset: 1, as: UInt8.self) == 0 else { return nil }
        var option = 24
        while option + 8 <= icmpLength {
            let size = Int(icmp.load(fromByteOffset: option + 1, as: UInt8.self)) * 8
            guard size > 0 else { return nil }
            if icmp.load(fromByteOffset: option, as: UInt8.self) == 2 {
                return (IPv6Address(networkBytes: icmp + 8), MACAddress(reading: icmp + option + 2))
            }
            option += size
        }
        return nil
    }

    /// Ethernet (tagged when `vlan` is set) + IPv6 (hop limit 255, next header 58) + the ICMPv6 message with
    /// its checksum filled in.
    static func frame(dstMAC: MACAddress, srcMAC: MACAddress, vlan: UInt16?, source: IPv6Address,
                      destination: IPv6Address, icmp: [UInt8]) -> [UInt8] {
        var f = dstMAC.array + srcMAC.array
        if let vlan { f += [0x81, 0x00, UInt8(vlan >> 8), UInt8(vlan & 0xFF)] }
        f += [0x86, 0xDD, 0x60, 0, 0, 0] + FrameBuilder.bytes16(UInt16(icmp.count)) + [58, 255]
        f += source.bytes + destination.bytes
        return f + withChecksum(icmp, source: source, destination: destination)
    }

    /// The ICMPv6 message with its checksum (bytes 2-3) filled in for the pseudo-header of (source, destination).
    static func withChecksum(_ icmp: [UInt8], source: IPv6Address, destination: IPv6Address) -> [UInt8] {
        var message = icmp
        var pseudo = UInt32(onesComplementSum(source.bytes + destination.bytes, 32)) + UInt32(icmp.count) + 58
        pseudo = (pseudo & 0xFFFF) + (pseudo >> 16)
        let checksum = ~onesComplementSum(message, message.count, initial: pseudo)
        message[2] = UInt8(checksum >> 8)
        message[3] = UInt8(checksum & 0xFF)
        return message
    }
}
