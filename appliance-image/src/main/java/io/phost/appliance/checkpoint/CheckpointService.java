package io.phost.appliance.checkpoint;

import io.phost.core.partition.ChildPartition;
import io.phost.core.partition.PartitionState;
import io.phost.core.vm.VmPartition;
import io.phost.storage.checkpoint.LunDiskSwitch;
import io.phost.storage.rbd.RbdDisk;
import io.phost.storage.scsi.ScsiLun;
import io.phost.vhdx.CreateOptions;
import io.phost.vhdx.DiskFormat;
import io.phost.vhdx.DiskType;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.VirtualDisks;
import io.phost.vhdx.vhd.VhdDisk;
import io.phost.vhdx.vhdx.VhdxDisk;
import io.phost.vhdx.ops.DiskOps;
import io.phost.vhdx.ops.OnlineMerge;

import java.io.IOException;
import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Production checkpoints of running partitions: create (each disk switched to a differencing child, .avhdx
 * under a VHDX or .vhd under a VHD, under a short I/O pause), apply (revert: the partition is stopped and each disk gets a new child of the
 * checkpoint's image), delete (the checkpoint's single child image merged into its image online, in the
 * background) and export (a standalone VHDX of the checkpoint). State changes are saved atomically before
 * the LUN runs on what they describe, so a crash leaves the partition on a complete chain.
 * <p>Over ~600 lines because create/apply/delete/export and their crash recovery share one persisted state
 * and one ordering rule per disk format (VHDX, VHD, RBD); each format's step is a short method here.
 */
public final class CheckpointService {
    private static final Logger LOG = System.getLogger("phost.checkpoint");
    static final long DRAIN_MILLIS = 10_000;
    static final String CRASH_CONSISTENT = "crash-consistent";
    static final String APPLICATION_CONSISTENT = "application-consistent";
    /** A standard checkpoint's: the VM's disks, devices and memory at one stopped moment. */
    static final String RUNNING_STATE = "running-state";

    private final CheckpointHost host;
    private final Path dataDir;
    private final Map<String, CheckpointState> states = new ConcurrentHashMap<>();
    private final Map<String, MergeProgress> merges = new ConcurrentHashMap<>();
    private final PauseStats pauses = new PauseStats();

    /** A background delete's progress, for list and /status. */
    static final class MergeProgress {
        final String checkpoint;
        volatile long done;
        volatile long total;
        volatile String phase = "staging";
        volatile String error;

        MergeProgress(String checkpoint) {
            this.checkpoint = checkpoint;
        }
    }

    public CheckpointService(CheckpointHost host, Path dataDir) {
        this.host = host;
        this.dataDir = dataDir;
    }

    public PauseStats pauses() {
        return pauses;
    }

    private CheckpointStore store(String partition) {
        return new CheckpointStore(dataDir, partition);
    }

    private CheckpointState state(String partition) throws IOException {
        CheckpointState s = states.get(partition);
        if (s == null) {
            s = store(partition).load(partition);
            states.put(partition, s);
        }
        return s;
    }

    private ChildPartition checkedPartition(String name) throws CheckpointException {
        ChildPartition p = host.partition(name);
        if (p == null) {
            throw new CheckpointException(404, "no partition named '" + name + "'");
        }
        List<String> disks = host.disksOf(name);
        if (disks.isEmpty()) {
            throw new CheckpointException(409, "partition '" + name + "' has no disks to checkpoint");
        }
        boolean rbd = onRbd(name);
        for (String d : disks) {
            if ((host.rbdDisk(d) != null) != rbd) {
                throw new CheckpointException(409, "partition '" + name + "' has disks on RBD and disks in image files: a "
                    + "checkpoint takes RBD snapshots of all its disks or differencing children of all of them");
            }
            if (!rbd && !host.isVhdx(d) && !host.isVhd(d)) {
                throw new CheckpointException(409, "disk '" + d + "' of partition '" + name + "' is neither VHDX nor VHD: "
                    + "a checkpoint needs a differencing child (.avhdx or .vhd); convert it with phost vhd convert");
            }
            String other = host.otherExport(d);
            if (other != null) {
                // That export holds the open image: switching it under the LUN alone would leave it on a closed file.
                throw new CheckpointException(409, "disk '" + d + "' of partition '" + name + "' cannot be checkpointed: " + other);
            }
        }
        if (merges.containsKey(name)) {
            throw new CheckpointException(409, "partition '" + name + "' is merging checkpoint '"
                + merges.get(name).checkpoint + "'; wait for the delete to finish");
        }
        return p;
    }

    /** The partition's disks are RBD images: its checkpoints are RBD snapshots ({@link #checkedPartition} forbids a mix). */
    private boolean onRbd(String partition) {
        return host.rbdDisk(host.disksOf(partition).getFirst()) != null;
    }

