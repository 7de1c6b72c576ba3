package io.phost.core.vmbus;

import java.util.Arrays;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Per-request hand-off timestamps on one channel, for attributing request latency (issue 19): the guest
 * client and the VSP stamp each stage of a sampled request into one preallocated row per transaction id,
 * and the guest copies the finished row into a preallocated history. Off unless the system property
 * {@code phost.handoff.sample=N} (sample every N-th request) is set: {@link #ENABLED} is a static final,
 * so when off the JIT folds every call site's {@code if (HandoffSampler.ENABLED)} away.
 *
 * <p>Both ends find the same sampler by the channel's relid, so this only sees both sides when guest and
 * host run in one JVM (the storage bench, tests); it is a measuring tool, not a production counter.
 * Ordering: the guest writes {@link #GUEST_SUBMIT} before it publishes the packet and the host writes its
 * stamps before it publishes the completion, so the ring's release/acquire orders every stamp. Stamps for
 * transaction ids outside the row table (a guest's own choice) are dropped.
 */
public final class HandoffSampler {
    /** Sample every N-th request; 0: off. */
    public static final int EVERY = Integer.getInteger("phost.handoff.sample", 0);
    public static final boolean ENABLED = EVERY > 0;

    public static final int GUEST_SUBMIT = 0;
    public static final int HOST_PICKUP = 1;
    public static final int ENGINE_SUBMIT = 2;
    public static final int COMPLETION_SEEN = 3;
    public static final int COMPLETION_POSTED = 4;
    public static final int GUEST_WAKE = 5;
    public static final int STAGES = 6;
    public static final String[] STAGE_NAMES = {"guest submit", "VSP pick-up", "engine submit",
        "completion seen", "completion posted", "guest wake"};

    private static final int MAX_TRANS_IDS = 256;
    private static final int CAPACITY = 1 << 16;
    private static final ConcurrentHashMap<Integer, HandoffSampler> BY_RELID = new ConcurrentHashMap<>();

    private final long[] rows = new long[MAX_TRANS_IDS * STAGES];
    private final long[] history = new long[CAPACITY * STAGES];
    private final int every;
    private int recorded;
    private long submitted;

    HandoffSampler(int every) {
        this.every = every;
    }

    /** The sampler of channel {@code relid} (one per relid for both ends); null when sampling is off. */
    public static HandoffSampler forChannel(int relid) {
        return ENABLED ? BY_RELID.computeIfAbsent(relid, r -> new HandoffSampler(EVERY)) : null;
    }

    /** Guest thread, before publishing the request: decides whether this request is sampled. */
    public void guestSubmit(long transId) {
        if (transId < 0 || transId >= MAX_TRANS_IDS) {
            return;
        }
        int row = (int) transId * STAGES;
        Arrays.fill(rows, row, row + STAGES, 0L);
        if (submitted++ % every == 0) {
            rows[row] = System.nanoTime();
        }
    }

    /** Host or guest thread: stamps {@code stage} of a sampled request. */
    public void stamp(long transId, int stage) {
        if (transId >= 0 && transId < MAX_TRANS_IDS && rows[(int) transId * STAGES] != 0) {
            rows[(int) transId * STAGES + stage] = System.nanoTime();
        }
    }

    /** Guest thread, on reading the completion: stamps the wake and keeps the row. */
    public void guestWake(long transId) {
        if (transId < 0 || transId >= MAX_TRANS_IDS) {
            return;
        }
        int row = (int) transId * STAGES;
        if (rows[row] == 0) {
            return;
        }
        rows[row + GUEST_WAKE] = System.nanoTime();
        if (recorded < CAPACITY) {
            System.arraycopy(rows, row, history, recorded * STAGES, STAGES);
            recorded++;
        }
        rows[row] = 0;
    }

    /**
     * The recorded rows (STAGES stamps each, 0 where a stage was not seen) and forgets them. Call it from a
     * thread that joined the guest's submitting thread.
     */
    public long[] drain() {
        long[] out = Arrays.copyOf(history, recorded * STAGES);
        recorded = 0;
        return out;
    }

    /** Drains every channel's sampler into one array of rows. */
    public static long[] drainAll() {
        long[][] parts = BY_RELID.values().stream().map(HandoffSampler::drain).toArray(long[][]::new);
        long[] all = new long[Arrays.stream(parts).mapToInt(p -> p.length).sum()];
        int at = 0;
        for (long[] p : parts) {
            System.arraycopy(p, 0, all, at, p.length);
            at += p.length;
        }
        return all;
    }
}
