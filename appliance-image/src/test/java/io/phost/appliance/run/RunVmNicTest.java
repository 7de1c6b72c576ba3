package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.appliance.mgmt.ManagementAddress;
import io.phost.appliance.mgmt.ManagementClient;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * `phost run` with a {@code kind = "vm"} partition whose {@code [[partition.nic]]} is on an internal switch:
 * phost serves the NIC as vhost-user-net on that switch and QEMU (TCG) gets {@code -netdev vhost-user}. The
 * switch's host TAP is moved into a network namespace this test creates (so no address lands on the host);
 * the guest pings the TAP's address and the namespace pings the guest. The NIC has {@code queues = 2}: QEMU gets
 * {@code queues=2} and {@code mq=on,vectors=0} and the guest's virtio_net acks MQ (with one vCPU Linux runs one
 * pair). Then {@code POST /v1/config} (what {@code phost apply} sends) adds a second NIC on the same switch: its
 * vhost-user-net port listens, QEMU hot-plugs a virtio-net-pci on a spare PCIe port, the guest finds eth1 with its
 * MAC and pings through it; applying the old config again unplugs it (the guest loses eth1, the port closes), and
 * a config without NICs unplugs the one the VM booted with (its own root port on q35).
 * Needs root (TAP, netns), QEMU and the test guest kit.
 */
@Timeout(420)
class RunVmNicTest {
    @TempDir
    Path dir;

