package io.phost.core.partition;

import static org.junit.jupiter.api.Assertions.*;

import io.phost.core.EchoVsp;
import io.phost.core.TestGuest;
import io.phost.core.ic.GuestIntegration;
import io.phost.core.ic.WriteQuiescer;
import io.phost.core.sys.SharedMemory;
import io.phost.core.vmbus.ChannelMessage;
import io.phost.core.vmbus.ChannelOffer;
import io.phost.core.vmbus.ClientChannel;
import io.phost.core.vmbus.GuestRam;
import io.phost.core.vmbus.VmbusClient;
import io.phost.core.vmbus.VmbusServer;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The control protocol, GPADLs, channel resets and limits with the guest in this JVM (an "external"
 * partition attaches by itself with its credential). Fast; the two-process tests are in PartitionProcessTest.
 */
class InProcessVmbusTest {
    private static final long MEM = 4L << 20;
    private Path dir;
    private PartitionHost host;
    private final List<AutoCloseable> closeLast = new ArrayList<>();

    @BeforeEach
    void setUp() throws Exception {
        dir = Files.createTempDirectory("phost-vmbus");
        host = new PartitionHost(dir, spec -> List.of("false"), PartitionHost.Options.defaults()
            .withLimits(new VmbusServer.Limits(2_000, 200, 64, 1 << 16, 4, true)).withMaxFaults(100_000));
    }

    @AfterEach
    void tearDown() throws Exception {
        for (AutoCloseable c : closeLast) {
            if (c instanceof VmbusClient) {
                c.close();
            }
        }
        host.close();
        for (AutoCloseable c : closeLast) {
            if (!(c instanceof VmbusClient)) {
                c.close();
            }
        }
        try (var s = Files.walk(dir)) {
            s.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        }
    }

    private VmbusClient attach(Partition p) {
        GuestRam ram = GuestRam.create("test-" + p.name(), MEM);
        closeLast.add(ram);
        VmbusClient c = VmbusClient.attach(host.socketPath(), p.name(), HexFormat.of().parseHex(p.credentialHex()), ram);
        closeLast.addFirst(c);
        return c;
    }

    private Partition external(String name, EchoVsp vsp) throws Exception {
        Partition p = host.create(PartitionSpec.external(name, 1, MEM));
        if (vsp != null) {
            p.offer(vsp);
        }
        p.start();
        return p;
    }

    @Test
    void shouldNegotiateOfferOpenAndEchoInbandAndGpaDirectPackets() throws Exception {
        EchoVsp echo = new EchoVsp("a");
        Partition p = external("a", echo);
        VmbusClient c = attach(p);
        assertEquals(ChannelMessage.VERSIONS[0], c.version());
        assertEquals(PartitionState.RUNNING, p.state());
        assertEquals(6, c.offers().size(), "5 integration services + the echo device");
        assertEquals("ok", TestGuest.exercise(c));
        assertTrue(echo.gpaDirect.get() >= 1);
        assertEquals(0, p.faultCount(), p.faults().toString());
    }

    @Test
    void shouldRejectAttachWithWrongCredentialUnknownNameOrUnsealedMemory() throws Exception {
        Partition p = external("b", null);
        GuestRam ram = GuestRam.create("test-b", MEM);
        closeLast.add(ram);
        byte[] wrong = new byte[32];
        assertThrows(RuntimeException.class, () -> VmbusClient.attach(host.socketPath(), "b", wrong, ram));
        assertThrows(RuntimeException.class, () -> VmbusClient.attach(host.socketPath(), "nobody", HexFormat.of().parseHex(p.credentialHex()), ram));
        assertEquals(2, host.rejectedAttaches());
        // a memfd without F_SEAL_SHRINK could be truncated under the host's mapping: refused
        int fd = SharedMemory.createUnsealed("unsealed", MEM);
        try {
            assertThrows(RuntimeException.class, () -> rawAttach(p, fd));
            assertTrue(host.lastRejection().contains("F_SEAL_SHRINK"), host.lastRejection());
        } finally {
            io.phost.core.sys.Fd.close(fd);
        }
        assertEquals(PartitionState.STARTING, p.state());
        attach(p);
        assertEquals(PartitionState.RUNNING, p.state());
    }