    /** The RBD snapshot that holds checkpoint {@code checkpoint} of {@code partition} on each of its disks. */
    static String snapshotName(String partition, String checkpoint) {
        return "phost." + partition + "." + checkpoint;
    }

    private String leaf(CheckpointState s, String disk) {
        return s.leaves.getOrDefault(disk, host.configuredPath(disk).toAbsolutePath().toString());
    }

    // ------------------------------------------------------------------------------------------ create

    /** Takes production checkpoint {@code name} of partition {@code partition} (running or not). */
    public Map<String, Object> create(String partition, String name) throws CheckpointException, IOException,
        InterruptedException {
        return create(partition, name, false);
    }

    /**
     * Takes checkpoint {@code name}; {@code standard}: of a running VM, with its device and memory state (see
     * {@link #createStandard}), else a production checkpoint.
     */
    public Map<String, Object> create(String partition, String name, boolean standard) throws CheckpointException,
        IOException, InterruptedException {
        return standard ? createStandard(partition, name) : create(partition, name, disk -> { });
    }

    /**
     * Takes a checkpoint and calls {@code atPause} with each disk's name while that disk's I/O is paused and
     * drained, before it goes on with its new child (a backup point cuts the disk's change bitmap there).
     */
    public synchronized Map<String, Object> create(String partition, String name, java.util.function.Consumer<String> atPause)
        throws CheckpointException, IOException, InterruptedException {
        ChildPartition p = checkedPartition(partition);
        requireName(name);
        CheckpointState s = state(partition);
        if (s.checkpoint(name) != null) {
            throw new CheckpointException(409, "partition '" + partition + "' already has a checkpoint named '" + name + "'");
        }
        // Production checkpoint: the guest freezes around the switch (a VM's file systems through its agent, a
        // process partition's writes through its backup integration service). A guest that cannot (no agent or
        // service, no answer, a refusal, not running) gives a crash-consistent checkpoint: what was written and
        // completed before the pause, as after a power cut; the answer says why.
        Quiesce frozen = quiesce(p);
        List<Long> pauseNanos;
        CheckpointState.Checkpoint c;
        try {
            c = newCheckpoint(s, name, frozen.consistent() ? APPLICATION_CONSISTENT : CRASH_CONSISTENT);
            c.consistencyReason = frozen.consistent() ? null : frozen.reason(); // saved with it: listings say why too
            pauseNanos = switchAll(s, partition, c, atPause);
        } finally {
            frozen.thaw().run();
        }
        return finishCreate(s, p, c, pauseNanos);
    }

    private static CheckpointState.Checkpoint newCheckpoint(CheckpointState s, String name, String consistency) {
        CheckpointState.Checkpoint c = new CheckpointState.Checkpoint(name, Instant.now().toString(), s.current, consistency, Map.of());
        c.pending = true; // until every disk switched: a start drops a pending checkpoint
        s.checkpoints.add(c);
        return c;
    }

    /** Switches every disk of {@code partition} to a new child (or RBD snapshot) for {@code c}; returns each pause. */
    private List<Long> switchAll(CheckpointState s, String partition, CheckpointState.Checkpoint c,
                                 java.util.function.Consumer<String> atPause) throws IOException, InterruptedException {
        List<Long> pauseNanos = new ArrayList<>();
        boolean rbd = onRbd(partition);
        try {
            for (String disk : host.disksOf(partition)) {
                if (rbd) {
                    String snapshot = snapshotName(partition, c.name);
                    pauseNanos.add(snapshotUnderPause(partition, disk, snapshot, () -> atPause.accept(disk)));
                    c.images.put(disk, "rbd:" + host.rbdDisk(disk).options().spec() + "@" + snapshot);
                    continue;
                }
                Path parent = Path.of(leaf(s, disk));
                pauseNanos.add(switchToNewChild(s, partition, disk, parent, () -> c.images.put(disk, parent.toString()),
                    () -> atPause.accept(disk)));
            }
        } catch (IOException | RuntimeException e) {
            dropFailed(s, partition, c, e);
            throw e;
        }
        return pauseNanos;
    }

    /** A create that failed: the checkpoint goes (disks already switched stay on their valid new children). */
    private void dropFailed(CheckpointState s, String partition, CheckpointState.Checkpoint c, Exception e) throws IOException {
        s.checkpoints.remove(c);
        store(partition).save(s);
        if (onRbd(partition)) {
            removeSnapshots(partition, c.name, e);
        }
    }

    private Map<String, Object> finishCreate(CheckpointState s, ChildPartition p, CheckpointState.Checkpoint c,
                                             List<Long> pauseNanos) throws IOException {
        s.current = c.name;
        c.pending = false;
        store(p.name()).save(s);
        LOG.log(Level.INFO, "checkpoint created partition=" + p.name() + " checkpoint=" + c.name + " state=" + p.state()
            + (c.vmState != null ? " type=standard" : "") + " pause_us=" + pauseNanos.stream().map(n -> Long.toString(n / 1000)).toList());
        Map<String, Object> out = json(s, c);
        out.put("pause_us", pauseNanos.stream().map(n -> n / 1000).toList());
        return out;
    }

