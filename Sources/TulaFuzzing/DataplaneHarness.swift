// Tables, flow table and counters from a YAML config, and one frame run through processFrame in a buffer with headroom.

import TulaCore
import TulaDatapath
import TulaTables

/// What the worker has for a port's frames, built off a YAML text the way the appliance builds it
/// (`ConfigLoader.parse`, `CounterSlots`, `DataplaneTables.build`): the tables, a zeroed flow table and a
/// counter block. Used by the frame fuzz target and by the unit tests; mutable state, so one per user.
public final class DataplaneHarness {
    public let config: TulaConfig
    public let tables: UnsafeMutablePointer<DataplaneTables>
    public let flows: UnsafeMutablePointer<FlowTable>
    public let counters: UnsafeMutablePointer<UInt64>
    public let counterCount: Int
    private let flowMemory: UnsafeMutableRawPointer
    private let flowBytes: Int

    /// `neighbors` are the MACs ARP resolved for next hops the config gives no MAC for. Every port of the
    /// config must name its MAC. Throws the loader's `ConfigError` or the slots' `Exhausted`.
    public init(yaml: String, file: String = "harness.yaml", flowCapacity: Int = 1024,
                neighbors: [IPAddress: MACAddress] = [:]) throws {
        config = try ConfigLoader.parse(yaml: yaml, file: file)
        var slots = CounterSlots()
        try slots.assign(config)
        let macs = config.ports.map { port -> MACAddress in
            guard let mac = port.mac else { preconditionFailure("harness config: port \(port.name) needs a mac") }
            return mac
        }
        tables = DataplaneTables.build(config: config, portMACs: macs, slots: slots, neighbors: neighbors)
        flowBytes = FlowTable.bytes(capacity: flowCapacity)
        flowMemory = UnsafeMutableRawPointer.allocate(byteCount: flowBytes, alignment: 64)
        flowMemory.initializeMemory(as: UInt8.self, repeating: 0, count: flowBytes)
        flows = .allocate(capacity: 1)
        flows.initialize(to: FlowTable(memory: flowMemory, capacity: flowCapacity,
                                       idleTimeoutSeconds: config.flowIdleTimeoutSeconds))
        counterCount = tables.pointee.layout.count
        counters = .allocate(capacity: counterCount)
        counters.initialize(repeating: 0, count: counterCount)
    }

    deinit {
        DataplaneTables.destroy(tables)
        flows.deinitialize(count: 1); flows.deallocate()
        flowMemory.deallocate()
        counters.deinitialize(count: counterCount); counters.deallocate()
    }

    public var layout: CounterLayout { tables.pointee.layout }

    /// Forgets every pinned flow and zeroes every counter (a fresh worker).
    public func reset() {
        flowMemory.initializeMemory(as: UInt8.self, repeating: 0, count: flowBytes)
        counters.update(repeating: 0, count: counterCount)
    }

    /// One frame after `processFrame`: its outcome and the whole buffer it was processed in.
    public struct Run {
        public var outcome: FrameOutcome
        /// The buffer after the call: `guardBytes`, headroom, the frame, tailroom.
        public var buffer: [UInt8]
        /// Where the frame started in `buffer`.
        public var frameStart: Int
        /// Length of the frame given to `processFrame`.
        public var frameLength: Int
        /// Bytes before the headroom, filled with `fill` before the call.
        public var guardBytes: Int

        /// The bytes to transmit (empty unless the verdict transmits).
        public var output: [UInt8] {
            guard outcome.verdict.transmits else { return [] }
            let from = frameStart + Int(outcome.startShift)
            return Array(buffer[from..<(from + Int(outcome.length))])
        }
        /// The frame's original region after the call.
        public var inPlace: [UInt8] { Array(buffer[frameStart..<(frameStart + frameLength)]) }
    }

    /// Runs `processFrame` on a copy of `frame` placed after `guardBytes` + `headroom` bytes of `fill`, with
    /// `tailroom` bytes of `fill` after it, in a heap buffer of exactly that size (so an address sanitizer
    /// reports any access outside it). `processFrame` is told about the headroom only.
    public func process(_ frame: UnsafeRawBufferPointer, headroom: Int, guardBytes: Int = 0, tailroom: Int = 0,
                        fill: UInt8 = 0xEE, checksum: ChecksumStatus = .unknown, now: UInt32 = 1000,
                        port: Int = 0) -> Run {
        let start = guardBytes + headroom
        let size = start + frame.count + tailroom
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(size, 1), alignment: 16)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: fill, count: size)
        if frame.count > 0 { (buffer + start).copyMemory(from: frame.baseAddress!, byteCount: frame.count) }
        let outcome = processFrame(buffer + start, length: frame.count, headroom: headroom, checksum: checksum,
                                   port: port, tables: tables, flows: flows, counters: counters, now: now,
                                   flowHash: frameFlowHash(buffer + start, length: frame.count))
        return Run(outcome: outcome, buffer: [UInt8](UnsafeRawBufferPointer(start: buffer, count: size)),
                   frameStart: start, frameLength: frame.count, guardBytes: guardBytes)
    }

    public func process(_ frame: [UInt8], headroom: Int, guardBytes: Int = 0, tailroom: Int = 0, fill: UInt8 = 0xEE,
                        checksum: ChecksumStatus = .unknown, now: UInt32 = 1000, port: Int = 0) -> Run {
        frame.withUnsafeBytes {
            process($0, headroom: headroom, guardBytes: guardBytes, tailroom: tailroom, fill: fill,
                    checksum: checksum, now: now, port: port)
        }
    }
}
