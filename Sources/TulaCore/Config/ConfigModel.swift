// The validated appliance configuration (ports, workers, VIPs, backends) as loaded from tula.yaml.
import Foundation

/// The whole appliance configuration, as produced by `ConfigLoader` after validation.
///
/// Every value here has passed the loader's checks: addresses parse, ranges hold, names are
/// unique, and each VIP can actually be served in its mode (see `ConfigLoader`).
public struct TulaConfig: Sendable, Equatable {
    /// Default for `flows_per_worker`.
    public static let defaultFlowsPerWorker = 1_048_576
    /// Accepted range of `flows_per_worker`, before rounding up to a power of two.
    public static let flowsPerWorkerRange = 1024...67_108_864
    /// Default for `flow_idle_timeout`, in seconds.
    public static let defaultFlowIdleTimeoutSeconds = 300
    /// Accepted range of `flow_idle_timeout`, in seconds.
    public static let flowIdleTimeoutRange = 1...86_400
    /// Default for `stats_socket`.
    public static let defaultStatsSocket = "/run/tula/tula.sock"
    /// Longest Unix socket path, bytes: `sockaddr_un.sun_path` less its terminating NUL.
    public static let maxSocketPathBytes = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    /// The DPDK ports (key `ports`); never empty.
    public var ports: [PortConfig]
    /// How many worker lcores run, or exactly which ones (key `workers`).
    public var workers: WorkerSpec
    /// Flow-table capacity of each worker (key `flows_per_worker`).
    ///
    /// The file may give any value in `flowsPerWorkerRange`; the loader rounds it **up** to the
    /// next power of two (100000 becomes 131072), so the flow table can index with a mask.
    public var flowsPerWorker: Int
    /// Seconds after which an idle flow is forgotten (key `flow_idle_timeout`).
    public var flowIdleTimeoutSeconds: Int
    /// Absolute path of the stats Unix socket (key `stats_socket`).
    public var statsSocket: String
    /// The virtual services (key `vips`); may be empty.
    public var vips: [VIPConfig]
    /// Announce every VIP with a gratuitous ARP on every port at start (key `gratuitous_arp`, default false).
    public var gratuitousARP: Bool = false
    /// `poll`: `busy` (default: workers spin on their queues) or `adaptive` (a worker sleeps ~0.1 ms between
    /// polls after 256 empty ones, so idle appliances leave the CPU to others).
    public var adaptivePolling: Bool = false
    /// `metrics_listen`: where the HTTP metrics endpoint listens (`HOST:PORT`), nil (the default) for nowhere.
    public var metricsListen: String? = nil

    /// `127.0.0.1:9469` -> ("127.0.0.1", 9469), `[::1]:9469` -> ("::1", 9469); nil for anything else.
    public static func splitListen(_ listen: String) -> (host: String, port: Int)? {
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]),
              (1...65535).contains(port) else { return nil }
        let host = String(listen[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") {
            let inner = String(host.dropFirst().dropLast())
            var v6 = in6_addr()
            return inet_pton(AF_INET6, inner, &v6) == 1 ? (inner, port) : nil
        }
        return IPv4Address(host) != nil ? (host, port) : nil
    }

    /// Builds a configuration; unspecified values take the same defaults as the YAML loader.
    public init(ports: [PortConfig], workers: WorkerSpec = .count(1),
                flowsPerWorker: Int = TulaConfig.defaultFlowsPerWorker,
                flowIdleTimeoutSeconds: Int = TulaConfig.defaultFlowIdleTimeoutSeconds,
                statsSocket: String = TulaConfig.defaultStatsSocket, vips: [VIPConfig]) {
        self.ports = ports
        self.workers = workers
        self.flowsPerWorker = flowsPerWorker
        self.flowIdleTimeoutSeconds = flowIdleTimeoutSeconds
        self.statsSocket = statsSocket
        self.vips = vips
    }
}

