// `tula-appliance bind` / `unbind` against a fake sysfs tree: dry runs, every refusal and --force, exit codes, rollback.

import Foundation
import Testing

extension Integration {
    @Suite struct NICBind {
        /// A fake host root: PCI devices with drivers and interfaces, IOMMU groups, routes and `ip-addr.json`.
        final class Tree {
            let scratch: Scratch
            var root: String { scratch.file("root") }
            private var interfaces: [[String: Any]] = []
            private var routes = ["Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT"]

            init(iommu: Bool = true) throws {
                scratch = try Scratch()
                for directory in ["sys/bus/pci/drivers/ixgbe", "sys/bus/pci/drivers/vfio-pci", "sys/bus/pci/drivers/uio_pci_generic",
                                  "sys/kernel/iommu_groups", "proc/net"] {
                    try mkdir(directory)
                }
                if iommu { try mkdir("sys/kernel/iommu_groups/7") }
                try flush()
            }

            deinit { scratch.cleanup() }

            func mkdir(_ relative: String) throws {
                try FileManager.default.createDirectory(atPath: "\(root)/\(relative)", withIntermediateDirectories: true)
            }

            func write(_ relative: String, _ text: String) throws {
                try mkdir((relative as NSString).deletingLastPathComponent)
                try text.write(toFile: "\(root)/\(relative)", atomically: true, encoding: .utf8)
            }

            func device(_ address: String, driver: String? = "ixgbe", interface: String? = "ens1f0", up: Bool = false,
                        addresses: [String] = [], pciClass: String = "0x020000") throws {
                let directory = "sys/bus/pci/devices/\(address)"
                try write("\(directory)/class", pciClass + "\n")
                if let driver {
                    try mkdir("sys/bus/pci/drivers/\(driver)")
                    try FileManager.default.createSymbolicLink(atPath: "\(root)/\(directory)/driver",
                                                               withDestinationPath: "../../drivers/\(driver)")
                }
                if FileManager.default.fileExists(atPath: "\(root)/sys/kernel/iommu_groups/7") {
                    try FileManager.default.createSymbolicLink(atPath: "\(root)/\(directory)/iommu_group",
                                                               withDestinationPath: "../../../../kernel/iommu_groups/7")
                }
                if let interface {
                    try mkdir("\(directory)/net/\(interface)")
                    try write("sys/class/net/\(interface)/operstate", up ? "up\n" : "down\n")
                    interfaces.append(["ifname": interface, "flags": up ? ["UP"] : [],
                                       "addr_info": addresses.map { ["family": "inet", "local": $0, "prefixlen": 24, "scope": "global"] }])
                }
                try flush()
            }

            func defaultRoute(via interface: String) throws {
                routes.append("\(interface)\t00000000\t0101000A\t0003\t0\t0\t0\t00000000\t0\t0\t0")
                try flush()
            }

            private func flush() throws {
                try write("proc/net/route", routes.joined(separator: "\n") + "\n")
                try write("ip-addr.json", String(decoding: try JSONSerialization.data(withJSONObject: interfaces), as: UTF8.self))
            }

            /// Every path under the root with its link target or contents: equal before and after means nothing changed.
            func snapshot() -> [String: String] {
                var out: [String: String] = [:]
                let enumerator = FileManager.default.enumerator(atPath: root)
                while let path = enumerator?.nextObject() as? String {
                    let full = "\(root)/\(path)"
                    out[path] = (try? FileManager.default.destinationOfSymbolicLink(atPath: full)).map { "-> \($0)" }
                        ?? (try? String(contentsOfFile: full, encoding: .utf8)) ?? "dir"
                }
                return out
            }

            func driver(_ address: String) -> String? {
                (try? FileManager.default.destinationOfSymbolicLink(atPath: "\(root)/sys/bus/pci/devices/\(address)/driver"))
                    .map { ($0 as NSString).lastPathComponent }
            }

