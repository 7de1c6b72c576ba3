package io.phost.appliance.config;

import io.phost.storage.engine.IoEngines;

import io.phost.vhdx.DiskType;
import io.phost.vhdx.DiskFormat;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ConfigLoaderTest {
    static final String MINIMAL = """
        [host]
        data_dir = "/srv/phost"
        """;

    @Test
    void shouldFillEveryDefaultOfAMinimalConfig() throws ConfigException {
        ApplianceConfig c = ConfigLoader.parse("min.toml", MINIMAL + """
            [[disk]]
            name = "d"
            path = "d.vhdx"
            create = { size = "1GiB" }
            [[qos_policy]]
            name = "q"
            [[switch]]
            name = "s"
            type = "private"
            [[partition]]
            name = "p"
            [[partition.disk]]
            disk = "d"
            [[partition.nic]]
            switch = "s"
            """);
        assertEquals("phost", c.host().name());
        assertEquals(Path.of("/srv/phost"), c.host().dataDir());
        assertEquals("unix:/srv/phost/phost.sock", c.host().management());
        assertEquals(Path.of("/srv/phost/phost.sock"), c.host().managementSocket());
        assertEquals(List.of(), c.host().vspCpus());
        assertEquals(io.phost.core.vmbus.PollingMode.ADAPTIVE, c.host().polling());
        DiskConfig d = c.disk("d").orElseThrow();
        assertEquals(DiskFormat.VHDX, d.format());
        assertEquals(new DiskConfig.Create(DiskType.DYNAMIC, Units.GIB, 32 * Units.MIB, 512, 4096), d.create());
        assertEquals(IoEngines.Kind.AUTO, d.ioEngine());
        assertFalse(d.readOnly());
        assertNull(d.qosPolicy());
        assertEquals(Path.of("/srv/phost/d.vhdx"), d.resolvedPath(c.host().dataDir()));
        assertEquals(new QosPolicyConfig("q", QosPolicyConfig.Type.DEDICATED, 0, 0, 0, 8192, 100), c.qosPolicy("q").orElseThrow());
        assertEquals(new SwitchConfig("s", SwitchConfig.Type.PRIVATE, null, false, false, SwitchConfig.BandwidthMode.NONE, 1500),
            c.switchConfig("s").orElseThrow());
        PartitionConfig p = c.partition("p").orElseThrow();
        assertEquals(1, p.vcpus());
        assertEquals(256 * Units.MIB, p.memory());
        assertTrue(p.autostart());
        assertNull(p.command());
        assertEquals(Workload.IDLE, p.workload());
        assertEquals(List.of(new DiskAttachment("d", 0, 0)), p.disks());
        NicConfig nic = p.nics().getFirst();
        assertEquals("s", nic.switchName());
        assertTrue(nic.mac().startsWith("02:50:48:"), nic.mac());
        assertEquals(100, nic.vmqWeight());
        assertEquals(0, nic.iovWeight());
        assertEquals(0, nic.maxBandwidth());
        assertNull(nic.vlanAccess());
        assertEquals(List.of(), nic.vlanTrunk());
    }

    @Test
    void shouldReadEveryKeyOfTheExample() throws Exception {
        ApplianceConfig c = ConfigLoader.load(repoFile("examples/appliance.toml"));
        assertEquals("phost-example", c.host().name());
        assertEquals(List.of(0, 1), c.host().vspCpus());
        assertEquals(400_000_000L, c.qosPolicy("gold").orElseThrow().maxBandwidth());
        DiskConfig web = c.disk("web-os").orElseThrow();
        assertEquals(DiskType.DIFFERENCING, web.create().type());
        assertEquals("images/base.vhdx", web.parent());
        assertEquals(IoEngines.Kind.IO_URING, web.ioEngine());
        DiskConfig logs = c.disk("logs").orElseThrow();
        assertEquals(DiskFormat.VHD, logs.format());
        assertEquals(2 * Units.MIB, logs.create().blockSize());
        assertEquals(512, logs.create().physicalSector());
        assertEquals(0, c.disk("scratch").orElseThrow().create().blockSize());
        PartitionConfig web1 = c.partition("web").orElseThrow();
        // "base" had no LUN: it gets the lowest free one on controller 0, after web-os at LUN 0.
        assertEquals(List.of(new DiskAttachment("web-os", 0, 0), new DiskAttachment("base", 0, 1),
            new DiskAttachment("logs", 1, 0)), web1.disks());
        NicConfig front = web1.nics().get(0);
        assertEquals("02:50:48:00:00:01", front.mac());
        assertEquals(10, front.vlanAccess());
        assertEquals(125_000_000L, front.maxBandwidth());
        assertEquals(50, front.minBandwidthWeight());
        NicConfig back = web1.nics().get(1);
        assertEquals(List.of(20, 30), back.vlanTrunk());
        assertEquals(20, back.nativeVlan());
        PartitionConfig gen = c.partition("loadgen").orElseThrow();
        assertEquals("io", gen.workload().kind());
        assertNull(gen.command());
        assertTrue(gen.autostart());
        assertEquals(List.of("--rw", "randread", "--bs", "4k", "--iodepth", "32", "--runtime", "0"), gen.workload().args());
        assertEquals("io", web1.workload().kind());
        assertNull(web1.command());
        assertEquals(2, c.partitionsUsing(c.disk("base").orElseThrow()).size());
    }

    @Test
    void shouldShowEveryKeyOfTheSchemaInTheExample() throws Exception {
        String example = Files.readString(repoFile("examples/appliance.toml"));
        for (ConfigSchema.Section section : ConfigSchema.sections()) {
            for (ConfigSchema.Key k : section.keys().values()) {
                // As a key (maybe commented out or inline), or as a [table] / [[array]] header.
                java.util.regex.Pattern used = java.util.regex.Pattern.compile(
                    "(^|[\\s#{,])" + k.name() + "\\s*=|\\[(" + section.name() + "\\.)?" + k.name() + "\\]",
                    java.util.regex.Pattern.MULTILINE);
                assertTrue(used.matcher(example).find(), "examples/appliance.toml never shows "
                    + section.docTitle() + " " + k.name());
            }
        }
    }

    @Test
    void shouldShipTheExampleFileItselfInTheJar() throws Exception {
        assertEquals(Files.readString(repoFile("examples/appliance.toml")),
            ConfigLoader.resourceText(ConfigLoader.EXAMPLE_RESOURCE));
    }

    @Test
    void shouldLoadTheDemoIntoAGivenDataDir(@TempDir Path tmp) throws Exception {
        ApplianceConfig raw = ConfigLoader.parse("<demo>", ConfigLoader.resourceText(ConfigLoader.DEMO_RESOURCE));
        assertTrue(raw.needsDataDir());
        ApplianceConfig demo = ConfigLoader.loadDemo(tmp);
        assertFalse(demo.needsDataDir());
        assertEquals(tmp, demo.host().dataDir());
        assertEquals("unix:" + tmp.resolve("phost.sock"), demo.host().management());
        assertEquals(1, demo.disks().size());
        DiskConfig disk = demo.disks().getFirst();
        assertEquals(DiskFormat.VHDX, disk.format());
        assertEquals(DiskType.DYNAMIC, disk.create().type());
        assertEquals(1, demo.switches().size());
        assertEquals(SwitchConfig.Type.INTERNAL, demo.switches().getFirst().type()); // issue 12: the host reaches the demo
        assertEquals("10.213.0.254/24", demo.switches().getFirst().hostAddress());
        assertEquals(2, demo.partitions().size());
        for (PartitionConfig p : demo.partitions()) {
            assertNull(p.command());
            assertTrue(Workload.KINDS.contains(p.workload().kind()));
        }
        assertEquals(0, Files.list(tmp).count(), "loading creates nothing");
    }

    @Test
    void shouldGiveEachDefaultedLunTheLowestFreeOneOnItsController() throws ConfigException {
        ApplianceConfig c = ConfigLoader.parse("luns", MINIMAL + """
            [[disk]]
            name = "a"
            path = "a.raw"
            [[disk]]
            name = "b"
            path = "b.raw"
            [[disk]]
            name = "c"
            path = "c.raw"
            [[disk]]
            name = "d"
            path = "d.raw"
            [[partition]]
            name = "p"
            disk = [{ disk = "a" }, { disk = "b", controller = 2 }, { disk = "c", lun = 0 }, { disk = "d", controller = 2, lun = 0 }]
            """);
        // c claims LUN 0 of controller 0 explicitly, so a (first in the file) moves to LUN 1; b gets LUN 1 on controller 2.
        assertEquals(List.of(new DiskAttachment("a", 0, 1), new DiskAttachment("b", 2, 1), new DiskAttachment("c", 0, 0),
            new DiskAttachment("d", 2, 0)), c.partition("p").orElseThrow().disks());
    }

    @Test
    void shouldGenerateStableDistinctMacs() throws ConfigException {
        String text = MINIMAL + """
            [[switch]]
            name = "s"
            type = "private"
            [[partition]]
            name = "a"
            [[partition.nic]]
            switch = "s"
            [[partition.nic]]
            switch = "s"
            [[partition]]
            name = "b"
            [[partition.nic]]
            switch = "s"
            """;
        List<String> first = ConfigLoader.parse("x", text).partitions().stream()
            .flatMap(p -> p.nics().stream()).map(NicConfig::mac).toList();
        List<String> again = ConfigLoader.parse("y", text).partitions().stream()
            .flatMap(p -> p.nics().stream()).map(NicConfig::mac).toList();
        assertEquals(first, again);
        assertEquals(3, first.stream().distinct().count());
        for (String mac : first) {
            assertEquals(0, Integer.parseInt(mac.substring(0, 2), 16) & 1, "unicast");
        }
    }

    @Test
    void shouldAcceptTcpManagementWithAToken() throws ConfigException {
        ApplianceConfig c = ConfigLoader.parse("t", """
            [host]
            data_dir = "/srv/p"
            management = "tcp://127.0.0.1:8470"
            management_token_file = "token"
            """);
        assertFalse(c.host().managementIsUnix());
        assertEquals(8470, c.host().managementPort());
        assertEquals("127.0.0.1", c.host().managementHost());
        assertEquals(Path.of("/srv/p/token"), c.host().resolvedTokenFile());
    }

    /** Issue 13: io_engine is the storage engine's enum, every engine included; a typo is a positioned error. */
    @Test
    void shouldBindEveryIoEngineAndRefuseAnUnknownOneWithItsPosition() throws ConfigException {
        for (IoEngines.Kind kind : IoEngines.Kind.values()) {
            ApplianceConfig c = ConfigLoader.parse("e.toml", MINIMAL + """
                [[disk]]
                name = "d"
                path = "d.raw"
                format = "raw"
                io_engine = "%s"
                """.formatted(kind.name().toLowerCase(java.util.Locale.ROOT)));
            assertEquals(kind, c.disk("d").orElseThrow().ioEngine());
        }
        ConfigException e = assertThrows(ConfigException.class, () -> ConfigLoader.parse("e.toml", MINIMAL + """
            [[disk]]
            name = "d"
            path = "d.raw"
            format = "raw"
            io_engine = "uring"
            """));
        String error = e.errors().getFirst().toString();
        assertTrue(error.startsWith("e.toml:7:") && error.contains("disk[0].io_engine") && error.contains("'uring' is not one of"),
            error);
    }

    @Test
    void shouldReportAMissingFileAsAConfigError(@TempDir Path tmp) {
        ConfigException e = assertThrows(ConfigException.class, () -> ConfigLoader.load(tmp.resolve("nope.toml")));
        assertTrue(e.errors().getFirst().toString().startsWith(tmp.resolve("nope.toml") + ":1:1: cannot read"),
            e.getMessage());
    }

    @Test
    void shouldReportInvalidUtf8WithItsPosition() {
        byte[] bytes = "[host]\nname = \"a\u00ff\"\n".getBytes(java.nio.charset.StandardCharsets.ISO_8859_1);
        ConfigException e = assertThrows(ConfigException.class, () -> ConfigLoader.parse("u.toml", bytes));
        assertEquals("u.toml:2:10: not valid UTF-8 (byte offset 16)", e.errors().getFirst().toString());
    }

    @Test
    void shouldReadThePollingModeAndRejectAnUnknownOneWithItsPosition() throws ConfigException {
        ApplianceConfig c = ConfigLoader.parse("p.toml", MINIMAL + "polling = \"efficiency\"\n");
        assertEquals(io.phost.core.vmbus.PollingMode.EFFICIENCY, c.host().polling());
        ConfigException e = assertThrows(ConfigException.class, () -> ConfigLoader.parse("p.toml", MINIMAL + "polling = \"efficent\"\n"));
        assertEquals("p.toml:3:1: host.polling: 'efficent' is not one of adaptive, latency, efficiency",
            e.errors().getFirst().toString());
    }

    @Test
    void shouldTurnIntoAUserExceptionWithExitCodeTwo() {
        ConfigException e = assertThrows(ConfigException.class, () -> ConfigLoader.parse("x.toml", "[host]\n"));
        io.phost.appliance.UserException u = e.toUserException();
        assertEquals(2, u.exitCode());
        assertEquals("invalid config (1 error):\nx.toml:1:1: host.data_dir: required key is missing from [host]",
            u.getMessage());
    }

    static Path repoFile(String relative) {
        Path dir = Path.of("").toAbsolutePath();
        while (dir != null && !Files.exists(dir.resolve(relative))) {
            dir = dir.getParent();
        }
        if (dir == null) {
            throw new IllegalStateException(relative + " not found above " + Path.of("").toAbsolutePath());
        }
        return dir.resolve(relative);
    }
}
