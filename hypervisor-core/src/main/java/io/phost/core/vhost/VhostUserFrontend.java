package io.phost.core.vhost;

import io.phost.core.sys.EventFd;
import io.phost.core.sys.Fd;
import io.phost.core.sys.SharedMemory;
import io.phost.core.sys.UnixSocket;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.file.Path;

import static io.phost.core.vhost.VhostUserDescriptor.*;

/**
 * A minimal vhost-user front-end, standing in for QEMU in tests and in {@code phost bench vhost}: guest
 * memory is a memfd it maps itself and hands to the back-end (one region at guest-physical
 * {@link #GPA_BASE}), and it drives split virtqueues as a virtio driver would, with kick and call eventfds.
 * <pre>
 *   try (VhostUserFrontend f = VhostUserFrontend.connect(sock, 64 << 20)) {
 *       f.negotiate(wantedFeatures);
 *       VhostUserFrontend.Queue q = f.startQueue(0, 128);
 *       long buf = f.alloc(4096, 4096);               // a guest-physical address
 *       int head = q.add(new long[] {hdr, buf, st}, new int[] {16, 4096, 1}, new boolean[] {false, true, true});
 *       q.kick();  q.awaitUsed(1000)  -> used id/len
 *   }
 * </pre>
 * Not thread-safe; one thread drives it. Allocation is fine here: this is the test-side driver.
 *
 * <p>Why one class of about 660 lines: it is the test-side mirror of the protocol, one method per request, and its
 * queues share the memory it maps; it has no other job.
 */
public final class VhostUserFrontend implements AutoCloseable {
    /** Guest-physical base of the one memory region (not 0, so a mix-up with offsets shows). */
    public static final long GPA_BASE = 0x4000_0000L;
    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED;
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED;
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED;

    private UnixSocket socket;
    private final int memFd;
    private final MemorySegment memory;
    private final MemorySegment out = Arena.ofAuto().allocate(HEADER_LENGTH + MAX_PAYLOAD, 8);
    private final MemorySegment in = Arena.ofAuto().allocate(HEADER_LENGTH + MAX_PAYLOAD, 8);
    private final java.util.List<Queue> queues = new java.util.ArrayList<>();
    private long next;
    private long features;
    private long protocolFeatures;
    private int inflightFd = -1;
    private long inflightSize;
    private int inflightQueues;
    private int inflightQueueSize;
    private int lastReplyFd = -1;

    private VhostUserFrontend(UnixSocket socket, int memFd, MemorySegment memory) {
        this.socket = socket;
        this.memFd = memFd;
        this.memory = memory;
        this.next = 4096;
    }

    /** Connects to a back-end's socket with {@code memorySize} bytes of fresh guest memory. */
    public static VhostUserFrontend connect(Path socketPath, long memorySize) {
        int fd = SharedMemory.createUnsealed("phost-vhost-guest", memorySize);
        MemorySegment m = SharedMemory.mapShared(fd, 0, memorySize);
        UnixSocket s;
        try {
            s = UnixSocket.connectStream(socketPath);
        } catch (RuntimeException e) {
            SharedMemory.unmap(m);
            Fd.close(fd);
            throw e;
        }
        return new VhostUserFrontend(s, fd, m);
    }

    /** The guest memory as this front-end maps it (offset 0 = {@link #GPA_BASE}). */
    public MemorySegment memory() {
        return memory;
    }

    /** A view of guest-physical [gpa, gpa+len). */
    public MemorySegment at(long gpa, long len) {
        return memory.asSlice(gpa - GPA_BASE, len);
    }

    /** Allocates guest memory (bump allocator); returns its guest-physical address. */
    public synchronized long alloc(long size, long align) {
        long at = (next + align - 1) & -align;
        if (at + size > memory.byteSize()) {
            throw new IllegalStateException("test guest memory exhausted");
        }
        next = at + size;
        return GPA_BASE + at;
    }

    /** The front-end's user address of a guest-physical address (what QEMU puts in SET_VRING_ADDR). */
    public long userAddress(long gpa) {
        return memory.address() + (gpa - GPA_BASE);
    }

    // ---- messages ----

