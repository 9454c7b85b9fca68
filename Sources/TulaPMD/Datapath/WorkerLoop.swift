// The per-lcore packet loop: RX burst, processFrame per packet, TX burst, free what TX refused, count.

import Atomics
import CDPDK
import TulaCore
import TulaStats

/// Packets per RX/TX burst.
public let burstSize = 32
/// Bursts a worker may count before it publishes its counters (it also publishes whenever idle).
let burstsPerPublish = 16

/// Everything one worker uses, in memory allocated before it starts; reached through one pointer.
public struct WorkerContext: @unchecked Sendable {
    public var queue: UInt16
    public var portIDs: UnsafeMutablePointer<UInt16>
    /// Per port: the device checks IPv4 checksums (trust the mbuf flags).
    public var checksumOffload: UnsafeMutablePointer<Bool>
    public var portCount: Int
    /// The current tables (replaced by the control plane); loaded once per loop iteration.
    public var snapshot: UnsafeAtomic<UnsafeMutablePointer<DataplaneTables>>
    /// Bumped at the end of every loop iteration: the worker holds no tables pointer then.
    public var quiescent: UnsafeAtomic<UInt64>
    public var flows: UnsafeMutablePointer<FlowTable>
    /// The worker's own counters (single writer); `published` is the copy readers see.
    public var counters: UnsafeMutablePointer<UInt64>
    public var published: UnsafeMutablePointer<CounterCell>
    public var stop: UnsafeAtomic<Bool>
    public var tscHz: UInt64
    public var startTSC: UInt64
    public var rx: UnsafeMutablePointer<OpaquePointer?>
    public var tx: UnsafeMutablePointer<OpaquePointer?>
    /// For each frame queued for TX, the index of the counter of its verdict (undone if TX refuses it).
    public var txVerdictCounter: UnsafeMutablePointer<Int>
    public var drop: UnsafeMutablePointer<OpaquePointer?>
}

/// Entry point for `rte_eal_remote_launch`: `arg` is an `UnsafeMutablePointer<WorkerContext>`.
public let workerEntry: @convention(c) (UnsafeMutableRawPointer?) -> Int32 = { arg in
    guard let arg else { return -1 }
    runWorker(arg.assumingMemoryBound(to: WorkerContext.self))
    return 0
}

/// Polls queue `ctx.queue` of every port until `stop` is set, then publishes its counters a last time.
@inline(never)
public func runWorker(_ ctx: UnsafeMutablePointer<WorkerContext>) {
    var bursts = 0
    var iterations: UInt64 = 0
    while !ctx.pointee.stop.load(ordering: .relaxed) {
        let tables = ctx.pointee.snapshot.load(ordering: .acquiring)
        var received = 0
        var p = 0
        while p < ctx.pointee.portCount {
            received &+= pollPort(ctx, p, UnsafePointer(tables))
            p &+= 1
        }
        if received > 0 { bursts &+= 1 }
        if bursts >= burstsPerPublish || (received == 0 && bursts > 0) {
            publishCounters(ctx, tables)
            bursts = 0
        }
        iterations &+= 1
        ctx.pointee.quiescent.store(iterations, ordering: .releasing)
    }
    publishCounters(ctx, ctx.pointee.snapshot.load(ordering: .acquiring))
}

@inline(__always)
func publishCounters(_ ctx: UnsafeMutablePointer<WorkerContext>, _ tables: UnsafeMutablePointer<DataplaneTables>) {
    CounterBlocks.publish(ctx.pointee.counters, to: ctx.pointee.published, prefix: tables.pointee.publishedPrefix,
                          from: tables.pointee.layout.backendBase, end: tables.pointee.publishedEnd)
}

/// One RX burst on port index `p`, processed and transmitted. Returns the number of frames received.
@inline(__always)
func pollPort(_ ctx: UnsafeMutablePointer<WorkerContext>, _ p: Int, _ tables: UnsafePointer<DataplaneTables>) -> Int {
    let c = ctx.pointee
    let portID = c.portIDs[p]
    let n = Int(tula_rx_burst(portID, c.queue, c.rx, UInt16(burstSize)))
    if n == 0 { return 0 }
    let now = UInt32(truncatingIfNeeded: (tula_rdtsc() &- c.startTSC) / c.tscHz)
    let layout = tables.pointee.layout
    let offload = c.checksumOffload[p]
    let counters = c.counters
    var txCount = 0, dropCount = 0
    var rxBytes: UInt64 = 0, txBytes: UInt64 = 0
    var i = 0
    while i < n {
        let m = c.rx[i].unsafelyUnwrapped
        if i &+ 1 < n { tula_prefetch0(tula_mbuf_data(c.rx[i &+ 1].unsafelyUnwrapped)) }
        let length = Int(tula_mbuf_data_len(m))
        rxBytes &+= UInt64(tula_mbuf_pkt_len(m))
        let outcome: FrameOutcome
        if tula_mbuf_nb_segs(m) != 1 {
            // Scatter is never enabled, so a chained mbuf is larger than any MTU Tula accepts.
            counters[layout.verdict(p, .tooBig)] &+= 1
            outcome = FrameOutcome(.tooBig)
        } else {
            let status = offload ? ChecksumStatus(rawValue: tula_mbuf_ip_cksum_status(m)).unsafelyUnwrapped : .unknown
            outcome = processFrame(tula_mbuf_data(m).unsafelyUnwrapped, length: length,
                                   headroom: Int(tula_mbuf_headroom(m)), checksum: status, port: p,
                                   tables: tables, flows: UnsafePointer(c.flows), counters: counters, now: now)
        }
        if outcome.verdict.transmits {
            if outcome.startShift != 0 || Int(outcome.length) != length {
                tula_mbuf_reshape(m, outcome.startShift, outcome.length)
            }
            c.tx[txCount] = m
            c.txVerdictCounter[txCount] = layout.verdict(p, outcome.verdict)
            txBytes &+= UInt64(outcome.length)
            txCount &+= 1
        } else {
            c.drop[dropCount] = m
            dropCount &+= 1
        }
        i &+= 1
    }
    var sent = 0
    if txCount > 0 {
        sent = Int(tula_tx_burst(portID, c.queue, c.tx, UInt16(txCount)))
        var j = sent
        while j < txCount {
            counters[c.txVerdictCounter[j]] &-= 1
            counters[layout.verdict(p, .txFull)] &+= 1
            txBytes &-= UInt64(tula_mbuf_data_len(c.tx[j].unsafelyUnwrapped))
            c.drop[dropCount] = c.tx[j]
            dropCount &+= 1
            j &+= 1
        }
    }
    if dropCount > 0 { tula_free_bulk(c.drop, UInt32(dropCount)) }
    let base = layout.port(p)
    counters[base &+ CounterLayout.rxPackets] &+= UInt64(n)
    counters[base &+ CounterLayout.rxBytes] &+= rxBytes
    counters[base &+ CounterLayout.txPackets] &+= UInt64(sent)
    counters[base &+ CounterLayout.txBytes] &+= txBytes
    return n
}
