// Wiring of one appliance run: EAL, mempool, ports, tables, per-worker state, launch, stop, summary.

import Atomics
import CDPDK
import Foundation
import TulaCore
import TulaDatapath
import TulaTables
import TulaStats

/// A running appliance. `start` brings up EAL, ports and workers; `apply`, `edit` and `reload` change
/// VIPs and backends live (a new snapshot, published without stopping the workers); `stop` halts the
/// workers and closes the ports (completing pcap output files). One per process (EAL starts once).
/// Control methods may be called from any thread; they are serialized by a lock that workers never take.
public final class Appliance: @unchecked Sendable {
    /// The config in force (changes with every successful `apply`).
    public private(set) var config: TulaConfig {
        didSet { listenerGroups = NDPFrames.solicitedNodeGroups(config) }
    }
    /// Where `reload` reads the config from.
    public let configPath: String?
    private let control = NSLock()
    private var slots = CounterSlots()
    /// Counters of slots that were handed to a new owner, subtracted from what readers see.
    private var baseline: [UInt64]
    private var publisher: SnapshotPublisher?
    /// ARP resolution of next hops without a configured MAC (guarded by `control`).
    private var resolver = NeighborResolver()
    /// Per worker: ARP replies the worker hands to the control plane.
    private var arpRings: [OpaquePointer] = []
    /// Frames the control plane sends through worker 0.
    private var controlTxRing: OpaquePointer?
    /// Per port index: its kernel interface's TAP port (nil without `kernel_interface`). Set in `start`.
    private var kernelPorts: [EthPort?] = []
    /// Per worker: frames for the kernel interfaces; from the neighbour thread: ARP replies and neighbor
    /// advertisements copied to them; to worker 0: what the kernel interfaces sent.
    private var kernelRings: [OpaquePointer] = []
    private var kernelCopyRing: OpaquePointer?
    private var kernelTxRing: OpaquePointer?
    /// VIP host routes installed on each port's kernel interface (guarded by `control`).
    private var installedRoutes: [Int: Set<IPAddress>] = [:]
    /// `stop` has withdrawn the routes: they stay withdrawn (guarded by `control`).
    private var withdrawing = false
    /// Backend health from the probes (guarded by `control`); unhealthy backends get weight 0.
    private var health = BackendHealth()
    /// The ports' own counters when they were closed.
    private var finalDeviceCounters: [Summary.DeviceCounters?] = []
    /// The control-plane threads (ARP, health checks) and how they are told to stop.
    private var controlThreads: [Thread] = []
    private let controlThreadsDone = DispatchSemaphore(value: 0)
    private let controlStop = UnsafeAtomic<Bool>.create(false)
    public private(set) var memory: MemoryMode = .hugepages
    public private(set) var ports: [EthPort] = []
    /// The config's port count: fixed for the process (a port change needs a restart), so any thread may read it.
    public let portCount: Int
    public private(set) var counters: CounterBlocks
    private var contexts: [UnsafeMutablePointer<WorkerContext>] = []
    private let stopFlag = UnsafeAtomic<Bool>.create(false)
    private var workerLcores: [LcoreID]
    private var startTime = Date()
    private var stopTime: Date?
    private var mbufPool: OpaquePointer?
    /// Mbufs still taken from the pool when `stop` freed it (0 unless something leaked).
    private var finalMbufsInUse: UInt64?

    public init(config: TulaConfig, configPath: String? = nil) {
        self.config = config
        listenerGroups = NDPFrames.solicitedNodeGroups(config)
        portCount = config.ports.count
        self.configPath = configPath
        workerLcores = config.workerLcoreIDs.map { LcoreID(UInt32($0)) }
        counters = CounterBlocks(layout: CounterLayout(ports: config.ports.count), workers: config.workerCount)
        baseline = [UInt64](repeating: 0, count: counters.layout.count)
    }

    deinit { stopFlag.destroy(); controlStop.destroy() }

    /// Number of mbufs: every RX and TX descriptor of every queue, bursts and per-lcore caches in flight,
    /// and every frame of a `net_pcap` `infinite_rx=1` capture (the driver keeps them all in mbufs). Not
    /// rounded to 2^q - 1: that saves ring slots of 8 bytes at the price of up to twice the mbufs of 2 KiB.
    var mbufCount: Int {
        let perQueue = 2 * 1024
        return config.ports.count * config.workerCount * perQueue + config.workerCount * (2 * burstSize + 512) + 2048
            + config.ports.reduce(0) { $0 + EthPort.preloadedFrames(device: $1.device) }
    }

