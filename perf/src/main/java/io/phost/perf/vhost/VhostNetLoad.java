package io.phost.perf.vhost;

import io.phost.core.vhost.VhostUserDescriptor;
import io.phost.core.vhost.VhostUserFrontend;
import io.phost.core.vhost.VhostUserRequest;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;

/**
 * A virtio-net load generator standing in for two guests' drivers: fixed 64-byte frames from front-end A's
 * transmit queue to front-end B's receive queue, through whatever forwards between the two vhost-user
 * back-ends (phost's switch, or dpdk-testpmd in io mode). The same code drives both, so the ratio measures
 * the forwarders.
 * <pre>
 *   A.tx: 256 descriptors, each [12-byte virtio-net header][64-byte frame], all posted; every used one is
 *         posted again at once (the same frame)
 *   B.rx: 256 device-writable 2 KiB buffers, all posted; every used one counts a frame and is posted again
 *   one thread polls both used rings (no calls wanted: used_event is kept behind), kicks only when the
 *   back-end's avail_event asks for it (EVENT_IDX), as Linux's virtio_ring does
 * </pre>
 * Descriptors are written once; the loop touches only the avail and used rings and allocates nothing.
 */
final class VhostNetLoad {
    static final int RX_QUEUE = 0;
    static final int TX_QUEUE = 1;
    static final int HDR = 12;
    static final int FRAME = 64;
    static final int RING = 256;
    private static final int RX_BUFFER = 2048;
    private static final int DESC_F_WRITE = 2;
    /** VERSION_1, MRG_RXBUF (12-byte header, as Linux's virtio-net) and RING_EVENT_IDX. */
    static final long FEATURES = (1L << 32) | (1L << 15) | (1L << 29);
    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED;
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED;

    private final Ring tx;
    private final Ring rx;

    /**
     * Starts both queues of both front-ends (the back-ends run a device only when all its rings are set up)
     * and posts A's frames ({@code src} → {@code dst} MAC) and B's receive buffers.
     */
    VhostNetLoad(VhostUserFrontend a, VhostUserFrontend b, long srcMac, long dstMac) {
        a.startQueue(RX_QUEUE, RING);
        VhostUserFrontend.Queue aTx = a.startQueue(TX_QUEUE, RING);
        VhostUserFrontend.Queue bRx = b.startQueue(RX_QUEUE, RING);
        b.startQueue(TX_QUEUE, RING);
        byte[] frame = frame(srcMac, dstMac);
        tx = new Ring(a, aTx);
        rx = new Ring(b, bRx);
        for (int i = 0; i < RING; i++) {
            long buf = a.alloc(HDR + FRAME, 64);
            MemorySegment.copy(MemorySegment.ofArray(frame), 0, a.at(buf + HDR, FRAME), 0, FRAME);
            aTx.writeDescriptor(i, buf, HDR + FRAME, 0, 0);
            bRx.writeDescriptor(i, b.alloc(RX_BUFFER, 64), RX_BUFFER, DESC_F_WRITE, 0);
        }
        driverOk(a);
        driverOk(b);
        tx.postAll();
        rx.postAll();
    }

    /** SET_STATUS DRIVER_OK, as QEMU sends once the queues are set up: DPDK's vhost starts a device only then (PF_STATUS). */
    static void driverOk(VhostUserFrontend f) {
        if ((f.getU64(VhostUserRequest.GET_PROTOCOL_FEATURES) & (1L << VhostUserDescriptor.PF_STATUS)) != 0) {
            f.setU64(VhostUserRequest.SET_STATUS, 0x0F); // ACKNOWLEDGE | DRIVER | DRIVER_OK | FEATURES_OK
        }
    }

    /** An Ethernet frame of {@link #FRAME} bytes, EtherType 0x88b5 (local experimental), patterned payload. */
    static byte[] frame(long src, long dst) {
        byte[] f = new byte[FRAME];
        for (int i = 0; i < 6; i++) {
            f[i] = (byte) (dst >>> (8 * (5 - i)));
            f[6 + i] = (byte) (src >>> (8 * (5 - i)));
        }
        f[12] = (byte) 0x88;
        f[13] = (byte) 0xb5;
        for (int i = 14; i < FRAME; i++) {
            f[i] = (byte) i;
        }
        return f;
    }

    /** Pumps for {@code seconds}; returns the frames B received in that time. */
    long pump(double seconds) {
        long end = System.nanoTime() + (long) (seconds * 1e9);
        long received = 0;
        while (System.nanoTime() - end < 0) {
            int sent = tx.recycle();
            int got = rx.recycle();
            received += got;
            if (sent + got == 0) {
                Thread.onSpinWait();
            }
        }
        return received;
    }

    /** Waits up to {@code seconds} for B's first frame (the back-end may start its device late); false if none came. */
    boolean awaitFirstFrame(double seconds) {
        long end = System.nanoTime() + (long) (seconds * 1e9);
        while (System.nanoTime() - end < 0) {
            tx.recycle();
            if (rx.recycle() > 0) {
                return true;
            }
            Thread.onSpinWait();
        }
        return false;
    }

    /** Kick decision of virtio's EVENT_IDX: the back-end asked to be woken when the avail index passes {@code event}. */
    static boolean needEvent(int event, int newIdx, int oldIdx) {
        return ((newIdx - event - 1) & 0xFFFF) < ((newIdx - oldIdx) & 0xFFFF);
    }

    /** The driver's side of one split ring whose descriptor i is buffer i, posted again as soon as it is used. */
    private static final class Ring {
        private final VhostUserFrontend.Queue queue;
        private final MemorySegment avail;
        private final MemorySegment used;
        private int availIdx;
        private int lastUsed;

        Ring(VhostUserFrontend f, VhostUserFrontend.Queue q) {
            this.queue = q;
            this.avail = f.at(q.availAddress(), 6 + 2L * RING);
            this.used = f.at(q.usedAddress(), 6 + 8L * RING);
        }

        void postAll() {
            for (int i = 0; i < RING; i++) {
                avail.set(U16, 4 + 2L * i, (short) i);
            }
            publish(0, RING);
        }

        /** Posts again every buffer the back-end used since the last call; returns how many. */
        int recycle() {
            VarHandle.acquireFence();
            int usedIdx = used.get(U16, 2) & 0xFFFF;
            int n = (usedIdx - lastUsed) & 0xFFFF;
            if (n == 0) {
                return 0;
            }
            VarHandle.acquireFence(); // the elements after the index that covers them
            int old = availIdx;
            for (int k = 0; k < n; k++) {
                int id = used.get(U32, 4 + 8L * ((lastUsed + k) & (RING - 1)));
                avail.set(U16, 4 + 2L * ((old + k) & (RING - 1)), (short) id);
            }
            lastUsed = usedIdx;
            publish(old, n);
            return n;
        }

        private void publish(int old, int n) {
            availIdx = (old + n) & 0xFFFF;
            avail.set(U16, 4 + 2L * RING, (short) (lastUsed - 1)); // used_event behind us: no calls, we poll
            VarHandle.releaseFence(); // ring entries before the index that covers them
            avail.set(U16, 2, (short) availIdx);
            VarHandle.fullFence(); // StoreLoad: publish the index before reading avail_event
            int event = used.get(U16, 4 + 8L * RING) & 0xFFFF;
            if (needEvent(event, availIdx, old)) {
                queue.kick();
            }
        }
    }
}
