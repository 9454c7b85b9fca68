// The control socket's line protocol, without I/O: requests parsed and encoded, responses written and read
// back (a stats response into a Summary), and the framing of request lines.

import Foundation
import TulaCore
import TulaDatapath

/// Longest request line the control server reads, newline included, in bytes.
public let controlMaxRequestBytes = 4096

/// One request of the control protocol: a single-line JSON object with a `cmd` key.
///
/// ```
/// {"cmd":"stats"}
/// {"cmd":"add-backend","vip":"web","address":"10.0.1.14","mac":"02:00:00:00:01:14","weight":1}
/// {"cmd":"remove-backend","vip":"web","address":"10.0.1.12"}
/// {"cmd":"set-weight","vip":"web","address":"10.0.1.11","weight":0}
/// {"cmd":"reload"}
/// {"cmd":"save","to":"/etc/tula/tula.yaml"}
/// ```
public enum ControlRequest: Sendable, Equatable {
    /// The counters of the running appliance (`stats`).
    case stats
    /// A backend change (`add-backend`, `remove-backend`, `set-weight`).
    case edit(ConfigEdit)
    /// Re-read the config file (`reload`), as SIGHUP does.
    case reload
    /// Write the running config back to a file (`save`; nil: the file the appliance was started with).
    case save(to: String?)

    /// Every command name, as sent in `cmd`.
    public static let commands = ["stats", "add-backend", "remove-backend", "set-weight", "reload", "save"]

    /// The command name sent in `cmd`.
    public var command: String {
        switch self {
        case .stats: "stats"
        case .reload: "reload"
        case .save: "save"
        case .edit(.addBackend): "add-backend"
        case .edit(.removeBackend): "remove-backend"
        case .edit(.setWeight): "set-weight"
        }
    }

    /// Whether the request changes the running config (allowed to root peers only).
    public var isMutating: Bool { self != .stats }

    /// Why a peer with user id `uid` (nil: unknown) may not make this request, or nil when it may.
    public func refusal(peerUID uid: UInt32?) -> String? {
        guard isMutating, uid != 0 else { return nil }
        let who = uid.map { "uid \($0)" } ?? "an unidentified peer"
        return "permission denied: \(command) changes the running config and needs a root peer (this is \(who))"
    }

    /// Parses one request line (without its newline). Throws a `ControlError` that says what is wrong.
    public static func parse(_ line: String) throws(ControlError) -> ControlRequest {
        let fields: [String: JSONScalar]
        do {
            fields = try JSONDecoder().decode([String: JSONScalar].self, from: Data(line.utf8))
        } catch {
            throw ControlError("malformed request: expected one JSON object on one line, e.g. {\"cmd\":\"stats\"}")
        }
        if let key = duplicateTopLevelKey(line) {
            throw ControlError("malformed request: key \"\(key)\" is given twice")
        }
        var reader = FieldReader(fields: fields)
        let command = try reader.string("cmd")
        let request: ControlRequest
        switch command {
        case "stats": request = .stats
        case "reload": request = .reload
        case "save":
            let to = try reader.optionalString("to")
            if let to, !to.hasPrefix("/") { throw ControlError("to: \"\(to)\" must be an absolute path") }
            if let to, to.hasControlCharacters {
                throw ControlError("to: the path has a control character")
            }
            request = .save(to: to)
        case "add-backend":
            let vip = try reader.string("vip"), address = try reader.address("address")
            var mac: MACAddress? = nil
            if let text = try reader.optionalString("mac") {
                guard let parsed = MACAddress(text) else { throw ControlError("mac: \"\(text)\" is not a MAC address") }
                mac = parsed
            }
            let weight = try reader.optionalInteger("weight") ?? 1
            request = .edit(.addBackend(vip: vip, backend: BackendConfig(address: address, mac: mac, weight: weight)))
        case "remove-backend":
            request = .edit(.removeBackend(vip: try reader.string("vip"), address: try reader.address("address")))
        case "set-weight":
            request = .edit(.setWeight(vip: try reader.string("vip"), address: try reader.address("address"),
                                       weight: try reader.integer("weight")))
        default:
            throw ControlError("unknown command \"\(command)\" (expected one of \(commands.joined(separator: ", ")))")
        }
        if let extra = reader.unread.sorted().first {
            throw ControlError("\(command): unknown key \"\(extra)\"")
        }
        return request
    }

