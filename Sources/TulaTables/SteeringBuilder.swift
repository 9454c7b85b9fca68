// Builds the VIP index entries of prefix VIPs and port ranges, the prefix address entries and the QUIC server-id index.

import TulaCore
import TulaDatapath

extension DataplaneTables {
    /// The IPv4 index keys of VIP `v`: one for a port or `*`, one per port of a range; under its prefix, if any.
    static func indexKeys4(_ vip: VIPConfig, _ entry: VIPEntry) -> [UInt64] {
        let length = vip.prefixLength ?? 32
        let ports: [UInt16] = vip.portEnd.map { end in Array(vip.port!...end) } ?? [vip.port ?? 0]
        return ports.map { length == 32 ? vipKey(entry.address, entry.proto, $0) : prefixKey(entry.address, length, entry.proto, $0) }
    }

    static func indexKeys6(_ vip: VIPConfig, _ entry: VIPEntry) -> [UInt32] {
        let ports: [UInt16] = vip.portEnd.map { end in Array(vip.port!...end) } ?? [vip.port ?? 0]
        return ports.map { prefix6Key(vip.prefixLength ?? 128, entry.proto, $0) }
    }

    /// What the VIP index holds for VIP `v`: its index, or -2 - index (as a bit pattern) for a quic UDP VIP.
    static func entryCode(_ config: TulaConfig, _ v: Int) -> UInt32 {
        let vip = config.vips[v]
        return UInt32(bitPattern: Int32(vip.quic && vip.proto == .udp ? -2 - v : v))
    }

    /// Slots of an open-addressed index for `entries` keys: a power of two, at least 16 and 4 x the keys (a quarter
    /// full at most, so probes stay short).
    static func indexCapacity(_ entries: Int) -> Int {
        var capacity = 16
        while capacity < entries * 4 { capacity *= 2 }
        return capacity
    }

    /// The IPv4 index's slot count: from `minimum`, doubled while two keys share a home slot, up to 64 slots per key
    /// (at most 65 536 slots, 1 MiB), so that a packet's lookup usually reads its key's home slot only (the fast
    /// path probes past it out of line).
    static func homeSlotCapacity<Keys: Sequence<UInt64>>(_ keys: Keys, minimum: Int) -> Int {
        let keys = Array(keys)
        let limit = max(minimum, min(64 * keys.count, 1 << 16))
        var capacity = minimum
        while capacity < limit && Set(keys.map { indexSlot($0, mask: capacity - 1) }).count < keys.count { capacity *= 2 }
        return capacity
    }

    /// Fills the IPv4 VIP index: ports and `*` first, then range ports no port VIP of the same address (or prefix)
    /// already holds (a port beats a range). Returns the index and its mask.
    static func buildIndex4(_ config: TulaConfig, _ vips: UnsafeMutablePointer<VIPEntry>, _ v4: [Int]) -> (UnsafeMutablePointer<VIPSlot>, Int) {
        let keys = v4.map { indexKeys4(config.vips[$0], vips[$0]) }
        let total = keys.reduce(0) { $0 + $1.count }
        let capacity = homeSlotCapacity(keys.joined(), minimum: indexCapacity(total))
        let index = UnsafeMutablePointer<VIPSlot>.allocate(capacity: capacity)
        index.initialize(repeating: VIPSlot(key: 0, vip: 0), count: capacity)
        for ranges in [false, true] {
            for (n, v) in v4.enumerated() where (config.vips[v].portEnd != nil) == ranges {
                for key in keys[n] {
                    var i = indexSlot(key, mask: capacity - 1)
                    while index[i].key != 0 && index[i].key != key { i = (i + 1) & (capacity - 1) }
                    if index[i].key == key { continue }
                    index[i] = VIPSlot(key: key, vip: entryCode(config, v))
                }
            }
        }
        return (index, capacity - 1)
    }

    /// As `buildIndex4`, for IPv6.
    static func buildIndex6(_ config: TulaConfig, _ vips: UnsafeMutablePointer<VIPEntry>, _ v6: [Int]) -> (UnsafeMutablePointer<VIP6Slot>, Int) {
        let keys = v6.map { indexKeys6(config.vips[$0], vips[$0]) }
        let total = keys.reduce(0) { $0 + $1.count }
        let capacity = indexCapacity(total)
        let index = UnsafeMutablePointer<VIP6Slot>.allocate(capacity: capacity)
        index.initialize(repeating: VIP6Slot(hi: 0, lo: 0, key: 0, vip: 0), count: capacity)
        for ranges in [false, true] {
            for (n, v) in v6.enumerated() where (config.vips[v].portEnd != nil) == ranges {
                let (hi, lo) = (vips[v].address6Hi, vips[v].address6Lo)
                for key in keys[n] {
                    var i = index6Slot(hi, lo, key, mask: capacity - 1)
                    func same(_ s: VIP6Slot) -> Bool { s.key == key && s.hi == hi && s.lo == lo }
                    while index[i].key != 0 && !same(index[i]) { i = (i + 1) & (capacity - 1) }
                    if same(index[i]) { continue }
                    index[i] = VIP6Slot(hi: hi, lo: lo, key: key, vip: entryCode(config, v))
                }
            }
        }
        return (index, capacity - 1)
    }

