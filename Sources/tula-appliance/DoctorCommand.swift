// `tula-appliance doctor`: check this host as a DSR backend for a VIP; also how backend commands observe and change the host.

import ArgumentParser
import Foundation
import TulaCore

struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check this host as a DSR backend for a VIP: one ok or problem line per check, each problem with its fix.",
        discussion: """
            Checks the VIP on lo (and on the tunnel for l3), for an IPv4 VIP the effective arp_ignore and arp_announce of \
            every ARP-speaking interface (the kernel uses the larger of `all` and the interface's own value), for an IPv6 \
            VIP that IPv6 is enabled where the VIP goes (no ARP-like sysctl: Linux answers neighbor solicitations only for \
            addresses of the receiving interface), and for l3 the tunnel module (ipip, or ip6_tunnel for 6in6 and 4in6), \
            the tunnel (its mode and local end) and, for an IPv4 VIP, its reverse-path filter.

            Exit status: 0 when every check passes, 1 when there is a problem, 2 when the host cannot be inspected.
            """)

    @OptionGroup var backend: BackendOptions

    func validate() throws { try backend.check() }

    func run() throws {
        let setup = backend.setup
        let host = try HostInspection.observeOrExit()
        let diagnosis = setup.diagnose(host)
        print(diagnosis.report, terminator: "")
        guard diagnosis.isHealthy else {
            var arguments = "--vip \(setup.vip) --mode \(setup.mode)"
            if setup.mode == .l3 && setup.encap != .ipip { arguments += " --encap \(setup.encap)" }
            if setup.encap == .gue && setup.guePort != Encapsulation.defaultGUEPort { arguments += " --gue-port \(setup.guePort)" }
            if setup.mode == .l3 {
                let address = setup.backendAddress ?? host.primaryAddress(setup.tunnel.outerFamily, excluding: setup.vip)
                arguments += " --backend-address \(address?.description ?? BackendSetup.addressPlaceholder)"
            }
            print("doctor: \(diagnosis.problems.count) problem(s); run the fix commands above, or "
                + "`tula-appliance backend-setup \(arguments) --apply`")
            throw ExitCode(exitRuntimeError)
        }
        print("ok       this host is ready to be a DSR backend for \(setup.vip) (\(setup.mode))")
    }
}

/// Reads the parts of this host DSR depends on, and runs commands on it (`backend-setup --apply`).
enum HostInspection {
    /// Exit status when the host cannot be inspected (no `ip`, unreadable /proc).
    static let exitCannotInspect: Int32 = 2

    /// The host's state: interfaces from `ip -d -j addr show`, `net.ipv4.conf` and `net.ipv6.conf` values from /proc/sys
    /// (`disable_ipv6` reads as 1 where the kernel has no IPv6 for that name), the ipip and ip6_tunnel modules from
    /// /sys/module (loaded or built in) and /proc/modules. Exits with status 2 and the reason when it cannot.
    static func observeOrExit() throws -> HostState {
        let listing = run(["ip", "-d", "-j", "addr", "show"])
        do {
            guard listing.status == 0 else { throw HostStateError("`ip -d -j addr show` failed: \(listing.output)") }
            let interfaces = try HostState.interfaces(fromIPAddressJSON: Data(listing.output.utf8))
            var conf: [String: [String: Int]] = [:]
            for name in ["all", "default"] + interfaces.map(\.name) {
                for key in HostState.sysctlKeys {
                    let path = "/proc/sys/net/ipv4/conf/\(name)/\(key)"
                    conf[name, default: [:]][key] = (try? String(contentsOfFile: path, encoding: .utf8))
                        .flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
                }
            }
            var conf6: [String: [String: Int]] = [:]
            for name in ["all", "default"] + interfaces.map(\.name) {
                for key in HostState.sysctl6Keys {
                    let path = "/proc/sys/net/ipv6/conf/\(name)/\(key)"
                    conf6[name, default: [:]][key] = (try? String(contentsOfFile: path, encoding: .utf8))
                        .flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 1
                }
            }
            let modules = (try? String(contentsOfFile: "/proc/modules", encoding: .utf8)) ?? ""
            func loaded(_ module: String) -> Bool {
                FileManager.default.fileExists(atPath: "/sys/module/\(module)")
                    || modules.split(separator: "\n").contains { $0.hasPrefix("\(module) ") }
            }
            var state = HostState(interfaces: interfaces, conf: conf, ipipModuleLoaded: loaded("ipip"), conf6: conf6,
                                  ip6TunnelModuleLoaded: loaded("ip6_tunnel"))
            state.modulesLoaded = Set(HostState.otherModules.filter(loaded))
            // GUE ports (a host without the fou module, or without `ip fou`, has none).
            if state.modulesLoaded.contains("fou") {
                for (argv, family) in [(["ip", "fou", "show"], IPFamily.v4), (["ip", "-6", "fou", "show"], .v6)] {
                    let shown = run(argv)
                    if shown.status == 0 { state.fouPorts += FouPort.parse(shown.output, family: family) }
                }
            }
            return state
        } catch {
            printError("cannot inspect this host: \(error)")
            throw ExitCode(exitCannotInspect)
        }
    }

    /// Runs `argv` (looked up on PATH) and returns its exit status (128 + N when killed by signal N) and combined output.
    /// `posix_spawnp` and `waitpid` rather than Foundation's `Process`, whose run loop needs a loopback socket (a host with
    /// `lo` down is one the doctor must handle); the child starts with no blocked signals, whatever this process inherited.
    static func run(_ argv: [String]) -> (status: Int32, output: String) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return (127, "pipe: \(errnoText())") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addclose(&actions, fds[0])
        posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO)
        posix_spawn_file_actions_adddup2(&actions, fds[1], STDERR_FILENO)
        posix_spawn_file_actions_addclose(&actions, fds[1])
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var unblocked = sigset_t(), defaults = sigset_t()
        sigemptyset(&unblocked)
        sigemptyset(&defaults)
        for signal in [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGCHLD] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigmask(&attributes, &unblocked)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let cArguments = argv.map { strdup($0) } + [nil]
        defer { cArguments.forEach { free($0) } }
        var pid = pid_t()
        let rc = posix_spawnp(&pid, argv[0], &actions, &attributes, cArguments, environ)
        close(fds[1])
        let output = FileHandle(fileDescriptor: fds[0], closeOnDealloc: true)
        guard rc == 0 else { return (127, "cannot run \(argv[0]): \(String(cString: strerror(rc)))") }
        let data = output.readDataToEndOfFile()
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        let signal = status & 0x7F
        return (signal == 0 ? (status >> 8) & 0xFF : 128 + signal, String(decoding: data, as: UTF8.self))
    }
}
