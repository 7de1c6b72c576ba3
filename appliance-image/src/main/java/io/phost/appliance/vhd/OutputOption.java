package io.phost.appliance.vhd;

import io.phost.appliance.UserException;
import picocli.CommandLine.Option;

/** {@code --output human|json} of the reporting verbs. */
final class OutputOption {
    @Option(names = "--output", paramLabel = "human|json", description = "Report format (default human).")
    String output = "human";

    /** Whether the report is JSON; any value but human or json is a usage error (exit 2). */
    boolean json() {
        if (!output.equals("human") && !output.equals("json")) {
            throw new UserException("unknown --output \"" + output + "\" (human or json)", 2);
        }
        return output.equals("json");
    }
}
