package io.phost.network.vhost;

import static io.phost.network.vhost.VirtioNetDescriptor.*;
import static org.junit.jupiter.api.Assertions.*;

import io.phost.core.vhost.SplitVirtqueue;
import io.phost.core.vhost.VhostUserFrontend;
import io.phost.vswitch.FrameRing;
import io.phost.vswitch.ManagedSwitch;
import io.phost.vswitch.PortConfig;
import io.phost.vswitch.SwitchSpec;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * vhost-user-net driven by the test front-end ({@link VhostUserFrontend}: memfd guest memory, split queues,
 * kicks and calls) through a private vswitch to a plain in-memory peer port ({@link FrameRing}s, no offloads).
 */
class VhostUserNetTest {
    static final long GUEST_MAC = 0x02_00_00_00_00_01L;
    static final long PEER_MAC = 0x02_00_00_00_00_02L;
    static final long WANTED = (1L << F_VERSION_1) | (1L << F_MRG_RXBUF) | (1L << F_CSUM) | (1L << F_GUEST_CSUM)
        | (1L << F_HOST_TSO4) | (1L << F_MAC) | (1L << F_STATUS) | (1L << 29 /* EVENT_IDX */);
    static final ValueLayout.OfShort LE16 = ValueLayout.JAVA_SHORT_UNALIGNED;

    Path dir;
    ManagedSwitch sw;
    FrameRing peerIn;
    FrameRing peerOut;
    final List<AutoCloseable> closers = new ArrayList<>();

    @BeforeEach
    void setUp() throws Exception {
        dir = Files.createTempDirectory("phost-vnet");
        sw = ManagedSwitch.create(SwitchSpec.privateSwitch("vn" + ProcessHandle.current().pid() % 100000));
        peerIn = new FrameRing(1 << 20);
        peerOut = new FrameRing(1 << 20);
        sw.attach("peer", PortConfig.vnic(PEER_MAC), peerOut, peerIn);
    }

    @AfterEach
    void tearDown() throws Exception {
        for (AutoCloseable c : closers.reversed()) {
            c.close();
        }
        sw.close();
        Files.deleteIfExists(dir.resolve("n0.sock"));
        Files.deleteIfExists(dir.resolve("n1.sock"));
        Files.deleteIfExists(dir.resolve("backend-req.sock"));
        Files.deleteIfExists(dir);
    }

    VhostUserNetPort nic(String name, long mac) {
        VhostUserNetPort p = VhostUserNetPort.start("vm/" + name, sw, PortConfig.vnic(mac), dir.resolve(name + ".sock"), List.of());
        closers.add(p);
        return p;
    }

    VhostUserFrontend driver(VhostUserNetPort p) {
        VhostUserFrontend f = VhostUserFrontend.connect(p.socketPath(), 4 << 20);
        closers.add(f);
        f.negotiate(WANTED);
        return f;
    }

    static byte[] frame(long dst, long src, int length, int seed) {
        byte[] b = new byte[length];
        for (int i = 0; i < 6; i++) {
            b[i] = (byte) (dst >>> (8 * (5 - i)));
            b[6 + i] = (byte) (src >>> (8 * (5 - i)));
        }
        b[12] = (byte) 0x88;
        b[13] = (byte) 0xb5; // local experimental EtherType
        for (int i = 14; i < length; i++) {
            b[i] = (byte) (i * 7 + seed);
        }
        return b;
    }

    /** Puts {@code hdr + frame} in guest memory as two readable descriptors and kicks. */
    static void send(VhostUserFrontend f, VhostUserFrontend.Queue tx, byte[] hdr, byte[] frame) {
        long h = f.alloc(hdr.length, 8);
        long d = f.alloc(frame.length, 8);
        MemorySegment.copy(MemorySegment.ofArray(hdr), 0, f.at(h, hdr.length), 0, hdr.length);
        MemorySegment.copy(MemorySegment.ofArray(frame), 0, f.at(d, frame.length), 0, frame.length);
        assertTrue(tx.add(new long[] {h, d}, new int[] {hdr.length, frame.length}, new boolean[] {false, false}) >= 0);
        tx.kick();
    }

    static long[] postRx(VhostUserFrontend f, VhostUserFrontend.Queue rx, int count, int size) {
        long[] bufs = new long[count];
        for (int i = 0; i < count; i++) {
            bufs[i] = f.alloc(size, 8);
            assertTrue(rx.add(new long[] {bufs[i]}, new int[] {size}, new boolean[] {true}) >= 0);
        }
        rx.kick();
        return bufs;
    }

    byte[] awaitPeerFrame() throws InterruptedException {
        byte[][] got = new byte[1][];
        long deadline = System.nanoTime() + 5_000_000_000L;
        while (got[0] == null && System.nanoTime() < deadline) {
            if (peerOut.poll((seg, off, len) -> got[0] = seg.asSlice(off, len).toArray(ValueLayout.JAVA_BYTE), 1) == 0) {
                Thread.sleep(1);
            }
        }
        assertNotNull(got[0], "no frame reached the peer port");
        return got[0];
    }

