package io.phost.perf.storage;

import io.phost.core.vmbus.HandoffSampler;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;

/**
 * Where a sampled request's time goes between the hand-off stages of {@link HandoffSampler}: for each
 * step (guest submit → VSP pick-up → engine submit → completion seen → completion posted → guest wake)
 * the median and 90th percentile over the rows where both stamps were seen.
 */
final class HandoffBreakdown {
    private HandoffBreakdown() {}

    /** Series entries {@code handoff_<step>_p50_us} / {@code _p90_us} and {@code handoff_samples}. */
    static Map<String, Double> of(long[] rows) {
        Map<String, Double> out = new LinkedHashMap<>();
        int n = rows.length / HandoffSampler.STAGES;
        out.put("handoff_samples", (double) n);
        for (int s = 0; s < HandoffSampler.STAGES; s++) {
            int from = s == HandoffSampler.STAGES - 1 ? HandoffSampler.GUEST_SUBMIT : s;
            int to = s == HandoffSampler.STAGES - 1 ? HandoffSampler.GUEST_WAKE : s + 1;
            double[] d = new double[n];
            int k = 0;
            for (int i = 0; i < n; i++) {
                long a = rows[i * HandoffSampler.STAGES + from];
                long b = rows[i * HandoffSampler.STAGES + to];
                if (a != 0 && b != 0) {
                    d[k++] = (b - a) / 1e3;
                }
            }
            double[] v = Arrays.copyOf(d, k);
            Arrays.sort(v);
            String key = "handoff_" + key(from) + "_to_" + key(to);
            out.put(key + "_p50_us", k == 0 ? Double.NaN : v[k / 2]);
            out.put(key + "_p90_us", k == 0 ? Double.NaN : v[Math.min(k - 1, (int) (k * 0.9))]);
        }
        return out;
    }

    private static String key(int stage) {
        return HandoffSampler.STAGE_NAMES[stage].replace(' ', '_').replace("-", "").toLowerCase(Locale.ROOT);
    }
}
