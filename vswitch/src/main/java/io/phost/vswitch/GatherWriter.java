package io.phost.vswitch;

import io.phost.core.sys.NetSyscalls;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import org.agrona.BufferUtil;
import org.agrona.DirectBuffer;
import org.agrona.concurrent.UnsafeBuffer;

/**
 * Writes one frame, prefixed by a per-frame header (a virtio-net header, or none), to a TAP fd or an AF_PACKET
 * socket without copying the frame in user space:
 * <pre>
 *   header in our buffer ─┐
 *                         ├─ writev(fd, 2 iovecs)   frame off-heap (TAP/ring/guest buffer): the kernel's copy only
 *   frame where it lies ──┘
 *   frame on the Java heap: copied behind the header, one write(2)
 * </pre>
 * A 64 KiB GSO frame then costs the switch thread one copy (the kernel's) instead of two. One per port; used
 * only by the thread that drains the port's egress; no allocation per frame.
 */
final class GatherWriter {
    private final ByteBuffer txMemory = ByteBuffer.allocateDirect(VSwitch.MAX_FRAME + 16);
    private final long txAddress = BufferUtil.address(txMemory);
    private final UnsafeBuffer tx = new UnsafeBuffer(txMemory);
    /** Two struct iovec {base, len}: the header in txMemory, then the frame in the caller's buffer. */
    private final ByteBuffer iovMemory = ByteBuffer.allocateDirect(32).order(ByteOrder.nativeOrder());
    private final long iovAddress = BufferUtil.address(iovMemory);

    /** Where the caller puts the header (offset 0, {@code hdr} bytes) before {@link #write}. */
    UnsafeBuffer header() {
        return tx;
    }

    /** Writes header()[0, hdr) then {@code buffer[offset, offset + length)}; bytes written or -errno. */
    long write(int fd, int hdr, DirectBuffer buffer, int offset, int length) {
        if (buffer.byteArray() != null) {
            tx.putBytes(hdr, buffer, offset, length);
            return NetSyscalls.write(fd, txAddress, hdr + length);
        }
        long frame = buffer.addressOffset() + offset;
        if (hdr == 0) {
            return NetSyscalls.write(fd, frame, length);
        }
        iovMemory.putLong(0, txAddress).putLong(8, hdr).putLong(16, frame).putLong(24, length);
        return NetSyscalls.writev(fd, iovAddress, 2);
    }
}
