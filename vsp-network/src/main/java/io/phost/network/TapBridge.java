package io.phost.network;

import io.phost.core.sys.NetSyscalls;
import io.phost.core.sys.TapDevice;
import io.phost.core.vmbus.VmbusClient;
import io.phost.vswitch.FrameSink;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.time.Duration;

/**
 * The child side's bridge (what {@code phost guest net} runs): a TAP device in the partition's network
 * namespace on one side, a synthetic NIC on the other, so the real Linux stack's frames travel over VMBus
 * to the switch. One thread; it sleeps in poll(2) on the TAP fd and the host's doorbell eventfd.
 * <pre>
 *   TAP read ──▶ send-buffer section ──▶ NetVsc.queueSendInPlace only while a section is free: the TAP queue
 *                                                           holds the rest (back-pressure, no drop here);
 *                                                           published to the host in bursts (SEND_BURST)
 *   NetVsc.poll ──▶ recv-buffer section ──▶ TAP write
 * </pre>
 * With offloads ({@link #openNic}; IFF_VNET_HDR + TUNSETOFFLOAD on the TAP, {@link NetVsc#openWithOffloads} on
 * the NIC) both sides speak the same per-frame virtio_net_hdr, so a 64 KiB TSO super-frame with a partial
 * checksum crosses as one read, one copy, one VMBus message and one write, unsegmented.
 */
public final class TapBridge implements Runnable, AutoCloseable {
    /**
     * Busy-polling after the last frame before sleeping in poll(2): long enough to catch a frame already on its
     * way, short enough that the read(2) calls it makes do not take the CPU the partition's own stack needs. Every
     * spin round reads the TAP (a system call), so the spin is paid in empty reads: at 50 µs this thread made
     * 245-445 read(2) per MB of TCP (10-20 per 64 KiB frame, most of them empty) and used 0.44-0.55 CPU-s per GB;
     * at 10 µs, 92-201 per MB and 0.36-0.44 CPU-s per GB, with the host's other threads unchanged (three
     * interleaved pairs of {@code phost bench switch}'s host point at load 13-25; docs/benchmarks.md, issue 12,
     * tenth session). It was 1,000 iterations, ~1-2 ms of read(2), before the eighth session.
     */
    static final long SPIN_NANOS = 10_000;
    private static final int SHORT_NAPS = 50;
    private static final int IDLE_WAIT_MILLIS = 200;
    private final NetVsc vsc;
    private final TapDevice tap;
    /** The TAP's carrier as last set (a TAP starts with carrier on). */
    private boolean carrier = true;
    private final MemorySegment frame = Arena.ofShared().allocate(NvspDescriptor.GSO_SECTION_SIZE, 64);
    private final MemorySegment pollFds = Arena.ofShared().allocate(16, 8);
    private volatile boolean running = true;
    private final NetVsc.FrameReceiver toTap = this::toTap;
    private long tapWriteErrors;

    public TapBridge(NetVsc vsc, TapDevice tap) {
        if (tap.vnetHeader() != vsc.offloadHeader()) {
            throw new IllegalArgumentException(tap.vnetHeader()
                ? "the NIC moves plain frames: open the TAP without a vnet header"
                : "the NIC carries a per-frame header: open the TAP with IFF_VNET_HDR");
        }
        this.vsc = vsc;
        this.tap = tap;
        pollFds.set(ValueLayout.JAVA_INT, 0, tap.fd());
        pollFds.set(ValueLayout.JAVA_SHORT, 4, NetSyscalls.POLLIN);
        pollFds.set(ValueLayout.JAVA_INT, 8, vsc.channel().hostDoorbellFd());
        pollFds.set(ValueLayout.JAVA_SHORT, 12, NetSyscalls.POLLIN);
    }

    /** What a TAP opened with {@link #TAP_OFFLOADS} finishes (FrameSink.OFFLOAD_* bits for the NIC's caps). */
    public static final int NIC_OFFLOADS = FrameSink.OFFLOAD_TAP;
    /** TUNSETOFFLOAD bits: the partition's stack hands over and takes TSO super-frames with partial checksums. */
    public static final int TAP_OFFLOADS = TapDevice.TUN_F_CSUM | TapDevice.TUN_F_TSO4 | TapDevice.TUN_F_TSO6
        | TapDevice.TUN_F_TSO_ECN;

