package io.phost.core.vmbus;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.phost.core.EchoVsp;
import io.phost.core.sys.UnixSocket;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.HexFormat;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Feeds the host's channel-message parser ({@link VmbusServer}) control messages built from every
 * guest-accepted layout with hostile field values and lengths. Each must be handled or refused as a fault
 * with the parser's own exception ({@link VmbusProtocolException}, {@link GuestMemoryException},
 * {@link RingException}): never the catch-all "control message rejected" path, never a dead control thread,
 * never a hang (every REQUESTOFFERS sent is answered, in order, after everything before it). Seeded; the
 * failing message is printed. Cases: {@code -Dphost.vmbus.fuzzCases=N}, 4,000 by default, 100,000 with
 * {@code -Dphost.soak=true}.
 */
class VmbusControlFuzzTest {
    private static final long MEM = 4L << 20;
    private static final long PAGES = MEM / GuestMemory.PAGE_SIZE;
    private static final int CASES = Integer.getInteger("phost.vmbus.fuzzCases",
        Boolean.getBoolean("phost.soak") ? 100_000 : 4_000);
    /** Message types a guest may send, plus ones it may not, plus nonsense. */
    private static final int[] TYPES = {
        ChannelMessage.REQUESTOFFERS, ChannelMessage.OPENCHANNEL, ChannelMessage.CLOSECHANNEL,
        ChannelMessage.GPADL_HEADER, ChannelMessage.GPADL_BODY, ChannelMessage.GPADL_TEARDOWN, 13,
        ChannelMessage.OFFERCHANNEL, ChannelMessage.INITIATE_CONTACT, ChannelMessage.VERSION_RESPONSE,
        ChannelMessage.GPADL_CREATED, ChannelMessage.UNLOAD_RESPONSE, 0, 18, -1, 0x7fffffff,
    };
    private static final int[] INTS = {0, 1, 2, 3, -1, 0x7fffffff, 0x80000000, 4095, 4096, 4097, 8192, 1 << 20,
        (int) PAGES * 4096, (int) PAGES * 4096 + 1};
    private static final long[] PFNS = {0, 1, PAGES - 1, PAGES, PAGES + 1, -1, Long.MAX_VALUE, Long.MIN_VALUE,
        1L << 52, 1L << 40};

    @TempDir
    Path dir;

