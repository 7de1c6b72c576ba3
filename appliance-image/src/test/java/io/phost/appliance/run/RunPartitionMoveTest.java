package io.phost.appliance.run;

import io.phost.storage.rbd.CephTestCluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.phost.appliance.Main;
import io.phost.appliance.mgmt.HttpResponse;
import io.phost.appliance.mgmt.ManagementAddress;
import io.phost.appliance.mgmt.ManagementClient;
import io.phost.core.text.Json;
import io.phost.storage.vmbus.GuestIo;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Two `phost run` appliances (separate data dirs and management sockets) on one throwaway Ceph cluster
 * ({@link CephTestCluster}), each with the same disk and partition stanzas and the other as its {@code [[peer]]}:
 * <ol>
 *   <li>Quick Migration: a busy process partition (random 4 KiB pattern writes, {@link GuestIo#pattern}) and an
 *       idle one move A → B → A with {@code phost partition move}; refusals name the reason (unknown peer, a
 *       local disk; VM partitions move too: {@link RunVmMoveTest}).</li>
 *   <li>HA restart: SIGKILL of A (and its partitions); B restarts the {@code ha = true} partitions after A's lease,
 *       breaking A's locks: db, and live, added by {@code phost apply} on both hosts just before (B's apply leaves
 *       it stopped: A holds its lock), whose image keeps its guest's pattern and a marker block; a move to the
 *       dead A is refused as unreachable.</li>
 *   <li>Fencing: A comes back, B is frozen (SIGSTOP), A takes the partition over; when B wakes up (SIGCONT) its
 *       writes to the image fail (its client is blocklisted) and it turns its copy of the partition off.</li>
 * </ol>
 * Finally the image holds only the pattern (or zeros) in the busy region, and a block written through A's NBD
 * export at the start is intact ({@code rbd export} read back here). With {@code -Dphost.soak=true} the moves
 * run three rounds and print the times (docs/benchmarks.md).
 *
 * <p>Also a partition defined on A only (web: an RBD disk, a NIC on the "lan" switch): its move hands its tables
 * over with its disk's QoS policy (a differing same-named policy is refused), the applied configs follow (a restart
 * of A comes back without it), its NIC announces itself with a RARP,
 * and a partition left on A reaches it across the veth pair the test joins the two switches with. Needs root.
 */
@Timeout(900) // the default run takes about 4 min at load 20-30; -Dphost.soak=true adds about 4
class RunPartitionMoveTest {
    private static final long SEED = 7;
    private static final int SPAN = 1 << 20;
    private static final int BS = 4096;

    @TempDir
    Path dir;

    private static final String TAG = Long.toString(ProcessHandle.current().pid() % 100000);
    /** The veth pair joining the two appliances' "lan" switches (one end each as its uplink). */
    private static final String VETH_A = "move20a" + TAG;
    private static final String VETH_B = "move20b" + TAG;
    /** web's namespace (its guest's TAP, wherever it runs) and watch's (a partition that stays on A). */
    private static final String NS_WEB = "move20w" + TAG;
    private static final String NS_WATCH = "move20x" + TAG;
    private static final String WEB_MAC = "02:20:00:00:00:01";

    /**
     * Only on A at first: web (an RBD disk and a NIC on lan), which moves with its definition, and watch, which
     * stays on A and looks at web across the veth pair once web runs on B.
     */
    private String onlyOnA(String image, CephTestCluster ceph) {
        return """

            # web moves between the appliances with its definition, and its disk's QoS policy (B has none)
            [[qos_policy]]
            name = "web-limit"
            type = "dedicated"
            max_iops = 5000

            [[disk]]
            name = "web-disk"
            format = "rbd"
            qos_policy = "web-limit"
            [disk.rbd]
            pool = "rbd"
            image = "%s-web"
            cluster_config = "%s"
            connect_timeout = 20
            [disk.create]
            size = "4MiB"

            [[partition]]
            name = "web"
            memory = "64MiB"
            workload = { kind = "net", args = ["--netns", "%s", "--address", "10.20.0.1/24"] }
            disk = [{ disk = "web-disk" }]
            nic = [{ switch = "lan", mac = "%s" }]

            [[partition]]
            name = "watch"
            memory = "64MiB"
            workload = { kind = "net", args = ["--netns", "%s", "--address", "10.20.0.2/24"] }
            nic = [{ switch = "lan", mac = "02:20:00:00:00:02" }]
            """.formatted(image, ceph.conf(), NS_WEB, WEB_MAC, NS_WATCH);
    }

