// Tests for `bird-config`'s text: BIRD 2 itself parses it (`bird -p`), and bad peers and AS numbers are refused with the reason.
import Foundation
import Testing
@testable import TulaCore

@Suite struct BirdConfigTests {
    static let yaml = """
        ports:
          - name: wan
            device: net_null0
            address: 10.0.1.2
            address6: "2001:db8:1::2"
            kernel_interface: tk0
            kernel_prefix_length: 24
        vips:
          - name: web
            address: 10.0.1.100
            port: 80
            protocol: tcp
            mode: l2
            backends: [{address: 10.0.1.11, mac: "02:00:00:00:01:11"}]
          - name: web6
            address: "2001:db8:100::80"
            port: 80
            protocol: tcp
            mode: l2
            backends: [{address: "2001:db8:1::11", mac: "02:00:00:00:01:11"}]
        """

    /// `bird -p -c FILE` (parse only): its exit status and what it said.
    static func birdParses(_ text: String) throws -> (ok: Bool, output: String) {
        let bird = ["/usr/sbin/bird", "/usr/bin/bird"].first { FileManager.default.isExecutableFile(atPath: $0) }
        let path = try #require(bird, "BIRD 2 is not installed (scripts/install-deps.sh installs bird2)")
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("tula-bird-\(UUID().uuidString).conf")
        try text.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = ["-p", "-c", file.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus == 0, String(decoding: data, as: UTF8.self))
    }

    @Test(arguments: [false, true])
    func birdParsesTheConfig(bfd: Bool) throws {
        let config = try ConfigLoader.parse(yaml: Self.yaml, file: "t.yaml")
        let bird = try BirdConfig.make(config: config, peer: "10.0.1.1", asn: "65001", peerASN: "65000", bfd: bfd).get()
        let text = bird.text
        #expect(text.contains("neighbor 10.0.1.1 as 65000;") && text.contains("local 10.0.1.2 as 65001;"))
        #expect(text.contains("krt_source = 252"))
        #expect(text.contains("next hop self"))
        #expect(text.contains("bfd on;") == bfd)
        #expect(text.contains("protocol kernel tula6"), "the config has IPv6 VIPs and address6")
        let parsed = try Self.birdParses(text)
        #expect(parsed.ok, "bird -p refused:\n\(parsed.output)\n\(text)")
    }

    @Test(arguments: [
        ("10.0.1.300", "65001", "65000", "is not an IPv4 or IPv6 address"),
        ("router", "65001", "65000", "is not an IPv4 or IPv6 address"),
        ("10.0.1.1", "0", "65000", "--asn \"0\" is not an AS number"),
        ("10.0.1.1", "65001", "4294967296", "--peer-asn \"4294967296\" is not an AS number"),
        ("10.0.1.1", "-1", "65000", "is not an AS number"),
        ("10.0.1.1", "23456", "65000", "AS_TRANS"),
        ("10.0.1.2", "65001", "65000", "the appliance's own address"),
    ])
    func badArgumentsAreRefusedWithTheReason(_ peer: String, _ asn: String, _ peerASN: String, _ reason: String) throws {
        let config = try ConfigLoader.parse(yaml: Self.yaml, file: "t.yaml")
        switch BirdConfig.make(config: config, peer: peer, asn: asn, peerASN: peerASN, bfd: false) {
        case .success: Issue.record("accepted \(peer) \(asn) \(peerASN)")
        case .failure(let error): #expect(error.description.contains(reason), "\(error.description)")
        }
    }

    @Test func aConfigWithoutKernelInterfaceIsRefused() throws {
        let config = try ConfigLoader.parse(yaml: Self.yaml.replacingOccurrences(of: "    kernel_interface: tk0\n    kernel_prefix_length: 24\n", with: ""),
                                            file: "t.yaml")
        guard case .failure(let error) = BirdConfig.make(config: config, peer: "10.0.1.1", asn: "1", peerASN: "2", bfd: false) else {
            Issue.record("accepted without kernel_interface"); return
        }
        #expect(error.description.contains("kernel_interface"))
    }
}
