package io.phost.storage.vhost;

import io.phost.core.vhost.FrontendDirtyLog;
import io.phost.core.vhost.VhostUserDescriptor;
import io.phost.core.vhost.VhostUserFrontend;
import io.phost.vhdx.RawDisk;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;
import java.util.Set;
import java.util.TreeSet;

import static io.phost.storage.vhost.VirtioBlkDescriptor.*;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Dirty logging for live migration with a packed ring on vhost-user-blk, as QEMU runs {@code packed=on}
 * (INFLIGHT_SHMFD region, then LOG_ALL, SET_LOG_BASE and SET_VRING_ADDR with VHOST_VRING_F_LOG). Reads of several
 * sizes and alignments (and one write) go through a 64-entry ring until it wrapped twice; the pages whose bytes
 * changed meanwhile (a snapshot of all guest memory before, compared after) must be exactly the pages marked in
 * the log: the read buffers, the status byte's page, the descriptor ring's used elements; a written buffer, only
 * read by the back-end, is not marked.
 */
@Timeout(120)
class VhostUserBlkPackedDirtyLogTest {
    private static final long SIZE = 16L << 20;
    /** Every feature (not {@code ~0L}, which the test driver answers with split rings). */
    private static final long PACKED_WITH_LOG = ~0L & ~(1L << 63);

    @TempDir
    Path dir;

    @Test
    void shouldMarkEveryPageABlkReadAndItsUsedElementsChangedOnAPackedRing() throws Exception {
        Path image = dir.resolve("disk.raw");
        byte[] content = new byte[(int) SIZE];
        new Random(14).nextBytes(content);
        Files.write(image, content);
        try (RawDisk disk = RawDisk.openFile(image, false, false);
             VhostUserBlkExport e = VhostUserBlkExport.start("pblklog", disk, dir.resolve("pblklog.sock"),
                 VhostUserBlkExport.Options.defaults().withQueues(1));
             VhostUserFrontend f = VhostUserFrontend.connect(e.socketPath(), 8 << 20)) {
            long features = f.negotiate(PACKED_WITH_LOG);
            long both = (1L << VhostUserDescriptor.F_RING_PACKED) | (1L << VhostUserDescriptor.F_LOG_ALL);
            assertEquals(both, features & both, "packed ring and LOG_ALL negotiated together: 0x" + Long.toHexString(features));
            f.getInflight(1, 64);
            try (FrontendDirtyLog log = FrontendDirtyLog.attach(f)) {
                readAndCompare(f, log, content);
            }
            assertNull(e.lastError());
        }
    }

    /** 50 reads of several sizes and a write through a packed ring of 64 that wraps twice; marked must equal changed. */
    private static void readAndCompare(VhostUserFrontend f, FrontendDirtyLog log, byte[] content) {
        VhostUserFrontend.Queue ring = f.startQueue(0, 64);
        assertTrue(ring.packed);
        log.logRing(ring);
        VhostUserBlkTest.Blk blk = new VhostUserBlkTest.Blk(f, ring);
        int[] lengths = {512, 4096, 8192 + 512, 64 << 10, 4096, 1024};
        long[] buffers = new long[lengths.length];
        for (int i = 0; i < lengths.length; i++) {
            buffers[i] = f.alloc(lengths[i] + 4096, 512) + (i % 2 == 0 ? 0 : 4096 - 512); // odd ones straddle a page
        }
        long written = f.alloc(4096, 4096);
        f.at(written, 4096).fill((byte) 0x5A);
        log.clear();
        byte[] before = log.snapshot();
        Set<Long> expected = new TreeSet<>();
        int requests = 0;
        while (requests < 50) { // 3 descriptors each: the 64-slot ring wraps twice
            int i = requests % lengths.length;
            long sector = (requests * 37L) % (SIZE / 512 - 256);
            int[] r = blk.request(T_IN, sector, buffers[i], lengths[i], true);
            assertArrayEquals(new int[] {S_OK, lengths[i] + 1}, r, "read " + requests);
            assertArrayEquals(java.util.Arrays.copyOfRange(content, (int) (sector * 512), (int) (sector * 512) + lengths[i]),
                f.at(buffers[i], lengths[i]).toArray(ValueLayout.JAVA_BYTE), "read " + requests + " data");
            for (long page = buffers[i] >>> 12; page <= (buffers[i] + lengths[i] - 1) >>> 12; page++) {
                expected.add(page);
            }
            requests++;
        }
        assertArrayEquals(new int[] {S_OK, 1}, blk.request(T_OUT, 8, written, 4096, false), "the write");
        Set<Long> changed = log.changedSince(before);
        Set<Long> marked = log.marked();
        expected.add(ring.descriptorAddress(0) >>> 12);
        expected.add(ring.descriptorAddress(63) >>> 12);
        assertTrue(marked.containsAll(expected), "marked " + marked + " must hold every read buffer's and the ring's pages " + expected);
        assertTrue(!marked.contains(written >>> 12), "the written buffer was only read by the back-end: " + marked);
        assertEquals(changed, marked, "the pages marked are exactly the pages changed");
    }
}
