package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.appliance.Main;
import io.phost.appliance.mgmt.HttpResponse;
import io.phost.appliance.mgmt.ManagementAddress;
import io.phost.appliance.mgmt.ManagementClient;
import io.phost.core.text.Json;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Live grow of a running VM's disks, the way a user does it: `phost run` with a VM partition (QEMU, TCG) whose
 * first disk is a dynamic VHDX on vhost-user-blk and whose second is a raw file on a vhost-user-scsi controller.
 * The guest writes a pattern near the start of each and waits; the test grows the VHDX with
 * {@code phost disk resize vmgrow 48MiB} and the raw disk with {@code POST /v1/disks/resize}. The guest polls
 * {@code /sys/block/vda/size} until it changes (phost's CONFIG_CHANGE_MSG made QEMU re-read the capacity and
 * interrupt it; nothing in the guest asks), rescans the SCSI disk (phost raises VIRTIO_SCSI_T_PARAM_CHANGE, but
 * this guest was not seen to act on it; its first command after the grow gets the CAPACITY DATA HAS CHANGED
 * unit attention), writes a second pattern past each old end and reads both back.
 * After phost stops: {@code qemu-io -f vhdx -r -c "read -P 0xa5 1M 1M" -c "read -P 0x5a 40M 1M" vm-grow.vhdx},
 * {@code qemu-img check}, the same reads on the raw file, and both files' new virtual sizes.
 * Also: a shrink and an unknown disk are refused with their reasons, the disk untouched. Then disk hot-plug by
 * {@code POST /v1/config} (what {@code phost apply} sends): a new raw disk on bus blk is hot-plugged (the guest
 * finds {@code /dev/vdb} with the disk's name as serial, writes and reads back a pattern) and unplugged again
 * (the guest sees it go; the export's socket is removed); the same disk as a SCSI LUN is refused (409).
 */
@Timeout(300)
class RunVmDiskResizeTest {
    @TempDir
    Path dir;

    @Test
    void shouldGrowTheDisksOfARunningVmAndTheGuestSeesTheNewSizes() throws Exception {
        assertTrue(TestGuestKit.onPath("qemu-system-x86_64"), "qemu-system-x86_64 is missing (see .ci/run)");
        Path guest = TestGuestKit.directory();
        Path data = dir.resolve("data");
        // vda: 32 MiB = 65536 sectors -> 48 MiB; the SCSI disk: 16 MiB = 32768 sectors -> 24 MiB.
        String script = """
            set -e
            s=$(ls /sys/bus/scsi/devices/|grep ':0:0$'|head -n1);d=$(ls /sys/bus/scsi/devices/$s/block/)
            dd if=/dev/zero bs=65536 count=16 2>/dev/null|tr '\\000' '\\245' >/tmp/a
            dd if=/dev/zero bs=65536 count=16 2>/dev/null|tr '\\000' '\\132' >/tmp/b
            w(){ dd if=$1 of=/dev/$2 bs=65536 seek=$3 conv=fsync 2>/dev/null; }
            c(){ dd if=/dev/$2 of=/tmp/r bs=65536 skip=$3 count=16 2>/dev/null; cmp $1 /tmp/r; }
            w /tmp/a vda 16; w /tmp/a $d 16
            echo "GROW-ME vda=$(cat /sys/block/vda/size) $d=$(cat /sys/block/$d/size)"
            i=0;while [ "$(cat /sys/block/vda/size)" = 65536 ];do i=$((i+1));[ $i -lt 600 ];sleep 0.2;done
            echo "VDA-GREW $(cat /sys/block/vda/size)"
            i=0;while [ "$(cat /sys/block/$d/size)" = 32768 ];do i=$((i+1));[ $i -lt 300 ];sleep 0.4
              echo 1 >/sys/block/$d/device/rescan;done
            echo "SCSI-GREW $(cat /sys/block/$d/size)"
            w /tmp/b vda 640; w /tmp/b $d 320
            echo 3 >/proc/sys/vm/drop_caches
            c /tmp/a vda 16; c /tmp/b vda 640; c /tmp/a $d 16; c /tmp/b $d 320
            echo GROWN-OK
            i=0;while [ ! -e /sys/block/vdb ];do i=$((i+1));[ $i -lt 900 ];sleep 0.2;done
            echo "HOTPLUG-SEEN $(cat /sys/block/vdb/size) $(cat /sys/block/vdb/serial)"
            w /tmp/b vdb 0; echo 3 >/proc/sys/vm/drop_caches; c /tmp/b vdb 0
            echo HOTPLUG-OK
            i=0;while [ -e /sys/block/vdb ];do i=$((i+1));[ $i -lt 900 ];sleep 0.2;done
            echo UNPLUG-SEEN
            """;
        Path cfg = dir.resolve("appliance.toml");
        String config = """
            [host]
            name = "vm-grow-test"
            data_dir = "%1$s"

            [[disk]]
            name = "vmgrow"
            path = "vm-grow.vhdx"
            create = { type = "dynamic", size = "32MiB" }

            [[disk]]
            name = "scsigrow"
            path = "scsi-grow.img"
            format = "raw"
            create = { type = "fixed", size = "16MiB" }

            [[partition]]
            name = "vm-grow"
            kind = "vm"
            vcpus = 1
            memory = "256MiB"
            kernel = "%2$s/vmlinuz"
            initrd = "%2$s/initramfs.gz"
            cmdline = "%3$s"
            disk = [{ disk = "vmgrow" }, { disk = "scsigrow", bus = "scsi", controller = 1, lun = 0 }]
            """.formatted(data, guest, TestGuestKit.cmdline(script, false));
        Files.writeString(cfg, config);
        String attachments = "disk = [{ disk = \"vmgrow\" }, { disk = \"scsigrow\", bus = \"scsi\", controller = 1, lun = 0 }]";
        String hotDisk = """
            [[disk]]
            name = "vmhot"
            path = "vm-hot.img"
            format = "raw"
            create = { type = "fixed", size = "8MiB" }

            [[partition]]""";
        String plugged = config.replace("[[partition]]", hotDisk)
            .replace(attachments, attachments.replace("}]", "}, { disk = \"vmhot\", lun = 2 }]"));
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), "run", "--config", cfg.toString())) {
            p.awaitLine("phost: ready", Duration.ofSeconds(60));
            String endpoint = Files.readAllLines(dir.resolve("run/endpoint")).getFirst();
            ManagementClient client = new ManagementClient(ManagementAddress.parse(endpoint), null);
            String console = awaitConsole(client, p, "GROW-ME", "");

            HttpResponse shrink = client.post("/v1/disks/resize?name=vmgrow&size=16MiB");
            assertEquals(409, shrink.status(), shrink.bodyText());
            assertTrue(shrink.bodyText().contains("shrinking") && shrink.bodyText().contains("grow only"), shrink.bodyText());
            assertEquals(404, client.post("/v1/disks/resize?name=nosuch&size=1GiB").status());

            assertEquals(0, Main.execute("disk", "resize", "vmgrow", "48MiB", "--host", endpoint));
            HttpResponse grown = client.post("/v1/disks/resize?name=scsigrow&size=%2B8MiB");
            assertEquals(200, grown.status(), grown.bodyText() + p.stderr());
            Map<?, ?> scsi = (Map<?, ?>) Json.parse(grown.bodyText());
            assertEquals(24L << 20, ((Number) scsi.get("size")).longValue(), scsi.toString());
            assertEquals("vhost-user-scsi", scsi.get("transport"), scsi.toString());
            assertEquals(Boolean.TRUE, scsi.get("guest_notified"), "a PARAM_CHANGE event was raised: " + scsi);

            console = awaitConsole(client, p, "GROWN-OK", console);
            // A SCSI LUN cannot be hot-added (no virtio-scsi hotplug events): refused with the reason, nothing changed.
            HttpResponse scsiAdd = client.post("/v1/config", plugged.replace("{ disk = \"vmhot\", lun = 2 }",
                "{ disk = \"vmhot\", bus = \"scsi\", controller = 1, lun = 1 }").getBytes(StandardCharsets.UTF_8));
            assertEquals(409, scsiAdd.status(), scsiAdd.bodyText());
            assertTrue(scsiAdd.bodyText().contains("VIRTIO_SCSI_F_HOTPLUG"), scsiAdd.bodyText());
            // A blk disk is: the export listens, QEMU hot-plugs it on a spare PCIe port, the guest finds /dev/vdb.
            HttpResponse plug = client.post("/v1/config", plugged.getBytes(StandardCharsets.UTF_8));
            assertEquals(200, plug.status(), plug.bodyText() + p.stderr());
            assertTrue(plug.bodyText().contains("+ disk vmhot of partition vm-grow at controller 0 lun 2 (hot-add)"), plug.bodyText());
            console = awaitConsole(client, p, "HOTPLUG-OK", console);
            assertTrue(console.contains("HOTPLUG-SEEN 16384 vmhot"), "8 MiB, serial = the disk's name:\n" + console);
            String status = client.get("/v1/status").bodyText();
            assertTrue(status.contains(data.resolve("vhost/partitions/vm-grow/vmhot.sock").toString()), status);
            // And unplugged again: device_del, the guest releases it (DEVICE_DELETED), then the export closes.
            HttpResponse unplug = client.post("/v1/config", config.getBytes(StandardCharsets.UTF_8));
            assertEquals(200, unplug.status(), unplug.bodyText() + p.stderr());
            assertTrue(unplug.bodyText().contains("- disk vmhot of partition vm-grow at controller 0 lun 2 (hot-remove)"), unplug.bodyText());
            assertTrue(!Files.exists(data.resolve("vhost/partitions/vm-grow/vmhot.sock")), "the export closed");

            console = awaitConsole(client, p, "PHOST-GUEST-DONE", console);
            assertTrue(console.contains("VDA-GREW 98304") && console.contains("SCSI-GREW 49152")
                && console.contains("GROWN-OK") && console.contains("UNPLUG-SEEN") && console.contains("PHOST-GUEST-DONE rc=0"), console);
            p.process().destroy();
            assertTrue(p.process().waitFor(30, TimeUnit.SECONDS));
            assertEquals(0, p.process().exitValue(), p.stderr());
        }
        String vhdx = data.resolve("vm-grow.vhdx").toString();
        String a = run("qemu-io", "-f", "vhdx", "-r", "-c", "read -P 0xa5 1M 1M", "-c", "read -P 0x5a 40M 1M", vhdx);
        assertTrue(!a.contains("verification failed") && a.split("read 1048576/1048576 bytes", -1).length == 3, a);
        run("qemu-img", "check", "-f", "vhdx", vhdx);
        assertTrue(run("qemu-img", "info", "-f", "vhdx", vhdx).contains("virtual size: 48 MiB"));
        String raw = data.resolve("scsi-grow.img").toString();
        String b = run("qemu-io", "-f", "raw", "-r", "-c", "read -P 0xa5 1M 1M", "-c", "read -P 0x5a 20M 1M", raw);
        assertTrue(!b.contains("verification failed") && b.split("read 1048576/1048576 bytes", -1).length == 3, b);
        assertEquals(24L << 20, Files.size(Path.of(raw)));
        String hot = run("qemu-io", "-f", "raw", "-r", "-c", "read -P 0x5a 0 1M", data.resolve("vm-hot.img").toString());
        assertTrue(!hot.contains("verification failed"), hot);
    }

    private static String awaitConsole(ManagementClient client, PhostProcess p, String marker, String console) throws Exception {
        long deadline = System.nanoTime() + Duration.ofSeconds(200).toNanos();
        while (!console.contains(marker)) {
            assertTrue(System.nanoTime() < deadline, "guest never printed " + marker + ":\n" + console + "\nqemu:\n"
                + client.get("/v1/partitions/logs?name=vm-grow").bodyText() + "\nphost:\n" + p.stderr());
            Thread.sleep(300);
            console = client.get("/v1/partitions/console?name=vm-grow").bodyText();
        }
        return console;
    }

    private static String run(String... cmd) throws Exception {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), String.join(" ", cmd) + " hung");
        assertEquals(0, p.exitValue(), String.join(" ", cmd) + ": " + out);
        return out;
    }
}
