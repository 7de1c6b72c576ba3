package io.phost.appliance.bench;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.LinkedHashMap;
import java.util.Map;

/** What a benchmark ran on, recorded with every result so numbers are never read without their machine. */
public final class MachineInfo {
    private MachineInfo() {}

    public static Map<String, Object> describe() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("date", Instant.now().toString());
        m.put("cpu", firstValue(Path.of("/proc/cpuinfo"), "model name"));
        m.put("cores", Runtime.getRuntime().availableProcessors());
        String memKb = firstValue(Path.of("/proc/meminfo"), "MemTotal");
        m.put("memory_gib", memKb == null ? null : Math.round(Long.parseLong(memKb.replaceAll("[^0-9]", "")) / 1048576.0 * 10) / 10.0);
        m.put("kernel", System.getProperty("os.version"));
        m.put("java", Runtime.version().toString());
        try {
            m.put("host", java.net.InetAddress.getLocalHost().getHostName());
        } catch (IOException e) {
            m.put("host", null);
        }
        return m;
    }

    /**
     * The machine as a sentence: "Intel(R) Xeon(R) ... with 2 cores and 7.8 GiB of memory, Linux 6.1.0, Java 25+36,
     * host build-1, measured 2026-12-06 06:20 UTC". Missing facts are left out rather than printed as null.
     */
    public static String inWords(Map<String, Object> m) {
        StringBuilder s = new StringBuilder();
        s.append(m.get("cpu") == null ? "unknown CPU" : m.get("cpu").toString().replaceAll("\\s+", " "));
        Object cores = m.get("cores");
        Object mem = m.get("memory_gib");
        if (cores != null || mem != null) {
            s.append(" with ");
            if (cores != null) {
                s.append(cores).append(Integer.valueOf(1).equals(cores) ? " core" : " cores");
            }
            if (mem != null) {
                s.append(cores != null ? " and " : "").append(mem).append(" GiB of memory");
            }
        }
        if (m.get("kernel") != null) {
            s.append(", Linux ").append(m.get("kernel"));
        }
        if (m.get("java") != null) {
            s.append(", Java ").append(m.get("java"));
        }
        if (m.get("host") != null) {
            s.append(", host ").append(m.get("host"));
        }
        if (m.get("date") != null) {
            String d = m.get("date").toString();
            s.append(", measured ").append(d.length() >= 16 ? d.substring(0, 10) + " " + d.substring(11, 16) + " UTC" : d);
        }
        return s.toString();
    }

    private static String firstValue(Path file, String key) {
        try (var lines = Files.lines(file)) {
            return lines.filter(l -> l.startsWith(key)).map(l -> l.substring(l.indexOf(':') + 1).strip()).findFirst().orElse(null);
        } catch (IOException | RuntimeException e) {
            return null;
        }
    }
}
