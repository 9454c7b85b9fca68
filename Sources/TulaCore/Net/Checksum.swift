// The Internet checksum (RFC 1071) over raw bytes, as used for IPv4 headers.

/// A 64-bit sum of 16- or 32-bit words folded to a 16-bit ones'-complement sum (end-around carries).
@inlinable @inline(__always)
public func foldedSum(_ wide: UInt64) -> UInt16 {
    var sum = (wide & 0xFFFF_FFFF) &+ (wide >> 32)
    sum = (sum & 0xFFFF) &+ (sum >> 16)
    sum = (sum & 0xFFFF) &+ (sum >> 16)
    sum = (sum & 0xFFFF) &+ (sum >> 16)
    return UInt16(truncatingIfNeeded: sum)
}

/// Ones'-complement sum of `length` bytes at `p` (big-endian 16-bit words), folded to 16 bits, not inverted.
@inlinable @inline(__always)
public func onesComplementSum(_ p: UnsafeRawPointer, _ length: Int, initial: UInt32 = 0) -> UInt16 {
    var sum = UInt64(initial)
    var i = 0
    while i + 4 <= length {
        sum &+= UInt64(UInt32(bigEndian: p.loadUnaligned(fromByteOffset: i, as: UInt32.self)))
        i += 4
    }
    if i + 2 <= length {
        sum &+= UInt64(UInt16(bigEndian: p.loadUnaligned(fromByteOffset: i, as: UInt16.self)))
        i += 2
    }
    if i < length { sum &+= UInt64(p.load(fromByteOffset: i, as: UInt8.self)) << 8 }
    return foldedSum(sum)
}

/// Ones'-complement sum of a 20-byte IPv4 header in five native-order loads (the sum is byte-order
/// independent, and the folded result is compared or stored in the same native order), not inverted.
@inlinable @inline(__always)
public func headerSum20(_ ip: UnsafeRawPointer) -> UInt16 {
    var sum = UInt64(ip.loadUnaligned(as: UInt32.self))
    sum &+= UInt64(ip.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
    sum &+= UInt64(ip.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
    sum &+= UInt64(ip.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
    sum &+= UInt64(ip.loadUnaligned(fromByteOffset: 16, as: UInt32.self))
    return foldedSum(sum)
}

/// Whether an IPv4 header of `ihl` bytes verifies; the common 20-byte header in five loads.
@inlinable @inline(__always)
public func headerChecksumValid(_ ip: UnsafeRawPointer, _ ihl: Int) -> Bool {
    guard ihl == 20 else { return onesComplementSum(ip, ihl) == 0xFFFF }
    return headerSum20(ip) == 0xFFFF
}

/// The value to store in a checksum field (zeroed while summing) so the header verifies.
@inlinable @inline(__always)
public func internetChecksum(_ p: UnsafeRawPointer, _ length: Int) -> UInt16 {
    ~onesComplementSum(p, length)
}

/// `internetChecksum` of a 20-byte IPv4 header, in native byte order: store it with a native store.
@inlinable @inline(__always)
public func headerChecksum20(_ ip: UnsafeRawPointer) -> UInt16 {
    ~headerSum20(ip)
}
