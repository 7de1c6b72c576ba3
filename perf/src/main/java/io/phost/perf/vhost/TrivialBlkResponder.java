package io.phost.perf.vhost;

import io.phost.core.sys.EventFd;
import io.phost.core.sys.Fd;
import io.phost.core.sys.Poll;
import io.phost.core.sys.UnixSocket;
import io.phost.core.vhost.VhostUserDescriptor;
import io.phost.core.vhost.VhostUserFrontend;
import io.phost.core.vhost.VhostUserRequest;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.file.Path;

/**
 * The floor under {@code phost bench vhost}'s QD1 round trip: the least a vhost-user-blk back-end can do per
 * request, so that phost's round trip minus this one is what phost adds. It speaks just enough vhost-user for
 * {@link VhostUserFrontend} (offers VERSION_1 only: no protocol features, no replies but GET_FEATURES, no
 * EVENT_IDX) to hand it queue 0's kick and call eventfds; its worker thread then does what any back-end must:
 * sleep in poll(2) on the kick, read the avail ring, walk each chain to its status byte, write OK, publish the
 * used entry and signal the call. It moves no data and checks nothing (the front-end is the bench's own).
 * It runs in the bench's process and reads the rings through the front-end's own mapping of guest memory. When
 * phost's workers poll ({@code PHOST_BENCH_POLLING} not {@code efficiency}) it polls the same way after each answer.
 * <pre>
 *   per request: kick wake-up → avail idx → desc chain → status = 0 → used elem + idx → call    (phost: the same
 *   wake-ups plus its request parsing, disk dispatch and completion: the difference is phost's part)
 * </pre>
 */
final class TrivialBlkResponder implements AutoCloseable {
    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED;
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED;
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED;
    private static final int DESC_F_NEXT = 1;

    private final UnixSocket listener;
    private final Path path;
    private UnixSocket conn;
    private int kickFd = -1;
    private int callFd = -1;
    private Thread worker;
    private volatile boolean stopping;
    private final EventFd stop = EventFd.create();

    /** After answering, poll the avail ring this long (kicks off) before sleeping: 0 = sleep at once. */
    private final long spinNanos;

    private TrivialBlkResponder(UnixSocket listener, Path path, long spinNanos) {
        this.listener = listener;
        this.path = path;
        this.spinNanos = spinNanos;
    }

    static TrivialBlkResponder listen(Path socket) {
        return listen(socket, 0);
    }

    /**
     * As {@link #listen(Path)}; with {@code spinNanos} &gt; 0 the responder polls like phost's queue workers in
     * {@code latency} mode (VRING_USED_F_NO_NOTIFY while it spins, cleared with a re-check before it sleeps), so
     * the floor has the same wake-ups as a polling phost.
     */
    static TrivialBlkResponder listen(Path socket, long spinNanos) {
        return new TrivialBlkResponder(UnixSocket.listenStream(socket, 1), socket, spinNanos);
    }

