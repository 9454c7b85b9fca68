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
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
        .package(url: "https://github.com/apple/swift-atomics", from: "1.2.0"),
    ],
    targets: [
        .target(
            name: "CDPDK",
            cSettings: [.unsafeFlags(dpdkCFlags)],
            linkerSettings: dpdkLibraries.map { .linkedLibrary($0) }
        ),
        .target(
            name: "TulaCore",
            dependencies: [.product(name: "Yams", package: "Yams")],
            // Cross-module optimization lets the worker loop (TulaPMD) inline the per-frame code.
            swiftSettings: [.unsafeFlags(["-Ounchecked", "-wmo", "-cross-module-optimization"], .when(configuration: .release))]
        ),
        .target(
            name: "TulaStats",
            dependencies: ["TulaCore", .product(name: "Atomics", package: "swift-atomics")],
            swiftSettings: [.unsafeFlags(["-cross-module-optimization"], .when(configuration: .release))]
        ),
        .target(
            name: "TulaPMD",
            dependencies: ["CDPDK", "TulaCore", "TulaStats", .product(name: "Atomics", package: "swift-atomics")],
            swiftSettings: [.unsafeFlags(dpdkSwiftFlags)]
        ),
        .executableTarget(
            name: "tula-appliance",
            dependencies: ["CDPDK", "TulaCore", "TulaPMD", "TulaStats",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: [.unsafeFlags(dpdkSwiftFlags)]
        ),
        .testTarget(name: "TulaCoreTests", dependencies: ["TulaCore", "TulaStats"]),
        .testTarget(name: "IntegrationTests", dependencies: ["TulaCore"]),
    ]
)
