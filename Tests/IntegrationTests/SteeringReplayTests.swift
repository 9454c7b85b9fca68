// Prefix VIPs and QUIC connection-ID stickiness through the real appliance (replay over net_pcap): three clients on
// different addresses sending one connection ID reach one backend; a prefix with a port range takes its addresses.

import Foundation
import Testing
import TulaCore

extension Integration {
    @Suite struct SteeringReplay {
        static let yaml = """
            ports:
              - name: wan
                device: net_pcap0
                address: 10.0.1.2
                mac: 02:00:00:00:00:01
            vips:
              - {name: block, address: 203.0.113.0/28, port: "8000-8099", protocol: tcp, mode: l2, maglev_table_size: 251,
                 backends: [{address: 10.0.1.12, mac: "02:00:00:00:01:12"}]}
              - name: h3
                address: 198.51.100.10
                port: 443
                protocol: udp
                mode: l2
                quic: true
                maglev_table_size: 307
                backends:
                  - {address: 10.0.1.21, mac: "02:00:00:00:01:21", quic_server_id: 257}
                  - {address: 10.0.1.22, mac: "02:00:00:00:01:22", quic_server_id: 258}
                  - {address: 10.0.1.23, mac: "02:00:00:00:01:23", quic_server_id: 259}

            """

        /// An Ethernet/IPv4 frame to the port MAC (IPv4 header checksum computed; L4 checksum 0).
        static func frame(src: [UInt8], dst: [UInt8], proto: UInt8, l4: [UInt8]) -> [UInt8] {
            var ip: [UInt8] = [0x45, 0, UInt8((20 + l4.count) >> 8), UInt8((20 + l4.count) & 0xFF), 0, 1, 0x40, 0, 64, proto, 0, 0]
                + src + dst
            var sum: UInt32 = 0
            for i in stride(from: 0, to: 20, by: 2) { sum += UInt32(ip[i]) << 8 | UInt32(ip[i + 1]) }
            while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
            ip[10] = UInt8(~sum >> 8 & 0xFF); ip[11] = UInt8(~sum & 0xFF)
            return [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0xAA, 1, 0x08, 0x00] + ip + l4
        }

        static func udp(_ srcPort: UInt16, _ payload: [UInt8]) -> [UInt8] {
            [UInt8(srcPort >> 8), UInt8(srcPort & 0xFF), 0x01, 0xBB, UInt8((8 + payload.count) >> 8), UInt8((8 + payload.count) & 0xFF), 0, 0]
                + payload
        }

        @Test func migratedQUICClientsAndAPrefixRange() throws {
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let config = try scratch.write("steer.yaml", Self.yaml)
            // Server id 258, CID layout version 1: 01 | 0000 0001 0000 0010 -> 40 40 80.
            let shortHeader: [UInt8] = [0x41, 0x40, 0x40, 0x80, 1, 2, 3, 4, 5, 0x07] + [UInt8](repeating: 0x33, count: 20)
            let vip: [UInt8] = [198, 51, 100, 10]
            var frames: [[UInt8]] = []
            for (src, port) in [([192, 0, 2, 10] as [UInt8], UInt16(5000)), ([198, 18, 7, 7], 6001), ([198, 18, 9, 9], 7777)] {
                frames.append(Self.frame(src: src, dst: vip, proto: 17, l4: Self.udp(port, shortHeader)))
            }
            // A long header (Initial) goes by Maglev.
            frames.append(Self.frame(src: [198, 18, 9, 9], dst: vip, proto: 17,
                                     l4: Self.udp(7778, [0xC3, 0, 0, 0, 1, 8] + [UInt8](repeating: 9, count: 8) + [UInt8](repeating: 0, count: 30))))
            // TCP to 203.0.113.9:8050 (inside the /28 and the range) and :8100 (outside the range: no VIP).
            let tcp: (UInt16) -> [UInt8] = { [0x9C, 0x40, UInt8($0 >> 8), UInt8($0 & 0xFF), 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xFF, 0xFF, 0, 0, 0, 0] }
            frames.append(Self.frame(src: [192, 0, 2, 10], dst: [203, 0, 113, 9], proto: 6, l4: tcp(8050)))
            frames.append(Self.frame(src: [192, 0, 2, 10], dst: [203, 0, 113, 9], proto: 6, l4: tcp(8100)))
            try Pcap.write(frames.enumerated().map { PcapRecord(seconds: 1_700_000_000, fraction: UInt32($0.offset), data: $0.element) },
                           path: scratch.file("in.pcap"))
            let result = try Appliance.run(["replay", "--config", config, "--in", scratch.file("in.pcap"), "--out", scratch.file("out.pcap"),
                                            "--json", "--", "--file-prefix", "tula-steer-\(getpid())"])
            #expect(result.status == 0, "\(result.stderr)")
            let out = try Pcap.read(path: scratch.file("out.pcap")).map(\.data)
            #expect(out.count == 5)
            guard out.count == 5 else { return }
            for i in 0..<3 {
                #expect(Array(out[i][0..<6]) == [2, 0, 0, 0, 1, 0x22], "client \(i) reaches server id 258")
                #expect(Array(out[i][12...]) == Array(frames[i][12...]), "l2: the packet is untouched")
            }
            #expect(Array(out[4][0..<6]) == [2, 0, 0, 0, 1, 0x12], "the /28's range VIP")
            let vips = try #require(result.json?["vips"] as? [[String: Any]])
            let h3 = try #require(vips.first { $0["name"] as? String == "h3" })
            #expect(h3["quic_routed"] as? Int == 3 && h3["quic_fallback"] as? Int == 1)
            #expect(vips.first { $0["name"] as? String == "block" }?["address"] as? String == "203.0.113.0/28")
        }
    }
}
