package io.phost.appliance.run;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Predicate;

/**
 * What phost may do as the user it runs as, read from {@code /proc/self/status}: the effective uid and the
 * effective capability set. Run as another user, some features are off; {@code phost run} says which once on
 * the console, and {@code /v1/status} (so {@code phost status}) lists them under {@code privileges}.
 *
 * @param uid    effective uid (-1 when {@code /proc/self/status} could not be read)
 * @param capEff effective capabilities, bit n = capability n ({@code CapEff:} in {@code /proc/self/status})
 */
public record Privileges(long uid, long capEff) {
    /** {@code linux/capability.h}. */
    static final int CAP_NET_ADMIN = 12;
    static final int CAP_NET_RAW = 13;

    public static Privileges current() {
        try {
            return parse(Files.readString(Path.of("/proc/self/status")));
        } catch (IOException | RuntimeException e) {
            return new Privileges(-1, 0);
        }
    }

    /** Parses the {@code Uid:} (real, effective, ...) and {@code CapEff:} (hex) lines of a status file. */
    static Privileges parse(String status) {
        long uid = -1;
        long caps = 0;
        for (String line : status.lines().toList()) {
            if (line.startsWith("Uid:")) {
                String[] f = line.substring(4).trim().split("\\s+");
                uid = Long.parseLong(f.length > 1 ? f[1] : f[0]);
            } else if (line.startsWith("CapEff:")) {
                caps = Long.parseUnsignedLong(line.substring(7).trim(), 16);
            }
        }
        return new Privileges(uid, caps);
    }

    public boolean root() {
        return uid == 0;
    }

    /** May create TAP devices and set addresses: the host vNIC of an internal switch. */
    public boolean netAdmin() {
        return root() || has(CAP_NET_ADMIN);
    }

    boolean has(int capability) {
        return (capEff & (1L << capability)) != 0;
    }

    /** The features that are off for this user on this machine, each as "what: why"; empty for root. */
    public List<String> featuresOff() {
        return featuresOff(Files::isWritable, ownCgroupDir(), RuntimeDir.path());
    }

    /**
     * As {@link #featuresOff()}, with the checks passed in: {@code writable} answers for the cgroup directory
     * {@code cgroup} (null: none found) that the partitions' cgroups would be made in; {@code runtimeDir} is
     * where this user's endpoint record goes.
     */
    List<String> featuresOff(Predicate<Path> writable, Path cgroup, Path runtimeDir) {
        List<String> off = new ArrayList<>();
        if (root()) {
            return off;
        }
        if (!has(CAP_NET_ADMIN)) {
            off.add("partition NICs bridged to TAP devices in network namespaces (guest net, guest mixed --net) and "
                + "host vNICs of internal switches (the demo's switch runs private, the host cannot reach its partitions): "
                + "need CAP_NET_ADMIN");
        }
        if (!has(CAP_NET_RAW)) {
            off.add("external switch uplinks (AF_PACKET): need CAP_NET_RAW");
        }
        if (cgroup == null || !writable.test(cgroup)) {
            off.add("partition cgroup limits (CPU, memory, pids): " + (cgroup == null ? "no cgroup found"
                : cgroup + " is not writable") + "; each partition's status says which limits hold");
        }
        if (!runtimeDir.equals(Path.of("/run/phost"))) {
            off.add("/run/phost/endpoint: this user's host is recorded in " + runtimeDir.resolve("endpoint")
                + " (phost status run by the same user finds it)");
        }
        return off;
    }

    /** The cgroup v2 directory of this process ({@code 0::/path} in {@code /proc/self/cgroup}), or null. */
    private static Path ownCgroupDir() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/cgroup"))) {
                if (line.startsWith("0::")) {
                    return Path.of("/sys/fs/cgroup" + line.substring(3)).normalize();
                }
            }
        } catch (IOException | RuntimeException e) {
            return null;
        }
        return null;
    }

    /** The one console line for a host run without root, or null for root. */
    public String notice() {
        List<String> off = featuresOff();
        if (root()) {
            return null;
        }
        return "running without root uid=" + (uid < 0 ? "unknown" : Long.toString(uid)) + " features_off=" + off.size()
            + " off=\"" + String.join("; ", off) + "\"";
    }
}
