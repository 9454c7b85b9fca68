// Reads `objdump -d` of a binary into functions and finds every call reachable from given functions.

import Foundation

/// The functions of a disassembled binary, by symbol name, with the call and jump targets of each.
struct Disassembly: Sendable {
    /// One call-like instruction: a direct `call`/`jmp`/`jcc` to another function, or an indirect call.
    struct Call: Sendable, Hashable {
        /// Symbol of the target as objdump names it (`swift_retain@plt`, `$s8TulaCore...`), nil when indirect.
        var target: String?
        /// The instruction as objdump prints it, for messages.
        var instruction: String
    }

    /// Calls and cross-function jumps of each function (jumps inside a function are not kept).
    private(set) var calls: [String: [Call]] = [:]
    /// Instruction count of each function.
    private(set) var sizes: [String: Int] = [:]

    /// Parses the text `objdump -d --no-show-raw-insn` prints.
    init(objdumpText text: String) {
        var current: String?
        var currentCalls: [Call] = []
        var count = 0
        func finish() {
            if let current { calls[current] = currentCalls; sizes[current] = count }
            currentCalls = []; count = 0
        }
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: true) {
            let line = rawLine.utf8
            guard let first = line.first else { continue }
            // Function header: "000000000010df40 <$s7TulaPMD9runWorker...>:" (no leading blank).
            if first != UInt8(ascii: " ") && rawLine.hasSuffix(">:"), let open = rawLine.firstIndex(of: "<") {
                finish()
                current = String(rawLine[rawLine.index(after: open)..<rawLine.index(rawLine.endIndex, offsetBy: -2)])
                continue
            }
            guard let function = current, first == UInt8(ascii: " ") else { continue }
            count += 1
            // Instruction: "  10e4c6:\tcall   39d30 <rte_pktmbuf_free_bulk@plt>" (address, tab, text).
            guard let tab = rawLine.firstIndex(of: "\t") else { continue }
            let instruction = rawLine[rawLine.index(after: tab)...]
            guard instruction.hasPrefix("call") || instruction.hasPrefix("j") else { continue }
            let isCall = instruction.hasPrefix("call")
            if let open = instruction.lastIndex(of: "<"), instruction.hasSuffix(">") {
                var target = String(instruction[instruction.index(after: open)..<instruction.index(before: instruction.endIndex)])
                // "call *0x...(%rip)  # 5a8f0 <swift_retain@GLIBC...>": an indirect call through the GOT names its target.
                if let at = target.range(of: "@", options: .backwards), !target.hasSuffix("@plt") {
                    target = String(target[..<at.lowerBound])
                }
                if target.contains("+0x") {
                    // A jump or call into the middle of a function: this one (a branch) or another (rare).
                    let base = String(target[..<target.range(of: "+0x")!.lowerBound])
                    if base == function { continue }
                    target = base
                }
                if target == function && !isCall { continue }
                currentCalls.append(Call(target: target, instruction: String(instruction)))
            } else if isCall {
                currentCalls.append(Call(target: nil, instruction: String(instruction)))
            }
        }
        finish()
    }

    /// Disassembles `binary` with objdump.
    static func of(binary: String) async throws -> Disassembly {
        let result = try await ReleaseBuild.run("/usr/bin/env", ["objdump", "-d", "--no-show-raw-insn", binary])
        guard result.status == 0, !result.output.isEmpty else {
            throw ReleaseBuildError("objdump -d \(binary) failed (status \(result.status)):\n\(result.output.prefix(2000))")
        }
        return Disassembly(objdumpText: result.output)
    }

    /// Function symbols whose name contains `fragment` (e.g. `runWorker`).
    func functions(containing fragment: String) -> [String] {
        calls.keys.filter { $0.contains(fragment) && !$0.hasSuffix("@plt") }.sorted()
    }

    /// Everything reachable from `roots` through direct calls and tail jumps into functions of the binary.
    struct Reach: Sendable {
        /// Functions of the binary visited (roots included).
        var functions: [String] = []
        /// Each forbidden target with the function that calls it.
        var forbidden: [(caller: String, callee: String)] = []
        /// Calls through a register or memory (DPDK's rx/tx burst function pointers): listed, not judged.
        var indirect: [(caller: String, instruction: String)] = []
        /// Targets outside the binary (PLT) that are allowed (DPDK, libc).
        var external: Set<String> = []

        var description: String {
            var lines = ["reached \(functions.count) function(s) of the binary:"] + functions.map { "  \($0)" }
            lines.append("external calls: \(external.sorted().joined(separator: ", "))")
            lines.append("indirect calls: " + indirect.map { "\($0.instruction) in \($0.caller.prefix(60))" }.joined(separator: "; "))
            if !forbidden.isEmpty {
                lines.append("FORBIDDEN calls:")
                lines += forbidden.map { "  \($0.callee)  <-  \($0.caller)" }
            }
            return lines.joined(separator: "\n")
        }
    }

    func reach(from roots: [String]) -> Reach {
        var result = Reach()
        var seen = Set<String>()
        var queue = roots
        while let function = queue.popLast() {
            guard seen.insert(function).inserted else { continue }
            result.functions.append(function)
            for call in calls[function] ?? [] {
                guard let target = call.target else {
                    result.indirect.append((function, call.instruction))
                    continue
                }
                if HotLoopRules.isForbidden(target) {
                    result.forbidden.append((function, target))
                } else if target.hasSuffix("@plt") || calls[target] == nil {
                    result.external.insert(target)
                } else {
                    queue.append(target)
                }
            }
        }
        result.functions.sort()
        return result
    }
}

/// What the data path must never call (DESIGN.md: it does not allocate, lock, log, touch a class or use
/// an existential): the Swift runtime, unspecialized standard-library code, the allocators, locks, stdio.
enum HotLoopRules {
    static let forbiddenNames: Set<String> = [
        "malloc", "calloc", "realloc", "free", "posix_memalign", "aligned_alloc", "memalign", "valloc",
        "_Znwm", "_Znam", "_ZdlPv", "_ZdaPv",
        "rte_malloc", "rte_zmalloc", "rte_calloc", "rte_realloc", "rte_free",
        "rte_malloc_socket", "rte_zmalloc_socket", "rte_calloc_socket", "rte_realloc_socket",
        "pthread_mutex_lock", "pthread_mutex_trylock", "pthread_rwlock_rdlock", "pthread_rwlock_wrlock",
        "pthread_cond_wait", "sem_wait",
        "printf", "fprintf", "vfprintf", "puts", "fputs", "fwrite", "write", "syslog", "rte_log", "rte_vlog",
    ]

    /// `swift_retain`, `swift_release`, `swift_allocObject`, `swift_beginAccess`, `swift_once`, ... (any `swift_`
    /// runtime entry point), any Swift function that lives outside the binary (the standard library's generic,
    /// unspecialized code: `$s...@plt`), and `forbiddenNames`.
    static func isForbidden(_ target: String) -> Bool {
        let name = target.hasSuffix("@plt") ? String(target.dropLast(4)) : target
        if name.hasPrefix("swift_") || name.hasPrefix("_swift_") { return true }
        if target.hasSuffix("@plt") && (name.hasPrefix("$s") || name.hasPrefix("_$s")) { return true }
        return forbiddenNames.contains(name)
    }
}
