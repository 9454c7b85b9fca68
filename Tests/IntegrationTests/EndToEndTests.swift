// DSR end to end with real Linux backends (scripts/testbed.sh), and the backend-setup command's file and failure contracts.

import Foundation
import Testing

/// The test bed needs root: network namespaces, veth pairs, a bridge, and DPDK on an AF_PACKET socket.
private let isRoot = getuid() == 0

/// Runs `argv` (looked up on PATH) with `environment` added to this process's, stdout and stderr going to `log`; sends
/// SIGTERM (the bed tears itself down on it) after `timeout` seconds. The child starts with no blocked signal: test threads
/// block most signals, and a child inheriting that mask (as Foundation's `Process` lets it) ignores SIGTERM, and so would
/// every server the bed starts and later stops.
func runLogged(_ argv: [String], environment: [String: String] = [:], log: String,
                       timeout: Double) throws -> (status: Int32, output: String) {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO)
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var unblocked = sigset_t(), defaults = sigset_t()
    sigemptyset(&unblocked)
    sigemptyset(&defaults)
    for signal in [SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGCHLD] { sigaddset(&defaults, signal) }
    posix_spawnattr_setsigmask(&attributes, &unblocked)
    posix_spawnattr_setsigdefault(&attributes, &defaults)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    let variables = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }.map { "\($0.key)=\($0.value)" }
    let cArguments = argv.map { strdup($0) } + [nil], cEnvironment = variables.map { strdup($0) } + [nil]
    defer { (cArguments + cEnvironment).forEach { free($0) } }
    var pid = pid_t()
    let rc = posix_spawnp(&pid, argv[0], &actions, &attributes, cArguments, cEnvironment)
    try #require(rc == 0, "cannot run \(argv[0]): \(String(cString: strerror(rc)))")
    var status: Int32 = 0
    let deadline = Date().addingTimeInterval(timeout)
    while waitpid(pid, &status, WNOHANG) == 0 {
        if Date() > deadline {
            Issue.record("\(argv.joined(separator: " ")) did not finish within \(timeout) s")
            kill(pid, SIGTERM)
            waitpid(pid, &status, 0)
            break
        }
        Thread.sleep(forTimeInterval: 0.1)
    }
    let signal = status & 0x7F
    return (signal == 0 ? (status >> 8) & 0xFF : 128 + signal, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
}

/// Network namespaces that exist now.
private func namespaces() throws -> [String] {
    let scratch = try Scratch()
    defer { scratch.cleanup() }
    let listing = try runLogged(["ip", "netns", "list"], log: scratch.file("ip.log"), timeout: 10)
    return listing.output.split(separator: "\n").compactMap { $0.split(separator: " ").first.map(String.init) }
}

/// `scripts/testbed.sh ARGS` with this build's appliance; returns its status, its output and the id of the bed it built.
private func testbed(_ args: [String], appliance: String = Appliance.binary, scratch: Scratch) throws
    -> (status: Int32, output: String, bed: String?) {
    let run = try runLogged([packageRoot.appendingPathComponent("scripts/testbed.sh").path] + args,
                            environment: ["TULA_APPLIANCE": appliance], log: scratch.file("testbed.log"), timeout: 170)
    let bed = run.output.split(separator: "\n").first { $0.hasPrefix("== bed ") }?.split(separator: " ")[2]
        .trimmingCharacters(in: CharacterSet(charactersIn: ":"))
    return (run.status, run.output, bed)
}

extension Integration {
    @Suite struct EndToEnd {
        /// Every check `scripts/testbed.sh` reports; each must be reported and pass.
        static let checks = [
            "doctor-flags-fresh-backends", "backend-setup-apply", "doctor-passes-after-setup",
            "curl-vip-200", "arp-vip-is-tula", "spread-over-all-backends", "download-1mb",
            "health-probes-from-kernel-interface", "health-takes-out-stopped-backend", "health-no-new-flows-to-down-backend",
            "health-brings-back-restarted-backend",
            "appliance-bytes-under-10pct", "tula-counted-client-to-server-only", "l3-ip-in-ip-on-the-wire",
            "health-in-summary", "arp-resolves-backends-and-gateway", "arp-unanswered-next-hop-failed",
            "doctor-diagnoses-misconfigured-backend", "doctor-passes-after-fixes",
            // IPv6: an l2 VIP to real Linux backends (neighbor discovery both ways), 6in6 and 4in6 on the wire.
            "doctor6-flags-fresh-backends", "backend-setup6-apply", "doctor6-passes-after-setup",
            "curl-vip6-200", "nd-vip6-is-tula", "spread6-over-all-backends", "health6-probes-from-kernel-interface",
            "l3-6in6-and-4in6-on-the-wire", "nd-resolves-backends-and-gateway6",
            "doctor6-diagnoses-misconfigured-backend", "doctor6-passes-after-fixes",
        ]

