package io.phost.appliance.vhd;

import picocli.CommandLine.Option;

/** {@code -p}/{@code -q} of the long-running verbs, as qemu-img has them. */
final class ProgressOptions {
    static final ProgressOptions DEFAULT = new ProgressOptions();

    @Option(names = {"-p", "--progress"}, description = "Show a progress bar on stderr even when it is not a terminal.")
    boolean progress;
    @Option(names = {"-q", "--quiet"}, description = "No progress bar and no summary line (errors are still printed).")
    boolean quiet;

    /** Prints a summary line unless {@code -q}. */
    void say(String line) {
        if (!quiet) {
            System.out.println(line);
        }
    }
}
