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
