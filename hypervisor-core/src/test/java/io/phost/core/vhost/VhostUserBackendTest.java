package io.phost.core.vhost;

import io.phost.core.sys.EventFd;
import io.phost.core.sys.Fd;
import io.phost.core.sys.SharedMemory;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.function.Consumer;

import static io.phost.core.vhost.VhostUserDescriptor.*;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The vhost-user transport with a test device that echoes readable bytes into writable ones: negotiation,
 * config, rings with direct and indirect chains, and hostile front-ends. Each hostile case must end with a
 * named error for that connection only; the back-end then serves a well-behaved front-end again.
 */
@Timeout(60)
class VhostUserBackendTest {
    private static final long ALL = ~0L;
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED;
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED;

    @TempDir
    Path dir;
    private VhostUserBackend backend;

    @BeforeEach
    void start() {
        backend = VhostUserBackend.start("echo", dir.resolve("echo.sock"), new EchoDevice(2));
    }

    @AfterEach
    void stop() {
        backend.close();
    }

    @Test
    void shouldNegotiateAndEchoThroughDirectAndIndirectChains() {
        try (VhostUserFrontend f = VhostUserFrontend.connect(backend.socketPath(), 4 << 20)) {
            long features = f.negotiate(ALL);
            assertEquals(TRANSPORT_FEATURES, features);
            assertEquals(2, f.getU64(VhostUserRequest.GET_QUEUE_NUM));
            MemorySegment config = f.config(8);
            assertEquals((byte) 0xC0, config.get(ValueLayout.JAVA_BYTE, 0));
            VhostUserFrontend.Queue q = f.startQueue(0, 8);
            echo(f, q, false);
            echo(f, q, true);
            for (int i = 0; i < 40; i++) { // wraps the 8-entry ring five times
                echo(f, q, i % 2 == 0);
            }
            assertEquals(42, f.stopQueue(0), "GET_VRING_BASE returns the next avail index");
        }
        assertEquals(null, backend.lastError());
    }

    @Test
    void shouldCallOnlyWhenTheDriversUsedEventIsPassed() throws InterruptedException {
        try (VhostUserFrontend f = VhostUserFrontend.connect(backend.socketPath(), 1 << 20)) {
            assertTrue((f.negotiate(ALL) & (1L << F_RING_EVENT_IDX)) != 0);
            VhostUserFrontend.Queue q = f.startQueue(0, 8);
            echo(f, q, false);
            q.drainCalls();
            q.setUsedEvent(10); // "call me when used idx passes 10"
            long src = f.alloc(8, 8);
            long dst = f.alloc(8, 8);
            q.add(new long[] {src, dst}, new int[] {8, 8}, new boolean[] {false, true});
            q.kick();
            for (int i = 0; i < 500 && q.usedIndex() != 2; i++) {
                Thread.sleep(2);
            }
            assertEquals(2, q.usedIndex(), "the request completed");
            Thread.sleep(20);
            assertEquals(0, q.drainCalls(), "no call before used_event is passed");
            q.setUsedEvent(2); // "call me when used idx passes 2"
            q.add(new long[] {src, dst}, new int[] {8, 8}, new boolean[] {false, true});
            q.kick();
            for (int i = 0; i < 500 && q.usedIndex() != 3; i++) {
                Thread.sleep(2);
            }
            assertEquals(3, q.usedIndex());
            long calls = 0;
            for (int i = 0; i < 100 && calls == 0; i++) {
                Thread.sleep(2);
                calls = q.drainCalls();
            }
            assertEquals(1, calls, "one call once used_event is passed");
        }
    }

    @Test
    void shouldPinQueueWorkersToTheConfiguredCpus() throws Exception {
        try (VhostUserBackend pinned = VhostUserBackend.start("vhpin", dir.resolve("pin.sock"), new EchoDevice(1), java.util.List.of(0));
             VhostUserFrontend f = VhostUserFrontend.connect(pinned.socketPath(), 1 << 20)) {
            f.negotiate(ALL);
            VhostUserFrontend.Queue q = f.startQueue(0, 8);
            echo(f, q, false);
            String allowed = null;
            try (var tasks = java.nio.file.Files.list(Path.of("/proc/self/task"))) {
                for (Path t : tasks.toList()) {
                    if (java.nio.file.Files.readString(t.resolve("comm")).strip().equals("vhpin-q0")) {
                        allowed = java.nio.file.Files.readAllLines(t.resolve("status")).stream()
                            .filter(l -> l.startsWith("Cpus_allowed_list:")).findFirst().orElseThrow().split(":")[1].strip();
                    }
                }
            }
            assertEquals("0", allowed, "the queue worker thread runs on CPU 0 only");
        }
    }

