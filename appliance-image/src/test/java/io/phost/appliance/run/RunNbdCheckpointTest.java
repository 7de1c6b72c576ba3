package io.phost.appliance.run;

import io.phost.appliance.mgmt.ManagementAddress;
import io.phost.appliance.mgmt.ManagementClient;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.VirtualDisks;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * A disk that a process partition serves and that is exported over NBD shares the partition's LUN, so a
 * checkpoint switches it under the NBD client too: qemu-io writes through the export before and after the
 * switch, reads both patterns back through it; after the host stops, qemu-img check and qemu-io find only the
 * first pattern in the checkpoint's parent, and the chain (the new differencing leaf) holds both.
 */
class RunNbdCheckpointTest {
    @TempDir
    Path dir;

    @Test
    void shouldCheckpointADiskThatIsAlsoExportedOverNbd() throws Exception {
        assumeTrue(exec("qemu-io", "--version").exitCode == 0, "qemu-utils not installed");
        Path data = dir.resolve("data");
        Path sock = dir.resolve("nbd.sock");
        Path cfg = dir.resolve("appliance.toml");
        Files.writeString(cfg, """
            [host]
            name = "nbd-ckpt"
            data_dir = "%s"
            nbd = "unix:%s"

            [[disk]]
            name = "shared"
            path = "shared.vhdx"
            format = "vhdx"
            nbd_export = true
            create = { type = "dynamic", size = "16MiB" }

            [[partition]]
            name = "n"
            memory = "16MiB"
            autostart = false
            workload = { kind = "idle" }
              [[partition.disk]]
              disk = "shared"
              lun = 0
            """.formatted(data, sock));
        String uri = "nbd+unix:///shared?socket=" + sock;
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), "run", "--config", cfg.toString(), "--plain")) {
            p.awaitLine("phost: ready", Duration.ofSeconds(60));
            ManagementClient c = new ManagementClient(ManagementAddress.parse(
                Files.readAllLines(dir.resolve("run/endpoint")).getFirst()), null);
            run("qemu-io", "-f", "raw", "-c", "write -P 0xa1 0 256k", uri);
            var created = c.post("/v1/partitions/checkpoints/create?name=n&checkpoint=one");
            assertEquals(200, created.status(), created.bodyText());
            run("qemu-io", "-f", "raw", "-c", "write -P 0xb2 1M 256k", uri);
            String read = run("qemu-io", "-f", "raw", "-c", "read -P 0xa1 0 256k", "-c", "read -P 0xb2 1M 256k", uri);
            assertTrue(!read.contains("Pattern verification failed") && read.contains("read 262144/262144"), read);
            p.process().destroy();
            assertTrue(p.process().waitFor(20, TimeUnit.SECONDS));
        }
        Path parent = data.resolve("shared.vhdx");
        Path leaf;
        try (Stream<Path> s = Files.walk(data)) {
            leaf = s.filter(f -> f.toString().endsWith(".avhdx")).findFirst().orElseThrow();
        }
        // qemu reads the parent (a plain VHDX); it cannot open differencing VHDX, so the chain is read by the engine.
        run("qemu-img", "check", "-f", "vhdx", parent.toString());
        String before = run("qemu-io", "-f", "vhdx", "-r", "-c", "read -P 0xa1 0 256k", "-c", "read -P 0 1M 256k", parent.toString());
        assertTrue(!before.contains("Pattern verification failed"), "the checkpoint's parent has the first write only: " + before);
        try (VirtualDisk chain = VirtualDisks.open(leaf, true); Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(256 << 10, 4096);
            chain.read(0, buf);
            assertEquals(-1, buf.asByteBuffer().mismatch(java.nio.ByteBuffer.wrap(filled(0xa1))), "first write in the chain");
            chain.read(1 << 20, buf);
            assertEquals(-1, buf.asByteBuffer().mismatch(java.nio.ByteBuffer.wrap(filled(0xb2))), "second write, in the new leaf");
        }
    }

    @Test
    void shouldShareAVmDisksLunWithItsNbdExportAndCheckpointIt() throws Exception {
        // A VM partition's disks (vhost-user-blk and a vhost-user-scsi LUN) exported over NBD too: the export runs
        // on the VM's LUN (its stats count the NBD writes, no VM needs to run), so a checkpoint takes them (was 409).
        assumeTrue(exec("qemu-io", "--version").exitCode == 0, "qemu-utils not installed");
        Path data = dir.resolve("data");
        Path sock = dir.resolve("nbd.sock");
        Path kernel = Files.writeString(dir.resolve("vmlinuz"), "not booted: autostart = false");
        Path cfg = dir.resolve("appliance.toml");
        Files.writeString(cfg, """
            [host]
            name = "nbd-vm"
            data_dir = "%s"
            nbd = "unix:%s"

            [[disk]]
            name = "vblk"
            path = "vblk.vhdx"
            nbd_export = true
            create = { type = "dynamic", size = "16MiB" }

            [[disk]]
            name = "vscsi"
            path = "vscsi.vhdx"
            nbd_export = true
            create = { type = "dynamic", size = "16MiB" }

            [[partition]]
            name = "v"
            kind = "vm"
            memory = "256MiB"
            kernel = "%s"
            autostart = false
            disk = [{ disk = "vblk" }, { disk = "vscsi", bus = "scsi", controller = 1, lun = 2 }]
            """.formatted(data, sock, kernel));
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), "run", "--config", cfg.toString(), "--plain")) {
            p.awaitLine("phost: ready", Duration.ofSeconds(60));
            ManagementClient c = new ManagementClient(ManagementAddress.parse(
                Files.readAllLines(dir.resolve("run/endpoint")).getFirst()), null);
            for (String disk : new String[] {"vblk", "vscsi"}) {
                run("qemu-io", "-f", "raw", "-c", "write -P 0xa1 0 256k", "nbd+unix:///" + disk + "?socket=" + sock);
            }
            java.util.List<?> rows = (java.util.List<?>) ((java.util.Map<?, ?>) io.phost.core.text.Json.parse(
                c.get("/v1/status").bodyText())).get("vm_disks");
            assertEquals(2, rows.size(), rows.toString());
            for (Object o : rows) {
                java.util.Map<?, ?> row = (java.util.Map<?, ?>) o;
                assertTrue(((Number) row.get("writes")).longValue() >= 1, "the VM's LUN counted the NBD writes: " + row);
            }
            var created = c.post("/v1/partitions/checkpoints/create?name=v&checkpoint=one");
            assertEquals(200, created.status(), created.bodyText());
            for (String disk : new String[] {"vblk", "vscsi"}) {
                String uri = "nbd+unix:///" + disk + "?socket=" + sock;
                run("qemu-io", "-f", "raw", "-c", "write -P 0xb2 1M 256k", uri);
                String read = run("qemu-io", "-f", "raw", "-c", "read -P 0xa1 0 256k", "-c", "read -P 0xb2 1M 256k", uri);
                assertTrue(!read.contains("Pattern verification failed") && read.contains("read 262144/262144"), read);
            }
            p.process().destroy();
            assertTrue(p.process().waitFor(20, TimeUnit.SECONDS));
        }
        try (Stream<Path> s = Files.walk(data)) {
            assertEquals(2, s.filter(f -> f.toString().endsWith(".avhdx")).count(), "each disk switched to a new leaf");
        }
    }

    private static byte[] filled(int b) {
        byte[] a = new byte[256 << 10];
        java.util.Arrays.fill(a, (byte) b);
        return a;
    }

    private record ProcessResult(int exitCode, String output) {
    }

    private static ProcessResult exec(String... cmd) throws IOException, InterruptedException {
        Process p;
        try {
            p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        } catch (IOException e) {
            return new ProcessResult(127, e.toString());
        }
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