    @Test
    void shouldStateMacAndLinkUpInConfigSpace() {
        VhostUserNetPort p = nic("n0", GUEST_MAC);
        VhostUserFrontend f = driver(p);
        MemorySegment c = f.config(CONFIG_LENGTH);
        assertArrayEquals(new byte[] {2, 0, 0, 0, 0, 1}, c.asSlice(0, 6).toArray(ValueLayout.JAVA_BYTE));
        assertEquals(STATUS_LINK_UP, c.get(LE16, STATUS_OFFSET));
        assertEquals(WANTED, f.features() & WANTED, "every wanted feature is offered");
    }

    @Test
    void shouldReportLinkDownAndUpInConfigStatusWithAConfigChangeAndDropFramesWhileDown() throws Exception {
        VhostUserNetPort p = nic("n0", GUEST_MAC);
        Path chanPath = dir.resolve("backend-req.sock");
        try (io.phost.core.sys.UnixSocket listener = io.phost.core.sys.UnixSocket.listenStream(chanPath, 1);
             io.phost.core.sys.UnixSocket ours = io.phost.core.sys.UnixSocket.connectStream(chanPath);
             io.phost.core.sys.UnixSocket theirs = listener.accept(5_000)) {
            VhostUserFrontend f = driver(p);
            f.send(io.phost.core.vhost.VhostUserRequest.SET_BACKEND_REQ_FD, io.phost.core.vhost.VhostUserDescriptor.FLAG_NEED_REPLY, null, ours.fd());
            assertEquals(0, f.reply(io.phost.core.vhost.VhostUserRequest.SET_BACKEND_REQ_FD, 5_000).get(ValueLayout.JAVA_LONG_UNALIGNED, 0));
            VhostUserFrontend.Queue rx = f.startQueue(RX_QUEUE, 64);
            VhostUserFrontend.Queue tx = f.startQueue(TX_QUEUE, 64);
            assertTrue(p.link());
            assertEquals(STATUS_LINK_UP, f.config(CONFIG_LENGTH).get(LE16, STATUS_OFFSET));

            assertTrue(p.link(false), "config change sent on the back-end channel");
            MemorySegment msg = java.lang.foreign.Arena.ofAuto().allocate(12);
            assertEquals(12, theirs.readFully(msg, 0, 12, new int[io.phost.core.sys.UnixSocket.MAX_FDS], 5_000));
            assertEquals(io.phost.core.vhost.VhostUserDescriptor.BACKEND_CONFIG_CHANGE_MSG, msg.get(ValueLayout.JAVA_INT_UNALIGNED, 0));
            assertFalse(p.link());
            assertEquals(0, f.config(CONFIG_LENGTH).get(LE16, STATUS_OFFSET), "link down: status 0");

            // While down: a guest frame is dropped (its chain still returned), the peer's frame is not delivered.
            send(f, tx, new byte[HDR_LENGTH], frame(PEER_MAC, GUEST_MAC, 100, 1));
            assertNotNull(tx.awaitUsed(5_000), "TX chain returned");
            postRx(f, rx, 2, 1536);
            byte[] in = frame(GUEST_MAC, PEER_MAC, 200, 2);
            assertTrue(peerIn.tryWrite(MemorySegment.ofArray(in), 0, in.length));
            long deadline = System.nanoTime() + 5_000_000_000L;
            while (p.counters().linkDownDrops() < 2 && System.nanoTime() < deadline) {
                Thread.sleep(5);
            }
            assertEquals(2, p.counters().linkDownDrops(), "one frame each way dropped");
            assertEquals(0, p.counters().rxFrames());
            assertEquals(0, peerOut.poll((seg, off, len) -> { }, 8), "nothing reached the peer");

            assertTrue(p.link(true));
            assertEquals(12, theirs.readFully(msg, 0, 12, new int[io.phost.core.sys.UnixSocket.MAX_FDS], 5_000));
            assertEquals(io.phost.core.vhost.VhostUserDescriptor.BACKEND_CONFIG_CHANGE_MSG, msg.get(ValueLayout.JAVA_INT_UNALIGNED, 0));
            assertEquals(STATUS_LINK_UP, f.config(CONFIG_LENGTH).get(LE16, STATUS_OFFSET), "link up again");
            byte[] out = frame(PEER_MAC, GUEST_MAC, 100, 3);
            send(f, tx, new byte[HDR_LENGTH], out);
            assertArrayEquals(out, awaitPeerFrame(), "frames flow again");
            assertNull(p.lastError());
        }
    }

