package io.phost.appliance.run;

import io.phost.storage.rbd.CephTestCluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.appliance.mgmt.ManagementAddress;
import io.phost.appliance.mgmt.ManagementClient;
import io.phost.core.vhost.VhostUserFrontend;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * `phost run` with a disk on Ceph RBD ({@link CephTestCluster}: one monitor, one memstore OSD). A vhost-user
 * front-end (standing in for QEMU) writes through the storage queue and phost's librbd engine, an NBD client
 * (qemu-io) writes through the export, and after phost stops, QEMU's own rbd driver reads both patterns from
 * the image. A second appliance on the same image is refused while the first holds the exclusive lock, and
 * with {@code break_lock = true} it fences the first one.
 *
 * <p>Recipe of the check: {@code qemu-io -f raw -r -c "read -P 0xa5 1M 256k" rbd:rbd/IMAGE:conf=CEPH_CONF}.
 */
@Timeout(300)
class RunRbdDiskTest {
    private static final ValueLayout.OfInt LE32 = ValueLayout.JAVA_INT_UNALIGNED;
    private static final ValueLayout.OfLong LE64 = ValueLayout.JAVA_LONG_UNALIGNED;

    @TempDir
    Path dir;

    private String config(String name, Path data, CephTestCluster ceph, String image, boolean breakLock) {
        return """
            [host]
            name = "%s"
            data_dir = "%s"
            nbd = "unix:%s/nbd.sock"

            [[disk]]
            name = "db"
            format = "rbd"
            vhost_user = true
            nbd_export = true
            [disk.rbd]
            pool = "rbd"
            image = "%s"
            cluster_config = "%s"
            break_lock = %s
            connect_timeout = 20
            [disk.create]
            size = "64MiB"
            """.formatted(name, data, data, image, ceph.conf(), breakLock);
    }