    private void rawAttach(Partition p, int fd) {
        io.phost.core.sys.UnixSocket s = io.phost.core.sys.UnixSocket.connect(host.socketPath());
        try {
            MemorySegment m = Arena.ofAuto().allocate(256, 8);
            byte[] name = p.name().getBytes();
            ChannelMessage.header(m, ChannelMessage.INITIATE_CONTACT, ChannelMessage.CONTACT_NAME + name.length);
            ChannelMessage.u32(m, ChannelMessage.CONTACT_VERSION, ChannelMessage.VERSIONS[0]);
            MemorySegment.copy(HexFormat.of().parseHex(p.credentialHex()), 0, m, java.lang.foreign.ValueLayout.JAVA_BYTE, ChannelMessage.CONTACT_CREDENTIAL, 32);
            m.set(java.lang.foreign.ValueLayout.JAVA_BYTE, ChannelMessage.CONTACT_NAME_LENGTH, (byte) name.length);
            MemorySegment.copy(name, 0, m, java.lang.foreign.ValueLayout.JAVA_BYTE, ChannelMessage.CONTACT_NAME, name.length);
            s.send(m, ChannelMessage.CONTACT_NAME + name.length, fd);
            long n = s.receive(m, new int[8], 5000);
            if (n <= 0) {
                throw new IllegalStateException("refused");
            }
        } finally {
            s.close();
        }
    }

    @Test
    void shouldRefuseGpadlsBeyondGuestMemoryOrOutsideItWithoutAllocatingForThem() throws Exception {
        EchoVsp echo = new EchoVsp("g");
        Partition p = external("g", echo);
        VmbusClient c = attach(p);
        ChannelOffer o = c.awaitOffer(EchoVsp.TYPE, 0, Duration.ofSeconds(5));
        // a page count far beyond guest memory is refused from the header alone (no 2^31-entry array)
        IllegalStateException e = assertThrows(IllegalStateException.class,
            () -> c.createGpadl(o.relid(), new long[] {1, 2}, 0, Integer.MAX_VALUE));
        assertTrue(e.getMessage().contains("refused"), e.getMessage());
        assertThrows(IllegalStateException.class, () -> c.createGpadl(o.relid(), new long[] {MEM / 4096 + 5}, 0, 4096));
        assertThrows(IllegalStateException.class, () -> c.createGpadl(9999, new long[] {3}, 0, 4096));
        // a 40-page list travels as GPADL_HEADER + GPADL_BODY and works
        GuestRam.Buffer b = c.ram().allocate(40 * 4096);
        int h = c.createGpadl(o.relid(), b);
        assertNotNull(p.server().gpadl(h));
        assertEquals(40, p.server().gpadl(h).pageCount());
        c.teardownGpadl(o.relid(), h);
        assertNull(p.server().gpadl(h));
        assertTrue(p.faultCount() >= 3, p.faults().toString());
    }