    @Test
    void shouldGiveAVmPartitionsNicAVhostUserNetPortOnItsSwitch() throws Exception {
        Assumptions.assumeTrue(ProcessHandle.current().info().user().orElse("").equals("root")
            && Files.exists(Path.of("/dev/net/tun")), "needs root and /dev/net/tun (internal switch TAP, netns)");
        assertTrue(TestGuestKit.onPath("qemu-system-x86_64"), "qemu-system-x86_64 is missing (see .ci/run)");
        Path guest = TestGuestKit.directory();
        String tag = Long.toString(ProcessHandle.current().pid() % 100000);
        String ns = "phrn" + tag;
        String script = """
            ip link set eth0 up
            ip addr add 10.84.0.2/24 dev eth0
            i=0
            until ping -c 1 -W 2 10.84.0.1 >/dev/null; do i=$((i+1)); [ $i -lt 30 ] || exit 1; done
            echo "GUEST-PING-OK mq=$(cut -c23 /sys/class/net/eth0/device/features)"
            i=0
            until [ -e /sys/class/net/eth1 ]; do i=$((i+1)); [ $i -lt 900 ] || exit 1; sleep 0.2; done
            echo "NIC1-SEEN $(cat /sys/class/net/eth1/address)"
            ip link set eth1 up
            ip addr add 10.85.0.2/24 dev eth1
            i=0
            until ping -c 1 -W 2 10.85.0.1 >/dev/null; do i=$((i+1)); [ $i -lt 30 ] || exit 1; done
            echo NIC1-PING-OK
            i=0
            while [ -e /sys/class/net/eth1 ]; do i=$((i+1)); [ $i -lt 900 ] || exit 1; sleep 0.2; done
            echo NIC1-GONE
            i=0
            while [ -e /sys/class/net/eth0 ]; do i=$((i+1)); [ $i -lt 900 ] || exit 1; sleep 0.2; done
            echo NIC0-GONE
            sleep 10
            """;
        Path cfg = dir.resolve("appliance.toml");
        Files.writeString(cfg, """
            [host]
            name = "vmnet-test"
            data_dir = "%1$s"

            [[switch]]
            name = "vn%4$s"
            type = "internal"

            [[partition]]
            name = "vm-net"
            kind = "vm"
            memory = "256MiB"
            kernel = "%2$s/vmlinuz"
            initrd = "%2$s/initramfs.gz"
            cmdline = "%3$s"
            nic = [{ switch = "vn%4$s", mac = "02:84:00:00:00:02", queues = 2 }]
            """.formatted(dir.resolve("data"), guest, TestGuestKit.cmdline(script, false), tag));
        run(5, "ip", "netns", "del", ns);
        assertEquals(0, run(5, "ip", "netns", "add", ns));
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), "run", "--config", cfg.toString())) {
            p.awaitLine("phost: ready", Duration.ofSeconds(60));
            String endpoint = Files.readAllLines(dir.resolve("run/endpoint")).getFirst();
            ManagementClient client = new ManagementClient(ManagementAddress.parse(endpoint), null);
            Matcher m = Pattern.compile("\"host_tap\"\\s*:\\s*\"([^\"]+)\"").matcher(client.get("/v1/status").bodyText());
            assertTrue(m.find(), "the internal switch has a host TAP");
            String tap = m.group(1);
            assertEquals(0, run(5, "ip", "link", "set", tap, "netns", ns));
            assertEquals(0, run(5, "ip", "-n", ns, "addr", "add", "10.84.0.1/24", "dev", tap));
            assertEquals(0, run(5, "ip", "-n", ns, "link", "set", tap, "up"));

            long deadline = System.nanoTime() + Duration.ofSeconds(150).toNanos();
            String console = "";
            while (!console.contains("GUEST-PING-OK") && !console.contains("PHOST-GUEST-DONE")) {
                assertTrue(System.nanoTime() < deadline, "guest never pinged:\n" + console + "\nqemu:\n"
                    + client.get("/v1/partitions/logs?name=vm-net").bodyText() + "\nphost:\n" + p.stderr());
                Thread.sleep(300);
                console = client.get("/v1/partitions/console?name=vm-net").bodyText();
            }
            assertTrue(console.contains("GUEST-PING-OK mq=1"), "queues = 2: the guest's virtio_net acked MQ:\n" + console);
            String qemu = client.get("/v1/partitions/logs?name=vm-net").bodyText();
            assertTrue(qemu.contains("queues=2") && qemu.contains("mq=on,vectors=0,bus=nic0-port"), "QEMU's command line:\n" + qemu);
            assertEquals(0, run(20, "ip", "netns", "exec", ns, "ping", "-c", "3", "-i", "0.3", "-W", "3", "10.84.0.2"),
                "the namespace pings the guest");
            String status = client.get("/v1/status").bodyText();
            assertTrue(status.contains("\"data_path\":\"vhost-user-net\"") || status.contains("\"data_path\": \"vhost-user-net\""), status);

            // Hot-add a second NIC (same switch, another subnet so the guest's replies leave through it).
            String base = Files.readString(cfg);
            String two = base.replace("queues = 2 }]", "queues = 2 }, { switch = \"vn" + tag + "\", mac = \"02:84:00:00:00:03\" }]");
            assertEquals(0, run(5, "ip", "-n", ns, "addr", "add", "10.85.0.1/24", "dev", tap));
            var plug = client.post("/v1/config", two.getBytes(java.nio.charset.StandardCharsets.UTF_8));
            assertEquals(200, plug.status(), plug.bodyText() + p.stderr());
            assertTrue(plug.bodyText().contains("+ nic 1 of partition vm-net on switch vn" + tag + " (hot-add)"), plug.bodyText());
            assertTrue(Files.exists(dir.resolve("data/vhost/vm-net.nic1.sock")), "the new NIC's port listens");
            console = awaitConsole(client, p, "NIC1-PING-OK");
            assertTrue(console.contains("NIC1-SEEN 02:84:00:00:00:03"), "the guest's eth1 has the NIC's MAC:\n" + console);
            assertEquals(0, run(20, "ip", "netns", "exec", ns, "ping", "-c", "3", "-i", "0.3", "-W", "3", "10.85.0.2"),
                "the namespace pings the guest through its hot-added NIC");
            assertTrue(client.get("/v1/status").bodyText().contains("vm-net-nic1"), "the switch has the new port");

            // And apply it away: device_del, the guest lets go (DEVICE_DELETED), then the port closes.
            var unplug = client.post("/v1/config", base.getBytes(java.nio.charset.StandardCharsets.UTF_8));
            assertEquals(200, unplug.status(), unplug.bodyText() + p.stderr());
            assertTrue(unplug.bodyText().contains("- nic 1 of partition vm-net (hot-remove)"), unplug.bodyText());
            assertTrue(Files.notExists(dir.resolve("data/vhost/vm-net.nic1.sock")), "the removed NIC's port closed");
            assertTrue(!client.get("/v1/status").bodyText().contains("vm-net-nic1"), "the switch lost the port");
            console = awaitConsole(client, p, "NIC1-GONE");
            // The NIC the VM booted with too: on q35 it sits on a root port of its own, which can hot-unplug.
            var none = client.post("/v1/config", base.replace("nic = [{", "# nic = [{").getBytes(java.nio.charset.StandardCharsets.UTF_8));
            assertEquals(200, none.status(), none.bodyText() + p.stderr());
            assertTrue(none.bodyText().contains("- nic 0 of partition vm-net (hot-remove)"), none.bodyText());
            assertTrue(Files.notExists(dir.resolve("data/vhost/vm-net.nic0.sock")), "nic 0's port closed");
            awaitConsole(client, p, "NIC0-GONE");
            p.process().destroy();
            assertTrue(p.process().waitFor(30, TimeUnit.SECONDS));
            assertEquals(0, p.process().exitValue(), p.stderr());
        } finally {
            run(5, "ip", "netns", "del", ns);
        }
    }

    private static String awaitConsole(ManagementClient client, PhostProcess p, String marker) throws Exception {
        long deadline = System.nanoTime() + Duration.ofSeconds(120).toNanos();
        String console = "";
        while (!console.contains(marker)) {
            assertTrue(System.nanoTime() < deadline && !console.contains("PHOST-GUEST-DONE"), "no " + marker + ":\n"
                + console + "\nphost:\n" + p.stderr());
            Thread.sleep(300);
            console = client.get("/v1/partitions/console?name=vm-net").bodyText();
        }
        return console;
    }

    private static int run(int timeoutSeconds, String... cmd) throws Exception {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        if (!p.waitFor(timeoutSeconds, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            return -1;
        }
        return p.exitValue();
    }
}
