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

    /// The value tshark prints for `_ws.expert.group` of a checksum item (PI_CHECKSUM).
    static let checksumGroup = 0x0100_0000

    /// Checksum and expert fields per frame. IPv4/TCP/UDP checksums are only verified when asked; ICMP's and
    /// ICMPv6's always are, but a bad ICMP one is only a warning, so every `*.checksum.status` is read too
    /// (0 = bad, 1 = good, 2 = not verified). IP-in-IP, 6in6, 4in6, GRE, GUE and fragments (IPv4 and IPv6) are dissected
    /// and reassembled, so inner checksums count.
    static let checksumFields = ["ip.checksum.status", "tcp.checksum.status", "udp.checksum.status", "icmp.checksum.status",
                                 "icmpv6.checksum.status"]
    /// The TCP and UDP ones among them: not meaningful for the packet an ICMP error quotes (see `quotesTransport`).
    static let transportChecksumFields: Set<String> = ["tcp.checksum.status", "udp.checksum.status"]
    static let arguments = ["-n", "-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
                            "-o", "udp.check_checksum:TRUE", "-o", "ip.defragment:TRUE", "-o", "ipv6.defragment:TRUE",
                            // GUE variant 1 (encap scenario): tshark 4.0 has no GUE dissector; its "ip" one reads the
                            // inner packet's version (4 or 6) like Linux's fou does.
                            "-d", "udp.port==6080,ip",
                            "-T", "fields", "-E", "occurrence=a", "-E", "separator=/t",
                            "-e", "frame.number", "-e", "_ws.expert.severity", "-e", "_ws.malformed",
                            "-e", "_ws.expert.message", "-e", "_ws.expert.group", "-e", "frame.protocols"]
                            + checksumFields.flatMap { ["-e", $0] }

    /// Whether the frame's TCP or UDP header is inside an ICMP or ICMPv6 message, which carries one only in
    /// the packet an error quotes. A quote is usually cut short (an ICMPv6 error quotes up to 1232 bytes),
    /// so its TCP/UDP checksum covers bytes that are not there; tshark 4.0 still checks a quoted TCP segment
    /// and calls it bad. The ICMP/ICMPv6 checksum, which covers the quote, is still checked.
    static func quotesTransport(_ protocols: String) -> Bool {
        let layers = protocols.split(separator: ":")
        guard let icmp = layers.firstIndex(where: { $0 == "icmp" || $0 == "icmpv6" }) else { return false }
        return layers[icmp...].contains { $0 == "tcp" || $0 == "udp" }
    }

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
            let quoted = quotesTransport(fields.count > 5 ? fields[5] : "")
            let severities = values(1).map { Int($0) ?? 0 }, groups = values(4).map { Int($0) ?? 0 }
            let errors = severities.indices.filter { i in
                severities[i] >= errorSeverity && !(quoted && i < groups.count && groups[i] == checksumGroup)
            }
            if !errors.isEmpty || !values(2).isEmpty {
                reasons.append("expert: " + (fields.count > 3 ? fields[3] : "?"))
            }
            for (k, name) in checksumFields.enumerated() where values(6 + k).contains("0") {
                if quoted && transportChecksumFields.contains(name) { continue }
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

        /// What the control plane sends itself (ARP requests, neighbor solicitations, unsolicited advertisements, the
        /// MLDv2 report of its solicited-node groups), tagged and untagged, dissects cleanly with valid checksums;
        /// the MLD report is one that tshark reads as such, with its records.
        @Test func controlPlaneFramesAreValid() throws {
            let tshark = try #require(Tshark.path, "\(Tshark.missing)")
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let mac = MACAddress(2, 0, 0, 0, 0, 1), port6 = IPv6Address("2001:db8:1::2")!, vip6 = IPv6Address("2001:db8:100::80")!
            var frames: [[UInt8]] = []
            for vlan in [nil, UInt16(100)] {
                frames.append(ARPFrames.request(senderMAC: mac, senderIP: IPv4Address(10, 0, 1, 2), target: IPv4Address(10, 0, 1, 1), vlan: vlan))
                frames.append(NDPFrames.solicitation(senderMAC: mac, source: port6, target: IPv6Address("2001:db8:1::1")!, vlan: vlan))
                frames.append(NDPFrames.unsolicitedAdvertisement(senderMAC: mac, address: vip6, vlan: vlan))
                frames.append(NDPFrames.listenerReport(senderMAC: mac, groups: [port6.solicitedNode, vip6.solicitedNode], vlan: vlan))
            }
            let capture = scratch.file("control.pcap")
            try Pcap.write(frames.map { PcapRecord(data: $0) }, path: capture)
            #expect(try Tshark.findings(capture, tshark: tshark).isEmpty)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: tshark)
            process.arguments = ["-r", capture, "-Y", "icmpv6.type == 143", "-T", "fields",
                                 "-e", "icmpv6.mldr.nb_mcast_records", "-e", "icmpv6.mldr.mar.multicast_address",
                                 "-e", "ipv6.opt.router_alert", "-e", "icmpv6.checksum.status"]
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = FileHandle.nullDevice
            try process.run()
            let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            let lines = text.split(separator: "\n").map(String.init)
            #expect(lines.count == 2, "\(text)")
            for line in lines {
                #expect(line == "2\tff02::1:ff00:2,ff02::1:ff00:80\t0\t1", "\(line)")
            }
        }

        /// The check above is only worth something if it catches damage: corrupt chosen frames of a golden output
        /// (one per kind of header Tula writes or forwards) and require exactly those frames to be flagged.
        @Test func corruptedOutputIsFlagged() throws {
            try expectFlagged("icmp.expected.pcap", [
                Corruption("ICMP echo reply, last data byte flipped", { $0.proto == 1 && $0.icmpType == 0 }, flipLast),
                Corruption("l2 TCP, last payload byte flipped", { $0.proto == 6 }, flipLast),
                Corruption("l2 TCP cut 4 bytes short", { $0.proto == 6 }) { data, _ in data.removeLast(4) },
                Corruption("IP-in-IP UDP, last payload byte flipped", { $0.proto == 4 && $0.innerProto == 17 }, flipLast),
                Corruption("IP-in-IP, outer TTL changed", { $0.proto == 4 }) { data, shape in data[shape.l2 + 8] ^= 0x01 },
            ])
        }

        /// The same for what Tula writes or forwards over IPv6: ICMPv6 answers (echo, neighbor advertisement,
        /// Packet Too Big), l2 IPv6, relayed ICMPv6 errors, and 6in6/4in6 tunnels. IPv6 has no header checksum, so
        /// damage to an outer IPv6 header shows only where it cuts what it carries short (tshark calls a payload
        /// length past the frame's end only a warning).
        @Test func corruptedIPv6OutputIsFlagged() throws {
            try expectFlagged("v6-icmp.expected.pcap", [
                Corruption("ICMPv6 echo reply, last data byte flipped", { $0.ipv6 && $0.proto == 58 && $0.icmpType == 129 },
                           flipLast),
                Corruption("ICMPv6 echo reply cut 4 bytes short", { $0.ipv6 && $0.proto == 58 && $0.icmpType == 129 }) { data, _ in
                    data.removeLast(4)
                },
                Corruption("l2 IPv6 TCP, last payload byte flipped", { $0.ipv6 && $0.proto == 6 }, flipLast),
                Corruption("relayed Packet Too Big, last quoted byte flipped", { $0.ipv6 && $0.proto == 58 && $0.icmpType == 2 },
                           flipLast),
                Corruption("6in6 UDP, last payload byte flipped", { $0.ipv6 && $0.proto == 41 && $0.innerProto == 17 }, flipLast),
                Corruption("6in6 ICMPv6 error, last quoted byte flipped", { $0.ipv6 && $0.proto == 41 && $0.innerProto == 58 },
                           flipLast),
            ])
            try expectFlagged("v6-l3.expected.pcap", [
                Corruption("4in6 TCP, last payload byte flipped", { $0.ipv6 && $0.proto == 4 && $0.innerProto == 6 }, flipLast),
                Corruption("4in6, inner TTL changed", { $0.ipv6 && $0.proto == 4 }) { data, shape in data[shape.l2 + 40 + 8] ^= 0x01 },
                Corruption("6in6 cut 4 bytes short", { $0.ipv6 && $0.proto == 41 }) { data, _ in data.removeLast(4) },
                Corruption("Packet Too Big, MTU changed", { $0.ipv6 && $0.proto == 58 && $0.icmpType == 2 }) { data, shape in
                    data[shape.l2 + 40 + 7] ^= 0x01
                },
                Corruption("ICMP fragmentation needed (4in6 MTU), MTU changed", { !$0.ipv6 && $0.proto == 1 && $0.icmpType == 3 }) {
                    data, shape in data[data.count - 28 - 1] ^= 0x01
                },
            ])
            try expectFlagged("v6-nd.expected.pcap", [
                Corruption("neighbor advertisement, a target link-layer address byte flipped",
                           { $0.ipv6 && $0.proto == 58 && $0.icmpType == 136 }, flipLast),
                Corruption("neighbor advertisement, target changed", { $0.ipv6 && $0.proto == 58 && $0.icmpType == 136 }) {
                    data, shape in data[shape.l2 + 40 + 23] ^= 0x01
                },
            ])
        }
    }
}