    /// What this config needs from EAL, MiB: with hugepages, and without (`--dry-run` prints both).
    public var requiredMegabytes: (hugepages: Int, noHuge: Int) {
        (EAL.requiredMegabytes(config: config, mbufs: mbufCount, hugepages: true),
         EAL.requiredMegabytes(config: config, mbufs: mbufCount, hugepages: false))
    }

    /// The EAL arguments this run uses (also printed by `--dry-run`). `--no-huge` among `extra` makes the run
    /// go without hugepages even when enough are free; the arena size (`-m`) is still Tula's to choose.
    public func ealArguments(inMemory: Bool, extra: [String]) -> [String] {
        memory = extra.contains("--no-huge") ? .noHuge(megabytes: requiredMegabytes.noHuge)
                                             : EAL.chooseMemory(config: config, mbufs: mbufCount)
        return EAL.arguments(config: config, workerLcores: workerLcores, mainLcore: LcoreID(UInt32(config.mainLcoreID)),
                             memory: memory, inMemory: inMemory, extra: extra.filter { $0 != "--no-huge" })
    }

    /// Starts EAL with `ealArguments`, opens every port and launches one worker per worker lcore.
    public func start(inMemory: Bool, extraEAL: [String]) throws {
        if let why = KernelInterface.preflightProblem(config) { throw DPDKError(message: why) }
        try EAL.initialize(ealArguments(inMemory: inMemory, extra: extraEAL))
        let socket = Int32(bitPattern: rte_socket_id())
        guard let pool = rte_pktmbuf_pool_create("tula_mbufs", UInt32(mbufCount), 256, 0, tula_default_buf_size(), socket) else {
            throw DPDKError("rte_pktmbuf_pool_create", -tula_errno(), detail: String(cString: rte_strerror(tula_errno())))
        }
        mbufPool = pool
        for port in config.ports {
            ports.append(try EthPort.open(config: port, queues: config.workerCount, pool: pool))
        }
        try openKernelInterfaces(pool: pool, socket: socket)
        do { try slots.assign(config) } catch { throw DPDKError(message: error.description) }
        resolver.track(NeighborResolver.targets(config))
        health.track(config)
        let publisher = SnapshotPublisher(initial: DataplaneTables.build(config: health.effective(config), portMACs: ports.map(\.mac),
                                                                         slots: slots),
                                          workers: workerLcores.count)
        guard let controlTx = rte_ring_create("tula_ctl_tx", 1024, socket, tula_ring_flags_sc()) else {
            throw DPDKError("rte_ring_create(tula_ctl_tx)", -tula_errno())
        }
        controlTxRing = controlTx
        for w in workerLcores.indices {
            guard let ring = rte_ring_create("tula_arp_\(w)", 1024, socket, tula_ring_flags_sp_sc()) else {
                throw DPDKError("rte_ring_create(tula_arp_\(w))", -tula_errno())
            }
            arpRings.append(ring)
        }
        self.publisher = publisher
        let layout = counters.layout
        let hz = max(1, rte_get_tsc_hz())
        let startTSC = tula_rdtsc()
        for w in workerLcores.indices {
            let flowBytes = FlowTable.bytes(capacity: config.flowsPerWorker)
            // On the worker's NUMA node (every lookup that misses the cache reads it), else anywhere.
            let workerSocket = Int32(bitPattern: rte_lcore_to_socket_id(workerLcores[w].raw))
            guard let flowMemory = rte_zmalloc_socket("tula_flows", flowBytes, 64, workerSocket)
                    ?? rte_zmalloc_socket("tula_flows", flowBytes, 64, -1) else {
                throw DPDKError(message: "cannot allocate \(flowBytes >> 20) MiB for the flow table of worker \(w) (flows_per_worker: \(config.flowsPerWorker))")
            }
            let flows = UnsafeMutablePointer<FlowTable>.allocate(capacity: 1)
            flows.initialize(to: FlowTable(memory: flowMemory, capacity: config.flowsPerWorker,
                                           idleTimeoutSeconds: config.flowIdleTimeoutSeconds))
            let portIDs = UnsafeMutablePointer<UInt16>.allocate(capacity: ports.count)
            let offload = UnsafeMutablePointer<Bool>.allocate(capacity: ports.count)
            for (i, p) in ports.enumerated() { portIDs[i] = p.id.raw; offload[i] = p.checksumOffload }
            // One scratch counter past the layout (see emitOuterFragments).
            // This worker's share of each port's kernel token bucket.
            let tokens = UnsafeMutablePointer<Double>.allocate(capacity: ports.count)
            let refill = UnsafeMutablePointer<Double>.allocate(capacity: ports.count)
            let capacity = UnsafeMutablePointer<Double>.allocate(capacity: ports.count)
            let lastTSC = UnsafeMutablePointer<UInt64>.allocate(capacity: ports.count)
            for (i, p) in config.ports.enumerated() {
                let workers = Double(workerLcores.count)
                capacity[i] = max(1, Double(p.kernelBurst) / workers)
                tokens[i] = capacity[i]
                refill[i] = Double(p.kernelRate) / workers / Double(hz)
                lastTSC[i] = startTSC
            }
            let privateCounters = UnsafeMutablePointer<UInt64>.allocate(capacity: layout.count + 1)
            privateCounters.initialize(repeating: 0, count: layout.count + 1)
            let context = UnsafeMutablePointer<WorkerContext>.allocate(capacity: 1)
            context.initialize(to: WorkerContext(
                queue: UInt16(w), portIDs: portIDs, checksumOffload: offload, portCount: ports.count,
                snapshot: publisher.current, quiescent: publisher.quiescentCounter(w),
                flows: flows, counters: privateCounters, published: counters.block(w), stop: stopFlag, tscHz: hz, startTSC: startTSC,
                pool: pool, arpRing: arpRings[w], controlTx: w == 0 ? controlTx : nil,
                kernelRing: kernelRings.isEmpty ? nil : kernelRings[w], kernelTx: w == 0 ? kernelTxRing : nil,
                kernelTokens: tokens, kernelRefillPerCycle: refill, kernelCapacity: capacity, kernelLastTSC: lastTSC,
                fragmentID: UInt16(w), fragmentIDStep: UInt16(workerLcores.count),
                rx: .allocate(capacity: burstSize), flowHashes: .allocate(capacity: burstSize),
                flowBuckets: .allocate(capacity: burstSize), tx: .allocate(capacity: outputCapacity),
                txVerdictCounter: .allocate(capacity: outputCapacity), drop: .allocate(capacity: outputCapacity),
                adaptive: config.adaptivePolling))
            contexts.append(context)
        }
        startTime = Date()
        for (w, lcore) in workerLcores.enumerated() {
            let rc = rte_eal_remote_launch(workerEntry, UnsafeMutableRawPointer(contexts[w]), lcore.raw)
            guard rc == 0 else { throw DPDKError("rte_eal_remote_launch(\(lcore))", rc) }
        }
        if config.gratuitousARP { announceVIPs() }
        startControlThread("tula-neighbors", every: 0.02) { [unowned self] in self.serviceNeighbors(now: $0) }
        startControlThread("tula-health", every: 0.2) { [unowned self] in self.serviceHealthChecks(now: $0) }
        if kernelTxRing != nil {
            startControlThread("tula-kernel", every: 0.0005) { [unowned self] _ in self.serviceKernelInterfaces() }
            startControlThread("tula-routes", every: 0.1) { [unowned self] _ in self.serviceRoutes() }
        }
    }

