package io.phost.network;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.core.partition.Partition;
import io.phost.core.partition.PartitionHost;
import io.phost.core.partition.PartitionSpec;
import io.phost.core.vmbus.ChannelOffer;
import io.phost.core.vmbus.ClientChannel;
import io.phost.core.vmbus.GuestRam;
import io.phost.core.vmbus.PacketDescriptor;
import io.phost.core.vmbus.VmbusClient;
import io.phost.vswitch.PortConfig;
import io.phost.vswitch.SwitchAgent;
import io.phost.vswitch.SwitchType;
import io.phost.vswitch.VSwitch;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HexFormat;
import java.util.List;
import java.util.Random;
import org.agrona.concurrent.AgentRunner;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** A hostile guest's NVSP messages are counted and dropped; a well-behaved NIC on the same switch keeps working. */
class HostileNvspTest {
    private static final long MEM = 8L << 20;
    private Path dir;
    private PartitionHost host;
    private AgentRunner runner;
    private SwitchAgent agent;
    private GuestRam ramA;
    private GuestRam ramB;
    private VmbusClient a;
    private VmbusClient b;

    @BeforeEach
    void setUp() throws Exception {
        dir = Files.createTempDirectory("phost-nvsp");
        host = new PartitionHost(dir, spec -> List.of("false"), PartitionHost.Options.defaults().withMaxFaults(1000));
        agent = new SwitchAgent(new VSwitch("p", SwitchType.PRIVATE));
        runner = new AgentRunner(agent.idleStrategy(), Throwable::printStackTrace, null, agent);
        AgentRunner.startOnThread(runner);
    }

    @AfterEach
    void tearDown() throws Exception {
        for (AutoCloseable c : new AutoCloseable[] {a, b}) {
            if (c != null) {
                c.close();
            }
        }
        host.close();
        runner.close();
        for (AutoCloseable c : new AutoCloseable[] {ramA, ramB}) {
            if (c != null) {
                c.close();
            }
        }
        try (var s = Files.walk(dir)) {
            s.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        }
    }

    private VmbusClient attach(String name, NetVsp vsp, GuestRam ram) throws Exception {
        Partition p = host.create(PartitionSpec.external(name, 1, MEM));
        p.offer(vsp);
        p.start();
        return VmbusClient.attach(host.socketPath(), name, HexFormat.of().parseHex(p.credentialHex()), ram);
    }

