package io.phost.appliance.run;

import io.phost.core.partition.GuestLauncher;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/** A real {@code phost} child process for end-to-end tests: same JDK, class path and JVM flags as the test. */
public final class PhostProcess implements AutoCloseable {
    private final Process process;
    private final BlockingQueue<String> stdout = new LinkedBlockingQueue<>();
    private final StringBuffer stderr = new StringBuffer();

    private PhostProcess(Process process) {
        this.process = process;
        Thread.ofVirtual().start(() -> pump(new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8)), true));
        Thread.ofVirtual().start(() -> pump(new BufferedReader(new InputStreamReader(process.getErrorStream(), StandardCharsets.UTF_8)), false));
    }

    public static PhostProcess start(Path runtimeDir, String... args) throws IOException {
        return start(runtimeDir, List.of(), args);
    }

    /** With extra JVM flags, e.g. {@code -Dphost.log.level=DEBUG}. */
    public static PhostProcess start(Path runtimeDir, List<String> jvmFlags, String... args) throws IOException {
        return start(runtimeDir, jvmFlags, Map.of(), args);
    }

    /** With extra JVM flags and environment variables (e.g. {@code PHOST_TEST_GUEST} for the demo's VM). */
    public static PhostProcess start(Path runtimeDir, List<String> jvmFlags, Map<String, String> env,
                                     String... args) throws IOException {
        List<String> cmd = new ArrayList<>();
        // SIGHUP back to its default: a test run under nohup would otherwise hand phost an ignored SIGHUP
        // (inherited across exec), and phost rightly keeps ignoring it.
        cmd.addAll(List.of("env", "--default-signal=HUP"));
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.addAll(GuestLauncher.inheritedJvmFlags());
        cmd.addAll(jvmFlags);
        cmd.add("-Dphost.runtime.dir=" + runtimeDir);
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        cmd.add("io.phost.appliance.Main");
        cmd.addAll(List.of(args));
        ProcessBuilder pb = new ProcessBuilder(cmd);
        pb.environment().putAll(env);
        return new PhostProcess(pb.start());
    }

    /** A phost started some other way (e.g. under {@code setpriv} as another user). */
    public static PhostProcess of(ProcessBuilder pb) throws IOException {
        return new PhostProcess(pb.start());
    }

    private void pump(BufferedReader r, boolean out) {
        try {
            for (String line; (line = r.readLine()) != null; ) {
                if (out) {
                    stdout.add(line);
                } else {
                    stderr.append(line).append('\n');
                }
            }
        } catch (IOException ignored) {
            // process ended
        }
    }

    /**
     * Waits for a stdout line starting with {@code prefix} as long as phost keeps making progress: it fails when phost
     * exits, when {@code quiet} passes without a new line on stdout or stderr (each start-up step logs one, so
     * that is a hang), or after {@code atMost}. For starts whose length is the machine's load: a fixed deadline fails
     * a host that is slow but moving (a shared 2-vCPU machine at load ~30 started the example config in over 60 s).
     */
    public String awaitLineWhileProgressing(String prefix, Duration quiet, Duration atMost) throws InterruptedException {
        long start = System.nanoTime();
        long lastProgress = start;
        int seen = stderr.length();
        while (System.nanoTime() - start < atMost.toNanos() && System.nanoTime() - lastProgress < quiet.toNanos()) {
            String line = stdout.poll(100, TimeUnit.MILLISECONDS);
            if (line != null && line.startsWith(prefix)) {
                return line;
            }
            if (line != null || stderr.length() != seen) {
                seen = stderr.length();
                lastProgress = System.nanoTime();
            }
            if (line == null && !process.isAlive() && stdout.isEmpty()) {
                break;
            }
        }
        throw new AssertionError("no line '" + prefix + "' from phost after " + (System.nanoTime() - start) / 1_000_000
            + " ms (last output " + (System.nanoTime() - lastProgress) / 1_000_000 + " ms ago); exit="
            + (process.isAlive() ? "running" : process.exitValue()) + "; stderr:\n" + stderr);
    }

    /** Waits for a stdout line starting with {@code prefix}; fails with the child's stderr when it does not come. */
    public String awaitLine(String prefix, Duration timeout) throws InterruptedException {
        return awaitLine(prefix, l -> l.startsWith(prefix), timeout);
    }

    /** Waits for a stdout line that {@code ok} accepts ({@code what} names it in the failure). */
    public String awaitLine(String what, java.util.function.Predicate<String> ok, Duration timeout) throws InterruptedException {
        String prefix = what;
        long deadline = System.nanoTime() + timeout.toNanos();
        while (System.nanoTime() < deadline) {
            String line = stdout.poll(100, TimeUnit.MILLISECONDS);
            if (line != null && ok.test(line)) {
                return line;
            }
            if (line == null && !process.isAlive() && stdout.isEmpty()) {
                break;
            }
        }
        throw new AssertionError("no line '" + prefix + "' from phost; exit=" + (process.isAlive() ? "running" : process.exitValue())
            + "; stderr:\n" + stderr);
    }

    public Process process() {
        return process;
    }

    public String stderr() {
        return stderr.toString();
    }

    /** Kills phost and whatever it started (partitions), so a failed test leaves no process behind. */
    @Override
    public void close() {
        process.descendants().forEach(ProcessHandle::destroyForcibly);
        process.destroyForcibly();
    }
}
