// Stable counter slots for VIPs and backends, kept across reloads so counters and pinned flows survive.

/// Identifies a backend across config changes: its VIP's name and its address.
public struct BackendKey: Hashable, Sendable {
    public var vip: String
    public var address: IPAddress
    public init(vip: String, address: IPAddress) { self.vip = vip; self.address = address }
}

/// Assigns every VIP (by name) and every backend (by `BackendKey`) a slot that stays the same for as
/// long as it exists. Slots index the per-lcore counters and the backend table, and flow-table entries
/// hold backend slots, so a reload that keeps a backend keeps its counters and its flows.
/// A freed slot is reused only after every fresh slot is taken; `assign` reports such reuses so the
/// caller can take a baseline of the slot's counters (a new owner starts from zero).
public struct CounterSlots: Sendable {
    public static let maxVIPs = 256
    public static let maxBackends = 4096

    public private(set) var vipSlots: [String: Int] = [:]
    public private(set) var backendSlots: [BackendKey: Int] = [:]
    private var nextVIP = 0, nextBackend = 0
    private var freeVIPs: [Int] = [], freeBackends: [Int] = []

    public init() {}

    public struct Exhausted: Error, CustomStringConvertible {
        public var description: String
    }

    /// Gives every VIP and backend of `config` a slot (keeping existing ones) and frees the slots of
    /// those that are gone. Returns the slots that were handed out again (previously used by another).
    /// On failure nothing changes.
    @discardableResult
    public mutating func assign(_ config: TulaConfig) throws(Exhausted) -> (vips: [Int], backends: [Int]) {
        var copy = self
        let reused = try copy.assignInPlace(config)
        self = copy
        return reused
    }

    private mutating func assignInPlace(_ config: TulaConfig) throws(Exhausted) -> (vips: [Int], backends: [Int]) {
        var reusedVIPs: [Int] = [], reusedBackends: [Int] = []
        let vipNames = Set(config.vips.map(\.name))
        let backendKeys = Set(config.vips.flatMap { v in v.backends.map { BackendKey(vip: v.name, address: $0.address) } })
        for (name, slot) in vipSlots where !vipNames.contains(name) { vipSlots[name] = nil; freeVIPs.append(slot) }
        for (key, slot) in backendSlots where !backendKeys.contains(key) { backendSlots[key] = nil; freeBackends.append(slot) }
        freeVIPs.sort(by: >); freeBackends.sort(by: >)
        for vip in config.vips where vipSlots[vip.name] == nil {
            if nextVIP < CounterSlots.maxVIPs {
                vipSlots[vip.name] = nextVIP; nextVIP += 1
            } else if let slot = freeVIPs.popLast() {
                vipSlots[vip.name] = slot; reusedVIPs.append(slot)
            } else {
                throw Exhausted(description: "more than \(CounterSlots.maxVIPs) VIPs")
            }
        }
        for key in config.vips.flatMap({ v in v.backends.map { BackendKey(vip: v.name, address: $0.address) } })
        where backendSlots[key] == nil {
            if nextBackend < CounterSlots.maxBackends {
                backendSlots[key] = nextBackend; nextBackend += 1
            } else if let slot = freeBackends.popLast() {
                backendSlots[key] = slot; reusedBackends.append(slot)
            } else {
                throw Exhausted(description: "more than \(CounterSlots.maxBackends) backends")
            }
        }
        return (reusedVIPs, reusedBackends)
    }

    /// One past the highest VIP slot ever used (counters beyond it are all zero).
    public var vipHighWater: Int { nextVIP }
    /// One past the highest backend slot ever used.
    public var backendHighWater: Int { nextBackend }

    public func slot(vip: String) -> Int? { vipSlots[vip] }
    public func slot(backend: BackendKey) -> Int? { backendSlots[backend] }
}
