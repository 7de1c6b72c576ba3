package io.phost.appliance.backup;

import io.phost.storage.ChangeTracker;
import io.phost.storage.backend.MemoryDisk;
import io.phost.storage.scsi.ScsiLun;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;

/**
 * A partition added while the host runs (a live apply, or moved here from a peer) brings new LUNs: they get
 * the tracker of their disk (before, only a host restart reattached them, so their writes went untracked), and
 * a bitmap that exists is invalidated, since the disk may have been written where it did not see.
 */
class ChangeTrackersTest {
    @TempDir
    Path dir;

    @Test
    void shouldAttachAndInvalidateTheTrackerOfADiskWhosePartitionWasAddedLive() throws Exception {
        ChangeTrackers tracking = new ChangeTrackers(dir);
        MemoryDisk disk = MemoryDisk.ram(1 << 20, 512, false);
        ScsiLun first = new ScsiLun("d0", disk);
        ChangeTracker t = tracking.attach("d0", first); // the disk's first backup
        t.cut();
        assertEquals(ChangeTracker.Reason.NONE, t.invalidReason());

        tracking.resumeAdded(Map.of("never-backed-up", new ScsiLun("other", disk)));
        ScsiLun again = new ScsiLun("d0", disk); // the partition removed, then added back (or moved back) live
        tracking.resumeAdded(Map.of("d0", again));

        assertSame(t, again.changeTracker(), "the new LUN writes untracked");
        assertEquals(ChangeTracker.Reason.ADDED_LIVE, t.invalidReason());
        assertNull(tracking.get("never-backed-up"), "a disk never backed up got a tracker");
        tracking.close();
    }
}
