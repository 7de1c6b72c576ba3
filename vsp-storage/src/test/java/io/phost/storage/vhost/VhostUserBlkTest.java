package io.phost.storage.vhost;

import io.phost.core.vhost.VhostUserDescriptor;
import io.phost.core.vhost.VhostUserFrontend;
import io.phost.vhdx.RawDisk;
import io.phost.storage.tools.Proc;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.vhdx.VhdxCreateOptions;
import io.phost.vhdx.vhdx.VhdxDisk;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.Map;

import static io.phost.storage.vhost.VirtioBlkDescriptor.*;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * vhost-user-blk end to end with the test front-end ({@link VhostUserFrontend}: memfd guest memory,
 * split virtqueues, kick and call eventfds) standing in for QEMU, against a raw file and a dynamic VHDX.
 * Every request type runs; the images are then checked by the real tools:
 * <pre>
 *   qemu-img check -f vhdx disk.vhdx
 *   qemu-io -f raw|vhdx -c 'read -P 0xa1 0 64k' -c 'read -P 0xb2 1M 128k' -c 'read -P 0 2M 64k' -c 'read -P 0 3M 256k' IMAGE
 * </pre>
 */
@Timeout(120)
class VhostUserBlkTest {
    private static final long SIZE = 16L << 20;
    /** Everything the back-end offers, with split rings. */
    private static final long WANTED = ~(1L << VhostUserDescriptor.F_RING_PACKED);
    /** Everything with packed rings (dirty logging is split-only). */
    private static final long PACKED = ~(1L << VhostUserDescriptor.F_LOG_ALL);

    @TempDir
    Path dir;

    @Test
    void shouldServeEveryRequestTypeOnARawFileThatQemuIoThenReadsBack() throws Exception {
        Path image = dir.resolve("disk.raw");
        RawDisk.createSparse(image, SIZE);
        try (RawDisk disk = RawDisk.openFile(image, false, false)) {
            exercise(disk, "raw-disk", WANTED);
        }
        verifyWithQemu(image, "raw");
    }

    @Test
    void shouldServeEveryRequestTypeOnAVhdxThatQemuImgChecks() throws Exception {
        Path image = dir.resolve("disk.vhdx");
        VhdxDisk.create(image, VhdxCreateOptions.dynamic(SIZE).withBlockSize(1 << 20)).close();
        try (VhdxDisk disk = VhdxDisk.open(image, false)) {
            exercise(disk, "vhdx-disk", PACKED);
        }
        String check = Proc.ok(60, "qemu-img", "check", "-f", "vhdx", image.toString());
        assertTrue(check.contains("No errors"), check);
        verifyWithQemu(image, "vhdx");
    }

    /** Pass-through: a loop device ({@code losetup -f --show backing.img}), detached afterwards. */
    @Test
    void shouldServeEveryRequestTypeOnAPassThroughLoopDevice() throws Exception {
        org.junit.jupiter.api.Assumptions.assumeTrue("root".equals(System.getProperty("user.name")), "loop devices need root");
        assertTrue(Proc.exists("losetup"), "losetup (util-linux) is missing");
        Path backing = dir.resolve("backing.img");
        RawDisk.createSparse(backing, SIZE);
        String loop = Proc.ok(30, "losetup", "-f", "--show", backing.toString()).trim();
        try {
            try (RawDisk dev = RawDisk.openDevice(Path.of(loop), false)) {
                assertTrue(dev.blockDevice());
                exercise(dev, "loop-disk", WANTED);
            }
        } finally {
            Proc.run(30, "losetup", "-d", loop);
        }
        verifyWithQemu(backing, "raw");
    }

