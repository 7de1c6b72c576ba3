package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.appliance.config.ApplianceConfig;
import io.phost.appliance.config.ConfigLoader;
import io.phost.appliance.config.ConfigSchema;
import io.phost.appliance.config.DiskConfig;
import io.phost.appliance.config.Units;
import java.lang.reflect.RecordComponent;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 17, docs truth: the defaults docs/config.md shows (checked against {@link ConfigSchema} by
 * {@code ConfigDocsTest}) are the values the loader really produces when a key is left out, and the file
 * locations README.md and docs/*.md name are the ones the code uses.
 */
class DocDefaultsTest {
    @TempDir
    Path dir;

    /** Keys whose default is not a field of the bound record, with why they are checked elsewhere or not at all. */
    private static final Set<String> NOT_A_FIELD = Set.of(
        "partition.kind",          // becomes vm() == null (checked below)
        "partition.cmdline",       // vm only; the process partition here has no vm()
        "partition.machine", "partition.stop_timeout", // vm only: checked on the VM below (on_crash: both kinds)
        "partition.disk.controller", // checked below on the attachment
        "partition.workload.args",
        ".disk", ".qos_policy", ".switch", ".partition", // the file declares one of each; see the empty config below
        "partition.disk", "partition.nic",  // the VM partition has neither: checked below
        "disk.rbd.connect_timeout",  // bound as connectTimeoutSeconds: checked below
        "switch.nat",                // false is bound as natPrefix() == null: checked below
        ".peer", "peer.lease", "partition.ha"); // bound into cluster(): checked below

    @Test
    void shouldLoadEveryDocumentedDefaultWhenTheKeyIsLeftOut() throws Exception {
        Path data = dir.resolve("data");
        Path cfgFile = Files.writeString(dir.resolve("defaults.toml"), """
            [host]
            data_dir = "%s"

            [[disk]]
            name = "d"
            path = "d.vhdx"
            create = { size = "16MiB" }

            [[disk]]
            name = "r"
            format = "rbd"
            rbd = { pool = "rbd", image = "r" }

            [[qos_policy]]
            name = "p"

            [[switch]]
            name = "s"
            type = "private"

            [[partition]]
            name = "w"
            workload = { kind = "idle" }
            disk = [{ disk = "d" }]
            nic = [{ switch = "s" }]

            [[partition]]
            name = "v"
            kind = "vm"
            firmware = "bios"

            [[peer]]
            name = "b"
            management = "unix:/run/b/phost.sock"
            """.formatted(data));
        ApplianceConfig cfg = ConfigLoader.load(cfgFile);
        Map<String, Object> bound = new LinkedHashMap<>();
        bound.put("host", cfg.host());
        bound.put("disk", cfg.disks().getFirst());
        bound.put("disk.create", cfg.disks().getFirst().create());
        bound.put("disk.rbd", cfg.disks().get(1).rbd());
        bound.put("qos_policy", cfg.qosPolicies().getFirst());
        bound.put("peer", cfg.cluster().peers().getFirst());
        bound.put("switch", cfg.switches().getFirst());
        bound.put("partition", cfg.partitions().getFirst());
        bound.put("partition.disk", cfg.partitions().getFirst().disks().getFirst());
        bound.put("partition.nic", cfg.partitions().getFirst().nics().getFirst());
        bound.put("partition.workload", cfg.partitions().getFirst().workload());
        List<String> wrong = new ArrayList<>();
        List<String> unchecked = new ArrayList<>();
        int checked = 0;
        for (ConfigSchema.Section section : ConfigSchema.sections()) {
            Object record = bound.get(section.name());
            for (ConfigSchema.Key k : section.keys().values()) {
                if (k.defaultText() == null || k.computed() || k.required()) {
                    continue;
                }
                String id = section.name() + "." + k.name();
                Object value = record == null ? null : field(record, k.name());
                if (value == NO_FIELD || record == null) {
                    if (!NOT_A_FIELD.contains(id)) {
                        unchecked.add(id);
                    }
                    continue;
                }
                checked++;
                if (!sameValue(k, value)) {
                    wrong.add(id + ": docs say " + k.defaultText() + ", the loader gives " + value);
                }
            }
        }
        assertEquals(List.of(), wrong, "documented defaults that the loader does not apply");
        assertEquals(List.of(), unchecked, "documented defaults this test cannot find on the bound config");
        assertTrue(checked >= 30, "checked only " + checked + " defaults");

        // Those checked by hand: a partition without kind is a process; the VM's own defaults; the first controller.
        assertEquals(null, cfg.partitions().getFirst().vm());
        var vm = cfg.partitions().get(1).vm();
        assertEquals(List.of("q35", "stop", 30), List.of(vm.machine(), vm.onCrash(), vm.stopTimeout()));
        assertEquals(0, cfg.partitions().getFirst().disks().getFirst().controller());
        assertEquals(10, cfg.disks().get(1).rbd().connectTimeoutSeconds());
        assertEquals(null, cfg.switches().getFirst().natPrefix(), "nat = false by default: no NAT prefix");
        assertEquals(5, cfg.cluster().peers().getFirst().leaseSeconds(), "docs: [[peer]] lease = 5");
        assertEquals(java.util.Set.of(), cfg.cluster().haPartitions(), "docs: ha = false");
        assertEquals(List.of(List.of(), List.of()), List.of(cfg.partitions().get(1).disks(), cfg.partitions().get(1).nics()));
        ApplianceConfig empty = ConfigLoader.load(Files.writeString(dir.resolve("empty.toml"),
            "[host]\ndata_dir = \"" + data + "\"\n"));
        assertEquals(List.of(List.of(), List.of(), List.of(), List.of(), "phost"), List.of(empty.disks(), empty.qosPolicies(),
            empty.switches(), empty.partitions(), empty.host().name()));
        // Computed defaults: the file locations docs/config.md names.
        assertEquals("unix:" + data.resolve("phost.sock"), cfg.host().management(), "docs: unix:<data_dir>/phost.sock");
        assertEquals("unix:" + data.resolve("nbd.sock"), cfg.host().nbd(), "docs: unix:<data_dir>/nbd.sock");
        assertEquals(Path.of("partitions/v.console.log"), vm.console(), "docs: partitions/<name>.console.log");
        assertEquals(data.resolve("vhost/d.sock"), DiskConfig.vhostUserSocket(data, "d"), "docs: <data_dir>/vhost/<name>.sock");
    }

