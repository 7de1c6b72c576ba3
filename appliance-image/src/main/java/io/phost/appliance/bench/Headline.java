package io.phost.appliance.bench;

import io.phost.perf.BenchResult;
import java.util.List;
import java.util.Locale;

/**
 * The one number a report leads with: the median over every result that has a peer of its ratio (ours over
 * the peer's, inverted for lower-is-better units so that higher is always better), with the smallest and
 * largest ratio so a single outlier cannot hide.
 */
record Headline(double median, double min, double max, int pairs) {
    static final String DEFINITION = "The headline is the median, over every benchmark that has a peer, of ours/peer "
        + "(peer/ours for latencies and costs, so higher is better and 1.0x is parity), with the minimum and maximum of those ratios.";

    /** The headline of {@code results}, or null when none has a peer. */
    static Headline of(List<BenchResult> results) {
        double[] r = results.stream().mapToDouble(BenchResult::ratio).filter(v -> !Double.isNaN(v)).sorted().toArray();
        if (r.length == 0) {
            return null;
        }
        double median = r.length % 2 == 1 ? r[r.length / 2] : (r[r.length / 2 - 1] + r[r.length / 2]) / 2;
        return new Headline(median, r[0], r[r.length - 1], r.length);
    }

    String summary() {
        return String.format(Locale.ROOT, "median %.2fx of peer over %d pair%s (min %.2fx, max %.2fx).",
            median, pairs, pairs == 1 ? "" : "s", min, max);
    }
}