    /**
     * An ha partition added live (phost apply) on both appliances, as docs/cluster.md asks: the same tables on
     * each; its image exists already (a marker block imported at 2 MiB), its guest writes the pattern.
     */
    private static String liveHa(String image, CephTestCluster ceph) {
        return """

            [[disk]]
            name = "live-disk"
            format = "rbd"
            [disk.rbd]
            pool = "rbd"
            image = "%s-live"
            cluster_config = "%s"
            connect_timeout = 20

            [[partition]]
            name = "live"
            memory = "64MiB"
            ha = true
            [partition.workload]
            kind = "io"
            args = ["--rw", "randwrite", "--bs", "4k", "--iodepth", "4", "--span", "1m", "--runtime", "0", "--seed", "%d"]
            [[partition.disk]]
            disk = "live-disk"
            """.formatted(image, ceph.conf(), SEED);
    }

    private String config(String name, String peer, Path data, Path peerData, CephTestCluster ceph, String image,
                          String uplink) {
        return """
            [host]
            name = "%s"
            data_dir = "%s"

            [[switch]]
            name = "lan"
            type = "external"
            uplink = "%s"

            [[peer]]
            name = "%s"
            management = "unix:%s/phost.sock"
            lease = 3

            [[disk]]
            name = "data"
            format = "rbd"
            nbd_export = true
            [disk.rbd]
            pool = "rbd"
            image = "%s"
            cluster_config = "%s"
            connect_timeout = 20
            [disk.create]
            size = "16MiB"

            [[disk]]
            name = "quiet-disk"
            format = "rbd"
            [disk.rbd]
            pool = "rbd"
            image = "%s-quiet"
            cluster_config = "%s"
            connect_timeout = 20
            [disk.create]
            size = "4MiB"

            [[disk]]
            name = "scratch"
            format = "raw"
            path = "scratch.raw"
            [disk.create]
            size = "1MiB"

            [[partition]]
            name = "db"
            memory = "64MiB"
            ha = true
            [partition.workload]
            kind = "io"
            args = ["--rw", "randwrite", "--bs", "4k", "--iodepth", "4", "--span", "1m", "--runtime", "0", "--seed", "%d"]
            [[partition.disk]]
            disk = "data"

            [[partition]]
            name = "quiet"
            memory = "32MiB"
            [partition.workload]
            kind = "idle"
            [[partition.disk]]
            disk = "quiet-disk"

            [[partition]]
            name = "local"
            memory = "32MiB"
            autostart = false
            [partition.workload]
            kind = "idle"
            [[partition.disk]]
            disk = "scratch"
            """.formatted(name, data, uplink, peer, peerData, image, ceph.conf(), image, ceph.conf(), SEED);
    }

