// `tula-appliance replay`: the config's first port becomes a net_pcap vdev reading IN and writing OUT.

import ArgumentParser
import Foundation
import TulaCore
import TulaPMD

struct ReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Replay a pcap through the appliance (no hardware) and print what it did.",
        discussion: """
            The first port's device is replaced by a net_pcap vdev reading IN and writing OUT; its address, \
            MAC and gateway stay as configured. With more than one worker, IN is dealt round-robin to one \
            RX queue per worker (files in a private temporary directory) and the per-queue outputs are merged \
            into OUT by timestamp. IN must be a classic Ethernet pcap, distinct from OUT.
            """)

    /// The longest `--stall-timeout` accepted, seconds.
    static let longestStallTimeout: Double = 86_400

    @Option(name: .long, help: "The YAML config file.")
    var config: String

    @Option(name: .customLong("in"), help: "The capture to replay.")
    var input: String

    @Option(name: .customLong("out"), help: "Where to write what the appliance transmits.")
    var output: String

    @Option(name: .long, help: "Give up when no packet has arrived for this many seconds (0 < s <= 86400).")
    var stallTimeout: Double = 10

    @OptionGroup var format: OutputOptions

    @Argument(parsing: .postTerminator, help: "Extra EAL arguments, after --.")
    var eal: [String] = []

    func validate() throws {
        guard stallTimeout.isFinite, stallTimeout > 0, stallTimeout <= ReplayCommand.longestStallTimeout else {
            throw ValidationError("--stall-timeout must be a number of seconds above 0 and at most "
                                  + "\(Int(ReplayCommand.longestStallTimeout)), not \(stallTimeout)")
        }
    }

    /// Prints `message` as an error and exits with status 1.
    private func fail(_ message: String) -> ExitCode {
        printError(message)
        return ExitCode(exitRuntimeError)
    }

    func run() throws {
        // Stop signals are ours from here on: reading and splitting a large capture checks for them.
        blockStopSignals()
        var cfg = try loadConfigOrExit(config)
        let queues = cfg.workerCount

        // Everything about the files is checked before anything is created or EAL starts.
        for (option, path) in [("--in", input), ("--out", output)] {
            if let reason = ReplayFiles.kvargsProblem(path) { throw fail("\(option) \(path): \(reason)") }
        }
        if ReplayFiles.sameFile(input, output) {
            throw fail("--in \(input) and --out \(output) are the same file: the output would destroy the input")
        }
        if let reason = ReplayFiles.writeProblem(output) { throw fail("--out \(output): cannot write: \(reason)") }
        let survey: (format: PcapFormat, frames: Int)
        var interruption: Int32?
        /// Asked between frames while reading, splitting and merging: a stop signal ends that work early.
        let stopRequested = { () -> Bool in interruption = pendingStopSignal(); return interruption != nil }
        do {
            guard let s = try Pcap.survey(path: input, stop: stopRequested) else {
                throw fail("interrupted by \(signalName(interruption ?? SIGTERM)) while reading \(input); nothing was replayed, "
                           + "\(output) was not written")
            }
            survey = s
        } catch let error as PcapError { throw fail(error.description) }
        let frames = survey.frames

        var ins = [input], outs = [output]
        var scratch: String?
        defer { if let scratch { ReplayFiles.removeScratch(scratch, queues: queues) } }
        if queues > 1 {
            let dir: String
            do { dir = try ReplayFiles.makeScratch() } catch let error as PcapError { throw fail(error.description) }
            scratch = dir
            ins = (0..<queues).map { "\(dir)/in\($0).pcap" }
            outs = (0..<queues).map { "\(dir)/out\($0).pcap" }
            do {
                let writers = try ins.map { try PcapWriter(path: $0, format: survey.format, exclusive: true) }
                let split = try Pcap.split(try PcapReader(path: input), into: writers,
                                           stop: stopRequested)
                for w in writers { try w.close() }
                if !split.complete {
                    throw fail("interrupted by \(signalName(interruption ?? SIGTERM)) while splitting \(input) for \(queues) workers "
                               + "(\(split.dealt) of \(frames) frames dealt); nothing was replayed, \(output) was not written")
                }
            } catch let error as PcapError { throw fail(error.description) }
        }
        cfg.ports[0].device = "net_pcap_replay," + (ins.map { "rx_pcap=\($0)" } + outs.map { "tx_pcap=\($0)" }).joined(separator: ",")

        let appliance = Appliance(config: cfg)
        // Offline: the output holds what the capture made Tula do, with no MLD report on a timer among it.
        appliance.reportsMulticastListeners = false
        try startOrExit(appliance, inMemory: true, extraEAL: eal)
        var last = appliance.receivedPackets
        var lastProgress = Date()
        var complete = true
        while appliance.receivedPackets < UInt64(frames) {
            if let signal = waitForSignal(milliseconds: 5), signal != SIGHUP {
                printError("interrupted by \(signalName(signal)): \(appliance.receivedPackets) of \(frames) frames received")
                complete = false
                break
            }
            let now = appliance.receivedPackets
            if now != last { last = now; lastProgress = Date() }
            if Date().timeIntervalSince(lastProgress) > stallTimeout {
                printError("replay stalled: \(now) of \(frames) packets received after \(stallTimeout) s without progress")
                complete = false
                break
            }
        }
        appliance.stop()
        if queues > 1 {
            do {
                let writer = try PcapWriter(path: output, format: survey.format)
                let merge = try Pcap.merge(try outs.map { try PcapReader(path: $0) }, into: writer,
                                           stop: stopRequested)
                try writer.close()
                if !merge.complete {
                    printError("interrupted by \(signalName(interruption ?? SIGTERM)) while merging the workers' outputs: "
                               + "\(output) holds only the first \(merge.merged) frames")
                    complete = false
                }
            } catch let error as PcapError {
                printError(error.description)
                complete = false
            }
        }
        printSummary(appliance.summary(notes: [("input", "\(input) (\(frames) packets)"), ("output", output)]),
                     json: format.json)
        EAL.cleanup()
        if !complete { throw ExitCode(exitRuntimeError) }
    }
}

