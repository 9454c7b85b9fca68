// Fills a VIPEntry's tunnel settings (encap, GUE port, per-flow outer source, DSCP) from its validated config.

import TulaCore
import TulaDatapath

extension DataplaneTables {
    /// Sets `entry`'s overhead, `tunnel` and `outOfLine` from `vip` (after `tunnel6` is set for IPv6 backends).
    static func applyEncapsulation(_ vip: VIPConfig, to entry: inout VIPEntry) {
        let e = vip.encapsulation
        var t = VIPTunnel()
        t.kind = e.kind
        t.guePort = e.guePort
        t.dscp = e.dscp ?? VIPTunnel.keepDSCP
        t.remark = e.remark
        t.general = !e.isDefault
        if let prefix = e.outerSource {
            t.perFlowSource = true
            switch prefix.address {
            case .v4(let a):
                (t.source4, t.source4HostMask) = (a.value, prefix.hostMask4)
            case .v6(let a):
                (t.source6Hi, t.source6Lo) = (a.hi, a.lo)
                (t.source6HostMaskHi, t.source6HostMaskLo) = prefix.hostMask6
            }
        }
        entry.tunnel = t
        if vip.mode == .l3 {
            entry.overheadBytes = UInt32(tunnelOverheadBytes(outer6: entry.tunnel6, kind: e.kind))
        }
        entry.outOfLine = entry.tunnel6 || !e.isDefault
    }
}
