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
 * the guest reads the pattern back after dropping its caches, and qemu-io verifies the image. Recipe as in
 * {@link VhostUserBlkQemuTest}, plus {@code kill -9} of the export mid-write.
 */
@Timeout(400)
class VhostUserBlkKillTest {
    private static final String SCRIPT = """
        set -e
        dd if=/dev/zero bs=4096 count=256 2>/dev/null | tr '\\000' '\\307' > /tmp/p
        echo WRITING
        for i in 0 1 2 3; do dd if=/tmp/p of=/dev/vda bs=4096 seek=$((i * 256)) count=256 2>/dev/null; done
        sync
        echo SYNCED
        echo 3 > /proc/sys/vm/drop_caches
        for i in 0 1 2 3; do dd if=/dev/vda of=/tmp/r bs=4096 skip=$((i * 256)) count=256 2>/dev/null; cmp /tmp/p /tmp/r; done
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
        Path log = dir.resolve("console.log");
        Export first = Export.start(image, sock, 150, dir.resolve("first.log"));
        Process qemu = null;
        Export second = null;
        try {
            first.await("SERVING", 60);
            qemu = new ProcessBuilder("qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-m", "256",
                "-nodefaults", "-nographic", "-serial", "stdio", "-no-reboot",
                "-kernel", guest.resolve("vmlinuz").toString(), "-initrd", guest.resolve("initramfs.gz").toString(),
                "-append", "console=ttyS0 quiet phost.script=" + Base64.getEncoder().encodeToString(SCRIPT.getBytes(StandardCharsets.UTF_8)),
                "-object", "memory-backend-memfd,id=mem,size=256M,share=on", "-numa", "node,memdev=mem",
                "-chardev", "socket,id=c0,path=" + sock + ",reconnect=1", "-device", "vhost-user-blk-pci,chardev=c0,num-queues=1")
                .redirectErrorStream(true).redirectOutput(log.toFile()).start();
            first.await("DONE 3", 240); // writeback is under way and throttled: more requests are in flight
            first.process.destroyForcibly(); // SIGKILL
            assertTrue(first.process.waitFor(30, TimeUnit.SECONDS));
            String console = Files.readString(log);
            assertFalse(console.contains("SYNCED"), "the kill came before the guest's writes were done:\n" + console);
            Thread.sleep(1_000);
            second = Export.start(image, sock, 0, dir.resolve("second.log"));
            second.await("SERVING", 60);
            assertTrue(qemu.waitFor(240, TimeUnit.SECONDS), "QEMU finished:\n" + Files.readString(log));
        } finally {
            if (qemu != null) {
                qemu.destroyForcibly();
            }
            first.process.destroyForcibly();
            if (second != null) {
                second.process.destroyForcibly();
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
        String out = Proc.ok(60, "qemu-io", "-f", "raw", "-c", "read -P 0xc7 0 4M", "-c", "read -P 0 4M 1M", image.toString());
        assertFalse(out.contains("Pattern verification failed"), out);
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
