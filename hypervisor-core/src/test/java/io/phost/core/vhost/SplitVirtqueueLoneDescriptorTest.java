package io.phost.core.vhost;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.core.sys.Fd;
import io.phost.core.sys.SharedMemory;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The lone-descriptor fast path of {@link SplitVirtqueue}'s walk (a chain of one descriptor without NEXT or
 * INDIRECT) gives exactly what the general walk gives: one element for a buffer inside one region, two for a
 * buffer across two adjacent regions, none for an empty buffer, ADDRESS_NOT_MAPPED outside every region; and
 * the used element, written as one 64-bit store, reads back as {le32 id; le32 len}.
 * <pre>
 *   guest memory: one memfd, region 0 = gpa [0x100000, +32 KiB) (rings at its start), region 1 = the next 32 KiB
 *   mapped separately, so their host addresses are not adjacent and a split shows in the elements
 * </pre>
 */
class SplitVirtqueueLoneDescriptorTest {
    private static final int QSIZE = 8;
    private static final long GPA = 0x10_0000L;
    private static final long HALF = 0x8000;
    private static final long DESC = 0x1000;
    private static final long AVAIL = DESC + 16L * QSIZE;
    private static final long USED = (AVAIL + 6 + 2L * QSIZE + 3) & ~3L;
    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED;
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED;

    @Test
    void shouldWalkALoneDescriptorAsTheGeneralWalkDoes() {
        int fd = SharedMemory.createUnsealed("lone-guest", 2 * HALF);
        MemorySegment mine = SharedMemory.mapShared(fd, 0, 2 * HALF);
        GuestMemory memory = GuestMemory.of(new ArrayList<>(List.of(
            GuestMemory.mapRegion(0, GPA, HALF, 0x7000_0000L, 0, Fd.dup(fd)),
            GuestMemory.mapRegion(1, GPA + HALF, HALF, 0x7000_0000L + HALF, HALF, Fd.dup(fd)))));
        try {
            long[] host = SplitVirtqueue.layout(0, memory, QSIZE, 0x7000_0000L + DESC, 0x7000_0000L + AVAIL, 0x7000_0000L + USED);
            SplitVirtqueue q = new SplitVirtqueue(0, memory, QSIZE, host[0], host[1], host[2], 0, true, false, null);
            DescriptorChain chain = new DescriptorChain(4, 1);
            long region0 = memory.translateGpa(GPA, 1);
            long region1 = memory.translateGpa(GPA + HALF, 1);

            post(mine, 0, 0, GPA + 0x2000, 76, 0);
            assertTrue(q.tryPopQuiet(chain));
            assertEquals(1, chain.count(), "one buffer in one region: one element");
            assertEquals(region0 + 0x2000, chain.address(0));
            assertEquals(76, chain.length(0));
            assertEquals(76, chain.readableBytes());
            assertEquals(1, chain.readableCount());

            post(mine, 1, 1, GPA + HALF + 0x100, 1536, SplitVirtqueue.DESC_F_WRITE);
            assertTrue(q.tryPopQuiet(chain));
            assertEquals(1, chain.head());
            assertEquals(1, chain.count());
            assertEquals(region1 + 0x100, chain.address(0));
            assertEquals(0, chain.readableCount(), "device-writable");
            assertEquals(1536, chain.writableBytes());

            post(mine, 2, 2, GPA + HALF - 16, 64, SplitVirtqueue.DESC_F_WRITE);
            assertTrue(q.tryPopQuiet(chain));
            assertEquals(2, chain.count(), "a buffer across two regions: one element per region");
            assertEquals(region0 + HALF - 16, chain.address(0));
            assertEquals(16, chain.length(0));
            assertEquals(region1, chain.address(1));
            assertEquals(48, chain.length(1));
            assertEquals(64, chain.writableBytes());

            post(mine, 3, 3, GPA + 0x2000, 0, 0);
            assertTrue(q.tryPopQuiet(chain));
            assertEquals(0, chain.count(), "an empty buffer adds no element");
            assertEquals(3, chain.head());

            post(mine, 4, 4, GPA + 2 * HALF + 0x1000, 64, 0);
            VhostUserException e = assertThrows(VhostUserException.class, () -> q.tryPopQuiet(chain));
            assertEquals(VhostUserException.Reason.ADDRESS_NOT_MAPPED, e.reason(), e.getMessage());
            assertTrue(e.getMessage().contains("head 4 descriptor 4"), e.getMessage());

            q.pushUsed(5, 0x1234_5678);
            q.pushUsedLater(6, 0x0BAD_F00D);
            assertEquals(1, mine.get(U16, USED + 2) & 0xFFFF, "pushUsedLater does not publish");
            q.publishUsed();
            assertEquals(2, mine.get(U16, USED + 2) & 0xFFFF);
            assertEquals(5, mine.get(U32, USED + 4));
            assertEquals(0x1234_5678, mine.get(U32, USED + 8));
            assertEquals(6, mine.get(U32, USED + 12));
            assertEquals(0x0BAD_F00D, mine.get(U32, USED + 16));
            assertFalse(q.tryPopQuiet(chain), "nothing more");
        } finally {
            memory.close();
            SharedMemory.unmap(mine);
            Fd.close(fd);
        }
    }

