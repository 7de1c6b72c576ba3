package io.phost.core.partition;

import static org.junit.jupiter.api.Assertions.*;

import io.phost.core.EchoVsp;
import io.phost.core.TestGuest;
import io.phost.core.vmbus.ChannelOffer;
import io.phost.core.vmbus.ClientChannel;
import io.phost.core.vmbus.GuestRam;
import io.phost.core.vmbus.PacketDescriptor;
import io.phost.core.vmbus.VmbusClient;
import io.phost.core.vmbus.VmbusServer;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The host's rings are read and written through raw addresses (VmbusRing), so an unmap while the channel's
 * agent still runs would fault the whole JVM instead of throwing. These close channels in every way the host
 * does (guest close, hot-remove, channel fault, partition stop) while packets are flowing, and forge hostile
 * ring indices: the JVM must survive, and a bad index must reset only its own channel.
 */
class RingUnmapUnderTrafficTest {
    private static final long MEM = 8L << 20;
    private static final Duration T = Duration.ofSeconds(10);
    private Path dir;
    private PartitionHost host;
    private GuestRam ram;
    private VmbusClient client;

    @BeforeEach
    void setUp() throws Exception {
        dir = Files.createTempDirectory("phost-unmap");
        host = new PartitionHost(dir, spec -> List.of("false"), PartitionHost.Options.defaults()
            .withLimits(new VmbusServer.Limits(2_000, 200, 64, 1 << 16, 4, true)).withMaxFaults(100_000));
    }

    @AfterEach
    void tearDown() throws Exception {
        if (client != null) {
            client.close();
        }
        host.close();
        if (ram != null) {
            ram.close();
        }
        try (var s = Files.walk(dir)) {
            s.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        }
    }

    private Partition start(String name, EchoVsp echo) throws Exception {
        Partition p = host.create(PartitionSpec.external(name, 1, MEM));
        p.offer(echo);
        p.start();
        ram = GuestRam.create("unmap-" + name, MEM);
        client = VmbusClient.attach(host.socketPath(), p.name(), HexFormat.of().parseHex(p.credentialHex()), ram);
        return p;
    }

    /** Sends completion-requested packets and drains the echoes without blocking until told to stop or the channel closes. */
    private static Thread pump(ClientChannel ch, AtomicBoolean stop, AtomicLong echoed) {
        Thread t = new Thread(() -> {
            MemorySegment req = Arena.ofAuto().allocate(256, 8);
            long id = 0;
            while (!stop.get() && ch.isOpen()) {
                ch.tryWrite(PacketDescriptor.TYPE_INBAND, PacketDescriptor.FLAG_COMPLETION_REQUESTED, id++, req, 0, 64 + (int) (id & 127));
                try {
                    echoed.addAndGet(ch.tryRead((b, o, l, ty, f, tid) -> true, 64));
                } catch (RuntimeException e) {
                    return; // the host may leave a half-written ring behind when it resets the channel
                }
            }
        }, "unmap-pump");
        t.start();
        return t;
    }

    private static void awaitClosed(ClientChannel ch, String what) throws InterruptedException {
        long deadline = System.nanoTime() + T.toNanos();
        while (ch.isOpen() && System.nanoTime() < deadline) {
            Thread.sleep(1);
        }
        assertFalse(ch.isOpen(), "waited " + T + " for the host to close the channel after " + what);
    }

    private static void awaitTraffic(AtomicLong echoed, long above) throws InterruptedException {
        long deadline = System.nanoTime() + T.toNanos();
        while (echoed.get() <= above && System.nanoTime() < deadline) {
            Thread.sleep(1);
        }
        assertTrue(echoed.get() > above, "waited " + T + " for echoes to flow");
    }