    // MARK: - Kernel exception interfaces

    /// Opens a `net_tap` port per `kernel_interface` (one queue, the port's MAC and MTU), gives it the port's
    /// addresses and brings it up, and creates the rings between workers, this thread and the TAPs.
    private func openKernelInterfaces(pool: OpaquePointer, socket: Int32) throws {
        kernelPorts = [EthPort?](repeating: nil, count: config.ports.count)
        for (i, port) in config.ports.enumerated() {
            guard let name = port.kernelInterface else { continue }
            var tapConfig = PortConfig(name: "\(port.name)-kernel", device: EAL.kernelDevice(port: i, interface: name),
                                       address: port.address, mac: ports[i].mac, mtu: port.mtu)
            tapConfig.vlan = nil
            let tap = try EthPort.open(config: tapConfig, queues: 1, pool: pool)
            kernelPorts[i] = tap
            try KernelInterface.configure(name, port: port, mac: ports[i].mac)
            installedRoutes[i] = KernelInterface.routes(on: name)
            log(.info, "kernel interface \(name) for port \(port.name): \(port.address)/\(port.kernelPrefixLength)"
                + (port.address6.map { ", \($0)/\(port.kernelPrefixLength6)" } ?? "")
                + ", up to \(port.kernelRate) frames/s (burst \(port.kernelBurst))")
        }
        guard kernelPorts.contains(where: { $0 != nil }) else { kernelPorts = []; return }
        for w in workerLcores.indices {
            guard let ring = rte_ring_create("tula_kernel_\(w)", 1024, socket, tula_ring_flags_sp_sc()) else {
                throw DPDKError("rte_ring_create(tula_kernel_\(w))", -tula_errno())
            }
            kernelRings.append(ring)
        }
        guard let copies = rte_ring_create("tula_kernel_copy", 256, socket, tula_ring_flags_sp_sc()),
              let out = rte_ring_create("tula_kernel_tx", 1024, socket, tula_ring_flags_sp_sc()) else {
            throw DPDKError("rte_ring_create(tula_kernel_copy/tx)", -tula_errno())
        }
        kernelCopyRing = copies
        kernelTxRing = out
    }

