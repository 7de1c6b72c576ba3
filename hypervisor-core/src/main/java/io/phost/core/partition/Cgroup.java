package io.phost.core.partition;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A cgroup of its own for one partition's process (QEMU for a VM), beneath the cgroup phost itself runs in,
 * with a CPU quota, a memory limit and a pids limit. cgroup v2 is used when phost's own v2 cgroup has the
 * controllers enabled for its children; otherwise each controller's v1 hierarchy. A limit that cannot be
 * set is not an error: {@link #describe()} says which limits hold and, for the others, why not, and status
 * shows that text.
 * <pre>
 *   v2:  /sys/fs/cgroup/OWN/phost-PID-NAME/{cgroup.procs, cpu.max, memory.max, pids.max}
 *   v1:  /sys/fs/cgroup/memory/OWN/phost-PID-NAME/{cgroup.procs, memory.limit_in_bytes}
 *        /sys/fs/cgroup/cpu/OWN/phost-PID-NAME/{cgroup.procs, cpu.cfs_period_us, cpu.cfs_quota_us}
 *        /sys/fs/cgroup/pids/OWN/phost-PID-NAME/{cgroup.procs, pids.max}
 * </pre>
 */
public final class Cgroup implements AutoCloseable {
    /** CPU quota period, microseconds (the kernel's default). */
    static final long PERIOD_US = 100_000;

    /**
     * @param cpus        CPU quota in whole CPUs (0: none)
     * @param memoryBytes memory limit (0: none)
     * @param pids        most tasks (0: none)
     */
    public record Limits(int cpus, long memoryBytes, int pids) {}

    private final List<Path> dirs;
    private final Map<String, Path> byController;
    private final Map<String, String> enforced;
    private final Map<String, String> notEnforced;

    private Cgroup(List<Path> dirs, Map<String, Path> byController, Map<String, String> enforced,
                   Map<String, String> notEnforced) {
        this.dirs = dirs;
        this.byController = byController;
        this.enforced = enforced;
        this.notEnforced = notEnforced;
    }

    /** Creates {@code phost-<our pid>-<name>} and sets {@code limits}; never throws (see {@link #describe()}). */
    public static Cgroup create(String name, Limits limits) {
        return create(Path.of("/proc/self/mountinfo"), Path.of("/proc/self/cgroup"), name, limits);
    }

    static Cgroup create(Path mountinfo, Path selfCgroup, String name, Limits limits) {
        String leaf = "phost-" + ProcessHandle.current().pid() + "-" + name;
        Map<String, String> enforced = new LinkedHashMap<>();
        Map<String, String> not = new LinkedHashMap<>();
        List<Path> dirs = new ArrayList<>();
        Map<String, Path> byController = new LinkedHashMap<>();
        List<String[]> mounts;
        Map<String, String> own;
        try {
            mounts = Files.readAllLines(mountinfo).stream().map(l -> l.split(" ")).toList();
            own = ownPaths(Files.readAllLines(selfCgroup));
        } catch (IOException e) {
            not.put("all", "cannot read " + mountinfo + " or " + selfCgroup + ": " + e.getMessage());
            return new Cgroup(dirs, byController, enforced, not);
        }
        Path v2 = v2Dir(mounts, own);
        String[][] wanted = {
            {"cpu", limits.cpus() > 0 ? Integer.toString(limits.cpus()) : null},
            {"memory", limits.memoryBytes() > 0 ? Long.toString(limits.memoryBytes()) : null},
            {"pids", limits.pids() > 0 ? Integer.toString(limits.pids()) : null}};
        for (String[] w : wanted) {
            String controller = w[0];
            if (w[1] == null) {
                continue;
            }
            String why;
            if (v2 != null && controllerEnabled(v2, controller)) {
                why = apply(v2.resolve(leaf), controller, true, limits, dirs, enforced);
                byController.put(controller, v2.resolve(leaf));
            } else {
                Path v1 = v1Dir(mounts, own, controller);
                if (v1 == null) {
                    why = "no " + controller + " controller (neither a v1 hierarchy nor enabled for phost's v2 cgroup)";
                } else {
                    why = apply(v1.resolve(leaf), controller, false, limits, dirs, enforced);
                    byController.put(controller, v1.resolve(leaf));
                }
            }
            if (why != null) {
                not.put(controller, why);
                byController.remove(controller);
            }
        }
        if (v2 == null || !controllerEnabled(v2, "cpu")) {
            accountCpuV1(mounts, own, leaf, dirs, byController);
        }
        return new Cgroup(dirs, byController, enforced, not);
    }

    /**
     * v1 without cpuacct in the cpu hierarchy: a cpuacct group of its own, for metering only (no limit; a
     * failure leaves CPU metering to the process's own CPU time).
     */
    private static void accountCpuV1(List<String[]> mounts, Map<String, String> own, String leaf, List<Path> dirs,
                                     Map<String, Path> byController) {
        Path v1 = v1Dir(mounts, own, "cpuacct");
        if (v1 == null || dirs.contains(v1.resolve(leaf))) {
            return;
        }
        try {
            Files.createDirectories(v1.resolve(leaf));
            dirs.add(v1.resolve(leaf));
            byController.put("cpuacct", v1.resolve(leaf));
        } catch (IOException | RuntimeException e) {
            // metering falls back to the process's CPU time
        }
    }

    /** Writes one controller's limit; returns null when it holds, else why not. */
    private static String apply(Path dir, String controller, boolean v2, Limits l, List<Path> dirs,
                                Map<String, String> enforced) {
        try {
            Files.createDirectories(dir);
            if (!dirs.contains(dir)) {
                dirs.add(dir);
            }
            switch (controller) {
                case "cpu" -> {
                    long quota = l.cpus() * PERIOD_US;
                    if (v2) {
                        Files.writeString(dir.resolve("cpu.max"), quota + " " + PERIOD_US);
                    } else {
                        Files.writeString(dir.resolve("cpu.cfs_period_us"), Long.toString(PERIOD_US));
                        Files.writeString(dir.resolve("cpu.cfs_quota_us"), Long.toString(quota));
                    }
                    enforced.put("cpu", l.cpus() + " CPU (" + (v2 ? "v2" : "v1") + ")");
                }
                case "memory" -> {
                    Files.writeString(dir.resolve(v2 ? "memory.max" : "memory.limit_in_bytes"), Long.toString(l.memoryBytes()));
                    enforced.put("memory", l.memoryBytes() + " bytes (" + (v2 ? "v2" : "v1") + ")");
                }
                case "pids" -> {
                    Files.writeString(dir.resolve("pids.max"), Integer.toString(l.pids()));
                    enforced.put("pids", l.pids() + " (" + (v2 ? "v2" : "v1") + ")");
                }
                default -> throw new IllegalArgumentException(controller);
            }
            return null;
        } catch (IOException | RuntimeException e) {
            return "cannot set the " + controller + " limit in " + dir + ": " + e;
        }
    }

    /** Moves {@code pid} (all its threads) into the cgroup; a failure moves that limit to "not enforced". */
    public synchronized void add(long pid) {
        Map<Path, String> failed = new LinkedHashMap<>();
        for (Map.Entry<String, Path> e : List.copyOf(byController.entrySet())) {
            String why = failed.computeIfAbsent(e.getValue(), d -> {
                try {
                    Files.writeString(d.resolve("cgroup.procs"), Long.toString(pid));
                    return "";
                } catch (IOException x) {
                    return "cannot move pid " + pid + " into " + d + ": " + x.getMessage();
                }
            });
            if (!why.isEmpty()) {
                enforced.remove(e.getKey());
                notEnforced.put(e.getKey(), why);
            }
        }
    }

    /** How many times the kernel's OOM killer fired in this cgroup (0 when unknown). */
    public long oomKills() {
        for (Path d : dirs) {
            for (String f : List.of("memory.events", "memory.oom_control")) {
                Path p = d.resolve(f);
                if (!Files.exists(p)) {
                    continue;
                }
                try {
                    for (String line : Files.readAllLines(p)) {
                        if (line.startsWith("oom_kill ")) {
                            return Long.parseLong(line.substring(9).trim());
                        }
                    }
                } catch (IOException | NumberFormatException e) {
                    return 0;
                }
            }
        }
        return 0;
    }

    /**
     * CPU time the cgroup's tasks used, microseconds, or -1 when no cgroup accounts it: v2 {@code cpu.stat
     * usage_usec}; v1 {@code cpuacct.usage} (nanoseconds) where cpuacct shares the cpu hierarchy. Read on the
     * metering tick, never on the I/O path.
     */
    public long cpuUsageMicros() {
        for (Path d : dirs) {
            Long v2 = statField(d.resolve("cpu.stat"), "usage_usec");
            if (v2 != null) {
                return v2;
            }
            Long v1 = number(d.resolve("cpuacct.usage"));
            if (v1 != null) {
                return v1 / 1000;
            }
        }
        return -1;
    }

    /** Memory charged to the cgroup now (v2 {@code memory.current}, v1 {@code memory.usage_in_bytes}); -1: unknown. */
    public long memoryCurrent() {
        return firstNumber("memory.current", "memory.usage_in_bytes");
    }

    /** The kernel's high-water mark (v2 {@code memory.peak}, v1 {@code memory.max_usage_in_bytes}); -1: unknown. */
    public long memoryPeak() {
        return firstNumber("memory.peak", "memory.max_usage_in_bytes");
    }

    private long firstNumber(String... files) {
        for (Path d : dirs) {
            for (String f : files) {
                Long v = number(d.resolve(f));
                if (v != null) {
                    return v;
                }
            }
        }
        return -1;
    }

    private static Long number(Path p) {
        try {
            return Long.parseLong(Files.readString(p).trim());
        } catch (IOException | NumberFormatException e) {
            return null;
        }
    }

    private static Long statField(Path p, String key) {
        try {
            for (String line : Files.readAllLines(p)) {
                if (line.startsWith(key + " ")) {
                    return Long.parseLong(line.substring(key.length() + 1).trim());
                }
            }
        } catch (IOException | NumberFormatException e) {
            return null;
        }
        return null;
    }

    /** "cpu=2 CPU (v1), memory=... bytes (v1), pids=256 (v1)" plus "; not enforced: x (why)". */
    public synchronized String describe() {
        StringBuilder sb = new StringBuilder();
        enforced.forEach((k, v) -> sb.append(sb.isEmpty() ? "" : ", ").append(k).append('=').append(v));
        if (!notEnforced.isEmpty()) {
            sb.append(sb.isEmpty() ? "" : "; ").append("not enforced: ");
            boolean first = true;
            for (Map.Entry<String, String> e : notEnforced.entrySet()) {
                sb.append(first ? "" : "; ").append(e.getKey()).append(" (").append(e.getValue()).append(')');
                first = false;
            }
        }
        return sb.isEmpty() ? "no limits requested" : sb.toString();
    }

    public synchronized Map<String, String> notEnforced() {
        return Map.copyOf(notEnforced);
    }

    /** The cgroup directories in use (tests, diagnostics). */
    public List<Path> dirs() {
        return List.copyOf(dirs);
    }

    /** Removes the directories (the process must have exited; the kernel refuses to remove a busy cgroup). */
    @Override
    public void close() {
        for (Path d : dirs) {
            for (int i = 0; i < 50; i++) {
                try {
                    Files.deleteIfExists(d);
                    break;
                } catch (IOException e) {
                    try {
                        Thread.sleep(10); // the exiting task leaves the cgroup a moment after waitpid
                    } catch (InterruptedException ie) {
                        Thread.currentThread().interrupt();
                        return;
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------------ finding the hierarchies

    /** controller (or "" for v2) to phost's own cgroup path, from /proc/self/cgroup. */
    static Map<String, String> ownPaths(List<String> lines) {
        Map<String, String> m = new LinkedHashMap<>();
        for (String l : lines) {
            String[] f = l.split(":", 3);
            if (f.length != 3) {
                continue;
            }
            if (f[1].isEmpty()) {
                m.put("", f[2]);
            } else {
                for (String c : f[1].split(",")) {
                    m.put(c, f[2]);
                }
            }
        }
        return m;
    }

    private static Path v2Dir(List<String[]> mounts, Map<String, String> own) {
        for (String[] f : mounts) {
            int dash = indexOf(f, "-");
            if (dash > 0 && dash + 1 < f.length && f[dash + 1].equals("cgroup2") && own.containsKey("")) {
                Path d = Path.of(f[4] + own.get(""));
                return Files.isDirectory(d) ? d : null;
            }
        }
        return null;
    }

    private static boolean controllerEnabled(Path v2, String controller) {
        try {
            return List.of(Files.readString(v2.resolve("cgroup.subtree_control")).trim().split(" ")).contains(controller);
        } catch (IOException e) {
            return false;
        }
    }

    private static Path v1Dir(List<String[]> mounts, Map<String, String> own, String controller) {
        for (String[] f : mounts) {
            int dash = indexOf(f, "-");
            if (dash > 0 && dash + 3 < f.length && f[dash + 1].equals("cgroup")
                && List.of(f[dash + 3].split(",")).contains(controller)) {
                Path mount = Path.of(f[4]);
                String path = own.getOrDefault(controller, "/");
                Path d = Path.of(mount + path);
                return Files.isDirectory(d) ? d : mount;
            }
        }
        return null;
    }

    private static int indexOf(String[] a, String s) {
        for (int i = 6; i < a.length; i++) {
            if (a[i].equals(s)) {
                return i;
            }
        }
        return -1;
    }
}
