// The pcap fuzz target: arbitrary bytes as a capture file, read by PcapReader and by a plain reference reader.

import Foundation
import TulaCore

/// Fuzz input files are unlinked temporary files, opened by PcapReader through /proc/self/fd: nothing is
/// left on disk, whatever happens to the process.
final class PcapCheck {
    let input: MemoryFile
    let copy: MemoryFile

    init() {
        input = MemoryFile(name: "tula-fuzz-in")
        copy = MemoryFile(name: "tula-fuzz-copy")
    }

    /// What the reference reader makes of a capture: its records (seconds, fraction, original length, bytes)
    /// and whether it ended in an error.
    struct Reference {
        var records: [(UInt32, UInt32, UInt32, [UInt8])] = []
        var failed = false
        var linkType: UInt32 = 0
    }

    /// Classic pcap as libpcap's documentation describes it, read from memory in the simplest way.
    static func reference(_ b: [UInt8]) -> Reference {
        var r = Reference()
        guard b.count >= 4 else { r.failed = true; return r }
        let magic = UInt32(b[0]) | UInt32(b[1]) << 8 | UInt32(b[2]) << 16 | UInt32(b[3]) << 24
        guard [0xA1B2_C3D4, 0xA1B2_3C4D, 0xD4C3_B2A1, 0x4D3C_B2A1].contains(magic), b.count >= 24 else {
            r.failed = true; return r
        }
        let big = magic == 0xD4C3_B2A1 || magic == 0x4D3C_B2A1
        func u32(_ o: Int) -> UInt32 {
            let v = UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16 | UInt32(b[o + 3]) << 24
            return big ? v.byteSwapped : v
        }
        r.linkType = u32(20)
        var at = 24
        while at < b.count {
            guard b.count - at >= 16 else { r.failed = true; return r }
            let captured = Int(u32(at + 8))
            guard captured <= PcapReader.recordLimitBytes, b.count - at - 16 >= captured else { r.failed = true; return r }
            r.records.append((u32(at), u32(at + 4), u32(at + 12), Array(b[(at + 16)..<(at + 16 + captured)])))
            at += 16 + captured
        }
        return r
    }

    func run(_ bytes: UnsafeRawBufferPointer) {
        input.replace(with: bytes)
        let expected = PcapCheck.reference([UInt8](bytes))
        var records: [(UInt32, UInt32, UInt32, [UInt8])] = []
        var failed = false
        var format: PcapFormat? = nil
        do {
            // The smallest buffer, so records cross its end and outgrow it.
            let reader = try PcapReader(path: input.path, bufferBytes: 0)
            format = reader.format
            var consumed = 24
            while let r = try reader.nextRaw() {
                consumed += 16 + r.bytes.count
                precondition(consumed <= bytes.count, "records of \(consumed) bytes from a \(bytes.count)-byte file")
                precondition(reader.recordsRead == records.count + 1, "recordsRead")
                records.append((r.seconds, r.fraction, r.originalLength, [UInt8](r.bytes)))
            }
            precondition(consumed == bytes.count, "a complete read of \(consumed) of \(bytes.count) bytes")
        } catch let error as PcapError {
            precondition(error.description.hasPrefix(input.path + ": "), "a PcapError that does not name the file")
            failed = true
        } catch {
            preconditionFailure("PcapReader threw \(error), not a PcapError")
        }
        precondition(failed == expected.failed, "PcapReader \(failed ? "refused" : "accepted") what the reference did not")
        precondition(records.count == expected.records.count, "\(records.count) records, the reference read \(expected.records.count)")
        for (a, b) in zip(records, expected.records) {
            precondition(a.0 == b.0 && a.1 == b.1 && a.2 == b.2 && a.3 == b.3, "a record differs from the reference's")
        }
        guard let format, !failed else { return }

        // survey and count agree with the reader.
        do {
            let counted = try Pcap.count(path: input.path)
            precondition(counted == records.count, "Pcap.count \(counted), read \(records.count)")
            let surveyed = try Pcap.survey(path: input.path, largestFrame: 1500)
            precondition(format.linkType & 0xFFFF == Pcap.linkTypeEthernet && records.allSatisfy { $0.3.count <= 1500 },
                         "survey accepted a capture it should refuse")
            precondition(surveyed?.frames == records.count && surveyed?.format == format, "survey's count or format")
        } catch {
            precondition(format.linkType & 0xFFFF != Pcap.linkTypeEthernet || records.contains { $0.3.count > 1500 },
                         "survey refused a capture it should take: \(error)")
        }

        // Written again (little-endian, same resolution) and read back: the same records.
        do {
            copy.replace(with: UnsafeRawBufferPointer(start: nil, count: 0))
            let writer = try PcapWriter(path: copy.path, format: format, bufferBytes: 0)
            for r in records {
                try r.3.withUnsafeBytes { try writer.write(seconds: r.0, fraction: r.1, originalLength: r.2, bytes: $0) }
            }
            try writer.close()
            let back = try PcapReader(path: copy.path)
            precondition(back.format.nanosecond == format.nanosecond && !back.format.bigEndian
                            && back.format.linkType == format.linkType, "the copy's format")
            var i = 0
            while let r = try back.next() {
                precondition(i < records.count && r.seconds == records[i].0 && r.fraction == records[i].1
                                && r.data == records[i].3, "record \(i) of the copy differs")
                i += 1
            }
            precondition(i == records.count, "the copy has \(i) of \(records.count) records")
        } catch {
            preconditionFailure("a capture that reads could not be copied: \(error)")
        }
    }
}

/// An unlinked temporary file and a path that opens it.
final class MemoryFile {
    let fd: Int32
    let path: String

    init(name: String) {
        let directory = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"
        var template = Array("\(directory)/\(name).XXXXXX".utf8CString)
        fd = mkstemp(&template)
        precondition(fd >= 0, "mkstemp in \(directory): \(errnoText())")
        unlink(template)
        path = "/proc/self/fd/\(fd)"
    }

    deinit { close(fd) }

    func replace(with bytes: UnsafeRawBufferPointer) {
        precondition(ftruncate(fd, 0) == 0, "ftruncate: \(errnoText())")
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(done))
            precondition(n > 0, "pwrite: \(errnoText())")
            done += n
        }
    }
}
