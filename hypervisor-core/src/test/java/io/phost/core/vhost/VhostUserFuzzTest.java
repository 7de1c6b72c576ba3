package io.phost.core.vhost;

import io.phost.core.sys.Fd;
import io.phost.core.sys.SharedMemory;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.List;
import java.util.SplittableRandom;

import static io.phost.core.vhost.VhostUserDescriptor.*;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Property tests: any bytes either parse or throw {@link VhostUserException} — never another exception,
 * a hang, or an allocation sized by the input. Seeds are fixed so a failure reproduces. Cases per test:
 * {@code -Dphost.vhost.fuzzCases=N}; by default 20,000 headers, 5,000 virtqueues and 3,000 messages over the socket,
 * with {@code -Dphost.soak=true} 100,000 of each.
 */
@Timeout(120) // a soak lifts it: -Djunit.jupiter.execution.timeout.mode=disabled
class VhostUserFuzzTest {
    private static final boolean SOAK = Boolean.getBoolean("phost.soak");
    private static final int HEADERS = Integer.getInteger("phost.vhost.fuzzCases", SOAK ? 100_000 : 20_000);
    private static final int QUEUES = Integer.getInteger("phost.vhost.fuzzCases", SOAK ? 100_000 : 5_000);
    /** Random messages sent over the socket, up to 50 a connection (the back-end drops most connections sooner). */
    private static final int STREAM_MESSAGES = Integer.getInteger("phost.vhost.fuzzCases", SOAK ? 100_000 : 3_000);

    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED;
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED;
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED;

    @TempDir
    Path dir;

    @Test
    void shouldParseOrRejectEveryRandomMessageHeader() {
        SplittableRandom rnd = new SplittableRandom(14);
        MemorySegment buf = Arena.ofAuto().allocate(HEADER_LENGTH + MAX_PAYLOAD, 8);
        VhostUserMessage m = new VhostUserMessage(buf);
        int parsed = 0;
        for (int i = 0; i < HEADERS; i++) {
            int code = rnd.nextInt(4) == 0 ? rnd.nextInt() : rnd.nextInt(45);
            int flags = rnd.nextInt(3) == 0 ? rnd.nextInt() : VERSION | (rnd.nextBoolean() ? FLAG_NEED_REPLY : 0);
            int size = rnd.nextInt(3) == 0 ? rnd.nextInt() : new int[] {0, 4, 8, 12, 40, 264, 300}[rnd.nextInt(7)];
            buf.set(U32, 0, code);
            buf.set(U32, 4, flags);
            buf.set(U32, 8, size);
            try {
                int n = m.parseHeader();
                assertTrue(n >= 0 && n <= MAX_PAYLOAD, "payload size bounded");
                m.checkShape(rnd.nextInt(3));
                parsed++;
            } catch (VhostUserException expected) {
                // the parser's own error
            }
        }
        System.out.println("VhostUserFuzzTest: " + HEADERS + " headers, parsed " + parsed);
        assertTrue(parsed > 100, "some random headers are valid (" + parsed + ")");
    }