    @Test
    void shouldServeAnRbdDiskOverVhostUserAndNbdAndHoldItsLock() throws Exception {
        CephTestCluster ceph = CephTestCluster.get();
        String image = "run-" + ProcessHandle.current().pid();
        Path data = dir.resolve("data");
        Path cfg = dir.resolve("a.toml");
        Files.writeString(cfg, config("host-a", data, ceph, image, false));
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), "run", "--config", cfg.toString())) {
            p.awaitLine("phost: ready", Duration.ofSeconds(60));
            try (VhostUserFrontend f = VhostUserFrontend.connect(data.resolve("vhost/db.sock"), 8 << 20)) {
                f.negotiate(~0L);
                VhostUserFrontend.Queue q = f.startQueue(0, 16);
                long buf = f.alloc(256 << 10, 4096);
                f.at(buf, 256 << 10).fill((byte) 0xA5);
                assertEquals(0, blk(f, q, 1, (1 << 20) / 512, buf, 256 << 10, false), "OUT status OK");
                assertEquals(0, blk(f, q, 4, 0, 0, 0, false), "FLUSH status OK");
                long back = f.alloc(256 << 10, 4096);
                assertEquals(0, blk(f, q, 0, (1 << 20) / 512, back, 256 << 10, true), "IN status OK");
                assertEquals(-1, f.at(back, 256 << 10).mismatch(f.at(buf, 256 << 10)), "read back through librbd");
            }
            String nbd = "nbd+unix:///db?socket=" + data.resolve("nbd.sock");
            run("qemu-io", "-f", "raw", "-c", "write -P 0x5a 2M 128k", nbd);
            String status = client(dir.resolve("run")).get("/v1/status").bodyText();
            assertTrue(status.contains("rbd:rbd/" + image), status);

            // A second appliance on the same image is refused while the first one holds the lock.
            Path cfgB = dir.resolve("b.toml");
            Files.writeString(cfgB, config("host-b", dir.resolve("data-b"), ceph, image, false));
            try (PhostProcess b = PhostProcess.start(dir.resolve("run-b"), "run", "--config", cfgB.toString())) {
                assertTrue(b.process().waitFor(90, TimeUnit.SECONDS), "refused start ends");
                assertTrue(b.process().exitValue() != 0, "second writer must not start: " + b.stderr());
                assertTrue(b.stderr().contains("rbd/" + image) && b.stderr().contains("exclusive lock"), b.stderr());
            }

            p.process().destroy();
            assertTrue(p.process().waitFor(30, TimeUnit.SECONDS));
            assertEquals(0, p.process().exitValue(), p.stderr());
        }
        // QEMU's own rbd driver sees both writes in the image.
        String spec = "rbd:rbd/" + image + ":conf=" + ceph.conf();
        String check = run("qemu-io", "-f", "raw", "-r", "-c", "read -P 0xa5 1M 256k", "-c", "read -P 0x5a 2M 128k", spec);
        assertFalse(check.contains("verification failed") || check.contains("Pattern verification"), check);
        assertTrue(check.contains("read 262144/262144 bytes") && check.contains("read 131072/131072 bytes"), check);

        // break_lock: host B takes the image from a live host A, which is fenced (its writes fail).
        Files.writeString(cfg, config("host-a", data, ceph, image, false));
        try (PhostProcess a = PhostProcess.start(dir.resolve("run-a2"), "run", "--config", cfg.toString())) {
            a.awaitLine("phost: ready", Duration.ofSeconds(60));
            Path cfgB = dir.resolve("b2.toml");
            Files.writeString(cfgB, config("host-b", dir.resolve("data-b2"), ceph, image, true));
            try (PhostProcess b = PhostProcess.start(dir.resolve("run-b2"), "run", "--config", cfgB.toString())) {
                b.awaitLine("phost: ready", Duration.ofSeconds(60));
                ProcessResult fenced = exec("qemu-io", "-f", "raw", "-c", "write -P 0x11 0 4k",
                    "nbd+unix:///db?socket=" + data.resolve("nbd.sock"));
                assertTrue(fenced.exitCode != 0 || fenced.output.contains("failed"), "fenced host A still wrote: " + fenced.output);
                run("qemu-io", "-f", "raw", "-c", "write -P 0x22 0 4k", "nbd+unix:///db?socket=" + dir.resolve("data-b2/nbd.sock"));
            }
        }
        String after = run("qemu-io", "-f", "raw", "-r", "-c", "read -P 0x22 0 4k", spec);
        assertFalse(after.contains("verification failed") || after.contains("Pattern verification"), after);
    }

    private static ManagementClient client(Path runDir) throws Exception {
        return new ManagementClient(ManagementAddress.parse(Files.readAllLines(runDir.resolve("endpoint")).getFirst()), null);
    }

    private static int blk(VhostUserFrontend f, VhostUserFrontend.Queue q, int type, long sector, long data, int len, boolean in) {
        long hdr = f.alloc(16, 16);
        long st = f.alloc(1, 1);
        MemorySegment h = f.at(hdr, 16);
        h.set(LE32, 0, type);
        h.set(LE64, 8, sector);
        f.at(st, 1).set(ValueLayout.JAVA_BYTE, 0, (byte) 0x7F);
        if (len == 0) {
            q.add(new long[] {hdr, st}, new int[] {16, 1}, new boolean[] {false, true});
        } else {
            q.add(new long[] {hdr, data, st}, new int[] {16, len, 1}, new boolean[] {false, in, true});
        }
        q.kick();
        assertNotNull(q.awaitUsed(30_000), "request completed");
        return f.at(st, 1).get(ValueLayout.JAVA_BYTE, 0);
    }

    private record ProcessResult(int exitCode, String output) {
    }

    private static ProcessResult exec(String... cmd) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), String.join(" ", cmd) + " hung");
        return new ProcessResult(p.exitValue(), out);
    }

    private static String run(String... cmd) throws IOException, InterruptedException {
        ProcessResult r = exec(cmd);
        assertEquals(0, r.exitCode, String.join(" ", cmd) + ": " + r.output);
        return r.output;
    }
}
