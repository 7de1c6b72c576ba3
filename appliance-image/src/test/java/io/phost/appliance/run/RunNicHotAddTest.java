package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.appliance.mgmt.ManagementAddress;
import io.phost.appliance.mgmt.ManagementClient;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code phost apply} hot-adds a NIC to a running process partition and hot-removes it (Add-/Remove-VMNetworkAdapter
 * on a running VM): partition pd starts with one NIC while its {@code net} workload waits for NIC 1; the apply adds
 * NIC 1 (a port on the switch, then a VMBus offer), the guest bridges it into its namespace and pa reaches it; an
 * apply whose later step fails undoes an added NIC (its port is not left on the switch); applying the first file
 * again removes NIC 1 (rescind, then the port leaves); a port change through {@code POST /v1/switches/port} is
 * saved in applied.toml and a restart comes back to it. Before: NIC count changes were refused, and the guest's
 * {@code --nic 1} silently bridged NIC 0 when NIC 1 was not offered yet. Needs root (TAP, netns).
 */
@Timeout(300)
class RunNicHotAddTest {
    private static final String TAG = Long.toString(ProcessHandle.current().pid() % 100000);
    private static final String NS_A = "n12ha" + TAG;
    private static final String NS_D = "n12hd" + TAG;

    @TempDir
    Path dir;

    @AfterEach
    void tearDown() throws Exception {
        for (String ns : List.of(NS_A, NS_D)) {
            run(5, "ip", "netns", "del", ns);
        }
    }

    private String config(String pdExtraNics, String extra) {
        return """
            [host]
            name = "nic-hotadd"
            data_dir = "%1$s"

            [[switch]]
            name = "n12h%2$s"
            type = "private"

            [[partition]]
            name = "pa"
            memory = "64MiB"
            workload = { kind = "net", args = ["--netns", "%3$s", "--address", "10.188.0.1/24"] }
            nic = [{ switch = "n12h%2$s", mac = "02:88:00:00:00:01" }]

            [[partition]]
            name = "pd"
            memory = "64MiB"
            workload = { kind = "net", args = ["--netns", "%4$s", "--address", "10.188.0.4/24", "--nic", "1"] }
            nic = [{ switch = "n12h%2$s", mac = "02:88:00:00:00:04" }%5$s]
            """.formatted(dir.resolve("data"), TAG, NS_A, NS_D, pdExtraNics) + extra;
    }

