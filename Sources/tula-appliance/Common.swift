// Shared pieces of the subcommands: config loading with clear errors, signals, summary printing.

import ArgumentParser
import Foundation
import TulaCore
import TulaPMD
import TulaStats

/// Exit status for a config that is refused before any packet moves.
let exitConfigError: Int32 = 2
/// Exit status for a failure while bringing up or running the data path.
let exitRuntimeError: Int32 = 1

func printError(_ message: String) { Log.error(message) }

func printNotice(_ message: String) { Log.info(message) }

func printWarning(_ message: String) { Log.warning(message) }

/// Loads and validates the config, or exits with status 2 and `file:line: reason`.
func loadConfigOrExit(_ path: String) throws -> TulaConfig {
    do {
        return try ConfigLoader.load(path: path)
    } catch {
        printError("\(error)")
        throw ExitCode(exitConfigError)
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread and every thread started later (EAL's lcores),
/// so that `waitForSignal` receives them synchronously.
func blockStopSignals() {
    var set = sigset_t()
    sigemptyset(&set)
    for s in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&set, s) }
    pthread_sigmask(SIG_BLOCK, &set, nil)
}

/// Waits up to `milliseconds` for SIGINT, SIGTERM or SIGHUP (blocked by `blockStopSignals`); returns it,
/// or nil on timeout.
func waitForSignal(milliseconds: Int) -> Int32? {
    var set = sigset_t()
    sigemptyset(&set)
    for s in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&set, s) }
    var timeout = timespec(tv_sec: milliseconds / 1000, tv_nsec: (milliseconds % 1000) * 1_000_000)
    let s = sigtimedwait(&set, nil, &timeout)
    return s > 0 ? s : nil
}

/// Raises the soft limit on open files to the hard limit: health probes, control clients and DPDK's own files
/// all take descriptors, and the control server sizes its client caps from this limit.
func raiseFileLimit() {
    var files = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &files) == 0, files.rlim_cur < files.rlim_max else { return }
    files.rlim_cur = files.rlim_max
    if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &files) != 0 {
        printWarning("could not raise the open-file limit to \(files.rlim_max): \(errnoText())")
    }
}

/// A stop signal (SIGINT, SIGTERM) that arrived since the last call, without waiting; a SIGHUP is taken and ignored.
/// Needs `blockStopSignals` first. For long preparatory work (reading and splitting a capture) between checks.
func pendingStopSignal() -> Int32? {
    while let s = waitForSignal(milliseconds: 0) {
        if s != SIGHUP { return s }
    }
    return nil
}

/// "SIGINT", "SIGTERM", ... for messages.
func signalName(_ signal: Int32) -> String {
    switch signal {
    case SIGINT: return "SIGINT"
    case SIGTERM: return "SIGTERM"
    case SIGHUP: return "SIGHUP"
    default: return "signal \(signal)"
    }
}

/// Options every data-path subcommand takes.
struct OutputOptions: ParsableArguments {
    @Flag(name: .long, help: "Print the final summary as one JSON object on stdout.")
    var json = false
}

func printSummary(_ summary: Summary, json: Bool) {
    print(json ? summary.json() : summary.text(), terminator: json ? "\n" : "")
}

/// Brings the appliance up, or stops what started and exits with status 1 and the reason.
func startOrExit(_ appliance: Appliance, inMemory: Bool, extraEAL: [String]) throws {
    do {
        try appliance.start(inMemory: inMemory, extraEAL: extraEAL)
    } catch {
        appliance.stop()   // workers already launched, ports already open: stopped before EAL's memory goes
        EAL.cleanup()
        printError("\(error)")
        throw ExitCode(exitRuntimeError)
    }
}
