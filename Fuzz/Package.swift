// swift-tools-version:6.0
// libFuzzer executables for Tula's fuzz targets (Sources/TulaFuzzing); built and run only by scripts/fuzz.sh.
import Foundation
import PackageDescription

/// The main package is this directory's parent; SwiftPM names a path dependency after its directory.
let tulaRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
let tulaIdentity = tulaRoot.lastPathComponent.lowercased()
let targetNames = ["frame", "config", "control", "pcap"]

let package = Package(
    name: "TulaFuzz",
    dependencies: [.package(path: tulaRoot.path)],
    targets: targetNames.map { name in
        .executableTarget(
            name: "fuzz-\(name)",
            dependencies: [.product(name: "TulaFuzzing", package: tulaIdentity)],
            path: "Sources/fuzz-\(name)"
        )
    }
)
