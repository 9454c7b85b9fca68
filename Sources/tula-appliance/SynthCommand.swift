// `tula-appliance synth`: writes deterministic client traffic towards a config's VIPs as a pcap.

import ArgumentParser
import TulaCore

struct SynthCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synth",
        abstract: "Write synthetic client traffic (valid TCP/UDP to the config's VIPs) to a pcap, for benchmarks and tests.")

    @Option(name: .long, help: "The YAML config file whose VIPs the traffic targets.")
    var config: String

    @Option(name: .long, help: "Distinct 5-tuples.")
    var flows: Int = 1000

    @Option(name: .long, help: "Frames in all (flows take turns).")
    var packets: Int = 1000

    @Option(name: .long, help: "L4 payload bytes per frame.")
    var payload: Int = 64

    @Option(name: .long, help: "Only VIPs in this mode (l2 or l3).")
    var mode: String?

    @Option(name: .long, help: "Only the VIP of this name (the benchmark sends each case to one VIP).")
    var vip: String?

    @Option(name: .long, help: "Seed of the generator.")
    var seed: UInt64 = 1

    @Option(name: .customLong("out"), help: "The pcap to write.")
    var output: String

    func validate() throws {
        guard flows > 0, packets > 0, (0...1400).contains(payload) else {
            throw ValidationError("--flows and --packets must be positive and --payload within 0...1400")
        }
        if let mode, DSRMode.allCases.first(where: { $0.description == mode }) == nil {
            throw ValidationError("--mode must be l2 or l3")
        }
    }

    func run() throws {
        var cfg = try loadConfigOrExit(config)
        if let mode { cfg.vips = cfg.vips.filter { $0.mode.description == mode } }
        if let vip { cfg.vips = cfg.vips.filter { $0.name == vip } }
        guard !cfg.vips.isEmpty else { throw ValidationError("the config has no VIP to send traffic to") }
        let frames = TrafficSynthesizer.packets(config: cfg, flows: flows, packets: packets, payloadBytes: payload, seed: seed)
        try Pcap.write(frames.enumerated().map { PcapRecord(seconds: 1_700_000_000, fraction: UInt32($0.offset % 1_000_000), data: $0.element) },
                       path: output)
        print("\(output): \(frames.count) frames, \(min(flows, packets)) flows")
    }
}