    private static void echo(VhostUserFrontend f, VhostUserFrontend.Queue q, boolean indirect) {
        long src = f.alloc(300, 8);
        long dst = f.alloc(300, 8);
        byte[] data = new byte[300];
        new java.util.Random(src).nextBytes(data);
        MemorySegment.copy(MemorySegment.ofArray(data), 0, f.at(src, 300), 0, 300);
        long[] a = {src, src + 100, dst, dst + 7};
        int[] l = {100, 200, 7, 293};
        boolean[] w = {false, false, true, true};
        int head = indirect ? q.addIndirect(a, l, w) : q.add(a, l, w);
        q.kick();
        int[] used = q.awaitUsed(5_000);
        assertNotNull(used, "echo completed");
        assertEquals(head, used[0]);
        assertEquals(300, used[1]);
        assertArrayEquals(data, f.at(dst, 300).toArray(ValueLayout.JAVA_BYTE));
    }

    // ---- hostile front-ends: message level ----

    @Test
    void shouldSendConfigChangeOnTheBackendChannelTheFrontEndSetUp() {
        assertFalse(backend.notifyConfigChanged(), "nobody connected");
        try (io.phost.core.sys.UnixSocket listener = io.phost.core.sys.UnixSocket.listenStream(dir.resolve("backend-req.sock"), 1);
             io.phost.core.sys.UnixSocket ours = io.phost.core.sys.UnixSocket.connectStream(dir.resolve("backend-req.sock"));
             io.phost.core.sys.UnixSocket theirs = listener.accept(5_000);
             VhostUserFrontend f = VhostUserFrontend.connect(backend.socketPath(), 1 << 20)) {
            f.negotiate(ALL);
            assertTrue((f.getU64(VhostUserRequest.GET_PROTOCOL_FEATURES) & (1L << PF_BACKEND_REQ)) != 0, "BACKEND_REQ offered");
            assertFalse(backend.notifyConfigChanged(), "no channel yet");
            f.send(VhostUserRequest.SET_BACKEND_REQ_FD, FLAG_NEED_REPLY, null, ours.fd());
            assertEquals(0, f.reply(VhostUserRequest.SET_BACKEND_REQ_FD, 5_000).get(U64, 0));
            assertTrue(backend.notifyConfigChanged());
            MemorySegment msg = java.lang.foreign.Arena.ofAuto().allocate(HEADER_LENGTH);
            assertEquals(HEADER_LENGTH, theirs.readFully(msg, 0, HEADER_LENGTH, new int[io.phost.core.sys.UnixSocket.MAX_FDS], 5_000));
            assertEquals(BACKEND_CONFIG_CHANGE_MSG, msg.get(U32, REQUEST_OFFSET));
            assertEquals(VERSION, msg.get(U32, FLAGS_OFFSET), "version 1, no reply asked");
            assertEquals(0, msg.get(U32, SIZE_OFFSET));
        }
    }

    @Test
    void shouldDropAFrontEndThatSendsAWrongVersion() {
        hostile(f -> f.sendRaw(header(1, 0x2, 0)), "BAD_HEADER");
    }

    @Test
    void shouldDropAFrontEndThatSendsAnUnknownRequest() {
        hostile(f -> f.sendRaw(header(999, VERSION, 0)), "UNSUPPORTED_REQUEST");
    }

    @Test
    void shouldDropAFrontEndThatSendsAWrongPayloadSize() {
        hostile(f -> f.send(VhostUserRequest.SET_VRING_NUM, 0, MemorySegment.ofArray(new byte[4])), "BAD_SIZE");
    }

