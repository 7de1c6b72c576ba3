package io.phost.perf.vswitch;

import io.phost.vswitch.FrameSink;
import io.phost.vswitch.PacketMeta;
import io.phost.vswitch.Port;
import io.phost.vswitch.PortConfig;
import io.phost.vswitch.PortKind;
import io.phost.vswitch.SwitchType;
import io.phost.vswitch.VSwitch;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import org.agrona.DirectBuffer;
import org.agrona.concurrent.UnsafeBuffer;

/**
 * Two vNIC ports on a private switch, each with a sink that copies the frame into a preallocated receive
 * buffer (the one copy into a guest's receive buffer that the real path makes), and a 64-byte frame each
 * way. Used by the JMH benchmark and by {@code phost bench switch}.
 */
public final class ForwardingRig {
    static final long MAC_A = 0x02_00_00_00_00_01L;
    static final long MAC_B = 0x02_00_00_00_00_02L;

    /** Copies each frame into its receive area, as the VMQ worker does into a guest buffer. */
    static final class CopySink implements FrameSink {
        final UnsafeBuffer rx = new UnsafeBuffer(ByteBuffer.allocateDirect(2048));
        long frames;

        @Override
        public boolean tryTransmit(DirectBuffer buffer, int offset, int length, PacketMeta meta) {
            rx.putBytes(0, buffer, offset, length);
            frames++;
            return true;
        }
    }

    public final VSwitch sw = new VSwitch("bench", SwitchType.PRIVATE);
    public final Port a;
    public final Port b;
    final CopySink sinkA = new CopySink();
    final CopySink sinkB = new CopySink();
    public final UnsafeBuffer aToB = frame(MAC_B, MAC_A);
    public final UnsafeBuffer bToA = frame(MAC_A, MAC_B);

    public ForwardingRig() {
        sw.tick(System.nanoTime());
        a = sw.addPort("a", PortKind.VNIC, PortConfig.vnic(MAC_A), sinkA, null);
        b = sw.addPort("b", PortKind.VNIC, PortConfig.vnic(MAC_B), sinkB, null);
    }

    private static UnsafeBuffer frame(long dst, long src) {
        UnsafeBuffer f = new UnsafeBuffer(ByteBuffer.allocateDirect(64));
        f.putShort(0, (short) (dst >>> 32), ByteOrder.BIG_ENDIAN);
        f.putInt(2, (int) dst, ByteOrder.BIG_ENDIAN);
        f.putShort(6, (short) (src >>> 32), ByteOrder.BIG_ENDIAN);
        f.putInt(8, (int) src, ByteOrder.BIG_ENDIAN);
        f.putShort(12, (short) 0x0800, ByteOrder.BIG_ENDIAN);
        f.putByte(14, (byte) 0x45);
        return f;
    }

    /** Forwards {@code pairs} frames each way (2 * pairs frames) on the calling thread. */
    public void forward(int pairs) {
        for (int i = 0; i < pairs; i++) {
            sw.receive(a, aToB, 0, 64);
            sw.receive(b, bToA, 0, 64);
        }
    }

    public long delivered() {
        return sinkA.frames + sinkB.frames;
    }
}
