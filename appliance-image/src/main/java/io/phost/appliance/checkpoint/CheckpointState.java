package io.phost.appliance.checkpoint;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * One partition's checkpoint tree as recorded in {@code <data_dir>/checkpoints/<partition>/state.json}:
 * the checkpoints, the image each disk runs on now (its leaf), the parent of every image a checkpoint made,
 * and a delete whose merge has begun. The config never names these files; this record is the truth.
 * <pre>
 *   base.vhdx ◀── disk0-1.avhdx ◀── disk0-2.avhdx (leaf: the partition writes here)
 *   ▲ checkpoint "a"  ▲ checkpoint "b"
 *   A checkpoint owns a frozen image per disk; create makes a child of each leaf and runs on it; apply
 *   makes a new child of the checkpoint's images; delete merges the single child of its images into them.
 * </pre>
 * Mutated only under {@link CheckpointService}'s lock and saved whole, atomically, by {@link CheckpointStore}.
 */
final class CheckpointState {
    /** One checkpoint: its frozen image per disk. */
    static final class Checkpoint {
        final String name;
        final String created;
        /** The checkpoint the partition ran from when this one was taken, or null. */
        final String parent;
        /** "crash-consistent" (nothing asked the guest to freeze) or "application-consistent". */
        final String consistency;
        final Map<String, String> images;
        /** Set while create runs: the checkpoint is not usable until every disk switched. */
        boolean pending;
        /** A standard checkpoint's saved VM device and memory state (QEMU migration stream), or null (production). */
        String vmState;
        /** Why a production checkpoint is only crash-consistent (the guest could not freeze), or null. */
        String consistencyReason;

        Checkpoint(String name, String created, String parent, String consistency, Map<String, String> images) {
            this.name = name;
            this.created = created;
            this.parent = parent;
            this.consistency = consistency;
            this.images = new LinkedHashMap<>(images);
        }
    }

    /** A delete in progress: for each disk, the image merged ({@code child}) into the checkpoint's image. */
    record Merge(String checkpoint, Map<String, String> child, Map<String, String> into) {
    }

    final String partition;
    final List<Checkpoint> checkpoints = new ArrayList<>();
    /** The checkpoint the running state descends from (null: none, or it was deleted). */
    String current;
    /** disk → the image the partition writes (absent: the configured file, no checkpoint was ever taken). */
    final Map<String, String> leaves = new LinkedHashMap<>();
    /** image → its parent image, for every differencing image a checkpoint or apply created. */
    final Map<String, String> parents = new LinkedHashMap<>();
    Merge merge;
    /** Numbers the images this partition's checkpoints create. */
    long nextImage = 1;

    CheckpointState(String partition) {
        this.partition = partition;
    }

    Checkpoint checkpoint(String name) {
        for (Checkpoint c : checkpoints) {
            if (c.name.equals(name)) {
                return c;
            }
        }
        return null;
    }

    /** Images whose parent is {@code image}. */
    List<String> childrenOf(String image) {
        List<String> out = new ArrayList<>();
        parents.forEach((child, parent) -> {
            if (parent.equals(image)) {
                out.add(child);
            }
        });
        return out;
    }

    /** True when {@code image} is a leaf, some checkpoint's image or saved VM state, or some image's parent. */
    boolean references(String image) {
        return leaves.containsValue(image) || parents.containsKey(image) || parents.containsValue(image)
            || checkpoints.stream().anyMatch(c -> c.images.containsValue(image) || image.equals(c.vmState));
    }

    // ------------------------------------------------------------------------------------------ JSON

    Map<String, Object> toJson() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("version", 1);
        m.put("partition", partition);
        List<Object> list = new ArrayList<>();
        for (Checkpoint c : checkpoints) {
            Map<String, Object> cm = new LinkedHashMap<>();
            cm.put("name", c.name);
            cm.put("created", c.created);
            cm.put("parent", c.parent);
            cm.put("consistency", c.consistency);
            cm.put("images", c.images);
            if (c.pending) {
                cm.put("pending", true);
            }
            if (c.vmState != null) {
                cm.put("vm_state", c.vmState);
            }
            if (c.consistencyReason != null) {
                cm.put("consistency_reason", c.consistencyReason);
            }
            list.add(cm);
        }
        m.put("checkpoints", list);
        m.put("current", current);
        m.put("leaves", leaves);
        m.put("parents", parents);
        m.put("next_image", nextImage);
        if (merge != null) {
            m.put("merge", Map.of("checkpoint", merge.checkpoint(), "child", merge.child(), "into", merge.into()));
        }
        return m;
    }

    /** Throws IllegalArgumentException naming the field when the document is not one of ours. */
    static CheckpointState fromJson(Object json) {
        if (!(json instanceof Map<?, ?> m) || !Long.valueOf(1).equals(m.get("version"))) {
            throw new IllegalArgumentException("not a version 1 checkpoint state");
        }
        CheckpointState s = new CheckpointState(string(m, "partition"));
        for (Object o : list(m, "checkpoints")) {
            if (!(o instanceof Map<?, ?> c)) {
                throw new IllegalArgumentException("checkpoints[] entry is not an object");
            }
            Checkpoint cp = new Checkpoint(string(c, "name"), string(c, "created"), (String) c.get("parent"),
                string(c, "consistency"), strings(c, "images"));
            cp.pending = Boolean.TRUE.equals(c.get("pending"));
            cp.vmState = c.get("vm_state") instanceof String v ? v : null;
            cp.consistencyReason = c.get("consistency_reason") instanceof String r ? r : null; // absent before 2026-12
            s.checkpoints.add(cp);
        }
        s.current = (String) m.get("current");
        s.leaves.putAll(strings(m, "leaves"));
        s.parents.putAll(strings(m, "parents"));
        s.nextImage = m.get("next_image") instanceof Long n ? n : 1;
        if (m.get("merge") instanceof Map<?, ?> mg) {
            s.merge = new Merge(string(mg, "checkpoint"), strings(mg, "child"), strings(mg, "into"));
        }
        return s;
    }

    private static String string(Map<?, ?> m, String key) {
        if (!(m.get(key) instanceof String v)) {
            throw new IllegalArgumentException("\"" + key + "\" is missing or not a string");
        }
        return v;
    }

    private static List<?> list(Map<?, ?> m, String key) {
        if (!(m.get(key) instanceof List<?> v)) {
            throw new IllegalArgumentException("\"" + key + "\" is missing or not a list");
        }
        return v;
    }

    private static Map<String, String> strings(Map<?, ?> m, String key) {
        if (!(m.get(key) instanceof Map<?, ?> v)) {
            throw new IllegalArgumentException("\"" + key + "\" is missing or not an object");
        }
        Map<String, String> out = new LinkedHashMap<>();
        v.forEach((k, val) -> {
            if (!(val instanceof String sv)) {
                throw new IllegalArgumentException("\"" + key + "." + k + "\" is not a string");
            }
            out.put(String.valueOf(k), sv);
        });
        return out;
    }
}