    /// The request as a line to send (without the newline); `parse` reads it back unchanged.
    public var line: String {
        var fields: [(String, String)] = [("cmd", jsonString(command))]
        switch self {
        case .stats, .reload, .save(to: nil): break
        case .save(let to?): fields.append(("to", jsonString(to)))
        case .edit(.addBackend(let vip, let backend)):
            fields += [("vip", jsonString(vip)), ("address", jsonString(backend.address.description))]
            if let mac = backend.mac { fields.append(("mac", jsonString(mac.description))) }
            fields.append(("weight", "\(backend.weight)"))
        case .edit(.removeBackend(let vip, let address)):
            fields += [("vip", jsonString(vip)), ("address", jsonString(address.description))]
        case .edit(.setWeight(let vip, let address, let weight)):
            fields += [("vip", jsonString(vip)), ("address", jsonString(address.description)), ("weight", "\(weight)")]
        }
        return jsonObject(fields)
    }
}

/// The first key that occurs twice at the top level of `json` (a valid JSON object), compared after unescaping;
/// nil when there is none. JSONDecoder keeps one of the two values silently, so a request such as
/// `{"cmd":"stats","cmd":"reload"}` would mean whatever the decoder happened to keep.
func duplicateTopLevelKey(_ json: String) -> String? {
    let bytes = Array(json.utf8)
    var seen = Set<String>()
    var depth = 0
    var i = 0
    var expectKey = false
    while i < bytes.count {
        switch bytes[i] {
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            depth += 1
            expectKey = depth == 1 && bytes[i] == UInt8(ascii: "{")
        case UInt8(ascii: "}"), UInt8(ascii: "]"):
            depth -= 1
        case UInt8(ascii: ","):
            expectKey = depth == 1
        case UInt8(ascii: "\""):
            let start = i
            i += 1
            while i < bytes.count && bytes[i] != UInt8(ascii: "\"") { i += bytes[i] == UInt8(ascii: "\\") ? 2 : 1 }
            if expectKey, i < bytes.count,
               let key = try? JSONDecoder().decode(String.self, from: Data(bytes[start...i])) {
                if !seen.insert(key).inserted { return key }
            }
            expectKey = false
        default:
            break
        }
        i += 1
    }
    return nil
}

/// A JSON value of a request field: requests carry only strings and integers.
enum JSONScalar: Decodable {
    case string(String)
    case integer(Int)
    case other

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let i = try? container.decode(Int.self) {
            self = .integer(i)
        } else if let s = try? container.decode(String.self) {
            self = .string(s)
        } else {
            self = .other
        }
    }
}

/// Reads typed fields out of a request object and remembers which keys were never read.
struct FieldReader {
    let fields: [String: JSONScalar]
    private(set) var unread: Set<String>

    init(fields: [String: JSONScalar]) {
        self.fields = fields
        unread = Set(fields.keys)
    }

    mutating func optionalString(_ key: String) throws(ControlError) -> String? {
        unread.remove(key)
        switch fields[key] {
        case nil: return nil
        case .string(let s): return s
        default: throw ControlError("\(key): expected a string")
        }
    }

    mutating func string(_ key: String) throws(ControlError) -> String {
        guard let s = try optionalString(key) else { throw ControlError("missing key \"\(key)\"") }
        return s
    }

    mutating func optionalInteger(_ key: String) throws(ControlError) -> Int? {
        unread.remove(key)
        switch fields[key] {
        case nil: return nil
        case .integer(let i): return i
        default: throw ControlError("\(key): expected an integer")
        }
    }

    mutating func integer(_ key: String) throws(ControlError) -> Int {
        guard let i = try optionalInteger(key) else { throw ControlError("missing key \"\(key)\"") }
        return i
    }

