package io.phost.appliance.cli;

import picocli.CommandLine.Command;

/** {@code phost guest …}: the child-partition side (built-in workloads that run inside a process partition). */
@Command(name = "guest", description = "Run a built-in guest workload inside a child partition.",
    subcommands = {
        io.phost.appliance.guest.GuestIdleCommand.class,
        io.phost.appliance.guest.GuestIoCommand.class,
        io.phost.appliance.guest.GuestNetCommand.class,
    })
public final class GuestCommand {
}
