package io.phost.network.vhost;

import static org.junit.jupiter.api.Assertions.*;

import io.phost.core.vhost.VhostUserDescriptor;
import io.phost.core.vhost.VhostUserFrontend;
import io.phost.core.vhost.VhostUserRequest;
import io.phost.vswitch.ManagedSwitch;
import io.phost.vswitch.PortConfig;
import io.phost.vswitch.SwitchSpec;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * SEND_RARP (VHOST_USER_PROTOCOL_F_RARP): after a migration QEMU hands the back-end the guest's MAC, and the
 * port announces it with a RARP broadcast as if the guest had sent it. A network namespace on a TAP port of
 * the same switch reads the frame with an AF_PACKET socket (python3 in the namespace, no tcpdump).
 */
@Timeout(120)
class VhostUserNetRarpTest {
    static final long GUEST_MAC = 0x02_14_00_00_00_0AL;
    static final String EXPECTED = "ffffffffffff" + "02140000000a" + "8035" + "0001" + "0800" + "06" + "04" + "0003"
        + "02140000000a" + "00000000" + "02140000000a" + "00000000" + "00".repeat(18);

    @Test
    void shouldOfferTheRarpProtocolFeatureAndRefuseSendRarpWithoutIt() throws Exception {
        Path dir = Files.createTempDirectory("vu14-rarp");
        try (ManagedSwitch sw = ManagedSwitch.create(SwitchSpec.privateSwitch("vr" + ProcessHandle.current().pid() % 100000));
             VhostUserNetPort nic = VhostUserNetPort.start("vm/n0", sw, PortConfig.vnic(GUEST_MAC), dir.resolve("n0.sock"), List.of());
             VhostUserFrontend f = VhostUserFrontend.connect(nic.socketPath(), 1 << 20)) {
            long pf = f.getU64(VhostUserRequest.GET_PROTOCOL_FEATURES);
            assertTrue((pf & (1L << VhostUserDescriptor.PF_RARP)) != 0, "RARP offered for a NIC");
            f.send(VhostUserRequest.SEND_RARP, 0, java.lang.foreign.MemorySegment.ofArray(new long[] {GUEST_MAC}));
            assertTrue(f.awaitHangUp(5_000), "SEND_RARP before the feature was negotiated drops the front-end");
        } finally {
            Files.deleteIfExists(dir.resolve("n0.sock"));
            Files.deleteIfExists(dir);
        }
    }

    @Test
    void shouldAnnounceTheMigratedGuestsMacToANamespaceOnTheSwitch() throws Exception {
        Assumptions.assumeTrue(ProcessHandle.current().info().user().orElse("").equals("root")
            && Files.exists(Path.of("/dev/net/tun")), "needs root and /dev/net/tun (TAP port, network namespace)");
        String tag = Long.toString(ProcessHandle.current().pid() % 100000);
        String ns = "vu14rarp" + tag;
        String tap = "vu14r" + tag;
        Path dir = Files.createTempDirectory("vu14-rarp");
        Net.run(5, "ip", "netns", "del", ns);
        Net.must("ip", "netns", "add", ns);
        Process listener = null;
        try (ManagedSwitch sw = ManagedSwitch.create(SwitchSpec.privateSwitch("vr" + tag))) {
            sw.attachTap("host", PortConfig.vnic(0x02_14_00_00_00_01L), tap, false);
            Net.must("ip", "link", "set", tap, "netns", ns);
            Net.must("ip", "-n", ns, "link", "set", tap, "up");
            Path out = dir.resolve("frame");
            listener = new ProcessBuilder("ip", "netns", "exec", ns, "python3", "-c",
                "import socket,sys\n"
                    + "s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW,socket.htons(0x8035))\n"
                    + "s.bind(('" + tap + "',0))\n"
                    + "print('READY',flush=True)\n"
                    + "s.settimeout(30)\n"
                    + "print(s.recv(2048).hex(),flush=True)\n")
                .redirectErrorStream(true).redirectOutput(out.toFile()).start();
            long deadline = System.nanoTime() + 20_000_000_000L;
            while (!Files.readString(out).contains("READY")) {
                assertTrue(listener.isAlive() && System.nanoTime() < deadline, "listener: " + Files.readString(out));
                Thread.sleep(50);
            }
            try (VhostUserNetPort nic = VhostUserNetPort.start("vm/n0", sw, PortConfig.vnic(GUEST_MAC), dir.resolve("n0.sock"), List.of());
                 VhostUserFrontend f = VhostUserFrontend.connect(nic.socketPath(), 1 << 20)) {
                f.negotiate(VhostUserNetTest.WANTED);
                // QEMU's vhost_user_migration_done: the guest's MAC in the first six bytes of a u64.
                long payload = 0;
                for (int i = 0; i < 6; i++) {
                    payload |= ((GUEST_MAC >>> (8 * (5 - i))) & 0xFF) << (8 * i);
                }
                assertEquals(0, f.setU64(VhostUserRequest.SEND_RARP, payload), "acknowledged");
                assertTrue(listener.waitFor(20, TimeUnit.SECONDS), "the namespace got a frame: " + Files.readString(out));
                String[] lines = Files.readString(out).trim().split("\n");
                assertEquals(EXPECTED, lines[lines.length - 1].trim(), "a RARP broadcast from the guest's MAC");
                assertEquals(1, nic.counters().announcements());
                assertNull(nic.lastError());
            }
        } finally {
            if (listener != null) {
                listener.destroyForcibly();
            }
            Net.run(5, "ip", "netns", "del", ns);
            Files.deleteIfExists(dir.resolve("n0.sock"));
            Files.deleteIfExists(dir.resolve("frame"));
            Files.deleteIfExists(dir);
        }
    }
}