    /**
     * A standard checkpoint of a running (or paused) VM: its device and memory state too, so apply brings it back
     * to the exact moment. The VM is stopped (QMP {@code stop}: vCPUs halt, the vhost-user queues drain and stop),
     * each disk switches to its new child at that same moment, QEMU writes its migration stream to
     * {@code CHECKPOINT.vmstate.tmp} (fsynced, then renamed), the checkpoint is recorded, and the VM continues.
     * The guest is not frozen: nothing of it runs between the disks' cut and the memory's.
     */
    private synchronized Map<String, Object> createStandard(String partition, String name) throws CheckpointException,
        IOException, InterruptedException {
        ChildPartition p = checkedPartition(partition);
        requireName(name);
        if (!(p instanceof VmPartition vm)) {
            throw new CheckpointException(409, "partition '" + partition + "' is a process partition: standard checkpoints "
                + "(memory state) are for VM partitions; take a production checkpoint");
        }
        if (p.state() != PartitionState.RUNNING && p.state() != PartitionState.PAUSED) {
            throw new CheckpointException(409, "partition '" + partition + "' is " + p.state().name().toLowerCase(java.util.Locale.ROOT)
                + ": a standard checkpoint saves a running VM's memory; take a production checkpoint of its disks");
        }
        CheckpointState s = state(partition);
        if (s.checkpoint(name) != null) {
            throw new CheckpointException(409, "partition '" + partition + "' already has a checkpoint named '" + name + "'");
        }
        CheckpointStore store = store(partition);
        boolean wasRunning = p.state() == PartitionState.RUNNING;
        if (wasRunning) {
            vm.pause();
        }
        long t0 = System.nanoTime();
        try {
            CheckpointState.Checkpoint c = newCheckpoint(s, name, RUNNING_STATE);
            List<Long> pauseNanos = switchAll(s, partition, c, disk -> { });
            Path file = store.vmState(name);
            Path tmp = Path.of(file + ".tmp");
            try {
                Files.deleteIfExists(tmp);
                vm.saveState(tmp);
                try (io.phost.core.sys.PosixFile f = io.phost.core.sys.PosixFile.open(tmp, false)) {
                    f.sync();
                }
                Files.move(tmp, file, java.nio.file.StandardCopyOption.ATOMIC_MOVE, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
            } catch (IOException | RuntimeException e) {
                Files.deleteIfExists(tmp);
                dropFailed(s, partition, c, e);
                throw e;
            }
            c.vmState = file.toString();
            Map<String, Object> out = finishCreate(s, p, c, pauseNanos);
            out.put("vm_state_bytes", Files.size(file));
            out.put("vm_stopped_ms", (System.nanoTime() - t0) / 1_000_000);
            return out;
        } finally {
            if (wasRunning) {
                vm.resume();
            }
        }
    }

    /**
     * Takes RBD snapshot {@code snapshot} of {@code disk} inside the same I/O pause as a differencing switch: new
     * commands wait, those in flight finish, the image is flushed, the snapshot is taken, I/O resumes. A snapshot
     * of that name left by a create that crashed before its state was saved (the state has no such checkpoint) is
     * replaced. Returns the pause.
     */
    private long snapshotUnderPause(String partition, String disk, String snapshot, Runnable atPause)
        throws IOException, InterruptedException {
        RbdDisk rbd = host.rbdDisk(disk);
        rbd.removeSnapshot(snapshot);
        ScsiLun lun = host.lun(partition, disk);
        long t0 = System.nanoTime();
        try {
            if (!lun.pauseIo(DRAIN_MILLIS)) {
                throw new IOException("disk '" + disk + "': " + lun.inFlight() + " commands still executing after "
                    + DRAIN_MILLIS + " ms; no snapshot taken");
            }
            atPause.run();
            rbd.flush();
            rbd.createSnapshot(snapshot);
        } finally {
            lun.resumeIo();
        }
        long pause = System.nanoTime() - t0;
        pauses.record(pause);
        return pause;
    }

    /** Removes checkpoint {@code checkpoint}'s snapshots from every disk of {@code partition}; failures go to {@code into}. */
    private void removeSnapshots(String partition, String checkpoint, Exception into) {
        for (String disk : host.disksOf(partition)) {
            try {
                host.rbdDisk(disk).removeSnapshot(snapshotName(partition, checkpoint));
            } catch (IOException | RuntimeException e) {
                into.addSuppressed(e);
            }
        }
    }

    /** How long a guest has to answer a freeze or thaw, and how long it holds its writes at most (then thaws by itself). */
    static final java.time.Duration QUIESCE_ANSWER = java.time.Duration.ofSeconds(5);
    static final java.time.Duration QUIESCE_HOLD = java.time.Duration.ofSeconds(10);

    /** The guest's freeze for a checkpoint: {@code thaw} undoes it; a non-null {@code reason} says why there was none. */
    record Quiesce(Runnable thaw, String reason) {
        static Quiesce none(String reason) {
            return new Quiesce(() -> { }, reason);
        }

        boolean consistent() {
            return reason == null;
        }
    }

    /** Freezes a running guest: a VM's file systems through its guest agent, a process partition's writes through VSS. */
    private static Quiesce quiesce(ChildPartition p) {
        String why;
        if (p.state() != PartitionState.RUNNING) {
            why = "the partition is not running";
        } else if (p instanceof VmPartition vm) {
            why = vm.guestAgent() == null ? "the VM has no guest agent" : null;
            if (why == null) {
                try {
                    vm.freezeFileSystems();
                    return new Quiesce(() -> thaw(vm), null);
                } catch (RuntimeException e) {
                    why = "guest-fsfreeze-freeze failed: " + e.getMessage();
                }
            }
        } else if (p instanceof io.phost.core.partition.Partition proc) {
            why = proc.freezeWrites(QUIESCE_ANSWER, QUIESCE_HOLD);
            if (why == null) {
                return new Quiesce(() -> {
                    if (!proc.thawWrites(QUIESCE_ANSWER)) {
                        LOG.log(Level.ERROR, "thaw not confirmed after a checkpoint partition=" + p.name()
                            + " (the guest thaws by itself after " + QUIESCE_HOLD.toSeconds() + " s)");
                    }
                }, null);
            }
        } else {
            why = "this kind of partition has no freeze";
        }
        LOG.log(Level.WARNING, "checkpoint is crash-consistent partition=" + p.name() + " reason=\"" + why + "\"");
        return Quiesce.none(why);
    }

    private static void thaw(VmPartition vm) {
        try {
            vm.thawFileSystems();
        } catch (RuntimeException e) {
            // The agent thaws on its own when its freeze times out (qemu-ga's fsfreeze hook); say so loudly.
            LOG.log(Level.ERROR, "thaw failed after a checkpoint partition=" + vm.name() + " reason=\"" + e.getMessage() + "\"");
        }
    }

    /**
     * Switches {@code disk}'s LUN to a new differencing child of {@code parent}; the state naming the child
     * (with {@code alsoRecord} applied) is durable before the LUN runs on it. Returns the I/O pause.
     * <pre>
     *   parent is the running leaf (create, delete):  child written and state saved BEFORE the pause;
     *       pause = drain + flush + open child on the open leaf (VhdxDisk.openChildOn: the leaf's session
     *       ends as on close, it stays open read-only as the child's parent; no chain reopened). Fallback
     *       if the leaf's DataWriteGuid moved after the child was made: close, re-link, open the chain)
     *   parent is another image (apply):              child created and state saved inside the pause
     * </pre>
     */
    private long switchToNewChild(CheckpointState s, String partition, String disk, Path parent, Runnable alsoRecord)
        throws IOException, InterruptedException {
        return switchToNewChild(s, partition, disk, parent, alsoRecord, () -> { });
    }

    private long switchToNewChild(CheckpointState s, String partition, String disk, Path parent, Runnable alsoRecord,
                                  Runnable atPause) throws IOException, InterruptedException {
        CheckpointStore store = store(partition);
        ScsiLun lun = host.lun(partition, disk);
        String oldLeaf = leaf(s, disk);
        DiskFormat format = VirtualDisks.detect(parent);
        Path child = store.newImage(s, disk, format);
        Files.createDirectories(store.dir());
        boolean parentRuns = parent.toString().equals(oldLeaf);
        VhdxDisk running = parentRuns && lun.disk() instanceof VhdxDisk v ? v : null;
        // A VHD child is linked by its parent's unique id, which writes never change: made before the pause too,
        // and opened after the parent's close (VHD opens take no flock, but a writer's close trims its file).
        boolean vhdPrepared = parentRuns && lun.disk() instanceof VhdDisk;
        if (vhdPrepared) {
            VirtualDisks.create(child, CreateOptions.differencing(DiskFormat.VHD, parent)).close();
            record(s, disk, child, parent, alsoRecord);
            store.save(s);
        }
        java.util.UUID linkedTo = null;
        if (running != null) {
            running.startWriteSession(); // its DataWriteGuid is now fixed until it closes: the child stays linked
            linkedTo = running.dataWriteGuid();
            VhdxDisk.createChildOf(child, running);
            record(s, disk, child, parent, alsoRecord);
            store.save(s); // a restart now opens the empty child: it reads as the parent (re-linked at start if needed)
        }
        java.util.UUID expected = linkedTo;
        LunDiskSwitch.Result r;
        try {
            r = LunDiskSwitch.switchDisk(lun, new LunDiskSwitch.Step() {
                private boolean paused;

                @Override
                public VirtualDisk openNextOn(VirtualDisk old) throws IOException {
                    if (running == null || old != running || !running.dataWriteGuid().equals(expected)) {
                        return null;
                    }
                    paused = true;
                    try {
                        atPause.run();
                    } catch (RuntimeException e) {
                        try {
                            old.close(); // openNextOn's contract: throwing, it has closed the old disk
                        } catch (IOException suppressed) {
                            e.addSuppressed(suppressed);
                        }
                        throw e;
                    }
                    return VhdxDisk.openChildOn(child, running);
                }

                @Override
                public VirtualDisk openNext() throws IOException {
                    if (!paused) {
                        atPause.run();
                    }
                    if (vhdPrepared) {
                        return VirtualDisks.open(child, false);
                    }
                    if (running != null) {
                        if (!running.dataWriteGuid().equals(expected)) {
                            OnlineMerge.relink(child, parent); // still empty: only its parent linkage changes
                        }
                        return VirtualDisks.open(child, false);
                    }
                    // Created in place (fsynced by the writer): until the state names it, a crash leaves an
                    // unreferenced file that the next start removes.
                    VirtualDisk next = VirtualDisks.create(child, CreateOptions.differencing(format, parent));
                    try {
                        record(s, disk, child, parent, alsoRecord);
                        store.save(s); // from here a restart opens the child
                        return next;
                    } catch (IOException | RuntimeException e) {
                        next.close();
                        throw e;
                    }
                }

                @Override
                public VirtualDisk reopenPrevious() throws IOException {
                    return VirtualDisks.open(Path.of(oldLeaf), false);
                }
            }, DRAIN_MILLIS);
        } catch (IOException | RuntimeException e) {
            s.parents.remove(child.toString());
            s.leaves.put(disk, oldLeaf);
            store.save(s);
            Files.deleteIfExists(child);
            throw e;
        }
        host.diskSwitched(disk, child, r.disk());
        pauses.record(r.pauseNanos());
        LOG.log(Level.DEBUG, "disk switched partition=" + partition + " disk=" + disk + " pause_us=" + r.pauseNanos() / 1000
            + " drain_us=" + r.drainNanos() / 1000 + " close_us=" + r.closeNanos() / 1000 + " open_us=" + r.openNanos() / 1000);
        return r.pauseNanos();
    }

    private static void record(CheckpointState s, String disk, Path child, Path parent, Runnable alsoRecord) {
        s.parents.put(child.toString(), parent.toString());
        s.leaves.put(disk, child.toString());
        alsoRecord.run();
    }

    // ------------------------------------------------------------------------------------------ list

    public synchronized Map<String, Object> list(String partition) throws CheckpointException, IOException {
        if (host.partition(partition) == null) {
            throw new CheckpointException(404, "no partition named '" + partition + "'");
        }
        CheckpointState s = state(partition);
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("partition", partition);
        out.put("current", s.current);
        List<Object> list = new ArrayList<>();
        for (CheckpointState.Checkpoint c : s.checkpoints) {
            list.add(json(s, c));
        }
        out.put("checkpoints", list);
        Map<String, String> leaves = new LinkedHashMap<>();
        for (String d : host.disksOf(partition)) {
            leaves.put(d, leaf(s, d));
        }
        out.put("leaves", leaves);
        MergeProgress m = merges.get(partition);
        if (m != null) {
            out.put("merge", mergeJson(m));
        }
        return out;
    }

    private static Map<String, Object> json(CheckpointState s, CheckpointState.Checkpoint c) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("name", c.name);
        m.put("created", c.created);
        m.put("parent", c.parent);
        m.put("type", c.vmState != null ? "standard" : "production");
        m.put("consistency", c.consistency);
        if (c.consistencyReason != null) {
            m.put("consistency_reason", c.consistencyReason);
        }
        m.put("current", c.name.equals(s.current));
        m.put("images", c.images);
        if (c.vmState != null) {
            m.put("vm_state", c.vmState);
        }
        return m;
    }

