package io.phost.vhdx;

import java.io.Closeable;
import java.io.IOException;
import java.lang.foreign.MemorySegment;

/**
 * An open virtual disk of any format (VHDX, VHD, raw): a byte-addressed device of {@link #size()} bytes.
 * This is the contract the storage VSP and the NBD export program against.
 *
 * <p>Threading: many threads may call {@code read}/{@code write}/{@code unmap} concurrently on one open
 * disk; {@code flush} makes every write that completed before it durable (data and metadata).
 * Offsets and lengths must be multiples of {@link #logicalSectorSize()}; violations and ranges past
 * {@link #size()} throw {@link IllegalArgumentException} before touching anything.
 *
 * <p>Buffers are {@link MemorySegment}s so callers can pass guest memory in place (zero copy); the
 * segment's byte size is the transfer length.
 */
public interface VirtualDisk extends Closeable {
    /** Virtual size in bytes. */
    long size();

    int logicalSectorSize();

    int physicalSectorSize();

    boolean readOnly();

    /** Reads {@code dst.byteSize()} bytes at {@code offset}; unallocated ranges read as zeros (or from the parent). */
    void read(long offset, MemorySegment dst) throws IOException;

    /** Writes {@code src.byteSize()} bytes at {@code offset}, allocating blocks as needed. */
    void write(long offset, MemorySegment src) throws IOException;

    /** Makes completed writes durable. */
    void flush() throws IOException;

    /** Releases {@code length} bytes at {@code offset}: later reads return zeros. Default: writes zeros. */
    default void unmap(long offset, long length) throws IOException {
        writeZeroes(offset, length);
    }

    /** Makes {@code length} bytes at {@code offset} read as zeros. */
    void writeZeroes(long offset, long length) throws IOException;

    /** A short format name for logs and status: "vhdx", "vhd", "raw". */
    String format();

    /**
     * The I/O paths this disk offers and the optional commands it does for real; engines and LUNs choose
     * from this. Default: only this interface's methods, with discard and zeroing.
     */
    default DiskCapabilities capabilities() {
        return DiskCapabilities.OWN_CODE;
    }

    /**
     * The disk's bytes mapped for copies where that is safe ({@link PageCacheMapping}: a raw file on tmpfs), for
     * engines that run requests inline on {@link DiskCapabilities#fd()}; null (the default) when there is none.
     */
    default PageCacheMapping pageCacheMapping() {
        return null;
    }
}
