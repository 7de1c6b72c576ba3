package io.phost.storage.engine;

import io.phost.vhdx.MappedDisk;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.LongBinaryOperator;

/**
 * A {@link MappedDisk} that delegates to a real one and counts the ranges it mapped, so a test can prove the
 * fast path really ran; optionally rewrites mapped offsets to provoke ring failures.
 */
public final class CountingMappedDisk implements MappedDisk {
    private final MappedDisk d;
    private final AtomicLong mappedReads = new AtomicLong();
    private final AtomicLong mappedWrites = new AtomicLong();
    private volatile LongBinaryOperator readTwist;
    private volatile int alignment = -1;

    public CountingMappedDisk(MappedDisk d) {
        this.d = d;
    }

    /** Reads the ring does get {@code twist(guestOffset, fileOffset)} as their file offset. */
    public CountingMappedDisk twistReads(LongBinaryOperator twist) {
        this.readTwist = twist;
        return this;
    }

    /** Claims this alignment instead of the real one. */
    public CountingMappedDisk claimAlignment(int a) {
        this.alignment = a;
        return this;
    }

    public long mappedReads() {
        return mappedReads.get();
    }

    public long mappedWrites() {
        return mappedWrites.get();
    }

    @Override
    public long mapRead(long offset, long length) {
        long at = d.mapRead(offset, length);
        if (at >= 0) {
            mappedReads.incrementAndGet();
            LongBinaryOperator t = readTwist;
            return t == null ? at : t.applyAsLong(offset, at);
        }
        return at;
    }

    @Override
    public long mapWrite(long offset, long length) {
        long at = d.mapWrite(offset, length);
        if (at >= 0) {
            mappedWrites.incrementAndGet();
        }
        return at;
    }

    @Override
    public int mappedFd() throws IOException {
        return d.mappedFd();
    }

    @Override
    public int mappedAlignment() {
        return alignment >= 0 ? alignment : d.mappedAlignment();
    }

    @Override
    public long size() {
        return d.size();
    }

    @Override
    public int logicalSectorSize() {
        return d.logicalSectorSize();
    }

    @Override
    public int physicalSectorSize() {
        return d.physicalSectorSize();
    }

    @Override
    public boolean readOnly() {
        return d.readOnly();
    }

    @Override
    public void read(long offset, MemorySegment dst) throws IOException {
        d.read(offset, dst);
    }

    @Override
    public void write(long offset, MemorySegment src) throws IOException {
        d.write(offset, src);
    }

    @Override
    public void flush() throws IOException {
        d.flush();
    }

    @Override
    public void unmap(long offset, long length) throws IOException {
        d.unmap(offset, length);
    }

    @Override
    public void writeZeroes(long offset, long length) throws IOException {
        d.writeZeroes(offset, length);
    }

    @Override
    public String format() {
        return d.format();
    }

    @Override
    public void close() throws IOException {
        d.close();
    }
}
