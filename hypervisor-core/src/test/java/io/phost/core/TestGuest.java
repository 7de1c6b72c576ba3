package io.phost.core;

import io.phost.core.ic.GuestIntegration;
import io.phost.core.vmbus.ChannelMessage;
import io.phost.core.vmbus.ChannelOffer;
import io.phost.core.vmbus.ClientChannel;
import io.phost.core.vmbus.GpaDirectRanges;
import io.phost.core.vmbus.GuestRam;
import io.phost.core.vmbus.PacketDescriptor;
import io.phost.core.vmbus.VmbusClient;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.time.Duration;
import java.util.Random;

/**
 * A child partition for the two-process tests, run as {@code java -cp <test classpath> io.phost.core.TestGuest <workload>}
 * with the PHOST_* environment. Reports results through KVP (guest pool) so the host can assert on them.
 */
public final class TestGuest {
    private static final Duration T = Duration.ofSeconds(10);

    public static void main(String[] args) throws Exception {
        VmbusClient bus = VmbusClient.attachFromEnvironment();
        GuestIntegration ic = new GuestIntegration(bus, reason -> {
            System.out.println("shutdown requested: " + reason);
            System.exit(0);
        });
        ic.publish("workload", args[0]);
        try {
            switch (args[0]) {
                case "exercise" -> ic.publish("result", exercise(bus));
                case "serve" -> serve(bus, ic);
                case "hang" -> {
                    ic.answerHeartbeats(false);
                    Thread.sleep(Long.MAX_VALUE);
                }
                case "idle" -> Thread.sleep(Long.MAX_VALUE);
                case "hostile" -> hostile(bus, ic, 12);
                case "hostile-soak" -> hostile(bus, ic, Integer.MAX_VALUE);
                case "exit-0" -> closeAndExit(bus, 0);
                case "exit-3" -> closeAndExit(bus, 3);
                case "exit-kill" -> closeAndExit(bus, -io.phost.core.sys.Signals.SIGKILL);
                default -> throw new IllegalArgumentException(args[0]);
            }
        } catch (Throwable t) {
            t.printStackTrace();
            try {
                ic.publish("result", "fail: " + t);
            } catch (RuntimeException ignored) {
                // host gone
            }
        }
        Thread.sleep(Long.MAX_VALUE);
    }

    /**
     * A program that ends by itself: closes its VMBus connection as an exiting process does, so the host sees the
     * connection drop a moment before the exit status, then exits with {@code status} (negative: killed by that signal).
     */
    private static void closeAndExit(VmbusClient bus, int status) throws InterruptedException {
        bus.close();
        Thread.sleep(100);
        if (status < 0) {
            io.phost.core.sys.Signals.kill(ProcessHandle.current().pid(), -status);
        }
        Runtime.getRuntime().halt(status);
    }

    /** One round of inband echoes and one GPA-direct checksum; returns "ok" or a description. */
    public static String exercise(VmbusClient bus) {
        ChannelOffer offer = bus.awaitOffer(EchoVsp.TYPE, 0, T);
        try (ClientChannel ch = bus.open(offer, 8, null)) {
            String r = echoes(ch, 200);
            if (!r.equals("ok")) {
                return r;
            }
            return gpaDirect(bus, ch);
        }
    }

    public static String echoes(ClientChannel ch, int count) {
        MemorySegment req = Arena.ofAuto().allocate(64, 8);
        long[] got = {0};
        boolean[] bad = {false};
        for (int i = 0; i < count; i++) {
            req.set(ValueLayout.JAVA_LONG, 0, i * 31L);
            ch.write(PacketDescriptor.TYPE_INBAND, PacketDescriptor.FLAG_COMPLETION_REQUESTED, i, req, 0, 64, T);
            final int want = i;
            if (ch.read((b, o, l, t, f, id) -> {
                long d = PacketDescriptor.dataOffset(b, o);
                bad[0] |= t != PacketDescriptor.TYPE_COMPLETION || id != want || b.get(ValueLayout.JAVA_LONG_UNALIGNED, d) != want * 31L;
                got[0]++;
                return true;
            }, 1, T) == 0) {
                return "fail: no completion for " + i;
            }
        }
        return bad[0] ? "fail: wrong completion" : "ok";
    }

    static String gpaDirect(VmbusClient bus, ClientChannel ch) {
        GuestRam.Buffer buf = bus.ram().allocate(3 * 4096);
        long expect = 0;
        for (int i = 0; i < 3 * 4096; i++) {
            buf.segment().set(ValueLayout.JAVA_BYTE, i, (byte) (i * 7));
        }
        for (int i = 100; i < 100 + 8000; i++) {
            expect += (byte) (i * 7) & 0xff;
        }
        for (int i = 9000; i < 9000 + 50; i++) {
            expect += (byte) (i * 7) & 0xff;
        }
        int gpadl = bus.createGpadl(ch.relid(), buf);
        MemorySegment ext = Arena.ofAuto().allocate(256, 8);
        int extLen = GpaDirectRanges.encode(ext, 0, 2, new long[] {buf.gpa() + 100, buf.gpa() + 9000}, new int[] {8000, 50});
        MemorySegment req = Arena.ofAuto().allocate(16, 8);
        if (!ch.tryWriteGpaDirect(PacketDescriptor.FLAG_COMPLETION_REQUESTED, 777, ext, 0, extLen, req, 0, 16)) {
            return "fail: ring full";
        }
        long[] sum = {-1};
        ch.read((b, o, l, t, f, id) -> {
            sum[0] = b.get(ValueLayout.JAVA_LONG_UNALIGNED, PacketDescriptor.dataOffset(b, o));
            return true;
        }, 1, T);
        bus.teardownGpadl(ch.relid(), gpadl);
        bus.ram().free(buf);
        return sum[0] == expect ? "ok" : "fail: gpa-direct sum " + sum[0] + " != " + expect;
    }

