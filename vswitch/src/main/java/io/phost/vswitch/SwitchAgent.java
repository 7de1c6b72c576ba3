package io.phost.vswitch;

import io.phost.core.sys.NetSyscalls;
import io.phost.core.vmbus.PollingMode;
import io.phost.core.vmbus.SpinGovernor;
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
 *   spin:   rounds poll the sources read in memory (guest rings, vhost-user queues, AF_PACKET's TPACKET
 *           ring) every round; the kernel-queue sources (TAP: a read(2) per poll) are checked together with one
 *           zero-timeout poll(2) per round and read only when one is readable
 * </pre>
 * <b>Spin length</b> ({@code [host] polling}, as the channel agents): {@code efficiency} spins
 * {@link #EFFICIENCY_SPIN_NANOS}; {@code latency} spins {@link #RESPONSE_SPIN_NANOS}, long enough for a reply
 * from a partition or VM to find the agent awake; {@code adaptive} (the default) spins that long while its
 * {@link SpinGovernor} says spinning pays (at least 1/4 of the idle episodes end with work found while spinning,
 * which is what request/response traffic looks like, and the thread waits for a CPU less than 5 % of the
 * time), else {@link #EFFICIENCY_SPIN_NANOS} (it was a fixed 50 us before the eleventh session).
 * <p>
 * <b>Clock.</b> The agent reads {@code System.nanoTime} only every {@link #CLOCK_ROUNDS} rounds or
 * {@link #CLOCK_FRAMES} frames, whichever comes first, after every sleep, and every round while a port is
 * skipped for bandwidth debt (it waits on time). A read per round and per spin was 28 % of the agent's time
 * when forwarding small frames. So the switch's clock (storm limits, shaping,
 * policers, ACL flows, MAC aging) is at most that many rounds or frames behind while the agent is awake and
 * current when it wakes; token buckets refill by elapsed time, so a late read delays a refill a little and
 * never changes a long-run rate. The spin after work is measured on this clock: it lasts
 * {@link #spinNanos}, give or take one clock period.
 */
public final class SwitchAgent implements Agent {
    /** Bytes of credit per unit of weight per round: one GSO super-frame, so weight 1 always makes progress. */
    static final long QUANTUM = 65_536;
    private static final int BATCH = 32;
    /**
     * The spin after work while it pays ({@code latency}, or {@code adaptive} when its governor says so): catches the
     * next frame of a flow or a partition's or VM's reply without a wake-up. Time-bounded, so its cost does not grow
     * with the port count.
     */
    static final long RESPONSE_SPIN_NANOS = 200_000;
    /**
     * The spin while spinning does not pay ({@code efficiency}, or {@code adaptive} on a contended CPU or without
     * request/response traffic): frames already on their way. The spin is CPU time whatever it polls (the guest
     * bridge's 50 -> 10 us spin saved 19-22 % of its CPU per GB, tenth session).
     */
    static final long EFFICIENCY_SPIN_NANOS = 10_000;
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
    private final PollingMode polling;
    /** Decides the {@code adaptive} spin; null in the other modes. */
    private final SpinGovernor governor;
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
    /** The kernel-queue sources' fds (a subset of pollFds), checked with one zero-timeout poll(2) while spinning. */
    private final ByteBuffer kernelFds = ByteBuffer.allocateDirect(MAX_FDS * 8).order(ByteOrder.nativeOrder());
    private final long kernelFdsAddress = org.agrona.BufferUtil.address(kernelFds);
    private int kernelFdCount;
    /** Every kernel-queue source's fds are in kernelFds (then a spinning round may skip those sources). */
    private boolean kernelCovered;
    /** Set by the idle strategy while it spins: rounds skip the kernel-queue sources unless {@link #kernelReady}. */
    private boolean spinning;
    /** The last fd check found a kernel-queue source readable: the next round polls them. */
    private boolean kernelReady;
    private long fdChecks;
    /** Sleeps (poll(2) or a park), and the poll(2)s a ready fd ended (not the timeout): tests. */
    private long sleeps;
    private long readySleeps;
    private volatile Thread thread;
    private final WakeupSignal commandSignal = new WakeupSignal();
    private final java.util.function.BooleanSupplier noCommands = () -> commands.isEmpty();
    /** Set by doWork when a port was skipped for being in bandwidth debt: its fd stays readable, so no poll(2). */
    private boolean shaping;

    public SwitchAgent(VSwitch sw) {
        this(sw, PollingMode.ADAPTIVE);
    }

    /** An agent whose spin follows {@code polling} ({@code [host] polling}). */
    public SwitchAgent(VSwitch sw, PollingMode polling) {
        this(sw, System::nanoTime, polling, polling == PollingMode.ADAPTIVE ? SpinGovernor.forHostThread() : null);
    }

    /** With {@code clock} in place of System.nanoTime (tests); a fixed spin ({@code latency}), no governor. */
    SwitchAgent(VSwitch sw, java.util.function.LongSupplier clock) {
        this(sw, clock, PollingMode.LATENCY, null);
    }

    /** With {@code clock} and, for {@code adaptive}, {@code governor} (tests: a fake run-queue probe). */
    SwitchAgent(VSwitch sw, java.util.function.LongSupplier clock, PollingMode polling, SpinGovernor governor) {
        if (polling == PollingMode.ADAPTIVE && governor == null) {
            throw new IllegalArgumentException("adaptive polling needs a spin governor");
        }
        this.sw = sw;
        this.clock = clock;
        this.polling = polling;
        this.governor = polling == PollingMode.ADAPTIVE ? governor : null;
        rebuildPollSet();
    }

    /** How long the agent spins after work before it sleeps, this idle episode (see the class comment). */
    long spinNanos() {
        return switch (polling) {
            case LATENCY -> RESPONSE_SPIN_NANOS;
            case EFFICIENCY -> EFFICIENCY_SPIN_NANOS;
            case ADAPTIVE -> governor.shouldSpin() ? RESPONSE_SPIN_NANOS : EFFICIENCY_SPIN_NANOS;
        };
    }

    /** Zero-timeout poll(2) checks of the kernel-queue sources so far (tests: they replace a read(2) per round). */
    long fdChecks() {
        return fdChecks;
    }

    /** Sleeps so far (in poll(2), or parks while a source has no fd or a port is shaped). */
    long sleeps() {
        return sleeps;
    }

    /** Sleeps in poll(2) that a ready fd ended before their timeout. */
    long readySleeps() {
        return readySleeps;
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
        boolean skipKernel = spinning && !kernelReady && kernelCovered;
        kernelReady = false;
        int limit = sw.portLimit();
        for (int i = 0; i < limit; i++) {
            Port p = sw.portAt(i);
            if (p == null || p.source == null || !p.up || (skipKernel && p.source.kernelQueue())) {
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
        int k = 0;
        boolean allFds = true;
        boolean allKernel = true;
        for (Port p : sw.ports()) {
            if (p.source == null) {
                continue;
            }
            int[] fds = p.source.readinessFds();
            if (fds.length == 0 || n + fds.length > MAX_FDS) {
                allFds = false;
                allKernel &= !p.source.kernelQueue();
                continue;
            }
            for (int fd : fds) {
                pollFds.putInt(n * 8, fd);
                pollFds.putShort(n * 8 + 4, NetSyscalls.POLLIN);
                pollFds.putShort(n * 8 + 6, (short) 0);
                n++;
                if (p.source.kernelQueue()) {
                    kernelFds.putInt(k * 8, fd);
                    kernelFds.putShort(k * 8 + 4, NetSyscalls.POLLIN);
                    kernelFds.putShort(k * 8 + 6, (short) 0);
                    k++;
                }
            }
        }
        pollFdCount = n;
        pollable = allFds;
        kernelFdCount = k;
        kernelCovered = allKernel;
    }

    /**
     * While spinning: one zero-timeout poll(2) over the kernel-queue sources' fds, every round. It replaces a read(2)
     * per TAP per round (one call whatever the TAP count) and finds a frame as soon as the reads did: checking every
     * 8 us instead cut read(2) per MB on the host TAP path from 220-228 to 81-99 but cost 0.57-0.62 instead of
     * 0.46-0.49 switch CPU-s per GB on the netns path (longer spins per frame; docs/benchmarks.md, issue 12
     * eleventh session).
     */
    private void checkKernelFds() {
        if (kernelFdCount > 0) {
            fdChecks++;
            kernelReady = NetSyscalls.poll(kernelFdsAddress, kernelFdCount, 0) != 0; // < 0 (EINTR...): look anyway
        }
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
                disarmAll(true);
                return false;
            }
        }
        return true;
    }

    /**
     * Disarms every source and the command signal. {@code drainCommands}: read the command eventfd's counter (a
     * read(2)); after a poll(2) only when its revents says it fired, so a frame's wake-up pays no read of it (a
     * signal that lands after the poll returned keeps the fd readable: the next sleep returns at once and drains it).
     */
    private void disarmAll(boolean drainCommands) {
        if (drainCommands) {
            commandSignal.disarm();
        } else {
            commandSignal.disarmOnly();
        }
        int limit = sw.portLimit();
        for (int i = 0; i < limit; i++) {
            Port p = sw.portAt(i);
            if (p != null && p.source != null) {
                p.source.disarmWakeup();
            }
        }
    }

    /**
     * An idle strategy for this agent: spin (memory sources every round, kernel-queue fds with one zero-timeout
     * poll(2) per round), then sleep in poll(2) on every port's fd (1 ms, then up to 100 ms).
     */
    public IdleStrategy idleStrategy() {
        return new IdleStrategy() {
            /** Sleeps since the last work (0: still in the spin window that follows work). */
            private int polls;
            /** On the agent's clock (no read of its own: see the class comment). */
            private long lastWork = now;
            /** This episode's spin, decided when it starts (the governor's answer may change between episodes). */
            private long spinNanos = spinNanos();
            /** An idle round happened since the last work: the next work ends an idle episode (the governor's unit). */
            private boolean idling;
            /** This episode slept: its work was not found by the spin. */
            private boolean slept;

            @Override
            public void idle(int workCount) {
                if (workCount > 0) {
                    if (idling && governor != null) {
                        governor.episodeEnded(!slept);
                    }
                    reset();
                    return;
                }
                idle();
            }

            @Override
            public void idle() {
                idling = true;
                if (polls == 0 && now - lastWork < spinNanos) {
                    spinning = true;
                    checkKernelFds();
                    Thread.onSpinWait();
                    return;
                }
                spinning = false;
                slept = true;
                polls = Math.min(polls + 1, SHORT_POLLS + 1); // capped: never wraps
                if (!pollable || shaping) {
                    // A source without an fd, or a port in bandwidth debt (its fd stays readable): short parks.
                    java.util.concurrent.locks.LockSupport.parkNanos(50_000);
                    sleeps++;
                    readClock();
                } else if (armAll()) {
                    // Right after traffic: 1 ms polls (as quick to wake as before); once quiet: long sleeps.
                    int wait = polls <= SHORT_POLLS ? 1 : IDLE_WAIT_MILLIS;
                    int ready = NetSyscalls.poll(pollFdsAddress, pollFdCount, wait);
                    sleeps++;
                    if (ready > 0) {
                        readySleeps++;
                    }
                    disarmAll(ready < 0 || (ready > 0 && pollFds.getShort(6) != 0)); // EINTR: drain to be safe
                    readClock(); // slept: the clock must be current for the frames that woke us
                    if (ready > 0) {
                        polls = 0;
                        lastWork = now; // a spin follows the wake-up, as after work
                    }
                }
            }

            @Override
            public void reset() {
                polls = 0;
                lastWork = now;
                spinning = false;
                idling = false;
                slept = false;
                spinNanos = spinNanos();
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
