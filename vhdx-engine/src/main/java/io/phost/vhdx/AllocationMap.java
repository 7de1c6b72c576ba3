package io.phost.vhdx;

import java.io.IOException;

/**
 * Implemented by disks that know which ranges can hold data, so copies ({@code convert}, {@code merge},
 * {@code compact}) skip the rest without reading it. "Allocated" is conservative: an allocated range may
 * still read as zeros, an unallocated one never holds data (in this image or, for differencing images,
 * anywhere in the chain).
 */
public interface AllocationMap {
    /** The first offset >= {@code offset} that may hold data, or the disk size when none does. */
    long nextAllocated(long offset) throws IOException;

    /** The first offset > {@code offset} (when {@code offset} is allocated) that is unallocated, or the size. */
    long nextUnallocated(long offset) throws IOException;

    /** Bytes this image itself (not its parents) stores for data, for {@code info}. */
    long allocatedBytes() throws IOException;
}
