// replay's contract with its files: refusals before anything is written, a private scratch directory, streaming.

import Foundation
import Testing
import TulaCore

extension Integration {
    @Suite struct ReplayCommandLine {
        let golden = packageRoot.appendingPathComponent("pcaps/golden").path

        /// The golden config with `workers` workers, in `scratch`.
        func config(workers: Int, _ scratch: Scratch) throws -> String {
            let text = try String(contentsOfFile: "\(golden)/golden.yaml", encoding: .utf8)
                .replacingOccurrences(of: "workers: 1", with: "workers: \(workers)")
            return try scratch.write("w\(workers).yaml", text)
        }

        var eal: [String] { ["--", "--file-prefix", "tula-test-\(getpid())"] }

        /// A microsecond Ethernet capture of about `bytes` bytes: the first golden l2 frame (a forwarded one) over
        /// and over, written as pcap bytes directly so that tens of MB take a fraction of a second.
        func writeCapture(_ path: String, bytes: Int) throws -> Int {
            let frame = try #require(try Pcap.read(path: "\(golden)/l2.in.pcap").first).data
            let perChunk = 8192
            let chunk = Pcap.serialize((0..<perChunk).map { PcapRecord(seconds: 1_700_000_000, fraction: UInt32($0), data: frame) })
                .dropFirst(24)
            let chunks = max(1, bytes / chunk.count)
            try #require(FileManager.default.createFile(atPath: path, contents: Data(Pcap.serialize([]))))
            let handle = try #require(FileHandle(forWritingAtPath: path))
            defer { try? handle.close() }
            try handle.seekToEnd()
            let data = Data(chunk)
            for _ in 0..<chunks { try handle.write(contentsOf: data) }
            return chunks * perChunk
        }

        /// Entries of `dir` (empty when it does not exist).
        func entries(_ dir: String) -> [String] { (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] }

        // MARK: the scratch directory (issue 13, replay 1 and 5)

        /// The per-worker files live in a fresh directory only root can enter (not a name another user can plant
        /// first, like /tmp/tula-replay-<pid>), are created 0600, and are gone when replay exits.
        @Test func multiWorkerScratchIsPrivateAndRemoved() throws {
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let tmp = scratch.file("tmp")
            try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: false)
            let input = scratch.file("in.pcap")
            _ = try writeCapture(input, bytes: 16 << 20)
            let child = try SpawnedChild(Appliance.binary, ["replay", "--config", try config(workers: 2, scratch), "--in", input,
                                                            "--out", scratch.file("out.pcap")] + eal,
                                         environment: ["TMPDIR": tmp], directory: scratch.path)
            var seen: (name: String, mode: mode_t, fileMode: mode_t)?
            while seen == nil && child.isRunning {
                if let name = entries(tmp).first {
                    var st = stat(), fst = stat()
                    if stat("\(tmp)/\(name)", &st) == 0, stat("\(tmp)/\(name)/in0.pcap", &fst) == 0 {
                        seen = (name, st.st_mode & 0o7777, fst.st_mode & 0o7777)
                    }
                }
                usleep(500)
            }
            let pid = child.pid
            let (result, _) = child.wait()
            #expect(result.status == 0, "\(result.stderr)")
            let dir = try #require(seen, "no scratch directory seen under TMPDIR")
            #expect(dir.name != "tula-replay-\(pid)", "a predictable name")
            #expect(dir.mode == 0o700, "directory mode \(String(dir.mode, radix: 8))")
            #expect(dir.fileMode & 0o077 == 0, "split file mode \(String(dir.fileMode, radix: 8))")
            #expect(entries(tmp).isEmpty, "left behind: \(entries(tmp))")
            // EAL's runtime directory for this prefix is removed on exit, too (it used to pile up, one per run).
            #expect(!FileManager.default.fileExists(atPath: "/var/run/dpdk/tula-test-\(getpid())"))
        }