    /** Sends a request with a payload of {@code size} bytes already written by {@code payload}; returns nothing. */
    public void send(VhostUserRequest req, int flags, MemorySegment payload, int... fds) {
        int size = payload == null ? 0 : (int) payload.byteSize();
        out.set(U32, REQUEST_OFFSET, req.code);
        out.set(U32, FLAGS_OFFSET, VERSION | flags);
        out.set(U32, SIZE_OFFSET, size);
        if (size > 0) {
            MemorySegment.copy(payload, 0, out, HEADER_LENGTH, size);
        }
        socket.send(out, HEADER_LENGTH + size, fds);
    }

    /** Sends raw bytes (hostile tests). */
    public void sendRaw(byte[] bytes, int... fds) {
        MemorySegment.copy(MemorySegment.ofArray(bytes), 0, out, 0, bytes.length);
        socket.send(out, bytes.length, fds);
    }

    /** Reads one reply; returns its payload (a view valid until the next call). Throws when the back-end hung up. */
    public MemorySegment reply(VhostUserRequest expected, int timeoutMillis) {
        int[] fds = new int[UnixSocket.MAX_FDS];
        long r = socket.readFully(in, 0, HEADER_LENGTH, fds, timeoutMillis);
        if (r <= 0) {
            throw new IllegalStateException(r == 0 ? "no reply to " + expected + " within " + timeoutMillis + " ms" : "back-end closed the connection (" + expected + ")");
        }
        int code = in.get(U32, 0);
        int flags = in.get(U32, 4);
        int size = in.get(U32, 8);
        if (code != expected.code || (flags & FLAG_REPLY) == 0 || size < 0 || size > MAX_PAYLOAD) {
            throw new IllegalStateException("bad reply to " + expected + ": code " + code + " flags " + flags + " size " + size);
        }
        int[] more = new int[UnixSocket.MAX_FDS];
        java.util.Arrays.fill(more, -1); // a reply without payload (SET_LOG_BASE's) reads none: close nothing, not fd 0
        if (size > 0 && socket.readFully(in, HEADER_LENGTH, size, more, timeoutMillis) <= 0) {
            throw new IllegalStateException("reply payload missing");
        }
        for (int f : more) {
            Fd.close(f);
        }
        Fd.close(lastReplyFd);
        lastReplyFd = fds[0];
        for (int i = 1; i < fds.length; i++) {
            Fd.close(fds[i]);
        }
        return in.asSlice(HEADER_LENGTH, size);
    }

    /** True when the back-end closed the connection within {@code timeoutMillis} (after a hostile message). */
    public boolean awaitHangUp(int timeoutMillis) {
        int[] fds = new int[UnixSocket.MAX_FDS];
        try {
            return socket.readFully(in, 0, HEADER_LENGTH, fds, timeoutMillis) < 0;
        } catch (RuntimeException e) {
            return true;
        }
    }

    private static MemorySegment u64(long v) {
        MemorySegment s = MemorySegment.ofArray(new byte[8]);
        s.set(U64, 0, v);
        return s;
    }

    private static MemorySegment u32s(int... v) {
        MemorySegment s = MemorySegment.ofArray(new byte[4 * v.length]);
        for (int i = 0; i < v.length; i++) {
            s.set(U32, 4L * i, v[i]);
        }
        return s;
    }

    public long getU64(VhostUserRequest req) {
        send(req, 0, null);
        return reply(req, 5_000).get(U64, 0);
    }

    /** Sends {@code req} with a u64 and, when REPLY_ACK was negotiated, waits for the ack (0 = success). */
    public long setU64(VhostUserRequest req, long v, int... fds) {
        boolean ack = (protocolFeatures & (1L << PF_REPLY_ACK)) != 0;
        send(req, ack ? FLAG_NEED_REPLY : 0, u64(v), fds);
        return ack ? reply(req, 5_000).get(U64, 0) : 0;
    }

    private void setState(VhostUserRequest req, int index, int num) {
        boolean ack = (protocolFeatures & (1L << PF_REPLY_ACK)) != 0;
        send(req, ack ? FLAG_NEED_REPLY : 0, u32s(index, num));
        if (ack && reply(req, 5_000).get(U64, 0) != 0) {
            throw new IllegalStateException(req + " refused");
        }
    }