    @Test
    @org.junit.jupiter.api.Timeout(value = 60, threadMode = org.junit.jupiter.api.Timeout.ThreadMode.SEPARATE_THREAD) // sendmsg is not interruptible
    void shouldNotBlockLinkChangesOnAFrontEndThatNeverReadsItsBackendChannel() {
        VhostUserNetPort p = nic("n0", GUEST_MAC);
        Path chanPath = dir.resolve("backend-req.sock");
        try (io.phost.core.sys.UnixSocket listener = io.phost.core.sys.UnixSocket.listenStream(chanPath, 1);
             io.phost.core.sys.UnixSocket ours = io.phost.core.sys.UnixSocket.connectStream(chanPath);
             io.phost.core.sys.UnixSocket theirs = listener.accept(5_000)) {
            VhostUserFrontend f = driver(p);
            f.send(io.phost.core.vhost.VhostUserRequest.SET_BACKEND_REQ_FD, io.phost.core.vhost.VhostUserDescriptor.FLAG_NEED_REPLY, null, ours.fd());
            assertEquals(0, f.reply(io.phost.core.vhost.VhostUserRequest.SET_BACKEND_REQ_FD, 5_000).get(ValueLayout.JAVA_LONG_UNALIGNED, 0));
            int sent = 0;
            for (int i = 0; i < 20_000; i++) { // the channel fills after a few hundred messages; nobody reads it
                sent += p.link(i % 2 == 1) ? 1 : 0;
            }
            assertTrue(sent < 20_000, "a full channel drops the message instead of blocking");
            assertTrue(p.link());
            assertEquals(STATUS_LINK_UP, f.config(CONFIG_LENGTH).get(LE16, STATUS_OFFSET), "the state is still served");
            assertNull(p.lastError());
        }
    }

    @Test
    void shouldServeFourQueuePairsConcurrentlyAndKeepEachFlowOnOneReceiveQueue() throws Exception {
        int pairs = 4;
        VhostUserNetPort p = VhostUserNetPort.start("vm/n0", sw, PortConfig.vnic(GUEST_MAC), dir.resolve("n0.sock"), List.of(), pairs);
        closers.add(p);
        VhostUserFrontend f = VhostUserFrontend.connect(p.socketPath(), 16 << 20);
        closers.add(f);
        f.negotiate(WANTED | 1L << F_MQ);
        assertEquals(pairs, f.getU64(io.phost.core.vhost.VhostUserRequest.GET_QUEUE_NUM), "GET_QUEUE_NUM answers queue pairs");
        assertEquals(pairs, f.config(CONFIG_LENGTH).get(LE16, MAX_VIRTQUEUE_PAIRS_OFFSET));
        VhostUserFrontend.Queue[] rx = new VhostUserFrontend.Queue[pairs];
        VhostUserFrontend.Queue[] tx = new VhostUserFrontend.Queue[pairs];
        for (int k = 0; k < pairs; k++) {
            rx[k] = f.startQueue(2 * k, 256);
            tx[k] = f.startQueue(2 * k + 1, 256);
        }
        assertTrue(waitFor(() -> p.runningQueues() == 2 * pairs), "every queue runs");

        // Transmit: four threads, one per queue, 200 frames each at once; each frame says which queue and which one.
        int perQueue = 200;
        Thread[] senders = new Thread[pairs];
        Throwable[] failed = new Throwable[1];
        for (int k = 0; k < pairs; k++) {
            int queue = k;
            senders[k] = Thread.ofPlatform().start(() -> {
                try {
                    for (int i = 0; i < perQueue; i++) {
                        byte[] fr = frame(PEER_MAC, GUEST_MAC, 80, 0);
                        fr[14] = (byte) queue;
                        fr[15] = (byte) i;
                        long a = f.alloc(HDR_LENGTH + fr.length, 8);
                        MemorySegment.copy(MemorySegment.ofArray(fr), 0, f.at(a + HDR_LENGTH, fr.length), 0, fr.length);
                        assertTrue(tx[queue].add(new long[] {a}, new int[] {HDR_LENGTH + fr.length}, new boolean[] {false}) >= 0);
                        tx[queue].kick();
                    }
                } catch (Throwable t) {
                    failed[0] = t;
                }
            });
        }
        boolean[][] seen = new boolean[pairs][perQueue];
        int got = 0;
        long deadline = System.nanoTime() + 20_000_000_000L;
        while (got < pairs * perQueue && System.nanoTime() < deadline) {
            int[] n = {0};
            peerOut.poll((seg, off, len) -> {
                int q = seg.get(ValueLayout.JAVA_BYTE, off + 14);
                int i = seg.get(ValueLayout.JAVA_BYTE, off + 15) & 0xff;
                assertFalse(seen[q][i], "frame " + q + "/" + i + " once");
                seen[q][i] = true;
                n[0]++;
            }, 64);
            got += n[0];
            if (n[0] == 0) {
                Thread.sleep(1);
            }
        }
        for (Thread t : senders) {
            t.join();
        }
        assertNull(failed[0]);
        assertEquals(pairs * perQueue, got, "every frame of every transmit queue reached the peer");

        // Receive: 32 UDP flows (source ports), 2 frames each; every flow's frames land on one queue.
        long[][] bufs = new long[pairs][256];
        for (int k = 0; k < pairs; k++) {
            for (int b = 0; b < 64; b++) {
                long a = f.alloc(1536, 8);
                int head = rx[k].add(new long[] {a}, new int[] {1536}, new boolean[] {true});
                bufs[k][head] = a;
            }
            rx[k].kick();
        }
        int[] queueOfFlow = receiveFlows(f, p, rx, bufs, 32, 0);
        long queuesUsed = java.util.Arrays.stream(queueOfFlow).distinct().count();
        assertTrue(queuesUsed > 1, "flows spread over the receive queues: " + java.util.Arrays.toString(queueOfFlow));

        // The guest turns pairs 2 and 3 off (QEMU: VIRTIO_NET_CTRL_MQ → SET_VRING_ENABLE 0): only 0 and 1 receive.
        f.enableQueue(4, false);
        f.enableQueue(6, false);
        assertTrue(waitFor(() -> p.runningQueues() == 2 * pairs - 2));
        int[] after = receiveFlows(f, p, rx, bufs, 32, 100);
        for (int q : after) {
            assertTrue(q < 2, "a disabled queue gets nothing: " + java.util.Arrays.toString(after));
        }
        assertEquals(0, p.counters().rxTooBig());
        assertNull(p.lastError());
    }

