// `tula-appliance run`: the appliance on the ports of the config until SIGINT or SIGTERM.

import ArgumentParser
import Foundation
import TulaCore
import TulaPMD

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the appliance on the config's ports until SIGINT/SIGTERM, then print a summary.")

    @Option(name: .long, help: "The YAML config file.")
    var config: String

    @OptionGroup var output: OutputOptions

    @Flag(name: .long, help: "Print the EAL arguments that would be used and exit.")
    var dryRun = false

    @Argument(parsing: .postTerminator, help: "Extra EAL arguments, after --.")
    var eal: [String] = []

    func run() throws {
        let cfg = try loadConfigOrExit(config)
        let appliance = Appliance(config: cfg, configPath: config)
        if dryRun {
            print(appliance.ealArguments(inMemory: false, extra: eal).joined(separator: " "))
            return
        }
        blockStopSignals()
        try startOrExit(appliance, inMemory: false, extraEAL: eal)
        while true {
            guard let signal = waitForSignal(milliseconds: 500) else { continue }
            guard signal == SIGHUP else { break }
            do {
                try appliance.reload()
                printNotice("SIGHUP: reloaded \(config)")
            } catch {
                printError("SIGHUP: \(error); the running config stays")
            }
        }
        appliance.stop()
        printSummary(appliance.summary(), json: output.json)
        EAL.cleanup()
    }
}