    @Test
    void shouldRefuseWritesAndAdvertiseReadOnlyWhenExportedReadOnly() throws Exception {
        Path image = dir.resolve("ro.raw");
        RawDisk.createSparse(image, SIZE);
        try (RawDisk disk = RawDisk.openFile(image, false, false);
             VhostUserBlkExport e = VhostUserBlkExport.start("ro", disk, dir.resolve("ro.sock"),
                 VhostUserBlkExport.Options.defaults().withReadOnly(true).withQueues(1));
             VhostUserFrontend f = VhostUserFrontend.connect(e.socketPath(), 8 << 20)) {
            long features = f.negotiate(WANTED);
            assertTrue((features & (1L << F_RO)) != 0, "VIRTIO_BLK_F_RO offered");
            assertEquals(0, features & (1L << F_DISCARD), "no DISCARD on a read-only disk");
            VhostUserFrontend.Queue q = f.startQueue(0, 16);
            Blk blk = new Blk(f, q);
            long buf = f.alloc(4096, 4096);
            f.at(buf, 4096).fill((byte) 0x5A);
            assertEquals(S_IOERR, blk.request(T_OUT, 0, buf, 4096, false)[0]);
            assertEquals(S_OK, blk.request(T_IN, 0, buf, 4096, true)[0]);
            assertEquals(0, f.at(buf, 4096).get(ValueLayout.JAVA_BYTE, 100), "the write never reached the disk");
            assertTrue(e.readOnly());
        }
    }

    /** Four queues driven at once from four threads (QEMU's num-queues = vCPUs), all admitted through one QoS flow. */
    @Test
    void shouldServeFourQueuesConcurrentlyThroughOneQosFlow() throws Exception {
        serveFourQueuesConcurrently(WANTED);
    }

    @Test
    void shouldServeFourPackedQueuesConcurrentlyThroughOneQosFlow() throws Exception {
        serveFourQueuesConcurrently(PACKED);
    }

    private void serveFourQueuesConcurrently(long wanted) throws Exception {
        Path image = dir.resolve("mq.raw");
        RawDisk.createSparse(image, SIZE);
        java.util.concurrent.atomic.AtomicLong admitted = new java.util.concurrent.atomic.AtomicLong();
        java.util.Set<String> admittingThreads = java.util.concurrent.ConcurrentHashMap.newKeySet();
        io.phost.qos.QosFlow flow = new io.phost.qos.QosFlow() {
            @Override
            public long tryAdmit(int bytes, long nowNanos) {
                admitted.incrementAndGet();
                admittingThreads.add(Thread.currentThread().getName());
                return 0;
            }

            @Override
            public void completed(int bytes, long latencyNanos, long nowNanos) {
            }
        };
        int queues = 4;
        int perQueue = 64;
        try (RawDisk disk = RawDisk.openFile(image, false, false);
             VhostUserBlkExport e = VhostUserBlkExport.start("mq", disk, dir.resolve("mq.sock"),
                 VhostUserBlkExport.Options.defaults().withQueues(queues).withQos(flow));
             VhostUserFrontend f = VhostUserFrontend.connect(e.socketPath(), 32 << 20)) {
            f.negotiate(wanted);
            assertEquals(queues, f.getU64(io.phost.core.vhost.VhostUserRequest.GET_QUEUE_NUM));
            Blk[] q = new Blk[queues];
            long[] buf = new long[queues];
            for (int k = 0; k < queues; k++) {
                q[k] = new Blk(f, f.startQueue(k, 64));
                buf[k] = f.alloc(4096, 4096);
            }
            assertTrue(waitFor(() -> e.runningQueues() == queues), "every queue runs");
            java.util.concurrent.ConcurrentLinkedQueue<Throwable> failures = new java.util.concurrent.ConcurrentLinkedQueue<>();
            Thread[] drivers = new Thread[queues];
            for (int k = 0; k < queues; k++) {
                int queue = k;
                drivers[k] = Thread.ofPlatform().start(() -> {
                    try {
                        MemorySegment b = f.at(buf[queue], 4096);
                        for (int i = 0; i < perQueue; i++) { // queue k writes blocks k, k+4, k+8, ... each with its own byte
                            b.fill((byte) (queue * perQueue + i));
                            assertEquals(S_OK, q[queue].request(T_OUT, 8L * (queues * i + queue), buf[queue], 4096, false)[0]);
                        }
                        for (int i = 0; i < perQueue; i++) {
                            b.fill((byte) 0);
                            assertEquals(S_OK, q[queue].request(T_IN, 8L * (queues * i + queue), buf[queue], 4096, true)[0]);
                            for (int off = 0; off < 4096; off += 512) {
                                assertEquals((byte) (queue * perQueue + i), b.get(ValueLayout.JAVA_BYTE, off), "queue " + queue + " block " + i);
                            }
                        }
                    } catch (Throwable t) {
                        failures.add(t);
                    }
                });
            }
            for (Thread t : drivers) {
                t.join();
            }
            assertTrue(failures.isEmpty(), () -> failures.peek().toString());
            assertEquals(2L * queues * perQueue, admitted.get(), "every I/O of every queue went through the one flow");
            assertTrue(admittingThreads.size() > 1, "the queues' own workers admitted them: " + admittingThreads);
            assertNull(e.lastError());
        }
        // The interleaved blocks as the four queues wrote them, read by qemu-io.
        for (int k = 0; k < queues; k++) {
            int i = perQueue - 1;
            String out = Proc.ok(60, "qemu-io", "-f", "raw", "-c",
                "read -P " + ((k * perQueue + i) & 0xff) + " " + 4096L * (queues * i + k) + " 4k", image.toString());
            assertTrue(!out.contains("Pattern verification failed"), out);
        }
    }