    @Test
    void shouldMovePartitionsBetweenTwoAppliancesAndRestartThemWhenTheirHostDies() throws Exception {
        CephTestCluster ceph = CephTestCluster.get();
        String image = "move-" + ProcessHandle.current().pid();
        Path dataA = dir.resolve("a");
        Path dataB = dir.resolve("b");
        Path cfgA = dir.resolve("a.toml");
        Path cfgB = dir.resolve("b.toml");
        Files.writeString(cfgA, config("a", "b", dataA, dataB, ceph, image, VETH_A) + onlyOnA(image, ceph));
        Files.writeString(cfgB, config("b", "a", dataB, dataA, ceph, image, VETH_B));
        run("ip", "link", "add", VETH_A, "type", "veth", "peer", "name", VETH_B);
        run("ip", "link", "set", VETH_A, "up");
        run("ip", "link", "set", VETH_B, "up");
        String endA = "unix:" + dataA.resolve("phost.sock");
        String endB = "unix:" + dataB.resolve("phost.sock");
        boolean soak = Boolean.getBoolean("phost.soak");
        List<PhostProcess> all = new ArrayList<>();
        try {
            PhostProcess a = started(all, "run-a", cfgA);
            PhostProcess b = started(all, "run-b", cfgB);
            ManagementClient ca = client(endA);
            ManagementClient cb = client(endB);
            assertEquals("running", awaitState(ca, "db", "running"));
            assertNotEquals("running", state(cb, "db"), "B must not start what A runs (A holds the RBD lock)");
            HttpResponse second = cb.post("/v1/partitions/start?name=db");
            assertEquals(409, second.status(), "a start on B while A runs db");
            assertTrue(second.bodyText().contains("exclusive lock"), second.bodyText());
            // A block written through A's NBD export while A holds the lock: it must survive every move.
            run("qemu-io", "-f", "raw", "-c", "write -P 0x5a 2M 64k", "nbd+unix:///data?socket=" + dataA.resolve("nbd.sock"));

            // Refusals, each naming its reason.
            assertEquals(2, Main.execute("partition", "move", "db", "--to", "nowhere", "--host", endA));
            HttpResponse local = ca.post("/v1/partitions/move?name=local&to=b");
            assertEquals(409, local.status());
            assertTrue(local.bodyText().contains("scratch") && local.bodyText().contains("local"), local.bodyText());

            // Quick Migration A -> B -> A with the CLI (busy) and the API (idle); timed rounds with -Dphost.soak=true.
            assertEquals(0, Main.execute("partition", "move", "db", "--to", "b", "--host", endA));
            assertEquals("running", state(cb, "db"));
            assertEquals("stopped", state(ca, "db"));
            assertEquals(0, Main.execute("partition", "move", "db", "--to", "a", "--host", endB));
            assertEquals("running", state(ca, "db"));
            move(ca, cb, "quiet", "b");
            move(cb, ca, "quiet", "a");
            for (int round = 0; soak && round < 3; round++) {
                for (String p : List.of("db", "quiet", "web")) { // web: its definition is handed over each time
                    Thread.sleep(1000); // let the busy partition write
                    Map<?, ?> there = move(ca, cb, p, "b");
                    Map<?, ?> back = move(cb, ca, p, "a");
                    System.out.printf("quick-migration partition=%s round=%d definition=%s a->b total/stop/start=%s/%s/%s ms "
                        + "b->a=%s/%s/%s ms load=%s%n", p, round, there.get("definition"), there.get("total_ms"), there.get("stop_ms"),
                        there.get("start_ms"), back.get("total_ms"), back.get("stop_ms"), back.get("start_ms"),
                        Files.readString(Path.of("/proc/loadavg")).strip());
                }
            }

            moveWithDefinition(ca, cb, dataA, dataB);

            // An ha partition added live on both appliances: it starts on A; B keeps its copy stopped (A holds the
            // lock) instead of failing the apply.
            byte[] marked = new byte[4 << 20];
            java.util.Arrays.fill(marked, 2 << 20, (2 << 20) + (64 << 10), (byte) 0x5a);
            Path markedFile = Files.write(dir.resolve("live.raw"), marked);
            ceph.run("rbd", "import", markedFile.toString(), "rbd/" + image + "-live");
            for (Path data : List.of(dataA, dataB)) {
                Path next = Files.writeString(dir.resolve(data.getFileName() + "-live.toml"),
                    Files.readString(data.resolve("applied.toml")) + liveHa(image, ceph));
                assertEquals(0, Main.execute("apply", next.toString(), "--host", "unix:" + data.resolve("phost.sock")),
                    "phost apply of the live ha partition on " + data.getFileName());
                if (data == dataA) {
                    assertEquals("running", awaitState(ca, "live", "running"));
                }
            }
            assertNotEquals("running", state(cb, "live"), "B must not start what A runs (A holds the RBD lock)");

            // HA: A dies with its partitions; B restarts db (ha = true) after A's 3 s lease, breaking A's lock.
            Thread.sleep(1000);
            List<ProcessHandle> aTree = new ArrayList<>(a.process().descendants().toList());
            long killed = System.nanoTime();
            a.process().destroyForcibly();
            aTree.forEach(ProcessHandle::destroyForcibly);
            assertTrue(a.process().waitFor(10, TimeUnit.SECONDS));
            assertEquals("running", awaitState(cb, "db", "running"));
            System.out.printf("ha-restart detect+restart=%d ms load=%s%n", (System.nanoTime() - killed) / 1_000_000,
                Files.readString(Path.of("/proc/loadavg")).strip());
            assertEquals("running", awaitState(cb, "live", "running"), "the ha partition added live comes back on B");
            assertNotEquals("running", state(cb, "quiet"), "quiet is not ha: it stays stopped on B");
            HttpResponse health = cb.get("/v1/health");
            assertEquals(503, health.status(), "a dead peer degrades the survivor's health");
            assertTrue(health.bodyText().contains("cluster"), health.bodyText());
            Map<?, ?> cluster = (Map<?, ?>) ((Map<?, ?>) Json.parse(cb.get("/v1/status").bodyText())).get("cluster");
            assertTrue(((List<?>) cluster.get("takeovers")).stream().anyMatch(t -> "db".equals(((Map<?, ?>) t).get("partition"))),
                cluster.toString());
            HttpResponse unreachable = cb.post("/v1/partitions/move?name=db&to=a");
            assertEquals(409, unreachable.status());
            assertTrue(unreachable.bodyText().contains("unreachable"), unreachable.bodyText());
            assertEquals("running", state(cb, "db"), "a refused move leaves the partition running");

            // A comes back: db stays on B. Then B freezes; A takes db over and B, woken up, is fenced.
            a = started(all, "run-a2", cfgA);
            ca = client(endA);
            assertNotEquals("running", state(ca, "db"), "A must not start what B runs");
            assertTrue(a.stderr().contains("running the config applied live"), "A restarts from its applied config");
            assertTrue(partitionNames(ca).contains("watch") && !partitionNames(ca).contains("web"),
                "A comes back without web, which moved to B: " + partitionNames(ca));
            assertEquals("running", state(cb, "web"));
            b.process().toHandle().descendants().forEach(h -> signal(h.pid(), "STOP"));
            signal(b.process().pid(), "STOP");
            try {
                assertEquals("running", awaitState(ca, "db", "running"));
            } finally {
                signal(b.process().pid(), "CONT");
                b.process().toHandle().descendants().forEach(h -> signal(h.pid(), "CONT"));
            }
            ProcessResult fenced = exec("qemu-io", "-f", "raw", "-c", "write -P 0x11 0 4k",
                "nbd+unix:///data?socket=" + dataB.resolve("nbd.sock"));
            assertTrue(fenced.exitCode != 0 || fenced.output.contains("failed"), "fenced B still wrote: " + fenced.output);
            // Its guest's writes fail (it crashes), or B's heartbeat sees the lost lock first and turns it off.
            String onB = awaitState(cb, "db", "stopped", "crashed");
            assertTrue(onB.equals("stopped") || onB.equals("crashed"), "B's fenced copy still " + onB);
            assertTrue(onB.equals("crashed") || partition(cb, "db").get("reason").toString().contains("fenced"),
                partition(cb, "db").toString());
            assertEquals("running", state(ca, "db"));

            // Live grow: rbd resize (run by the lock holder, A) reaches A's disk: status and a new NBD client see it.
            ceph.run("rbd", "resize", "--size", "32M", "rbd/" + image);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (diskSize(ca, "data") != 32L << 20 && System.nanoTime() < deadline) {
                Thread.sleep(200);
            }
            assertEquals(32L << 20, diskSize(ca, "data"), "A's disk follows rbd resize");
            run("qemu-io", "-f", "raw", "-c", "write -P 0x6b 24M 64k", "nbd+unix:///data?socket=" + dataA.resolve("nbd.sock"));

            for (PhostProcess p : List.of(a, b)) {
                p.process().destroy();
                assertTrue(p.process().waitFor(30, TimeUnit.SECONDS), "phost stops on SIGTERM");
            }
        } finally {
            all.forEach(PhostProcess::close);
            exec("ip", "link", "del", VETH_A);
            exec("ip", "netns", "del", NS_WEB);
            exec("ip", "netns", "del", NS_WATCH);
        }
        verifyImage(ceph, image);
        verifyLiveImage(ceph, image + "-live");
    }

