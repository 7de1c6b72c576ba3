package io.phost.appliance.bench;

import io.phost.appliance.util.Trees;
import io.phost.perf.BenchContext;
import io.phost.perf.BenchResult;
import io.phost.perf.BenchSuite;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.ServiceLoader;

/** Finds suites, runs one with a progress bar and scratch directories, and shapes its results as JSON. */
public final class BenchRunner {
    private BenchRunner() {}

    public static Map<String, BenchSuite> suites() {
        Map<String, BenchSuite> byName = new LinkedHashMap<>();
        for (BenchSuite s : ServiceLoader.load(BenchSuite.class)) {
            byName.put(s.name(), s);
        }
        return byName;
    }

    /** The line said before a {@code --quick} run: how long it will take, and whether that is over a minute. */
    public static String quickNotice(BenchSuite suite) {
        long secs = suite.quickDuration().toSeconds();
        return secs <= 60
            ? "bench: " + suite.name() + " --quick takes under a minute"
            : "bench: " + suite.name() + " --quick takes about " + secs + " s (over a minute) on 2 cores";
    }

    /** Runs {@code suite}; scratch directories are removed afterwards even when the suite fails. */
    public static List<BenchResult> run(BenchSuite suite, boolean quick, PrintStream progressOut) throws Exception {
        Path work = Files.createTempDirectory(Path.of(System.getProperty("phost.bench.dir", System.getProperty("java.io.tmpdir"))), "phost-bench-");
        Path shm = Files.isDirectory(Path.of("/dev/shm"))
            ? Files.createTempDirectory(Path.of("/dev/shm"), "phost-bench-") : Files.createTempDirectory("phost-bench-tmpfs-");
        Progress progress = new Progress(progressOut, System.console() != null && System.console().isTerminal());
        try {
            return List.copyOf(suite.run(BenchContext.of(quick, work, shm, progress)));
        } finally {
            progress.finish();
            Trees.deleteTree(work);
            Trees.deleteTree(shm);
        }
    }

    /** The JSON document: {"suite", "machine", "results": [{name, value, unit, peer, peer_value, ratio}]}. */
    public static Map<String, Object> document(String suite, boolean quick, List<BenchResult> results) {
        Map<String, Object> doc = new LinkedHashMap<>();
        doc.put("suite", suite);
        doc.put("quick", quick);
        doc.put("machine", MachineInfo.describe());
        List<Object> rs = new ArrayList<>();
        for (BenchResult r : results) {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("name", r.name());
            m.put("value", r.value());
            m.put("unit", r.unit());
            m.put("peer", r.peer());
            m.put("peer_value", Double.isNaN(r.peerValue()) ? null : r.peerValue());
            m.put("ratio", Double.isNaN(r.ratio()) ? null : r.ratio());
            m.put("lower_is_better", r.lowerIsBetter());
            if (!r.series().isEmpty()) {
                m.put("series", r.series());
                m.put("series_unit", r.seriesUnit());
            }
            rs.add(m);
        }
        doc.put("results", rs);
        return doc;
    }

    /** A one-line progress bar on a terminal; plain lines otherwise (CI logs). */
    static final class Progress implements BenchContext.Sink {
        private final PrintStream out;
        private final boolean terminal;
        private String last = "";

        Progress(PrintStream out, boolean terminal) {
            this.out = out;
            this.terminal = terminal;
        }

        @Override
        public synchronized void progress(int done, int total, String step) {
            if (terminal) {
                int width = 30;
                int filled = total <= 0 ? 0 : Math.min(width, done * width / total);
                String line = "[" + "#".repeat(filled) + "-".repeat(width - filled) + "] " + done + "/" + total + " " + step;
                out.print("\r\033[2K" + line);
                out.flush();
                last = line;
            } else {
                out.println("bench: " + done + "/" + total + " " + step);
            }
        }

        @Override
        public synchronized void log(String line) {
            if (terminal) {
                out.print("\r\033[2K" + line + "\n" + last);
            } else {
                out.println("bench: " + line);
            }
            out.flush();
        }

        synchronized void finish() {
            if (terminal && !last.isEmpty()) {
                out.print("\r\033[2K");
                out.flush();
            }
        }
    }
}
