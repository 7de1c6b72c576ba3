package io.phost.appliance.run;

import java.util.HashSet;
import java.util.Set;

/** Writes the Prometheus text exposition format (0.0.4): one HELP/TYPE header per metric family. */
public final class Metrics {
    private final StringBuilder out = new StringBuilder(4096);
    private final Set<String> declared = new HashSet<>();

    public Metrics counter(String name, String help, double value, String... labels) {
        return sample(name, "counter", help, value, labels);
    }

    public Metrics gauge(String name, String help, double value, String... labels) {
        return sample(name, "gauge", help, value, labels);
    }

    /** {@code labels} alternate name, value: {@code "disk", "d1", "partition", "p1"}. */
    public Metrics sample(String name, String type, String help, double value, String... labels) {
        if (labels.length % 2 != 0) {
            throw new IllegalArgumentException("labels come in name/value pairs");
        }
        if (declared.add(name)) {
            out.append("# HELP ").append(name).append(' ').append(help).append('\n');
            out.append("# TYPE ").append(name).append(' ').append(type).append('\n');
        }
        out.append(name);
        if (labels.length > 0) {
            out.append('{');
            for (int i = 0; i < labels.length; i += 2) {
                if (i > 0) {
                    out.append(',');
                }
                out.append(labels[i]).append("=\"")
                    .append(labels[i + 1].replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n"))
                    .append('"');
            }
            out.append('}');
        }
        out.append(' ');
        if (value == Math.rint(value) && Math.abs(value) < 1e15) {
            out.append((long) value);
        } else {
            out.append(value);
        }
        out.append('\n');
        return this;
    }

    @Override
    public String toString() {
        return out.toString();
    }
}
