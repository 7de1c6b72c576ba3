package io.phost.core.vmbus;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.ref.Reference;
import java.util.Objects;
import org.agrona.UnsafeApi;

/**
 * Copies a caller's payload into ring memory at a raw address, with exactly the checks
 * {@code MemorySegment.copy} makes on the source, when no thread can free the source during the copy; otherwise
 * through {@code MemorySegment.copy}.
 * <p>
 * Why: {@code MemorySegment.copy} compiles to ~1,500 bytes of machine code (session and bounds checks of both
 * segments, the JDK's small-copy loop). Inlined into {@link VmbusRing#tryQueue} it made that method's compiled
 * code 2,600-2,900 bytes, above C2's {@code InlineSmallCode} (2,500): once compiled on its own, no caller's
 * loop inlined it any more, and the write path cost 16.5-18.1 ns per 64 B packet instead of 14.1 (twelfth
 * session, {@code RingCostProbe}: whether a JVM inlined it depended on which was compiled first). With this
 * copy {@code tryQueue} compiles to 1,860-2,270 bytes and {@code tryWrite} to 2,070-2,280 (three JVMs), and the
 * probe's loops inline them.
 * <p>
 * Raw only for a native source whose memory cannot be freed while this call holds it:
 * <ul>
 *   <li>the global scope ({@code MemorySegment.ofAddress}, {@code Arena.global()}): never freed by the JDK;</li>
 *   <li>an automatic scope ({@code Arena.ofAuto()}): freed only once unreachable, and the source stays reachable
 *       until after the copy ({@link Reference#reachabilityFence});</li>
 *   <li>a confined scope, alive and owned by the calling thread: only that thread can close it, and it is here.</li>
 * </ul>
 * A shared arena's segment (another thread may close it during the copy), a heap segment, a closed scope or a
 * confined scope of another thread take {@code MemorySegment.copy}, which throws as it always did. The scope
 * kinds are told apart by the classes the JDK uses for them, taken at class load from real arenas; if a JDK
 * ever used one class for a shared scope and a raw-safe one, every copy takes the checked path.
 */
final class PayloadCopy {
    private static final Class<?> GLOBAL = MemorySegment.NULL.scope().getClass();
    private static final Class<?> AUTO = Arena.ofAuto().scope().getClass();
    private static final Class<?> CONFINED;
    private static final boolean RAW_ALLOWED;

    static {
        Class<?> shared;
        try (Arena s = Arena.ofShared(); Arena c = Arena.ofConfined()) {
            shared = s.scope().getClass();
            CONFINED = c.scope().getClass();
        }
        RAW_ALLOWED = shared != GLOBAL && shared != AUTO && shared != CONFINED;
    }

    private PayloadCopy() {}

    /**
     * Copies {@code length} bytes of {@code src} from {@code srcOffset} to {@code dst} at {@code dstOffset};
     * {@code dstAddress} is {@code dst}'s base address. The caller has bounded {@code dstOffset + length} within
     * {@code dst}. Throws what {@code MemorySegment.copy} throws for a bad source (bounds, closed, wrong thread).
     */
    static void copy(MemorySegment src, long srcOffset, MemorySegment dst, long dstAddress, long dstOffset, int length) {
        if (RAW_ALLOWED && src.isNative() && cannotBeFreedDuringCall(src)) {
            Objects.checkFromIndexSize(srcOffset, length, src.byteSize());
            UnsafeApi.copyMemory(null, src.address() + srcOffset, null, dstAddress + dstOffset, length);
            Reference.reachabilityFence(src);
        } else {
            MemorySegment.copy(src, srcOffset, dst, dstOffset, length);
        }
    }

    private static boolean cannotBeFreedDuringCall(MemorySegment src) {
        MemorySegment.Scope scope = src.scope();
        Class<?> kind = scope.getClass();
        return kind == GLOBAL || kind == AUTO
            || kind == CONFINED && scope.isAlive() && src.isAccessibleBy(Thread.currentThread());
    }
}
