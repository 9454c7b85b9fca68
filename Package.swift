// swift-tools-version:6.0
// Tula: a DSR L4 load-balancer appliance on DPDK. Package layout as in DESIGN.md.
import PackageDescription

/// DPDK 22.11 headers as Debian installs them; SwiftPM cannot read Debian's libdpdk.pc.
let dpdkIncludes = ["/usr/include/dpdk", "/usr/include/x86_64-linux-gnu/dpdk"]
let dpdkCFlags = dpdkIncludes.flatMap { ["-I", $0] } + ["-include", "rte_config.h", "-march=corei7"]
let dpdkSwiftFlags = dpdkCFlags.flatMap { ["-Xcc", $0] }
let dpdkLibraries = ["rte_ethdev", "rte_mbuf", "rte_mempool", "rte_ring", "rte_net", "rte_eal",
                     "rte_kvargs", "rte_telemetry"]

let package = Package(
    name: "Tula",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "tula-appliance", targets: ["tula-appliance"]),
        // For the fuzzer executables of Fuzz/Package.swift (built only by scripts/fuzz.sh).
        .library(name: "TulaFuzzing", targets: ["TulaFuzzing"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
        .package(url: "https://github.com/apple/swift-atomics", from: "1.2.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.65.0"),
    ],
    targets: [
        .target(
            name: "CDPDK",
            cSettings: [.unsafeFlags(dpdkCFlags)],
            linkerSettings: dpdkLibraries.map { .linkedLibrary($0) }
        ),
        // Config, control plane, addresses, Maglev: compiled with Swift's checks (a bug traps, it does not corrupt).
        .target(
            name: "TulaCore",
            dependencies: [.product(name: "Yams", package: "Yams")],
            swiftSettings: [.unsafeFlags(["-cross-module-optimization"], .when(configuration: .release))]
        ),
        // The per-frame code alone (parse, classify, rewrite, encapsulate, flow table): the only unchecked module.
        // Cross-module optimization lets the worker loop (TulaPMD) inline it. Debug and fuzz builds keep checks.
        .target(
            name: "TulaDatapath",
            dependencies: ["TulaCore"],
            swiftSettings: [.unsafeFlags(["-Ounchecked", "-wmo", "-cross-module-optimization"], .when(configuration: .release))]
        ),
        // Builds the tables the per-frame code reads (Maglev, VIP index, backends): control plane, checked.
        .target(
            name: "TulaTables",
            dependencies: ["TulaCore", "TulaDatapath"]
        ),
        .target(
            name: "TulaStats",
            dependencies: ["TulaCore", "TulaDatapath", .product(name: "Atomics", package: "swift-atomics"),
                           .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                           .product(name: "NIOHTTP1", package: "swift-nio")],
            swiftSettings: [.unsafeFlags(["-cross-module-optimization"], .when(configuration: .release))]
        ),
        // Fuzz targets as plain functions that trap on a broken invariant: run by libFuzzer (Fuzz/) and by the
        // regression test over the committed corpora. Checked builds only (precondition must evaluate).
        .target(
            name: "TulaFuzzing",
            dependencies: ["TulaCore", "TulaDatapath", "TulaTables", "TulaStats"]
        ),
        .target(
            name: "TulaPMD",
            dependencies: ["CDPDK", "TulaCore", "TulaDatapath", "TulaTables", "TulaStats", .product(name: "Atomics", package: "swift-atomics")],
            swiftSettings: [.unsafeFlags(dpdkSwiftFlags)]
        ),
        .executableTarget(
            name: "tula-appliance",
            dependencies: ["CDPDK", "TulaCore", "TulaDatapath", "TulaPMD", "TulaStats",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: [.unsafeFlags(dpdkSwiftFlags)]
        ),
        .testTarget(name: "TulaCoreTests", dependencies: ["TulaCore", "TulaDatapath", "TulaTables", "TulaStats", "TulaFuzzing"]),
        .testTarget(name: "IntegrationTests", dependencies: ["TulaCore"]),
    ]
)
