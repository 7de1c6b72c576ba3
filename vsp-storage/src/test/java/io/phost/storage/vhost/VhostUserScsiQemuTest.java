package io.phost.storage.vhost;

import io.phost.qos.QosFlow;
import io.phost.vhdx.RawDisk;
import io.phost.storage.engine.IoEngines;
import io.phost.storage.scsi.ScsiLun;
import io.phost.storage.scsi.ScsiTarget;
import io.phost.storage.tools.Proc;
import io.phost.vhdx.vhdx.VhdxCreateOptions;
import io.phost.vhdx.vhdx.VhdxDisk;
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
 * Real QEMU 7.2 (TCG) boots the test guest with a {@code vhost-user-scsi-pci} controller served by phost:
 * target 0 has LUN 0 (a raw file, 32 MiB) and LUN 1 (a dynamic VHDX, 48 MiB). The guest's virtio_scsi and
 * sd drivers find both, write a pattern to each, drop caches, read back and compare, and discard a range on
 * the raw LUN; then qemu-io verifies both images and {@code qemu-img check} the VHDX. Recipe:
 * <pre>
 *   qemu-system-x86_64 -machine q35 -accel tcg -m 256 -nodefaults -nographic -serial stdio -no-reboot \
 *     -kernel $g/vmlinuz -initrd $g/initramfs.gz -append "console=ttyS0 quiet phost.script=BASE64" \
 *     -object memory-backend-memfd,id=mem,size=256M,share=on -numa node,memdev=mem \
 *     -chardev socket,id=c0,path=SOCK -device vhost-user-scsi-pci,chardev=c0,num_queues=2
 *   qemu-io -f raw -c 'read -P 0xa5 0 1M' -c 'read -P 0 1M 1M' lun0.raw ; qemu-io -f vhdx -c 'read -P 0x5a 0 1M' lun1.vhdx
 * </pre>
 */
@Timeout(300)
class VhostUserScsiQemuTest {
    private static final String SCRIPT = """
        set -e
        a= b=
        for d in /sys/block/sd*; do
          n=${d##*/}; s=$(cat $d/size); echo "DISK $n $s $(cat $d/queue/max_sectors_kb)"
          [ "$s" = 65536 ] && a=$n
          [ "$s" = 98304 ] && b=$n
        done
        [ -n "$a" ] && [ -n "$b" ]
        dd if=/dev/zero bs=4096 count=256 2>/dev/null | tr '\\000' '\\245' > /tmp/p
        dd if=/dev/zero bs=4096 count=256 2>/dev/null | tr '\\000' '\\132' > /tmp/q
        dd if=/tmp/p of=/dev/$a bs=4096 count=256 conv=fsync 2>/dev/null
        dd if=/tmp/q of=/dev/$b bs=4096 count=256 conv=fsync 2>/dev/null
        dd if=/tmp/p of=/dev/$a bs=4096 seek=256 count=256 conv=fsync 2>/dev/null
        echo 3 > /proc/sys/vm/drop_caches
        dd if=/dev/$a of=/tmp/r bs=4096 count=256 2>/dev/null
        cmp /tmp/p /tmp/r
        dd if=/dev/$b of=/tmp/r bs=4096 count=256 2>/dev/null
        cmp /tmp/q /tmp/r
        blkdiscard -o 1048576 -l 1048576 /dev/$a || echo "NO-DISCARD"
        echo SCSI-OK
        """;

    @TempDir
    Path dir;

    @Test
    void shouldLetARealQemuGuestUseTwoLunsThroughVhostUserScsi() throws Exception {
        for (String tool : List.of("qemu-system-x86_64", "qemu-io", "qemu-img")) {
            assertTrue(Proc.exists(tool), tool + " is missing (Debian: qemu-system-x86, qemu-utils; see .ci/run)");
        }
        Path guest = VhostUserBlkQemuTest.buildGuest();
        Path raw = dir.resolve("lun0.raw");
        RawDisk.createSparse(raw, 32L << 20);
        Path vhdx = dir.resolve("lun1.vhdx");
        VhdxDisk.create(vhdx, VhdxCreateOptions.dynamic(48L << 20).withBlockSize(1 << 20)).close();
        Path sock = dir.resolve("scsi.sock");
        Path log = dir.resolve("console.log");
        String console;
        try (RawDisk d0 = RawDisk.openFile(raw, false, false); VhdxDisk d1 = VhdxDisk.open(vhdx, false)) {
            ScsiTarget target = new ScsiTarget();
            ScsiLun lun0 = new ScsiLun("lun0", d0, QosFlow.UNLIMITED, false, IoEngines.Kind.AUTO);
            ScsiLun lun1 = new ScsiLun("lun1", d1, QosFlow.UNLIMITED, false, IoEngines.Kind.AUTO);
            target.add(0, lun0);
            target.add(1, lun1);
            try (VhostUserScsiExport e = VhostUserScsiExport.start("scsi0", target, sock, VhostUserScsiExport.Options.defaults().withRequestQueues(2))) {
                String script = Base64.getEncoder().encodeToString(SCRIPT.getBytes(StandardCharsets.UTF_8));
                Process p = new ProcessBuilder("qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-m", "256", "-smp", "2",
                    "-nodefaults", "-nographic", "-serial", "stdio", "-no-reboot",
                    "-kernel", guest.resolve("vmlinuz").toString(), "-initrd", guest.resolve("initramfs.gz").toString(),
                    "-append", "console=ttyS0 quiet phost.script=" + script,
                    "-object", "memory-backend-memfd,id=mem,size=256M,share=on", "-numa", "node,memdev=mem",
                    "-chardev", "socket,id=c0,path=" + sock, "-device", "vhost-user-scsi-pci,chardev=c0,num_queues=2")
                    .redirectErrorStream(true).redirectOutput(log.toFile()).start();
                if (!p.waitFor(Integer.getInteger("scsi.wait", 240), TimeUnit.SECONDS)) {
                    p.destroyForcibly();
                    throw new AssertionError("QEMU did not finish: running queues " + e.runningQueues() + ", last error " + e.lastError()
                        + ", lun0 " + lun0.stats().snapshot() + "\n" + Files.readString(log));
                }
                console = Files.readString(log);
                System.out.println(console);
                assertEquals(null, e.lastError(), "no protocol error; console:\n" + console);
                assertTrue(lun0.stats().snapshot().get("writes") > 0 && lun1.stats().snapshot().get("writes") > 0,
                    "the guest's writes reached both LUNs through phost");
            }
        }
        assertTrue(console.contains("SCSI-OK") && console.contains("PHOST-GUEST-DONE rc=0"), console);
        String out = Proc.ok(60, "qemu-io", "-f", "raw", "-c", "read -P 0xa5 0 1M", "-c", "read -P 0 1M 1M", raw.toString());
        assertFalse(out.contains("Pattern verification failed"), out);
        out = Proc.ok(60, "qemu-io", "-f", "vhdx", "-c", "read -P 0x5a 0 1M", vhdx.toString());
        assertFalse(out.contains("Pattern verification failed"), out);
        Proc.ok(60, "qemu-img", "check", "-f", "vhdx", vhdx.toString());
    }
}
