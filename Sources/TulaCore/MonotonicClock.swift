// Seconds on the monotonic clock, for timeouts, rates and deadlines that must not jump with the wall clock.
import Glibc

/// `clock_gettime(CLOCK_MONOTONIC)` in seconds.
public func monotonicSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}