    @Test
    void shouldCloseChannelsUnderTrafficInEveryWayWithoutFaultingTheJvm() throws Exception {
        EchoVsp echo = new EchoVsp("unmap");
        Partition p = start("unmap", echo);
        AtomicLong echoed = new AtomicLong();
        for (int round = 0; round < 24; round++) {
            ChannelOffer o = client.awaitOffer(EchoVsp.TYPE, 0, T);
            ClientChannel ch = client.open(o, 8, null);
            AtomicBoolean stop = new AtomicBoolean();
            long before = echoed.get();
            Thread pumpThread = pump(ch, stop, echoed);
            awaitTraffic(echoed, before);
            switch (round % 3) {
                case 0 -> { // the guest closes: its own pump stops first (ClientChannel's contract), the host agent is mid-backlog
                    stop.set(true);
                    pumpThread.join(T.toMillis());
                    ch.close();
                }
                case 1 -> { // hot-remove while the guest keeps sending
                    p.rescind(echo);
                    awaitClosed(ch, "the rescind");
                    pumpThread.join(T.toMillis());
                    ch.close();
                    p.offer(echo);
                }
                default -> { // a channel fault from the VSP under traffic: the host resets the channel
                    p.server().channel(ch.relid()).fault("test fault under traffic");
                    awaitClosed(ch, "the fault");
                    pumpThread.join(T.toMillis());
                    ch.close();
                }
            }
            assertFalse(pumpThread.isAlive(), "the pump ended");
        }
        // and the partition stopping with traffic on a channel
        ClientChannel last = client.open(client.awaitOffer(EchoVsp.TYPE, 0, T), 8, null);
        AtomicBoolean stop = new AtomicBoolean();
        Thread pumpThread = pump(last, stop, echoed);
        awaitTraffic(echoed, echoed.get());
        p.turnOff("test: stop under traffic");
        awaitClosed(last, "the partition stopped");
        stop.set(true);
        pumpThread.join(T.toMillis());
        assertTrue(Thread.getAllStackTraces().keySet().stream().noneMatch(t -> t.getName().startsWith("vsp-echo-unmap-q")),
            "every channel agent has ended before its rings were unmapped");
    }

    @Test
    void shouldResetOnlyTheChannelWhoseRingIndexIsHostile() throws Exception {
        EchoVsp echo = new EchoVsp("idx");
        Partition p = start("idx", echo);
        ClientChannel good = client.open(client.awaitOffer(EchoVsp.TYPE, 0, T), 8, null);
        p.server().channel(good.relid()).offerSubChannels(1);
        int[] hostile = {Integer.MAX_VALUE, Integer.MIN_VALUE, -8, 13, 1 << 20, 0x7ffffff8};
        for (int i = 0; i < hostile.length + 1; i++) {
            ClientChannel bad = client.open(client.awaitOffer(EchoVsp.TYPE, 1, T), 8, null);
            long faults = p.faultCount();
            if (i < hostile.length) { // the guest's write_index of the ring the host reads
                bad.outboundMapping().control().set(ValueLayout.JAVA_INT, 0, hostile[i]);
                var hostSide = p.server().channel(bad.relid());
                if (hostSide != null) { // null: a polling agent has already seen the index and reset the channel
                    hostSide.wakeup(); // as the guest's doorbell would
                }
            } else { // the guest's read_index of the ring the host writes, then a request that needs a completion
                // (unmasked, as a sleeping guest's: the host reads read_index when it decides to signal; a masked
                // ring's read_index is only read when the host's cached copy says the ring is full)
                bad.inboundMapping().control().set(ValueLayout.JAVA_INT, 8, 0);
                bad.inboundMapping().control().set(ValueLayout.JAVA_INT, 4, 0x7ffffff8);
                bad.tryWrite(PacketDescriptor.TYPE_INBAND, PacketDescriptor.FLAG_COMPLETION_REQUESTED, 2, Arena.ofAuto().allocate(64), 0, 64);
            }
            awaitClosed(bad, "hostile index #" + i);
            assertTrue(p.faultCount() > faults, "the hostile index was recorded as a fault");
            String fault = p.faults().getLast();
            assertTrue(fault.contains("index"), "the fault names the bad index: " + fault);
            bad.close();
            assertTrue(good.isOpen(), "the other channel stays open");
            assertEquals("ok", TestGuest.echoes(good, 5), "the other channel still echoes after hostile index #" + i);
        }
        assertEquals(PartitionState.RUNNING, p.state());
    }
}
