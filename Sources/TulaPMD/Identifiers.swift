// Typed identifiers for DPDK ports, queues and lcores, so they cannot be swapped by mistake.

/// A DPDK ethdev port id (`uint16_t port_id`).
public struct PortID: Hashable, Sendable, CustomStringConvertible {
    public var raw: UInt16
    public init(_ raw: UInt16) { self.raw = raw }
    public var description: String { "port \(raw)" }
}

/// An RX/TX queue index on a port.
public struct QueueID: Hashable, Sendable, CustomStringConvertible {
    public var raw: UInt16
    public init(_ raw: UInt16) { self.raw = raw }
    public var description: String { "queue \(raw)" }
}

/// An EAL logical core id (`unsigned lcore_id`).
public struct LcoreID: Hashable, Sendable, CustomStringConvertible {
    public var raw: UInt32
    public init(_ raw: UInt32) { self.raw = raw }
    public var description: String { "lcore \(raw)" }
}

/// A failure of a DPDK call, with the call's name and the error it reported.
public struct DPDKError: Error, CustomStringConvertible {
    public var description: String
    public init(_ call: String, _ code: Int32, detail: String = "") {
        description = "\(call) failed: \(code < 0 ? "error \(-code)" : "code \(code)")"
            + (detail.isEmpty ? "" : " (\(detail))")
    }
    public init(message: String) { description = message }
}
