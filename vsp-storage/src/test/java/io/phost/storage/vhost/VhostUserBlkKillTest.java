package io.phost.storage.vhost;

import io.phost.vhdx.RawDisk;
import io.phost.storage.tools.Proc;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Base64;
import java.util.List;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Restart safety with INFLIGHT_SHMFD against real QEMU 7.2 (TCG): phost's vhost-user-blk export runs in its
 * own JVM ({@link KilledExportMain}) admitting one I/O per 150 ms, so the guest's writeback of 4 MiB piles up
 * in flight; after a few writes complete the export is SIGKILLed, a new one starts on the same socket
 * ({@code -chardev socket,...,reconnect=1}: QEMU reconnects and hands the inflight region back with
 * SET_INFLIGHT_FD), resubmits what the dead one had taken, and the guest's fsync returns without an error;
 * the guest reads the pattern back after dropping its caches, and qemu-io verifies the image. The same boot has
 * a second disk with {@code packed=on} behind an export of its own, written and killed alongside: its in-flight
 * requests come back from the packed inflight layout. Recipe as in {@link VhostUserBlkQemuTest}, plus
 * {@code kill -9} of the exports mid-write.
 */
@Timeout(400)
class VhostUserBlkKillTest {
    private static final String SCRIPT = """
        set -e
        dd if=/dev/zero bs=4096 count=256 2>/dev/null | tr '\\000' '\\307' > /tmp/p
        echo WRITING
        for d in vda vdb; do for i in 0 1 2 3; do dd if=/tmp/p of=/dev/$d bs=4096 seek=$((i * 256)) count=256 2>/dev/null; done; done
        sync
        echo SYNCED
        echo 3 > /proc/sys/vm/drop_caches
        for d in vda vdb; do for i in 0 1 2 3; do dd if=/dev/$d of=/tmp/r bs=4096 skip=$((i * 256)) count=256 2>/dev/null; cmp /tmp/p /tmp/r; done; done
        echo "VDB-FEATURES $(cat /sys/block/vdb/device/features)"
        dmesg | grep -i 'error' || true
        echo KILL-OK
        """;

    @TempDir
    Path dir;

