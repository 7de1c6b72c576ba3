package io.phost.appliance.config;

import io.phost.vhdx.DiskFormat;
import io.phost.appliance.config.ConfigError.Reason;
import io.phost.appliance.config.DiskConfig.Create;
import io.phost.storage.engine.IoEngines;
import io.phost.vhdx.DiskType;
import java.nio.file.InvalidPathException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.zip.CRC32;
import org.tomlj.TomlPosition;
import org.tomlj.TomlTable;

/**
 * Turns a parsed TOML document into an {@link ApplianceConfig}: per-key checks through {@link TomlNode}, then
 * the checks across keys and tables (references, duplicates, conflicting options). Collects every error; returns
 * null when there was any.
 */
final class ConfigBinder implements TomlNode.Errors {
    private static final Pattern UNIX = Pattern.compile("unix:(/.*)");
    private static final Set<String> LOOPBACK = Set.of("127.0.0.1", "localhost", "[::1]");
    private static final Pattern TCP = Pattern.compile("tcp://([A-Za-z0-9][A-Za-z0-9.-]*|\\[[0-9A-Fa-f:.]+\\]):(\\d{1,5})");
    private static final Pattern MAC = Pattern.compile(
        "\\p{XDigit}{2}([:-])\\p{XDigit}{2}(?:\\1\\p{XDigit}{2}){4}");
    /** Prefix of generated MACs: locally administered (bit 1 of the first octet), unicast, then "PH". */
    private static final String GENERATED_MAC_PREFIX = "02:50:48";
    private static final int MAX_SOCKET_PATH = 107;
    /** Guest memory is mapped in pages. */
    private static final long PAGE = 4096;

    private final String file;
    private final Path source;
    private final List<ConfigError> errors;
    /** The [disk.create] table of each disk that has one, to tell explicit keys from defaults. */
    private final Map<String, TomlNode> createNodes = new HashMap<>();

    ConfigBinder(String file, Path source, List<ConfigError> errors) {
        this.file = file;
        this.source = source;
        this.errors = errors;
    }

    @Override
    public void add(TomlPosition position, String keyPath, Reason reason, String message) {
        errors.add(new ConfigError(file, position.line(), position.column(), keyPath, reason, message));
    }

    /** A name and where it was first defined, for duplicate and reference checks. */
    private record Defined<T>(T value, TomlNode node) {
    }

    ApplianceConfig bind(TomlTable document) {
        int before = errors.size();
        TomlNode root = new TomlNode(this, document, "", TomlPosition.positionAt(1, 1), ConfigSchema.section(""));
        TomlNode hostNode = root.table("host");
        HostConfig host = hostNode == null ? null : host(hostNode);

        Map<String, Defined<QosPolicyConfig>> policies = new LinkedHashMap<>();
        for (TomlNode n : root.tables("qos_policy")) {
            QosPolicyConfig q = qosPolicy(n);
            String name = n.string("name");
            if (name != null && unique(policies, name, n, "QoS policy")) {
                policies.put(name, new Defined<>(q, n));
            }
        }
        Map<String, Defined<DiskConfig>> disks = new LinkedHashMap<>();
        for (TomlNode n : root.tables("disk")) {
            DiskConfig d = disk(n, policies.keySet(), host);
            String name = n.string("name");
            if (name != null && unique(disks, name, n, "disk")) {
                disks.put(name, new Defined<>(d, n));
            }
        }
        checkDiskFiles(host, hostNode, disks);
        Map<String, Defined<SwitchConfig>> switches = new LinkedHashMap<>();
        for (TomlNode n : root.tables("switch")) {
            SwitchConfig s = switchConfig(n);
            String name = n.string("name");
            if (name != null && unique(switches, name, n, "switch")) {
                switches.put(name, new Defined<>(s, n));
            }
        }
        Map<String, Defined<PartitionDraft>> partitions = new LinkedHashMap<>();
        Map<String, String> macOwners = new HashMap<>();
        Map<String, String> writableDiskOwner = new HashMap<>();
        for (TomlNode n : root.tables("partition")) {
            String name = n.string("name");
            PartitionDraft p = partition(n, name, disks, switches, macOwners, writableDiskOwner);
            if (name != null && unique(partitions, name, n, "partition")) {
                partitions.put(name, new Defined<>(p, n));
            }
        }
        ClusterConfig cluster = cluster(root, host, disks);
        if (errors.size() > before) {
            return null;
        }
        if (host == null || anyMissing(policies) || anyMissing(disks) || anyMissing(switches) || anyMissing(partitions)) {
            // Every rejection above records an error; a silent one would drop part of the appliance.
            throw new IllegalStateException("config rejected without an error message");
        }
        List<PartitionDraft> drafts = values(partitions);
        assignMacs(host, drafts, macOwners);
        List<PartitionConfig> built = new ArrayList<>(drafts.size());
        for (PartitionDraft p : drafts) {
            built.add(p.build());
        }
        return new ApplianceConfig(source, host, values(disks), values(policies), values(switches), built, cluster);
    }

    // ---- [[peer]] and [[partition]] ha ----

