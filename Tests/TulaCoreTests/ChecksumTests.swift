// Tests for the RFC 1071 Internet checksum: published examples, odd lengths, carries, alignment.
import Testing
@testable import TulaCore

@Suite struct ChecksumTests {
    /// Runs `body` over `bytes` copied to an address `misalign` bytes past an 8-byte boundary.
    private func withBytes<R>(_ bytes: [UInt8], misalign: Int = 0, _ body: (UnsafeRawPointer, Int) -> R) -> R {
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes.count + misalign + 1, alignment: 8)
        defer { raw.deallocate() }
        let p = raw + misalign
        p.copyMemory(from: bytes, byteCount: bytes.count)
        return body(UnsafeRawPointer(p), bytes.count)
    }

    struct Example: Sendable, CustomTestStringConvertible {
        var name: String
        var hex: String
        var sum: UInt16
        var testDescription: String { name }
    }

    /// Sums worked out by hand (shown in each name); the first is RFC 1071 section 3's numerical example.
    static let examples: [Example] = [
        // 0001 + f203 + f4f5 + f6f7 = 0x2ddf0 -> 0xddf0 + 2 = 0xddf2 (RFC 1071 §3).
        Example(name: "RFC 1071 §3 example", hex: "00 01 f2 03 f4 f5 f6 f7", sum: 0xDDF2),
        // 4500+0073+0000+4000+4011+0000+c0a8+0001+c0a8+00c7 = 0x2479c -> 0x479e (checksum ~ = 0xb861).
        Example(name: "IPv4 header, checksum zeroed",
                hex: "45 00 00 73 00 00 40 00 40 11 00 00 c0 a8 00 01 c0 a8 00 c7", sum: 0x479E),
        Example(name: "empty", hex: "", sum: 0x0000),
        // A lone byte is the high half of a word padded with zero.
        Example(name: "one byte", hex: "ab", sum: 0xAB00),
        // 0001 + f200 = 0xf201.
        Example(name: "three bytes", hex: "00 01 f2", sum: 0xF201),
        // 0001 + f203 + f4f5 + f6f7 + 0100 = 0xdef2 after the carry.
        Example(name: "nine bytes", hex: "00 01 f2 03 f4 f5 f6 f7 01", sum: 0xDEF2),
        // 0102 + 0304 + 0506 = 0x090c: exercises the 4-byte loop then the 2-byte tail.
        Example(name: "six bytes", hex: "01 02 03 04 05 06", sum: 0x090C),
        // ffff + ffff + ffff + ff00 = 0x3fefd -> 0xfefd + 3 = 0xff00.
        Example(name: "seven bytes with carries", hex: "ff ff ff ff ff ff ff", sum: 0xFF00),
        // 8000 + 8000 = 0x10000 -> 0x0001 (end-around carry).
        Example(name: "end-around carry", hex: "80 00 80 00", sum: 0x0001),
    ]

    @Test(arguments: examples, [0, 1, 3])
    func onesComplementSumMatchesHandComputedValue(_ example: Example, misalign: Int) {
        let bytes = TestBytes.hex(example.hex)
        #expect(withBytes(bytes, misalign: misalign) { onesComplementSum($0, $1) } == example.sum)
    }

    @Test func ipv4HeaderChecksumIsB861() {
        let header = TestBytes.hex("45 00 00 73 00 00 40 00 40 11 00 00 c0 a8 00 01 c0 a8 00 c7")
        #expect(withBytes(header) { internetChecksum($0, $1) } == 0xB861)
    }

    @Test func headerWithItsChecksumSumsToFFFF() {
        let header = TestBytes.hex("45 00 00 73 00 00 40 00 40 11 b8 61 c0 a8 00 01 c0 a8 00 c7")
        #expect(withBytes(header) { onesComplementSum($0, $1) } == 0xFFFF)
        #expect(withBytes(header) { internetChecksum($0, $1) } == 0x0000)
    }

    @Test func corruptedHeaderDoesNotSumToFFFF() {
        // TTL 0x40 -> 0x3f: the sum drops by 0x0100.
        let header = TestBytes.hex("45 00 00 73 00 00 40 00 3f 11 b8 61 c0 a8 00 01 c0 a8 00 c7")
        #expect(withBytes(header) { onesComplementSum($0, $1) } == 0xFEFF)
    }

    @Test func initialValueIsAddedWithCarry() {
        // 0xffff (initial) + 0x0001 = 0x10000 -> 0x0001.
        #expect(withBytes([0x00, 0x01]) { onesComplementSum($0, $1, initial: 0xFFFF) } == 0x0001)
        // An initial value wider than 16 bits folds too: 0x12345 + 0x0001 -> 0x2346 + 1 = 0x2347.
        #expect(withBytes([0x00, 0x01]) { onesComplementSum($0, $1, initial: 0x12345) } == 0x2347)
    }

    @Test(arguments: [1, 2, 19, 20, 60, 1499, 1500, 9001])
    func agreesWithPlainReferenceOnRandomBytes(length: Int) {
        var rng = SplitMix64(seed: UInt64(length))
        let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
        #expect(withBytes(bytes, misalign: 1) { onesComplementSum($0, $1) } == TestBytes.referenceSum(bytes))
    }

    @Test func allOnesStaysFFFFOverManyCarries() {
        let bytes = [UInt8](repeating: 0xFF, count: 9000)
        #expect(withBytes(bytes) { onesComplementSum($0, $1) } == 0xFFFF)
    }

    /// The 20-byte fast paths (native-order sum) agree with the reference on random headers: the verdict of
    /// `headerChecksumValid`, and the bytes `headerChecksum20` stores natively.
    @Test func twentyByteFastPathsAgreeWithReference() {
        var rng = SplitMix64(seed: 20)
        for _ in 0..<1000 {
            var header = (0..<20).map { _ in UInt8.random(in: 0...255, using: &rng) }
            header[10] = 0; header[11] = 0
            let reference = ~TestBytes.referenceSum(header)
            let stored: [UInt8] = withBytes(header, misalign: 1) { p, _ in
                withUnsafeBytes(of: headerChecksum20(p)) { Array($0) }
            }
            #expect(stored == TestBytes.be16(reference))
            header[10] = UInt8(reference >> 8); header[11] = UInt8(reference & 0xFF)
            #expect(withBytes(header, misalign: 3) { p, n in headerChecksumValid(p, n) })
            header[8] &+= 1
            #expect(!withBytes(header) { p, n in headerChecksumValid(p, n) })
        }
    }
}
