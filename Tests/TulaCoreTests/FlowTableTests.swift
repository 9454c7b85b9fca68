// Tests for the per-lcore flow table: hits, idle expiry, spilling and eviction, layout, the frame hash.
import Testing
@testable import TulaCore
@testable import TulaDatapath

@Suite struct FlowTableTests {
    /// A flow table of 4 buckets over its own zeroed memory, with shorthand for find-then-store.
    final class Table {
        static let capacity = 16, idleTimeout = 30
        let memory: UnsafeMutableRawPointer
        let table: FlowTable

        init() {
            let bytes = FlowTable.bytes(capacity: Self.capacity)
            memory = .allocate(byteCount: bytes, alignment: 64)
            memory.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
            table = FlowTable(memory: memory, capacity: Self.capacity, idleTimeoutSeconds: Self.idleTimeout)
        }
        deinit { memory.deallocate() }

        func slot(_ e: UnsafeMutablePointer<FlowEntry>) -> Int { e - table.entries }

        /// Looks `flow` up at `now` with `hash` (tests pick hashes to aim at buckets); stores it on a miss.
        @discardableResult
        func touch(_ flow: Flow, hash: UInt64, now: UInt32,
                   backend: UInt32 = 7) -> (slot: Int, outcome: FlowTable.Outcome) {
            let (e, outcome) = table.find(hash: hash, src: flow.src, ports: flow.ports, vip: flow.vip, now: now)
            if outcome != .hit {
                table.store(e, hash: hash, src: flow.src, ports: flow.ports, vip: flow.vip, backend: backend, now: now)
            }
            return (slot(e), outcome)
        }
    }

    struct Flow {
        var src: UInt32 = 0xC000_020A, ports: UInt32 = 40000 << 16 | 443
        var vip: UInt32 = 0
        /// The `n`-th distinct client port.
        static func client(_ n: UInt32) -> Flow { Flow(ports: (40000 + n) << 16 | 443) }
    }

    @Test func entryIs16BytesFourToACacheLine() {
        #expect(MemoryLayout<FlowEntry>.stride == 16)
        #expect(MemoryLayout<FlowEntry>.size == 16)
        #expect(FlowTable.bytes(capacity: 1024) == 16 * 1024)
        #expect(FlowTable.bucketSize * MemoryLayout<FlowEntry>.stride == 64)
    }

    @Test func insertThenHitReturnsSameSlotAndKeepsBackend() {
        let t = Table()
        var flow = Flow()
        flow.vip = 255
        let first = t.touch(flow, hash: 1, now: 100, backend: 4095)
        #expect(first == (4, .insertedEmpty))
        let second = t.table.find(hash: 1, src: flow.src, ports: flow.ports, vip: 255, now: 110)
        #expect(t.slot(second.0) == 4)
        #expect(second.1 == .hit)
        #expect(second.0.pointee.backend == 4095)
        #expect(second.0.pointee.vip == 255)
        #expect(second.0.pointee.lastSeen == 110)
    }

    @Test func bucketIsLowBitsOfHash() {
        let t = Table()
        #expect(t.touch(Flow(), hash: 0xABCD_0000_0000_0013, now: 1).slot == 12)
        #expect(t.table.bucket(0xABCD_0000_0000_0013) == t.table.entries + 12)
    }

    @Test func flowIdleUpToTimeoutIsStillAHit() {
        let t = Table()
        t.touch(Flow(), hash: 2, now: 100)
        #expect(t.touch(Flow(), hash: 2, now: 130) == (8, .hit))
    }

    @Test func flowIdleBeyondTimeoutIsReinsertedAsExpired() {
        let t = Table()
        t.touch(Flow(), hash: 2, now: 100)
        #expect(t.touch(Flow(), hash: 2, now: 131) == (8, .insertedExpired))
    }

    @Test func hitRefreshesLastSeen() {
        let t = Table()
        t.touch(Flow(), hash: 2, now: 100)
        t.touch(Flow(), hash: 2, now: 125)
        #expect(t.touch(Flow(), hash: 2, now: 150) == (8, .hit))
    }

