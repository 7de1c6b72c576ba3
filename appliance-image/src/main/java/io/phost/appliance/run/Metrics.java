package io.phost.appliance.run;

import io.prometheus.metrics.expositionformats.PrometheusTextFormatWriter;
import io.prometheus.metrics.model.snapshots.ClassicHistogramBuckets;
import io.prometheus.metrics.model.snapshots.CounterSnapshot;
import io.prometheus.metrics.model.snapshots.GaugeSnapshot;
import io.prometheus.metrics.model.snapshots.HistogramSnapshot;
import io.prometheus.metrics.model.snapshots.InfoSnapshot;
import io.prometheus.metrics.model.snapshots.Labels;
import io.prometheus.metrics.model.snapshots.MetricSnapshot;
import io.prometheus.metrics.model.snapshots.MetricSnapshots;
import io.prometheus.metrics.model.snapshots.StateSetSnapshot;
import io.prometheus.metrics.model.snapshots.Unit;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;

/**
 * One scrape of {@code /metrics}: components add samples family by family in any order, and the Prometheus
 * Java client's model ({@code prometheus-metrics-model}) and text writer turn them into the exposition
 * format, so families are never interleaved, names and labels are validated, a duplicate label set is an
 * error, counters get {@code _total} and histograms {@code _bucket/_sum/_count}.
 *
 * <p>Conventions (docs/management.md): base units (seconds, bytes) named in the metric name; counters for
 * anything that only grows; one label scheme: {@code partition}, {@code disk} (the config's disk name),
 * {@code export}, {@code policy}, {@code switch}, {@code port}.
 */
public final class Metrics {
    /** A family being collected: its type, help, unit and data points in the order they were added. */
    private record Family(String type, String help, Unit unit, List<Consumer<Object>> points) {
    }

    private final Map<String, Family> families = new LinkedHashMap<>();
    private final List<MetricSnapshot> extra = new ArrayList<>();

    /**
     * A counter sample; {@code name} is without {@code _total} (the writer adds it). {@code labels} alternate
     * name and value: {@code "partition", "web", "disk", "web-os"}.
     */
    public Metrics counter(String name, String help, Unit unit, double value, String... labels) {
        Labels l = labels(labels);
        family(name, "counter", help, unit).points()
            .add(b -> ((CounterSnapshot.Builder) b).dataPoint(CounterSnapshot.CounterDataPointSnapshot.builder()
                .value(value).labels(l).build()));
        return this;
    }

    public Metrics counter(String name, String help, double value, String... labels) {
        return counter(name, help, null, value, labels);
    }

    public Metrics gauge(String name, String help, Unit unit, double value, String... labels) {
        Labels l = labels(labels);
        family(name, "gauge", help, unit).points()
            .add(b -> ((GaugeSnapshot.Builder) b).dataPoint(GaugeSnapshot.GaugeDataPointSnapshot.builder()
                .value(value).labels(l).build()));
        return this;
    }

    public Metrics gauge(String name, String help, double value, String... labels) {
        return gauge(name, help, null, value, labels);
    }

    /**
     * A classic histogram from per-bucket (not cumulative) counts; the last upper bound must be +Inf.
     * {@code sum} is in the family's unit.
     */
    public Metrics histogram(String name, String help, Unit unit, double[] upperBounds, long[] counts, double sum,
                             String... labels) {
        Labels l = labels(labels);
        ClassicHistogramBuckets buckets = ClassicHistogramBuckets.of(upperBounds.clone(), counts.clone());
        family(name, "histogram", help, unit).points()
            .add(b -> ((HistogramSnapshot.Builder) b).dataPoint(HistogramSnapshot.HistogramDataPointSnapshot.builder()
                .classicHistogramBuckets(buckets).sum(sum).labels(l).build()));
        return this;
    }

    /** A state set: one sample per state, 1 for {@code current} and 0 for the others (a label named {@code name}). */
    public Metrics state(String name, String help, List<String> states, String current, String... labels) {
        Labels l = labels(labels);
        family(name, "stateset", help, null).points().add(b -> {
            var p = StateSetSnapshot.StateSetDataPointSnapshot.builder().labels(l);
            for (String s : states) {
                p.state(s, s.equals(current));
            }
            ((StateSetSnapshot.Builder) b).dataPoint(p.build());
        });
        return this;
    }

    /** An info metric ({@code NAME_info{labels} 1}); {@code name} is without {@code _info}. */
    public Metrics info(String name, String help, String... labels) {
        Labels l = labels(labels);
        family(name, "info", help, null).points()
            .add(b -> ((InfoSnapshot.Builder) b).dataPoint(InfoSnapshot.InfoDataPointSnapshot.builder().labels(l).build()));
        return this;
    }

    /** Families collected elsewhere (the JVM and process metrics of the Prometheus client). */
    public Metrics add(MetricSnapshots snapshots) {
        snapshots.forEach(extra::add);
        return this;
    }

    private Family family(String name, String type, String help, Unit unit) {
        Family f = families.computeIfAbsent(name, n -> new Family(type, help, unit, new ArrayList<>()));
        if (!f.type().equals(type)) {
            throw new IllegalArgumentException("metric " + name + " is a " + f.type() + ", not a " + type);
        }
        return f;
    }

    private static Labels labels(String[] labels) {
        if (labels.length % 2 != 0) {
            throw new IllegalArgumentException("labels come in name/value pairs");
        }
        Labels.Builder b = Labels.builder();
        for (int i = 0; i < labels.length; i += 2) {
            b.label(labels[i], labels[i + 1] == null ? "" : labels[i + 1]);
        }
        return b.build();
    }

    /** The collected families as the client's model (validated: names, units, duplicate label sets). */
    public MetricSnapshots snapshots() {
        MetricSnapshots.Builder all = MetricSnapshots.builder();
        families.forEach((name, f) -> {
            MetricSnapshot.Builder<?> b = switch (f.type()) {
                case "counter" -> CounterSnapshot.builder();
                case "gauge" -> GaugeSnapshot.builder();
                case "histogram" -> HistogramSnapshot.builder();
                case "stateset" -> StateSetSnapshot.builder();
                case "info" -> InfoSnapshot.builder();
                default -> throw new IllegalStateException(f.type());
            };
            b.name(name).help(f.help());
            if (f.unit() != null) {
                b.unit(f.unit());
            }
            f.points().forEach(p -> p.accept(b));
            all.metricSnapshot(b.build());
        });
        extra.forEach(all::metricSnapshot);
        return all.build();
    }

    /** The Prometheus text exposition format 0.0.4. */
    public String text() {
        ByteArrayOutputStream out = new ByteArrayOutputStream(8192);
        try {
            PrometheusTextFormatWriter.create().write(out, snapshots());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return out.toString(StandardCharsets.UTF_8);
    }

    /** The content type of {@link #text()}. */
    public static String contentType() {
        return PrometheusTextFormatWriter.CONTENT_TYPE;
    }

    @Override
    public String toString() {
        return text();
    }
}
