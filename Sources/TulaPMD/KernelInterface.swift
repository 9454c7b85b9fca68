// The kernel exception interfaces: checks before EAL starts, addresses and MTU with iproute2, VIP host routes.

import Foundation
import TulaCore

/// What Tula does to a port's kernel interface (a `net_tap` TAP owned by this process) besides moving frames:
/// refuse a run that cannot create it, give it the port's addresses, and keep one host route per servable VIP.
public enum KernelInterface {
    /// Tula's routing protocol number (`TulaRoutes`).
    public static let routeProtocol = TulaRoutes.protocolNumber

    /// How long `stop` keeps serving after it withdrew the VIP routes: long enough for the routing daemon's BGP
    /// withdrawal to leave through the port and the routers to move the traffic (seconds).
    public static let withdrawGraceSeconds = 1.0

    /// Why the configured kernel interfaces cannot be created, nil when they can: a name already taken by an
    /// interface of this network namespace, no `/dev/net/tun`, or not root (a TAP needs CAP_NET_ADMIN).
    /// Checked before EAL starts, so no packet moves when it fails.
    public static func preflightProblem(_ config: TulaConfig) -> String? {
        let kernelPorts = config.ports.filter { $0.kernelInterface != nil }
        guard !kernelPorts.isEmpty else { return nil }
        for port in kernelPorts {
            let name = port.kernelInterface!
            if FileManager.default.fileExists(atPath: "/sys/class/net/\(name)") {
                return "kernel_interface \"\(name)\" of port \(port.name): an interface with that name exists already"
            }
        }
        let fd = open("/dev/net/tun", O_RDWR)
        if fd < 0 {
            return "kernel_interface needs /dev/net/tun, which cannot be opened (\(errnoText())): load the tun module "
                + "and run as root"
        }
        close(fd)
        if geteuid() != 0 {
            return "kernel_interface needs root (CAP_NET_ADMIN) to create a TAP interface"
        }
        return nil
    }

    /// Runs `ip ARGS`; returns its exit status and what it wrote to stderr.
    @discardableResult
    public static func ip(_ args: [String]) -> (status: Int32, error: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: FileManager.default.fileExists(atPath: "/usr/sbin/ip") ? "/usr/sbin/ip" : "/sbin/ip")
        process.arguments = args
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        do { try process.run() } catch { return (-1, "cannot run ip: \(error)") }
        let data = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Gives interface `name` the port's MAC, MTU and addresses (IPv4 with `kernel_prefix_length`, IPv6 with
    /// `kernel_prefix_length6`, no duplicate address detection) and no link-local address (Tula answers
    /// neighbor solicitations for `address6` only), and brings it up. Throws the first failing command.
    public static func configure(_ name: String, port: PortConfig, mac: MACAddress) throws {
        var commands: [[String]] = [
            ["link", "set", "dev", name, "down"],
            ["link", "set", "dev", name, "address", mac.description, "mtu", "\(port.mtu)", "addrgenmode", "none"],
            ["addr", "flush", "dev", name],
            ["addr", "add", "\(port.address)/\(port.kernelPrefixLength)", "dev", name],
        ]
        if let a6 = port.address6 {
            commands.append(["-6", "addr", "add", "\(a6)/\(port.kernelPrefixLength6)", "dev", name, "nodad"])
        }
        commands.append(["link", "set", "dev", name, "up"])
        for command in commands {
            let (status, error) = ip(command)
            guard status == 0 else {
                throw DPDKError(message: "kernel_interface \(name) of port \(port.name): `ip \(command.joined(separator: " "))` failed: \(error)")
            }
        }
    }

    /// The host routes (`VIP/32`, `VIP/128`) Tula's protocol holds on interface `name` now.
    public static func routes(on name: String) -> Set<IPAddress> {
        var found = Set<IPAddress>()
        for family in ["-4", "-6"] {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: FileManager.default.fileExists(atPath: "/usr/sbin/ip") ? "/usr/sbin/ip" : "/sbin/ip")
            process.arguments = [family, "route", "show", "dev", name, "proto", "\(routeProtocol)"]
            let out = Pipe()
            process.standardOutput = out
            process.standardError = FileHandle.nullDevice
            guard (try? process.run()) != nil else { continue }
            let data = out.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
                guard let first = line.split(separator: " ").first else { continue }
                let text = String(first.split(separator: "/").first ?? first)
                if let a = IPAddress(text) { found.insert(a) }
            }
        }
        return found
    }

    /// Makes Tula's host routes on `name` exactly `wanted`: adds the missing (`ip route replace`, so a route
    /// left by someone else is taken over) and deletes the others. Returns what changed, for the log.
    public static func syncRoutes(on name: String, wanted: Set<IPAddress>, have: Set<IPAddress>) -> (added: [IPAddress], removed: [IPAddress]) {
        var added: [IPAddress] = [], removed: [IPAddress] = []
        for a in wanted.subtracting(have).sorted() {
            let prefix = a.family == .v4 ? "\(a)/32" : "\(a)/128"
            if ip(["route", "replace", prefix, "dev", name, "proto", "\(routeProtocol)"]).status == 0 { added.append(a) }
        }
        for a in have.subtracting(wanted).sorted() {
            let prefix = a.family == .v4 ? "\(a)/32" : "\(a)/128"
            if ip(["route", "del", prefix, "dev", name, "proto", "\(routeProtocol)"]).status == 0 { removed.append(a) }
        }
        return (added, removed)
    }
}
