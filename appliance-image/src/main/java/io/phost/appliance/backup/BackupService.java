package io.phost.appliance.backup;

import io.phost.appliance.checkpoint.CheckpointException;
import io.phost.appliance.checkpoint.CheckpointHost;
import io.phost.appliance.checkpoint.CheckpointService;
import io.phost.storage.ChangeTracker;
import io.phost.storage.nbd.NbdDirtyBitmap;
import io.phost.storage.nbd.NbdServer;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.VirtualDisks;

import java.io.IOException;
import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Incremental backups of a running partition's disk (Hyper-V's Resilient Change Tracking):
 * <pre>
 *   start DISK   checkpoint of the partition (its writes go on in a new child); inside DISK's I/O pause the
 *                change bitmap is cut: the cut = blocks written since the last backup point (all of them
 *                when tracking was invalid: first backup, unclean stop, apply). The frozen image is exported
 *                read-only on its own NBD socket with the cut as qemu:dirty-bitmap:backup.
 *   finish DISK  export closed, the checkpoint deleted (its child merged back online, as checkpoint delete);
 *                --abandon gives the cut back to the bitmap (the next backup copies those blocks again)
 * </pre>
 * A marker file names the backup's checkpoint while it runs: a host that stops before finish invalidates the
 * bitmap at its next start (the cut's changes were never confirmed copied), and finish still cleans up.
 */
public final class BackupService {
    private static final Logger LOG = System.getLogger("phost.backup");
    /** The bitmap's name in the export's metadata context: {@code qemu:dirty-bitmap:backup}. */
    public static final String BITMAP = "backup";

    private final CheckpointHost host;
    private final CheckpointService checkpoints;
    private final ChangeTrackers trackers;
    private final Map<String, Running> running = new ConcurrentHashMap<>();

    private record Running(String partition, String checkpoint, ChangeTracker.Cut cut, VirtualDisk frozen, NbdServer server,
                           String uri, String started) {
    }

    public BackupService(CheckpointHost host, CheckpointService checkpoints, ChangeTrackers trackers) {
        this.host = host;
        this.checkpoints = checkpoints;
        this.trackers = trackers;
    }

    private String partitionOf(String disk) throws CheckpointException {
        if (disk == null || disk.isBlank()) {
            throw new CheckpointException(400, "disk=NAME is required");
        }
        for (String p : host.partitionNames()) {
            if (host.disksOf(p).contains(disk)) {
                if (!host.isVhdx(disk) && !host.isVhd(disk)) {
                    throw new CheckpointException(409, "disk '" + disk + "' is neither VHDX nor VHD: a backup point is a "
                        + "checkpoint, which needs a differencing child (.avhdx or .vhd); convert it with phost vhd convert");
                }
                return p;
            }
        }
        throw new CheckpointException(404, "no partition has a disk named '" + disk + "' (only a partition's disks are backed up)");
    }

    /** Takes a backup point of {@code disk} and exports it; returns {@link #status}. */
    public synchronized Map<String, Object> start(String disk) throws CheckpointException, IOException, InterruptedException {
        String partition = partitionOf(disk);
        if (running.containsKey(disk)) {
            throw new CheckpointException(409, "a backup of disk '" + disk + "' is in progress (checkpoint '"
                + running.get(disk).checkpoint() + "'); finish it first: phost backup finish " + disk);
        }
        if (Files.exists(trackers.backupMarker(disk))) {
            throw new CheckpointException(409, "a backup of disk '" + disk + "' started before the last restart was never "
                + "finished; run phost backup finish " + disk + " first");
        }
        ChangeTracker t = trackers.attach(disk, host.lun(partition, disk));
        String checkpoint = "backup-" + disk + "-" + System.currentTimeMillis();
        Files.writeString(trackers.backupMarker(disk), checkpoint + "\n");
        ChangeTracker.Cut[] cut = new ChangeTracker.Cut[1];
        Map<String, Object> ck;
        try {
            ck = checkpoints.create(partition, checkpoint, d -> {
                if (d.equals(disk)) {
                    cut[0] = t.cut(); // I/O paused and drained: every write is on one side of the point
                }
            });
        } catch (CheckpointException | IOException | RuntimeException e) {
            if (cut[0] != null) {
                t.restore(cut[0]);
            }
            Files.deleteIfExists(trackers.backupMarker(disk));
            throw e;
        }
        t.persistIfChanged();
        Path image = Path.of(String.valueOf(((Map<?, ?>) ck.get("images")).get(disk)));
        VirtualDisk frozen = VirtualDisks.open(image, true);
        NbdServer server;
        try {
            NbdDirtyBitmap bitmap = new NbdDirtyBitmap(BITMAP, cut[0]);
            server = NbdServer.unix(trackers.dir().resolve(disk + ".nbd.sock").toAbsolutePath(),
                List.of(new NbdServer.Export(disk, frozen, true).withDirtyBitmap(bitmap)));
        } catch (IOException | RuntimeException e) {
            frozen.close();
            throw e; // the checkpoint and the marker stay: finish cleans them up
        }
        Running r = new Running(partition, checkpoint, cut[0], frozen, server, server.uri(disk), Instant.now().toString());
        running.put(disk, r);
        LOG.log(Level.INFO, "backup started disk=" + disk + " checkpoint=" + checkpoint + " kind=" + kind(cut[0])
            + " changed_bytes=" + cut[0].dirtyBytes() + " uri=" + r.uri());
        return status(disk);
    }

    private static String kind(ChangeTracker.Cut c) {
        return c.full() ? "full" : "incremental";
    }

    /** Ends {@code disk}'s backup: export closed, its checkpoint merged away; {@code abandon} keeps its changes pending. */
    public Map<String, Object> finish(String disk, boolean abandon) throws CheckpointException, IOException, InterruptedException {
        String partition;
        String checkpoint;
        synchronized (this) {
            partition = partitionOf(disk);
            Running r = running.remove(disk);
            Path marker = trackers.backupMarker(disk);
            if (r != null) {
                checkpoint = r.checkpoint();
                r.server().close();
                r.frozen().close();
                if (abandon) {
                    trackers.get(disk).restore(r.cut());
                }
            } else if (Files.exists(marker)) {
                checkpoint = Files.readString(marker).strip(); // left by a run that stopped mid-backup
            } else {
                throw new CheckpointException(404, "no backup of disk '" + disk + "' is in progress");
            }
        }
        Map<?, ?> list = checkpoints.list(partition);
        boolean exists = ((List<?>) list.get("checkpoints")).stream().anyMatch(o -> checkpoint.equals(((Map<?, ?>) o).get("name")));
        if (exists) {
            checkpoints.delete(partition, checkpoint, true);
        }
        Files.deleteIfExists(trackers.backupMarker(disk));
        LOG.log(Level.INFO, "backup finished disk=" + disk + " checkpoint=" + checkpoint + " abandoned=" + abandon);
        Map<String, Object> out = status(disk);
        out.put("finished", checkpoint);
        return out;
    }

    /** The disk's tracking (generation, whether the next backup is full and why) and its running backup. */
    public Map<String, Object> status(String disk) throws CheckpointException {
        String partition = partitionOf(disk);
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("disk", disk);
        m.put("partition", partition);
        ChangeTracker t = trackers.get(disk);
        if (t == null) {
            Map<String, Object> none = new LinkedHashMap<>();
            none.put("next_backup", "full");
            none.put("reason", ChangeTracker.Reason.NEW.text);
            m.put("tracking", none);
        } else {
            m.put("tracking", ChangeTrackers.json(t));
        }
        Running r = running.get(disk);
        m.put("backup", r == null ? null : json(r));
        return m;
    }

    private static Map<String, Object> json(Running r) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("checkpoint", r.checkpoint());
        m.put("started", r.started());
        m.put("kind", kind(r.cut()));
        m.put("reason", r.cut().full() ? r.cut().reason().text : "changes since generation " + r.cut().generation()
            + " began (the previous backup point)");
        m.put("generation", r.cut().generation());
        m.put("changed_bytes", r.cut().dirtyBytes());
        m.put("uri", r.uri());
        m.put("bitmap", "qemu:dirty-bitmap:" + BITMAP);
        return m;
    }

    /** Every running backup, for /status. */
    public Map<String, Object> statusAll() {
        Map<String, Object> m = new LinkedHashMap<>();
        running.forEach((d, r) -> m.put(d, json(r)));
        return m;
    }

    /** The host stops: exports close; the backups' markers stay (the next start invalidates their bitmaps). */
    public synchronized void close() throws IOException {
        for (Running r : running.values()) {
            r.server().close();
            r.frozen().close();
        }
        running.clear();
    }
}