    /**
     * web is defined on A only: a move hands its tables to B (a live apply there) and drops them from A (a live
     * apply here), both saved; on B its NIC announces itself with a RARP that crosses the veth pair into A's switch
     * (seen in watch's namespace), and watch on A reaches web on B across the veth pair. Then back to A, and to B.
     */
    private void moveWithDefinition(ManagementClient ca, ManagementClient cb, Path dataA, Path dataB) throws Exception {
        assertEquals("running", awaitState(ca, "web", "running"));
        assertEquals("running", awaitState(ca, "watch", "running"));
        assertTrue(!partitionNames(cb).contains("web"), "B has no web of its own");
        awaitPing(NS_WATCH, "10.20.0.1");
        Path rarp = dir.resolve("rarp.txt");
        Process capture = new ProcessBuilder("ip", "netns", "exec", NS_WATCH, "timeout", "90", "tcpdump", "-l", "-n", "-e",
            "-i", "phost0", "-c", "1", "ether proto 0x8035 and ether src " + WEB_MAC)
            .redirectErrorStream(true).redirectOutput(rarp.toFile()).start();
        try {
            long listening = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (!Files.readString(rarp).contains("listening on") && System.nanoTime() < listening) {
                Thread.sleep(50);
            }
            HttpResponse r = ca.post("/v1/partitions/move?name=web&to=b");
            assertEquals(200, r.status(), r.bodyText());
            Map<?, ?> moved = (Map<?, ?>) Json.parse(r.bodyText());
            assertEquals("handed over", moved.get("definition"), r.bodyText());
            assertEquals(1, ((Number) moved.get("nics_announced")).intValue(), r.bodyText());
            System.out.printf("quick-migration-with-definition partition=web a->b total/stop/start=%s/%s/%s ms load=%s%n",
                moved.get("total_ms"), moved.get("stop_ms"), moved.get("start_ms"),
                Files.readString(Path.of("/proc/loadavg")).strip());
            assertEquals("running", state(cb, "web"));
            assertTrue(!partitionNames(ca).contains("web"), "A dropped web: " + partitionNames(ca));
            assertTrue(applied(dataB).contains("name = \"web\"") && applied(dataB).contains("name = \"web-disk\""),
                applied(dataB));
            assertTrue(!applied(dataA).contains("name = \"web\"") && !applied(dataA).contains("web-disk"), applied(dataA));
            assertTrue(applied(dataB).contains("name = \"web-limit\"") && applied(dataA).contains("name = \"web-limit\""),
                "the policy went along and stays on A: " + applied(dataB));
            HttpResponse differs = cb.post("/v1/partitions/receive?from=a&dry_run=true", """
                [[partition]]
                name = "other"
                memory = "32MiB"
                workload = { kind = "idle" }

                [[qos_policy]]
                name = "web-limit"
                type = "dedicated"
                max_iops = 1
                """.getBytes(StandardCharsets.UTF_8));
            assertEquals(409, differs.status(), differs.bodyText());
            assertTrue(differs.bodyText().contains("qos policy 'web-limit'"), differs.bodyText());
            if (!capture.waitFor(60, TimeUnit.SECONDS)) {
                // say where it stopped: B's NIC counters (announcements sent), both switches' ports and drops
                fail("no RARP from web reached watch across the veth: " + Files.readString(rarp)
                    + "\nB: " + cb.get("/v1/status").bodyText() + "\nA: " + ca.get("/v1/status").bodyText());
            }
            assertTrue(Files.readString(rarp).contains("Reverse Request"), Files.readString(rarp));
        } finally {
            capture.destroyForcibly();
        }
        awaitPing(NS_WATCH, "10.20.0.1"); // A's watch reaches B's web across the veth pair
        assertTrue(portCounter(cb, "web", "announcements") >= 1, "B's web NIC counts its announcement");
        // Added live on B, web is known to B's checkpoints as if B had started with it (an RBD snapshot).
        HttpResponse ck = cb.post("/v1/partitions/checkpoints/create?name=web&checkpoint=moved");
        assertEquals(200, ck.status(), ck.bodyText());
        assertTrue(ck.bodyText().contains("@phost.web.moved"), ck.bodyText());
        HttpResponse gone = cb.post("/v1/partitions/checkpoints/delete?name=web&checkpoint=moved&wait=true");
        assertEquals(200, gone.status(), gone.bodyText());

        HttpResponse back = cb.post("/v1/partitions/move?name=web&to=a");
        assertEquals(200, back.status(), back.bodyText());
        assertTrue(back.bodyText().contains("handed over"), back.bodyText());
        assertEquals("running", state(ca, "web"));
        assertTrue(!partitionNames(cb).contains("web") && !applied(dataB).contains("name = \"web\""), applied(dataB));
        awaitPing(NS_WATCH, "10.20.0.1");
        assertEquals(0, Main.execute("partition", "move", "web", "--to", "b", "--host", "unix:" + dataA.resolve("phost.sock")));
        assertEquals("running", state(cb, "web"));
        awaitPing(NS_WATCH, "10.20.0.1");
    }