    /**
     * SET_OWNER, features ({@code wanted} ∩ offered, plus PROTOCOL_FEATURES), protocol features (all
     * offered) and the memory table. Returns the negotiated virtio features. Wanting everything ({@code ~0L})
     * gets split rings, as QEMU uses unless {@code packed=on}; any other mask gets RING_PACKED if it names it.
     */
    public long negotiate(long wanted) {
        send(VhostUserRequest.SET_OWNER, 0, null);
        long offered = getU64(VhostUserRequest.GET_FEATURES);
        features = offered & (wanted | (1L << F_PROTOCOL_FEATURES));
        if (wanted == ~0L) {
            features &= ~(1L << F_RING_PACKED);
        }
        setU64(VhostUserRequest.SET_FEATURES, features);
        if ((features & (1L << F_PROTOCOL_FEATURES)) != 0) {
            long pf = getU64(VhostUserRequest.GET_PROTOCOL_FEATURES);
            setU64(VhostUserRequest.SET_PROTOCOL_FEATURES, pf);
            protocolFeatures = pf;
        }
        setMemTable();
        return features;
    }

    public long features() {
        return features;
    }

    /** SET_MEM_TABLE: the whole memfd as one region at {@link #GPA_BASE}. */
    public void setMemTable() {
        MemorySegment p = MemorySegment.ofArray(new byte[MEM_TABLE_HEADER + REGION_LENGTH]);
        p.set(U32, 0, 1);
        p.set(U64, MEM_TABLE_HEADER + REGION_GPA_OFFSET, GPA_BASE);
        p.set(U64, MEM_TABLE_HEADER + REGION_SIZE_OFFSET, memory.byteSize());
        p.set(U64, MEM_TABLE_HEADER + REGION_UADDR_OFFSET, memory.address());
        p.set(U64, MEM_TABLE_HEADER + REGION_MMAP_OFFSET, 0);
        boolean ack = (protocolFeatures & (1L << PF_REPLY_ACK)) != 0;
        send(VhostUserRequest.SET_MEM_TABLE, ack ? FLAG_NEED_REPLY : 0, p, memFd);
        if (ack && reply(VhostUserRequest.SET_MEM_TABLE, 5_000).get(U64, 0) != 0) {
            throw new IllegalStateException("SET_MEM_TABLE refused");
        }
    }

    /** GET_CONFIG of {@code size} bytes at 0. */
    public MemorySegment config(int size) {
        MemorySegment p = MemorySegment.ofArray(new byte[CONFIG_HEADER + size]);
        p.set(U32, 4, size);
        send(VhostUserRequest.GET_CONFIG, 0, p);
        MemorySegment r = reply(VhostUserRequest.GET_CONFIG, 5_000);
        MemorySegment copy = MemorySegment.ofArray(new byte[size]);
        MemorySegment.copy(r, CONFIG_HEADER, copy, 0, size);
        return copy;
    }

    /** Avail and used positions 0 with both wrap counters 1: a fresh packed ring's vring base. */
    public static final int PACKED_FRESH_BASE = 0x8000_8000;

    /**
     * Sets up queue {@code index} of {@code size} entries in guest memory, with kick and call eventfds, and
     * enables it; a packed ring when VIRTIO_F_RING_PACKED was negotiated, else a split one.
     */
    public Queue startQueue(int index, int size) {
        Queue q = new Queue(index, size);
        queues.add(q);
        setState(VhostUserRequest.SET_VRING_NUM, index, size);
        MemorySegment a = MemorySegment.ofArray(new byte[VRING_ADDR_LENGTH]);
        a.set(U32, 0, index);
        a.set(U64, 8, userAddress(q.desc));
        a.set(U64, 16, userAddress(q.used));
        a.set(U64, 24, userAddress(q.avail));
        boolean ack = (protocolFeatures & (1L << PF_REPLY_ACK)) != 0;
        send(VhostUserRequest.SET_VRING_ADDR, ack ? FLAG_NEED_REPLY : 0, a);
        if (ack) {
            reply(VhostUserRequest.SET_VRING_ADDR, 5_000);
        }
        setState(VhostUserRequest.SET_VRING_BASE, index, q.packed ? PACKED_FRESH_BASE : 0);
        setU64(VhostUserRequest.SET_VRING_CALL, index, q.call.fd());
        setU64(VhostUserRequest.SET_VRING_KICK, index, q.kick.fd());
        if ((features & (1L << F_PROTOCOL_FEATURES)) != 0) {
            setState(VhostUserRequest.SET_VRING_ENABLE, index, 1);
        }
        return q;
    }

