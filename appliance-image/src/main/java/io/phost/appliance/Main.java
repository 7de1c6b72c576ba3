package io.phost.appliance;

import io.phost.appliance.cli.BenchCommand;
import io.phost.appliance.cli.ConfigCommand;
import io.phost.appliance.cli.GuestCommand;
import io.phost.appliance.cli.PartitionCommand;
import io.phost.appliance.cli.QosCommand;
import io.phost.appliance.cli.RunCommand;
import io.phost.appliance.cli.StatusCommand;
import io.phost.appliance.cli.VersionCommand;
import io.phost.appliance.image.ImageCommand;
import io.phost.appliance.vhd.VhdCommand;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** Entry point of the {@code phost} program. */
@Command(name = "phost",
    description = "Partition Host: a user-space storage and I/O virtualization appliance.",
    mixinStandardHelpOptions = true,
    versionProvider = VersionCommand.Provider.class,
    subcommands = {
        RunCommand.class,
        ConfigCommand.class,
        StatusCommand.class,
        QosCommand.class,
        io.phost.appliance.cli.ApplyCommand.class,
        PartitionCommand.class,
        io.phost.appliance.cli.EventsCommand.class,
        io.phost.appliance.cli.CheckpointCommand.class,
        io.phost.appliance.cli.BackupCommand.class,
        io.phost.appliance.cli.DiskCommand.class,
        BenchCommand.class,
        GuestCommand.class,
        VhdCommand.class,
        ImageCommand.class,
        VersionCommand.class,
        CommandLine.HelpCommand.class,
    })
public final class Main implements Runnable {
    @Option(names = "--debug", scope = CommandLine.ScopeType.INHERIT,
        description = "Show stack traces of errors.")
    boolean debug;

    @Override
    public void run() {
        new CommandLine(this).usage(System.out);
    }

    public static void main(String[] args) {
        io.phost.appliance.run.LogfmtLoggerFinder.bridgeJavaUtilLogging();
        // Exits with _exit(2): the command has flushed and closed what it owns, and HotSpot's own exit waits 0.3 s
        // or more for threads in native code (ProcessExit says why).
        io.phost.core.sys.ProcessExit.now(execute(args));
    }

    /**
     * The whole command tree. Every command gets {@code -h/--help} here, so a command added later cannot
     * forget it (the README promises it everywhere; {@code HelpTreeTest} walks the tree).
     */
    public static CommandLine commandLine() {
        CommandLine cli = new CommandLine(new Main());
        addHelpEverywhere(cli);
        return cli;
    }

    private static void addHelpEverywhere(CommandLine cmd) {
        CommandLine.Model.CommandSpec spec = cmd.getCommandSpec();
        boolean hasHelp = spec.options().stream().anyMatch(CommandLine.Model.OptionSpec::usageHelp);
        if (!hasHelp && spec.findOption("--help") == null) {
            spec.addOption(CommandLine.Model.OptionSpec.builder("-h", "--help")
                .usageHelp(true).description("Show this help message and exit.").build());
        }
        cmd.getSubcommands().values().forEach(Main::addHelpEverywhere);
    }

    /** Runs the CLI and returns its exit code; user errors print one line on stderr (--debug adds the trace). */
    public static int execute(String... args) {
        CommandLine cli = commandLine();
        boolean debug = java.util.Arrays.asList(args).contains("--debug");
        cli.setExecutionExceptionHandler((e, cmd, parsed) -> {
            if (e instanceof UserException u) {
                cmd.getErr().println("phost: " + u.getMessage());
                if (debug) {
                    e.printStackTrace(cmd.getErr());
                }
                return u.exitCode();
            }
            cmd.getErr().println("phost: " + e);
            if (debug) {
                e.printStackTrace(cmd.getErr());
            } else {
                cmd.getErr().println("phost: (run with --debug for the stack trace)");
            }
            return 1;
        });
        return cli.execute(args);
    }
}
