package io.phost.appliance.checkpoint;

import io.phost.core.text.Json;
import io.phost.core.sys.PosixFile;
import io.phost.vhdx.DiskFormat;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;

/**
 * Where a partition's checkpoint state and images live: {@code <data_dir>/checkpoints/<partition>/}. The
 * state is replaced whole: written to {@code state.json.tmp}, fsynced, renamed over {@code state.json},
 * and the directory fsynced, so after a crash the file is the old state or the new one, never a mix.
 */
final class CheckpointStore {
    private final Path dir;

    CheckpointStore(Path dataDir, String partition) {
        this.dir = dataDir.resolve("checkpoints").resolve(partition);
    }

    Path dir() {
        return dir;
    }

    Path stateFile() {
        return dir.resolve("state.json");
    }

    /** The saved state, or an empty one when none was ever saved. Throws IOException naming the file when unreadable. */
    CheckpointState load(String partition) throws IOException {
        Path f = stateFile();
        if (!Files.exists(f)) {
            return new CheckpointState(partition);
        }
        try {
            return CheckpointState.fromJson(Json.parse(Files.readString(f, StandardCharsets.UTF_8)));
        } catch (RuntimeException e) {
            throw new IOException(f + ": unreadable checkpoint state (" + e.getMessage() + ")", e);
        }
    }

    void save(CheckpointState s) throws IOException {
        Files.createDirectories(dir);
        Path tmp = dir.resolve("state.json.tmp");
        Files.writeString(tmp, Json.pretty(s.toJson()), StandardCharsets.UTF_8);
        try (PosixFile f = PosixFile.open(tmp, false)) {
            f.sync();
        }
        Files.move(tmp, stateFile(), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        try (PosixFile d = PosixFile.open(dir, true)) {
            d.sync();
        }
    }

    /** A new image name for {@code disk} (the counter is saved with the state that first names the image). */
    Path newImage(CheckpointState s, String disk) {
        return newImage(s, disk, DiskFormat.VHDX);
    }

    /** A new child image name in {@code format}: {@code .avhdx} under a VHDX, a differencing {@code .vhd} under a VHD. */
    Path newImage(CheckpointState s, String disk, DiskFormat format) {
        return dir.resolve(disk + "-" + s.nextImage++ + (format == DiskFormat.VHD ? ".vhd" : ".avhdx")).toAbsolutePath();
    }

    /** A file this store made (an image, a merge's stage or journal, a saved VM state, a temporary file), by its name. */
    static boolean ours(String name) {
        return name.endsWith(".avhdx") || name.endsWith(".vhd") || name.contains(".avhdx.merge-") || name.endsWith(".tmp")
            || name.endsWith(VM_STATE);
    }

    static final String VM_STATE = ".vmstate";

    /** Where standard checkpoint {@code checkpoint}'s VM device and memory state is kept. */
    Path vmState(String checkpoint) {
        return dir.resolve(checkpoint + VM_STATE).toAbsolutePath();
    }
}