    @Test
    void shouldResetOnlyTheChannelWhoseGuestReferencedPagesOutsideItsGpadlsAndLetItReopen() throws Exception {
        EchoVsp echo = new EchoVsp("r");
        Partition p = external("r", echo);
        VmbusClient c = attach(p);
        ChannelOffer o = c.awaitOffer(EchoVsp.TYPE, 0, Duration.ofSeconds(5));
        ClientChannel ch = c.open(o, 4, null);
        // the ring pages themselves are granted (ring GPADL) but must never resolve as data
        MemorySegment ext = Arena.ofAuto().allocate(64, 8);
        int extLen = io.phost.core.vmbus.GpaDirectRanges.encode(ext, 0, 1, new long[] {4096 * 300}, new int[] {100});
        assertTrue(ch.tryWriteGpaDirect(1, 1, ext, 0, extLen, ext, 0, 8));
        long deadline = System.nanoTime() + 5_000_000_000L;
        while (ch.isOpen() && System.nanoTime() < deadline) {
            Thread.sleep(2);
        }
        assertFalse(ch.isOpen(), "host rescinded the channel after the fault");
        assertTrue(p.faults().getLast().contains("NOT_GRANTED"), p.faults().toString());
        ch.close();
        ChannelOffer again = c.awaitOffer(EchoVsp.TYPE, 0, Duration.ofSeconds(5));
        assertNotEquals(o.relid(), again.relid());
        try (ClientChannel ch2 = c.open(again, 4, null)) {
            assertEquals("ok", TestGuest.echoes(ch2, 20));
        }
        assertEquals(PartitionState.RUNNING, p.state());
    }

    @Test
    void shouldRefuseRingPagesAsGpaDirectData() throws Exception {
        EchoVsp echo = new EchoVsp("rp");
        Partition p = external("rp", echo);
        VmbusClient c = attach(p);
        ChannelOffer o = c.awaitOffer(EchoVsp.TYPE, 0, Duration.ofSeconds(5));
        ClientChannel ch = c.open(o, 4, null);
        long ringPfn = p.server().gpadl(ch.ringGpadl()).pfns()[1];
        MemorySegment ext = Arena.ofAuto().allocate(64, 8);
        int extLen = io.phost.core.vmbus.GpaDirectRanges.encode(ext, 0, 1, new long[] {ringPfn * 4096}, new int[] {64});
        assertTrue(ch.tryWriteGpaDirect(1, 1, ext, 0, extLen, ext, 0, 8));
        long deadline = System.nanoTime() + 5_000_000_000L;
        while (ch.isOpen() && System.nanoTime() < deadline) {
            Thread.sleep(2);
        }
        assertTrue(p.faults().getLast().contains("RING_OVERLAP"), p.faults().toString());
        ch.close();
    }

    @Test
    void shouldDropAndCountControlMessageFloods() throws Exception {
        Partition p = external("f", null);
        VmbusClient c = attach(p);
        MemorySegment m = Arena.ofAuto().allocate(16, 8);
        ChannelMessage.header(m, ChannelMessage.REQUESTOFFERS, 8);
        // Keep flooding until the host notices (a rate limit: on a loaded machine one burst may be too slow).
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (p.faults().stream().noneMatch(f -> f.contains("flood")) && System.nanoTime() < deadline) {
            for (int i = 0; i < 1_000 && !c.disconnected().isDone(); i++) {
                c.sendRaw(m, 8);
            }
            Thread.sleep(5);
        }
        assertTrue(p.faults().stream().anyMatch(f -> f.contains("flood")), p.faults().toString());
        assertEquals(PartitionState.RUNNING, p.state());
    }

    @Test
    void shouldHotAddAndRescindDevicesAndOfferSubChannels() throws Exception {
        Partition p = external("h", null);
        VmbusClient c = attach(p);
        java.util.concurrent.atomic.AtomicInteger rescinds = new java.util.concurrent.atomic.AtomicInteger();
        c.onRescind(r -> rescinds.incrementAndGet());
        EchoVsp echo = new EchoVsp("h");
        p.offer(echo);
        ChannelOffer o = c.awaitOffer(EchoVsp.TYPE, 0, Duration.ofSeconds(5));
        ClientChannel ch = c.open(o, 4, null);
        p.server().channel(ch.relid()).offerSubChannels(2);
        ChannelOffer s1 = c.awaitOffer(EchoVsp.TYPE, 1, Duration.ofSeconds(5));
        ChannelOffer s2 = c.awaitOffer(EchoVsp.TYPE, 2, Duration.ofSeconds(5));
        try (ClientChannel q1 = c.open(s1, 4, null); ClientChannel q2 = c.open(s2, 4, null)) {
            assertEquals("ok", TestGuest.echoes(q1, 10));
            assertEquals("ok", TestGuest.echoes(q2, 10));
            assertEquals(3, echo.opens.get());
            assertEquals(3, p.status().channels(), "primary + 2 sub-channels (no integration service opened)");
        }
        p.rescind(echo);
        long deadline = System.nanoTime() + 5_000_000_000L;
        while ((ch.isOpen() || rescinds.get() < 3) && System.nanoTime() < deadline) {
            Thread.sleep(2);
        }
        assertFalse(ch.isOpen());
        assertEquals(3, rescinds.get(), "the primary and both sub-channel offers are rescinded");
        ch.close();
    }

