package io.phost.storage.engine;

import io.phost.core.sys.DirectFile;
import io.phost.vhdx.PageCacheMapping;
import io.phost.vhdx.VirtualDisk;

import java.io.IOException;

/**
 * Runs each request synchronously on the submitting thread, at {@link #submit}: for disks whose I/O is
 * a memory copy or nothing (RAM and null disks, files on tmpfs), where handing off to a worker would cost
 * more than the I/O. A file's reads and writes are one preadv/pwritev straight on the request's iovecs, or,
 * for a raw file on tmpfs, a copy between the file's mapping and the iovecs where the file owns the pages
 * ({@link PageCacheMapping}: no system call; issue 19). Completions are kept in a preallocated ring and
 * delivered by {@link #poll}.
 */
public final class InlineEngine implements IoEngine {
    private final VirtualDisk disk;
    private final int fd;
    /** The tmpfs file's mapping, or null (preadv/pwritev). Shared by every queue's engine on the disk. */
    private final PageCacheMapping mapping;
    private final int depth;
    private final int[] kind;
    private final long[] offset;
    private final long[] length;
    private final IoVecs[] vecs;
    private final long[] userData;
    private final long[] result;
    // One ring: [head, executed) finished but not delivered, [executed, tail) queued, tail - head <= depth.
    private long head;
    private long executed;
    private long tail;

    public InlineEngine(VirtualDisk disk, int depth) {
        this(disk, depth, true);
    }

    /** As above; {@code mapped = false} keeps preadv/pwritev even where the disk offers a mapping (comparisons). */
    public InlineEngine(VirtualDisk disk, int depth, boolean mapped) {
        this.disk = disk;
        this.fd = disk.capabilities().fd();
        // The mapping belongs to the raw file (it serialises hole punching against copies for all its queues).
        this.mapping = fd >= 0 && mapped ? disk.pageCacheMapping() : null;
        this.depth = depth;
        this.kind = new int[depth];
        this.offset = new long[depth];
        this.length = new long[depth];
        this.vecs = new IoVecs[depth];
        this.userData = new long[depth];
        this.result = new long[depth];
    }

    private boolean queue(int k, long off, long len, IoVecs v, long u) {
        if (tail - head >= depth) {
            return false;
        }
        int i = (int) (tail % depth);
        kind[i] = k;
        offset[i] = off;
        length[i] = len;
        vecs[i] = v;
        userData[i] = u;
        tail++;
        return true;
    }

    @Override
    public boolean tryRead(long offset, IoVecs vecs, long userData) {
        return queue(1, offset, vecs.totalLength(), vecs, userData);
    }

    @Override
    public boolean tryWrite(long offset, IoVecs vecs, long userData) {
        return queue(2, offset, vecs.totalLength(), vecs, userData);
    }

    @Override
    public boolean tryFlush(long userData) {
        return queue(3, 0, 0, null, userData);
    }

    @Override
    public boolean tryUnmap(long offset, long length, long userData) {
        return queue(4, offset, length, null, userData);
    }

    @Override
    public boolean tryWriteZeroes(long offset, long length, long userData) {
        return queue(5, offset, length, null, userData);
    }

    @Override
    public int submit() {
        int n = 0;
        while (executed < tail) {
            int i = (int) (executed % depth);
            result[i] = execute(i);
            executed++;
            n++;
        }
        return n;
    }

    /** Writes the bytes of {@code v} after the first {@code done} at {@code pos + done} through the disk. */
    private void writeRemainder(IoVecs v, long pos, long done) throws IOException {
        long at = pos;
        for (int s = 0; s < v.count(); s++) {
            long len = v.lengthAt(s);
            if (done >= len) {
                done -= len;
            } else {
                disk.write(at + done, v.segmentAt(s).asSlice(done));
                done = 0;
            }
            at += len;
        }
    }

    private long execute(int i) {
        try {
            switch (kind[i]) {
                case 1, 2 -> {
                    long pos = offset[i];
                    IoVecs v = vecs[i];
                    if (fd >= 0) { // bytes moved, or -errno: the queue treats a short transfer as an error
                        if (kind[i] == 1) {
                            return mapping != null ? mapping.readv(v.arrayAddress(), v.count(), pos, length[i])
                                : DirectFile.preadv(fd, v.arrayAddress(), v.count(), pos);
                        }
                        long n = mapping != null ? mapping.writev(v.arrayAddress(), v.count(), pos, length[i])
                            : DirectFile.pwritev(fd, v.arrayAddress(), v.count(), pos);
                        if (n >= 0 && n < length[i]) {
                            // A short write (e.g. the file system filled up mid-way): write the rest, which
                            // either completes or fails with the real errno (ENOSPC) instead of a bare "short".
                            writeRemainder(v, pos, n);
                            return length[i];
                        }
                        return n;
                    }
                    for (int s = 0; s < v.count(); s++) {
                        if (kind[i] == 1) {
                            disk.read(pos, v.segmentAt(s));
                        } else {
                            disk.write(pos, v.segmentAt(s));
                        }
                        pos += v.lengthAt(s);
                    }
                    return length[i];
                }
                case 3 -> disk.flush();
                case 4 -> disk.unmap(offset[i], length[i]);
                default -> disk.writeZeroes(offset[i], length[i]);
            }
            return 0;
        } catch (IOException | RuntimeException e) {
            return io.phost.core.sys.DiskFullException.isDiskFull(e) ? -28 : -5; // ENOSPC : EIO
        }
    }

    @Override
    public int poll(IoCompletionHandler handler) {
        int n = 0;
        while (head < executed) {
            int i = (int) (head % depth);
            vecs[i] = null;
            head++;
            n++;
            handler.onIoComplete(userData[i], result[i]);
        }
        return n;
    }

    @Override
    public int await(IoCompletionHandler handler, long timeoutNanos) {
        submit();
        return poll(handler);
    }

    @Override
    public int inFlight() {
        return (int) (tail - head);
    }

    @Override
    public int depth() {
        return depth;
    }

    @Override
    public String name() {
        return "inline";
    }

    @Override
    public void close() {
        await((u, r) -> { }, 0);
    }
}
