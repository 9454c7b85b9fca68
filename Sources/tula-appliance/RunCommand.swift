// `tula-appliance run`: the appliance on the config's ports, with its control socket, until SIGINT or SIGTERM.

import ArgumentParser
import Foundation
import TulaCore
import TulaPMD
import TulaStats

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the appliance on the config's ports until SIGINT/SIGTERM, then print a summary.",
        discussion: """
            While it runs, the control socket (stats_socket) answers `tula-appliance stats` and takes live \
            changes from `tula-appliance ctl`; SIGHUP reloads the config file.
            """)

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
            let need = appliance.requiredMegabytes
            printNotice("memory: \(need.hugepages) MiB of hugepages (\(EAL.hugepagesAvailableMegabytes()) MiB free), "
                        + "or --no-huge -m \(need.noHuge) without them")
            return
        }
        raiseFileLimit()
        let control = try claimControlSocket(cfg.statsSocket)
        blockStopSignals()
        do { try startOrExit(appliance, inMemory: false, extraEAL: eal) } catch {
            control.stop()
            throw error
        }
        control.start(target: appliance)
        printNotice("control socket \(cfg.statsSocket) (tula-appliance stats, tula-appliance ctl)")
        var service = ServiceState(appliance: appliance, notifier: SystemdNotifier())
        while true {
            service.tick()
            guard let signal = waitForSignal(milliseconds: service.tickMilliseconds) else { continue }
            guard signal == SIGHUP else { break }
            service.reloading()
            do {
                try appliance.reload()
                printNotice("SIGHUP: reloaded \(config)")
            } catch {
                printError("SIGHUP: \(error); the running config stays")
            }
            service.reloaded()
        }
        service.stopping()
        control.stop()
        appliance.stop()
        printSummary(appliance.summary(), json: output.json)
        EAL.cleanup()
    }

    /// Binds the control socket before EAL starts (so a second appliance on the same socket is refused
    /// before it takes any port), or exits with status 1 and the reason.
    private func claimControlSocket(_ path: String) throws -> ControlServer {
        do {
            return try ControlServer(path: path, log: { Log.write($0, $1) })
        } catch {
            printError("\(error)")
            throw ExitCode(exitRuntimeError)
        }
    }
}
