package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.appliance.Main;
import io.phost.appliance.mgmt.HttpResponse;
import io.phost.appliance.mgmt.ManagementAddress;
import io.phost.appliance.mgmt.ManagementClient;
import io.phost.core.text.Json;
import io.phost.storage.rbd.CephTestCluster;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Quick Migration of a VM partition between two `phost run` appliances on one throwaway Ceph cluster
 * ({@link CephTestCluster}). The VM (TCG, the test guest) is defined on A only: its data disk is an RBD image
 * (vhost-user-blk) and its NIC is on A's switch {@code lan}. The two appliances' {@code lan} switches are external
 * switches whose uplinks are veths into one namespace, where a Linux bridge joins them (the LAN) and holds the
 * LAN side's address. The guest writes 1 MiB of random data and its md5 to its disk on its first boot; each later
 * boot re-reads it and prints both sums. With the soak the VM has a second RBD disk that QEMU runs with
 * {@code packed=on} (a QEMU wrapper adds it: phost's config has no key for it), on which the guest runs
 * {@link #PACKED_LOOP} (from the disk's last 4 KiB, which the test imported).
 * <ol>
 *   <li>On A: the guest writes its data, and the LAN pings it.</li>
 *   <li>A VM partition with a local (raw) disk is refused, naming the disk.</li>
 *   <li>{@code move vm20 --to b}: A shuts the guest down (ACPI), flushes and unlocks the image, hands the VM's
 *       tables to B, B builds the VM (its disk's vhost-user export, its NIC's port on B's {@code lan}) and boots
 *       it; B announces the NIC (one RARP, seen on B's veth in the LAN namespace). The guest's data verifies on B,
 *       the LAN pings it, A's applied config lost it and B's has it.</li>
 *   <li>With {@code -Dphost.soak=true} only: live migration B → A ({@code live=true}): the guest's tick loop goes
 *       on on A in the same boot, QEMU's SEND_RARP reaches the LAN through A's uplink, the LAN pings it, the image
 *       holds its data; the downtime ({@code query-migrate}) is printed. Then, twice: Quick Migration to B and back to A (once with the CLI), then live
 *       migration to B and back to A, each verified the same way, the times printed (docs/benchmarks.md). After every
 *       live migration the target's console must show no panic, oops or BUG for 3 s. {@code -Dphost.vmmove.cycles=N}
 *       adds N cycles of a quick move to B (a fresh boot) and a live migration back right after the first tick.</li>
 *   <li>Before the live steps (default suite): a {@code migrate_timeout_ms} of 0 is refused (400); a live migration
 *       B → A whose target QEMU the test SIGKILLs as soon as it appears rolls back: 502, the guest ticks on at B in
 *       the same boot, the LAN pings it, A has no table, no QEMU and no vhost-user socket of the VM. With the soak,
 *       two more rollbacks before the switch-over, checked the same way: a broken migration stream while the target
 *       stays up (both ends of its TCP connection destroyed with {@code ss -K} once established) and a cancelled
 *       {@code migrate} ({@code migrate_timeout_ms=1}); then a failure after the switch-over (the target appliance
 *       SIGSTOPped).</li>
 *   <li>Last (default suite): HA restart of a VM. {@code vm20ha} ({@code ha = true}) is applied on A, then on B
 *       (stopped there: A holds its lock); A's phost and QEMUs are SIGKILLed; B boots it after A's lease and its
 *       data verifies.</li>
 * </ol>
 * Needs root (veths, netns), QEMU and the test guest kit.
 */
@Timeout(1800) // the soak with -Dphost.vmmove.cycles runs long (884 s at load 21-31); the default run 2-6 min
class RunVmMoveTest {
    private static final String TAG = Long.toString(ProcessHandle.current().pid() % 100000);
    /** The LAN: a namespace with a bridge over the far ends of the two appliances' uplink veths. */
    private static final String NS = "v20lan" + TAG;
    private static final String UPLINK_A = "v20a" + TAG;
    private static final String UPLINK_B = "v20b" + TAG;
    private static final String LAN_A = "v20x" + TAG;
    private static final String LAN_B = "v20y" + TAG;
    private static final String MAC = "02:20:00:00:20:01";
    private static final String GUEST_IP = "10.20.9.2";

    /** First boot: write 1 MiB of random data at 4 KiB and its md5 at 1.2 MiB; later boots: re-read and compare. */
    private static final String SCRIPT = """
        ip link set eth0 up
        ip addr add 10.20.9.2/24 dev eth0
        if [ "$(dd if=/dev/vda bs=8 count=1 2>/dev/null)" = "V20DATA1" ]; then
          now=$(dd if=/dev/vda bs=4096 skip=1 count=256 2>/dev/null | md5sum | cut -c1-32)
          then=$(dd if=/dev/vda bs=4096 skip=300 count=1 2>/dev/null | head -c 32)
          echo "V20-DATA-CHECK now=$now then=$then"
        else
          dd if=/dev/urandom of=/tmp/blob bs=4096 count=256 2>/dev/null
          dd if=/tmp/blob of=/dev/vda bs=4096 seek=1 conv=fsync 2>/dev/null
          md5sum /tmp/blob | cut -c1-32 > /tmp/sum
          dd if=/tmp/sum of=/dev/vda bs=4096 seek=300 conv=fsync 2>/dev/null
          printf V20DATA1 > /tmp/magic
          dd if=/tmp/magic of=/dev/vda bs=8 count=1 conv=fsync 2>/dev/null
          echo "V20-DATA-WRITTEN $(cat /tmp/sum)"
        fi
        echo V20-UP
        boot=$(head -c 4 /dev/urandom | md5sum | cut -c1-8)
        if [ -b /dev/vdb ]; then
          k=$(cut -c35 /sys/block/vdb/device/features)
          dd if=/dev/vdb bs=4096 skip=255 2>/dev/null|tr -d '\\000' >/tmp/pk.sh;sh /tmp/pk.sh &
        fi
        i=0
        while :; do i=$((i+1)); echo "V20-TICK $boot $i p=$(cat /tmp/pat 2>/dev/null) k=$k"; sleep 1; done
        """;

    @TempDir
    Path dir;

    private String config(String name, String peer, Path data, Path peerData, String uplink, String vms) {
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
            lease = 5
            %s""".formatted(name, data, uplink, peer, peerData, vms);
    }

    /**
     * On A only: vm20 (an RBD data disk and a NIC on lan; with {@code packed}, a second RBD disk that the QEMU wrapper
     * of {@link #PACKED_DISK} runs packed=on), and a VM with a local disk that cannot move.
     */
    private static String vms(Path guest, CephTestCluster ceph, String image, boolean packed) {
        String disks = packed ? "[{ disk = \"vm20-data\" }, { disk = \"vm20-packed\" }]" : "[{ disk = \"vm20-data\" }]";
        return (packed ? """

            [[disk]]
            name = "vm20-packed"
            format = "rbd"
            [disk.rbd]
            pool = "rbd"
            image = "%s-p"
            cluster_config = "%s"
            connect_timeout = 20
            """.formatted(image, ceph.conf()) : "") + """

            [[disk]]
            name = "vm20-data"
            format = "rbd"
            [disk.rbd]
            pool = "rbd"
            image = "%1$s"
            cluster_config = "%2$s"
            connect_timeout = 20
            [disk.create]
            size = "8MiB"

            [[disk]]
            name = "vm20-scratch"
            format = "raw"
            path = "scratch.raw"
            [disk.create]
            size = "1MiB"

            [[partition]]
            name = "vm20"
            kind = "vm"
            memory = "256MiB"
            kernel = "%3$s/vmlinuz"
            initrd = "%3$s/initramfs.gz"
            cmdline = "%4$s"
            stop_timeout = 20
            disk = %6$s
            nic = [{ switch = "lan", mac = "%5$s" }]

            [[partition]]
            name = "vm20-local"
            kind = "vm"
            memory = "64MiB"
            autostart = false
            kernel = "%3$s/vmlinuz"
            disk = [{ disk = "vm20-scratch" }]
            """.formatted(image, ceph.conf(), guest, TestGuestKit.cmdline(SCRIPT, true) + TestGuestKit.NO_AGENT, MAC, disks);
    }

    @Test
    void shouldMoveAVmPartitionWithItsRbdDiskToThePeerAndReachItFromTheLan() throws Exception {
        Assumptions.assumeTrue(ProcessHandle.current().info().user().orElse("").equals("root"),
            "needs root (veths, network namespaces)");
        Path guest = TestGuestKit.directory();
        CephTestCluster ceph = CephTestCluster.get();
        String image = "vm20-" + ProcessHandle.current().pid();
        Path dataA = dir.resolve("a");
        Path dataB = dir.resolve("b");
        Path cfgA = dir.resolve("a.toml");
        Path cfgB = dir.resolve("b.toml");
        boolean soak = Boolean.getBoolean("phost.soak");
        if (soak) {
            importPackedDisk(ceph, image + "-p");
        }
        Files.writeString(cfgA, config("a", "b", dataA, dataB, UPLINK_A, vms(guest, ceph, image, soak)));
        Files.writeString(cfgB, config("b", "a", dataB, dataA, UPLINK_B, ""));
        // With the soak, both appliances start QEMU through a wrapper that runs vm20's second disk packed=on.
        Map<String, String> env = soak ? Map.of("PATH", TestGuestKit.qemuWrapper(dir.resolve("bin"), PACKED_DISK) + ":"
            + System.getenv("PATH")) : Map.of();
        List<PhostProcess> all = new ArrayList<>();
        try {
            lan();
            PhostProcess a = started(all, "run-a", cfgA, env);
            PhostProcess b = started(all, "run-b", cfgB, env);
            ManagementClient ca = client("unix:" + dataA.resolve("phost.sock"));
            ManagementClient cb = client("unix:" + dataB.resolve("phost.sock"));

            String first = awaitConsole(ca, a, "V20-UP");
            Matcher written = Pattern.compile("V20-DATA-WRITTEN ([0-9a-f]{32})").matcher(first);
            assertTrue(written.find(), "the first boot writes the data:\n" + first);
            String sum = written.group(1);
            awaitPing();

            HttpResponse local = ca.post("/v1/partitions/move?name=vm20-local&to=b");
            assertEquals(409, local.status(), local.bodyText());
            assertTrue(local.bodyText().contains("vm20-scratch (raw) is local"), local.bodyText());

            moveAndVerify(ca, cb, b, "b", sum, dataA, dataB, true);
            HttpResponse badLimit = cb.post("/v1/partitions/move?name=vm20&to=a&live=true&migrate_timeout_ms=0");
            assertEquals(400, badLimit.status(), badLimit.bodyText());
            assertTrue(badLimit.bodyText().contains("migrate_timeout_ms=0"), badLimit.bodyText());
            failedLiveMigrationRollsBack(cb, ca, b, "a", dataB, dataA);
            // Live migration only with -Dphost.soak=true: in a clean-clone CI run the migrated guest once panicked
            // on A (NULL dereference in hrtimer_start_range_ns, 5.8 s into its boot on B). Not reproduced since: 0 of
            // 11 live migrations with phost (7 right after a fresh boot) and 0 of 26 without it (QEMU alone,
            // tools/vm-migration-loop) on 2026-12-06; cause unknown, QEMU 7.2 TCG suspected (docs/cluster.md).
            if (soak) {
                brokenStreamRollsBack(cb, ca, b, "a", dataB, dataA);
                cancelledMigrateRollsBack(cb, ca, b, "a", dataB, dataA);
                peerLostAfterSwitchOverRollsBack(cb, ca, b, a, "a", dataB, dataA);
                migrateLive(cb, ca, a, "a", sum, dataB, dataA, ceph, image);
            }
            // -Dphost.vmmove.cycles=N (with the soak): N more cycles of a quick move to B (a fresh boot) and a live
            // migration back right after the guest's first tick, the moment the CI run's guest panicked.
            for (int cycle = 0; soak && cycle < Integer.getInteger("phost.vmmove.cycles", 0); cycle++) {
                moveAndVerify(ca, cb, b, "b", sum, dataA, dataB, true);
                migrateLive(cb, ca, a, "a", sum, dataB, dataA, ceph, image);
                System.out.println("vm-live-cycle " + (cycle + 1) + " passed");
            }
            for (int round = 0; soak && round < Integer.getInteger("phost.vmmove.rounds", 2); round++) { // vm20 is on A
                moveAndVerify(ca, cb, b, "b", sum, dataA, dataB, true);
                moveAndVerify(cb, ca, a, "a", sum, dataB, dataA, round > 0); // the CLI once
                migrateLive(ca, cb, b, "b", sum, dataA, dataB, ceph, image);
                migrateLive(cb, ca, a, "a", sum, dataB, dataA, ceph, image);
            }
            haRestartAfterSigkill(ca, cb, a, b, dataA, dataB, guest, ceph, image + "-ha");
            for (PhostProcess p : List.of(a, b)) {
                p.process().destroy();
                assertTrue(p.process().waitFor(60, TimeUnit.SECONDS), "phost stops on SIGTERM");
            }
        } finally {
            all.forEach(PhostProcess::close);
            exec("ip", "link", "del", UPLINK_A);
            exec("ip", "link", "del", UPLINK_B);
            exec("ip", "netns", "del", NS);
        }
    }

    /**
     * Moves vm20 from {@code from} to {@code to} (the API, or the CLI when {@code api} is false): the RARP reaches the
     * LAN through the target's uplink, the guest's data verifies there, the LAN pings it, the definitions followed.
     */
    private void moveAndVerify(ManagementClient from, ManagementClient to, PhostProcess target, String peer, String sum,
                               Path dataFrom, Path dataTo, boolean api) throws Exception {
        Path rarp = dir.resolve("rarp-" + System.nanoTime() + ".txt");
        Process capture = new ProcessBuilder("ip", "netns", "exec", NS, "timeout", "120", "tcpdump", "-l", "-n", "-e",
            "-i", peer.equals("b") ? LAN_B : LAN_A, "-c", "1", "ether proto 0x8035 and ether src " + MAC)
            .redirectErrorStream(true).redirectOutput(rarp.toFile()).start();
        try {
            long listening = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (!Files.readString(rarp).contains("listening on") && System.nanoTime() < listening) {
                Thread.sleep(50);
            }
            // The target's console log keeps earlier boots there (read from the file: the partition is not there yet).
            Path log = dataTo.resolve("partitions/vm20.console.log");
            int boots = Files.exists(log) ? count(Files.readString(log), "V20-UP") : 0;
            long t0 = System.nanoTime();
            if (api) {
                HttpResponse r = from.post("/v1/partitions/move?name=vm20&to=" + peer);
                assertEquals(200, r.status(), r.bodyText());
                Map<?, ?> moved = (Map<?, ?>) Json.parse(r.bodyText());
                assertEquals("handed over", moved.get("definition"), r.bodyText());
                assertEquals(1, ((Number) moved.get("nics_announced")).intValue(), r.bodyText());
                System.out.printf("vm-quick-migration to=%s total/stop/start=%s/%s/%s ms", peer, moved.get("total_ms"),
                    moved.get("stop_ms"), moved.get("start_ms"));
            } else {
                String from0 = peer.equals("a") ? "b" : "a";
                assertEquals(0, Main.execute("partition", "move", "vm20", "--to", peer, "--host",
                    "unix:" + dir.resolve(from0).resolve("phost.sock")));
                System.out.printf("vm-quick-migration to=%s total=%d ms (cli)", peer, (System.nanoTime() - t0) / 1_000_000);
            }
            assertTrue(capture.waitFor(90, TimeUnit.SECONDS), "no RARP from the VM's MAC on " + peer + "'s uplink: "
                + Files.readString(rarp));
            assertTrue(Files.readString(rarp).contains("Reverse Request"), Files.readString(rarp));
            String console = awaitConsole(to, target, "V20-UP", boots + 1);
            console = console.substring(console.lastIndexOf("PHOST-GUEST-READY"));
            System.out.printf(" guest-up=%d ms load=%s%n", (System.nanoTime() - t0) / 1_000_000,
                Files.readString(Path.of("/proc/loadavg")).strip());
            assertTrue(console.contains("V20-DATA-CHECK now=" + sum + " then=" + sum), "the guest's data on " + peer
                + " (written " + sum + "):\n" + console);
        } finally {
            capture.destroyForcibly();
        }
        awaitPing();
        assertTrue(!partitionNames(from).contains("vm20"), "the source dropped vm20: " + partitionNames(from));
        assertTrue(applied(dataTo).contains("name = \"vm20\"") && applied(dataTo).contains("name = \"vm20-data\""),
            applied(dataTo));
        assertTrue(!applied(dataFrom).contains("name = \"vm20\"") && !applied(dataFrom).contains("vm20-data"),
            applied(dataFrom));
    }

    private static final Pattern TICK = Pattern.compile("V20-TICK ([0-9a-f]{8}) (\\d+)");
    /**
     * A tick's last verified write to the second disk ({@code p=}) and whether the guest's driver runs that disk's
     * virtqueue packed ({@code k=}, bit 34 of its features); both empty without that disk.
     */
    private static final Pattern PATTERN_DONE = Pattern.compile("V20-TICK ([0-9a-f]{8}) \\d+ p=(\\d+) k=(\\d)");

    /**
     * The guest's I/O on the packed disk, kept on that disk (the kernel command line holds at most 2048 bytes): one
     * 4 KiB block written, then the first 256 KiB read back and compared with the guest's copy, in a loop (the last
     * verified write is the ticks' {@code p=}); beside it a reader that re-reads 704 KiB of random data in 64 KiB
     * direct reads into one buffer per 11 reads, so a read is in flight most of the time and its buffer is written
     * only by the back-end: a read completed at the switch-over whose pages were not logged as dirty arrives stale
     * on the target, and a used element not logged stalls the ring there.
     */
    private static final String PACKED_LOOP = """
        dd if=/dev/zero of=/tmp/img bs=65536 count=4 2>/dev/null
        dd if=/tmp/img of=/dev/vdb bs=65536 oflag=direct 2>/dev/null
        dd if=/dev/urandom of=/tmp/static bs=65536 count=11 2>/dev/null
        dd if=/tmp/static of=/dev/vdb bs=65536 seek=4 oflag=direct 2>/dev/null
        (while :; do dd if=/dev/vdb bs=65536 skip=4 count=11 iflag=direct 2>/dev/null|cmp -s - /tmp/static||echo V20-PAT-BAD static; done) &
        n=0
        while :; do n=$((n+1)); j=$((n%64))
          echo "V20P $n"|dd of=/tmp/img bs=4096 seek=$j conv=notrunc,sync 2>/dev/null
          dd if=/tmp/img of=/dev/vdb bs=4096 skip=$j seek=$j count=1 oflag=direct 2>/dev/null
          if dd if=/dev/vdb bs=65536 count=4 iflag=direct 2>/dev/null|cmp -s - /tmp/img; then echo $n >/tmp/pat; else echo "V20-PAT-BAD $n"; fi
        done
        """;

    /** Imports RBD image {@code image} (1 MiB) with {@link #PACKED_LOOP} in its last 4 KiB. */
    private void importPackedDisk(CephTestCluster ceph, String image) throws Exception {
        byte[] img = new byte[1 << 20];
        byte[] loop = PACKED_LOOP.getBytes(StandardCharsets.UTF_8);
        assertTrue(loop.length < 4096, "the loop fits its block");
        System.arraycopy(loop, 0, img, img.length - 4096, loop.length);
        Path file = dir.resolve("packed.img");
        Files.write(file, img);
        ceph.run("rbd", "import", file.toString(), "rbd/" + image);
    }

    /** The wrapper's rule: vm20's second disk (QEMU device disk1) runs packed virtqueues (VIRTIO_F_RING_PACKED). */
    private static final String PACKED_DISK = "case \"$a\" in vhost-user-blk-pci,id=disk1-dev,*) a=\"$a,packed=on\";; esac";

    /**
     * The highest {@code p=} of boot {@code boot}'s ticks in {@code console} (0 when none); fails when a tick shows a
     * split ring, or a read-back since the boot's first tick did not match (an earlier boot's I/O fails while a
     * Quick Migration powers it down: phost has let go of the disk).
     */
    private static int patternsDone(String console, String boot) {
        int first = console.indexOf("V20-TICK " + boot);
        String since = first < 0 ? "" : console.substring(first);
        assertTrue(!since.contains("V20-PAT-BAD"), "a block of the packed disk read back wrong:\n" + since);
        int done = 0;
        Matcher m = PATTERN_DONE.matcher(console);
        while (m.find()) {
            if (m.group(1).equals(boot)) {
                assertEquals("1", m.group(3), "the guest runs the second disk with packed virtqueues: " + m.group());
                done = Math.max(done, Integer.parseInt(m.group(2)));
            }
        }
        return done;
    }

    /**
     * A live migration whose target QEMU dies (SIGKILLed as soon as it appears) rolls back: 502, the guest's ticks go
     * on at the source in the same boot and the LAN pings it there; the peer has no tables, no QEMU and no export
     * sockets of the VM left.
     */
    private void failedLiveMigrationRollsBack(ManagementClient from, ManagementClient to, PhostProcess source,
                                              String peer, Path dataFrom, Path dataTo) throws Exception {
        Ticks t = ticks(from, source);
        String boot = t.boot();
        int last = t.last();
        java.util.concurrent.atomic.AtomicBoolean killed = new java.util.concurrent.atomic.AtomicBoolean();
        java.util.concurrent.atomic.AtomicBoolean moving = new java.util.concurrent.atomic.AtomicBoolean(true);
        Thread killer = Thread.ofPlatform().start(() -> {
            while (moving.get() && !killed.get()) {
                incomingQemus(dataTo).forEach(h -> killed.compareAndSet(false, h.destroyForcibly()));
                try {
                    Thread.sleep(5);
                } catch (InterruptedException e) {
                    return;
                }
            }
        });
        HttpResponse r;
        try {
            r = from.post("/v1/partitions/move?name=vm20&to=" + peer + "&live=true");
        } finally {
            moving.set(false);
            killer.join();
        }
        assertTrue(killed.get(), "the target's incoming QEMU was never seen: " + r.bodyText());
        assertRolledBackBeforeSwitchOver(r, from, to, dataFrom, dataTo, boot, last, "vm-live-rollback to=" + peer);
    }

    /**
     * The source's answer to a live migration that failed before the switch-over, and what must hold after it: 502
     * naming the VM running here and the peer having dropped it, the guest's ticks going on at the source in boot
     * {@code boot} past {@code last}, the LAN pinging it, and the peer left without tables, QEMU or export sockets.
     */
    private void assertRolledBackBeforeSwitchOver(HttpResponse r, ManagementClient from, ManagementClient to,
                                                  Path dataFrom, Path dataTo, String boot, int last, String step)
        throws Exception {
        assertEquals(502, r.status(), r.bodyText());
        assertTrue(r.bodyText().contains("the VM runs on here") && r.bodyText().contains("dropped it"), r.bodyText());
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
        int after = 0;
        while (after <= last + 1) {
            assertTrue(System.nanoTime() < deadline, "the guest's ticks (boot " + boot + ", last " + last
                + ") did not go on at the source after the rollback:\n" + console(from));
            Thread.sleep(300);
            Matcher m = TICK.matcher(console(from));
            while (m.find()) {
                if (m.group(1).equals(boot)) {
                    after = Math.max(after, Integer.parseInt(m.group(2)));
                }
            }
        }
        awaitPing();
        assertTrue(partitionNames(from).contains("vm20") && applied(dataFrom).contains("name = \"vm20\""),
            "the source keeps vm20: " + partitionNames(from));
        assertTrue(!partitionNames(to).contains("vm20") && !applied(dataTo).contains("name = \"vm20\"")
            && !applied(dataTo).contains("vm20-data"), "the peer dropped vm20's tables: " + applied(dataTo));
        assertTrue(incomingQemus(dataTo).isEmpty(), "no QEMU of vm20 left on the peer");
        Path exports = dataTo.resolve("vhost/partitions/vm20");
        try (var left = Files.exists(exports) ? Files.list(exports) : java.util.stream.Stream.<Path>empty()) {
            assertEquals(List.of(), left.toList(), "the peer's vhost-user sockets of vm20");
        }
        assertEquals("running", state(from, "vm20"), "vm20 runs on at the source");
        System.out.println(step + ": " + r.bodyText().strip());
    }

    /** The guest's current boot id and its last tick at the source (the ticks a rollback must continue). */
    private record Ticks(String boot, int last) {
    }

    private Ticks ticks(ManagementClient from, PhostProcess source) throws Exception {
        Matcher before = TICK.matcher(awaitConsole(from, source, "V20-TICK"));
        String boot = null;
        int last = 0;
        while (before.find()) {
            boot = before.group(1);
            last = Integer.parseInt(before.group(2));
        }
        return new Ticks(boot, last);
    }

    /** Something done to the target's incoming QEMU once its migration stream on {@code port} is established. */
    @FunctionalInterface
    private interface StreamFault {
        void inject(ProcessHandle qemu, int port) throws IOException, InterruptedException;
    }

    /**
     * Starts a live migration of vm20 to {@code peer} and runs {@code fault} once, as soon as the target QEMU's
     * migration stream is ESTABLISHED (looked at every 2 ms; a TCG guest's RAM takes ~2 s to send). Returns the
     * source's answer; fails when the stream was never seen.
     */
    private HttpResponse migrateWithFault(ManagementClient from, String peer, Path dataTo, StreamFault fault)
        throws Exception {
        java.util.concurrent.atomic.AtomicBoolean done = new java.util.concurrent.atomic.AtomicBoolean();
        java.util.concurrent.atomic.AtomicReference<Exception> failed = new java.util.concurrent.atomic.AtomicReference<>();
        java.util.concurrent.atomic.AtomicBoolean moving = new java.util.concurrent.atomic.AtomicBoolean(true);
        Thread injector = Thread.ofPlatform().start(() -> {
            try {
                while (moving.get() && !done.get()) {
                    for (ProcessHandle q : incomingQemus(dataTo)) {
                        int port = incomingPort(q);
                        if (!done.get() && port > 0 && established(port)) {
                            fault.inject(q, port);
                            done.set(true);
                        }
                    }
                    Thread.sleep(2);
                }
            } catch (IOException | InterruptedException | RuntimeException e) {
                failed.set(e);
            }
        });
        HttpResponse r;
        try {
            r = from.post("/v1/partitions/move?name=vm20&to=" + peer + "&live=true");
        } finally {
            moving.set(false);
            injector.join();
        }
        assertTrue(failed.get() == null, "the fault was not injected: " + failed.get() + "; the move answered "
            + r.status() + " " + r.bodyText());
        assertTrue(done.get(), "the target's migration stream was never seen: " + r.status() + " " + r.bodyText());
        return r;
    }

    /**
     * A broken migration stream while the target appliance stays up (soak): once the stream is established the
     * test destroys both ends of its TCP connection ({@code ss -K}, the kernel's socket destroy). The source's QEMU
     * fails its {@code migrate} before the switch-over and keeps running the guest, the target's QEMU fails its
     * load; the source asks the peer to drop the VM: 502, the guest ticks on at the source in the same boot, the
     * peer has no tables, QEMU or sockets of it.
     */
    private void brokenStreamRollsBack(ManagementClient from, ManagementClient to, PhostProcess source, String peer,
                                       Path dataFrom, Path dataTo) throws Exception {
        Ticks t = ticks(from, source);
        long t0 = System.nanoTime();
        HttpResponse r = migrateWithFault(from, peer, dataTo, (qemu, port) -> {
            String filter = "( sport = :" + port + " or dport = :" + port + " )";
            ProcessResult ss = exec("ss", "-K", "-t", filter);
            if (established(port)) {
                throw new IOException("ss -K did not destroy the migration connection on port " + port
                    + " (kernel without CONFIG_INET_DIAG_DESTROY?): " + ss.output());
            }
        });
        assertRolledBackBeforeSwitchOver(r, from, to, dataFrom, dataTo, t.boot(), t.last(),
            "vm-live-rollback-broken-stream to=" + peer + " in " + (System.nanoTime() - t0) / 1_000_000 + " ms");
    }

    /**
     * A cancelled {@code migrate} (soak): the move asks for a 1 ms time limit ({@code migrate_timeout_ms=1}), so
     * the source's first look at QEMU's migration finds it unfinished (a TCG guest's RAM takes ~2 s) and cancels it
     * ({@code migrate_cancel}, then waits until it left {@code cancelling}). The guest never stopped at the source;
     * the target's QEMU loses its stream and the source's abort drops its tables: 502 naming the cancel, and the
     * same checks as every rollback before the switch-over.
     */
    private void cancelledMigrateRollsBack(ManagementClient from, ManagementClient to, PhostProcess source, String peer,
                                           Path dataFrom, Path dataTo) throws Exception {
        Ticks t = ticks(from, source);
        long t0 = System.nanoTime();
        HttpResponse r = from.post("/v1/partitions/move?name=vm20&to=" + peer + "&live=true&migrate_timeout_ms=1");
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertTrue(r.bodyText().contains("took over 1 ms; cancelled (cancelled)"), "the source cancelled its migrate: "
            + r.status() + " " + r.bodyText());
        assertRolledBackBeforeSwitchOver(r, from, to, dataFrom, dataTo, t.boot(), t.last(),
            "vm-live-rollback-cancelled to=" + peer + " in " + ms + " ms");
    }

    /**
     * A failure after the switch-over (soak only, like every live step): the target appliance stops answering
     * (SIGSTOP) once its QEMU's migration stream is established, so the stream completes, the source's QEMU pauses
     * and releases the locks, but nobody on the target takes them or resumes the guest. The source waits for the
     * guest to run there (30 s), cannot ask the peer to drop it, takes the locks back and resumes its own QEMU:
     * 502 "rolled back", and the guest ticks on at the source in the same boot, the LAN pings it there. Once the
     * target runs again its late lock attempt fails (the source holds them), so it never resumes the guest; its
     * tables are dropped with {@code incoming/abort}, and it has no QEMU of the VM left.
     */
    private void peerLostAfterSwitchOverRollsBack(ManagementClient from, ManagementClient to, PhostProcess source,
                                                  PhostProcess target, String peer, Path dataFrom, Path dataTo)
        throws Exception {
        Matcher before = TICK.matcher(awaitConsole(from, source, "V20-TICK"));
        String boot = null;
        int last = 0;
        while (before.find()) {
            boot = before.group(1);
            last = Integer.parseInt(before.group(2));
        }
        String targetPid = Long.toString(target.process().pid());
        java.util.concurrent.atomic.AtomicBoolean stopped = new java.util.concurrent.atomic.AtomicBoolean();
        java.util.concurrent.atomic.AtomicBoolean moving = new java.util.concurrent.atomic.AtomicBoolean(true);
        Thread stopper = Thread.ofPlatform().start(() -> {
            try {
                while (moving.get() && !stopped.get()) {
                    for (ProcessHandle q : incomingQemus(dataTo)) {
                        int port = incomingPort(q);
                        if (port > 0 && established(port)) {
                            exec("kill", "-STOP", targetPid);
                            stopped.set(true);
                        }
                    }
                    Thread.sleep(2);
                }
            } catch (IOException | InterruptedException e) {
                // the move's answer is judged below
            }
        });
        HttpResponse r;
        long t0 = System.nanoTime();
        try {
            r = from.post("/v1/partitions/move?name=vm20&to=" + peer + "&live=true");
        } finally {
            moving.set(false);
            stopper.join();
            exec("kill", "-CONT", targetPid);
        }
        assertTrue(stopped.get(), "the target's migration stream was never seen: " + r.bodyText());
        assertEquals(502, r.status(), r.bodyText());
        assertTrue(r.bodyText().contains("rolled back: the VM runs on here")
            && r.bodyText().contains("could not be asked"), r.bodyText());
        System.out.println("vm-live-rollback-after-switch-over to=" + peer + " in " + (System.nanoTime() - t0) / 1_000_000
            + " ms: " + r.bodyText().strip());
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
        int after = 0;
        while (after <= last + 1) {
            assertTrue(System.nanoTime() < deadline, "the guest's ticks (boot " + boot + ", last " + last
                + ") did not go on at the source after the rollback:\n" + console(from));
            Thread.sleep(300);
            Matcher m = TICK.matcher(console(from));
            while (m.find()) {
                if (m.group(1).equals(boot)) {
                    after = Math.max(after, Integer.parseInt(m.group(2)));
                }
            }
        }
        assertEquals("running", state(from, "vm20"), "vm20 runs on at the source");
        awaitPing();
        // The target, running again, fails its late lock attempt and ends its QEMU; its tables go with the abort.
        deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(90);
        while (!incomingQemus(dataTo).isEmpty() && System.nanoTime() < deadline) {
            Thread.sleep(200);
        }
        assertTrue(incomingQemus(dataTo).isEmpty(), "the target ended its QEMU of vm20 (it cannot take the locks)");
        assertTrue(qemusOf(dataTo).isEmpty(), "no QEMU of vm20 runs on the target");
        // The source's abort, queued while the target was stopped, may be handled now, or this one drops the tables.
        HttpResponse abort = to.post("/v1/partitions/incoming/abort?name=vm20");
        assertTrue(abort.status() == 200 || abort.status() == 404, abort.status() + " " + abort.bodyText());
        System.out.println("vm-live-rollback-after-switch-over: the target's abort answered " + abort.status() + " "
            + abort.bodyText().strip());
        deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while ((partitionNames(to).contains("vm20") || applied(dataTo).contains("name = \"vm20\""))
            && System.nanoTime() < deadline) {
            Thread.sleep(200);
        }
        assertTrue(!partitionNames(to).contains("vm20") && !applied(dataTo).contains("name = \"vm20\""),
            "the target dropped vm20's tables (partitions " + partitionNames(to) + "):\n" + applied(dataTo)
            + "\ntarget log:\n" + target.stderr().lines().filter(l -> l.contains("vm20") || l.contains("cluster"))
            .collect(java.util.stream.Collectors.joining("\n")));
        String since = console(from).substring(console(from).indexOf(boot));
        assertTrue(count(since, "PHOST-GUEST-READY") == 0, "no second boot at the source");
        assertTrue(partitionNames(from).contains("vm20") && applied(dataFrom).contains("name = \"vm20\""),
            "the source keeps vm20: " + partitionNames(from));
        awaitPing();
    }

    /** The TCP port of a {@code -incoming tcp:HOST:PORT} QEMU, or -1. */
    private static int incomingPort(ProcessHandle qemu) {
        Matcher m = Pattern.compile("-incoming tcp:\\S*:(\\d+)").matcher(qemu.info().commandLine().orElse(""));
        return m.find() ? Integer.parseInt(m.group(1)) : -1;
    }

    /** Whether a TCP connection on local port {@code port} is ESTABLISHED (/proc/net/tcp, st 01). */
    private static boolean established(int port) throws IOException {
        String hex = String.format(":%04X", port);
        for (String f : List.of("/proc/net/tcp", "/proc/net/tcp6")) {
            Path p = Path.of(f);
            if (!Files.exists(p)) {
                continue;
            }
            for (String line : Files.readAllLines(p)) {
                String[] c = line.trim().split("\\s+");
                if (c.length > 3 && c[1].endsWith(hex) && c[3].equals("01")) {
                    return true;
                }
            }
        }
        return false;
    }

    /**
     * HA restart of a VM: {@code vm20ha} ({@code ha = true}, an RBD disk, no NIC) is applied on A (it boots there and
     * writes its data) and then on B (it stays stopped: A holds its lock); A and its QEMUs are SIGKILLed; B breaks
     * the lock (Ceph blocklists A's client) after A's lease and boots the VM, whose data verifies.
     */
    private void haRestartAfterSigkill(ManagementClient ca, ManagementClient cb, PhostProcess a, PhostProcess b,
                                       Path dataA, Path dataB, Path guest, CephTestCluster ceph, String image) throws Exception {
        String ha = """

            [[disk]]
            name = "vm20ha-data"
            format = "rbd"
            [disk.rbd]
            pool = "rbd"
            image = "%1$s"
            cluster_config = "%2$s"
            connect_timeout = 20
            [disk.create]
            size = "8MiB"

            [[partition]]
            name = "vm20ha"
            kind = "vm"
            memory = "128MiB"
            ha = true
            kernel = "%3$s/vmlinuz"
            initrd = "%3$s/initramfs.gz"
            cmdline = "%4$s"
            stop_timeout = 20
            disk = [{ disk = "vm20ha-data" }]
            """.formatted(image, ceph.conf(), guest, TestGuestKit.cmdline(SCRIPT, true) + TestGuestKit.NO_AGENT);
        HttpResponse onA = ca.post("/v1/config", (applied(dataA) + ha).getBytes(StandardCharsets.UTF_8));
        assertEquals(200, onA.status(), onA.bodyText());
        String first = awaitConsole(ca, a, "vm20ha", "V20-UP", 1);
        Matcher written = Pattern.compile("V20-DATA-WRITTEN ([0-9a-f]{32})").matcher(first);
        assertTrue(written.find(), "vm20ha's first boot writes the data:\n" + first);
        HttpResponse onB = cb.post("/v1/config", (applied(dataB) + ha).getBytes(StandardCharsets.UTF_8));
        assertEquals(200, onB.status(), onB.bodyText());
        String waiting = state(cb, "vm20ha");
        assertTrue("stopped".equals(waiting) || "created".equals(waiting), "vm20ha waits on B while A holds its lock: " + waiting);
        long t0 = System.nanoTime();
        a.process().destroyForcibly(); // SIGKILL: A's phost and its QEMUs die at once, as with a host's power
        qemusOf(dataA).forEach(ProcessHandle::destroyForcibly);
        assertTrue(a.process().waitFor(30, TimeUnit.SECONDS), "A's phost ends on SIGKILL");
        String again = awaitConsole(cb, b, "vm20ha", "V20-DATA-CHECK", 1);
        System.out.printf("vm-ha-restart detect+boot=%d ms load=%s%n", (System.nanoTime() - t0) / 1_000_000,
            Files.readString(Path.of("/proc/loadavg")).strip());
        assertTrue(again.contains("V20-DATA-CHECK now=" + written.group(1) + " then=" + written.group(1)),
            "vm20ha's data on B (written " + written.group(1) + "):\n" + again);
        String status = cb.get("/v1/status").bodyText();
        assertTrue(status.contains("vm20ha"), "B's status lists the takeover: " + status);
    }

    private static String state(ManagementClient c, String name) throws IOException {
        for (Object o : (List<?>) Json.parse(c.get("/v1/partitions").bodyText())) {
            if (name.equals(((Map<?, ?>) o).get("name"))) {
                return String.valueOf(((Map<?, ?>) o).get("state")).toLowerCase(java.util.Locale.ROOT);
            }
        }
        return null;
    }

    /** Every QEMU whose files are under {@code data} (a host's data dir). */
    private static List<ProcessHandle> qemusOf(Path data) {
        return ProcessHandle.allProcesses().filter(h -> h.info().commandLine()
            .filter(c -> c.contains("qemu-system") && c.contains(data.toString())).isPresent()).toList();
    }

    /** QEMU processes of vm20 whose files are under {@code data} (the migration target's, on {@code -incoming}). */
    private static List<ProcessHandle> incomingQemus(Path data) {
        return ProcessHandle.allProcesses().filter(h -> h.info().commandLine()
            .filter(c -> c.contains("qemu-system") && c.contains("-incoming") && c.contains(data.toString())).isPresent())
            .toList();
    }

    /**
     * Live migration of vm20 to {@code peer} ({@code live=true}): the guest's tick loop goes on there in the same boot
     * (its boot id, a higher count, no second boot), QEMU's SEND_RARP reaches the LAN through the peer's uplink, the
     * LAN pings the guest, the image holds the guest's data ({@code rbd export}), and the downtime is printed.
     */
    private void migrateLive(ManagementClient from, ManagementClient to, PhostProcess target, String peer, String sum,
                             Path dataFrom, Path dataTo, CephTestCluster ceph, String image) throws Exception {
        Matcher before = TICK.matcher(awaitConsole(from, target, "V20-TICK"));
        String boot = null;
        int last = 0;
        while (before.find()) {
            boot = before.group(1);
            last = Integer.parseInt(before.group(2));
        }
        // The guest's loop on the packed disk runs through the migration: wait for its first verified block here.
        int patterns = 0;
        for (long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(120); patterns == 0; Thread.sleep(300)) {
            assertTrue(System.nanoTime() < until, "the guest's packed-disk loop never verified a block:\n" + console(from));
            patterns = patternsDone(console(from), boot);
        }
        Path rarp = dir.resolve("rarp-live-" + System.nanoTime() + ".txt");
        Process capture = new ProcessBuilder("ip", "netns", "exec", NS, "timeout", "180", "tcpdump", "-l", "-n", "-e",
            "-i", peer.equals("b") ? LAN_B : LAN_A, "-c", "1", "ether proto 0x8035 and ether src " + MAC)
            .redirectErrorStream(true).redirectOutput(rarp.toFile()).start();
        try {
            long listening = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (!Files.readString(rarp).contains("listening on") && System.nanoTime() < listening) {
                Thread.sleep(50);
            }
            patterns = patternsDone(console(from), boot);
            HttpResponse r = from.post("/v1/partitions/move?name=vm20&to=" + peer + "&live=true");
            assertEquals(200, r.status(), r.bodyText() + "\nA:\n" + target.stderr());
            Map<?, ?> m = (Map<?, ?>) Json.parse(r.bodyText());
            assertEquals("live", m.get("mode"), r.bodyText());
            assertEquals("running", m.get("state"), r.bodyText());
            System.out.printf("vm-live-migration to=" + peer + " downtime=%s ms migration=%s ms ram=%s bytes handover=%s ms total=%s ms load=%s%n",
                m.get("migration_downtime_ms"), m.get("migration_total_ms"), m.get("migration_ram_bytes"),
                m.get("handover_ms"), m.get("total_ms"), Files.readString(Path.of("/proc/loadavg")).strip());
            assertTrue(capture.waitFor(90, TimeUnit.SECONDS), "no RARP from the VM's MAC on " + peer + "'s uplink: "
                + Files.readString(rarp));
        } finally {
            capture.destroyForcibly();
        }
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
        int after = 0;
        while (after <= last) {
            assertTrue(System.nanoTime() < deadline, "the guest's ticks (boot " + boot + ", last " + last
                + ") did not go on on " + peer + ":\n" + to.get("/v1/partitions/console?name=vm20").bodyText());
            Thread.sleep(300);
            Matcher m = TICK.matcher(to.get("/v1/partitions/console?name=vm20").bodyText());
            while (m.find()) {
                if (m.group(1).equals(boot)) {
                    after = Math.max(after, Integer.parseInt(m.group(2)));
                }
            }
        }
        String since = console(to).substring(console(to).indexOf(boot));
        assertTrue(count(since, "PHOST-GUEST-READY") == 0, "no second boot on " + peer);
        Thread.sleep(3000); // the CI run's guest panicked about a second after it resumed: give it the time to
        since = console(to).substring(console(to).indexOf(boot));
        for (String bad : List.of("Kernel panic", "BUG:", "Oops", "general protection fault", "list_add corruption")) {
            assertTrue(!since.contains(bad), "the migrated guest on " + peer + " failed (" + bad + "):\n" + since);
        }
        // Blocks written and read back across the switch-over verify on the target (its pages the back-end wrote into
        // guest memory through the packed ring reached the target: the dirty log), and the loop goes on there.
        for (long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(120); patternsDone(console(to), boot) <= patterns; Thread.sleep(300)) {
            assertTrue(System.nanoTime() < until, "the packed-disk loop (at " + patterns + " on the source) did not go on on "
                + peer + ":\n" + console(to));
        }
        System.out.println("vm-live-migration packed disk: verified blocks " + patterns + " at the source, "
            + patternsDone(console(to), boot) + " on " + peer);
        awaitPing();
        assertTrue(!partitionNames(from).contains("vm20"), "the source dropped vm20 after the migration");
        assertTrue(applied(dataTo).contains("name = \"vm20\"") && !applied(dataFrom).contains("name = \"vm20\""),
            applied(dataTo));
        Path out = dir.resolve("image.raw");
        Files.deleteIfExists(out);
        ceph.run("rbd", "export", "rbd/" + image, out.toString());
        byte[] img = Files.readAllBytes(out);
        byte[] md5 = java.security.MessageDigest.getInstance("MD5").digest(java.util.Arrays.copyOfRange(img, 4096, 4096 + (1 << 20)));
        assertEquals(sum, java.util.HexFormat.of().formatHex(md5), "the guest's data in the image after the migration");
    }

    /** The LAN namespace: a bridge over both uplinks' far ends, with the LAN side's address. */
    private static void lan() throws Exception {
        exec("ip", "netns", "del", NS);
        run("ip", "netns", "add", NS);
        run("ip", "-n", NS, "link", "add", "br0", "type", "bridge");
        for (String[] pair : new String[][] {{UPLINK_A, LAN_A}, {UPLINK_B, LAN_B}}) {
            exec("ip", "link", "del", pair[0]);
            run("ip", "link", "add", pair[0], "type", "veth", "peer", "name", pair[1]);
            run("ip", "link", "set", pair[1], "netns", NS);
            run("ip", "-n", NS, "link", "set", pair[1], "master", "br0");
            run("ip", "-n", NS, "link", "set", pair[1], "up");
            run("ip", "link", "set", pair[0], "up");
        }
        run("ip", "-n", NS, "addr", "add", "10.20.9.1/24", "dev", "br0");
        run("ip", "-n", NS, "link", "set", "br0", "up");
    }

    private static void awaitPing() throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (!exec("ip", "netns", "exec", NS, "ping", "-c", "1", "-W", "1", GUEST_IP).output.contains(" 0% packet loss")) {
            assertTrue(System.nanoTime() < deadline, "the LAN never reached the guest at " + GUEST_IP);
            Thread.sleep(300);
        }
    }

    private static String console(ManagementClient c) throws IOException {
        return console(c, "vm20");
    }

    private static String console(ManagementClient c, String name) throws IOException {
        HttpResponse r = c.get("/v1/partitions/console?name=" + name);
        return r.status() == 200 ? r.bodyText() : "";
    }

    private static int count(String text, String marker) {
        int n = 0;
        for (int i = text.indexOf(marker); i >= 0; i = text.indexOf(marker, i + 1)) {
            n++;
        }
        return n;
    }

    private static String awaitConsole(ManagementClient c, PhostProcess p, String marker) throws Exception {
        return awaitConsole(c, p, marker, 1);
    }

    /** Waits until the console shows {@code marker} {@code times} times. */
    private static String awaitConsole(ManagementClient c, PhostProcess p, String marker, int times) throws Exception {
        return awaitConsole(c, p, "vm20", marker, times);
    }

    private static String awaitConsole(ManagementClient c, PhostProcess p, String name, String marker, int times)
        throws Exception {
        long deadline = System.nanoTime() + Duration.ofSeconds(180).toNanos();
        String console = "";
        while (count(console, marker) < times) {
            assertTrue(System.nanoTime() < deadline && !console.contains("PHOST-GUEST-DONE rc=1"), "no " + marker + ":\n"
                + console + "\nqemu:\n" + c.get("/v1/partitions/logs?name=" + name).bodyText() + "\nphost:\n" + p.stderr());
            Thread.sleep(300);
            console = console(c, name);
        }
        return console;
    }

    private static String applied(Path data) throws IOException {
        return Files.readString(AppliedConfig.path(data));
    }

    private static List<String> partitionNames(ManagementClient c) throws IOException {
        return ((List<?>) Json.parse(c.get("/v1/partitions").bodyText())).stream()
            .map(o -> String.valueOf(((Map<?, ?>) o).get("name"))).toList();
    }

    private PhostProcess started(List<PhostProcess> all, String run, Path cfg, Map<String, String> env) throws Exception {
        PhostProcess p = PhostProcess.start(dir.resolve(run), List.of(), env, "run", "--config", cfg.toString());
        all.add(p);
        p.awaitLine("phost: ready", Duration.ofSeconds(90));
        return p;
    }

    private static ManagementClient client(String endpoint) {
        return new ManagementClient(ManagementAddress.parse(endpoint), null);
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
