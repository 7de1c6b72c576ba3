package io.phost.vswitch;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.agrona.DirectBuffer;
import org.agrona.MutableDirectBuffer;
import org.agrona.concurrent.Agent;
import org.agrona.concurrent.AgentRunner;
import org.agrona.concurrent.BackoffIdleStrategy;
import org.agrona.concurrent.MessageHandler;

/**
 * Virtual machine queues: a receive queue per vNIC (its MAC+VLAN are the filter: the switch's table sends
 * the vNIC's frames to its port, whose sink is the queue), a default queue shared by vNICs with
 * {@code vmq_weight = 0}, and a pool of workers ({@link Agent}s on their own threads) that drain them, so
 * different vNICs are served on different cores. {@link #rebalance()} moves a busy queue from the most loaded
 * worker to the least loaded one (dynamic VMQ).
 * <pre>
 *  switch thread ──▶ [q vnic1] ──┐ worker 0 ──▶ vnic1 sink
 *                ──▶ [q vnic2] ──┤ worker 1 ──▶ vnic2 sink
 *                ──▶ [default] ──┘ (any)    ──▶ vnic3 / vnic4 sinks
 * </pre>
 * Why not the LMAX Disruptor here: each queue has one producer and one consumer, and frames are variable
 * length (60 B to 64 KiB GSO); Agrona's one-to-one ring stores them inline with no per-slot sizing, while a
 * Disruptor's fixed slots would need 64 KiB per slot or a second buffer pool. There is no fan-out to pay for.
 */
public final class Vmq implements AutoCloseable {
    public static final int QUEUE_BYTES = 1 << 21;
    private final int workerCount;
    private volatile VmqQueue[] queues = new VmqQueue[0];
    private volatile FrameSink[] targets = new FrameSink[0];
    private final VmqQueue defaultQueue;
    private final Worker[] workers;
    private final List<AgentRunner> runners = new ArrayList<>();
    private long[] lastWorkerLoad;

    public Vmq(int workerCount) {
        if (workerCount < 1) {
            throw new IllegalArgumentException("VMQ needs at least one worker");
        }
        this.workerCount = workerCount;
        this.workers = new Worker[workerCount];
        for (int i = 0; i < workerCount; i++) {
            workers[i] = new Worker(i);
        }
        this.lastWorkerLoad = new long[workerCount];
        this.defaultQueue = addQueue("default", 0);
    }

    private synchronized VmqQueue addQueue(String name, int owner) {
        VmqQueue q = new VmqQueue(name, queues.length, QUEUE_BYTES, owner);
        VmqQueue[] next = Arrays.copyOf(queues, queues.length + 1);
        next[q.id] = q;
        queues = next;
        return q;
    }

    private synchronized int addTarget(FrameSink sink) {
        FrameSink[] next = Arrays.copyOf(targets, targets.length + 1);
        next[targets.length] = sink;
        targets = next;
        return targets.length - 1;
    }

    /**
     * The sink to give a vNIC's port: its own queue when {@code vmqWeight > 0} (placed on the worker with the
     * fewest queues), else the default queue. Frames end up in {@code target} on a worker thread.
     */
    public synchronized FrameSink attach(String vnic, int vmqWeight, FrameSink target) {
        int t = addTarget(target);
        if (vmqWeight == 0) {
            return defaultQueue.sinkFor(t, target.offloads());
        }
        int[] perWorker = new int[workerCount];
        for (VmqQueue q : queues) {
            perWorker[q.owner()]++;
        }
        int least = 0;
        for (int w = 1; w < workerCount; w++) {
            if (perWorker[w] < perWorker[least]) {
                least = w;
            }
        }
        return attachOn(vnic, target, t, least);
    }

    /** As {@link #attach} with an explicit first worker (tests and pinning). */
    public synchronized FrameSink attachOnWorker(String vnic, int worker, FrameSink target) {
        return attachOn(vnic, target, addTarget(target), worker);
    }

    private FrameSink attachOn(String vnic, FrameSink target, int t, int worker) {
        VmqQueue q = addQueue("vmq-" + vnic, worker);
        return q.sinkFor(t, target.offloads());
    }

    public List<VmqQueue> queues() {
        return List.of(queues);
    }

    public VmqQueue defaultQueue() {
        return defaultQueue;
    }

    public int workerCount() {
        return workerCount;
    }

    /** The agents, for callers that run them their own way (tests call {@code doWork()} directly). */
    public Agent worker(int i) {
        return workers[i];
    }

    /** Runs one duty cycle of worker {@code i} on the calling thread (for tests and custom runners). */
    public int drainOnce(int i) {
        return workers[i].doWork();
    }

    /** Starts one thread per worker (roles {@code vmq-0}, {@code vmq-1}, …). */
    public synchronized void start() {
        for (Worker w : workers) {
            AgentRunner r = new AgentRunner(new BackoffIdleStrategy(100, 10, 1_000, 200_000),
                Throwable::printStackTrace, null, w);
            AgentRunner.startOnThread(r);
            runners.add(r);
        }
    }

