// Dissects every golden output (expected and actual) with tshark and fails on malformed frames or bad checksums.

import Foundation
import Testing
import TulaCore

/// tshark (Debian package `tshark`, installed by scripts/install-deps.sh) as a checksum and format checker.
enum Tshark {
    /// `TSHARK` if set, else `tshark` found on PATH; nil when that is not an executable.
    static var path: String? {
        let environment = ProcessInfo.processInfo.environment
        if let path = environment["TSHARK"] { return FileManager.default.isExecutableFile(atPath: path) ? path : nil }
        let directories = (environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") + ["/usr/bin", "/usr/sbin"]
        return directories.map { "\($0)/tshark" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static let missing = "tshark not found (PATH or TSHARK): install it with scripts/install-deps.sh (Debian package tshark)"

    /// Severity value tshark prints for `_ws.expert.severity` at error level (PI_ERROR).
    static let errorSeverity = 0x0080_0000

    /// Checksum and expert fields per frame. IPv4/TCP/UDP checksums are only verified when asked; ICMP's always
    /// is, but a bad one is only a warning, so every `*.checksum.status` is read too (0 = bad, 1 = good,
    /// 2 = not verified). IP-in-IP and fragments are dissected and reassembled, so inner checksums count.
    static let checksumFields = ["ip.checksum.status", "tcp.checksum.status", "udp.checksum.status", "icmp.checksum.status"]
    static let arguments = ["-n", "-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
                            "-o", "udp.check_checksum:TRUE", "-o", "ip.defragment:TRUE",
                            "-T", "fields", "-E", "occurrence=a", "-E", "separator=/t",
                            "-e", "frame.number", "-e", "_ws.expert.severity", "-e", "_ws.malformed",
                            "-e", "_ws.expert.message"] + checksumFields.flatMap { ["-e", $0] }

    struct TsharkError: Error, CustomStringConvertible { var description: String }

    /// One frame tshark objects to: its number (1-based) and why.
    struct Finding: CustomStringConvertible {
        var frame: Int
        var reasons: [String]
        var description: String { "frame \(frame): \(reasons.joined(separator: "; "))" }
    }

    /// Dissects the capture at `capture` and returns the frames with an error-level expert item, a malformed
    /// marker or a bad checksum. Throws when tshark fails or does not report every frame.
    static func findings(_ capture: String, tshark: String) throws -> [Finding] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tshark)
        process.arguments = ["-r", capture] + arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        nonisolated(unsafe) var errData = Data()
        let drained = DispatchSemaphore(value: 0)
        DispatchQueue.global().async { errData = err.fileHandleForReading.readDataToEndOfFile(); drained.signal() }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        drained.wait()
        guard process.terminationStatus == 0 else {
            throw TsharkError(description: "tshark -r \(capture) exited \(process.terminationStatus): "
                            + String(decoding: errData, as: UTF8.self))
        }
        let lines = String(decoding: outData, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: true)
        let frames = try Pcap.count(path: capture)
        guard lines.count == frames else {
            throw TsharkError(description: "tshark reported \(lines.count) of the \(frames) frames in \(capture)")
        }
        return lines.compactMap { line in
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            func values(_ i: Int) -> [String] { i < fields.count ? fields[i].split(separator: ",").map(String.init) : [] }
            var reasons: [String] = []
            if values(1).contains(where: { (Int($0) ?? 0) >= errorSeverity }) || !values(2).isEmpty {
                reasons.append("expert: " + (fields.count > 3 ? fields[3] : "?"))
            }
            for (k, name) in checksumFields.enumerated() where values(4 + k).contains("0") {
                reasons.append("bad \(name.split(separator: ".")[0]) checksum")
            }
            return reasons.isEmpty ? nil : Finding(frame: Int(fields[0]) ?? -1, reasons: reasons)
        }
    }
}

extension Integration {
    @Suite struct OutputValidity {
        @Test(arguments: GoldenReplay.scenarios)
        func everyOutputFrameIsValid(_ scenario: GoldenScenario) throws {
            let tshark = try #require(Tshark.path, "\(Tshark.missing)")
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let out = scratch.file("\(scenario.name).out.pcap")
            let result = try GoldenReplay.replay(scenario, out: out)
            try #require(result.status == 0, "\(result.stderr)")
            let expected = "\(GoldenReplay.golden)/\(scenario.name).expected.pcap"
            for (what, capture) in [("expected", expected), ("actual", out)] {
                let findings = try Tshark.findings(capture, tshark: tshark)
                #expect(findings.isEmpty, "\(scenario.name) \(what) output:\n\(findings.map(\.description).joined(separator: "\n"))")
            }
        }

