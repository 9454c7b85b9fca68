// The pieces of running as a systemd service that need no process: the watchdog's progress rule and log lines.
import Foundation
import Testing
@testable import TulaCore
@testable import TulaStats

@Suite struct ServiceSupportTests {
    @Test func watchdogIsFedOnlyWhileEveryWorkerAdvances() {
        var watch = WorkerWatch()
        #expect(watch.stalled([5, 9], now: 0, olderThan: 0.5) == [])      // the first look only records
        #expect(watch.stalled([6, 12], now: 1, olderThan: 0.5) == [])     // both advanced: ping
        #expect(watch.stalled([7, 12], now: 2, olderThan: 0.5) == [1])    // worker 1 stuck: no ping
        #expect(watch.stalled([7, 12], now: 3, olderThan: 0.5) == [0, 1]) // both stuck
        #expect(watch.stalled([8, 13], now: 4, olderThan: 0.5) == [])     // recovered
        #expect(watch.stalled([8, 13], now: 4.4, olderThan: 0.5) == [])   // not moved, but not for long yet
        #expect(watch.stalled([], now: 5, olderThan: 0.5) == [-1])        // no workers (stopped): never a ping
    }

    @Test func logLinesCarryThePriorityOnlyWhenAsked() {
        #expect(Log.line(.error, "bad", prefixed: true) == "<3>tula-appliance: error: bad")
        #expect(Log.line(.warning, "hm", prefixed: true) == "<4>tula-appliance: warning: hm")
        #expect(Log.line(.info, "ok", prefixed: true) == "<6>tula-appliance: ok")
        #expect(Log.line(.error, "two\nlines", prefixed: false) == "tula-appliance: error: two lines")
    }

    @Test func notifierNeedsASocketPathAndHonoursWatchdogPID() {
        #expect(SystemdNotifier(environment: [:]) == nil)
        #expect(SystemdNotifier(environment: ["NOTIFY_SOCKET": "relative/path"]) == nil)
        let mine = SystemdNotifier(environment: ["NOTIFY_SOCKET": "@tula-test", "WATCHDOG_USEC": "3000000",
                                                 "WATCHDOG_PID": "\(getpid())"])
        #expect(mine?.watchdogInterval == 1.5)
        let other = SystemdNotifier(environment: ["NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"])
        #expect(other != nil && other?.watchdogInterval == nil)
    }
}