    private static Map<String, Object> mergeJson(MergeProgress m) {
        Map<String, Object> j = new LinkedHashMap<>();
        j.put("checkpoint", m.checkpoint);
        j.put("phase", m.phase);
        j.put("done_bytes", m.done);
        j.put("total_bytes", m.total);
        j.put("percent", m.total == 0 ? 0 : Math.round(1000.0 * m.done / m.total) / 10.0);
        if (m.error != null) {
            j.put("error", m.error);
        }
        return j;
    }

    // ------------------------------------------------------------------------------------------ apply

    /** Reverts the partition to checkpoint {@code name}: stopped first if running, started again after. */
    public synchronized Map<String, Object> apply(String partition, String name) throws CheckpointException, IOException,
        InterruptedException {
        ChildPartition p = checkedPartition(partition);
        CheckpointState s = state(partition);
        CheckpointState.Checkpoint c = s.checkpoint(requireName(name));
        if (c == null) {
            throw new CheckpointException(404, "partition '" + partition + "' has no checkpoint named '" + name + "'");
        }
        boolean wasLive = p.state().live();
        Path vmState = c.vmState == null ? null : Path.of(c.vmState);
        if (vmState != null && !(p instanceof VmPartition && Files.isReadable(vmState))) {
            throw new CheckpointException(409, "checkpoint '" + name + "' is a standard checkpoint whose saved state "
                + vmState + " cannot be read (or the partition is no VM); not applied");
        }
        if (wasLive) {
            if (vmState != null) {
                p.turnOff("applying standard checkpoint " + name); // its memory is replaced: nothing to shut down
            } else {
                p.stop(host.stopTimeout(p));
            }
            if (!p.awaitState(PartitionState.STOPPED, host.stopTimeout(p).plusSeconds(5))) {
                throw new CheckpointException(409, "partition '" + partition + "' did not stop (" + p.state() + "); not applied");
            }
        }
        CheckpointStore store = store(partition);
        if (onRbd(partition)) {
            // The partition is stopped: nothing writes while each image's head goes back to the snapshot.
            for (String disk : host.disksOf(partition)) {
                host.rbdDisk(disk).rollbackToSnapshot(snapshotName(partition, name));
                host.diskReverted(disk);
            }
            s.current = name;
        } else {
            for (String disk : host.disksOf(partition)) {
                String discarded = leaf(s, disk);
                switchToNewChild(s, partition, disk, Path.of(c.images.get(disk)), () -> {
                    s.current = name;
                    forgetLeaf(s, store, discarded);
                });
                deleteIfOurs(store, discarded);
                host.diskReverted(disk);
            }
        }
        store.save(s);
        LOG.log(Level.INFO, "checkpoint applied partition=" + partition + " checkpoint=" + name
            + (vmState != null ? " restoring_state=" + vmState : ""));
        if (vmState != null) {
            ((VmPartition) p).startFromState(vmState); // the saved VM was running: it goes on from that moment
        } else if (wasLive) {
            p.start();
        }
        return list(partition);
    }

