// Classic pcap (libpcap format) read and written as a stream through fixed buffers: either byte order, µs or ns stamps.

import Foundation

/// One captured frame. `fraction` is in the resolution of the file it came from (or goes to).
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
    public init(description: String) { self.description = description }
}

/// What a classic pcap file header says about the records after it.
public struct PcapFormat: Equatable, Sendable {
    /// Nanosecond fractions (magic a1b23c4d) rather than microseconds (a1b2c3d4).
    public var nanosecond: Bool
    /// The file is big-endian (read with swapped bytes on this little-endian machine).
    public var bigEndian: Bool
    /// LINKTYPE_* of every record (1: Ethernet). The upper bits (FCS length) are kept as read.
    public var linkType: UInt32
    /// The snapshot length the header announces, bytes.
    public var snapLength: UInt32

    public init(nanosecond: Bool = false, bigEndian: Bool = false, linkType: UInt32 = Pcap.linkTypeEthernet,
                snapLength: UInt32 = 65535) {
        self.nanosecond = nanosecond; self.bigEndian = bigEndian; self.linkType = linkType; self.snapLength = snapLength
    }

    /// Fraction units per second: 1e9 or 1e6.
    public var ticksPerSecond: UInt64 { nanosecond ? 1_000_000_000 : 1_000_000 }

    /// A time stamp of this format as nanoseconds since the epoch (for ordering across formats).
    public func nanoseconds(seconds: UInt32, fraction: UInt32) -> UInt64 {
        UInt64(seconds) * 1_000_000_000 + UInt64(fraction) * (nanosecond ? 1 : 1000)
    }

    /// `fraction` of a stamp in `other`'s resolution converted to this format's (µs <-> ns; ns to µs truncates).
    public func fraction(_ fraction: UInt32, from other: PcapFormat) -> UInt32 {
        switch (other.nanosecond, nanosecond) {
        case (true, false): return fraction / 1000
        case (false, true): return fraction &* 1000
        default: return fraction
        }
    }
}

/// One record as the reader holds it: `bytes` is valid until the reader's next call.
public struct PcapRawRecord {
    public var seconds: UInt32
    public var fraction: UInt32
    /// The length the frame had on the wire (`orig_len`); `bytes.count` is the captured length.
    public var originalLength: UInt32
    public var bytes: UnsafeRawBufferPointer
}

/// Reads a classic pcap file record by record through one buffer (memory independent of the file's size).
public final class PcapReader {
    public let path: String
    public let format: PcapFormat
    /// Records returned so far.
    public private(set) var recordsRead = 0
    /// A record whose captured length exceeds this is taken as a corrupt file (protects the buffer), bytes.
    public static let recordLimitBytes = 64 << 20
    private let fd: Int32
    private var buffer: UnsafeMutableRawPointer
    private var capacity: Int
    private var start = 0, end = 0
    /// File offset of `buffer[start]`.
    private var offset = 24
    private var atEOF = false