    @Test
    void shouldServeIntegrationServicesKvpTimeSyncAndHeartbeat() throws Exception {
        Partition p = external("ic", null);
        p.kvp().set("HostName", "phost-test");
        VmbusClient c = attach(p);
        try (GuestIntegration ic = new GuestIntegration(c, r -> { })) {
            ic.publish("FullyQualifiedDomainName", "guest.example");
            long deadline = System.nanoTime() + 10_000_000_000L;
            while ((ic.hostValues().isEmpty() || p.kvp().guestValues().isEmpty() || ic.timeSamples() == 0
                || ic.heartbeatsAnswered() == 0 || p.heartbeat().responses() == 0) && System.nanoTime() < deadline) {
                Thread.sleep(10);
            }
            assertEquals("phost-test", ic.hostValues().get("HostName"));
            assertEquals("guest.example", p.kvp().guestValues().get("FullyQualifiedDomainName"));
            assertTrue(ic.timeSamples() > 0);
            assertTrue(Math.abs(ic.clockOffsetNanos()) < 1_000_000_000L, "same machine: offset under a second");
            assertTrue(ic.heartbeatsAnswered() > 0);
            assertTrue(p.heartbeat().responses() > 0);
            p.kvp().delete("HostName");
            deadline = System.nanoTime() + 5_000_000_000L;
            while (ic.hostValues().containsKey("HostName") && System.nanoTime() < deadline) {
                Thread.sleep(10);
            }
            assertFalse(ic.hostValues().containsKey("HostName"));
        }
    }