        /// SIGTERM while the input is being split: stops, says what was done, removes its directory, exits 1.
        @Test func sigtermDuringTheSplitCleansUpAndSaysSo() throws {
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let tmp = scratch.file("tmp")
            try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: false)
            let input = scratch.file("in.pcap"), output = scratch.file("out.pcap")
            _ = try writeCapture(input, bytes: 128 << 20)
            let child = try SpawnedChild(Appliance.binary, ["replay", "--config", try config(workers: 2, scratch), "--in", input,
                                                            "--out", output] + eal,
                                         environment: ["TMPDIR": tmp], directory: scratch.path)
            var signalled = false
            while !signalled && child.isRunning {
                if let name = entries(tmp).first {
                    var st = stat()
                    if stat("\(tmp)/\(name)/in0.pcap", &st) == 0, st.st_size > 0 { child.signal(SIGTERM); signalled = true }
                }
                usleep(200)
            }
            let (result, _) = child.wait()
            #expect(signalled, "the split was never seen")
            #expect(result.status == 1, "\(result.stderr)")
            #expect(result.stderr.contains("tula-appliance: error: interrupted by SIGTERM while splitting"), "\(result.stderr)")
            #expect(entries(tmp).isEmpty, "left behind: \(entries(tmp))")
            #expect(!FileManager.default.fileExists(atPath: output))
        }

        // MARK: memory (issue 13, replay 4)

        /// Counting, splitting and merging stream: a 40 MiB capture through two workers costs about what a tiny one
        /// does (before: the whole capture several times over, 459 MB peak for 64 MiB).
        @Test func replayStreamsInConstantMemory() throws {
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let config = try config(workers: 2, scratch)
            func peak(_ input: String) throws -> (Int, ProcessResult) {
                // Both runs in one memory mode: hugepage memory is not in RSS and a --no-huge arena is, so a
                // run that found hugepages free and one that did not would not compare.
                let child = try SpawnedChild(Appliance.binary, ["replay", "--config", config, "--in", input,
                                                                "--out", scratch.file("out.pcap"), "--json"] + eal + ["--no-huge"],
                                             directory: scratch.path)
                let (result, rss) = child.wait()
                return (rss, result)
            }
            let (baseline, small) = try peak("\(golden)/l2.in.pcap")
            #expect(small.status == 0, "\(small.stderr)")
            let input = scratch.file("big.pcap")
            let frames = try writeCapture(input, bytes: 40 << 20)
            let size = try #require(try FileManager.default.attributesOfItem(atPath: input)[.size] as? Int)
            let (big, result) = try peak(input)
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.json?["rx_packets"] as? Int == frames)
            #expect(try Pcap.count(path: scratch.file("out.pcap")) == frames)
            #expect(big < baseline + size / 4,
                    "peak RSS \(big >> 20) MiB for a \(size >> 20) MiB capture; \(baseline >> 20) MiB for a tiny one")
        }

        // MARK: the output (issue 13, replay 2 and 3)

        /// The merged output keeps the input's time-stamp resolution (micro or nano magic, fractions within it)
        /// and is in time order.
        @Test(arguments: [false, true]) func mergedOutputKeepsTheInputResolutionInTimeOrder(nanosecond: Bool) throws {
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let input = scratch.file("in.pcap"), output = scratch.file("out.pcap")
            let records = try Pcap.read(path: "\(golden)/l2.in.pcap")
            try Pcap.write(records, path: input, format: PcapFormat(nanosecond: nanosecond))
            let result = try Appliance.run(["replay", "--config", try config(workers: 2, scratch), "--in", input, "--out", output] + eal)
            #expect(result.status == 0, "\(result.stderr)")
            let reader = try PcapReader(path: output)
            #expect(reader.format.nanosecond == nanosecond)
            var previous: UInt64 = 0, count = 0
            while let r = try reader.next() {
                #expect(UInt64(r.fraction) < reader.format.ticksPerSecond, "fraction \(r.fraction) of record \(count)")
                let t = reader.format.nanoseconds(seconds: r.seconds, fraction: r.fraction)
                #expect(t >= previous, "record \(count) is earlier than the one before")
                previous = t; count += 1
            }
            #expect(count == (try Pcap.count(path: "\(golden)/l2.expected.pcap")))
        }

        /// `--out` naming the input (itself, a symbolic link to it, a hard link to it) is refused and the input kept.
        @Test func inputAndOutputBeingTheSameFileIsRefused() throws {
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let input = scratch.file("in.pcap")
            try FileManager.default.copyItem(atPath: "\(golden)/l2.in.pcap", toPath: input)
            let original = try Data(contentsOf: URL(fileURLWithPath: input))
            try FileManager.default.createSymbolicLink(atPath: scratch.file("sym.pcap"), withDestinationPath: input)
            try FileManager.default.linkItem(atPath: input, toPath: scratch.file("hard.pcap"))
            for workers in [1, 2] {
                for out in [input, scratch.file("sym.pcap"), scratch.file("hard.pcap")] {
                    let result = try Appliance.run(["replay", "--config", try config(workers: workers, scratch), "--in", input,
                                                    "--out", out, "--stall-timeout", "2"] + eal)
                    #expect(result.status == 1, "\(out): \(result.stderr)")
                    #expect(result.stderr.contains("are the same file"), "\(out): \(result.stderr)")
                    #expect(try Data(contentsOf: URL(fileURLWithPath: input)) == original, "\(out) changed the input")
                }
            }
        }

        // MARK: captures refused before EAL starts (issue 13, replay 6)

        func refused(_ args: [String], _ scratch: Scratch, workers: Int = 1, environment: [String: String] = [:]) throws -> ProcessResult {
            let child = try SpawnedChild(Appliance.binary, ["replay", "--config", try config(workers: workers, scratch)] + args
                                         + ["--stall-timeout", "2"] + eal, environment: environment, directory: scratch.path)
            let (result, _) = child.wait()
            #expect(result.status == 1, "\(result.stderr)")
            #expect(result.stderr.hasPrefix("tula-appliance: error: "), "\(result.stderr)")
            #expect(!result.stderr.contains("EAL"), "EAL must not start: \(result.stderr)")
            return result
        }

        /// A frame over 262,144 captured bytes stops libpcap (the driver then stalls): refused, naming the frame.
        @Test func oversizeFrameIsRefusedUpFront() throws {
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let small = try #require(try Pcap.read(path: "\(golden)/l2.in.pcap").first)
            let input = scratch.file("in.pcap"), output = scratch.file("out.pcap")
            try Pcap.write([small, PcapRecord(data: small.data + [UInt8](repeating: 0, count: 300_000 - small.data.count)), small],
                           path: input)
            let result = try refused(["--in", input, "--out", output], scratch)
            #expect(result.stderr.contains("frame 2 is 300000 bytes"), "\(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: output))
        }

        /// A raw-IP capture (no Ethernet header) is refused with its link type named.
        @Test(arguments: [UInt32(101), 12, 14, 113]) func nonEthernetLinkTypeIsRefused(linkType: UInt32) throws {
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let input = scratch.file("in.pcap"), output = scratch.file("out.pcap")
            let records = try Pcap.read(path: "\(golden)/l2.in.pcap").map { PcapRecord(data: Array($0.data.dropFirst(14))) }
            try Pcap.write(records, path: input, format: PcapFormat(linkType: linkType))
            let result = try refused(["--in", input, "--out", output], scratch)
            #expect(result.stderr.contains("link type \(linkType) ("), "\(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: output))
        }

        /// pcapng is named and the conversion given.
        @Test func pcapngIsNamedWithTheConversion() throws {
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let input = scratch.file("in.pcapng"), output = scratch.file("out.pcap")
            // A section header block: type 0x0a0d0d0a, length 28, byte-order magic, version 1.0, section length -1.
            var shb: [UInt8] = [0x0A, 0x0D, 0x0D, 0x0A, 28, 0, 0, 0, 0x4D, 0x3C, 0x2B, 0x1A, 1, 0, 0, 0]
            shb += [UInt8](repeating: 0xFF, count: 8) + [28, 0, 0, 0]
            try #require(FileManager.default.createFile(atPath: input, contents: Data(shb)))
            let result = try refused(["--in", input, "--out", output], scratch)
            #expect(result.stderr.contains("pcapng is not supported; convert with editcap -F pcap \(input)"), "\(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: output))
        }

        /// An output that cannot be written is named with the reason before EAL starts (was: "no DPDK device").
        @Test func unwritableOutputIsNamedBeforeEAL() throws {
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let notADirectory = try scratch.write("file.txt", "x")
            for (workers, out, reason) in [(1, scratch.file("missing/out.pcap"), "No such file or directory"),
                                           (2, scratch.file("missing/out.pcap"), "No such file or directory"),
                                           (1, "\(notADirectory)/out.pcap", "Not a directory"),
                                           (1, scratch.path, "Is a directory")] {
                let result = try refused(["--in", "\(golden)/l2.in.pcap", "--out", out], scratch, workers: workers)
                #expect(result.stderr.contains("\(out): cannot write: \(reason)"), "\(result.stderr)")
            }
        }

        /// ',' and '=' separate net_pcap's devargs: refused in --in, --out and in the split files' directory.
        @Test func pathsTheDriverCannotTakeAreRefused() throws {
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            for name in ["a=b", "a,b"] {
                let dir = scratch.file(name)
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
                try FileManager.default.copyItem(atPath: "\(golden)/l2.in.pcap", toPath: "\(dir)/in.pcap")
                for args in [["--in", "\(dir)/in.pcap", "--out", scratch.file("out.pcap")],
                             ["--in", "\(golden)/l2.in.pcap", "--out", "\(dir)/out.pcap"]] {
                    let result = try refused(args, scratch)
                    #expect(result.stderr.contains("cannot be passed to the net_pcap driver"), "\(result.stderr)")
                }
                let result = try refused(["--in", "\(golden)/l2.in.pcap", "--out", scratch.file("out.pcap")], scratch, workers: 2,
                                         environment: ["TMPDIR": dir])
                #expect(result.stderr.contains("TMPDIR \(dir): "), "\(result.stderr)")
                #expect(entries(dir) == ["in.pcap"], "\(entries(dir))")
                #expect(!FileManager.default.fileExists(atPath: scratch.file("out.pcap")))
                #expect(!FileManager.default.fileExists(atPath: "\(dir)/out.pcap"))
            }
        }

        // MARK: summary and options (issue 13, replay 6)

        /// The final summary says how many mbufs are still taken: none after a clean replay (a leak check).
        @Test(arguments: [1, 2]) func finalSummaryCountsMbufsInUse(workers: Int) throws {
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let result = try Appliance.run(["replay", "--config", try config(workers: workers, scratch), "--in", "\(golden)/mixed.in.pcap",
                                            "--out", scratch.file("out.pcap"), "--json"] + eal)
            #expect(result.status == 0, "\(result.stderr)")
            let json = try #require(result.json, "\(result.stdout)")
            #expect(json["mbufs_in_use"] as? Int == 0, "mbufs_in_use: \(json["mbufs_in_use"] ?? "missing")")
        }

        /// A stall timeout that is not a positive, finite, sane number of seconds is a usage error.
        @Test(arguments: ["nan", "inf", "-1", "0", "1e9"]) func stallTimeoutIsValidated(value: String) throws {
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let result = try Appliance.run(["replay", "--config", "\(golden)/golden.yaml", "--in", "\(golden)/l2.in.pcap",
                                            "--out", scratch.file("out.pcap"), "--stall-timeout=\(value)"] + eal)
            #expect(result.status != 0)
            #expect(result.stderr.contains("--stall-timeout must be a number of seconds above 0"), "\(result.stderr)")
            #expect(!result.stderr.contains("EAL"))
            #expect(!FileManager.default.fileExists(atPath: scratch.file("out.pcap")))
        }
    }
}
