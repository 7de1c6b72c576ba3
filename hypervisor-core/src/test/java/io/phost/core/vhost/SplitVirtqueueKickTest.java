package io.phost.core.vhost;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.core.sys.Fd;
import io.phost.core.sys.SharedMemory;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * Kick suppression for a busy-polling device (vhost-user-net's switch agent): {@code tryPopQuiet} leaves
 * avail_event alone on an empty ring, so the driver does not kick while the device polls anyway;
 * {@code enableKicks} moves it up before the device sleeps and reports a request that slipped in.
 */
class SplitVirtqueueKickTest {
    private static final int QSIZE = 8;
    private static final long GPA = 0x10_0000L;
    private static final long DESC = 0x1000;
    private static final long AVAIL = DESC + 16L * QSIZE;
    private static final long USED = (AVAIL + 6 + 2L * QSIZE + 3) & ~3L;
    private static final long AVAIL_EVENT = USED + 4 + 8L * QSIZE;
    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED;

    @Test
    void shouldLeaveKicksSuppressedWhilePollingQuietlyAndAskForThemBeforeSleeping() {
        long size = 1 << 16;
        int fd = SharedMemory.createUnsealed("kick-guest", size);
        MemorySegment mine = SharedMemory.mapShared(fd, 0, size);
        GuestMemory memory = GuestMemory.of(new java.util.ArrayList<>(List.of(GuestMemory.mapRegion(0, GPA, size, mine.address(), 0, Fd.dup(fd)))));
        try {
            long[] host = SplitVirtqueue.layout(0, memory, QSIZE, mine.address() + DESC, mine.address() + AVAIL, mine.address() + USED);
            SplitVirtqueue q = new SplitVirtqueue(0, memory, QSIZE, host[0], host[1], host[2], 0, true, false, null);
            DescriptorChain chain = new DescriptorChain(4);
            mine.set(U16, AVAIL_EVENT, (short) 0x1234); // a stale value the driver left nothing to do with

            assertFalse(q.tryPopQuiet(chain), "empty ring");
            assertEquals(0x1234, mine.get(U16, AVAIL_EVENT) & 0xFFFF, "a quiet pop does not ask for kicks");

            assertFalse(q.enableKicks(), "nothing available");
            assertEquals(0, mine.get(U16, AVAIL_EVENT) & 0xFFFF, "kicks wanted from the next request on");

            post(mine, 0, 0);
            assertTrue(q.enableKicks(), "a request made before the device sleeps keeps it awake");
            assertTrue(q.tryPopQuiet(chain));
            assertEquals(0, chain.head());
            assertEquals(64, chain.readableBytes());

            mine.set(U16, AVAIL_EVENT, (short) 0x1234);
            assertFalse(q.tryPopQuiet(chain));
            assertEquals(0x1234, mine.get(U16, AVAIL_EVENT) & 0xFFFF);
            assertFalse(q.tryPop(chain));
            assertEquals(1, mine.get(U16, AVAIL_EVENT) & 0xFFFF, "tryPop keeps asking for kicks on an empty ring, as before");
        } finally {
            memory.close();
            SharedMemory.unmap(mine);
            Fd.close(fd);
        }
    }

    /** Descriptor {@code d} = 64 readable bytes, made available as entry {@code slot} (avail.idx = slot + 1). */
    private static void post(MemorySegment mine, int d, int slot) {
        long desc = DESC + 16L * d;
        mine.set(ValueLayout.JAVA_LONG_UNALIGNED, desc, GPA + 0x8000);
        mine.set(ValueLayout.JAVA_INT_UNALIGNED, desc + 8, 64);
        mine.set(U16, desc + 12, (short) 0);
        mine.set(U16, AVAIL + 4 + 2L * slot, (short) d);
        mine.set(U16, AVAIL + 2, (short) (slot + 1));
    }
}
