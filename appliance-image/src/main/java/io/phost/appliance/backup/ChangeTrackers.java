package io.phost.appliance.backup;

import io.phost.appliance.run.Component;
import io.phost.storage.ChangeTracker;
import io.phost.storage.scsi.ScsiLun;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The change trackers of the disks that were ever backed up ({@code data_dir/rct/DISK.rct}): reopened and
 * attached to their LUNs before any partition starts, created at a disk's first backup, closed cleanly
 * only after every LUN writing to them has stopped (the wiring closes storage first). A disk that was never
 * backed up pays nothing on its write path.
 */
public final class ChangeTrackers implements Component {
    private final Path dir;
    private final Map<String, ChangeTracker> trackers = new ConcurrentHashMap<>();

    public ChangeTrackers(Path dataDir) {
        this.dir = dataDir.resolve("rct");
    }

    Path dir() {
        return dir;
    }

    Path bitmapFile(String disk) {
        return dir.resolve(disk + ".rct");
    }

    /** Marks a backup of {@code disk} in progress (its checkpoint's name), so a restart knows it never finished. */
    Path backupMarker(String disk) {
        return dir.resolve(disk + ".backup");
    }

    /**
     * Reattaches the tracker of each disk in {@code luns} (disk → its LUN) that has a bitmap file; a backup
     * left unfinished by the last run invalidates it (its cut changes are gone from the bitmap).
     */
    public void resume(Map<String, ScsiLun> luns) throws IOException {
        for (Map.Entry<String, ScsiLun> e : luns.entrySet()) {
            if (Files.exists(bitmapFile(e.getKey()))) {
                ChangeTracker t = attach(e.getKey(), e.getValue());
                if (Files.exists(backupMarker(e.getKey())) && t.invalidReason() == ChangeTracker.Reason.NONE) {
                    t.invalidate(ChangeTracker.Reason.BACKUP_INTERRUPTED);
                    t.persistIfChanged();
                }
            }
        }
    }

    /**
     * Reattaches the trackers of a partition added while the host runs (a live apply, a partition moved here
     * from a peer): before, it got them only at the next host start. Its disks may have been written where
     * this host's bitmap did not see it (on the peer it moved from, through a partition since removed), so a
     * bitmap that exists is invalidated: the next backup is full.
     */
    public void resumeAdded(Map<String, ScsiLun> luns) throws IOException {
        for (Map.Entry<String, ScsiLun> e : luns.entrySet()) {
            if (Files.exists(bitmapFile(e.getKey()))) {
                ChangeTracker t = attach(e.getKey(), e.getValue());
                t.invalidate(ChangeTracker.Reason.ADDED_LIVE);
                t.persistIfChanged();
            }
        }
    }

    /**
     * The tracker of {@code disk}, created at its first backup, attached to {@code lun} (again when a partition
     * added live brings a new LUN for a disk whose tracker is open).
     */
    synchronized ChangeTracker attach(String disk, ScsiLun lun) throws IOException {
        ChangeTracker t = trackers.get(disk);
        if (t == null) {
            Files.createDirectories(dir);
            t = ChangeTracker.open(bitmapFile(disk), lun.blocks() * lun.blockSize());
            trackers.put(disk, t);
        }
        lun.trackChanges(t);
        return t;
    }

    ChangeTracker get(String disk) {
        return trackers.get(disk);
    }

    /** {@code disk} changed behind its writes (a checkpoint applied): its next backup is full. */
    public void invalidate(String disk, ChangeTracker.Reason why) {
        ChangeTracker t = trackers.get(disk);
        if (t != null) {
            t.invalidate(why);
        }
    }

    @Override
    public String name() {
        return "change_tracking";
    }

    @Override
    public Object status() {
        Map<String, Object> m = new TreeMap<>();
        trackers.forEach((d, t) -> m.put(d, json(t)));
        return m;
    }

    static Map<String, Object> json(ChangeTracker t) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("generation", t.generation());
        m.put("generation_id", t.generationId().toString());
        ChangeTracker.Reason r = t.invalidReason();
        m.put("next_backup", r == ChangeTracker.Reason.NONE ? "incremental" : "full");
        m.put("reason", r.text);
        m.put("changed_bytes", t.dirtyBytes());
        m.put("granularity", ChangeTracker.GRANULARITY);
        m.put("file", t.path().toString());
        return m;
    }

    /** The clean stop of every bitmap (OPEN cleared): runs after the LUNs stopped writing. */
    @Override
    public void close() throws IOException {
        IOException first = null;
        for (ChangeTracker t : trackers.values()) {
            try {
                t.close();
            } catch (IOException e) {
                first = first == null ? e : first;
            }
        }
        if (first != null) {
            throw first;
        }
    }
}
