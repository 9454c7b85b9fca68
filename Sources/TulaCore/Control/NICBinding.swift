// What `bind` and `unbind` do to a host's NICs, decided without touching it: observed state in, plan or refusals out.

/// The drivers DPDK reaches a PCI NIC through from user space.
public enum UserSpaceDriver: String, Sendable, CaseIterable {
    /// Needs an IOMMU; DMA is confined to the memory the process mapped.
    case vfioPCI = "vfio-pci"
    /// Works without an IOMMU; the device can DMA anywhere in memory.
    case uioPCIGeneric = "uio_pci_generic"

    /// Every driver name that means "already given to user space" (`igb_uio` is DPDK's out-of-tree module).
    public static let names: Set<String> = Set(allCases.map(\.rawValue) + ["igb_uio"])
}

/// One network interface of a PCI device, as the kernel shows it.
public struct NetInterfaceState: Sendable, Equatable {
    public var name: String
    /// `operstate` is `up`, or the interface is administratively up (`ip` flag `UP`).
    public var isUp: Bool
    /// Every address on the interface (canonical text, no prefix), link-local ones included.
    public var addresses: [String]
    /// The addresses that count as "in use" (global and site scope, `addr/prefix`): link-local ones every up
    /// IPv6 interface has are left out.
    public var usedAddresses: [String]
    /// An IPv4 or IPv6 default route leaves through this interface.
    public var carriesDefaultRoute: Bool

    public init(name: String, isUp: Bool = false, addresses: [String] = [], usedAddresses: [String] = [],
                carriesDefaultRoute: Bool = false) {
        self.name = name
        self.isUp = isUp
        self.addresses = addresses
        self.usedAddresses = usedAddresses
        self.carriesDefaultRoute = carriesDefaultRoute
    }
}

/// One PCI device as sysfs shows it.
public struct PCIDeviceState: Sendable, Equatable {
    public var address: PCIAddress
    /// `/sys/bus/pci/devices/<address>` exists.
    public var exists: Bool
    /// The bound driver's name (the `driver` link's target), nil when none is bound.
    public var driver: String?
    /// The `class` file (`0x020000` is an Ethernet controller), nil when unreadable.
    public var pciClass: UInt32?
    /// The kernel's network interfaces of the device (`net/`), in this network namespace.
    public var interfaces: [NetInterfaceState]
    /// The device's IOMMU group, nil when it has none (no IOMMU).
    public var iommuGroup: String?
    /// Virtual functions enabled on it (`sriov_numvfs`).
    public var virtualFunctions: Int

    public init(address: PCIAddress, exists: Bool = true, driver: String? = nil, pciClass: UInt32? = 0x020000,
                interfaces: [NetInterfaceState] = [], iommuGroup: String? = nil, virtualFunctions: Int = 0) {
        self.address = address
        self.exists = exists
        self.driver = driver
        self.pciClass = pciClass
        self.interfaces = interfaces
        self.iommuGroup = iommuGroup
        self.virtualFunctions = virtualFunctions
    }

    /// PCI base class 0x02: network controller.
    public var isNetworkDevice: Bool { pciClass.map { $0 >> 16 == 0x02 } ?? true }
}

/// Everything the planner looks at.
public struct BindingHostState: Sendable, Equatable {
    /// `/sys/kernel/iommu_groups` has groups: the kernel runs with an IOMMU.
    public var iommuEnabled: Bool
    /// Drivers with a directory under `/sys/bus/pci/drivers` (loaded or built in).
    public var loadedDrivers: Set<String>
    /// Local addresses of SSH sessions (canonical text): `SSH_CONNECTION`'s server side and established TCP
    /// connections on port 22.
    public var sshAddresses: Set<String>
    public var devices: [PCIAddress: PCIDeviceState]

    public init(iommuEnabled: Bool, loadedDrivers: Set<String>, sshAddresses: Set<String> = [],
                devices: [PCIAddress: PCIDeviceState]) {
        self.iommuEnabled = iommuEnabled
        self.loadedDrivers = loadedDrivers
        self.sshAddresses = sshAddresses
        self.devices = devices
    }
}

/// A device the config names, with the ports that name it.
public struct BindRequest: Sendable, Equatable {
    public var address: PCIAddress
    public var ports: [String]

    public init(address: PCIAddress, ports: [String]) {
        self.address = address
        self.ports = ports
    }

    /// `0000:3b:00.0 (port wan)`, for messages.
    public var label: String { "\(address) (port\(ports.count > 1 ? "s" : "") \(ports.joined(separator: ", ")))" }

