package io.phost.appliance.run;

import java.io.IOException;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * One throwaway Ceph cluster per test JVM ({@code tools/ceph-test-cluster/start.sh} on a free port, removed by
 * {@code stop.sh} at exit). Needs ceph-mon, ceph-osd and ceph-common (.ci/run installs them); a missing
 * package fails the test, it does not skip it. (A copy of vsp-storage's test helper of the same name: test
 * classes do not cross modules.)
 */
final class CephTestCluster {
    private static CephTestCluster instance;

    private final Path dir;
    private final Path conf;
    private final int monPort;
    private final double startSeconds;

    private CephTestCluster(Path dir, int monPort, double startSeconds) {
        this.dir = dir;
        this.conf = dir.resolve("ceph.conf");
        this.monPort = monPort;
        this.startSeconds = startSeconds;
    }

    /** The shared cluster, started on first use (about 10 s). */
    public static synchronized CephTestCluster get() throws IOException, InterruptedException {
        if (instance == null) {
            instance = start();
        }
        return instance;
    }

    private static Path tools() {
        Path root = Path.of("").toAbsolutePath();
        while (root != null && !Files.isRegularFile(root.resolve("tools/ceph-test-cluster/start.sh"))) {
            root = root.getParent();
        }
        assertTrue(root != null, "tools/ceph-test-cluster/start.sh not found above " + Path.of("").toAbsolutePath());
        return root.resolve("tools/ceph-test-cluster");
    }

    private static CephTestCluster start() throws IOException, InterruptedException {
        Path dir = Files.createTempDirectory("phost-ceph-");
        Files.delete(dir); // start.sh creates it
        int port;
        try (ServerSocket s = new ServerSocket(0)) {
            port = s.getLocalPort();
        }
        if (port > 65000) {
            port -= 1000; // room for the OSD's port range above the monitor's
        }
        Path tools = tools();
        Process p = new ProcessBuilder("bash", tools.resolve("start.sh").toString(), dir.toString(), Integer.toString(port))
            .redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (!p.waitFor(180, TimeUnit.SECONDS) || p.exitValue() != 0) {
            fail("ceph test cluster did not start (tools/ceph-test-cluster/start.sh " + dir + " " + port + "):\n" + out);
        }
        double secs = Double.parseDouble(Files.readString(dir.resolve("start-seconds")).trim());
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                new ProcessBuilder("bash", tools.resolve("stop.sh").toString(), dir.toString()).inheritIO().start()
                    .waitFor(30, TimeUnit.SECONDS);
            } catch (IOException | InterruptedException ignored) {
                // the JVM is exiting; a leftover temp dir is all that remains
            }
        }));
        System.out.println("ceph test cluster ready in " + secs + " s at 127.0.0.1:" + port);
        return new CephTestCluster(dir, port, secs);
    }

    public Path conf() {
        return conf;
    }

    public Path dir() {
        return dir;
    }

    public int monPort() {
        return monPort;
    }

    public double startSeconds() {
        return startSeconds;
    }

    /** Runs a ceph CLI ({@code rbd}, {@code rados}, {@code ceph}) against this cluster; returns stdout, fails on error. */
    public String run(String... command) throws IOException, InterruptedException {
        ProcessBuilder pb = new ProcessBuilder(List.of(command)).redirectErrorStream(true);
        pb.environment().put("CEPH_CONF", conf.toString());
        Process p = pb.start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (!p.waitFor(120, TimeUnit.SECONDS) || p.exitValue() != 0) {
            fail(String.join(" ", command) + " failed:\n" + out);
        }
        return out;
    }
}