    private static String applied(Path data) throws IOException {
        return Files.readString(AppliedConfig.path(data));
    }

    private static List<String> partitionNames(ManagementClient c) throws IOException {
        return ((List<?>) Json.parse(c.get("/v1/partitions").bodyText())).stream()
            .map(o -> String.valueOf(((Map<?, ?>) o).get("name"))).toList();
    }

    /** A counter of {@code partition}'s first NIC port in /v1/status's network rows. */
    private static long portCounter(ManagementClient c, String partition, String key) throws IOException {
        Map<?, ?> status = (Map<?, ?>) Json.parse(c.get("/v1/status").bodyText());
        for (Object o : (List<?>) status.get("switches")) {
            Map<?, ?> row = (Map<?, ?>) o;
            if ((partition + "/" + partition + "-nic0").equals(row.get("port"))) {
                return ((Number) row.get(key)).longValue();
            }
        }
        throw new AssertionError("no port of " + partition + " in " + status.get("switches"));
    }

    private static void awaitPing(String ns, String to) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (!exec("ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "1", to).output.contains(" 0% packet loss")) {
            assertTrue(System.nanoTime() < deadline, ns + " never reached " + to);
            Thread.sleep(300);
        }
    }


    /** Every 4 KiB block of the busy region holds the pattern or zeros, many hold the pattern; the NBD block is intact. */
    private void verifyImage(CephTestCluster ceph, String image) throws Exception {
        byte[] img = verifyPatternAndMarker(ceph, image);
        assertEquals(32 << 20, img.length, "the image was grown");
        for (int i = 24 << 20; i < (24 << 20) + (64 << 10); i++) {
            assertEquals((byte) 0x6b, img[i], "byte written past the old end at " + i);
        }
    }

