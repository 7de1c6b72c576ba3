package io.phost.appliance.config;

import io.phost.vhdx.DiskFormat;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * Any input either loads or fails with {@link ConfigException} whose errors have sane positions: never another
 * exception, a hang, or a silently dropped section. Seeds are fixed so a failure reproduces; the failing input
 * is printed.
 */
class ConfigFuzzTest {
    private static final String EXAMPLE = ConfigLoader.resourceText(ConfigLoader.EXAMPLE_RESOURCE);
    /** Each example parse takes a few ms on a busy 2-core box; -Dphost.soak=true runs 100,000 over both kinds. */
    private static final int ROUNDS = Boolean.getBoolean("phost.soak") ? 50_000 : 200;
    private static final int RANDOM_INPUTS = Boolean.getBoolean("phost.soak") ? 100_000 : 1500;

    /** Values of every type and edge, dropped into the example in place of real ones. */
    private static final String[] VALUES = {
        "0", "-1", "1", "64", "65", "4094", "4095", "9223372036854775807", "-9223372036854775808", "1.5", "nan",
        "inf", "true", "false", "\"\"", "\"x\"", "\"64GiB\"", "\"65TiB\"", "\"0B\"", "\"1G\"", "\"100Mbps\"",
        "\"10MB/s\"", "\"99999999999999999999PiB\"", "\"9223372036854775807KiB\"", "\"fixed\"", "\"differencing\"",
        "\"passthrough\"", "\"external\"", "\"weight\"", "\"gold\"", "\"base\"", "\"frontend\"", "\"web\"",
        "\"01:00:00:00:00:00\"", "\"02:50:48:00:00:01\"", "\"/dev/sdb\"", "\"${tmp}\"", "\"tcp://127.0.0.1:1\"",
        "\"unix:/x\"", "[]", "[1, 1]", "[\"a\"]", "[[1]]", "{}", "{ kind = \"io\" }", "{ type = \"fixed\" }",
        "1979-05-27T07:32:00Z", "\"\\u0000\"", "\"a\\nb\"",
    };

    @Test
    void shouldOnlyEverThrowConfigExceptionForRandomBytes() {
        SplittableRandom random = new SplittableRandom(0x5eed);
        for (int i = 0; i < RANDOM_INPUTS; i++) {
            byte[] bytes = new byte[random.nextInt(200)];
            for (int j = 0; j < bytes.length; j++) {
                // Mostly TOML punctuation and letters so the parser gets past the first character.
                bytes[j] = random.nextInt(4) == 0 ? (byte) random.nextInt(256)
                    : (byte) "[]{}=\"'.,#\n \tabcdehnostx0123456789-_:".charAt(random.nextInt(37));
            }
            check(bytes);
        }
    }

    @Test
    void shouldOnlyEverThrowConfigExceptionForMutatedExamples() {
        SplittableRandom random = new SplittableRandom(42);
        byte[] base = EXAMPLE.getBytes(StandardCharsets.UTF_8);
        for (int i = 0; i < ROUNDS; i++) {
            byte[] b = base.clone();
            int edits = 1 + random.nextInt(4);
            for (int e = 0; e < edits; e++) {
                int at = random.nextInt(b.length);
                switch (random.nextInt(3)) {
                    case 0 -> b[at] = (byte) random.nextInt(256);
                    case 1 -> b = splice(b, at, Math.min(b.length, at + 1 + random.nextInt(40)), new byte[0]);
                    default -> b = splice(b, at, at, "[]{}=\"\n,.#".substring(random.nextInt(10)).getBytes(StandardCharsets.UTF_8));
                }
            }
            check(b);
        }
    }

    @Test
    void shouldOnlyEverThrowConfigExceptionForSwappedValuesAndShuffledLines() {
        SplittableRandom random = new SplittableRandom(7);
        List<String> lines = EXAMPLE.lines().toList();
        for (int i = 0; i < ROUNDS; i++) {
            List<String> l = new ArrayList<>(lines);
            int edits = 1 + random.nextInt(5);
            for (int e = 0; e < edits; e++) {
                int at = random.nextInt(l.size());
                String line = l.get(at);
                int eq = line.indexOf(" = ");
                if (random.nextInt(5) == 0) {
                    l.add(random.nextInt(l.size()), line); // duplicate a line somewhere else
                } else if (random.nextInt(6) == 0) {
                    l.remove(at);
                } else if (eq > 0 && !line.strip().startsWith("#")) {
                    l.set(at, line.substring(0, eq + 3) + VALUES[random.nextInt(VALUES.length)]);
                }
            }
            check(String.join("\n", l).getBytes(StandardCharsets.UTF_8));
        }
    }