    @Test
    void shouldRefuseEveryHostileControlMessageWithItsOwnExceptionAndKeepServing() throws Exception {
        List<String> unexpected = new java.util.concurrent.CopyOnWriteArrayList<>();
        AtomicLong faults = new AtomicLong();
        Path sock = dir.resolve("c.sock");
        try (GuestRam ram = GuestRam.create("fuzz-" + ProcessHandle.current().pid(), MEM);
             UnixSocket listener = UnixSocket.listen(sock, 1);
             UnixSocket guest = UnixSocket.connect(sock);
             UnixSocket hostSide = listener.accept(5_000)) {
            VmbusServer server = new VmbusServer("fuzz", hostSide, ram.memfd(), new GuestMemory(ram.segment()),
                ChannelMessage.VERSIONS[0], new VmbusServer.Limits(100_000_000, 1_000_000, 64, 1 << 16, 4, true),
                List.of(), new VmbusServer.Listener() {
                    @Override
                    public void fault(String reason) {
                        faults.incrementAndGet();
                        if (reason.startsWith("control message rejected")) {
                            unexpected.add(reason);
                        }
                    }

                    @Override
                    public void disconnected(String why) {
                        unexpected.add("disconnected: " + why);
                    }
                });
            server.offer(new EchoVsp("fuzz"));
            Thread control = Thread.ofPlatform().daemon().name("vmbus-fuzz-control").start(server);
            AtomicLong delivered = new AtomicLong();
            ConcurrentLinkedQueue<String> replyProblems = new ConcurrentLinkedQueue<>();
            Thread drain = Thread.ofPlatform().daemon().name("vmbus-fuzz-guest").start(() -> drain(guest, delivered, replyProblems));
            try {
                SplittableRandom random = new SplittableRandom(0x6b_6d_62_75_73L);
                MemorySegment m = Arena.ofAuto().allocate(512, 8);
                long requests = 0;
                String last = "";
                for (int i = 0; i < CASES; i++) {
                    int length = build(random, m);
                    last = "case " + i + ": " + HexFormat.of().formatHex(m.asSlice(0, Math.min(length, 64)).toArray(ValueLayout.JAVA_BYTE));
                    guest.send(m, length);
                    if (ChannelMessage.type(m) == ChannelMessage.REQUESTOFFERS && length >= ChannelMessage.HEADER_LENGTH
                        && length <= ChannelMessage.MAX_LENGTH) {
                        requests++;
                    }
                    if (!unexpected.isEmpty()) {
                        fail(unexpected + " after " + last);
                    }
                }
                // a real REQUESTOFFERS last: every message before it was parsed when its answer comes
                ChannelMessage.header(m, ChannelMessage.REQUESTOFFERS, ChannelMessage.HEADER_LENGTH);
                guest.send(m, ChannelMessage.HEADER_LENGTH);
                requests++;
                long deadline = System.nanoTime() + 20_000_000_000L;
                while (delivered.get() < requests && System.nanoTime() < deadline) {
                    Thread.sleep(10);
                }
                assertEquals(requests, delivered.get(), "every REQUESTOFFERS answered (no hang, no lost message); last sent " + last);
                assertTrue(unexpected.isEmpty(), unexpected.toString());
                assertTrue(replyProblems.isEmpty(), replyProblems.toString());
                assertTrue(control.isAlive(), "control thread still running");
                assertTrue(faults.get() > CASES / 4, "hostile messages are counted as faults: " + faults.get());
                System.out.println("VmbusControlFuzzTest: " + CASES + " cases, " + faults.get() + " refused as faults, "
                    + requests + " REQUESTOFFERS answered, 0 unexpected");
            } finally {
                server.close();
                control.join(5_000);
                guest.close();
                drain.join(5_000);
            }
        }
    }

    /** Counts ALLOFFERS_DELIVERED; every reply must itself be a well-formed host message. */
    private static void drain(UnixSocket guest, AtomicLong delivered, ConcurrentLinkedQueue<String> problems) {
        MemorySegment buf = Arena.ofAuto().allocate(ChannelMessage.MAX_LENGTH + 16, 8);
        int[] fds = new int[UnixSocket.MAX_FDS];
        while (!guest.isClosed()) {
            long n;
            try {
                n = guest.receive(buf, fds, 100);
            } catch (RuntimeException e) {
                return; // closed under us at the end
            }
            if (n < 0) {
                return;
            }
            if (n == 0) {
                continue;
            }
            if (n < ChannelMessage.HEADER_LENGTH || n > ChannelMessage.MAX_LENGTH) {
                problems.add("host sent " + n + " bytes");
            } else if (ChannelMessage.type(buf) == ChannelMessage.ALLOFFERS_DELIVERED) {
                delivered.incrementAndGet();
            }
        }
    }

