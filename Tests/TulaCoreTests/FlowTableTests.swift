// Tests for the per-lcore flow table: hits, idle expiry, eviction of the least recently seen, layout.
import Testing
@testable import TulaCore

@Suite struct FlowTableTests {
    /// A flow table over its own zeroed memory, with shorthand for find-then-store.
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

        /// Looks `flow` up at `now` with `hash` (tests pick hashes to aim at slots); stores it on a miss.
        @discardableResult
        func touch(_ flow: Flow, hash: UInt64, now: UInt32,
                   backend: UInt32 = 7) -> (slot: Int, outcome: FlowTable.Outcome) {
            let (e, outcome) = table.find(hash: hash, src: flow.src, dst: flow.dst, ports: flow.ports,
                                          proto: flow.proto, now: now)
            if outcome != .hit {
                FlowTable.store(e, src: flow.src, dst: flow.dst, ports: flow.ports, proto: flow.proto,
                                backend: backend, now: now)
            }
            return (slot(e), outcome)
        }
    }

    struct Flow {
        var src: UInt32 = 0xC000_020A, dst: UInt32 = 0x0A00_0164, ports: UInt32 = 40000 << 16 | 443
        var proto: UInt8 = 6
        /// The `n`-th distinct client port.
        static func client(_ n: UInt32) -> Flow { Flow(ports: (40000 + n) << 16 | 443) }
    }

    @Test func entryIs24Bytes() {
        #expect(MemoryLayout<FlowEntry>.stride == 24)
        #expect(MemoryLayout<FlowEntry>.size == 24)
        #expect(FlowTable.bytes(capacity: 1024) == 24 * 1024)
    }

    @Test func insertThenHitReturnsSameSlotAndKeepsBackend() {
        let t = Table()
        let first = t.touch(Flow(), hash: 5, now: 100, backend: 3)
        #expect(first == (5, .insertedEmpty))
        let second = t.table.find(hash: 5, src: Flow().src, dst: Flow().dst, ports: Flow().ports, proto: 6, now: 110)
        #expect(t.slot(second.0) == 5)
        #expect(second.1 == .hit)
        #expect(second.0.pointee.backend == 3)
        #expect(second.0.pointee.lastSeen == 110)
        #expect(second.0.pointee.meta == 0x106)
    }

    @Test func homeSlotIsLowBitsOfHash() {
        let t = Table()
        #expect(t.touch(Flow(), hash: 0xABCD_0000_0000_0013, now: 1).slot == 3)
    }

    @Test func flowIdleUpToTimeoutIsStillAHit() {
        let t = Table()
        t.touch(Flow(), hash: 9, now: 100)
        #expect(t.touch(Flow(), hash: 9, now: 130) == (9, .hit))
    }

    @Test func flowIdleBeyondTimeoutIsReinsertedAsExpired() {
        let t = Table()
        t.touch(Flow(), hash: 9, now: 100)
        #expect(t.touch(Flow(), hash: 9, now: 131) == (9, .insertedExpired))
    }

    @Test func hitRefreshesLastSeen() {
        let t = Table()
        t.touch(Flow(), hash: 9, now: 100)
        t.touch(Flow(), hash: 9, now: 125)
        #expect(t.touch(Flow(), hash: 9, now: 150) == (9, .hit))
    }

    @Test func newFlowReusesExpiredSlotInItsWindow() {
        let t = Table()
        for n in 0..<4 { t.touch(.client(UInt32(n)), hash: 2, now: 10) }   // slots 2...5
        for n in [0, 2, 3] { #expect(t.touch(.client(UInt32(n)), hash: 2, now: 60).outcome == .insertedExpired) }
        // Only slot 3 (client 1, idle 51 s > 30 s) is expired now; the others were refreshed at 60.
        #expect(t.touch(.client(9), hash: 2, now: 61) == (3, .insertedExpired))
    }

    @Test func fullWindowOfLiveFlowsEvictsLeastRecentlySeen() {
        let t = Table()
        for n in 0..<4 { t.touch(.client(UInt32(n)), hash: 4, now: 100 + UInt32(n)) }   // slots 4...7
        #expect(t.touch(.client(0), hash: 4, now: 104) == (4, .hit))
        #expect((4..<8).map { t.table.entries[$0].lastSeen } == [104, 101, 102, 103])
        // Client 1 in slot 5 was seen longest ago (client 0 was refreshed by its hit).
        #expect(t.touch(.client(9), hash: 4, now: 105) == (5, .insertedEvicted))
        // The evicted flow is gone; the others are still there.
        #expect(t.touch(.client(0), hash: 4, now: 106) == (4, .hit))
        #expect(t.touch(.client(2), hash: 4, now: 106) == (6, .hit))
        #expect(t.touch(.client(3), hash: 4, now: 106) == (7, .hit))
        #expect(t.touch(.client(9), hash: 4, now: 106) == (5, .hit))
    }

    @Test func probeWindowWrapsAroundTheEnd() {
        let t = Table()
        let last = UInt64(Table.capacity - 1)
        let slots = (0..<4).map { t.touch(.client(UInt32($0)), hash: last, now: 1).slot }
        #expect(slots == [15, 0, 1, 2])
    }

    @Test func flowOutsideProbeWindowIsNotFound() {
        let t = Table()
        t.touch(Flow(), hash: 0, now: 1)
        // Same 5-tuple looked up from a home 4 slots away cannot see slot 0.
        #expect(t.touch(Flow(), hash: 4, now: 1) == (4, .insertedEmpty))
    }

    @Test(arguments: [(UInt8(6), UInt8(17)), (17, 6)])
    func sameAddressesAndPortsWithOtherProtocolIsAnotherFlow(first: UInt8, second: UInt8) {
        let t = Table()
        var a = Flow(), b = Flow()
        a.proto = first; b.proto = second
        #expect(t.touch(a, hash: 8, now: 1, backend: 1) == (8, .insertedEmpty))
        #expect(t.touch(b, hash: 8, now: 1, backend: 2) == (9, .insertedEmpty))
        #expect(t.touch(a, hash: 8, now: 2) == (8, .hit))
        #expect(t.touch(b, hash: 8, now: 2) == (9, .hit))
        #expect(t.table.entries[8].backend == 1 && t.table.entries[9].backend == 2)
    }

    @Test func flowHashSeparatesProtocolsAndDirections() {
        let tcp = flowHash(src: 0xC000_020A, dst: 0x0A00_0164, srcPort: 40000, dstPort: 443, proto: 6)
        #expect(tcp != flowHash(src: 0xC000_020A, dst: 0x0A00_0164, srcPort: 40000, dstPort: 443, proto: 17))
        #expect(tcp != flowHash(src: 0x0A00_0164, dst: 0xC000_020A, srcPort: 443, dstPort: 40000, proto: 6))
        #expect(tcp == flowHash(src: 0xC000_020A, dst: 0x0A00_0164, srcPort: 40000, dstPort: 443, proto: 6))
    }
}
