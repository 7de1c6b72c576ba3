package io.phost.storage.vhost;

import io.phost.vhdx.RawDisk;
import io.phost.storage.tools.Proc;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The same test guest (TCG) reads the same raw file with 64 KiB O_DIRECT requests at QD1, once over
 * phost's vhost-user-blk export and once over qemu-storage-daemon's, back to back on the same QEMU command
 * line: the regression check for issues 14/15's "8 ms per request". The kick wake-up, decode, engine, used
 * ring write and call eventfd are all on this path; a stall of milliseconds per request (a timed park
 * instead of blocking on the kick, a late or suppressed call) would put phost near 8 MiB/s against
 * qemu-storage-daemon's 100-270 MiB/s here. The two sides share a loaded 2-core machine and the guest times
 * itself with /proc/uptime (10 ms ticks), so single runs scatter widely (measured 0.13x to 1.33x over six
 * runs, docs/benchmarks.md): the check is a generous ratio (phost at least a tenth of qemu-storage-daemon),
 * never an absolute threshold. Recipe for the peer side:
 * <pre>
 *   qemu-storage-daemon --blockdev driver=file,node-name=f,filename=disk.raw,cache.direct=on,aio=threads \
 *     --export type=vhost-user-blk,id=e,node-name=f,addr.type=unix,addr.path=SOCK,writable=on,num-queues=1
 *   qemu-system-x86_64 ... -chardev socket,id=c0,path=SOCK -device vhost-user-blk-pci,chardev=c0,num-queues=1
 * </pre>
 * Needs qemu-system-x86_64 and qemu-storage-daemon (installed by .ci/run): fails when absent.
 */
@Timeout(300)
class VhostUserBlkGuestThroughputTest {
    private static final Pattern IO = Pattern.compile("IO-START ([0-9.]+).*IO-END ([0-9.]+)", Pattern.DOTALL);
    /** 16 MiB in 256 requests of 64 KiB, timed by the guest's /proc/uptime (10 ms resolution). */
    private static final String SCRIPT = """
        dd if=/dev/vda of=/dev/null bs=65536 count=16 iflag=direct 2>/dev/null
        echo "IO-START $(cut -d' ' -f1 /proc/uptime)"
        dd if=/dev/vda of=/dev/null bs=65536 count=256 iflag=direct 2>/dev/null
        echo "IO-END $(cut -d' ' -f1 /proc/uptime)"
        """;
    private static final double MIB = 16.0;

    @TempDir
    Path dir;

    @Test
    void shouldReadInsideAGuestAtLeastATenthAsFastAsQemuStorageDaemonOnTheSameFile() throws Exception {
        for (String tool : List.of("qemu-system-x86_64", "qemu-storage-daemon")) {
            assertTrue(Proc.exists(tool), tool + " is missing (Debian: qemu-system-x86, qemu-system-common; see .ci/run)");
        }
        Path guest = VhostUserBlkQemuTest.buildGuest();
        Path image = dir.resolve("tput.raw");
        RawDisk.createSparse(image, 64L << 20);
        List<String> log = new ArrayList<>();
        double ours = phost(guest, image, log);
        double peer = qsd(guest, image, log);
        String summary = String.format(Locale.ROOT, "in-guest 64 KiB O_DIRECT read, QD1: phost %.1f MiB/s, qemu-storage-daemon %.1f MiB/s (%.2fx)",
            ours, peer, ours / peer);
        System.out.println(summary);
        assertTrue(ours >= peer / 10, summary + "\n" + String.join("\n", log));
    }

    private double phost(Path guest, Path image, List<String> log) throws Exception {
        Path sock = dir.resolve("phost.sock");
        try (RawDisk disk = RawDisk.openFile(image, false, true);
             VhostUserBlkExport e = VhostUserBlkExport.start("tput", disk, sock, VhostUserBlkExport.Options.defaults().withQueues(1))) {
            String console = boot(guest, sock, "phost");
            log.add(console);
            assertTrue(e.lastError() == null, "no protocol error: " + e.lastError());
            assertTrue(e.stats().snapshot().get("reads") >= 272, "the guest's reads went through phost: " + e.stats().snapshot());
            return mibPerSecond(console);
        }
    }

    private double qsd(Path guest, Path image, List<String> log) throws Exception {
        Path sock = dir.resolve("qsd.sock");
        Path qsdLog = dir.resolve("qsd.log");
        Process d = new ProcessBuilder("qemu-storage-daemon",
            "--blockdev", "driver=file,node-name=f,filename=" + image.toString().replace(",", ",,") + ",cache.direct=on,aio=threads",
            "--export", "type=vhost-user-blk,id=e,node-name=f,addr.type=unix,addr.path=" + sock + ",writable=on,num-queues=1")
            .redirectErrorStream(true).redirectOutput(qsdLog.toFile()).start();
        try {
            long deadline = System.nanoTime() + 30_000_000_000L;
            while (!Files.exists(sock)) {
                assertTrue(d.isAlive() && System.nanoTime() < deadline, "qemu-storage-daemon did not listen:\n" + Files.readString(qsdLog));
                Thread.sleep(20);
            }
            String console = boot(guest, sock, "qsd");
            log.add(console);
            return mibPerSecond(console);
        } finally {
            d.destroy();
            if (!d.waitFor(10, TimeUnit.SECONDS)) {
                d.destroyForcibly();
            }
        }
    }

    private String boot(Path guest, Path sock, String name) throws Exception {
        Path log = dir.resolve(name + "-console.log");
        Process p = new ProcessBuilder("qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-m", "256",
            "-nodefaults", "-nographic", "-serial", "stdio", "-no-reboot",
            "-kernel", guest.resolve("vmlinuz").toString(), "-initrd", guest.resolve("initramfs.gz").toString(),
            "-append", "console=ttyS0 quiet phost.script=" + Base64.getEncoder().encodeToString(SCRIPT.getBytes(StandardCharsets.UTF_8)),
            "-object", "memory-backend-memfd,id=mem,size=256M,share=on", "-numa", "node,memdev=mem",
            "-chardev", "socket,id=c0,path=" + sock, "-device", "vhost-user-blk-pci,chardev=c0,num-queues=1")
            .redirectErrorStream(true).redirectOutput(log.toFile()).start();
        if (!p.waitFor(150, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new AssertionError(name + ": QEMU did not finish in 150 s:\n" + Files.readString(log));
        }
        String console = Files.readString(log);
        assertTrue(console.contains("PHOST-GUEST-DONE rc=0"), name + ": guest script failed:\n" + console);
        return console;
    }

    static double mibPerSecond(String console) {
        Matcher m = IO.matcher(console);
        assertTrue(m.find(), "no IO-START/IO-END markers:\n" + console);
        double seconds = Math.max(0.01, Double.parseDouble(m.group(2)) - Double.parseDouble(m.group(1)));
        return MIB / seconds;
    }
}
