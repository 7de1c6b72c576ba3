package io.phost.appliance.config;

import io.phost.appliance.config.ConfigError.Reason;
import io.phost.appliance.config.DiskConfig.Create;
import io.phost.storage.engine.IoEngines;
import io.phost.vhdx.DiskFormat;
import io.phost.vhdx.DiskType;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;

import static io.phost.appliance.config.BindSupport.hint;
import static io.phost.appliance.config.BindSupport.lower;
import static io.phost.appliance.config.BindSupport.path;

/** Binds [[qos_policy]] and [[disk]] tables, then the checks between disks and the files they use. */
final class DiskBinder {
    /** The [disk.create] table of each disk that has one, to tell explicit keys from defaults. */
    private final Map<String, TomlNode> createNodes = new HashMap<>();

    // ---- [[qos_policy]] ----

    static QosPolicyConfig qosPolicy(TomlNode n) {
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

    DiskConfig disk(TomlNode n, Set<String> policies, HostConfig host) {
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
            if (sock.toString().getBytes(java.nio.charset.StandardCharsets.UTF_8).length > HostBinder.MAX_SOCKET_PATH) {
                n.error("vhost_user", Reason.INVALID_VALUE, "the socket path " + sock + " is longer than " + HostBinder.MAX_SOCKET_PATH
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
    void checkDiskFiles(HostConfig host, TomlNode hostNode, Map<String, Defined<DiskConfig>> disks) {
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
}
