package io.phost.appliance.run;

import io.phost.appliance.Main;
import io.phost.appliance.mgmt.HttpResponse;
import io.phost.appliance.mgmt.ManagementAddress;
import io.phost.appliance.mgmt.ManagementClient;
import io.phost.core.text.Json;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Incremental backup of a running VM partition's disk (QEMU 7.2 TCG, a dynamic VHD served over phost's
 * vhost-user-blk): the guest writes 1 MiB of 0xa5 at 8 MiB, then counts in a loop, writing each count into the
 * first 8 bytes of its disk (fsync). A full backup is copied with {@code qemu-img convert}; two increments
 * follow while the guest goes on counting: each one's {@code qemu:dirty-bitmap:backup} map lists exactly the
 * first 64 KiB block, the block is copied into the copy, and {@code qemu-img compare} finds the copy equal to
 * the backup point's export. The backup points are differencing VHD checkpoints, merged away by finish. Then
 * the VM is removed and added again by live applies: its disk's bitmap is invalidated (ADDED_LIVE), the next
 * backup is full, and the one after it incremental again (change tracking of a VM added live, end to end).
 */
class RunVmBackupTest {
    private static final long MIB = 1 << 20;
    private static final long SIZE = 64 * MIB;

    @TempDir
    Path dir;

