// Weighted Maglev lookup tables (Eisenbud et al., NSDI 2016): deterministic from the backend list alone.

public enum Maglev {
    /// Table entry meaning "no backend takes new flows" (every weight is 0).
    public static let none: UInt16 = 0xFFFF

    /// Builds a table of prime `size` whose entries are indices into `backends`.
    ///
    /// Each backend's permutation comes from two stable hashes of its `key` (its address as text), so
    /// every appliance with the same config builds the same table. Weights are honoured by letting a
    /// backend claim entries in proportion to its weight in each round; weight 0 claims nothing (drain).
    public static func build(keys: [String], weights: [Int], size: Int) -> [UInt16] {
        precondition(keys.count == weights.count && keys.count < Int(none))
        let m = UInt64(size)
        var table = [UInt16](repeating: none, count: size)
        let active = weights.indices.filter { weights[$0] > 0 }
        guard !active.isEmpty else { return table }
        let offsets = keys.map { stableHash($0, seed: 0x6D61_676C_6576_3031) % m }
        let skips = keys.map { stableHash($0, seed: 0x736B_6970_7065_7231) % (m - 1) + 1 }
        var next = [UInt64](repeating: 0, count: keys.count)
        var credit = [Int](repeating: 0, count: keys.count)
        let maxWeight = active.map { weights[$0] }.max()!
        var filled = 0
        while true {
            for i in active {
                credit[i] += weights[i]
                while credit[i] >= maxWeight {
                    credit[i] -= maxWeight
                    var c = (offsets[i] + next[i] * skips[i]) % m
                    while table[Int(c)] != none {
                        next[i] += 1
                        c = (offsets[i] + next[i] * skips[i]) % m
                    }
                    table[Int(c)] = UInt16(i)
                    next[i] += 1
                    filled += 1
                    if filled == size { return table }
                }
            }
        }
    }

    /// Whether `n` is prime (table sizes must be).
    public static func isPrime(_ n: Int) -> Bool {
        if n < 2 { return false }
        if n < 4 { return true }
        if n % 2 == 0 { return false }
        var d = 3
        while d * d <= n {
            if n % d == 0 { return false }
            d += 2
        }
        return true
    }
}
