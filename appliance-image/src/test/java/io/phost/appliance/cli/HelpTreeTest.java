package io.phost.appliance.cli;

import static org.junit.jupiter.api.Assertions.assertAll;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.appliance.Main;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;
import picocli.CommandLine;

/** The README promises {@code --help} on every command: walk the whole picocli tree and ask each one. */
class HelpTreeTest {
    @Test
    void shouldAnswerHelpOnEveryCommandOfTheTree() {
        Set<List<String>> paths = new LinkedHashSet<>();
        collect(Main.commandLine(), new ArrayList<>(), paths);
        assertTrue(paths.size() >= 20, "the tree has all its commands: " + paths);
        List<Executable> checks = new ArrayList<>();
        for (List<String> path : paths) {
            checks.add(() -> {
                List<String> args = new ArrayList<>(path);
                args.add("--help");
                ConfigCommandTest.Run r = ConfigCommandTest.phost(args.toArray(String[]::new));
                String cmd = "phost " + String.join(" ", args);
                assertEquals(0, r.exit(), cmd + " exit; stderr: " + r.err());
                assertTrue(r.out().contains("Usage: phost " + String.join(" ", path)), cmd + " prints its usage: " + r.out() + r.err());
                assertTrue(r.out().contains("--help"), cmd + " lists --help");
            });
        }
        assertAll(checks);
    }

    private static void collect(CommandLine cmd, List<String> path, Set<List<String>> out) {
        out.add(List.copyOf(path));
        cmd.getSubcommands().forEach((name, sub) -> {
            if (!sub.getCommandName().equals(name)) {
                return; // an alias of a command visited under its own name
            }
            List<String> next = new ArrayList<>(path);
            next.add(name);
            collect(sub, next, out);
        });
    }
}
