// Reading a host (or a fake tree standing for one) for NIC binding, remembering bound devices, and applying a plan with rollback.

import Foundation

/// The file system `bind` reads and writes: `/`, or a directory laid out like it (tests, dry runs).
public struct HostRoot: Sendable {
    public var path: String

    public init(_ path: String = "/") { self.path = path }

    /// The real system's root, where `ip` is asked for addresses and modules can be loaded.
    public var isSystem: Bool { URL(fileURLWithPath: path).standardizedFileURL.path == "/" }

    /// The absolute path of `relative` (`sys/bus/pci/...`) under this root.
    public func file(_ relative: String) -> String { HostPaths.join(path, relative) }

    /// The file's text without surrounding white space, nil when it cannot be read.
    public func read(_ relative: String) -> String? {
        (try? String(contentsOfFile: file(relative), encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    public func exists(_ relative: String) -> Bool { FileManager.default.fileExists(atPath: file(relative)) }

    /// The entries of a directory, sorted; empty when it is missing.
    public func list(_ relative: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: file(relative))) ?? []).sorted()
    }

    /// The driver bound to `address` (last component of its `driver` link), nil when none.
    public func driver(of address: PCIAddress) -> String? {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: file("sys/bus/pci/devices/\(address)/driver")))
            .map { URL(fileURLWithPath: $0).lastPathComponent }
    }

    /// The device's `driver_override`, nil when unset (the kernel shows `(null)`).
    public func driverOverride(of address: PCIAddress) -> String? {
        guard let value = read("sys/bus/pci/devices/\(address)/driver_override"), !value.isEmpty, value != "(null)" else { return nil }
        return value
    }

    /// Where `ip -j addr show` output is kept in a fake tree (the real system is asked instead).
    public static let fakeAddressFile = "ip-addr.json"
    /// The state file, relative to the root.
    public static let defaultStateFile = "var/lib/tula/bound-devices.json"

    /// Reads what the planner needs about `addresses` and the host. `addressJSON` is `ip -j addr show`'s output
    /// (nil: no addresses known); `sshConnection` is `$SSH_CONNECTION`.
    public func observe(_ addresses: [PCIAddress], addressJSON: Data?, sshConnection: String?) throws -> BindingHostState {
        let listing = try addressJSON.map(HostRoot.interfaceAddresses(fromIPJSON:)) ?? [:]
        let defaultRoutes = HostRoot.defaultRouteInterfaces(ipv4: read("proc/net/route") ?? "",
                                                            ipv6: read("proc/net/ipv6_route") ?? "")
        var devices: [PCIAddress: PCIDeviceState] = [:]
        for address in addresses {
            let directory = "sys/bus/pci/devices/\(address)"
            guard exists(directory) else {
                devices[address] = PCIDeviceState(address: address, exists: false)
                continue
            }
            // A virtio NIC's interface hangs off its virtio device (`virtio2/net/eth0`), not the PCI function.
            let netDirectories = ["\(directory)/net"] + list(directory).filter { $0.hasPrefix("virtio") }.map { "\(directory)/\($0)/net" }
            let interfaces = netDirectories.flatMap { net in list(net).map { (net, $0) } }.map { net, name in
                let ip = listing[name]
                let operstate = read("sys/class/net/\(name)/operstate") ?? read("\(net)/\(name)/operstate")
                return NetInterfaceState(name: name, isUp: operstate == "up" || (ip?.adminUp ?? false),
                                         addresses: ip?.all ?? [], usedAddresses: ip?.used ?? [],
                                         carriesDefaultRoute: defaultRoutes.contains(name))
            }
            let iommuGroup = (try? FileManager.default.destinationOfSymbolicLink(atPath: file("\(directory)/iommu_group")))
                .map { URL(fileURLWithPath: $0).lastPathComponent }
            devices[address] = PCIDeviceState(
                address: address, driver: driver(of: address),
                pciClass: read("\(directory)/class").flatMap { UInt32($0.hasPrefix("0x") ? String($0.dropFirst(2)) : $0, radix: 16) },
                interfaces: interfaces, iommuGroup: iommuGroup,
                virtualFunctions: read("\(directory)/sriov_numvfs").flatMap { Int($0) } ?? 0)
        }
        var ssh = Set<String>()
        if let server = sshConnection?.split(separator: " ").dropFirst(2).first, let address = canonicalIP(String(server)) {
            ssh.insert(address)
        }
        ssh.formUnion(HostRoot.establishedLocalAddresses(read("proc/net/tcp") ?? "", port: 22))
        ssh.formUnion(HostRoot.establishedLocalAddresses(read("proc/net/tcp6") ?? "", port: 22))
        return BindingHostState(iommuEnabled: !list("sys/kernel/iommu_groups").isEmpty,
                                loadedDrivers: Set(list("sys/bus/pci/drivers")), sshAddresses: ssh, devices: devices)
    }

    /// Per interface from `ip -j addr show`: administratively up, every address, and the global ones with prefix.
    static func interfaceAddresses(fromIPJSON data: Data) throws -> [String: (adminUp: Bool, all: [String], used: [String])] {
        guard let list = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]] else {
            throw HostStateError("`ip -j addr show` output is not a JSON array of interfaces")
        }
        var out: [String: (adminUp: Bool, all: [String], used: [String])] = [:]
        for item in list {
            guard let name = item["ifname"] as? String else { continue }
            var all: [String] = [], used: [String] = []
            for info in item["addr_info"] as? [[String: Any]] ?? [] {
                guard let local = (info["local"] as? String).flatMap(canonicalIP) else { continue }
                all.append(local)
                let scope = info["scope"] as? String ?? "global"
                if scope != "link" && scope != "host" {
                    used.append(local + ((info["prefixlen"] as? Int).map { "/\($0)" } ?? ""))
                }
            }
            out[name] = ((item["flags"] as? [String] ?? []).contains("UP"), all, used)
        }
        return out
    }

    /// Interfaces a default route leaves by: `/proc/net/route` lines with destination and mask 00000000, and
    /// `/proc/net/ipv6_route` lines for ::/0 (except the kernel's unreachable one on `lo`).
    static func defaultRouteInterfaces(ipv4: String, ipv6: String) -> Set<String> {
        var out = Set<String>()
        for line in ipv4.split(separator: "\n").dropFirst() {
            let f = line.split(whereSeparator: \.isWhitespace)
            if f.count >= 8 && f[1] == "00000000" && f[7] == "00000000" { out.insert(String(f[0])) }
        }
        for line in ipv6.split(separator: "\n") {
            let f = line.split(whereSeparator: \.isWhitespace)
            if f.count >= 10 && f[0].allSatisfy({ $0 == "0" }) && f[1] == "00" && f[9] != "lo" { out.insert(String(f[9])) }
        }
        return out
    }

    /// Local addresses of established (state 01) TCP connections on local `port`, from `/proc/net/tcp` or `tcp6`
    /// (hex, each 32-bit word in the host's little-endian order).
    static func establishedLocalAddresses(_ table: String, port: Int) -> Set<String> {
        var out = Set<String>()
        for line in table.split(separator: "\n").dropFirst() {
            let f = line.split(whereSeparator: \.isWhitespace)
            guard f.count > 3, f[3] == "01" else { continue }
            let local = f[1].split(separator: ":")
            guard local.count == 2, Int(local[1], radix: 16) == port, local[0].count % 8 == 0 else { continue }
            var bytes: [UInt8] = []
            var word = local[0][...]
            while !word.isEmpty {
                guard let value = UInt32(word.prefix(8), radix: 16) else { bytes = []; break }
                bytes += [UInt8(value & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value >> 16 & 0xFF), UInt8(value >> 24)]
                word = word.dropFirst(8)
            }
            if let text = ipText(bytes) { out.insert(text) }
        }
        return out
    }
}

