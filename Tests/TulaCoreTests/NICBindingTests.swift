// Tests for NIC binding: PCI addresses, reading a fake sysfs tree, every refusal (and --force), and bind/unbind with rollback.
import Foundation
import Testing
@testable import TulaCore

/// A fake host root in a temporary directory: PCI devices, drivers, IOMMU groups, routes, TCP tables, `ip-addr.json`.
final class FakeSysfs {
    let root: String
    private var ipInterfaces: [[String: Any]] = []
    private var routes: [String] = []
    private var tcp: [String] = []

    init(iommu: Bool = true, drivers: [String] = ["ixgbe", "vfio-pci", "uio_pci_generic"]) throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("tula-sysfs-\(UUID().uuidString)").path
        for directory in ["sys/bus/pci/devices", "sys/kernel/iommu_groups", "proc/net", "sys/class/net"] + drivers.map({ "sys/bus/pci/drivers/\($0)" }) {
            try mkdir(directory)
        }
        if iommu { try mkdir("sys/kernel/iommu_groups/0") }
        try flush()
    }

    deinit { try? FileManager.default.removeItem(atPath: root) }

    var host: HostRoot { HostRoot(root) }

    func mkdir(_ relative: String) throws {
        try FileManager.default.createDirectory(atPath: "\(root)/\(relative)", withIntermediateDirectories: true)
    }

    func write(_ relative: String, _ text: String) throws {
        try mkdir((relative as NSString).deletingLastPathComponent)
        try text.write(toFile: "\(root)/\(relative)", atomically: true, encoding: .utf8)
    }

    func read(_ relative: String) -> String? { try? String(contentsOfFile: "\(root)/\(relative)", encoding: .utf8) }

    /// A PCI device, optionally bound to `driver` (a `driver` link as the kernel makes it) with interface `interface`.
    func addDevice(_ address: String, driver: String? = "ixgbe", interface: String? = "ens1f0", up: Bool = false,
                   addresses: [(String, Int, String)] = [], pciClass: String = "0x020000", iommuGroup: String? = "7") throws {
        let directory = "sys/bus/pci/devices/\(address)"
        try write("\(directory)/class", pciClass + "\n")
        try write("\(directory)/vendor", "0x8086\n")
        try write("\(directory)/device", "0x10fb\n")
        if let driver { try link(address, to: driver) }
        if let group = iommuGroup {
            try mkdir("sys/kernel/iommu_groups/\(group)")
            try FileManager.default.createSymbolicLink(atPath: "\(root)/\(directory)/iommu_group",
                                                       withDestinationPath: "../../../../kernel/iommu_groups/\(group)")
        }
        if let interface {
            try mkdir("\(directory)/net/\(interface)")
            try write("sys/class/net/\(interface)/operstate", up ? "up\n" : "down\n")
            ipInterfaces.append(["ifname": interface, "flags": up ? ["BROADCAST", "UP"] : ["BROADCAST"],
                                 "addr_info": addresses.map { ["family": $0.0.contains(":") ? "inet6" : "inet", "local": $0.0,
                                                               "prefixlen": $0.1, "scope": $0.2] }])
        }
        try flush()
    }

    /// Points the device's `driver` link at `driver` (nil: unbound).
    func link(_ address: String, to driver: String?) throws {
        let path = "\(root)/sys/bus/pci/devices/\(address)/driver"
        try? FileManager.default.removeItem(atPath: path)
        if let driver {
            try mkdir("sys/bus/pci/drivers/\(driver)")
            try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: "../../drivers/\(driver)")
        }
    }

    func defaultRoute(via interface: String) throws {
        routes.append("\(interface)\t00000000\t0101000A\t0003\t0\t0\t0\t00000000\t0\t0\t0")
        try flush()
    }

    /// An established TCP connection on local port 22 from `local` (the /proc/net/tcp hex form, e.g. 0201000A).
    func sshSession(localHex: String) throws {
        tcp.append("   0: \(localHex):0016 0B01000A:D431 01 00000000:00000000 00:00000000 00000000     0        0 1 1")
        try flush()
    }

    private func flush() throws {
        try write("proc/net/route", (["Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT"] + routes)
            .joined(separator: "\n") + "\n")
        try write("proc/net/tcp", (["  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"] + tcp)
            .joined(separator: "\n") + "\n")
        let json = try JSONSerialization.data(withJSONObject: ipInterfaces)
        try write(HostRoot.fakeAddressFile, String(decoding: json, as: UTF8.self))
    }

    /// Reads the tree as `bind` does.
    func observe(_ addresses: [String], ssh: String? = nil) throws -> BindingHostState {
        try host.observe(addresses.map { PCIAddress($0)! },
                         addressJSON: FileManager.default.contents(atPath: "\(root)/\(HostRoot.fakeAddressFile)"), sshConnection: ssh)
    }

    /// A writer that acts as the kernel does on `driver_override`, `unbind` and `bind`: bind honours the override
    /// (ENODEV-like failure for another driver), a bound device refuses bind, a NIC on ixgbe gets its interface.
    /// A write for which `failing(path, value)` holds fails.
    func kernel(failing: ((String, String) -> Bool)? = nil, interfaces: [String: String] = [:]) -> (String, String) throws -> Void {
        { [self] path, value in
            if failing?(path, value) == true { throw BindingError("injected failure: \(value) > \(path)") }
            let relative = String(path.dropFirst(root.count + 1))
            let parts = relative.split(separator: "/").map(String.init)
            if relative.hasSuffix("/driver_override") {
                try write(relative, value + "\n")
            } else if parts.count == 6, parts.prefix(4) == ["sys", "bus", "pci", "drivers"] {
                let device = "sys/bus/pci/devices/\(value)"
                let current = host.driver(of: PCIAddress(value)!)
                if parts[5] == "unbind" {
                    guard current == parts[4] else { throw BindingError("\(path): No such device") }
                    try link(value, to: nil)
                    try? FileManager.default.removeItem(atPath: "\(root)/\(device)/net")
                } else {
                    let override = host.driverOverride(of: PCIAddress(value)!)
                    guard current == nil else { throw BindingError("\(path): Device or resource busy") }
                    guard override == nil || override == parts[4] else { throw BindingError("\(path): No such device") }
                    try link(value, to: parts[4])
                    if parts[4] == "ixgbe", let interface = interfaces[value] { try mkdir("\(device)/net/\(interface)") }
                }
            } else {
                throw BindingError("the fake kernel does not know \(relative)")
            }
        }
    }
}

