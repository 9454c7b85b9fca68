// The four fuzz targets' entries: arbitrary bytes in, a trap (precondition) when an invariant breaks.

import Foundation
import TulaCore
import TulaDatapath
import TulaStats

/// One entry per fuzz target. Each runs the code under test on `bytes` and checks what must hold whatever
/// the input; a broken invariant is a `precondition` failure (a crash, which libFuzzer reports as a finding).
public enum FuzzTargets {
    /// Every target by name, as scripts/fuzz.sh and the regression test name them.
    public static let names = ["frame", "config", "control", "pcap"]

    /// The entry of the target called `name` (one of `names`), or nil.
    public static func named(_ name: String) -> (@Sendable (UnsafeRawBufferPointer) -> Void)? {
        switch name {
        case "frame": frame
        case "config": config
        case "control": control
        case "pcap": pcap
        default: nil
        }
    }

    /// Frame path: the bytes as a received frame, in the four ways of `FrameChecker.variants`, against
    /// `FrameTopology`'s tables. Checks that the verdict is a named one counted once; that a dropped frame and
    /// its headroom and tailroom are untouched; that a sent frame lies within its buffer (headroom for an IPv6
    /// outer header and a tag, 96 bytes of tailroom), nothing around it written; and per verdict, for IPv4 and
    /// IPv6, what goes out, re-derived from the input: l2 keeps the IP packet byte for byte and goes to a backend
    /// of the packet's VIP; l3 adds a valid IPv4 outer header (or outer fragments that add up to the packet) or
    /// IPv6 one (6in6, 4in6: traffic class, flow label, backend); ARP, neighbor advertisements, echo replies,
    /// fragmentation needed and Packet Too Big have valid checksums and the right lengths, tags and MACs. Each run
    /// also tries `FastPath.forward` first, from the same state, as the worker does: it must decline the frame
    /// leaving everything untouched, or do exactly what `processFrame` does (bytes, counters, flow table).
    public static func frame(_ bytes: UnsafeRawBufferPointer) { frameChecker.run(bytes) }

    /// Config loader: the bytes as YAML text either load or are refused with a ConfigError at a line of the
    /// text; a loaded config holds the documented rules and loads again, the same, from its canonical YAML.
    public static func config(_ bytes: UnsafeRawBufferPointer) { ConfigCheck.run(bytes) }

    /// Control protocol: `ControlRequest.parse` refuses the bytes or returns a request whose `.line` parses back
    /// to it; `LineBuffer` frames them as a plain splitter does, no line over its limit; a response decodes or not.
    public static func control(_ bytes: UnsafeRawBufferPointer) { ControlCheck.run(bytes) }

    /// Pcap reader: the bytes as a capture file read by `PcapReader` give exactly the records (or the failure)
    /// of a plain reference reader, sizes adding up to the file's; `count`, `survey` and a written copy agree.
    public static func pcap(_ bytes: UnsafeRawBufferPointer) { pcapCheck.run(bytes) }

    // One per process (building tables per input would cost more than the input). Fuzz targets run on one thread.
    nonisolated(unsafe) static let frameChecker = FrameChecker()
    nonisolated(unsafe) static let pcapCheck = PcapCheck()
}