    /// Moves frames between the ports and their kernel interfaces: what workers (and the neighbour thread)
    /// handed over goes to the TAP of the port it came in on, untagged; what a TAP sends goes to worker 0's
    /// ring, tagged with the port's VLAN, to leave through the port. The only thread that touches the TAPs.
    private func serviceKernelInterfaces() {
        guard let out = kernelTxRing else { return }
        var objects = [UnsafeMutableRawPointer?](repeating: nil, count: burstSize)
        var single: OpaquePointer? = nil
        for ring in kernelRings + (kernelCopyRing.map { [$0] } ?? []) {
            while true {
                let n = Int(objects.withUnsafeMutableBufferPointer { tula_ring_dequeue_burst(ring, $0.baseAddress, UInt32(burstSize)) })
                if n == 0 { break }
                for object in objects[0..<n] {
                    let m = OpaquePointer(object!)
                    let rxPort = tula_mbuf_port(m)
                    guard let p = ports.firstIndex(where: { $0.id.raw == rxPort }), let tap = kernelPorts[p] else { tula_free(m); continue }
                    untag(m)
                    single = m
                    if tula_tx_burst(tap.id.raw, 0, &single, 1) != 1 { tula_free(m) }
                }
            }
        }
        var received = [OpaquePointer?](repeating: nil, count: burstSize)
        for (p, tap) in kernelPorts.enumerated() {
            guard let tap else { continue }
            let n = Int(received.withUnsafeMutableBufferPointer { tula_rx_burst(tap.id.raw, 0, $0.baseAddress, UInt16(burstSize)) })
            for m in received[0..<n] {
                let m = m!
                if let vlan = config.ports[p].vlan, !tag(m, vlan) { tula_free(m); continue }
                tula_mbuf_set_port(m, ports[p].id.raw)
                if tula_ring_enqueue(out, UnsafeMutableRawPointer(m)) != 0 { tula_free(m) }
            }
        }
    }

    /// Removes an 802.1Q tag (the kernel interface is the VLAN's own segment).
    private func untag(_ m: OpaquePointer) {
        let p = tula_mbuf_data(m)!
        let length = Int(tula_mbuf_data_len(m))
        guard length >= 18, p.load(fromByteOffset: 12, as: UInt8.self) == 0x81, p.load(fromByteOffset: 13, as: UInt8.self) == 0 else { return }
        (p + 4).copyMemory(from: p, byteCount: 12)
        tula_mbuf_reshape(m, 4, UInt32(length - 4))
    }

    /// Inserts the port's 802.1Q tag; false when the mbuf has no headroom for it.
    private func tag(_ m: OpaquePointer, _ vlan: UInt16) -> Bool {
        let length = Int(tula_mbuf_data_len(m))
        guard tula_mbuf_headroom(m) >= 4, length >= 14 else { return false }
        let p = tula_mbuf_data(m)!
        (p - 4).copyMemory(from: p, byteCount: 12)
        (p + 8).storeBytes(of: UInt16(0x8100).bigEndian, as: UInt16.self)
        (p + 10).storeBytes(of: vlan.bigEndian, as: UInt16.self)
        tula_mbuf_reshape(m, -4, UInt32(length + 4))
        return true
    }