    @Test
    void shouldResubmitTheWritesAKilledExportLeftInFlightSoTheGuestsPatternVerifies() throws Exception {
        for (String tool : List.of("qemu-system-x86_64", "qemu-io")) {
            assertTrue(Proc.exists(tool), tool + " is missing (Debian: qemu-system-x86, qemu-utils; see .ci/run)");
        }
        Path guest = VhostUserBlkQemuTest.buildGuest();
        Path image = dir.resolve("kill.raw");
        RawDisk.createSparse(image, 64L << 20);
        Path sock = dir.resolve("kill.sock");
        Path packedImage = dir.resolve("packed.raw");
        RawDisk.createSparse(packedImage, 64L << 20);
        Path packedSock = dir.resolve("packed.sock");
        Path log = dir.resolve("console.log");
        Export first = Export.start(image, sock, 150, dir.resolve("first.log"));
        Export firstPacked = Export.start(packedImage, packedSock, 150, dir.resolve("first-packed.log"));
        Process qemu = null;
        Export second = null;
        Export secondPacked = null;
        try {
            first.await("SERVING", 60);
            firstPacked.await("SERVING", 60);
            qemu = new ProcessBuilder("qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-m", "256",
                "-nodefaults", "-nographic", "-serial", "stdio", "-no-reboot",
                "-kernel", guest.resolve("vmlinuz").toString(), "-initrd", guest.resolve("initramfs.gz").toString(),
                "-append", "console=ttyS0 quiet phost.script=" + Base64.getEncoder().encodeToString(SCRIPT.getBytes(StandardCharsets.UTF_8)),
                "-object", "memory-backend-memfd,id=mem,size=256M,share=on", "-numa", "node,memdev=mem",
                "-chardev", "socket,id=c0,path=" + sock + ",reconnect=1", "-device", "vhost-user-blk-pci,chardev=c0,num-queues=1",
                "-chardev", "socket,id=c1,path=" + packedSock + ",reconnect=1", "-device", "vhost-user-blk-pci,chardev=c1,num-queues=1,packed=on")
                .redirectErrorStream(true).redirectOutput(log.toFile()).start();
            // Each export is killed once it holds a request after its third completion (the disks need not run in
            // step) and replaced a second later: at least that request is in flight, whatever the timing.
            var packedRestart = java.util.concurrent.CompletableFuture.supplyAsync(() ->
                killAndRestart(firstPacked, packedImage, packedSock, "second-packed.log", log));
            second = killAndRestart(first, image, sock, "second.log", log);
            secondPacked = packedRestart.join();
            assertTrue(qemu.waitFor(240, TimeUnit.SECONDS), "QEMU finished:\n" + Files.readString(log));
        } finally {
            if (qemu != null) {
                qemu.destroyForcibly();
            }
            first.process.destroyForcibly();
            firstPacked.process.destroyForcibly();
            for (Export e : java.util.Arrays.asList(second, secondPacked)) {
                if (e != null) {
                    e.process.destroyForcibly();
                }
            }
        }
        String console = Files.readString(log);
        System.out.println(console);
        String secondLog = Files.readString(dir.resolve("second.log"));
        System.out.println(secondLog);
        assertTrue(console.contains("KILL-OK") && console.contains("PHOST-GUEST-DONE rc=0"), console);
        assertFalse(console.contains("I/O error"), "the guest saw no I/O error:\n" + console);
        Matcher m = Pattern.compile("resubmits (\\d+) requests").matcher(secondLog);
        assertTrue(m.find() && Integer.parseInt(m.group(1)) > 0, "the new export resubmitted what was in flight:\n" + secondLog);
        String packedLog = Files.readString(dir.resolve("second-packed.log"));
        m = Pattern.compile("resubmits (\\d+) requests").matcher(packedLog);
        assertTrue(m.find() && Integer.parseInt(m.group(1)) > 0, "the new packed export resubmitted what was in flight:\n" + packedLog);
        Matcher f = Pattern.compile("VDB-FEATURES ([01]{64})").matcher(console);
        assertTrue(f.find() && f.group(1).charAt(34) == '1', "vdb ran on a packed ring:\n" + console);
        for (Path p : List.of(image, packedImage)) {
            String out = Proc.ok(60, "qemu-io", "-f", "raw", "-c", "read -P 0xc7 0 4M", "-c", "read -P 0 4M 1M", p.toString());
            assertFalse(out.contains("Pattern verification failed"), out);
        }
    }

    /**
     * SIGKILLs {@code first} once it holds a request it will never complete (after its third completion), before the
     * guest's writes are done, and starts a new export.
     */
    private Export killAndRestart(Export first, Path image, Path sock, String logName, Path console) {
        try {
            first.await("HELD", 240);
            first.process.destroyForcibly(); // SIGKILL
            assertTrue(first.process.waitFor(30, TimeUnit.SECONDS));
            assertFalse(Files.readString(console).contains("SYNCED"), "the kill came before the guest's writes were done");
            Thread.sleep(1_000);
            Export second = Export.start(image, sock, 0, dir.resolve(logName));
            second.await("SERVING", 60);
            return second;
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    /** A {@link KilledExportMain} process whose output lines are kept for {@link #await}. */
    private record Export(Process process, LinkedBlockingQueue<String> lines) {
        static Export start(Path image, Path sock, long periodMillis, Path log) throws Exception {
            String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
            Process p = new ProcessBuilder(java, "-cp", System.getProperty("java.class.path"), KilledExportMain.class.getName(),
                image.toString(), sock.toString(), Long.toString(periodMillis))
                .redirectErrorStream(true).start();
            LinkedBlockingQueue<String> lines = new LinkedBlockingQueue<>();
            Thread.ofPlatform().daemon().start(() -> {
                try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
                    String line;
                    while ((line = r.readLine()) != null) {
                        lines.add(line);
                        Files.writeString(log, line + "\n", StandardOpenOption.CREATE, StandardOpenOption.APPEND);
                    }
                } catch (Exception ignored) {
                    // the process was killed
                }
            });
            return new Export(p, lines);
        }

        void await(String line, int seconds) throws InterruptedException {
            long deadline = System.nanoTime() + seconds * 1_000_000_000L;
            while (true) {
                String l = lines.poll(Math.max(1, (deadline - System.nanoTime()) / 1_000_000L), TimeUnit.MILLISECONDS);
                if (l != null && l.startsWith(line)) {
                    return;
                }
                assertTrue(System.nanoTime() < deadline && process.isAlive(), "export never printed " + line);
            }
        }
    }
}
