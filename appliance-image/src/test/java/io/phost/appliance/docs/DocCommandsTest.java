package io.phost.appliance.docs;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.appliance.Main;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

/**
 * Every {@code phost ...} command line written in README.md and docs/*.md names commands and flags that exist:
 * the words after {@code phost} are followed down the picocli tree as far as they name subcommands, and every
 * {@code --flag} on the same command line must be an option of the command reached. A command line is a
 * backtick span, or a line of a fenced code block where {@code phost} starts a command (line start after an
 * optional prompt, or after {@code && ; | sudo}); prose inside code blocks ("the phost jars") is not one.
 * Quoted log output that starts with "phost" is listed in {@link #LOG_LINES} with where it comes from.
 */
class DocCommandsTest {
    private static final Path ROOT = Path.of("..").toAbsolutePath().normalize();
    private static final Pattern INLINE = Pattern.compile("`([^`\\n]+)`");
    private static final Pattern PHOST = Pattern.compile("(?:^|[\\s;&|(/])(?:\\./)?phost((?:\\s+[^\\s;&|)`]+)*)");
    private static final Pattern FENCED_COMMAND = Pattern.compile("(?:^\\s*(?:[$#]\\s+)?|&&\\s*|;\\s*|\\|\\s*|sudo\\s+)((?:\\./)?phost(?:\\s.*)?)$");
    /** Spans that quote log output, not commands: appliance-image/image/init logs "phost ready (t=...)". */
    private static final java.util.Set<String> LOG_LINES = java.util.Set.of("phost ready (t=...)");
    private static final Pattern FLAG = Pattern.compile("^(--[a-z][a-z0-9-]*)");

    @Test
    void everyDocumentedCommandAndFlagExistsInTheCli() throws IOException {
        List<Path> docs = new ArrayList<>();
        docs.add(ROOT.resolve("README.md"));
        try (Stream<Path> s = Files.list(ROOT.resolve("docs"))) {
            s.filter(p -> p.toString().endsWith(".md")).sorted().forEach(docs::add);
        }
        CommandLine root = Main.commandLine();
        List<String> problems = new ArrayList<>();
        int checked = 0;
        for (Path doc : docs) {
            List<String> lines = Files.readAllLines(doc);
            boolean fenced = false;
            for (int i = 0; i < lines.size(); i++) {
                String line = lines.get(i);
                if (line.strip().startsWith("```")) {
                    fenced = !fenced;
                    continue;
                }
                List<String> commandLines = new ArrayList<>();
                if (fenced) {
                    for (String part : line.split("&&|;|\\|")) {
                        Matcher m = FENCED_COMMAND.matcher(part);
                        if (m.find()) {
                            commandLines.add(m.group(1));
                        }
                    }
                } else {
                    Matcher m = INLINE.matcher(line);
                    while (m.find()) {
                        if (!LOG_LINES.contains(m.group(1))) {
                            commandLines.add(m.group(1));
                        }
                    }
                }
                for (String c : commandLines) {
                    Matcher m = PHOST.matcher(c);
                    while (m.find()) {
                        String where = ROOT.relativize(doc) + ":" + (i + 1) + ": `phost" + m.group(1) + "`";
                        String problem = check(root, m.group(1).strip());
                        checked++;
                        if (problem != null) {
                            problems.add(where + ": " + problem);
                        }
                    }
                }
            }
        }
        assertTrue(checked >= 40, "the docs mention phost command lines: found " + checked);
        assertEquals(List.of(), problems, "documented commands and flags that phost does not have");
    }

    @Test
    void aMisspelledFlagOrCommandIsReportedWithTheCommandItWasLookedUpOn() {
        CommandLine root = Main.commandLine();
        assertEquals(null, check(root, "bench storage --quick --report out/"));
        assertEquals(null, check(root, "qos set-policy --help"));
        assertEquals("'phost bench' has no option --fast", check(root, "bench storage --fast"));
        assertEquals("'phost vhd info' has no option --sizes", check(root, "vhd info x.vhdx --sizes"));
        assertTrue(check(root, "frobnicate --all").startsWith("no command 'frobnicate'"));
    }

    /** Null when {@code args} (the words after "phost") names existing commands and options; else what is wrong. */
    static String check(CommandLine root, String args) {
        CommandLine cmd = root;
        String[] words = args.isEmpty() ? new String[0] : args.split("\\s+");
        int i = 0;
        while (i < words.length && cmd.getSubcommands().containsKey(words[i])) {
            cmd = cmd.getSubcommands().get(words[i]);
            i++;
        }
        if (cmd == root && i < words.length && words[i].matches("[a-z][a-z-]+") && !words[i].equals("-")) {
            return "no command '" + words[i] + "' (commands: " + String.join(", ", root.getSubcommands().keySet()) + ")";
        }
        for (; i < words.length; i++) {
            Matcher f = FLAG.matcher(words[i]);
            if (f.find()) {
                String flag = f.group(1);
                if (cmd.getCommandSpec().findOption(flag) == null) {
                    return "'" + cmd.getCommandSpec().qualifiedName() + "' has no option " + flag;
                }
            }
        }
        return null;
    }
}
