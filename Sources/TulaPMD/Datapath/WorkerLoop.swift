// The per-lcore packet loop: RX burst, processFrame per packet, TX burst, free what TX refused, count.

import Atomics
import CDPDK
import TulaCore
import TulaDatapath
import TulaStats

/// Packets per RX/TX burst.
public let burstSize = 32
/// Most outer fragments one received frame can become (an mbuf frame over the smallest fragment payload).
let maxFragmentsPerFrame = 48
/// TX and drop arrays hold a burst in which every frame was fragmented.
let outputCapacity = burstSize * maxFragmentsPerFrame
/// Bursts a worker may count before it publishes its counters (it also publishes whenever idle).
let burstsPerPublish = 16
/// `poll: adaptive`: empty polls in a row (every port, every queue of the worker) before the worker starts
/// sleeping, and how long each sleep asks for. A sleeping worker polls once per sleep, so a frame waits at
/// most one sleep plus the kernel's timer slack (50 us by default) before it is seen: about 0.15 ms.
let idlePollsBeforeSleep = 256
let idleSleepNanoseconds = 100_000

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
    /// The worker's own counters (single writer), with one scratch counter at the end; `published` is the
    /// copy readers see.
    public var counters: UnsafeMutablePointer<UInt64>
    public var published: UnsafeMutablePointer<CounterCell>
    public var stop: UnsafeAtomic<Bool>
    public var tscHz: UInt64
    public var startTSC: UInt64
    /// Mbufs for outer fragments.
    public var pool: OpaquePointer
    /// ARP replies for the control plane (single producer: this worker).
    public var arpRing: OpaquePointer
    /// Frames the control plane wants sent (ARP requests); only worker 0 has one.
    public var controlTx: OpaquePointer?
    /// Frames for the ports' kernel interfaces (single producer: this worker; the kernel thread consumes).
    public var kernelRing: OpaquePointer?
    /// Frames the kernel interfaces sent, to go out through their ports; only worker 0 has one.
    public var kernelTx: OpaquePointer?
    /// Per port: this worker's share of the kernel token bucket (tokens now, refill per TSC cycle, capacity),
    /// and when it was last refilled (TSC).
    public var kernelTokens: UnsafeMutablePointer<Double>
    public var kernelRefillPerCycle: UnsafeMutablePointer<Double>
    public var kernelCapacity: UnsafeMutablePointer<Double>
    public var kernelLastTSC: UnsafeMutablePointer<UInt64>
    /// Identification of the next outer fragment train (advances by the worker count, so workers never collide).
    public var fragmentID: UInt16
    public var fragmentIDStep: UInt16
    public var rx: UnsafeMutablePointer<OpaquePointer?>
    /// `frameFlowHash` of each received frame of the burst.
    public var flowHashes: UnsafeMutablePointer<UInt64>
    /// The flow-table bucket of each received frame's hash (prefetched; what `FastPath.forward` searches).
    public var flowBuckets: UnsafeMutablePointer<UnsafeMutablePointer<FlowEntry>>
    public var tx: UnsafeMutablePointer<OpaquePointer?>
    /// For each frame queued for TX, the index of the counter of its verdict (undone if TX refuses it).
    public var txVerdictCounter: UnsafeMutablePointer<Int>
    public var drop: UnsafeMutablePointer<OpaquePointer?>
    /// `poll: adaptive`: sleep after `idlePollsBeforeSleep` empty polls (else spin: `busy`).
    public var adaptive: Bool = false
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
    var idlePolls = 0
    while !ctx.pointee.stop.load(ordering: .relaxed) {
        let tables = ctx.pointee.snapshot.load(ordering: .acquiring)
        if let controlTx = ctx.pointee.controlTx { sendControlFrames(ctx, controlTx, tables) }
        if let kernelTx = ctx.pointee.kernelTx { sendControlFrames(ctx, kernelTx, tables, fromKernel: true) }
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
        if received == 0 && ctx.pointee.adaptive {
            idlePolls &+= 1
            if idlePolls >= idlePollsBeforeSleep { idleSleep() }
        } else {
            idlePolls = 0
        }
    }
    publishCounters(ctx, ctx.pointee.snapshot.load(ordering: .acquiring))
}