    private void exercise(VirtualDisk disk, String name, long wanted) throws Exception {
        try (VhostUserBlkExport e = VhostUserBlkExport.start(name, disk, dir.resolve(name + ".sock"),
                 VhostUserBlkExport.Options.defaults().withQueues(2));
             VhostUserFrontend f = VhostUserFrontend.connect(e.socketPath(), 32 << 20)) {
            long features = f.negotiate(wanted);
            assertEquals(wanted == PACKED, (features & (1L << VhostUserDescriptor.F_RING_PACKED)) != 0, "packed ring negotiated");
            for (int bit : new int[] {F_SEG_MAX, F_BLK_SIZE, F_FLUSH, F_TOPOLOGY, F_MQ, F_DISCARD, F_WRITE_ZEROES,
                VhostUserDescriptor.F_VERSION_1, VhostUserDescriptor.F_RING_EVENT_IDX, VhostUserDescriptor.F_RING_INDIRECT_DESC}) {
                assertTrue((features & (1L << bit)) != 0, "feature bit " + bit + " negotiated");
            }
            assertEquals(2, f.getU64(io.phost.core.vhost.VhostUserRequest.GET_QUEUE_NUM));
            MemorySegment config = f.config(CONFIG_LENGTH);
            assertEquals(SIZE / 512, config.get(LE64, CAPACITY_OFFSET), "capacity in 512-byte sectors");
            assertEquals(disk.logicalSectorSize(), config.get(LE32, BLK_SIZE_OFFSET));
            assertEquals(SEG_MAX, config.get(LE32, SEG_MAX_OFFSET));
            assertEquals(2, config.get(LE16, NUM_QUEUES_OFFSET));
            assertEquals(1, config.get(LE32, MAX_WRITE_ZEROES_SEG_OFFSET));

            Blk q0 = new Blk(f, f.startQueue(0, 64));
            Blk q1 = new Blk(f, f.startQueue(1, 64));
            assertTrue(waitFor(() -> e.runningQueues() == 2), "both queues run");

            // OUT of 64 KiB at 0 in three data buffers; 128 KiB at 1 MiB through an indirect table on queue 1.
            long a = f.alloc(64 << 10, 4096);
            f.at(a, 64 << 10).fill((byte) 0xA1);
            assertArrayEquals(new int[] {S_OK, 1}, q0.requestSplit(T_OUT, 0, a, 64 << 10, false, 3));
            long b = f.alloc(128 << 10, 4096);
            f.at(b, 128 << 10).fill((byte) 0xB2);
            q1.indirect = true;
            assertArrayEquals(new int[] {S_OK, 1}, q1.request(T_OUT, (1 << 20) / 512, b, 128 << 10, false));

            // IN reads both back (zero copy into guest memory), the used length counts data + status.
            long r = f.alloc(128 << 10, 4096);
            assertArrayEquals(new int[] {S_OK, (64 << 10) + 1}, q1.request(T_IN, 0, r, 64 << 10, true));
            assertTrue(allBytes(f.at(r, 64 << 10), (byte) 0xA1), "read back pattern A");
            assertArrayEquals(new int[] {S_OK, (128 << 10) + 1}, q0.requestSplit(T_IN, (1 << 20) / 512, r, 128 << 10, true, 4));
            assertTrue(allBytes(f.at(r, 128 << 10), (byte) 0xB2), "read back pattern B");

            assertArrayEquals(new int[] {S_OK, 1}, q0.request(T_FLUSH, 0, 0, 0, false));

            long id = f.alloc(20, 8);
            int[] got = q0.request(T_GET_ID, 0, id, 20, true);
            assertEquals(S_OK, got[0]);
            assertEquals(name, new String(f.at(id, name.length()).toArray(ValueLayout.JAVA_BYTE)));

            // DISCARD and WRITE_ZEROES (with unmap) over written ranges read back as zeros.
            long c = f.alloc(256 << 10, 4096);
            f.at(c, 256 << 10).fill((byte) 0xC3);
            assertEquals(S_OK, q0.request(T_OUT, (2 << 20) / 512, c, 64 << 10, false)[0]);
            assertEquals(S_OK, q0.request(T_OUT, (3 << 20) / 512, c, 256 << 10, false)[0]);
            long seg = f.alloc(16, 16);
            segment(f, seg, (2 << 20) / 512, (64 << 10) / 512, 0);
            assertEquals(S_OK, q0.request(T_DISCARD, 0, seg, 16, false)[0]);
            segment(f, seg, (3 << 20) / 512, (256 << 10) / 512, 1);
            assertEquals(S_OK, q1.request(T_WRITE_ZEROES, 0, seg, 16, false)[0]);
            assertEquals(S_OK, q0.request(T_IN, (2 << 20) / 512, r, 64 << 10, true)[0]);
            assertTrue(allBytes(f.at(r, 64 << 10), (byte) 0), "discarded range reads as zeros");
            assertEquals(S_OK, q0.request(T_IN, (3 << 20) / 512, r, 128 << 10, true)[0]);
            assertTrue(allBytes(f.at(r, 128 << 10), (byte) 0), "zeroed range reads as zeros");

            // Bad requests fail alone: past the end, not a whole block, an unknown type, a discard flag.
            assertEquals(S_IOERR, q0.request(T_IN, SIZE / 512, r, 4096, true)[0]);
            assertEquals(S_IOERR, q0.request(T_OUT, 0, r, 513, false)[0]);
            assertEquals(S_UNSUPP, q0.request(99, 0, r, 512, true)[0]);
            segment(f, seg, 0, 8, 1);
            assertEquals(S_UNSUPP, q0.request(T_DISCARD, 0, seg, 16, false)[0]);
            assertArrayEquals(new int[] {S_OK, 4097}, q0.request(T_IN, 0, r, 4096, true), "the queue still serves");

            Map<String, Long> stats = e.stats().snapshot();
            assertTrue(stats.get("reads") >= 4 && stats.get("writes") >= 4, stats.toString());
            assertNull(e.lastError(), "no protocol error");
            int base = f.stopQueue(0);
            if (wanted == PACKED) { // avail position and wrap | used position and wrap << 16: every chain returned
                assertEquals(base & 0xFFFF, base >>> 16, "GET_VRING_BASE: used where avail is, 0x" + Integer.toHexString(base));
            } else {
                assertEquals(q0.used(), base, "GET_VRING_BASE reports every request as consumed");
            }
        }
    }

