// Writes a TulaConfig back as YAML that ConfigLoader reads to the same config, and saves it atomically with a .bak.
import Foundation

/// The running config as a file (`ctl save`): every setting the loader reads, in the README's key order,
/// strings quoted. `ConfigLoader.parse(yaml: ConfigWriter.yaml(c))` equals `c` but for line numbers.
public enum ConfigWriter {
    public static func yaml(_ config: TulaConfig, header: [String] = []) -> String {
        var out = header.map { "# \($0)\n" }.joined()
        out += "ports:\n"
        for p in config.ports {
            out += "  - name: \(quoted(p.name))\n"
            out += "    device: \(quoted(p.device))\n"
            out += "    address: \(quoted(p.address.description))\n"
            if let mac = p.mac { out += "    mac: \(quoted(mac.description))\n" }
            if let gateway = p.gateway { out += "    gateway: \(quoted(gateway.description))\n" }
            if let mac = p.gatewayMAC { out += "    gateway_mac: \(quoted(mac.description))\n" }
            if let a = p.address6 { out += "    address6: \(quoted(a.description))\n" }
            if let g = p.gateway6 { out += "    gateway6: \(quoted(g.description))\n" }
            if let mac = p.gateway6MAC { out += "    gateway6_mac: \(quoted(mac.description))\n" }
            out += "    mtu: \(p.mtu)\n"
            if let vlan = p.vlan { out += "    vlan: \(vlan)\n" }
            if let name = p.kernelInterface {
                out += "    kernel_interface: \(quoted(name))\n"
                out += "    kernel_rate: \(p.kernelRate)\n    kernel_burst: \(p.kernelBurst)\n"
                out += "    kernel_prefix_length: \(p.kernelPrefixLength)\n"
                if p.address6 != nil { out += "    kernel_prefix_length6: \(p.kernelPrefixLength6)\n" }
            }
        }
        switch config.workers {
        case .count(let n): out += "workers: \(n)\n"
        case .lcores(let ids): out += "workers: [\(ids.map(String.init).joined(separator: ", "))]\n"
        }
        out += "flows_per_worker: \(config.flowsPerWorker)\n"
        out += "flow_idle_timeout: \(config.flowIdleTimeoutSeconds)\n"
        out += "stats_socket: \(quoted(config.statsSocket))\n"
        if let listen = config.metricsListen { out += "metrics_listen: \(quoted(listen))\n" }
        out += "gratuitous_arp: \(config.gratuitousARP)\n"
        if config.adaptivePolling { out += "poll: adaptive\n" }
        out += config.vips.isEmpty ? "vips: []\n" : "vips:\n"
        for v in config.vips {
            out += "  - name: \(quoted(v.name))\n"
            out += "    address: \(quoted(v.addressText))\n"
            out += "    port: \(v.portEnd == nil ? v.port.map(String.init) ?? quoted("*") : quoted(v.portText))\n"
            if v.quic { out += "    quic: true\n" }
            out += "    protocol: \(v.proto)\n"
            out += "    mode: \(v.mode)\n"
            out += "    hash: \(v.hash)\n"
            out += "    icmp_echo: \(v.icmpEcho)\n"
            let e = v.encapsulation
            if e.kind != .ipip { out += "    encap: \(e.kind)\n" }
            if e.guePort != Encapsulation.defaultGUEPort { out += "    gue_port: \(e.guePort)\n" }
            if let prefix = e.outerSource { out += "    outer_source: \(quoted(prefix.description))\n" }
            if let dscp = e.dscp { out += "    dscp: \(dscp)\n" }
            if e.remark { out += "    remark: true\n" }
            if let check = v.healthCheck {
                out += "    health_check:\n"
                out += "      type: \(check.kind)\n"
                out += "      port: \(check.port)\n"
                if check.kind == .http {
                    out += "      path: \(quoted(check.path))\n"
                    out += "      expect_status: \(check.expectStatus)\n"
                }
                out += "      interval: \(number(check.intervalSeconds))\n"
                out += "      timeout: \(number(check.timeoutSeconds))\n"
                out += "      rise: \(check.rise)\n"
                out += "      fall: \(check.fall)\n"
            }
            out += "    maglev_table_size: \(v.tableSize)\n"
            out += "    backends:\n"
            for b in v.backends {
                out += "      - address: \(quoted(b.address.description))\n"
                if let mac = b.mac { out += "        mac: \(quoted(mac.description))\n" }
                out += "        weight: \(b.weight)\n"
                if let vlan = b.vlan { out += "        vlan: \(vlan)\n" }
                if let id = b.quicServerID { out += "        quic_server_id: \(id)\n" }
            }
        }
        return out
    }

