package io.phost.core.vhost;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;

import static io.phost.core.vhost.VhostUserDescriptor.*;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Dirty-page logging for live migration, driven as QEMU drives it: SET_LOG_BASE with a memfd (LOG_SHMFD),
 * SET_VRING_ADDR with VHOST_VRING_F_LOG on a running ring, VHOST_F_LOG_ALL in the features. The back-end
 * must mark exactly the 4 KiB pages it wrote: the device-writable buffer (here straddling a page boundary)
 * and the used ring's entry, index and avail_event; not the page it only read. Without LOG_ALL nothing is marked.
 */
@Timeout(60)
class VhostUserDirtyLogTest {
    private static final long MEMORY = 4 << 20;

    @TempDir
    Path dir;
    private VhostUserBackend backend;
    private FrontendDirtyLog log;

    @BeforeEach
    void start() {
        backend = VhostUserBackend.start("dirty", dir.resolve("dirty.sock"), new EchoDevice(1));
    }

    @AfterEach
    void stop() {
        backend.close();
        if (log != null) {
            log.close();
        }
    }

    @Test
    void shouldMarkExactlyThePagesTheBackEndWroteWhileLogging() {
        try (VhostUserFrontend f = VhostUserFrontend.connect(backend.socketPath(), MEMORY)) {
            assertTrue((f.negotiate(~0L) & (1L << F_LOG_ALL)) != 0, "VHOST_F_LOG_ALL offered");
            assertTrue((f.getU64(VhostUserRequest.GET_PROTOCOL_FEATURES) & (1L << PF_LOG_SHMFD)) != 0, "LOG_SHMFD offered");
            Set<Long> marked = echoOnce(f, true);
            assertTrue(marked.containsAll(required), "marked " + marked + ", must include " + required
                + " (the written buffer's two pages, the used entry's and used.idx's)");
            Set<Long> allowed = new TreeSet<>(required);
            allowed.add(availEventPage); // written whenever the worker finds the ring empty (EVENT_IDX)
            assertTrue(allowed.containsAll(marked), "marked " + marked + ", only " + allowed + " were written");
        }
        assertEquals(null, backend.lastError());
    }

    @Test
    void shouldMarkNothingWithoutLogAll() {
        try (VhostUserFrontend f = VhostUserFrontend.connect(backend.socketPath(), MEMORY)) {
            f.negotiate(~(1L << F_LOG_ALL));
            assertEquals(Set.of(), echoOnce(f, false));
        }
    }

    private Set<Long> required;
    private long availEventPage;
    private long written;

    /** One echo of 16 bytes into a buffer that straddles a page boundary; returns the pages marked meanwhile. */
    private Set<Long> echoOnce(VhostUserFrontend f, boolean logUsedRing) {
        log = FrontendDirtyLog.attach(f);
        VhostUserFrontend.Queue q = f.startQueue(0, 8);
        if (logUsedRing) { // as QEMU at migration start: the running ring gets the log flag and the used ring's GPA
            log.logRing(q);
        }
        long src = f.alloc(4096, 4096);
        long pages = f.alloc(3 * 4096, 4096);
        written = pages + 4096 - 8;
        MemorySegment.copy(MemorySegment.ofArray(new byte[] {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}), 0, f.at(src, 16), 0, 16);
        required = new TreeSet<>(List.of(written >>> 12, (written >>> 12) + 1, (q.usedAddress() + 2) >>> 12,
            (q.usedAddress() + 4) >>> 12, (q.usedAddress() + 11) >>> 12));
        availEventPage = (q.usedAddress() + 4 + 8L * 8) >>> 12;
        log.clear();
        int head = q.add(new long[] {src, written}, new int[] {16, 16}, new boolean[] {false, true});
        q.kick();
        int[] used = q.awaitUsed(5_000);
        assertNotNull(used, "echo completed");
        assertEquals(head, used[0]);
        assertEquals(16, used[1]);
        assertEquals(16, f.at(written + 15, 1).get(ValueLayout.JAVA_BYTE, 0));
        Set<Long> marked = log.marked();
        assertTrue(!marked.contains(src >>> 12), "the page only read is not marked: " + marked);
        return marked;
    }
}
