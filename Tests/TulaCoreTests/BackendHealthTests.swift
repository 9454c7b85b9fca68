// Tests for health-check config and rise/fall bookkeeping: unhealthy backends get weight 0.
import Testing
@testable import TulaCore
import Glibc

@Suite struct BackendHealthTests {
    static let yaml = """
        ports:
          - {name: wan, device: net_null0, address: 10.0.1.2}
        vips:
          - name: web
            address: 10.0.1.100
            port: 80
            protocol: tcp
            mode: l2
            health_check: {type: http, path: /healthz, expect_status: 204, interval: 3, timeout: 2, rise: 2, fall: 2}
            backends: [{address: 10.0.1.11, weight: 5}, {address: 10.0.1.12}]
          - name: any
            address: 10.0.1.101
            port: "*"
            protocol: udp
            mode: l2
            backends: [{address: 10.0.1.13}]

        """

    @Test func healthCheckSettingsAreRead() throws {
        let config = try ConfigLoader.parse(yaml: Self.yaml, file: "t.yaml")
        let check = try #require(config.vips[0].healthCheck)
        #expect(check.kind == .http && check.port == 80 && check.path == "/healthz" && check.expectStatus == 204)
        #expect(check.intervalSeconds == 3 && check.timeoutSeconds == 2 && check.rise == 2 && check.fall == 2)
        #expect(config.vips[1].healthCheck == nil)
    }

    @Test(arguments: [
        ("health_check: {type: tcp, path: /}", "path applies to http checks only"),
        ("health_check: {interval: 1, timeout: 2}", "timeout 2 s is longer than the interval 1 s"),
        ("health_check: {type: icmp}", "unknown health check type \"icmp\""),
        ("health_check: {rise: 0}", "0 is out of range (expected 1...100)"),
    ])
    func badHealthChecksAreRefused(_ line: String, _ reason: String) throws {
        let yaml = Self.yaml.replacingOccurrences(of: "health_check: {type: http, path: /healthz, expect_status: 204, interval: 3, timeout: 2, rise: 2, fall: 2}", with: line)
        #expect(throws: ConfigError.self) { try ConfigLoader.parse(yaml: yaml, file: "t.yaml") }
        do { _ = try ConfigLoader.parse(yaml: yaml, file: "t.yaml") } catch {
            #expect(error.line == 9)
            #expect(error.reason.contains(reason), "\(error.reason)")
        }
    }

    @Test func wildcardVIPNeedsAHealthCheckPort() {
        let yaml = Self.yaml.replacingOccurrences(of: "    mode: l2\n    backends: [{address: 10.0.1.13}]",
                                                  with: "    mode: l2\n    health_check: {type: tcp}\n    backends: [{address: 10.0.1.13}]")
        #expect(performing: { try ConfigLoader.parse(yaml: yaml, file: "t.yaml") },
                throws: { ($0 as? ConfigError)?.reason.contains("needs a port") == true })
    }

    @Test func fallThenRiseDrainsAndRestoresTheBackend() throws {
        let config = try ConfigLoader.parse(yaml: Self.yaml, file: "t.yaml")
        let check = try #require(config.vips[0].healthCheck)
        var health = BackendHealth()
        health.track(config)
        let key = BackendKey(vip: "web", address: .v4(IPv4Address(10, 0, 1, 11)))
        #expect(health.isHealthy(key), "backends start healthy")
        let firstFailure = health.record(key, error: "refused", check: check)
        #expect(!firstFailure && health.isHealthy(key))
        let secondFailure = health.record(key, error: "refused", check: check)
        #expect(secondFailure && !health.isHealthy(key), "fall: 2")
        #expect(health.effective(config).vips[0].backends.map(\.weight) == [0, 1])
        #expect(config.vips[0].backends.map(\.weight) == [5, 1], "the operator's weights are kept")
        let firstPass = health.record(key, error: nil, check: check)
        #expect(!firstPass && !health.isHealthy(key))
        let secondPass = health.record(key, error: nil, check: check)
        #expect(secondPass && health.isHealthy(key), "rise: 2")
        #expect(health.effective(config).vips[0].backends.map(\.weight) == [5, 1])
        // Unchecked VIPs are not tracked and always count as healthy.
        let unchecked = BackendKey(vip: "any", address: .v4(IPv4Address(10, 0, 1, 13)))
        let recorded = health.record(unchecked, error: "x", check: check)
        #expect(!recorded && health.isHealthy(unchecked))
    }
}

/// The prober against real sockets on this host, in both families.
@Suite struct HealthProberTests {
    /// A listening TCP socket on `address` (`::1` or `127.0.0.1`), port chosen by the kernel; returns (fd, port).
    static func listener(_ family: IPFamily) throws -> (Int32, UInt16) {
        let fd = socket(family == .v4 ? AF_INET : AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        var port: UInt16 = 0
        if family == .v4 {
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
            _ = withUnsafeMutablePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
            port = UInt16(bigEndian: sin.sin_port)
        } else {
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_addr = in6addr_loopback
            var length = socklen_t(MemoryLayout<sockaddr_in6>.size)
            _ = withUnsafePointer(to: &sin6) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
            _ = withUnsafeMutablePointer(to: &sin6) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
            port = UInt16(bigEndian: sin6.sin6_port)
        }
        try #require(listen(fd, 8) == 0 && port != 0)
        return (fd, port)
    }

    @Test(arguments: [IPFamily.v4, .v6])
    func aListeningBackendPassesAndAClosedPortFails(_ family: IPFamily) throws {
        let (fd, port) = try Self.listener(family)
        let address = family == .v4 ? IPAddress("127.0.0.1")! : IPAddress("::1")!
        #expect(HealthProber.probe(address, HealthCheckConfig(kind: .tcp, port: port)) == .passed)
        close(fd)
        let endpoint = family == .v4 ? "127.0.0.1:\(port)" : "[::1]:\(port)"
        #expect(HealthProber.probe(address, HealthCheckConfig(kind: .tcp, port: port))
                == .failed("connect \(endpoint): Connection refused"))
    }
}