    @Test
    void shouldBackUpAVmDiskInIncrementsWhileTheGuestWrites() throws Exception {
        Path guest = TestGuestKit.directory();
        String script = """
            dd if=/dev/zero bs=65536 count=16 2>/dev/null | tr '\\000' '\\245' | dd of=/dev/vda bs=65536 seek=128 conv=fsync 2>/dev/null
            i=0
            while [ $i -lt 1000000 ]; do
              i=$((i+1))
              printf '%08d' $i | dd of=/dev/vda bs=8 count=1 conv=notrunc,fsync 2>/dev/null
              echo "COUNT $i"
            done
            """;
        Path cfg = dir.resolve("appliance.toml");
        Files.writeString(cfg, """
            [host]
            name = "vm-backup"
            data_dir = "%1$s"

            [[disk]]
            name = "d0"
            path = "d0.vhd"
            format = "vhd"
            create = { type = "dynamic", size = "64MiB" }

            [[partition]]
            name = "vm"
            kind = "vm"
            vcpus = 1
            memory = "128MiB"
            kernel = "%2$s/vmlinuz"
            initrd = "%2$s/initramfs.gz"
            cmdline = "%3$s"
            disk = [{ disk = "d0" }]
            """.formatted(dir.resolve("data"), guest, TestGuestKit.cmdline(script, false)));
        Path copy = dir.resolve("copy.raw");
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), "run", "--config", cfg.toString())) {
            p.awaitLine("phost: ready", Duration.ofSeconds(60));
            String endpoint = Files.readAllLines(dir.resolve("run/endpoint")).getFirst();
            ManagementClient c = new ManagementClient(ManagementAddress.parse(endpoint), null);
            awaitCount(c, 2);
            Map<?, ?> b = start(c);
            assertEquals("full", b.get("kind"), b.toString());
            String uri = String.valueOf(b.get("uri"));
            assertEquals(List.of(0L, SIZE), dirty(uri));
            tool("qemu-img", "convert", "-f", "raw", "-O", "raw", uri, copy.toString());
            tool("qemu-img", "compare", "-f", "raw", "-F", "raw", copy.toString(), uri);
            tool("qemu-io", "-f", "raw", "-r", "-c", "read -P 0xa5 8M 1M", copy.toString());
            assertEquals(0, Main.execute("backup", "finish", "d0", "--host", endpoint));
            for (int increment = 1; increment <= 2; increment++) {
                String before = new String(Files.readAllBytes(copy), 0, 8, java.nio.charset.StandardCharsets.US_ASCII);
                awaitCount(c, Integer.parseInt(before) + 2);
                b = start(c);
                assertEquals("incremental", b.get("kind"), b.toString());
                uri = String.valueOf(b.get("uri"));
                List<Long> extents = dirty(uri);
                assertEquals(List.of(0L, 64L * 1024), extents, "only the counter's block changed");
                applyIncrement(uri, extents, copy);
                tool("qemu-img", "compare", "-f", "raw", "-F", "raw", copy.toString(), uri);
                String after = new String(Files.readAllBytes(copy), 0, 8, java.nio.charset.StandardCharsets.US_ASCII);
                assertTrue(Integer.parseInt(after) > Integer.parseInt(before), before + " then " + after);
                assertEquals(0, Main.execute("backup", "finish", "d0", "--host", endpoint));
            }
            HttpResponse list = c.get("/v1/partitions/checkpoints?name=vm");
            assertTrue(list.bodyText().contains("d0-") && list.bodyText().contains(".vhd"), "the leaf is a differencing VHD: " + list.bodyText());
            assertFalse(list.bodyText().contains("backup-d0"), "finish merged the backup points away: " + list.bodyText());

            // The VM removed and added again by live applies (as a partition moved here would be): d0's bitmap on
            // this host cannot know what was written meanwhile, so the next backup is full (ADDED_LIVE), then
            // incremental again.
            String full = Files.readString(cfg);
            HttpResponse removed = c.post("/v1/config", full.substring(0, full.indexOf("[[partition]]"))
                .getBytes(java.nio.charset.StandardCharsets.UTF_8));
            assertEquals(200, removed.status(), removed.bodyText());
            HttpResponse added = c.post("/v1/config", full.getBytes(java.nio.charset.StandardCharsets.UTF_8));
            assertEquals(200, added.status(), added.bodyText());
            Map<?, ?> t = tracking(c);
            assertEquals("full", t.get("next_backup"), t.toString());
            assertTrue(String.valueOf(t.get("reason")).contains("added or moved here while the host ran"), t.toString());
            awaitRunning(c);
            b = start(c);
            assertEquals("full", b.get("kind"), b.toString());
            assertEquals(List.of(0L, SIZE), dirty(String.valueOf(b.get("uri"))), "a full backup lists the whole disk");
            assertEquals(0, Main.execute("backup", "finish", "d0", "--host", endpoint));
            assertEquals("incremental", tracking(c).get("next_backup"), "after the full backup");
        }
    }

    /** Until the VM added again runs (its console keeps the earlier boot's counts, so those cannot say). */
    private static void awaitRunning(ManagementClient c) throws Exception {
        long deadline = System.nanoTime() + Duration.ofSeconds(120).toNanos();
        String list = "";
        while (System.nanoTime() < deadline) {
            list = c.get("/v1/partitions").bodyText();
            for (Object o : (List<?>) Json.parse(list)) {
                Map<?, ?> m = (Map<?, ?>) o;
                if ("vm".equals(m.get("name")) && "running".equalsIgnoreCase(String.valueOf(m.get("state")))) {
                    return;
                }
            }
            Thread.sleep(200);
        }
        throw new AssertionError("the VM added again does not run: " + list);
    }

    private static Map<?, ?> tracking(ManagementClient c) throws Exception {
        HttpResponse r = c.get("/v1/backups?disk=d0");
        assertEquals(200, r.status(), r.bodyText());
        return (Map<?, ?>) ((Map<?, ?>) Json.parse(r.bodyText())).get("tracking");
    }

    private static Map<?, ?> start(ManagementClient c) throws Exception {
        HttpResponse r = c.post("/v1/backups/start?disk=d0");
        assertEquals(200, r.status(), r.bodyText());
        return (Map<?, ?>) ((Map<?, ?>) Json.parse(r.bodyText())).get("backup");
    }

    private static void awaitCount(ManagementClient c, int n) throws Exception {
        long deadline = System.nanoTime() + Duration.ofSeconds(180).toNanos();
        String text = "";
        while (System.nanoTime() < deadline) {
            text = c.get("/v1/partitions/console?name=vm").bodyText();
            if (text.contains("COUNT " + n + "\n") || text.contains("COUNT " + n + "\r")) {
                return;
            }
            assertFalse(text.contains("PHOST-GUEST-DONE"), text);
            Thread.sleep(200);
        }
        throw new AssertionError("no COUNT " + n + " on the console:\n" + text);
    }

    /** {@code nbdinfo --map=qemu:dirty-bitmap:backup}: the dirty extents as offset, length pairs (merged). */
    private static List<Long> dirty(String uri) throws Exception {
        List<?> map = (List<?>) Json.parse(tool("nbdinfo", "--json", "--map=qemu:dirty-bitmap:backup", uri));
        List<Long> out = new ArrayList<>();
        for (Object o : map) {
            Map<?, ?> e = (Map<?, ?>) o;
            long off = ((Number) e.get("offset")).longValue();
            long len = ((Number) e.get("length")).longValue();
            if ((((Number) e.get("type")).longValue() & 1) != 0) {
                int n = out.size();
                if (n > 0 && out.get(n - 2) + out.get(n - 1) == off) {
                    out.set(n - 1, out.get(n - 1) + len);
                } else {
                    out.add(off);
                    out.add(len);
                }
            }
        }
        return out;
    }

    /** Copies each dirty extent of the export into {@code copy} at its offset (qemu-img reads it over NBD). */
    private void applyIncrement(String uri, List<Long> extents, Path copy) throws Exception {
        String socket = uri.substring(uri.indexOf("?socket=") + "?socket=".length());
        Path piece = dir.resolve("piece.raw");
        try (FileChannel out = FileChannel.open(copy, StandardOpenOption.WRITE)) {
            for (int i = 0; i < extents.size(); i += 2) {
                long off = extents.get(i);
                Files.deleteIfExists(piece);
                tool("qemu-img", "convert", "--image-opts", "driver=raw,offset=" + off + ",size=" + extents.get(i + 1)
                    + ",file.driver=nbd,file.server.type=unix,file.server.path=" + socket + ",file.export=d0",
                    "-O", "raw", piece.toString());
                ByteBuffer b = ByteBuffer.wrap(Files.readAllBytes(piece));
                while (b.hasRemaining()) {
                    out.write(b, off + b.position());
                }
            }
        }
    }

    private static String tool(String... cmd) throws Exception {
        Process pr = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(pr.getInputStream().readAllBytes());
        assertEquals(0, pr.waitFor(), String.join(" ", cmd) + ": " + out);
        assertFalse(out.contains("Pattern verification failed"), String.join(" ", cmd) + ": " + out);
        return out;
    }
}