    /** Writes one message into {@code m} and returns its length. */
    private static int build(SplittableRandom r, MemorySegment m) {
        m.fill((byte) 0);
        int type = TYPES[r.nextInt(TYPES.length)];
        int natural = switch (type) {
            case ChannelMessage.OPENCHANNEL -> ChannelMessage.OPEN_LENGTH;
            case ChannelMessage.CLOSECHANNEL -> ChannelMessage.RELID_LENGTH;
            case ChannelMessage.GPADL_HEADER -> ChannelMessage.GPADL_HEADER_PFNS + 8 * (1 + r.nextInt(ChannelMessage.GPADL_HEADER_MAX_PFNS));
            case ChannelMessage.GPADL_BODY -> ChannelMessage.BODY_PFNS + 8 * (1 + r.nextInt(ChannelMessage.BODY_MAX_PFNS));
            case ChannelMessage.GPADL_TEARDOWN -> ChannelMessage.GPADL_TEARDOWN_LENGTH;
            default -> ChannelMessage.HEADER_LENGTH;
        };
        ChannelMessage.u32(m, 0, type);
        ChannelMessage.u32(m, ChannelMessage.RELID, r.nextInt(4) == 0 ? pickInt(r) : 1 + r.nextInt(3));
        int handle = r.nextInt(4) == 0 ? pickInt(r) : 1 + r.nextInt(8);
        ChannelMessage.u32(m, ChannelMessage.GPADL_HANDLE, handle);
        switch (type) {
            case ChannelMessage.GPADL_HEADER -> {
                int pages = r.nextInt(3) == 0 ? r.nextInt(1 << 16) : 1 + r.nextInt(40);
                int byteOffset = r.nextInt(4) == 0 ? pickInt(r) : r.nextInt(2) * r.nextInt(4096);
                int byteCount = r.nextInt(4) == 0 ? pickInt(r) : pages * 4096 - byteOffset;
                ChannelMessage.u16(m, ChannelMessage.GPADL_RANGECOUNT, r.nextInt(5) == 0 ? r.nextInt(1 << 16) : 1);
                ChannelMessage.u16(m, ChannelMessage.GPADL_RANGE_BUFLEN, r.nextInt(5) == 0 ? r.nextInt(1 << 16) : 8 + 8 * pages);
                ChannelMessage.u32(m, ChannelMessage.GPADL_BYTE_COUNT, byteCount);
                ChannelMessage.u32(m, ChannelMessage.GPADL_BYTE_OFFSET, byteOffset);
                fillPfns(r, m, ChannelMessage.GPADL_HEADER_PFNS, natural);
            }
            case ChannelMessage.GPADL_BODY -> {
                ChannelMessage.u32(m, ChannelMessage.BODY_MSGNUMBER, r.nextInt());
                fillPfns(r, m, ChannelMessage.BODY_PFNS, natural);
            }
            case ChannelMessage.OPENCHANNEL -> {
                ChannelMessage.u32(m, ChannelMessage.OPEN_GPADL, handle);
                ChannelMessage.u32(m, ChannelMessage.OPEN_TARGET_VP, r.nextInt(4) == 0 ? pickInt(r) : 0);
                ChannelMessage.u32(m, ChannelMessage.OPEN_DOWNSTREAM_OFFSET, r.nextInt(3) == 0 ? pickInt(r) : 1 + r.nextInt(8));
            }
            default -> {
                if (r.nextInt(3) == 0) { // random body bytes behind an ordinary header
                    for (int i = ChannelMessage.HEADER_LENGTH; i < ChannelMessage.MAX_LENGTH; i++) {
                        m.set(ValueLayout.JAVA_BYTE, i, (byte) r.nextInt());
                    }
                }
            }
        }
        if (r.nextInt(10) == 0) { // flip a few bytes anywhere
            for (int k = 1 + r.nextInt(4); k > 0; k--) {
                m.set(ValueLayout.JAVA_BYTE, r.nextInt(natural), (byte) r.nextInt());
            }
        }
        return switch (r.nextInt(12)) {
            case 0 -> 1 + r.nextInt(Math.max(1, natural - 1)); // truncated
            case 1 -> ChannelMessage.MAX_LENGTH + 1 + r.nextInt(16); // longer than any message
            case 2 -> natural + r.nextInt(ChannelMessage.MAX_LENGTH - natural + 1); // trailing bytes
            default -> natural;
        };
    }

    private static void fillPfns(SplittableRandom r, MemorySegment m, int from, int to) {
        for (int at = from; at + 8 <= to; at += 8) {
            ChannelMessage.u64(m, at, r.nextInt(5) == 0 ? PFNS[r.nextInt(PFNS.length)] : r.nextLong(PAGES));
        }
    }

    private static int pickInt(SplittableRandom r) {
        return r.nextInt(3) == 0 ? r.nextInt() : INTS[r.nextInt(INTS.length)];
    }
}