    /** The state since the last checkpoint is discarded on apply (as Hyper-V's Restore-VMSnapshot). */
    private static void forgetLeaf(CheckpointState s, CheckpointStore store, String leaf) {
        if (Path.of(leaf).startsWith(store.dir().toAbsolutePath()) && s.childrenOf(leaf).isEmpty()
            && s.checkpoints.stream().noneMatch(c -> c.images.containsValue(leaf))) {
            s.parents.remove(leaf);
        }
    }

    private static void deleteIfOurs(CheckpointStore store, String image) throws IOException {
        Path p = Path.of(image);
        if (p.startsWith(store.dir().toAbsolutePath()) && (image.endsWith(".avhdx") || image.endsWith(".vhd"))) {
            Files.deleteIfExists(p);
        }
    }

    // ------------------------------------------------------------------------------------------ export

    /** Writes checkpoint {@code name}'s view of {@code disk} as a new standalone dynamic VHDX at {@code dst}. */
    public Map<String, Object> export(String partition, String name, String disk, Path dst) throws CheckpointException,
        IOException {
        Path image;
        synchronized (this) {
            checkedPartition(partition);
            CheckpointState s = state(partition);
            CheckpointState.Checkpoint c = s.checkpoint(requireName(name));
            if (c == null) {
                throw new CheckpointException(404, "partition '" + partition + "' has no checkpoint named '" + name + "'");
            }
            List<String> disks = host.disksOf(partition);
            String d = disk != null ? disk : disks.size() == 1 ? disks.getFirst() : null;
            if (d == null || !c.images.containsKey(d)) {
                throw new CheckpointException(400, "disk=NAME is required and must be one of " + disks);
            }
            if (host.rbdDisk(d) != null) {
                throw new CheckpointException(409, "checkpoint '" + name + "' of disk '" + d + "' is the RBD snapshot "
                    + c.images.get(d).substring("rbd:".length()) + "; export it with rbd export");
            }
            image = Path.of(c.images.get(d));
        }
        if (dst == null || !dst.isAbsolute()) {
            throw new CheckpointException(400, "path=ABSOLUTE_FILE is required, not " + dst);
        }
        if (Files.exists(dst)) {
            throw new CheckpointException(409, dst + " exists; export never overwrites");
        }
        DiskOps.CopyResult r = DiskOps.mergeInto(image, dst, DiskFormat.VHDX, DiskType.DYNAMIC, io.phost.vhdx.ops.Progress.NONE);
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("checkpoint", name);
        out.put("path", dst.toString());
        out.put("bytes_written", r.bytesWritten());
        return out;
    }

