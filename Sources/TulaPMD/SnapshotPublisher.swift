// Publishes a new DataplaneTables to running workers through one atomic pointer, and frees the old one
// only after every worker has passed a quiescent point (quiescent-state-based RCU, like rte_rcu_qsbr).

import Atomics
import Foundation
import TulaCore
import TulaDatapath
import TulaTables
import TulaStats

/// The tables workers read. Workers load `current` once per loop iteration and bump their quiescent
/// counter at the end of it; `replace` waits until every counter has moved before freeing the old tables,
/// so a worker never waits and never sees freed memory.
public final class SnapshotPublisher: @unchecked Sendable {
    public let current: UnsafeAtomic<UnsafeMutablePointer<DataplaneTables>>
    let quiescent: UnsafeMutablePointer<CounterCell>
    let workers: Int

    public init(initial: UnsafeMutablePointer<DataplaneTables>, workers: Int) {
        current = .create(initial)
        self.workers = workers
        quiescent = .allocate(capacity: max(1, workers))
        quiescent.initialize(repeating: CounterCell(0), count: max(1, workers))
    }

    deinit {
        DataplaneTables.destroy(current.load(ordering: .relaxed))
        current.destroy()
        quiescent.deallocate()
    }

    /// Worker `w`'s quiescent counter, for its context.
    public func quiescentCounter(_ w: Int) -> UnsafeAtomic<UInt64> { UnsafeAtomic(at: quiescent + w) }

    /// Longest wait for a grace period, seconds. A worker that has not finished its loop iteration by then is
    /// stuck (the systemd watchdog restarts such an appliance): the change still takes effect for the others,
    /// and the old tables are kept (leaked), since the stuck worker may still read them.
    static let gracePeriodLimitSeconds = 2.0

    /// Publishes `tables`, waits for a grace period (skipped when `workersRunning` is false), frees the old.
    /// Returns false when a worker did not pass a quiescent point in time (the old tables are then not freed).
    @discardableResult
    public func replace(with tables: UnsafeMutablePointer<DataplaneTables>, workersRunning: Bool) -> Bool {
        let old = current.exchange(tables, ordering: .acquiringAndReleasing)
        if workersRunning && !waitForGracePeriod() { return false }
        DataplaneTables.destroy(old)
        return true
    }

    /// Returns true once every worker has finished the loop iteration it was in; false after the time limit.
    func waitForGracePeriod() -> Bool {
        let seen = (0..<workers).map { quiescentCounter($0).load(ordering: .acquiring) }
        let limit = Date().addingTimeInterval(SnapshotPublisher.gracePeriodLimitSeconds)
        for w in 0..<workers {
            while quiescentCounter(w).load(ordering: .acquiring) == seen[w] {
                if Date() > limit { return false }
                usleep(50)
            }
        }
        return true
    }
}