/// An IPv4 or IPv6 address in one canonical text form (`inet_ntop`'s; an IPv4-mapped IPv6 address as IPv4),
/// nil when `text` is neither.
public func canonicalIP(_ text: String) -> String? {
    var v4 = in_addr(), v6 = in6_addr()
    if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { ipText(Array($0)) } }
    if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: &v6) { ipText(Array($0)) } }
    return nil
}

/// Text of 4 or 16 address bytes (network order).
private func ipText(_ bytes: [UInt8]) -> String? {
    if bytes.count == 16 && bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF {
        return ipText(Array(bytes[12...]))
    }
    guard bytes.count == 4 || bytes.count == 16 else { return nil }
    var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
    let ok = bytes.withUnsafeBytes { inet_ntop(bytes.count == 4 ? AF_INET : AF_INET6, $0.baseAddress, &buffer, socklen_t(buffer.count)) }
    return ok == nil ? nil : String(cString: buffer)
}

// MARK: - The state file

/// The devices `bind` took, in a JSON file (`{"devices":[...]}`), so `unbind` can give them back.
public struct BindingState: Codable, Sendable, Equatable {
    public var devices: [BoundDevice]

    public init(devices: [BoundDevice] = []) { self.devices = devices }

    /// The file's contents; empty when it does not exist; an error naming the file when it cannot be read or parsed.
    public static func load(path: String) throws -> BindingState {
        guard FileManager.default.fileExists(atPath: path) else { return BindingState() }
        do {
            return try JSONDecoder().decode(BindingState.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw BindingError("\(path): not a state file of `tula-appliance bind` (\(error.localizedDescription)); "
                + "move it away to start afresh")
        }
    }

    /// Writes the file (or removes it when no device is left), through a temporary file and a rename.
    public func save(path: String) throws {
        if devices.isEmpty {
            if FileManager.default.fileExists(atPath: path) {
                do { try FileManager.default.removeItem(atPath: path) } catch {
                    throw BindingError("cannot remove \(path): \(error.localizedDescription)")
                }
            }
            return
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        do {
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                    withIntermediateDirectories: true)
            try (encoder.encode(self) + Data("\n".utf8)).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw BindingError("cannot write \(path): \(error.localizedDescription)")
        }
    }
}

extension BindingState {
    /// Puts the file back byte for byte as it was (`original`), or removes it when there was none; false on failure.
    static func restore(path: String, _ original: Data?) -> Bool {
        guard let original else {
            return !FileManager.default.fileExists(atPath: path) || (try? FileManager.default.removeItem(atPath: path)) != nil
        }
        return (try? original.write(to: URL(fileURLWithPath: path), options: .atomic)) != nil
    }
}

/// A bind or unbind that failed, with what was put back.
public struct BindingError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

// MARK: - Applying a plan

/// Carries out a plan's moves one device at a time, checking each; when one fails, every device already moved (and
/// the failing one) is put back on the driver and `driver_override` it had, and the state file as it was.
public struct NICBindingExecutor {
    public var root: HostRoot
    /// Writes `value` and a newline to the absolute path; the default opens the file write-only (creating it only
    /// under a fake root: real sysfs attributes exist or the write is wrong).
    public var write: (_ path: String, _ value: String) throws -> Void
    /// Called after each write (a dry run prints the same lines without calling this executor).
    public var log: (String) -> Void