    /** The peer sends {@code flows} UDP flows twice each; returns the receive queue each flow arrived on. */
    private int[] receiveFlows(VhostUserFrontend f, VhostUserNetPort p, VhostUserFrontend.Queue[] rx, long[][] bufs,
                               int flows, int portBase) throws Exception {
        int[] queueOfFlow = new int[flows];
        Arrays.fill(queueOfFlow, -1);
        for (int round = 0; round < 2; round++) {
            for (int fl = 0; fl < flows; fl++) {
                byte[] in = Ipv4Udp.frame(GUEST_MAC, PEER_MAC, 32);
                in[34] = (byte) ((portBase + fl) >> 8);
                in[35] = (byte) (portBase + fl);
                while (!peerIn.tryWrite(MemorySegment.ofArray(in), 0, in.length)) {
                    Thread.sleep(1);
                }
            }
        }
        int got = 0;
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (got < 2 * flows && System.nanoTime() < deadline) {
            boolean any = false;
            for (int k = 0; k < rx.length; k++) {
                int[] u = rx[k].awaitUsed(1);
                if (u == null) {
                    continue;
                }
                any = true;
                got++;
                MemorySegment b = f.at(bufs[k][u[0]], 1536);
                int fl = ((b.get(ValueLayout.JAVA_BYTE, HDR_LENGTH + 34) & 0xff) << 8 | (b.get(ValueLayout.JAVA_BYTE, HDR_LENGTH + 35) & 0xff)) - portBase;
                assertTrue(queueOfFlow[fl] == -1 || queueOfFlow[fl] == k, "flow " + fl + " on queues " + queueOfFlow[fl] + " and " + k);
                queueOfFlow[fl] = k;
                // give the buffer back
                int head = rx[k].add(new long[] {bufs[k][u[0]]}, new int[] {1536}, new boolean[] {true});
                bufs[k][head] = bufs[k][u[0]];
                rx[k].kick();
            }
            if (!any) {
                Thread.sleep(1);
            }
        }
        assertEquals(2 * flows, got, "every frame delivered: " + p.counters().rxNoQueue() + " without a queue");
        return queueOfFlow;
    }