    /**
     * The backup (VSS) integration service: a freeze reaches the guest's quiescer and is answered, a thaw
     * releases it; a guest with no quiescer says so, one that answers too late is thawed and named, and a
     * frozen guest whose host never thaws thaws by itself after the request's hold time.
     */
    @Test
    void shouldFreezeAndThawTheGuestsWritesThroughTheBackupService() throws Exception {
        Partition p = external("vss", null);
        VmbusClient c = attach(p);
        assertEquals("the guest has no backup (VSS) integration service open", p.freezeWrites(Duration.ofSeconds(1), Duration.ofSeconds(1)));
        java.util.concurrent.atomic.AtomicInteger freezes = new java.util.concurrent.atomic.AtomicInteger();
        java.util.concurrent.atomic.AtomicBoolean frozen = new java.util.concurrent.atomic.AtomicBoolean();
        java.util.concurrent.atomic.AtomicLong freezeDelayMillis = new java.util.concurrent.atomic.AtomicLong();
        try (GuestIntegration ic = new GuestIntegration(c, r -> { })) {
            long deadline = System.nanoTime() + 10_000_000_000L;
            String why;
            while ((why = p.freezeWrites(Duration.ofSeconds(2), Duration.ofSeconds(5))) != null
                && why.contains("no backup") && System.nanoTime() < deadline) {
                Thread.sleep(10); // the guest's integration thread opens the channel
            }
            assertEquals("the guest has nothing that can freeze its writes", why);
            ic.quiescer(new WriteQuiescer() {
                @Override
                public boolean freeze(Duration within) {
                    try {
                        Thread.sleep(freezeDelayMillis.get());
                    } catch (InterruptedException e) {
                        return false;
                    }
                    freezes.incrementAndGet();
                    frozen.set(true);
                    return true;
                }

                @Override
                public boolean thaw() {
                    return frozen.getAndSet(false);
                }
            });
            assertNull(p.freezeWrites(Duration.ofSeconds(2), Duration.ofSeconds(30)));
            assertTrue(frozen.get());
            assertTrue(p.thawWrites(Duration.ofSeconds(2)));
            assertFalse(frozen.get());
            assertFalse(p.thawWrites(Duration.ofSeconds(2)), "a second thaw: the guest was not frozen");

            freezeDelayMillis.set(1500); // answers after the host stopped waiting: the host thaws it at once
            String late = p.freezeWrites(Duration.ofMillis(300), Duration.ofSeconds(30));
            assertTrue(late != null && late.contains("did not answer"), late);
            deadline = System.nanoTime() + 10_000_000_000L;
            while ((freezes.get() < 2 || frozen.get()) && System.nanoTime() < deadline) {
                Thread.sleep(10);
            }
            assertFalse(frozen.get(), "the late freeze was undone by the host's thaw");

            freezeDelayMillis.set(0);
            assertNull(p.freezeWrites(Duration.ofSeconds(2), Duration.ofMillis(300)));
            deadline = System.nanoTime() + 10_000_000_000L;
            while (frozen.get() && System.nanoTime() < deadline) {
                Thread.sleep(10);
            }
            assertFalse(frozen.get(), "no thaw from the host: the guest thawed itself after the hold time");
        }
    }

    @Test
    void shouldNotBurnACpuWithTwelveIdleChannels() throws Exception {
        EchoVsp echo = new EchoVsp("idle");
        Partition p = external("idle", echo);
        VmbusClient c = attach(p);
        ChannelOffer o = c.awaitOffer(EchoVsp.TYPE, 0, Duration.ofSeconds(5));
        List<ClientChannel> chans = new ArrayList<>();
        chans.add(c.open(o, 2, null));
        p.server().channel(chans.get(0).relid()).offerSubChannels(11);
        for (int i = 1; i <= 11; i++) {
            chans.add(c.open(c.awaitOffer(EchoVsp.TYPE, i, Duration.ofSeconds(5)), 2, null));
        }
        for (ClientChannel ch : chans) {
            assertEquals("ok", TestGuest.echoes(ch, 3));
        }
        Thread.sleep(300); // let every agent fall through spin/yield/park into the doorbell sleep
        ThreadMXBean mx = ManagementFactory.getThreadMXBean();
        long before = agentCpu(mx);
        long t0 = System.nanoTime();
        Thread.sleep(2_000);
        long used = agentCpu(mx) - before;
        double share = used / (double) (System.nanoTime() - t0);
        assertTrue(share < 0.05, "12 idle channel agents used " + (share * 100) + "% of a core");
        for (ClientChannel ch : chans) {
            ch.close();
        }
    }

