package io.phost.appliance.config;

import io.phost.core.vmbus.PollingMode;
import java.nio.file.Path;
import java.util.List;
import java.util.Objects;

/**
 * {@code [host]}: the parent partition itself.
 *
 * @param dataDir             absolute, or the literal {@link #TMP_PLACEHOLDER} that the runner replaces
 * @param management          {@code unix:/abs/path} (default {@code unix:<data_dir>/phost.sock}) or
 *                            {@code tcp://HOST:PORT} (any address; a bearer token is required)
 * @param managementTokenFile file holding the bearer token; required for tcp, null otherwise unless set;
 *                            relative paths are relative to the data dir
 * @param vspCpus             CPUs that VSP worker threads may run on; empty means no pinning
 * @param polling             how channel agents wait for guests: spin while it pays (adaptive), spin briefly
 *                            first (latency) or sleep at once (efficiency)
 */
public record HostConfig(String name, Path dataDir, String management, String managementTokenFile, String nbd,
                         List<Integer> vspCpus, PollingMode polling) {

    /** The data-dir placeholder the embedded demo uses; see {@link ApplianceConfig#withDataDir(Path)}. */
    public static final String TMP_PLACEHOLDER = "${tmp}";

    public HostConfig {
        vspCpus = List.copyOf(vspCpus);
        Objects.requireNonNull(polling, "polling");
    }

    /** The default NBD address for a data dir (used only when a disk sets {@code nbd_export}). */
    public static String defaultNbd(Path dataDir) {
        return "unix:" + dataDir.resolve("nbd.sock");
    }

    /** The default management address for a data dir. */
    public static String defaultManagement(Path dataDir) {
        return "unix:" + dataDir.resolve("phost.sock");
    }

    public boolean dataDirIsPlaceholder() {
        return dataDir.toString().equals(TMP_PLACEHOLDER);
    }

    /** True for a {@code unix:} management address. */
    public boolean managementIsUnix() {
        return management.startsWith("unix:");
    }

    /** The socket path of a {@code unix:} address. */
    public Path managementSocket() {
        if (!managementIsUnix()) {
            throw new IllegalStateException("management is not a unix socket: " + management);
        }
        return Path.of(management.substring("unix:".length()));
    }

    /** The port of a {@code tcp://127.0.0.1:PORT} address. */
    public int managementPort() {
        if (managementIsUnix()) {
            throw new IllegalStateException("management is not tcp: " + management);
        }
        return Integer.parseInt(management.substring(management.lastIndexOf(':') + 1));
    }

    /** The host part of a tcp address: {@code 127.0.0.1}, {@code ::1} or {@code localhost}. */
    public String managementHost() {
        if (managementIsUnix()) {
            throw new IllegalStateException("management is not tcp: " + management);
        }
        String hostPort = management.substring("tcp://".length(), management.lastIndexOf(':'));
        return hostPort.startsWith("[") ? hostPort.substring(1, hostPort.length() - 1) : hostPort;
    }

    /** The token file resolved against the data dir, or null. */
    public Path resolvedTokenFile() {
        return managementTokenFile == null ? null : dataDir.resolve(managementTokenFile);
    }

    HostConfig withDataDir(Path newDataDir) {
        String m = management.equals(defaultManagement(dataDir)) ? defaultManagement(newDataDir) : management;
        String b = nbd.equals(defaultNbd(dataDir)) ? defaultNbd(newDataDir) : nbd;
        return new HostConfig(name, newDataDir, m, managementTokenFile, b, vspCpus, polling);
    }
}
