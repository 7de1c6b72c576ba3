package io.phost.storage.vmbus;

import io.phost.core.text.ByteSize;

import io.phost.core.ic.GuestIntegration;
import io.phost.core.vmbus.VmbusClient;
import io.phost.storage.scsi.Scsi;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.time.Duration;
import java.util.Arrays;
import java.util.BitSet;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * The built-in guest storage workload ({@code phost guest io ...}): a small fio inside a child partition,
 * driving the storvsc-style client. Random or sequential reads/writes of {@code bs} bytes at a queue depth,
 * one queue (VMBus channel or sub-channel) and thread per job, for a time or a byte count, with optional
 * verification: writes carry a pattern derived from their offset and a seed; with {@code verify} every
 * written block is read back and checked (and read-only runs check the pattern of an earlier write run).
 */
public final class GuestIo {
    /** What to run. */
    public record Options(String rw, int bs, int iodepth, int jobs, double runtimeSeconds, long size, int lun,
                          boolean verify, long seed, int rwmixread, long offset, long span, int pollMicros) {
        public Options {
            if (!List.of("read", "write", "randread", "randwrite", "randrw").contains(rw)) {
                throw new IllegalArgumentException("--rw must be read|write|randread|randwrite|randrw: " + rw);
            }
            if (bs < 512 || bs > (2 << 20) || bs % 512 != 0) {
                throw new IllegalArgumentException("--bs must be a multiple of 512 up to 2 MiB: " + bs);
            }
            if (iodepth < 1 || iodepth > 256 || jobs < 1 || jobs > 64) {
                throw new IllegalArgumentException("--iodepth 1..256, --jobs 1..64");
            }
            if (pollMicros < 0) {
                throw new IllegalArgumentException("--poll-us must be >= 0: " + pollMicros);
            }
        }

        /** With the default poll budget ({@link StorvscQueue#DEFAULT_POLL_MICROS}). */
        public Options(String rw, int bs, int iodepth, int jobs, double runtimeSeconds, long size, int lun,
                       boolean verify, long seed, int rwmixread, long offset, long span) {
            this(rw, bs, iodepth, jobs, runtimeSeconds, size, lun, verify, seed, rwmixread, offset, span,
                StorvscQueue.DEFAULT_POLL_MICROS);
        }

        public static Options defaults() {
            return new Options("randread", 4096, 1, 1, 5, 0, 0, false, 1, 50, 0, 0);
        }
    }

    /** What happened. Latencies in microseconds. */
    public record Result(String rw, int bs, int iodepth, int jobs, long ios, long bytes, double seconds, double iops,
                         double mibps, double latMeanUs, double latP50Us, double latP99Us, double latP999Us,
                         long errors, long verified, long verifyErrors, double runqueueWaitUsPerIo) {
        public String json() {
            return String.format(Locale.ROOT, "{\"rw\":\"%s\",\"bs\":%d,\"iodepth\":%d,\"jobs\":%d,\"ios\":%d,\"bytes\":%d,"
                    + "\"seconds\":%.3f,\"iops\":%.1f,\"mibps\":%.2f,\"lat_us\":{\"mean\":%.2f,\"p50\":%.2f,\"p99\":%.2f,\"p99.9\":%.2f},"
                    + "\"errors\":%d,\"verified\":%d,\"verify_errors\":%d,\"runqueue_wait_us_per_io\":%.3f}",
                rw, bs, iodepth, jobs, ios, bytes, seconds, iops, mibps, latMeanUs, latP50Us, latP99Us, latP999Us,
                errors, verified, verifyErrors, runqueueWaitUsPerIo);
        }

        public String text() {
            return String.format(Locale.ROOT, "%s bs=%d iodepth=%d jobs=%d: %d IOs in %.2fs, IOPS=%.0f, %.1f MiB/s, "
                    + "lat us mean=%.1f p50=%.1f p99=%.1f p99.9=%.1f, errors=%d, verified=%d, verify_errors=%d",
                rw, bs, iodepth, jobs, ios, seconds, iops, mibps, latMeanUs, latP50Us, latP99Us, latP999Us, errors,
                verified, verifyErrors);
        }
    }

    private GuestIo() {}

    /** Attaches from the partition environment, answers the integration services, runs, publishes the result. */
    public static Result runInPartition(Options o) throws Exception {
        try (VmbusClient bus = VmbusClient.attachFromEnvironment();
             GuestIntegration ic = new GuestIntegration(bus, reason -> System.exit(0))) {
            Result r = run(bus, o, ic);
            ic.publish("storage-io", r.json());
            return r;
        }
    }

