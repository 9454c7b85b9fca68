// Prefix VIPs and port ranges in the data path: the per-length prefix probes behind the exact VIP index, and the
// prefix entries that answer ARP, neighbor discovery, echo and fragments for every address inside a prefix.
//
// Layout. Port ranges cost nothing per packet: the builder expands a range into one index entry per port (under its
// address or prefix), skipping ports an exact-port VIP holds, so a range is found by the same probe as a port and
// loses to a port and wins over `*` by construction. Prefix VIPs live in the same open-addressed indexes under a
// key that also carries the prefix length (IPv4: `(32 - len) << 56` on top of `vipKey`; IPv6: `129 - len` in the
// key's top byte, so a single address, len 128, keeps the old key). `findVIP` probes the exact address first, as
// before; only when that misses and `prefixLengths4` is non-zero does it call `findPrefixVIP`, which probes each
// prefix length in use, longest first: at most two probes per length (port or range, then `*`).

import TulaCore

/// What the data path knows about prefix VIPs. All zero (and nil) when the config has none.
public struct VIPSteering: @unchecked Sendable {
    /// Bit L set: some IPv4 VIP has prefix length L (0...31).
    public var prefixLengths4: UInt64 = 0
    /// Bit L set: some IPv6 VIP has prefix length L (0...63) / 64 + L (64...127).
    public var prefixLengths6Lo: UInt64 = 0
    public var prefixLengths6Hi: UInt64 = 0
    /// IPv4 prefixes (network in `address`), longest first, with their lengths in `prefix4Lengths`.
    public var prefixes4: UnsafeMutablePointer<VIPAddressEntry>? = nil
    public var prefix4Lengths: UnsafeMutablePointer<UInt8>? = nil
    public var prefix4Count: Int = 0
    /// IPv6 prefixes, longest first, with their lengths.
    public var prefixes6: UnsafeMutablePointer<VIP6AddressEntry>? = nil
    public var prefix6Lengths: UnsafeMutablePointer<UInt8>? = nil
    public var prefix6Count: Int = 0
    /// QUIC server ids: an open-addressed index of `quicKey(vip, id)` to backend slot (`quicIndexMask` + 1 slots).
    public var quicIndex: UnsafeMutablePointer<QUICSlot>? = nil
    public var quicIndexMask: Int = 0

    @inlinable public init() {}
}

/// `address` with the bits after the first `length` cleared (length 0...32).
@inlinable @inline(__always)
public func maskIPv4(_ address: UInt32, _ length: Int) -> UInt32 {
    address & ~(UInt32.max >> UInt32(truncatingIfNeeded: length))
}

/// An IPv6 address's halves with the bits after the first `length` cleared (length 0...128).
@inlinable @inline(__always)
public func maskIPv6(_ hi: UInt64, _ lo: UInt64, _ length: Int) -> (UInt64, UInt64) {
    if length >= 64 { return (hi, lo & ~(UInt64.max >> UInt64(truncatingIfNeeded: length &- 64))) }
    return (hi & ~(UInt64.max >> UInt64(truncatingIfNeeded: length)), 0)
}

extension DataplaneTables {
    /// The IPv4 index key of a prefix VIP (length 0...31; 32 is `vipKey` itself).
    @inlinable @inline(__always)
    public static func prefixKey(_ network: UInt32, _ length: Int, _ proto: UInt8, _ port: UInt16) -> UInt64 {
        vipKey(network, proto, port) | UInt64(truncatingIfNeeded: 32 &- length) << 56
    }

    /// The IPv6 index key of (protocol, port) under a prefix of `length` bits (128: a single address, `vip6Key`).
    @inlinable @inline(__always)
    public static func prefix6Key(_ length: Int, _ proto: UInt8, _ port: UInt16) -> UInt32 {
        UInt32(truncatingIfNeeded: 129 &- length) << 24 | UInt32(proto) << 16 | UInt32(port)
    }