    @Test func newFlowReusesExpiredSlotInItsBucket() {
        let t = Table()
        for n in 0..<4 { t.touch(.client(UInt32(n)), hash: 2, now: 10) }   // slots 8...11
        for n in [0, 2, 3] { #expect(t.touch(.client(UInt32(n)), hash: 2, now: 60).outcome == .insertedExpired) }
        // Only slot 9 (client 1, idle 51 s > 30 s) is expired now; the others were refreshed at 60.
        #expect(t.touch(.client(9), hash: 2, now: 61) == (9, .insertedExpired))
    }

    @Test func fullBucketSpillsIntoTheNextAndFindsTheFlowThere() {
        let t = Table()
        for n in 0..<4 { t.touch(.client(UInt32(n)), hash: 1, now: 100) }   // slots 4...7
        #expect(t.table.entries[4].target & FlowEntry.spilled == 0)
        #expect(t.touch(.client(4), hash: 1, now: 100, backend: 9) == (8, .insertedEmpty))
        #expect(t.table.entries[4].target & FlowEntry.spilled != 0)
        #expect(t.touch(.client(4), hash: 1, now: 101) == (8, .hit))
        #expect(t.table.entries[8].backend == 9)
        for n in 0..<4 { #expect(t.touch(.client(UInt32(n)), hash: 1, now: 101) == (4 + n, .hit)) }
        // Bucket 2's own flows do not look back into bucket 1.
        #expect(t.touch(.client(0), hash: 2, now: 101) == (9, .insertedEmpty))
    }

    @Test func lookupThatStoresNothingDoesNotMarkTheBucket() {
        let t = Table()
        for n in 0..<4 { t.touch(.client(UInt32(n)), hash: 1, now: 100) }   // slots 4...7
        let (e, outcome) = t.table.find(hash: 1, src: Flow().src, ports: (40009 << 16) | 443, vip: 0, now: 100)
        #expect((t.slot(e), outcome) == (8, .insertedEmpty))
        #expect(t.table.entries[4].target & FlowEntry.spilled == 0)
    }

    @Test func spilledMarkSurvivesRefillingTheFirstSlot() {
        let t = Table()
        for n in 0..<4 { t.touch(.client(UInt32(n)), hash: 1, now: 100) }   // slots 4...7
        t.touch(.client(4), hash: 1, now: 100)                                  // slot 8
        for n in 1..<5 { t.touch(.client(UInt32(n)), hash: 1, now: 120) }
        // Client 0 (slot 4) idles past the timeout; a new flow takes its slot.
        #expect(t.touch(.client(9), hash: 1, now: 131) == (4, .insertedExpired))
        #expect(t.table.entries[4].target & FlowEntry.spilled != 0)
        #expect(t.table.entries[4].vip == 0 && t.table.entries[4].backend == 7)
        #expect(t.touch(.client(4), hash: 1, now: 131) == (8, .hit))
    }

    @Test func fullBucketSpillsIntoTheBucketAfterNextWhenTheNextIsFull() {
        let t = Table()
        for n in 10..<14 { t.touch(.client(UInt32(n)), hash: 2, now: 100) }   // bucket 2: slots 8...11
        for n in 0..<4 { t.touch(.client(UInt32(n)), hash: 1, now: 100) }     // bucket 1: slots 4...7
        #expect(t.touch(.client(4), hash: 1, now: 100, backend: 5) == (12, .insertedEmpty))
        #expect(t.table.entries[4].target & FlowEntry.spilled == 0, "nothing went to the next bucket")
        #expect(t.table.entries[5].target & FlowEntry.spilled != 0, "the second slot marks the bucket after next")
        #expect(t.touch(.client(4), hash: 1, now: 101) == (12, .hit))
        #expect(t.table.entries[12].backend == 5)
        // Bucket 2's own lookups do not read bucket 3 (bucket 2 did not spill).
        #expect(t.touch(.client(4), hash: 2, now: 101) == (13, .insertedEmpty))
    }

    @Test func fullBucketAndFullNextTwoEvictLeastRecentlySeenOfOwnBucket() {
        let t = Table()
        for n in 10..<14 { t.touch(.client(UInt32(n)), hash: 2, now: 100) }   // bucket 2: slots 8...11
        for n in 20..<24 { t.touch(.client(UInt32(n)), hash: 3, now: 100) }   // bucket 3: slots 12...15
        for n in 0..<4 { t.touch(.client(UInt32(n)), hash: 1, now: 100 + UInt32(n)) }   // slots 4...7
        #expect(t.touch(.client(0), hash: 1, now: 104) == (4, .hit))
        #expect((4..<8).map { t.table.entries[$0].lastSeen } == [104, 101, 102, 103])
        // Client 1 in slot 5 was seen longest ago (client 0 was refreshed by its hit).
        #expect(t.touch(.client(9), hash: 1, now: 105) == (5, .insertedEvicted))
        // The evicted flow is gone; the others are still there.
        #expect(t.touch(.client(0), hash: 1, now: 106) == (4, .hit))
        #expect(t.touch(.client(2), hash: 1, now: 106) == (6, .hit))
        #expect(t.touch(.client(3), hash: 1, now: 106) == (7, .hit))
        #expect(t.touch(.client(9), hash: 1, now: 106) == (5, .hit))
    }

    @Test func lastBucketSpillsIntoTheFirst() {
        let t = Table()
        let slots = (0..<6).map { t.touch(.client(UInt32($0)), hash: 3, now: 1).slot }
        #expect(slots == [12, 13, 14, 15, 0, 1])
        #expect((0..<6).map { t.touch(.client(UInt32($0)), hash: 3, now: 2).outcome }.allSatisfy { $0 == .hit })
    }

    /// At the load the README advises (flows_per_worker 4 x the flows), spilling keeps every flow pinned:
    /// 1000 flows with random hashes in 4096 slots, looked up again and again, are never evicted.
    @Test func thousandFlowsInFourThousandSlotsStayPinned() {
        let capacity = 4096
        let memory = UnsafeMutableRawPointer.allocate(byteCount: FlowTable.bytes(capacity: capacity), alignment: 64)
        defer { memory.deallocate() }
        memory.initializeMemory(as: UInt8.self, repeating: 0, count: FlowTable.bytes(capacity: capacity))
        let table = FlowTable(memory: memory, capacity: capacity, idleTimeoutSeconds: 300)
        var rng = SplitMix64(seed: 4)
        let flows = (0..<1000).map { n in (hash: rng.next(), ports: UInt32(n)) }
        var outcomes: [FlowTable.Outcome: Int] = [:]
        for round in 0..<5 {
            for f in flows {
                let (e, outcome) = table.find(hash: f.hash, src: 1, ports: f.ports, vip: 0, now: UInt32(round))
                if outcome != .hit { table.store(e, hash: f.hash, src: 1, ports: f.ports, vip: 0, backend: 0, now: UInt32(round)) }
                outcomes[outcome, default: 0] += 1
            }
        }
        #expect(outcomes == [.insertedEmpty: 1000, .hit: 4000])
    }

    @Test func flowInAnotherBucketIsNotFound() {
        let t = Table()
        t.touch(Flow(), hash: 0, now: 1)
        #expect(t.touch(Flow(), hash: 1, now: 1) == (4, .insertedEmpty))
    }

    @Test(arguments: [(UInt32(0), UInt32(1)), (1, 0), (3, 255)])
    func sameClientAndPortsOfAnotherVIPIsAnotherFlow(first: UInt32, second: UInt32) {
        let t = Table()
        var a = Flow(), b = Flow()
        a.vip = first; b.vip = second
        #expect(t.touch(a, hash: 2, now: 1, backend: 1) == (8, .insertedEmpty))
        #expect(t.touch(b, hash: 2, now: 1, backend: 2) == (9, .insertedEmpty))
        #expect(t.touch(a, hash: 2, now: 2) == (8, .hit))
        #expect(t.touch(b, hash: 2, now: 2) == (9, .hit))
        #expect(t.table.entries[8].backend == 1 && t.table.entries[9].backend == 2)
    }

    @Test func flowHashSeparatesProtocolsAndDirections() {
        let tcp = flowHash(src: 0xC000_020A, dst: 0x0A00_0164, srcPort: 40000, dstPort: 443, proto: 6)
        #expect(tcp != flowHash(src: 0xC000_020A, dst: 0x0A00_0164, srcPort: 40000, dstPort: 443, proto: 17))
        #expect(tcp != flowHash(src: 0x0A00_0164, dst: 0xC000_020A, srcPort: 443, dstPort: 40000, proto: 6))
        #expect(tcp == flowHash(src: 0xC000_020A, dst: 0x0A00_0164, srcPort: 40000, dstPort: 443, proto: 6))
    }

    /// `frameFlowHash` reads the 5-tuple `processFrame` places flows by (`flowBucketHash`, over the bytes as the frame
    /// holds them), tagged or not, from the inline untagged path and the out-of-line one alike; 0 for what is not
    /// TCP/UDP (except untagged IPv4 without options, whose value nothing uses).
    @Test(arguments: [nil, UInt16(0x2064)] as [UInt16?])
    func frameFlowHashIsTheBucketHashOfTheFrames5Tuple(vlan: UInt16?) {
        let mac = TestBytes.mac("02:00:00:00:00:01")
        func frame(_ proto: UInt8, _ l4: [UInt8], type: UInt16 = TestFrames.etherIPv4) -> [UInt8] {
            TestFrames.ethernet(dst: mac, src: mac, type: type, vlan: vlan,
                                payload: TestFrames.ipv4(src: "192.0.2.10", dst: "10.0.1.100", proto: proto, payload: l4))
        }
        func hash(_ bytes: [UInt8]) -> UInt64 { bytes.withUnsafeBytes { frameFlowHash($0.baseAddress!, length: $0.count) } }
        let tcp = frame(6, TestFrames.tcp(srcPort: 40000, dstPort: 443))
        let udp = frame(17, TestFrames.udp(srcPort: 40000, dstPort: 53))
        #expect(hash(tcp) == flowBucketHash(src: 0xC000_020A, dst: 0x0A00_0164, ports: 40000 << 16 | 443, proto: 6))
        #expect(hash(udp) == flowBucketHash(src: 0xC000_020A, dst: 0x0A00_0164, ports: 40000 << 16 | 53, proto: 17))
        #expect(hash(tcp) != hash(udp))
        if vlan != nil { #expect(hash(frame(1, [8, 0, 0, 0, 0, 0, 0, 0])) == 0) }
        #expect(hash(frame(6, TestFrames.tcp(srcPort: 40000, dstPort: 443), type: TestFrames.etherIPv6)) == 0)
        #expect(hash(Array(tcp.prefix(40))) == 0)
    }

    /// The bucket hash spreads flows that differ in one field only (sequential clients, ports, VIPs) as evenly as
    /// random placement would: 64k flows over 4096 buckets, 16 each on average, none above 40 and none empty.
    @Test(arguments: ["source", "source port", "destination"])
    func bucketHashSpreadsSequentialFlows(varying field: String) {
        var load = [Int](repeating: 0, count: 4096)
        for n in 0..<65_536 {
            let v = UInt32(n)
            let hash = switch field {
            case "source": flowBucketHash(src: 0x0A00_0000 &+ v, dst: 0x0A00_0164, ports: 40000 << 16 | 443, proto: 6)
            case "source port": flowBucketHash(src: 0xC000_020A &+ v >> 16, dst: 0x0A00_0164, ports: (v & 0xFFFF) << 16 | 443, proto: 6)
            default: flowBucketHash(src: 0xC000_020A, dst: 0x0A00_0000 &+ v, ports: 40000 << 16 | 443, proto: 17)
            }
            load[Int(UInt32(truncatingIfNeeded: hash) & 4095)] += 1
        }
        #expect(load.max()! <= 40, "fullest bucket \(load.max()!)")
        #expect(load.min()! >= 1, "an empty bucket")
    }
}
