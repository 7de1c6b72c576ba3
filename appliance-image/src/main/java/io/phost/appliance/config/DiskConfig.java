package io.phost.appliance.config;

import io.phost.vhdx.DiskType;
import io.phost.vhdx.DiskFormat;
import io.phost.storage.engine.IoEngines;

import java.nio.file.Path;

/**
 * {@code [[disk]]}: one virtual disk the host serves.
 *
 * @param path      as written: relative paths are relative to {@code host.data_dir}; see {@link #resolvedPath}
 * @param create    how to create the file when it is missing; null means it must exist
 * @param parent    parent image of a differencing disk (relative to the data dir), else null
 * @param qosPolicy name of a {@link QosPolicyConfig}, or null
 * @param ioEngine  the storage engine's own choice ({@code auto}, {@code io_uring}, {@code threads}, {@code inline})
 * @param nbdExport served by the host's NBD server under the disk's name
 * @param vhostUser exported as a vhost-user-blk device on {@link #vhostUserSocket} (for a VM's QEMU)
 * @param rbd       where an RBD disk's image lives ({@code [disk.rbd]}); null for the other formats, whose
 *                  {@code path} is a file (an RBD disk's path is {@code rbd/POOL/[NAMESPACE/]IMAGE}, never opened)
 */
public record DiskConfig(String name, Path path, DiskFormat format, Create create, String parent, String qosPolicy,
                         boolean readOnly, IoEngines.Kind ioEngine, boolean nbdExport, boolean vhostUser, Rbd rbd) {

    /**
     * {@code [disk.rbd]}.
     *
     * @param clusterConfig ceph.conf, or null for $CEPH_CONF / /etc/ceph/ceph.conf
     * @param keyring       or null for the one the cluster config names
     * @param breakLock     take the image's exclusive lock from another client (librbd blocklists it)
     */
    public record Rbd(String pool, String image, String namespace, Path clusterConfig, String client, Path keyring,
                      boolean breakLock, int connectTimeoutSeconds) {
        /** pool/[namespace/]image, as the rbd CLI spells it. */
        public String spec() {
            return pool + "/" + (namespace == null ? "" : namespace + "/") + image;
        }
    }

    /** Where the vhost-user socket of disk {@code name} lives: {@code <data_dir>/vhost/<name>.sock}. */
    public static Path vhostUserSocket(Path dataDir, String name) {
        return dataDir.resolve("vhost").resolve(name + ".sock");
    }

    /**
     * {@code [disk.create]}: create-if-missing parameters.
     *
     * @param size           virtual size in bytes; 0 for a differencing disk (it takes the parent's size)
     * @param blockSize      VHDX/VHD block size in bytes; 0 for raw
     * @param logicalSector  512 or 4096
     * @param physicalSector 512 or 4096, never below the logical sector size
     */
    public record Create(DiskType type, long size, long blockSize, int logicalSector, int physicalSector) {
    }

    public Path resolvedPath(Path dataDir) {
        return dataDir.resolve(path);
    }

    /** The parent's path resolved against the data dir, or null when the disk has no parent. */
    public Path resolvedParent(Path dataDir) {
        return parent == null ? null : dataDir.resolve(parent);
    }
}