    // ------------------------------------------------------------------------------------------ delete

    /**
     * Deletes checkpoint {@code name}: its single child image is merged into its image while the partition
     * keeps running (in the background; {@link #list} shows the progress). Returns once the merge is
     * recorded and started; {@code await} waits for the end.
     */
    public Map<String, Object> delete(String partition, String name, boolean await) throws CheckpointException, IOException,
        InterruptedException {
        MergeProgress progress;
        CheckpointState.Merge merge;
        synchronized (this) {
            checkedPartition(partition);
            CheckpointState s = state(partition);
            CheckpointState.Checkpoint c = s.checkpoint(requireName(name));
            if (c == null) {
                throw new CheckpointException(404, "partition '" + partition + "' has no checkpoint named '" + name + "'");
            }
            if (onRbd(partition)) {
                return deleteSnapshots(s, partition, name);
            }
            Map<String, String> child = new LinkedHashMap<>();
            for (String disk : host.disksOf(partition)) {
                String image = c.images.get(disk);
                List<String> kids = s.childrenOf(image);
                if (kids.size() != 1) {
                    throw new CheckpointException(409, "checkpoint '" + name + "' has " + kids.size() + " child images on disk '"
                        + disk + "' (branches made by apply); delete the checkpoints of the other branch first");
                }
                child.put(disk, kids.getFirst());
            }
            for (String disk : host.disksOf(partition)) {
                if (child.get(disk).equals(s.leaves.get(disk))) {
                    // The partition writes the image to merge: move its writes to a new child first.
                    switchToNewChild(s, partition, disk, Path.of(child.get(disk)), () -> { });
                }
            }
            merge = new CheckpointState.Merge(name, child, new LinkedHashMap<>(c.images));
            s.merge = merge;
            store(partition).save(s);
            progress = new MergeProgress(name);
            merges.put(partition, progress);
        }
        Thread t = Thread.ofPlatform().daemon().name("checkpoint-merge-" + partition).start(() -> runMerge(partition, merge, progress));
        if (await) {
            t.join();
            if (progress.error != null) {
                throw new CheckpointException(500, "deleting checkpoint '" + name + "' failed: " + progress.error);
            }
        }
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("partition", partition);
        out.put("deleting", name);
        out.put("merge", mergeJson(progress));
        return out;
    }

