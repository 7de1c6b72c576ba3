package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.appliance.mgmt.ManagementAddress;
import io.phost.appliance.mgmt.ManagementClient;
import io.phost.storage.vmbus.GuestIo;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code phost apply} hot-adds a disk to a running process partition, as Add-VMHardDiskDrive does: the partition's
 * guest ({@code phost guest io --wait-lun}) waits on LUN 0 for REPORTED LUNS DATA HAS CHANGED, rescans with REPORT
 * LUNS, and writes and verifies a pattern on the new LUN 1; a second apply hot-removes it; after phost stops,
 * qemu-img reads the pattern out of the new image.
 */
@Timeout(value = 300, unit = TimeUnit.SECONDS)
class RunDiskHotAddTest {
    private static final long SEED = 77;

    @TempDir
    Path dir;

    @Test
    void shouldHotAddADiskTheGuestWritesAndHotRemoveIt() throws Exception {
        Path data = dir.resolve("data");
        Path v1 = dir.resolve("v1.toml");
        Path v2 = dir.resolve("v2.toml");
        String base = """
            [host]
            name = "hotadd"
            data_dir = "%s"

            [[disk]]
            name = "boot"
            path = "%s"
            create = { size = "8MiB" }
            %%s
            [[partition]]
            name = "hot"
            memory = "64MiB"
            [partition.workload]
            kind = "io"
            args = ["--wait-lun", "120", "--lun", "1", "--rw", "write", "--bs", "64k", "--size", "1m", "--verify", "--seed", "%d"]
            [[partition.disk]]
            disk = "boot"
            lun = 0
            %%s""".formatted(data, dir.resolve("boot.vhdx"), SEED);
        Files.writeString(v1, base.formatted("", ""));
        Path added = dir.resolve("added.vhdx");
        Files.writeString(v2, base.formatted("""

            [[disk]]
            name = "added"
            path = "%s"
            create = { size = "8MiB" }
            """.formatted(added), """
            [[partition.disk]]
            disk = "added"
            lun = 1
            """));
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), "run", "--config", v1.toString())) {
            p.awaitLine("phost: ready", Duration.ofSeconds(90));
            ManagementClient c = new ManagementClient(ManagementAddress.parse("unix:" + data.resolve("phost.sock")), null);
            awaitLog(data, "to be added");
            var add = c.post("/v1/config?file=v2.toml", Files.readAllBytes(v2));
            assertEquals(200, add.status(), add.bodyText());
            assertTrue(add.bodyText().contains("+ disk added of partition hot at controller 0 lun 1 (hot-add)"), add.bodyText());
            awaitLog(data, "verify_errors=");
            assertTrue(log(data).contains("errors=0, verified=16, verify_errors=0"),
                "the guest rescanned and wrote and verified 1 MiB on the new LUN: " + log(data));
            var remove = c.post("/v1/config?file=v1.toml", Files.readAllBytes(v1));
            assertEquals(200, remove.status(), remove.bodyText());
            assertTrue(remove.bodyText().contains("(hot-remove)"), remove.bodyText());
            assertTrue(remove.bodyText().contains("- disk added (closed)"), remove.bodyText());
            assertTrue(c.get("/v1/partitions").bodyText().contains("\"hot\""), "the partition is still there");
            p.process().destroy();
            assertTrue(p.process().waitFor(30, TimeUnit.SECONDS), "phost stops on SIGTERM");
        }
        Path raw = dir.resolve("added.raw");
        Process conv = new ProcessBuilder("qemu-img", "convert", "-f", "vhdx", "-O", "raw", added.toString(), raw.toString())
            .inheritIO().start();
        assertTrue(conv.waitFor(60, TimeUnit.SECONDS));
        assertEquals(0, conv.exitValue());
        ByteBuffer bb = ByteBuffer.wrap(Files.readAllBytes(raw)).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < 1 << 20; i += 8) {
            assertEquals(GuestIo.pattern(i, SEED), bb.getLong(i), "the guest's pattern on the hot-added disk, at byte " + i);
        }
    }

    /**
     * The undo of a hot-add: an apply that adds a disk at LUN 1 of a running partition, whose last step (saving the
     * applied config) fails, gives every step back: the LUN is detached, the disk closed and the image it created
     * deleted (it was left behind before). The same apply then succeeds, which it could not with LUN 1 still taken
     * or the disk still open. The guest waits for a LUN 2 that never comes, so a LUN that comes and goes is harmless.
     */
    @Test
    void shouldUndoAHotAddWhenALaterStepFails() throws Exception {
        Path data = dir.resolve("data");
        Path added = dir.resolve("added.vhdx");
        String base = """
            [host]
            name = "hotundo"
            data_dir = "%s"

            [[disk]]
            name = "boot"
            path = "%s"
            create = { size = "8MiB" }
            %%s
            [[partition]]
            name = "hot"
            memory = "64MiB"
            [partition.workload]
            kind = "io"
            args = ["--wait-lun", "120", "--lun", "2", "--rw", "write", "--bs", "64k", "--size", "1m"]
            [[partition.disk]]
            disk = "boot"
            lun = 0
            %%s""".formatted(data, dir.resolve("boot.vhdx"));
        Path v1 = dir.resolve("v1.toml");
        Files.writeString(v1, base.formatted("", ""));
        byte[] v2 = base.formatted("""

            [[disk]]
            name = "added"
            path = "%s"
            create = { size = "8MiB" }
            """.formatted(added), """
            [[partition.disk]]
            disk = "added"
            lun = 1
            """).getBytes(java.nio.charset.StandardCharsets.UTF_8);
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), "run", "--config", v1.toString())) {
            p.awaitLine("phost: ready", Duration.ofSeconds(90));
            ManagementClient c = new ManagementClient(ManagementAddress.parse("unix:" + data.resolve("phost.sock")), null);
            awaitLog(data, "to be added");
            Path blocker = data.resolve(".applied.toml.tmp"); // a directory where the save writes its temporary file
            Files.createDirectories(blocker);
            var failed = c.post("/v1/config?file=v2.toml", v2);
            assertEquals(500, failed.status(), failed.bodyText());
            assertTrue(failed.bodyText().contains("(hot-add)") && failed.bodyText().contains("saving the applied config")
                && failed.bodyText().contains("undone"), failed.bodyText());
            assertTrue(!Files.exists(added), "the undone add deleted the image it created");
            Files.delete(blocker);
            var ok = c.post("/v1/config?file=v2.toml", v2);
            assertEquals(200, ok.status(), "LUN 1 and the disk were given back: " + ok.bodyText());
            assertTrue(Files.exists(added));
            assertTrue(log(data).contains("to be added") && !log(data).contains("LUN 2 was not added"), log(data));
        }
    }

    private static String log(Path data) throws Exception {
        try (Stream<Path> files = Files.walk(data)) {
            Path log = files.filter(f -> f.getFileName().toString().equals("hot.log")).findFirst().orElse(null);
            return log == null ? "" : Files.readString(log);
        }
    }

    private static void awaitLog(Path data, String text) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
        while (!log(data).contains(text)) {
            assertTrue(System.nanoTime() < deadline, "the guest never said '" + text + "': " + log(data));
            Thread.sleep(200);
        }
    }
}