    @Test
    void shouldKeepTheRuntimeRecordWhereTheDocsSay() throws Exception {
        // docs/management.md and docs/security.md: /run/phost/endpoint (root), else $XDG_RUNTIME_DIR/phost/endpoint,
        // else $TMPDIR/phost-USER/endpoint.
        for (String doc : List.of("docs/management.md", "docs/security.md")) {
            String text = Files.readString(repoFile(doc)).replaceAll("\\s+", " ");
            assertTrue(text.contains("`/run/phost/endpoint` (root), else `$XDG_RUNTIME_DIR/phost/endpoint`, else "
                + "`$TMPDIR/phost-USER/endpoint`"), doc + " names the three places");
        }
        assertTrue(Files.readString(repoFile("README.md")).contains("`DATA_DIR/phost.sock`"));
        assertEquals(Path.of("/run/phost"), RuntimeDir.path("root", true, "/run/user/0", "/tmp"));
        assertEquals(Path.of("/run/user/1000/phost"), RuntimeDir.path("alice", true, "/run/user/1000", "/tmp"));
        assertEquals(Path.of("/tmp/phost-alice"), RuntimeDir.path("alice", true, null, "/tmp"));
        assertEquals(Path.of("/var/tmp/phost-root"), RuntimeDir.path("root", false, "", "/var/tmp"));
        assertEquals(RuntimeDir.path().resolve("endpoint"), RuntimeDir.endpointFile());
    }

    private static final Object NO_FIELD = new Object();

    /** The record component named like {@code key} (snake_case → camelCase; {@code switch} → switchName). */
    private static Object field(Object record, String key) throws Exception {
        StringBuilder camel = new StringBuilder();
        boolean up = false;
        for (char c : key.toCharArray()) {
            if (c == '_') {
                up = true;
            } else {
                camel.append(up ? Character.toUpperCase(c) : c);
                up = false;
            }
        }
        String name = camel.toString();
        for (RecordComponent rc : record.getClass().getRecordComponents()) {
            if (rc.getName().equals(name) || rc.getName().equals(name + "Name")
                || (name.equals("portMirroring") && rc.getName().equals("mirroring"))) {
                return rc.getAccessor().invoke(record);
            }
        }
        return NO_FIELD;
    }

    private static boolean sameValue(ConfigSchema.Key k, Object value) throws Exception {
        String d = k.defaultText();
        return switch (k.kind()) {
            case SIZE -> ((Number) value).longValue() == Units.parseSize(d);
            case BANDWIDTH -> ((Number) value).longValue() == Units.parseBandwidth(d);
            case INTEGER -> ((Number) value).longValue() == Long.parseLong(d);
            case BOOLEAN -> value.equals(Boolean.parseBoolean(d));
            case STRING_ARRAY, INTEGER_ARRAY, TABLE_ARRAY -> d.equals("[]") && value instanceof List<?> l && l.isEmpty();
            default -> String.valueOf(value instanceof Enum<?> e ? e.name() : value).toLowerCase(Locale.ROOT)
                .replace('_', '-').equals(d.toLowerCase(Locale.ROOT).replace('_', '-'));
        };
    }

    static Path repoFile(String relative) {
        Path p = Path.of("").toAbsolutePath();
        while (p != null && !Files.exists(p.resolve(relative))) {
            p = p.getParent();
        }
        assertTrue(p != null, relative + " not found");
        return p.resolve(relative);
    }
}
