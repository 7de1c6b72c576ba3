package io.phost.vhdx.ops;

import java.nio.file.Path;

/** A child JVM that merges {@code args[0]} into its parent, for the kill test in {@link ImageSafetyTest}. */
public final class MergeMain {
    private MergeMain() {}

    public static void main(String[] args) throws Exception {
        System.out.println("started");
        System.out.flush();
        DiskOps.mergeIntoParent(Path.of(args[0]), false, Progress.NONE);
        System.out.println("done");
    }
}
