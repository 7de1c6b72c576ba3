package io.phost.appliance.cli;

import picocli.CommandLine.Command;

@Command(name = "config", description = "Validate or print appliance.toml files.", subcommands = {})
public final class ConfigCommand {
}
