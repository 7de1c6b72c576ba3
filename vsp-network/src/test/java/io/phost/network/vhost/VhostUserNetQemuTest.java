package io.phost.network.vhost;

import static org.junit.jupiter.api.Assertions.*;

import io.phost.vswitch.ManagedSwitch;
import io.phost.vswitch.PortConfig;
import io.phost.vswitch.SwitchSpec;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Real QEMU (TCG) boots the test guest ({@code tools/test-guest}) with a virtio-net NIC on phost's vhost-user-net
 * port; a TAP port of the same private switch sits in a network namespace. The guest pings the namespace, the
 * namespace pings the guest, and the guest sends 512 KiB over TCP (busybox nc) to a listener in the namespace
 * (checksum and TSO offloads on both sides: the TAP is opened with TUN_F_CSUM/TSO), over two queue pairs of
 * packed virtqueues ({@code mq=on,packed=on}; phost's own VMs and the other QEMU tests use split rings). Recipe:
 * <pre>
 *   g=$(bash tools/test-guest/build.sh)
 *   qemu-system-x86_64 -machine q35 -accel tcg -m 256 -nodefaults -nographic -serial stdio -no-reboot \
 *     -kernel $g/vmlinuz -initrd $g/initramfs.gz -append "console=ttyS0 quiet phost.script=BASE64" \
 *     -object memory-backend-memfd,id=mem,size=256M,share=on -numa node,memdev=mem \
 *     -chardev socket,id=c0,path=SOCK -netdev vhost-user,id=n0,chardev=c0 \
 *     -device virtio-net-pci,netdev=n0,mac=02:83:00:00:00:02,vectors=0
 * </pre>
 * {@code vectors=0}: QEMU 7.2 segfaults with vhost-user-net under TCG when MSI-X is on (a bug in a KVM-only
 * path); without KVM the NIC must use INTx. Needs root (TAP, netns), qemu-system-x86_64, busybox-static, dpkg.
 */
@Timeout(300)
class VhostUserNetQemuTest {
    static final long GUEST_MAC = 0x02_83_00_00_00_02L;
    static final long HOST_MAC = 0x02_83_00_00_00_01L;
    static final String SCRIPT = """
        set -e
        ip link set eth0 up
        ip addr add 10.83.0.2/24 dev eth0
        ping -c 3 -W 5 10.83.0.1
        echo GUEST-PING-OK
        dd if=/dev/urandom of=/tmp/blob bs=1024 count=512 2>/dev/null
        echo "BLOB $(md5sum /tmp/blob)"
        nc -w 3 10.83.0.1 7000 < /tmp/blob
        echo TCP-SENT
        sleep 8
        """;

    @TempDir
    Path dir;

    @Test
    void shouldLetARealQemuGuestPingAndTalkTcpWithANamespaceOnTheSameSwitch() throws Exception {
        Assumptions.assumeTrue(ProcessHandle.current().info().user().orElse("").equals("root")
            && Files.exists(Path.of("/dev/net/tun")), "needs root and /dev/net/tun (TAP port, network namespace)");
        assertTrue(Net.run(10, "qemu-system-x86_64", "--version") == 0, "qemu-system-x86_64 is missing (Debian: qemu-system-x86; see .ci/run)");
        assertTrue(Net.run(10, "busybox", "--help") == 0, "busybox is missing (Debian: busybox-static; see .ci/run)");
        Path guest = buildGuest();
        String tag = Long.toString(ProcessHandle.current().pid() % 100000);
        String ns = "phvn" + tag;
        String tap = "phvt" + tag;
        List<AutoCloseable> cleanup = new ArrayList<>();
        Net.run(5, "ip", "netns", "del", ns);
        Net.must("ip", "netns", "add", ns);
        try (ManagedSwitch sw = ManagedSwitch.create(SwitchSpec.privateSwitch("vq" + tag))) {
            sw.attachTap("host", PortConfig.vnic(HOST_MAC), tap, true);
            Net.must("ip", "link", "set", tap, "netns", ns);
            Net.must("ip", "-n", ns, "link", "set", tap, "address", "02:83:00:00:00:01");
            Net.must("ip", "-n", ns, "addr", "add", "10.83.0.1/24", "dev", tap);
            Net.must("ip", "-n", ns, "link", "set", tap, "up");
            Path received = dir.resolve("received");
            Process listener = new ProcessBuilder("ip", "netns", "exec", ns, "busybox", "nc", "-l", "-p", "7000")
                .redirectOutput(received.toFile()).redirectError(ProcessBuilder.Redirect.DISCARD).start();
            cleanup.add(listener::destroyForcibly);
            Path sock = dir.resolve("net.sock");
            VhostUserNetPort nic = VhostUserNetPort.start("vm/eth0", sw, PortConfig.vnic(GUEST_MAC), sock, List.of(), 2);
            cleanup.add(nic);
            Path log = dir.resolve("console.log");
            String script = Base64.getEncoder().encodeToString(SCRIPT.getBytes(StandardCharsets.UTF_8));
            Process qemu = new ProcessBuilder("qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-m", "256", "-smp", "2",
                "-nodefaults", "-nographic", "-serial", "stdio", "-no-reboot",
                "-kernel", guest.resolve("vmlinuz").toString(), "-initrd", guest.resolve("initramfs.gz").toString(),
                "-append", "console=ttyS0 quiet phost.script=" + script,
                "-object", "memory-backend-memfd,id=mem,size=256M,share=on", "-numa", "node,memdev=mem",
                "-chardev", "socket,id=c0,path=" + sock, "-netdev", "vhost-user,id=n0,chardev=c0,queues=2",
                "-device", "virtio-net-pci,netdev=n0,mac=02:83:00:00:00:02,vectors=0,mq=on,packed=on")
                .redirectErrorStream(true).redirectOutput(log.toFile()).start();
            cleanup.add(qemu::destroyForcibly);
            try {
                long deadline = System.nanoTime() + 180_000_000_000L;
                while (!Files.readString(log).contains("TCP-SENT")) {
                    assertTrue(qemu.isAlive() && System.nanoTime() < deadline, "guest did not get to TCP-SENT:\n" + Files.readString(log)
                        + "\nphost: " + nic.lastError() + " rx=" + nic.counters().rxFrames() + " tx=" + nic.counters().txFrames());
                    Thread.sleep(200);
                }
                assertEquals(4, nic.runningQueues(), "two queue pairs run (the guest has 2 vCPUs)");
                assertEquals(0, Net.run(20, "ip", "netns", "exec", ns, "ping", "-c", "3", "-i", "0.3", "-W", "3", "10.83.0.2"),
                    "namespace pings the guest");
                assertTrue(qemu.waitFor(60, TimeUnit.SECONDS), "guest powers off:\n" + Files.readString(log));
                assertTrue(listener.waitFor(20, TimeUnit.SECONDS), "the TCP stream ended");
                String console = Files.readString(log);
                System.out.println(console);
                assertTrue(console.contains("GUEST-PING-OK") && console.contains("PHOST-GUEST-DONE rc=0"), console);
                Matcher m = Pattern.compile("BLOB ([0-9a-f]{32})").matcher(console);
                assertTrue(m.find(), console);
                assertEquals(512 * 1024, Files.size(received), "bytes the namespace received");
                assertEquals(m.group(1), Net.output("md5sum", received.toString()).substring(0, 32), "TCP data intact");
                assertNull(nic.lastError());
                assertEquals(0, nic.counters().txErrors());
                long acked = nic.ackedFeatures();
                for (int bit : new int[] {VirtioNetDescriptor.F_VERSION_1, VirtioNetDescriptor.F_MRG_RXBUF, VirtioNetDescriptor.F_CSUM,
                    VirtioNetDescriptor.F_GUEST_CSUM, VirtioNetDescriptor.F_HOST_TSO4, VirtioNetDescriptor.F_GUEST_TSO4, VirtioNetDescriptor.F_MQ}) {
                    assertTrue((acked & (1L << bit)) != 0, "Linux's virtio_net acked feature bit " + bit + ": 0x" + Long.toHexString(acked));
                }
                assertTrue((acked & (1L << 34)) != 0, "packed=on: VIRTIO_F_RING_PACKED negotiated: 0x" + Long.toHexString(acked));
                assertTrue(nic.counters().txFrames() > 0 && nic.counters().rxFrames() > 0, "frames both ways");
            } finally {
                for (AutoCloseable c : cleanup.reversed()) {
                    c.close();
                }
            }
        } finally {
            Net.run(5, "ip", "netns", "del", ns);
        }
    }

    static Path buildGuest() throws Exception {
        Path root = Path.of("").toAbsolutePath();
        while (root != null && !Files.exists(root.resolve("tools/test-guest/build.sh"))) {
            root = root.getParent();
        }
        assertNotNull(root, "tools/test-guest/build.sh not found above " + Path.of("").toAbsolutePath());
        String out = Net.output("bash", root.resolve("tools/test-guest/build.sh").toString()).trim();
        String[] lines = out.split("\n");
        return Path.of(lines[lines.length - 1].trim());
    }
}