    /**
     * GET_INFLIGHT_FD for {@code numQueues} queues of {@code queueSize}: keeps the back-end's region (as QEMU
     * does, across back-end restarts) and returns its size; then SET_INFLIGHT_FD hands it back.
     */
    public long getInflight(int numQueues, int queueSize) {
        MemorySegment p = MemorySegment.ofArray(new byte[24]);
        p.set(U16, 16, (short) numQueues);
        p.set(U16, 18, (short) queueSize);
        send(VhostUserRequest.GET_INFLIGHT_FD, 0, p);
        MemorySegment r = reply(VhostUserRequest.GET_INFLIGHT_FD, 5_000);
        if (lastReplyFd < 0) {
            throw new IllegalStateException("GET_INFLIGHT_FD reply carried no descriptor");
        }
        Fd.close(inflightFd);
        inflightFd = lastReplyFd;
        lastReplyFd = -1;
        inflightSize = r.get(U64, 0);
        inflightQueues = numQueues;
        inflightQueueSize = queueSize;
        setInflight();
        return inflightSize;
    }

    /** SET_INFLIGHT_FD with the region kept from {@link #getInflight} (after reconnecting to a new back-end). */
    public void setInflight() {
        MemorySegment p = MemorySegment.ofArray(new byte[24]);
        p.set(U64, 0, inflightSize);
        p.set(U16, 16, (short) inflightQueues);
        p.set(U16, 18, (short) inflightQueueSize);
        boolean ack = (protocolFeatures & (1L << PF_REPLY_ACK)) != 0;
        send(VhostUserRequest.SET_INFLIGHT_FD, ack ? FLAG_NEED_REPLY : 0, p, inflightFd);
        if (ack && reply(VhostUserRequest.SET_INFLIGHT_FD, 5_000).get(U64, 0) != 0) {
            throw new IllegalStateException("SET_INFLIGHT_FD refused");
        }
    }

    /**
     * Drops the connection and connects to {@code socketPath} (a restarted back-end), keeping guest memory,
     * queues and the inflight region, as QEMU's {@code reconnect=} does; then call {@link #negotiate},
     * {@link #setInflight} and {@link #restartQueue}.
     */
    public void reconnect(Path socketPath) {
        socket.close();
        socket = UnixSocket.connectStream(socketPath);
        protocolFeatures = 0; // a new back-end: nothing negotiated yet
    }

    /**
     * Configures and enables an existing queue again on the (new) back-end, at avail index {@code base}
     * (QEMU, having lost the old back-end, uses the used ring's index).
     */
    public void restartQueue(Queue q, int base) {
        setState(VhostUserRequest.SET_VRING_NUM, q.index, q.size);
        MemorySegment a = MemorySegment.ofArray(new byte[VRING_ADDR_LENGTH]);
        a.set(U32, 0, q.index);
        a.set(U64, 8, userAddress(q.desc));
        a.set(U64, 16, userAddress(q.used));
        a.set(U64, 24, userAddress(q.avail));
        boolean ack = (protocolFeatures & (1L << PF_REPLY_ACK)) != 0;
        send(VhostUserRequest.SET_VRING_ADDR, ack ? FLAG_NEED_REPLY : 0, a);
        if (ack) {
            reply(VhostUserRequest.SET_VRING_ADDR, 5_000);
        }
        setState(VhostUserRequest.SET_VRING_BASE, q.index, base);
        setU64(VhostUserRequest.SET_VRING_CALL, q.index, q.call.fd());
        setU64(VhostUserRequest.SET_VRING_KICK, q.index, q.kick.fd());
        if ((features & (1L << F_PROTOCOL_FEATURES)) != 0) {
            setState(VhostUserRequest.SET_VRING_ENABLE, q.index, 1);
        }
    }

    /** SET_VRING_ENABLE (what QEMU sends for the queue pairs a virtio-net guest turns on or off). */
    public void enableQueue(int index, boolean on) {
        setState(VhostUserRequest.SET_VRING_ENABLE, index, on ? 1 : 0);
    }

    /** GET_VRING_BASE: stops the queue; returns the back-end's vring base (split: its next avail index). */
    public int stopQueue(int index) {
        send(VhostUserRequest.GET_VRING_BASE, 0, u32s(index, 0));
        return reply(VhostUserRequest.GET_VRING_BASE, 30_000).get(U32, 4);
    }

