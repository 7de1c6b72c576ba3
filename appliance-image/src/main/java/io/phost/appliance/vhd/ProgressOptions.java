package io.phost.appliance.vhd;

import picocli.CommandLine.Option;

import java.io.IOException;

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

    /** Runs {@code work} with a progress bar labelled {@code label}, drawn as these options say, and closes the bar. */
    <T> T withBar(String label, BarWork<T> work) throws IOException {
        try (ProgressBar bar = new ProgressBar(label, this)) {
            return work.run(bar);
        }
    }

    /** Work that reports its progress to a bar. */
    @FunctionalInterface
    interface BarWork<T> {
        T run(ProgressBar bar) throws IOException;
    }
}
