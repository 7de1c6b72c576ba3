package io.phost.vswitch;

import io.phost.core.sys.NetSyscalls;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.concurrent.CompletableFuture;
import java.util.function.Consumer;
import org.agrona.concurrent.Agent;
import org.agrona.concurrent.IdleStrategy;
import org.agrona.concurrent.ManyToOneConcurrentArrayQueue;

/**
 * The thread that owns a {@link VSwitch}: polls every port's source, shaping by max bandwidth and sharing the
 * core by min-bandwidth weight (deficit round robin), and runs configuration changes submitted from other
 * threads between frames, so the data path needs no locks.
 * <pre>
 *   doWork: clock due? read it, tick ─▶ run submitted commands ─▶ for each port with a source:
 *             skip while its bandwidth bucket is in debt (backpressure: the TAP/socket queue holds the rest)
 *             deficit += weight * QUANTUM; poll frames while deficit > 0
 *   idle:   spin, then arm every source and poll(2) on their fds plus the command eventfd (the "interrupt"):
 *           1 ms at a time for ~0.1 s after traffic, then up to 100 ms; a port being shaped (bucket in debt)
 *           keeps the agent on 50 us parks instead
 * </pre>
 * <b>Clock.</b> The agent reads {@code System.nanoTime} only every {@link #CLOCK_ROUNDS} rounds or
 * {@link #CLOCK_FRAMES} frames, whichever comes first, after every sleep, and every round while a port is
 * skipped for bandwidth debt (it waits on time). A read per round and per spin was 28 % of the agent's time
 * when forwarding small frames. So the switch's clock (storm limits, shaping,
 * policers, ACL flows, MAC aging) is at most that many rounds or frames behind while the agent is awake and
 * current when it wakes; token buckets refill by elapsed time, so a late read delays a refill a little and
 * never changes a long-run rate. The spin after work is measured on this clock: it lasts
 * {@link #SPIN_NANOS}, give or take one clock period.
 */
public final class SwitchAgent implements Agent {
    /** Bytes of credit per unit of weight per round: one GSO super-frame, so weight 1 always makes progress. */
    static final long QUANTUM = 65_536;
    private static final int BATCH = 32;
    /**
     * Busy-polling after the last frame before arming and sleeping: catches the next frame of a flow or a
     * ping's reply without a wake-up, and stays short because every round reads each TAP port (a read(2)
     * each) on CPUs the flows' own stacks need. Time-bounded, so the cost does not grow with the port count.
     */
    static final long SPIN_NANOS = 50_000;
    /** 1 ms polls after the spin (~0.1 s) before the long sleeps. */
    private static final int SHORT_POLLS = 100;
    private static final int MAX_FDS = 256;
    /** Longest sleep: bounds MAC aging lateness only; frames and commands wake the agent at once. */
    private static final int IDLE_WAIT_MILLIS = 100;
    /** Rounds between clock reads (an empty round costs ~0.1 us with vhost-user ports: a few us of lag). */
    static final int CLOCK_ROUNDS = 16;
    /** Frames between clock reads (~10 us of 64-byte frames at the agent's rate). */
    static final int CLOCK_FRAMES = 32;

    private final VSwitch sw;
    private final java.util.function.LongSupplier clock;
    /** The agent's clock (System.nanoTime scale): the last read, see the class comment. */
    private long now;
    private int roundsSinceClock = CLOCK_ROUNDS; // the first round reads it
    private int framesSinceClock;
    private long clockReads;
    private final ManyToOneConcurrentArrayQueue<Runnable> commands = new ManyToOneConcurrentArrayQueue<>(1024);
    private final ByteBuffer pollFds = ByteBuffer.allocateDirect(MAX_FDS * 8).order(ByteOrder.nativeOrder());
    private final long pollFdsAddress = org.agrona.BufferUtil.address(pollFds);
    private int pollFdCount;
    private boolean pollable;
    private volatile Thread thread;
    private final WakeupSignal commandSignal = new WakeupSignal();
    private final java.util.function.BooleanSupplier noCommands = () -> commands.isEmpty();
    /** Set by doWork when a port was skipped for being in bandwidth debt: its fd stays readable, so no poll(2). */
    private boolean shaping;

    public SwitchAgent(VSwitch sw) {
        this(sw, System::nanoTime);
    }

    /** With {@code clock} in place of System.nanoTime (tests). */
    SwitchAgent(VSwitch sw, java.util.function.LongSupplier clock) {
        this.sw = sw;
        this.clock = clock;
        rebuildPollSet();
    }

    /** Reads the clock and advances the switch's (agent thread). */
    private void readClock() {
        now = clock.getAsLong();
        sw.tick(now);
        roundsSinceClock = 0;
        framesSinceClock = 0;
        clockReads++;
    }

    /** Clock reads so far (tests: the reads per round stay bounded). */
    long clockReads() {
        return clockReads;
    }

    public VSwitch vswitch() {
        return sw;
    }

    @Override
    public void onStart() {
        thread = Thread.currentThread();
    }

