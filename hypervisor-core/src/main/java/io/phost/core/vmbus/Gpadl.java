package io.phost.core.vmbus;

/**
 * A Guest Physical Address Descriptor List: pages of guest memory the guest granted to the host for one
 * channel (a ring pair, or a data buffer such as netvsc's receive buffer). The handle is chosen by the
 * guest and unique per partition; pfns are page numbers in guest memory (gpa / 4096).
 *
 * @param handle     the guest's GPADL handle (u32)
 * @param relid      the channel it was created on
 * @param byteOffset offset of the first byte inside the first page (0 for ring GPADLs)
 * @param byteCount  bytes described
 * @param pfns       page frame numbers, validated against the partition's memory
 */
public record Gpadl(int handle, int relid, int byteOffset, long byteCount, long[] pfns) {
    public int pageCount() {
        return pfns.length;
    }

    /** True when the pages are one physically contiguous run (the host can then use one slice). */
    public boolean contiguous() {
        for (int i = 1; i < pfns.length; i++) {
            if (pfns[i] != pfns[i - 1] + 1) {
                return false;
            }
        }
        return true;
    }
}
