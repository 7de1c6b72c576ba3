package io.phost.network;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.core.partition.Partition;
import io.phost.core.partition.PartitionHost;
import io.phost.core.partition.PartitionSpec;
import io.phost.core.vmbus.GuestRam;
import io.phost.core.vmbus.VmbusClient;
import io.phost.core.tools.AllocationWindows;
import io.phost.vswitch.FrameRing;
import io.phost.vswitch.PortConfig;
import io.phost.vswitch.PortKind;
import io.phost.vswitch.SwitchAgent;
import io.phost.vswitch.SwitchType;
import io.phost.vswitch.VSwitch;
import java.lang.foreign.MemorySegment;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HexFormat;
import java.util.List;
import org.agrona.concurrent.AgentRunner;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The synthetic-NIC data path allocates nothing per frame once warm, on both host threads: the switch's thread
 * (peer ring → forwarding → {@code NetVsp}'s straight delivery into the guest's receive section and VMBus ring,
 * or the egress queue when the NIC's agent holds the ring) and the NIC's channel agent (guest packet → ingress
 * ring, completions, draining queued frames). The guest side (NetVsc) is this test's thread, attached as an
 * external partition; each thread's allocated-bytes counter is read around windows of frames and judged by
 * {@link AllocationWindows}' rule (the best window with no JIT compilation, the JDK's errno-capture slice per
 * downcall tolerated, nothing of ours).
 */
@Timeout(120)
class SyntheticNicAllocationTest {
    private static final long MEM = 16L << 20;
    private static final long GUEST_MAC = 0x02_71_00_00_00_01L;
    private static final long PEER_MAC = 0x02_71_00_00_00_02L;

    @Test
    void shouldNotAllocatePerFrameOnTheSwitchOrTheNicAgentThread() throws Exception {
        Path dir = Files.createTempDirectory("phost-nic-alloc");
        FrameRing peerIn = new FrameRing(1 << 20);
        FrameRing peerOut = new FrameRing(1 << 20);
        SwitchAgent agent = new SwitchAgent(new VSwitch("alloc", SwitchType.PRIVATE));
        AgentRunner switchRunner = new AgentRunner(agent.idleStrategy(), Throwable::printStackTrace, null, agent);
        AgentRunner.startOnThread(switchRunner);
        agent.submit(s -> s.addPort("peer", PortKind.VNIC, PortConfig.vnic(PEER_MAC), peerOut, peerIn)).join();
        try (PartitionHost host = new PartitionHost(dir, spec -> List.of("false"), PartitionHost.Options.defaults());
             GuestRam ram = GuestRam.create("nic-alloc", MEM)) {
            NetVsp vsp = new NetVsp("alloc", "eth0", PortConfig.vnic(GUEST_MAC), 1500, agent);
            Partition p = host.create(PartitionSpec.external("alloc", 1, MEM));
            p.offer(vsp);
            p.start();
            try (VmbusClient client = VmbusClient.attach(host.socketPath(), "alloc",
                    HexFormat.of().parseHex(p.credentialHex()), ram);
                 NetVsc vsc = NetVsc.open(client, 0, Duration.ofSeconds(10))) {
                MemorySegment toGuest = MemorySegment.ofArray(frame(GUEST_MAC, PEER_MAC, 1514));
                MemorySegment fromGuest = MemorySegment.ofArray(frame(PEER_MAC, GUEST_MAC, 1514));
                Loop loop = new Loop(vsc, peerIn, peerOut, toGuest, fromGuest);
                loop.run(5_000);
                var mx = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
                long switchThread = thread("vswitch-alloc").threadId();
                long nicThread = thread("vsp-network-eth0-alloc-q0").threadId();
                int frames = 3_000;
                long before = vsp.directFrames() + vsp.queuedFrames();
                // Each thread judged by the best window the JIT stayed out of, tolerating the JDK's own
                // errno-capture slice (AllocationWindows): one window = `frames` frames each way.
                AllocationWindows.Result sw = AllocationWindows.measure(frames, () -> loop.run(frames),
                    () -> mx.getThreadAllocatedBytes(switchThread));
                AllocationWindows.Result nic = AllocationWindows.measure(frames, () -> loop.run(frames),
                    () -> mx.getThreadAllocatedBytes(nicThread));
                long measured = vsp.directFrames() + vsp.queuedFrames() - before;
                System.out.println("synthetic NIC: bytes per " + frames + "-frame window, switch thread:" + sw.windows()
                    + "; NIC agent:" + nic.windows() + " (straight into the guest so far: " + vsp.directFrames()
                    + ", queued: " + vsp.queuedFrames() + ")");
                assertTrue(sw.withinJdkSlice(), "switch thread " + sw.describe("frames each way"));
                assertTrue(nic.withinJdkSlice(), "NIC agent " + nic.describe("frames each way"));
                assertEquals(5_000, before, "warm-up frames to the guest");
                assertEquals(0, measured % frames, "frames to the guest: whole windows (" + measured + ")");
                assertTrue(vsp.directFrames() > 0, "no frame went straight into the guest (queued " + vsp.queuedFrames() + ")");
            } finally {
                vsp.detach();
            }
        } finally {
            switchRunner.close();
            try (var s = Files.walk(dir)) {
                s.sorted(java.util.Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
            }
        }
    }

    /** One frame each way per step, each waited for where it arrives (the guest's NetVsc, the peer's ring). */
    private record Loop(NetVsc vsc, FrameRing peerIn, FrameRing peerOut, MemorySegment toGuest, MemorySegment fromGuest) {
        void run(int n) {
            int[] got = new int[1];
            NetVsc.FrameReceiver rx = (memory, offset, length) -> got[0] = length;
            for (int i = 0; i < n; i++) {
                assertTrue(peerIn.tryWrite(toGuest, 0, (int) toGuest.byteSize()), "peer ring full at frame " + i);
                got[0] = 0;
                long deadline = System.nanoTime() + 5_000_000_000L;
                while (got[0] == 0) {
                    vsc.poll(rx, 1);
                    assertTrue(System.nanoTime() < deadline, "frame " + i + " never reached the guest");
                    Thread.onSpinWait();
                }
                assertEquals(toGuest.byteSize(), got[0]);
                while (!vsc.trySend(fromGuest, 0, (int) fromGuest.byteSize())) {
                    assertTrue(System.nanoTime() < deadline, "the guest could not send frame " + i);
                    vsc.poll(rx, 1); // completions of its send sections
                    Thread.onSpinWait();
                }
                got[0] = 0;
                while (got[0] == 0) {
                    peerOut.poll((segment, offset, length) -> got[0] = length, 1);
                    assertTrue(System.nanoTime() < deadline, "frame " + i + " never reached the peer");
                    Thread.onSpinWait();
                }
            }
        }
    }

    private static byte[] frame(long dst, long src, int length) {
        byte[] f = new byte[length];
        for (int i = 0; i < 6; i++) {
            f[i] = (byte) (dst >>> (40 - 8 * i));
            f[6 + i] = (byte) (src >>> (40 - 8 * i));
        }
        f[12] = (byte) 0x88; // 0x88b5, IEEE local experimental: no guard or ACL parses past the Ethernet header
        f[13] = (byte) 0xb5;
        for (int i = 14; i < length; i++) {
            f[i] = (byte) i;
        }
        return f;
    }

    private static Thread thread(String name) {
        return Thread.getAllStackTraces().keySet().stream().filter(t -> t.getName().equals(name)).findFirst()
            .orElseThrow(() -> new AssertionError("no thread " + name + ": " + Thread.getAllStackTraces().keySet()));
    }
}
