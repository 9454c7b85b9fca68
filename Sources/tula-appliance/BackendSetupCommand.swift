// `tula-appliance backend-setup`: print, apply (--apply) or persist (--persist) what a DSR backend host needs for a VIP.

import ArgumentParser
import Foundation
import TulaCore

/// The options that name a backend's job, shared by `backend-setup` and `doctor`.
struct BackendOptions: ParsableArguments {
    @Option(help: "The VIP the backend serves (IPv4).", transform: BackendOptions.address)
    var vip: IPv4Address

    @Option(help: "The VIP's DSR mode: l2 (MAC rewrite, the default) or l3 (IP-in-IP).", transform: BackendOptions.mode)
    var mode: DSRMode = .l2

    @Option(name: .customLong("backend-address"), help: "This backend's own address: the local end of the l3 tunnel.",
            transform: BackendOptions.address)
    var backendAddress: IPv4Address?

    var setup: BackendSetup { BackendSetup(vip: vip, mode: mode, backendAddress: backendAddress) }

    static func address(_ text: String) throws -> IPv4Address {
        guard let address = IPv4Address(text) else { throw ValidationError("'\(text)' is not an IPv4 address") }
        return address
    }

    static func mode(_ text: String) throws -> DSRMode {
        guard let mode = DSRMode.allCases.first(where: { $0.description == text }) else {
            throw ValidationError("unknown mode '\(text)' (expected l2 or l3)")
        }
        return mode
    }
}

struct BackendSetupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backend-setup",
        abstract: "Print the commands a DSR backend needs for a VIP; --apply runs them here, --persist writes the sysctl file.",
        discussion: """
            Without --apply, prints a shell script (the setup guide's commands) to run on each backend. \
            With --apply, runs on this host the commands it still needs (the fixes `doctor` names), reporting each one, \
            then checks the host again; exit status 1 when a command fails or a problem remains.
            """)

    @OptionGroup var backend: BackendOptions

    @Flag(help: "Run the commands on this host (as root), skipping what is already in place.")
    var apply = false

    @Flag(help: "Write the sysctl settings to /etc/sysctl.d/\(BackendSetup.sysctlFileName) so they survive a reboot.")
    var persist = false

    @Option(name: .customLong("sysctl-dir"), help: .hidden)
    var sysctlDirectory = BackendSetup.defaultSysctlDirectory

    func validate() throws {
        if backend.mode == .l3 && backend.backendAddress == nil {
            throw ValidationError("--mode l3 needs --backend-address (this backend's address, the local end of the ipip tunnel)")
        }
    }

    func run() throws {
        let setup = backend.setup
        if apply { try applyHere(setup) } else { print(setup.script, terminator: "") }
        if persist { try writeSysctlFile(setup) }
    }

    /// Runs the fixes the diagnosis of this host asks for, in order, then requires a clean diagnosis.
    func applyHere(_ setup: BackendSetup) throws {
        var ran: [BackendCommand] = []
        for finding in setup.diagnose(try HostInspection.observeOrExit()).findings {
            guard finding.isProblem else { print("ok       \(finding.message)"); continue }
            print("needed   \(finding.message)")
            for command in finding.fixes where !ran.contains(command) {
                print("run      \(command)")
                let result = HostInspection.run(command.argv)
                guard result.status == 0 else {
                    printError("`\(command)` failed (exit status \(result.status)): \(result.output.trimmingCharacters(in: .whitespacesAndNewlines))")
                    throw ExitCode(exitRuntimeError)
                }
                ran.append(command)
            }
        }
        let after = setup.diagnose(try HostInspection.observeOrExit())
        guard after.isHealthy else {
            print(after.report, terminator: "")
            printError("\(after.problems.count) problem(s) remain after applying the commands")
            throw ExitCode(exitRuntimeError)
        }
        print("ok       this host is ready to be a DSR backend for \(setup.vip) (\(setup.mode)); \(ran.count) command(s) run")
    }

    /// Writes `99-dsr.conf` under the sysctl directory, and says what it cannot persist.
    func writeSysctlFile(_ setup: BackendSetup) throws {
        let path = "\(sysctlDirectory)/\(BackendSetup.sysctlFileName)"
        do {
            try FileManager.default.createDirectory(atPath: sysctlDirectory, withIntermediateDirectories: true)
            try setup.sysctlFile.write(toFile: path, atomically: true, encoding: .utf8)
        } catch {
            printError("cannot write \(path): \(error.localizedDescription)")
            throw ExitCode(exitRuntimeError)
        }
        let addresses = setup.mode == .l3 ? "the VIP \(setup.vip)/32 on lo and the \(BackendSetup.tunnelName) tunnel holding it"
                                          : "the VIP \(setup.vip)/32 on lo"
        print("wrote    \(path) (loaded at boot by systemd-sysctl; load it now with `sysctl -p \(path)`)")
        print("note     also add \(addresses) to the network configuration (ifupdown, systemd-networkd, netplan): backend-setup does not edit it")
    }
}
