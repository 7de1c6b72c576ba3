package io.phost.perf;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Repeated, interleaved measurements of ours against a peer, and the rule for when their ratio may be
 * reported. Rounds run in ABBA order (ours, peer, peer, ours, ours, peer, …) so that a drift in the
 * machine's load during the run hits both sides alike; each side is summarised as min / median / max and
 * the ratio is of the medians.
 * <pre>
 *   round:        0      1      2      3      4 …
 *   first runs:   ours   peer   peer   ours   ours …     ({@link #oursFirst})
 *   spread = (max - min) / median of the peer's rounds
 *   spread > 20%  ⇒  no ratio: the peer itself did not hold still, so ours/peer measures the machine
 * </pre>
 */
public final class Rounds {
    /** Above this spread of the peer's own rounds a ratio would measure the machine, not the code. */
    public static final double MAX_PEER_SPREAD = 0.20;

    private Rounds() {}

    /** ABBA: true when round {@code round} runs ours before the peer. */
    public static boolean oursFirst(int round) {
        int k = round & 3;
        return k == 0 || k == 3;
    }

    /** Min, median and max of the non-NaN values of {@code v} (all NaN when there are none). */
    public record Stats(double min, double median, double max, int n) {
        public static Stats of(double[] v) {
            double[] s = Arrays.stream(v).filter(x -> !Double.isNaN(x)).sorted().toArray();
            if (s.length == 0) {
                return new Stats(Double.NaN, Double.NaN, Double.NaN, 0);
            }
            double median = s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
            return new Stats(s[0], median, s[s.length - 1], s.length);
        }

        /** (max - min) / median; NaN when there is no median. */
        public double spread() {
            return median > 0 ? (max - min) / median : Double.NaN;
        }
    }

    /**
     * Ours against the peer over the same rounds: the medians are the value and the peer value, and
     * min/median/max of both sides go to the series. When the peer's own spread is above
     * {@link #MAX_PEER_SPREAD} (or a side has fewer than 3 rounds) the peer value is NaN, so no ratio is
     * reported; its median stays in the series as {@code peer_median} with {@code ratio_refused = 1}.
     */
    public static BenchResult compare(String name, String unit, double[] ours, String peer, double[] peerRounds,
                                      boolean lowerIsBetter) {
        Stats a = Stats.of(ours);
        Stats b = Stats.of(peerRounds);
        Map<String, Double> series = new LinkedHashMap<>();
        series.put("ours_min", a.min());
        series.put("ours_median", a.median());
        series.put("ours_max", a.max());
        series.put("peer_min", b.min());
        series.put("peer_median", b.median());
        series.put("peer_max", b.max());
        series.put("peer_spread", b.spread());
        series.put("rounds", (double) Math.min(a.n(), b.n()));
        boolean refused = !trustworthy(a, b);
        series.put("ratio_refused", refused ? 1.0 : 0.0);
        BenchResult r = new BenchResult(name, a.median(), unit, peer, refused ? Double.NaN : b.median(), lowerIsBetter, Map.of());
        return r.withSeries(series);
    }

    /** Whether a ratio of these medians may be reported: 3+ rounds each and a peer spread within the limit. */
    public static boolean trustworthy(Stats ours, Stats peer) {
        return ours.n() >= 3 && peer.n() >= 3 && peer.spread() <= MAX_PEER_SPREAD;
    }
}
