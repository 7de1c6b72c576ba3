package io.phost.appliance.checkpoint;

import io.phost.appliance.Main;
import io.phost.appliance.mgmt.HttpResponse;
import io.phost.appliance.mgmt.ManagementAddress;
import io.phost.appliance.mgmt.ManagementClient;
import io.phost.appliance.run.PhostProcess;
import io.phost.core.text.Json;
import io.phost.storage.vmbus.GuestIo;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Checkpoints of a running process partition on a real {@code phost run}: the partition's workload
 * ({@code phost guest io --verify}, a pattern derived from offset and seed) writes over VMBus SCSI while
 * checkpoints are created and one is deleted (online merge); its own read-back verification must pass.
 * Exports are checked with qemu-img (check, convert to raw: every 8-byte word is zero or the pattern; compare).
 * A second test SIGKILLs the host while a delete merges 128 MiB and restarts it: the merge finishes at start,
 * the chain is intact and the checkpoint's view is unchanged (qemu-img compare).
 * <pre>
 *   recipe: qemu-img check -f vhdx E.vhdx; qemu-img convert -f vhdx -O raw E.vhdx E.raw; qemu-img compare A.vhdx B.vhdx
 * </pre>
 */
class CheckpointRunTest {
    private static final long SEED = 7;

    @TempDir
    Path dir;

    private String config(String workloadArgs, boolean autostart) {
        return config(workloadArgs, autostart, "vhdx");
    }

    private String config(String workloadArgs, boolean autostart, String format) {
        return """
            [host]
            name = "ckpt"
            data_dir = "%s"

            [[disk]]
            name = "d0"
            path = "d0.%s"
            format = "%s"
            create = { type = "dynamic", size = "256MiB" }

            [[partition]]
            name = "p"
            memory = "64MiB"
            autostart = %s
            workload = { kind = "io", args = [%s] }
              [[partition.disk]]
              disk = "d0"
              lun = 0
            """.formatted(dir.resolve("data"), format, format, autostart, workloadArgs);
    }