    @Test
    void shouldWalkOrRejectEveryRandomVirtqueue() {
        long size = 1 << 20;
        int fd = SharedMemory.createUnsealed("fuzz-guest", size);
        MemorySegment mine = SharedMemory.mapShared(fd, 0, size);
        long gpa = 0x10_0000L;
        GuestMemory memory = GuestMemory.of(new java.util.ArrayList<>(List.of(GuestMemory.mapRegion(0, gpa, size, mine.address(), 0, Fd.dup(fd)))));
        SplittableRandom rnd = new SplittableRandom(1414);
        DescriptorChain chain = new DescriptorChain(Vring.CHAIN_CAPACITY);
        int popped = 0;
        int rejected = 0;
        try {
            for (int c = 0; c < QUEUES; c++) {
                int qsize = 1 << rnd.nextInt(1, 8);
                long desc = 0x1000;
                long avail = desc + 16L * qsize;
                long used = (avail + 6 + 2L * qsize + 3) & ~3L;
                long[] host = SplitVirtqueue.layout(0, memory, qsize, mine.address() + desc, mine.address() + avail, mine.address() + used);
                SplitVirtqueue q = new SplitVirtqueue(0, memory, qsize, host[0], host[1], host[2], 0, rnd.nextBoolean(), rnd.nextBoolean(), null);
                for (int i = 0; i < qsize; i++) { // descriptors: mostly plausible, sometimes garbage
                    long d = desc + 16L * i;
                    long addr = switch (rnd.nextInt(5)) {
                        case 0 -> rnd.nextLong();
                        case 1 -> gpa + size - rnd.nextInt(64);
                        default -> gpa + 0x8000 + rnd.nextInt(0x70000);
                    };
                    int len = rnd.nextInt(6) == 0 ? rnd.nextInt() : rnd.nextInt(1, 4096);
                    int flags = rnd.nextInt(8);
                    int next = rnd.nextInt(5) == 0 ? rnd.nextInt(65536) : rnd.nextInt(qsize);
                    if ((flags & SplitVirtqueue.DESC_F_INDIRECT) != 0 && rnd.nextBoolean()) {
                        long table = gpa + 0x40000 + 16L * rnd.nextInt(1000);
                        addr = table;
                        len = 16 * rnd.nextInt(0, 40);
                        for (int k = 0; k < len / 16; k++) {
                            long t = table - gpa + 16L * k;
                            mine.set(U64, t, gpa + 0x8000 + rnd.nextInt(0x70000));
                            mine.set(U32, t + 8, rnd.nextInt(1, 512));
                            mine.set(U16, t + 12, (short) rnd.nextInt(8));
                            mine.set(U16, t + 14, (short) rnd.nextInt(48));
                        }
                    }
                    mine.set(U64, d, addr);
                    mine.set(U32, d + 8, len);
                    mine.set(U16, d + 12, (short) flags);
                    mine.set(U16, d + 14, (short) next);
                }
                int entries = rnd.nextInt(qsize + 1);
                for (int i = 0; i < qsize; i++) {
                    mine.set(U16, avail + 4 + 2L * i, (short) (rnd.nextInt(8) == 0 ? rnd.nextInt(65536) : rnd.nextInt(qsize)));
                }
                mine.set(U16, avail + 2, (short) (rnd.nextInt(10) == 0 ? rnd.nextInt(65536) : entries));
                try {
                    for (int i = 0; i <= qsize && q.tryPop(chain); i++) {
                        popped++;
                        for (int k = 0; k < chain.count(); k++) { // every element lies inside the region
                            assertTrue(chain.address(k) >= memory.hostOfGpa(0, gpa), "inside guest memory");
                            assertTrue(chain.address(k) - memory.hostOfGpa(0, gpa) + chain.length(k) <= size, "ends inside guest memory");
                        }
                        q.pushUsed(chain.head(), 0);
                    }
                } catch (VhostUserException expected) {
                    rejected++;
                }
            }
        } finally {
            memory.close();
            SharedMemory.unmap(mine);
            Fd.close(fd);
        }
        System.out.println("VhostUserFuzzTest: " + QUEUES + " virtqueues, popped " + popped + ", rejected " + rejected);
        assertTrue(popped > 500 && rejected > 1000, "both outcomes exercised: popped " + popped + ", rejected " + rejected);
    }

