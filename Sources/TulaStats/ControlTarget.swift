// What the stats/control server needs from a running appliance: totals, live edits, reload.

import TulaCore

/// A running appliance as the control server sees it. Implementations serialize calls themselves
/// and never make a worker wait.
public protocol ControlTarget: AnyObject, Sendable {
    /// Totals so far, summed over lcores.
    func statsSummary() -> Summary
    /// Adds or removes a backend, or sets a weight; throws (and changes nothing) when refused.
    func edit(_ change: ConfigEdit) throws(ControlError)
    /// Re-reads the config file and applies it; an invalid file or one that needs a restart changes nothing.
    func reload() throws(ControlError)
    /// Writes the running config to `path` (nil: the file the appliance was started with) atomically, keeping
    /// the previous file as `.bak`; returns what it did.
    func save(to path: String?) throws(ControlError) -> String
}