    /**
     * A stop never waits for an idle channel agent's doorbell timeout. The agent used to be woken before it was
     * told to end: one that woke, looped and slept again before the stop flag was set slept out its whole timeout
     * (1 s for the integration services, so 1-2 s of every partition stop). The device here idles 30 s between
     * doorbells and 24 channels are closed at once, so the race is near-certain to show if it exists.
     */
    @Test
    void shouldStopIdleChannelsWithoutWaitingForTheirDoorbellTimeout() throws Exception {
        SleepyVsp sleepy = new SleepyVsp();
        Partition p = host.create(PartitionSpec.external("sleepy", 1, MEM));
        p.offer(sleepy);
        p.start();
        VmbusClient c = attach(p);
        ChannelOffer o = c.awaitOffer(SleepyVsp.TYPE, 0, Duration.ofSeconds(5));
        c.open(o, 2, null);
        p.server().channel(c.offers().stream().filter(x -> x.interfaceType().equals(SleepyVsp.TYPE)).findFirst()
            .orElseThrow().relid()).offerSubChannels(23);
        for (int i = 1; i <= 23; i++) {
            c.open(c.awaitOffer(SleepyVsp.TYPE, i, Duration.ofSeconds(5)), 2, null);
        }
        Thread.sleep(300); // every agent asleep on its doorbell
        long t0 = System.nanoTime();
        p.turnOff("test");
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertTrue(ms < 15_000, "closing 24 idle channels took " + ms + " ms: an agent slept out its 30 s doorbell timeout");
        assertTrue(Thread.getAllStackTraces().keySet().stream().noneMatch(t -> t.getName().startsWith("vsp-sleepy-sleepy-q")),
            "every channel agent has ended");
    }

    /** A device whose agents sleep up to 30 s on the doorbell between packets (whatever the host's polling mode). */
    private static final class SleepyVsp implements io.phost.core.vmbus.VirtualServiceProvider {
        static final java.util.UUID TYPE = java.util.UUID.fromString("0c1e5a4e-1111-4a6b-9d7e-000000000030");

        @Override
        public java.util.UUID interfaceType() {
            return TYPE;
        }

        @Override
        public java.util.UUID instance() {
            return TYPE;
        }

        @Override
        public String name() {
            return "vsp-sleepy";
        }

        @Override
        public io.phost.core.vmbus.ChannelHandler open(io.phost.core.vmbus.ChannelContext ctx) {
            return (buf, off, len, type, flags, transId) -> true;
        }

        @Override
        public org.agrona.concurrent.IdleStrategy idleStrategy(io.phost.core.vmbus.VmbusRing rx,
                                                               io.phost.core.sys.EventFd doorbell,
                                                               io.phost.core.vmbus.PollingMode mode) {
            return new io.phost.core.vmbus.DoorbellIdleStrategy(rx, doorbell, 0, 0, 30_000);
        }
    }

    private static long agentCpu(ThreadMXBean mx) {
        long sum = 0;
        for (Thread t : Thread.getAllStackTraces().keySet()) {
            if (t.getName().startsWith("vsp-echo-idle-q")) {
                sum += Math.max(0, mx.getThreadCpuTime(t.threadId()));
            }
        }
        return sum;
    }

    @Test
    void shouldSurviveRandomControlMessagesAsFaultsAndKeepServing() throws Exception {
        EchoVsp echo = new EchoVsp("z");
        Partition p = external("z", echo);
        VmbusClient c = attach(p);
        java.util.Random rnd = new java.util.Random(3);
        MemorySegment m = Arena.ofAuto().allocate(512, 8);
        for (int i = 0; i < 1500; i++) {
            int len = rnd.nextInt(10) == 0 ? rnd.nextInt(300) : rnd.nextInt(64);
            for (int j = 0; j < len; j++) {
                m.set(java.lang.foreign.ValueLayout.JAVA_BYTE, j, (byte) rnd.nextInt());
            }
            if (len >= 4 && rnd.nextBoolean()) {
                ChannelMessage.u32(m, 0, 1 + rnd.nextInt(17)); // a real message type with random fields
            }
            if (len >= 4 && ChannelMessage.u32(m, 0) == ChannelMessage.UNLOAD) {
                ChannelMessage.u32(m, 0, 0x55);
            }
            c.sendRaw(m, Math.max(1, len));
            if (i % 200 == 0) {
                Thread.sleep(100); // stay under the rate limit most of the time
            }
        }
        Thread.sleep(300);
        assertEquals(PartitionState.RUNNING, p.state(), p.status().reason());
        assertTrue(p.faultCount() > 100, "random messages are faults: " + p.faultCount());
        assertEquals("ok", TestGuest.exercise(c), "the host still serves this guest");
    }
}
