// `tula-appliance bird-config`: print a BIRD 2 config that announces the VIPs Tula can serve over BGP.

import ArgumentParser
import TulaCore

struct BirdConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bird-config",
        abstract: "Print a BIRD 2 config announcing Tula's VIP routes to one BGP peer (exit 2 on bad input).")

    @Option(name: .long, help: "The YAML config file (a port needs kernel_interface).")
    var config: String
    @Option(name: .long, help: "The BGP peer's address (reached through the port's kernel interface).")
    var peer: String
    @Option(name: .long, help: "This appliance's AS number.")
    var asn: String
    @Option(name: .customLong("peer-asn"), help: "The peer's AS number.")
    var peerASN: String
    @Flag(name: .long, help: "Run BFD on the session (the peer must run it too).")
    var bfd = false
    @Option(name: .long, help: "BGP hold time, seconds (default 3).")
    var hold = 3

    func run() throws {
        let cfg = try loadConfigOrExit(config)
        switch BirdConfig.make(config: cfg, peer: peer, asn: asn, peerASN: peerASN, bfd: bfd, holdSeconds: hold) {
        case .success(let bird): print(bird.text, terminator: "")
        case .failure(let error):
            printError("bird-config: \(error)")
            throw ExitCode(exitConfigError)
        }
    }
}
