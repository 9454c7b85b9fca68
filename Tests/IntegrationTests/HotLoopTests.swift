// The worker loop's machine code is clean: no Swift runtime, allocator, lock or stdio call is reachable from it.

import Foundation
import Testing

/// The release binary's disassembly, made once for all tests here (the build, when needed, takes minutes).
private actor HotLoopFixture {
    static let shared = HotLoopFixture()
    private var loading: Task<Disassembly, any Error>?

    func disassembly() async throws -> Disassembly {
        if loading == nil {
            loading = Task {
                let build = try await ReleaseBuild.binary()
                if build.built {
                    print("HotLoop: built \(build.path) in \(String(format: "%.0f", build.buildSeconds)) s")
                }
                return try await Disassembly.of(binary: build.path)
            }
        }
        return try await loading!.value
    }
}

@Suite struct HotLoop {
    /// `runWorker` (TulaPMD's per-lcore loop: RX burst, processFrame per frame, TX burst, counters) and every
    /// function of the binary it reaches through direct calls and tail jumps, in the release build (the one
    /// that ships; a debug build is full of runtime calls by design).
    @Test func workerLoopReachesNoRuntimeAllocatorOrLockCall() async throws {
        let program = try await HotLoopFixture.shared.disassembly()
        let roots = program.functions(containing: "runWorker")
        try #require(!roots.isEmpty, "no symbol containing runWorker in the release binary: the hot-loop check has nothing to check")
        let reach = program.reach(from: roots)
        #expect(reach.forbidden.isEmpty, "the worker loop calls what the data path must not:\n\(reach.description)")
        // The loop really is there: it has a body and polls through DPDK's burst function pointers.
        #expect(roots.contains { (program.sizes[$0] ?? 0) > 50 }, "runWorker is suspiciously small:\n\(reach.description)")
        #expect(!reach.indirect.isEmpty, "no indirect call (rx/tx burst) reached from runWorker:\n\(reach.description)")
        // The IPv6 path, the other encapsulations, prefix VIP lookup and QUIC routing (out of line) are part of what was scanned.
        for function in ["classifyIPv6", "handleICMPv6", "neighborDiscovery", "encapsulate6", "encapsulateVIP", "answerPacketTooBig",
                         "answerEcho6", "findPrefixVIP", "deliverQUIC", "prefixAddress"] {
            #expect(reach.functions.contains { $0.contains(function) }, "\(function) is not reached from runWorker:\n\(reach.description)")
        }
    }

    /// The scanner can fail: a function that allocates and retains (`Summary.json`, building a dictionary and
    /// serializing it) is flagged when scanned the same way.
    @Test func scannerFlagsAKnownDirtyFunction() async throws {
        let program = try await HotLoopFixture.shared.disassembly()
        let roots = program.functions(containing: "7SummaryV4json")
        try #require(!roots.isEmpty, "Summary.json not found in the release binary; pick another known-dirty function")
        let reach = program.reach(from: roots)
        let flagged = Set(reach.forbidden.map(\.callee))
        #expect(flagged.contains { $0.hasPrefix("swift_") }, "Summary.json should reach Swift runtime calls:\n\(reach.description)")
    }

    /// The parser and the rules on a hand-written listing: a retain two calls deep through a tail jump, malloc
    /// through the PLT, a GOT call, and the allowed shapes (DPDK through the PLT, jumps inside a function).
    @Test func scannerFollowsCallsAndTailJumps() {
        let listing = """
            0000000000001000 <loop>:
                1000:\tcall   1100 <helper>
                1005:\tjne    1000 <loop>
                1007:\tjmp    1003 <loop+0x3>
                100a:\tcall   *0x40(%r15)
                100e:\tcall   3000 <rte_pktmbuf_free_bulk@plt>
                1013:\tret

            0000000000001100 <helper>:
                1100:\tjmp    1200 <tail>

            0000000000001200 <tail>:
                1200:\tcall   3010 <swift_retain@plt>
                1205:\tcall   *0x2fe0(%rip)        # 4000 <malloc@GLIBC_2.2.5>
                120b:\tcall   3020 <$sSa6appendyyxnF@plt>
                1210:\tret

            0000000000001300 <clean>:
                1300:\tcall   3000 <rte_pktmbuf_free_bulk@plt>
                1305:\tret
            """
        let program = Disassembly(objdumpText: listing)
        let dirty = program.reach(from: ["loop"])
        #expect(dirty.functions == ["helper", "loop", "tail"])
        #expect(Set(dirty.forbidden.map(\.callee)) == ["swift_retain@plt", "malloc", "$sSa6appendyyxnF@plt"])
        #expect(dirty.indirect.count == 1)
        #expect(dirty.external == ["rte_pktmbuf_free_bulk@plt"])
        let clean = program.reach(from: ["clean"])
        #expect(clean.forbidden.isEmpty)
    }
}
