package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.appliance.mgmt.ManagementAddress;
import io.phost.appliance.mgmt.ManagementClient;
import io.phost.core.partition.GuestLauncher;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code phost apply} as an operator uses it, on a {@code phost run --config} host with two process partitions
 * whose synthetic NICs the built-in {@code net} workload bridges into namespaces: a port's VLAN and ACL change and
 * traffic follows within a second, a partition is added (and reaches its VLAN peer) and removed, a dry run and a
 * bad config (a syntax error, a refused change) change nothing and name the position, a {@code qos set-policy}
 * is saved, and a restart with the original file comes back to the applied state. Needs root (TAP, netns).
 */
@Timeout(300)
class ApplyRunTest {
    private static final String TAG = Long.toString(ProcessHandle.current().pid() % 100000);
    private static final String NS_A = "ap18a" + TAG;
    private static final String NS_B = "ap18b" + TAG;
    private static final String NS_C = "ap18c" + TAG;

    @TempDir
    Path dir;

    @AfterEach
    void tearDown() throws Exception {
        for (String ns : List.of(NS_A, NS_B, NS_C)) {
            run(5, "ip", "netns", "del", ns);
        }
    }

    private String config(String pbNic, String extra) {
        return """
            [host]
            name = "apply-test"
            data_dir = "%1$s"

            [[qos_policy]]
            name = "gold"
            max_iops = 1000

            [[switch]]
            name = "a18s%2$s"
            type = "private"

            [[partition]]
            name = "pa"
            memory = "64MiB"
            workload = { kind = "net", args = ["--netns", "%3$s", "--address", "10.187.0.1/24"] }
            nic = [{ switch = "a18s%2$s", mac = "02:87:00:00:00:01" }]

            [[partition]]
            name = "pb"
            memory = "64MiB"
            workload = { kind = "net", args = ["--netns", "%4$s", "--address", "10.187.0.2/24"] }
            nic = [{ switch = "a18s%2$s", mac = "02:87:00:00:00:02"%5$s }]
            """.formatted(dir.resolve("data"), TAG, NS_A, NS_B, pbNic) + extra;
    }

    private String partitionC() {
        return """

            [[partition]]
            name = "pc"
            memory = "64MiB"
            workload = { kind = "net", args = ["--netns", "%s", "--address", "10.187.0.3/24"] }
            nic = [{ switch = "a18s%s", mac = "02:87:00:00:00:03", vlan_access = 10 }]
            """.formatted(NS_C, TAG);
    }

    @Test
    void shouldApplyPortsAndPartitionsLiveAllOrNothingAndComeBackAfterARestart() throws Exception {
        Assumptions.assumeTrue(ProcessHandle.current().info().user().orElse("").equals("root")
            && Files.exists(Path.of("/dev/net/tun")), "needs root and /dev/net/tun (the partitions' TAPs, netns)");
        Path v1 = write("v1.toml", config("", ""));
        try (PhostProcess host = PhostProcess.start(dir.resolve("run"), "run", "--config", v1.toString())) {
            host.awaitLine("phost: ready", Duration.ofSeconds(90));
            awaitPing(NS_A, "10.187.0.2", host);

            Path v2 = write("v2.toml", config(", vlan_access = 10", ""));
            Cli dry = cli("apply", v2.toString(), "--dry-run");
            assertEquals(0, dry.exit, dry.toString());
            assertTrue(dry.out.contains("~ port of partition pb nic 0: vlan_access none -> 10"), dry.toString());
            assertTrue(dry.out.contains("dry run: nothing was changed"), dry.toString());
            assertTrue(ping(NS_A, "10.187.0.2"), "a dry run changes nothing");

            Cli vlan = api(v2, false);
            assertEquals(0, vlan.exit, vlan + host.stderr());
            assertFalse(ping(NS_A, "10.187.0.2"), "pb is on VLAN 10 within a second of the apply: pa (untagged) no longer reaches it");

            Path v3 = write("v3.toml", config(", vlan_access = 10", partitionC()));
            Cli add = api(v3, false);
            assertEquals(0, add.exit, add + host.stderr());
            assertTrue(add.out.contains("+ partition pc"), add.toString());
            awaitPing(NS_C, "10.187.0.2", host); // the added partition runs and reaches its VLAN 10 peer

            Path v4 = write("v4.toml", config(", vlan_access = 10, acl = [\"deny inbound 10.187.0.3\"]", partitionC()));
            Cli acl = api(v4, false);
            assertEquals(0, acl.exit, acl + host.stderr());
            assertFalse(ping(NS_C, "10.187.0.2"), "the ACL drops pc's traffic to pb within a second");

            // A step that fails (a partition whose program does not exist) undoes the steps before it (the policy).
            Path failing = write("v4f.toml", config(", vlan_access = 10, acl = [\"deny inbound 10.187.0.3\"]", partitionC()
                + "\n[[partition]]\nname = \"broken\"\nmemory = \"64MiB\"\ncommand = [\"" + dir.resolve("no-such-program") + "\"]\n")
                .replace("max_iops = 1000", "max_iops = 2000"));
            Cli fails = api(failing, false);
            assertEquals(500, fails.exit, fails + host.stderr());
            assertTrue(fails.out.contains("\"failed\"") && fails.out.contains("undone"), fails.toString());
            assertTrue(client().get("/v1/qos/policies").bodyText().replace(" ", "").contains("\"max_iops\":1000"),
                "the policy change before the failed step was undone");
            assertFalse(partitions(host).contains("\"broken\""), "the failed partition is not left behind");

            Path syntax = write("v5.toml", config(", vlan_access = 10", "\n[[partition]\n"));
            Cli bad = api(syntax, false);
            assertEquals(400, bad.exit, bad.toString());
            assertTrue(bad.err.contains(syntax + ":"), bad.toString());
            Path refused = write("v6.toml", config(", vlan_access = 10", partitionC()).replaceFirst("memory = \"64MiB\"", "memory = \"128MiB\""));
            Cli no = cli("apply", refused.toString());
            assertEquals(2, no.exit, no.toString());
            assertTrue(no.err.contains(refused + ":15:1: partition[0].memory: cannot change on a running host"), no.toString());
            assertFalse(ping(NS_C, "10.187.0.2"), "after the refusals the ACL (which both bad files drop) still holds");

            Path v7 = write("v7.toml", config(", vlan_access = 10, acl = [\"deny inbound 10.187.0.3\"]", ""));
            Cli remove = api(v7, false);
            assertEquals(0, remove.exit, remove + host.stderr());
            assertTrue(remove.out.contains("- partition pc (stopped)"), remove.toString());
            assertFalse(partitions(host).contains("\"pc\""), "pc is gone");

            var policy = client().post("/v1/qos/policies?name=gold&max_iops=500"); // what phost qos set-policy sends
            assertEquals(200, policy.status(), policy.bodyText());
            host.process().destroy();
            assertTrue(host.process().waitFor(60, TimeUnit.SECONDS));
        }
        String saved = Files.readString(dir.resolve("data/applied.toml"));
        assertTrue(saved.contains("max_iops = 500") && saved.contains("deny inbound 10.187.0.3"), saved);
        // The original file, older than the applied config: the host comes back as applied.
        try (PhostProcess again = PhostProcess.start(dir.resolve("run"), "run", "--config", v1.toString())) {
            again.awaitLine("phost: ready", Duration.ofSeconds(90));
            assertTrue(again.stderr().contains("running the config applied live"), again.stderr());
            String parts = partitions(again);
            assertTrue(parts.contains("\"pa\"") && parts.contains("\"pb\"") && !parts.contains("\"pc\""), parts);
            String policies = client().get("/v1/qos/policies").bodyText();
            assertTrue(policies.replace(" ", "").contains("\"max_iops\":500"), policies);
            awaitNamespaceAddress(NS_B, "10.187.0.2", again);
            awaitNamespaceAddress(NS_A, "10.187.0.1", again);
            Thread.sleep(1000);
            assertFalse(ping(NS_A, "10.187.0.2"), "pb is still on VLAN 10 after the restart");
            again.process().destroy();
            assertTrue(again.process().waitFor(60, TimeUnit.SECONDS));
        }
    }

