// The immutable snapshot workers read: ports, VIP index, Maglev tables and backends in flat raw memory (built by TulaTables).

import TulaCore

/// Per-port facts the data path needs. MACs are kept as the raw words a frame holds, for one-load compares.
public struct PortTables: Sendable {
    public var macWord0: UInt32
    public var macWord1: UInt16
    public var gatewayWord0: UInt32
    public var gatewayWord1: UInt16
    /// The port's own IPv4 address, host order (also the L3 tunnel source).
    public var address: UInt32
    /// Largest IPv4 packet (total length, bytes) that may leave the port.
    public var mtuBytes: UInt32
    /// The port's 802.1Q VLAN id, 0 for none.
    public var vlan: UInt16
    /// The gateway's MAC is known (configured or resolved by ARP).
    public var gatewayResolved: Bool
    /// The port has an IPv6 address (`address6`): the halves below are it, host order.
    public var hasAddress6: Bool = false
    public var address6Hi: UInt64 = 0
    public var address6Lo: UInt64 = 0
    /// The IPv6 gateway's MAC words, and whether it is known (configured or resolved by neighbor discovery).
    public var gateway6Word0: UInt32 = 0
    public var gateway6Word1: UInt16 = 0
    public var gateway6Resolved: Bool = false
    /// The port has a kernel exception interface (`kernel_interface`): frames for its own addresses go there.
    public var kernel: Bool = false

    @inlinable
    public init(macWord0: UInt32, macWord1: UInt16, gatewayWord0: UInt32, gatewayWord1: UInt16, address: UInt32, mtuBytes: UInt32, vlan: UInt16, gatewayResolved: Bool) {
        self.macWord0 = macWord0; self.macWord1 = macWord1; self.gatewayWord0 = gatewayWord0; self.gatewayWord1 = gatewayWord1; self.address = address; self.mtuBytes = mtuBytes; self.vlan = vlan; self.gatewayResolved = gatewayResolved
    }
}

/// One VIP: its Maglev table (of backend slots) and its counter slot.
public struct VIPEntry: @unchecked Sendable {
    /// IPv4 address, host order (0 for an IPv6 VIP, whose address is in `address6Hi`/`address6Lo`).
    public var address: UInt32
    public var port: UInt16
    public var proto: UInt8
    public var mode: DSRMode
    public var hash: FlowHashMode
    /// `quic: true`: UDP packets go through `deliverQUIC` (connection-ID stickiness; the IPv4 path finds these VIPs
    /// by their index code instead, see `vipOfCode`). Kept in padding: the entry stays 56 bytes.
    public var quic: Bool = false
    /// The VIP's counter slot (`CounterSlots`).
    public var slot: UInt32
    public var tableSize: UInt32
    /// Backend slots, or `Maglev.none`.
    public var table: UnsafeMutablePointer<UInt16>
    /// Bytes the output adds in front of the IP packet: 0 (l2), else `tunnelOverheadBytes` (20 IPv4 IP-in-IP ... 48 IPv6 GUE).
    public var overheadBytes: UInt32 = 0
    /// l3 with IPv6 backends: the outer header is IPv6 (6in6 or 4in6), sent to the port's `gateway6`.
    public var tunnel6: Bool = false
    /// Not plain IPv4 IP-in-IP with the inner DSCP (an IPv6 outer, GUE, GRE, a per-flow outer source, DSCP
    /// marking): l3 output is built by `encapsulateVIP`, l2 remarking by `remarkDSCP`, both out of line.
    public var outOfLine: Bool = false
    /// What the out-of-line paths read (Encapsulations.swift).
    public var tunnel = VIPTunnel()
    public var address6Hi: UInt64 = 0
    public var address6Lo: UInt64 = 0

    @inlinable
    public init(address: UInt32, port: UInt16, proto: UInt8, mode: DSRMode, hash: FlowHashMode, slot: UInt32, tableSize: UInt32, table: UnsafeMutablePointer<UInt16>) {
        self.address = address; self.port = port; self.proto = proto; self.mode = mode; self.hash = hash; self.slot = slot; self.tableSize = tableSize; self.table = table
        overheadBytes = mode == .l2 ? 0 : UInt32(ipInIPOverheadBytes)
    }
}

