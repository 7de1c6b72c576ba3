package io.phost.perf;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * How busy the machine was while a suite ran, from {@code /proc/loadavg} and the aggregate {@code cpu}
 * line of {@code /proc/stat} (USER_HZ ticks: user nice system idle iowait irq softirq steal ...). A
 * benchmark on a shared 2-vCPU VM is only as good as these numbers say: steal is time the hypervisor gave
 * our vCPUs to someone else, busy is every process on the machine (other builds included), not just ours.
 */
public final class MachineLoad {
    private final long[] start;
    private final double load1Start;

    private MachineLoad(long[] start, double load1Start) {
        this.start = start;
        this.load1Start = load1Start;
    }

    /** Takes the starting sample. */
    public static MachineLoad start() {
        return new MachineLoad(cpuTicks(), load1());
    }

    /**
     * Results describing the interval since {@link #start}: 1-minute load average at start and end, steal
     * and busy time as a percentage of all CPUs' time (NaN where /proc is not readable).
     */
    public List<BenchResult> results(String prefix) {
        long[] end = cpuTicks();
        double total = 0;
        double idle = Double.NaN;
        double steal = Double.NaN;
        if (start != null && end != null) {
            for (int i = 0; i < Math.min(8, end.length); i++) {
                total += end[i] - start[i];
            }
            idle = (end[3] - start[3]) + (end[4] - start[4]);
            steal = end[7] - start[7];
        }
        List<BenchResult> out = new ArrayList<>();
        out.add(BenchResult.alone(prefix + "load average (1 min) at start", load1Start, ""));
        out.add(BenchResult.alone(prefix + "load average (1 min) at end", load1(), ""));
        out.add(BenchResult.alone(prefix + "steal during the run", total > 0 ? 100 * steal / total : Double.NaN, "%"));
        out.add(BenchResult.alone(prefix + "all CPUs busy during the run (every process)",
            total > 0 ? 100 * (total - idle) / total : Double.NaN, "%"));
        return out;
    }

    /** The first field of /proc/loadavg, NaN when unreadable. */
    public static double load1() {
        try {
            return Double.parseDouble(Files.readString(Path.of("/proc/loadavg")).split(" ")[0]);
        } catch (IOException | RuntimeException e) {
            return Double.NaN;
        }
    }

    /** The aggregate cpu line of /proc/stat as ticks (at least 8 fields), null when unreadable. */
    static long[] cpuTicks() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/stat"))) {
                if (line.startsWith("cpu ")) {
                    return parseCpuLine(line);
                }
            }
        } catch (IOException | RuntimeException e) {
            // not Linux, or /proc hidden: report NaN
        }
        return null;
    }

    /** Parses one /proc/stat cpu line (for tests). */
    static long[] parseCpuLine(String line) {
        String[] f = line.trim().split("\\s+");
        long[] t = new long[Math.max(8, f.length - 1)];
        for (int i = 1; i < f.length; i++) {
            t[i - 1] = Long.parseLong(f[i]);
        }
        return t;
    }
}
