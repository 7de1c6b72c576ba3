package io.phost.core.vhost;

import io.phost.core.sys.Fd;
import io.phost.core.sys.NativeException;
import io.phost.core.sys.SharedMemory;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

/**
 * The guest's memory as the front-end described it (SET_MEM_TABLE, ADD_MEM_REG): each region's fd is
 * mapped once, shared, and translated two ways: guest-physical addresses (descriptor buffers) and the
 * front-end's user addresses (ring addresses in SET_VRING_ADDR).
 * <pre>
 *   region i:  gpa [gpa, gpa+size)  uaddr [uaddr, uaddr+size)  fd bytes [mmapOffset, mmapOffset+size)
 *   mapping:   mmap(fd, 0, mmapOffset+size)  -> host = mapping + mmapOffset + (gpa - region.gpa)
 * </pre>
 * Every region is checked before mapping: non-empty, no wrap past 2^63, no overlap with another region
 * (in either address space), and inside its file (so the guest cannot make us touch past EOF, which would
 * SIGBUS). Translation is overflow-safe: a range is accepted only when {@code len <= end - addr}.
 * Immutable: memory changes build a new instance; the old one is unmapped once no queue uses it.
 */
public final class GuestMemory implements AutoCloseable {
    /** One mapped region. */
    public record Region(long gpa, long size, long uaddr, long mmapOffset, MemorySegment mapping) {
        long host() {
            return mapping.address() + mmapOffset;
        }
    }

    private static final GuestMemory EMPTY = new GuestMemory(new Region[0]);
    private final Region[] regions;
    /**
     * The regions' guest-physical starts, sizes and host addresses of those starts, as flat arrays: the per-descriptor
     * translation reads no Region or MemorySegment object (two pops per switched frame, each per descriptor).
     */
    private final long[] gpaStart;
    private final long[] gpaSize;
    private final long[] hostStart;

    private GuestMemory(Region[] regions) {
        this.regions = regions;
        this.gpaStart = new long[regions.length];
        this.gpaSize = new long[regions.length];
        this.hostStart = new long[regions.length];
        for (int i = 0; i < regions.length; i++) {
            gpaStart[i] = regions[i].gpa();
            gpaSize[i] = regions[i].size();
            hostStart[i] = regions[i].host();
        }
    }

    public static GuestMemory empty() {
        return EMPTY;
    }

    /**
     * Validates and maps one region of {@code fd} (which this call closes: the mapping keeps the memory).
     * Throws {@link VhostUserException} BAD_REGION naming the region when it cannot be trusted.
     */
    public static Region mapRegion(int index, long gpa, long size, long uaddr, long mmapOffset, int fd) {
        try {
            String where = "region " + index + " gpa=0x" + Long.toHexString(gpa) + " size=0x" + Long.toHexString(size)
                + " uaddr=0x" + Long.toHexString(uaddr) + " mmap_offset=0x" + Long.toHexString(mmapOffset);
            if (size <= 0 || gpa < 0 || uaddr < 0 || mmapOffset < 0) {
                throw new VhostUserException(VhostUserException.Reason.BAD_REGION, where + ": empty, or an address at or above 2^63");
            }
            if (gpa > Long.MAX_VALUE - size || uaddr > Long.MAX_VALUE - size || mmapOffset > Long.MAX_VALUE - size) {
                throw new VhostUserException(VhostUserException.Reason.BAD_REGION, where + ": wraps the address space");
            }
            long fileSize;
            try {
                fileSize = Fd.size(fd);
            } catch (NativeException e) {
                throw new VhostUserException(VhostUserException.Reason.BAD_REGION, where + ": fd " + fd + " is not a mappable file (" + e.getMessage() + ")");
            }
            if (mmapOffset + size > fileSize) {
                throw new VhostUserException(VhostUserException.Reason.BAD_REGION,
                    where + ": ends at file offset 0x" + Long.toHexString(mmapOffset + size) + ", past the file's 0x" + Long.toHexString(fileSize) + " bytes");
            }
            MemorySegment m;
            try {
                m = SharedMemory.mapShared(fd, 0, mmapOffset + size);
            } catch (NativeException e) {
                throw new VhostUserException(VhostUserException.Reason.BAD_REGION, where + ": " + e.getMessage());
            }
            return new Region(gpa, size, uaddr, mmapOffset, m);
        } finally {
            Fd.close(fd);
        }
    }

    /** A memory table of {@code added}, checked for overlaps; unmaps them all if the check fails. */
    public static GuestMemory of(List<Region> added) {
        return EMPTY.with(added);
    }