    @Test
    void shouldRejectAbsurdNestingWithAConfigError() {
        for (String open : new String[] {"[", "{a="}) {
            String text = "a = " + open.repeat(50_000);
            try {
                ConfigLoader.parse("deep.toml", text);
                fail("accepted");
            } catch (ConfigException e) {
                assertFalse(e.errors().isEmpty());
            }
        }
    }

    /** Found by the 100,000-input soak: tomlj 2.2.0 fails its own assertion (-ea) on this unclosed header. */
    @Test
    void shouldReportAnUnclosedHeaderFollowedByACommentAsAConfigError() {
        check("[d#2xa 0\n".getBytes(StandardCharsets.UTF_8));
        check("[d#2xa 0".getBytes(StandardCharsets.UTF_8));
    }

    @Test
    void shouldAcceptTheUnmodifiedExample() throws ConfigException {
        assertEquals(3, ConfigLoader.parse("example", EXAMPLE).partitions().size());
    }

    private static void check(byte[] input) {
        String text = new String(input, StandardCharsets.UTF_8);
        long lines = text.lines().count() + 1;
        try {
            assertConsistent(ConfigLoader.parse("f.toml", input));
        } catch (ConfigException e) {
            assertFalse(e.errors().isEmpty());
            for (ConfigError error : e.errors()) {
                assertTrue(error.line() >= 1 && error.line() <= lines + 1 && error.column() >= 1,
                    () -> "bad position " + error + " for input:\n" + text);
                assertTrue(error.toString().startsWith("f.toml:"), error::toString);
            }
        } catch (Throwable t) {
            throw new AssertionError("unexpected " + t + " for input:\n" + text, t);
        }
    }

    /** What the runner relies on when a config loads: every reference resolves, names and MACs are unique. */
    private static void assertConsistent(ApplianceConfig c) {
        java.util.Set<String> macs = new java.util.HashSet<>();
        for (PartitionConfig p : c.partitions()) {
            assertTrue(p.vcpus() >= 1 && p.vcpus() <= 64 && p.memory() % 4096 == 0, p::toString);
            assertTrue(p.isVm() ? p.command() == null && p.workload() == null && p.nics().isEmpty()
                && p.memory() % (1 << 20) == 0 : p.command() == null ^ p.workload() == null, p::toString);
            java.util.Set<String> slots = new java.util.HashSet<>();
            for (DiskAttachment a : p.disks()) {
                assertTrue(c.disk(a.disk()).isPresent(), a::toString);
                assertTrue(slots.add(a.controller() + ":" + a.lun()), a::toString);
            }
            for (NicConfig n : p.nics()) {
                assertTrue(c.switchConfig(n.switchName()).isPresent(), n::toString);
                assertTrue(macs.add(n.mac()), n::toString);
                assertEquals(0, n.macBytes()[0] & 1, n::toString);
            }
        }
        for (DiskConfig d : c.disks()) {
            assertTrue(d.qosPolicy() == null || c.qosPolicy(d.qosPolicy()).isPresent(), d::toString);
            assertTrue(d.format() != DiskFormat.PASSTHROUGH || d.create() == null, d::toString);
        }
        assertEquals(c.disks().size(), c.disks().stream().map(DiskConfig::name).distinct().count());
        assertEquals(c.partitions().size(), c.partitions().stream().map(PartitionConfig::name).distinct().count());
        assertEquals(c.switches().size(), c.switches().stream().map(SwitchConfig::name).distinct().count());
    }

    private static byte[] splice(byte[] b, int from, int to, byte[] insert) {
        byte[] out = new byte[b.length - (to - from) + insert.length];
        System.arraycopy(b, 0, out, 0, from);
        System.arraycopy(insert, 0, out, from, insert.length);
        System.arraycopy(b, to, out, from + insert.length, b.length - to);
        return out;
    }
}
