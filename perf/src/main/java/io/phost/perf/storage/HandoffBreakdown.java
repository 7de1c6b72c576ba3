package io.phost.perf.storage;

import io.phost.core.vmbus.HandoffSampler;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;

/**
 * Where a sampled request's time goes between the hand-off stages of {@link HandoffSampler}: for each
 * step of the chain (guest submit → VSP pick-up → engine submit → completion seen → completion posted →
 * guest wake → guest handled → next submit), the whole request (guest submit → guest wake), the guest's
 * whole cycle (guest submit → next submit) and the guest's own publish (guest submit → guest published):
 * the median, the 90th percentile and the mean over the rows where both stamps were seen. Means are what
 * add up: at QD1 the steps' means sum to the cycle's, which is 1/IOPS when every request is sampled.
 */
public final class HandoffBreakdown {
    private HandoffBreakdown() {}

    /** Series entries {@code handoff_<step>_p50_us} / {@code _p90_us} / {@code _mean_us} and {@code handoff_samples}. */
    public static Map<String, Double> of(long[] rows) {
        Map<String, Double> out = new LinkedHashMap<>();
        int n = rows.length / HandoffSampler.STAGES;
        out.put("handoff_samples", (double) n);
        for (int s = 0; s + 1 < HandoffSampler.CHAIN; s++) {
            put(out, rows, n, s, s + 1);
        }
        put(out, rows, n, HandoffSampler.GUEST_SUBMIT, HandoffSampler.GUEST_WAKE);
        put(out, rows, n, HandoffSampler.GUEST_SUBMIT, HandoffSampler.NEXT_SUBMIT);
        put(out, rows, n, HandoffSampler.GUEST_SUBMIT, HandoffSampler.GUEST_PUBLISHED);
        return out;
    }

    private static void put(Map<String, Double> out, long[] rows, int n, int from, int to) {
        double[] d = new double[n];
        int k = 0;
        double sum = 0;
        for (int i = 0; i < n; i++) {
            long a = rows[i * HandoffSampler.STAGES + from];
            long b = rows[i * HandoffSampler.STAGES + to];
            if (a != 0 && b != 0) {
                d[k] = (b - a) / 1e3;
                sum += d[k++];
            }
        }
        double[] v = Arrays.copyOf(d, k);
        Arrays.sort(v);
        String key = "handoff_" + key(from) + "_to_" + key(to);
        out.put(key + "_p50_us", k == 0 ? Double.NaN : v[k / 2]);
        out.put(key + "_p90_us", k == 0 ? Double.NaN : v[Math.min(k - 1, (int) (k * 0.9))]);
        out.put(key + "_mean_us", k == 0 ? Double.NaN : sum / k);
    }

    private static String key(int stage) {
        return HandoffSampler.STAGE_NAMES[stage].replace(' ', '_').replace("-", "").toLowerCase(Locale.ROOT);
    }
}
