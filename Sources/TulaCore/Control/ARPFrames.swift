// ARP frames the control plane sends (requests, gratuitous announcements) and the replies it reads.

public enum ARPFrames {
    /// A broadcast ARP request: who has `target`? tell `senderIP` (at `senderMAC`). With `target ==
    /// senderIP` it is a gratuitous ARP announcing the address. Tagged when `vlan` is set; 60 bytes
    /// (42 or 46 plus padding).
    public static func request(senderMAC: MACAddress, senderIP: IPv4Address, target: IPv4Address, vlan: UInt16?) -> [UInt8] {
        var f = MACAddress.broadcast.array + senderMAC.array
        if let vlan { f += [0x81, 0x00, UInt8(vlan >> 8), UInt8(vlan & 0xFF)] }
        f += [0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]
        f += senderMAC.array + FrameBuilder.bytes32(senderIP.value) + MACAddress.zero.array + FrameBuilder.bytes32(target.value)
        return f + [UInt8](repeating: 0, count: max(0, 60 - f.count))
    }

    /// The sender of an ARP frame (optionally 802.1Q-tagged), when it is a well-formed Ethernet/IPv4 ARP.
    public static func sender(of frame: UnsafeRawPointer, length: Int) -> (IPv4Address, MACAddress)? {
        guard length >= 14 else { return nil }
        let l2 = be16(frame, 12) == 0x8100 ? 18 : 14
        guard length >= l2 + 28, be16(frame, l2 - 2) == 0x0806 else { return nil }
        let a = frame + l2
        guard be16(a, 0) == 1, be16(a, 2) == 0x0800, a.load(fromByteOffset: 4, as: UInt8.self) == 6,
              a.load(fromByteOffset: 5, as: UInt8.self) == 4 else { return nil }
        return (IPv4Address(be32(a, 14)), MACAddress(reading: a + 8))
    }
}
