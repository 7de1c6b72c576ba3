package io.phost.perf;

import java.nio.file.Path;

/** What a suite gets from the runner: the mode, a scratch directory, and a progress sink. */
public interface BenchContext {
    /** True for {@code --quick}: the whole suite must finish in under a minute. */
    boolean quick();

    /** A scratch directory on the machine's disk that the runner deletes afterwards. */
    Path workDir();

    /** A scratch directory on tmpfs (/dev/shm) that the runner deletes afterwards. */
    Path tmpfsDir();

    /** Reports progress: {@code done} of {@code total} steps, and what is running now. */
    void progress(int done, int total, String step);

    /** A log line shown under the progress bar (e.g. which peer is missing and why a result is skipped). */
    void log(String line);

    /** Where a context's progress and log lines go. */
    interface Sink {
        void progress(int done, int total, String step);

        void log(String line);
    }

    /** Progress as {@code [done/total] step} and indented log lines, on stderr: for a suite's own {@code main}. */
    Sink STDERR = new Sink() {
        @Override
        public void progress(int done, int total, String step) {
            System.err.printf("[%d/%d] %s%n", done, total, step);
        }

        @Override
        public void log(String line) {
            System.err.println("  " + line);
        }
    };

    /** A context with fixed directories whose progress and log lines go to {@code sink}. */
    static BenchContext of(boolean quick, Path workDir, Path tmpfsDir, Sink sink) {
        return new Fixed(quick, workDir, tmpfsDir, sink);
    }

    /** See {@link #of}. */
    record Fixed(boolean quick, Path workDir, Path tmpfsDir, Sink sink) implements BenchContext {
        @Override
        public void progress(int done, int total, String step) {
            sink.progress(done, total, step);
        }

        @Override
        public void log(String line) {
            sink.log(line);
        }
    }
}
