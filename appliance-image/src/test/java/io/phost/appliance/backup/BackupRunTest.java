package io.phost.appliance.backup;

import io.phost.appliance.Main;
import io.phost.appliance.mgmt.HttpResponse;
import io.phost.appliance.mgmt.ManagementAddress;
import io.phost.appliance.mgmt.ManagementClient;
import io.phost.appliance.run.PhostProcess;
import io.phost.core.text.Json;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Incremental backup on a real {@code phost run} with a process partition writing over VMBus SCSI, read with
 * standard NBD tools only: {@code nbdinfo --map=qemu:dirty-bitmap:backup} lists the changed extents, a full
 * backup is {@code qemu-img convert} of the export, an increment copies each dirty extent (qemu-img convert
 * of a raw offset/size window of the export) into the copy, and {@code qemu-img compare} checks the copy
 * against the export. Each run of the host writes its own region (the workload's --offset), so the map must
 * list exactly it; writes made while a backup is exported land in the next increment; a SIGKILL of the host
 * makes the next backup full, and status says why.
 * <pre>
 *   recipe: nbdinfo --json --map=qemu:dirty-bitmap:backup 'nbd+unix:///d0?socket=S'
 *           qemu-img convert --image-opts driver=raw,offset=O,size=L,file.driver=nbd,file.server.type=unix,file.server.path=S,file.export=d0 -O raw piece
 *           qemu-img compare -f raw -F raw copy.raw 'nbd+unix:///d0?socket=S'
 * </pre>
 */
class BackupRunTest {
    private static final long MIB = 1 << 20;
    private static final long SIZE = 64 * MIB;

    @TempDir
    Path dir;

    private Path config(long offset, long size, int seed) throws IOException {
        Path cfg = dir.resolve("appliance.toml");
        Files.writeString(cfg, """
            [host]
            name = "backup"
            data_dir = "%s"

            [[disk]]
            name = "d0"
            path = "d0.vhdx"
            format = "vhdx"
            create = { type = "dynamic", size = "64MiB" }

            [[partition]]
            name = "p"
            memory = "64MiB"
            autostart = false
            workload = { kind = "io", args = ["--rw", "write", "--bs", "64k", "--iodepth", "4", "--offset", "%d", "--size", "%d", "--verify", "--seed", "%d"] }
              [[partition.disk]]
              disk = "d0"
              lun = 0
            """.formatted(dir.resolve("data"), offset, size, seed));
        return cfg;
    }

    /** One run of the host: its partition writes [offset, offset+size) once, then {@code body} runs. */
    private void run(String name, long offset, long size, int seed, boolean kill, Body body) throws Exception {
        Path cfg = config(offset, size, seed);
        try (PhostProcess p = PhostProcess.start(dir.resolve(name), "run", "--config", cfg.toString(), "--plain")) {
            p.awaitLine("phost: ready", Duration.ofSeconds(60));
            String endpoint = Files.readAllLines(dir.resolve(name + "/endpoint")).getFirst();
            ManagementClient c = new ManagementClient(ManagementAddress.parse(endpoint), null);
            writeOnce(c);
            body.run(c, endpoint);
            if (kill) {
                p.process().destroyForcibly(); // SIGKILL: no clean close of the bitmap
            } else {
                p.process().destroy(); // SIGTERM: the clean stop
            }
            assertTrue(p.process().waitFor(60, TimeUnit.SECONDS), "host stopped");
        }
    }

    @FunctionalInterface
    private interface Body {
        void run(ManagementClient c, String endpoint) throws Exception;
    }

    @Test
    void shouldCopyOnlyTheChangedExtentsOfThreeIncrementsAndGoFullAfterAnUncleanStop() throws Exception {
        Path copy = dir.resolve("copy.raw");
        run("run1", 0, 8 * MIB, 1, false, (c, ep) -> {
            Map<?, ?> status = status(c);
            assertEquals("full", tracking(status).get("next_backup"), status.toString());
            assertEquals(0, Main.execute("backup", "status", "d0", "--host", ep));
            Map<?, ?> b = start(c);
            assertEquals("full", b.get("kind"), b.toString());
            assertEquals(409, c.post("/v1/backups/start?disk=d0").status(), "one backup of a disk at a time");
            assertEquals(404, c.post("/v1/backups/start?disk=nope").status());
            String uri = String.valueOf(b.get("uri"));
            assertExtents(List.of(0L, SIZE), dirty(uri));
            tool("qemu-img", "convert", "-f", "raw", "-O", "raw", uri, copy.toString()); // the full backup
            tool("qemu-img", "compare", "-f", "raw", "-F", "raw", copy.toString(), uri);
            assertEquals(0, Main.execute("backup", "finish", "d0", "--host", ep));
        });
        run("run2", 20 * MIB, 3 * MIB, 2, false, (c, ep) -> {
            Map<?, ?> b = start(c);
            assertEquals("incremental", b.get("kind"), b.toString());
            String uri = String.valueOf(b.get("uri"));
            List<Long> extents = dirty(uri);
            assertExtents(List.of(20 * MIB, 3 * MIB), extents);
            applyIncrement(uri, extents, copy);
            tool("qemu-img", "compare", "-f", "raw", "-F", "raw", copy.toString(), uri);
            writeOnce(c); // the partition writes [20, 23) MiB again while the backup point is exported
            tool("qemu-img", "compare", "-f", "raw", "-F", "raw", copy.toString(), uri); // the export stays frozen
            assertEquals(3 * MIB, ((Number) tracking(status(c)).get("changed_bytes")).longValue(), "tracked for the next one");
            assertEquals(0, Main.execute("backup", "finish", "d0", "--host", ep));
        });
        run("run3", 40 * MIB, MIB, 3, true, (c, ep) -> {
            Map<?, ?> b = start(c);
            assertEquals("incremental", b.get("kind"), b.toString());
            String uri = String.valueOf(b.get("uri"));
            List<Long> extents = dirty(uri);
            assertExtents(List.of(20 * MIB, 3 * MIB, 40 * MIB, MIB), extents);
            applyIncrement(uri, extents, copy);
            tool("qemu-img", "compare", "-f", "raw", "-F", "raw", copy.toString(), uri);
            assertEquals(0, Main.execute("backup", "finish", "d0", "--host", ep));
            writeOnce(c); // then the host is killed: these writes are not in any bitmap that could be trusted
        });
        run("run4", 50 * MIB, MIB, 4, false, (c, ep) -> {
            Map<?, ?> t = tracking(status(c));
            assertEquals("full", t.get("next_backup"), t.toString());
            assertTrue(String.valueOf(t.get("reason")).contains("killed"), t.toString());
            Map<?, ?> b = start(c);
            assertEquals("full", b.get("kind"), b.toString());
            assertTrue(String.valueOf(b.get("reason")).contains("killed"), b.toString());
            String uri = String.valueOf(b.get("uri"));
            List<Long> extents = dirty(uri);
            assertExtents(List.of(0L, SIZE), extents);
            applyIncrement(uri, extents, copy);
            tool("qemu-img", "compare", "-f", "raw", "-F", "raw", copy.toString(), uri);
            assertEquals(0, Main.execute("backup", "finish", "d0", "--host", ep));
            assertEquals("incremental", tracking(status(c)).get("next_backup"));
            assertEquals(404, c.post("/v1/backups/finish?disk=d0").status(), "nothing left to finish");
        });
    }

    private static Map<?, ?> status(ManagementClient c) throws Exception {
        HttpResponse r = c.get("/v1/backups?disk=d0");
        assertEquals(200, r.status(), r.bodyText());
        return (Map<?, ?>) Json.parse(r.bodyText());
    }

    private static Map<?, ?> tracking(Map<?, ?> status) {
        return (Map<?, ?>) status.get("tracking");
    }

    private static Map<?, ?> start(ManagementClient c) throws Exception {
        HttpResponse r = c.post("/v1/backups/start?disk=d0");
        assertEquals(200, r.status(), r.bodyText());
        return (Map<?, ?>) ((Map<?, ?>) Json.parse(r.bodyText())).get("backup");
    }

    /** Starts the partition and waits for its workload to write (and verify) its region and exit. */
    private static void writeOnce(ManagementClient c) throws Exception {
        assertEquals(200, c.post("/v1/partitions/start?name=p").status());
        long deadline = System.nanoTime() + Duration.ofSeconds(120).toNanos();
        Map<?, ?> p;
        do {
            Thread.sleep(100);
            p = (Map<?, ?>) ((List<?>) Json.parse(c.get("/v1/partitions").bodyText())).getFirst();
        } while (System.nanoTime() < deadline && List.of("running", "starting").contains(String.valueOf(p.get("state"))));
        String reason = String.valueOf(p.get("reason"));
        assertTrue(reason.contains("code 0") || reason.contains("guest closed the control socket"), p.toString());
        String log = c.get("/v1/partitions/logs?name=p").bodyText();
        assertTrue(log.contains("verify_errors=0"), log);
    }

    /** {@code nbdinfo --map=qemu:dirty-bitmap:backup}: the dirty extents as offset, length pairs (merged). */
    private static List<Long> dirty(String uri) throws Exception {
        List<?> map = (List<?>) Json.parse(tool("nbdinfo", "--json", "--map=qemu:dirty-bitmap:backup", uri));
        List<Long> out = new ArrayList<>();
        long covered = 0;
        for (Object o : map) {
            Map<?, ?> e = (Map<?, ?>) o;
            long off = ((Number) e.get("offset")).longValue();
            long len = ((Number) e.get("length")).longValue();
            assertEquals(covered, off, "extents are contiguous: " + map);
            covered = off + len;
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
        assertEquals(SIZE, covered, "the map covers the disk: " + map);
        return out;
    }

    private static void assertExtents(List<Long> expected, List<Long> actual) {
        assertEquals(expected, actual, "dirty extents (offset, length ...) in bytes");
    }

    /** Copies each dirty extent of the export into {@code copy} at its offset (qemu-img reads it over NBD). */
    private void applyIncrement(String uri, List<Long> extents, Path copy) throws Exception {
        String socket = uri.substring(uri.indexOf("?socket=") + "?socket=".length());
        Path piece = dir.resolve("piece.raw");
        try (FileChannel out = FileChannel.open(copy, StandardOpenOption.WRITE)) {
            for (int i = 0; i < extents.size(); i += 2) {
                long off = extents.get(i);
                long len = extents.get(i + 1);
                Files.deleteIfExists(piece);
                tool("qemu-img", "convert", "--image-opts", "driver=raw,offset=" + off + ",size=" + len
                    + ",file.driver=nbd,file.server.type=unix,file.server.path=" + socket + ",file.export=d0",
                    "-O", "raw", piece.toString());
                ByteBuffer b = ByteBuffer.wrap(Files.readAllBytes(piece));
                assertEquals(len, b.remaining());
                while (b.hasRemaining()) {
                    out.write(b, off + b.position());
                }
            }
        }
        Files.deleteIfExists(piece);
    }

    private static String tool(String... cmd) throws Exception {
        Process pr = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(pr.getInputStream().readAllBytes());
        assertEquals(0, pr.waitFor(), String.join(" ", cmd) + ": " + out);
        return out;
    }
}