    /** This table plus {@code added} (ADD_MEM_REG); throws BAD_REGION (and unmaps {@code added}) on overlap. */
    public GuestMemory with(List<Region> added) {
        List<Region> all = new ArrayList<>(List.of(regions));
        for (Region r : added) {
            for (Region o : all) {
                if (overlaps(r.gpa, r.size, o.gpa, o.size) || overlaps(r.uaddr, r.size, o.uaddr, o.size)) {
                    added.forEach(GuestMemory::unmap);
                    throw new VhostUserException(VhostUserException.Reason.BAD_REGION,
                        "region gpa=0x" + Long.toHexString(r.gpa) + " size=0x" + Long.toHexString(r.size)
                            + " overlaps region gpa=0x" + Long.toHexString(o.gpa) + " size=0x" + Long.toHexString(o.size));
                }
            }
            all.add(r);
        }
        return new GuestMemory(all.toArray(new Region[0]));
    }

    /** This table without the region at {@code gpa} of {@code size} (REM_MEM_REG); the removed one is returned in {@code removed}. */
    public GuestMemory without(long gpa, long size, List<Region> removed) {
        List<Region> keep = new ArrayList<>();
        for (Region r : regions) {
            if (r.gpa == gpa && r.size == size) {
                removed.add(r);
            } else {
                keep.add(r);
            }
        }
        if (removed.isEmpty()) {
            throw new VhostUserException(VhostUserException.Reason.BAD_REGION,
                "REM_MEM_REG gpa=0x" + Long.toHexString(gpa) + " size=0x" + Long.toHexString(size) + ": no such region");
        }
        return new GuestMemory(keep.toArray(new Region[0]));
    }

    /** Whether a region with exactly these coordinates is in the table. */
    public boolean contains(long gpa, long size, long uaddr, long mmapOffset) {
        for (Region r : regions) {
            if (r.gpa == gpa && r.size == size && r.uaddr == uaddr && r.mmapOffset == mmapOffset) {
                return true;
            }
        }
        return false;
    }

    private static boolean overlaps(long a, long aLen, long b, long bLen) {
        return a < b + bLen && b < a + aLen; // no overflow: every end was checked below 2^63
    }

    public int regionCount() {
        return regions.length;
    }

    public long totalSize() {
        long t = 0;
        for (Region r : regions) {
            t += r.size;
        }
        return t;
    }

    /**
     * The index of the region holding guest-physical {@code gpa}, or -1. Allocation-free; the hot path
     * (descriptor translation) calls it once per descriptor.
     */
    public int regionOfGpa(long gpa) {
        long[] start = gpaStart;
        for (int i = 0; i < start.length; i++) {
            if (gpa >= start[i] && gpa - start[i] < gpaSize[i]) {
                return i;
            }
        }
        return -1;
    }

    /** Host address of {@code gpa} in region {@code i} (which holds it). */
    public long hostOfGpa(int i, long gpa) {
        return hostStart[i] + (gpa - gpaStart[i]);
    }

    /** Bytes from {@code gpa} to the end of region {@code i}. */
    public long bytesToEnd(int i, long gpa) {
        return gpaSize[i] - (gpa - gpaStart[i]);
    }

    /** Host address of the guest range [gpa, gpa+len) if one region holds it wholly, else -1. */
    public long translateGpa(long gpa, long len) {
        long[] start = gpaStart;
        long[] sizes = gpaSize;
        long[] host = hostStart;
        for (int i = 0; i < start.length; i++) { // one pass, each array read once: every descriptor comes here
            long off = gpa - start[i];
            if (gpa >= start[i] && off < sizes[i]) {
                return len >= 0 && len <= sizes[i] - off ? host[i] + off : -1;
            }
        }
        return -1;
    }

    /** Host address of the front-end user range [uaddr, uaddr+len) if one region holds it wholly, else -1. */
    public long translateUser(long uaddr, long len) {
        for (Region r : regions) {
            if (uaddr >= r.uaddr && uaddr - r.uaddr < r.size) {
                long off = uaddr - r.uaddr;
                return len >= 0 && len <= r.size - off ? r.host() + off : -1;
            }
        }
        return -1;
    }

    /**
     * Guest-physical address of the front-end user range [uaddr, uaddr+len) if one region holds it wholly, else
     * -1: where a ring given by user address sits for the dirty log, which counts guest-physical pages.
     */
    public long gpaOfUser(long uaddr, long len) {
        for (Region r : regions) {
            if (uaddr >= r.uaddr && uaddr - r.uaddr < r.size) {
                long off = uaddr - r.uaddr;
                return len >= 0 && len <= r.size - off ? r.gpa + off : -1;
            }
        }
        return -1;
    }

    /** Unmaps every region. The caller guarantees no queue still reads through this table. */
    @Override
    public void close() {
        for (Region r : regions) {
            unmap(r);
        }
    }

    static void unmap(Region r) {
        SharedMemory.unmap(r.mapping);
    }
}