    /** A driver-side split virtqueue in this front-end's guest memory. */
    public final class Queue {
        public final int index;
        public final int size;
        final long desc;
        final long avail;
        final long used;
        final EventFd kick = EventFd.create();
        final EventFd call = EventFd.create();
        private final boolean[] busy;
        private int availIdx;
        /** The avail index at the last {@link #kickIfNeeded} (EVENT_IDX: the batch since then decides). */
        private int kickedAvail;
        private int lastUsed;
        private int freeHint;
        /** VIRTIO_F_RING_PACKED: {@code desc} is the descriptor ring, {@code avail} the driver area, {@code used} the device area. */
        public final boolean packed;
        private boolean availWrap = true;
        private boolean usedWrap = true;
        /** Packed: descriptors in the ring per buffer id in flight ({@code busy} marks ids), and free ring slots. */
        private int[] slotsOfId;
        private int freeSlots;

        Queue(int index, int size) {
            this.index = index;
            this.size = size;
            this.packed = (features & (1L << F_RING_PACKED)) != 0;
            this.desc = alloc(16L * size, 16);
            this.avail = packed ? alloc(4, 4) : alloc(6 + 2L * size, 2);
            this.used = packed ? alloc(4, 4) : alloc(6 + 8L * size, 4);
            this.busy = new boolean[size];
            this.slotsOfId = new int[size];
            this.freeSlots = size;
        }

        /** Guest-physical address of descriptor {@code i} (tests write hostile descriptors there). */
        public long descriptorAddress(int i) {
            return desc + 16L * i;
        }

        public long availAddress() {
            return avail;
        }

        public long usedAddress() {
            return used;
        }

        /** Writes descriptor {@code i} raw. */
        public void writeDescriptor(int i, long addr, int len, int flags, int nextIndex) {
            MemorySegment d = at(desc + 16L * i, 16);
            d.set(U64, 0, addr);
            d.set(U32, 8, len);
            d.set(U16, 12, (short) flags);
            d.set(U16, 14, (short) nextIndex);
        }

        /** Puts {@code head} in the avail ring and publishes it (no kick). */
        public void publish(int head) {
            at(avail + 4 + 2L * (availIdx % size), 2).set(U16, 0, (short) head);
            availIdx = (availIdx + 1) & 0xFFFF;
            VarHandle.releaseFence(); // the ring entry before the index that covers it
            at(avail + 2, 2).set(U16, 0, (short) availIdx);
        }

        /** Sets avail.idx raw (hostile tests). */
        public void setAvailIndex(int idx) {
            availIdx = idx & 0xFFFF;
            at(avail + 2, 2).set(U16, 0, (short) availIdx);
        }

        /**
         * Adds a chain of direct descriptors (guest-physical addresses, lengths, device-writable flags),
         * publishes it and returns its head; -1 when too few descriptors are free.
         */
        public int add(long[] addrs, int[] lens, boolean[] writable) {
            if (packed) {
                return addPacked(addrs, lens, writable, false);
            }
            int n = addrs.length;
            int[] ids = new int[n];
            int found = 0;
            for (int k = 0; k < size && found < n; k++) {
                int i = (freeHint + k) % size;
                if (!busy[i]) {
                    ids[found++] = i;
                }
            }
            if (found < n) {
                return -1;
            }
            for (int k = 0; k < n; k++) {
                busy[ids[k]] = true;
                writeDescriptor(ids[k], addrs[k], lens[k], (writable[k] ? SplitVirtqueue.DESC_F_WRITE : 0)
                    | (k + 1 < n ? SplitVirtqueue.DESC_F_NEXT : 0), k + 1 < n ? ids[k + 1] : 0);
            }
            freeHint = (ids[n - 1] + 1) % size;
            publish(ids[0]);
            return ids[0];
        }

        /** Adds a chain through one indirect table (allocated in guest memory) and publishes it. */
        public int addIndirect(long[] addrs, int[] lens, boolean[] writable) {
            if (packed) {
                return addPacked(addrs, lens, writable, true);
            }
            int n = addrs.length;
            long table = alloc(16L * n, 16);
            MemorySegment t = at(table, 16L * n);
            for (int k = 0; k < n; k++) {
                t.set(U64, 16L * k, addrs[k]);
                t.set(U32, 16L * k + 8, lens[k]);
                t.set(U16, 16L * k + 12, (short) ((writable[k] ? SplitVirtqueue.DESC_F_WRITE : 0) | (k + 1 < n ? SplitVirtqueue.DESC_F_NEXT : 0)));
                t.set(U16, 16L * k + 14, (short) (k + 1));
            }
            for (int k = 0; k < size; k++) {
                int i = (freeHint + k) % size;
                if (!busy[i]) {
                    busy[i] = true;
                    writeDescriptor(i, table, 16 * n, SplitVirtqueue.DESC_F_INDIRECT, 0);
                    freeHint = (i + 1) % size;
                    publish(i);
                    return i;
                }
            }
            return -1;
        }