    /// The PCI devices of a config's ports, in config order, each once (`3b:00.0` and `0000:3b:00.0` are one
    /// device), and the vdev ports, which have nothing to bind.
    public static func from(ports: [PortConfig]) -> (devices: [BindRequest], vdevPorts: [PortConfig]) {
        var devices: [BindRequest] = []
        var vdevs: [PortConfig] = []
        for port in ports {
            guard let address = PCIAddress(device: port.device) else { vdevs.append(port); continue }
            if let index = devices.firstIndex(where: { $0.address == address }) {
                devices[index].ports.append(port.name)
            } else {
                devices.append(BindRequest(address: address, ports: [port.name]))
            }
        }
        return (devices, vdevs)
    }
}

/// Why a device is not taken.
public enum BindRefusalReason: String, Sendable, Equatable {
    case unknownDevice = "unknown-device"
    case notNetworkDevice = "not-a-network-device"
    case busy
    case defaultRoute = "default-route"
    case sshSession = "ssh-session"
    case upWithAddresses = "up-with-addresses"
    case notRemembered = "not-remembered"
    case changedSinceBind = "changed-since-bind"

    /// `--force` takes the device anyway: the operator says the interface is theirs to give up.
    public var isForceable: Bool {
        switch self {
        case .defaultRoute, .sshSession, .upWithAddresses, .changedSinceBind: true
        case .unknownDevice, .notNetworkDevice, .busy, .notRemembered: false
        }
    }
}

/// A device that is not taken, and the sentence that says why.
public struct BindRefusal: Sendable, Equatable, CustomStringConvertible {
    public var address: PCIAddress
    public var reason: BindRefusalReason
    public var description: String
}

/// One write to a sysfs attribute; `path` is relative to the host root (`sys/bus/pci/...`).
public struct SysfsWrite: Sendable, Equatable {
    public var path: String
    public var value: String

    /// `echo VALUE > /ROOT/PATH`, the line a dry run prints (an empty value clears the attribute).
    public func shellLine(root: String) -> String {
        "echo \(BackendCommand.shellQuoted(value)) > " + BackendCommand.shellQuoted(HostPaths.join(root, path))
    }
}

/// Moving one device from the driver it has to another (or to none), through sysfs.
public struct DriverMove: Sendable, Equatable {
    public var address: PCIAddress
    public var ports: [String]
    /// The driver bound now (nil: none).
    public var from: String?
    /// The driver it must end on (nil: none).
    public var to: String?
    /// `driver_override` after the move (the user-space driver for `bind`, cleared for `unbind`), so that no other
    /// driver claims the device, e.g. when its module is reloaded.
    public var override: String?
    /// The kernel interfaces the device had on its kernel driver (for the state file and messages).
    public var interfaces: [String]

    public init(address: PCIAddress, ports: [String], from: String?, to: String?, override: String?, interfaces: [String]) {
        self.address = address
        self.ports = ports
        self.from = from
        self.to = to
        self.override = override
        self.interfaces = interfaces
    }

    /// The writes, in order: set (or clear) `driver_override`, unbind from the current driver, bind to the new one.
    public var writes: [SysfsWrite] { DriverMove.writes(address, from: from, to: to, override: override) }

    static func writes(_ address: PCIAddress, from: String?, to: String?, override: String?) -> [SysfsWrite] {
        var writes = [SysfsWrite(path: "sys/bus/pci/devices/\(address)/driver_override", value: override ?? "")]
        if let from { writes.append(SysfsWrite(path: "sys/bus/pci/drivers/\(from)/unbind", value: "\(address)")) }
        if let to { writes.append(SysfsWrite(path: "sys/bus/pci/drivers/\(to)/bind", value: "\(address)")) }
        return writes
    }
}

/// What `bind` or `unbind` will do: the moves, modules to load first, and what it says.
public struct BindingPlan: Sendable, Equatable {
    /// Modules to `modprobe` before any write (their driver directory is missing).
    public var modules: [String] = []
    public var moves: [DriverMove] = []
    /// Lines for the operator: devices with nothing to do.
    public var notes: [String] = []
    /// Choices the operator must know about: uio_pci_generic for want of an IOMMU, refusals overridden by `--force`.
    public var warnings: [String] = []
    /// Devices not taken. When any remains, nothing is done at all.
    public var refusals: [BindRefusal] = []
    /// Addresses whose state-file record goes away without a move (`unbind` of a device already back on its driver).
    public var forget: [PCIAddress] = []

    public init() {}
}

