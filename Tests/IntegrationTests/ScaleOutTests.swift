// The kernel exception path end to end (scripts/scaleout-bed.sh kernel: a real TAP, ping/TCP/ARP/NDP to the appliance's
// own address answered by its kernel, the rate limit, VIP routes following health, cleanup on stop) and the scale-out bed
// (scripts/scaleout-bed.sh scale-out: two appliances announcing over BGP with BIRD 2 to an ECMP router, failover).

import Foundation
import Testing

extension Integration {
    @Suite struct ScaleOut {
        static let kernelChecks = [
            "tap-has-port-mac", "tap-has-port-mtu", "tap-has-port-address", "tap-has-port-address6", "tap-has-no-link-local",
            "ping-own-address", "ping6-own-address", "tcp-to-own-address", "tcp6-to-own-address",
            "kernel-learned-peer-by-arp", "peer-learned-appliance-mac",
            "route-for-healthy-vip", "route-gone-when-backend-fails", "route-back-when-backend-recovers",
            "rate-limit-drops", "rate-limit-bounds-to-kernel", "kernel-still-answers-after-flood",
            "counters-balance", "from-kernel-counted", "kernel-metrics",
            "tap-gone-on-stop", "routes-gone-on-stop", "summary-printed",
        ]

        @Test(.enabled(if: getuid() == 0, "namespaces and TAP interfaces need root"))
        func kernelExceptionPathWithARealTAP() throws {
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let report = scratch.file("report.json")
            let run = try runLogged([packageRoot.appendingPathComponent("scripts/scaleout-bed.sh").path, "kernel", "--report", report],
                                    environment: ["TULA_APPLIANCE": Appliance.binary], log: scratch.file("bed.log"), timeout: 150)
            let data = try #require(FileManager.default.contents(atPath: report), "no report:\n\(run.output.suffix(3000))")
            let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            let checks = object["checks"] as? [String: Bool] ?? [:]
            for check in Self.kernelChecks {
                #expect(checks[check] == true, "\(check): \(checks[check].map { $0 ? "ok" : "failed" } ?? "not reported")\n\(run.output.suffix(3000))")
            }
            let numbers = object["numbers"] as? [String: Double] ?? [:]
            // 50 tokens of burst plus 500/s over a flood of well under a second: far below the 5000 sent.
            #expect((numbers["flood_to_kernel"] ?? 5000) < 1000, "\(numbers)")
            #expect(run.status == 0, "\(run.output.suffix(3000))")
        }

        /// A kernel_interface that cannot be created stops the run before EAL starts, with the reason.
        @Test(.enabled(if: getuid() == 0, "the TAP checks need root to get past the root check"))
        func aTakenInterfaceNameIsRefusedBeforeAnyPacketMoves() throws {
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let config = try scratch.write("taken.yaml", """
                ports:
                  - {name: wan, device: net_null0, address: 10.0.1.2, kernel_interface: lo}
                stats_socket: \(scratch.file("tula.sock"))
                vips: []
                """)
            let run = try Appliance.run(["run", "--config", config, "--", "--no-huge", "--file-prefix", "tula-taken-\(getpid())"], timeout: 60)
            #expect(run.status == 1, "\(run.stderr)")
            #expect(run.stderr.contains("kernel_interface \"lo\" of port wan: an interface with that name exists already"), "\(run.stderr)")
            // No device was probed (DPDK prints its own exit-time "Unregistering" line either way).
            #expect(!run.stderr.contains("eth_dev_tap") && !run.stderr.contains("tula-appliance: ready"), "a port came up before the check:\n\(run.stderr)")
        }

        /// bird-config: exit 2 and the reason for a bad peer or AS number; a config BIRD accepts otherwise.
        @Test func birdConfigRefusesBadInputWithStatus2() throws {
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let config = try scratch.write("k.yaml", """
                ports:
                  - {name: wan, device: net_null0, address: 10.0.1.2, kernel_interface: tk0}
                vips: []
                """)
            let base = ["bird-config", "--config", config]
            let badPeer = try Appliance.run(base + ["--peer", "10.0.1.256", "--asn", "65001", "--peer-asn", "65000"])
            #expect(badPeer.status == 2 && badPeer.stderr.contains("is not an IPv4 or IPv6 address"), "\(badPeer.stderr)")
            let badASN = try Appliance.run(base + ["--peer", "10.0.1.1", "--asn", "65001", "--peer-asn", "x"])
            #expect(badASN.status == 2 && badASN.stderr.contains("--peer-asn \"x\" is not an AS number"), "\(badASN.stderr)")
            let good = try Appliance.run(base + ["--peer", "10.0.1.1", "--asn", "65001", "--peer-asn", "65000", "--bfd"])
            #expect(good.status == 0 && good.stdout.contains("neighbor 10.0.1.1 as 65000;") && good.stdout.contains("bfd on;"), "\(good.stderr)")
        }

        static let scaleOutChecks = [
            "router-has-two-next-hops", "curl-through-ecmp", "both-appliances-carry-traffic",
            "unhealthy-vip-withdrawn-by-one-appliance", "other-vip-keeps-two-next-hops", "vip-still-served-by-the-other",
            "vip-back-when-healthy-again", "all-backends-up-again", "router-withdrew-stopped-appliance",
            "long-lived-connections-survive", "summary-of-stopped-appliance", "downloads-crossed-stopped-appliance",
            "appliance-back-two-next-hops", "crash-withdraws-routes", "vip-served-after-crash",
        ]

        @Test(.enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/bird"),
                       "needs root and BIRD 2 (scripts/install-deps.sh)"))
        func twoAppliancesBehindAnECMPRouter() throws {
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let report = scratch.file("report.json")
            let run = try runLogged([packageRoot.appendingPathComponent("scripts/testbed.sh").path, "scale-out", "--report", report],
                                    environment: ["TULA_APPLIANCE": Appliance.binary], log: scratch.file("bed.log"), timeout: 240)
            let data = try #require(FileManager.default.contents(atPath: report), "no report:\n\(run.output.suffix(3000))")
            let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            let checks = object["checks"] as? [String: Bool] ?? [:]
            for check in Self.scaleOutChecks {
                #expect(checks[check] == true, "\(check): \(checks[check].map { $0 ? "ok" : "failed" } ?? "not reported")\n\(run.output.suffix(3000))")
            }
            let numbers = object["numbers"] as? [String: Double] ?? [:]
            // A graceful stop withdraws before the workers stop: the router has one next hop within a second, and no
            // new connection of the prober (one every 20 ms) failed.
            #expect((numbers["stop_to_route_gone_seconds"] ?? 99) < 1, "\(numbers)")
            #expect(numbers["prober_failures"] == 0, "\(numbers)")
            #expect(run.status == 0, "\(run.output.suffix(3000))")
        }
    }
}
