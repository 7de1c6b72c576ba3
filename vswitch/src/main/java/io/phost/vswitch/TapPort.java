package io.phost.vswitch;

import io.phost.core.sys.Errno;
import io.phost.core.sys.TapDevice;
import java.nio.ByteBuffer;
import org.agrona.BufferUtil;
import org.agrona.DirectBuffer;
import org.agrona.concurrent.UnsafeBuffer;

/**
 * A TAP device as a switch port: the management OS's vNIC on an internal switch, or a "tap port" that puts a
 * network namespace (moved there with {@code ip link set NAME netns NS}) on a switch as a stand-in partition.
 * With the virtio-net header on, checksum and GSO state travel with each frame (the sink side accepts
 * offloaded frames; with {@code TUN_F_*} offloads the kernel hands over 64 KiB TSO super-frames).
 * <pre>
 *   rx buffer:  [ virtio_net_hdr 12 ][ Ethernet frame ... ]   read(2) fills both at once
 *   tx:         writev(2) of { our virtio_net_hdr, the frame where the switch holds it } ({@link GatherWriter})
 * </pre>
 * Reads happen on the switch's thread, writes on whichever single thread drains this port's egress.
 */
public final class TapPort implements FrameSource, FrameSink {
    private static final int CAPACITY = VSwitch.MAX_FRAME + TapDevice.VNET_HDR_LENGTH;
    private final TapDevice tap;
    private final int hdr;
    private final ByteBuffer rxMemory = ByteBuffer.allocateDirect(CAPACITY);
    private final long rxAddress = BufferUtil.address(rxMemory);
    private final UnsafeBuffer rx = new UnsafeBuffer(rxMemory);
    private final GatherWriter tx = new GatherWriter();
    private final PacketMeta rxMeta = new PacketMeta();
    private long writeErrors;

    public TapPort(TapDevice tap) {
        this.tap = tap;
        this.hdr = tap.vnetHeader() ? TapDevice.VNET_HDR_LENGTH : 0;
    }

    /** Opens TAP {@code name} with the virtio-net header; {@code offloads} asks the kernel for TSO/csum offload. */
    public static TapPort open(String name, boolean offloads) {
        return open(name, offloads, TapReceive.INLINE);
    }

    /**
     * As {@link #open(String, boolean)}, with the receiving stack of the frames this port writes run where
     * {@code receive} says (call before the TAP moves to another namespace).
     */
    public static TapPort open(String name, boolean offloads, TapReceive receive) {
        int flags = offloads ? TapDevice.TUN_F_CSUM | TapDevice.TUN_F_TSO4 | TapDevice.TUN_F_TSO6 | TapDevice.TUN_F_TSO_ECN : 0;
        TapDevice tap = TapDevice.open(name, true, flags, receive.tunFlags());
        try {
            receive.apply(tap.name());
        } catch (RuntimeException e) {
            tap.close();
            throw e;
        }
        return new TapPort(tap);
    }

    public TapDevice device() {
        return tap;
    }

    public String name() {
        return tap.name();
    }

    @Override
    public int poll(FrameHandler handler, int limit) {
        int n = 0;
        while (n < limit) {
            long r = tap.read(rxAddress, CAPACITY);
            if (r < 0) {
                if (r == -Errno.EAGAIN || r == -Errno.EINTR) {
                    break;
                }
                break; // EIO while the interface is down, EBADFD after close: nothing to read
            }
            n++;
            int len = (int) r - hdr;
            if (len < 0) {
                continue;
            }
            PacketMeta meta = hdr == 0 ? PacketMeta.NONE : rxMeta.readFrom(rx, 0);
            handler.onFrame(rx, hdr, len, meta);
        }
        return n;
    }

    @Override
    public boolean tryTransmit(DirectBuffer buffer, int offset, int length, PacketMeta meta) {
        if (hdr != 0) {
            meta.writeTo(tx.header(), 0, hdr);
        } else if (!meta.isPlain()) {
            return false;
        }
        long r = tx.write(tap.fd(), hdr, buffer, offset, length);
        if (r < 0) {
            writeErrors++;
            // EIO: the interface is down (no carrier); the frame is lost like on a real unplugged NIC.
            return r != -Errno.EAGAIN;
        }
        return true;
    }

    public long writeErrors() {
        return writeErrors;
    }

    @Override
    public boolean offloadCapable() {
        return hdr != 0;
    }

    @Override
    public boolean kernelQueue() {
        return true; // poll() is a read(2)/recv per call
    }

    @Override
    public int readinessFd() {
        return tap.fd();
    }

    @Override
    public void close() {
        tap.close();
    }
}