    private static void verifyWithQemu(Path image, String format) throws Exception {
        String out = Proc.ok(60, "qemu-io", "-f", format, "-c", "read -P 0xa1 0 64k", "-c", "read -P 0xb2 1M 128k",
            "-c", "read -P 0 2M 64k", "-c", "read -P 0 3M 256k", image.toString());
        assertTrue(!out.contains("Pattern verification failed"), out);
    }

    private static void segment(VhostUserFrontend f, long gpa, long sector, int sectors, int flags) {
        MemorySegment s = f.at(gpa, 16);
        s.set(LE64, 0, sector);
        s.set(LE32, 8, sectors);
        s.set(LE32, 12, flags);
    }

    private static boolean allBytes(MemorySegment s, byte v) {
        for (long i = 0; i < s.byteSize(); i++) {
            if (s.get(ValueLayout.JAVA_BYTE, i) != v) {
                return false;
            }
        }
        return true;
    }

    private static boolean waitFor(java.util.function.BooleanSupplier c) throws InterruptedException {
        for (int i = 0; i < 200 && !c.getAsBoolean(); i++) {
            Thread.sleep(10);
        }
        return c.getAsBoolean();
    }

    /**
     * The request header need not be a buffer of its own (virtio 1.2 §2.6.4: no framing assumed): one split over two
     * buffers (8 + 8 bytes), and one sharing its buffer with the data, are decoded as the usual one-buffer header.
     */
    @Test
    void shouldDecodeAHeaderSplitOverTwoBuffersOrSharingItsBufferWithTheData() throws Exception {
        Path image = dir.resolve("framing.raw");
        RawDisk.createSparse(image, SIZE);
        Path sock = dir.resolve("framing.sock");
        try (RawDisk disk = RawDisk.openFile(image, false, false);
             VhostUserBlkExport e = VhostUserBlkExport.start("framing", disk, sock, VhostUserBlkExport.Options.defaults().withQueues(1));
             VhostUserFrontend f = VhostUserFrontend.connect(sock, 8 << 20)) {
            f.negotiate(WANTED);
            Blk blk = new Blk(f, f.startQueue(0, 64));
            long hdr = f.alloc(16 + 4096, 4096);
            long status = f.alloc(1, 1);
            long data = f.alloc(4096, 4096);
            // Split header: [type, reserved][sector][data 4 KiB][status] writes block 3 (sector 24).
            f.at(hdr, 16).set(LE32, 0, T_OUT);
            f.at(hdr, 16).set(LE32, 4, 0);
            f.at(hdr, 16).set(LE64, 8, 24L);
            f.at(data, 4096).fill((byte) 0x5A);
            assertEquals(S_OK, blk.requestChain(new long[] {hdr, hdr + 8, data, status}, new int[] {8, 8, 4096, 1},
                new boolean[] {false, false, false, true}, status)[0], "split header: write");
            // Header and data in one buffer: [header + data 4 KiB][status] writes block 5 (sector 40).
            MemorySegment both = f.at(hdr, 16 + 4096);
            both.set(LE32, 0, T_OUT);
            both.set(LE32, 4, 0);
            both.set(LE64, 8, 40L);
            both.asSlice(16, 4096).fill((byte) 0xA5);
            assertEquals(S_OK, blk.requestChain(new long[] {hdr, status}, new int[] {16 + 4096, 1},
                new boolean[] {false, true}, status)[0], "header sharing its buffer: write");
            long back = f.alloc(4096, 4096);
            assertEquals(S_OK, blk.request(T_IN, 24L, back, 4096, true)[0]);
            assertEquals((byte) 0x5A, f.at(back, 4096).get(ValueLayout.JAVA_BYTE, 0));
            assertEquals((byte) 0x5A, f.at(back, 4096).get(ValueLayout.JAVA_BYTE, 4095));
            assertEquals(S_OK, blk.request(T_IN, 40L, back, 4096, true)[0]);
            assertEquals((byte) 0xA5, f.at(back, 4096).get(ValueLayout.JAVA_BYTE, 0));
            assertEquals((byte) 0xA5, f.at(back, 4096).get(ValueLayout.JAVA_BYTE, 4095));
            // A split header of a wrong length (8 + 4 bytes) is an error, not a read past it.
            f.at(hdr, 16).set(LE32, 0, T_IN);
            assertEquals(S_IOERR, blk.requestChain(new long[] {hdr, hdr + 8, data, status}, new int[] {8, 4, 4096, 1},
                new boolean[] {false, false, true, true}, status)[0], "12-byte header");
        }
    }