    /// Opens `path` and reads its header; refuses what is not classic pcap (pcapng is named as such).
    public init(path: String, bufferBytes: Int = 1 << 20) throws {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw PcapError(description: "\(path): cannot read: \(errnoText())") }
        self.fd = fd
        capacity = max(bufferBytes, 4096)
        buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
        var header = [UInt8](repeating: 0, count: 24)
        let got = header.withUnsafeMutableBytes { PcapReader.readFully(fd, $0.baseAddress!, 24) }
        guard got >= 0 else {
            let reason = errnoText()
            Glibc.close(fd); buffer.deallocate()
            throw PcapError(description: "\(path): cannot read: \(reason)")
        }
        do {
            format = try PcapReader.parseHeader(header[0..<got], name: path)
        } catch {
            Glibc.close(fd); buffer.deallocate()
            throw error
        }
    }

    deinit {
        Glibc.close(fd)
        buffer.deallocate()
    }

    /// The format of a 24-byte header, or why it is not one.
    static func parseHeader(_ header: ArraySlice<UInt8>, name: String) throws -> PcapFormat {
        let h = Array(header)
        guard h.count >= 4 else { throw PcapError(description: "\(name): too short for a pcap header") }
        let magic = UInt32(h[0]) | UInt32(h[1]) << 8 | UInt32(h[2]) << 16 | UInt32(h[3]) << 24
        let nanosecond: Bool, bigEndian: Bool
        switch magic {
        case 0xA1B2_C3D4: (nanosecond, bigEndian) = (false, false)
        case 0xA1B2_3C4D: (nanosecond, bigEndian) = (true, false)
        case 0xD4C3_B2A1: (nanosecond, bigEndian) = (false, true)
        case 0x4D3C_B2A1: (nanosecond, bigEndian) = (true, true)
        case 0x0A0D_0D0A:
            throw PcapError(description: "\(name): pcapng is not supported; convert with editcap -F pcap \(name) OUT.pcap")
        default: throw PcapError(description: "\(name): not a pcap file (magic \(String(magic, radix: 16)))")
        }
        guard h.count >= 24 else { throw PcapError(description: "\(name): too short for a pcap header") }
        func u32(_ o: Int) -> UInt32 {
            let v = UInt32(h[o]) | UInt32(h[o + 1]) << 8 | UInt32(h[o + 2]) << 16 | UInt32(h[o + 3]) << 24
            return bigEndian ? v.byteSwapped : v
        }
        return PcapFormat(nanosecond: nanosecond, bigEndian: bigEndian, linkType: u32(20), snapLength: u32(16))
    }

    /// read(2) until `count` bytes or end of file; the bytes read, or -1 with errno set.
    private static func readFully(_ fd: Int32, _ into: UnsafeMutableRawPointer, _ count: Int) -> Int {
        var done = 0
        while done < count {
            let n = read(fd, into + done, count - done)
            if n < 0 { if errno == EINTR { continue }; return -1 }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// Makes at least `count` bytes available from `start`, or fewer at end of file.
    private func fill(_ count: Int) throws {
        if end - start >= count || atEOF { return }
        if count > capacity {
            let bigger = UnsafeMutableRawPointer.allocate(byteCount: count, alignment: 16)
            bigger.copyMemory(from: buffer + start, byteCount: end - start)
            buffer.deallocate()
            buffer = bigger; capacity = count
        } else if start > 0 {
            (buffer).copyMemory(from: buffer + start, byteCount: end - start)
        }
        end -= start; start = 0
        while end < count && !atEOF {
            let n = read(fd, buffer + end, capacity - end)
            if n < 0 {
                if errno == EINTR { continue }
                throw PcapError(description: "\(path): cannot read: \(errnoText())")
            }
            if n == 0 { atEOF = true } else { end += n }
        }
    }

    private func u32(_ o: Int) -> UInt32 {
        let v = (buffer + start + o).loadUnaligned(as: UInt32.self)
        return format.bigEndian ? v.byteSwapped : UInt32(littleEndian: v)
    }

    /// The next record, or nil at the end of the file; its bytes stay valid until the next call.
    public func nextRaw() throws -> PcapRawRecord? {
        try fill(16)
        if end - start == 0 { return nil }
        let frame = recordsRead + 1
        guard end - start >= 16 else {
            throw PcapError(description: "\(path): frame \(frame) (at byte \(offset)) is cut short: \(end - start) of 16 header bytes")
        }
        let captured = Int(u32(8))
        guard captured <= PcapReader.recordLimitBytes else {
            throw PcapError(description: "\(path): frame \(frame) (at byte \(offset)) claims \(captured) captured bytes: not a valid pcap record")
        }
        try fill(16 + captured)
        guard end - start >= 16 + captured else {
            throw PcapError(description: "\(path): frame \(frame) (at byte \(offset)) is cut short: \(end - start - 16) of \(captured) bytes")
        }
        let record = PcapRawRecord(seconds: u32(0), fraction: u32(4), originalLength: u32(12),
                                   bytes: UnsafeRawBufferPointer(start: buffer + start + 16, count: captured))
        start += 16 + captured
        offset += 16 + captured
        recordsRead += 1
        return record
    }

    /// The next record as a value, or nil at the end of the file.
    public func next() throws -> PcapRecord? {
        guard let raw = try nextRaw() else { return nil }
        return PcapRecord(seconds: raw.seconds, fraction: raw.fraction, data: [UInt8](raw.bytes))
    }
}

/// Writes a little-endian classic pcap file through one buffer.
public final class PcapWriter {
    public let path: String
    public let format: PcapFormat
    /// Records written so far.
    public private(set) var recordsWritten = 0
    private var fd: Int32
    private let buffer: UnsafeMutableRawPointer
    private let capacity: Int
    private var used = 0

    /// Creates `path` and writes the header. `exclusive`: the file must not exist yet and a symbolic link is not
    /// followed (`O_EXCL|O_NOFOLLOW`, mode 0600), for files Tula makes for itself; otherwise it is truncated.
    public init(path: String, format: PcapFormat = PcapFormat(), exclusive: Bool = false, bufferBytes: Int = 1 << 20) throws {
        self.path = path
        var le = format
        le.bigEndian = false
        self.format = le
        let flags = O_WRONLY | O_CREAT | O_CLOEXEC | (exclusive ? O_EXCL | O_NOFOLLOW : O_TRUNC)
        fd = open(path, flags, exclusive ? 0o600 : 0o644)
        guard fd >= 0 else { throw PcapError(description: "\(path): cannot write: \(errnoText())") }
        capacity = max(bufferBytes, 4096)
        buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
        put32(le.nanosecond ? 0xA1B2_3C4D : 0xA1B2_C3D4)
        put32(2 | 4 << 16)  // version 2.4
        put32(0); put32(0)  // thiszone, sigfigs
        put32(le.snapLength); put32(le.linkType)
    }

    deinit {
        if fd >= 0 { Glibc.close(fd) }
        buffer.deallocate()
    }

    private func put32(_ v: UInt32) {
        (buffer + used).storeBytes(of: v.littleEndian, as: UInt32.self)
        used += 4
    }

    private func flush() throws {
        var done = 0
        while done < used {
            let n = Glibc.write(fd, buffer + done, used - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw PcapError(description: "\(path): cannot write: \(errnoText())")
            }
            done += n
        }
        used = 0
    }

    /// Appends one record; `fraction` must already be in this writer's resolution.
    public func write(seconds: UInt32, fraction: UInt32, originalLength: UInt32, bytes: UnsafeRawBufferPointer) throws {
        if used + 16 + bytes.count > capacity { try flush() }
        put32(seconds); put32(fraction); put32(UInt32(bytes.count)); put32(originalLength)
        // The record header is in the buffer now: the frame goes around it unless it fits after it.
        if used + bytes.count > capacity {
            try flush()
            var done = 0
            while done < bytes.count {
                let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw PcapError(description: "\(path): cannot write: \(errnoText())")
                }
                done += n
            }
        } else if bytes.count > 0 {
            (buffer + used).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
            used += bytes.count
        }
        recordsWritten += 1
    }

    public func write(_ record: PcapRecord) throws {
        try record.data.withUnsafeBytes {
            try write(seconds: record.seconds, fraction: record.fraction, originalLength: UInt32(record.data.count), bytes: $0)
        }
    }

    /// Writes what is buffered and closes the file (reporting a failed write-back).
    public func close() throws {
        guard fd >= 0 else { return }
        defer { fd = -1 }
        try flush()
        if Glibc.close(fd) != 0 {
            throw PcapError(description: "\(path): cannot write: \(errnoText())")
        }
    }
}