    /** As above for packed rings: random descriptors, flags, wrap counters, ids, indirect tables and bases. */
    @Test
    void shouldWalkOrRejectEveryRandomPackedVirtqueue() {
        long size = 1 << 20;
        int fd = SharedMemory.createUnsealed("fuzz-packed", size);
        MemorySegment mine = SharedMemory.mapShared(fd, 0, size);
        long gpa = 0x10_0000L;
        GuestMemory memory = GuestMemory.of(new java.util.ArrayList<>(List.of(GuestMemory.mapRegion(0, gpa, size, mine.address(), 0, Fd.dup(fd)))));
        SplittableRandom rnd = new SplittableRandom(1415);
        DescriptorChain chain = new DescriptorChain(Vring.CHAIN_CAPACITY);
        int popped = 0;
        int rejected = 0;
        try {
            for (int c = 0; c < 5_000; c++) {
                int qsize = 1 << rnd.nextInt(1, 8);
                long desc = 0x1000;
                long driver = desc + 16L * qsize;
                long device = driver + 4;
                long[] host = PackedVirtqueue.layout(0, memory, qsize, mine.address() + desc, mine.address() + driver, mine.address() + device);
                int base = rnd.nextInt(4) == 0 ? rnd.nextInt() : (rnd.nextInt(qsize) | (rnd.nextBoolean() ? 0x8000 : 0)) * 0x10001;
                PackedVirtqueue q;
                try {
                    q = new PackedVirtqueue(0, memory, qsize, host[0], host[1], host[2], base, rnd.nextBoolean(), rnd.nextBoolean(), null);
                } catch (VhostUserException badBase) {
                    rejected++;
                    continue;
                }
                for (int i = 0; i < qsize; i++) { // descriptors: mostly plausible and available, sometimes garbage
                    long d = desc + 16L * i;
                    long addr = switch (rnd.nextInt(5)) {
                        case 0 -> rnd.nextLong();
                        case 1 -> gpa + size - rnd.nextInt(64);
                        default -> gpa + 0x8000 + rnd.nextInt(0x70000);
                    };
                    int len = rnd.nextInt(6) == 0 ? rnd.nextInt() : rnd.nextInt(1, 4096);
                    boolean wrap = (base & 0x8000) != 0;
                    int kind = rnd.nextInt(8) == 0 ? rnd.nextInt(8)
                        : (rnd.nextInt(3) == 0 ? SplitVirtqueue.DESC_F_NEXT : 0) | (rnd.nextInt(3) == 0 ? SplitVirtqueue.DESC_F_WRITE : 0);
                    int flags = kind | switch (rnd.nextInt(8)) { // mostly available for the ring's avail wrap counter
                        case 0 -> rnd.nextInt(65536);
                        case 1 -> wrap ? PackedVirtqueue.DESC_F_USED : PackedVirtqueue.DESC_F_AVAIL;
                        default -> wrap ? PackedVirtqueue.DESC_F_AVAIL : PackedVirtqueue.DESC_F_USED;
                    };
                    int id = rnd.nextInt(5) == 0 ? rnd.nextInt(65536) : rnd.nextInt(qsize);
                    if ((flags & SplitVirtqueue.DESC_F_INDIRECT) != 0 && rnd.nextBoolean()) {
                        long table = gpa + 0x40000 + 16L * rnd.nextInt(1000);
                        addr = table;
                        len = 16 * rnd.nextInt(0, 40);
                        for (int k = 0; k < len / 16; k++) {
                            long t = table - gpa + 16L * k;
                            mine.set(U64, t, rnd.nextInt(10) == 0 ? rnd.nextLong() : gpa + 0x8000 + rnd.nextInt(0x70000));
                            mine.set(U32, t + 8, rnd.nextInt(1, 512));
                            mine.set(U16, t + 12, (short) rnd.nextInt(65536));
                            mine.set(U16, t + 14, (short) rnd.nextInt(8));
                        }
                    }
                    mine.set(U64, d, addr);
                    mine.set(U32, d + 8, len);
                    mine.set(U16, d + 12, (short) id);
                    mine.set(U16, d + 14, (short) flags);
                }
                mine.set(U16, driver, (short) rnd.nextInt(65536));
                mine.set(U16, driver + 2, (short) rnd.nextInt(4));
                try {
                    for (int i = 0; i <= qsize && q.tryPop(chain); i++) {
                        popped++;
                        assertTrue(chain.head() >= 0 && chain.head() < qsize, "buffer id inside the queue");
                        for (int k = 0; k < chain.count(); k++) { // every element lies inside the region
                            assertTrue(chain.address(k) >= memory.hostOfGpa(0, gpa), "inside guest memory");
                            assertTrue(chain.address(k) - memory.hostOfGpa(0, gpa) + chain.length(k) <= size, "ends inside guest memory");
                        }
                        if (rnd.nextInt(8) == 0) {
                            q.discard(1);
                        } else {
                            q.pushUsed(chain.head(), rnd.nextInt(4096));
                            q.notifyIfNeeded();
                        }
                    }
                } catch (VhostUserException expected) {
                    rejected++;
                }
                int b = q.vringBase();
                assertTrue((b & 0x7FFF) < qsize && ((b >>> 16) & 0x7FFF) < qsize, "positions stay inside the ring: 0x" + Integer.toHexString(b));
            }
        } finally {
            memory.close();
            SharedMemory.unmap(mine);
            Fd.close(fd);
        }
        assertTrue(popped > 500 && rejected > 1000, "both outcomes exercised: popped " + popped + ", rejected " + rejected);
    }

