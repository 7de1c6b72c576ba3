package io.phost.appliance.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.appliance.Main;
import io.phost.appliance.config.ConfigLoader;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code phost config validate|example} through the real CLI entry point. */
public class ConfigCommandTest {
    public record Run(int exit, String out, String err) {
    }

    public static Run phost(String... args) {
        PrintStream oldOut = System.out;
        PrintStream oldErr = System.err;
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        try {
            System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
            System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
            int exit = Main.execute(args);
            return new Run(exit, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
        } finally {
            System.setOut(oldOut);
            System.setErr(oldErr);
        }
    }

    @Test
    void shouldReportFiveDifferentMistakesInOneRunWithExitTwoAndTouchNothing(@TempDir Path tmp) throws IOException {
        Path dataDir = tmp.resolve("data");
        Path file = tmp.resolve("appliance.toml");
        Files.writeString(file, """
            [host]
            data_dir = "%s"

            [[disk]]
            name = "os"
            path = "os.vhdx"
            parent = "base.vhdx"
            create = { type = "fixed", size = "8GiB" }

            [[switch]]
            name = "lan"
            type = "private"

            [[partition]]
            name = "web"
            vcpus = 99
            memroy = "1GiB"
              [[partition.disk]]
              disk = "os"
              lun = 64
              [[partition.nic]]
              switch = "wan"
            """.formatted(dataDir));
        List<Path> before = listing(tmp);

        Run r = phost("config", "validate", file.toString());

        assertEquals(2, r.exit(), r.err());
        List<String> lines = r.err().lines().toList();
        assertEquals(List.of(
            file + ":7:1: disk[0].parent: a fixed disk has no parent (only create.type = \"differencing\" does)",
            file + ":16:1: partition[0].vcpus: 99 is out of range (1..64)",
            file + ":17:1: partition[0].memroy: unknown key 'memroy' in [[partition]]; did you mean 'memory'?",
            file + ":20:3: partition[0].disk[0].lun: 64 is out of range (0..63)",
            file + ":22:3: partition[0].nic[0].switch: no [[switch]] named 'wan'; did you mean 'lan'?",
            "phost: 5 errors; nothing was applied"), lines);
        assertFalse(r.err().contains("Exception"), "no stack trace");
        assertEquals("", r.out());
        assertEquals(before, listing(tmp), "validation creates and changes nothing");
        assertFalse(Files.exists(dataDir));
    }

    @Test
    void shouldPrintASummaryAndExitZeroForAValidFile() throws IOException {
        Path example = exampleFile();
        Run r = phost("config", "validate", example.toString());
        assertEquals(0, r.exit(), r.err());
        assertEquals(example + ": ok (5 disks, 2 QoS policies, 2 switches, 3 partitions)", r.out().strip());
    }

    @Test
    void shouldPrintAnExampleThatValidates(@TempDir Path tmp) throws IOException {
        Run r = phost("config", "example");
        assertEquals(0, r.exit(), r.err());
        assertEquals(Files.readString(exampleFile()), r.out());
        Path written = tmp.resolve("printed.toml");
        Files.writeString(written, r.out());
        Run check = phost("config", "validate", written.toString());
        assertEquals(0, check.exit(), check.err());
    }

    @Test
    void shouldPrintTheEmbeddedDemoThatValidates(@TempDir Path tmp) throws IOException {
        Run r = phost("config", "example", "--demo");
        assertEquals(0, r.exit(), r.err());
        assertEquals(ConfigLoader.resourceText(ConfigLoader.DEMO_RESOURCE), r.out());
        Path written = tmp.resolve("demo.toml");
        Files.writeString(written, r.out());
        assertEquals(0, phost("config", "validate", written.toString()).exit());
    }

    @Test
    void shouldReportAMissingFileAsOneLineWithExitTwo(@TempDir Path tmp) {
        Run r = phost("config", "validate", tmp.resolve("absent.toml").toString());
        assertEquals(2, r.exit());
        assertTrue(r.err().startsWith(tmp.resolve("absent.toml") + ":1:1: cannot read: no such file"), r.err());
    }

    @Test
    void shouldShowHelpForTheConfigGroup() {
        Run r = phost("config", "--help");
        assertEquals(0, r.exit());
        assertTrue(r.out().contains("validate") && r.out().contains("example"), r.out());
    }

    private static Path exampleFile() {
        Path dir = Path.of("").toAbsolutePath();
        while (!Files.exists(dir.resolve("examples/appliance.toml"))) {
            dir = dir.getParent();
        }
        return dir.resolve("examples/appliance.toml");
    }

    private static List<Path> listing(Path dir) throws IOException {
        try (Stream<Path> s = Files.walk(dir)) {
            return s.sorted().toList();
        }
    }
}
