package io.phost.network;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

/**
 * Network namespaces that {@code phost guest net} created, so that a crash cannot leak them. Creating one writes a
 * lease {@code <dir>/NAME} holding the creator's pid and start time; a clean exit deletes namespace and lease. A
 * SIGKILLed guest leaves both: whoever looks next (the same guest restarting, or the appliance's periodic sweep)
 * sees a lease whose process is gone (or whose pid now belongs to a process started later) and deletes the
 * namespace. Namespaces without a lease (made by the user) are never touched.
 */
public final class NetnsLeases {
    /** Where leases live: tmpfs, gone with a reboot like the namespaces themselves. */
    public static final Path DEFAULT_DIR = Path.of("/run/phost/netns-leases");
    private static final Path NETNS_DIR = Path.of("/var/run/netns");

    private NetnsLeases() {}

    public static boolean exists(String netns) {
        return Files.exists(NETNS_DIR.resolve(netns));
    }

    /** Records that this process created {@code netns}. */
    public static void claim(Path dir, String netns) throws IOException {
        Files.createDirectories(dir);
        ProcessHandle self = ProcessHandle.current();
        long start = self.info().startInstant().map(i -> i.toEpochMilli()).orElse(0L);
        Files.writeString(dir.resolve(netns), self.pid() + " " + start + "\n", StandardCharsets.US_ASCII);
    }

    /** Deletes {@code netns} and its lease (a clean stop). */
    public static void release(Path dir, String netns) {
        ip("netns", "delete", netns);
        try {
            Files.deleteIfExists(dir.resolve(netns));
        } catch (IOException e) {
            // a stale lease is swept later
        }
    }

    /** True when {@code netns} has a lease whose owner is no longer running. */
    public static boolean isStale(Path dir, String netns) {
        Path lease = dir.resolve(netns);
        String text;
        try {
            text = Files.readString(lease, StandardCharsets.US_ASCII).trim();
        } catch (IOException e) {
            return false;
        }
        String[] f = text.split(" ");
        long pid;
        long start;
        try {
            pid = Long.parseLong(f[0]);
            start = f.length > 1 ? Long.parseLong(f[1]) : 0;
        } catch (NumberFormatException e) {
            return true; // unreadable lease: only phost writes here
        }
        Optional<ProcessHandle> owner = ProcessHandle.of(pid);
        if (owner.isEmpty() || !owner.get().isAlive()) {
            return true;
        }
        long ownerStart = owner.get().info().startInstant().map(i -> i.toEpochMilli()).orElse(start);
        return start != 0 && Math.abs(ownerStart - start) > 1000; // the pid was reused by a newer process
    }

    /** Deletes every namespace whose lease is stale; returns their names. */
    public static List<String> sweepStale(Path dir) {
        List<String> removed = new ArrayList<>();
        if (!Files.isDirectory(dir)) {
            return removed;
        }
        try (var leases = Files.list(dir)) {
            for (Path lease : leases.toList()) {
                String ns = lease.getFileName().toString();
                if (isStale(dir, ns)) {
                    release(dir, ns);
                    removed.add(ns);
                }
            }
        } catch (IOException e) {
            // nothing to sweep now; next time
        }
        return removed;
    }

    private static void ip(String... args) {
        List<String> cmd = new ArrayList<>(List.of("ip"));
        cmd.addAll(List.of(args));
        try {
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
            p.waitFor(10, TimeUnit.SECONDS);
        } catch (IOException e) {
            // ip missing: nothing we could have created either
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