/// One backend, at its slot in `DataplaneTables.backends`.
public struct BackendEntry: Sendable {
    /// Slot of the VIP it serves, or `BackendEntry.absent` when the slot holds no backend.
    public var vipSlot: UInt32
    /// IPv4 address, host order (the L3 outer destination).
    public var address: UInt32
    public var macWord0: UInt32
    public var macWord1: UInt16
    /// l2: 802.1Q VLAN id to send with, 0 to keep the input's tagging.
    public var vlan: UInt16
    /// l2: the MAC is known (configured or resolved by ARP or neighbor discovery).
    public var resolved: Bool
    /// An IPv6 backend's address (the outer destination of 6in6 and 4in6), host-order halves.
    public var address6Hi: UInt64 = 0
    public var address6Lo: UInt64 = 0

    @inlinable
    public init(vipSlot: UInt32, address: UInt32, macWord0: UInt32, macWord1: UInt16, vlan: UInt16, resolved: Bool) {
        self.vipSlot = vipSlot; self.address = address; self.macWord0 = macWord0; self.macWord1 = macWord1; self.vlan = vlan; self.resolved = resolved
    }
    public static let absent: UInt32 = 0xFFFF_FFFF
}

/// Per distinct VIP address: ICMP echo, and which VIP takes fragments (which carry no ports).
public struct VIPAddressEntry: Sendable {
    public var address: UInt32
    /// Some VIP on this address answers ICMP echo.
    public var echo: Bool
    /// VIP index for TCP / UDP fragments: the `*` VIP, else the only VIP of that protocol, else -1.
    public var fragmentTCP: Int32
    public var fragmentUDP: Int32

    @inlinable
    public init(address: UInt32, echo: Bool, fragmentTCP: Int32, fragmentUDP: Int32) {
        self.address = address; self.echo = echo; self.fragmentTCP = fragmentTCP; self.fragmentUDP = fragmentUDP
    }
}

/// Per distinct IPv6 VIP address: as `VIPAddressEntry` (neighbor discovery, ICMPv6 echo, fragments).
public struct VIP6AddressEntry: Sendable {
    public var hi: UInt64
    public var lo: UInt64
    public var echo: Bool
    public var fragmentTCP: Int32
    public var fragmentUDP: Int32

    @inlinable
    public init(hi: UInt64, lo: UInt64, echo: Bool, fragmentTCP: Int32, fragmentUDP: Int32) {
        self.hi = hi; self.lo = lo; self.echo = echo; self.fragmentTCP = fragmentTCP; self.fragmentUDP = fragmentUDP
    }
}

/// A slot of the open-addressed IPv6 VIP index: address halves and `vip6Key(proto, port)`; `key` 0 is empty.
public struct VIP6Slot: Sendable {
    public var hi: UInt64
    public var lo: UInt64
    public var key: UInt32
    public var vip: UInt32

    @inlinable
    public init(hi: UInt64, lo: UInt64, key: UInt32, vip: UInt32) {
        self.hi = hi; self.lo = lo; self.key = key; self.vip = vip
    }
}

/// A slot of the open-addressed VIP index.
public struct VIPSlot: Sendable {
    public var key: UInt64
    public var vip: UInt32

    @inlinable
    public init(key: UInt64, vip: UInt32) {
        self.key = key; self.vip = vip
    }
}

/// Everything a worker reads, reached through one pointer. Built off the packet path by `build(config:)`;
/// never mutated once published; freed with `destroy()` after every worker has stopped using it.
public struct DataplaneTables: @unchecked Sendable {
    public var ports: UnsafeMutablePointer<PortTables>
    public var portCount: Int
    public var vips: UnsafeMutablePointer<VIPEntry>
    public var vipCount: Int
    /// Indexed by backend slot (`CounterSlots.maxBackends` entries).
    public var backends: UnsafeMutablePointer<BackendEntry>
    public var vipIndex: UnsafeMutablePointer<VIPSlot>
    public var vipIndexMask: Int
    /// Distinct VIP addresses (ARP, ICMP echo, fragments).
    public var vipAddresses: UnsafeMutablePointer<VIPAddressEntry>
    public var vipAddressCount: Int
    /// IPv6 VIPs: their index (`vip6IndexMask` + 1 slots) and distinct addresses.
    public var vip6Index: UnsafeMutablePointer<VIP6Slot>
    public var vip6IndexMask: Int
    public var vip6Addresses: UnsafeMutablePointer<VIP6AddressEntry>
    public var vip6AddressCount: Int
    public var layout: CounterLayout
    /// Counters a worker publishes: `[0, publishedPrefix)` and `[layout.backendBase, publishedEnd)`.
    public var publishedPrefix: Int
    public var publishedEnd: Int
    /// Prefix VIPs and QUIC server ids (`VIPSteering.swift`); empty when the config has none.
    public var steering = VIPSteering()