    /// The VIPs this appliance can serve now: every VIP with a backend that takes new flows (weight above 0
    /// after health checks), none when the appliance does not serve (a port down, a worker stalled, stopping).
    private func servableVIPs() -> Set<IPAddress> {
        guard notServingReason() == nil else { return [] }
        return control.withLock {
            Set(health.effective(config).vips.filter { $0.backends.contains { $0.weight > 0 } }.map(\.address))
        }
    }

    /// Keeps one host route per servable VIP on every kernel interface (`ip route replace ... proto tula`),
    /// running `ip` only when the set changes.
    private func serviceRoutes() {
        let wanted = servableVIPs()
        control.lock()
        defer { control.unlock() }
        guard stopTime == nil, !withdrawing else { return }
        syncRoutesLocked(wanted)
    }

    private func syncRoutesLocked(_ wanted: Set<IPAddress>) {
        for (p, port) in config.ports.enumerated() {
            guard let name = port.kernelInterface, kernelPorts.indices.contains(p), kernelPorts[p] != nil else { continue }
            // IPv6 VIP routes only where the kernel interface has IPv6 (the port has address6).
            let wanted = wanted.filter { $0.family == .v4 || port.address6 != nil }
            let have = installedRoutes[p] ?? []
            guard have != wanted else { continue }
            let (added, removed) = KernelInterface.syncRoutes(on: name, wanted: wanted, have: have)
            installedRoutes[p] = have.union(added).subtracting(removed)
            if !added.isEmpty { log(.info, "route to \(added.map(\.description).joined(separator: ", ")) added on \(name)") }
            if !removed.isEmpty { log(.warning, "route to \(removed.map(\.description).joined(separator: ", ")) removed from \(name)") }
        }
    }

    /// Runs `work(now)` every `interval` seconds on a thread of its own until `stop`.
    private func startControlThread(_ name: String, every interval: Double, _ work: @escaping @Sendable (Double) -> Void) {
        let thread = Thread { [unowned self] in
            while !self.controlStop.load(ordering: .relaxed) {
                work(ProcessInfo.processInfo.systemUptime)
                usleep(useconds_t(interval * 1e6))
            }
            self.controlThreadsDone.signal()
        }
        thread.name = name
        controlThreads.append(thread)
        thread.start()
    }

    // MARK: - Health checks, off the packet path

    private var nextProbe: [BackendKey: Double] = [:]
    /// Whether probes last came back unknown (the appliance short of fds or memory), so that is logged once.
    private var probesUnknownLogged = false

    /// Probes the backends whose check is due (in parallel, outside the lock), records the results, and
    /// publishes new tables when a backend went down or came back.
    private func serviceHealthChecks(now: Double) {
        control.lock()
        var due: [(BackendKey, IPAddress, HealthCheckConfig)] = []
        for vip in config.vips {
            guard let check = vip.healthCheck else { continue }
            for backend in vip.backends {
                let key = BackendKey(vip: vip.name, address: backend.address)
                if now >= nextProbe[key] ?? 0 {
                    nextProbe[key] = now + check.intervalSeconds
                    due.append((key, backend.address, check))
                }
            }
        }
        control.unlock()
        guard !due.isEmpty else { return }
        let results = UnsafeMutableBufferPointer<ProbeOutcome>.allocate(capacity: due.count)
        results.initialize(repeating: .passed)
        defer { results.deallocate() }
        nonisolated(unsafe) let out = results
        let probes = due
        DispatchQueue.concurrentPerform(iterations: probes.count) { i in out[i] = HealthProber.probe(probes[i].1, probes[i].2) }
        control.lock()
        defer { control.unlock() }
        guard stopTime == nil else { return }
        var changes: [(LogLevel, String)] = []
        let unknown = results.compactMap { if case .unknown(let why) = $0 { why } else { nil } }
        if let why = unknown.first, !probesUnknownLogged {
            log(.warning, "health probes could not be made (\(why)): the appliance itself is short of resources; "
                + "backend states stay as they are until probes can run")
        } else if unknown.isEmpty && probesUnknownLogged {
            log(.info, "health probes run again")
        }
        probesUnknownLogged = !unknown.isEmpty
        for (i, (key, _, check)) in due.enumerated() where health.record(key, results[i], check: check) {
            let why = if case .failed(let reason) = results[i] { reason } else { "" }
            changes.append(health.isHealthy(key) ? (.info, "backend \(key.address) of \(key.vip) is healthy again")
                                                 : (.warning, "backend \(key.address) of \(key.vip) is unhealthy: \(why)"))
        }
        guard !changes.isEmpty else { return }
        // Logged once the workers have the new tables, so the log never runs ahead of the traffic.
        republish(because: changes.map(\.1).joined(separator: "; "))
        for (level, change) in changes { log(level, change) }
    }

