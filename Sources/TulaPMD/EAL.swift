// Building the EAL argument list from a config, and starting/stopping the EAL (rte_eal_init/cleanup).

import CDPDK
import Foundation
import TulaCore
import TulaDatapath

/// How EAL gets its memory.
public enum MemoryMode: Equatable, Sendable, CustomStringConvertible {
    case hugepages
    case noHuge(megabytes: Int)
    public var description: String {
        switch self {
        case .hugepages: "hugepages"
        case .noHuge(let mb): "no hugepages (--no-huge -m \(mb))"
        }
    }
}

public enum EAL {
    /// Whether a device string names a PCI device (`0000:3b:00.0` or `3b:00.0`) rather than a vdev.
    public static func isPCI(_ device: String) -> Bool {
        PCIAddress(device: device) != nil
    }

    /// The `net_tap` vdev of port index `port`'s kernel interface `interface` (named so it never collides
    /// with a port's own `net_tapN`).
    public static func kernelDevice(port: Int, interface: String) -> String { "net_tap_tula\(port),iface=\(interface)" }

    /// The ethdev name DPDK gives the device (the part before the first comma).
    public static func deviceName(_ device: String) -> String {
        String(device.split(separator: ",", maxSplits: 1).first ?? Substring(device))
    }

    /// Memory the appliance needs from EAL, MiB: mbufs, flow tables, and slack for EAL and drivers (per mbuf:
    /// its slots in the pool's ring and the pcap driver's, rounded up to powers of two). Without hugepages
    /// every mbuf takes a whole 4 KiB page: DPDK does not let a pool object cross a page boundary, and an
    /// mbuf (about 2.3 KiB) leaves no room for a second one.
    public static func requiredMegabytes(config: TulaConfig, mbufs: Int, hugepages: Bool) -> Int {
        let mbufBytes = mbufs * ((hugepages ? Int(tula_default_buf_size()) : 4096) + 256)
        let flowBytes = config.workerCount * FlowTable.bytes(capacity: config.flowsPerWorker)
        return (mbufBytes + flowBytes) / (1 << 20) + 96
    }

    /// Free hugepages, MiB, when a hugetlbfs is mounted where this process may create files (a non-root user
    /// usually may not: it then runs without hugepages rather than failing in EAL), else 0.
    public static func hugepagesAvailableMegabytes() -> Int {
        guard let meminfo = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
              let mounts = try? String(contentsOfFile: "/proc/mounts", encoding: .utf8),
              mounts.split(separator: "\n").contains(where: { line in
                  let fields = line.split(separator: " ")
                  return fields.count > 2 && fields[2] == "hugetlbfs" && access(String(fields[1]), W_OK | X_OK) == 0
              }) else { return 0 }
        var free = 0, size = 0
        for line in meminfo.split(separator: "\n") {
            let parts = line.split(whereSeparator: { $0 == " " || $0 == ":" })
            if parts.first == "HugePages_Free", parts.count > 1 { free = Int(parts[1]) ?? 0 }
            if parts.first == "Hugepagesize", parts.count > 1 { size = (Int(parts[1]) ?? 0) / 1024 }
        }
        return free * size
    }

    /// Hugepages when enough are free, `--no-huge` (with what that needs) otherwise.
    public static func chooseMemory(config: TulaConfig, mbufs: Int) -> MemoryMode {
        if hugepagesAvailableMegabytes() >= requiredMegabytes(config: config, mbufs: mbufs, hugepages: true) {
            return .hugepages
        }
        return .noHuge(megabytes: requiredMegabytes(config: config, mbufs: mbufs, hugepages: false))
    }

    /// The EAL arguments for `config`: lcores (main + workers), devices, memory, file prefix, then `extra`.
    public static func arguments(config: TulaConfig, workerLcores: [LcoreID], mainLcore: LcoreID, memory: MemoryMode,
                                 inMemory: Bool, extra: [String]) -> [String] {
        var args = ["tula-appliance"]
        let cpus = max(1, ProcessInfo.processInfo.activeProcessorCount)
        let lcores = ([mainLcore] + workerLcores).map { "\($0.raw)@\(Int($0.raw) % cpus)" }
        args += ["--lcores", lcores.joined(separator: ","), "--main-lcore", "\(mainLcore.raw)"]
        for port in config.ports {
            if isPCI(port.device) { args += ["-a", port.device] } else { args += ["--vdev", port.device] }
        }
        for (i, port) in config.ports.enumerated() {
            if let name = port.kernelInterface { args += ["--vdev", kernelDevice(port: i, interface: name)] }
        }
        if !config.ports.contains(where: { isPCI($0.device) }) { args.append("--no-pci") }
        switch memory {
        case .hugepages: break
        case .noHuge(let mb): args += ["--no-huge", "-m", "\(mb)"]
        }
        // --in-memory keeps runs independent, but EAL refuses it with --no-huge (legacy memory):
        // then a per-process file prefix does the same job.
        if !extra.contains(where: { $0.hasPrefix("--file-prefix") || $0 == "--in-memory" }) {
            switch (inMemory, memory) {
            case (true, .hugepages): args += ["--in-memory", "--no-telemetry"]
            case (true, .noHuge): args += ["--file-prefix", "tula-\(getpid())", "--no-telemetry"]
            case (false, _): args += ["--file-prefix", "tula"]
            }
        }
        if !extra.contains(where: { $0.hasPrefix("--log-level") }) { args.append("--log-level=lib.eal:warning") }
        return args + extra
    }

    /// `rte_eal_init`: succeeds once per process.
    public static func initialize(_ args: [String]) throws {
        var cArgs = args.map { strdup($0) }
        let rc = cArgs.withUnsafeMutableBufferPointer { buffer in
            rte_eal_init(Int32(buffer.count), buffer.baseAddress)
        }
        // EAL keeps pointers into argv: the strings are deliberately not freed.
        guard rc >= 0 else {
            throw DPDKError("rte_eal_init", -tula_errno(), detail: String(cString: rte_strerror(tula_errno())))
        }
        initialized = true
        _ = cArgs.count
        cArgs.removeAll()
    }

    /// Whether `rte_eal_init` succeeded in this process (so the runtime directory is ours to remove).
    nonisolated(unsafe) private static var initialized = false

    /// `rte_eal_cleanup`, then the removal of EAL's runtime directory (`/var/run/dpdk/<prefix>`: its config and
    /// fbarray files), which EAL leaves behind: nothing can attach to a process that has stopped, and every run
    /// with a per-process prefix (replay, tests) would otherwise leave one more directory.
    public static func cleanup() {
        let runtime = initialized ? String(cString: rte_eal_get_runtime_dir()) : ""
        _ = rte_eal_cleanup()
        guard initialized, runtime.hasPrefix("/"), runtime.contains("/dpdk/") else { return }
        initialized = false
        for name in (try? FileManager.default.contentsOfDirectory(atPath: runtime)) ?? [] {
            unlink("\(runtime)/\(name)")
        }
        rmdir(runtime)
    }
}
