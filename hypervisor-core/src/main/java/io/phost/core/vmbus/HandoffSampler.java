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
 * <p>The stages of one row, in the order a QD1 request passes them: {@link #GUEST_SUBMIT} → {@link #HOST_PICKUP}
 * → {@link #ENGINE_SUBMIT} → {@link #COMPLETION_SEEN} → {@link #COMPLETION_POSTED} → {@link #GUEST_WAKE} →
 * {@link #GUEST_HANDLED} (the guest's completion handler returned) → {@link #NEXT_SUBMIT} (the guest's next
 * submit on this channel, sampled or not). At QD1 the steps add up to the guest's whole cycle per I/O
 * (1/IOPS), so nothing is left outside the stamps. {@link #GUEST_PUBLISHED} (the guest's write to the ring
 * returned, doorbell included) lies beside the chain: it overlaps the host's pick-up.
 *
 * <p>Both ends find the same sampler by the channel's relid, so this only sees both sides when guest and
 * host run in one JVM (the storage bench, tests); it is a measuring tool, not a production counter.
 * Ordering: the guest writes {@link #GUEST_SUBMIT} before it publishes the packet and the host writes its
 * stamps before it publishes the completion, so the ring's release/acquire orders every stamp; the host
 * stamps nothing after it publishes (the guest may already reuse the row). Stamps for transaction ids
 * outside the row table (a guest's own choice) are dropped.
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
    public static final int GUEST_HANDLED = 6;
    public static final int NEXT_SUBMIT = 7;
    /** Beside the chain: the guest's ring write (and doorbell, if it rang) returned. */
    public static final int GUEST_PUBLISHED = 8;
    public static final int STAGES = 9;
    /** The stages a request passes one after the other ({@link #GUEST_PUBLISHED} overlaps them). */
    public static final int CHAIN = 8;
    public static final String[] STAGE_NAMES = {"guest submit", "VSP pick-up", "engine submit",
        "completion seen", "completion posted", "guest wake", "guest handled", "next submit", "guest published"};

    private static final int MAX_TRANS_IDS = 256;
    private static final int CAPACITY = 1 << 16;
    private static final ConcurrentHashMap<Integer, HandoffSampler> BY_RELID = new ConcurrentHashMap<>();

    private final long[] rows = new long[MAX_TRANS_IDS * STAGES];
    private final long[] history = new long[CAPACITY * STAGES];
    private final int every;
    private int recorded;
    private long submitted;
    /** The history row that waits for the guest's next submit; -1: none. */
    private int awaitingNext = -1;

    HandoffSampler(int every) {
        this.every = every;
    }

    /** The sampler of channel {@code relid} (one per relid for both ends); null when sampling is off. */
    public static HandoffSampler forChannel(int relid) {
        return ENABLED ? BY_RELID.computeIfAbsent(relid, r -> new HandoffSampler(EVERY)) : null;
    }

    /**
     * Guest thread, before publishing the request: ends the previous recorded row's loop (its
     * {@link #NEXT_SUBMIT}) and decides whether this request is sampled.
     */
    public void guestSubmit(long transId) {
        long now = System.nanoTime();
        if (awaitingNext >= 0) {
            history[awaitingNext * STAGES + NEXT_SUBMIT] = now;
            awaitingNext = -1;
        }
        if (transId < 0 || transId >= MAX_TRANS_IDS) {
            return;
        }
        int row = (int) transId * STAGES;
        Arrays.fill(rows, row, row + STAGES, 0L);
        if (submitted++ % every == 0) {
            rows[row] = now;
        }
    }

    /** Host or guest thread: stamps {@code stage} of a sampled request. */
    public void stamp(long transId, int stage) {
        if (transId >= 0 && transId < MAX_TRANS_IDS && rows[(int) transId * STAGES] != 0) {
            rows[(int) transId * STAGES + stage] = System.nanoTime();
        }
    }

    /** Guest thread, on reading the completion (before its handler runs). */
    public void guestWake(long transId) {
        stamp(transId, GUEST_WAKE);
    }

    /** Guest thread, when the completion's handler returned: keeps the row; the next submit ends it. */
    public void guestHandled(long transId) {
        if (transId < 0 || transId >= MAX_TRANS_IDS) {
            return;
        }
        int row = (int) transId * STAGES;
        if (rows[row] == 0 || rows[row + GUEST_WAKE] == 0) {
            return; // not sampled, or the handler already submitted again on this slot (a retry)
        }
        rows[row + GUEST_HANDLED] = System.nanoTime();
        if (recorded < CAPACITY) {
            System.arraycopy(rows, row, history, recorded * STAGES, STAGES);
            awaitingNext = recorded;
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
        awaitingNext = -1;
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