    static boolean waitFor(java.util.function.BooleanSupplier c) throws InterruptedException {
        long deadline = System.nanoTime() + 5_000_000_000L;
        while (!c.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                return false;
            }
            Thread.sleep(5);
        }
        return true;
    }

    @Test
    void shouldDeliverToTheGuestFromAVmqWorkerWhenTheSwitchHasVmq() throws Exception {
        // With VMQ a worker thread, not the switch's agent, calls the port's sink: delivery takes the device's lock.
        sw.close();
        sw = ManagedSwitch.create(new SwitchSpec("vq" + ProcessHandle.current().pid() % 100000, io.phost.vswitch.SwitchType.PRIVATE,
            null, false, false, io.phost.vswitch.BandwidthMode.WEIGHT, 2, null, null));
        peerIn = new FrameRing(1 << 20);
        peerOut = new FrameRing(1 << 20);
        sw.attach("peer", PortConfig.vnic(PEER_MAC), peerOut, peerIn);
        VhostUserNetPort p = nic("n0", GUEST_MAC);
        VhostUserFrontend f = driver(p);
        VhostUserFrontend.Queue rx = f.startQueue(RX_QUEUE, 64);
        VhostUserFrontend.Queue tx = f.startQueue(TX_QUEUE, 64);
        byte[] out = frame(PEER_MAC, GUEST_MAC, 100, 5);
        send(f, tx, new byte[HDR_LENGTH], out);
        assertArrayEquals(out, awaitPeerFrame());
        long[] bufs = postRx(f, rx, 40, 1536);
        for (int i = 0; i < 32; i++) {
            byte[] in = frame(GUEST_MAC, PEER_MAC, 200 + i, i);
            while (!peerIn.tryWrite(MemorySegment.ofArray(in), 0, in.length)) {
                Thread.sleep(1);
            }
            int[] used = rx.awaitUsed(5_000);
            assertNotNull(used, "frame " + i + " reached the guest through a VMQ worker");
            assertArrayEquals(in, f.at(bufs[i], 1536).asSlice(HDR_LENGTH, in.length).toArray(ValueLayout.JAVA_BYTE));
        }
        assertEquals(32, p.counters().rxFrames());
        assertNull(p.lastError());
    }

    @Test
    void shouldCarryFramesFromTheGuestToAnotherPortAndBack() throws Exception {
        VhostUserNetPort p = nic("n0", GUEST_MAC);
        VhostUserFrontend f = driver(p);
        VhostUserFrontend.Queue rx = f.startQueue(RX_QUEUE, 64);
        VhostUserFrontend.Queue tx = f.startQueue(TX_QUEUE, 64);

        byte[] out = frame(PEER_MAC, GUEST_MAC, 100, 1);
        send(f, tx, new byte[HDR_LENGTH], out);
        assertNotNull(tx.awaitUsed(5_000), "TX chain returned");
        assertArrayEquals(out, awaitPeerFrame());

        long[] bufs = postRx(f, rx, 4, 1536);
        byte[] in = frame(GUEST_MAC, PEER_MAC, 1514, 2);
        assertTrue(peerIn.tryWrite(MemorySegment.ofArray(in), 0, in.length));
        int[] used = rx.awaitUsed(5_000);
        assertNotNull(used, "RX chain filled");
        assertEquals(HDR_LENGTH + in.length, used[1]);
        MemorySegment b = f.at(bufs[0], 1536);
        assertEquals(1, b.get(LE16, NUM_BUFFERS_OFFSET), "num_buffers");
        assertEquals(0, b.get(ValueLayout.JAVA_BYTE, 1), "gso_type NONE");
        assertArrayEquals(in, b.asSlice(HDR_LENGTH, in.length).toArray(ValueLayout.JAVA_BYTE));
        assertEquals(1, p.counters().rxFrames());
        assertEquals(1, p.counters().txFrames());
        assertNull(p.lastError());
    }

    /**
     * A transmit burst whose frames go to two destinations: the guest destination takes receive chains for the rest
     * of the burst at once and must give back the ones no frame used, so later frames fill the guest's buffers in
     * the order it posted them, none skipped or used twice (whatever grouping the agent's bursts have).
     */
    @Test
    void shouldFillTheGuestsBuffersInOrderAfterABurstThatAlsoWentElsewhere() throws Exception {
        long mac1 = 0x02_00_00_00_00_11L;
        VhostUserNetPort p0 = nic("n0", GUEST_MAC);
        VhostUserNetPort p1 = nic("n1", mac1);
        VhostUserFrontend f0 = driver(p0);
        f0.startQueue(RX_QUEUE, 64);
        VhostUserFrontend.Queue tx0 = f0.startQueue(TX_QUEUE, 64);
        VhostUserFrontend f1 = driver(p1);
        VhostUserFrontend.Queue rx1 = f1.startQueue(RX_QUEUE, 64);
        f1.startQueue(TX_QUEUE, 64);
        int posted = 6;
        long[] bufs = new long[posted];
        int[] heads = new int[posted];
        for (int i = 0; i < posted; i++) {
            bufs[i] = f1.alloc(2048, 8);
            heads[i] = rx1.add(new long[] {bufs[i]}, new int[] {2048}, new boolean[] {true});
            assertTrue(heads[i] >= 0);
        }
        rx1.kick();
        assertTrue(waitFor(() -> p0.runningQueues() == 2 && p1.runningQueues() == 2), "both NICs' queues run");
        // n1 is a vNIC: its MAC is pinned on its port, so frames to it are switched at once (no learning).
        List<byte[]> toN1 = new ArrayList<>();
        List<byte[]> toPeer = new ArrayList<>();
        long[] txBufs = new long[12];
        for (int i = 0; i < 12; i++) {
            boolean n1 = i == 0 || i == 5 || i >= 8; // 2 in the first burst, then 4 more: 6 buffers, 6 frames
            byte[] fr = frame(n1 ? mac1 : PEER_MAC, GUEST_MAC, 60 + i, i);
            (n1 ? toN1 : toPeer).add(fr);
            txBufs[i] = f0.alloc(HDR_LENGTH + fr.length, 8);
            MemorySegment.copy(MemorySegment.ofArray(fr), 0, f0.at(txBufs[i] + HDR_LENGTH, fr.length), 0, fr.length);
            assertTrue(tx0.add(new long[] {txBufs[i]}, new int[] {HDR_LENGTH + fr.length}, new boolean[] {false}) >= 0);
        }
        tx0.kick();
        for (int k = 0; k < posted; k++) {
            int[] u = rx1.awaitUsed(5_000);
            assertNotNull(u, "used entry " + k + " of n1; counters " + p1.counters() + ", port " + p1.port().counters().snapshot());
            assertEquals(heads[k], u[0], "n1's buffers are used in the order it posted them (entry " + k + ")");
            byte[] want = toN1.get(k);
            assertEquals(HDR_LENGTH + want.length, u[1], "length of frame " + k);
            assertArrayEquals(want, f1.at(bufs[k] + HDR_LENGTH, want.length).toArray(ValueLayout.JAVA_BYTE), "frame " + k);
        }
        for (byte[] want : toPeer) {
            assertArrayEquals(want, awaitPeerFrame());
        }
        // One more frame for n1, which has no buffer left: dropped as a full queue, nothing consumed twice.
        byte[] extra = frame(mac1, GUEST_MAC, 80, 99);
        long xb = f0.alloc(HDR_LENGTH + extra.length, 8);
        MemorySegment.copy(MemorySegment.ofArray(extra), 0, f0.at(xb + HDR_LENGTH, extra.length), 0, extra.length);
        assertTrue(tx0.add(new long[] {xb}, new int[] {HDR_LENGTH + extra.length}, new boolean[] {false}) >= 0);
        tx0.kick();
        assertTrue(waitFor(() -> p1.port().counters().drops(io.phost.vswitch.DropReason.EGRESS_FULL) == 1),
            "the extra frame is dropped as EGRESS_FULL; counters " + p1.counters());
        assertEquals(posted, rx1.usedIndex(), "n1's used index");
        assertEquals(posted, p1.counters().rxFrames(), "n1 frames; " + p1.counters());
        assertEquals(13, p0.counters().txFrames(), "n0 frames; " + p0.counters());
        assertNull(p0.lastError());
        assertNull(p1.lastError());
    }

    @Test
    void shouldSpreadAFrameOverMergeableBuffersAndDropAFrameWhenTheGuestHasNone() throws Exception {
        VhostUserNetPort p = nic("n0", GUEST_MAC);
        VhostUserFrontend f = driver(p);
        VhostUserFrontend.Queue rx = f.startQueue(RX_QUEUE, 64);
        f.startQueue(TX_QUEUE, 64);
        byte[] lost = frame(GUEST_MAC, PEER_MAC, 1000, 2);
        long deadline = System.nanoTime() + 10_000_000_000L;
        int written = 0;
        while (p.port().counters().drops(io.phost.vswitch.DropReason.EGRESS_FULL) == 0 && System.nanoTime() < deadline) {
            // until the agent serves the receive queue, frames count as rxNoQueue; then they meet the empty ring
            assertTrue(peerIn.tryWrite(MemorySegment.ofArray(lost), 0, lost.length));
            written++;
            Thread.sleep(20);
        }
        int sent = written;
        assertTrue(waitFor(() -> p.counters().rxNoQueue() + p.port().counters().drops(io.phost.vswitch.DropReason.EGRESS_FULL) == sent),
            "no buffers: each frame is dropped, counted as a full NIC queue does (the switch does not hold frames), or as "
                + "rxNoQueue before the queue ran; " + sent + " written, " + p.counters() + ", port " + p.port().counters().snapshot());
        assertTrue(p.port().counters().drops(io.phost.vswitch.DropReason.EGRESS_FULL) >= 1, "EGRESS_FULL");
        assertEquals(0, rx.usedIndex(), "nothing consumed");

        byte[] in = frame(GUEST_MAC, PEER_MAC, 1000, 3);
        long[] bufs = postRx(f, rx, 8, 256);
        Thread.sleep(100); // the switch's agent takes the guest's buffers only when it forwards: no kick needed
        assertTrue(peerIn.tryWrite(MemorySegment.ofArray(in), 0, in.length));
        byte[] got = new byte[HDR_LENGTH + in.length];
        int pos = 0;
        for (int k = 0; k < 4; k++) {
            int[] u = rx.awaitUsed(5_000);
            assertNotNull(u, "used entry " + k);
            MemorySegment.copy(f.at(bufs[k], 256), ValueLayout.JAVA_BYTE, 0, got, pos, u[1]);
            pos += u[1];
        }
        assertEquals(got.length, pos);
        assertEquals(4, MemorySegment.ofArray(got).get(LE16, NUM_BUFFERS_OFFSET), "num_buffers = ceil(1012 / 256)");
        assertArrayEquals(in, Arrays.copyOfRange(got, HDR_LENGTH, got.length));
        Thread.sleep(50);
        assertEquals(4, rx.usedIndex(), "the other 4 buffers stay with the device, unused");
    }

    @Test
    void shouldCompleteAGuestPartialChecksumForAPortWithoutOffloads() throws Exception {
        VhostUserNetPort p = nic("n0", GUEST_MAC);
        VhostUserFrontend f = driver(p);
        f.startQueue(RX_QUEUE, 64);
        VhostUserFrontend.Queue tx = f.startQueue(TX_QUEUE, 64);
        byte[] udp = Ipv4Udp.frame(PEER_MAC, GUEST_MAC, 48);
        byte[] hdr = new byte[HDR_LENGTH];
        hdr[0] = 1; // NEEDS_CSUM
        MemorySegment h = MemorySegment.ofArray(hdr);
        h.set(LE16, 6, (short) Ipv4Udp.L4_OFFSET);
        h.set(LE16, 8, (short) 6);
        Ipv4Udp.putPseudoHeaderSum(udp); // as Linux leaves a CHECKSUM_PARTIAL frame
        send(f, tx, hdr, udp);
        byte[] got = awaitPeerFrame();
        assertTrue(Ipv4Udp.checksumValid(got), "the switch completed the UDP checksum");
    }

    /**
     * Guest to guest, a checksum-partial frame keeps its virtio_net_hdr byte for byte (the agent reads and writes the
     * header in two wide loads and stores): sent as header + frame in one buffer (the one-copy path) and as two; the
     * receiver (GUEST_CSUM acked) gets flags, gso_type, hdr_len, gso_size, csum_start, csum_offset and num_buffers 1.
     */
    @Test
    void shouldCarryTheVirtioNetHeaderUnchangedFromGuestToGuest() throws Exception {
        long mac1 = 0x02_00_00_00_00_11L;
        VhostUserNetPort p0 = nic("n0", GUEST_MAC);
        VhostUserNetPort p1 = nic("n1", mac1);
        VhostUserFrontend f0 = driver(p0);
        f0.startQueue(RX_QUEUE, 64);
        VhostUserFrontend.Queue tx = f0.startQueue(TX_QUEUE, 64);
        VhostUserFrontend f1 = driver(p1);
        VhostUserFrontend.Queue rx = f1.startQueue(RX_QUEUE, 64);
        f1.startQueue(TX_QUEUE, 64);
        long[] bufs = postRx(f1, rx, 2, 1536);

        byte[] udp = Ipv4Udp.frame(mac1, GUEST_MAC, 48);
        Ipv4Udp.putPseudoHeaderSum(udp);
        byte[] hdr = new byte[HDR_LENGTH];
        MemorySegment h = MemorySegment.ofArray(hdr);
        hdr[0] = 1; // NEEDS_CSUM
        h.set(LE16, 2, (short) 0x2a); // hdr_len (a hint the guest may set)
        h.set(LE16, 4, (short) 0); // gso_size
        h.set(LE16, 6, (short) Ipv4Udp.L4_OFFSET);
        h.set(LE16, 8, (short) 6);
        long one = f0.alloc(HDR_LENGTH + udp.length, 8);
        MemorySegment.copy(h, 0, f0.at(one, HDR_LENGTH), 0, HDR_LENGTH);
        MemorySegment.copy(MemorySegment.ofArray(udp), 0, f0.at(one + HDR_LENGTH, udp.length), 0, udp.length);
        assertTrue(tx.add(new long[] {one}, new int[] {HDR_LENGTH + udp.length}, new boolean[] {false}) >= 0);
        tx.kick();
        send(f0, tx, hdr, udp);

        for (int k = 0; k < 2; k++) {
            int[] used = rx.awaitUsed(5_000);
            assertNotNull(used, "frame " + k + " reached the other guest; " + p1.counters() + " / " + p0.counters());
            assertEquals(HDR_LENGTH + udp.length, used[1]);
            MemorySegment b = f1.at(bufs[k], 1536);
            assertEquals(1, b.get(ValueLayout.JAVA_BYTE, 0), "flags NEEDS_CSUM, frame " + k);
            assertEquals(0, b.get(ValueLayout.JAVA_BYTE, 1), "gso_type NONE");
            assertEquals(0x2a, b.get(LE16, 2), "hdr_len");
            assertEquals(0, b.get(LE16, 4), "gso_size");
            assertEquals(Ipv4Udp.L4_OFFSET, b.get(LE16, 6), "csum_start");
            assertEquals(6, b.get(LE16, 8), "csum_offset");
            assertEquals(1, b.get(LE16, NUM_BUFFERS_OFFSET), "num_buffers");
            assertArrayEquals(udp, b.asSlice(HDR_LENGTH, udp.length).toArray(ValueLayout.JAVA_BYTE), "frame " + k);
        }
        assertEquals(2, p0.counters().txFrames());
        assertEquals(2, p1.counters().rxFrames());
    }

    @Test
    void shouldDropMalformedGuestFramesAndKeepServing() throws Exception {
        VhostUserNetPort p = nic("n0", GUEST_MAC);
        VhostUserFrontend f = driver(p);
        f.startQueue(RX_QUEUE, 64);
        VhostUserFrontend.Queue tx = f.startQueue(TX_QUEUE, 64);
        send(f, tx, new byte[HDR_LENGTH], new byte[5]);                       // shorter than an Ethernet header
        byte[] gso = new byte[HDR_LENGTH];
        gso[1] = 4;                                                           // TCPV6 GSO, not negotiated
        send(f, tx, gso, frame(PEER_MAC, GUEST_MAC, 100, 4));
        byte[] csum = new byte[HDR_LENGTH];
        csum[0] = 1;
        MemorySegment.ofArray(csum).set(LE16, 6, (short) 99);                 // checksum field past the frame
        send(f, tx, csum, frame(PEER_MAC, GUEST_MAC, 100, 5));
        for (int i = 0; i < 3; i++) {
            assertEquals(0, tx.awaitUsed(5_000)[1]);
        }
        byte[] good = frame(PEER_MAC, GUEST_MAC, 60, 6);
        send(f, tx, new byte[HDR_LENGTH], good);
        assertArrayEquals(good, awaitPeerFrame());
        assertEquals(3, p.counters().txErrors());
        assertNull(p.lastError());
    }

    @Test
    void shouldBreakOnlyTheHostileDevicesQueueWhileAnotherNicKeepsServing() throws Exception {
        VhostUserNetPort evil = nic("n0", GUEST_MAC);
        VhostUserNetPort good = nic("n1", 0x02_00_00_00_00_03L);
        VhostUserFrontend fe = driver(evil);
        VhostUserFrontend.Queue erx = fe.startQueue(RX_QUEUE, 64);
        fe.startQueue(TX_QUEUE, 64);
        long b = fe.alloc(1536, 8);
        erx.add(new long[] {b}, new int[] {1536}, new boolean[] {false});    // a device-readable receive buffer
        erx.kick();
        byte[] in = frame(GUEST_MAC, PEER_MAC, 100, 7);
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (evil.lastError() == null && System.nanoTime() < deadline) {
            // until the switch's agent serves the receive queue, frames count as rxNoQueue; then one meets the bad buffer
            assertTrue(peerIn.tryWrite(MemorySegment.ofArray(in), 0, in.length));
            Thread.sleep(20);
        }
        assertNotNull(evil.lastError());
        assertTrue(evil.lastError().contains("BAD_DESCRIPTOR_ORDER"), evil.lastError());

        VhostUserFrontend fg = driver(good);
        VhostUserFrontend.Queue grx = fg.startQueue(RX_QUEUE, 64);
        fg.startQueue(TX_QUEUE, 64);
        long[] bufs = postRx(fg, grx, 2, 1536);
        byte[] in2 = frame(0x02_00_00_00_00_03L, PEER_MAC, 200, 8);
        assertTrue(peerIn.tryWrite(MemorySegment.ofArray(in2), 0, in2.length));
        int[] u = grx.awaitUsed(5_000);
        assertNotNull(u);
        assertArrayEquals(in2, fg.at(bufs[0] + HDR_LENGTH, in2.length).toArray(ValueLayout.JAVA_BYTE));
        assertNull(good.lastError());
    }

    @Test
    void shouldUseTheSwitchPortSoItsMacGuardApplies() throws Exception {
        VhostUserNetPort p = nic("n0", GUEST_MAC);
        VhostUserFrontend f = driver(p);
        f.startQueue(RX_QUEUE, 64);
        VhostUserFrontend.Queue tx = f.startQueue(TX_QUEUE, 64);
        send(f, tx, new byte[HDR_LENGTH], frame(PEER_MAC, 0x02_00_00_00_00_99L, 80, 9)); // spoofed source
        tx.awaitUsed(5_000);
        byte[] good = frame(PEER_MAC, GUEST_MAC, 80, 10);
        send(f, tx, new byte[HDR_LENGTH], good);
        assertArrayEquals(good, awaitPeerFrame(), "the spoofed frame was dropped by the port, the next one passes");
        assertEquals(2, p.counters().txFrames());
    }

    @Test
    void shouldWakeTheSleepingReceiveWorkerWhenTheSwitchQueuesAFrame() throws Exception {
        VhostUserNetPort p = nic("n0", GUEST_MAC);
        VhostUserFrontend f = driver(p);
        VhostUserFrontend.Queue rx = f.startQueue(RX_QUEUE, 64);
        f.startQueue(TX_QUEUE, 64);
        postRx(f, rx, 32, 1536);
        Thread.sleep(100); // the worker has found nothing and sleeps (poll(2) on kick + wakeup eventfd, 1 s timeout)
        byte[] in = frame(GUEST_MAC, PEER_MAC, 64, 11);
        long start = System.nanoTime();
        for (int i = 0; i < 20; i++) {
            assertTrue(peerIn.tryWrite(MemorySegment.ofArray(in), 0, in.length));
            assertNotNull(rx.awaitUsed(5_000));
            Thread.sleep(20); // let it fall asleep again
        }
        long millis = (System.nanoTime() - start) / 1_000_000;
        // Woken by the switch: ~20 x 20 ms. Only the idle timeout would take ~20 x 500 ms on average.
        assertTrue(millis < 4_000, "20 frames to a sleeping receive worker took " + millis + " ms");
    }
}
