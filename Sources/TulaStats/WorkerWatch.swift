// Whether each worker lcore still makes progress: the rule behind the systemd watchdog ping and /healthz.

/// Follows the workers' loop counters (one sample per call) and says which ones have not moved for a while.
public struct WorkerWatch: Sendable {
    private var seen: [UInt64] = []
    /// When each worker's counter last changed, monotonic seconds.
    private var changed: [Double] = []

    public init() {}

    /// The workers (by index) whose counter has not changed for more than `seconds` at `now`; `[-1]` when there is
    /// no worker (not started, or stopped). The first sample (or one with another worker count) only records.
    public mutating func stalled(_ progress: [UInt64], now: Double, olderThan seconds: Double) -> [Int] {
        guard !progress.isEmpty else { return [-1] }
        guard seen.count == progress.count else {
            seen = progress
            changed = Array(repeating: now, count: progress.count)
            return []
        }
        for i in progress.indices where progress[i] != seen[i] {
            seen[i] = progress[i]
            changed[i] = now
        }
        return progress.indices.filter { now - changed[$0] > seconds }
    }
}
