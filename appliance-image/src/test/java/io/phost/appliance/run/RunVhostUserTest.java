package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.appliance.mgmt.ManagementAddress;
import io.phost.appliance.mgmt.ManagementClient;
import io.phost.core.text.Json;
import io.phost.core.vhost.VhostUserFrontend;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
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
 * `phost run` exports the disks that set {@code vhost_user = true} on {@code <data_dir>/vhost/<disk>.sock}:
 * a vhost-user front-end (the test driver standing in for QEMU) writes through the socket, /status shows the
 * export connected with its counters, the QoS flows list it under owner {@code vhost-user}, a read-only disk
 * is exported read-only, and after the host stops qemu-io finds the pattern in the VHDX file.
 */
@Timeout(120)
class RunVhostUserTest {
    private static final ValueLayout.OfInt LE32 = ValueLayout.JAVA_INT_UNALIGNED;
    private static final ValueLayout.OfLong LE64 = ValueLayout.JAVA_LONG_UNALIGNED;

    @TempDir
    Path dir;

    @Test
    void shouldExportConfiguredDisksOverVhostUserWithStatusAndQos() throws Exception {
        Path data = dir.resolve("data");
        Path cfg = dir.resolve("appliance.toml");
        Files.writeString(cfg, """
            [host]
            name = "vhost-test"
            data_dir = "%s"

            [[qos_policy]]
            name = "vm"
            max_iops = 100000

            [[disk]]
            name = "vm-os"
            path = "vm-os.vhdx"
            qos_policy = "vm"
            vhost_user = true
            create = { type = "dynamic", size = "64MiB" }

            [[disk]]
            name = "golden"
            path = "golden.raw"
            format = "raw"
            read_only = true
            vhost_user = true
            create = { type = "fixed", size = "4MiB" }
            """.formatted(data));
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), "run", "--config", cfg.toString())) {
            p.awaitLine("phost: ready", Duration.ofSeconds(30));
            Path sock = data.resolve("vhost/vm-os.sock");
            assertTrue(Files.exists(sock), "socket at <data_dir>/vhost/<disk>.sock");
            try (VhostUserFrontend f = VhostUserFrontend.connect(sock, 8 << 20)) {
                f.negotiate(~0L);
                VhostUserFrontend.Queue q = f.startQueue(0, 16);
                long buf = f.alloc(256 << 10, 4096);
                f.at(buf, 256 << 10).fill((byte) 0xA5);
                assertEquals(0, blk(f, q, 1, (1 << 20) / 512, buf, 256 << 10, false), "OUT status OK");
                assertEquals(0, blk(f, q, 4, 0, 0, 0, false), "FLUSH status OK");

                Map<?, ?> status = (Map<?, ?>) Json.parse(client(dir).get("/v1/status").bodyText());
                List<?> rows = (List<?>) status.get("vhost_user");
                assertNotNull(rows, status.toString());
                assertEquals(2, rows.size(), rows.toString());
                Map<?, ?> os = (Map<?, ?>) rows.getFirst();
                assertEquals("vm-os", os.get("disk"));
                assertEquals(true, os.get("connected"));
                assertEquals(sock.toString(), os.get("socket"));
                assertTrue(((Number) os.get("bytes_written")).longValue() >= 256 << 10, os.toString());
                assertEquals(true, ((Map<?, ?>) rows.get(1)).get("read_only"));
                String metrics = client(dir).get("/v1/metrics").bodyText();
                assertTrue(metrics.contains("phost_vhost_user_written_bytes_total{disk=\"vm-os\"}")
                    && metrics.contains("phost_vhost_user_connected{disk=\"vm-os\"} 1"), metrics);
                String flows = client(dir).get("/v1/qos/flows").bodyText();
                assertTrue(flows.contains("vhost-user") && flows.contains("vm-os"), flows);
            }
            try (VhostUserFrontend f = VhostUserFrontend.connect(data.resolve("vhost/golden.sock"), 8 << 20)) {
                long features = f.negotiate(~0L);
                assertTrue((features & (1L << 5)) != 0, "VIRTIO_BLK_F_RO on the read-only disk");
                VhostUserFrontend.Queue q = f.startQueue(0, 16);
                long buf = f.alloc(4096, 4096);
                assertEquals(1, blk(f, q, 1, 0, buf, 4096, false), "OUT on a read-only disk: IOERR");
            }
            p.process().destroy();
            assertTrue(p.process().waitFor(20, TimeUnit.SECONDS));
            assertEquals(0, p.process().exitValue(), p.stderr());
            assertTrue(!Files.exists(data.resolve("vhost/vm-os.sock")), "the socket is removed at stop");
        }
        Process io = new ProcessBuilder("qemu-io", "-f", "vhdx", "-r", "-c", "read -P 0xa5 1M 256k",
            data.resolve("vm-os.vhdx").toString()).redirectErrorStream(true).start();
        String out = new String(io.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(io.waitFor(60, TimeUnit.SECONDS) && io.exitValue() == 0 && out.contains("read 262144/262144 bytes")
            && !out.contains("verification failed"), out);
    }

    private static ManagementClient client(Path dir) throws Exception {
        return new ManagementClient(ManagementAddress.parse(Files.readAllLines(dir.resolve("run/endpoint")).getFirst()), null);
    }

    /** One virtio-blk request {header, data?, status}; returns the status byte. */
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
        assertNotNull(q.awaitUsed(10_000), "request completed");
        return f.at(st, 1).get(ValueLayout.JAVA_BYTE, 0);
    }
}
