package io.phost.storage.vhost;

import io.phost.qos.QosFlow;
import io.phost.storage.engine.IoEngines;
import io.phost.storage.scsi.ScsiLun;
import io.phost.storage.scsi.ScsiTarget;
import io.phost.storage.tools.Proc;
import io.phost.vhdx.RawDisk;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

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
 * Real QEMU 7.2 (TCG) with a {@code vhost-user-scsi-pci} controller served by phost, LUN 0 at boot. Once the guest
 * is up, LUN 3 (a 40 MiB raw file) is added to the running controller: its TRANSPORT_RESET / RESCAN event makes the
 * guest's virtio_scsi probe it, and a new /dev/sdX of that size appears without a rescan from inside the guest; the
 * guest writes a pattern to it and reads it back. Then LUN 3 is removed: its REMOVED event makes the disk disappear.
 * qemu-io verifies the pattern in the file. Same recipe as {@link VhostUserScsiQemuTest}.
 */
@Timeout(300)
class VhostUserScsiHotplugQemuTest {
    private static final String SCRIPT = """
        set -e
        echo HOTPLUG-READY
        i=0; n=
        while [ $i -lt 600 ] && [ -z "$n" ]; do
          for d in /sys/block/sd*; do [ "$(cat $d/size 2>/dev/null)" = 81920 ] && n=${d##*/}; done
          i=$((i+1)); sleep 0.1
        done
        [ -n "$n" ]
        echo "ADDED $n"
        dd if=/dev/zero bs=4096 count=64 2>/dev/null | tr '\\000' '\\307' > /tmp/p
        dd if=/tmp/p of=/dev/$n bs=4096 count=64 conv=fsync 2>/dev/null
        echo 3 > /proc/sys/vm/drop_caches
        dd if=/dev/$n of=/tmp/r bs=4096 count=64 2>/dev/null
        cmp /tmp/p /tmp/r
        echo HOTPLUG-WRITTEN
        i=0
        while [ $i -lt 600 ] && [ -e /sys/block/$n ]; do i=$((i+1)); sleep 0.1; done
        [ ! -e /sys/block/$n ]
        echo "REMOVED $n"
        """;

    @TempDir
    Path dir;

    @Test
    void shouldMakeALunAddedLiveAppearInTheGuestAndARemovedOneDisappear() throws Exception {
        for (String tool : List.of("qemu-system-x86_64", "qemu-io")) {
            assertTrue(Proc.exists(tool), tool + " is missing (Debian: qemu-system-x86, qemu-utils; see .ci/run)");
        }
        Path guest = VhostUserBlkQemuTest.buildGuest();
        Path raw0 = dir.resolve("lun0.raw");
        Path raw3 = dir.resolve("lun3.raw");
        RawDisk.createSparse(raw0, 32L << 20);
        RawDisk.createSparse(raw3, 40L << 20);
        Path sock = dir.resolve("scsi.sock");
        Path log = dir.resolve("console.log");
        String console;
        try (RawDisk d0 = RawDisk.openFile(raw0, false, false); RawDisk d3 = RawDisk.openFile(raw3, false, false)) {
            ScsiTarget target = new ScsiTarget();
            target.add(0, new ScsiLun("lun0", d0, QosFlow.UNLIMITED, false, IoEngines.Kind.AUTO));
            try (VhostUserScsiExport e = VhostUserScsiExport.start("scsihp", target, sock, VhostUserScsiExport.Options.defaults().withRequestQueues(1))) {
                String script = Base64.getEncoder().encodeToString(SCRIPT.getBytes(StandardCharsets.UTF_8));
                Process p = new ProcessBuilder("qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-m", "256",
                    "-nodefaults", "-nographic", "-serial", "stdio", "-no-reboot",
                    "-kernel", guest.resolve("vmlinuz").toString(), "-initrd", guest.resolve("initramfs.gz").toString(),
                    "-append", "console=ttyS0 quiet phost.script=" + script,
                    "-object", "memory-backend-memfd,id=mem,size=256M,share=on", "-numa", "node,memdev=mem",
                    "-chardev", "socket,id=c0,path=" + sock, "-device", "vhost-user-scsi-pci,chardev=c0,num_queues=1")
                    .redirectErrorStream(true).redirectOutput(log.toFile()).start();
                try {
                    awaitConsole(log, p, "HOTPLUG-READY", 180);
                    e.addLun(3, new ScsiLun("lun3", d3, QosFlow.UNLIMITED, false, IoEngines.Kind.AUTO));
                    awaitConsole(log, p, "HOTPLUG-WRITTEN", 90);
                    ScsiLun removed = e.removeLun(3);
                    assertTrue(ScsiTarget.awaitIdle(removed, 30_000), "LUN 3 idle after its removal");
                    if (!p.waitFor(90, TimeUnit.SECONDS)) {
                        throw new AssertionError("the guest did not finish within 90 s of the removal:\n" + Files.readString(log));
                    }
                } finally {
                    p.destroyForcibly();
                }
                console = Files.readString(log);
                System.out.println(console);
                assertEquals(null, e.lastError(), "no protocol error; console:\n" + console);
            }
        }
        assertTrue(console.contains("ADDED sd") && console.contains("REMOVED sd") && console.contains("PHOST-GUEST-DONE rc=0"), console);
        String out = Proc.ok(60, "qemu-io", "-f", "raw", "-c", "read -P 0xc7 0 256k", raw3.toString());
        assertFalse(out.contains("Pattern verification failed"), out);
    }

    private static void awaitConsole(Path log, Process p, String marker, int seconds) throws Exception {
        long deadline = System.nanoTime() + seconds * 1_000_000_000L;
        while (System.nanoTime() < deadline) {
            if (Files.readString(log).contains(marker)) {
                return;
            }
            if (!p.isAlive()) {
                break;
            }
            Thread.sleep(100);
        }
        throw new AssertionError("waited " + seconds + " s for '" + marker + "' on the guest console (QEMU "
            + (p.isAlive() ? "running" : "exited") + "):\n" + Files.readString(log));
    }
}
