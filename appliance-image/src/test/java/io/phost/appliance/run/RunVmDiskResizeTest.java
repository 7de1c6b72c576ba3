package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.appliance.Main;
import io.phost.appliance.mgmt.HttpResponse;
import io.phost.appliance.mgmt.ManagementAddress;
import io.phost.appliance.mgmt.ManagementClient;
import io.phost.core.text.Json;
import io.phost.core.vm.QmpClient;
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
 * Live grow of a running VM's disks, the way a user does it: `phost run` with a VM partition (QEMU, TCG) whose
 * first disk is a dynamic VHDX on vhost-user-blk and whose second is a raw file on a vhost-user-scsi controller.
 * The guest writes a pattern near the start of each and waits; the test grows the VHDX with
 * {@code phost disk resize vmgrow 48MiB} and the raw disk with {@code POST /v1/disks/resize}. The guest polls
 * {@code /sys/block/vda/size} until it changes (phost's CONFIG_CHANGE_MSG made QEMU re-read the capacity and
 * interrupt it; nothing in the guest asks), rescans the SCSI disk (phost raises VIRTIO_SCSI_T_PARAM_CHANGE, but
 * this guest was not seen to act on it; its first command after the grow gets the CAPACITY DATA HAS CHANGED
 * unit attention), writes a second pattern past each old end and reads both back.
 * After phost stops: {@code qemu-io -f vhdx -r -c "read -P 0xa5 1M 1M" -c "read -P 0x5a 40M 1M" vm-grow.vhdx},
 * {@code qemu-img check}, the same reads on the raw file, and both files' new virtual sizes; the hot-added disks'
 * patterns are read back from their files.
 * Also: a shrink and an unknown disk are refused with their reasons, the disk untouched. Then disk hot-plug by
 * {@code POST /v1/config} (what {@code phost apply} sends): a new raw disk is added as LUN 1 of the running SCSI
 * controller (the guest finds a new {@code /dev/sdX} of its size with no rescan of its own, writes and reads back a
 * pattern; /status and the QoS flows list it) and removed again (the guest sees it go; its row and flow are gone).
 * A disk on SCSI controller 2, which the VM does not have, brings a new vhost-user-scsi controller, hot-plugged on a
 * spare PCIe port (the guest finds a new {@code /dev/sdX}, writes and reads back a pattern); removing that last LUN
 * unplugs the controller (DEVICE_DELETED, then its export's socket is gone). With every spare port taken, a new
 * controller fails the apply with nothing left behind.
 * A new raw disk on bus blk is hot-plugged (the guest finds {@code /dev/vdb} with the disk's name as serial, writes
 * and reads back a pattern). Three more take the other spare ports; a fifth (in the same apply as another SCSI LUN,
 * added before it) and a disk whose {@code device_add} QEMU refuses (the test, on a QMP monitor of its own, holds
 * the device id phost picks) each fail the apply (500, the disk named) with every step undone: no socket, no image,
 * no chardev in QEMU, no LUN, no QoS flow, applied.toml as before.
 * The first disk is unplugged in between (the guest sees it go; the export's socket is removed). Then the guest,
 * still running, writes and reads back vda and one of the hot-plugged disks after that one grows.
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
            p(){ dd if=/dev/zero bs=65536 count=16 2>/dev/null|tr '\\000' $1 >/tmp/$2; }
            w(){ dd if=/tmp/$1 of=/dev/$2 bs=65536 seek=$3 conv=fsync 2>/dev/null; }
            c(){ echo 3 >/proc/sys/vm/drop_caches;dd if=/dev/$2 of=/tmp/r bs=65536 skip=$3 count=16 2>/dev/null; cmp /tmp/$1 /tmp/r; }
            u(){ i=0;while eval "$1";do i=$((i+1));[ $i -lt 900 ];sleep 0.2;done; }
            z(){ cat /sys/block/$1/size; }
            p '\\245' a;p '\\132' b;w a vda 16;w a $d 16
            echo "GROW-ME vda=$(z vda) $d=$(z $d)"
            u '[ $(z vda) = 65536 ]'
            echo "VDA-GREW $(z vda)"
            u '[ $(z $d) = 32768 ]&&echo 1 >/sys/block/$d/device/rescan'
            echo "SCSI-GREW $(z $d)"
            w b vda 640;w b $d 320
            c a vda 16;c b vda 640;c a $d 16;c b $d 320
            echo GROWN-OK
            f(){ for x in /sys/block/sd*;do [ "$(cat $x/size 2>/dev/null)" != $1 ]||echo ${x##*/};done; }
            H(){ n=$1;u '[ -z "$(f $n)" ]';h=$(f $n);w $2 $h 0;c $2 $h 0;echo "$3-OK $h";u '[ -e /sys/block/$h ]';echo $3-GONE; }
            H 24576 b SCSI-HOT
            H 20480 a CTRL-HOT
            u '[ ! -e /sys/block/vdb ]'
            echo "HOTPLUG-SEEN $(z vdb) $(cat /sys/block/vdb/serial)"
            w b vdb 0;c b vdb 0
            echo HOTPLUG-OK
            u '[ $(ls /sys/block|grep -c ^vd) -lt 5 ]'
            echo FOUR-PLUGGED
            u '[ -e /sys/block/vdb ]'
            echo UNPLUG-SEEN
            for x in $(ls /sys/block|grep ^vd);do [ $(cat /sys/block/$x/serial) != hpa ]||h=$x;done
            u '[ $(z $h) = 2048 ]'
            w a vda 32;w a $h 0;c a vda 32;c a $h 0
            echo STILL-OK
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
        String plugged = withDisks(config, "vmhot");
        Path testQmp = dir.resolve("test-qmp.sock");
        Map<String, String> env = Map.of("PATH", qemuWithTestMonitor(dir.resolve("bin"), testQmp) + ":" + System.getenv("PATH"));
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), List.of(), env, "run", "--config", cfg.toString())) {
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
            // A SCSI LUN is hot-added to the running controller: no QEMU step; the guest hears a virtio-scsi event.
            HttpResponse lunAdd = client.post("/v1/config", withScsiDisk(config, "scsihot", "12MiB", 1, 1).getBytes(StandardCharsets.UTF_8));
            assertEquals(200, lunAdd.status(), lunAdd.bodyText() + p.stderr());
            assertTrue(lunAdd.bodyText().contains("+ disk scsihot of partition vm-grow at controller 1 lun 1 (hot-add)"), lunAdd.bodyText());
            console = awaitConsole(client, p, "SCSI-HOT-OK", console);
            String lunStatus = client.get("/v1/status").bodyText();
            assertTrue(lunStatus.matches("(?s).*\"disk\"\\s*:\\s*\"scsihot\",\\s*\"transport\"\\s*:\\s*\"vhost-user-scsi\",\\s*"
                + "\"controller\"\\s*:\\s*1,\\s*\"lun\"\\s*:\\s*1,.*"), "a status row for LUN 1 of controller 1: " + lunStatus);
            assertTrue(client.get("/v1/qos/flows").bodyText().contains("scsihot"), "the LUN has its QoS flow");
            assertTrue(client.get("/v1/metrics").bodyText().contains("disk=\"scsihot\""), "the LUN has its metrics");
            HttpResponse lunRemove = client.post("/v1/config", config.getBytes(StandardCharsets.UTF_8));
            assertEquals(200, lunRemove.status(), lunRemove.bodyText() + p.stderr());
            assertTrue(lunRemove.bodyText().contains("- disk scsihot of partition vm-grow at controller 1 lun 1 (hot-remove)"), lunRemove.bodyText());
            console = awaitConsole(client, p, "SCSI-HOT-GONE", console);
            assertTrue(!client.get("/v1/status").bodyText().contains("scsihot") && !client.get("/v1/qos/flows").bodyText().contains("scsihot"),
                "the LUN's status row and QoS flow are gone");
            // A LUN on a controller the VM does not have: a new vhost-user-scsi controller is hot-plugged (its export
            // listens with the LUN in place, then chardev-add and device_add vhost-user-scsi-pci on a spare port); the
            // guest's virtio-scsi driver finds a 10 MiB disk, writes and reads back a pattern.
            HttpResponse ctrlAdd = client.post("/v1/config", withScsiDisk(config, "scsictl", "10MiB", 2, 0).getBytes(StandardCharsets.UTF_8));
            assertEquals(200, ctrlAdd.status(), ctrlAdd.bodyText() + p.stderr());
            assertTrue(ctrlAdd.bodyText().contains("+ disk scsictl of partition vm-grow at controller 2 lun 0 (hot-add)"), ctrlAdd.bodyText());
            Path ctrlSocket = data.resolve("vhost/partitions/vm-grow/scsi2.sock");
            String ctrlStatus = client.get("/v1/status").bodyText();
            assertTrue(ctrlStatus.contains(ctrlSocket.toString()) && ctrlStatus.matches("(?s).*\"disk\"\\s*:\\s*\"scsictl\",\\s*"
                + "\"transport\"\\s*:\\s*\"vhost-user-scsi\",\\s*\"controller\"\\s*:\\s*2,\\s*\"lun\"\\s*:\\s*0,.*"),
                "a status row for LUN 0 of the new controller 2: " + ctrlStatus);
            console = awaitConsole(client, p, "CTRL-HOT-OK", console);
            // Its last LUN removed: device_del, the guest releases the controller (DEVICE_DELETED), then the export closes.
            HttpResponse ctrlRemove = client.post("/v1/config", config.getBytes(StandardCharsets.UTF_8));
            assertEquals(200, ctrlRemove.status(), ctrlRemove.bodyText() + p.stderr());
            assertTrue(ctrlRemove.bodyText().contains("- disk scsictl of partition vm-grow at controller 2 lun 0 (hot-remove)"), ctrlRemove.bodyText());
            assertTrue(!Files.exists(ctrlSocket), "the controller's export closed after QEMU let go of it");
            String afterCtrl = client.get("/v1/status").bodyText();
            assertTrue(!afterCtrl.contains("scsictl") && !client.get("/v1/qos/flows").bodyText().contains("scsictl"), afterCtrl);
            console = awaitConsole(client, p, "CTRL-HOT-GONE", console);
            // A blk disk is hot-plugged: the export listens, QEMU hot-plugs it on a spare PCIe port, the guest finds /dev/vdb.
            HttpResponse plug = client.post("/v1/config", plugged.getBytes(StandardCharsets.UTF_8));
            assertEquals(200, plug.status(), plug.bodyText() + p.stderr());
            assertTrue(plug.bodyText().contains("+ disk vmhot of partition vm-grow at controller 0 lun 2 (hot-add)"), plug.bodyText());
            console = awaitConsole(client, p, "HOTPLUG-OK", console);
            assertTrue(console.contains("HOTPLUG-SEEN 16384 vmhot"), "8 MiB, serial = the disk's name:\n" + console);
            String status = client.get("/v1/status").bodyText();
            assertTrue(status.contains(data.resolve("vhost/partitions/vm-grow/vmhot.sock").toString()), status);
            // Failed hot-plugs undo every step: the test has a QMP monitor of its own on this QEMU (qemuWithTestMonitor).
            try (QmpClient qmp = QmpClient.connect(testQmp, Duration.ofSeconds(30), () -> true, e -> { }, "test")) {
                // Three more fill the four spare ports (vmhot has hp0); a fifth finds none before QEMU is asked.
                HttpResponse four = client.post("/v1/config", withDisks(config, "vmhot", "hpa", "hpb", "hpc").getBytes(StandardCharsets.UTF_8));
                assertEquals(200, four.status(), four.bodyText() + p.stderr());
                String saved = Files.readString(data.resolve("applied.toml"));
                // The SCSI LUN in the same apply is added first (it precedes hpd in the list), then undone.
                HttpResponse fifth = client.post("/v1/config", withScsiDisk(withDisks(config, "vmhot", "hpa", "hpb", "hpc", "hpd"),
                    "scsifail", "1MiB", 1, 1).getBytes(StandardCharsets.UTF_8));
                assertEquals(500, fifth.status(), fifth.bodyText());
                assertTrue(fifth.bodyText().contains("+ disk scsifail of partition vm-grow at controller 1 lun 1 (hot-add)")
                    && fifth.bodyText().contains("+ disk hpd of partition vm-grow at controller 0 lun 6 (hot-add): partition "
                    + "vm-grow: all 4 hot-plug ports of this QEMU are taken"), fifth.bodyText());
                assertUndone(client, qmp, data, "hpd", saved);
                assertUndone(client, qmp, data, "scsifail", saved);
                // A new SCSI controller finds no spare port either: its export and flow go again, QEMU never saw it.
                HttpResponse noPort = client.post("/v1/config", withScsiDisk(withDisks(config, "vmhot", "hpa", "hpb", "hpc"),
                    "scsictlfail", "1MiB", 2, 0).getBytes(StandardCharsets.UTF_8));
                assertEquals(500, noPort.status(), noPort.bodyText());
                assertTrue(noPort.bodyText().contains("+ disk scsictlfail of partition vm-grow at controller 2 lun 0 (hot-add): partition "
                    + "vm-grow: all 4 hot-plug ports of this QEMU are taken"), noPort.bodyText());
                assertUndone(client, qmp, data, "scsictlfail", saved);
                assertTrue(!Files.exists(ctrlSocket), "the new controller's export closed");
                String chardevs = String.valueOf(qmp.execute("query-chardev", Duration.ofSeconds(30)));
                assertTrue(!chardevs.contains("scsi2.sock"), "no chardev for the controller: " + chardevs);
                console = awaitConsole(client, p, "FOUR-PLUGGED", console);

                // vmhot is unplugged: device_del, the guest releases it (DEVICE_DELETED), then the export closes.
                HttpResponse unplug = client.post("/v1/config", withDisks(config, "hpa", "hpb", "hpc").getBytes(StandardCharsets.UTF_8));
                assertEquals(200, unplug.status(), unplug.bodyText() + p.stderr());
                assertTrue(unplug.bodyText().contains("- disk vmhot of partition vm-grow at controller 0 lun 2 (hot-remove)"), unplug.bodyText());
                assertTrue(!Files.exists(data.resolve("vhost/partitions/vm-grow/vmhot.sock")), "the export closed");

                // QEMU refuses device_add: a device of the test holds the id phost gives the next disk. That id is disk6,
                // the one hpd had: had hpd stayed in the VM's spec, phost would have refused before asking QEMU.
                qmp.execute("device_add", Map.of("driver", "pci-testdev", "id", "disk6-dev", "bus", "hp0"), Duration.ofSeconds(30));
                saved = Files.readString(data.resolve("applied.toml"));
                HttpResponse refused = client.post("/v1/config", withDisks(config, "hpa", "hpb", "hpc", "hpx").getBytes(StandardCharsets.UTF_8));
                assertEquals(500, refused.status(), refused.bodyText());
                assertTrue(refused.bodyText().contains("+ disk hpx of partition vm-grow at controller 0 lun 7 (hot-add)")
                    && refused.bodyText().contains("device_add: GenericError: Duplicate device ID 'disk6-dev'"), refused.bodyText());
                assertUndone(client, qmp, data, "hpx", saved);
            }
            // The guest still runs and its disks still work: hpa grows (it waits for that), it writes vda and hpa.
            assertEquals(0, Main.execute("disk", "resize", "hpa", "2MiB", "--host", endpoint));
            console = awaitConsole(client, p, "PHOST-GUEST-DONE", console);
            assertTrue(console.contains("VDA-GREW 98304") && console.contains("SCSI-GREW 49152")
                && console.contains("GROWN-OK") && console.contains("UNPLUG-SEEN") && console.contains("STILL-OK") && console.contains("PHOST-GUEST-DONE rc=0"), console);
            p.process().destroy();
            assertTrue(p.process().waitFor(30, TimeUnit.SECONDS));
            assertEquals(0, p.process().exitValue(), p.stderr());
        }
        String vhdx = data.resolve("vm-grow.vhdx").toString();
        String a = run("qemu-io", "-f", "vhdx", "-r", "-c", "read -P 0xa5 1M 1M", "-c", "read -P 0x5a 40M 1M", "-c", "read -P 0xa5 2M 1M", vhdx);
        assertTrue(!a.contains("verification failed") && a.split("read 1048576/1048576 bytes", -1).length == 4, a);
        run("qemu-img", "check", "-f", "vhdx", vhdx);
        assertTrue(run("qemu-img", "info", "-f", "vhdx", vhdx).contains("virtual size: 48 MiB"));
        String raw = data.resolve("scsi-grow.img").toString();
        String b = run("qemu-io", "-f", "raw", "-r", "-c", "read -P 0xa5 1M 1M", "-c", "read -P 0x5a 20M 1M", raw);
        assertTrue(!b.contains("verification failed") && b.split("read 1048576/1048576 bytes", -1).length == 3, b);
        assertEquals(24L << 20, Files.size(Path.of(raw)));
        String hot = run("qemu-io", "-f", "raw", "-r", "-c", "read -P 0x5a 0 1M", data.resolve("vm-hot.img").toString());
        assertTrue(!hot.contains("verification failed"), hot);
        String lun = run("qemu-io", "-f", "raw", "-r", "-c", "read -P 0x5a 0 1M", "-c", "read -P 0 1M 11M", data.resolve("scsihot.img").toString());
        assertTrue(!lun.contains("verification failed") && lun.split("bytes at offset", -1).length == 3, lun);
        String ctrl = run("qemu-io", "-f", "raw", "-r", "-c", "read -P 0xa5 0 1M", "-c", "read -P 0 1M 9M", data.resolve("scsictl.img").toString());
        assertTrue(!ctrl.contains("verification failed") && ctrl.split("bytes at offset", -1).length == 3, ctrl);
        String hpa = run("qemu-io", "-f", "raw", "-r", "-c", "read -P 0xa5 0 1M", data.resolve("hpa.img").toString());
        assertTrue(!hpa.contains("verification failed"), hpa);
        assertEquals(2L << 20, Files.size(data.resolve("hpa.img")));
    }

    /** Disks hot-plugged by the test, each on bus blk at a fixed LUN (2 + its index) so that applies differ only by them. */
    private static final List<String> HOT_DISKS = List.of("vmhot", "hpa", "hpb", "hpc", "hpd", "hpx");

    /** {@code config} with raw disks {@code names} (from {@link #HOT_DISKS}) added to the partition. */
    private static String withDisks(String config, String... names) {
        StringBuilder tables = new StringBuilder();
        StringBuilder attachments = new StringBuilder();
        for (String n : names) {
            tables.append("""
                [[disk]]
                name = "%s"
                path = "%s"
                format = "raw"
                create = { type = "fixed", size = "%s" }

                """.formatted(n, n.equals("vmhot") ? "vm-hot.img" : n + ".img", n.equals("vmhot") ? "8MiB" : "1MiB"));
            attachments.append(", { disk = \"%s\", lun = %d }".formatted(n, 2 + HOT_DISKS.indexOf(n)));
        }
        String last = "controller = 1, lun = 0 }]";
        return config.replace("[[partition]]", tables + "[[partition]]").replace(last, last.replace("}]", "}" + attachments + "]"));
    }

    /**
     * {@code config} with raw disk {@code name} of {@code size} on SCSI {@code controller}, LUN {@code lun}, attached
     * after the VM's controller 1 LUN 0 (controller 2 is one the VM does not have).
     */
    private static String withScsiDisk(String config, String name, String size, int controller, int lun) {
        String table = """
            [[disk]]
            name = "%s"
            path = "%s.img"
            format = "raw"
            create = { type = "fixed", size = "%s" }

            """.formatted(name, name, size);
        String at = "controller = 1, lun = 0 }";
        return config.replace("[[partition]]", table + "[[partition]]")
            .replace(at, at + ", { disk = \"" + name + "\", bus = \"scsi\", controller = " + controller + ", lun = " + lun + " }");
    }

    /**
     * A failed hot-add of {@code disk} left nothing behind: the export's socket and the new image are gone, QEMU has no
     * chardev for it, no QoS flow or status entry names it, and applied.toml is still {@code saved}.
     */
    private static void assertUndone(ManagementClient client, QmpClient qmp, Path data, String disk, String saved) throws Exception {
        assertTrue(!Files.exists(data.resolve("vhost/partitions/vm-grow/" + disk + ".sock")), "the export closed");
        assertTrue(!Files.exists(data.resolve(disk + ".img")), "the image the apply created is deleted");
        String chardevs = String.valueOf(qmp.execute("query-chardev", Duration.ofSeconds(30)));
        assertTrue(!chardevs.contains(disk + ".sock"), "the chardev is removed: " + chardevs);
        String flows = client.get("/v1/qos/flows").bodyText();
        assertTrue(flows.contains("vmgrow") && !flows.contains(disk), flows);
        String status = client.get("/v1/status").bodyText();
        assertTrue(status.contains("vmgrow") && !status.contains(disk), status);
        assertEquals(saved, Files.readString(data.resolve("applied.toml")), "applied.toml unchanged");
    }

    /**
     * A {@code qemu-system-x86_64} in {@code bin} that runs the real one with a second QMP monitor on {@code socket}
     * (phost holds the first), so the test can look at QEMU and get in its way. Returns {@code bin}.
     */
    private static Path qemuWithTestMonitor(Path bin, Path socket) throws Exception {
        return TestGuestKit.qemuWrapper(bin, "[ \"$a\" != -qmp ] || extra=(-qmp unix:" + socket + ",server=on,wait=off)");
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
