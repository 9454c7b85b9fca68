// The fixed-seed flow hash: the same 5-tuple gives the same 64-bit value on every lcore and appliance.

/// Seed of the flow hash. Changing it moves every flow: it is part of the appliance's contract.
/// Computed, not a stored global: inlined into other modules a global would be reached through a lazy accessor.
@inlinable public var flowHashSeed: UInt64 { 0x7475_6C61_6473_7231 } // "tuladsr1"

@inlinable @inline(__always)
public func mix64(_ x: UInt64) -> UInt64 {
    var z = x
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

/// Hash of a flow. Addresses and ports in host order.
@inlinable @inline(__always)
public func flowHash(src: UInt32, dst: UInt32, srcPort: UInt16, dstPort: UInt16, proto: UInt8) -> UInt64 {
    let a = UInt64(src) << 32 | UInt64(dst)
    let b = UInt64(srcPort) << 48 | UInt64(dstPort) << 32 | UInt64(proto)
    return mix64(mix64(a ^ flowHashSeed) ^ b)
}

/// Maps a hash onto 0..<n without a division (Lemire's multiply-shift on the top 32 bits).
@inlinable @inline(__always)
public func reduce(_ hash: UInt64, _ n: UInt32) -> UInt32 {
    UInt32(truncatingIfNeeded: (UInt64(UInt32(truncatingIfNeeded: hash >> 32)) &* UInt64(n)) >> 32)
}

/// FNV-1a over UTF-8 bytes then a final mix: a process-independent hash of a name (Swift's Hasher is seeded per run).
public func stableHash(_ text: String, seed: UInt64) -> UInt64 {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325 ^ seed
    for byte in text.utf8 {
        h ^= UInt64(byte)
        h = h &* 0x0000_0100_0000_01B3
    }
    return mix64(h)
}

/// Hash of an IPv6 flow: each address half is folded in through its own mix. Addresses as host-order halves.
@inlinable @inline(__always)
public func flowHash6(srcHi: UInt64, srcLo: UInt64, dstHi: UInt64, dstLo: UInt64, srcPort: UInt16, dstPort: UInt16,
                      proto: UInt8) -> UInt64 {
    var h = mix64(srcHi ^ flowHashSeed)
    h = mix64(h ^ srcLo)
    h = mix64(h ^ dstHi)
    h = mix64(h ^ dstLo)
    return mix64(h ^ (UInt64(srcPort) << 48 | UInt64(dstPort) << 32 | UInt64(proto)))
}

/// The 20-bit IPv6 flow label Tula puts on an outer header (RFC 6438): the top 20 bits of the flow's hash.
@inlinable @inline(__always)
public func flowLabel(_ hash: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: hash >> 44) }