        @Test(.enabled(if: isRoot, "the test bed needs root"))
        func dsrThroughTulaToRealLinuxBackends() throws {
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let report = scratch.file("report.tsv")
            let started = Date()
            let run = try testbed(["run", "--report", report], scratch: scratch)
            let seconds = Date().timeIntervalSince(started)

            let rows = ((try? String(contentsOfFile: report, encoding: .utf8)) ?? "").split(separator: "\n")
                .map { $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init) }
            let results = Dictionary(rows.filter { $0.count == 3 }.map { ($0[0], (passed: $0[1] == "PASS", detail: $0[2])) },
                                     uniquingKeysWith: { first, _ in first })
            for check in Self.checks {
                let result = results[check]
                #expect(result?.passed == true, "\(check): \(result?.detail ?? "not reported")\n\(run.output.suffix(3000))")
            }
            #expect(run.status == 0, "\(run.output.suffix(3000))")
            #expect(seconds < 180, "the test bed took \(Int(seconds)) s")
            let bed = try #require(run.bed, "no bed id in the output")
            #expect(try namespaces().filter { $0.hasPrefix("tulabed-\(bed)-") } == [], "the bed was not torn down")
        }

        /// A run that fails half way (Tula cannot start) still tears its bed down, and a stale bed is cleaned first.
        @Test(.enabled(if: isRoot, "the test bed needs root"))
        func aFailedRunLeavesNothingBehind() throws {
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            // No state directory, so no live owner: a leftover of a crashed run (ids above pid_max are never a live bed's).
            let staleID = "9000\(getpid())", stale = "tulabed-\(staleID)-lan"
            _ = try runLogged(["ip", "netns", "add", stale], log: scratch.file("ip.log"), timeout: 10)
            let failing = try scratch.write("tula-appliance", """
                #!/bin/sh
                if [ "$1" = run ]; then echo "simulated start failure" >&2; exit 1; fi
                exec "\(Appliance.binary)" "$@"

                """)
            chmod(failing, 0o755)
            let run = try testbed(["run"], appliance: failing, scratch: scratch)
            #expect(run.status == 1)
            #expect(run.output.contains("removing the stale bed \(staleID)"), "\(run.output)")
            #expect(run.output.contains("tula-appliance exited: simulated start failure"), "\(run.output)")
            let bed = try #require(run.bed)
            let left = try namespaces().filter { $0.hasPrefix("tulabed-\(bed)-") || $0 == stale }
            #expect(left == [], "left behind: \(left)")
            #expect(!FileManager.default.fileExists(atPath: "/run/tulabed/\(bed)"))
            let servers = try FileManager.default.contentsOfDirectory(atPath: "/proc").filter { pid in
                ((try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? "").contains("/run/tulabed/\(bed)/")
            }
            #expect(servers == [], "processes of the bed still run: \(servers)")
        }

        @Test func backendSetupPersistsTheSysctlsAndRefusesL3WithoutTheBackendAddress() throws {
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let result = try Appliance.run(["backend-setup", "--vip", "10.0.1.100", "--mode", "l2", "--persist",
                                            "--sysctl-dir", scratch.path])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.contains("ip addr add 10.0.1.100/32 dev lo\n"))
            #expect(result.stdout.contains("wrote    \(scratch.path)/99-dsr.conf"))
            let file = try String(contentsOfFile: scratch.file("99-dsr.conf"), encoding: .utf8)
            #expect(file.split(separator: "\n").filter { !$0.hasPrefix("#") }
                    == ["net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2"])

