// The BIRD 2 config `tula-appliance bird-config` prints: Tula's VIP host routes learned from the kernel, announced over BGP.

/// Tula's kernel routes: one host route per servable VIP on a port's kernel interface, with this
/// routing protocol number (`ip route ... proto 252`, named `tula` in `/etc/iproute2/rt_protos.d/tula.conf`).
public enum TulaRoutes {
    public static let protocolNumber = 252
    public static let protocolName = "tula"
}

/// A BIRD 2 configuration for one appliance and one BGP peer: a kernel protocol per family that learns Tula's
/// routes (by protocol number) from the kernel interface, and a BGP session that exports exactly those,
/// next hop self, importing nothing; BFD on the session when asked.
public struct BirdConfig: Sendable {
    public var port: PortConfig
    public var peer: IPAddress
    public var localASN: UInt32
    public var peerASN: UInt32
    public var bfd: Bool
    /// BGP hold time, seconds (keepalives every third of it); 3 s withdraws a dead appliance's routes fast without BFD.
    public var holdSeconds: Int
    public var ipv6: Bool

    /// Why the arguments cannot make a config (exit 2 with it), or the config. `asn` and `peerASN` are the
    /// command-line text: 1...4294967295, 23456 (AS_TRANS) refused.
    public static func make(config: TulaConfig, peer: String, asn: String, peerASN: String, bfd: Bool,
                            holdSeconds: Int = 3) -> Result<BirdConfig, BirdConfigError> {
        guard let peerAddress = IPAddress(peer) else {
            return .failure(BirdConfigError("--peer \"\(peer)\" is not an IPv4 or IPv6 address"))
        }
        func parseASN(_ text: String, _ option: String) -> Result<UInt32, BirdConfigError> {
            guard let n = UInt32(text), n != 0 else {
                return .failure(BirdConfigError("\(option) \"\(text)\" is not an AS number (1...4294967295)"))
            }
            guard n != 23456 else { return .failure(BirdConfigError("\(option) 23456 is AS_TRANS (RFC 6793), not a real AS")) }
            return .success(n)
        }
        let local: UInt32, remote: UInt32
        switch parseASN(asn, "--asn") { case .success(let n): local = n; case .failure(let e): return .failure(e) }
        switch parseASN(peerASN, "--peer-asn") { case .success(let n): remote = n; case .failure(let e): return .failure(e) }
        guard (3...65535).contains(holdSeconds) else { return .failure(BirdConfigError("--hold must be 3...65535 seconds")) }
        guard let port = config.ports.first(where: { $0.kernelInterface != nil && (peerAddress.family == .v4 || $0.address6 != nil) }) else {
            return .failure(BirdConfigError("no port of the config has kernel_interface"
                + (peerAddress.family == .v6 ? " and address6 (the peer is IPv6)" : "") + ": BGP reaches its peer through it"))
        }
        if IPAddress.v4(port.address) == peerAddress || port.address6.map(IPAddress.v6) == peerAddress {
            return .failure(BirdConfigError("--peer \(peer) is the appliance's own address on port \(port.name)"))
        }
        let ipv6 = config.vips.contains { $0.address.family == .v6 } && port.address6 != nil
        return .success(BirdConfig(port: port, peer: peerAddress, localASN: local, peerASN: remote, bfd: bfd,
                                   holdSeconds: holdSeconds, ipv6: ipv6))
    }

    /// The config text (BIRD 2 syntax, checked by `bird -p -c FILE` in the tests).
    public var text: String {
        let interface = port.kernelInterface!
        let source = peer.family == .v4 ? port.address.description : port.address6!.description
        var out = """
            # BIRD 2 config for a Tula appliance, written by `tula-appliance bird-config`.
            # Tula keeps one host route per VIP it can serve on \(interface) (protocol \(TulaRoutes.protocolNumber), "\(TulaRoutes.protocolName)");
            # BIRD learns exactly those from the kernel and announces them to \(peer) with itself as next hop.
            router id \(port.address);
            log stderr all;

            protocol device {
                scan time 10;
            }

            # Tula's routes, learned from the kernel (BIRD never writes to the kernel table here).
            protocol kernel tula4 {
                ipv4 {
                    import where krt_source = \(TulaRoutes.protocolNumber) && net.len = 32;
                    export none;
                };
                learn;
                scan time 1;
            }

            """
        if ipv6 {
            out += """

                protocol kernel tula6 {
                    ipv6 {
                        import where krt_source = \(TulaRoutes.protocolNumber) && net.len = 128;
                        export none;
                    };
                    learn;
                    scan time 1;
                }

                """
        }
        if bfd {
            out += """

                protocol bfd {
                    interface "\(interface)" {
                        min rx interval 100 ms;
                        min tx interval 100 ms;
                        multiplier 3;
                    };
                }

                """
        }
        out += """

            protocol bgp tula_peer {
                local \(source) as \(localASN);
                neighbor \(peer) as \(peerASN);
                hold time \(holdSeconds);
                keepalive time \(max(1, holdSeconds / 3));
                connect retry time 2;
                error wait time 1, 10;

            """
        if bfd { out += "    bfd on;\n" }
        out += """
                ipv4 {
                    import none;
                    export where proto = "tula4";
                    next hop self;
                };

            """
        if ipv6 {
            out += """
                    ipv6 {
                        import none;
                        export where proto = "tula6";
                        next hop address \(port.address6!);
                    };

                """
        }
        out += "}\n"
        return out
    }
}

public struct BirdConfigError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