    /** Runs {@code change} on the switch's thread (or right here if the agent is not running). */
    public CompletableFuture<Void> submit(Consumer<VSwitch> change) {
        CompletableFuture<Void> done = new CompletableFuture<>();
        Runnable r = () -> {
            try {
                change.accept(sw);
                rebuildPollSet();
                done.complete(null);
            } catch (Throwable t) {
                done.completeExceptionally(t);
            }
        };
        if (thread == null) {
            r.run();
        } else if (!commands.offer(r)) {
            done.completeExceptionally(new IllegalStateException("command queue of " + sw.name() + " is full"));
        } else {
            commandSignal.signalIfArmed();
        }
        return done;
    }

    @Override
    public int doWork() {
        if (shaping || roundsSinceClock >= CLOCK_ROUNDS || framesSinceClock >= CLOCK_FRAMES) {
            readClock(); // a port in bandwidth debt waits on time: then every round, as before
        }
        roundsSinceClock++;
        long now = this.now;
        int work = commands.drain(Runnable::run);
        shaping = false;
        int limit = sw.portLimit();
        for (int i = 0; i < limit; i++) {
            Port p = sw.portAt(i);
            if (p == null || p.source == null || !p.up) {
                continue;
            }
            if (!p.admitsIngress(now)) {
                shaping = true;
                continue;
            }
            work += pollPort(p, now);
        }
        framesSinceClock += work;
        return work;
    }

    private int pollPort(Port p, long now) {
        p.deficit += p.weight * QUANTUM;
        int frames = 0;
        while (p.deficit > 0) {
            long before = p.counters.rxBytes();
            int n = p.source.poll(p.ingress, p.bandwidth == null ? BATCH : 1);
            if (n == 0) {
                p.deficit = 0; // an idle port keeps no credit (DRR)
                break;
            }
            frames += n;
            long bytes = p.counters.rxBytes() - before;
            p.deficit -= bytes;
            if (p.bandwidth != null) {
                p.bandwidth.consume(bytes, now);
                if (!p.bandwidth.ready(now)) {
                    p.deficit = 0;
                    break;
                }
            }
        }
        return frames;
    }

    private void rebuildPollSet() {
        pollFds.putInt(0, commandSignal.fd());
        pollFds.putShort(4, NetSyscalls.POLLIN);
        pollFds.putShort(6, (short) 0);
        int n = 1;
        boolean allFds = true;
        for (Port p : sw.ports()) {
            if (p.source == null) {
                continue;
            }
            int[] fds = p.source.readinessFds();
            if (fds.length == 0 || n + fds.length > MAX_FDS) {
                allFds = false;
                continue;
            }
            for (int fd : fds) {
                pollFds.putInt(n * 8, fd);
                pollFds.putShort(n * 8 + 4, NetSyscalls.POLLIN);
                pollFds.putShort(n * 8 + 6, (short) 0);
                n++;
            }
        }
        pollFdCount = n;
        pollable = allFds;
    }

    /** Arms every source and the command signal; false when something is already waiting (then all are disarmed). */
    private boolean armAll() {
        if (!commandSignal.arm(noCommands)) {
            return false;
        }
        int limit = sw.portLimit();
        for (int i = 0; i < limit; i++) {
            Port p = sw.portAt(i);
            if (p != null && p.source != null && p.up && !p.source.armWakeup()) {
                disarmAll();
                return false;
            }
        }
        return true;
    }

    private void disarmAll() {
        commandSignal.disarm();
        int limit = sw.portLimit();
        for (int i = 0; i < limit; i++) {
            Port p = sw.portAt(i);
            if (p != null && p.source != null) {
                p.source.disarmWakeup();
            }
        }
    }

    /** An idle strategy for this agent: spin, then sleep in poll(2) on the ports' fds (1 ms at most). */
    public IdleStrategy idleStrategy() {
        return new IdleStrategy() {
            /** Sleeps since the last work (0: still in the spin window that follows work). */
            private int polls;
            /** On the agent's clock (no read of its own: see the class comment). */
            private long lastWork = now;

            @Override
            public void idle(int workCount) {
                if (workCount > 0) {
                    reset();
                    return;
                }
                idle();
            }

            @Override
            public void idle() {
                if (polls == 0 && now - lastWork < SPIN_NANOS) {
                    Thread.onSpinWait();
                    return;
                }
                polls = Math.min(polls + 1, SHORT_POLLS + 1); // capped: never wraps
                if (!pollable || shaping) {
                    // A source without an fd, or a port in bandwidth debt (its fd stays readable): short parks.
                    java.util.concurrent.locks.LockSupport.parkNanos(50_000);
                    readClock();
                } else if (armAll()) {
                    // Right after traffic: 1 ms polls (as quick to wake as before); once quiet: long sleeps.
                    int wait = polls <= SHORT_POLLS ? 1 : IDLE_WAIT_MILLIS;
                    int ready = NetSyscalls.poll(pollFdsAddress, pollFdCount, wait);
                    disarmAll();
                    readClock(); // slept: the clock must be current for the frames that woke us
                    if (ready > 0) {
                        reset();
                    }
                }
            }

            @Override
            public void reset() {
                polls = 0;
                lastWork = now;
            }
        };
    }

    @Override
    public void onClose() {
        commandSignal.close();
    }

    @Override
    public String roleName() {
        return "vswitch-" + sw.name();
    }
}