    /** An RBD checkpoint goes at once: its snapshots are removed (nothing to merge), then it leaves the tree. */
    private Map<String, Object> deleteSnapshots(CheckpointState s, String partition, String name) throws IOException {
        for (String disk : host.disksOf(partition)) {
            host.rbdDisk(disk).removeSnapshot(snapshotName(partition, name));
        }
        CheckpointState.Checkpoint gone = dropFromTree(s, name);
        store(partition).save(s);
        deleteVmState(gone);
        LOG.log(Level.INFO, "checkpoint deleted partition=" + partition + " checkpoint=" + name + " rbd_snapshots_removed=true");
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("partition", partition);
        out.put("deleted", name);
        return out;
    }

    private void runMerge(String partition, CheckpointState.Merge merge, MergeProgress progress) {
        long t0 = System.nanoTime();
        try {
            for (String disk : merge.child().keySet()) {
                Path child = Path.of(merge.child().get(disk));
                progress.phase = "staging";
                OnlineMerge.prepare(child, (d, t) -> progress(progress, d, t));
                progress.phase = "merging";
                OnlineMerge.apply(child, (d, t) -> progress(progress, d, t));
            }
            progress.phase = "relinking";
            synchronized (this) {
                CheckpointState s = state(partition);
                for (String disk : merge.child().keySet()) {
                    relinkOnline(s, partition, disk, merge.child().get(disk), merge.into().get(disk));
                }
                finishMerge(s, store(partition), merge);
            }
            progress.phase = "done";
            LOG.log(Level.INFO, "checkpoint deleted partition=" + partition + " checkpoint=" + merge.checkpoint()
                + " merge_ms=" + (System.nanoTime() - t0) / 1_000_000);
        } catch (IOException | RuntimeException | InterruptedException e) {
            progress.error = e.toString();
            progress.phase = "failed";
            LOG.log(Level.ERROR, "checkpoint delete failed partition=" + partition + " checkpoint=" + merge.checkpoint()
                + " error=\"" + e + "\" (the merge resumes at the next start)");
            return; // keep the merge recorded and the partition marked busy: the next start finishes it
        }
        merges.remove(partition);
    }

    private static void progress(MergeProgress p, long done, long total) {
        p.done = done;
        p.total = total;
    }