    /// The prefix VIP for (address, protocol, port) when no VIP has the exact address: longest prefix first, and
    /// within one prefix port (or range) before `*`. -1 when none; the entry's code (`vipOfCode`). Out of line (exact VIPs never come here), and
    /// static with the index passed in, so the call does not copy the tables struct.
    @usableFromInline @inline(never)
    static func findPrefixVIP(_ index: UnsafeMutablePointer<VIPSlot>, mask: Int, lengths prefixLengths: UInt64,
                              address: UInt32, proto: UInt8, port: UInt16) -> Int {
        @inline(__always) func probe(_ key: UInt64) -> Int {
            DataplaneTables.probe(index, mask: mask, key: key, from: indexSlot(key, mask: mask))
        }
        var lengths = prefixLengths
        while lengths != 0 {
            let length = 63 &- lengths.leadingZeroBitCount
            lengths &= ~(1 << UInt64(length))
            let network = maskIPv4(address, length)
            let exact = probe(prefixKey(network, length, proto, port))
            if exact != -1 { return exact }
            let any = probe(prefixKey(network, length, proto, 0))
            if any != -1 { return any }
        }
        return -1
    }

    /// As `findPrefixVIP`, for IPv6 (`high`: lengths 64...127 as bits 0...63, `low`: lengths 0...63).
    @usableFromInline @inline(never)
    static func findPrefixVIP6(_ index: UnsafeMutablePointer<VIP6Slot>, mask: Int, high prefixHigh: UInt64, low prefixLow: UInt64,
                               hi: UInt64, lo: UInt64, proto: UInt8, port: UInt16) -> Int {
        @inline(__always) func probe(_ hi: UInt64, _ lo: UInt64, _ key: UInt32) -> Int {
            var i = index6Slot(hi, lo, key, mask: mask)
            while true {
                let slot = index[i]
                if slot.key == key && slot.lo == lo && slot.hi == hi { return Int(Int32(bitPattern: slot.vip)) }
                if slot.key == 0 { return -1 }
                i = (i &+ 1) & mask
            }
        }
        var high = prefixHigh, low = prefixLow
        while high | low != 0 {
            let length: Int
            if high != 0 {
                let bit = 63 &- high.leadingZeroBitCount
                high &= ~(1 << UInt64(bit))
                length = 64 &+ bit
            } else {
                let bit = 63 &- low.leadingZeroBitCount
                low &= ~(1 << UInt64(bit))
                length = bit
            }
            let (h, l) = maskIPv6(hi, lo, length)
            let exact = probe(h, l, prefix6Key(length, proto, port))
            if exact != -1 { return exact }
            let any = probe(h, l, prefix6Key(length, proto, 0))
            if any != -1 { return any }
        }
        return -1
    }

    /// The entry of the longest IPv4 VIP prefix holding `address`, or nil (ARP, echo, fragments, ICMP errors).
    @usableFromInline @inline(never)
    func prefixAddress(_ address: UInt32) -> UnsafeMutablePointer<VIPAddressEntry>? {
        guard let entries = steering.prefixes4, let lengths = steering.prefix4Lengths else { return nil }
        var i = 0
        while i < steering.prefix4Count {
            if entries[i].address == maskIPv4(address, Int(lengths[i])) { return entries + i }
            i &+= 1
        }
        return nil
    }

    /// The entry of the longest IPv6 VIP prefix holding the address, or nil (neighbor discovery, echo, fragments).
    @usableFromInline @inline(never)
    func prefixAddress6(hi: UInt64, lo: UInt64) -> UnsafeMutablePointer<VIP6AddressEntry>? {
        guard let entries = steering.prefixes6, let lengths = steering.prefix6Lengths else { return nil }
        var i = 0
        while i < steering.prefix6Count {
            let (h, l) = maskIPv6(hi, lo, Int(lengths[i]))
            if entries[i].hi == h && entries[i].lo == l { return entries + i }
            i &+= 1
        }
        return nil
    }
}