    public init(root: HostRoot, log: @escaping (String) -> Void = { _ in },
                write: ((_ path: String, _ value: String) throws -> Void)? = nil) {
        self.root = root
        self.log = log
        let create = !root.isSystem
        self.write = write ?? { path, value in try NICBindingExecutor.writeAttribute(path, value, create: create) }
    }

    static func writeAttribute(_ path: String, _ value: String, create: Bool) throws {
        let fd = open(path, O_WRONLY | O_TRUNC | (create ? O_CREAT : 0), 0o644)
        guard fd >= 0 else { throw BindingError("cannot open \(path): \(errnoText())") }
        defer { close(fd) }
        let bytes = Array((value + "\n").utf8)
        let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard n == bytes.count else {
            throw BindingError("writing '\(value)' to \(path) failed: \(n < 0 ? errnoText() : "short write")")
        }
    }

    /// `bind`: remembers the devices in the state file first (a crash part way still leaves the record `unbind`
    /// needs), then moves them. Returns a line per device.
    public func bind(_ plan: BindingPlan, statePath: String) throws -> [String] {
        var after = try BindingState.load(path: statePath)
        let original = FileManager.default.contents(atPath: statePath)
        for move in plan.moves {
            after.devices.removeAll { $0.address == move.address.description }
            after.devices.append(BoundDevice(address: move.address.description, ports: move.ports, driver: move.from,
                                             interfaces: move.interfaces, boundTo: move.to ?? ""))
        }
        if !plan.moves.isEmpty { try after.save(path: statePath) }
        do {
            try perform(plan.moves)
        } catch {
            throw BindingError("\(error)" + (BindingState.restore(path: statePath, original) ? ""
                : "; the state file \(statePath) could not be restored"))
        }
        return plan.moves.map { move in
            "\(move.address): \(move.from ?? "no driver") -> \(move.to ?? "no driver")"
                + (move.interfaces.isEmpty ? "" : " (interface \(move.interfaces.joined(separator: ", ")) is gone until `unbind`)")
        }
    }

