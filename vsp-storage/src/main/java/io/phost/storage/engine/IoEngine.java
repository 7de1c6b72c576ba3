package io.phost.storage.engine;

/**
 * An asynchronous I/O engine bound to one disk (a file/device fd, or a {@link io.phost.vhdx.VirtualDisk}).
 * One thread submits and polls (the owning queue's agent); engines are chosen per disk and per queue.
 *
 * <pre>
 *   if (!engine.tryRead(offset, iovecs, cookie)) { keep the request queued; }   // full is a return value
 *   engine.submit();                       // hands the batch to the kernel / the workers
 *   engine.poll(handler);                  // handler.onIoComplete(cookie, bytesOrMinusErrno)
 * </pre>
 *
 * <p>The iovec list must stay untouched until the completion for its cookie is delivered.
 */
public interface IoEngine extends AutoCloseable {
    /** Queues a vectored read of {@code vecs.totalLength()} bytes at {@code offset}. False when full. */
    boolean tryRead(long offset, IoVecs vecs, long userData);

    /** Queues a vectored write. False when full. */
    boolean tryWrite(long offset, IoVecs vecs, long userData);

    /** Queues a data flush (fdatasync) that covers every write completed before it. */
    boolean tryFlush(long userData);

    /** Queues a discard of {@code length} bytes; reads return zeros afterwards. */
    boolean tryUnmap(long offset, long length, long userData);

    /** Queues a write of zeros over {@code length} bytes. */
    boolean tryWriteZeroes(long offset, long length, long userData);

    /** Hands queued requests to the kernel or the workers; returns how many. */
    int submit();

    /** Delivers ready completions without blocking; returns how many. */
    int poll(IoCompletionHandler handler);

    /** Blocks until at least one completion is ready or {@code timeoutNanos} passes, then polls. */
    int await(IoCompletionHandler handler, long timeoutNanos);

    /**
     * True when {@link #awaitWithDoorbell} works: the engine's completions and a doorbell eventfd can wake one
     * wait (io_uring: the doorbell is a POLL_ADD on the engine's ring).
     */
    default boolean wakesOnDoorbell() {
        return false;
    }

    /**
     * True when queue workers sleep through this engine ({@link #awaitWithDoorbell}) without being asked to:
     * librbd's one {@code ppoll}. io_uring's hand-off is opt-in ({@code -Dphost.storage.uringHandoff=true}: under
     * load it lost to the timed waits, docs/storage.md).
     */
    default boolean handsOffByDefault() {
        return false;
    }

    /**
     * True when a request of this engine takes far longer than a queue worker's spin (a network round trip:
     * librbd), so a worker with only such requests in flight sleeps at once and its spin governor judges only
     * the waits for the guest ({@link io.phost.core.sys.DeviceWait#outlastsSpin}).
     */
    default boolean outlastsSpin() {
        return false;
    }

    /**
     * Submits what is queued and sleeps until a completion is ready, {@code doorbell} is signalled or
     * {@code timeoutNanos} pass, in one system call; completions are left for {@link #poll}. False (nothing
     * done) when this engine cannot: the caller waits with {@link #await}.
     */
    default boolean awaitWithDoorbell(io.phost.core.sys.EventFd doorbell, long timeoutNanos) {
        return false;
    }

    /** True while requests are queued and not yet handed over by {@link #submit}. */
    default boolean hasUnsubmitted() {
        return false;
    }

    /** Requests submitted and not yet delivered by {@link #poll}. */
    int inFlight();

    /** Maximum number of requests in flight. */
    int depth();

    /** "io_uring", "threads": for status and logs. */
    String name();

    /**
     * Waits until every submitted request has completed, dropping the completions: closing an engine must not
     * let the kernel or a worker write into buffers the caller frees afterwards.
     */
    default void drain() {
        while (inFlight() > 0) {
            await((u, r) -> { }, 1_000_000L);
        }
    }

    @Override
    void close();
}
