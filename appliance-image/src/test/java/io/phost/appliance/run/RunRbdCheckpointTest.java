package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.appliance.mgmt.HttpResponse;
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
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Checkpoints of a partition whose disk is on Ceph RBD are RBD snapshots: `phost run` with a busy process
 * partition (random 4 KiB pattern writes over VMBus) on an RBD image. A checkpoint taken while it writes is the
 * snapshot {@code phost.db.c1} ({@code rbd snap ls}), listed with it; the partition writes on and is stopped; the
 * head then differs from the snapshot ({@code rbd export IMAGE} against {@code rbd export IMAGE@phost.db.c1}).
 * Apply rolls the head back to exactly the snapshot's data, and to its size: the image grown after the checkpoint
 * shrinks back and the partition's LUN follows (the guest is told as for a grow); delete removes the snapshot and
 * the checkpoint.
 */
@Timeout(300)
class RunRbdCheckpointTest {
    private static final long SEED = 5;
    private static final int SPAN = 8 << 20; // the whole disk: a span the workload has not yet covered when the checkpoint comes

    @TempDir
    Path dir;

    @Test
    void shouldCheckpointApplyAndDeleteThroughRbdSnapshots() throws Exception {
        CephTestCluster ceph = CephTestCluster.get();
        String image = "ckpt-" + ProcessHandle.current().pid();
        Path data = dir.resolve("data");
        Path cfg = dir.resolve("ckpt.toml");
        Files.writeString(cfg, """
            [host]
            name = "ckpt"
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
            size = "8MiB"

            [[partition]]
            name = "db"
            memory = "64MiB"
            [partition.workload]
            kind = "io"
            args = ["--rw", "randwrite", "--bs", "4k", "--span", "8m", "--runtime", "0", "--seed", "%d"]
            [[partition.disk]]
            disk = "data"
            """.formatted(data, image, ceph.conf(), SEED));
        String snapshot = "rbd/" + image + "@phost.db.c1";
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), "run", "--config", cfg.toString())) {
            p.awaitLine("phost: ready", Duration.ofSeconds(90));
            ManagementClient c = new ManagementClient(ManagementAddress.parse("unix:" + data.resolve("phost.sock")), null);
            awaitWriting(c);
            // The workload writes the same pattern wherever it writes, so the head differs from the snapshot only
            // where it wrote a block it had not written before: check in before it covers the span (at QD1 an
            // idle CI machine wrote all of a 1 MiB span within 2 s and the head equalled the snapshot), yet after
            // more than a handful of blocks (the first writes to a fresh RBD image are slow).
            Thread.sleep(1500);
            HttpResponse created = c.post("/v1/partitions/checkpoints/create?name=db&checkpoint=c1");
            assertEquals(200, created.status(), created.bodyText());
            assertTrue(ceph.run("rbd", "snap", "ls", "rbd/" + image).contains("phost.db.c1"), "rbd snap ls shows the checkpoint");
            String list = c.get("/v1/partitions/checkpoints?name=db").bodyText();
            assertTrue(list.contains("rbd:" + snapshot), list);

            Thread.sleep(3000); // the guest writes on after the checkpoint
            HttpResponse stopped = c.post("/v1/partitions/stop?name=db");
            assertEquals(200, stopped.status(), stopped.bodyText());
            byte[] snap = export(ceph, snapshot, "snap.raw");
            checkPattern(snap);
            assertFalse(java.util.Arrays.equals(snap, export(ceph, "rbd/" + image, "head.raw")),
                "the partition wrote after the checkpoint: the head must differ from the snapshot");

            // Grown after the checkpoint: the apply takes the image back to the snapshot's 8 MiB, and the LUN with it.
            ceph.run("rbd", "resize", "--size", "16M", "rbd/" + image);
            awaitLog(p, "msg=\"capacity change\" disk=data partition=db transport=vmbus-storvsc size=16777216 ");
            HttpResponse applied = c.post("/v1/partitions/checkpoints/apply?name=db&checkpoint=c1");
            assertEquals(200, applied.status(), applied.bodyText());
            assertArrayEquals(snap, export(ceph, "rbd/" + image, "applied.raw"), "apply rolls the image back to the snapshot");
            awaitLog(p, "msg=\"capacity change\" disk=data partition=db transport=vmbus-storvsc size=8388608 ");

            HttpResponse deleted = c.post("/v1/partitions/checkpoints/delete?name=db&checkpoint=c1&wait=true");
            assertEquals(200, deleted.status(), deleted.bodyText());
            assertFalse(ceph.run("rbd", "snap", "ls", "rbd/" + image).contains("phost.db.c1"), "delete removes the snapshot");
            List<?> left = (List<?>) ((Map<?, ?>) Json.parse(c.get("/v1/partitions/checkpoints?name=db").bodyText())).get("checkpoints");
            assertTrue(left.isEmpty(), left.toString());
            p.process().destroy();
            assertTrue(p.process().waitFor(30, TimeUnit.SECONDS), "phost stops on SIGTERM");
        }
    }

    private static void awaitLog(PhostProcess p, String text) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (!p.stderr().contains(text)) {
            assertTrue(System.nanoTime() < deadline, "no '" + text + "' in the log:\n" + p.stderr());
            Thread.sleep(100);
        }
    }

    private byte[] export(CephTestCluster ceph, String spec, String file) throws Exception {
        Path out = dir.resolve(file);
        ceph.run("rbd", "export", spec, out.toString());
        return Files.readAllBytes(out);
    }

    /** Every 4 KiB block of the region is the workload's pattern or zeros (a crash-consistent cut), some are written. */
    private static void checkPattern(byte[] img) {
        ByteBuffer bb = ByteBuffer.wrap(img).order(ByteOrder.LITTLE_ENDIAN);
        int patterned = 0;
        for (int base = 0; base < SPAN; base += 4096) {
            boolean zero = true;
            boolean pattern = true;
            for (int i = 0; i < 4096; i += 8) {
                long v = bb.getLong(base + i);
                zero &= v == 0;
                pattern &= v == GuestIo.pattern(base + i, SEED);
            }
            assertTrue(zero || pattern, "block at " + base + " is neither the pattern nor zeros");
            patterned += pattern ? 1 : 0;
        }
        assertTrue(patterned > 10, "only " + patterned + " blocks written before the checkpoint");
    }

    /** Waits until the status shows the partition writing its disk. */
    private static void awaitWriting(ManagementClient c) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(90);
        while (true) {
            String body = c.get("/v1/status").bodyText();
            for (Object o : (List<?>) ((Map<?, ?>) Json.parse(body)).get("storage")) {
                Map<?, ?> row = (Map<?, ?>) o;
                if ("data".equals(row.get("disk")) && ((Number) row.get("write_iops")).doubleValue() > 0) {
                    return;
                }
            }
            assertTrue(System.nanoTime() < deadline, "the partition never wrote: " + body);
            Thread.sleep(200);
        }
    }
}