    private Path write(String name, String text) throws Exception {
        Path f = dir.resolve(name);
        Files.writeString(f, text);
        Thread.sleep(20); // distinct modification times: the applied config is newer than every file before it
        return f;
    }

    private ManagementClient client() throws Exception {
        return new ManagementClient(ManagementAddress.parse(Files.readAllLines(dir.resolve("run/endpoint")).getFirst()), null);
    }

    private String partitions(PhostProcess host) throws Exception {
        return client().get("/v1/partitions").bodyText();
    }

    private void awaitNamespaceAddress(String ns, String address, PhostProcess host) throws Exception {
        long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
        while (!run(5, "ip", "-n", ns, "addr", "show").contains(address + "/24")) {
            assertTrue(System.nanoTime() < deadline, ns + " never got " + address + ":\n" + host.stderr());
            Thread.sleep(300);
        }
    }

    private void awaitPing(String ns, String to, PhostProcess host) throws Exception {
        awaitNamespaceAddress(ns, ns.equals(NS_A) ? "10.187.0.1" : ns.equals(NS_B) ? "10.187.0.2" : "10.187.0.3", host);
        long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
        while (!ping(ns, to)) {
            assertTrue(System.nanoTime() < deadline, ns + " never reached " + to + ":\n" + host.stderr());
            Thread.sleep(300);
        }
    }

    /** One ping with a one-second wait: true when answered. */
    private static boolean ping(String ns, String to) throws Exception {
        return run(5, "ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "1", to).contains(" 0% packet loss");
    }

    private record Cli(int exit, String out, String err) {
        @Override
        public String toString() {
            return "exit " + exit + "\nstdout:\n" + out + "\nstderr:\n" + err;
        }
    }

    /**
     * POST /v1/config as {@code phost apply} sends it (the CLI's own JVM start is paid only where its output is
     * checked): exit 0 for a 200, else the status; out is the body.
     */
    private Cli api(Path file, boolean dryRun) throws Exception {
        var r = client().post("/v1/config?dry_run=" + dryRun + "&file=" + java.net.URLEncoder.encode(file.toString(), StandardCharsets.UTF_8),
            Files.readAllBytes(file));
        return new Cli(r.status() == 200 ? 0 : r.status(), r.bodyText(), r.bodyText());
    }

    /** The phost CLI against the test's host (found through the runtime dir), to its exit. */
    private Cli cli(String... args) throws Exception {
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.addAll(GuestLauncher.inheritedJvmFlags());
        cmd.add("-Dphost.runtime.dir=" + dir.resolve("run"));
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        cmd.add("io.phost.appliance.Main");
        cmd.addAll(List.of(args));
        Path out = dir.resolve("cli.out");
        Path err = dir.resolve("cli.err");
        Process p = new ProcessBuilder(cmd).redirectOutput(out.toFile()).redirectError(err.toFile()).start();
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), "phost " + String.join(" ", args) + " did not finish");
        return new Cli(p.exitValue(), Files.readString(out), Files.readString(err));
    }

    private static String run(int timeoutSeconds, String... cmd) throws Exception {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        if (!p.waitFor(timeoutSeconds, TimeUnit.SECONDS)) {
            p.destroyForcibly();
        }
        return new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    }
}
