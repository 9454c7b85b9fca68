// `tula-appliance stats`: a running appliance's counters from its control socket, as a table with rates,
// JSON or Prometheus text; and the socket options and request helper `ctl` shares.

import ArgumentParser
import Foundation
import TulaCore
import TulaStats

/// Which control socket to talk to: `--socket`, else the `stats_socket` of `--config`, else the default.
struct SocketOptions: ParsableArguments {
    @Option(name: .long, help: "The appliance's control socket (default: /run/tula/tula.sock).")
    var socket: String?

    @Option(name: .long, help: "Take the socket path from this config file's stats_socket.")
    var config: String?

    func validate() throws {
        if socket != nil && config != nil { throw ValidationError("give --socket or --config, not both") }
    }

    /// The socket path these options name.
    func path() throws -> String {
        if let socket { return socket }
        if let config { return try loadConfigOrExit(config).statsSocket }
        return TulaConfig.defaultStatsSocket
    }

    /// Sends `request` and returns the response object when it succeeded; otherwise prints why and exits 1.
    func send(_ request: ControlRequest) throws -> [String: Any] {
        let path = try path()
        do {
            let (ok, object) = try ControlResponse.decode(try ControlClient.send(request.line, to: path))
            guard ok else {
                printError(object["error"] as? String ?? "the appliance refused the request")
                throw ExitCode(exitRuntimeError)
            }
            return object
        } catch let error as ControlClientError {
            printError(error.description)
            throw ExitCode(exitRuntimeError)
        } catch let error as ControlError {
            printError(error.message)
            throw ExitCode(exitRuntimeError)
        }
    }
}

struct StatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats",
        abstract: "Show the counters of a running appliance (from its control socket).",
        discussion: """
            Without a format flag, takes two samples --interval seconds apart and prints ports, VIPs and \
            backends with packet and bit rates. --json prints one sample as a JSON object (the same keys \
            as `run --json`, plus "control"); --prometheus prints one sample in the Prometheus text format; \
            --watch refreshes the table every --interval seconds until interrupted.
            """)

    @OptionGroup var target: SocketOptions

    @Flag(name: .long, help: "Print one sample as a JSON object.")
    var json = false

    @Flag(name: .long, help: "Print one sample in the Prometheus text exposition format.")
    var prometheus = false

    @Flag(name: .long, help: "Refresh the table every interval until interrupted.")
    var watch = false

    @Option(name: .long, help: "Seconds between the two samples the rates come from (0.1...3600).")
    var interval: Double = 1

    func validate() throws {
        guard [json, prometheus, watch].filter({ $0 }).count <= 1 else {
            throw ValidationError("--json, --prometheus and --watch exclude each other")
        }
        guard (0.1...3600).contains(interval) else { throw ValidationError("--interval must be between 0.1 and 3600 seconds") }
    }

    func run() throws {
        if json {
            var object = try sampleObject()
            object.removeValue(forKey: "ok")
            var stats = object["stats"] as? [String: Any] ?? [:]
            stats["control"] = object["control"]
            let data = try JSONSerialization.data(withJSONObject: stats, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        var previous = try sample()
        if prometheus {
            print(PrometheusExposition.render(previous.summary, control: previous.control), terminator: "")
            return
        }
        let clear = watch && isatty(STDOUT_FILENO) != 0
        repeat {
            Thread.sleep(forTimeInterval: interval)
            let next = try sample()
            if clear { print("\u{1B}[H\u{1B}[2J", terminator: "") }
            print(RateTable.render(next.summary, since: previous.summary, control: next.control), terminator: "")
            if watch { print("") }
            fflush(nil)
            previous = next
        } while watch
    }

    /// One `stats` response.
    func sampleObject() throws -> [String: Any] { try target.send(.stats) }

    /// One `stats` response, decoded.
    func sample() throws -> (summary: Summary, control: ControlServerCounters) {
        let object = try sampleObject()
        do {
            let summary = try Summary(json: object["stats"] as? [String: Any] ?? [:])
            return (summary, ControlServerCounters(json: object["control"] as? [String: Any] ?? [:]))
        } catch {
            printError(error.message)
            throw ExitCode(exitRuntimeError)
        }
    }
}