/// Classic pcap files: whole-file helpers for tests and small captures, and the streaming passes replay uses.
public enum Pcap {
    public static let linkTypeEthernet: UInt32 = 1
    /// The largest record libpcap (hence DPDK's net_pcap driver) reads; a larger one stops its RX for good, bytes.
    public static let largestReplayableFrame = 262_144

    /// Reads every record of the file at `path` (into memory: for small captures).
    public static func read(path: String) throws -> [PcapRecord] {
        let reader = try PcapReader(path: path)
        var records: [PcapRecord] = []
        while let r = try reader.next() { records.append(r) }
        return records
    }

    /// Number of records in the file, streaming.
    public static func count(path: String) throws -> Int {
        let reader = try PcapReader(path: path)
        while try reader.nextRaw() != nil {}
        return reader.recordsRead
    }

    /// Serialises records as a microsecond-resolution, little-endian, Ethernet pcap.
    public static func serialize(_ records: [PcapRecord]) -> [UInt8] {
        var out: [UInt8] = []
        func put32(_ v: UInt32) { for i in 0..<4 { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(i)))) } }
        func put16(_ v: UInt16) { out.append(UInt8(v & 0xFF)); out.append(UInt8(v >> 8)) }
        put32(0xA1B2_C3D4); put16(2); put16(4); put32(0); put32(0); put32(65535); put32(linkTypeEthernet)
        for r in records {
            put32(r.seconds); put32(r.fraction); put32(UInt32(r.data.count)); put32(UInt32(r.data.count))
            out.append(contentsOf: r.data)
        }
        return out
    }

    /// Writes `records` to `path` (truncating it) in `format` (default: microsecond Ethernet).
    public static func write(_ records: [PcapRecord], path: String, format: PcapFormat = PcapFormat()) throws {
        let writer = try PcapWriter(path: path, format: format)
        for r in records { try writer.write(r) }
        try writer.close()
    }

    /// A human name for a LINKTYPE_ value, for refusals.
    public static func linkTypeName(_ linkType: UInt32) -> String {
        switch linkType & 0xFFFF {
        case 0: return "BSD loopback"
        case 1: return "Ethernet"
        case 12, 14, 101: return "raw IP, no link-layer header"
        case 105: return "IEEE 802.11"
        case 113: return "Linux cooked capture (SLL)"
        case 127: return "802.11 radiotap"
        case 228: return "raw IPv4"
        case 229: return "raw IPv6"
        case 276: return "Linux cooked capture v2 (SLL2)"
        default: return "not Ethernet"
        }
    }

    /// What replay needs to know before it starts: the format and the number of frames. Refuses a non-Ethernet
    /// link type and a frame over `largestFrame` captured bytes (naming its number, from 1). Returns nil when
    /// `stop` (asked every 4096 records) says so.
    public static func survey(path: String, largestFrame: Int = largestReplayableFrame,
                              stop: () -> Bool = { false }) throws -> (format: PcapFormat, frames: Int)? {
        let reader = try PcapReader(path: path)
        guard reader.format.linkType & 0xFFFF == linkTypeEthernet else {
            throw PcapError(description: "\(path): link type \(reader.format.linkType) (\(linkTypeName(reader.format.linkType))) "
                            + "is not supported; replay needs Ethernet frames (link type 1)")
        }
        while let r = try reader.nextRaw() {
            if r.bytes.count > largestFrame {
                throw PcapError(description: "\(path): frame \(reader.recordsRead) is \(r.bytes.count) bytes (captured length); "
                                + "the pcap driver reads at most \(largestFrame)")
            }
            if reader.recordsRead & 4095 == 0, stop() { return nil }
        }
        return (reader.format, reader.recordsRead)
    }

    /// Deals the records of `input` round-robin to `outputs` (record i to output i mod n), bytes and stamps
    /// unchanged. Returns how many were dealt and whether the input was exhausted (false when `stop`, asked every
    /// 4096 records, said so).
    public static func split(_ input: PcapReader, into outputs: [PcapWriter], stop: () -> Bool = { false }) throws
        -> (dealt: Int, complete: Bool) {
        precondition(!outputs.isEmpty, "split needs an output")
        var i = 0
        while let r = try input.nextRaw() {
            let out = outputs[i % outputs.count]
            try out.write(seconds: r.seconds, fraction: out.format.fraction(r.fraction, from: input.format),
                          originalLength: r.originalLength, bytes: r.bytes)
            i += 1
            if i & 4095 == 0, stop() { return (i, false) }
        }
        return (i, true)
    }

    /// K-way merge of `inputs` (each in time order) into `output` in time order, equal stamps in input order; holds
    /// one record per input. Stamps are converted to the output's resolution. Returns how many records were written
    /// and whether every input was exhausted (false when `stop`, asked every 4096 records, said so).
    public static func merge(_ inputs: [PcapReader], into output: PcapWriter, stop: () -> Bool = { false }) throws
        -> (merged: Int, complete: Bool) {
        var heads: [PcapRecord?] = try inputs.map { try $0.next() }
        var n = 0
        while true {
            var best = -1, bestTime = UInt64.max
            for (k, head) in heads.enumerated() {
                guard let head else { continue }
                let t = inputs[k].format.nanoseconds(seconds: head.seconds, fraction: head.fraction)
                if best < 0 || t < bestTime { best = k; bestTime = t }
            }
            guard best >= 0, let r = heads[best] else { return (n, true) }
            try output.write(PcapRecord(seconds: r.seconds, fraction: output.format.fraction(r.fraction, from: inputs[best].format),
                                        data: r.data))
            heads[best] = try inputs[best].next()
            n += 1
            if n & 4095 == 0, stop() { return (n, false) }
        }
    }
}