/// Which worker lcores to run: `workers: 2` (a count) or `workers: [1, 2]` (explicit lcore ids).
public enum WorkerSpec: Sendable, Equatable {
    /// Run this many workers (1...64) on lcores chosen by the appliance.
    case count(Int)
    /// Run one worker on each of these lcore ids (unique, 0...1023, non-empty).
    case lcores([Int])
}

/// One DPDK port and the appliance's own identity on its segment (an entry of `ports`).
public struct PortConfig: Sendable, Equatable {
    /// Unique name, `[A-Za-z0-9_-]+`.
    public var name: String
    /// A PCI address (`0000:3b:00.0`) or a DPDK vdev string (`net_pcap0,rx_pcap=in.pcap`).
    public var device: String
    /// The appliance's own IPv4 address on this segment.
    public var address: IPv4Address
    /// The MAC to send from; nil means the port's own hardware MAC.
    public var mac: MACAddress?
    /// Next-hop router, needed by l3 VIPs.
    public var gateway: IPv4Address?
    /// The gateway's MAC (key `gateway_mac`); resolved by ARP when absent.
    public var gatewayMAC: MACAddress?
    /// 802.1Q VLAN id of the port's segment (key `vlan`, 1...4094): l3 output and replies are tagged with it.
    public var vlan: UInt16? = nil
    /// The appliance's own IPv6 address on this segment (key `address6`): answered by neighbor discovery,
    /// and the outer source of IPv6 tunnels.
    public var address6: IPv6Address? = nil
    /// Next-hop router for l3 traffic to IPv6 backends (key `gateway6`).
    public var gateway6: IPv6Address? = nil
    /// The IPv6 gateway's MAC (key `gateway6_mac`); resolved by neighbor discovery when absent.
    public var gateway6MAC: MACAddress? = nil
    /// MTU, 68...9216 (default 1500).
    public var mtu: Int
    /// Kernel exception interface (key `kernel_interface`): a TAP with the port's MAC, addresses and MTU that
    /// receives the frames for the appliance's own address (SSH, BGP, BFD, ping, ARP) and whose output leaves
    /// through the port. nil: no exception path (such frames are dropped as today).
    public var kernelInterface: String? = nil
    /// Frames per second one port may pass to its kernel interface (key `kernel_rate`, default 10000);
    /// the token bucket holds `kernelBurst` (key `kernel_burst`, default 256). Excess is `kernel-dropped`.
    public var kernelRate: Int = PortConfig.defaultKernelRate
    public var kernelBurst: Int = PortConfig.defaultKernelBurst
    public static let defaultKernelRate = 10_000, defaultKernelBurst = 256
    /// Prefix lengths of `address` and `address6` on the kernel interface (keys `kernel_prefix_length`,
    /// default 32, and `kernel_prefix_length6`, default 128): the kernel's connected route to its peers.
    public var kernelPrefixLength: Int = 32
    public var kernelPrefixLength6: Int = 128
    /// Line of this port's entry in the config file, for later error messages (0 if not from a file).
    public var line: Int

    /// Builds a port entry; unspecified values take the loader's defaults.
    public init(name: String, device: String, address: IPv4Address, mac: MACAddress? = nil,
                gateway: IPv4Address? = nil, gatewayMAC: MACAddress? = nil, mtu: Int = 1500, line: Int = 0) {
        self.name = name
        self.device = device
        self.address = address
        self.mac = mac
        self.gateway = gateway
        self.gatewayMAC = gatewayMAC
        self.mtu = mtu
        self.line = line
    }
}

/// One virtual service: address, port (or every port), protocol and its backends (an entry of `vips`).
public struct VIPConfig: Sendable, Equatable {
    /// Default Maglev lookup-table size (a prime).
    public static let defaultTableSize = 65_537
    /// Longest VIP name, bytes.
    public static let maxNameBytes = 64
    /// Accepted range of `maglev_table_size` (it must also be prime and >= 100 per backend).
    public static let tableSizeRange = 251...1_000_003

