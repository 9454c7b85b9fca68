// `make install`'s script into a temporary DESTDIR or PREFIX: the tree, a kept config, all-or-nothing, uninstall,
// systemd-analyze verify on the shipped units, and hugepages.sh's refusals.

import Foundation
import Testing

extension Integration {
    @Suite struct ApplianceInstall {
        static let script = packageRoot.appendingPathComponent("scripts/install.sh").path
        static let expected = ["etc/iproute2/rt_protos.d/tula.conf", "etc/systemd/system/tula-hugepages.service", "etc/systemd/system/tula.service",
                               "etc/tula/tula.yaml", "usr/local/bin/tula-appliance", "usr/local/share/tula/README.md",
                               "usr/local/share/tula/hugepages.sh", "usr/local/share/tula/manifest"]

        static func run(_ args: [String], _ environment: [String: String]) throws -> ProcessResult {
            try BackgroundProcess(executable: "/bin/bash", [script] + args, environment: environment).wait(timeout: 60)
        }

        /// Every regular file under `root`, relative and sorted.
        static func files(_ root: String) -> [String] {
            let enumerator = FileManager.default.enumerator(atPath: root)
            var out: [String] = []
            while let path = enumerator?.nextObject() as? String {
                var isDirectory: ObjCBool = false
                if FileManager.default.fileExists(atPath: "\(root)/\(path)", isDirectory: &isDirectory), !isDirectory.boolValue {
                    out.append(path)
                }
            }
            return out.sorted()
        }

        static func mode(_ path: String) -> mode_t {
            var info = stat()
            return stat(path, &info) == 0 ? info.st_mode & 0o7777 : 0
        }

        @Test func installKeepsAConfigAndUninstallRemovesOnlyWhatItInstalled() throws {
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let dest = scratch.file("dest")
            let env = ["DESTDIR": dest]
            let first = try Self.run(["install", Appliance.binary], env)
            #expect(first.status == 0, "\(first.stderr)")
            #expect(Self.files(dest) == Self.expected)
            #expect(Self.mode("\(dest)/usr/local/bin/tula-appliance") == 0o755)
            #expect(Self.mode("\(dest)/etc/tula/tula.yaml") == 0o640)
            #expect(Self.mode("\(dest)/etc/systemd/system/tula.service") == 0o644)
            let unit = try String(contentsOfFile: "\(dest)/etc/systemd/system/tula.service", encoding: .utf8)
            #expect(unit.contains("ExecStart=/usr/local/bin/tula-appliance run --config /etc/tula/tula.yaml\n"))
            for line in ["Type=notify", "WatchdogSec=", "Restart=on-failure", "RestartPreventExitStatus=2",
                         "LimitMEMLOCK=infinity", "ExecReload=/bin/kill -HUP $MAINPID", "After=network-pre.target tula-hugepages.service"] {
                #expect(unit.contains(line), "\(line)")
            }
            #expect(!unit.contains("@"), "a placeholder left: \(unit)")
            let example = try String(contentsOfFile: packageRoot.appendingPathComponent("examples/appliance.yaml").path, encoding: .utf8)
            #expect(try String(contentsOfFile: "\(dest)/etc/tula/tula.yaml", encoding: .utf8) == example)

            // The operator edits the config; a second install (an upgrade) keeps it.
            let edited = example.replacingOccurrences(of: "workers: 1 ", with: "workers: 2 ")
            try edited.write(toFile: "\(dest)/etc/tula/tula.yaml", atomically: true, encoding: .utf8)
            let again = try Self.run(["install", Appliance.binary], env)
            #expect(again.status == 0 && again.stderr.contains("keeping the existing /etc/tula/tula.yaml"), "\(again.stderr)")
            #expect(try String(contentsOfFile: "\(dest)/etc/tula/tula.yaml", encoding: .utf8) == edited)
            #expect(Self.files(dest) == Self.expected)

            // Something else of the operator's beside Tula's files stays; so does the edited config.
            try "x".write(toFile: "\(dest)/usr/local/bin/other-tool", atomically: true, encoding: .utf8)
            let removed = try Self.run(["uninstall"], env)
            #expect(removed.status == 0 && removed.stderr.contains("keeping /etc/tula/tula.yaml: it was changed"), "\(removed.stderr)")
            #expect(Self.files(dest) == ["etc/tula/tula.yaml", "usr/local/bin/other-tool"])
            #expect(!FileManager.default.fileExists(atPath: "\(dest)/usr/local/share/tula"))
            let nothing = try Self.run(["uninstall"], env)
            #expect(nothing.status == 1 && nothing.stderr.contains("nothing to uninstall"), "\(nothing.stderr)")

            // An unedited config goes with the rest.
            let clean = scratch.file("clean")
            #expect(try Self.run(["install", Appliance.binary], ["DESTDIR": clean]).status == 0)
            #expect(try Self.run(["uninstall"], ["DESTDIR": clean]).status == 0)
            #expect(Self.files(clean).isEmpty, "\(Self.files(clean))")
        }

