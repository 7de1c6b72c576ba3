package io.phost.appliance.cli;

import picocli.CommandLine.Command;

@Command(name = "config", description = "Validate or print appliance.toml files.", mixinStandardHelpOptions = true,
    subcommands = {ConfigValidateCommand.class, ConfigExampleCommand.class})
public final class ConfigCommand {
}