    @Test
    void shouldDropAFrontEndThatAnnouncesAHugePayload() {
        hostile(f -> f.sendRaw(header(VhostUserRequest.SET_FEATURES.code, VERSION, 1 << 30)), "BAD_SIZE");
    }

    @Test
    void shouldDropAFrontEndWhoseMemoryTableLacksItsDescriptors() {
        hostile(f -> f.send(VhostUserRequest.SET_MEM_TABLE, 0, table(1, new long[][] {{0, 1 << 20, 0x7000_0000L, 0}})), "BAD_FD_COUNT");
    }

    @Test
    void shouldDropAFrontEndWhoseRegionRunsPastItsFile() {
        int fd = SharedMemory.createUnsealed("small", 1 << 20);
        try {
            hostile(f -> f.send(VhostUserRequest.SET_MEM_TABLE, 0, table(1, new long[][] {{0, 2 << 20, 0x7000_0000L, 0}}), fd), "BAD_REGION");
        } finally {
            Fd.close(fd);
        }
    }

    @Test
    void shouldDropAFrontEndWhoseRegionsOverlap() {
        int a = SharedMemory.createUnsealed("a", 1 << 20);
        int b = SharedMemory.createUnsealed("b", 1 << 20);
        try {
            hostile(f -> f.send(VhostUserRequest.SET_MEM_TABLE, 0,
                table(2, new long[][] {{0, 1 << 20, 0x7000_0000L, 0}, {0x80000, 1 << 20, 0x8000_0000L, 0}}), a, b), "BAD_REGION");
        } finally {
            Fd.close(a);
            Fd.close(b);
        }
    }

    @Test
    void shouldDropAFrontEndWhoseRegionWrapsTheAddressSpace() {
        int fd = SharedMemory.createUnsealed("wrap", 1 << 20);
        try {
            hostile(f -> f.send(VhostUserRequest.SET_MEM_TABLE, 0, table(1, new long[][] {{Long.MAX_VALUE - 4096, 1 << 20, 0, 0}}), fd), "BAD_REGION");
        } finally {
            Fd.close(fd);
        }
    }

    @Test
    void shouldDropAFrontEndWithAQueueSizeThatIsNotAPowerOfTwo() {
        hostile(f -> f.send(VhostUserRequest.SET_VRING_NUM, 0, state(0, 100)), "BAD_QUEUE_SIZE");
    }

    @Test
    void shouldDropAFrontEndAddressingAQueueBeyondTheDevice() {
        hostile(f -> f.send(VhostUserRequest.SET_VRING_NUM, 0, state(7, 8)), "BAD_QUEUE_INDEX");
    }

    @Test
    void shouldDropAFrontEndThatKicksBeforeSettingTheRingAddress() {
        hostile(f -> {
            f.negotiate(0);
            f.send(VhostUserRequest.SET_VRING_NUM, 0, state(0, 8));
            try (EventFd k = EventFd.create()) {
                f.send(VhostUserRequest.SET_VRING_KICK, 0, u64(0), k.fd());
            }
            f.send(VhostUserRequest.SET_VRING_ENABLE, 0, state(0, 1));
        }, "BAD_STATE");
    }

    @Test
    void shouldDropAFrontEndWhoseRingIsOutsideGuestMemory() {
        hostile(f -> {
            f.negotiate(0);
            f.send(VhostUserRequest.SET_VRING_NUM, 0, state(0, 8));
            MemorySegment a = MemorySegment.ofArray(new byte[VRING_ADDR_LENGTH]);
            a.set(U64, 8, f.userAddress(VhostUserFrontend.GPA_BASE) + f.memory().byteSize() - 64); // table runs off the end
            a.set(U64, 16, f.userAddress(VhostUserFrontend.GPA_BASE + 8192));
            a.set(U64, 24, f.userAddress(VhostUserFrontend.GPA_BASE + 4096));
            f.send(VhostUserRequest.SET_VRING_ADDR, 0, a);
            try (EventFd k = EventFd.create()) {
                f.send(VhostUserRequest.SET_VRING_KICK, 0, u64(0), k.fd());
            }
            f.send(VhostUserRequest.SET_VRING_ENABLE, 0, state(0, 1));
        }, "ADDRESS_NOT_MAPPED");
    }

