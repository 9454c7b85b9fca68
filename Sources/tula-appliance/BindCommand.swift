// `tula-appliance bind` and `unbind`: give the config's PCI NICs to vfio-pci (or uio_pci_generic) through sysfs, and back.

import ArgumentParser
import Foundation
import TulaCore
import TulaPMD

/// Options `bind` and `unbind` share.
struct BindingOptions: ParsableArguments {
    @Flag(name: .customLong("dry-run"), help: "Print the modprobe and sysfs writes it would make, and change nothing.")
    var dryRun = false

    @Flag(help: "Take a device whose interface carries the default route, an SSH session's address, or is up with addresses.")
    var force = false

    @Option(name: .customLong("sysfs-root"),
            help: "A directory laid out like / to read and write instead of the real /sys and /proc (default: $TULA_SYSFS_ROOT, else /).")
    var sysfsRoot: String?

    @Option(name: .customLong("state-file"),
            help: "Where bound devices and their kernel drivers are remembered (default: var/lib/tula/bound-devices.json under the root).")
    var stateFile: String?

    /// `--sysfs-root`, else `$TULA_SYSFS_ROOT` when set and not empty, else `/`.
    var root: HostRoot {
        HostRoot(sysfsRoot ?? ProcessInfo.processInfo.environment["TULA_SYSFS_ROOT"].flatMap { $0.isEmpty ? nil : $0 } ?? "/")
    }

    var statePath: String { stateFile ?? root.file(HostRoot.defaultStateFile) }

    func validate() throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ValidationError("sysfs root '\(root.path)' is not a directory")
        }
    }

    /// Exits with status 1 when a real change is asked for without root.
    func requireRootUnlessDryRun(_ verb: String) throws {
        guard !dryRun, root.isSystem, getuid() != 0 else { return }
        printError("\(verb) writes to /sys: run it as root (or with --dry-run to see what it would do); nothing changed")
        throw ExitCode(exitRuntimeError)
    }

    /// Takes `STATE.lock` (flock, held until exit) so two bind/unbind runs cannot interleave their sysfs writes and
    /// state-file updates; exit status 1 when another run holds it. Not needed for a dry run.
    func lockOrExit(_ verb: String) throws {
        guard !dryRun else { return }
        let path = statePath + ".lock"
        try? FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                 withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            printError("\(verb): cannot open \(path): \(errnoText()); nothing changed")
            throw ExitCode(exitRuntimeError)
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            printError("\(verb): another tula-appliance bind or unbind is running (\(path) is locked); nothing changed")
            throw ExitCode(exitRuntimeError)
        }
        // Deliberately left open: the lock lasts as long as this process.
    }

    /// The host's state for `addresses`, or exit status 1 with the reason.
    func observeOrExit(_ addresses: [PCIAddress], withAddresses: Bool) throws -> BindingHostState {
        do {
            var json: Data?
            if withAddresses {
                if root.isSystem {
                    let listing = HostInspection.run(["ip", "-j", "addr", "show"])
                    guard listing.status == 0 else { throw HostStateError("`ip -j addr show` failed: \(listing.output)") }
                    json = Data(listing.output.utf8)
                } else {
                    json = FileManager.default.contents(atPath: root.file(HostRoot.fakeAddressFile))
                }
            }
            return try root.observe(addresses, addressJSON: json,
                                    sshConnection: ProcessInfo.processInfo.environment["SSH_CONNECTION"])
        } catch {
            printError("cannot inspect the host's NICs: \(error); nothing changed")
            throw ExitCode(exitRuntimeError)
        }
    }

    /// Prints warnings and notes; with refusals, prints them and exits with status 1.
    func report(_ plan: BindingPlan) throws {
        plan.warnings.forEach(printWarning)
        plan.notes.forEach { print($0) }
        guard plan.refusals.isEmpty else {
            plan.refusals.forEach { printError($0.description) }
            let devices = Set(plan.refusals.map(\.address)).count
            printError("\(devices) device\(devices == 1 ? "" : "s") refused; nothing changed")
            throw ExitCode(exitRuntimeError)
        }
    }

    /// A dry run: the commands, in order, and nothing done.
    func printDryRun(_ plan: BindingPlan, stateLine: String?) {
        for module in plan.modules { print("modprobe \(module)") }
        for move in plan.moves {
            print("# \(move.address): \(move.from ?? "no driver") -> \(move.to ?? "no driver")")
            for write in move.writes { print(write.shellLine(root: root.path)) }
        }
        if let stateLine { print(stateLine) }
        print("dry run: nothing changed")
    }

    /// Prints the vdev ports as skipped; the PCI devices of the config.
    func devices(of config: TulaConfig) -> [BindRequest] {
        let (devices, vdevs) = BindRequest.from(ports: config.ports)
        for port in vdevs { print("port \(port.name): \(EAL.deviceName(port.device)) is a DPDK vdev; nothing to bind") }
        return devices
    }
}