    /**
     * Accepts {@code f}'s connection and serves its set-up messages on a helper thread while {@code f} negotiates
     * and starts queue 0 (the caller's {@code setUp}, whose queue is returned); then answers that queue's requests
     * until closed. The kick and call fds are this responder's own copies (SCM_RIGHTS), so closing the front-end
     * first does not pull them from under the worker.
     */
    VhostUserFrontend.Queue serve(VhostUserFrontend f, java.util.function.Function<VhostUserFrontend, VhostUserFrontend.Queue> setUp) {
        Thread control = Thread.ofPlatform().daemon().name("trivial-blk-control").start(this::readSetUp);
        VhostUserFrontend.Queue q = setUp.apply(f);
        try {
            control.join(10_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted", e);
        }
        if (kickFd < 0 || callFd < 0) {
            throw new IllegalStateException("the front-end sent no kick or call eventfd");
        }
        worker = Thread.ofPlatform().daemon().name("trivial-blk-q0").start(() -> respond(f, q));
        return q;
    }

    /** Reads messages until queue 0's kick arrives; answers GET_FEATURES; keeps the call and kick fds. */
    private void readSetUp() {
        conn = listener.accept(10_000);
        if (conn == null) {
            return;
        }
        MemorySegment buf = Arena.ofAuto().allocate(VhostUserDescriptor.HEADER_LENGTH + VhostUserDescriptor.MAX_PAYLOAD, 8);
        while (kickFd < 0) {
            int[] fds = new int[UnixSocket.MAX_FDS];
            java.util.Arrays.fill(fds, -1);
            if (conn.readFully(buf, 0, VhostUserDescriptor.HEADER_LENGTH, fds, 10_000) <= 0) {
                return;
            }
            int code = buf.get(U32, 0);
            int size = buf.get(U32, 8);
            int[] more = new int[UnixSocket.MAX_FDS];
            java.util.Arrays.fill(more, -1);
            if (size > 0 && conn.readFully(buf, VhostUserDescriptor.HEADER_LENGTH, size, more, 10_000) <= 0) {
                return;
            }
            int fd = fds[0] >= 0 ? fds[0] : more[0];
            if (code == VhostUserRequest.GET_FEATURES.code) {
                buf.set(U32, 4, VhostUserDescriptor.VERSION | VhostUserDescriptor.FLAG_REPLY);
                buf.set(U32, 8, 8);
                buf.set(U64, VhostUserDescriptor.HEADER_LENGTH, 1L << 32); // VIRTIO_F_VERSION_1
                conn.send(buf, VhostUserDescriptor.HEADER_LENGTH + 8);
            } else if (code == VhostUserRequest.SET_VRING_CALL.code) {
                callFd = fd;
                fd = -1;
            } else if (code == VhostUserRequest.SET_VRING_KICK.code) {
                kickFd = fd;
                fd = -1;
            }
            Fd.close(fd); // the memfd: the front-end's own mapping serves
        }
    }

    private void respond(VhostUserFrontend f, VhostUserFrontend.Queue q) {
        EventFd kick = EventFd.adopt(kickFd).view();
        EventFd call = EventFd.adopt(callFd).view();
        MemorySegment avail = f.at(q.availAddress(), 4 + 2L * q.size);
        MemorySegment used = f.at(q.usedAddress(), 4 + 8L * q.size);
        MemorySegment desc = f.at(q.descriptorAddress(0), 16L * q.size);
        MemorySegment guest = f.memory();
        MemorySegment fds = Arena.ofAuto().allocate(2 * Poll.POLLFD_SIZE, 4);
        fds.set(ValueLayout.JAVA_INT, 0, kick.fd());
        fds.set(ValueLayout.JAVA_SHORT, 4, (short) Poll.POLLIN);
        fds.set(ValueLayout.JAVA_INT, 8, stop.fd());
        fds.set(ValueLayout.JAVA_SHORT, 12, (short) Poll.POLLIN);
        int next = 0;
        boolean spin = false;
        while (!stopping) {
            VarHandle.acquireFence();
            int availIdx = avail.get(U16, 2) & 0xFFFF;
            if (availIdx == next && spin) {
                spin = false;
                used.set(U16, 0, (short) 1); // VRING_USED_F_NO_NOTIFY while polling
                long t0 = System.nanoTime();
                while (availIdx == next && System.nanoTime() - t0 < spinNanos && !stopping) {
                    Thread.onSpinWait();
                    VarHandle.acquireFence();
                    availIdx = avail.get(U16, 2) & 0xFFFF;
                }
                used.set(U16, 0, (short) 0);
                VarHandle.fullFence(); // kicks wanted again before the last look (else a kick is lost)
                availIdx = avail.get(U16, 2) & 0xFFFF;
            }
            if (availIdx == next) {
                fds.set(ValueLayout.JAVA_SHORT, 6, (short) 0);
                fds.set(ValueLayout.JAVA_SHORT, 14, (short) 0);
                if (Poll.poll(fds, 2, 1_000) > 0) {
                    kick.tryConsume();
                }
                continue;
            }
            VarHandle.acquireFence(); // ring entries after the index that covers them
            while (next != availIdx) {
                int head = avail.get(U16, 4 + 2L * (next % q.size)) & 0xFFFF;
                int i = head;
                for (int guard = 0; guard < q.size && (desc.get(U16, 16L * i + 12) & DESC_F_NEXT) != 0; guard++) {
                    i = desc.get(U16, 16L * i + 14) & 0xFFFF;
                }
                guest.set(ValueLayout.JAVA_BYTE, desc.get(U64, 16L * i) - VhostUserFrontend.GPA_BASE, (byte) 0); // status OK
                int usedIdx = used.get(U16, 2) & 0xFFFF;
                used.set(U32, 4 + 8L * (usedIdx % q.size), head);
                used.set(U32, 8 + 8L * (usedIdx % q.size), 1);
                VarHandle.releaseFence(); // the element before the index that covers it
                used.set(U16, 2, (short) (usedIdx + 1));
                next = (next + 1) & 0xFFFF;
            }
            VarHandle.fullFence();
            call.signal();
            spin = spinNanos > 0;
        }
    }

    @Override
    public void close() {
        stopping = true;
        stop.signal();
        if (worker != null) {
            try {
                worker.join(30_000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            if (worker.isAlive()) {
                // the caller unmaps the guest memory the worker reads right after this: refuse rather than crash
                throw new IllegalStateException("trivial-blk-q0 did not stop within 30 s");
            }
        }
        if (conn != null) {
            conn.close();
        }
        listener.close();
        Fd.close(kickFd);
        Fd.close(callFd);
        stop.close();
        try {
            java.nio.file.Files.deleteIfExists(path);
        } catch (java.io.IOException ignored) {
            // a scratch socket in the bench's work dir, which the runner deletes anyway
        }
    }
}