    @Test
    void shouldCreateDeleteExportAndApplyWhileTheWorkloadVerifiesItsPattern() throws Exception {
        Path cfg = dir.resolve("appliance.toml");
        Files.writeString(cfg, config("\"--rw\", \"randwrite\", \"--bs\", \"4k\", \"--iodepth\", \"4\", \"--runtime\", \"20\", "
            + "\"--span\", \"16m\", \"--verify\", \"--seed\", \"" + SEED + "\"", true));
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), "run", "--config", cfg.toString(), "--plain")) {
            p.awaitLine("phost: ready", Duration.ofSeconds(60));
            String endpoint = Files.readAllLines(dir.resolve("run/endpoint")).getFirst();
            ManagementClient c = new ManagementClient(ManagementAddress.parse(endpoint), null);
            awaitState(c, "running");
            awaitWrites(c); // the workload runs (and answers freezes) once it writes
            for (String name : List.of("c1", "c2", "c3")) {
                HttpResponse r = c.post("/v1/partitions/checkpoints/create?name=p&checkpoint=" + name);
                assertEquals(200, r.status(), r.bodyText());
                Map<?, ?> m = (Map<?, ?>) Json.parse(r.bodyText());
                // The workload answers the freeze request: its writes were flushed and held around the switch.
                assertEquals("application-consistent", m.get("consistency"), r.bodyText());
                System.out.println("checkpoint " + name + " pause_us=" + m.get("pause_us") + " state=" + state(c));
                Thread.sleep(700);
            }
            assertEquals(409, c.post("/v1/partitions/checkpoints/create?name=p&checkpoint=c1").status(), "a name in use");
            assertEquals(400, c.post("/v1/partitions/checkpoints/create?name=p&checkpoint=bad/name").status());
            assertEquals(404, c.post("/v1/partitions/checkpoints/apply?name=p&checkpoint=nope").status());
            assertEquals("running", state(c), () -> "the workload ran through three switches: " + partitionAndLog(c));
            // Delete c1 while the workload writes: its child image merges into the base online.
            assertEquals(0, Main.execute("checkpoint", "delete", "p", "c1", "--wait", "--host", endpoint));
            assertEquals("running", state(c), () -> partitionAndLog(c));
            Map<?, ?> list = list(c);
            assertEquals(List.of("c2", "c3"), ((List<?>) list.get("checkpoints")).stream().map(o -> ((Map<?, ?>) o).get("name")).toList());
            assertNull(((Map<?, ?>) ((List<?>) list.get("checkpoints")).getFirst()).get("parent"), "c2 now hangs on the root");
            assertEquals(dir.resolve("data/d0.vhdx").toAbsolutePath().toString(),
                ((Map<?, ?>) ((Map<?, ?>) ((List<?>) list.get("checkpoints")).getFirst()).get("images")).get("d0"),
                "c1's child merged into the base: c2's image is the base file now");
            awaitEnd(c);
            String log = c.get("/v1/partitions/logs?name=p").bodyText();
            assertTrue(log.contains("errors=0,") && log.contains("verify_errors=0") && !log.contains("verified=0,"), log);
            assertTrue(log.contains("writes frozen and flushed for a checkpoint"), log);

            // Export c2 and c3: qemu-img reads them; every word is zero or the workload's pattern.
            Path e2 = dir.resolve("e2.vhdx");
            assertEquals(0, Main.execute("checkpoint", "export", "p", "c2", e2.toString(), "--host", endpoint));
            Path e3 = dir.resolve("e3.vhdx");
            assertEquals(0, Main.execute("checkpoint", "export", "p", "c3", e3.toString(), "--host", endpoint));
            long words2 = checkPattern(e2);
            long words3 = checkPattern(e3);
            assertTrue(words2 > 0 && words3 >= words2, words2 + " / " + words3);
            assertEquals(409, c.post("/v1/partitions/checkpoints/export?name=p&checkpoint=c2&path=" + e2).status(), "never overwrites");

            // Apply c2 (the partition is stopped): the disk reads as c2 again, shown by a checkpoint taken right after.
            assertEquals(0, Main.execute("checkpoint", "apply", "p", "c2", "--host", endpoint));
            assertEquals("c2", list(c).get("current"));
            assertEquals(200, c.post("/v1/partitions/checkpoints/create?name=p&checkpoint=after-apply").status());
            Path ea = dir.resolve("ea.vhdx");
            assertEquals(0, Main.execute("checkpoint", "export", "p", "after-apply", ea.toString(), "--host", endpoint));
            qemuImg("compare", "-f", "vhdx", "-F", "vhdx", e2.toString(), ea.toString());
            Map<?, ?> status = (Map<?, ?>) ((Map<?, ?>) Json.parse(c.get("/v1/status").bodyText())).get("checkpoints");
            System.out.println("status.checkpoints=" + status);
            assertTrue(((Number) ((Map<?, ?>) status.get("pause")).get("count")).longValue() >= 6, status.toString());
        }
    }

    /**
     * A VHD disk gets differencing .vhd children: checkpoints while the workload writes and verifies, a delete
     * merged online, exports that hold only the pattern, and an apply that reads as the checkpoint again.
     */
    @Test
    void shouldCheckpointAVhdDiskWithDifferencingVhdChildren() throws Exception {
        Path cfg = dir.resolve("appliance.toml");
        Files.writeString(cfg, config("\"--rw\", \"randwrite\", \"--bs\", \"4k\", \"--iodepth\", \"4\", \"--runtime\", \"12\", "
            + "\"--span\", \"16m\", \"--verify\", \"--seed\", \"" + SEED + "\"", true, "vhd"));
        Path ckdir = dir.resolve("data/checkpoints/p");
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), "run", "--config", cfg.toString(), "--plain")) {
            p.awaitLine("phost: ready", Duration.ofSeconds(60));
            String endpoint = Files.readAllLines(dir.resolve("run/endpoint")).getFirst();
            ManagementClient c = new ManagementClient(ManagementAddress.parse(endpoint), null);
            awaitState(c, "running");
            Thread.sleep(700);
            for (String name : List.of("c1", "c2")) {
                HttpResponse r = c.post("/v1/partitions/checkpoints/create?name=p&checkpoint=" + name);
                assertEquals(200, r.status(), r.bodyText());
                System.out.println("vhd checkpoint " + name + " pause_us=" + ((Map<?, ?>) Json.parse(r.bodyText())).get("pause_us"));
                Thread.sleep(700);
            }
            assertEquals(ckdir.resolve("d0-2.vhd").toAbsolutePath().toString(), ((Map<?, ?>) list(c).get("leaves")).get("d0"));
            qemuImg("info", "-f", "vpc", ckdir.resolve("d0-1.vhd").toString()); // a differencing VHD qemu opens with its chain
            assertEquals(0, Main.execute("checkpoint", "delete", "p", "c1", "--wait", "--host", endpoint));
            assertEquals("running", state(c), () -> partitionAndLog(c));
            assertFalse(Files.exists(ckdir.resolve("d0-1.vhd")), "c1's child merged into d0.vhd and removed");
            assertEquals(dir.resolve("data/d0.vhd").toAbsolutePath().toString(),
                ((Map<?, ?>) ((Map<?, ?>) ((List<?>) list(c).get("checkpoints")).getFirst()).get("images")).get("d0"));
            awaitEnd(c);
            String log = c.get("/v1/partitions/logs?name=p").bodyText();
            assertTrue(log.contains("errors=0,") && log.contains("verify_errors=0") && !log.contains("verified=0,"), log);

            Path e2 = dir.resolve("e2.vhdx");
            assertEquals(0, Main.execute("checkpoint", "export", "p", "c2", e2.toString(), "--host", endpoint));
            assertTrue(checkPattern(e2) > 0);
            assertEquals(0, Main.execute("checkpoint", "apply", "p", "c2", "--host", endpoint));
            assertEquals(200, c.post("/v1/partitions/checkpoints/create?name=p&checkpoint=after-apply").status());
            Path ea = dir.resolve("ea.vhdx");
            assertEquals(0, Main.execute("checkpoint", "export", "p", "after-apply", ea.toString(), "--host", endpoint));
            qemuImg("compare", "-f", "vhdx", "-F", "vhdx", e2.toString(), ea.toString());
        }
    }

    @Test
    void shouldFinishADeleteKilledMidMergeAtTheNextStart() throws Exception {
        Path cfg = dir.resolve("appliance.toml");
        Files.writeString(cfg, config("\"--rw\", \"write\", \"--bs\", \"1m\", \"--iodepth\", \"4\", \"--size\", \"128m\", "
            + "\"--verify\", \"--seed\", \"" + SEED + "\"", false));
        Path before = dir.resolve("before.vhdx");
        Path ckdir = dir.resolve("data/checkpoints/p");
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), "run", "--config", cfg.toString(), "--plain")) {
            p.awaitLine("phost: ready", Duration.ofSeconds(60));
            String endpoint = Files.readAllLines(dir.resolve("run/endpoint")).getFirst();
            ManagementClient c = new ManagementClient(ManagementAddress.parse(endpoint), null);
            assertEquals(200, c.post("/v1/partitions/checkpoints/create?name=p&checkpoint=c1").status());
            assertEquals(200, c.post("/v1/partitions/start?name=p").status());
            awaitEnd(c);
            String log = c.get("/v1/partitions/logs?name=p").bodyText();
            assertTrue(log.contains("verify_errors=0"), log);
            assertEquals(200, c.post("/v1/partitions/checkpoints/create?name=p&checkpoint=c2").status());
            assertEquals(0, Main.execute("checkpoint", "export", "p", "c2", before.toString(), "--host", endpoint));
            assertEquals(128L << 20, checkPattern(before) * 8, "the workload's 128 MiB, nothing else");
            HttpResponse r = c.post("/v1/partitions/checkpoints/delete?name=p&checkpoint=c1");
            assertEquals(202, r.status(), r.bodyText());
            long deadline = System.nanoTime() + 30_000_000_000L;
            while (System.nanoTime() < deadline && !journalExists(ckdir)) {
                Thread.onSpinWait();
            }
            p.process().destroyForcibly(); // SIGKILL, mid-merge
            p.process().waitFor();
            System.out.println("killed mid-merge: journal=" + journalExists(ckdir));
        }
        try (PhostProcess p = PhostProcess.start(dir.resolve("run2"), "run", "--config", cfg.toString(), "--plain")) {
            p.awaitLine("phost: ready", Duration.ofSeconds(120));
            String endpoint = Files.readAllLines(dir.resolve("run2/endpoint")).getFirst();
            ManagementClient c = new ManagementClient(ManagementAddress.parse(endpoint), null);
            Map<?, ?> list = list(c);
            assertEquals(List.of("c2"), ((List<?>) list.get("checkpoints")).stream().map(o -> ((Map<?, ?>) o).get("name")).toList(),
                "the interrupted delete of c1 finished at start");
            assertFalse(journalExists(ckdir), "no merge leftovers");
            Path after = dir.resolve("after.vhdx");
            assertEquals(0, Main.execute("checkpoint", "export", "p", "c2", after.toString(), "--host", endpoint));
            qemuImg("compare", "-f", "vhdx", "-F", "vhdx", before.toString(), after.toString());
            // The partition still runs on its chain: start it, its workload writes and verifies again.
            assertEquals(200, c.post("/v1/partitions/start?name=p").status());
            awaitEnd(c);
            assertTrue(c.get("/v1/partitions/logs?name=p").bodyText().contains("verify_errors=0"));
        }
    }

    @Test
    void shouldRefuseWhatCannotBeCheckpointedWithTheReason() throws Exception {
        Path cfg = dir.resolve("appliance.toml");
        Files.writeString(cfg, """
            [host]
            name = "ckpt-refuse"
            data_dir = "%s"

            [[disk]]
            name = "raw0"
            path = "raw0.raw"
            format = "raw"
            create = { type = "dynamic", size = "16MiB" }

            [[disk]]
            name = "shared"
            path = "shared.vhdx"
            format = "vhdx"
            nbd_export = true
            create = { type = "dynamic", size = "16MiB" }

            [[partition]]
            name = "r"
            memory = "16MiB"
            autostart = false
            workload = { kind = "idle" }
              [[partition.disk]]
              disk = "raw0"
              lun = 0

            [[partition]]
            name = "n"
            memory = "16MiB"
            autostart = false
            workload = { kind = "idle" }
              [[partition.disk]]
              disk = "shared"
              lun = 0

            [[disk]]
            name = "i0"
            path = "i0.vhdx"
            format = "vhdx"
            create = { type = "dynamic", size = "16MiB" }

            [[partition]]
            name = "i"
            memory = "16MiB"
            workload = { kind = "idle" }
              [[partition.disk]]
              disk = "i0"
              lun = 0
            """.formatted(dir.resolve("data")));
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), "run", "--config", cfg.toString(), "--plain")) {
            p.awaitLine("phost: ready", Duration.ofSeconds(60));
            String endpoint = Files.readAllLines(dir.resolve("run/endpoint")).getFirst();
            ManagementClient c = new ManagementClient(ManagementAddress.parse(endpoint), null);
            HttpResponse raw = c.post("/v1/partitions/checkpoints/create?name=r&checkpoint=a");
            assertEquals(409, raw.status());
            assertTrue(raw.bodyText().contains("disk 'raw0'") && raw.bodyText().contains("neither VHDX nor VHD"), raw.bodyText());
            // A disk exported over NBD that one process partition serves shares that partition's LUN: it can be
            // checkpointed now (RunNbdCheckpointTest writes through the export around the switch).
            HttpResponse nbd = c.post("/v1/partitions/checkpoints/create?name=n&checkpoint=a");
            assertEquals(200, nbd.status(), nbd.bodyText());
            assertEquals(404, c.post("/v1/partitions/checkpoints/create?name=nope&checkpoint=a").status());
            assertEquals(404, c.get("/v1/partitions/checkpoints?name=nope").status());
            assertEquals(400, c.get("/v1/partitions/checkpoints").status());
            assertEquals(1, Main.execute("checkpoint", "create", "r", "a", "--host", endpoint), "409 exits 1");
            assertFalse(Files.exists(dir.resolve("data/checkpoints/r/state.json")), "a refusal writes nothing");
            // A running guest that cannot freeze (the idle workload has nothing to hold) gets a crash-consistent
            // checkpoint that says why.
            long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
            HttpResponse idle;
            Map<?, ?> m;
            do {
                Thread.sleep(200);
                idle = c.post("/v1/partitions/checkpoints/create?name=i&checkpoint=c" + System.nanoTime());
                assertEquals(200, idle.status(), idle.bodyText());
                m = (Map<?, ?>) Json.parse(idle.bodyText());
            } while (List.of("the partition is not running", "the guest has no backup (VSS) integration service open")
                .contains(String.valueOf(m.get("consistency_reason"))) && System.nanoTime() < deadline);
            assertEquals("crash-consistent", m.get("consistency"), idle.bodyText());
            assertEquals("the guest has nothing that can freeze its writes", m.get("consistency_reason"), idle.bodyText());
            HttpResponse standard = c.post("/v1/partitions/checkpoints/create?name=i&checkpoint=s&type=standard");
            assertEquals(409, standard.status());
            assertTrue(standard.bodyText().contains("process partition") && standard.bodyText().contains("VM partitions"),
                standard.bodyText());
            assertEquals(400, c.post("/v1/partitions/checkpoints/create?name=i&checkpoint=s&type=bogus").status());
            assertEquals(1, Main.execute("checkpoint", "create", "i", "s", "--type", "standard", "--host", endpoint));
        }
    }

    private static String partitionAndLog(ManagementClient c) {
        try {
            return c.get("/v1/partitions").bodyText() + "\n" + c.get("/v1/partitions/logs?name=p").bodyText();
        } catch (IOException e) {
            return e.toString();
        }
    }

    private static boolean journalExists(Path dir) throws IOException {
        if (!Files.isDirectory(dir)) {
            return false;
        }
        try (Stream<Path> s = Files.list(dir)) {
            return s.anyMatch(f -> f.getFileName().toString().contains(".merge-"));
        }
    }

    /** qemu-img checks the export and converts it to raw; returns how many pattern words it holds (the rest must be 0). */
    private long checkPattern(Path vhdx) throws Exception {
        qemuImg("check", "-f", "vhdx", vhdx.toString());
        Path raw = dir.resolve(vhdx.getFileName() + ".raw");
        qemuImg("convert", "-f", "vhdx", "-O", "raw", vhdx.toString(), raw.toString());
        long patterned = 0;
        try (FileChannel ch = FileChannel.open(raw)) {
            ByteBuffer b = ByteBuffer.allocateDirect(1 << 20).order(ByteOrder.LITTLE_ENDIAN);
            long off = 0;
            while (ch.read(b, off) > 0) {
                b.flip();
                for (int i = 0; i + 8 <= b.limit(); i += 8) {
                    long w = b.getLong(i);
                    if (w == GuestIo.pattern(off + i, SEED)) {
                        patterned++;
                    } else if (w != 0) {
                        throw new AssertionError(vhdx + ": word at " + (off + i) + " is neither zero nor the pattern");
                    }
                }
                off += b.limit();
                b.clear();
            }
        }
        Files.delete(raw);
        return patterned;
    }

    private static void qemuImg(String... args) throws Exception {
        String[] cmd = new String[args.length + 1];
        cmd[0] = "qemu-img";
        System.arraycopy(args, 0, cmd, 1, args.length);
        Process pr = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(pr.getInputStream().readAllBytes());
        assertEquals(0, pr.waitFor(), String.join(" ", cmd) + ": " + out);
    }

    private static Map<?, ?> list(ManagementClient c) throws Exception {
        HttpResponse r = c.get("/v1/partitions/checkpoints?name=p");
        assertEquals(200, r.status(), r.bodyText());
        return (Map<?, ?>) Json.parse(r.bodyText());
    }

    private static String state(ManagementClient c) throws Exception {
        return String.valueOf(((Map<?, ?>) ((List<?>) Json.parse(c.get("/v1/partitions").bodyText())).getFirst()).get("state"));
    }

    /** Until the metering shows partition p's first disk written (it ticks once a second). */
    private static void awaitWrites(ManagementClient c) throws Exception {
        long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
        while (System.nanoTime() < deadline) {
            Map<?, ?> m = (Map<?, ?>) Json.parse(c.get("/v1/partitions/measure?name=p").bodyText());
            List<?> disks = (List<?>) m.get("disks");
            if (disks != null && !disks.isEmpty() && ((Number) ((Map<?, ?>) disks.getFirst()).get("write_bytes")).longValue() > 0) {
                return;
            }
            Thread.sleep(100);
        }
        throw new AssertionError("the workload did not write within 60 s");
    }

    private static void awaitState(ManagementClient c, String wanted) throws Exception {
        long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
        while (System.nanoTime() < deadline && !wanted.equals(state(c))) {
            Thread.sleep(50);
        }
        assertEquals(wanted, state(c));
    }

    /** The workload ends by itself: the process exits 0 (the partition reads "stopped: process exited with code 0"). */
    private static void awaitEnd(ManagementClient c) throws Exception {
        long deadline = System.nanoTime() + Duration.ofSeconds(120).toNanos();
        while (System.nanoTime() < deadline && List.of("running", "starting").contains(state(c))) {
            Thread.sleep(100);
        }
        Map<?, ?> p = (Map<?, ?>) ((List<?>) Json.parse(c.get("/v1/partitions").bodyText())).getFirst();
        String reason = String.valueOf(p.get("reason"));
        assertTrue(reason.contains("code 0") || reason.contains("guest closed the control socket"), p.toString());
    }
}
