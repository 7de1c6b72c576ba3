package io.phost.appliance.config;

import io.phost.appliance.config.ConfigError.Reason;
import io.phost.vhdx.DiskFormat;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static io.phost.appliance.config.BindSupport.path;
import static io.phost.appliance.config.BindSupport.unique;

/** Binds [host] and the cluster keys ([[peer]], {@code ha = true} partitions). */
final class HostBinder {
    private static final Pattern UNIX = Pattern.compile("unix:(/.*)");
    private static final Set<String> LOOPBACK = Set.of("127.0.0.1", "localhost", "[::1]");
    private static final Pattern TCP = Pattern.compile("tcp://([A-Za-z0-9][A-Za-z0-9.-]*|\\[[0-9A-Fa-f:.]+\\]):(\\d{1,5})");
    static final int MAX_SOCKET_PATH = 107;

    private HostBinder() {
    }

    static HostConfig host(TomlNode n) {
        String name = n.string("name");
        String dataDirText = n.string("data_dir");
        Path dataDir = null;
        if (dataDirText != null) {
            if (dataDirText.equals(HostConfig.TMP_PLACEHOLDER)) {
                dataDir = Path.of(HostConfig.TMP_PLACEHOLDER);
            } else {
                dataDir = path(n, "data_dir", dataDirText);
                if (dataDir != null && !dataDir.isAbsolute()) {
                    n.error("data_dir", Reason.INVALID_VALUE,
                        "must be an absolute path (or \"${tmp}\" for a fresh temporary directory)");
                    dataDir = null;
                }
            }
        }
        String management = n.string("management");
        String tokenFile = n.string("management_token_file");
        if (tokenFile != null) {
            path(n, "management_token_file", tokenFile);
        }
        if (management != null) {
            Matcher unix = UNIX.matcher(management);
            Matcher tcp = TCP.matcher(management);
            if (unix.matches()) {
                path(n, "management", unix.group(1));
            } else if (tcp.matches()) {
                int port = Integer.parseInt(tcp.group(2));
                if (port < 1 || port > 65535) {
                    n.error("management", Reason.OUT_OF_RANGE, "port " + port + " is out of range (1..65535)");
                }
                if (tokenFile == null) {
                    n.error("management", Reason.MISSING_KEY, "a tcp management address needs management_token_file");
                }
            } else if (management.startsWith("tcp://")) {
                n.error("management", Reason.INVALID_VALUE, "'" + management + "' is not tcp://HOST:PORT "
                    + "(e.g. tcp://127.0.0.1:8443, tcp://0.0.0.0:8443, tcp://[::1]:8443)");
            } else {
                n.error("management", Reason.INVALID_VALUE,
                    "'" + management + "' is not \"unix:/absolute/path\" or \"tcp://HOST:PORT\"");
            }
        }
        String nbd = n.string("nbd");
        if (nbd != null) {
            Matcher unix = UNIX.matcher(nbd);
            Matcher tcp = TCP.matcher(nbd);
            if (unix.matches()) {
                path(n, "nbd", unix.group(1));
            } else if (tcp.matches() && LOOPBACK.contains(tcp.group(1))) {
                int port = Integer.parseInt(tcp.group(2));
                if (port < 1 || port > 65535) {
                    n.error("nbd", Reason.OUT_OF_RANGE, "port " + port + " is out of range (1..65535)");
                }
            } else {
                // NBD has no authentication: never on a network address.
                n.error("nbd", Reason.INVALID_VALUE, "'" + nbd + "' is not \"unix:/absolute/path\" or "
                    + "\"tcp://127.0.0.1:PORT\" (NBD has no authentication, so only loopback)");
            }
        }
        List<Long> cpus = n.integers("vsp_cpus");
        io.phost.core.vmbus.PollingMode polling = n.enumValue("polling", io.phost.core.vmbus.PollingMode.class);
        if (name == null || dataDir == null || cpus == null || polling == null) {
            return null;
        }
        String m = management == null ? HostConfig.defaultManagement(dataDir) : management;
        if (m.startsWith("unix:") && !m.contains(HostConfig.TMP_PLACEHOLDER)) {
            int length = m.substring("unix:".length()).getBytes(java.nio.charset.StandardCharsets.UTF_8).length;
            if (length > MAX_SOCKET_PATH) {
                // sockaddr_un.sun_path holds 108 bytes including the NUL.
                n.error(management == null ? "data_dir" : "management", Reason.OUT_OF_RANGE,
                    "the management socket path is " + length
                    + " bytes; Unix sockets allow at most " + MAX_SOCKET_PATH
                    + (management == null ? " (set management = \"unix:/shorter/path\")" : ""));
                return null;
            }
        }
        return new HostConfig(name, dataDir, m, tokenFile, nbd == null ? HostConfig.defaultNbd(dataDir) : nbd,
            cpus.stream().map(Long::intValue).toList(), polling);
    }

