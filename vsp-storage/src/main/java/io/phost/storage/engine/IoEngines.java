package io.phost.storage.engine;

import io.phost.core.sys.IoUring;
import io.phost.vhdx.DiskCapabilities;
import io.phost.vhdx.VirtualDisk;

/**
 * Chooses an engine per disk: inline for memory (RAM and null disks, files on tmpfs); io_uring for
 * fd-backed disks where the kernel allows it; for images that map their steady-state I/O onto the image
 * file (VHDX, VHD) io_uring for that and threads for the rest; else threads.
 */
public final class IoEngines {
    /** Which engine a disk should use. */
    public enum Kind { AUTO, IO_URING, THREADS, INLINE }

    private IoEngines() {}

    /** True when io_uring works here (kernel, sysctl kernel.io_uring_disabled, seccomp). */
    public static boolean ioUringAvailable() {
        return !Boolean.getBoolean("phost.storage.noIoUring") && IoUring.available();
    }

    /** Chooses from what the disk declares ({@link VirtualDisk#capabilities()}), never from its class. */
    public static IoEngine open(VirtualDisk disk, Kind kind, int depth) {
        if (disk instanceof EngineSource own && kind == Kind.AUTO) {
            return own.openEngine(depth); // e.g. librbd's aio, completions through the image's eventfd
        }
        DiskCapabilities caps = disk.capabilities();
        if (caps.path() == DiskCapabilities.IoPath.MAPPED_RANGES && (kind == Kind.AUTO || kind == Kind.IO_URING)
            && ioUringAvailable()) {
            IoEngine e = MappedDiskEngine.open(caps.mapped(), depth); // null when the image offers no fd: threads below
            if (e != null) {
                return e;
            }
        }
        if (kind == Kind.IO_URING && !caps.fdBacked()) {
            throw new IllegalArgumentException(disk.format() + " disk has no fd; io_uring needs a raw file or device");
        }
        if (kind == Kind.IO_URING && !ioUringAvailable()) {
            throw new IllegalStateException("io_uring unavailable: " + IoUring.unavailableReason());
        }
        if (kind == Kind.INLINE || (kind == Kind.AUTO && caps.path() == DiskCapabilities.IoPath.MEMORY)) {
            return new InlineEngine(disk, depth); // a memory copy (or nothing): cheaper than a thread hop
        }
        if (caps.fdBacked() && kind != Kind.THREADS && ioUringAvailable()) {
            // A lone request runs as psync on O_DIRECT fds only (EngineQd1Probe, docs/benchmarks.md issue 19
            // section 15: psync 1.0-1.2x on reads, 6.8x on writes there; on buffered fds io_uring was faster).
            return new IoUringEngine(caps.fd(), depth, IoUringEngine.QD1_SYNC && caps.directAlignment() > 1);
        }
        return new ThreadPoolEngine(disk, depth);
    }
}
