// Which EAL lcores run workers and which one is the main (control) lcore, derived from `workers:`.

extension TulaConfig {
    /// Number of worker lcores (and of RX/TX queue pairs per port).
    public var workerCount: Int {
        switch workers {
        case .count(let n): n
        case .lcores(let ids): ids.count
        }
    }

    /// Lcore ids of the workers: `1...n` for a count, the list as given otherwise.
    public var workerLcoreIDs: [Int] {
        switch workers {
        case .count(let n): Array(1...n)
        case .lcores(let ids): ids
        }
    }

    /// The main lcore: the lowest id not used by a worker.
    public var mainLcoreID: Int {
        let used = Set(workerLcoreIDs)
        return (0...).first { !used.contains($0) }!
    }
}
