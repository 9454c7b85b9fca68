// Tests for classic pcap streaming: byte order, time-stamp resolution, refusals, split and k-way merge.
import Foundation
import Testing
@testable import TulaCore

@Suite struct PcapTests {
    /// A scratch file path, removed by the caller.
    private func path(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("tula-pcaptest-\(UUID().uuidString)-\(name)").path
    }

    /// Hand-made pcap bytes: header in `bigEndian` order with `magic`, then (seconds, fraction, data) records.
    private func bytes(magic: UInt32, bigEndian: Bool, linkType: UInt32 = 1, _ records: [(UInt32, UInt32, [UInt8])]) -> [UInt8] {
        var out: [UInt8] = []
        func put32(_ v: UInt32) {
            let b = (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * UInt32($0))) }
            out += bigEndian ? b.reversed() : b
        }
        func put16(_ v: UInt16) { out += bigEndian ? [UInt8(v >> 8), UInt8(v & 0xFF)] : [UInt8(v & 0xFF), UInt8(v >> 8)] }
        put32(magic); put16(2); put16(4); put32(0); put32(0); put32(65535); put32(linkType)
        for (s, f, d) in records { put32(s); put32(f); put32(UInt32(d.count)); put32(UInt32(d.count)); out += d }
        return out
    }

    private func file(_ content: [UInt8]) -> String {
        let p = path("f.pcap")
        _ = FileManager.default.createFile(atPath: p, contents: Data(content))
        return p
    }

    @Test(arguments: [(0xA1B2_C3D4 as UInt32, false, false), (0xA1B2_3C4D, false, true), (0xA1B2_C3D4, true, false), (0xA1B2_3C4D, true, true)])
    func readsEitherByteOrderAndResolution(magic: UInt32, bigEndian: Bool, nanosecond: Bool) throws {
        let fraction: UInt32 = nanosecond ? 987_654_321 : 987_654
        let p = file(bytes(magic: magic, bigEndian: bigEndian, [(1_700_000_001, fraction, [1, 2, 3]), (1_700_000_002, 5, [])]))
        defer { unlink(p) }
        let reader = try PcapReader(path: p)
        #expect(reader.format.nanosecond == nanosecond)
        #expect(reader.format.bigEndian == bigEndian)
        #expect(reader.format.linkType == 1)
        #expect(try reader.next() == PcapRecord(seconds: 1_700_000_001, fraction: fraction, data: [1, 2, 3]))
        #expect(try reader.next() == PcapRecord(seconds: 1_700_000_002, fraction: 5, data: []))
        #expect(try reader.next() == nil)
        #expect(reader.format.nanoseconds(seconds: 1, fraction: fraction) == 1_000_000_000 + 987_654_321 - (nanosecond ? 0 : 321))
    }

    @Test func pcapngIsNamedWithItsConversion() throws {
        let p = file([0x0A, 0x0D, 0x0D, 0x0A, 28, 0, 0, 0, 0x4D, 0x3C, 0x2B, 0x1A] + [UInt8](repeating: 0, count: 16))
        defer { unlink(p) }
        #expect { try PcapReader(path: p) } throws: {
            "\($0)" == "\(p): pcapng is not supported; convert with editcap -F pcap \(p) OUT.pcap"
        }
    }

    @Test func cutShortRecordIsAnErrorNamingTheFrame() throws {
        let whole = bytes(magic: 0xA1B2_C3D4, bigEndian: false, [(1, 0, [1, 2, 3, 4]), (2, 0, [5, 6, 7, 8])])
        let p = file(Array(whole.dropLast(2)))
        defer { unlink(p) }
        #expect { try Pcap.read(path: p) } throws: { "\($0)".contains("frame 2 (at byte 44) is cut short") }
    }

    @Test func surveyRefusesOtherLinkTypesAndOversizeFrames() throws {
        let raw = file(bytes(magic: 0xA1B2_C3D4, bigEndian: false, linkType: 101, [(1, 0, [0x45])]))
        defer { unlink(raw) }
        #expect { try Pcap.survey(path: raw) } throws: { "\($0)".contains("link type 101 (raw IP, no link-layer header)") }
        let big = file(bytes(magic: 0xA1B2_C3D4, bigEndian: false, [(1, 0, [1]), (1, 1, [UInt8](repeating: 0, count: 262_145))]))
        defer { unlink(big) }
        #expect { try Pcap.survey(path: big) } throws: { "\($0)".contains("frame 2 is 262145 bytes") }
        let fine = file(bytes(magic: 0xA1B2_C3D4, bigEndian: false, [(1, 0, [1]), (1, 1, [UInt8](repeating: 0, count: 262_144))]))
        defer { unlink(fine) }
        #expect(try Pcap.survey(path: fine)?.frames == 2)
        #expect(try Pcap.survey(path: fine, stop: { true })?.frames == 2, "stop is asked every 4096 frames only")
    }

    /// Records bigger than the reader's buffer still come through whole.
    @Test func recordsLargerThanTheBufferAreRead() throws {
        let records = (0..<5).map { PcapRecord(seconds: 1, fraction: UInt32($0), data: [UInt8](repeating: UInt8($0), count: 3000 * ($0 + 1))) }
        let p = path("big.pcap")
        defer { unlink(p) }
        try Pcap.write(records, path: p)
        let reader = try PcapReader(path: p, bufferBytes: 4096)
        var got: [PcapRecord] = []
        while let r = try reader.next() { got.append(r) }
        #expect(got == records)
    }

    /// A frame that fits the writer's buffer but not after the record header (capacity - 16 < size <= capacity)
    /// used to be copied past the end of the buffer; every size around the edge is written and read back whole.
    @Test func framesAtTheWriterBufferEdgeAreWrittenWhole() throws {
        let p = path("edge.pcap")
        defer { unlink(p) }
        let records = (4070...4100).map { PcapRecord(seconds: 2, fraction: 0, data: [UInt8](repeating: UInt8($0 & 0xFF), count: $0)) }
        let writer = try PcapWriter(path: p, bufferBytes: 4096)
        for r in records {
            try r.data.withUnsafeBytes { try writer.write(seconds: r.seconds, fraction: r.fraction, originalLength: UInt32(r.data.count), bytes: $0) }
        }
        try writer.close()
        let reader = try PcapReader(path: p)
        var got: [PcapRecord] = []
        while let r = try reader.next() { got.append(r) }
        #expect(got == records)
    }

    /// Split deals round-robin in the input's resolution; merge of nanosecond per-queue files into a microsecond
    /// output converts the fractions and keeps time order.
    @Test func splitThenMergeRestoresTimeOrderInTheOutputResolution() throws {
        let records: [PcapRecord] = (0..<10_000).map { (i: Int) -> PcapRecord in
            let seconds: UInt32 = 1_700_000_000 + UInt32(i / 3000)
            let fraction: UInt32 = UInt32(i % 3000) * 300_000 + 1234
            return PcapRecord(seconds: seconds, fraction: fraction, data: [UInt8(i & 0xFF), UInt8(i >> 8)])
        }
        let input = path("in.pcap"), parts = [path("q0.pcap"), path("q1.pcap"), path("q2.pcap")], output = path("out.pcap")
        defer { for p in [input, output] + parts { unlink(p) } }
        let nano = PcapFormat(nanosecond: true)
        try Pcap.write(records, path: input, format: nano)
        let writers = try parts.map { try PcapWriter(path: $0, format: nano, exclusive: true) }
        let split = try Pcap.split(try PcapReader(path: input), into: writers)
        for w in writers { try w.close() }
        #expect(split.dealt == records.count && split.complete)
        #expect(try Pcap.read(path: parts[1]) == stride(from: 1, to: records.count, by: 3).map { records[$0] })

        let writer = try PcapWriter(path: output, format: PcapFormat(nanosecond: false))
        let merge = try Pcap.merge(try parts.map { try PcapReader(path: $0) }, into: writer)
        try writer.close()
        #expect(merge.merged == records.count && merge.complete)
        let reader = try PcapReader(path: output)
        #expect(!reader.format.nanosecond)
        var got: [PcapRecord] = []
        while let r = try reader.next() { got.append(r) }
        #expect(got == records.map { PcapRecord(seconds: $0.seconds, fraction: $0.fraction / 1000, data: $0.data) })
    }

    /// Files Tula makes for itself are created exclusively and never through a symbolic link.
    @Test func exclusiveWriterRefusesExistingFilesAndLinks() throws {
        let target = path("target"), link = path("link")
        _ = FileManager.default.createFile(atPath: target, contents: Data("keep".utf8))
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
        defer { unlink(target); unlink(link) }
        #expect { try PcapWriter(path: link, exclusive: true) } throws: { "\($0)".contains("cannot write: File exists") }
        #expect { try PcapWriter(path: target, exclusive: true) } throws: { "\($0)".contains("cannot write: File exists") }
        #expect(try String(contentsOfFile: target, encoding: .utf8) == "keep")
    }

    @Test func stopEndsSplitAndMergeEarly() throws {
        let records = (0..<10_000).map { PcapRecord(seconds: 1, fraction: UInt32($0), data: [1]) }
        let input = path("in.pcap"), part = path("q0.pcap"), output = path("out.pcap")
        defer { for p in [input, part, output] { unlink(p) } }
        try Pcap.write(records, path: input)
        let w = try PcapWriter(path: part, exclusive: true)
        let split = try Pcap.split(try PcapReader(path: input), into: [w], stop: { true })
        try w.close()
        #expect(split.dealt == 4096 && !split.complete)
        let out = try PcapWriter(path: output)
        let merge = try Pcap.merge([try PcapReader(path: input)], into: out, stop: { true })
        try out.close()
        #expect(merge.merged == 4096 && !merge.complete)
    }
}
