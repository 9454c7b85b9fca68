// The tula-appliance command line: the subcommands (run, replay, check-config, stats, ctl, bind, ...).

import ArgumentParser

@main
struct TulaAppliance: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tula-appliance",
        abstract: "Tula: a Direct Server Return L4 load balancer on DPDK.",
        subcommands: [RunCommand.self, ReplayCommand.self, CheckConfigCommand.self, SynthCommand.self, BackendSetupCommand.self, DoctorCommand.self,
                      StatsCommand.self, ControlCommand.self, BindCommand.self, UnbindCommand.self, BirdConfigCommand.self]
    )
}
