package io.phost.core.vhost;

import io.phost.core.sys.Fd;
import io.phost.core.sys.SharedMemory;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Set;
import java.util.TreeSet;

import static io.phost.core.vhost.VhostUserDescriptor.FLAG_NEED_REPLY;
import static io.phost.core.vhost.VhostUserDescriptor.VRING_ADDR_LENGTH;
import static io.phost.core.vhost.VhostUserDescriptor.VRING_F_LOG;

/**
 * The dirty log a migrating VMM hands a back-end, on the side of the test front-end ({@link VhostUserFrontend}),
 * set up the way QEMU does it at migration start, so the dirty-log tests of every device share one recipe:
 * <pre>
 *   try (FrontendDirtyLog log = FrontendDirtyLog.attach(f)) {  // SET_LOG_BASE with a memfd (LOG_SHMFD)
 *       log.logRing(q);                                        // SET_VRING_ADDR with VHOST_VRING_F_LOG
 *       log.clear();  byte[] before = log.snapshot();
 *       ... requests ...
 *       assertEquals(log.changedSince(before), log.marked());  // 4 KiB guest-physical page numbers
 *   }
 * </pre>
 */
public final class FrontendDirtyLog implements AutoCloseable {
    /** One bit per 4 KiB page of guest-physical space up to 2 GiB (the front-end's memory sits at 1 GiB). */
    public static final long BYTES = (2L << 30) / 4096 / 8;
    private static final int REPLY_MILLIS = 5_000;

    private final VhostUserFrontend frontend;
    private final int fd;
    private final MemorySegment log;

    private FrontendDirtyLog(VhostUserFrontend frontend, int fd, MemorySegment log) {
        this.frontend = frontend;
        this.fd = fd;
        this.log = log;
    }

    /** A new log, all clear, sent to {@code f}'s back-end with SET_LOG_BASE; returns once it replied (QEMU waits). */
    public static FrontendDirtyLog attach(VhostUserFrontend f) {
        int fd = SharedMemory.createUnsealed("phost-test-log", BYTES);
        MemorySegment log = SharedMemory.mapShared(fd, 0, BYTES);
        FrontendDirtyLog l = new FrontendDirtyLog(f, fd, log);
        try {
            MemorySegment p = MemorySegment.ofArray(new byte[16]); // size, offset 0
            p.set(ValueLayout.JAVA_LONG_UNALIGNED, 0, BYTES);
            f.send(VhostUserRequest.SET_LOG_BASE, 0, p, fd);
            long answered = f.reply(VhostUserRequest.SET_LOG_BASE, REPLY_MILLIS).byteSize();
            if (answered != 0) {
                throw new IllegalStateException("SET_LOG_BASE answered with " + answered + " bytes of payload, not none");
            }
        } catch (RuntimeException e) {
            l.close();
            throw e;
        }
        return l;
    }

    /**
     * SET_VRING_ADDR for the running ring {@code q} with VHOST_VRING_F_LOG and the address to log (the used ring's; for
     * a packed ring QEMU sends the device area's), as QEMU sends it at migration start; checks the back-end's ack.
     */
    public void logRing(VhostUserFrontend.Queue q) {
        MemorySegment a = MemorySegment.ofArray(new byte[VRING_ADDR_LENGTH]);
        a.set(ValueLayout.JAVA_INT_UNALIGNED, 0, q.index);
        a.set(ValueLayout.JAVA_INT_UNALIGNED, 4, VRING_F_LOG);
        a.set(ValueLayout.JAVA_LONG_UNALIGNED, 8, frontend.userAddress(q.descriptorAddress(0)));
        a.set(ValueLayout.JAVA_LONG_UNALIGNED, 16, frontend.userAddress(q.usedAddress()));
        a.set(ValueLayout.JAVA_LONG_UNALIGNED, 24, frontend.userAddress(q.availAddress()));
        a.set(ValueLayout.JAVA_LONG_UNALIGNED, 32, q.usedAddress());
        frontend.send(VhostUserRequest.SET_VRING_ADDR, FLAG_NEED_REPLY, a);
        long status = frontend.reply(VhostUserRequest.SET_VRING_ADDR, REPLY_MILLIS).get(ValueLayout.JAVA_LONG_UNALIGNED, 0);
        if (status != 0) {
            throw new IllegalStateException("SET_VRING_ADDR with VHOST_VRING_F_LOG for queue " + q.index + " refused: " + status);
        }
    }

    /** Clears every bit (the back-end's marks so far). */
    public void clear() {
        log.fill((byte) 0);
    }

    /** The guest-physical page numbers (address >>> 12) whose bits are set. */
    public Set<Long> marked() {
        Set<Long> pages = new TreeSet<>();
        for (long b = 0; b < BYTES; b += 8) {
            for (long w = log.get(ValueLayout.JAVA_LONG_UNALIGNED, b); w != 0; w &= w - 1) {
                pages.add(b * 8 + Long.numberOfTrailingZeros(w));
            }
        }
        return pages;
    }

    /** A copy of all of the front-end's guest memory, for {@link #changedSince}. */
    public byte[] snapshot() {
        return frontend.memory().toArray(ValueLayout.JAVA_BYTE);
    }

    /** The guest-physical page numbers in which a byte differs between {@code before} and guest memory now. */
    public Set<Long> changedSince(byte[] before) {
        byte[] after = snapshot();
        Set<Long> pages = new TreeSet<>();
        for (int i = 0; i < before.length; i++) {
            if (before[i] != after[i]) {
                pages.add((VhostUserFrontend.GPA_BASE + i) >>> 12);
                i |= 4095; // on to the next page
            }
        }
        return pages;
    }

    @Override
    public void close() {
        SharedMemory.unmap(log);
        Fd.close(fd);
    }
}
