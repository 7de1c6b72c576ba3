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
}