    /// Unique name.
    public var name: String
    /// The virtual address (IPv4 or IPv6) clients connect to.
    public var address: IPAddress
    /// Destination port 1...65535, or nil for every port (`port: "*"`); the first port of a range.
    public var port: UInt16?
    /// Key `port: "FIRST-LAST"`: the last port of a range (`port` is the first), nil for one port or `*`.
    public var portEnd: UInt16? = nil
    /// Key `address: NETWORK/LEN`: the prefix length of a prefix VIP (`address` is the network), nil for one address.
    public var prefixLength: Int? = nil
    /// Key `quic`: route QUIC short-header packets by the server id in their connection ID (UDP only).
    public var quic: Bool = false
    /// Key `protocol`: tcp or udp.
    public var proto: L4Protocol
    /// Key `mode`: l2 (MAC rewrite) or l3 (IP-in-IP).
    public var mode: DSRMode
    /// Key `maglev_table_size`: a prime, at least 100 × the number of backends (default 65537).
    public var tableSize: Int
    /// The real servers; never empty.
    public var backends: [BackendConfig]
    /// What picks the backend (key `hash`, default 5tuple).
    public var hash: FlowHashMode = .fiveTuple
    /// Answer ICMP echo requests to the VIP address (key `icmp_echo`, default true).
    public var icmpEcho: Bool = true
    /// Probe the backends (key `health_check`); nil: every backend counts as healthy.
    public var healthCheck: HealthCheckConfig? = nil
    /// Keys `encap`, `gue_port`, `outer_source`, `dscp`, `remark` (EncapsulationConfig.swift).
    public var encapsulation = EncapsulationConfig()
    /// Line of this VIP's entry in the config file (0 if not from a file).
    public var line: Int

    /// Builds a VIP; unspecified values take the loader's defaults.
    public init(name: String, address: IPAddress, port: UInt16?, proto: L4Protocol, mode: DSRMode,
                tableSize: Int = VIPConfig.defaultTableSize, backends: [BackendConfig], line: Int = 0) {
        self.name = name
        self.address = address
        self.port = port
        self.proto = proto
        self.mode = mode
        self.tableSize = tableSize
        self.backends = backends
        self.line = line
    }

    /// The family of the backends' addresses (all one family; the loader checks).
    public var backendFamily: IPFamily { backends.first?.address.family ?? address.family }
}

/// One real server behind a VIP (an entry of a VIP's `backends`).
public struct BackendConfig: Sendable, Equatable {
    /// Accepted range of `weight`; 0 drains the backend.
    public static let weightRange = 0...1000

    /// The backend's address (for l3, the outer destination of the tunnel; its family picks IPv4 or IPv6 outside).
    public var address: IPAddress
    /// The backend's MAC (l2); resolved by ARP or neighbor discovery when absent. Unused by l3.
    public var mac: MACAddress?
    /// l2 only: send to this backend tagged with this 802.1Q VLAN id (key `vlan`) instead of the input's tagging.
    public var vlan: UInt16? = nil
    /// Relative share of new flows, 0...1000 (default 1; 0 = drain).
    public var weight: Int
    /// Key `quic_server_id`: the server id this backend puts in its QUIC connection IDs (quic VIPs), nil for none.
    public var quicServerID: UInt32? = nil
    /// Line of this backend's entry in the config file (0 if not from a file).
    public var line: Int

    /// Builds a backend entry; unspecified values take the loader's defaults.
    public init(address: IPAddress, mac: MACAddress? = nil, weight: Int = 1, line: Int = 0) {
        self.address = address
        self.mac = mac
        self.weight = weight
        self.line = line
    }
}

/// A refused configuration: where (file and 1-based line) and why.
///
/// `description` is `<file>:<line>: <reason>`, for example
/// `tula.yaml:14: vips[1].mode: unknown mode "l4" (expected l2 or l3)`.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The config file's path as given to the loader.
    public var file: String
    /// 1-based line of the offending node.
    public var line: Int
    /// What is wrong, starting with the offending key path when there is one.
    public var reason: String

    public init(file: String, line: Int, reason: String) {
        self.file = file
        self.line = line
        self.reason = reason
    }

    public var description: String { "\(file):\(line): \(reason)" }
}
