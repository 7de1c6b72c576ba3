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

    private static String firstValue(Path file, String key) {
        try (var lines = Files.lines(file)) {
            return lines.filter(l -> l.startsWith(key)).map(l -> l.substring(l.indexOf(':') + 1).strip()).findFirst().orElse(null);
        } catch (IOException | RuntimeException e) {
            return null;
        }
    }
}