    @Test
    void shouldDropAFrontEndThatSendsAKickWithTheWrongDescriptorCount() {
        hostile(f -> f.send(VhostUserRequest.SET_VRING_KICK, 0, u64(0)), "BAD_FD_COUNT");
    }

    @Test
    void shouldDropAFrontEndThatAsksForConfigOutsideTheSpace() {
        hostile(f -> {
            MemorySegment p = MemorySegment.ofArray(new byte[CONFIG_HEADER + 16]);
            p.set(U32, 0, 250);
            p.set(U32, 4, 16);
            f.send(VhostUserRequest.GET_CONFIG, 0, p);
        }, "BAD_CONFIG");
    }

    @Test
    void shouldDropAFrontEndThatAcksFeaturesNotOffered() {
        hostile(f -> f.send(VhostUserRequest.SET_FEATURES, 0, u64(1L << 40)), "BAD_FEATURES");
    }

    @Test
    void shouldKeepUpWithAFloodOfMessagesAndKicks() {
        try (VhostUserFrontend f = VhostUserFrontend.connect(backend.socketPath(), 1 << 20)) {
            f.negotiate(0); // the flood sets no NEED_REPLY: nothing to read back, the front-end only writes
            for (int i = 0; i < 20_000; i++) {
                f.send(VhostUserRequest.SET_VRING_NUM, 0, state(i & 1, 8 << (i % 4)));
            }
            assertEquals(TRANSPORT_FEATURES, f.getU64(VhostUserRequest.GET_FEATURES), "still answering after the flood");
            VhostUserFrontend.Queue q = f.startQueue(0, 8);
            for (int i = 0; i < 100_000; i++) {
                q.kick(); // kicks with nothing available: each wakes the worker, none may break it
            }
            echo(f, q, false);
        }
        assertEquals(null, backend.lastError());
    }

    // ---- hostile drivers: ring level (the queue breaks, the connection and back-end stay) ----

    @Test
    void shouldBreakOnlyTheQueueOnADescriptorLoop() {
        hostileRing((f, q) -> {
            long buf = f.alloc(64, 8);
            q.writeDescriptor(0, buf, 64, SplitVirtqueue.DESC_F_NEXT, 1);
            q.writeDescriptor(1, buf, 64, SplitVirtqueue.DESC_F_NEXT, 0);
            q.publish(0);
        }, "CHAIN_TOO_LONG");
    }

    @Test
    void shouldBreakOnlyTheQueueOnABufferOutsideGuestMemory() {
        hostileRing((f, q) -> {
            q.writeDescriptor(0, VhostUserFrontend.GPA_BASE + f.memory().byteSize() - 16, 32, 0, 0);
            q.publish(0);
        }, "ADDRESS_NOT_MAPPED");
    }

    @Test
    void shouldBreakOnlyTheQueueOnALengthThatOverflows() {
        hostileRing((f, q) -> {
            q.writeDescriptor(0, -8L, 0xFFFF_FFFF, 0, 0);
            q.publish(0);
        }, "ADDRESS_NOT_MAPPED");
    }

    @Test
    void shouldBreakOnlyTheQueueOnAHeadBeyondTheQueue() {
        hostileRing((f, q) -> q.publish(9), "BAD_DESCRIPTOR_INDEX");
    }

    @Test
    void shouldBreakOnlyTheQueueWhenTheAvailIndexJumps() {
        hostileRing((f, q) -> q.setAvailIndex(200), "AVAIL_INDEX_JUMP");
    }

    @Test
    void shouldBreakOnlyTheQueueOnNestedIndirectTables() {
        hostileRing((f, q) -> {
            long t = f.alloc(32, 16);
            MemorySegment s = f.at(t, 32);
            s.set(U64, 0, t);
            s.set(U32, 8, 32);
            s.set(ValueLayout.JAVA_SHORT_UNALIGNED, 12, (short) SplitVirtqueue.DESC_F_INDIRECT);
            q.writeDescriptor(0, t, 32, SplitVirtqueue.DESC_F_INDIRECT, 0);
            q.publish(0);
        }, "BAD_INDIRECT");
    }