            let l3 = try Appliance.run(["backend-setup", "--vip", "10.0.1.100", "--mode", "l3"])
            #expect(l3.status == 64)
            #expect(l3.stderr.contains("--mode l3 needs --backend-address"), "\(l3.stderr)")
        }

        /// IPv6 VIPs: l2 is the VIP on lo with nodad and no sysctl (so --persist writes nothing); l3 tunnels with ip6tnl,
        /// mode ip6ip6 for an IPv6 VIP and ipip6 for an IPv4 VIP over an IPv6 backend address; 6in4 is refused.
        @Test func backendSetupForIPv6VIPs() throws {
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let commands = { (stdout: String) in stdout.split(separator: "\n").filter { !$0.hasPrefix("#") }.map(String.init) }
            let l2 = try Appliance.run(["backend-setup", "--vip", "2001:db8:1::100", "--persist", "--sysctl-dir", scratch.path])
            #expect(l2.status == 0, "\(l2.stderr)")
            #expect(commands(l2.stdout).prefix(2) == ["ip -6 addr add 2001:db8:1::100/128 dev lo nodad",
                                                      "note     no sysctl setting to persist for 2001:db8:1::100 (l2): "
                                                          + "\(scratch.path)/99-dsr.conf not written"], "\(l2.stdout)")
            #expect(!FileManager.default.fileExists(atPath: scratch.file("99-dsr.conf")))

            let sixInSix = try Appliance.run(["backend-setup", "--vip", "2001:db8:1::100", "--mode", "l3",
                                              "--backend-address", "2001:db8:1::11"])
            #expect(sixInSix.status == 0, "\(sixInSix.stderr)")
            #expect(commands(sixInSix.stdout) == [
                "ip -6 addr add 2001:db8:1::100/128 dev lo nodad", "modprobe ip6_tunnel",
                "ip -6 tunnel add ip6tnl1 mode ip6ip6 local 2001:db8:1::11 remote any", "ip link set ip6tnl1 up",
                "ip -6 addr add 2001:db8:1::100/128 dev ip6tnl1 nodad",
            ])
            let fourInSix = try Appliance.run(["backend-setup", "--vip", "10.0.1.100", "--mode", "l3", "--backend-address", "2001:db8:1::11"])
            #expect(fourInSix.status == 0, "\(fourInSix.stderr)")
            #expect(commands(fourInSix.stdout).suffix(5) == [
                "modprobe ip6_tunnel", "ip -6 tunnel add ip6tnl1 mode ipip6 local 2001:db8:1::11 remote any", "ip link set ip6tnl1 up",
                "ip addr add 10.0.1.100/32 dev ip6tnl1", "sysctl -w net.ipv4.conf.ip6tnl1.rp_filter=2",
            ])

            for command in ["backend-setup", "doctor"] {
                let sixInFour = try Appliance.run([command, "--vip", "2001:db8:1::100", "--mode", "l3", "--backend-address", "10.0.1.11"])
                #expect(sixInFour.status == 64)
                #expect(sixInFour.stderr.contains("an IPv6 VIP cannot be tunnelled to an IPv4 backend address (6in4 is not supported)"),
                        "\(sixInFour.stderr)")
            }
        }

        /// `--apply` reports each command and stops at the first that fails, saying which and why (in a namespace of its own).
        @Test(.enabled(if: isRoot, "needs root for a network namespace"))
        func applyStopsAtAFailingCommand() throws {
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let namespace = "tula-apply-test-\(getpid())"
            let log = scratch.file("ip.log")
            _ = try runLogged(["ip", "netns", "add", namespace], log: log, timeout: 10)
            defer { _ = try? runLogged(["ip", "netns", "delete", namespace], log: log, timeout: 10) }
            // A sysctl that refuses, found first on PATH.
            let bin = scratch.file("bin")
            try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
            let sysctl = try scratch.write("bin/sysctl", "#!/bin/sh\necho \"sysctl: permission denied on key '$2'\" >&2\nexit 255\n")
            chmod(sysctl, 0o755)
            let path = "\(bin):\(ProcessInfo.processInfo.environment["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin")"
            let run = try runLogged(["ip", "netns", "exec", namespace, Appliance.binary, "backend-setup", "--vip", "10.0.1.100", "--apply"],
                                    environment: ["PATH": path], log: scratch.file("apply.log"), timeout: 30)
            #expect(run.status == 1)
            #expect(run.output.contains("run      ip addr add 10.0.1.100/32 dev lo\n"), "\(run.output)")
            #expect(run.output.contains("run      sysctl -w net.ipv4.conf.all.arp_ignore=1\n"), "\(run.output)")
            #expect(run.output.contains("error: `sysctl -w net.ipv4.conf.all.arp_ignore=1` failed (exit status 255): "
                                        + "sysctl: permission denied on key 'net.ipv4.conf.all.arp_ignore=1'"), "\(run.output)")
            #expect(!run.output.contains("arp_announce=2\n"), "nothing runs after the failure")
        }
    }
}