private func request(_ address: String, port: String = "wan") -> BindRequest {
    BindRequest(address: PCIAddress(address)!, ports: [port])
}

private func plan(_ fake: FakeSysfs, _ addresses: [String] = ["0000:3b:00.0"], ssh: String? = nil, force: Bool = false) throws -> BindingPlan {
    NICBinding.planBind(addresses.map { request($0) }, host: try fake.observe(addresses, ssh: ssh), force: force)
}

@Suite struct PCIAddresses {
    @Test func shortAndLongFormsNormalizeToTheDomainForm() {
        #expect(PCIAddress("3b:00.0")?.description == "0000:3b:00.0")
        #expect(PCIAddress("0000:3B:00.1")?.description == "0000:3b:00.1")
        #expect(PCIAddress("000a:01:1f.7")?.description == "000a:01:1f.7")
        #expect(PCIAddress(device: "0000:3b:00.0,txq_inline=128")?.description == "0000:3b:00.0")
        for bad in ["", "3b:00", "3b:00.8", "g0:00.0", "0:3b:00.0", "net_pcap0", "3b:00.0.0", "00000:3b:00.0", "3b::00.0"] {
            #expect(PCIAddress(bad) == nil, "\(bad)")
        }
    }

    @Test func aConfigsPortsGiveEachDeviceOnceAndSkipVdevs() {
        let ports = [PortConfig(name: "wan", device: "3b:00.0", address: IPv4Address(10, 0, 1, 2)),
                     PortConfig(name: "lan", device: "0000:3b:00.0,foo=1", address: IPv4Address(10, 0, 2, 2)),
                     PortConfig(name: "test", device: "net_pcap0,rx_pcap=a.pcap", address: IPv4Address(10, 0, 3, 2))]
        let (devices, vdevs) = BindRequest.from(ports: ports)
        #expect(devices == [BindRequest(address: PCIAddress("0000:3b:00.0")!, ports: ["wan", "lan"])])
        #expect(vdevs.map(\.name) == ["test"])
        #expect(BindRequest.from(ports: [ports[2]]).devices.isEmpty)
    }
}