/// `poll: adaptive`'s nap (`nanosleep`), out of line: only idle workers come here.
@inline(never)
func idleSleep() {
    var request = timespec(tv_sec: 0, tv_nsec: idleSleepNanoseconds)
    _ = nanosleep(&request, nil)
}

@inline(__always)
func publishCounters(_ ctx: UnsafeMutablePointer<WorkerContext>, _ tables: UnsafeMutablePointer<DataplaneTables>) {
    publishCounterBlock(ctx.pointee.counters, to: ctx.pointee.published, prefix: tables.pointee.publishedPrefix,
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
    var burst = BurstOutput(tx: c.tx, txVerdictCounter: c.txVerdictCounter)
    var rxBytes: UInt64 = 0
    // Start every frame's flow-table miss now, so they overlap (at 100k+ flows each one is a DRAM access);
    // the hashes are kept for processFrame. This pass also brings every frame's headers into the cache.
    let flows = c.flows.pointee
    var k = 0
    while k < n {
        let m = c.rx[k].unsafelyUnwrapped
        rxBytes &+= UInt64(tula_mbuf_pkt_len(m))
        let hash = frameFlowHash(tula_mbuf_data(m).unsafelyUnwrapped, length: Int(tula_mbuf_data_len(m)))
        let bucket = flows.bucket(hash)
        c.flowHashes[k] = hash
        c.flowBuckets[k] = bucket
        tula_prefetch0(bucket)
        k &+= 1
    }
    let fast = FastPath(port: p, tables: tables, counters: counters, now: now, flows: flows)
    // Two copies of the loop, so that without checksum offload (every frame's status unknown) the status is no
    // per-frame value.
    let rx = c.rx, buckets = c.flowBuckets
    if offload {
        var i = 0
        while i < n {
            let m = rx[i].unsafelyUnwrapped
            forwardFrame(ctx, m, i, buckets[i], p, tables, fast,
                         ChecksumStatus(rawValue: tula_mbuf_ip_cksum_status(m)).unsafelyUnwrapped, now, &burst)
            i &+= 1
        }
    } else {
        var i = 0
        while i < n {
            forwardFrame(ctx, rx[i].unsafelyUnwrapped, i, buckets[i], p, tables, fast, .unknown, now, &burst)
            i &+= 1
        }
    }
    let txCount = burst.txCount
    var dropCount = burst.dropCount, txBytes = burst.txBytes
    var sent = 0
    if txCount > 0 {
        sent = Int(tula_tx_burst(portID, c.queue, c.tx, UInt16(txCount)))
        var j = sent
        while j < txCount {
            counters[c.txVerdictCounter[j]] &-= 1
            counters[c.txVerdictCounter[j] == layout.count ? layout.count : layout.verdict(p, .txFull)] &+= 1
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

/// What a burst queued so far: frames for TX (`tx`, with their verdicts' counters) and their bytes, frames to free
/// (`ctx.drop`). The arrays are the worker context's, copied here so the loop does not reload them per frame.
struct BurstOutput {
    let tx: UnsafeMutablePointer<OpaquePointer?>
    let txVerdictCounter: UnsafeMutablePointer<Int>
    var txCount = 0
    var dropCount = 0
    var txBytes: UInt64 = 0
}

/// Frame `i` of the burst (`m`, its flow's `bucket`): `FastPath.forward` when it takes it, else `declinedFrame`.
/// Queued for TX, or left to `declinedFrame`'s verdict.
@inline(__always)
func forwardFrame(_ ctx: UnsafeMutablePointer<WorkerContext>, _ m: OpaquePointer, _ i: Int, _ bucket: UnsafeMutablePointer<FlowEntry>,
                  _ p: Int, _ tables: UnsafePointer<DataplaneTables>, _ fast: FastPath, _ status: ChecksumStatus, _ now: UInt32,
                  _ burst: inout BurstOutput) {
    // Scatter is never enabled, so a chained mbuf is larger than any MTU Tula accepts (never the fast path's).
    if tula_mbuf_nb_segs(m) == 1 {
        let length = Int(tula_mbuf_data_len(m))
        let out = fast.forward(tula_mbuf_data(m).unsafelyUnwrapped, length: length, headroom: Int(tula_mbuf_headroom(m)),
                               checksum: status, bucket: bucket)
        if out.length != 0 {
            if out.shift != 0 || Int(out.length) != length { tula_mbuf_reshape(m, out.shift, out.length) }
            burst.tx[burst.txCount] = m
            burst.txVerdictCounter[burst.txCount] = out.shift == 0 ? fast.verdictL2 : fast.verdictL3
            burst.txBytes &+= UInt64(out.length)
            burst.txCount &+= 1
            return
        }
    }
    declinedFrame(ctx, m, i, p, tables, status, now, &burst)
}

/// A frame the fast path declined: `processFrame`'s verdict, then queued for TX (or its outer fragments are),
/// handed to the control plane, or queued to be freed. Out of line, so the loop's registers serve the fast path.
@inline(never)
func declinedFrame(_ ctx: UnsafeMutablePointer<WorkerContext>, _ m: OpaquePointer, _ i: Int, _ p: Int,
                   _ tables: UnsafePointer<DataplaneTables>, _ status: ChecksumStatus, _ now: UInt32,
                   _ burst: inout BurstOutput) {
    let c = ctx.pointee
    let layout = tables.pointee.layout
    let length = Int(tula_mbuf_data_len(m))
    let outcome: FrameOutcome
    if tula_mbuf_nb_segs(m) != 1 {
        c.counters[layout.verdict(p, .tooBig)] &+= 1
        outcome = FrameOutcome(.tooBig)
    } else {
        outcome = processFrameOutOfLine(tula_mbuf_data(m).unsafelyUnwrapped, length: length,
                                        headroom: Int(tula_mbuf_headroom(m)), checksum: status, port: p,
                                        tables: tables, flows: UnsafePointer(c.flows), counters: c.counters, now: now,
                                        flowHash: c.flowHashes[i])
    }
    if outcome.verdict.transmits {
        if outcome.fragments > 0 {
            emitOuterFragments(ctx, m, outcome, p, tables, &burst.txCount, &burst.txBytes)
            c.drop[burst.dropCount] = m
            burst.dropCount &+= 1
        } else {
            if outcome.startShift != 0 || Int(outcome.length) != length {
                tula_mbuf_reshape(m, outcome.startShift, outcome.length)
            }
            burst.tx[burst.txCount] = m
            burst.txVerdictCounter[burst.txCount] = layout.verdict(p, outcome.verdict)
            burst.txBytes &+= UInt64(outcome.length)
            burst.txCount &+= 1
        }
    } else if outcome.verdict.isToControl, handToControl(ctx, m, outcome.verdict, p, layout) {
        // The control plane (or the kernel thread) frees it.
    } else {
        c.drop[burst.dropCount] = m
        burst.dropCount &+= 1
    }
}

/// Queues the outer fragments of an l3 packet too big for one frame (DF clear). Only the last fragment
/// carries the verdict: if TX refuses it, the datagram is lost and counted as tx-full. Without mbufs, the
/// verdict becomes no-mbuf.
@inline(never)
func emitOuterFragments(_ ctx: UnsafeMutablePointer<WorkerContext>, _ m: OpaquePointer, _ outcome: FrameOutcome, _ p: Int,
                        _ tables: UnsafePointer<DataplaneTables>, _ txCount: inout Int, _ txBytes: inout UInt64) {
    let c = ctx.pointee
    let layout = tables.pointee.layout
    let count = Int(outcome.fragments)
    guard count <= maxFragmentsPerFrame else {
        c.counters[layout.verdict(p, .forwardedL3)] &-= 1
        c.counters[layout.verdict(p, .tooBig)] &+= 1
        return
    }
    let identification = c.fragmentID
    ctx.pointee.fragmentID = identification &+ c.fragmentIDStep
    let first = txCount
    let frame = UnsafeRawPointer(tula_mbuf_data(m).unsafelyUnwrapped)
    var bytes: UInt64 = 0
    for k in 0..<count {
        guard let fragment = tula_mbuf_alloc(c.pool) else {
            while txCount > first { txCount &-= 1; tula_free(c.tx[txCount]) }
            c.counters[layout.verdict(p, .forwardedL3)] &-= 1
            c.counters[layout.verdict(p, .noMbuf)] &+= 1
            return
        }
        let length = writeOuterFragment(tula_mbuf_data(fragment).unsafelyUnwrapped, frame: frame, index: k,
                                        nextHop: outcome.nextHop, identification: identification,
                                        port: tables.pointee.ports + p)
        tula_mbuf_reshape(fragment, 0, UInt32(length))
        c.tx[txCount] = fragment
        c.txVerdictCounter[txCount] = k == count &- 1 ? layout.verdict(p, .forwardedL3) : layout.count
        bytes &+= UInt64(length)
        txCount &+= 1
    }
    txBytes &+= bytes
}

/// Hands a frame to the control plane: ARP replies and neighbor advertisements to the neighbour ring,
/// frames for the kernel interface to the kernel ring when the port's token bucket (this worker's share)
/// has a token. False when refused (the caller frees it); a refused kernel frame is recounted as
/// `kernel-dropped`. Out of line: the exception path stays off the per-packet loop.
@inline(never)
func handToControl(_ ctx: UnsafeMutablePointer<WorkerContext>, _ m: OpaquePointer, _ verdict: Verdict, _ p: Int,
                   _ layout: CounterLayout) -> Bool {
    let c = ctx.pointee
    guard verdict == .toKernel else { return tula_ring_enqueue(c.arpRing, UnsafeMutableRawPointer(m)) == 0 }
    let now = tula_rdtsc()
    let elapsed = Double(now &- c.kernelLastTSC[p])
    c.kernelLastTSC[p] = now
    var tokens = min(c.kernelCapacity[p], c.kernelTokens[p] + elapsed * c.kernelRefillPerCycle[p])
    var accepted = false
    if tokens >= 1, let ring = c.kernelRing, tula_ring_enqueue(ring, UnsafeMutableRawPointer(m)) == 0 {
        tokens -= 1
        accepted = true
    }
    c.kernelTokens[p] = tokens
    if !accepted {
        c.counters[layout.verdict(p, .toKernel)] &-= 1
        c.counters[layout.verdict(p, .kernelDropped)] &+= 1
    }
    return accepted
}

/// Sends what the control plane queued (ARP requests, gratuitous ARP) or the kernel interfaces sent
/// (`fromKernel`, counted as such) on the port each mbuf names.
@inline(never)
func sendControlFrames(_ ctx: UnsafeMutablePointer<WorkerContext>, _ ring: OpaquePointer,
                       _ tables: UnsafeMutablePointer<DataplaneTables>, fromKernel: Bool = false) {
    let c = ctx.pointee
    let n = Int(tula_ring_dequeue_burst(ring, UnsafeMutableRawPointer(c.tx).assumingMemoryBound(to: UnsafeMutableRawPointer?.self),
                                        UInt32(burstSize)))
    var i = 0
    while i < n {
        var m = c.tx[i]
        let portID = tula_mbuf_port(m.unsafelyUnwrapped)
        let length = UInt64(tula_mbuf_data_len(m.unsafelyUnwrapped))
        var p = 0
        while p < c.portCount && c.portIDs[p] != portID { p &+= 1 }
        if p < c.portCount && tula_tx_burst(portID, c.queue, &m, 1) == 1 {
            let base = tables.pointee.layout.port(p)
            c.counters[base &+ CounterLayout.txPackets] &+= 1
            c.counters[base &+ CounterLayout.txBytes] &+= length
            if fromKernel { c.counters[base &+ CounterLayout.fromKernel] &+= 1 }
        } else {
            tula_free(m)
        }
        i &+= 1
    }
}
