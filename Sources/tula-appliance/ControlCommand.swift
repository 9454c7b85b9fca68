// `tula-appliance ctl`: live changes to a running appliance over its control socket (root only).

import ArgumentParser
import TulaCore
import TulaStats

struct ControlCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ctl",
        abstract: "Change a running appliance: add or remove a backend, set a weight, reload the config.",
        discussion: """
            Each change is sent to the appliance's control socket and applied without stopping the \
            workers; flows pinned to a backend that stays keep it. Only root may make changes. The \
            appliance answers with what it did, or with why it refused (then nothing changed).
            """,
        subcommands: [AddBackend.self, RemoveBackend.self, SetWeight.self, Reload.self, Save.self])

    /// Sends a change and prints the appliance's answer (exit status 1 when refused).
    static func send(_ request: ControlRequest, via socket: SocketOptions) throws {
        let object = try socket.send(request)
        print(object["message"] as? String ?? "done")
    }

    /// Parses an `--address` value.
    static func address(_ text: String) throws -> IPAddress {
        guard let address = IPAddress(text) else { throw ValidationError("--address: \"\(text)\" is not an IPv4 or IPv6 address") }
        return address
    }

    struct AddBackend: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "add-backend", abstract: "Add a backend to a VIP.")
        @OptionGroup var socket: SocketOptions
        @Option(help: "The VIP's name.") var vip: String
        @Option(help: "The backend's IPv4 or IPv6 address.") var address: String
        @Option(help: "The backend's MAC (l2 VIPs).") var mac: String?
        @Option(help: "Relative share of new flows, 0...1000.") var weight = 1

        func run() throws {
            var parsedMAC: MACAddress? = nil
            if let mac {
                guard let value = MACAddress(mac) else { throw ValidationError("--mac: \"\(mac)\" is not a MAC address") }
                parsedMAC = value
            }
            let backend = BackendConfig(address: try ControlCommand.address(address), mac: parsedMAC, weight: weight)
            try ControlCommand.send(.edit(.addBackend(vip: vip, backend: backend)), via: socket)
        }
    }

    struct RemoveBackend: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "remove-backend", abstract: "Remove a backend from a VIP (its flows move to the others).")
        @OptionGroup var socket: SocketOptions
        @Option(help: "The VIP's name.") var vip: String
        @Option(help: "The backend's IPv4 or IPv6 address.") var address: String

        func run() throws {
            try ControlCommand.send(.edit(.removeBackend(vip: vip, address: try ControlCommand.address(address))), via: socket)
        }
    }

    struct SetWeight: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set-weight", abstract: "Set a backend's weight (0 drains: no new flows, existing flows stay).")
        @OptionGroup var socket: SocketOptions
        @Option(help: "The VIP's name.") var vip: String
        @Option(help: "The backend's IPv4 or IPv6 address.") var address: String
        @Option(help: "Relative share of new flows, 0...1000.") var weight: Int

        func run() throws {
            try ControlCommand.send(.edit(.setWeight(vip: vip, address: try ControlCommand.address(address), weight: weight)),
                                    via: socket)
        }
    }

    struct Reload: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "reload",
            abstract: "Re-read the config file the appliance was started with (like SIGHUP); an invalid file changes nothing.")
        @OptionGroup var socket: SocketOptions

        func run() throws { try ControlCommand.send(.reload, via: socket) }
    }

    struct Save: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "save",
            abstract: "Write the running config (with ctl changes) to its file, or --to FILE; the old file stays as FILE.bak.",
            discussion: "The file is replaced atomically (a new file renamed over it), so a restart keeps what was changed live.")
        @OptionGroup var socket: SocketOptions
        @Option(help: "Where to write (an absolute path; default: the file the appliance was started with).") var to: String?

        func validate() throws {
            if let to, !to.hasPrefix("/") { throw ValidationError("--to: \"\(to)\" must be an absolute path") }
        }

        func run() throws { try ControlCommand.send(.save(to: to), via: socket) }
    }
}
