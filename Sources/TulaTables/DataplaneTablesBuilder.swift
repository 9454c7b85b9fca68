// Builds and frees the workers' DataplaneTables from a validated config: control-plane code, so it keeps Swift's checks.

import TulaCore
import TulaDatapath

extension DataplaneTables {
    /// Reads the six bytes of a MAC as the (native-order) words a frame load returns.
    public static func macWords(_ mac: MACAddress) -> (UInt32, UInt16) {
        var raw = (UInt32(0), UInt16(0))
        withUnsafeMutableBytes(of: &raw) { buffer in
            let b = mac.array
            for i in 0..<4 { buffer[i] = b[i] }
            for i in 0..<2 { buffer[4 + i] = b[4 + i] }
        }
        return raw
    }

    /// Builds the tables for a validated config. `macs[i]` is the MAC in use on port i (the configured
    /// one or the device's own); `slots` must have been assigned for `config`; `neighbors` holds the MACs
    /// ARP or neighbor discovery resolved for next hops the config gives no MAC for (missing ones are unresolved).
    public static func build(config: TulaConfig, portMACs macs: [MACAddress], slots: CounterSlots,
                             neighbors: [IPAddress: MACAddress] = [:]) -> UnsafeMutablePointer<DataplaneTables> {
        let ports = UnsafeMutablePointer<PortTables>.allocate(capacity: max(1, config.ports.count))
        for (i, p) in config.ports.enumerated() {
            let mac = macWords(macs[i])
            let gatewayMAC = p.gatewayMAC ?? p.gateway.flatMap { neighbors[.v4($0)] }
            let gw = macWords(gatewayMAC ?? .zero)
            ports[i] = PortTables(macWord0: mac.0, macWord1: mac.1, gatewayWord0: gw.0, gatewayWord1: gw.1,
                                  address: p.address.value, mtuBytes: UInt32(p.mtu), vlan: p.vlan ?? 0,
                                  gatewayResolved: gatewayMAC != nil)
            if let a6 = p.address6 {
                ports[i].hasAddress6 = true
                (ports[i].address6Hi, ports[i].address6Lo) = (a6.hi, a6.lo)
            }
            let gateway6MAC = p.gateway6MAC ?? p.gateway6.flatMap { neighbors[.v6($0)] }
            (ports[i].gateway6Word0, ports[i].gateway6Word1) = macWords(gateway6MAC ?? .zero)
            ports[i].gateway6Resolved = gateway6MAC != nil
            ports[i].kernel = p.kernelInterface != nil
        }
        let backends = UnsafeMutablePointer<BackendEntry>.allocate(capacity: CounterSlots.maxBackends)
        backends.initialize(repeating: BackendEntry(vipSlot: BackendEntry.absent, address: 0, macWord0: 0, macWord1: 0,
                                                    vlan: 0, resolved: false),
                            count: CounterSlots.maxBackends)
        let vips = UnsafeMutablePointer<VIPEntry>.allocate(capacity: max(1, config.vips.count))
        var allBackendSlots: [[Int]] = []
        for (v, vip) in config.vips.enumerated() {
            let vipSlot = slots.slot(vip: vip.name)!
            let backendSlots = vip.backends.map { slots.slot(backend: BackendKey(vip: vip.name, address: $0.address))! }
            allBackendSlots.append(backendSlots)
            for (b, slot) in zip(vip.backends, backendSlots) {
                let known = vip.mode == .l3 ? MACAddress.zero : (b.mac ?? neighbors[b.address])
                let mac = macWords(known ?? .zero)
                backends[slot] = BackendEntry(vipSlot: UInt32(vipSlot), address: b.address.v4?.value ?? 0, macWord0: mac.0,
                                              macWord1: mac.1, vlan: b.vlan ?? 0, resolved: known != nil)
                if let a6 = b.address.v6 { (backends[slot].address6Hi, backends[slot].address6Lo) = (a6.hi, a6.lo) }
            }
            let table = Maglev.build(keys: vip.backends.map { $0.address.description },
                                     weights: vip.backends.map { $0.weight }, size: vip.tableSize)
            let tablePointer = UnsafeMutablePointer<UInt16>.allocate(capacity: table.count)
            tablePointer.initialize(from: table.map { $0 == Maglev.none ? Maglev.none : UInt16(backendSlots[Int($0)]) },
                                    count: table.count)
            vips[v] = VIPEntry(address: vip.address.v4?.value ?? 0, port: vip.port ?? 0, proto: vip.proto.rawValue,
                               mode: vip.mode, hash: vip.hash, slot: UInt32(vipSlot), tableSize: UInt32(vip.tableSize), table: tablePointer)
            if let a6 = vip.address.v6 { (vips[v].address6Hi, vips[v].address6Lo) = (a6.hi, a6.lo) }
            vips[v].quic = vip.quic && vip.proto == .udp
            if vip.mode == .l3 && vip.backendFamily == .v6 {
                vips[v].tunnel6 = true
                vips[v].overheadBytes = UInt32(ipv6OverheadBytes)
            }
            applyEncapsulation(vip, to: &vips[v])
        }
        let v4 = config.vips.indices.filter { config.vips[$0].address.family == .v4 }
        let v6 = config.vips.indices.filter { config.vips[$0].address.family == .v6 }
        let (index, indexMask) = buildIndex4(config, vips, v4)
        let (index6, index6Mask) = buildIndex6(config, vips, v6)
        let distinct = Array(Set(v4.filter { config.vips[$0].prefixLength == nil }.compactMap { config.vips[$0].address.v4 })).sorted()
        let addresses = UnsafeMutablePointer<VIPAddressEntry>.allocate(capacity: max(1, distinct.count))
        addresses.initialize(from: distinct.map { address in
            VIPAddressEntry(address: address.value, echo: config.vips.contains { $0.address == .v4(address) && $0.prefixLength == nil && $0.icmpEcho },
                            fragmentTCP: fragmentVIP(config, .v4(address), .tcp), fragmentUDP: fragmentVIP(config, .v4(address), .udp))
        }, count: distinct.count)
        let distinct6 = Array(Set(v6.filter { config.vips[$0].prefixLength == nil }.compactMap { config.vips[$0].address.v6 })).sorted()
        let addresses6 = UnsafeMutablePointer<VIP6AddressEntry>.allocate(capacity: max(1, distinct6.count))
        addresses6.initialize(from: distinct6.map { address in
            VIP6AddressEntry(hi: address.hi, lo: address.lo,
                             echo: config.vips.contains { $0.address == .v6(address) && $0.prefixLength == nil && $0.icmpEcho },
                             fragmentTCP: fragmentVIP(config, .v6(address), .tcp), fragmentUDP: fragmentVIP(config, .v6(address), .udp))
        }, count: distinct6.count)
        let layout = CounterLayout(ports: config.ports.count)
        let tables = UnsafeMutablePointer<DataplaneTables>.allocate(capacity: 1)
        tables.initialize(to: DataplaneTables(
            ports: ports, portCount: config.ports.count, vips: vips, vipCount: config.vips.count,
            backends: backends, vipIndex: index, vipIndexMask: indexMask,
            vipAddresses: addresses, vipAddressCount: distinct.count, vip6Index: index6, vip6IndexMask: index6Mask,
            vip6Addresses: addresses6, vip6AddressCount: distinct6.count, layout: layout,
            publishedPrefix: layout.vip(slots.vipHighWater), publishedEnd: layout.backend(slots.backendHighWater)))
        tables.pointee.steering = buildSteering(config, backendSlots: allBackendSlots)
        return tables
    }

