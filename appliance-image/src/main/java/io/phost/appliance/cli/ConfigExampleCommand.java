package io.phost.appliance.cli;

import io.phost.appliance.config.ConfigLoader;
import java.io.PrintWriter;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/** {@code phost config example}: prints a commented appliance.toml that validates (or the embedded demo). */
@Command(name = "example", mixinStandardHelpOptions = true,
    description = {"Print a commented example appliance.toml (it validates as is).",
        "Start from it: phost config example > appliance.toml"})
public final class ConfigExampleCommand implements Callable<Integer> {
    @Option(names = "--demo", description = "Print the embedded demo that 'phost run' uses without --config instead.")
    boolean demo;

    @Spec
    CommandSpec spec;

    @Override
    public Integer call() {
        PrintWriter out = spec.commandLine().getOut();
        out.print(ConfigLoader.resourceText(demo ? ConfigLoader.DEMO_RESOURCE : ConfigLoader.EXAMPLE_RESOURCE));
        out.flush();
        return 0;
    }
}
