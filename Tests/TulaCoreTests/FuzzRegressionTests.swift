// Every committed fuzz corpus file and crash input, run through the same FuzzTargets entries libFuzzer runs.
import Foundation
import Testing
import TulaFuzzing

/// Serialized: the targets keep one checker each (a harness with counters), as libFuzzer runs them, one input at a
/// time; two tests feeding the frame target at once made its counter check see the other's frames.
@Suite(.serialized) struct FuzzRegressionTests {
    private static let fuzzRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fuzz")

    /// The files of `Fuzz/<kind>/<target>/`, sorted; none when the directory does not exist.
    static func inputs(_ kind: String, _ target: String) -> [URL] {
        let directory = fuzzRoot.appendingPathComponent(kind).appendingPathComponent(target)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { !$0.hasPrefix(".") }.sorted().map { directory.appendingPathComponent($0) }
    }

    /// A broken invariant traps (as under libFuzzer); to see which file, run the fuzzer on it:
    /// `.build-fuzz/debug/fuzz-<target> Fuzz/regressions/<target>/*` after `scripts/fuzz.sh 0 <target>`.
    @Test(arguments: FuzzTargets.names)
    func corpusAndRegressionsPass(_ target: String) throws {
        let run = try #require(FuzzTargets.named(target))
        let corpus = Self.inputs("corpus", target)
        #expect(corpus.count >= 5, "Fuzz/corpus/\(target) has \(corpus.count) files; scripts/fuzz.sh seeds it")
        for file in corpus + Self.inputs("regressions", target) {
            let data = try Data(contentsOf: file)
            data.withUnsafeBytes { run($0) }
        }
    }

    /// Each entry on an input its checks must take (an ARP request for a VIP, a cut-short YAML list, a stats
    /// request, an empty big-endian capture), in this checked, non-fuzzing build.
    @Test func targetsTakeTheirSeeds() {
        let frame: [UInt8] = [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0xAA, 1, 0x08, 0x06] + [0, 1, 8, 0, 6, 4, 0, 1]
            + [2, 0, 0, 0, 0xAA, 1, 10, 0, 1, 50] + [0, 0, 0, 0, 0, 0, 10, 0, 1, 100] + [UInt8](repeating: 0, count: 18)
        frame.withUnsafeBytes { FuzzTargets.frame($0) }
        Array("ports: [\n".utf8).withUnsafeBytes { FuzzTargets.config($0) }
        Array("{\"cmd\":\"stats\"}\n".utf8).withUnsafeBytes { FuzzTargets.control($0) }
        [UInt8]([0xD4, 0xC3, 0xB2, 0xA1, 2, 0, 4, 0] + [UInt8](repeating: 0, count: 16)).withUnsafeBytes { FuzzTargets.pcap($0) }
    }
}