    @Test
    void shouldHotAddANicTheGuestUsesUndoItWhenALaterStepFailsAndHotRemoveIt() throws Exception {
        Assumptions.assumeTrue(ProcessHandle.current().info().user().orElse("").equals("root")
            && Files.exists(Path.of("/dev/net/tun")), "needs root and /dev/net/tun (the partitions' TAPs, netns)");
        String nic1 = ", { switch = \"n12h" + TAG + "\", mac = \"02:88:00:00:00:05\" }";
        String nic2 = nic1 + ", { switch = \"n12h" + TAG + "\", mac = \"02:88:00:00:00:06\" }";
        Path v1 = write("v1.toml", config("", ""));
        Path v2 = write("v2.toml", config(nic1, ""));
        try (PhostProcess host = PhostProcess.start(dir.resolve("run"), "run", "--config", v1.toString())) {
            host.awaitLine("phost: ready", Duration.ofSeconds(90));
            awaitAddress(NS_A, "10.188.0.1", host);
            // pd's guest waits (30 s) for NIC 1, which does not exist yet.
            var add = post(v2);
            assertEquals(200, add.status(), add.bodyText() + host.stderr());
            assertTrue(add.bodyText().contains("+ nic 1 of partition pd on switch n12h" + TAG + " (hot-add)"), add.bodyText());
            awaitAddress(NS_D, "10.188.0.4", host); // the guest got the offer and bridged NIC 1 into its namespace
            awaitPing(NS_A, "10.188.0.4", host);
            assertTrue(switches().contains("pd/pd-nic1"), switches());

            // NIC 2 is added, then a later step (a partition whose program does not exist) fails: NIC 2 is undone.
            Path failing = write("v3.toml", config(nic2, "\n[[partition]]\nname = \"zbroken\"\nmemory = \"64MiB\"\ncommand = [\""
                + dir.resolve("no-such-program") + "\"]\n"));
            var fails = post(failing);
            assertEquals(500, fails.status(), fails.bodyText());
            assertTrue(fails.bodyText().contains("undone"), fails.bodyText());
            assertFalse(switches().contains("pd/pd-nic2"), "the added NIC's port was taken off again: " + switches());
            assertTrue(ping(NS_A, "10.188.0.4"), "NIC 1 still works");

            var remove = post(v1);
            assertEquals(200, remove.status(), remove.bodyText() + host.stderr());
            assertTrue(remove.bodyText().contains("- nic 1 of partition pd (hot-remove)"), remove.bodyText());
            assertFalse(switches().contains("pd/pd-nic1"), switches());
            assertFalse(ping(NS_A, "10.188.0.4"), "NIC 1 is gone (pd's NIC 0, on the same switch, is not bridged)");
            assertTrue(partitions().contains("\"pd\""), "the partition is still there");

            // A port change through the API is saved in applied.toml (the NIC's inline table), so a restart keeps it.
            String port = "/v1/switches/port?switch=n12h" + TAG + "&port=pa/pa-nic0";
            var change = client().post(port + "&max_bandwidth_in=1000000&acl=deny%20both%2010.188.0.77");
            assertEquals(200, change.status(), change.bodyText());
            String saved = Files.readString(dir.resolve("data/applied.toml"));
            assertTrue(saved.contains("max_bandwidth_in = 1000000, acl = [\"deny both 10.188.0.77\"] }"), saved);
            host.process().destroy();
            assertTrue(host.process().waitFor(60, TimeUnit.SECONDS));
        }
        try (PhostProcess again = PhostProcess.start(dir.resolve("run"), "run", "--config", v1.toString())) {
            again.awaitLine("phost: ready", Duration.ofSeconds(90));
            String settings = client().post("/v1/switches/port?switch=n12h" + TAG + "&port=pa/pa-nic0").bodyText();
            assertTrue(settings.contains("deny both 10.188.0.77") && settings.contains("\"max_bandwidth_in\": 1000000"),
                "the restarted host has the port change: " + settings);
            again.process().destroy();
            assertTrue(again.process().waitFor(60, TimeUnit.SECONDS));
        }
    }

    private Path write(String name, String text) throws Exception {
        Path f = dir.resolve(name);
        Files.writeString(f, text);
        Thread.sleep(20);
        return f;
    }

    private ManagementClient client() throws Exception {
        return new ManagementClient(ManagementAddress.parse(Files.readAllLines(dir.resolve("run/endpoint")).getFirst()), null);
    }

    private io.phost.appliance.mgmt.HttpResponse post(Path file) throws Exception {
        return client().post("/v1/config?file=" + java.net.URLEncoder.encode(file.toString(), StandardCharsets.UTF_8),
            Files.readAllBytes(file));
    }

    private String switches() throws Exception {
        return client().get("/v1/status").bodyText();
    }

    private String partitions() throws Exception {
        return client().get("/v1/partitions").bodyText();
    }

    private void awaitAddress(String ns, String address, PhostProcess host) throws Exception {
        long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
        while (!run(5, "ip", "-n", ns, "addr", "show").contains(address + "/24")) {
            assertTrue(System.nanoTime() < deadline, ns + " never got " + address + ":\n" + host.stderr());
            Thread.sleep(300);
        }
    }

    private void awaitPing(String ns, String to, PhostProcess host) throws Exception {
        long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
        while (!ping(ns, to)) {
            assertTrue(System.nanoTime() < deadline, ns + " never reached " + to + ":\n" + host.stderr());
            Thread.sleep(300);
        }
    }

    private static boolean ping(String ns, String to) throws Exception {
        return run(5, "ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "1", to).contains(" 0% packet loss");
    }

    private static String run(int timeoutSeconds, String... cmd) throws Exception {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        if (!p.waitFor(timeoutSeconds, TimeUnit.SECONDS)) {
            p.destroyForcibly();
        }
        return new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    }
}