    /// The prefix lengths in use and the prefix address entries (longest first) of a config.
    static func buildSteering(_ config: TulaConfig, backendSlots: [[Int]]) -> VIPSteering {
        var s = VIPSteering()
        let prefixes = Set(config.vips.compactMap { v in v.prefixLength.map { PrefixKey(address: v.address, length: $0) } })
            .sorted { ($0.length, $1.address) > ($1.length, $0.address) }
        let p4 = prefixes.filter { $0.address.family == .v4 }, p6 = prefixes.filter { $0.address.family == .v6 }
        for p in p4 { s.prefixLengths4 |= 1 << UInt64(p.length) }
        for p in p6 {
            if p.length >= 64 { s.prefixLengths6Hi |= 1 << UInt64(p.length - 64) } else { s.prefixLengths6Lo |= 1 << UInt64(p.length) }
        }
        func echo(_ p: PrefixKey) -> Bool { config.vips.contains { $0.address == p.address && $0.prefixLength == p.length && $0.icmpEcho } }
        if !p4.isEmpty {
            s.prefixes4 = .allocate(capacity: p4.count)
            s.prefix4Lengths = .allocate(capacity: p4.count)
            for (i, p) in p4.enumerated() {
                s.prefixes4![i] = VIPAddressEntry(address: p.address.v4!.value, echo: echo(p),
                                                  fragmentTCP: fragmentVIP(config, p.address, .tcp, bits: p.length),
                                                  fragmentUDP: fragmentVIP(config, p.address, .udp, bits: p.length))
                s.prefix4Lengths![i] = UInt8(p.length)
            }
            s.prefix4Count = p4.count
        }
        if !p6.isEmpty {
            s.prefixes6 = .allocate(capacity: p6.count)
            s.prefix6Lengths = .allocate(capacity: p6.count)
            for (i, p) in p6.enumerated() {
                s.prefixes6![i] = VIP6AddressEntry(hi: p.address.v6!.hi, lo: p.address.v6!.lo, echo: echo(p),
                                                   fragmentTCP: fragmentVIP(config, p.address, .tcp, bits: p.length),
                                                   fragmentUDP: fragmentVIP(config, p.address, .udp, bits: p.length))
                s.prefix6Lengths![i] = UInt8(p.length)
            }
            s.prefix6Count = p6.count
        }
        buildQUICIndex(config, backendSlots: backendSlots, into: &s)
        return s
    }

    /// Frees what `buildSteering` allocated.
    static func destroySteering(_ s: VIPSteering) {
        s.prefixes4?.deallocate(); s.prefix4Lengths?.deallocate()
        s.prefixes6?.deallocate(); s.prefix6Lengths?.deallocate()
        s.quicIndex?.deallocate()
    }

    /// The VIP that takes fragments to (address or prefix of `bits`, proto): the `*` VIP, else the only one, else -1.
    static func fragmentVIP(_ config: TulaConfig, _ address: IPAddress, _ proto: L4Protocol, bits: Int?) -> Int32 {
        let candidates = config.vips.indices.filter {
            config.vips[$0].address == address && config.vips[$0].prefixLength == bits && config.vips[$0].proto == proto
        }
        if let wildcard = candidates.first(where: { config.vips[$0].port == nil }) { return Int32(wildcard) }
        return candidates.count == 1 ? Int32(candidates[0]) : -1
    }
}

struct PrefixKey: Hashable {
    var address: IPAddress
    var length: Int
}

extension DataplaneTables {
    /// The QUIC server-id index of every `quic` VIP's backends that have a `quic_server_id`.
    static func buildQUICIndex(_ config: TulaConfig, backendSlots: [[Int]], into s: inout VIPSteering) {
        var entries: [(UInt64, UInt32)] = []
        for (v, vip) in config.vips.enumerated() where vip.quic {
            for (b, backend) in vip.backends.enumerated() {
                if let id = backend.quicServerID { entries.append((quicKey(v, id), UInt32(backendSlots[v][b]))) }
            }
        }
        guard !entries.isEmpty else { return }
        let capacity = indexCapacity(entries.count)
        let index = UnsafeMutablePointer<QUICSlot>.allocate(capacity: capacity)
        index.initialize(repeating: QUICSlot(key: 0, backend: 0), count: capacity)
        for (key, backend) in entries {
            var i = indexSlot(key, mask: capacity - 1)
            while index[i].key != 0 { i = (i + 1) & (capacity - 1) }
            index[i] = QUICSlot(key: key, backend: backend)
        }
        s.quicIndex = index
        s.quicIndexMask = capacity - 1
    }
}
