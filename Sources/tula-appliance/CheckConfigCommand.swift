// `tula-appliance check-config`: validate a config file without touching DPDK.

import ArgumentParser
import TulaCore

struct CheckConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate a config file; print file:line: reason and exit 2 when it is refused.")

    @Option(name: .long, help: "The YAML config file.")
    var config: String

    func run() throws {
        let cfg = try loadConfigOrExit(config)
        print("\(config): ok (\(cfg.ports.count) ports, \(cfg.vips.count) VIPs, \(cfg.workerCount) workers)")
    }
}