/// A device `bind` took, as the state file remembers it.
public struct BoundDevice: Codable, Sendable, Equatable {
    public var address: String
    public var ports: [String]
    /// The kernel driver it had (nil: none).
    public var driver: String?
    public var interfaces: [String]
    /// The user-space driver it was given.
    public var boundTo: String

    enum CodingKeys: String, CodingKey {
        case address, ports, driver, interfaces
        case boundTo = "bound_to"
    }

    public init(address: String, ports: [String], driver: String?, interfaces: [String], boundTo: String) {
        self.address = address
        self.ports = ports
        self.driver = driver
        self.interfaces = interfaces
        self.boundTo = boundTo
    }
}

/// The planner. "Busy" means the device is in use in a way only its owner can end, so even `--force` does not take
/// it: bound to a kernel driver that gives it no network interface here (a storage or RDMA function, or a NIC whose
/// interface was moved into another network namespace, e.g. a container's), or with SR-IOV virtual functions
/// enabled (unbinding the physical function destroys them under whoever uses them).
public enum NICBinding {
    /// Kernel drivers of NICs that DPDK drives through the kernel driver itself (bifurcated): left as they are.
    public static let bifurcatedDrivers: Set<String> = ["mlx4_core", "mlx5_core"]

    /// The user-space driver for a device: vfio-pci with an IOMMU, else uio_pci_generic.
    public static func target(for device: PCIDeviceState, host: BindingHostState) -> UserSpaceDriver {
        host.iommuEnabled && device.iommuGroup != nil ? .vfioPCI : .uioPCIGeneric
    }

    /// Why uio_pci_generic is less safe, said whenever it is chosen.
    public static let noIOMMUWarning = "no IOMMU: using uio_pci_generic, which gives the NIC unrestricted DMA to all of this "
        + "host's memory (no isolation: a bad descriptor from the data path or a faulty device can overwrite any memory, "
        + "including the kernel's); to get vfio-pci, enable the IOMMU in firmware and boot with intel_iommu=on or amd_iommu=on"

    /// The plan for `bind`: refusals for devices it must not take (all refusals, not just the first), moves for
    /// the others, and notes for devices with nothing to do.
    public static func planBind(_ requests: [BindRequest], host: BindingHostState, force: Bool) -> BindingPlan {
        var plan = BindingPlan()
        var warnedNoIOMMU = false
        for request in requests {
            let label = request.label
            guard let device = host.devices[request.address], device.exists else {
                plan.refuse(request.address, .unknownDevice, "\(label): no such PCI device (nothing at "
                    + "/sys/bus/pci/devices/\(request.address)); `lspci -D` lists this host's devices", force: force)
                continue
            }
            if let driver = device.driver, UserSpaceDriver.names.contains(driver) {
                plan.notes.append("\(label): already bound to \(driver); nothing to do")
                continue
            }
            guard device.isNetworkDevice else {
                let pciClass = device.pciClass.map { "0x" + String($0, radix: 16) } ?? "?"
                plan.refuse(request.address, .notNetworkDevice, "\(label): not a network device (PCI class \(pciClass), "
                    + "a NIC's is 0x02xxxx); check the address in the config", force: force)
                continue
            }
            if let driver = device.driver, bifurcatedDrivers.contains(driver) {
                plan.notes.append("\(label): stays on \(driver): DPDK drives Mellanox NICs through their kernel driver; nothing to do")
                continue
            }
            if let driver = device.driver, device.interfaces.isEmpty {
                plan.refuse(request.address, .busy, "\(label): busy: bound to \(driver) but without a network interface in "
                    + "this namespace (not a NIC function, or its interface was moved to another network namespace); "
                    + "free it from \(driver) first", force: force)
                continue
            }
            if device.virtualFunctions > 0 {
                plan.refuse(request.address, .busy, "\(label): busy: \(device.virtualFunctions) SR-IOV virtual function(s) "
                    + "enabled; unbinding would destroy them (echo 0 > /sys/bus/pci/devices/\(request.address)/sriov_numvfs "
                    + "once they are unused)", force: force)
                continue
            }
            var refusedHere = false
            for interface in device.interfaces {
                let on = "\(label): interface \(interface.name)"
                if interface.carriesDefaultRoute {
                    refusedHere = plan.refuse(request.address, .defaultRoute, "\(on) carries the default route; taking it "
                        + "would cut this host off the network (use --force if that is what you want)", force: force) || refusedHere
                }
                if let ssh = interface.addresses.first(where: host.sshAddresses.contains) {
                    refusedHere = plan.refuse(request.address, .sshSession, "\(on) holds \(ssh), the local address of an "
                        + "SSH session; taking it would cut that session (use --force if that is what you want)",
                        force: force) || refusedHere
                }
                if interface.isUp && !interface.usedAddresses.isEmpty {
                    refusedHere = plan.refuse(request.address, .upWithAddresses, "\(on) is up with addresses "
                        + "\(interface.usedAddresses.joined(separator: ", ")): this host is using it; `ip link set "
                        + "\(interface.name) down` and `ip addr flush dev \(interface.name)` first, or use --force",
                        force: force) || refusedHere
                }
            }
            if refusedHere { continue }
            let target = target(for: device, host: host)
            if target == .uioPCIGeneric && !warnedNoIOMMU {
                plan.warnings.append(noIOMMUWarning)
                warnedNoIOMMU = true
            }
            if !host.loadedDrivers.contains(target.rawValue) && !plan.modules.contains(target.rawValue) {
                plan.modules.append(target.rawValue)
            }
            plan.moves.append(DriverMove(address: request.address, ports: request.ports, from: device.driver,
                                         to: target.rawValue, override: target.rawValue,
                                         interfaces: device.interfaces.map(\.name)))
        }
        return plan
    }

