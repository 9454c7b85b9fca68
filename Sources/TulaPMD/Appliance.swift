// Wiring of one appliance run: EAL, mempool, ports, tables, per-worker state, launch, stop, summary.

import Atomics
import CDPDK
import Foundation
import TulaCore
import TulaStats

/// A running appliance. `start` brings up EAL, ports and workers; `apply`, `edit` and `reload` change
/// VIPs and backends live (a new snapshot, published without stopping the workers); `stop` halts the
/// workers and closes the ports (completing pcap output files). One per process (EAL starts once).
/// Control methods may be called from any thread; they are serialized by a lock that workers never take.
public final class Appliance: @unchecked Sendable {
    /// The config in force (changes with every successful `apply`).
    public private(set) var config: TulaConfig
    /// Where `reload` reads the config from.
    public let configPath: String?
    private let control = NSLock()
    private var slots = CounterSlots()
    /// Counters of slots that were handed to a new owner, subtracted from what readers see.
    private var baseline: [UInt64]
    private var publisher: SnapshotPublisher?
    public private(set) var memory: MemoryMode = .hugepages
    public private(set) var ports: [EthPort] = []
    public private(set) var counters: CounterBlocks
    private var contexts: [UnsafeMutablePointer<WorkerContext>] = []
    private let stopFlag = UnsafeAtomic<Bool>.create(false)
    private var workerLcores: [LcoreID]
    private var startTime = Date()
    private var stopTime: Date?
    private var mbufPool: OpaquePointer?

    public init(config: TulaConfig, configPath: String? = nil) {
        self.config = config
        self.configPath = configPath
        workerLcores = config.workerLcoreIDs.map { LcoreID(UInt32($0)) }
        counters = CounterBlocks(layout: CounterLayout(ports: config.ports.count), workers: config.workerCount)
        baseline = [UInt64](repeating: 0, count: counters.layout.count)
    }

    deinit { stopFlag.destroy() }

    /// Number of mbufs: every RX and TX descriptor of every queue, bursts and per-lcore caches in flight,
    /// and every frame of a `net_pcap` `infinite_rx=1` capture (the driver keeps them all in mbufs).
    var mbufCount: Int {
        let perQueue = 2 * 1024
        let needed = config.ports.count * config.workerCount * perQueue + config.workerCount * (2 * burstSize + 512) + 2048
            + config.ports.reduce(0) { $0 + EthPort.preloadedFrames(device: $1.device) }
        var n = 1024
        while n < needed { n *= 2 }
        return n - 1
    }

    /// The EAL arguments this run uses (also printed by `--dry-run`).
    public func ealArguments(inMemory: Bool, extra: [String]) -> [String] {
        let required = EAL.requiredMegabytes(config: config, mbufs: mbufCount)
        memory = EAL.chooseMemory(required: required)
        return EAL.arguments(config: config, workerLcores: workerLcores, mainLcore: LcoreID(UInt32(config.mainLcoreID)),
                             memory: memory, inMemory: inMemory, extra: extra)
    }

    /// Starts EAL with `ealArguments`, opens every port and launches one worker per worker lcore.
    public func start(inMemory: Bool, extraEAL: [String]) throws {
        try EAL.initialize(ealArguments(inMemory: inMemory, extra: extraEAL))
        let socket = Int32(bitPattern: rte_socket_id())
        guard let pool = rte_pktmbuf_pool_create("tula_mbufs", UInt32(mbufCount), 256, 0, tula_default_buf_size(), socket) else {
            throw DPDKError("rte_pktmbuf_pool_create", -tula_errno(), detail: String(cString: rte_strerror(tula_errno())))
        }
        mbufPool = pool
        for port in config.ports {
            ports.append(try EthPort.open(config: port, queues: config.workerCount, pool: pool))
        }
        do { try slots.assign(config) } catch { throw DPDKError(message: error.description) }
        let publisher = SnapshotPublisher(initial: DataplaneTables.build(config: config, portMACs: ports.map(\.mac), slots: slots),
                                          workers: workerLcores.count)
        self.publisher = publisher
        let layout = counters.layout
        let hz = max(1, rte_get_tsc_hz())
        let startTSC = tula_rdtsc()
        for w in workerLcores.indices {
            let flowBytes = FlowTable.bytes(capacity: config.flowsPerWorker)
            guard let flowMemory = rte_zmalloc_socket("tula_flows", flowBytes, 64, socket) else {
                throw DPDKError(message: "cannot allocate \(flowBytes >> 20) MiB for the flow table of worker \(w) (flows_per_worker: \(config.flowsPerWorker))")
            }
            let flows = UnsafeMutablePointer<FlowTable>.allocate(capacity: 1)
            flows.initialize(to: FlowTable(memory: flowMemory, capacity: config.flowsPerWorker,
                                           idleTimeoutSeconds: config.flowIdleTimeoutSeconds))
            let portIDs = UnsafeMutablePointer<UInt16>.allocate(capacity: ports.count)
            let offload = UnsafeMutablePointer<Bool>.allocate(capacity: ports.count)
            for (i, p) in ports.enumerated() { portIDs[i] = p.id.raw; offload[i] = p.checksumOffload }
            let privateCounters = UnsafeMutablePointer<UInt64>.allocate(capacity: layout.count)
            privateCounters.initialize(repeating: 0, count: layout.count)
            let context = UnsafeMutablePointer<WorkerContext>.allocate(capacity: 1)
            context.initialize(to: WorkerContext(
                queue: UInt16(w), portIDs: portIDs, checksumOffload: offload, portCount: ports.count,
                snapshot: publisher.current, quiescent: publisher.quiescentCounter(w),
                flows: flows, counters: privateCounters, published: counters.block(w), stop: stopFlag, tscHz: hz, startTSC: startTSC,
                rx: .allocate(capacity: burstSize), tx: .allocate(capacity: burstSize),
                txVerdictCounter: .allocate(capacity: burstSize), drop: .allocate(capacity: burstSize)))
            contexts.append(context)
        }
        startTime = Date()
        for (w, lcore) in workerLcores.enumerated() {
            let rc = rte_eal_remote_launch(workerEntry, UnsafeMutableRawPointer(contexts[w]), lcore.raw)
            guard rc == 0 else { throw DPDKError("rte_eal_remote_launch(\(lcore))", rc) }
        }
    }