struct BindCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bind",
        abstract: "Bind the config's PCI NICs to vfio-pci (uio_pci_generic without an IOMMU), remembering their kernel drivers.",
        discussion: """
            Refuses a device (exit status 1, nothing changed) that is not in sysfs, is not a network device, or is \
            busy: on a kernel driver that gives it no network interface here, or with SR-IOV virtual functions enabled. \
            Unless --force, also one whose interface carries the default route, holds the local address of an SSH \
            session, or is up with addresses. A device already on vfio-pci, uio_pci_generic or igb_uio, and a \
            Mellanox NIC (its kernel driver serves DPDK), are left as they are.

            Each device gets driver_override, is unbound from its kernel driver and bound to the user-space one, \
            then checked; if any step fails, every device is put back and the state file restored. \
            `tula-appliance unbind` gives them back.
            """)

    @Option(help: "The config whose ports' PCI devices are bound.")
    var config: String

    @OptionGroup var options: BindingOptions

    func run() throws {
        let config = try loadConfigOrExit(config)
        let requests = options.devices(of: config)
        guard !requests.isEmpty else {
            print("no port of \(self.config) names a PCI device; nothing to bind")
            return
        }
        try options.requireRootUnlessDryRun("bind")
        let root = options.root
        let host = try options.observeOrExit(requests.map(\.address), withAddresses: true)
        let plan = NICBinding.planBind(requests, host: host, force: options.force)
        try options.report(plan)
        guard !plan.moves.isEmpty else { return }
        if options.dryRun {
            let remembered = plan.moves.map { "\($0.address) (\($0.from ?? "no driver"))" }.joined(separator: ", ")
            options.printDryRun(plan, stateLine: "# remember \(remembered) in \(options.statePath)")
            return
        }
        try options.lockOrExit("bind")
        for module in plan.modules {
            guard root.isSystem else {
                printError("driver \(module) is not loaded under \(root.path) (no sys/bus/pci/drivers/\(module)); modprobe "
                    + "runs only against /; nothing changed")
                throw ExitCode(exitRuntimeError)
            }
            let result = HostInspection.run(["modprobe", module])
            guard result.status == 0, root.exists("sys/bus/pci/drivers/\(module)") else {
                printError("cannot load \(module): `modprobe \(module)` \(result.status == 0 ? "gave no sys/bus/pci/drivers/\(module)" : "failed: \(result.output)"); nothing changed")
                throw ExitCode(exitRuntimeError)
            }
            print("modprobe \(module)")
        }
        do {
            let executor = NICBindingExecutor(root: root)
            for line in try executor.bind(plan, statePath: options.statePath) { print(line) }
            print("remembered in \(options.statePath); `tula-appliance unbind` gives them back")
        } catch {
            printError("bind failed: \(error)")
            throw ExitCode(exitRuntimeError)
        }
    }
}

struct UnbindCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unbind",
        abstract: "Give devices taken by `bind` back to the kernel drivers they had (the config's, or every remembered one).",
        discussion: """
            Clears driver_override, unbinds each device from its user-space driver and binds it to the kernel driver \
            remembered in the state file, then checks; if any step fails, every device is put back where it was. \
            Interface addresses and routes are not restored: that is the network configuration's job.
            """)

    @Option(help: "Give back only this config's PCI devices (default: every device `bind` remembered).")
    var config: String?

    @OptionGroup var options: BindingOptions

    func run() throws {
        var requests: [BindRequest]?
        if let path = config {
            requests = options.devices(of: try loadConfigOrExit(path))
            if requests?.isEmpty == true {
                print("no port of \(path) names a PCI device; nothing to give back")
                return
            }
        }
        let state: BindingState
        do { state = try BindingState.load(path: options.statePath) } catch {
            printError("\(error); nothing changed")
            throw ExitCode(exitRuntimeError)
        }
        if requests == nil && state.devices.isEmpty {
            print("no device is remembered in \(options.statePath); nothing to give back")
            return
        }
        try options.requireRootUnlessDryRun("unbind")
        let addresses = Set((requests ?? []).map(\.address) + state.devices.compactMap { PCIAddress($0.address) })
        let host = try options.observeOrExit(addresses.sorted(), withAddresses: false)
        let plan = NICBinding.planUnbind(requests, remembered: state.devices, host: host, force: options.force)
        try options.report(plan)
        guard !plan.moves.isEmpty || !plan.forget.isEmpty else { return }
        if options.dryRun {
            let forgotten = plan.moves.map(\.address) + plan.forget
            options.printDryRun(plan, stateLine: "# forget \(forgotten.map(\.description).joined(separator: ", ")) in \(options.statePath)")
            return
        }
        try options.lockOrExit("unbind")
        do {
            let executor = NICBindingExecutor(root: options.root)
            for line in try executor.unbind(plan, statePath: options.statePath) { print(line) }
        } catch {
            printError("unbind failed: \(error)")
            throw ExitCode(exitRuntimeError)
        }
    }
}