    // ---- [[peer]] and [[partition]] ha ----

    /** The peers and the {@code ha = true} partitions; null (errors recorded) when any is invalid. */
    static ClusterConfig cluster(TomlNode root, HostConfig host, Map<String, Defined<DiskConfig>> disks) {
        List<ClusterConfig.Peer> peers = new ArrayList<>();
        Map<String, Defined<ClusterConfig.Peer>> byName = new LinkedHashMap<>();
        boolean ok = true;
        for (TomlNode n : root.tables("peer")) {
            ClusterConfig.Peer p = peer(n, host);
            String name = n.string("name");
            if (p == null || !unique(byName, name, n, "peer")) {
                ok = false;
                continue;
            }
            byName.put(name, new Defined<>(p, n));
            peers.add(p);
        }
        Set<String> ha = new java.util.LinkedHashSet<>();
        for (TomlNode n : root.tables("partition")) {
            Boolean on = n.bool("ha");
            if (on == null) {
                ok = false;
            } else if (on) {
                ok &= haPartition(n, disks, !root.tables("peer").isEmpty());
                ha.add(n.string("name"));
            }
        }
        return ok ? new ClusterConfig(peers, ha) : null;
    }

    private static ClusterConfig.Peer peer(TomlNode n, HostConfig host) {
        String name = n.string("name");
        String management = n.string("management");
        String tokenFile = n.string("token_file");
        Long lease = n.integer("lease");
        Path token = tokenFile == null ? null : path(n, "token_file", tokenFile);
        boolean ok = name != null && management != null && lease != null && (tokenFile == null || token != null);
        if (name != null && host != null && name.equals(host.name())) {
            n.error("name", Reason.CONFLICT, "peer '" + name + "' has this host's own name ([host] name)");
            ok = false;
        }
        if (token != null && !token.isAbsolute()) {
            n.error("token_file", Reason.INVALID_VALUE, "token_file must be an absolute path");
            ok = false;
        }
        if (management != null) {
            Matcher unix = UNIX.matcher(management);
            Matcher tcp = TCP.matcher(management);
            if (tcp.matches()) {
                int port = Integer.parseInt(tcp.group(2));
                if (port < 1 || port > 65535) {
                    n.error("management", Reason.OUT_OF_RANGE, "port " + port + " is out of range (1..65535)");
                    ok = false;
                } else if (tokenFile == null) {
                    n.error("management", Reason.MISSING_KEY, "a tcp peer needs token_file (its management token)");
                    ok = false;
                }
            } else if (!unix.matches()) {
                n.error("management", Reason.INVALID_VALUE,
                    "'" + management + "' is not \"unix:/absolute/path\" or \"tcp://HOST:PORT\"");
                ok = false;
            }
        }
        return ok ? new ClusterConfig.Peer(name, management, token, lease.intValue()) : null;
    }

    /** An HA partition can restart on a peer: a process or VM partition whose every disk is a writable RBD image. */
    private static boolean haPartition(TomlNode n, Map<String, Defined<DiskConfig>> disks, boolean hasPeers) {
        if (!hasPeers) {
            n.error("ha", Reason.CONFLICT, "ha = true needs a [[peer]] to restart the partition on");
            return false;
        }
        boolean ok = true;
        for (TomlNode a : n.tables("disk")) {
            String diskName = a.string("disk");
            Defined<DiskConfig> d = diskName == null ? null : disks.get(diskName);
            DiskConfig disk = d == null ? null : d.value();
            if (disk != null && (disk.format() != DiskFormat.RBD || disk.readOnly())) {
                a.error("disk", Reason.CONFLICT, "ha partition '" + n.string("name") + "' uses disk '" + diskName
                    + "', which is " + (disk.readOnly() ? "read-only" : "local to this host (format "
                    + disk.format().name().toLowerCase() + ")") + "; another host can only take over writable rbd disks");
                ok = false;
            }
        }
        return ok;
    }
}
