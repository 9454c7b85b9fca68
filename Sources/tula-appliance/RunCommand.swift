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
        TulaTelemetry.register(appliance)
        printNotice("control socket \(cfg.statsSocket) (tula-appliance stats, tula-appliance ctl)")
        var metrics: MetricsServer?
        if let listen = cfg.metricsListen {
            do {
                metrics = try MetricsServer(listen: listen, source: ApplianceMetrics(appliance: appliance, control: control),
                                            log: { Log.write($0, $1) })
                printNotice("metrics on http://\(listen)/metrics (and /healthz)")
            } catch {
                printError("\(error)")
                control.stop()
                appliance.stop()
                EAL.cleanup()
                throw ExitCode(exitRuntimeError)
            }
        }
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
        metrics?.stop()
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

/// What the HTTP metrics endpoint serves: the stats socket's Prometheus text (counters and the control
/// socket's own), and whether the appliance serves.
final class ApplianceMetrics: MetricsSource, @unchecked Sendable {
    let appliance: Appliance
    let control: ControlServer

    init(appliance: Appliance, control: ControlServer) {
        self.appliance = appliance
        self.control = control
    }

    func metricsText() -> String { PrometheusExposition.render(appliance.summary(), control: control.counters) }
    func notServingReason() -> String? { appliance.notServingReason() }
}