/// One way to damage a frame of a golden output: which frames it applies to, and the edit.
struct Corruption {
    var what: String
    var matches: (FrameShape) -> Bool
    var edit: (inout [UInt8], FrameShape) -> Void
    init(_ what: String, _ matches: @escaping (FrameShape) -> Bool, _ edit: @escaping (inout [UInt8], FrameShape) -> Void) {
        self.what = what; self.matches = matches; self.edit = edit
    }
}

func flipLast(_ data: inout [UInt8], _: FrameShape) { data[data.count - 1] ^= 0x01 }

/// Applies each corruption to the first frame of `golden/<name>` not yet damaged that it matches, and requires
/// tshark to flag exactly the damaged frames (and nothing in the untouched capture).
func expectFlagged(_ name: String, _ corruptions: [Corruption]) throws {
    let tshark = try #require(Tshark.path, "\(Tshark.missing)")
    let scratch = try Scratch()
    defer { scratch.cleanup() }
    let source = "\(Integration.GoldenReplay.golden)/\(name)"
    var records = try Pcap.read(path: source)
    #expect(try Tshark.findings(source, tshark: tshark).isEmpty)

    var damaged: [Int: String] = [:]
    for c in corruptions {
        guard let i = records.indices.first(where: { damaged[$0] == nil && c.matches(FrameShape(records[$0].data)) }) else {
            Issue.record("\(name) has no frame for: \(c.what)")
            continue
        }
        let shape = FrameShape(records[i].data)
        c.edit(&records[i].data, shape)
        damaged[i] = c.what
    }

    let copy = scratch.file("corrupted.pcap")
    try Pcap.write(records, path: copy)
    let findings = try Tshark.findings(copy, tshark: tshark)
    let flagged = Set(findings.map { $0.frame - 1 })
    #expect(flagged == Set(damaged.keys),
            "\(name): damaged \(damaged.sorted { $0.key < $1.key }.map { "frame \($0.key + 1): \($0.value)" }), flagged \(findings)")
}

