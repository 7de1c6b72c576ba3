package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertAll;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.appliance.config.ConfigLoader;
import io.phost.appliance.config.PartitionConfig;
import io.phost.appliance.mgmt.HttpResponse;
import io.phost.appliance.mgmt.ManagementAddress;
import io.phost.appliance.mgmt.ManagementClient;
import io.phost.appliance.mgmt.OpenApi;
import io.phost.core.text.Json;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.function.Executable;
import org.junit.jupiter.api.io.TempDir;

/**
 * The shipped examples/appliance.toml as a live host ({@code phost run}; data_dir in a temp dir; the
 * host-specific management/NBD socket paths and CPU pinning removed, the internal switch renamed per run). Every partition reaches RUNNING and
 * stays there; its /v1/metrics passes {@code promtool check metrics}; every operation of /openapi.json answers
 * as documented; errors are JSON.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class ExampleConfigRunTest {
    private static final Duration STAYS = Duration.ofSeconds(5);

    private Path dir;
    private PhostProcess host;
    private ManagementClient client;
    private List<String> names;
    private String socket;

    @BeforeAll
    void startTheExample(@TempDir Path tmp) throws Exception {
        dir = tmp;
        String example = Files.readString(Path.of("..", "examples", "appliance.toml"));
        Path data = dir.resolve("data");
        String local = example
            .replaceFirst("(?m)^data_dir = .*$", "data_dir = \"" + data + "\"")
            .replaceFirst("(?m)^management = .*$", "")
            .replaceFirst("(?m)^nbd = .*$", "")
            .replaceFirst("(?m)^vsp_cpus = .*$", "")
            // the internal switch makes a host TAP named after it: unique per run, so parallel runs do not collide
            .replace("\"frontend\"", "\"fe" + ProcessHandle.current().pid() % 100_000 + "\"");
        Path cfg = dir.resolve("appliance.toml");
        Files.writeString(cfg, local);
        names = ConfigLoader.load(cfg).partitions().stream().map(PartitionConfig::name).toList();
        assertTrue(names.size() >= 2, "the example has partitions: " + names);
        host = PhostProcess.start(dir.resolve("run"), "run", "--config", cfg.toString(), "--plain");
        long t0 = System.nanoTime();
        host.awaitLineWhileProgressing("phost: ready", Duration.ofSeconds(90), Duration.ofSeconds(300));
        System.out.printf("the example config: phost: ready after %.1f s (load %s)%n", (System.nanoTime() - t0) / 1e9,
            Files.readString(Path.of("/proc/loadavg")).strip());
        socket = "unix:" + data.resolve("phost.sock");
        client = new ManagementClient(ManagementAddress.parse(socket), null);
    }

    @AfterAll
    void stop() throws Exception {
        if (host != null) {
            host.process().destroy();
            assertTrue(host.process().waitFor(20, TimeUnit.SECONDS), "phost stops on SIGTERM");
            assertEquals(0, host.process().exitValue(), host.stderr());
            host.close();
        }
    }

    @Test
    void shouldRunEveryPartitionOfTheShippedExampleAndKeepItRunning() throws Exception {
        Map<String, Map<?, ?>> first = awaitAllRunning();
        long until = System.nanoTime() + STAYS.toNanos();
        while (System.nanoTime() < until) {
            Thread.sleep(1000);
            for (Map<?, ?> now : partitions().values()) {
                Map<?, ?> then = first.get((String) now.get("name"));
                assertEquals("running", now.get("state"), "partition left RUNNING: " + now + "\n" + host.stderr());
                assertEquals(then.get("pid"), now.get("pid"), "partition restarted: " + now);
                assertEquals(0L, ((Number) now.get("fault_count")).longValue(), "faults: " + now);
            }
        }
    }

    @Test
    void shouldServeMetricsThatPromtoolChecksClean() throws Exception {
        awaitAllRunning();
        Thread.sleep(1500); // a second of I/O in the histograms
        PromtoolCheck.assertLintsClean(client.get("/v1/metrics").bodyText(), names);
    }

    @Test
    void shouldAnswerEveryOperationOfTheServedOpenApiDocument() throws Exception {
        HttpResponse doc = client.get("/openapi.json");
        assertEquals(200, doc.status());
        Map<?, ?> served = (Map<?, ?>) Json.parse(doc.bodyText());
        assertEquals("3.1.0", served.get("openapi"));
        assertEquals(OpenApi.document(), served, "the served document is docs/openapi.yaml");
        String aPartition = String.valueOf(((Map<?, ?>) ((List<?>) Json.parse(client.get("/v1/partitions").bodyText())).getFirst()).get("name"));
        List<Executable> checks = new ArrayList<>();
        for (String op : OpenApi.operations()) {
            checks.add(() -> {
                String method = op.substring(0, op.indexOf(' '));
                String path = op.substring(op.indexOf(' ') + 1);
                Map<?, ?> responses = (Map<?, ?>) ((Map<?, ?>) ((Map<?, ?>) ((Map<?, ?>) served.get("paths"))
                    .get(path)).get(method.toLowerCase())).get("responses");
                if (path.startsWith("/v1/backups")) {
                    // A backup takes a checkpoint: asked about a disk no partition has, each verb answers its documented 404.
                    HttpResponse r = method.equals("POST") ? client.post(path + "?disk=no-such-disk") : client.get(path + "?disk=no-such-disk");
                    assertEquals(404, r.status(), op + ": " + r.bodyText());
                    assertTrue(responses.containsKey("404"), op + ": 404 is documented");
                    return;
                }
                if (path.equals("/v1/config") || path.equals("/v1/partitions/receive")) {
                    // A live change would disturb the other checks: an empty config (or hand-over) is invalid, answered as documented.
                    HttpResponse r = client.post(path + "?dry_run=true&from=test", new byte[0]);
                    assertEquals(400, r.status(), op + ": " + r.bodyText());
                    assertTrue(responses.containsKey("400"), op + ": 400 is documented");
                    assertEquals("invalid", ((Map<?, ?>) Json.parse(r.bodyText())).get("result"), r.bodyText());
                    return;
                }
                if (path.startsWith("/v1/partitions/") || path.startsWith("/v1/switches/") || path.startsWith("/v1/disks/")) {
                    // Lifecycle verbs, port changes and disk resizes would disturb the other checks: a verb on an unknown partition (or disk)
                    // (or a port change naming no switch) must answer its documented 404; console/logs of a process partition answer 404 (no console) or 200 (its log).
                    HttpResponse r = method.equals("POST") ? client.post(path + "?name=no-such-partition")
                        : client.get(path + "?name=" + aPartition);
                    assertTrue(responses.containsKey(Integer.toString(r.status())), op + " answered an undocumented "
                        + r.status() + ": " + r.bodyText());
                    assertTrue(method.equals("GET") || r.status() == 404, op + ": " + r.status());
                    return;
                }
                HttpResponse r = method.equals("POST")
                    ? client.post(path + "?name=gold&max_iops=20000") : client.get(path);
                assertEquals(200, r.status(), op + ": " + r.bodyText());
                Map<?, ?> content = (Map<?, ?>) ((Map<?, ?>) responses.get("200")).get("content");
                String type = r.contentType().split(";")[0];
                assertTrue(content.containsKey(type), op + " answers " + type + ", documented " + content.keySet());
                if (type.equals("application/json")) {
                    Json.parse(r.bodyText());
                }
            });
        }
        assertAll(checks);
    }

    @Test
    void shouldAnswerMistakesWithJsonErrorsAllowAndRedirects() throws Exception {
        HttpResponse missing = client.get("/v1/nope");
        assertEquals(404, missing.status());
        assertEquals("not_found", ((Map<?, ?>) Json.parse(missing.bodyText())).get("reason"));
        HttpResponse wrong = client.post("/v1/status");
        assertEquals(405, wrong.status());
        assertEquals("GET", wrong.headers().get("Allow"));
        assertEquals("method_not_allowed", ((Map<?, ?>) Json.parse(wrong.bodyText())).get("reason"));
        HttpResponse old = client.get("/status");
        assertEquals(308, old.status());
        assertEquals("/v1/status", old.headers().get("Location"));
    }

    @Test
    void shouldShowHumanUnitsInTablesThatFit120ColumnsAndJsonOnRequest() throws Exception {
        awaitAllRunning();
        Thread.sleep(1500);
        io.phost.appliance.cli.ConfigCommandTest.Run flows = io.phost.appliance.cli.ConfigCommandTest.phost("qos", "flows", "--host", socket);
        assertEquals(0, flows.exit(), flows.err());
        assertTrue(flows.out().lines().allMatch(l -> l.length() <= 120), "qos flows fits 120 columns:\n" + flows.out());
        assertTrue(flows.out().contains("µs") || flows.out().contains(" ms"), flows.out());
        assertTrue(flows.out().contains("/s"), flows.out());
        io.phost.appliance.cli.ConfigCommandTest.Run status = io.phost.appliance.cli.ConfigCommandTest.phost("status", "--host", socket);
        assertEquals(0, status.exit(), status.err());
        assertTrue(status.out().contains("64.0 GiB"), "disk sizes in binary units:\n" + status.out());
        io.phost.appliance.cli.ConfigCommandTest.Run json = io.phost.appliance.cli.ConfigCommandTest.phost("status", "--host", socket, "--json");
        assertEquals(68719476736L, ((Number) ((Map<?, ?>) ((List<?>) ((Map<?, ?>) Json.parse(json.out())).get("disks")).getFirst()).get("size")).longValue());
    }

    /** Issue 16 defect 7: POST /v1/qos/policies takes the config file's values and refuses what it refuses, alike. */
    @Test
    void shouldValidatePostedPoliciesExactlyAsTheConfigFile() throws Exception {
        HttpResponse units = client.post("/v1/qos/policies?name=api-units&max_bandwidth=100MB/s&normalization_size=16KiB&weight=300");
        assertEquals(200, units.status(), units.bodyText());
        Map<?, ?> p = (Map<?, ?>) Json.parse(units.bodyText());
        assertEquals(100_000_000L, ((Number) p.get("max_bandwidth_bytes_per_sec")).longValue());
        assertEquals(16384L, ((Number) p.get("normalization_size")).longValue());
        assertEquals("dedicated", p.get("type"));

        for (String[] bad : new String[][] {
            {"weight=4294967496", "weight = 4294967496"},
            {"normalization_size=3000", "normalization_size = 3000"},
            {"type=WEIRD", "type = \"WEIRD\""},
            {"max_bandwidth=fast", "max_bandwidth = \"fast\""},
            {"min_iops=500&max_iops=100", "min_iops = 500\nmax_iops = 100"},
            {"colour=blue", "colour = \"blue\""},
        }) {
            HttpResponse r = client.post("/v1/qos/policies?name=api-bad&" + bad[0]);
            assertEquals(400, r.status(), bad[0] + ": " + r.bodyText());
            Map<?, ?> err = (Map<?, ?>) Json.parse(r.bodyText());
            assertEquals("invalid_argument", err.get("reason"));
            assertEquals(configMessage(bad[1]), err.get("error"), bad[0]);
        }
        io.phost.appliance.cli.ConfigCommandTest.Run cli = io.phost.appliance.cli.ConfigCommandTest.phost(
            "qos", "set-policy", "cli-units", "--max-bandwidth", "100MB/s", "--normalization-size", "8KiB", "--host", socket);
        assertEquals(0, cli.exit(), cli.err());
        io.phost.appliance.cli.ConfigCommandTest.Run weird = io.phost.appliance.cli.ConfigCommandTest.phost(
            "qos", "set-policy", "cli-units", "--type", "WEIRD", "--host", socket);
        assertEquals(2, weird.exit());
        assertEquals("phost: set-policy cli-units: " + configMessage("type = \"WEIRD\"") + "\n", weird.err());

        HttpResponse forged = client.post("/v1/qos/policies?name=x%0Alevel%3DERROR");
        assertEquals(400, forged.status());
        assertTrue(!forged.bodyText().strip().contains("\n") && forged.bodyText().contains("is not a valid name"), forged.bodyText());
        HttpResponse escape = client.post("/v1/qos/policies?name=%zz");
        assertEquals(400, escape.status(), escape.bodyText());
        assertTrue(!escape.bodyText().contains("Exception"), escape.bodyText());

        int created = ((List<?>) Json.parse(client.get("/v1/qos/policies").bodyText())).size();
        for (int i = created; i < QosComponent.MAX_POLICIES; i++) {
            assertEquals(200, client.post("/v1/qos/policies?name=many-" + i).status());
        }
        HttpResponse full = client.post("/v1/qos/policies?name=one-too-many");
        assertEquals(409, full.status(), full.bodyText());
        assertEquals("limit_reached", ((Map<?, ?>) Json.parse(full.bodyText())).get("reason"));
        assertEquals(200, client.post("/v1/qos/policies?name=many-" + (QosComponent.MAX_POLICIES - 1) + "&weight=5").status(),
            "changing an existing policy is still possible");
    }

    /** The config file's messages for a [[qos_policy]] named api-bad with {@code keys}, as the API words them. */
    private static String configMessage(String keys) {
        try {
            ConfigLoader.parse("t.toml", "[host]\ndata_dir = \"/srv\"\n[[qos_policy]]\nname = \"api-bad\"\n" + keys + "\n");
        } catch (io.phost.appliance.config.ConfigException e) {
            return String.join("; ", e.errors().stream()
                .map(x -> x.keyPath().replaceFirst("^qos_policy\\[0\\]\\.", "") + ": " + x.message()).toList());
        }
        throw new AssertionError("the config file accepts " + keys);
    }

    private Map<String, Map<?, ?>> awaitAllRunning() throws Exception {
        long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
        Map<String, Map<?, ?>> last = Map.of();
        while (System.nanoTime() < deadline) {
            last = partitions();
            if (last.keySet().containsAll(names) && last.values().stream().allMatch(m -> "running".equals(m.get("state")))) {
                return last;
            }
            Thread.sleep(500);
        }
        throw new AssertionError("not every partition reached RUNNING: " + last.values() + "\n" + host.stderr());
    }

    private Map<String, Map<?, ?>> partitions() throws Exception {
        Map<String, Map<?, ?>> out = new HashMap<>();
        for (Object o : (List<?>) Json.parse(client.get("/v1/partitions").bodyText())) {
            Map<?, ?> m = (Map<?, ?>) o;
            out.put((String) m.get("name"), m);
        }
        return out;
    }
}