    @inlinable
    public init(ports: UnsafeMutablePointer<PortTables>, portCount: Int, vips: UnsafeMutablePointer<VIPEntry>, vipCount: Int, backends: UnsafeMutablePointer<BackendEntry>, vipIndex: UnsafeMutablePointer<VIPSlot>, vipIndexMask: Int, vipAddresses: UnsafeMutablePointer<VIPAddressEntry>, vipAddressCount: Int, vip6Index: UnsafeMutablePointer<VIP6Slot>, vip6IndexMask: Int, vip6Addresses: UnsafeMutablePointer<VIP6AddressEntry>, vip6AddressCount: Int, layout: CounterLayout, publishedPrefix: Int, publishedEnd: Int) {
        self.ports = ports; self.portCount = portCount; self.vips = vips; self.vipCount = vipCount; self.backends = backends; self.vipIndex = vipIndex; self.vipIndexMask = vipIndexMask; self.vipAddresses = vipAddresses; self.vipAddressCount = vipAddressCount; self.vip6Index = vip6Index; self.vip6IndexMask = vip6IndexMask; self.vip6Addresses = vip6Addresses; self.vip6AddressCount = vip6AddressCount; self.layout = layout; self.publishedPrefix = publishedPrefix; self.publishedEnd = publishedEnd
    }

    /// The VIP index key of (address, protocol, port), host order; port 0 stands for `*`.
    @inlinable @inline(__always)
    public static func vipKey(_ address: UInt32, _ proto: UInt8, _ port: UInt16) -> UInt64 {
        rawVIPKey(address.bigEndian, proto, port.bigEndian)
    }

    /// `vipKey` of the address and port as a frame holds them (native loads of network-order bytes), so the fast
    /// path builds it without byte swaps: bits 24-55 the address, 16-23 the protocol, 0-15 the port.
    @inlinable @inline(__always)
    public static func rawVIPKey(_ address: UInt32, _ proto: UInt8, _ port: UInt16) -> UInt64 {
        UInt64(address) << 24 | UInt64(proto) << 16 | UInt64(port)
    }

    /// The VIP for (address, protocol, port): an exact port wins over `*`. Returns -1 when there is none.
    @inlinable @inline(__always)
    public func findVIP(address: UInt32, proto: UInt8, port: UInt16) -> Int {
        DataplaneTables.vipOfCode(findVIPCode(address: address, proto: proto, port: port))
    }

    /// A VIP index entry's code: the VIP index, or -2 - index for a `quic` VIP (so the IPv4 path tells them
    /// apart in the branch it already has for -1, no VIP). See `QUICSteering.swift`.
    @inlinable @inline(__always)
    public static func vipOfCode(_ code: Int) -> Int { code < -1 ? -2 &- code : code }

    /// `findVIP`, returning the entry's code (see `vipOfCode`).
    @inlinable @inline(__always)
    public func findVIPCode(address: UInt32, proto: UInt8, port: UInt16) -> Int {
        let exact = probe(DataplaneTables.vipKey(address, proto, port))
        if exact != -1 { return exact }
        let any = probe(DataplaneTables.vipKey(address, proto, 0))
        if any != -1 || steering.prefixLengths4 == 0 { return any }
        return DataplaneTables.findPrefixVIP(vipIndex, mask: vipIndexMask, lengths: steering.prefixLengths4,
                                             address: address, proto: proto, port: port)
    }

    /// Home slot of `key` in the VIP index: one multiply (Fibonacci hashing; the top bits are the well mixed ones)
    /// after folding the key's high half into its low half, so that bits 40 and up of the product depend on every
    /// bit of the key (the address's last byte sits in bits 48-55 of a `rawVIPKey`).
    @inlinable @inline(__always)
    public static func indexSlot(_ key: UInt64, mask: Int) -> Int {
        Int(truncatingIfNeeded: ((key ^ key >> 32) &* 0x9E37_79B9_7F4A_7C15) >> 40) & mask
    }