    /// The plan for `unbind`: give each remembered device back to the kernel driver it had. `requests` nil means
    /// every remembered device; a requested device that was not remembered is refused when it is on a user-space
    /// driver (its kernel driver is unknown) and noted otherwise.
    public static func planUnbind(_ requests: [BindRequest]?, remembered: [BoundDevice], host: BindingHostState,
                                  force: Bool) -> BindingPlan {
        var plan = BindingPlan()
        let records = Dictionary(remembered.compactMap { record in PCIAddress(record.address).map { ($0, record) } },
                                 uniquingKeysWith: { first, _ in first })
        let wanted = requests ?? remembered.compactMap { record in
            PCIAddress(record.address).map { BindRequest(address: $0, ports: record.ports) }
        }
        for request in wanted {
            let label = request.label
            guard let device = host.devices[request.address], device.exists else {
                plan.refuse(request.address, .unknownDevice, "\(label): no such PCI device (nothing at "
                    + "/sys/bus/pci/devices/\(request.address))", force: force)
                continue
            }
            guard let record = records[request.address] else {
                if let driver = device.driver, UserSpaceDriver.names.contains(driver) {
                    plan.refuse(request.address, .notRemembered, "\(label): bound to \(driver), but not by "
                        + "`tula-appliance bind`, so its kernel driver is unknown; give it back by hand: "
                        + "echo '' > /sys/bus/pci/devices/\(request.address)/driver_override; echo \(request.address) > "
                        + "/sys/bus/pci/drivers/\(driver)/unbind; echo \(request.address) > /sys/bus/pci/drivers_probe",
                        force: force)
                } else {
                    plan.notes.append("\(label): not bound by `tula-appliance bind` (driver \(device.driver ?? "none")); nothing to do")
                }
                continue
            }
            if device.driver == record.driver {
                plan.notes.append("\(label): already on \(record.driver ?? "no driver"); nothing to do")
                plan.forget.append(request.address)
                continue
            }
            if let driver = device.driver, driver != record.boundTo {
                if plan.refuse(request.address, .changedSinceBind, "\(label): now bound to \(driver), not to "
                    + "\(record.boundTo) as `bind` left it; use --force to move it to \(record.driver ?? "no driver")",
                    force: force) { continue }
            }
            plan.moves.append(DriverMove(address: request.address, ports: request.ports, from: device.driver,
                                         to: record.driver, override: nil, interfaces: record.interfaces))
        }
        return plan
    }
}

extension BindingPlan {
    /// Records a refusal unless `force` overrides it; returns whether the device is refused.
    @discardableResult
    mutating func refuse(_ address: PCIAddress, _ reason: BindRefusalReason, _ sentence: String, force: Bool) -> Bool {
        if force && reason.isForceable {
            warnings.append("\(sentence.split(separator: ";").first ?? Substring(sentence)); taken anyway (--force)")
            return false
        }
        refusals.append(BindRefusal(address: address, reason: reason, description: sentence))
        return true
    }
}

/// Joining a host root and a path relative to it.
public enum HostPaths {
    /// `/sys/...` for the root `/`, `ROOT/sys/...` otherwise.
    public static func join(_ root: String, _ relative: String) -> String {
        (root.hasSuffix("/") ? root : root + "/") + relative
    }
}
