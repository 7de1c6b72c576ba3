package io.phost.appliance.config;

import io.phost.appliance.guest.GuestIdleCommand;
import io.phost.appliance.guest.GuestIoCommand;
import io.phost.appliance.guest.GuestMixedCommand;
import io.phost.appliance.guest.GuestNetCommand;
import java.util.List;
import java.util.function.Supplier;
import picocli.CommandLine;

/**
 * Checks {@code [partition.workload] args} with the workload's own command line, so a config whose
 * workload would die at start with "Unknown option" is refused by {@code config validate} instead, at the
 * position of the offending argument.
 */
final class WorkloadArguments {
    private WorkloadArguments() {
    }

    /** The problem with {@code args} and the index of the argument it is about (-1: the whole list). */
    record Problem(int index, String message) {
    }

    /** Null when {@code phost guest KIND ARGS...} would accept {@code args}. */
    static Problem check(String kind, List<String> args) {
        Supplier<Object> command = switch (kind) {
            case "io" -> GuestIoCommand::new;
            case "net" -> GuestNetCommand::new;
            case "mixed" -> GuestMixedCommand::new;
            case "idle" -> GuestIdleCommand::new;
            default -> null;
        };
        if (command == null) {
            return null; // the kind itself is reported by the schema
        }
        Object parsed = command.get();
        try {
            new CommandLine(parsed).parseArgs(args.toArray(String[]::new));
        } catch (CommandLine.UnmatchedArgumentException e) {
            String first = e.getUnmatched().getFirst();
            return new Problem(args.indexOf(first), "'phost guest " + kind + "' does not take '" + first + "'"
                + knownOptions(parsed));
        } catch (CommandLine.ParameterException e) {
            return new Problem(indexOf(args, e), "'phost guest " + kind + "': " + e.getMessage());
        }
        try {
            switch (parsed) {
                case GuestIoCommand io -> io.validate();
                case GuestMixedCommand mixed -> mixed.validate();
                default -> {
                }
            }
        } catch (IllegalArgumentException e) {
            return new Problem(-1, "'phost guest " + kind + "': " + e.getMessage());
        }
        return null;
    }

    private static int indexOf(List<String> args, CommandLine.ParameterException e) {
        if (e.getValue() != null && args.contains(e.getValue())) {
            return args.indexOf(e.getValue());
        }
        if (e.getArgSpec() instanceof CommandLine.Model.OptionSpec o) {
            for (String name : o.names()) {
                if (args.contains(name)) {
                    return args.indexOf(name);
                }
            }
        }
        return -1;
    }

    private static String knownOptions(Object parsed) {
        List<String> names = new CommandLine(parsed).getCommandSpec().options().stream()
            .filter(o -> !o.usageHelp() && !o.versionHelp())
            .map(CommandLine.Model.OptionSpec::longestName).toList();
        return names.isEmpty() ? " (it takes no arguments)" : " (it takes " + String.join(" ", names) + ")";
    }
}
