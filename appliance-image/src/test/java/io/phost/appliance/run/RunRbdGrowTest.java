package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.appliance.mgmt.ManagementAddress;
import io.phost.appliance.mgmt.ManagementClient;
import io.phost.core.text.Json;
import io.phost.storage.rbd.CephTestCluster;
import io.phost.storage.vmbus.GuestIo;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Live grow of a running partition's RBD disk reaches the guest: `phost run` with a process partition whose
 * disk is a 16 MiB RBD image over VMBus; its workload ({@code phost guest io --wait-grow}) reads the capacity,
 * then polls with TEST UNIT READY until the CAPACITY DATA HAS CHANGED unit attention comes, re-reads the
 * capacity and writes (and reads back) 1 MiB of its pattern just past the old end. The test grows the image with
 * {@code rbd resize --size 32M} while the partition waits; the partition must finish cleanly, and
 * {@code rbd export} must hold the pattern at 16 MiB.
 */
@Timeout(300)
class RunRbdGrowTest {
    private static final long SEED = 9;
    private static final int OLD_END = 16 << 20;

    @TempDir
    Path dir;

    @Test
    void shouldTellTheGuestThatItsRbdDiskGrewAndLetItWritePastTheOldEnd() throws Exception {
        CephTestCluster ceph = CephTestCluster.get();
        String image = "grow-" + ProcessHandle.current().pid();
        Path data = dir.resolve("data");
        Path cfg = dir.resolve("grow.toml");
        Files.writeString(cfg, """
            [host]
            name = "grow"
            data_dir = "%s"

            [[disk]]
            name = "data"
            format = "rbd"
            [disk.rbd]
            pool = "rbd"
            image = "%s"
            cluster_config = "%s"
            connect_timeout = 20
            [disk.create]
            size = "16MiB"

            [[partition]]
            name = "grow"
            memory = "64MiB"
            [partition.workload]
            kind = "io"
            args = ["--wait-grow", "120", "--rw", "write", "--bs", "64k", "--size", "1m", "--verify", "--seed", "%d"]
            [[partition.disk]]
            disk = "data"
            """.formatted(data, image, ceph.conf(), SEED));
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), "run", "--config", cfg.toString())) {
            p.awaitLine("phost: ready", Duration.ofSeconds(90));
            ManagementClient c = new ManagementClient(ManagementAddress.parse("unix:" + data.resolve("phost.sock")), null);
            awaitLog(data, "waiting up to 120 s for it to grow");
            ceph.run("rbd", "resize", "--size", "32M", "rbd/" + image);
            // The workload prints its result and ends (the partition then shows "crashed": it ended unasked).
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(150);
            while (!log(data).contains("verify_errors=") && partition(c).get("state").equals("running")
                && System.nanoTime() < deadline) {
                Thread.sleep(200);
            }
            assertTrue(log(data).contains("errors=0, verified=16, verify_errors=0"),
                "the guest wrote and verified 1 MiB past the old end: " + log(data) + " " + partition(c));
            p.process().destroy();
            assertTrue(p.process().waitFor(30, TimeUnit.SECONDS), "phost stops on SIGTERM");
        }
        Path out = dir.resolve("image.raw");
        ceph.run("rbd", "export", "rbd/" + image, out.toString());
        byte[] img = Files.readAllBytes(out);
        assertEquals(32 << 20, img.length);
        ByteBuffer bb = ByteBuffer.wrap(img).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = OLD_END; i < OLD_END + (1 << 20); i += 8) {
            assertEquals(GuestIo.pattern(i, SEED), bb.getLong(i), "the guest's pattern past the old end, at byte " + i);
        }
    }

    private static Map<?, ?> partition(ManagementClient c) throws Exception {
        for (Object o : (List<?>) Json.parse(c.get("/v1/partitions").bodyText())) {
            if ("grow".equals(((Map<?, ?>) o).get("name"))) {
                return (Map<?, ?>) o;
            }
        }
        throw new AssertionError("no partition grow");
    }

    /** The partition's own log (its workload's output). */
    private static String log(Path data) throws Exception {
        try (Stream<Path> files = Files.walk(data)) {
            Path log = files.filter(f -> f.getFileName().toString().equals("grow.log")).findFirst().orElse(null);
            return log == null ? "" : Files.readString(log);
        }
    }

    private static void awaitLog(Path data, String text) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(90);
        while (!log(data).contains(text)) {
            assertTrue(System.nanoTime() < deadline, "the guest never said '" + text + "': " + log(data));
            Thread.sleep(200);
        }
    }
}
