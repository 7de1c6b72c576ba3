package io.phost.core.vmbus;

import java.lang.foreign.MemorySegment;

/**
 * The host's view of one partition's memory (the whole memfd, mapped once). Addresses are resolved only
 * when every page of the range lies in a live GPADL of this partition and in no open channel's ring, so a
 * VSP can never be steered outside what the guest explicitly granted, nor into ring control pages.
 *
 * <p>Resolution returns an offset into {@link #segment()} rather than a slice, so the data path allocates
 * nothing. Grants are changed by the partition's control thread and read by VSP agents without locks: a
 * stale read can only let a VSP touch a page the guest revoked a moment ago, which is still the guest's
 * own memory and still mapped (the mapping lives as long as the partition).
 */
public final class GuestMemory {
    public static final int PAGE_SIZE = 4096;
    private final MemorySegment memory;
    private final long pages;
    private final int[] grants;
    private final int[] ringRefs;

    public GuestMemory(MemorySegment memory) {
        if (memory.byteSize() % PAGE_SIZE != 0 || memory.byteSize() / PAGE_SIZE > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("guest memory must be whole pages, < 8 TiB: " + memory.byteSize());
        }
        this.memory = memory;
        this.pages = memory.byteSize() / PAGE_SIZE;
        this.grants = new int[(int) pages];
        this.ringRefs = new int[(int) pages];
    }

    /** All of guest memory; index it only with offsets returned by the resolve methods. */
    public MemorySegment segment() {
        return memory;
    }

    public long size() {
        return memory.byteSize();
    }

    public long pages() {
        return pages;
    }

    /**
     * Checks that {@code [gpa, gpa + length)} lies in granted, non-ring pages and returns the offset of
     * {@code gpa} in {@link #segment()}.
     */
    public long resolve(long gpa, long length) {
        if (gpa < 0 || length <= 0 || length > memory.byteSize() || gpa > memory.byteSize() - length) {
            throw new GuestMemoryException(GuestMemoryException.Reason.OUT_OF_RANGE, gpa, "length " + length + ", memory " + memory.byteSize());
        }
        long first = gpa / PAGE_SIZE;
        long last = (gpa + length - 1) / PAGE_SIZE;
        for (long p = first; p <= last; p++) {
            checkPage(p);
        }
        return gpa;
    }

    /** As {@link #resolve} for {@code length} bytes at {@code offsetInPage} of page {@code pfn} (not crossing it). */
    public long resolvePage(long pfn, int offsetInPage, int length) {
        if (offsetInPage < 0 || length <= 0 || offsetInPage + length > PAGE_SIZE) {
            throw new GuestMemoryException(GuestMemoryException.Reason.BAD_RANGE, pfn * PAGE_SIZE,
                "offsetInPage=" + offsetInPage + " length=" + length);
        }
        checkPage(pfn);
        return pfn * PAGE_SIZE + offsetInPage;
    }

    private void checkPage(long pfn) {
        if (pfn < 0 || pfn >= pages) {
            throw new GuestMemoryException(GuestMemoryException.Reason.OUT_OF_RANGE, pfn * PAGE_SIZE, "pfn " + pfn + " of " + pages);
        }
        if (grants[(int) pfn] == 0) {
            throw new GuestMemoryException(GuestMemoryException.Reason.NOT_GRANTED, pfn * PAGE_SIZE, "pfn " + pfn + " is in no live GPADL");
        }
        if (ringRefs[(int) pfn] != 0) {
            throw new GuestMemoryException(GuestMemoryException.Reason.RING_OVERLAP, pfn * PAGE_SIZE, "pfn " + pfn + " belongs to a channel ring");
        }
    }

    /** True if {@code pfn} is a valid page of this partition. */
    public boolean validPfn(long pfn) {
        return pfn >= 0 && pfn < pages;
    }

    void grant(Gpadl g) {
        for (long p : g.pfns()) {
            grants[(int) p]++;
        }
    }

    void revoke(Gpadl g) {
        for (long p : g.pfns()) {
            if (grants[(int) p] > 0) {
                grants[(int) p]--;
            }
        }
    }

    void markRing(Gpadl g, boolean ring) {
        for (long p : g.pfns()) {
            ringRefs[(int) p] += ring ? 1 : -1;
        }
    }
}
