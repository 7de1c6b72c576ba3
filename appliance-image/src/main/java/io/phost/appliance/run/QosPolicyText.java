package io.phost.appliance.run;

import io.phost.appliance.config.QosPolicyConfig;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.regex.Pattern;

/**
 * Writes one {@code [[qos_policy]]} table into a config's text (a {@code phost qos set-policy} that is saved):
 * the table of that name is replaced in place, or a new one is appended; the rest of the file, comments
 * included, is left as the operator wrote it.
 */
final class QosPolicyText {
    private static final Pattern POLICY_HEADER = Pattern.compile("^\\s*\\[\\[\\s*qos_policy\\s*]]\\s*(#.*)?$");
    private static final Pattern ANY_HEADER = Pattern.compile("^\\s*\\[.*");

    private QosPolicyText() {
    }

    static String upsert(String text, QosPolicyConfig p) {
        List<String> lines = new ArrayList<>(Arrays.asList(text.split("\n", -1)));
        Pattern name = Pattern.compile("^\\s*name\\s*=\\s*[\"']" + Pattern.quote(p.name()) + "[\"']\\s*(#.*)?$");
        for (int i = 0; i < lines.size(); i++) {
            if (!POLICY_HEADER.matcher(lines.get(i)).matches()) {
                continue;
            }
            int end = i + 1;
            boolean named = false;
            while (end < lines.size() && !ANY_HEADER.matcher(lines.get(end)).matches()) {
                named |= name.matcher(lines.get(end)).matches();
                end++;
            }
            if (named) {
                while (end > i + 1 && (lines.get(end - 1).isBlank() || lines.get(end - 1).strip().startsWith("#"))) {
                    end--; // keep the blank lines and comments that lead into the next table
                }
                lines.subList(i, end).clear();
                lines.addAll(i, table(p));
                return String.join("\n", lines);
            }
        }
        String base = text.endsWith("\n") || text.isEmpty() ? text : text + "\n";
        return base + "\n" + String.join("\n", table(p)) + "\n";
    }

    private static List<String> table(QosPolicyConfig p) {
        return List.of("[[qos_policy]]",
            "name = \"" + p.name() + "\"",
            "type = \"" + p.type().name().toLowerCase(Locale.ROOT) + "\"",
            "min_iops = " + p.minIops(),
            "max_iops = " + p.maxIops(),
            "max_bandwidth = " + p.maxBandwidth(),
            "normalization_size = " + p.normalizationSize(),
            "weight = " + p.weight());
    }
}