    @inlinable @inline(__always)
    func probe(_ key: UInt64) -> Int {
        DataplaneTables.probe(vipIndex, mask: vipIndexMask, key: key, from: DataplaneTables.indexSlot(key, mask: vipIndexMask))
    }

    /// The entry code of `key` in the IPv4 index `index` (`mask` + 1 slots), walking from slot `first` (its home
    /// slot, or the one after a home slot already read) to it or to an empty slot (-1). The one probe loop of the
    /// exact, prefix and fast-path lookups.
    @inlinable @inline(__always)
    public static func probe(_ index: UnsafeMutablePointer<VIPSlot>, mask: Int, key: UInt64, from first: Int) -> Int {
        var i = first
        while true {
            let slot = index[i]
            if slot.key == key { return Int(Int32(bitPattern: slot.vip)) }
            if slot.key == 0 { return -1 }
            i = (i &+ 1) & mask
        }
    }

    /// The IPv6 index key of (protocol, port); port 0 stands for `*`. Never 0 (0 marks an empty slot).
    @inlinable @inline(__always)
    public static func vip6Key(_ proto: UInt8, _ port: UInt16) -> UInt32 { 1 << 24 | UInt32(proto) << 16 | UInt32(port) }

    /// Home slot of an IPv6 VIP key in `vip6Index`.
    @inlinable @inline(__always)
    public static func index6Slot(_ hi: UInt64, _ lo: UInt64, _ key: UInt32, mask: Int) -> Int {
        indexSlot(hi ^ lo.byteSwapped ^ UInt64(key) << 20, mask: mask)
    }

    /// The IPv6 VIP for (address, protocol, port): an exact port wins over `*`. Returns -1 when there is none.
    @inlinable @inline(__always)
    public func findVIP6(hi: UInt64, lo: UInt64, proto: UInt8, port: UInt16) -> Int {
        let exact = probe6(hi, lo, DataplaneTables.vip6Key(proto, port))
        if exact != -1 { return DataplaneTables.vipOfCode(exact) }
        let any = probe6(hi, lo, DataplaneTables.vip6Key(proto, 0))
        if any != -1 || steering.prefixLengths6Hi | steering.prefixLengths6Lo == 0 { return DataplaneTables.vipOfCode(any) }
        return DataplaneTables.vipOfCode(DataplaneTables.findPrefixVIP6(vip6Index, mask: vip6IndexMask, high: steering.prefixLengths6Hi,
                                              low: steering.prefixLengths6Lo, hi: hi, lo: lo, proto: proto, port: port))
    }

    @inlinable @inline(__always)
    func probe6(_ hi: UInt64, _ lo: UInt64, _ key: UInt32) -> Int {
        var i = DataplaneTables.index6Slot(hi, lo, key, mask: vip6IndexMask)
        while true {
            let slot = vip6Index[i]
            if slot.key == key && slot.lo == lo && slot.hi == hi { return Int(Int32(bitPattern: slot.vip)) }
            if slot.key == 0 { return -1 }
            i = (i + 1) & vip6IndexMask
        }
    }

    /// The entry of an IPv6 VIP address, or nil when no VIP has it.
    @inlinable @inline(__always)
    public func vip6Address(hi: UInt64, lo: UInt64) -> UnsafeMutablePointer<VIP6AddressEntry>? {
        var i = 0
        while i < vip6AddressCount {
            if vip6Addresses[i].lo == lo && vip6Addresses[i].hi == hi { return vip6Addresses + i }
            i &+= 1
        }
        return steering.prefix6Count == 0 ? nil : prefixAddress6(hi: hi, lo: lo)
    }

    /// The entry of a VIP address (host order), or nil when no VIP has it.
    @inlinable @inline(__always)
    public func vipAddress(_ address: UInt32) -> UnsafeMutablePointer<VIPAddressEntry>? {
        var i = 0
        while i < vipAddressCount {
            if vipAddresses[i].address == address { return vipAddresses + i }
            i &+= 1
        }
        return steering.prefix4Count == 0 ? nil : prefixAddress(address)
    }
}