    /** A virtio-blk driver over one test queue: builds header / data / status chains and waits for each. */
    static final class Blk {
        private final VhostUserFrontend f;
        private final VhostUserFrontend.Queue q;
        private final long header;
        private final long status;
        private int completed;
        boolean indirect;

        Blk(VhostUserFrontend f, VhostUserFrontend.Queue q) {
            this.f = f;
            this.q = q;
            this.header = f.alloc(16, 16);
            this.status = f.alloc(1, 1);
        }

        int used() {
            return completed;
        }

        int[] request(int type, long sector, long data, int len, boolean deviceWrites) {
            return requestSplit(type, sector, data, len, deviceWrites, 1);
        }

        /** Sends a chain laid out by the caller whose status byte is at {@code statusAt}; returns {status, used length}. */
        int[] requestChain(long[] addrs, int[] lens, boolean[] writable, long statusAt) {
            f.at(statusAt, 1).set(ValueLayout.JAVA_BYTE, 0, (byte) 0x7F);
            int head = q.add(addrs, lens, writable);
            q.kick();
            int[] used = q.awaitUsed(10_000);
            assertNotNull(used, "chain completed");
            assertEquals(head, used[0], "used id is the chain head");
            completed++;
            return new int[] {f.at(statusAt, 1).get(ValueLayout.JAVA_BYTE, 0), used[1]};
        }

