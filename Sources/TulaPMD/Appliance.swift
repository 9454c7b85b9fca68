// Wiring of one appliance run: EAL, mempool, ports, tables, per-worker state, launch, stop, summary.

import Atomics
import CDPDK
import Foundation
import TulaCore
import TulaStats

/// A running appliance. `start` brings up EAL, ports and workers; `stop` halts the workers, closes the
/// ports (completing pcap output files) and returns the summary. One per process (EAL starts once).
public final class Appliance {
    public let config: TulaConfig
    public private(set) var memory: MemoryMode = .hugepages
    public private(set) var ports: [EthPort] = []
    public private(set) var counters: CounterBlocks
    private var tables: UnsafeMutablePointer<DataplaneTables>?
    private var contexts: [UnsafeMutablePointer<WorkerContext>] = []
    private let stopFlag = UnsafeAtomic<Bool>.create(false)
    private var workerLcores: [LcoreID]
    private var startTime = Date()
    private var stopTime: Date?
    private var mbufPool: OpaquePointer?

    public init(config: TulaConfig) {
        self.config = config
        workerLcores = config.workerLcoreIDs.map { LcoreID(UInt32($0)) }
        let backends = config.vips.reduce(0) { $0 + $1.backends.count }
        counters = CounterBlocks(layout: CounterLayout(ports: config.ports.count, vips: config.vips.count, backends: backends),
                                 workers: config.workerCount)
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
        let tables = DataplaneTables.build(config: config, portMACs: ports.map(\.mac))
        self.tables = tables
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
                queue: UInt16(w), portIDs: portIDs, checksumOffload: offload, portCount: ports.count, tables: tables,
                flows: flows, counters: privateCounters, published: counters.block(w), counterCount: layout.count,
                stop: stopFlag, tscHz: hz, startTSC: startTSC,
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
        if let tables { DataplaneTables.destroy(tables) }
        tables = nil
        if let mbufPool { rte_mempool_free(mbufPool) }
        mbufPool = nil
    }

    /// Seconds between the workers' launch and their stop (or now).
    public var elapsedSeconds: Double { (stopTime ?? Date()).timeIntervalSince(startTime) }

    /// Totals so far (final after `stop`).
    public func summary(notes: [(String, String)] = []) -> Summary {
        Summary(config: config, counters: counters.sum(), layout: counters.layout, elapsedSeconds: elapsedSeconds,
                notes: [("memory", memory.description), ("workers", "\(config.workerCount)")] + notes)
    }
}