    @Test
    void shouldCountAndDropHostileMessagesWhileAnotherNicKeepsForwarding() throws Exception {
        NetVsp evil = new NetVsp("evil", "eth0", PortConfig.vnic(0x02_00_00_00_0e_01L), 1500, agent);
        NetVsp good = new NetVsp("good", "eth0", PortConfig.vnic(0x02_00_00_00_0e_02L), 1500, agent);
        NetVsp peer = new NetVsp("peer", "eth0", PortConfig.vnic(0x02_00_00_00_0e_03L), 1500, agent);
        ramA = GuestRam.create("evil", MEM);
        ramB = GuestRam.create("good", MEM);
        a = attach("evil", evil, ramA);
        b = attach("good", good, ramB);
        GuestRam ramC = GuestRam.create("peer", MEM);
        VmbusClient c = attach("peer", peer, ramC);
        try {
            ChannelOffer offer = a.awaitOffer(NvspDescriptor.NETVSC_TYPE, 0, Duration.ofSeconds(5));
            ClientChannel ch = a.open(offer, 16, null);
            MemorySegment m = Arena.ofAuto().allocate(256, 8);
            Random rnd = new Random(11);
            // Data before INIT, truncated messages, unknown types, wild sections, random bytes.
            send(ch, m, new int[] {NvspDescriptor.MSG_SEND_RNDIS_PKT, 0, 0, 60});
            send(ch, m, new int[] {NvspDescriptor.MSG_SEND_RECV_BUF, 7, 0});
            send(ch, m, new int[] {NvspDescriptor.MSG_INIT, 1, 2}); // no common version
            send(ch, m, new int[] {NvspDescriptor.MSG_INIT, NvspDescriptor.VERSION_5, NvspDescriptor.VERSION_61});
            send(ch, m, new int[] {NvspDescriptor.MSG_SEND_RECV_BUF, 0x7777, 0}); // GPADL that does not exist
            send(ch, m, new int[] {NvspDescriptor.MSG_SEND_RNDIS_PKT, 0, -5, 60});
            send(ch, m, new int[] {0xdead});
            send(ch, m, new int[] {NvspDescriptor.MSG_SWITCH_DATA_PATH, 9});
            for (int i = 0; i < 2000; i++) {
                int len = 1 + rnd.nextInt(200);
                for (int j = 0; j < len; j++) {
                    m.set(ValueLayout.JAVA_BYTE, j, (byte) rnd.nextInt());
                }
                if (rnd.nextBoolean()) {
                    m.set(ValueLayout.JAVA_INT_UNALIGNED, 0, 100 + rnd.nextInt(40));
                }
                ch.write(PacketDescriptor.TYPE_INBAND, rnd.nextInt(2), rnd.nextLong(), m, 0, len, Duration.ofSeconds(5));
                if (i % 50 == 0) {
                    ch.tryRead((buf, off, len2, type, flags, tid) -> true, 1000); // drain completions
                }
                // bogus completions for receive sections never handed out
                if (i % 100 == 0) {
                    ch.tryWrite(PacketDescriptor.TYPE_COMPLETION, 0, rnd.nextInt(100000), m, 0, 8);
                }
            }
            long deadline = System.nanoTime() + 10_000_000_000L;
            long total = 0;
            while (System.nanoTime() < deadline) {
                ch.tryRead((buf, off, len2, type, flags, tid) -> true, 1000);
                total = 0;
                for (NvspReason r : NvspReason.values()) {
                    total += evil.drops(r);
                }
                if (evil.drops(NvspReason.NOT_INITIALIZED) >= 2 && total > 1500) {
                    break;
                }
                Thread.sleep(10);
            }
            assertTrue(evil.drops(NvspReason.NOT_INITIALIZED) >= 2, "data before INIT");
            assertTrue(evil.drops(NvspReason.VERSION_MISMATCH) >= 1);
            assertTrue(evil.drops(NvspReason.BAD_BUFFER) >= 1);
            assertTrue(evil.drops(NvspReason.UNKNOWN_TYPE) >= 1);
            assertTrue(evil.drops(NvspReason.BAD_COMPLETION) >= 1);
            assertTrue(total > 1500, "hostile messages counted: " + total);

            // The well-behaved NICs still initialise and exchange a frame through the switch.
            NetVsc g = NetVsc.open(b, 0, Duration.ofSeconds(10));
            NetVsc p = NetVsc.open(c, 0, Duration.ofSeconds(10));
            MemorySegment f = Arena.ofAuto().allocate(60, 8);
            for (int i = 0; i < 6; i++) {
                f.set(ValueLayout.JAVA_BYTE, i, (byte) (p.mac() >>> (40 - 8 * i)));
                f.set(ValueLayout.JAVA_BYTE, 6 + i, (byte) (g.mac() >>> (40 - 8 * i)));
            }
            f.set(ValueLayout.JAVA_BYTE, 12, (byte) 0x08);
            assertTrue(g.trySend(f, 0, 60));
            int[] got = new int[1];
            long until = System.nanoTime() + 5_000_000_000L;
            while (got[0] == 0 && System.nanoTime() < until) {
                g.poll((mem, off, len) -> { }, 16);
                p.poll((mem, off, len) -> got[0] = len, 16);
            }
            assertEquals(60, got[0], "frame from good to peer");
            assertEquals(1, peer.port().counters().txPackets());
            // SWITCH_DATA_PATH: the guest moves its data path to the VF and back; the VSP follows.
            g.switchDataPath(true, Duration.ofSeconds(5));
            long t = System.nanoTime() + 5_000_000_000L;
            while (good.dataPath() != 1 && System.nanoTime() < t) {
                Thread.sleep(2);
            }
            assertEquals(1, good.dataPath());
            g.switchDataPath(false, Duration.ofSeconds(5));
            t = System.nanoTime() + 5_000_000_000L;
            while (good.dataPath() != 0 && System.nanoTime() < t) {
                Thread.sleep(2);
            }
            assertEquals(0, good.dataPath());
        } finally {
            c.close();
            ramC.close();
        }
    }

    private static void send(ClientChannel ch, MemorySegment m, int[] words) {
        for (int i = 0; i < words.length; i++) {
            m.set(ValueLayout.JAVA_INT_UNALIGNED, i * 4L, words[i]);
        }
        ch.write(PacketDescriptor.TYPE_INBAND, PacketDescriptor.FLAG_COMPLETION_REQUESTED, 1, m, 0, words.length * 4, Duration.ofSeconds(5));
    }
}