    /** The live ha partition's image: its guest's pattern (on A, then on B) and the marker imported before. */
    private void verifyLiveImage(CephTestCluster ceph, String image) throws Exception {
        assertEquals(4 << 20, verifyPatternAndMarker(ceph, image).length);
    }

    private byte[] verifyPatternAndMarker(CephTestCluster ceph, String image) throws Exception {
        Path out = dir.resolve(image + ".raw");
        ceph.run("rbd", "export", "rbd/" + image, out.toString());
        byte[] img = Files.readAllBytes(out);
        ByteBuffer bb = ByteBuffer.wrap(img).order(ByteOrder.LITTLE_ENDIAN);
        int patterned = 0;
        for (int block = 0; block < SPAN / BS; block++) {
            int base = block * BS;
            boolean zero = true;
            boolean pattern = true;
            for (int i = 0; i < BS; i += 8) {
                long v = bb.getLong(base + i);
                zero &= v == 0;
                pattern &= v == GuestIo.pattern(base + i, SEED);
            }
            assertTrue(zero || pattern, "block at " + base + " is neither the pattern nor zeros");
            patterned += pattern ? 1 : 0;
        }
        assertTrue(patterned > 16, "the busy partition wrote only " + patterned + " blocks");
        for (int i = 2 << 20; i < (2 << 20) + (64 << 10); i++) {
            assertEquals((byte) 0x5a, img[i], "marker byte at " + i);
        }
        return img;
    }

