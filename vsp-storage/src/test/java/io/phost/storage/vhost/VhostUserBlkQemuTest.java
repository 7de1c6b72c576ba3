package io.phost.storage.vhost;

import io.phost.vhdx.RawDisk;
import io.phost.storage.tools.Proc;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Base64;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Real QEMU (TCG) boots the test guest ({@code tools/test-guest}) with its disk on phost's
 * vhost-user-blk export; the guest's own virtio_blk driver writes a pattern, drops its caches, reads it
 * back and compares, discards a range; then qemu-io verifies the image. A second device on the same boot asks
 * for {@code packed=on}: QEMU 7.2 acks INFLIGHT_SHMFD and the ring stays packed (its inflight region has the
 * packed layout; the guest's feature bits say so) and the guest writes and reads it with buffered and O_DIRECT
 * 64 KiB I/O.
 * Recipe:
 * <pre>
 *   g=$(bash tools/test-guest/build.sh)
 *   qemu-system-x86_64 -machine q35 -accel tcg -m 256 -nodefaults -nographic -serial stdio -no-reboot \
 *     -kernel $g/vmlinuz -initrd $g/initramfs.gz -append "console=ttyS0 quiet phost.script=BASE64" \
 *     -object memory-backend-memfd,id=mem,size=256M,share=on -numa node,memdev=mem \
 *     -chardev socket,id=c0,path=SOCK -device vhost-user-blk-pci,chardev=c0,num-queues=2
 *   qemu-io -f raw -c 'read -P 0xa5 0 1M' -c 'read -P 0 1M 1M' disk.raw
 * </pre>
 * Needs qemu-system-x86_64, qemu-io, busybox-static and dpkg (installed by .ci/run): fails when absent.
 */
@Timeout(300)
class VhostUserBlkQemuTest {
    private static final String SCRIPT = """
        set -e
        echo "SECTORS $(cat /sys/block/vda/size) QUEUES $(ls /sys/block/vda/mq | wc -l)"
        dd if=/dev/zero bs=4096 count=256 2>/dev/null | tr '\\000' '\\245' > /tmp/p
        dd if=/tmp/p of=/dev/vda bs=4096 count=256 conv=fsync 2>/dev/null
        dd if=/tmp/p of=/dev/vda bs=4096 seek=256 count=256 conv=fsync 2>/dev/null
        echo 3 > /proc/sys/vm/drop_caches
        dd if=/dev/vda of=/tmp/r bs=4096 count=256 2>/dev/null
        cmp /tmp/p /tmp/r
        blkdiscard -o 1048576 -l 1048576 /dev/vda
        echo PATTERN-OK
        echo "VDB-FEATURES $(cat /sys/block/vdb/device/features)"
        dd if=/dev/zero bs=4096 count=256 2>/dev/null | tr '\\000' '\\132' > /tmp/q
        dd if=/tmp/q of=/dev/vdb bs=4096 count=256 conv=fsync 2>/dev/null
        dd if=/tmp/q of=/dev/vdb bs=65536 seek=16 count=16 oflag=direct 2>/dev/null
        echo 3 > /proc/sys/vm/drop_caches
        dd if=/dev/vdb of=/tmp/r bs=4096 count=256 2>/dev/null
        cmp /tmp/q /tmp/r
        dd if=/dev/vdb of=/tmp/r bs=65536 skip=16 count=16 iflag=direct 2>/dev/null
        cmp /tmp/q /tmp/r
        echo VDB-OK
        """;

    @TempDir
    Path dir;

    @Test
    void shouldLetARealQemuGuestWriteAndVerifyAPatternThroughVhostUserBlk() throws Exception {
        for (String tool : List.of("qemu-system-x86_64", "qemu-io")) {
            assertTrue(Proc.exists(tool), tool + " is missing (Debian: qemu-system-x86, qemu-utils; see .ci/run)");
        }
        Path guest = buildGuest();
        Path image = dir.resolve("disk.raw");
        RawDisk.createSparse(image, 64L << 20);
        Path sock = dir.resolve("blk.sock");
        Path packedImage = dir.resolve("packed.raw");
        RawDisk.createSparse(packedImage, 16L << 20);
        Path packedSock = dir.resolve("packed.sock");
        String console;
        List<String> logs = new java.util.concurrent.CopyOnWriteArrayList<>();
        java.util.logging.Handler handler = new java.util.logging.Handler() {
            @Override
            public void publish(java.util.logging.LogRecord r) {
                logs.add(r.getMessage());
            }

            @Override
            public void flush() {
            }

            @Override
            public void close() {
            }
        };
        java.util.logging.Logger vhostLog = java.util.logging.Logger.getLogger("phost.vhost");
        vhostLog.addHandler(handler);
        try (RawDisk disk = RawDisk.openFile(image, false, false);
             RawDisk packedDisk = RawDisk.openFile(packedImage, false, false);
             VhostUserBlkExport e = VhostUserBlkExport.start("qemu-disk", disk, sock, VhostUserBlkExport.Options.defaults().withQueues(2));
             VhostUserBlkExport packed = VhostUserBlkExport.start("qemu-packed", packedDisk, packedSock, VhostUserBlkExport.Options.defaults().withQueues(1))) {
            String script = Base64.getEncoder().encodeToString(SCRIPT.getBytes(StandardCharsets.UTF_8));
            Path log = dir.resolve("console.log");
            Process p = new ProcessBuilder("qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-m", "256", "-smp", "2",
                "-nodefaults", "-nographic", "-serial", "stdio", "-no-reboot",
                "-kernel", guest.resolve("vmlinuz").toString(), "-initrd", guest.resolve("initramfs.gz").toString(),
                "-append", "console=ttyS0 quiet phost.script=" + script,
                "-object", "memory-backend-memfd,id=mem,size=256M,share=on", "-numa", "node,memdev=mem",
                "-chardev", "socket,id=c0,path=" + sock, "-device", "vhost-user-blk-pci,chardev=c0,num-queues=2",
                "-chardev", "socket,id=c1,path=" + packedSock, "-device", "vhost-user-blk-pci,chardev=c1,num-queues=1,packed=on")
                .redirectErrorStream(true).redirectOutput(log.toFile()).start();
            if (!p.waitFor(240, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new AssertionError("QEMU did not finish in 240 s:\n" + Files.readString(log));
            }
            console = Files.readString(log);
            System.out.println(console);
            assertEquals(null, e.lastError(), "no protocol error; console:\n" + console);
            assertTrue(e.stats().snapshot().get("writes") > 0, "the guest's writes went through phost");
            assertEquals(null, packed.lastError(), "no protocol error on the packed device; console:\n" + console);
        } finally {
            vhostLog.removeHandler(handler);
        }
        boolean packedInflight = logs.stream().anyMatch(l -> l.contains("qemu-packed") && l.contains("inflight region for 1 queues of") && l.contains("(packed rings)"));
        assertTrue(console.contains("PHOST-GUEST-DONE rc=0") && console.contains("PATTERN-OK"), console);
        assertTrue(console.contains("SECTORS 131072 QUEUES 2"), "capacity and queues as exported:\n" + console);
        java.util.regex.Matcher f = java.util.regex.Pattern.compile("VDB-FEATURES ([01]{64})").matcher(console);
        assertTrue(f.find() && console.contains("VDB-OK"), console);
        assertEquals('1', f.group(1).charAt(32), "VERSION_1 (the guest's feature bit string, bit 0 first)");
        assertEquals('1', f.group(1).charAt(34), "packed=on with INFLIGHT_SHMFD acked: RING_PACKED negotiated");
        assertTrue(packedInflight, "the packed device got an inflight region of the packed layout: " + logs);
        String out = Proc.ok(60, "qemu-io", "-f", "raw", "-c", "read -P 0xa5 0 1M", "-c", "read -P 0 1M 1M", image.toString());
        assertFalse(out.contains("Pattern verification failed"), out);
        out = Proc.ok(60, "qemu-io", "-f", "raw", "-c", "read -P 0x5a 0 2M", packedImage.toString());
        assertFalse(out.contains("Pattern verification failed"), out);
    }

    /**
     * phost's export is stopped and started again (a restart of the back-end) while the guest runs and is
     * idle between two write phases; QEMU ({@code reconnect=1}) reconnects and renegotiates, and the guest's
     * second phase and its verification of both go through the new export. I/O in flight at the moment of
     * the restart is covered by {@link VhostUserBlkKillTest} (INFLIGHT_SHMFD).
     */
    @Test
    void shouldLetTheGuestCarryOnAfterTheBackEndRestartsBetweenWrites() throws Exception {
        for (String tool : List.of("qemu-system-x86_64", "qemu-io")) {
            assertTrue(Proc.exists(tool), tool + " is missing (Debian: qemu-system-x86, qemu-utils; see .ci/run)");
        }
        Path guest = buildGuest();
        Path image = dir.resolve("restart.raw");
        RawDisk.createSparse(image, 64L << 20);
        Path sock = dir.resolve("restart.sock");
        String script = """
            set -e
            dd if=/dev/zero bs=4096 count=64 2>/dev/null | tr '\\000' '\\132' > /tmp/a
            dd if=/dev/zero bs=4096 count=64 2>/dev/null | tr '\\000' '\\133' > /tmp/b
            dd if=/tmp/a of=/dev/vda bs=4096 count=64 conv=fsync 2>/dev/null
            echo PHASE1-DONE
            sleep 8
            dd if=/tmp/b of=/dev/vda bs=4096 seek=64 count=64 conv=fsync 2>/dev/null
            echo 3 > /proc/sys/vm/drop_caches
            dd if=/dev/vda of=/tmp/r bs=4096 count=64 2>/dev/null
            cmp /tmp/a /tmp/r
            dd if=/dev/vda of=/tmp/r bs=4096 skip=64 count=64 2>/dev/null
            cmp /tmp/b /tmp/r
            echo RESTART-OK
            """;
        Path log = dir.resolve("restart-console.log");
        try (RawDisk disk = RawDisk.openFile(image, false, false)) {
            VhostUserBlkExport first = VhostUserBlkExport.start("restart", disk, sock, VhostUserBlkExport.Options.defaults().withQueues(1));
            Process p = new ProcessBuilder("qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-m", "256",
                "-nodefaults", "-nographic", "-serial", "stdio", "-no-reboot",
                "-kernel", guest.resolve("vmlinuz").toString(), "-initrd", guest.resolve("initramfs.gz").toString(),
                "-append", "console=ttyS0 quiet phost.script=" + Base64.getEncoder().encodeToString(script.getBytes(StandardCharsets.UTF_8)),
                "-object", "memory-backend-memfd,id=mem,size=256M,share=on", "-numa", "node,memdev=mem",
                "-chardev", "socket,id=c0,path=" + sock + ",reconnect=1", "-device", "vhost-user-blk-pci,chardev=c0,num-queues=1")
                .redirectErrorStream(true).redirectOutput(log.toFile()).start();
            try {
                long deadline = System.nanoTime() + 120_000_000_000L;
                while (!Files.readString(log).contains("PHASE1-DONE")) {
                    assertTrue(p.isAlive() && System.nanoTime() < deadline, "guest never finished phase 1:\n" + Files.readString(log));
                    Thread.sleep(100);
                }
                first.close(); // the back-end goes away ...
                Thread.sleep(1_000);
                try (VhostUserBlkExport second = VhostUserBlkExport.start("restart", disk, sock,
                         VhostUserBlkExport.Options.defaults().withQueues(1))) { // ... and comes back on the same socket
                    assertTrue(p.waitFor(120, TimeUnit.SECONDS), "QEMU finished:\n" + Files.readString(log));
                    assertTrue(second.connections() >= 1, "QEMU reconnected");
                    assertTrue(second.stats().snapshot().get("writes") > 0, "phase 2 went through the new export");
                }
            } finally {
                p.destroyForcibly();
            }
        }
        String console = Files.readString(log);
        System.out.println(console);
        assertTrue(console.contains("RESTART-OK") && console.contains("PHOST-GUEST-DONE rc=0"), console);
        String out = Proc.ok(60, "qemu-io", "-f", "raw", "-c", "read -P 0x5a 0 256k", "-c", "read -P 0x5b 256k 256k", image.toString());
        assertFalse(out.contains("Pattern verification failed"), out);
    }

    /** Builds (or reuses the cached) test guest; fails loudly when the kit cannot be built. */
    static Path buildGuest() throws IOException, InterruptedException {
        Path root = Path.of("").toAbsolutePath();
        while (root != null && !Files.exists(root.resolve("tools/test-guest/build.sh"))) {
            root = root.getParent();
        }
        assertTrue(root != null, "tools/test-guest/build.sh not found above " + Path.of("").toAbsolutePath());
        String out = Proc.ok(600, "bash", root.resolve("tools/test-guest/build.sh").toString()).trim();
        String[] lines = out.split("\n");
        return Path.of(lines[lines.length - 1].trim());
    }
}