@Suite struct NICBindingPlanner {
    @Test func aFreeNICGoesToVfioPCIWithTheExactWrites() throws {
        let fake = try FakeSysfs()
        try fake.addDevice("0000:3b:00.0", addresses: [("fe80::1", 64, "link")])
        let plan = try plan(fake, ["3b:00.0"])
        #expect(plan.refusals.isEmpty && plan.warnings.isEmpty && plan.modules.isEmpty)
        #expect(plan.moves == [DriverMove(address: PCIAddress("3b:00.0")!, ports: ["wan"], from: "ixgbe", to: "vfio-pci",
                                          override: "vfio-pci", interfaces: ["ens1f0"])])
        #expect(plan.moves[0].writes.map { $0.shellLine(root: "/") } == [
            "echo vfio-pci > /sys/bus/pci/devices/0000:3b:00.0/driver_override",
            "echo 0000:3b:00.0 > /sys/bus/pci/drivers/ixgbe/unbind",
            "echo 0000:3b:00.0 > /sys/bus/pci/drivers/vfio-pci/bind",
        ])
    }

    /// A virtio NIC's interface is under `virtioN/net`; missing it made the NIC look busy (no interface).
    @Test func aVirtioNICsInterfaceIsFoundUnderItsVirtioDevice() throws {
        let fake = try FakeSysfs()
        try fake.addDevice("0000:00:03.0", driver: "virtio-pci", interface: nil)
        try fake.mkdir("sys/bus/pci/devices/0000:00:03.0/virtio2/net/eth0")
        try fake.defaultRoute(via: "eth0")
        let plan = try plan(fake, ["0000:00:03.0"])
        #expect(plan.refusals.map(\.reason) == [.defaultRoute])
        #expect(plan.refusals.first?.description.contains("interface eth0 carries the default route") == true)
    }

    @Test func alreadyBoundIsNothingToDo() throws {
        let fake = try FakeSysfs()
        try fake.addDevice("0000:3b:00.0", driver: "vfio-pci", interface: nil)
        for force in [false, true] {
            let plan = try plan(fake, force: force)
            #expect(plan.moves.isEmpty && plan.refusals.isEmpty)
            #expect(plan.notes == ["0000:3b:00.0 (port wan): already bound to vfio-pci; nothing to do"])
        }
    }

    @Test func unknownAddressIsRefusedEvenWithForce() throws {
        let fake = try FakeSysfs()
        for force in [false, true] {
            let plan = try plan(fake, ["0000:3b:00.0"], force: force)
            #expect(plan.refusals.map(\.reason) == [.unknownDevice])
            #expect(plan.refusals.first?.description.contains("no such PCI device") == true)
            #expect(plan.moves.isEmpty)
        }
    }

    @Test func busyDevicesAreRefusedEvenWithForce() throws {
        let fake = try FakeSysfs()
        try fake.addDevice("0000:3b:00.0", interface: nil)                         // kernel driver, no interface here
        try fake.addDevice("0000:3b:00.1", interface: "ens1f1")
        try fake.write("sys/bus/pci/devices/0000:3b:00.1/sriov_numvfs", "4\n")    // SR-IOV VFs in use
        try fake.addDevice("0000:00:17.0", driver: "ahci", interface: nil, pciClass: "0x010601")  // a disk controller
        for force in [false, true] {
            let plan = try plan(fake, ["0000:3b:00.0", "0000:3b:00.1", "0000:00:17.0"], force: force)
            #expect(plan.refusals.map(\.reason) == [.busy, .busy, .notNetworkDevice])
            #expect(plan.refusals[0].description.contains("bound to ixgbe but without a network interface"))
            #expect(plan.refusals[1].description.contains("4 SR-IOV virtual function(s)"))
            #expect(plan.moves.isEmpty)
        }
    }

    @Test func defaultRouteInterfaceIsRefusedUnlessForced() throws {
        let fake = try FakeSysfs()
        try fake.addDevice("0000:3b:00.0", interface: "eno1")
        try fake.defaultRoute(via: "eno1")
        let refused = try plan(fake)
        #expect(refused.refusals.map(\.reason) == [.defaultRoute])
        #expect(refused.refusals.first?.description.contains("interface eno1 carries the default route") == true)
        #expect(refused.moves.isEmpty)
        let forced = try plan(fake, force: true)
        #expect(forced.refusals.isEmpty && forced.moves.count == 1)
        #expect(forced.warnings.first?.contains("taken anyway (--force)") == true)
    }

    @Test func anSSHSessionsAddressIsRefusedUnlessForced() throws {
        let fake = try FakeSysfs()
        try fake.addDevice("0000:3b:00.0", addresses: [("10.0.1.2", 24, "global"), ("2001:db8::2", 64, "global")])
        // SSH_CONNECTION's third field is this host's end; the interface is down, so only the session refuses it.
        let byEnvironment = try plan(fake, ssh: "10.9.9.9 50000 2001:db8:0::2 22")
        #expect(byEnvironment.refusals.map(\.reason) == [.sshSession])
        #expect(byEnvironment.refusals.first?.description.contains("holds 2001:db8::2, the local address of an SSH session") == true)
        // An established connection on port 22 to 10.0.1.2 (0201000A in /proc/net/tcp's byte order).
        try fake.sshSession(localHex: "0201000A")
        let byTable = try plan(fake)
        #expect(byTable.refusals.map(\.reason) == [.sshSession])
        #expect(byTable.refusals.first?.description.contains("holds 10.0.1.2") == true)
        let forced = try plan(fake, force: true)
        #expect(forced.refusals.isEmpty && forced.moves.count == 1)
    }

    @Test func upWithAddressesIsRefusedUnlessForcedButLinkLocalAloneIsNot() throws {
        let fake = try FakeSysfs()
        try fake.addDevice("0000:3b:00.0", up: true, addresses: [("10.0.1.2", 24, "global"), ("fe80::2", 64, "link")])
        try fake.addDevice("0000:3b:00.1", interface: "ens1f1", up: true, addresses: [("fe80::3", 64, "link")])
        let refused = try plan(fake, ["0000:3b:00.0", "0000:3b:00.1"])
        #expect(refused.refusals.map(\.reason) == [.upWithAddresses])
        #expect(refused.refusals.first?.description.contains("interface ens1f0 is up with addresses 10.0.1.2/24") == true)
        #expect(refused.moves.map(\.address.description) == ["0000:3b:00.1"])
        let forced = try plan(fake, ["0000:3b:00.0", "0000:3b:00.1"], force: true)
        #expect(forced.refusals.isEmpty && forced.moves.count == 2)
    }

    @Test func withoutAnIOMMUItIsUioPCIGenericAndSaysWhy() throws {
        let fake = try FakeSysfs(iommu: false)
        try fake.addDevice("0000:3b:00.0", iommuGroup: nil)
        let plan = try plan(fake)
        #expect(plan.moves.map(\.to) == ["uio_pci_generic"])
        #expect(plan.moves.first?.override == "uio_pci_generic")
        #expect(plan.warnings == [NICBinding.noIOMMUWarning])
        #expect(NICBinding.noIOMMUWarning.contains("unrestricted DMA"))
    }

    @Test func aMissingDriverIsLoadedFirst() throws {
        let fake = try FakeSysfs(drivers: ["ixgbe"])
        try fake.addDevice("0000:3b:00.0")
        #expect(try plan(fake).modules == ["vfio-pci"])
    }

    @Test func procTablesAreReadInTheKernelsByteOrder() {
        let tcp = """
              sl  local_address rem_address   st
               0: 0100007F:0016 00000000:0000 0A
               1: 0201000A:0016 0B01000A:D431 01
               2: 0301000A:1F90 0B01000A:D432 01
            """
        #expect(HostRoot.establishedLocalAddresses(tcp, port: 22) == ["10.0.1.2"])
        let tcp6 = """
              sl  local_address                         remote_address                        st
               0: 0000000000000000FFFF00000401000A:0016 0000000000000000FFFF00000B01000A:D431 01
               1: B80D0120000000000000000002000000:0016 B80D0120000000000000000009000000:D431 01
            """
        #expect(HostRoot.establishedLocalAddresses(tcp6, port: 22) == ["10.0.1.4", "2001:db8::2"])
        let route6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth1\n"
            + "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo\n"
        #expect(HostRoot.defaultRouteInterfaces(ipv4: "Iface\n", ipv6: route6) == ["eth1"])
    }
}