    /** The peers and the {@code ha = true} partitions; null (errors recorded) when any is invalid. */
    private ClusterConfig cluster(TomlNode root, HostConfig host, Map<String, Defined<DiskConfig>> disks) {
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

    private ClusterConfig.Peer peer(TomlNode n, HostConfig host) {
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

    /** An HA partition can restart on a peer: a process partition whose every disk is a writable RBD image. */
    private static boolean haPartition(TomlNode n, Map<String, Defined<DiskConfig>> disks, boolean hasPeers) {
        if (!hasPeers) {
            n.error("ha", Reason.CONFLICT, "ha = true needs a [[peer]] to restart the partition on");
            return false;
        }
        if ("vm".equals(n.word("kind"))) {
            n.error("ha", Reason.CONFLICT, "ha restarts process partitions only (a VM partition cannot move yet)");
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

    private static boolean anyMissing(Map<String, ? extends Defined<?>> m) {
        return m.values().stream().anyMatch(d -> d.value() == null);
    }

    /**
     * Checks between disks, after all of them are read: two disks on one file; a disk that is its own parent;
     * a parent that is another disk served writable (it must not change under its children), comes later in
     * the file (disks are opened and created in file order), or has another format. A differencing disk whose
     * parent is a configured disk takes the parent's sector sizes unless it sets them (a different logical
     * sector size is refused: the engine cannot create it). Paths are compared after resolving them against
     * the data dir, when it is known, and through symbolic links ({@link #realPath}), so two names for one
     * file are one file. The host's sockets and token file must not be a disk's file or each other: a socket
     * bound over a disk image would cost the image.
     */
    private void checkDiskFiles(HostConfig host, TomlNode hostNode, Map<String, Defined<DiskConfig>> disks) {
        Path base = host == null || host.dataDirIsPlaceholder() ? Path.of("/") : host.dataDir();
        Map<Path, String> used = new HashMap<>();
        if (host != null && !host.dataDirIsPlaceholder()) {
            if (host.managementIsUnix()) {
                claim(used, host.managementSocket(), "the management socket", hostNode, "management");
            }
            boolean exported = disks.values().stream().anyMatch(d -> d.value() != null && d.value().nbdExport());
            if (exported && host.nbd().startsWith("unix:")) {
                claim(used, Path.of(host.nbd().substring("unix:".length())), "the NBD socket", hostNode, "nbd");
            }
            if (host.managementTokenFile() != null) {
                claim(used, host.resolvedTokenFile(), "the management token file", hostNode, "management_token_file");
            }
        }
        Map<Path, DiskConfig> byFile = new HashMap<>();
        Map<String, Integer> order = new HashMap<>();
        for (Defined<DiskConfig> d : disks.values()) {
            if (d.value() == null) {
                continue;
            }
            order.put(d.value().name(), order.size());
            Path file = realPath(d.value().resolvedPath(base));
            DiskConfig other = byFile.putIfAbsent(file, d.value());
            if (other != null) {
                d.node().error("path", Reason.DUPLICATE,
                    "disk '" + d.value().name() + "' uses the same file as disk '" + other.name() + "'"
                    + (file.equals(d.value().resolvedPath(base).normalize()) ? "" : " (" + file + ")"));
            } else {
                claim(used, file, "disk '" + d.value().name() + "'", d.node(), "path");
            }
        }
        for (Map.Entry<String, Defined<DiskConfig>> e : disks.entrySet()) {
            Defined<DiskConfig> d = e.getValue();
            DiskConfig disk = d.value();
            if (disk == null || disk.parent() == null) {
                continue;
            }
            DiskConfig owner = byFile.get(realPath(disk.resolvedParent(base)));
            if (owner == null) {
                continue; // an image the config does not manage; the engine checks it when creating
            }
            String who = "disk '" + owner.name() + "'";
            if (owner == disk) {
                d.node().error("parent", Reason.CONFLICT, "a disk cannot be its own parent");
            } else if (!owner.readOnly()) {
                d.node().error("parent", Reason.CONFLICT, "the parent is " + who + ", which is served writable; "
                    + "a parent must not change under its children (set read_only = true on '" + owner.name() + "')");
            } else if (order.get(owner.name()) > order.get(disk.name())) {
                d.node().error("parent", Reason.CONFLICT, "the parent is " + who + ", defined later in the file; "
                    + "disks are opened and created in file order, so define '" + owner.name() + "' first");
            } else if (owner.format() != disk.format()) {
                d.node().error("parent", Reason.CONFLICT, "a differencing " + lower(disk.format()) + " disk needs a "
                    + lower(disk.format()) + " parent; " + who + " is " + lower(owner.format()));
            } else if (owner.create() != null && disk.create() != null) {
                TomlNode c = createNodes.get(disk.name());
                Create own = disk.create();
                Create parent = owner.create();
                if (c.has("logical_sector") && own.logicalSector() != parent.logicalSector()) {
                    c.error("logical_sector", Reason.CONFLICT, "a differencing disk uses its parent's logical sector "
                        + "size: " + parent.logicalSector() + " on " + who);
                    continue;
                }
                int physical = c.has("physical_sector") ? own.physicalSector() : parent.physicalSector();
                if (physical < parent.logicalSector()) {
                    c.error("physical_sector", Reason.CONFLICT, "physical_sector " + physical
                        + " is below the parent's logical sector size " + parent.logicalSector() + " (" + who + ")");
                    continue;
                }
                e.setValue(new Defined<>(new DiskConfig(disk.name(), disk.path(), disk.format(),
                    new Create(own.type(), own.size(), own.blockSize(), parent.logicalSector(), physical),
                    disk.parent(), disk.qosPolicy(), disk.readOnly(), disk.ioEngine(), disk.nbdExport(), disk.vhostUser(),
                    disk.rbd()), d.node()));
            }
        }
    }

    /** Records that {@code what} uses {@code file}; a second user is an error at its own key. */
    private static void claim(Map<Path, String> used, Path file, String what, TomlNode node, String key) {
        if (node == null) {
            return;
        }
        Path real = realPath(file);
        String first = used.putIfAbsent(real, what);
        if (first != null) {
            node.error(key, Reason.DUPLICATE, what + " would use " + real + ", which is already " + first
                + "; every disk, socket and token file needs a path of its own");
        }
    }

    /**
     * {@code p} made absolute and normal, with symbolic links resolved as far as the file system has them:
     * the real path of the file, or of its deepest existing directory plus the rest.
     */
    static Path realPath(Path p) {
        Path abs = p.toAbsolutePath().normalize();
        Path existing = abs;
        while (existing != null) {
            try {
                return existing.toRealPath().resolve(existing.relativize(abs));
            } catch (java.io.IOException | SecurityException e) {
                existing = existing.getParent();
            }
        }
        return abs;
    }

    private static String lower(Enum<?> e) {
        return e.name().toLowerCase(Locale.ROOT);
    }

    private static <T> List<T> values(Map<String, Defined<T>> m) {
        List<T> out = new ArrayList<>(m.size());
        for (Defined<T> d : m.values()) {
            out.add(d.value());
        }
        return out;
    }

    private <T> boolean unique(Map<String, Defined<T>> seen, String name, TomlNode n, String what) {
        Defined<T> first = seen.get(name);
        if (first != null) {
            TomlPosition p = first.node().positionOf("name");
            n.error("name", Reason.DUPLICATE,
                "duplicate " + what + " name '" + name + "' (first defined at line " + p.line() + ")");
            return false;
        }
        return true;
    }

    // ---- [host] ----

    private HostConfig host(TomlNode n) {
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

    // ---- [[qos_policy]] ----

    /** The first [[qos_policy]] of {@code document} and nothing else (for the management API); null on errors. */
    QosPolicyConfig bindPolicy(TomlTable document) {
        TomlNode root = new TomlNode(this, document, "", TomlPosition.positionAt(1, 1), ConfigSchema.section(""));
        List<TomlNode> tables = root.tables("qos_policy");
        return tables.size() == 1 ? qosPolicy(tables.getFirst()) : null;
    }

    private QosPolicyConfig qosPolicy(TomlNode n) {
        String name = n.string("name");
        QosPolicyConfig.Type type = n.enumValue("type", QosPolicyConfig.Type.class);
        Long min = n.integer("min_iops");
        Long max = n.integer("max_iops");
        Long bandwidth = n.bandwidth("max_bandwidth");
        Long normalization = n.size("normalization_size");
        Long weight = n.integer("weight");
        if (normalization != null && Long.bitCount(normalization) != 1) {
            n.error("normalization_size", Reason.INVALID_VALUE, normalization + " is not a power of two");
            normalization = null;
        }
        if (min != null && max != null && max != 0 && min > max) {
            n.error("min_iops", Reason.OUT_OF_RANGE, "min_iops " + min + " is above max_iops " + max);
            return null;
        }
        if (name == null || type == null || min == null || max == null || bandwidth == null || normalization == null
            || weight == null) {
            return null;
        }
        return new QosPolicyConfig(name, type, min, max, bandwidth, normalization.intValue(), weight.intValue());
    }

    // ---- [[disk]] ----

    private DiskConfig disk(TomlNode n, Set<String> policies, HostConfig host) {
        String name = n.string("name");
        String pathText = n.string("path");
        Path path = pathText == null ? null : path(n, "path", pathText);
        DiskFormat format = n.enumValue("format", DiskFormat.class);
        String parent = n.string("parent");
        if (parent != null) {
            path(n, "parent", parent);
        }
        String policy = n.string("qos_policy");
        if (policy != null && !policies.contains(policy)) {
            n.error("qos_policy", Reason.DANGLING_REFERENCE,
                "no [[qos_policy]] named '" + policy + "'" + hint(policy, policies));
            policy = null;
        }
        Boolean readOnly = n.bool("read_only");
        IoEngines.Kind ioEngine = n.enumValue("io_engine", IoEngines.Kind.class);
        Boolean nbdExport = n.bool("nbd_export");
        Boolean vhostUser = n.bool("vhost_user");
        if (Boolean.TRUE.equals(vhostUser) && name != null && host != null && host.dataDir() != null && !host.dataDirIsPlaceholder()) {
            Path sock = DiskConfig.vhostUserSocket(host.dataDir(), name);
            if (sock.toString().getBytes(java.nio.charset.StandardCharsets.UTF_8).length > MAX_SOCKET_PATH) {
                n.error("vhost_user", Reason.INVALID_VALUE, "the socket path " + sock + " is longer than " + MAX_SOCKET_PATH
                    + " bytes (a Unix socket limit); use a shorter data_dir or disk name");
                vhostUser = null;
            }
        }
        TomlNode createNode = n.table("create");
        TomlNode rbdNode = n.table("rbd");
        Create create = null;
        boolean createOk = true;
        DiskConfig.Rbd rbd = null;
        if (format == DiskFormat.RBD) {
            rbd = rbd(n, rbdNode);
            createOk = rbd != null;
            if (n.has("path")) {
                n.error("path", Reason.CONFLICT, "an rbd disk lives in Ceph ([disk.rbd] pool and image); remove path");
                createOk = false;
            }
            if (parent != null) {
                n.error("parent", Reason.CONFLICT, "an rbd disk has no parent");
                createOk = false;
            }
            if (createNode != null) {
                create = create(createNode, n, format, null);
                createOk &= create != null;
            }
            if (ioEngine == IoEngines.Kind.IO_URING || ioEngine == IoEngines.Kind.INLINE) {
                n.error("io_engine", Reason.CONFLICT, "an rbd disk has no file for io_uring and must not block its "
                    + "queue (inline); use auto (librbd's own asynchronous I/O) or threads");
                createOk = false;
            }
            if (rbd != null) {
                path = Path.of("rbd", rbd.pool()).resolve(rbd.namespace() == null ? rbd.image() : rbd.namespace() + "/" + rbd.image());
            }
        } else if (rbdNode != null) {
            n.error("rbd", Reason.CONFLICT, "[disk.rbd] is only for format = \"rbd\"");
            createOk = false;
        } else if (pathText == null) {
            n.error("path", Reason.MISSING_KEY, "required key is missing from [[disk]] (every format but rbd has a path)");
        }
        if (format == DiskFormat.RBD) {
            // checked above
        } else if (format == DiskFormat.PASSTHROUGH) {
            if (createNode != null) {
                n.error("create", Reason.CONFLICT, "a passthrough disk is a host device; it cannot be created");
                createOk = false;
            }
            if (parent != null) {
                n.error("parent", Reason.CONFLICT, "a passthrough disk has no parent");
                parent = null;
            }
            if (path != null && !path.isAbsolute()) {
                n.error("path", Reason.INVALID_VALUE,
                    "a passthrough disk needs an absolute device path such as /dev/sdb");
                path = null;
            }
        } else if (createNode != null && format != null) {
            create = create(createNode, n, format, parent);
            if (name != null) {
                createNodes.put(name, createNode);
            }
            createOk = create != null;
        } else if (createNode == null && parent != null) {
            n.error("parent", Reason.CONFLICT,
                "parent is only used to create a differencing disk ([disk.create] type = \"differencing\")");
            parent = null;
        }
        if (name == null || path == null || format == null || readOnly == null || ioEngine == null || nbdExport == null
            || vhostUser == null || !createOk) {
            return null;
        }
        return new DiskConfig(name, path, format, create, parent, policy, readOnly, ioEngine, nbdExport, vhostUser, rbd);
    }

    private DiskConfig.Rbd rbd(TomlNode disk, TomlNode r) {
        if (r == null) {
            disk.error("rbd", Reason.MISSING_KEY, "an rbd disk needs a [disk.rbd] table with pool and image");
            return null;
        }
        String pool = r.string("pool");
        String image = r.string("image");
        String namespace = r.string("namespace");
        String conf = r.string("cluster_config");
        String client = r.string("client");
        String keyring = r.string("keyring");
        Boolean breakLock = r.bool("break_lock");
        Long timeout = r.integer("connect_timeout");
        boolean ok = pool != null && image != null && client != null && breakLock != null && timeout != null
            && (namespace != null || !r.has("namespace")) && (conf != null || !r.has("cluster_config"))
            && (keyring != null || !r.has("keyring"));
        ok &= rbdName(r, "pool", pool) & rbdName(r, "image", image) & rbdName(r, "namespace", namespace)
            & rbdName(r, "client", client);
        Path confPath = conf == null ? null : Path.of(conf);
        Path keyringPath = keyring == null ? null : Path.of(keyring);
        if (confPath != null && !confPath.isAbsolute()) {
            r.error("cluster_config", Reason.INVALID_VALUE, "cluster_config must be an absolute path to a ceph.conf");
            ok = false;
        }
        if (keyringPath != null && !keyringPath.isAbsolute()) {
            r.error("keyring", Reason.INVALID_VALUE, "keyring must be an absolute path");
            ok = false;
        }
        if (!ok) {
            return null;
        }
        return new DiskConfig.Rbd(pool, image, namespace == null || namespace.isEmpty() ? null : namespace, confPath,
            client, keyringPath, breakLock, timeout.intValue());
    }

    /** Ceph names: non-empty, no '/', '@' or whitespace, no control characters (they would reach librados). */
    private static boolean rbdName(TomlNode r, String key, String value) {
        if (value == null) {
            return true;
        }
        boolean emptyOk = key.equals("namespace");
        if ((value.isEmpty() && !emptyOk) || value.length() > 255
            || value.chars().anyMatch(c -> c == '/' || c == '@' || Character.isWhitespace(c) || c < 0x20 || c == 0x7f)) {
            r.error(key, Reason.INVALID_VALUE, "\"" + value + "\" is not a Ceph " + key
                + " name (1..255 characters without '/', '@', whitespace or control characters)");
            return false;
        }
        return true;
    }

    private Create create(TomlNode c, TomlNode disk, DiskFormat format, String parent) {
        DiskType type = c.enumValue("type", DiskType.class);
        Long size = c.size("size");
        Long blockSize = c.size("block_size");
        Long logical = c.integer("logical_sector");
        Long physical = c.integer("physical_sector");
        boolean ok = type != null && logical != null && (physical != null || !c.has("physical_sector"))
            && (size != null || !c.has("size")) && (blockSize != null || !c.has("block_size"));
        if (type == DiskType.DIFFERENCING && format == DiskFormat.RBD) {
            ok = false; // reported below with the other rbd rules
        } else if (type == DiskType.DIFFERENCING) {
            if (format == DiskFormat.RAW) {
                c.error("type", Reason.CONFLICT, "a raw disk cannot be differencing (use vhdx or vhd)");
                ok = false;
            }
            if (parent == null && !disk.has("parent")) {
                c.error("type", Reason.CONFLICT, "a differencing disk needs parent = \"...\" in its [[disk]]");
                ok = false;
            }
            if (c.has("size")) {
                c.error("size", Reason.CONFLICT, "a differencing disk takes its size from the parent; remove size");
                ok = false;
            }
        } else if (type != null) {
            if (disk.has("parent")) {
                disk.error("parent", Reason.CONFLICT, "a " + type.name().toLowerCase(Locale.ROOT)
                    + " disk has no parent (only create.type = \"differencing\" does)");
                ok = false;
            }
            if (!c.has("size")) {
                c.error("size", Reason.MISSING_KEY,
                    "required key is missing: a " + type.name().toLowerCase(Locale.ROOT) + " disk needs a size");
                ok = false;
            }
        }
        if (format == DiskFormat.RBD) {
            if (type == DiskType.DIFFERENCING) {
                c.error("type", Reason.CONFLICT, "an rbd disk cannot be differencing (use an RBD clone in Ceph)");
                ok = false;
            }
            for (String key : List.of("block_size", "physical_sector")) {
                if (c.has(key)) {
                    c.error(key, Reason.CONFLICT, "an rbd disk takes its object size from Ceph; remove " + key);
                    ok = false;
                }
            }
            if (logical != null && logical != 512) {
                c.error("logical_sector", Reason.CONFLICT, "an rbd disk has 512-byte logical sectors only");
                ok = false;
            }
            physical = 4096L;
        }
        if (format == DiskFormat.RAW && c.has("block_size")) {
            c.error("block_size", Reason.CONFLICT, "a raw disk has no blocks; remove block_size");
            ok = false;
        }
        if (blockSize != null && Long.bitCount(blockSize) != 1) {
            c.error("block_size", Reason.INVALID_VALUE, Units.formatSize(blockSize) + " is not a power of two");
            ok = false;
        }
        if (format == DiskFormat.RAW && logical != null && logical != 512) {
            c.error("logical_sector", Reason.CONFLICT, "a raw disk has 512-byte logical sectors only");
            logical = null;
            ok = false;
        }
        if (format == DiskFormat.VHD) {
            if (logical != null && logical != 512) {
                c.error("logical_sector", Reason.CONFLICT, "a vhd disk has 512-byte sectors only");
                logical = null;
                ok = false;
            }
            if (physical != null && physical != 512) {
                c.error("physical_sector", Reason.CONFLICT, "a vhd disk has 512-byte sectors only");
                physical = null;
                ok = false;
            }
            if (size != null && size > ConfigSchema.MAX_VHD_SIZE) {
                c.error("size", Reason.OUT_OF_RANGE, Units.formatSize(size) + " is above the vhd limit of 2040GiB");
                ok = false;
            }
        }
        if (physical == null && !c.has("physical_sector")) {
            physical = format == DiskFormat.VHDX ? 4096L : 512L;
        }
        if (logical != null && physical != null && physical < logical) {
            c.error(c.has("physical_sector") ? "physical_sector" : "logical_sector", Reason.CONFLICT,
                "physical_sector " + physical + " is below logical_sector " + logical);
            ok = false;
        }
        if (size != null && logical != null && size % logical != 0) {
            c.error("size", Reason.INVALID_VALUE,
                size + " bytes is not a multiple of the " + logical + "-byte logical sector");
            ok = false;
        }
        if (!ok) {
            return null;
        }
        long block = blockSize != null ? blockSize : switch (format) {
            case VHDX -> 32 * Units.MIB;
            case VHD -> 2 * Units.MIB;
            default -> 0;
        };
        return new Create(type, size == null ? 0 : size, block, logical.intValue(), physical.intValue());
    }

    // ---- [[switch]] ----

    private SwitchConfig switchConfig(TomlNode n) {
        String name = n.string("name");
        SwitchConfig.Type type = n.enumValue("type", SwitchConfig.Type.class);
        String uplink = n.string("uplink");
        Boolean management = n.bool("allow_management_os");
        Boolean iov = n.bool("enable_iov");
        SwitchConfig.BandwidthMode mode = n.enumValue("bandwidth_mode", SwitchConfig.BandwidthMode.class);
        Long mtu = n.integer("mtu");
        Long vmqWorkers = n.integer("vmq_workers");
        Long uplinkBandwidth = n.bandwidth("uplink_bandwidth");
        String hostAddress = n.string("host_address");
        Boolean nat = n.bool("nat");
        String natPrefix = n.string("nat_prefix");
        List<String> uplinks = n.strings("uplinks");
        boolean ok = true;
        if (Boolean.TRUE.equals(nat) || natPrefix != null) {
            String why = natProblem(type, hostAddress, Boolean.TRUE.equals(nat), natPrefix);
            if (why != null) {
                n.error(natPrefix != null && why.startsWith("nat_prefix") ? "nat_prefix" : "nat",
                    Reason.CONFLICT, why);
                ok = false;
            } else if (natPrefix == null) {
                natPrefix = subnetOf(hostAddress);
            }
        }
        if (uplinks != null && !uplinks.isEmpty()) {
            if (n.has("uplink")) {
                n.error("uplinks", Reason.CONFLICT, "give either uplink (one interface) or uplinks (a team), not both");
                ok = false;
            } else if (uplinks.size() < 2 || uplinks.size() > 8) {
                n.error("uplinks", Reason.OUT_OF_RANGE, "a team has 2..8 interfaces, not " + uplinks.size()
                    + (uplinks.size() == 1 ? " (use uplink = \"" + uplinks.getFirst() + "\")" : ""));
                ok = false;
            } else if (uplinks.stream().distinct().count() != uplinks.size()) {
                n.error("uplinks", Reason.DUPLICATE, "an interface is listed twice: " + uplinks);
                ok = false;
            } else if (type != null && type != SwitchConfig.Type.EXTERNAL) {
                n.error("uplinks", Reason.CONFLICT, "only an external switch has uplinks; this one is "
                    + type.name().toLowerCase(Locale.ROOT));
                ok = false;
            } else {
                for (String u : uplinks) {
                    if (!isInterfaceName(u)) {
                        n.error("uplinks", Reason.INVALID_VALUE,
                            "'" + u + "' is not a Linux interface name (1-15 characters, no '/' or spaces)");
                        ok = false;
                    }
                }
            }
        }
        if (hostAddress != null) {
            String why = hostAddressProblem(hostAddress);
            if (why != null) {
                n.error("host_address", Reason.INVALID_VALUE, why);
                ok = false;
            } else if (type != null && type != SwitchConfig.Type.INTERNAL) {
                n.error("host_address", Reason.CONFLICT, "only an internal switch has a host vNIC to address; this one is "
                    + type.name().toLowerCase(Locale.ROOT));
                ok = false;
            }
        }
        if (type == SwitchConfig.Type.PRIVATE && uplinkBandwidth != null && uplinkBandwidth > 0) {
            n.error("uplink_bandwidth", Reason.CONFLICT, "a private switch has neither an uplink nor a host TAP to cap");
            ok = false;
        }
        if (uplink != null && !isInterfaceName(uplink)) {
            n.error("uplink", Reason.INVALID_VALUE,
                "'" + uplink + "' is not a Linux interface name (1-15 characters, no '/' or spaces)");
            ok = false;
        }
        if (mode == SwitchConfig.BandwidthMode.ABSOLUTE) {
            // Refused here rather than at run time: the switch has no absolute (bits/s) reservations.
            n.error("bandwidth_mode", Reason.INVALID_VALUE,
                "\"absolute\" minimum bandwidth is not implemented; use \"weight\" (min_bandwidth_weight) or \"none\"");
            ok = false;
        }
        if (type == SwitchConfig.Type.EXTERNAL && !n.has("uplink") && (uplinks == null || uplinks.isEmpty())) {
            n.errorHere(Reason.CONFLICT, "an external switch needs uplink = \"<host interface>\" (or uplinks = [...] for a team)");
            ok = false;
        }
        if (type != null && type != SwitchConfig.Type.EXTERNAL) {
            String t = type.name().toLowerCase(Locale.ROOT);
            if (n.has("uplink")) {
                n.error("uplink", Reason.CONFLICT, "only an external switch has an uplink; this one is " + t);
                ok = false;
            }
            if (Boolean.TRUE.equals(management)) {
                n.error("allow_management_os", Reason.CONFLICT, "only applies to an external switch; this one is " + t);
                ok = false;
            }
            if (Boolean.TRUE.equals(iov)) {
                n.error("enable_iov", Reason.CONFLICT,
                    "SR-IOV needs a physical uplink: external switches only; this one is " + t);
                ok = false;
            }
        }
        if (!ok || name == null || type == null || management == null || iov == null || mode == null || mtu == null
            || vmqWorkers == null || uplinkBandwidth == null) {
            return null;
        }
        return new SwitchConfig(name, type, uplink, management, iov, mode, mtu.intValue(), vmqWorkers.intValue(),
            uplinkBandwidth, hostAddress, natPrefix, uplinks);
    }

    private static boolean isInterfaceName(String s) {
        return !s.isEmpty() && s.length() <= 15 && !s.contains("/") && s.chars().noneMatch(Character::isWhitespace);
    }

    /** Why NAT cannot be set up as asked (the message starts with the key at fault), or null. */
    static String natProblem(SwitchConfig.Type type, String hostAddress, boolean nat, String natPrefix) {
        if (!nat) {
            return "nat_prefix needs nat = true";
        }
        if (type != null && type != SwitchConfig.Type.INTERNAL) {
            return "nat: only an internal switch is NATed (its partitions reach the outside through the host); this one is "
                + type.name().toLowerCase(Locale.ROOT);
        }
        if (hostAddress == null || hostAddressProblem(hostAddress) != null) {
            return "nat needs host_address = \"A.B.C.D/N\": the partitions' gateway on the switch";
        }
        if (natPrefix == null) {
            return null;
        }
        int slash = natPrefix.indexOf('/');
        Integer net = slash < 0 ? null : NicConfig.ipv4(natPrefix.substring(0, slash));
        String len = slash < 0 ? "" : natPrefix.substring(slash + 1);
        if (net == null || len.isEmpty() || len.length() > 2 || !len.chars().allMatch(Character::isDigit)
            || Integer.parseInt(len) < 1 || Integer.parseInt(len) > 30) {
            return "nat_prefix: '" + natPrefix + "' is not an IPv4 prefix with a length 1..30 (e.g. \"10.91.0.0/24\")";
        }
        int bits = Integer.parseInt(len);
        int mask = (int) (0xffff_ffffL << (32 - bits));
        if ((net & ~mask) != 0) {
            return "nat_prefix: '" + natPrefix + "' has host bits set; the prefix is " + subnetOf(natPrefix);
        }
        int host = NicConfig.ipv4(hostAddress.substring(0, hostAddress.indexOf('/')));
        if ((host & mask) != net) {
            return "nat_prefix: " + natPrefix + " does not contain host_address " + hostAddress;
        }
        return null;
    }

    /** The network of an IPv4 CIDR: {@code 10.91.0.1/24} → {@code 10.91.0.0/24}. */
    static String subnetOf(String cidr) {
        int slash = cidr.indexOf('/');
        int bits = Integer.parseInt(cidr.substring(slash + 1));
        int net = NicConfig.ipv4(cidr.substring(0, slash)) & (int) (0xffff_ffffL << (32 - bits));
        return (net >>> 24) + "." + (net >>> 16 & 0xff) + "." + (net >>> 8 & 0xff) + "." + (net & 0xff) + "/" + bits;
    }

    /**
     * Why {@code text} is not a host address for an internal switch's TAP: an IPv4 unicast address with a prefix
     * length 1..30 that is neither the subnet's network nor its broadcast address; null when it is one.
     */
    static String hostAddressProblem(String text) {
        int slash = text.indexOf('/');
        String suffix = slash < 0 ? "" : text.substring(slash + 1);
        Integer ip = slash < 0 ? null : NicConfig.ipv4(text.substring(0, slash));
        if (ip == null || suffix.isEmpty() || suffix.length() > 2 || !suffix.chars().allMatch(Character::isDigit)) {
            return "'" + text + "' is not an IPv4 address with a prefix length (e.g. \"10.91.0.1/24\")";
        }
        int prefix = Integer.parseInt(suffix);
        if (prefix < 1 || prefix > 30) {
            return "prefix length /" + prefix + " is out of range (1..30)";
        }
        if (!NicConfig.isUnicastIpv4(text.substring(0, slash)) || (ip >>> 24) == 127) {
            return "'" + text.substring(0, slash) + "' is not a unicast address (not 0.0.0.0, loopback, multicast, broadcast)";
        }
        int host = ip & (int) ((1L << (32 - prefix)) - 1);
        if (host == 0 || host == (int) ((1L << (32 - prefix)) - 1)) {
            return "'" + text + "' is the subnet's " + (host == 0 ? "network" : "broadcast") + " address, not a host's";
        }
        return null;
    }

    // ---- [[partition]] ----

    /** A partition whose NIC MACs may still need generating. */
    private static final class PartitionDraft {
        final String name;
        final int vcpus;
        final long memory;
        final List<DiskAttachment> disks;
        final List<NicDraft> nics;
        final List<String> command;
        final Workload workload;
        final boolean autostart;
        final VmConfig vm;
        final String onCrash;
        final List<Integer> cpus;

        PartitionDraft(String name, int vcpus, long memory, List<DiskAttachment> disks, List<NicDraft> nics,
                       List<String> command, Workload workload, boolean autostart, VmConfig vm, String onCrash,
                       List<Integer> cpus) {
            this.cpus = cpus;
            this.vm = vm;
            this.onCrash = onCrash;
            this.name = name;
            this.vcpus = vcpus;
            this.memory = memory;
            this.disks = disks;
            this.nics = nics;
            this.command = command;
            this.workload = workload;
            this.autostart = autostart;
        }

        PartitionConfig build() {
            List<NicConfig> built = new ArrayList<>(nics.size());
            for (NicDraft d : nics) {
                built.add(d.build());
            }
            return new PartitionConfig(name, vcpus, memory, disks, built, command, workload, autostart, vm, onCrash, cpus);
        }
    }

    /** A NIC before MAC generation. */
    private record NicDraft(String partition, int index, NicConfig nic, String[] mac) {
        NicConfig build() {
            NicConfig c = nic;
            return new NicConfig(c.switchName(), mac[0], c.vlanAccess(), c.vlanTrunk(), c.nativeVlan(), c.macSpoofing(),
                c.dhcpGuard(), c.routerGuard(), c.maxBandwidth(), c.minBandwidthWeight(), c.vmqWeight(), c.iovWeight(), c.mtu(),
                c.mirroring(), c.stormLimit(), c.maxMacAddresses(), c.maxBandwidthIn(), c.ipAddresses(), c.acl());
        }
    }

    private PartitionDraft partition(TomlNode n, String name, Map<String, Defined<DiskConfig>> disks,
                                     Map<String, Defined<SwitchConfig>> switches, Map<String, String> macOwners,
                                     Map<String, String> writableDiskOwner) {
        Long vcpus = n.integer("vcpus");
        Long memory = n.size("memory");
        Boolean autostart = n.bool("autostart");
        String kind = n.word("kind");
        boolean isVm = "vm".equals(kind);
        String onCrash = isVm ? null : n.word("on_crash"); // a VM's is read with its other keys (VmConfig)
        if (memory != null && memory % PAGE != 0) {
            n.error("memory", Reason.INVALID_VALUE, memory + " bytes is not a multiple of the 4KiB page size");
            memory = null;
        } else if (memory != null && isVm && memory % Units.MIB != 0) {
            n.error("memory", Reason.INVALID_VALUE, memory + " bytes is not a whole number of MiB (QEMU's -m for a VM)");
            memory = null;
        }
        boolean ok = kind != null;
        VmConfig vm = null;
        if (isVm) {
            vm = vm(n, name);
            ok &= vm != null;
            for (String key : List.of("command", "workload")) {
                if (n.has(key)) {
                    n.error(key, Reason.CONFLICT, "a VM partition runs its guest's own software; " + key
                        + " is for kind = \"process\"");
                    ok = false;
                }
            }
        } else if (kind != null) {
            for (String key : VM_ONLY_KEYS) {
                if (n.has(key)) {
                    n.error(key, Reason.CONFLICT, key + " is only for kind = \"vm\"");
                    ok = false;
                }
            }
        }
        List<String> command = isVm ? null : n.strings("command");
        if (command != null) {
            if (command.isEmpty()) {
                n.error("command", Reason.INVALID_VALUE,
                    "an empty command; give the program and its arguments, e.g. [\"/bin/sh\", \"-c\", \"...\"]");
                ok = false;
            } else if (command.getFirst().isEmpty()) {
                n.error("command", Reason.INVALID_VALUE, "the program (first element) is empty");
                ok = false;
            }
        } else if (n.has("command") && !isVm) {
            ok = false;
        }
        Workload workload = null;
        TomlNode w = isVm ? null : n.table("workload");
        if (isVm) {
            // checked above
        } else if (w != null) {
            String workloadKind = w.word("kind");
            List<String> args = w.strings("args");
            if (command != null || n.has("command")) {
                n.error("workload", Reason.CONFLICT, "set either command or workload, not both");
                ok = false;
            }
            if (workloadKind == null || args == null) {
                ok = false;
            } else {
                WorkloadArguments.Problem problem = WorkloadArguments.check(workloadKind, args);
                if (problem != null) {
                    if (problem.index() >= 0) {
                        w.elementError("args", problem.index(), Reason.INVALID_VALUE, problem.message());
                    } else {
                        w.error("args", Reason.INVALID_VALUE, problem.message());
                    }
                    ok = false;
                } else {
                    workload = new Workload(workloadKind, args);
                }
            }
        } else if (n.has("workload")) {
            ok = false;
        } else if (!n.has("command")) {
            workload = Workload.IDLE;
        }

        List<DiskAttachment> attachments = new ArrayList<>();
        Map<Long, Integer> usedSlots = new HashMap<>(); // controller << 8 | lun -> attachment index
        Set<String> attachedHere = new HashSet<>();
        List<TomlNode> diskNodes = n.tables("disk");
        Long[] controllers = new Long[diskNodes.size()];
        Long[] luns = new Long[diskNodes.size()];
        // Explicit LUNs first, so that defaulted ones fill the gaps around them.
        for (int i = 0; i < diskNodes.size(); i++) {
            TomlNode a = diskNodes.get(i);
            controllers[i] = a.integer("controller");
            luns[i] = a.integer("lun");
            if (controllers[i] != null && luns[i] != null) {
                Integer other = usedSlots.putIfAbsent(controllers[i] << 8 | luns[i], i);
                if (other != null) {
                    a.error("lun", Reason.DUPLICATE, "controller " + controllers[i] + " LUN " + luns[i]
                        + " is already used by " + diskNodes.get(other).path());
                    ok = false;
                }
            } else if ((a.has("controller") && controllers[i] == null) || (a.has("lun") && luns[i] == null)) {
                ok = false; // present but invalid: already reported
            }
        }
        for (int i = 0; i < diskNodes.size(); i++) {
            TomlNode a = diskNodes.get(i);
            String diskName = a.string("disk");
            if (controllers[i] != null && luns[i] == null && !a.has("lun")) {
                long lun = 0;
                while (lun <= 63 && usedSlots.containsKey(controllers[i] << 8 | lun)) {
                    lun++;
                }
                if (lun > 63) {
                    a.errorHere(Reason.OUT_OF_RANGE,
                        "controller " + controllers[i] + " has no free LUN left (0..63 are used)");
                    ok = false;
                } else {
                    luns[i] = lun;
                    usedSlots.put(controllers[i] << 8 | lun, i);
                }
            }
            if (diskName == null) {
                ok = false;
                continue;
            }
            Defined<DiskConfig> d = disks.get(diskName);
            if (d == null) {
                a.error("disk", Reason.DANGLING_REFERENCE,
                    "no [[disk]] named '" + diskName + "'" + hint(diskName, disks.keySet()));
                ok = false;
                continue;
            }
            if (!attachedHere.add(diskName)) {
                a.error("disk", Reason.DUPLICATE, "disk '" + diskName + "' is attached to this partition twice");
                ok = false;
                continue;
            }
            if (d.value() != null && !d.value().readOnly() && d.value().vhostUser()) {
                a.error("disk", Reason.CONFLICT, "disk '" + diskName + "' is exported writable over vhost-user (a VM's "
                    + "disk); only read_only disks can also be attached to a partition");
                ok = false;
                continue;
            }
            if (d.value() != null && !d.value().readOnly()) {
                // A partition whose name is invalid (reported already) still owns what it attaches, under its
                // position, so its other mistakes never hide a second writer.
                String who = name != null ? name : n.path();
                String owner = writableDiskOwner.putIfAbsent(diskName, who);
                if (owner != null && !owner.equals(who)) {
                    a.error("disk", Reason.CONFLICT,
                        "disk '" + diskName + "' is already attached to partition '" + owner
                        + "'; only read_only disks can be shared");
                    ok = false;
                }
            }
            String bus = a.word("bus");
            if (a.has("bus") && bus == null) {
                ok = false; // invalid: already reported
            }
            if (controllers[i] != null && luns[i] != null) {
                attachments.add(new DiskAttachment(diskName, controllers[i].intValue(), luns[i].intValue(),
                    "scsi".equals(bus) ? DiskAttachment.Bus.SCSI : DiskAttachment.Bus.BLK));
            }
        }

        List<NicDraft> nics = new ArrayList<>();
        List<TomlNode> nicNodes = n.tables("nic");
        for (int i = 0; i < nicNodes.size(); i++) {
            NicDraft d = nic(nicNodes.get(i), name, i, switches, macOwners);
            if (d == null) {
                ok = false;
            } else {
                nics.add(d);
            }
        }
        List<Integer> cpus = cpus(n);
        if (!ok || name == null || vcpus == null || memory == null || autostart == null || (!isVm && onCrash == null)
            || cpus == null) {
            return null;
        }
        return new PartitionDraft(name, vcpus.intValue(), memory, attachments, nics, command, workload, autostart, vm,
            onCrash, cpus);
    }

    /** {@code cpus}: each must be online on this host (pinning to an offline CPU would fail at start). */
    private static List<Integer> cpus(TomlNode n) {
        List<Long> cpus = n.integers("cpus");
        if (cpus == null) {
            return null;
        }
        if (cpus.isEmpty()) {
            return List.of();
        }
        List<Integer> online;
        try {
            online = io.phost.core.sys.CpuAffinity.online();
        } catch (java.io.IOException e) {
            n.error("cpus", Reason.INVALID_VALUE, "cannot read this host's online CPUs: " + e.getMessage());
            return null;
        }
        boolean ok = true;
        for (int i = 0; i < cpus.size(); i++) {
            if (!online.contains(cpus.get(i).intValue())) {
                n.elementError("cpus", i, Reason.INVALID_VALUE, "CPU " + cpus.get(i) + " is not online on this host (online: "
                    + online + ")");
                ok = false;
            }
        }
        return ok ? cpus.stream().map(Long::intValue).toList() : null;
    }

    /** Keys that only a {@code kind = "vm"} partition may set. */
    private static final List<String> VM_ONLY_KEYS =
        List.of("machine", "kernel", "initrd", "cmdline", "firmware", "console", "stop_timeout",
            "ready_marker");

    /** The VM keys of a {@code kind = "vm"} partition; null (with errors recorded) when any is wrong. */
    private VmConfig vm(TomlNode n, String name) {
        String machine = n.word("machine");
        String kernel = n.string("kernel");
        String initrd = n.string("initrd");
        String cmdline = n.string("cmdline");
        String firmware = n.word("firmware");
        String console = n.string("console");
        String onCrash = n.word("on_crash");
        Long stopTimeout = n.integer("stop_timeout");
        String readyMarker = n.string("ready_marker");
        boolean ok = machine != null && cmdline != null && onCrash != null && stopTimeout != null
            && (readyMarker != null || !n.has("ready_marker"))
            && (kernel != null || !n.has("kernel")) && (initrd != null || !n.has("initrd"))
            && (firmware != null || !n.has("firmware")) && (console != null || !n.has("console"));
        if (n.has("kernel") && n.has("firmware")) {
            n.error("firmware", Reason.CONFLICT, "boot from either kernel (direct) or firmware (the first disk), not both");
            ok = false;
        } else if (!n.has("kernel") && !n.has("firmware")) {
            n.errorHere(Reason.MISSING_KEY, "a VM needs a boot source: kernel = \"PATH\" (direct boot) or "
                + "firmware = \"uefi\" | \"bios\" (boots the first disk)");
            ok = false;
        }
        for (String key : List.of("initrd", "cmdline")) {
            if (n.has(key) && !n.has("kernel")) {
                n.error(key, Reason.CONFLICT, key + " needs kernel (firmware boots from the disk and ignores it)");
                ok = false;
            }
        }
        if (cmdline != null) {
            if (cmdline.length() > 2048) {
                n.error("cmdline", Reason.INVALID_VALUE, "the kernel command line is " + cmdline.length()
                    + " characters, at most 2048");
                ok = false;
            }
            for (int i = 0; i < cmdline.length(); i++) {
                char c = cmdline.charAt(i);
                if (c < 0x20 || c > 0x7e) {
                    n.error("cmdline", Reason.INVALID_VALUE, String.format(
                        "character %d of the kernel command line is U+%04X; only printable ASCII is passed to the kernel", i, (int) c));
                    ok = false;
                    break;
                }
            }
        }
        if (readyMarker != null && (readyMarker.isEmpty() || readyMarker.length() > 64
            || !readyMarker.chars().allMatch(c -> c >= 0x20 && c < 0x7f))) {
            n.error("ready_marker", Reason.INVALID_VALUE, "the ready marker must be 1..64 printable ASCII characters");
            ok = false;
        }
        Path kernelPath = kernel == null ? null : vmPath(n, "kernel", kernel);
        Path initrdPath = initrd == null ? null : vmPath(n, "initrd", initrd);
        Path consolePath = console == null ? Path.of("partitions", (name == null ? "vm" : name) + ".console.log")
            : vmPath(n, "console", console);
        if (!ok || (kernel != null && kernelPath == null) || (initrd != null && initrdPath == null) || consolePath == null) {
            return null;
        }
        return new VmConfig(machine, kernelPath, initrdPath, cmdline, firmware, consolePath, onCrash, stopTimeout.intValue(),
            readyMarker);
    }

    private static Path vmPath(TomlNode n, String key, String value) {
        for (int i = 0; i < value.length(); i++) {
            if (value.charAt(i) < 0x20 || value.charAt(i) == 0x7f) {
                n.error(key, Reason.INVALID_VALUE, "character " + i + " of the path is a control character");
                return null;
            }
        }
        return path(n, key, value);
    }

    private NicDraft nic(TomlNode n, String partition, int index, Map<String, Defined<SwitchConfig>> switches,
                         Map<String, String> macOwners) {
        boolean ok = true;
        String switchName = n.string("switch");
        SwitchConfig sw = null;
        if (switchName != null) {
            Defined<SwitchConfig> d = switches.get(switchName);
            if (d == null) {
                n.error("switch", Reason.DANGLING_REFERENCE,
                    "no [[switch]] named '" + switchName + "'" + hint(switchName, switches.keySet()));
                ok = false;
            } else {
                sw = d.value(); // null when the switch itself is invalid: its own errors say why
            }
        } else {
            ok = false;
        }
        String mac = n.string("mac");
        if (mac != null) {
            mac = mac(n, mac);
            if (mac == null) {
                ok = false;
            } else {
                String owner = macOwners.putIfAbsent(mac, n.path());
                if (owner != null) {
                    n.error("mac", Reason.DUPLICATE, "MAC " + mac + " is already used by " + owner);
                    ok = false;
                }
            }
        } else if (n.has("mac")) {
            ok = false;
        }
        Long access = n.integer("vlan_access");
        List<Long> trunk = n.has("vlan_trunk") ? n.integers("vlan_trunk") : List.of();
        Long nativeVlan = n.integer("native_vlan");
        if (n.has("vlan_access") && n.has("vlan_trunk")) {
            n.error("vlan_trunk", Reason.CONFLICT, "set either vlan_access or vlan_trunk, not both");
            ok = false;
        }
        if (n.has("native_vlan") && !n.has("vlan_trunk")) {
            n.error("native_vlan", Reason.CONFLICT, "native_vlan applies to a trunk port; set vlan_trunk too");
            ok = false;
        }
        if (n.has("vlan_trunk") && trunk != null && trunk.isEmpty()) {
            n.error("vlan_trunk", Reason.INVALID_VALUE,
                "an empty trunk carries no VLAN; list at least one or remove the key");
            ok = false;
        }
        Boolean spoofing = n.bool("mac_spoofing");
        Boolean dhcp = n.bool("dhcp_guard");
        Boolean router = n.bool("router_guard");
        Long maxBandwidth = n.bandwidth("max_bandwidth");
        Long maxBandwidthIn = n.bandwidth("max_bandwidth_in");
        List<String> acl = n.strings("acl");
        if (acl != null) {
            for (String rule : acl) {
                try {
                    io.phost.vswitch.PortAcl.parse(rule);
                } catch (IllegalArgumentException e) {
                    n.error("acl", Reason.INVALID_VALUE, e.getMessage());
                    ok = false;
                }
            }
        }
        List<String> ips = n.strings("ip_addresses");
        if (ips != null) {
            for (String ip : ips) {
                if (!ip.equals("dhcp") && (ip.indexOf(':') >= 0 ? !NicConfig.isUnicastIpv6(ip) : !NicConfig.isUnicastIpv4(ip))) {
                    n.error("ip_addresses", Reason.INVALID_VALUE,
                        "'" + ip + "' is not a unicast IPv4 address (a.b.c.d), a unicast IPv6 address (fd00::5) nor \"dhcp\"");
                    ok = false;
                }
            }
        }
        Long weight = n.integer("min_bandwidth_weight");
        Long vmq = n.integer("vmq_weight");
        Long iov = n.integer("iov_weight");
        Long mtu = n.has("mtu") ? n.integer("mtu") : null;
        NicConfig.Mirroring mirroring = n.enumValue("port_mirroring", NicConfig.Mirroring.class);
        Long storm = n.integer("storm_limit");
        Long maxMacs = n.integer("max_mac_addresses");
        if (n.has("mtu") && mtu == null) {
            ok = false;
        }
        if (sw != null && mtu != null && mtu > sw.mtu()) {
            n.error("mtu", Reason.CONFLICT, "mtu " + mtu + " is above the mtu " + sw.mtu() + " of switch '" + sw.name() + "'"
                + "; raise the switch's mtu or lower this one");
            ok = false;
        }
        if (sw != null && weight != null && weight > 0 && sw.bandwidthMode() != SwitchConfig.BandwidthMode.WEIGHT) {
            n.error("min_bandwidth_weight", Reason.CONFLICT, "switch '" + sw.name() + "' has bandwidth_mode = \""
                + sw.bandwidthMode().name().toLowerCase(Locale.ROOT) + "\"; weights need \"weight\"");
            ok = false;
        }
        if (sw != null && iov != null && iov > 0 && !sw.enableIov()) {
            n.error("iov_weight", Reason.CONFLICT, "switch '" + sw.name() + "' does not have enable_iov = true");
            ok = false;
        }
        if (!ok || (access == null && n.has("vlan_access")) || (nativeVlan == null && n.has("native_vlan"))
            || trunk == null || spoofing == null || dhcp == null || router == null || maxBandwidth == null
            || maxBandwidthIn == null || ips == null || acl == null || weight == null || vmq == null || iov == null || mirroring == null || storm == null || maxMacs == null) {
            return null;
        }
        NicConfig nic = new NicConfig(switchName, mac, access == null ? null : access.intValue(),
            trunk.stream().map(Long::intValue).toList(), nativeVlan == null ? null : nativeVlan.intValue(),
            spoofing, dhcp, router, maxBandwidth, weight.intValue(), vmq.intValue(), iov.intValue(),
            mtu != null ? mtu.intValue() : sw != null ? sw.mtu() : 1500, mirroring, storm, maxMacs.intValue(),
            maxBandwidthIn, ips, acl);
        return new NicDraft(partition, index, nic, new String[] {mac});
    }

    /** Normalizes a MAC to lower-case colon form, or reports why it is unusable. */
    private static String mac(TomlNode n, String text) {
        if (!MAC.matcher(text).matches()) {
            n.error("mac", Reason.INVALID_VALUE, "'" + text + "' is not a MAC address like \"02:50:48:00:00:01\"");
            return null;
        }
        String mac = text.toLowerCase(Locale.ROOT).replace('-', ':');
        int first = Integer.parseInt(mac.substring(0, 2), 16);
        if ((first & 1) != 0) {
            n.error("mac", Reason.INVALID_VALUE,
                mac + " is a multicast address; a NIC needs a unicast MAC (first octet even)");
            return null;
        }
        if (mac.equals("00:00:00:00:00:00")) {
            n.error("mac", Reason.INVALID_VALUE, "the all-zero MAC is not a valid NIC address");
            return null;
        }
        return mac;
    }

    /** Stable MACs for NICs without one: from (host, partition, index), skipping any already taken. */
    private static void assignMacs(HostConfig host, List<PartitionDraft> partitions, Map<String, String> taken) {
        for (NicDraft d : partitions.stream().flatMap(p -> p.nics.stream()).toList()) {
            if (d.mac()[0] != null) {
                continue;
            }
            CRC32 crc = new CRC32();
            crc.update((host.name() + "/" + d.partition() + "/" + d.index()).getBytes(java.nio.charset.StandardCharsets.UTF_8));
            int suffix = (int) crc.getValue() & 0xFFFFFF;
            String mac;
            do {
                mac = String.format(Locale.ROOT, "%s:%02x:%02x:%02x", GENERATED_MAC_PREFIX,
                    suffix >>> 16 & 0xFF, suffix >>> 8 & 0xFF, suffix & 0xFF);
                suffix = (suffix + 1) & 0xFFFFFF;
            } while (taken.containsKey(mac));
            taken.put(mac, d.partition() + ".nic[" + d.index() + "]");
            d.mac()[0] = mac;
        }
    }

    // ---- helpers ----

    private static Path path(TomlNode n, String key, String text) {
        try {
            return Path.of(text);
        } catch (InvalidPathException e) {
            n.error(key, Reason.INVALID_VALUE, "'" + text + "' is not a valid path: " + e.getReason());
            return null;
        }
    }

    private static String hint(String name, Set<String> known) {
        String c = TomlNode.closest(name, known);
        if (c != null) {
            return "; did you mean '" + c + "'?";
        }
        return known.isEmpty() ? " (none defined)" : " (defined: " + String.join(", ", known) + ")";
    }
}
