package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.appliance.mgmt.ManagementAddress;
import io.phost.appliance.mgmt.ManagementClient;
import io.phost.core.text.Json;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * `phost run` with a VM partition whose first disk is on virtio-blk and whose second is {@code bus = "scsi"}
 * (controller 1, LUN 3): phost serves the second through a vhost-user-scsi controller and QEMU (TCG) gets
 * {@code vhost-user-scsi-pci}. The guest writes a pattern to each, reads both back after dropping its caches,
 * and powers off; after phost stops, qemu-io verifies both VHDX files and qemu-img checks them.
 * Recipe: {@code qemu-io -f vhdx -r -c "read -P 0x5a 1M 1M" vm-scsi.vhdx; qemu-img check -f vhdx vm-scsi.vhdx}.
 */
@Timeout(300)
class RunVmScsiDiskTest {
    @TempDir
    Path dir;

    @Test
    void shouldServeAVmDiskOnItsControllersVhostUserScsiDeviceAtItsLun() throws Exception {
        assertTrue(TestGuestKit.onPath("qemu-system-x86_64"), "qemu-system-x86_64 is missing (see .ci/run)");
        Path guest = TestGuestKit.directory();
        Path data = dir.resolve("data");
        String script = """
            set -e
            s=$(ls /sys/bus/scsi/devices/ | grep ':0:3$' || true)
            echo "SCSI-ADDRESS $s"
            d=$(ls /sys/bus/scsi/devices/$s/block/)
            dd if=/dev/zero bs=65536 count=16 2>/dev/null | tr '\\000' '\\245' > /tmp/a
            dd if=/dev/zero bs=65536 count=16 2>/dev/null | tr '\\000' '\\132' > /tmp/b
            dd if=/tmp/a of=/dev/vda bs=65536 seek=16 conv=fsync 2>/dev/null
            dd if=/tmp/b of=/dev/$d bs=65536 seek=16 conv=fsync 2>/dev/null
            echo 3 > /proc/sys/vm/drop_caches
            dd if=/dev/vda of=/tmp/r bs=65536 skip=16 count=16 2>/dev/null
            cmp /tmp/a /tmp/r
            dd if=/dev/$d of=/tmp/r bs=65536 skip=16 count=16 2>/dev/null
            cmp /tmp/b /tmp/r
            echo BOTH-OK
            """;
        Path cfg = dir.resolve("appliance.toml");
        Files.writeString(cfg, """
            [host]
            name = "vm-scsi-test"
            data_dir = "%1$s"

            [[disk]]
            name = "blkdisk"
            path = "vm-blk.vhdx"
            create = { type = "dynamic", size = "32MiB" }

            [[disk]]
            name = "scsidisk"
            path = "vm-scsi.vhdx"
            create = { type = "dynamic", size = "48MiB" }

            [[partition]]
            name = "vm-scsi"
            kind = "vm"
            vcpus = 1
            memory = "256MiB"
            kernel = "%2$s/vmlinuz"
            initrd = "%2$s/initramfs.gz"
            cmdline = "%3$s"
            disk = [{ disk = "blkdisk" }, { disk = "scsidisk", bus = "scsi", controller = 1, lun = 3 }]
            """.formatted(data, guest, TestGuestKit.cmdline(script, false)));
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), "run", "--config", cfg.toString())) {
            p.awaitLine("phost: ready", Duration.ofSeconds(60));
            String endpoint = Files.readAllLines(dir.resolve("run/endpoint")).getFirst();
            ManagementClient client = new ManagementClient(ManagementAddress.parse(endpoint), null);
            long deadline = System.nanoTime() + Duration.ofSeconds(200).toNanos();
            String console = "";
            while (!console.contains("PHOST-GUEST-DONE")) {
                assertTrue(System.nanoTime() < deadline, "guest never finished:\n" + console + "\nqemu:\n"
                    + client.get("/v1/partitions/logs?name=vm-scsi").bodyText() + "\nphost:\n" + p.stderr());
                Thread.sleep(300);
                console = client.get("/v1/partitions/console?name=vm-scsi").bodyText();
            }
            assertTrue(console.contains("BOTH-OK") && console.contains("PHOST-GUEST-DONE rc=0"), console);
            assertTrue(console.contains("SCSI-ADDRESS ") && console.contains(":0:0:3"), "the disk is LUN 3 of target 0:\n" + console);
            List<?> rows = (List<?>) ((Map<?, ?>) Json.parse(client.get("/v1/status").bodyText())).get("vm_disks");
            Map<?, ?> scsi = rows.stream().map(r -> (Map<?, ?>) r).filter(r -> "scsidisk".equals(r.get("disk"))).findFirst().orElseThrow();
            assertEquals("vhost-user-scsi", scsi.get("transport"), rows.toString());
            assertEquals(3, ((Number) scsi.get("lun")).intValue());
            assertTrue(((Number) scsi.get("writes")).longValue() > 0, scsi.toString());
            p.process().destroy();
            assertTrue(p.process().waitFor(30, TimeUnit.SECONDS));
            assertEquals(0, p.process().exitValue(), p.stderr());
        }
        String a = run("qemu-io", "-f", "vhdx", "-r", "-c", "read -P 0xa5 1M 1M", data.resolve("vm-blk.vhdx").toString());
        assertTrue(a.contains("read 1048576/1048576 bytes") && !a.contains("verification failed"), a);
        String b = run("qemu-io", "-f", "vhdx", "-r", "-c", "read -P 0x5a 1M 1M", data.resolve("vm-scsi.vhdx").toString());
        assertTrue(b.contains("read 1048576/1048576 bytes") && !b.contains("verification failed"), b);
        run("qemu-img", "check", "-f", "vhdx", data.resolve("vm-scsi.vhdx").toString());
    }

    private static String run(String... cmd) throws Exception {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), String.join(" ", cmd) + " hung");
        assertEquals(0, p.exitValue(), String.join(" ", cmd) + ": " + out);
        return out;
    }
}