        /**
         * Packed ring: writes the chain at the avail position (or one INDIRECT descriptor and a table), the
         * first descriptor's flags last, and returns its buffer id; -1 when too few slots or ids are free.
         */
        private int addPacked(long[] addrs, int[] lens, boolean[] writable, boolean indirect) {
            int n = addrs.length;
            int slots = indirect ? 1 : n;
            int id = -1;
            for (int k = 0; k < size && id < 0; k++) {
                int i = (freeHint + k) % size;
                if (!busy[i]) {
                    id = i;
                }
            }
            if (id < 0 || slots > freeSlots) {
                return -1;
            }
            busy[id] = true;
            slotsOfId[id] = slots;
            freeSlots -= slots;
            freeHint = (id + 1) % size;
            int first = availIdx;
            boolean firstWrap = availWrap;
            int firstFlags = 0;
            if (indirect) {
                long table = alloc(16L * n, 16);
                for (int k = 0; k < n; k++) {
                    writePackedDescriptor(at(table, 16L * n), k, addrs[k], lens[k], 0, writable[k] ? SplitVirtqueue.DESC_F_WRITE : 0);
                }
                firstFlags = SplitVirtqueue.DESC_F_INDIRECT | availBits(availWrap);
                writePackedDescriptor(at(desc, 16L * size), availIdx, table, 16 * n, id, -1);
                advanceAvail();
            } else {
                for (int k = 0; k < n; k++) {
                    int flags = (writable[k] ? SplitVirtqueue.DESC_F_WRITE : 0) | (k + 1 < n ? SplitVirtqueue.DESC_F_NEXT : 0) | availBits(availWrap);
                    if (k == 0) {
                        firstFlags = flags;
                        writePackedDescriptor(at(desc, 16L * size), availIdx, addrs[k], lens[k], id, -1);
                    } else {
                        writePackedDescriptor(at(desc, 16L * size), availIdx, addrs[k], lens[k], id, flags);
                    }
                    advanceAvail();
                }
            }
            VarHandle.releaseFence(); // the rest of the chain before the first descriptor's flags make it available
            at(desc + 16L * first + 14, 2).set(U16, 0, (short) firstFlags);
            return id;
        }

        private static int availBits(boolean wrap) {
            return wrap ? PackedVirtqueue.DESC_F_AVAIL : PackedVirtqueue.DESC_F_USED;
        }

        private void advanceAvail() {
            if (++availIdx == size) {
                availIdx = 0;
                availWrap = !availWrap;
            }
        }

        /** Writes packed descriptor {@code i} of {@code ring} raw ({@code flags} -1: leave the flags). */
        public void writePackedDescriptor(MemorySegment ring, int i, long addr, int len, int id, int flags) {
            ring.set(U64, 16L * i, addr);
            ring.set(U32, 16L * i + 8, len);
            ring.set(U16, 16L * i + 12, (short) id);
            if (flags >= 0) {
                ring.set(U16, 16L * i + 14, (short) flags);
            }
        }

        /** Packed: the driver area's {@code flags} (ENABLE 0, DISABLE 1, DESC 2) and {@code off_wrap}. */
        public void setDriverEvent(int flags, int offWrap) {
            at(avail, 4).set(U16, 0, (short) offWrap);
            at(avail, 4).set(U16, 2, (short) flags);
        }

        private int[] awaitUsedPacked(long deadline) {
            while (true) {
                VarHandle.acquireFence();
                int flags = at(desc + 16L * lastUsed + 14, 2).get(U16, 0) & 0xFFFF;
                boolean a = (flags & PackedVirtqueue.DESC_F_AVAIL) != 0;
                boolean u = (flags & PackedVirtqueue.DESC_F_USED) != 0;
                if (a == usedWrap && u == usedWrap) {
                    break;
                }
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    return null;
                }
                call.await((int) Math.max(1, Math.min(50, left / 1_000_000L)));
            }
            VarHandle.acquireFence(); // id and len after the flags that cover them
            int id = at(desc + 16L * lastUsed + 12, 2).get(U16, 0) & 0xFFFF;
            int len = at(desc + 16L * lastUsed + 8, 4).get(U32, 0);
            int slots = id < size && busy[id] ? slotsOfId[id] : 1;
            lastUsed += slots;
            if (lastUsed >= size) {
                lastUsed -= size;
                usedWrap = !usedWrap;
            }
            if (id < size && busy[id]) {
                busy[id] = false;
                freeSlots += slots;
            }
            return new int[] {id, len};
        }

