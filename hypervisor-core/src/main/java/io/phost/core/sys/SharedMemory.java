package io.phost.core.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;

/**
 * memfd_create, ftruncate, mmap and munmap: guest memory is a sealed memfd that both partitions map.
 *
 * <p>Double mapping: {@link #mapPages} can place the same memfd pages at several virtual addresses inside
 * one reserved range, which is how a ring's data area is mapped twice back to back so that no packet ever
 * wraps (the Linux Hyper-V driver does the same with vmap()).
 */
public final class SharedMemory {
    /** int memfd_create(const char *name, unsigned int flags) */
    private static final MethodHandle MEMFD_CREATE = Native.downcall("memfd_create",
        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_INT));
    /** int ftruncate(int fd, off_t length) */
    private static final MethodHandle FTRUNCATE = Native.downcall("ftruncate",
        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG));
    /** void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset) */
    private static final MethodHandle MMAP = Native.downcall("mmap",
        FunctionDescriptor.of(ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG,
            ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG));
    /** int munmap(void *addr, size_t length) */
    private static final MethodHandle MUNMAP = Native.downcall("munmap",
        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG));

    public static final int MFD_CLOEXEC = 0x0001;
    public static final int MFD_ALLOW_SEALING = 0x0002;
    public static final int PROT_NONE = 0;
    public static final int PROT_READ = 1;
    public static final int PROT_WRITE = 2;
    public static final int MAP_SHARED = 0x01;
    public static final int MAP_PRIVATE = 0x02;
    public static final int MAP_FIXED = 0x10;
    public static final int MAP_ANONYMOUS = 0x20;
    public static final int MAP_NORESERVE = 0x4000;
    public static final long PAGE_SIZE = 4096;

    private SharedMemory() {}

    /** A new memfd of {@code size} bytes, sealed against shrinking so a peer can never SIGBUS our mapping. */
    public static int createSealed(String name, long size) {
        int fd;
        try (Arena a = Arena.ofConfined()) {
            fd = Native.check((int) MEMFD_CREATE.invokeExact(Native.errnoState(), a.allocateFrom(name),
                MFD_CLOEXEC | MFD_ALLOW_SEALING), "memfd_create(" + name + ")");
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
        try {
            truncate(fd, size);
            Fd.fcntl(fd, Fd.F_ADD_SEALS, Fd.F_SEAL_SHRINK | Fd.F_SEAL_GROW | Fd.F_SEAL_SEAL);
            return fd;
        } catch (RuntimeException e) {
            Fd.close(fd);
            throw e;
        }
    }

    /** A memfd without seals (tests: the host must refuse it as guest memory). */
    public static int createUnsealed(String name, long size) {
        int fd;
        try (Arena a = Arena.ofConfined()) {
            fd = Native.check((int) MEMFD_CREATE.invokeExact(Native.errnoState(), a.allocateFrom(name), MFD_CLOEXEC),
                "memfd_create(" + name + ")");
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
        truncate(fd, size);
        return fd;
    }

    public static void truncate(int fd, long size) {
        try {
            Native.check((int) FTRUNCATE.invokeExact(Native.errnoState(), fd, size), "ftruncate(" + fd + ", " + size + ")");
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** Maps {@code length} bytes of {@code fd} at {@code offset} shared read-write; unmap with {@link #unmap}. */
    public static MemorySegment mapShared(int fd, long offset, long length) {
        long addr = mmap(0, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset, "mmap(fd=" + fd + ")");
        // SAFETY: the kernel just mapped exactly [addr, addr+length); the segment is unmapped only via unmap().
        return MemorySegment.ofAddress(addr).reinterpret(length);
    }

    /**
     * As {@link #mapShared(int, long, long)}, but the segment belongs to {@code arena}: closing the arena
     * invalidates it (later accesses throw IllegalStateException instead of faulting) and then unmaps.
     * Use a shared arena for memory that other threads may still touch while it is torn down.
     */
    public static MemorySegment mapShared(int fd, long offset, long length, Arena arena) {
        long addr = mmap(0, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset, "mmap(fd=" + fd + ")");
        // SAFETY: exactly the mapped range; munmap runs only once the arena guarantees no access remains.
        return MemorySegment.ofAddress(addr).reinterpret(length, arena, s -> munmapQuietly(addr, length));
    }

    /** Reserves address space as {@link #reserve(long)} whose lifetime is {@code arena}'s (unmapped on close). */
    public static MemorySegment reserve(long length, Arena arena) {
        long addr = mmap(0, length, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0, "mmap(reserve)");
        // SAFETY: as above; fixed mappings placed inside are removed with the reservation by one munmap.
        return MemorySegment.ofAddress(addr).reinterpret(length, arena, s -> munmapQuietly(addr, length));
    }

    private static void munmapQuietly(long addr, long length) {
        try {
            int ignored = (int) MUNMAP.invokeExact(Native.errnoState(), addr, length);
        } catch (Throwable t) {
            // nothing to do in a cleanup action
        }
    }

    /** Reserves {@code length} bytes of address space (PROT_NONE) to place fixed mappings into. */
    public static MemorySegment reserve(long length) {
        long addr = mmap(0, length, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0, "mmap(reserve)");
        // SAFETY: as in mapShared; the PROT_NONE parts are replaced by mapPages before any access.
        return MemorySegment.ofAddress(addr).reinterpret(length);
    }

    /** Maps {@code length} bytes of {@code fd} at {@code fileOffset} over {@code target + at} (MAP_FIXED). */
    public static void mapPages(MemorySegment target, long at, int fd, long fileOffset, long length) {
        if (at < 0 || length <= 0 || at + length > target.byteSize() || (at % PAGE_SIZE) != 0 || (fileOffset % PAGE_SIZE) != 0) {
            throw new IllegalArgumentException("mapPages outside reservation or unaligned: at=" + at + " len=" + length);
        }
        mmap(target.address() + at, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, fileOffset,
            "mmap(fixed, fd=" + fd + ", off=" + fileOffset + ")");
    }

    public static void unmap(MemorySegment segment) {
        try {
            Native.check((int) MUNMAP.invokeExact(Native.errnoState(), segment.address(), segment.byteSize()), "munmap");
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    private static long mmap(long addr, long length, int prot, int flags, int fd, long offset, String what) {
        try {
            long r = (long) MMAP.invokeExact(Native.errnoState(), addr, length, prot, flags, fd, offset);
            if (r == -1L) {
                throw new NativeException(what + " len=" + length, Native.lastErrno());
            }
            return r;
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }
}
