// Minimal classic-pcap (libpcap format) reading and writing, for replay bookkeeping and tests.

import Foundation

/// One captured frame.
public struct PcapRecord: Equatable, Sendable {
    public var seconds: UInt32
    public var fraction: UInt32
    public var data: [UInt8]
    public init(seconds: UInt32 = 0, fraction: UInt32 = 0, data: [UInt8]) {
        self.seconds = seconds; self.fraction = fraction; self.data = data
    }
}

public struct PcapError: Error, CustomStringConvertible {
    public var description: String
}

/// Classic pcap files with Ethernet link type (microsecond or nanosecond timestamps, either byte order).
public enum Pcap {
    /// Reads every record of the file at `path`.
    public static func read(path: String) throws -> [PcapRecord] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw PcapError(description: "\(path): cannot read")
        }
        return try parse([UInt8](data), name: path)
    }

    public static func parse(_ bytes: [UInt8], name: String = "pcap") throws -> [PcapRecord] {
        guard bytes.count >= 24 else { throw PcapError(description: "\(name): too short for a pcap header") }
        func u32(_ o: Int, _ swapped: Bool) -> UInt32 {
            let v = UInt32(bytes[o]) | UInt32(bytes[o + 1]) << 8 | UInt32(bytes[o + 2]) << 16 | UInt32(bytes[o + 3]) << 24
            return swapped ? v.byteSwapped : v
        }
        let magic = u32(0, false)
        let swapped: Bool
        switch magic {
        case 0xA1B2_C3D4, 0xA1B2_3C4D: swapped = false
        case 0xD4C3_B2A1, 0x4D3C_B2A1: swapped = true
        default: throw PcapError(description: "\(name): not a pcap file (magic \(String(magic, radix: 16)))")
        }
        var records: [PcapRecord] = []
        var o = 24
        while o + 16 <= bytes.count {
            let captured = Int(u32(o + 8, swapped))
            guard o + 16 + captured <= bytes.count else {
                throw PcapError(description: "\(name): record at byte \(o) is cut short")
            }
            records.append(PcapRecord(seconds: u32(o, swapped), fraction: u32(o + 4, swapped),
                                      data: Array(bytes[(o + 16)..<(o + 16 + captured)])))
            o += 16 + captured
        }
        return records
    }

    /// Number of records in the file, without keeping their bytes.
    public static func count(path: String) throws -> Int { try read(path: path).count }

    /// Serialises records as a microsecond-resolution, little-endian, Ethernet pcap.
    public static func serialize(_ records: [PcapRecord]) -> [UInt8] {
        var out: [UInt8] = []
        func put32(_ v: UInt32) { for i in 0..<4 { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(i)))) } }
        func put16(_ v: UInt16) { out.append(UInt8(v & 0xFF)); out.append(UInt8(v >> 8)) }
        put32(0xA1B2_C3D4); put16(2); put16(4); put32(0); put32(0); put32(65535); put32(1)
        for r in records {
            put32(r.seconds); put32(r.fraction); put32(UInt32(r.data.count)); put32(UInt32(r.data.count))
            out.append(contentsOf: r.data)
        }
        return out
    }

    public static func write(_ records: [PcapRecord], path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: Data(serialize(records))) else {
            throw PcapError(description: "\(path): cannot write")
        }
    }
}
