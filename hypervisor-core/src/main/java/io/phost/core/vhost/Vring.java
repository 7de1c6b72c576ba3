package io.phost.core.vhost;

import io.phost.core.sys.CpuAffinity;
import io.phost.core.sys.EventFd;
import io.phost.core.sys.Fd;
import io.phost.core.sys.Poll;
import io.phost.core.vmbus.PollingMode;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.function.Consumer;

/**
 * One vring's settings as the front-end sent them, and the worker thread that serves it once it is
 * started (kick fd received), enabled and addressed.
 * <pre>
 *   SET_VRING_NUM/ADDR/BASE/CALL/ERR ──▶ configured ──SET_VRING_KICK──▶ started ──ENABLE 1──▶ running
 *   running ──GET_VRING_BASE / ENABLE 0 / memory change / disconnect──▶ stopped (in-flight completed)
 * </pre>
 * Worker loop: {@code doWork}; when idle and nothing is in flight, sleep in poll(2) on the kick and stop
 * eventfds (a storage handler first polls the avail ring per the host's polling mode, {@link VringPoller}, with
 * the driver's kicks disabled, and asks for them again with a re-check before it sleeps); while requests are in
 * flight, wait on the handler's completions in short slices (with {@link #IN_FLIGHT_SPIN}, after returning chains
 * a polling handler's worker first keeps looking until the driver refilled them or {@link VringPoller#SPIN_NANOS}
 * passed, so the refill reaches the device at once: {@link VringPoller#spinWhileInFlight}).
 */
final class Vring {
    private static final long IN_FLIGHT_SLICE_NANOS = 200_000L;
    /**
     * The system property that lets a polling worker spin for the driver's refill while requests are in flight ({@link
     * VringPoller#spinWhileInFlight}), read as each queue starts: off unless {@code -Dphost.vhost.inFlightSpin=true}. On the quiet 2-vCPU test
     * VM it did not pay (issue 14, twelfth session: under {@code adaptive} the governor vetoed it, under {@code
     * latency} QD32 reads lost 3-6 % at +0.4 requests in the core), so it stays an opt-in until a machine shows a gain.
     */
    static final String IN_FLIGHT_SPIN = "phost.vhost.inFlightSpin";
    private static final int IDLE_POLL_MILLIS = 1_000;
    /** Buffers one chain may have (Linux virtio-blk uses seg_max + 2; indirect tables are bounded here). */
    static final int CHAIN_CAPACITY = 1024;

    final int index;
    int size;
    boolean addressed;
    long descUser;
    long availUser;
    long usedUser;
    /** SET_VRING_ADDR's log address (the used ring's guest-physical address) when its VHOST_VRING_F_LOG flag is set, else -1. */
    long usedLogGpa = -1;
    /** The session's dirty log while VHOST_F_LOG_ALL is negotiated, else null; applied when the worker starts. */
    DirtyLog log;
    /** SET_VRING_BASE's value (packed rings: both positions and wrap counters, see {@link PackedVirtqueue}). */
    int base;
    /** VIRTIO_F_RING_PACKED negotiated: the worker serves a {@link PackedVirtqueue}. */
    boolean packed;
    int kickFd = -1;
    boolean kickPolled;
    boolean started;
    boolean enabled;
    EventFd call;
    EventFd err;
    volatile String error;

    private Thread thread;
    private volatile boolean stopping;
    private EventFd stop;
    private Virtqueue queue;

    Vring(int index) {
        this.index = index;
    }

    boolean running() {
        return thread != null;
    }

    /** Starts the worker over {@code memory}; {@code onError} is told when the queue breaks. */
    void start(String name, VhostUserDevice device, GuestMemory memory, boolean eventIdx, boolean indirect, List<Integer> cpus,
               Consumer<String> onError) {
        start(name, device, memory, eventIdx, indirect, null, cpus, onError);
    }