    /// Packets received so far on every port, from the published counters.
    public var receivedPackets: UInt64 {
        let c = counters.sum()
        return (0..<config.ports.count).reduce(0) { $0 + c[counters.layout.port($1) + CounterLayout.rxPackets] }
    }

    /// Stops the workers (`rte_eal_mp_wait_lcore`), closes the ports and frees per-worker memory.
    public func stop() {
        control.lock()
        defer { control.unlock() }
        guard stopTime == nil else { return }
        stopFlag.store(true, ordering: .relaxed)
        rte_eal_mp_wait_lcore()
        stopTime = Date()
        for port in ports { port.close() }
        for context in contexts {
            let c = context.pointee
            rte_free(UnsafeMutableRawPointer(c.flows.pointee.entries))
            c.flows.deallocate(); c.portIDs.deallocate(); c.checksumOffload.deallocate(); c.counters.deallocate()
            c.rx.deallocate(); c.tx.deallocate(); c.txVerdictCounter.deallocate(); c.drop.deallocate()
            context.deallocate()
        }
        contexts = []
        publisher = nil
        if let mbufPool { rte_mempool_free(mbufPool) }
        mbufPool = nil
    }

    /// Seconds between the workers' launch and their stop (or now).
    public var elapsedSeconds: Double { (stopTime ?? Date()).timeIntervalSince(startTime) }

    /// Totals so far (final after `stop`).
    public func summary(notes: [(String, String)] = []) -> Summary {
        control.lock()
        defer { control.unlock() }
        let inUse = mbufPool.map { UInt64(tula_mempool_in_use($0)) }
        return Summary(config: config, counters: currentCounters(), layout: counters.layout, slots: slots,
                       elapsedSeconds: elapsedSeconds, mbufsInUse: inUse,
                       notes: [("memory", memory.description), ("workers", "\(config.workerCount)")] + notes)
    }

    /// Summed counters less the baselines of reused slots (call with `control` held).
    private func currentCounters() -> [UInt64] {
        zip(counters.sum(), baseline).map { $0 &- $1 }
    }

    /// Makes `next` the running config: new VIPs and backends, weights, Maglev tables, published to the
    /// workers as a new snapshot. Refused (nothing changes) when `next` needs a restart.
    public func apply(_ next: TulaConfig) throws(ControlError) {
        control.lock()
        defer { control.unlock() }
        try applyLocked(next)
    }

    private func applyLocked(_ next: TulaConfig) throws(ControlError) {
        if let reason = config.restartRequired(for: next) { throw ControlError(reason) }
        guard let publisher, stopTime == nil else { throw ControlError("the appliance is not running") }
        var nextSlots = slots
        let reused: (vips: [Int], backends: [Int])
        do { reused = try nextSlots.assign(next) } catch { throw ControlError(error.description) }
        if !reused.vips.isEmpty || !reused.backends.isEmpty {
            let now = counters.sum()
            let layout = counters.layout
            for slot in reused.vips { for i in 0..<CounterLayout.perTarget { baseline[layout.vip(slot) + i] = now[layout.vip(slot) + i] } }
            for slot in reused.backends {
                for i in 0..<CounterLayout.perTarget { baseline[layout.backend(slot) + i] = now[layout.backend(slot) + i] }
            }
        }
        let tables = DataplaneTables.build(config: next, portMACs: ports.map(\.mac), slots: nextSlots)
        publisher.replace(with: tables, workersRunning: true)
        slots = nextSlots
        config = next
    }

    /// Adds or removes a backend or sets a weight, live.
    public func edit(_ change: ConfigEdit) throws(ControlError) {
        control.lock()
        defer { control.unlock() }
        try applyLocked(try change.applied(to: config))
    }

    /// Reads the config file again and applies it; an invalid file changes nothing.
    public func reload() throws(ControlError) {
        guard let configPath else { throw ControlError("the appliance was not started from a config file") }
        let next: TulaConfig
        do { next = try ConfigLoader.load(path: configPath) } catch { throw ControlError("reload refused: \(error)") }
        try apply(next)
    }
}

extension Appliance: ControlTarget {
    public func statsSummary() -> Summary { summary() }
}
