// Per-lcore counter blocks: each worker publishes its own block with relaxed stores; readers sum them.

import Atomics
import TulaCore
import TulaDatapath

/// One published counter: a UInt64 that is stored and loaded atomically (relaxed).
public typealias CounterCell = UnsafeAtomic<UInt64>.Storage

/// One published block of `layout.count` counters per worker lcore. A worker counts in a private block
/// of its own and copies it here with `publish` (plain relaxed stores, never a locked add); any thread
/// may `sum` the published blocks at any time without slowing the workers.
public final class CounterBlocks: @unchecked Sendable {
    public let layout: CounterLayout
    public let workers: Int
    let storage: UnsafeMutablePointer<CounterCell>

    public init(layout: CounterLayout, workers: Int) {
        self.layout = layout
        self.workers = workers
        storage = .allocate(capacity: layout.count * workers)
        storage.initialize(repeating: CounterCell(0), count: layout.count * workers)
    }

    deinit { storage.deallocate() }

    /// The published block of worker `w`, to hand to that worker.
    public func block(_ w: Int) -> UnsafeMutablePointer<CounterCell> { storage + w * layout.count }

    /// The sum over workers of every counter.
    public func sum() -> [UInt64] {
        var total = [UInt64](repeating: 0, count: layout.count)
        for w in 0..<workers {
            let b = block(w)
            for i in 0..<layout.count { total[i] &+= UnsafeAtomic<UInt64>(at: b + i).load(ordering: .relaxed) }
        }
        return total
    }
}

/// Copies counters `[0, prefix)` and `[from, end)` of a worker's private block into its published one
/// (called by the owning worker only). A free function: as a static method of `CounterBlocks` every call
/// first fetched the class's metadata.
@inline(__always)
public func publishCounterBlock(_ source: UnsafePointer<UInt64>, to block: UnsafeMutablePointer<CounterCell>,
                                prefix: Int, from: Int, end: Int) {
    var i = 0
    while i < prefix {
        UnsafeAtomic<UInt64>(at: block + i).store(source[i], ordering: .relaxed)
        i &+= 1
    }
    i = from
    while i < end {
        UnsafeAtomic<UInt64>(at: block + i).store(source[i], ordering: .relaxed)
        i &+= 1
    }
}
