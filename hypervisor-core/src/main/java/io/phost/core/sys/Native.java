package io.phost.core.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;

/**
 * The one place that builds FFM downcall handles. Every libc function the project calls is bound through
 * {@link #downcall}, which captures {@code errno} with {@code Linker.Option.captureCallState("errno")}, so
 * a failure can name the errno without racing other native calls on the same thread.
 *
 * <p>Calling convention used by every class in this package: the first argument of each handle is the
 * errno capture segment ({@link #errnoState()}, one per thread); the handle returns the raw C result;
 * callers pass it to {@link #check} which throws {@link NativeException} on {@code -1}.
 */
public final class Native {
    public static final Linker LINKER = Linker.nativeLinker();
    public static final SymbolLookup LIBC = LINKER.defaultLookup();

    private static final StructLayout CAPTURE_LAYOUT = Linker.Option.captureStateLayout();
    private static final VarHandle ERRNO =
        CAPTURE_LAYOUT.varHandle(MemoryLayout.PathElement.groupElement("errno"));
    private static final Linker.Option CAPTURE_ERRNO = Linker.Option.captureCallState("errno");

    /** One capture segment per thread: allocated once, so the hot path allocates nothing for errno. */
    private static final ThreadLocal<MemorySegment> ERRNO_STATE =
        ThreadLocal.withInitial(() -> Arena.global().allocate(CAPTURE_LAYOUT));

    private static final MethodHandle STRERROR = LINKER.downcallHandle(
        LIBC.find("strerror").orElseThrow(),
        FunctionDescriptor.of(ValueLayout.ADDRESS.withTargetLayout(MemoryLayout.sequenceLayout(256, ValueLayout.JAVA_BYTE)),
            ValueLayout.JAVA_INT));

    private Native() {}

    /** A downcall to libc {@code name} whose first parameter is the errno capture segment. */
    public static MethodHandle downcall(String name, FunctionDescriptor descriptor) {
        MemorySegment symbol = LIBC.find(name).orElseThrow(() -> new UnsatisfiedLinkError("libc has no " + name));
        return LINKER.downcallHandle(symbol, descriptor, CAPTURE_ERRNO);
    }

    /**
     * A {@link #downcall} that may take heap segments: the array is pinned for the call
     * ({@code Linker.Option.critical(true)}), so callers keep each call short.
     */
    public static MethodHandle downcallCritical(String name, FunctionDescriptor descriptor) {
        MemorySegment symbol = LIBC.find(name).orElseThrow(() -> new UnsatisfiedLinkError("libc has no " + name));
        return LINKER.downcallHandle(symbol, descriptor, CAPTURE_ERRNO, Linker.Option.critical(true));
    }

    /** A downcall that never sets errno (or whose errno we do not need); no capture argument. */
    public static MethodHandle downcallNoErrno(String name, FunctionDescriptor descriptor) {
        MemorySegment symbol = LIBC.find(name).orElseThrow(() -> new UnsatisfiedLinkError("libc has no " + name));
        return LINKER.downcallHandle(symbol, descriptor);
    }

    /** This thread's errno capture segment; pass it as the first argument of a {@link #downcall} handle. */
    public static MemorySegment errnoState() {
        return ERRNO_STATE.get();
    }

    /** errno captured by the last {@link #downcall} on this thread. */
    public static int lastErrno() {
        return (int) ERRNO.get(ERRNO_STATE.get(), 0L);
    }

    /** Returns {@code result} unless it is -1, in which case throws naming the operation and errno. */
    public static int check(int result, String operation) {
        if (result == -1) {
            throw new NativeException(operation, lastErrno());
        }
        return result;
    }

    /** 64-bit variant of {@link #check(int, String)} (ssize_t, off_t results). */
    public static long check(long result, String operation) {
        if (result == -1) {
            throw new NativeException(operation, lastErrno());
        }
        return result;
    }

    /** The C library's text for {@code errno}. */
    public static String strerror(int errno) {
        try {
            MemorySegment text = (MemorySegment) STRERROR.invokeExact(errno);
            return text.getString(0);
        } catch (Throwable t) {
            return "errno " + errno;
        }
    }

    /** Rethrows what a {@code MethodHandle.invokeExact} threw, keeping unchecked exceptions as they are. */
    public static RuntimeException rethrow(Throwable t) {
        if (t instanceof RuntimeException r) {
            return r;
        }
        if (t instanceof Error e) {
            throw e;
        }
        return new IllegalStateException(t);
    }
}