    /**
     * As above; {@code inflight} is this queue's INFLIGHT_SHMFD region (null: no tracking). Requests found in
     * flight there are resubmitted first (see {@link InflightTracker}).
     */
    void start(String name, VhostUserDevice device, GuestMemory memory, boolean eventIdx, boolean indirect, MemorySegment inflight,
               List<Integer> cpus, Consumer<String> onError) {
        start(name, device, memory, eventIdx, indirect, inflight, cpus, PollingMode.EFFICIENCY, onError);
    }

    /**
     * As above; {@code polling} is how the worker waits for requests when its handler polls
     * ({@link VirtqueueHandler#pollsWhileIdle}, {@link VringPoller}).
     */
    void start(String name, VhostUserDevice device, GuestMemory memory, boolean eventIdx, boolean indirect, MemorySegment inflight,
               List<Integer> cpus, PollingMode polling, Consumer<String> onError) {
        if (packed) {
            long[] host = PackedVirtqueue.layout(index, memory, size, descUser, availUser, usedUser);
            PackedInflightTracker tracker = inflight == null ? null : new PackedInflightTracker(inflight, size);
            PackedVirtqueue packedQueue = new PackedVirtqueue(index, memory, size, host[0], host[1], host[2], base, eventIdx, indirect, call, tracker);
            if (log != null) {
                packedQueue.logTo(log, usedLogGpa >= 0, descUser, usedUser);
            }
            queue = packedQueue;
        } else {
            long[] host = SplitVirtqueue.layout(index, memory, size, descUser, availUser, usedUser);
            InflightTracker tracker = inflight == null ? null : new InflightTracker(inflight, size);
            SplitVirtqueue split = new SplitVirtqueue(index, memory, size, host[0], host[1], host[2], base, eventIdx, indirect, call, tracker);
            if (log != null) {
                split.logTo(log, usedLogGpa);
            }
            queue = split;
        }
        if (queue.resubmitted() > 0) {
            System.getLogger("phost.vhost").log(System.Logger.Level.INFO,
                "vhost-user " + name + " queue " + index + " resubmits " + queue.resubmitted() + " requests left in flight by a previous back-end");
        }
        VirtqueueHandler handler = device.openQueue(index);
        stop = EventFd.create();
        stopping = false;
        error = null;
        Virtqueue q = queue;
        EventFd stopFd = stop;
        EventFd kick = kickFd >= 0 ? EventFd.adopt(kickFd).view() : null;
        handler.started(q);
        boolean spinInFlight = Boolean.getBoolean(IN_FLIGHT_SPIN);
        thread = Thread.ofPlatform().name(name + "-q" + index).daemon().unstarted(() -> {
            pin(cpus);
            run(q, handler, kick, stopFd, handler.pollsWhileIdle() && handler.wakeupFd() < 0 ? VringPoller.of(polling) : null,
                spinInFlight, onError);
        });
        thread.start();
    }

    /** Keeps this worker on the configured CPUs, or logs why it cannot and runs anywhere. */
    private void pin(List<Integer> cpus) {
        if (cpus.isEmpty()) {
            return;
        }
        try {
            CpuAffinity.pin(cpus);
        } catch (RuntimeException e) {
            System.getLogger("phost.vhost").log(System.Logger.Level.WARNING,
                "queue worker not pinned queue=" + index + " cpus=" + cpus + " reason=\"" + e.getMessage() + "\"");
        }
    }