    mutating func address(_ key: String) throws(ControlError) -> IPAddress {
        let text = try string(key)
        guard let address = IPAddress(text) else { throw ControlError("\(key): \"\(text)\" is not an IPv4 or IPv6 address") }
        if let reason = address.notAHostReason { throw ControlError("\(key): \(reason)") }
        return address
    }
}

/// Response lines (without the newline): `{"ok":true,...}` or `{"ok":false,"error":"..."}`.
public enum ControlResponse {
    /// A success with a human-readable message.
    public static func ok(message: String) -> String {
        jsonObject([("ok", "true"), ("message", jsonString(message))])
    }

    /// A success carrying the appliance's summary (`stats`) and the control server's own counters.
    public static func ok(stats summary: Summary, server: ControlServerCounters) -> String {
        jsonObject([("ok", "true"), ("stats", summary.json()), ("control", server.json())])
    }

    /// A refusal; nothing was changed.
    public static func error(_ message: String) -> String {
        jsonObject([("ok", "false"), ("error", jsonString(message))])
    }

    /// A decoded response line: whether it succeeded, and the object.
    public static func decode(_ line: String) throws(ControlError) -> (ok: Bool, object: [String: Any]) {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any],
              let ok = object["ok"] as? Bool else {
            throw ControlError("the appliance sent a malformed response: \(line.prefix(200))")
        }
        return (ok, object)
    }
}

/// What the control server has done since it started (part of every `stats` response).
public struct ControlServerCounters: Sendable, Equatable {
    /// Requests answered, refused ones included.
    public var requests: UInt64 = 0
    /// Requests answered with an error (bad requests, refused mutations, failed changes).
    public var refused: UInt64 = 0
    /// Clients connected right now.
    public var clients: UInt64 = 0
    /// Connections turned away because the non-root clients were at their cap.
    public var rejectedClients: UInt64 = 0
    /// Non-root connections closed to make room for a root client.
    public var evictedClients: UInt64 = 0

    /// Counters with the given values.
    public init(requests: UInt64 = 0, refused: UInt64 = 0, clients: UInt64 = 0, rejectedClients: UInt64 = 0,
                evictedClients: UInt64 = 0) {
        self.requests = requests; self.refused = refused; self.clients = clients
        self.rejectedClients = rejectedClients; self.evictedClients = evictedClients
    }

    /// `{"clients":..,"evicted_clients":..,"refused":..,"rejected_clients":..,"requests":..}`.
    public func json() -> String {
        jsonObject([("clients", "\(clients)"), ("evicted_clients", "\(evictedClients)"), ("refused", "\(refused)"),
                    ("rejected_clients", "\(rejectedClients)"), ("requests", "\(requests)")])
    }

    /// Reads the `control` object of a `stats` response.
    public init(json object: [String: Any]) {
        requests = jsonUInt(object["requests"]); refused = jsonUInt(object["refused"]); clients = jsonUInt(object["clients"])
        rejectedClients = jsonUInt(object["rejected_clients"]); evictedClients = jsonUInt(object["evicted_clients"])
    }
}

