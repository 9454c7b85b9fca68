// Big-endian loads and stores at byte offsets of raw frame memory, and MAC words.

@inlinable @inline(__always) public func be16(_ p: UnsafeRawPointer, _ o: Int) -> UInt16 {
    UInt16(bigEndian: p.loadUnaligned(fromByteOffset: o, as: UInt16.self))
}
@inlinable @inline(__always) public func be32(_ p: UnsafeRawPointer, _ o: Int) -> UInt32 {
    UInt32(bigEndian: p.loadUnaligned(fromByteOffset: o, as: UInt32.self))
}
@inlinable @inline(__always) public func put16(_ p: UnsafeMutableRawPointer, _ o: Int, _ v: UInt16) {
    p.storeBytes(of: v.bigEndian, toByteOffset: o, as: UInt16.self)
}
@inlinable @inline(__always) public func put32(_ p: UnsafeMutableRawPointer, _ o: Int, _ v: UInt32) {
    p.storeBytes(of: v.bigEndian, toByteOffset: o, as: UInt32.self)
}
@inlinable @inline(__always) public func putMAC(_ p: UnsafeMutableRawPointer, _ o: Int, _ w0: UInt32, _ w1: UInt16) {
    p.storeBytes(of: w0, toByteOffset: o, as: UInt32.self)
    p.storeBytes(of: w1, toByteOffset: o + 4, as: UInt16.self)
}
@inlinable @inline(__always) public func copyMAC(_ p: UnsafeMutableRawPointer, to: Int, from: Int) {
    let w0 = p.loadUnaligned(fromByteOffset: from, as: UInt32.self)
    let w1 = p.loadUnaligned(fromByteOffset: from + 4, as: UInt16.self)
    putMAC(p, to, w0, w1)
}

/// RFC 1624 incremental checksum update: `checksum` covered `old`, now covers `new` instead.
@inlinable @inline(__always) public func updatedChecksum(_ checksum: UInt16, old: UInt16, new: UInt16) -> UInt16 {
    var sum = UInt32(~checksum) &+ UInt32(~old) &+ UInt32(new)
    sum = (sum & 0xFFFF) &+ (sum >> 16)
    sum = (sum & 0xFFFF) &+ (sum >> 16)
    return ~UInt16(truncatingIfNeeded: sum)
}