    @Test
    void shouldBreakOnlyTheQueueOnReadableAfterWritable() {
        hostileRing((f, q) -> {
            long buf = f.alloc(64, 8);
            q.writeDescriptor(0, buf, 8, SplitVirtqueue.DESC_F_WRITE | SplitVirtqueue.DESC_F_NEXT, 1);
            q.writeDescriptor(1, buf, 8, 0, 0);
            q.publish(0);
        }, "BAD_DESCRIPTOR_ORDER");
    }

    /**
     * Runs {@code attack} on a fresh connection while another device serves a well-behaved front-end;
     * expects a hang-up naming {@code reason}, the other device untouched, then a healthy session.
     */
    private void hostile(Consumer<VhostUserFrontend> attack, String reason) {
        try (VhostUserBackend other = VhostUserBackend.start("other", dir.resolve("other.sock"), new EchoDevice(1));
             VhostUserFrontend good = VhostUserFrontend.connect(other.socketPath(), 1 << 20)) {
            good.negotiate(ALL);
            VhostUserFrontend.Queue gq = good.startQueue(0, 8);
            echo(good, gq, false);
            try (VhostUserFrontend f = VhostUserFrontend.connect(backend.socketPath(), 1 << 20)) {
                attack.accept(f);
                assertTrue(f.awaitHangUp(5_000), "back-end drops the connection");
            }
            waitForError(reason);
            echo(good, gq, true); // the other device kept its connection and serves on
            assertEquals(null, other.lastError());
        }
        shouldServeAfterwards();
    }

    private void hostileRing(java.util.function.BiConsumer<VhostUserFrontend, VhostUserFrontend.Queue> attack, String reason) {
        try (VhostUserFrontend f = VhostUserFrontend.connect(backend.socketPath(), 1 << 20)) {
            f.negotiate(ALL);
            VhostUserFrontend.Queue q0 = f.startQueue(0, 8);
            VhostUserFrontend.Queue q1 = f.startQueue(1, 8);
            attack.accept(f, q0);
            q0.kick();
            waitForError(reason);
            assertTrue(backend.lastError().startsWith("queue 0"), backend.lastError());
            echo(f, q1, false); // the other queue of the same device keeps serving
            assertEquals(1, backend.runningQueues());
        }
        shouldServeAfterwards();
    }

    private void waitForError(String reason) {
        for (int i = 0; i < 500 && (backend.lastError() == null || !backend.lastError().contains(reason)); i++) {
            try {
                Thread.sleep(10);
            } catch (InterruptedException e) {
                throw new AssertionError(e);
            }
        }
        assertNotNull(backend.lastError(), "an error was recorded");
        assertTrue(backend.lastError().contains(reason), "expected " + reason + ", got: " + backend.lastError());
    }

    private void shouldServeAfterwards() {
        try (VhostUserFrontend f = VhostUserFrontend.connect(backend.socketPath(), 1 << 20)) {
            f.negotiate(ALL);
            echo(f, f.startQueue(0, 8), true);
        }
    }

    static byte[] header(int code, int flags, int size) {
        MemorySegment h = MemorySegment.ofArray(new byte[HEADER_LENGTH]);
        h.set(U32, 0, code);
        h.set(U32, 4, flags);
        h.set(U32, 8, size);
        return h.toArray(ValueLayout.JAVA_BYTE);
    }

    static MemorySegment u64(long v) {
        MemorySegment s = MemorySegment.ofArray(new byte[8]);
        s.set(U64, 0, v);
        return s;
    }

    static MemorySegment state(int index, int num) {
        MemorySegment s = MemorySegment.ofArray(new byte[8]);
        s.set(U32, 0, index);
        s.set(U32, 4, num);
        return s;
    }

    /** A memory table payload of {gpa, size, uaddr, mmap_offset} rows. */
    static MemorySegment table(int n, long[][] rows) {
        MemorySegment p = MemorySegment.ofArray(new byte[MEM_TABLE_HEADER + REGION_LENGTH * rows.length]);
        p.set(U32, 0, n);
        for (int i = 0; i < rows.length; i++) {
            for (int k = 0; k < 4; k++) {
                p.set(U64, MEM_TABLE_HEADER + REGION_LENGTH * i + 8L * k, rows[i][k]);
            }
        }
        return p;
    }
}