            /// A valid config whose ports name `devices` (PCI addresses or vdevs).
            func config(_ devices: [String]) throws -> String {
                let ports = devices.enumerated().map { index, device in
                    "  - name: p\(index)\n    device: \"\(device)\"\n    address: 10.0.\(index + 1).2\n"
                }.joined()
                return try scratch.write("tula.yaml", """
                    ports:
                    \(ports)workers: 1
                    vips:
                      - name: web
                        address: 10.0.1.100
                        port: 80
                        protocol: tcp
                        mode: l2
                        backends:
                          - address: 10.0.1.11
                            mac: "02:00:00:00:01:11"

                    """)
            }

            /// `tula-appliance ARGS --sysfs-root ROOT`, with no SSH session in the environment unless given.
            func run(_ args: [String], ssh: String = "", viaEnvironment: Bool = false) throws -> ProcessResult {
                try BackgroundProcess(executable: Appliance.binary, args + (viaEnvironment ? [] : ["--sysfs-root", root]),
                                      environment: ["SSH_CONNECTION": ssh, "TULA_SYSFS_ROOT": viaEnvironment ? root : ""])
                    .wait(timeout: 60)
            }
        }

        @Test func dryRunPrintsTheExactWritesAndChangesNothing() throws {
            let tree = try Tree()
            try tree.device("0000:3b:00.0")
            let config = try tree.config(["3b:00.0", "net_pcap0"])
            let before = tree.snapshot()
            let result = try tree.run(["bind", "--config", config, "--dry-run"], viaEnvironment: true)
            #expect(result.status == 0, "\(result.stderr)")
            let root = tree.root
            #expect(result.stdout == """
                port p1: net_pcap0 is a DPDK vdev; nothing to bind
                # 0000:3b:00.0: ixgbe -> vfio-pci
                echo vfio-pci > \(root)/sys/bus/pci/devices/0000:3b:00.0/driver_override
                echo 0000:3b:00.0 > \(root)/sys/bus/pci/drivers/ixgbe/unbind
                echo 0000:3b:00.0 > \(root)/sys/bus/pci/drivers/vfio-pci/bind
                # remember 0000:3b:00.0 (ixgbe) in \(root)/var/lib/tula/bound-devices.json
                dry run: nothing changed

                """, "\(result.stdout)")
            #expect(tree.snapshot() == before)
        }

        /// Default route, an SSH session's address, up with addresses: refused with the reason (exit 1, nothing
        /// changed); with --force, taken with a warning.
        @Test func managementInterfacesAreRefusedUnlessForced() throws {
            let cases: [(name: String, setUp: (Tree) throws -> Void, ssh: String, reason: String)] = [
                ("default route", { try $0.device("0000:3b:00.0", interface: "eno1"); try $0.defaultRoute(via: "eno1") }, "",
                 "interface eno1 carries the default route"),
                ("ssh", { try $0.device("0000:3b:00.0", addresses: ["10.0.1.2"]) }, "10.9.9.9 50000 10.0.1.2 22",
                 "interface ens1f0 holds 10.0.1.2, the local address of an SSH session"),
                ("up", { try $0.device("0000:3b:00.0", up: true, addresses: ["10.0.1.2"]) }, "",
                 "interface ens1f0 is up with addresses 10.0.1.2/24"),
            ]
            for item in cases {
                let tree = try Tree()
                try item.setUp(tree)
                let config = try tree.config(["0000:3b:00.0"])
                let before = tree.snapshot()
                let refused = try tree.run(["bind", "--config", config], ssh: item.ssh)
                #expect(refused.status == 1, "\(item.name): \(refused.stderr)")
                #expect(refused.stderr.contains("error: 0000:3b:00.0 (port p0): \(item.reason)"), "\(item.name): \(refused.stderr)")
                #expect(refused.stderr.contains("1 device refused; nothing changed"), "\(item.name): \(refused.stderr)")
                #expect(tree.snapshot() == before, "\(item.name)")
                let forced = try tree.run(["bind", "--config", config, "--force", "--dry-run"], ssh: item.ssh)
                #expect(forced.status == 0, "\(item.name): \(forced.stderr)")
                #expect(forced.stderr.contains("warning: 0000:3b:00.0 (port p0): \(item.reason)"), "\(item.name): \(forced.stderr)")
                #expect(forced.stderr.contains("taken anyway (--force)"), "\(item.name): \(forced.stderr)")
                #expect(forced.stdout.contains("drivers/vfio-pci/bind"), "\(item.name): \(forced.stdout)")
            }
        }

        @Test func busyAndUnknownDevicesAreRefusedEvenWithForce() throws {
            let tree = try Tree()
            try tree.device("0000:3b:00.0", interface: nil)
            try tree.device("0000:00:17.0", driver: "ahci", interface: nil, pciClass: "0x010601")
            let config = try tree.config(["0000:3b:00.0", "0000:00:17.0", "0000:af:00.0"])
            let before = tree.snapshot()
            for extra in [[], ["--force"]] {
                let result = try tree.run(["bind", "--config", config] + extra)
                #expect(result.status == 1, "\(result.stderr)")
                #expect(result.stderr.contains("0000:3b:00.0 (port p0): busy: bound to ixgbe but without a network interface"), "\(result.stderr)")
                #expect(result.stderr.contains("0000:00:17.0 (port p1): not a network device (PCI class 0x10601"), "\(result.stderr)")
                #expect(result.stderr.contains("0000:af:00.0 (port p2): no such PCI device"), "\(result.stderr)")
                #expect(result.stderr.contains("3 devices refused; nothing changed"), "\(result.stderr)")
            }
            #expect(tree.snapshot() == before)
        }

        @Test func alreadyBoundAndVdevOnlyAreNothingToDo() throws {
            let tree = try Tree()
            try tree.device("0000:3b:00.0", driver: "vfio-pci", interface: nil)
            let before = tree.snapshot()
            let bound = try tree.run(["bind", "--config", try tree.config(["0000:3b:00.0"])])
            #expect(bound.status == 0, "\(bound.stderr)")
            #expect(bound.stdout == "0000:3b:00.0 (port p0): already bound to vfio-pci; nothing to do\n")
            let vdevs = try tree.run(["bind", "--config", try tree.config(["net_pcap0", "net_null0"])])
            #expect(vdevs.status == 0, "\(vdevs.stderr)")
            #expect(vdevs.stdout.contains("port p0: net_pcap0 is a DPDK vdev; nothing to bind"))
            #expect(vdevs.stdout.contains("names a PCI device; nothing to bind"), "\(vdevs.stdout)")
            #expect(tree.snapshot() == before)
        }

        @Test func withoutAnIOMMUItIsUioPCIGenericAndSaysSo() throws {
            let tree = try Tree(iommu: false)
            try tree.device("0000:3b:00.0")
            let result = try tree.run(["bind", "--config", try tree.config(["0000:3b:00.0"]), "--dry-run"])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.contains("echo uio_pci_generic > \(tree.root)/sys/bus/pci/devices/0000:3b:00.0/driver_override"))
            #expect(result.stdout.contains("echo 0000:3b:00.0 > \(tree.root)/sys/bus/pci/drivers/uio_pci_generic/bind"))
            #expect(result.stderr.contains("warning: no IOMMU: using uio_pci_generic, which gives the NIC unrestricted DMA"),
                    "\(result.stderr)")
        }

        /// A plain tree does not rebind anything, so the check after the writes fails: the command must put the
        /// device back, restore the state file, and say so.
        @Test func aBindThatDoesNotTakeIsRolledBack() throws {
            let tree = try Tree()
            try tree.device("0000:3b:00.0")
            try tree.device("0000:3b:00.1", interface: "ens1f1")
            let state = "\(tree.root)/var/lib/tula/bound-devices.json"
            try tree.write("var/lib/tula/bound-devices.json", "{\"devices\":[]}\n")
            let result = try tree.run(["bind", "--config", try tree.config(["0000:3b:00.0", "0000:3b:00.1"])])
            #expect(result.status == 1)
            #expect(result.stderr.contains("bind failed: 0000:3b:00.0 did not end on vfio-pci: its driver is ixgbe; "
                + "0000:3b:00.0 put back on ixgbe"), "\(result.stderr)")
            #expect(tree.driver("0000:3b:00.0") == "ixgbe" && tree.driver("0000:3b:00.1") == "ixgbe")
            #expect((try? String(contentsOfFile: state, encoding: .utf8)) == "{\"devices\":[]}\n",
                    "the state file is put back byte for byte (an empty one was there before)")
            #expect(!FileManager.default.fileExists(atPath: "\(tree.root)/sys/bus/pci/devices/0000:3b:00.1/driver_override"),
                    "the second device was never touched")
        }

        /// Two runs at once would interleave their sysfs writes and state-file updates: the second is refused.
        @Test func aSecondBindWaitsForNoOne() throws {
            let tree = try Tree()
            try tree.device("0000:3b:00.0")
            let lockPath = "\(tree.root)/var/lib/tula/bound-devices.json.lock"
            try FileManager.default.createDirectory(atPath: "\(tree.root)/var/lib/tula", withIntermediateDirectories: true)
            let fd = open(lockPath, O_RDWR | O_CREAT, 0o600)
            #expect(fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0)
            defer { close(fd) }
            let result = try tree.run(["bind", "--config", try tree.config(["0000:3b:00.0"])])
            #expect(result.status == 1 && result.stderr.contains("another tula-appliance bind or unbind is running"), "\(result.stderr)")
            #expect(tree.driver("0000:3b:00.0") == "ixgbe")
        }

        @Test func unbindGivesBackTheRememberedDriver() throws {
            let tree = try Tree()
            try tree.device("0000:3b:00.0", driver: "vfio-pci", interface: nil)
            try tree.device("0000:3b:00.1", driver: "vfio-pci", interface: nil)
            let none = try tree.run(["unbind"])
            #expect(none.status == 0 && none.stdout.contains("no device is remembered"), "\(none.stdout)\(none.stderr)")
            try tree.write("var/lib/tula/bound-devices.json", """
                {"devices":[{"address":"0000:3b:00.0","ports":["wan"],"driver":"ixgbe","interfaces":["ens1f0"],"bound_to":"vfio-pci"}]}
                """)
            let before = tree.snapshot()
            let result = try tree.run(["unbind", "--dry-run"])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout == """
                # 0000:3b:00.0: vfio-pci -> ixgbe
                echo '' > \(tree.root)/sys/bus/pci/devices/0000:3b:00.0/driver_override
                echo 0000:3b:00.0 > \(tree.root)/sys/bus/pci/drivers/vfio-pci/unbind
                echo 0000:3b:00.0 > \(tree.root)/sys/bus/pci/drivers/ixgbe/bind
                # forget 0000:3b:00.0 in \(tree.root)/var/lib/tula/bound-devices.json
                dry run: nothing changed

                """, "\(result.stdout)")
            // A device on vfio-pci that bind did not take: its kernel driver is unknown, so it is refused with the by-hand steps.
            let unknown = try tree.run(["unbind", "--config", try tree.config(["0000:3b:00.0", "0000:3b:00.1"]), "--dry-run"])
            #expect(unknown.status == 1)
            #expect(unknown.stderr.contains("0000:3b:00.1 (port p1): bound to vfio-pci, but not by `tula-appliance bind`"), "\(unknown.stderr)")
            #expect(tree.snapshot() == before)
        }

        @Test func badInputIsAClearErrorAndChangesNothing() throws {
            let tree = try Tree()
            try tree.device("0000:3b:00.0")
            let before = tree.snapshot()
            let badConfig = try tree.scratch.write("bad.yaml", "ports: 3\n")
            let refused = try tree.run(["bind", "--config", badConfig])
            #expect(refused.status == 2)
            #expect(refused.stderr.contains("bad.yaml:1: "), "\(refused.stderr)")
            let noRoot = try BackgroundProcess(executable: Appliance.binary, ["bind", "--config", badConfig, "--sysfs-root",
                                                                              tree.scratch.file("missing")]).wait(timeout: 60)
            #expect(noRoot.status == 64)
            #expect(noRoot.stderr.contains("is not a directory"), "\(noRoot.stderr)")
            try tree.write("var/lib/tula/bound-devices.json", "{\"devices\": 3}")
            let corrupt = try tree.run(["unbind"])
            #expect(corrupt.status == 1)
            #expect(corrupt.stderr.contains("bound-devices.json: not a state file of `tula-appliance bind`"), "\(corrupt.stderr)")
            try FileManager.default.removeItem(atPath: "\(tree.root)/var")
            #expect(tree.snapshot() == before)
        }
    }
}