    /**
     * Runs the workload and answers the host's freeze requests meanwhile (application-consistent checkpoints):
     * a freeze holds new commands, waits for those in flight and flushes the disk (on queue 0, idle then: its
     * job waits for the thaw).
     */
    public static Result run(VmbusClient bus, Options o, GuestIntegration ic) throws Exception {
        try (StorvscClient client = StorvscClient.connect(bus, null, o.jobs(), o.iodepth(), o.bs())) {
            GuestWriteGate gate = new GuestWriteGate(() -> synchronizeCache(client, o.lun()));
            ic.quiescer(gate);
            try {
                return run(client, o, gate);
            } finally {
                ic.quiescer(null);
            }
        }
    }

    private static void synchronizeCache(StorvscClient client, int lun) {
        MemorySegment cdb = Arena.ofAuto().allocate(10);
        cdb.set(ValueLayout.JAVA_BYTE, 0, (byte) Scsi.SYNCHRONIZE_CACHE_10);
        int[] r = StorvscClient.runSync(client.queue(0), lun, cdb, 10, StorvscDescriptor.DATA_UNKNOWN, 0);
        if (r[0] != 0) {
            throw new IllegalStateException("SYNCHRONIZE CACHE failed: scsi status " + r[0]);
        }
        System.err.println("guest io: writes frozen and flushed for a checkpoint");
    }

    /** Runs the workload against the storage controller offered on {@code bus}. */
    public static Result run(VmbusClient bus, Options o) throws Exception {
        try (StorvscClient client = StorvscClient.connect(bus, null, o.jobs(), o.iodepth(), o.bs())) {
            return run(client, o);
        }
    }

    /**
     * Waits up to {@code wait} for the disk to grow while the partition runs, the way a SCSI initiator learns it:
     * a command (TEST UNIT READY, every 100 ms) answered with the CAPACITY DATA HAS CHANGED unit attention, then
     * READ CAPACITY. Then runs {@code o} on the region past the old end ({@code offset} counts from there).
     * Fails when no such unit attention came in time, or the capacity did not grow.
     */
    public static Result runAfterGrow(VmbusClient bus, Options o, Duration wait) throws Exception {
        try (StorvscClient client = StorvscClient.connect(bus, null, o.jobs(), o.iodepth(), o.bs())) {
            long[] before = client.readCapacity(o.lun());
            System.err.println("guest io: LUN " + o.lun() + " has " + before[0] * before[1] + " bytes; waiting up to "
                + wait.toSeconds() + " s for it to grow");
            awaitCapacityChange(client, o.lun(), wait);
            long[] after = client.readCapacity(o.lun());
            if (after[0] <= before[0]) {
                throw new IllegalStateException("LUN " + o.lun() + ": the capacity changed unit attention came, but READ CAPACITY still says "
                    + after[0] + " blocks (was " + before[0] + ")");
            }
            long oldEnd = before[0] * before[1];
            return run(client, new Options(o.rw(), o.bs(), o.iodepth(), o.jobs(), o.runtimeSeconds(), o.size(), o.lun(),
                o.verify(), o.seed(), o.rwmixread(), oldEnd + o.offset(), o.span(), o.pollMicros()));
        }
    }

    /**
     * Waits up to {@code wait} for LUN {@code o.lun()} to be hot-added, the way a SCSI initiator learns it: a command
     * to LUN 0 (TEST UNIT READY, every 100 ms) answered with REPORTED LUNS DATA HAS CHANGED, then REPORT LUNS (the
     * rescan). Then runs {@code o} on the new LUN. Fails when no such unit attention came in time or the LUN is not
     * reported.
     */
    public static Result runAfterLunAdded(VmbusClient bus, Options o, Duration wait) throws Exception {
        try (StorvscClient client = StorvscClient.connect(bus, null, o.jobs(), o.iodepth(), o.bs())) {
            System.err.println("guest io: LUNs " + client.reportLuns() + "; waiting up to " + wait.toSeconds()
                + " s for LUN " + o.lun() + " to be added");
            MemorySegment testUnitReady = Arena.ofAuto().allocate(6);
            long deadline = System.nanoTime() + wait.toNanos();
            while (true) {
                int[] r = StorvscClient.runSync(client.queue(0), 0, testUnitReady, 6, StorvscDescriptor.DATA_UNKNOWN, 0);
                if (r[0] == CHECK_CONDITION && r[3] == Scsi.KEY_UNIT_ATTENTION && r[4] == Scsi.ASC_REPORTED_LUNS_DATA_HAS_CHANGED) {
                    List<Integer> luns = client.reportLuns();
                    System.err.println("guest io: reported LUNs changed; REPORT LUNS: " + luns);
                    if (luns.contains(o.lun())) {
                        return run(client, o);
                    }
                }
                if (System.nanoTime() > deadline) {
                    throw new IllegalStateException("LUN " + o.lun() + " was not added within " + wait);
                }
                Thread.sleep(100);
            }
        }
    }