    /** Moves {@code p} through the API; returns the answer (stop_ms, start_ms, total_ms). */
    private static Map<?, ?> move(ManagementClient from, ManagementClient to, String p, String peer) throws Exception {
        HttpResponse r = from.post("/v1/partitions/move?name=" + p + "&to=" + peer);
        assertEquals(200, r.status(), r.bodyText());
        assertEquals("running", state(to, p));
        Map<?, ?> answer = (Map<?, ?>) Json.parse(r.bodyText());
        if (answer.get("definition").equals("handed over")) {
            assertTrue(!partitionNames(from).contains(p), "the source dropped " + p);
        } else {
            assertEquals("stopped", state(from, p));
        }
        return answer;
    }

    private PhostProcess started(List<PhostProcess> all, String run, Path cfg) throws Exception {
        PhostProcess p = PhostProcess.start(dir.resolve(run), "run", "--config", cfg.toString());
        all.add(p);
        p.awaitLine("phost: ready", Duration.ofSeconds(90));
        return p;
    }

    private static ManagementClient client(String endpoint) {
        return new ManagementClient(ManagementAddress.parse(endpoint), null);
    }

    private static Map<?, ?> partition(ManagementClient c, String name) throws IOException {
        for (Object o : (List<?>) Json.parse(c.get("/v1/partitions").bodyText())) {
            if (name.equals(((Map<?, ?>) o).get("name"))) {
                return (Map<?, ?>) o;
            }
        }
        throw new AssertionError("no partition " + name);
    }

    private static long diskSize(ManagementClient c, String disk) throws IOException {
        Map<?, ?> status = (Map<?, ?>) Json.parse(c.get("/v1/status").bodyText());
        for (Object o : (List<?>) status.get("disks")) {
            if (disk.equals(((Map<?, ?>) o).get("name"))) {
                return ((Number) ((Map<?, ?>) o).get("size")).longValue();
            }
        }
        throw new AssertionError("no disk " + disk + " in " + status);
    }

    private static String state(ManagementClient c, String name) throws IOException {
        return String.valueOf(partition(c, name).get("state"));
    }

    private static String awaitState(ManagementClient c, String name, String... wanted) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        String s = state(c, name);
        while (!List.of(wanted).contains(s) && System.nanoTime() < deadline) {
            Thread.sleep(100);
            s = state(c, name);
        }
        return s;
    }

    private static void signal(long pid, String sig) {
        try {
            new ProcessBuilder("kill", "-" + sig, Long.toString(pid)).start().waitFor(10, TimeUnit.SECONDS);
        } catch (IOException | InterruptedException e) {
            throw new AssertionError("kill -" + sig + " " + pid, e);
        }
    }

    private record ProcessResult(int exitCode, String output) {
    }

    private static ProcessResult exec(String... cmd) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), String.join(" ", cmd) + " hung");
        return new ProcessResult(p.exitValue(), out);
    }

    private static void run(String... cmd) throws IOException, InterruptedException {
        ProcessResult r = exec(cmd);
        assertEquals(0, r.exitCode, String.join(" ", cmd) + ": " + r.output);
    }
}