@Suite struct NICBindingApply {
    @Test func bindThenUnbindRestoresTheRememberedDriver() throws {
        let fake = try FakeSysfs()
        try fake.addDevice("0000:3b:00.0")
        let kernel = fake.kernel(interfaces: ["0000:3b:00.0": "ens1f0"])
        let executor = NICBindingExecutor(root: fake.host, write: kernel)
        let statePath = fake.host.file(HostRoot.defaultStateFile)
        let bindLines = try executor.bind(try plan(fake), statePath: statePath)
        #expect(bindLines == ["0000:3b:00.0: ixgbe -> vfio-pci (interface ens1f0 is gone until `unbind`)"])
        let address = PCIAddress("0000:3b:00.0")!
        #expect(fake.host.driver(of: address) == "vfio-pci")
        #expect(fake.host.driverOverride(of: address) == "vfio-pci")
        let state = try BindingState.load(path: statePath)
        #expect(state.devices == [BoundDevice(address: "0000:3b:00.0", ports: ["wan"], driver: "ixgbe", interfaces: ["ens1f0"],
                                              boundTo: "vfio-pci")])
        // Binding again is nothing to do.
        #expect(try plan(fake).moves.isEmpty)

        let unbindPlan = NICBinding.planUnbind(nil, remembered: state.devices, host: try fake.observe(["0000:3b:00.0"]), force: false)
        #expect(unbindPlan.refusals.isEmpty)
        #expect(unbindPlan.moves.first?.writes.map { $0.shellLine(root: "/") } == [
            "echo '' > /sys/bus/pci/devices/0000:3b:00.0/driver_override",
            "echo 0000:3b:00.0 > /sys/bus/pci/drivers/vfio-pci/unbind",
            "echo 0000:3b:00.0 > /sys/bus/pci/drivers/ixgbe/bind",
        ])
        #expect(try executor.unbind(unbindPlan, statePath: statePath) == ["0000:3b:00.0: vfio-pci -> ixgbe (interface ens1f0)"])
        #expect(fake.host.driver(of: address) == "ixgbe")
        #expect(fake.host.driverOverride(of: address) == nil)
        #expect(fake.host.list("sys/bus/pci/devices/0000:3b:00.0/net") == ["ens1f0"])
        #expect(!FileManager.default.fileExists(atPath: statePath), "nothing left to remember")
    }

    @Test func aFailurePartWayPutsEveryDeviceAndTheStateFileBack() throws {
        let fake = try FakeSysfs()
        try fake.addDevice("0000:3b:00.0")
        try fake.addDevice("0000:3b:00.1", interface: "ens1f1")
        let statePath = fake.host.file(HostRoot.defaultStateFile)
        let earlier = BindingState(devices: [BoundDevice(address: "0000:5e:00.0", ports: ["old"], driver: "i40e", interfaces: ["p1"],
                                                         boundTo: "vfio-pci")])
        try earlier.save(path: statePath)
        // The second device's bind fails after its unbind went through: it has no driver at that moment.
        let kernel = fake.kernel(failing: { path, value in path.hasSuffix("drivers/vfio-pci/bind") && value == "0000:3b:00.1" },
                                 interfaces: ["0000:3b:00.0": "ens1f0", "0000:3b:00.1": "ens1f1"])
        let executor = NICBindingExecutor(root: fake.host, write: kernel)
        let plan = try plan(fake, ["0000:3b:00.0", "0000:3b:00.1"])
        #expect(plan.moves.count == 2)
        #expect {
            _ = try executor.bind(plan, statePath: statePath)
        } throws: { error in
            let text = "\(error)"
            return text.contains("injected failure: 0000:3b:00.1 > ") && text.contains("0000:3b:00.1 put back on ixgbe")
                && text.contains("0000:3b:00.0 put back on ixgbe")
        }
        for address in ["0000:3b:00.0", "0000:3b:00.1"] {
            #expect(fake.host.driver(of: PCIAddress(address)!) == "ixgbe", "\(address)")
            #expect(fake.host.driverOverride(of: PCIAddress(address)!) == nil, "\(address)")
        }
        #expect(try BindingState.load(path: statePath) == earlier)
    }

    @Test func unbindRefusesWhatItDidNotBindAndWhatChangedSince() throws {
        let fake = try FakeSysfs()
        try fake.addDevice("0000:3b:00.0", driver: "vfio-pci", interface: nil)
        try fake.addDevice("0000:3b:00.1", driver: "igb_uio", interface: nil)
        let remembered = [BoundDevice(address: "0000:3b:00.1", ports: ["lan"], driver: "ixgbe", interfaces: [], boundTo: "vfio-pci")]
        let requests = [request("0000:3b:00.0"), request("0000:3b:00.1", port: "lan")]
        let host = try fake.observe(["0000:3b:00.0", "0000:3b:00.1"])
        let refused = NICBinding.planUnbind(requests, remembered: remembered, host: host, force: false)
        #expect(refused.refusals.map(\.reason) == [.notRemembered, .changedSinceBind])
        let forced = NICBinding.planUnbind(requests, remembered: remembered, host: host, force: true)
        #expect(forced.refusals.map(\.reason) == [.notRemembered])
        #expect(forced.moves.map(\.to) == ["ixgbe"])
    }

    @Test func aCorruptStateFileIsNamed() throws {
        let fake = try FakeSysfs()
        try fake.write(HostRoot.defaultStateFile, "{not json")
        #expect {
            _ = try BindingState.load(path: fake.host.file(HostRoot.defaultStateFile))
        } throws: { "\($0)".contains("bound-devices.json: not a state file") }
    }
}