    private static void awaitCapacityChange(StorvscClient client, int lun, Duration wait) throws InterruptedException {
        MemorySegment testUnitReady = Arena.ofAuto().allocate(6); // opcode 0x00, no data
        long deadline = System.nanoTime() + wait.toNanos();
        while (true) {
            int[] r = StorvscClient.runSync(client.queue(0), lun, testUnitReady, 6, StorvscDescriptor.DATA_UNKNOWN, 0);
            if (r[0] == CHECK_CONDITION && r[3] == Scsi.KEY_UNIT_ATTENTION
                && r[4] == Scsi.ASC_CAPACITY_DATA_HAS_CHANGED) {
                return;
            }
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException("LUN " + lun + ": no CAPACITY DATA HAS CHANGED unit attention within " + wait
                    + " (last TEST UNIT READY: scsi status " + r[0] + ", sense key " + r[3] + ", asc/ascq 0x"
                    + Integer.toHexString(r[4]) + ")");
            }
            Thread.sleep(100);
        }
    }

    private static final int CHECK_CONDITION = 2;

    public static Result run(StorvscClient client, Options o) throws Exception {
        return run(client, o, null);
    }

    /** With {@code gate} (or null): the jobs hold their commands while it is frozen. */
    static Result run(StorvscClient client, Options o, GuestWriteGate gate) throws Exception {
        long[] cap = client.readCapacity(o.lun());
        int blockSize = (int) cap[1];
        if (o.bs() % blockSize != 0) {
            throw new IllegalArgumentException("--bs " + o.bs() + " is not a multiple of the disk's " + blockSize + "-byte blocks");
        }
        long diskBytes = cap[0] * blockSize;
        long span = o.span() > 0 ? Math.min(o.span(), diskBytes - o.offset()) : diskBytes - o.offset();
        long units = span / o.bs();
        if (units <= 0) {
            throw new IllegalArgumentException("region smaller than one block");
        }
        int jobs = Math.min(o.jobs(), client.queueCount());
        Job[] js = new Job[jobs];
        Thread[] ts = new Thread[jobs];
        long start = System.nanoTime();
        for (int j = 0; j < jobs; j++) {
            js[j] = new Job(client.queue(j), o, j, jobs, units, blockSize, gate);
            if (gate != null) {
                gate.join();
            }
            Thread t = new Thread(js[j]::run, "guest-io-" + j);
            ts[j] = t;
            t.start();
        }
        for (Thread t : ts) {
            t.join();
        }
        double seconds = (System.nanoTime() - start) / 1e9;
        long ios = 0;
        long errors = 0;
        long verified = 0;
        long verifyErrors = 0;
        int samples = 0;
        long runqueueWait = 0;
        for (Job j : js) {
            runqueueWait += j.runqueueWaitNanos;
            if (j.failure != null) {
                throw j.failure;
            }
            ios += j.ios;
            errors += j.errors;
            verified += j.verified;
            verifyErrors += j.verifyErrors;
            samples += j.samples;
        }
        long[] all = new long[samples];
        int k = 0;
        for (Job j : js) {
            System.arraycopy(j.lat, 0, all, k, j.samples);
            k += j.samples;
        }
        Arrays.sort(all);
        double timed = Math.max(1e-9, Arrays.stream(js).mapToDouble(j -> j.timedSeconds).max().orElse(seconds));
        double mean = all.length == 0 ? 0 : Arrays.stream(all).average().orElse(0) / 1000.0;
        return new Result(o.rw(), o.bs(), o.iodepth(), jobs, ios, ios * o.bs(), timed, ios / timed,
            ios * (double) o.bs() / (1 << 20) / timed, mean, pct(all, 50), pct(all, 99), pct(all, 99.9), errors, verified,
            verifyErrors, runqueueWait / 1e3 / Math.max(1, ios));
    }

    private static double pct(long[] sorted, double p) {
        if (sorted.length == 0) {
            return 0;
        }
        int i = (int) Math.min(sorted.length - 1, Math.ceil(p / 100.0 * sorted.length) - 1);
        return sorted[Math.max(0, i)] / 1000.0;
    }

    /** The 8-byte word at {@code byteOffset} of the disk for a pattern seed. */
    public static long pattern(long byteOffset, long seed) {
        return (byteOffset * 0x9E3779B97F4A7C15L) ^ seed;
    }

    /** One job: one queue, one thread. */
    private static final class Job {
        private static final int MAX_SAMPLES = 1 << 21;
        final StorvscQueue q;
        final Options o;
        final long units;
        final long firstUnit;
        final long jobUnits;
        final int blockSize;
        final SplittableRandom rnd;
        final long[] lat;
        final long[] startedAt;
        final long[] unitOf;
        final boolean[] isWrite;
        final BitSet written;
        int samples;
        long ios;
        long errors;
        long verified;
        long verifyErrors;
        double timedSeconds;
        long runqueueWaitNanos;
        long nextSeq;
        Exception failure;

        final GuestWriteGate gate;
        /** The workload's kind, decided once (not a string compare per I/O). */
        final boolean random;
        final boolean mixed;
        final boolean allWrites;

        Job(StorvscQueue q, Options o, int index, int jobs, long units, int blockSize, GuestWriteGate gate) {
            this.q = q;
            this.gate = gate;
            q.pollMicros(o.pollMicros());
            this.o = o;
            this.random = o.rw().startsWith("rand");
            this.mixed = o.rw().equals("randrw");
            this.allWrites = o.rw().equals("write") || o.rw().equals("randwrite");
            this.units = units;
            // Sequential jobs split the region; random jobs roam all of it.
            this.jobUnits = o.rw().startsWith("rand") ? units : Math.max(1, units / jobs);
            this.firstUnit = o.rw().startsWith("rand") ? 0 : index * jobUnits;
            this.blockSize = blockSize;
            this.rnd = new SplittableRandom(o.seed() * 31 + index);
            this.lat = new long[(int) Math.min(MAX_SAMPLES, o.size() > 0 ? o.size() / o.bs() + 1 : MAX_SAMPLES)];
            this.startedAt = new long[o.iodepth()];
            this.unitOf = new long[o.iodepth()];
            this.isWrite = new boolean[o.iodepth()];
            this.written = o.verify() && writes(o.rw()) ? new BitSet((int) Math.min(Integer.MAX_VALUE, jobUnits + firstUnit)) : null;
        }

        static boolean writes(String rw) {
            return rw.contains("write") || rw.equals("randrw");
        }

        void run() {
            try {
                long wait0 = runqueueWaitNanos();
                long t0 = System.nanoTime();
                long deadline = o.runtimeSeconds() > 0 && o.size() == 0 ? t0 + (long) (o.runtimeSeconds() * 1e9) : Long.MAX_VALUE;
                long budget = o.size() > 0 ? o.size() / o.bs() : Long.MAX_VALUE;
                phase(deadline, budget, false);
                timedSeconds = (System.nanoTime() - t0) / 1e9;
                runqueueWaitNanos = runqueueWaitNanos() - wait0;
                if (o.verify() && written != null) {
                    verifyPass();
                }
            } catch (Exception e) {
                failure = e;
            } finally {
                if (gate != null) {
                    gate.leave();
                }
            }
        }

        private long nextUnit() {
            if (random) {
                return rnd.nextLong(units);
            }
            return firstUnit + (nextSeq++ % jobUnits);
        }

        private boolean nextIsWrite() {
            return mixed ? rnd.nextInt(100) >= o.rwmixread() : allWrites;
        }

        private void fill(int slot, long unit) {
            MemorySegment b = q.buffer(slot);
            long base = o.offset() + unit * o.bs();
            for (int i = 0; i < o.bs(); i += 8) {
                b.set(ValueLayout.JAVA_LONG, i, pattern(base + i, o.seed()));
            }
        }

        private boolean check(int slot, long unit) {
            MemorySegment b = q.buffer(slot);
            long base = o.offset() + unit * o.bs();
            for (int i = 0; i < o.bs(); i += 8) {
                if (b.get(ValueLayout.JAVA_LONG, i) != pattern(base + i, o.seed())) {
                    return false;
                }
            }
            return true;
        }

        private boolean start(int slot, long unit, boolean write) {
            long lba = (o.offset() + unit * o.bs()) / blockSize;
            int blocks = o.bs() / blockSize;
            if (write) {
                fill(slot, unit);
            }
            // The latency clock starts before the submit, as fio's does: the publish (and the doorbell, when the
            // host sleeps) is part of the I/O. Until issue 19's tenth session it started after the publish.
            long t = System.nanoTime();
            boolean ok = write ? q.tryWrite(slot, o.lun(), lba, blocks, blockSize) : q.tryRead(slot, o.lun(), lba, blocks, blockSize);
            if (ok) {
                startedAt[slot] = t;
                unitOf[slot] = unit;
                isWrite[slot] = write;
            }
            return ok;
        }

        /** Keeps iodepth commands in flight until the deadline or the budget; verifyMode reads written units. */
        private void phase(long deadline, long budget, boolean verifyMode) throws InterruptedException {
            long issued = 0;
            int[] freeSlots = new int[o.iodepth()];
            int free = 0;
            for (int s = o.iodepth() - 1; s >= 0; s--) {
                freeSlots[free++] = s;
            }
            int[] freeRef = {free};
            long[] issuedRef = {issued};
            // One handler for the whole phase: a lambda created per await would be an allocation per I/O.
            StorvscQueue.Completion onComplete = (slot, scsi, srb, transferred, key, ascq) -> {
                long now = System.nanoTime();
                if (scsi == CHECK_CONDITION && key == Scsi.KEY_UNIT_ATTENTION && start(slot, unitOf[slot], isWrite[slot])) {
                    return; // the disk grew (or was reset): retried as an initiator does; the slot stays in flight
                }
                if (scsi != 0 || (srb & 0x3F) != StorvscDescriptor.SRB_STATUS_SUCCESS) {
                    errors++;
                } else if (verifyMode || (o.verify() && !isWrite[slot])) {
                    if (written == null || written.get((int) unitOf[slot])) {
                        verified++;
                        if (!check(slot, unitOf[slot])) {
                            verifyErrors++;
                        }
                    }
                } else if (isWrite[slot] && written != null) {
                    written.set((int) unitOf[slot]);
                }
                if (!verifyMode) {
                    ios++;
                    if (samples < lat.length) {
                        lat[samples++] = now - startedAt[slot];
                    }
                }
                freeSlots[freeRef[0]++] = slot;
            };
            int nextVerify = verifyMode ? written.nextSetBit(0) : -1;
            while (true) {
                boolean more = verifyMode ? nextVerify >= 0 : issuedRef[0] < budget && System.nanoTime() < deadline;
                boolean held = gate != null && gate.held();
                if (held && more && q.inFlight() == 0) {
                    gate.awaitThaw(); // frozen for a checkpoint: nothing of ours in flight until the thaw
                    continue;
                }
                // Several free slots: submit them as one burst (one publish, one fence, at most one signal).
                boolean burst = freeRef[0] > 1 && more && !held;
                if (burst) {
                    q.beginBatch();
                }
                while (more && !held && freeRef[0] > 0) {
                    int slot = freeSlots[freeRef[0] - 1];
                    long unit;
                    boolean write;
                    if (verifyMode) {
                        unit = nextVerify;
                        write = false;
                    } else {
                        unit = nextUnit();
                        write = nextIsWrite();
                    }
                    if (!start(slot, unit, write)) {
                        break; // ring full: reap first
                    }
                    freeRef[0]--;
                    issuedRef[0]++;
                    if (verifyMode) {
                        nextVerify = written.nextSetBit(nextVerify + 1);
                        more = nextVerify >= 0;
                    } else {
                        more = issuedRef[0] < budget && System.nanoTime() < deadline;
                    }
                }
                if (burst) {
                    q.endBatch();
                }
                if (q.inFlight() == 0 && !more) {
                    return;
                }
                q.await(onComplete, 1_000_000_000L);
            }
        }

        private void verifyPass() throws InterruptedException {
            phase(Long.MAX_VALUE, Long.MAX_VALUE, true);
        }
    }

    /**
     * Time the calling thread spent runnable but waiting for a CPU ({@code /proc/thread-self/schedstat},
     * second field), in ns; 0 where unreadable. The guest thread reads its own, as it exits with the run.
     */
    static long runqueueWaitNanos() {
        try {
            String[] f = java.nio.file.Files.readString(java.nio.file.Path.of("/proc/thread-self/schedstat")).trim().split("\\s+");
            return Long.parseLong(f[1]);
        } catch (java.io.IOException | RuntimeException e) {
            return 0;
        }
    }

    /** Parses fio-style sizes (4k, 1m, 512, 2g, 4KiB) with the project's one size grammar, {@link ByteSize}. */
    public static long parseSize(String s) {
        return ByteSize.parse(s);
    }
}