    /**
     * Dynamic VMQ: measures each queue's frames since the last call; when the busiest worker carries more than
     * 1.5x the least busy one and has more than one active queue, moves one queue (the one whose move best
     * evens the two) to the least busy worker. Returns true when a queue moved. Call it from a timer.
     */
    public synchronized boolean rebalance() {
        VmqQueue[] qs = queues;
        long[] load = new long[workerCount];
        long[] qLoad = new long[qs.length];
        for (VmqQueue q : qs) {
            long d = q.drained();
            qLoad[q.id] = d - q.drainedAtLastRebalance;
            q.drainedAtLastRebalance = d;
            if (q.pendingOwner() == -1) {
                load[q.owner()] += qLoad[q.id];
            }
        }
        lastWorkerLoad = load;
        int max = 0;
        int min = 0;
        for (int w = 1; w < workerCount; w++) {
            if (load[w] > load[max]) {
                max = w;
            }
            if (load[w] < load[min]) {
                min = w;
            }
        }
        if (max == min || load[max] == 0 || load[max] * 2 <= load[min] * 3) {
            return false;
        }
        VmqQueue best = null;
        long bestSpread = load[max] - load[min];
        int activeOnMax = 0;
        for (VmqQueue q : qs) {
            if (q.owner() == max && q.pendingOwner() == -1 && qLoad[q.id] > 0) {
                activeOnMax++;
                long spread = Math.abs((load[max] - qLoad[q.id]) - (load[min] + qLoad[q.id]));
                if (spread < bestSpread) {
                    bestSpread = spread;
                    best = q;
                }
            }
        }
        if (best == null || activeOnMax < 2) {
            return false;
        }
        best.requestOwner(min);
        return true;
    }

    /** Per-worker frames drained during the last rebalance period. */
    public synchronized long[] lastWorkerLoad() {
        return lastWorkerLoad.clone();
    }

    @Override
    public synchronized void close() {
        for (AgentRunner r : runners) {
            r.close();
        }
        runners.clear();
    }

    /**
     * The CPU worker {@code i}'s thread last ran on (field 39 of /proc/self/task/TID/stat), or -1 before the
     * worker started or where /proc has no answer.
     */
    public int workerCpu(int i) {
        long tid = workers[i].tid;
        if (tid <= 0) {
            return -1;
        }
        try {
            String stat = java.nio.file.Files.readString(java.nio.file.Path.of("/proc/self/task/" + tid + "/stat"));
            String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
            return Integer.parseInt(f[36]); // field 39 counted from 1, minus the first two (pid, comm)
        } catch (java.io.IOException | RuntimeException e) {
            return -1;
        }
    }

    private final class Worker implements Agent, MessageHandler {
        private final int id;
        /** The worker thread's kernel thread id, set when it starts. */
        private volatile long tid;
        private final PacketMeta meta = new PacketMeta();
        private FrameSink[] cachedTargets = new FrameSink[0];

        Worker(int id) {
            this.id = id;
        }

        @Override
        public int doWork() {
            int work = 0;
            cachedTargets = targets;
            for (VmqQueue q : queues) {
                if (q.owner() != id) {
                    continue;
                }
                int pending = q.pendingOwner();
                if (pending != -1 && pending != id) {
                    q.handOver(pending);
                    continue;
                }
                int n = q.ring.read(this, 64);
                if (n > 0) {
                    q.addDrained(n);
                    work += n;
                }
            }
            return work;
        }

        @Override
        public void onMessage(int msgTypeId, MutableDirectBuffer buffer, int index, int length) {
            int target = buffer.getInt(index);
            FrameSink[] ts = cachedTargets;
            if (target < 0 || target >= ts.length) {
                ts = cachedTargets = targets; // attached after this duty cycle began
            }
            meta.flags = buffer.getByte(index + 4) & 0xff;
            meta.gsoType = buffer.getByte(index + 5) & 0xff;
            meta.hdrLen = buffer.getShort(index + 6) & 0xffff;
            meta.gsoSize = buffer.getShort(index + 8) & 0xffff;
            meta.csumStart = buffer.getShort(index + 10) & 0xffff;
            meta.csumOffset = buffer.getShort(index + 12) & 0xffff;
            DirectBuffer frame = buffer;
            ts[target].tryTransmit(frame, index + VmqQueue.HEADER, length - VmqQueue.HEADER, meta);
        }

        @Override
        public void onStart() {
            try {
                // "/proc/thread-self" links to "PID/task/TID" for the calling thread.
                tid = Long.parseLong(java.nio.file.Files.readSymbolicLink(java.nio.file.Path.of("/proc/thread-self"))
                    .getFileName().toString());
            } catch (java.io.IOException | RuntimeException e) {
                tid = -1;
            }
        }

        @Override
        public String roleName() {
            return "vmq-" + id;
        }
    }
}
