package io.phost.core.vmbus;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;

/**
 * The ring's payload copy from every kind of source segment: the bytes arrive whichever path it takes (raw for
 * global, automatic and own confined scopes; {@code MemorySegment.copy} for shared arenas and heap segments), and a
 * bad source fails as {@code MemorySegment.copy} fails, before anything is published.
 */
class PayloadCopyTest {
    private static final int DATA = 4096;
    private static final int LEN = 100;

    private record Ring(VmbusRing writer, VmbusRing reader) {}

    private static Ring ring(Arena a) {
        MemorySegment control = a.allocate(RingDescriptor.CONTROL_LENGTH, 4096);
        VmbusRing.initialise(control);
        MemorySegment data = a.allocate(DATA, 4096);
        return new Ring(new VmbusRing(control, data, DATA, Doorbell.NONE), new VmbusRing(control, data, DATA, Doorbell.NONE));
    }

    private static void fill(MemorySegment s, int seed) {
        for (int i = 0; i < s.byteSize(); i++) {
            s.set(ValueLayout.JAVA_BYTE, i, (byte) (seed + 3 * i));
        }
    }

    /** Writes {@code LEN} bytes of {@code src} from offset 5 and returns what the reader got. */
    private static byte[] roundTrip(Ring r, MemorySegment src) {
        assertTrue(r.writer().tryWrite(PacketDescriptor.TYPE_INBAND, 0, 1, src, 5, LEN));
        byte[][] got = new byte[1][];
        assertEquals(1, r.reader().tryRead((b, o, l, t, f, id) -> {
            got[0] = b.asSlice(PacketDescriptor.dataOffset(b, o), LEN).toArray(ValueLayout.JAVA_BYTE);
            return true;
        }, 4));
        return got[0];
    }

    private static byte[] expected(MemorySegment src) {
        return src.asSlice(5, LEN).toArray(ValueLayout.JAVA_BYTE);
    }

    @Test
    void shouldCopyFromEveryKindOfSource() {
        try (Arena ringArena = Arena.ofConfined(); Arena confined = Arena.ofConfined(); Arena shared = Arena.ofShared()) {
            Ring r = ring(ringArena);
            MemorySegment auto = Arena.ofAuto().allocate(LEN + 16);
            MemorySegment own = confined.allocate(LEN + 16);
            MemorySegment sharedSeg = shared.allocate(LEN + 16);
            MemorySegment global = MemorySegment.ofAddress(auto.address()).reinterpret(LEN + 16);
            MemorySegment heap = MemorySegment.ofArray(new byte[LEN + 16]);
            int seed = 1;
            for (MemorySegment src : new MemorySegment[] {auto, own, sharedSeg, global, heap, own.asSlice(8)}) {
                fill(src, seed++);
                assertArrayEquals(expected(src), roundTrip(r, src), src.toString());
            }
        }
    }

    @Test
    void shouldRefuseASourceOutOfBoundsBeforePublishing() {
        try (Arena a = Arena.ofConfined()) {
            Ring r = ring(a);
            MemorySegment auto = Arena.ofAuto().allocate(LEN);
            int before = r.writer().writeIndex();
            assertThrows(IndexOutOfBoundsException.class, () -> r.writer().tryWrite(6, 0, 1, auto, 1, LEN));
            assertThrows(IndexOutOfBoundsException.class, () -> r.writer().tryWrite(6, 0, 1, auto, -1, 8));
            assertEquals(before, r.writer().writeIndex(), "nothing queued");
            assertEquals(0, r.reader().tryRead((b, o, l, t, f, id) -> true, 4), "nothing published");
        }
    }

    @Test
    void shouldRefuseAClosedSourceBeforePublishing() {
        try (Arena a = Arena.ofConfined()) {
            Ring r = ring(a);
            Arena confined = Arena.ofConfined();
            MemorySegment gone = confined.allocate(LEN);
            confined.close();
            Arena shared = Arena.ofShared();
            MemorySegment goneShared = shared.allocate(LEN);
            shared.close();
            assertThrows(IllegalStateException.class, () -> r.writer().tryWrite(6, 0, 1, gone, 0, LEN));
            assertThrows(IllegalStateException.class, () -> r.writer().tryWrite(6, 0, 1, goneShared, 0, LEN));
            assertEquals(0, r.reader().tryRead((b, o, l, t, f, id) -> true, 4), "nothing published");
        }
    }

    @Test
    void shouldRefuseAnotherThreadsConfinedSource() throws Exception {
        try (Arena a = Arena.ofConfined()) {
            Ring r = ring(a);
            AtomicReference<MemorySegment> theirs = new AtomicReference<>();
            Thread owner = new Thread(() -> theirs.set(Arena.ofConfined().allocate(LEN)));
            owner.start();
            owner.join();
            assertThrows(WrongThreadException.class, () -> r.writer().tryWrite(6, 0, 1, theirs.get(), 0, LEN));
            assertEquals(0, r.reader().tryRead((b, o, l, t, f, id) -> true, 4), "nothing published");
        }
    }
}
