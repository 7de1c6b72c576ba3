package io.phost.qos;

/**
 * One QoS flow (a partition's I/O to one disk), as the storage VSP sees it. The VSP asks before it
 * submits each I/O and reports each completion. Both calls are allocation-free and safe to call from
 * the VSP queue's worker thread while the management API reads the flow's statistics.
 *
 * <pre>
 *   long wait = flow.tryAdmit(bytes, now);   // 0: admitted and charged; > 0: retry in that many ns
 *   ... submit ...
 *   flow.completed(bytes, latencyNanos, now);
 * </pre>
 */
public interface QosFlow {
    /** Admits an I/O of {@code bytes} at {@code nowNanos} (System.nanoTime scale) or says how long to wait. */
    long tryAdmit(int bytes, long nowNanos);

    /** Records the completion of an admitted I/O. */
    void completed(int bytes, long latencyNanos, long nowNanos);

    /** A flow with no policy: admits everything and records nothing. */
    QosFlow UNLIMITED = new QosFlow() {
        @Override
        public long tryAdmit(int bytes, long nowNanos) {
            return 0;
        }

        @Override
        public void completed(int bytes, long latencyNanos, long nowNanos) {
        }
    };
}