    /// The VIP that takes fragments to (address, proto): the `*` VIP, else the only one, else none (-1).
    /// With no VIP of that protocol on the address itself, the longest prefix VIP holding it decides, as for its packets.
    static func fragmentVIP(_ config: TulaConfig, _ address: IPAddress, _ proto: L4Protocol) -> Int32 {
        if config.vips.contains(where: { $0.address == address && $0.prefixLength == nil && $0.proto == proto }) {
            return fragmentVIP(config, address, proto, bits: nil)
        }
        let covering = config.vips.filter { $0.prefixLength != nil && $0.proto == proto && $0.covers(address) }
        guard let longest = covering.max(by: { $0.addressBits < $1.addressBits }) else { return -1 }
        return fragmentVIP(config, longest.address, proto, bits: longest.prefixLength)
    }

    /// Builds the tables with slots numbered afresh (for tools and tests; the appliance keeps its
    /// `CounterSlots` across reloads). The config must be within the `CounterSlots` limits.
    public static func build(config: TulaConfig, portMACs macs: [MACAddress]) -> UnsafeMutablePointer<DataplaneTables> {
        var slots = CounterSlots()
        _ = try? slots.assign(config)
        return build(config: config, portMACs: macs, slots: slots)
    }

    /// Frees everything `build` allocated, including `tables` itself.
    public static func destroy(_ tables: UnsafeMutablePointer<DataplaneTables>) {
        let t = tables.pointee
        for v in 0..<t.vipCount { t.vips[v].table.deallocate() }
        t.ports.deallocate(); t.vips.deallocate(); t.backends.deallocate()
        t.vipIndex.deallocate(); t.vipAddresses.deallocate()
        t.vip6Index.deallocate(); t.vip6Addresses.deallocate()
        destroySteering(t.steering)
        tables.deinitialize(count: 1)
        tables.deallocate()
    }

}
