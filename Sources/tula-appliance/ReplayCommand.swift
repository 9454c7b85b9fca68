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
            RX queue per worker and the per-queue outputs are merged into OUT by timestamp.
            """)

    @Option(name: .long, help: "The YAML config file.")
    var config: String

    @Option(name: .customLong("in"), help: "The capture to replay.")
    var input: String

    @Option(name: .customLong("out"), help: "Where to write what the appliance transmits.")
    var output: String

    @Option(name: .long, help: "Give up when no packet has arrived for this many seconds.")
    var stallTimeout: Double = 10

    @OptionGroup var format: OutputOptions

    @Argument(parsing: .postTerminator, help: "Extra EAL arguments, after --.")
    var eal: [String] = []

    func run() throws {
        var cfg = try loadConfigOrExit(config)
        for path in [input, output] where path.contains(",") {
            printError("\(path): a path with a comma cannot be passed to the net_pcap driver")
            throw ExitCode(exitRuntimeError)
        }
        let records: [PcapRecord]
        do { records = try Pcap.read(path: input) } catch {
            printError("\(error)")
            throw ExitCode(exitRuntimeError)
        }
        let queues = cfg.workerCount
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("tula-replay-\(getpid())").path
        var ins = [input], outs = [output]
        if queues > 1 {
            try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
            ins = (0..<queues).map { "\(scratch)/in\($0).pcap" }
            outs = (0..<queues).map { "\(scratch)/out\($0).pcap" }
            for q in 0..<queues {
                try Pcap.write(stride(from: q, to: records.count, by: queues).map { records[$0] }, path: ins[q])
            }
        }
        defer { if queues > 1 { try? FileManager.default.removeItem(atPath: scratch) } }
        cfg.ports[0].device = "net_pcap_replay," + (ins.map { "rx_pcap=\($0)" } + outs.map { "tx_pcap=\($0)" }).joined(separator: ",")

        let appliance = Appliance(config: cfg)
        blockStopSignals()
        try startOrExit(appliance, inMemory: true, extraEAL: eal)
        var last = appliance.receivedPackets
        var lastProgress = Date()
        var complete = true
        while appliance.receivedPackets < UInt64(records.count) {
            if let signal = waitForSignal(milliseconds: 5), signal != SIGHUP { complete = false; break }
            let now = appliance.receivedPackets
            if now != last { last = now; lastProgress = Date() }
            if Date().timeIntervalSince(lastProgress) > stallTimeout {
                printError("replay stalled: \(now) of \(records.count) packets received after \(stallTimeout) s without progress")
                complete = false
                break
            }
        }
        appliance.stop()
        if queues > 1 {
            let merged = try outs.flatMap { try Pcap.read(path: $0) }
                .enumerated()
                .sorted { ($0.element.seconds, $0.element.fraction, $0.offset) < ($1.element.seconds, $1.element.fraction, $1.offset) }
                .map(\.element)
            try Pcap.write(merged, path: output)
        }
        printSummary(appliance.summary(notes: [("input", "\(input) (\(records.count) packets)"), ("output", output)]),
                     json: format.json)
        EAL.cleanup()
        if !complete { throw ExitCode(exitRuntimeError) }
    }
}
