package io.phost.storage.nbd;

import io.phost.storage.scsi.ScsiRequest;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;

/** The NBD side of one request slot (header fields, payload buffer); its core side is the {@link ScsiRequest} of the same index. */
final class NbdSlot {
    private static final ByteBuffer EMPTY = ByteBuffer.allocateDirect(0);

    /** The payload buffer (empty until the first request with data), the arena that owns it, its address. */
    ByteBuffer data = EMPTY;
    Arena dataArena;
    long dataAddress;
    int flags;
    int type;
    long cookie;
    long offset;
    int length;

    /** Makes the payload buffer hold {@code n} bytes; the reader sized it already ({@link NbdConnection#reserve}). */
    ByteBuffer payload(int n) {
        if (data.capacity() < n) {
            throw new IllegalStateException("payload buffer not reserved: " + n + " > " + data.capacity());
        }
        data.clear().limit(n);
        return data;
    }

    /** Replaces the payload buffer with one of {@code capacity} bytes (0: none); returns the change in bytes. */
    long resize(int capacity) {
        long before = data.capacity();
        if (dataArena != null) {
            dataArena.close();
            dataArena = null;
        }
        data = EMPTY;
        dataAddress = 0;
        if (capacity > 0) {
            dataArena = Arena.ofShared();
            MemorySegment m = dataArena.allocate(capacity, 4096); // page-aligned: fine for O_DIRECT engines
            data = m.asByteBuffer();
            dataAddress = m.address();
        }
        return data.capacity() - before;
    }
}