/// The file-system side of replay: what the net_pcap driver cannot be given, and the private scratch directory.
enum ReplayFiles {
    /// Why `path` cannot go into a net_pcap devargs string (`,` separates and `=` assigns there), or nil.
    static func kvargsProblem(_ path: String) -> String? {
        path.contains(",") || path.contains("=")
            ? "a path with ',' or '=' cannot be passed to the net_pcap driver; rename it or use a symbolic link" : nil
    }

    /// Whether both paths name one existing file (same device and inode, whatever links lead there).
    static func sameFile(_ a: String, _ b: String) -> Bool {
        var sa = stat(), sb = stat()
        guard stat(a, &sa) == 0, stat(b, &sb) == 0 else { return false }
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino
    }

    /// Why `path` cannot be written (strerror), or nil; leaves no trace: an existing file is opened without
    /// truncation, a missing one is created exclusively and removed again.
    static func writeProblem(_ path: String) -> String? {
        var st = stat()
        if stat(path, &st) == 0 {
            if st.st_mode & S_IFMT == S_IFDIR { return String(cString: strerror(EISDIR)) }
            let fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
            if fd < 0 { return errnoText() }
            close(fd)
            return nil
        }
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        if fd < 0 { return errnoText() }
        close(fd)
        unlink(path)
        return nil
    }

    /// A fresh directory only root can enter (`mkdtemp`, mode 0700) under `$TMPDIR` (default /tmp).
    static func makeScratch() throws -> String {
        var base = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        while base.count > 1 && base.hasSuffix("/") { base.removeLast() }
        if let reason = kvargsProblem(base) { throw PcapError(description: "TMPDIR \(base): \(reason)") }
        var template = Array("\(base)/tula-replay-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw PcapError(description: "cannot create a private directory in \(base): \(errnoText())")
        }
        return String(cString: made)
    }

    /// Removes the scratch directory and the per-worker files replay put there.
    static func removeScratch(_ dir: String, queues: Int) {
        for q in 0..<queues {
            unlink("\(dir)/in\(q).pcap")
            unlink("\(dir)/out\(q).pcap")
        }
        if rmdir(dir) != 0 {
            printError("\(dir): could not remove the temporary directory: \(errnoText())")
        }
    }
}