    /** Echo forever, publishing a round counter the host watches for progress. */
    static void serve(VmbusClient bus, GuestIntegration ic) {
        long rounds = 0;
        while (true) {
            ChannelOffer offer = bus.awaitOffer(EchoVsp.TYPE, 0, T);
            try (ClientChannel ch = bus.open(offer, 8, null)) {
                while (true) {
                    String r = echoes(ch, 50);
                    if (!r.equals("ok")) {
                        ic.publish("result", r);
                        return;
                    }
                    ic.publish("rounds", Long.toString(++rounds));
                }
            }
        }
    }

    /**
     * Targeted attacks, each on a freshly opened channel (the host resets the channel after each), then
     * random corruption of ring bytes, then a control-message flood. Publishes "attacks" as it goes.
     */
    static void hostile(VmbusClient bus, GuestIntegration ic, int rounds) throws InterruptedException {
        Random rnd = new Random(1);
        int attacks = 0;
        for (int round = 0; round < rounds; round++) {
            ChannelOffer offer;
            try {
                offer = bus.awaitOffer(EchoVsp.TYPE, 0, Duration.ofSeconds(3));
            } catch (IllegalStateException e) {
                break; // faulted and disconnected
            }
            ClientChannel ch = bus.open(offer, 4, null);
            switch (round % 7) {
                case 0 -> publishWriteIndex(ch, 4096 * 3 + 8);                  // index beyond the data area
                case 1 -> publishRaw(ch, 2, 0x7fff, 56);                         // len8 past write index
                case 2 -> publishRaw(ch, 0xffff, 3, 56);                         // offset8 > len8
                case 3 -> gpaOutsideGpadl(ch, bus.ram().size() / 4096 - 1);      // page never granted
                case 4 -> gpaOutsideGpadl(ch, (1L << 40));                       // page beyond memory
                case 5 -> randomBytes(ch, rnd);
                default -> corruptHostWriterIndex(ch);                          // read_index of the host's ring
            }
            attacks++;
            ic.publish("attacks", Integer.toString(attacks));
            long deadline = System.nanoTime() + 3_000_000_000L;
            while (ch.isOpen() && System.nanoTime() < deadline) {
                Thread.sleep(5);
            }
            ch.close();
        }
        // control flood: thousands of REQUESTOFFERS-free garbage messages
        MemorySegment m = Arena.ofAuto().allocate(64, 8);
        ChannelMessage.header(m, 0x7777, 16);
        for (int i = 0; i < 20_000; i++) {
            try {
                bus.sendRaw(m, 16);
            } catch (RuntimeException e) {
                break;
            }
        }
    }

    /** Publishes a hostile write_index without writing a packet. */
    private static void publishWriteIndex(ClientChannel ch, int value) {
        ringControl(ch).set(ValueLayout.JAVA_INT, 0, value);
    }

    /** Writes a descriptor with the given offset8/len8 at our write position and publishes {@code total} bytes. */
    private static void publishRaw(ClientChannel ch, int offset8, int len8, int total) {
        MemorySegment d = ringData(ch);
        int w = ch.outbound().writeIndex();
        d.set(ValueLayout.JAVA_SHORT_UNALIGNED, w, (short) PacketDescriptor.TYPE_INBAND);
        d.set(ValueLayout.JAVA_SHORT_UNALIGNED, w + 2, (short) offset8);
        d.set(ValueLayout.JAVA_SHORT_UNALIGNED, w + 4, (short) len8);
        ringControl(ch).set(ValueLayout.JAVA_INT, 0, (w + total) % ch.outbound().dataSize());
    }

    private static void gpaOutsideGpadl(ClientChannel ch, long pfn) {
        MemorySegment ext = Arena.ofAuto().allocate(64, 8);
        int extLen = GpaDirectRanges.encode(ext, 0, 1, new long[] {pfn * 4096}, new int[] {512});
        MemorySegment req = Arena.ofAuto().allocate(16, 8);
        ch.tryWriteGpaDirect(PacketDescriptor.FLAG_COMPLETION_REQUESTED, 5, ext, 0, extLen, req, 0, 16);
    }

    /** Corrupts read_index of the host→guest ring (the host is its writer), then asks for a completion. */
    private static void corruptHostWriterIndex(ClientChannel ch) {
        ch.inboundMapping().control().set(ValueLayout.JAVA_INT, 4, 0x7ffffff8);
        MemorySegment req = Arena.ofAuto().allocate(64, 8);
        ch.tryWrite(PacketDescriptor.TYPE_INBAND, PacketDescriptor.FLAG_COMPLETION_REQUESTED, 77, req, 0, 64);
    }

    /** Random bytes where the next packets would go, published with a random aligned write index. */
    private static void randomBytes(ClientChannel ch, Random rnd) {
        MemorySegment d = ringData(ch);
        int w = ch.outbound().writeIndex();
        for (int i = 0; i < 32; i++) {
            d.set(ValueLayout.JAVA_LONG_UNALIGNED, w + 8L * i, rnd.nextLong());
        }
        ringControl(ch).set(ValueLayout.JAVA_INT, 0, (w + 8 * (3 + rnd.nextInt(29))) % ch.outbound().dataSize());
    }

    private static MemorySegment ringControl(ClientChannel ch) {
        return ch.outboundMapping().control();
    }

    private static MemorySegment ringData(ClientChannel ch) {
        return ch.outboundMapping().data();
    }
}