    private void run(Virtqueue q, VirtqueueHandler handler, EventFd kick, EventFd stopFd, VringPoller poller, boolean spinInFlight,
                     Consumer<String> onError) {
        DescriptorChain chain = new DescriptorChain(CHAIN_CAPACITY);
        java.util.function.BooleanSupplier stoppingFlag = () -> stopping;
        int wake = handler.wakeupFd();
        int nfds = wake >= 0 ? 3 : 2;
        MemorySegment fds = Arena.ofAuto().allocate(3 * Poll.POLLFD_SIZE, 4);
        fds.set(ValueLayout.JAVA_INT, 0, kick == null ? -1 : kick.fd());
        fds.set(ValueLayout.JAVA_SHORT, 4, (short) Poll.POLLIN);
        fds.set(ValueLayout.JAVA_INT, 8, stopFd.fd());
        fds.set(ValueLayout.JAVA_SHORT, 12, (short) Poll.POLLIN);
        fds.set(ValueLayout.JAVA_INT, 16, wake);
        fds.set(ValueLayout.JAVA_SHORT, 20, (short) Poll.POLLIN);
        try {
            long returned = handler.chainsReturned();
            while (!stopping) {
                int before = handler.inFlight();
                int work = handler.doWork(q, chain);
                if (work > 0) {
                    if (poller != null) {
                        poller.worked();
                        returned = noteAnswers(handler, poller, returned, before);
                    }
                    continue;
                }
                int inFlight = handler.inFlight();
                if (inFlight > 0) {
                    if (poller != null && spinInFlight && poller.spinWhileInFlight(q, inFlight)) {
                        continue; // the driver refills after the call: pick its requests up as they come
                    }
                    handler.awaitCompletion(kick, IN_FLIGHT_SLICE_NANOS);
                    if (poller != null) {
                        returned = noteAnswers(handler, poller, returned, inFlight);
                    }
                    if (kick != null) {
                        kick.tryConsume();
                    }
                    continue;
                }
                if (kick == null) {
                    // Polling mode (kick with NOFD): the driver never kicks; look again shortly, sleeping
                    // so a front-end cannot make us spin a core.
                    java.util.concurrent.locks.LockSupport.parkNanos(50_000L);
                    continue;
                }
                if (poller != null) {
                    if (poller.poll(q, stoppingFlag)) {
                        continue; // a request arrived while polling: kicks stay off
                    }
                    poller.sleeping();
                    if (q.enableKicks()) {
                        continue; // it came right as the worker went to sleep
                    }
                }
                fds.set(ValueLayout.JAVA_SHORT, 6, (short) 0);
                fds.set(ValueLayout.JAVA_SHORT, 14, (short) 0);
                fds.set(ValueLayout.JAVA_SHORT, 22, (short) 0);
                if (Poll.poll(fds, nfds, IDLE_POLL_MILLIS) > 0) {
                    kick.tryConsume();
                }
            }
        } catch (RuntimeException e) {
            error = "queue " + index + ": " + e.getMessage();
            if (err != null) {
                try {
                    err.signal();
                } catch (RuntimeException ignored) {
                    // the error fd is the front-end's: a broken one changes nothing here
                }
            }
            onError.accept(error);
        } finally {
            try {
                handler.close(q);
            } catch (RuntimeException e) {
                onError.accept("queue " + index + " close: " + e.getMessage());
            }
        }
    }

    /**
     * Tells the poller when the handler returned chains since the count {@code before} ({@code inFlightBefore} were
     * in flight then); returns the new count.
     */
    private static long noteAnswers(VirtqueueHandler handler, VringPoller poller, long before, int inFlightBefore) {
        long now = handler.chainsReturned();
        if (now != before) {
            poller.answered(inFlightBefore);
        }
        return now;
    }

    /** Stops the worker (completing in-flight requests) and records the next avail index as the base. */
    void stop() {
        if (thread == null) {
            return;
        }
        stopping = true;
        stop.signal();
        boolean interrupted = false;
        while (true) {
            try {
                thread.join();
                break;
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
        base = queue.vringBase();
        stop.close();
        stop = null;
        thread = null;
        queue = null;
    }

    /** Stops and forgets everything the front-end set (RESET_DEVICE, disconnect). */
    void reset() {
        stop();
        Fd.close(kickFd);
        kickFd = -1;
        kickPolled = false;
        if (call != null) {
            call.close();
            call = null;
        }
        if (err != null) {
            err.close();
            err = null;
        }
        size = 0;
        addressed = false;
        usedLogGpa = -1;
        base = 0;
        packed = false;
        started = false;
        enabled = false;
    }
}