    /** The NIC with offloads, for a TAP opened with IFF_VNET_HDR and {@link #TAP_OFFLOADS}. */
    public static NetVsc openNic(VmbusClient bus, int index, boolean offloads, Duration timeout) {
        return offloads ? NetVsc.openWithOffloads(bus, index, NIC_OFFLOADS, timeout) : NetVsc.open(bus, index, timeout);
    }

    private void toTap(MemorySegment memory, long offset, int length) {
        if (tap.write(memory.address() + offset, length) < 0) {
            tapWriteErrors++;
        }
    }

    /**
     * Frames read from the TAP in one go published to the host together (one write_index store and fence per
     * burst, {@link NetVsc#queueSendInPlace}). The first frame of a cycle goes at once: a lone frame (a ping)
     * waits for no further read(2), and the host starts on it while we read the rest.
     */
    static final int SEND_BURST = 8;

    /** One duty cycle; returns the work done. */
    public int doWork() {
        int work = 0;
        while (vsc.canSend()) {
            // Straight into the next send section (shared with the host): one copy fewer than via `frame`.
            long section = vsc.nextSendAddress();
            long n = section != 0 ? tap.read(section, vsc.sendSectionSize())
                : tap.read(frame.address(), (int) frame.byteSize());
            if (n <= 0) {
                break;
            }
            if (section != 0 ? vsc.queueSendInPlace((int) n) : vsc.queueSend(frame, 0, (int) n)) {
                if (work++ % SEND_BURST == 0) {
                    vsc.flush(); // the cycle's first frame, then every SEND_BURST-th
                }
            } else {
                break; // ring full: this frame is lost, like a full NIC queue; TCP recovers
            }
        }
        vsc.flush(); // the TAP ran dry (or no section / ring space is left): publish the rest
        work += vsc.poll(toTap, 64);
        boolean link = vsc.linkUp();
        if (link != carrier) {
            tap.setCarrier(link); // the host's media status indication, as the partition's stack sees a link
            carrier = link;
            work++;
        }
        return work;
    }

    @Override
    public void run() {
        int naps = 0;
        long lastWork = System.nanoTime();
        while (running && vsc.channel().isOpen()) {
            if (doWork() > 0) {
                naps = 0;
                lastWork = System.nanoTime();
                continue;
            }
            if (naps == 0 && System.nanoTime() - lastWork < SPIN_NANOS) {
                Thread.onSpinWait();
                continue;
            }
            naps = Math.min(naps + 1, SHORT_NAPS + 1); // capped: never wraps
            int ready = 1;
            if (vsc.channel().inbound().armInterrupt()) {
                // Sleep until the TAP has a frame or the host signals. Right after traffic, in 1 ms naps (a
                // missed edge costs at most 1 ms while a flow is on); once quiet, in long sleeps whose timeout
                // only bounds how late close() is noticed. Without a free send section, wait for the host only
                // (its completions free them).
                int wait = naps <= SHORT_NAPS ? 1 : IDLE_WAIT_MILLIS;
                if (vsc.canSend()) {
                    ready = NetSyscalls.poll(pollFds.address(), 2, wait);
                } else {
                    ready = NetSyscalls.poll(pollFds.address() + 8, 1, wait);
                }
            }
            vsc.channel().inbound().maskInterrupts();
            vsc.channel().clearHostDoorbell();
            // Woken by a frame: spin again (more are likely). Timed out: nap again without spinning (spinning
            // after every 1 ms nap was ~1,000 read(2) calls per millisecond: a third of a core while idle).
            if (ready > 0) {
                naps = 0;
                lastWork = System.nanoTime();
            }
        }
    }

    public long tapWriteErrors() {
        return tapWriteErrors;
    }

    @Override
    public void close() {
        running = false;
    }
}
