// `tula-appliance backend-setup`: print, apply (--apply) or persist (--persist) what a DSR backend host needs for a VIP.

import ArgumentParser
import Foundation
import TulaCore

/// The options that name a backend's job, shared by `backend-setup` and `doctor`.
struct BackendOptions: ParsableArguments {
    @Option(help: "The VIP the backend serves (IPv4 or IPv6).", transform: BackendOptions.address)
    var vip: IPAddress

    @Option(help: "The VIP's DSR mode: l2 (MAC rewrite, the default) or l3 (IP-in-IP, 6in6 or 4in6).", transform: BackendOptions.mode)
    var mode: DSRMode = .l2

    @Option(name: .customLong("backend-address"),
            help: "This backend's own address: the local end of the l3 tunnel (IPv6 for 6in6, and for 4in6 with an IPv4 VIP).",
            transform: BackendOptions.address)
    var backendAddress: IPAddress?

    @Option(help: "The VIP's encap (l3): ipip (the default), gue (adds the fou GUE port) or gre (a GRE tunnel instead).",
            transform: BackendOptions.encapsulation)
    var encap: Encapsulation = .ipip

    @Option(name: .customLong("gue-port"), help: "The VIP's gue_port (encap gue; default 6080).")
    var guePort: UInt16 = Encapsulation.defaultGUEPort

    var setup: BackendSetup {
        BackendSetup(vip: vip, mode: mode, backendAddress: backendAddress, encap: encap, guePort: guePort)
    }

    static func encapsulation(_ text: String) throws -> Encapsulation {
        guard let encap = Encapsulation.allCases.first(where: { $0.description == text }) else {
            throw ValidationError("unknown encap '\(text)' (expected ipip, gue or gre)")
        }
        return encap
    }

    /// Refuses what Tula cannot do (an IPv6 VIP tunnelled to an IPv4 backend address).
    func check() throws {
        if let reason = setup.unsupportedReason { throw ValidationError(reason) }
        if encap != .ipip && mode != .l3 { throw ValidationError("--encap \(encap) applies to --mode l3 only") }
        if guePort == 0 { throw ValidationError("--gue-port 0 is not a port (expected 1...65535)") }
    }

    static func address(_ text: String) throws -> IPAddress {
        guard let address = IPAddress(text) else { throw ValidationError("'\(text)' is not an IPv4 or IPv6 address") }
        if let reason = address.notAHostReason { throw ValidationError("'\(text)': \(reason)") }
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
            throw ValidationError("--mode l3 needs --backend-address (this backend's address, the local end of the tunnel)")
        }
        try backend.check()
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

    /// Writes `99-dsr.conf` under the sysctl directory, and says what it cannot persist. A setup without sysctl settings
    /// (an IPv6 VIP in l2 or 6in6) writes nothing: an empty file would drop the settings an IPv4 VIP on the same host needs.
    func writeSysctlFile(_ setup: BackendSetup) throws {
        let path = "\(sysctlDirectory)/\(BackendSetup.sysctlFileName)"
        if setup.sysctlSettings.isEmpty {
            print("note     no sysctl setting to persist for \(setup.vip) (\(setup.mode)): \(path) not written")
        } else {
            do {
                try FileManager.default.createDirectory(atPath: sysctlDirectory, withIntermediateDirectories: true)
                try setup.sysctlFile.write(toFile: path, atomically: true, encoding: .utf8)
            } catch {
                printError("cannot write \(path): \(error.localizedDescription)")
                throw ExitCode(exitRuntimeError)
            }
            print("wrote    \(path) (loaded at boot by systemd-sysctl; load it now with `sysctl -p \(path)`)")
        }
        let vip = "\(setup.vip)/\(setup.vip.family == .v4 ? 32 : 128)"
        let addresses = setup.mode == .l3 ? "the VIP \(vip) on lo and the \(setup.tunnel.name) tunnel holding it" : "the VIP \(vip) on lo"
        print("note     also add \(addresses) to the network configuration (ifupdown, systemd-networkd, netplan): backend-setup does not edit it")
    }
}