/// Where the headers of an output frame are (Ethernet, optional 802.1Q, IPv4 or IPv6, and for IP-in-IP, 6in6
/// and 4in6 the inner packet's protocol). For IPv6, `proto` is the next header (the frames used carry no
/// extension headers).
struct FrameShape {
    var l2: Int
    var ipv6 = false
    var proto: UInt8?
    var innerProto: UInt8?
    var icmpType: UInt8?

    init(_ d: [UInt8]) {
        l2 = d.count >= 14 && d[12] == 0x81 && d[13] == 0x00 ? 18 : 14
        if d.count >= l2 + 40, d[l2 - 2] == 0x86, d[l2 - 1] == 0xDD {
            ipv6 = true
            let next = d[l2 + 6], upper = l2 + 40
            proto = next
            if next == 41, d.count >= upper + 40 { innerProto = d[upper + 6] }
            if next == 4, d.count >= upper + 20 { innerProto = d[upper + 9] }
            if next == 58, d.count > upper { icmpType = d[upper] }
            return
        }
        guard d.count >= l2 + 20, d[l2 - 2] == 0x08, d[l2 - 1] == 0x00 else { return }
        let ihl = Int(d[l2] & 0x0F) * 4
        proto = d[l2 + 9]
        if proto == 4, d.count >= l2 + ihl + 20 { innerProto = d[l2 + ihl + 9] }
        if proto == 1, d.count > l2 + ihl { icmpType = d[l2 + ihl] }
    }
}
