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

    /// `process` (same arguments; `tailroom` must reach 26 bytes past a frame's start, which the fast path may read), after running `FastPath.forward` on a copy of the frame from the same flow table and
    /// counters. Returns `process`'s run (the state stays as it left it), whether the fast path took the frame, and
    /// what differed, if anything: a frame the fast path takes must come out of `processFrame` the same (verdict,
    /// bytes of the whole buffer, shift and length, every counter, the flow table); a frame it declines must be left
    /// untouched, with nothing counted.
    public func processComparingFastPath(_ frame: [UInt8], headroom: Int, tailroom: Int, fill: UInt8 = 0xEE,
                                         checksum: ChecksumStatus = .unknown, now: UInt32 = 1000,
                                         port: Int = 0) -> (run: Run, fastTook: Bool, mismatch: String?) {
        precondition(frame.count + tailroom >= 26, "the fast path reads 26 bytes of any frame")
        let flowsBefore = [UInt8](UnsafeRawBufferPointer(start: flowMemory, count: flowBytes))
        let countersBefore = [UInt64](UnsafeBufferPointer(start: counters, count: counterCount))
        let size = headroom + frame.count + tailroom
        var buffer = [UInt8](repeating: fill, count: size)
        buffer.replaceSubrange(headroom..<(headroom + frame.count), with: frame)
        let original = buffer
        let out = buffer.withUnsafeMutableBytes { raw -> (shift: Int32, length: UInt32) in
            let p = raw.baseAddress! + headroom
            let fast = FastPath(port: port, tables: tables, counters: counters, now: now, flows: flows.pointee)
            let hash = frameFlowHash(p, length: frame.count)
            return fast.forward(p, length: frame.count, headroom: headroom, checksum: checksum,
                                bucket: flows.pointee.bucket(hash))
        }
        let fastFlows = [UInt8](UnsafeRawBufferPointer(start: flowMemory, count: flowBytes))
        let fastCounters = [UInt64](UnsafeBufferPointer(start: counters, count: counterCount))
        flowMemory.copyMemory(from: flowsBefore, byteCount: flowBytes)
        counters.update(from: countersBefore, count: counterCount)
        let run = process(frame, headroom: headroom, tailroom: tailroom, fill: fill, checksum: checksum, now: now, port: port)
        let procFlows = [UInt8](UnsafeRawBufferPointer(start: flowMemory, count: flowBytes))
        let procCounters = [UInt64](UnsafeBufferPointer(start: counters, count: counterCount))
        func differing(_ a: [UInt64], _ b: [UInt64]) -> String {
            let at = (0..<a.count).filter { a[$0] != b[$0] }.prefix(4)
            return at.map { "counter \($0): \(a[$0]) vs \(b[$0])" }.joined(separator: ", ")
        }
        guard out.length != 0 else {
            if buffer != original { return (run, false, "the fast path declined the frame but wrote to its buffer") }
            if fastFlows != flowsBefore { return (run, false, "the fast path declined the frame but changed the flow table") }
            if fastCounters != countersBefore {
                return (run, false, "the fast path declined the frame but counted: \(differing(fastCounters, countersBefore))")
            }
            return (run, false, nil)
        }
        let verdict: Verdict = out.shift == 0 ? .forwardedL2 : .forwardedL3
        if run.outcome.verdict != verdict || run.outcome.fragments != 0 {
            return (run, true, "the fast path forwarded as \(verdict), processFrame said \(run.outcome.verdict)")
        }
        if run.outcome.startShift != out.shift || run.outcome.length != out.length {
            return (run, true, "fast path output at \(out.shift), \(out.length) bytes; processFrame at \(run.outcome.startShift), \(run.outcome.length)")
        }
        if buffer != run.buffer { return (run, true, "the fast path's buffer differs from processFrame's") }
        if fastFlows != procFlows { return (run, true, "the fast path left the flow table differently") }
        if fastCounters != procCounters { return (run, true, "counters differ: \(differing(fastCounters, procCounters))") }
        return (run, true, nil)
    }

    public func process(_ frame: [UInt8], headroom: Int, guardBytes: Int = 0, tailroom: Int = 0, fill: UInt8 = 0xEE,
                        checksum: ChecksumStatus = .unknown, now: UInt32 = 1000, port: Int = 0) -> Run {
        frame.withUnsafeBytes {
            process($0, headroom: headroom, guardBytes: guardBytes, tailroom: tailroom, fill: fill,
                    checksum: checksum, now: now, port: port)
        }
    }
}
