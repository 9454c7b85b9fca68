// Tests for ARP resolution of next hops: which addresses need it, requests, retries, failure, refresh.
import Testing
@testable import TulaCore

@Suite struct NeighborResolverTests {
    let backend = IPAddress.v4(IPv4Address(10, 0, 1, 11)), gateway = IPAddress.v4(IPv4Address(10, 0, 1, 1))
    let mac = MACAddress(0x02, 0, 0, 0, 0x01, 0x11)

    func dueCount(_ r: inout NeighborResolver, _ now: Double) -> Int { r.due(now: now).requests.count }

    func resolver() -> NeighborResolver {
        var r = NeighborResolver()
        r.track([backend: [0, 1]])
        return r
    }

    @Test func targetsAreL2BackendsWithoutMACAndGatewaysWithoutMAC() throws {
        let config = try ConfigLoader.parse(yaml: """
            ports:
              - {name: a, device: net_null0, address: 10.0.1.2, gateway: 10.0.1.1}
              - {name: b, device: net_null1, address: 10.0.3.2, gateway: 10.0.3.1, gateway_mac: "02:00:00:00:00:fe"}
            vips:
              - name: web
                address: 10.0.1.100
                port: 80
                protocol: tcp
                mode: l2
                backends: [{address: 10.0.1.11}, {address: 10.0.1.12, mac: "02:00:00:00:01:12"}]
              - {name: dns, address: 10.0.1.101, port: 53, protocol: udp, mode: l3, backends: [{address: 10.9.0.1}]}
            """, file: "t.yaml")
        let targets = NeighborResolver.targets(config)
        #expect(targets == [.v4(IPv4Address(10, 0, 1, 11)): [0, 1], .v4(IPv4Address(10, 0, 1, 1)): [0]])
    }

    @Test func requestsOnEveryPortThenRetriesEverySecondThenFails() {
        var r = resolver()
        let first = r.due(now: 100)
        #expect(first.requests.map(\.1) == [0, 1])
        #expect(dueCount(&r, 100.5) == 0)
        #expect(dueCount(&r, 101) == 2)
        #expect(dueCount(&r, 102) == 2)
        #expect(r.neighbors[backend]?.state == .incomplete)
        // Three unanswered requests, one retry interval later: failed, and asked less often.
        let failed = r.due(now: 103)
        #expect(r.neighbors[backend]?.state == .failed)
        #expect(failed.requests.isEmpty, "the next try waits the failed interval")
        #expect(dueCount(&r, 105) == 0)
        #expect(dueCount(&r, 108) == 2)
    }

    @Test func aReplyResolvesAndRefreshesLater() {
        var r = resolver()
        _ = r.due(now: 0)
        let changed = r.learned(backend, mac: mac, now: 0.2)
        #expect(changed)
        #expect(r.resolved == [backend: mac])
        let again = r.learned(backend, mac: mac, now: 0.3)
        #expect(!again, "same MAC again changes nothing")
        let early = r.due(now: 29)
        #expect(early.requests.isEmpty)
        let refresh = r.due(now: 30.3)
        #expect(refresh.requests.count == 2, "refresh after 30 s")
        #expect(r.resolved == [backend: mac], "the MAC stays usable while refreshing")
    }

    @Test func aNextHopThatStopsAnsweringIsForgotten() {
        var r = resolver()
        _ = r.due(now: 0)
        _ = r.learned(backend, mac: mac, now: 0)
        _ = r.due(now: 30)
        _ = r.due(now: 31)
        _ = r.due(now: 32)
        let lost = r.due(now: 33)
        #expect(lost.macsChanged)
        #expect(r.resolved.isEmpty)
        #expect(r.neighbors[backend]?.state == .failed)
    }

    @Test func repliesFromStrangersAreIgnoredAndUntrackedTargetsForgotten() {
        var r = resolver()
        let stranger = r.learned(gateway, mac: mac, now: 0)
        #expect(!stranger)
        #expect(r.neighbors[gateway] == nil)
        _ = r.learned(backend, mac: mac, now: 0)
        r.track([:])
        #expect(r.neighbors.isEmpty)
    }

    @Test func arpFramesRoundTrip() {
        let frame = ARPFrames.request(senderMAC: mac, senderIP: IPv4Address(10, 0, 1, 2), target: backend.v4!, vlan: 7)
        #expect(frame.count == 60)
        #expect(Array(frame[0..<6]) == MACAddress.broadcast.array)
        #expect(Array(frame[12..<18]) == [0x81, 0x00, 0x00, 0x07, 0x08, 0x06])
        #expect(Array(frame[24..<26]) == [0x00, 0x01], "a request")
        #expect(Array(frame[42..<46]) == [10, 0, 1, 11], "target address")
        let sender = frame.withUnsafeBytes { ARPFrames.sender(of: $0.baseAddress!, length: frame.count) }
        #expect(sender?.0 == IPv4Address(10, 0, 1, 2))
        #expect(sender?.1 == mac)
        let short = Array(frame.prefix(40))
        #expect(short.withUnsafeBytes { ARPFrames.sender(of: $0.baseAddress!, length: short.count) } == nil)
    }
}