    /// `unbind`: moves the devices back, then forgets them in the state file. Returns a line per device.
    public func unbind(_ plan: BindingPlan, statePath: String) throws -> [String] {
        var state = try BindingState.load(path: statePath)
        try perform(plan.moves)
        let done = Set(plan.moves.map(\.address.description) + plan.forget.map(\.description))
        state.devices.removeAll { done.contains($0.address) }
        try state.save(path: statePath)
        return plan.moves.map { move in
            let now = root.list("sys/bus/pci/devices/\(move.address)/net")
            var line = "\(move.address): \(move.from ?? "no driver") -> \(move.to ?? "no driver")"
            if !now.isEmpty { line += " (interface \(now.joined(separator: ", ")))" }
            if !move.interfaces.isEmpty && now != move.interfaces {
                line += "; it was \(move.interfaces.joined(separator: ", ")) before `bind`"
            }
            return line
        }
    }

    /// Moves every device, or none: on a failure, puts back the failing device and every one before it (newest first).
    func perform(_ moves: [DriverMove]) throws {
        var done: [(move: DriverMove, override: String?)] = []
        for move in moves {
            let override = root.driverOverride(of: move.address)
            do {
                for step in move.writes {
                    try write(root.file(step.path), step.value)
                    log(step.shellLine(root: root.path))
                }
                let now = root.driver(of: move.address)
                guard now == move.to else {
                    throw BindingError("\(move.address) did not end on \(move.to ?? "no driver"): its driver is \(now ?? "none")")
                }
                done.append((move, override))
            } catch {
                var report = "\(error)"
                for (undo, override) in ([(move, override)] + done.reversed()) {
                    if let problem = restore(undo.address, driver: undo.from, override: override) {
                        report += "; could not put \(undo.address) back: \(problem)"
                    } else {
                        report += "; \(undo.address) put back on \(undo.from ?? "no driver")"
                    }
                }
                throw BindingError(report)
            }
        }
    }

    /// Puts a device back on `driver` with `override`, whatever it is bound to now; nil on success, else why not.
    func restore(_ address: PCIAddress, driver: String?, override: String?) -> String? {
        var problems: [String] = []
        let now = root.driver(of: address)
        let writes = [SysfsWrite(path: "sys/bus/pci/devices/\(address)/driver_override", value: override ?? "")]
            + (now == driver ? [] : DriverMove.writes(address, from: now, to: driver, override: nil).dropFirst())
        for step in writes {
            do {
                try write(root.file(step.path), step.value)
                log(step.shellLine(root: root.path))
            } catch {
                problems.append("\(error)")
            }
        }
        let after = root.driver(of: address)
        if after != driver { problems.append("its driver is \(after ?? "none")") }
        return problems.isEmpty ? nil : problems.joined(separator: "; ")
    }
}