    /// Publishes tables for the current config after a health or neighbour change (call with `control` held).
    private func republish(because reason: String) {
        do { try applyLocked(config) } catch { log(.error, "could not apply \(reason): \(error)") }
    }

    private func log(_ level: LogLevel, _ message: String) { Log.write(level, message) }

    // MARK: - Neighbour resolution (ARP), off the packet path

    /// Queues one frame for worker 0 to send on port index `port`; false when no mbuf or ring space.
    @discardableResult
    private func sendControlFrame(_ bytes: [UInt8], port: Int) -> Bool {
        guard let pool = mbufPool, let ring = controlTxRing, let m = tula_mbuf_alloc(pool) else { return false }
        bytes.withUnsafeBytes { tula_mbuf_data(m).copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        tula_mbuf_reshape(m, 0, UInt32(bytes.count))
        tula_mbuf_set_port(m, ports[port].id.raw)
        guard tula_ring_mp_enqueue(ring, UnsafeMutableRawPointer(m)) == 0 else { tula_free(m); return false }
        return true
    }

    /// A gratuitous ARP for every IPv4 VIP address and an unsolicited neighbor advertisement for every IPv6
    /// one, on every port.
    private func announceVIPs() {
        for (i, port) in config.ports.enumerated() {
            for address in Set(config.vips.map(\.address)).sorted() {
                switch address {
                case .v4(let a):
                    sendControlFrame(ARPFrames.request(senderMAC: ports[i].mac, senderIP: a, target: a, vlan: port.vlan), port: i)
                case .v6(let a):
                    sendControlFrame(NDPFrames.unsolicitedAdvertisement(senderMAC: ports[i].mac, address: a, vlan: port.vlan), port: i)
                }
            }
        }
    }

    /// Whether MLDv2 reports are sent (true; `replay`, which has no switch to tell, turns them off before `start`).
    public var reportsMulticastListeners = true

    /// The solicited-node groups of `config` (kept with it, not derived on every control tick), when they were
    /// last reported (-infinity: never) and which ones were.
    private var listenerGroups: [IPv6Address]
    private var lastListenerReport = -Double.infinity
    private var reportedGroups: [IPv6Address] = []

    /// An MLDv2 report of the config's solicited-node groups on every port, every
    /// `NDPFrames.listenerReportIntervalSeconds` and at once when a reload changed them (call with `control` held).
    private func reportMulticastListeners(now: Double) {
        guard reportsMulticastListeners else { return }
        let groups = listenerGroups
        guard now - lastListenerReport >= NDPFrames.listenerReportIntervalSeconds || groups != reportedGroups else { return }
        lastListenerReport = now
        reportedGroups = groups
        guard !groups.isEmpty else { return }
        for (i, port) in config.ports.enumerated() {
            sendControlFrame(NDPFrames.listenerReport(senderMAC: ports[i].mac, groups: groups, vlan: port.vlan), port: i)
        }
    }

    /// Reads the ARP replies and neighbor advertisements workers handed over, sends the requests that are due, and publishes new
    /// tables when a next hop's MAC appeared, changed or was lost.
    private func serviceNeighbors(now: Double) {
        var learned: [(IPAddress, MACAddress)] = []
        var objects = [UnsafeMutableRawPointer?](repeating: nil, count: burstSize)
        for ring in arpRings {
            while true {
                let n = Int(objects.withUnsafeMutableBufferPointer { tula_ring_dequeue_burst(ring, $0.baseAddress, UInt32(burstSize)) })
                if n == 0 { break }
                for object in objects[0..<n] {
                    let m = OpaquePointer(object!)
                    let data = tula_mbuf_data(m)!, length = Int(tula_mbuf_data_len(m))
                    if let (address, mac) = ARPFrames.sender(of: data, length: length) {
                        learned.append((.v4(address), mac))
                    } else if let (address, mac) = NDPFrames.advertised(in: data, length: length) {
                        learned.append((.v6(address), mac))
                    }
                    // The kernel interface's neighbour table needs the answers to its own requests too.
                    if let copies = kernelCopyRing, tula_ring_enqueue(copies, UnsafeMutableRawPointer(m)) == 0 { continue }
                    tula_free(m)
                }
            }
        }
        control.lock()
        defer { control.unlock() }
        guard stopTime == nil else { return }
        reportMulticastListeners(now: now)
        var changed = false
        for (address, mac) in learned { changed = resolver.learned(address, mac: mac, now: now) || changed }
        let (requests, lost) = resolver.due(now: now)
        for (address, port) in requests {
            let p = config.ports[port]
            switch address {
            case .v4(let target):
                sendControlFrame(ARPFrames.request(senderMAC: ports[port].mac, senderIP: p.address, target: target,
                                                   vlan: p.vlan), port: port)
            case .v6(let target):
                // Solicitations come from the port's address6; a port without one cannot ask.
                guard let source = p.address6 else { continue }
                sendControlFrame(NDPFrames.solicitation(senderMAC: ports[port].mac, source: source, target: target,
                                                        vlan: p.vlan), port: port)
            }
        }
        if changed || lost { republish(because: "a next-hop MAC change") }
    }

    /// Next hops being resolved, for summaries.
    private var neighborStates: [Summary.Neighbor] {
        resolver.neighbors.values.sorted { $0.address < $1.address }.map {
            Summary.Neighbor(address: $0.address.description, state: $0.state.rawValue, mac: $0.mac?.description)
        }
    }

    /// Each worker's loop iterations so far (its quiescent counter, bumped every poll, busy or idle): a worker
    /// whose count stops advancing is stuck. Empty before `start`.
    public var workerProgress: [UInt64] {
        control.lock()
        defer { control.unlock() }
        guard let publisher, stopTime == nil else { return [] }
        return workerLcores.indices.map { publisher.quiescentCounter($0).load(ordering: .relaxed) }
    }

    private let progressLock = NSLock()
    private var progressWatch = WorkerWatch()

    /// Workers whose loop count has not advanced for more than `seconds`, `[-1]` when none runs (see `WorkerWatch`;
    /// every call is a sample: the main thread's tick, the watchdog and /healthz share one view).
    public func stalledWorkers(olderThan seconds: Double) -> [Int] {
        let progress = workerProgress
        let now = monotonicSeconds()
        return progressLock.withLock { progressWatch.stalled(progress, now: now, olderThan: seconds) }
    }

    /// nil when the appliance serves (started, every port up, every worker polling within the last second),
    /// else why not.
    public func notServingReason() -> String? {
        let state: String? = control.withLock {
            if publisher == nil { return "not started" }
            if stopTime != nil { return "stopping" }
            let down = ports.filter { tula_link_up($0.id.raw) != 1 }.map(\.name)
            return down.isEmpty ? nil : "link down on port \(down.joined(separator: ", "))"
        }
        if let state { return state }
        let stalled = stalledWorkers(olderThan: 1)
        if stalled == [-1] { return "no worker is running" }
        if !stalled.isEmpty { return "worker \(stalled.map(String.init).joined(separator: ", ")) made no progress for 1 s" }
        return nil
    }

    /// Ports whose link is up (`rte_eth_link_get_nowait`), and all ports.
    public var portsUp: (up: Int, total: Int) {
        control.withLock { (ports.filter { tula_link_up($0.id.raw) == 1 }.count, portCount) }
    }

    /// Backends not taken out by a failing health check (unchecked ones count as healthy), and all backends.
    public var healthyBackends: (healthy: Int, total: Int) {
        control.lock()
        defer { control.unlock() }
        let keys = config.vips.flatMap { v in v.backends.map { BackendKey(vip: v.name, address: $0.address) } }
        return (keys.filter { health.isHealthy($0) }.count, keys.count)
    }

    /// VIPs in the running config.
    public var vipCount: Int {
        control.lock()
        defer { control.unlock() }
        return config.vips.count
    }

    /// Packets received so far on every port, from the published counters.
    public var receivedPackets: UInt64 {
        let c = counters.sum()
        return (0..<portCount).reduce(0) { $0 + c[counters.layout.port($1) + CounterLayout.rxPackets] }
    }

    /// Stops the workers (`rte_eal_mp_wait_lcore`), closes the ports and frees per-worker memory.
    public func stop() {
        control.lock()
        defer { control.unlock() }
        guard stopTime == nil else { return }
        if kernelTxRing != nil && !withdrawing && installedRoutes.values.contains(where: { !$0.isEmpty }) {
            // Withdraw first, and keep serving (workers, the kernel path) for `withdrawGraceSeconds`: the routing
            // daemon's withdrawal leaves through this appliance's own port, and flows keep going until the routers
            // have moved them to another appliance.
            withdrawing = true
            syncRoutesLocked([])
            control.unlock()
            usleep(useconds_t(KernelInterface.withdrawGraceSeconds * 1e6))
            control.lock()
        }
        if !controlThreads.isEmpty {
            controlStop.store(true, ordering: .relaxed)
            control.unlock()
            for _ in controlThreads { controlThreadsDone.wait() }
            control.lock()
            controlThreads = []
        }
        syncRoutesLocked([])
        stopFlag.store(true, ordering: .relaxed)
        rte_eal_mp_wait_lcore()
        stopTime = Date()
        finalDeviceCounters = ports.map { $0.deviceCounters() }
        for port in ports { port.close() }
        for tap in kernelPorts { tap?.close() }
        for context in contexts {
            let c = context.pointee
            rte_free(UnsafeMutableRawPointer(c.flows.pointee.entries))
            c.flows.deallocate(); c.portIDs.deallocate(); c.checksumOffload.deallocate(); c.counters.deallocate()
            c.rx.deallocate(); c.flowHashes.deallocate(); c.flowBuckets.deallocate(); c.tx.deallocate(); c.txVerdictCounter.deallocate(); c.drop.deallocate()
            c.kernelTokens.deallocate(); c.kernelRefillPerCycle.deallocate(); c.kernelCapacity.deallocate(); c.kernelLastTSC.deallocate()
            context.deallocate()
        }
        contexts = []
        publisher = nil
        for ring in arpRings + kernelRings + [controlTxRing, kernelCopyRing, kernelTxRing].compactMap({ $0 }) {
            var object: UnsafeMutableRawPointer? = nil
            while tula_ring_dequeue_burst(ring, &object, 1) == 1 { tula_free(OpaquePointer(object!)) }
            rte_ring_free(ring)
        }
        arpRings = []
        controlTxRing = nil
        kernelRings = []; kernelCopyRing = nil; kernelTxRing = nil
        // Every mbuf should be back now: the count is the final summary's leak check (the pool goes below).
        if let mbufPool { finalMbufsInUse = UInt64(tula_mempool_in_use(mbufPool)); rte_mempool_free(mbufPool) }
        mbufPool = nil
    }

    /// Seconds between the workers' launch and their stop (or now).
    public var elapsedSeconds: Double { (stopTime ?? Date()).timeIntervalSince(startTime) }

    /// Totals so far (final after `stop`).
    public func summary(notes: [(String, String)] = []) -> Summary {
        control.lock()
        defer { control.unlock() }
        let inUse = mbufPool.map { UInt64(tula_mempool_in_use($0)) } ?? finalMbufsInUse
        var summary = Summary(config: config, counters: currentCounters(), layout: counters.layout, slots: slots,
                       elapsedSeconds: elapsedSeconds, mbufsInUse: inUse, neighbors: neighborStates,
                       health: { key in self.config.vips.first { $0.name == key.vip }?.healthCheck == nil ? nil : self.health.isHealthy(key) },
                       notes: [("memory", memory.description), ("workers", "\(config.workerCount)")] + notes)
        if stopTime == nil {
            for (i, port) in ports.enumerated() { summary.ports[i].device = port.deviceCounters() }
        } else {
            for i in finalDeviceCounters.indices { summary.ports[i].device = finalDeviceCounters[i] }
        }
        return summary
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
        resolver.track(NeighborResolver.targets(next))
        health.track(next)
        let tables = DataplaneTables.build(config: health.effective(next), portMACs: ports.map(\.mac), slots: nextSlots,
                                           neighbors: resolver.resolved)
        if !publisher.replace(with: tables, workersRunning: true) {
            log(.error, "a worker did not pass a quiescent point within \(SnapshotPublisher.gracePeriodLimitSeconds) s "
                + "(stuck?): the change is published, the previous tables are kept for it")
        }
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

    public func save(to path: String?) throws(ControlError) -> String {
        control.lock()
        defer { control.unlock() }
        guard let target = path ?? configPath else {
            throw ControlError("save: the appliance was not started from a file; give one with --to")
        }
        let stamp = ISO8601DateFormatter().string(from: Date())
        return try ConfigWriter.save(config, to: target,
                                     header: ["Written by `tula-appliance ctl save` at \(stamp) from the running config.",
                                              "Comments of the file it replaced are in \(target).bak."])
    }
}
