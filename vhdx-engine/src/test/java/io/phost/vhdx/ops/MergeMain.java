package io.phost.vhdx.ops;

import io.phost.vhdx.DiskFormat;
import io.phost.vhdx.DiskType;

import java.nio.file.Path;

/**
 * A child JVM for the kill tests in {@link ImageSafetyTest}: {@code merge CHILD} merges CHILD into its
 * parent; {@code convert SRC DST} converts SRC into a new VHDX DST; {@code resize FILE BYTES} grows FILE;
 * {@code compact FILE} compacts FILE (full mode; a dynamic VHDX in place).
 */
public final class MergeMain {
    private MergeMain() {}

    public static void main(String[] args) throws Exception {
        System.out.println("started");
        System.out.flush();
        switch (args[0]) {
            case "merge" -> DiskOps.mergeIntoParent(Path.of(args[1]), false, Progress.NONE);
            case "convert" -> DiskOps.convert(Path.of(args[1]), Path.of(args[2]), DiskFormat.VHDX, DiskType.DYNAMIC, 0,
                Progress.NONE);
            case "resize" -> {
                // Load the classes first (a read-only open), so a kill timed from "go" lands inside the resize.
                io.phost.vhdx.VirtualDisks.open(Path.of(args[1]), true).close();
                System.out.println("go");
                System.out.flush();
                DiskOps.resize(Path.of(args[1]), Long.parseLong(args[2]), false, Progress.NONE);
            }
            case "compact" -> {
                io.phost.vhdx.VirtualDisks.open(Path.of(args[1]), true).close();
                System.out.println("go");
                System.out.flush();
                DiskOps.compact(Path.of(args[1]), CompactMode.FULL, Progress.NONE);
            }
            default -> throw new IllegalArgumentException(args[0]);
        }
        System.out.println("done");
    }
}