extension Summary {
    /// Reads back the object `json()` writes (the `stats` of a `stats` response). Missing numbers read as 0;
    /// throws when the object has no `ports` or `vips` list.
    public init(json object: [String: Any]) throws(ControlError) {
        guard let ports = object["ports"] as? [[String: Any]], let vips = object["vips"] as? [[String: Any]] else {
            throw ControlError("the stats object has no ports or vips")
        }
        self.ports = ports.map { p in
            var verdicts: [Verdict: UInt64] = [:]
            for (name, value) in (p["verdicts"] as? [String: Any]) ?? [:] {
                if let verdict = Verdict.named(name) { verdicts[verdict] = jsonUInt(value) }
            }
            return Port(name: p["name"] as? String ?? "?", rxPackets: jsonUInt(p["rx_packets"]), rxBytes: jsonUInt(p["rx_bytes"]),
                        txPackets: jsonUInt(p["tx_packets"]), txBytes: jsonUInt(p["tx_bytes"]), verdicts: verdicts,
                        fromKernel: jsonUInt(p["from_kernel"]))
        }
        self.vips = vips.map { v in
            let backends = ((v["backends"] as? [[String: Any]]) ?? []).map { b in
                Backend(address: b["address"] as? String ?? "?", weight: b["weight"] as? Int ?? 0,
                        packets: jsonUInt(b["packets"]), bytes: jsonUInt(b["bytes"]), newFlows: jsonUInt(b["new_flows"]))
            }
            var vip = VIP(name: v["name"] as? String ?? "?", address: v["address"] as? String ?? "?", port: v["port"] as? String ?? "?",
                       proto: v["protocol"] as? String ?? "?", mode: v["mode"] as? String ?? "?",
                       packets: jsonUInt(v["packets"]), bytes: jsonUInt(v["bytes"]), newFlows: jsonUInt(v["new_flows"]),
                       backends: backends)
            if v["quic_routed"] != nil {
                (vip.quic, vip.quicRouted, vip.quicFallback) = (true, jsonUInt(v["quic_routed"]), jsonUInt(v["quic_fallback"]))
            }
            return vip
        }
        elapsedSeconds = object["elapsed_seconds"] as? Double ?? 0
        let flows = object["flows"] as? [String: Any] ?? [:]
        flowsInUse = jsonUInt(flows["in_use"])
        flowInsertions = jsonUInt(flows["insertions"])
        flowEvictions = jsonUInt(flows["evictions"])
        flowExpiries = jsonUInt(flows["expiries"])
        mbufsInUse = object["mbufs_in_use"].map { jsonUInt($0) }
        neighbors = (object["neighbors"] as? [[String: Any]] ?? []).map {
            Neighbor(address: $0["address"] as? String ?? "?", state: $0["state"] as? String ?? "?", mac: $0["mac"] as? String)
        }
        notes = ((object["notes"] as? [String: String]) ?? [:]).sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }
}

/// Splits a byte stream into lines of at most `limit` bytes (newline included); a trailing `\r` is dropped.
public struct LineBuffer: Sendable {
    public enum Next: Equatable, Sendable {
        /// A complete line, without its line ending.
        case line(String)
        /// No complete line yet.
        case needMore
        /// The line in progress is longer than the limit; the buffer is useless afterwards.
        case oversized
    }

    /// Longest line, newline included, in bytes.
    public let limit: Int
    private var bytes: [UInt8] = []

    /// An empty buffer for lines of at most `limit` bytes.
    public init(limit: Int = controlMaxRequestBytes) { self.limit = limit }

    /// Adds bytes received from the peer.
    public mutating func append(_ data: some Sequence<UInt8>) { bytes.append(contentsOf: data) }

    /// The next complete line, if any.
    public mutating func next() -> Next {
        guard let newline = bytes.prefix(limit).firstIndex(of: UInt8(ascii: "\n")) else {
            return bytes.count >= limit ? .oversized : .needMore
        }
        var line = bytes[..<newline]
        if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
        let text = String(decoding: line, as: UTF8.self)
        bytes.removeSubrange(...newline)
        return .line(text)
    }

    /// Whether a complete (or oversized) line is waiting, without taking it.
    public var hasLine: Bool { bytes.prefix(limit).contains(UInt8(ascii: "\n")) || bytes.count >= limit }

    /// At end of input: the last line when it had no newline (nil when nothing is left).
    public mutating func finish() -> String? {
        guard !bytes.isEmpty else { return nil }
        defer { bytes.removeAll() }
        return String(decoding: bytes.last == UInt8(ascii: "\r") ? bytes.dropLast() : bytes[...], as: UTF8.self)
    }
}

// MARK: - JSON text

/// A JSON object from keys and already-encoded values, in the given order.
func jsonObject(_ fields: [(String, String)]) -> String {
    "{" + fields.map { "\(jsonString($0.0)):\($0.1)" }.joined(separator: ",") + "}"
}

/// A JSON number as a UInt64 (0 when absent or not a non-negative integer).
func jsonUInt(_ value: Any?) -> UInt64 { (value as? UInt64) ?? 0 }
