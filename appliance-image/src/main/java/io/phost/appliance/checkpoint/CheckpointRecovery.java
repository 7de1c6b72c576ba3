package io.phost.appliance.checkpoint;

import io.phost.vhdx.ops.OnlineMerge;
import io.phost.vhdx.ops.Progress;

import java.io.IOException;
import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

/**
 * Runs at host start, before any disk is opened: finishes a checkpoint delete a crash interrupted (the
 * merge resumes from its journal, or restages from the intact child), drops a checkpoint whose create
 * did not reach every disk, removes images nothing references, and returns the image each disk must open
 * (its leaf). A leaf the state names but the file system lacks is an error, never a silent fallback.
 */
public final class CheckpointRecovery {
    private static final Logger LOG = System.getLogger("phost.checkpoint");

    private CheckpointRecovery() {
    }

    /** @param partitionDisks partition → its disks; returns disk → leaf image for disks with checkpoint state */
    public static Map<String, Path> recover(Path dataDir, Map<String, List<String>> partitionDisks) throws IOException {
        Map<String, Path> leaves = new LinkedHashMap<>();
        for (Map.Entry<String, List<String>> e : partitionDisks.entrySet()) {
            CheckpointStore store = new CheckpointStore(dataDir, e.getKey());
            if (!Files.exists(store.stateFile())) {
                continue;
            }
            CheckpointState s = store.load(e.getKey());
            if (s.merge != null) {
                resumeMerge(s, store);
            }
            List<CheckpointState.Checkpoint> incomplete = new ArrayList<>();
            for (CheckpointState.Checkpoint c : s.checkpoints) {
                if (c.pending || !c.images.keySet().containsAll(e.getValue())) {
                    incomplete.add(c);
                }
            }
            for (CheckpointState.Checkpoint c : incomplete) {
                // A child made before its switch is linked to the parent's DataWriteGuid of that moment; the
                // parent's first write of its session may have changed it since. Re-link (idempotent).
                for (Map.Entry<String, String> img : c.images.entrySet()) {
                    String leaf = s.leaves.get(img.getKey());
                    if (leaf != null && img.getValue().equals(s.parents.get(leaf)) && Files.exists(Path.of(leaf))) {
                        OnlineMerge.relink(Path.of(leaf), Path.of(img.getValue()));
                    }
                }
                LOG.log(Level.WARNING, "checkpoint dropped partition=" + e.getKey() + " checkpoint=" + c.name
                    + " reason=\"its create was interrupted before every disk switched\"");
                s.checkpoints.remove(c);
                if (c.name.equals(s.current)) {
                    s.current = c.parent;
                }
            }
            store.save(s);
            removeUnreferenced(s, store);
            for (Map.Entry<String, String> l : s.leaves.entrySet()) {
                Path leaf = Path.of(l.getValue());
                if (!Files.exists(leaf)) {
                    throw new IOException("disk '" + l.getKey() + "': the checkpoint state " + store.stateFile()
                        + " says it runs on " + leaf + ", which is missing");
                }
                leaves.put(l.getKey(), leaf);
            }
        }
        return leaves;
    }

    /** Finishes an interrupted delete: restage if uncommitted, apply, re-link, drop the checkpoint, delete the child. */
    private static void resumeMerge(CheckpointState s, CheckpointStore store) throws IOException {
        CheckpointState.Merge m = s.merge;
        LOG.log(Level.INFO, "resuming checkpoint delete partition=" + s.partition + " checkpoint=" + m.checkpoint());
        for (String disk : m.child().keySet()) {
            Path child = Path.of(m.child().get(disk));
            if (!Files.exists(child)) {
                continue; // this disk finished (its state was saved re-linked before the child was deleted)
            }
            OnlineMerge.discardUncommitted(child);
            OnlineMerge.prepare(child, Progress.NONE);
            OnlineMerge.apply(child, Progress.NONE);
            CheckpointService.relink(s, store, m.child().get(disk), m.into().get(disk));
        }
        CheckpointService.finishMerge(s, store, m);
        LOG.log(Level.INFO, "resumed checkpoint delete finished partition=" + s.partition + " checkpoint=" + m.checkpoint());
    }

    private static void removeUnreferenced(CheckpointState s, CheckpointStore store) throws IOException {
        try (Stream<Path> files = Files.list(store.dir())) {
            for (Path f : files.toList()) {
                String name = f.getFileName().toString();
                String image = f.toAbsolutePath().toString().replaceFirst("\\.merge-(stage|journal)(\\.tmp)?$", "");
                boolean ours = CheckpointStore.ours(name);
                if (ours && !s.references(image)) {
                    LOG.log(Level.INFO, "removing unreferenced checkpoint file " + f);
                    Files.deleteIfExists(f);
                }
            }
        }
    }
}