        /// A failure part way (here: the unit directory cannot be created) puts back what the run had changed:
        /// the older binary that was there, and no new file.
        @Test func aFailedInstallLeavesTheSystemAsItWas() throws {
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let dest = scratch.file("dest")
            try FileManager.default.createDirectory(atPath: "\(dest)/usr/local/bin", withIntermediateDirectories: true)
            try "old binary".write(toFile: "\(dest)/usr/local/bin/tula-appliance", atomically: true, encoding: .utf8)
            try FileManager.default.createDirectory(atPath: "\(dest)/etc", withIntermediateDirectories: true)
            try "not a directory".write(toFile: "\(dest)/etc/systemd", atomically: true, encoding: .utf8)
            let result = try Self.run(["install", Appliance.binary], ["DESTDIR": dest])
            #expect(result.status != 0 && result.stderr.contains("putting back what was changed"), "\(result.stderr)")
            #expect(Self.files(dest) == ["etc/systemd", "usr/local/bin/tula-appliance"])
            #expect(try String(contentsOfFile: "\(dest)/usr/local/bin/tula-appliance", encoding: .utf8) == "old binary")
            let relative = try Self.run(["install", Appliance.binary], ["DESTDIR": dest, "PREFIX": "usr"])
            #expect(relative.status == 1 && relative.stderr.contains("must be absolute"), "\(relative.stderr)")
        }

        /// Debian's systemd-analyze accepts both shipped units as installed (real paths: a PREFIX install).
        @Test func systemdAnalyzeVerifiesTheUnits() throws {
            let analyze = "/usr/bin/systemd-analyze"
            try #require(FileManager.default.isExecutableFile(atPath: analyze), "systemd-analyze (Debian package systemd) is missing")
            let scratch = try Scratch()
            defer { scratch.cleanup() }
            let env = ["PREFIX": scratch.file("usr"), "SYSCONFDIR": scratch.file("etc")]
            let installed = try Self.run(["install", Appliance.binary], env)
            #expect(installed.status == 0, "\(installed.stderr)")
            let units = ["tula.service", "tula-hugepages.service"].map { scratch.file("etc/systemd/system/\($0)") }
            let verify = try BackgroundProcess.run(analyze, ["verify"] + units, timeout: 60)
            #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
            #expect(try Self.run(["uninstall"], env).status == 0)
        }

        /// hugepages.sh refuses bad requests with status 2 and changes nothing; `status` reads what there is.
        @Test func hugepagesScriptRefusesBadRequests() throws {
            let script = packageRoot.appendingPathComponent("scripts/hugepages.sh").path
            let before = try BackgroundProcess.run("/bin/bash", [script, "status"])
            #expect(before.status == 0 && before.stdout.contains("2048kB: "), "\(before.stdout)")
            for args in [["reserve", "12x"], ["reserve", "4", "--page-size", "3M"], ["frobnicate"], ["reserve-for"]] {
                let result = try BackgroundProcess.run("/bin/bash", [script] + args)
                #expect(result.status == 2, "\(args): \(result.stderr)")
            }
            #expect(try BackgroundProcess.run("/bin/bash", [script, "status"]).stdout == before.stdout)
        }

        /// Two owners: each release drops to what another owner still holds, and the last one back to what there
        /// was before (the test suite's own reservation, owner `test`, holds through all of it).
        @Test func hugepageOwnersGiveBackOnlyTheirOwn() throws {
            let script = packageRoot.appendingPathComponent("scripts/hugepages.sh").path
            let nr = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"
            let count = { Int((try? String(contentsOfFile: nr, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? -1 }
            let start = count()
            try #require(start >= 0, "no 2 MiB hugepages on this kernel")
            defer {
                for owner in ["tula-test-a", "tula-test-b"] { _ = try? BackgroundProcess.run("/bin/bash", [script, "release", "--owner", owner]) }
            }
            let a = try BackgroundProcess.run("/bin/bash", [script, "reserve", "\(start + 8)", "--owner", "tula-test-a"])
            try #require(a.status == 0, "the kernel would not give 8 more 2 MiB pages: \(a.stderr)")
            #expect(try BackgroundProcess.run("/bin/bash", [script, "reserve", "\(start + 4)", "--owner", "tula-test-b"]).status == 0)
            #expect(count() == start + 8)
            #expect(try BackgroundProcess.run("/bin/bash", [script, "release", "--owner", "tula-test-a"]).status == 0)
            #expect(count() == start + 4, "b still holds start + 4")
            #expect(try BackgroundProcess.run("/bin/bash", [script, "release", "--owner", "tula-test-b"]).status == 0)
            #expect(count() == start, "back to what there was")
        }
    }
}