    /**
     * A hostile driver's buffer of 2 GiB or more inside one (sparse) region: every element's length stays positive
     * and they add up to the descriptor's (elements of at most 1 GiB), lone or chained; no negative int length.
     */
    @Test
    void shouldSplitABufferOfTwoGibibytesOrMoreIntoElementsWithPositiveLengths() {
        long size = 4L << 30; // sparse: nothing is touched past the rings
        int fd = SharedMemory.createUnsealed("huge-guest", size);
        MemorySegment mine = SharedMemory.mapShared(fd, 0, 2 * HALF);
        GuestMemory memory = GuestMemory.of(new ArrayList<>(List.of(GuestMemory.mapRegion(0, GPA, size, 0x7000_0000L, 0, Fd.dup(fd)))));
        try {
            long[] host = SplitVirtqueue.layout(0, memory, QSIZE, 0x7000_0000L + DESC, 0x7000_0000L + AVAIL, 0x7000_0000L + USED);
            SplitVirtqueue q = new SplitVirtqueue(0, memory, QSIZE, host[0], host[1], host[2], 0, true, false, null);
            DescriptorChain chain = new DescriptorChain(8, 1);
            long base = memory.translateGpa(GPA, 1);
            int[] lengths = {0x8000_0000, 0xC000_0001};
            for (int k = 0; k < lengths.length; k++) {
                long len = lengths[k] & 0xFFFF_FFFFL;
                post(mine, k, k, GPA + 0x10000, lengths[k], SplitVirtqueue.DESC_F_WRITE);
                assertTrue(q.tryPopQuiet(chain));
                long sum = 0;
                for (int e = 0; e < chain.count(); e++) {
                    assertTrue(chain.length(e) > 0 && chain.length(e) <= 1 << 30, "element " + e + " of " + len + ": " + chain.length(e));
                    assertEquals(base + 0x10000 + sum, chain.address(e), "element " + e + " follows the one before");
                    sum += chain.length(e);
                }
                assertEquals(len, sum, "elements add up to the descriptor");
                assertEquals(len, chain.writableBytes());
            }
        } finally {
            memory.close();
            SharedMemory.unmap(mine);
            Fd.close(fd);
        }
    }

    /** Descriptor {@code d} = one buffer without NEXT, made available as entry {@code slot}. */
    private static void post(MemorySegment mine, int d, int slot, long gpa, int len, int flags) {
        long desc = DESC + 16L * d;
        mine.set(ValueLayout.JAVA_LONG_UNALIGNED, desc, gpa);
        mine.set(U32, desc + 8, len);
        mine.set(U16, desc + 12, (short) flags);
        mine.set(U16, desc + 14, (short) 0);
        mine.set(U16, AVAIL + 4 + 2L * slot, (short) d);
        mine.set(U16, AVAIL + 2, (short) (slot + 1));
    }
}
