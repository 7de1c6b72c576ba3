package io.phost.perf;

import java.util.Map;

/**
 * One measured quantity and its peer, from the same run. {@code ratio} is ours over the peer's, inverted
 * for lower-is-better units (latency) so that higher always means better; NaN when there is no peer.
 *
 * @param name       e.g. "4k-randread-qd32 vhdx-dynamic"
 * @param value      our value
 * @param unit       e.g. "IOPS", "MiB/s", "us", "Mpps"
 * @param peer       the peer's name ("raw file", "qemu-img", "agrona OneToOne"), or null
 * @param peerValue  the peer's value in the same unit, or NaN
 * @param lowerIsBetter true for latencies and costs
 * @param series     optional extra numbers for reports (e.g. latency percentiles, IOPS per queue depth)
 * @param seriesUnit the unit every number of {@code series} is in, when they share one and a chart of them
 *                   means something (reports draw a chart only then); null when the series mixes units
 *                   (then reports list it as details)
 */
public record BenchResult(String name, double value, String unit, String peer, double peerValue,
                          boolean lowerIsBetter, Map<String, Double> series, String seriesUnit) {

    public BenchResult(String name, double value, String unit, String peer, double peerValue, boolean lowerIsBetter,
                       Map<String, Double> series) {
        this(name, value, unit, peer, peerValue, lowerIsBetter, series, null);
    }

    public static BenchResult vsPeer(String name, double value, String unit, String peer, double peerValue) {
        return new BenchResult(name, value, unit, peer, peerValue, false, Map.of());
    }

    public static BenchResult vsPeerLowerIsBetter(String name, double value, String unit, String peer, double peerValue) {
        return new BenchResult(name, value, unit, peer, peerValue, true, Map.of());
    }

    public static BenchResult alone(String name, double value, String unit) {
        return new BenchResult(name, value, unit, null, Double.NaN, false, Map.of());
    }

    /** Extra numbers of mixed units: reports list them, and draw no chart. */
    public BenchResult withSeries(Map<String, Double> extra) {
        return new BenchResult(name, value, unit, peer, peerValue, lowerIsBetter, Map.copyOf(extra), null);
    }

    /** Extra numbers all in {@code unit} (e.g. IOPS per window, min/median/max of rounds): reports chart them. */
    public BenchResult withSeries(String unit, Map<String, Double> extra) {
        return new BenchResult(name, value, this.unit, peer, peerValue, lowerIsBetter, Map.copyOf(extra), unit);
    }

    /** Ours divided by the peer's, inverted when lower is better; NaN without a peer or when either side is not positive. */
    public double ratio() {
        if (peer == null || Double.isNaN(peerValue) || !(peerValue > 0) || !(value > 0)) {
            return Double.NaN;
        }
        return lowerIsBetter ? peerValue / value : value / peerValue;
    }
}