        public void kick() {
            kick.signal();
        }

        /**
         * Kicks only if the device asked for it, as a guest's driver does (Linux {@code virtqueue_kick_prepare}):
         * split rings with EVENT_IDX when the avail index passed avail_event since the last call, else unless
         * used.flags has NO_NOTIFY; packed rings unless the device area says DISABLE. Returns whether it kicked.
         */
        public boolean kickIfNeeded() {
            VarHandle.fullFence(); // the published requests before the device's suppression is read (else a kick is lost)
            boolean need;
            if (packed) {
                need = (at(used, 4).get(U16, 2) & 0xFFFF) != PackedVirtqueue.EVENT_F_DISABLE;
            } else if ((features & (1L << VhostUserDescriptor.F_RING_EVENT_IDX)) != 0) {
                int event = at(used + 4 + 8L * size, 2).get(U16, 0) & 0xFFFF;
                int now = availIdx;
                need = ((now - event - 1) & 0xFFFF) < ((now - kickedAvail) & 0xFFFF);
            } else {
                need = (at(used, 2).get(U16, 0) & SplitVirtqueue.USED_F_NO_NOTIFY) == 0;
            }
            kickedAvail = availIdx;
            if (need) {
                kick.signal();
            }
            return need;
        }

        /**
         * The used index this driver has consumed up to (split rings): a sampling thread may read it racily to see how
         * many completions wait for the driver ({@link #usedIndex} minus this).
         */
        public int consumedUsedIndex() {
            return lastUsed;
        }

        /** The back-end's used index as it is now in guest memory. */
        public int usedIndex() {
            VarHandle.acquireFence();
            return at(used + 2, 2).get(U16, 0) & 0xFFFF;
        }

        /**
         * Waits up to {@code timeoutMillis} for the next used entry; returns {id, len} and frees the chain's
         * descriptors, or null on timeout.
         */
        public int[] awaitUsed(int timeoutMillis) {
            long deadline = System.nanoTime() + timeoutMillis * 1_000_000L;
            if (packed) {
                return awaitUsedPacked(deadline);
            }
            // As Linux's virtio_ring does: ask for a call when the used index passes what we consumed
            // (EVENT_IDX), then look again, so a completion between the two is not missed.
            setUsedEvent(lastUsed);
            VarHandle.fullFence();
            while (usedIndex() == lastUsed) {
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    return null;
                }
                call.await((int) Math.max(1, Math.min(50, left / 1_000_000L)));
            }
            VarHandle.acquireFence(); // the element after the index that covers it
            MemorySegment e = at(used + 4 + 8L * (lastUsed % size), 8);
            int id = e.get(U32, 0);
            int len = e.get(U32, 4);
            lastUsed = (lastUsed + 1) & 0xFFFF;
            free(id);
            return new int[] {id, len};
        }

        private void free(int head) {
            int i = head;
            for (int guard = 0; guard < size && i >= 0 && i < size && busy[i]; guard++) {
                busy[i] = false;
                MemorySegment d = at(desc + 16L * i, 16);
                if ((d.get(U16, 12) & SplitVirtqueue.DESC_F_NEXT) == 0) {
                    break;
                }
                i = d.get(U16, 14) & 0xFFFF;
            }
        }

        /** Sets used_event (EVENT_IDX): the driver asks for a call when the used index passes it. */
        public void setUsedEvent(int v) {
            at(avail + 4 + 2L * size, 2).set(U16, 0, (short) v);
        }

        /** Counts calls received so far (drains the call eventfd). */
        public long drainCalls() {
            return call.tryConsume();
        }
    }

    @Override
    public void close() {
        socket.close();
        for (Queue q : queues) {
            q.kick.close();
            q.call.close();
        }
        SharedMemory.unmap(memory);
        Fd.close(memFd);
        Fd.close(inflightFd);
        Fd.close(lastReplyFd);
    }
}