    /// A YAML double-quoted scalar: the JSON string literal (JSON's escapes are a subset of YAML's).
    static func quoted(_ s: String) -> String { jsonString(s) }

    /// `2` for whole numbers, `0.5` otherwise.
    static func number(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value)
    }

    /// Writes `config` to `path` so that a crash at any moment leaves either the old file or the new one:
    /// the text is checked by loading it back, written to a new temp file beside `path` and synced, the old
    /// file is copied to `path.bak` (replacing an older one), and the temp file is renamed over `path`. Keeps
    /// the old file's mode and owner (0640 root when there was none). Returns what was done, for the log.
    @discardableResult
    public static func save(_ config: TulaConfig, to requested: String, header: [String] = []) throws(ControlError) -> String {
        // A config that is a symlink (say into a checkout) stays one: the file it points to is replaced.
        let path = (requested as NSString).resolvingSymlinksInPath
        let text = yaml(config, header: header)
        let reread: TulaConfig
        do { reread = try ConfigLoader.parse(yaml: text, file: path) } catch {
            throw ControlError("not saved: the written config would not load (\(error)); this is a bug")
        }
        guard reread.withoutLines == config.withoutLines else {
            throw ControlError("not saved: the written config would load differently; this is a bug")
        }
        let directory = (path as NSString).deletingLastPathComponent
        var old = stat()
        let exists = stat(path, &old) == 0
        if exists && (old.st_mode & S_IFMT) != S_IFREG { throw ControlError("not saved: \(path) is not a regular file") }
        var template = Array("\(directory.isEmpty ? "." : directory)/.tula-save.XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw ControlError("not saved: cannot create a file in \(directory): \(errnoText())") }
        let temp = String(cString: template)
        var done = false
        defer { if !done { unlink(temp) } }
        let bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            let n = bytes[written...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { close(fd); throw ControlError("not saved: writing \(temp): \(errnoText())") }
            written += n
        }
        _ = fchmod(fd, exists ? old.st_mode & 0o7777 : 0o640)
        if exists { _ = fchown(fd, old.st_uid, old.st_gid) }
        let synced = fsync(fd) == 0
        let syncError = errnoText()
        let closed = close(fd) == 0
        guard synced, closed else { throw ControlError("not saved: syncing \(temp): \(synced ? errnoText() : syncError)") }
        var note = "saved the running config to \(path)"
        if exists {
            do {
                let backup = path + ".bak"
                if FileManager.default.fileExists(atPath: backup + ".new") { try FileManager.default.removeItem(atPath: backup + ".new") }
                try FileManager.default.copyItem(atPath: path, toPath: backup + ".new")
                guard rename(backup + ".new", backup) == 0 else { throw ControlError("rename: \(errnoText())") }
                note += " (the previous file is \(backup))"
            } catch {
                throw ControlError("not saved: cannot keep the previous file as \(path).bak: \(error)")
            }
        }
        guard rename(temp, path) == 0 else { throw ControlError("not saved: rename \(temp) -> \(path): \(errnoText())") }
        done = true
        return note
    }
}

extension TulaConfig {
    /// The same config with every line number 0, to compare configs read from different texts.
    public var withoutLines: TulaConfig {
        var c = self
        for i in c.ports.indices { c.ports[i].line = 0 }
        for v in c.vips.indices {
            c.vips[v].line = 0
            for b in c.vips[v].backends.indices { c.vips[v].backends[b].line = 0 }
        }
        return c
    }
}