        /** Sends one request with its data in {@code pieces} buffers; returns {status, used length}. */
        int[] requestSplit(int type, long sector, long data, int len, boolean deviceWrites, int pieces) {
            MemorySegment h = f.at(header, 16);
            h.set(LE32, 0, type);
            h.set(LE32, 4, 0);
            h.set(LE64, 8, sector);
            f.at(status, 1).set(ValueLayout.JAVA_BYTE, 0, (byte) 0x7F);
            int n = len == 0 ? 2 : 2 + pieces;
            long[] addrs = new long[n];
            int[] lens = new int[n];
            boolean[] w = new boolean[n];
            addrs[0] = header;
            lens[0] = 16;
            int piece = len / Math.max(1, pieces);
            for (int i = 0; len > 0 && i < pieces; i++) {
                addrs[1 + i] = data + (long) piece * i;
                lens[1 + i] = i == pieces - 1 ? len - piece * i : piece;
                w[1 + i] = deviceWrites;
            }
            addrs[n - 1] = status;
            lens[n - 1] = 1;
            w[n - 1] = true;
            int head = indirect ? q.addIndirect(addrs, lens, w) : q.add(addrs, lens, w);
            q.kick();
            int[] used = q.awaitUsed(10_000);
            assertNotNull(used, "request type " + type + " completed");
            assertEquals(head, used[0], "used id is the chain head");
            completed++;
            return new int[] {f.at(status, 1).get(ValueLayout.JAVA_BYTE, 0), used[1]};
        }
    }
}
