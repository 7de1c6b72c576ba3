package io.phost.appliance.cli;

import io.phost.appliance.config.ApplianceConfig;
import io.phost.appliance.config.ConfigError;
import io.phost.appliance.config.ConfigException;
import io.phost.appliance.config.ConfigLoader;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/**
 * {@code phost config validate FILE...}: checks files without applying anything. Prints one
 * {@code FILE:LINE:COL: key.path: message} line per problem on stderr and exits 2, or a one-line summary per
 * file on stdout and exits 0.
 */
@Command(name = "validate", mixinStandardHelpOptions = true,
    description = {"Check appliance.toml files: every error as FILE:LINE:COL: key.path: message.",
        "Exit 0 when valid, 2 when not. Nothing is created or changed."})
public final class ConfigValidateCommand implements Callable<Integer> {
    @Parameters(paramLabel = "FILE", arity = "1..*", description = "Config files to check.")
    List<Path> files;

    @Spec
    CommandSpec spec;

    @Override
    public Integer call() {
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        int total = 0;
        for (Path file : files) {
            try {
                ApplianceConfig c = ConfigLoader.load(file);
                out.println(file + ": ok (" + c.disks().size() + " disks, " + c.qosPolicies().size()
                    + " QoS policies, " + c.switches().size() + " switches, " + c.partitions().size() + " partitions)");
            } catch (ConfigException e) {
                for (ConfigError error : e.errors()) {
                    err.println(error);
                }
                total += e.errors().size();
            }
        }
        out.flush();
        if (total > 0) {
            err.println("phost: " + (total == 1 ? "1 error" : total + " errors") + "; nothing was applied");
            err.flush();
            return ConfigException.EXIT_CODE;
        }
        return 0;
    }
}