        /// The check above is only worth something if it catches damage: corrupt chosen frames of a golden output
        /// (one per kind of header Tula writes or forwards) and require exactly those frames to be flagged.
        @Test func corruptedOutputIsFlagged() throws {
            let tshark = try #require(Tshark.path, "\(Tshark.missing)")
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let source = "\(GoldenReplay.golden)/icmp.expected.pcap"
            var records = try Pcap.read(path: source)
            #expect(try Tshark.findings(source, tshark: tshark).isEmpty)

            var damaged: [Int: String] = [:]
            /// Damages the first frame not yet damaged that `matches`, with `edit`.
            func corrupt(_ what: String, _ matches: (FrameShape) -> Bool, _ edit: (inout [UInt8], FrameShape) -> Void) {
                guard let i = records.indices.first(where: { damaged[$0] == nil && matches(FrameShape(records[$0].data)) }) else {
                    Issue.record("icmp.expected.pcap has no frame for: \(what)")
                    return
                }
                let shape = FrameShape(records[i].data)
                edit(&records[i].data, shape)
                damaged[i] = what
            }
            func flipLast(_ data: inout [UInt8], _: FrameShape) { data[data.count - 1] ^= 0x01 }
            corrupt("ICMP echo reply, last data byte flipped", { $0.proto == 1 && $0.icmpType == 0 }, flipLast)
            corrupt("l2 TCP, last payload byte flipped", { $0.proto == 6 }, flipLast)
            corrupt("l2 TCP cut 4 bytes short", { $0.proto == 6 }) { data, _ in data.removeLast(4) }
            corrupt("IP-in-IP UDP, last payload byte flipped", { $0.proto == 4 && $0.innerProto == 17 }, flipLast)
            corrupt("IP-in-IP, outer TTL changed", { $0.proto == 4 }) { data, shape in data[shape.l2 + 8] ^= 0x01 }

            let copy = scratch.file("corrupted.pcap")
            try Pcap.write(records, path: copy)
            let findings = try Tshark.findings(copy, tshark: tshark)
            let flagged = Set(findings.map { $0.frame - 1 })
            #expect(flagged == Set(damaged.keys),
                    "damaged \(damaged.sorted { $0.key < $1.key }.map { "frame \($0.key + 1): \($0.value)" }), flagged \(findings)")
        }
    }
}

/// Where the headers of an output frame are (Ethernet, optional 802.1Q, IPv4, and for IP-in-IP the inner IPv4).
struct FrameShape {
    var l2: Int
    var proto: UInt8?
    var innerProto: UInt8?
    var icmpType: UInt8?

    init(_ d: [UInt8]) {
        l2 = d.count >= 14 && d[12] == 0x81 && d[13] == 0x00 ? 18 : 14
        guard d.count >= l2 + 20, d[l2 - 2] == 0x08, d[l2 - 1] == 0x00 else { return }
        let ihl = Int(d[l2] & 0x0F) * 4
        proto = d[l2 + 9]
        if proto == 4, d.count >= l2 + ihl + 20 { innerProto = d[l2 + ihl + 9] }
        if proto == 1, d.count > l2 + ihl { icmpType = d[l2 + ihl] }
    }
}
