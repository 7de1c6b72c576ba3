package io.phost.storage.scsi;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/** Runs one command at a time through a queue and waits for its completion (test helper). */
final class ScsiHarness implements AutoCloseable {
    final ScsiTarget target;
    final ScsiQueue queue;
    final Arena arena = Arena.ofShared();
    ScsiRequest last;
    int completions;

    ScsiHarness(ScsiTarget target) {
        this(target, target.newInitiator());
    }

    /** A queue of {@code initiator} (another queue of the same guest controller shares its unit attentions). */
    ScsiHarness(ScsiTarget target, ScsiTarget.Initiator initiator) {
        this.target = target;
        this.queue = new ScsiQueue(target, 8, 64, r -> {
            last = r;
            completions++;
        }, null, initiator);
    }

    /** Executes {@code cdb} with a data buffer of {@code bufLen} bytes (pre-filled from {@code out} if given). */
    ScsiRequest run(int lun, byte[] cdb, int direction, MemorySegment buffer) {
        ScsiRequest r = queue.tryAcquire();
        r.reset(lun, cdb, direction, 0);
        if (buffer != null && buffer.byteSize() > 0) {
            r.data().add(buffer);
        }
        return submitAndWait(r);
    }

    /** Executes a block request (no CDB) over {@code buffer} (READ/WRITE data, else null). */
    ScsiRequest runBlock(int lun, BlockOp op, long offset, long length, boolean fua, MemorySegment buffer) {
        ScsiRequest r = queue.tryAcquire();
        r.block(lun, op, offset, length, fua, 0);
        if (buffer != null && buffer.byteSize() > 0) {
            r.data().add(buffer);
        }
        return submitAndWait(r);
    }

    /** Submits a request the caller built on a slot of {@link #queue}, waits for it and releases the slot. */
    ScsiRequest submitAndWait(ScsiRequest r) {
        int before = completions;
        queue.submit(r);
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (completions == before) {
            queue.awaitWork(1_000_000L);
            if (System.nanoTime() > deadline) {
                throw new AssertionError("command did not complete");
            }
        }
        queue.release(r);
        return r;
    }

    MemorySegment buffer(long size) {
        return arena.allocate(Math.max(size, 1), 4096).asSlice(0, size);
    }

    @Override
    public void close() {
        queue.close();
        arena.close();
    }

    static byte[] cdb(int... bytes) {
        byte[] b = new byte[bytes.length];
        for (int i = 0; i < bytes.length; i++) {
            b[i] = (byte) bytes[i];
        }
        return b;
    }

    static byte[] rw10(int op, long lba, int blocks) {
        return cdb(op, 0, (int) (lba >>> 24), (int) (lba >>> 16), (int) (lba >>> 8), (int) lba, 0, blocks >>> 8, blocks, 0);
    }

    static byte[] rw16(int op, long lba, long blocks) {
        byte[] c = new byte[16];
        c[0] = (byte) op;
        for (int i = 0; i < 8; i++) {
            c[2 + i] = (byte) (lba >>> (56 - 8 * i));
        }
        for (int i = 0; i < 4; i++) {
            c[10 + i] = (byte) (blocks >>> (24 - 8 * i));
        }
        return c;
    }
}
