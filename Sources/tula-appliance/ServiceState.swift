// What `run`'s main thread does between signals: tells systemd when Tula is ready, keeps its STATUS line current,
// and feeds the watchdog only while every worker lcore makes progress.

import Foundation
import TulaCore
import TulaPMD
import TulaStats

struct ServiceState {
    let appliance: Appliance
    let notifier: SystemdNotifier?
    private(set) var ready = false
    private var nextPing = 0.0, nextStatus = 0.0
    private var lastPackets: UInt64 = 0, lastSample = 0.0, packetsPerSecond = 0.0
    private var stallLogged = false
    private var lastStatus = ""

    /// How often STATUS= is refreshed, seconds.
    static let statusInterval = 2.0

    init(appliance: Appliance, notifier: SystemdNotifier?) {
        self.appliance = appliance
        self.notifier = notifier
    }

    /// How long the main thread may wait for a signal between duties, milliseconds.
    var tickMilliseconds: Int {
        guard let interval = notifier?.watchdogInterval else { return 500 }
        return max(10, min(500, Int(interval * 500)))
    }

    /// One turn of duties: readiness (READY=1 once every port is started and every worker polls; a port whose
    /// link is down does not hold it back, or systemd's start timeout would restart the appliance and cut the
    /// ports that work: it shows in STATUS, /healthz and the log), the STATUS line, and the watchdog ping.
    mutating func tick(now: Double = monotonicSeconds()) {
        let progress = appliance.workerProgress
        // A sample every tick keeps the view of progress /healthz and the watchdog share current.
        let stalled = appliance.stalledWorkers(olderThan: notifier?.watchdogInterval ?? 1)
        if !ready {
            let ports = appliance.portsUp
            if !progress.isEmpty && progress.allSatisfy({ $0 > 0 }) {
                ready = true
                if ports.up < ports.total {
                    Log.warning("\(ports.total - ports.up) of \(ports.total) ports have no link; forwarding on the others")
                }
                lastSample = now
                lastPackets = appliance.receivedPackets
                lastStatus = statusLine()
                notifier?.ready(status: lastStatus)
                Log.info("ready: \(lastStatus)")
            } else if now >= nextStatus {
                nextStatus = now + ServiceState.statusInterval
                notifier?.status("starting: waiting for the workers to poll (\(ports.up) of \(ports.total) ports have link)")
            }
            return
        }
        if now >= nextStatus {
            let packets = appliance.receivedPackets
            if now > lastSample { packetsPerSecond = Double(packets &- lastPackets) / (now - lastSample) }
            lastPackets = packets
            lastSample = now
            nextStatus = now + ServiceState.statusInterval
            let status = statusLine()
            if status != lastStatus { notifier?.status(status); lastStatus = status }
        }
        if let interval = notifier?.watchdogInterval, now >= nextPing {
            nextPing = now + interval
            if stalled.isEmpty {
                notifier?.watchdog()
                if stallLogged { Log.info("every worker makes progress again; feeding the watchdog") }
                stallLogged = false
            } else if !stallLogged {
                stallLogged = true
                let who = stalled == [-1] ? "no worker is running" : "worker \(stalled.map(String.init).joined(separator: ", ")) made no progress in \(interval) s"
                Log.error("\(who): not feeding the systemd watchdog (the service will be restarted if it stays stuck)")
            }
        }
    }

    /// `ports up 1/1, VIPs 2, backends healthy 5/5, 1234 pps`.
    func statusLine() -> String {
        let ports = appliance.portsUp, backends = appliance.healthyBackends
        return "ports up \(ports.up)/\(ports.total), VIPs \(appliance.vipCount), "
            + "backends healthy \(backends.healthy)/\(backends.total), \(Int(packetsPerSecond.rounded())) pps"
    }

    /// Around a reload: RELOADING=1, then READY=1 with the new state.
    func reloading() { notifier?.reloading() }
    func reloaded() { if ready { notifier?.ready(status: statusLine()) } }
    func stopping() { notifier?.stopping() }
}