    @Test
    void shouldSurviveRandomMessageStreamsAndServeAWellBehavedFrontEndAfterwards() {
        SplittableRandom rnd = new SplittableRandom(41);
        try (VhostUserBackend b = VhostUserBackend.start("fuzz", dir.resolve("fuzz.sock"), new EchoDevice(2))) {
            int connections = 0;
            int sent = 0;
            for (; sent < STREAM_MESSAGES; connections++) {
                try (VhostUserFrontend f = VhostUserFrontend.connect(b.socketPath(), 1 << 20)) {
                    if (rnd.nextBoolean()) {
                        f.negotiate(~0L);
                    }
                    for (int i = 0; i < 50; i++) {
                        VhostUserRequest[] all = VhostUserRequest.values();
                        VhostUserRequest r = all[rnd.nextInt(all.length)];
                        if (r == VhostUserRequest.GET_VRING_BASE) {
                            continue; // blocks for a reply we do not read; covered elsewhere
                        }
                        byte[] payload = new byte[rnd.nextInt(3) == 0 ? rnd.nextInt(300) : Math.max(0, r.payloadSize)];
                        rnd.nextBytes(payload);
                        MemorySegment p = MemorySegment.ofArray(payload);
                        if (payload.length >= 8 && rnd.nextBoolean()) {
                            p.set(U32, 0, rnd.nextInt(3)); // plausible queue indexes
                            p.set(U32, 4, 1 << rnd.nextInt(10));
                        }
                        try {
                            if (r == VhostUserRequest.SET_VRING_KICK || r == VhostUserRequest.SET_VRING_CALL) {
                                try (io.phost.core.sys.EventFd e = io.phost.core.sys.EventFd.create()) {
                                    f.send(r, 0, p, e.fd());
                                }
                            } else {
                                f.send(r, 0, payload.length == 0 ? null : p);
                            }
                            sent++;
                        } catch (RuntimeException gone) {
                            break; // the back-end hung up on us: expected for hostile input
                        }
                    }
                }
            }
            try (VhostUserFrontend f = VhostUserFrontend.connect(b.socketPath(), 1 << 20)) {
                f.negotiate(~0L);
                VhostUserFrontend.Queue q = f.startQueue(0, 8);
                long src = f.alloc(8, 8);
                long dst = f.alloc(8, 8);
                f.at(src, 8).set(U64, 0, 0x1122334455667788L);
                q.add(new long[] {src, dst}, new int[] {8, 8}, new boolean[] {false, true});
                q.kick();
                int[] used = q.awaitUsed(5_000);
                assertEquals(8, used[1]);
                assertEquals(0x1122334455667788L, f.at(dst, 8).get(U64, 0));
            }
            assertTrue(b.connections() >= connections + 1);
            System.out.println("VhostUserFuzzTest: " + connections + " connections, " + sent + " random messages sent");
        }
    }
}