    /** Re-links the merged child's children to its parent under an I/O pause (they are in the running chain). */
    private void relinkOnline(CheckpointState s, String partition, String disk, String child, String into)
        throws IOException, InterruptedException {
        ScsiLun lun = host.lun(partition, disk);
        String leaf = leaf(s, disk);
        CheckpointStore store = store(partition);
        LunDiskSwitch.Result r = LunDiskSwitch.switchDisk(lun, new LunDiskSwitch.Step() {
            @Override
            public VirtualDisk openNext() throws IOException {
                relink(s, store, child, into);
                return VirtualDisks.open(Path.of(leaf), false);
            }

            @Override
            public VirtualDisk reopenPrevious() throws IOException {
                return VirtualDisks.open(Path.of(leaf), false);
            }
        }, DRAIN_MILLIS);
        host.diskSwitched(disk, Path.of(leaf), r.disk());
        pauses.record(r.pauseNanos());
    }

    /** Points every child of {@code child} at {@code into} (files, then the saved state). Idempotent. */
    static void relink(CheckpointState s, CheckpointStore store, String child, String into) throws IOException {
        for (String grandchild : s.childrenOf(child)) {
            OnlineMerge.relink(Path.of(grandchild), Path.of(into));
            s.parents.put(grandchild, into);
        }
        s.parents.remove(child);
        for (CheckpointState.Checkpoint c : s.checkpoints) {
            c.images.replaceAll((d, img) -> img.equals(child) ? into : img);
        }
        s.leaves.replaceAll((d, img) -> img.equals(child) ? into : img);
        store.save(s);
    }

    /** The deleted checkpoint leaves the tree; its children hang on its parent; then the merged files go. */
    static void finishMerge(CheckpointState s, CheckpointStore store, CheckpointState.Merge merge) throws IOException {
        CheckpointState.Checkpoint gone = dropFromTree(s, merge.checkpoint());
        store.save(s);
        deleteVmState(gone);
        for (String child : merge.child().values()) {
            OnlineMerge.finish(Path.of(child));
        }
        s.merge = null;
        store.save(s);
    }

    /** A deleted standard checkpoint's saved VM state goes once the state without it is saved. */
    private static void deleteVmState(CheckpointState.Checkpoint gone) throws IOException {
        if (gone != null && gone.vmState != null) {
            Files.deleteIfExists(Path.of(gone.vmState));
        }
    }

    /**
     * Checkpoint {@code name} leaves the tree: its children hang on its parent, which becomes current if it was.
     * Returns it (null: it was not there).
     */
    private static CheckpointState.Checkpoint dropFromTree(CheckpointState s, String name) {
        CheckpointState.Checkpoint gone = s.checkpoint(name);
        if (gone == null) {
            return null;
        }
        s.checkpoints.remove(gone);
        List<CheckpointState.Checkpoint> kept = new ArrayList<>();
        for (CheckpointState.Checkpoint c : s.checkpoints) {
            if (name.equals(c.parent)) {
                CheckpointState.Checkpoint moved = new CheckpointState.Checkpoint(c.name, c.created, gone.parent, c.consistency, c.images);
                moved.vmState = c.vmState;
                moved.consistencyReason = c.consistencyReason;
                kept.add(moved);
            } else {
                kept.add(c);
            }
        }
        s.checkpoints.clear();
        s.checkpoints.addAll(kept);
        if (name.equals(s.current)) {
            s.current = gone.parent;
        }
        return gone;
    }

    // ------------------------------------------------------------------------------------------ status

    public Map<String, Object> status() {
        Map<String, Object> m = new LinkedHashMap<>();
        Map<String, Object> counts = new LinkedHashMap<>();
        for (String p : host.partitionNames()) {
            try {
                counts.put(p, state(p).checkpoints.size());
            } catch (IOException e) {
                counts.put(p, "unreadable state: " + e.getMessage());
            }
        }
        m.put("checkpoints", counts);
        Map<String, Object> running = new LinkedHashMap<>();
        merges.forEach((p, g) -> running.put(p, mergeJson(g)));
        m.put("merges", running);
        m.put("pause", pauses.json());
        return m;
    }

    /** {@code type=}: true for standard (device and memory state too), false for production (the default). */
    static boolean isStandard(String type) throws CheckpointException {
        if (type == null || type.equals("production")) {
            return false;
        }
        if (type.equals("standard")) {
            return true;
        }
        throw new CheckpointException(400, "type must be production or standard, not '" + type + "' (type=TYPE)");
    }

    static String requireName(String name) throws CheckpointException {
        if (name == null || !name.matches("[A-Za-z0-9][A-Za-z0-9._-]{0,63}")) {
            throw new CheckpointException(400, "checkpoint name must be 1-64 of A-Z a-z 0-9 . _ - (starting with a "
                + "letter or digit), not '" + name + "' (checkpoint=NAME)");
        }
        return name;
    }
}
