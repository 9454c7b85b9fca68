// The config fuzz target: arbitrary text through ConfigLoader.parse; a refusal names a line of the text, an acceptance holds.

import TulaCore
import TulaDatapath

enum ConfigCheck {
    static let file = "fuzz.yaml"

    static func run(_ input: UnsafeRawBufferPointer) {
        let text = String(decoding: input, as: UTF8.self)
        let config: TulaConfig
        do {
            config = try ConfigLoader.parse(yaml: text, file: file)
        } catch {
            precondition(error.file == file, "a ConfigError names \(error.file), not the file")
            precondition(error.line >= 1 && error.line <= lineCount(text),
                         "a ConfigError at line \(error.line) of a \(lineCount(text))-line text: \(error)")
            precondition(!error.reason.isEmpty, "a ConfigError without a reason")
            return
        }
        checkAccepted(config)
        // Written out by `ctl save`'s writer and read again, the config is the same.
        let again: TulaConfig
        do {
            again = try ConfigLoader.parse(yaml: ConfigWriter.yaml(config), file: file)
        } catch {
            preconditionFailure("an accepted config, written out, is refused: \(error)\n\(ConfigWriter.yaml(config))")
        }
        precondition(again.withoutLines == config.withoutLines,
                     "an accepted config, written out and read again, differs:\n\(ConfigWriter.yaml(config))")
    }

    /// Lines of `text` as an editor shows them: YAML's line breaks (LF, CR LF, CR, NEL, LS, PS), plus a last
    /// line without one; at least 1.
    static func lineCount(_ text: String) -> Int {
        let scalars = Array(text.unicodeScalars)
        var lines = 0
        for (i, scalar) in scalars.enumerated() {
            switch scalar.value {
            case 0x0A: if i == 0 || scalars[i - 1] != "\r" { lines += 1 }
            case 0x0D, 0x85, 0x2028, 0x2029: lines += 1
            default: break
            }
        }
        if let last = scalars.last, ![0x0A, 0x0D, 0x85, 0x2028, 0x2029].contains(last.value) { lines += 1 }
        return max(lines, 1)
    }

    /// What the loader promises of every config it accepts (ConfigModel's documentation and the README).
    static func checkAccepted(_ c: TulaConfig) {
        precondition(!c.ports.isEmpty, "accepted without ports")
        precondition(TulaConfig.flowsPerWorkerRange.contains(c.flowsPerWorker),
                     "flows_per_worker \(c.flowsPerWorker)")
        precondition(c.flowsPerWorker & (c.flowsPerWorker - 1) == 0, "flows_per_worker \(c.flowsPerWorker) not a power of two")
        precondition(TulaConfig.flowIdleTimeoutRange.contains(c.flowIdleTimeoutSeconds), "flow_idle_timeout")
        precondition(c.statsSocket.hasPrefix("/") && c.statsSocket.utf8.count <= TulaConfig.maxSocketPathBytes,
                     "stats_socket \(c.statsSocket)")
        switch c.workers {
        case .count(let n): precondition((1...64).contains(n), "workers \(n)")
        case .lcores(let list):
            precondition(!list.isEmpty && list.count <= 64 && Set(list).count == list.count
                            && list.allSatisfy { (0...1023).contains($0) }, "workers \(list)")
        }
        precondition(Set(c.ports.map(\.name)).count == c.ports.count, "duplicate port names")
        for p in c.ports {
            precondition(!p.name.isEmpty && p.name.unicodeScalars.allSatisfy {
                $0.isASCII && ($0.properties.isAlphabetic || $0.properties.numericType != nil || $0 == "_" || $0 == "-")
            }, "port name \(p.name)")
            precondition(!p.device.isEmpty && (68...9216).contains(p.mtu), "port \(p.name): device or mtu")
            precondition(p.vlan.map { (1...4094).contains($0) } ?? true, "port \(p.name): vlan")
            precondition(p.line >= 1, "port \(p.name) without a line")
        }
        precondition(Set(c.vips.map(\.name)).count == c.vips.count, "duplicate VIP names")
        precondition(c.vips.count <= CounterSlots.maxVIPs, "too many VIPs")
        precondition(c.vips.reduce(0) { $0 + $1.backends.count } <= CounterSlots.maxBackends, "too many backends")
        var endpoints = Set<String>()
        for v in c.vips {
            precondition(endpoints.insert("\(v.address)/\(v.port.map(String.init) ?? "*")/\(v.proto)").inserted,
                         "VIP \(v.name): the same address, port and protocol twice")
            precondition(!v.backends.isEmpty, "VIP \(v.name) without backends")
            precondition(VIPConfig.tableSizeRange.contains(v.tableSize) && isPrime(v.tableSize)
                            && v.tableSize >= 100 * v.backends.count, "VIP \(v.name): table size \(v.tableSize)")
            precondition(v.port != 0, "VIP \(v.name): port 0")
            precondition(v.mode == .l2 || c.ports.allSatisfy { $0.gateway != nil }, "l3 VIP \(v.name) without a gateway")
            precondition(Set(v.backends.map(\.address)).count == v.backends.count, "VIP \(v.name): duplicate backends")
            precondition(v.line >= 1, "VIP \(v.name) without a line")
            for b in v.backends {
                precondition(BackendConfig.weightRange.contains(b.weight), "VIP \(v.name): weight \(b.weight)")
                precondition(b.vlan == nil || (v.mode == .l2 && (1...4094).contains(b.vlan!)), "VIP \(v.name): backend vlan")
                precondition(b.line >= 1, "a backend of \(v.name) without a line")
            }
            if let h = v.healthCheck {
                precondition(h.port != 0 && h.timeoutSeconds <= h.intervalSeconds && h.rise >= 1 && h.fall >= 1,
                             "VIP \(v.name): health check")
            }
        }
        // The control plane's own rules take it as it is.
        var slots = CounterSlots()
        do { try slots.assign(c) } catch { preconditionFailure("an accepted config has no counter slots: \(error)") }
        precondition(c.restartRequired(for: c) == nil, "an accepted config needs a restart to replace itself")
        for v in c.vips {
            let b = v.backends[0]
            do {
                let same = try ConfigEdit.setWeight(vip: v.name, address: b.address, weight: b.weight).applied(to: c)
                precondition(same == c, "setting a weight to its value changed the config")
            } catch {
                preconditionFailure("an accepted config refuses its own weight: \(error)")
            }
        }
    }

    static func isPrime(_ n: Int) -> Bool {
        guard n >= 2 else { return false }
        var d = 2
        while d * d <= n { if n % d == 0 { return false }; d += 1 }
        return true
    }

}
