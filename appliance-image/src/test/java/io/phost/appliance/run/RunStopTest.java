package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.appliance.cli.RunCommandAccess;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Issue 16, defects 6, 9 and 11: how `phost run` stops, and what it leaves (and must not remove). */
class RunStopTest {
    @TempDir
    Path dir;

    private Path config(String name, Path data) throws Exception {
        Path cfg = dir.resolve(name + ".toml");
        Files.writeString(cfg, """
            [host]
            name = "%s"
            data_dir = "%s"

            [[switch]]
            name = "lan"
            type = "private"
            """.formatted(name, data));
        return cfg;
    }

    @Test
    void shouldStopCleanlyOnSighupAndCreateTheDataDirOwnerOnly() throws Exception {
        Path data = dir.resolve("data");
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), "run", "--config", config("hup", data).toString())) {
            p.awaitLine("phost: ready", Duration.ofSeconds(30));
            assertEquals("rwx------", PosixFilePermissions.toString(Files.getPosixFilePermissions(data)));
            new ProcessBuilder("kill", "-HUP", Long.toString(p.process().pid())).start().waitFor();
            assertTrue(p.process().waitFor(5, TimeUnit.SECONDS), "phost did not stop within 5 s after SIGHUP");
            assertEquals(0, p.process().exitValue(), p.stderr());
            assertTrue(p.stderr().contains("signal=SIGHUP stopping"), p.stderr());
            assertFalse(Files.exists(data.resolve("phost.sock")), "socket removed");
            assertFalse(Files.exists(dir.resolve("run/endpoint")), "endpoint withdrawn");
        }
    }

    /**
     * Issue 16 defect 9: SIGTERM to exit within 2 s with every disk flushed. A `guest mixed` partition (disk I/O and
     * a bridged NIC, as in the demo) used to spend 2.4-3.4 s of its own exit on thread joins after acknowledging
     * the shutdown, and was often SIGKILLed at the 2.5 s grace; now it exits ~0.1 s after the request. The host's
     * bound is 3.5 times the target for a loaded CI machine (5.6 s seen at load average 19 on 2 cores) (acknowledging and exiting are scheduling-bound).
     */
    @Test
    void shouldStopAPartitionRunningTheMixedWorkloadWithinTheBoundWithoutKillingIt() throws Exception {
        Assumptions.assumeTrue("root".equals(System.getProperty("user.name")), "the workload's TAP needs root");
        String name = "s" + ProcessHandle.current().pid() % 100_000; // its TAP pt-NAME is unique on the host
        Path cfg = dir.resolve("mixed.toml");
        Files.writeString(cfg, """
            [host]
            name = "mixed-stop"
            data_dir = "%s"

            [[switch]]
            name = "lan"
            type = "private"

            [[disk]]
            name = "d"
            path = "d.raw"
            format = "raw"
            create = { type = "fixed", size = "16MiB" }

            [[partition]]
            name = "%s"
            workload = { kind = "mixed", args = ["--io", "--rw randrw --bs 4k --iodepth 4 --runtime 0"] }
              [[partition.disk]]
              disk = "d"
              [[partition.nic]]
              switch = "lan"
            """.formatted(dir.resolve("data"), name));
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), "run", "--plain", "--config", cfg.toString())) {
            p.awaitLine("phost: ready", Duration.ofSeconds(60));
            long deadline = System.nanoTime() + 60_000_000_000L;
            while (System.nanoTime() < deadline && !guestLog(name).contains("guest mixed: network up")) {
                Thread.sleep(100);
            }
            assertTrue(guestLog(name).contains("guest mixed: network up"), guestLog(name) + "\n" + p.stderr());
            Thread.sleep(1000); // the guest's I/O and bridge are running
            long t0 = System.nanoTime();
            new ProcessBuilder("kill", "-TERM", Long.toString(p.process().pid())).start().waitFor();
            assertTrue(p.process().waitFor(20, TimeUnit.SECONDS), "phost did not stop within 20 s after SIGTERM");
            long ms = (System.nanoTime() - t0) / 1_000_000;
            assertEquals(0, p.process().exitValue(), p.stderr());
            System.out.println("RunStopTest: SIGTERM to exit " + ms + " ms; guest: " + guestLog(name).lines()
                .filter(l -> l.startsWith("guest mixed: stop")).toList());
            java.util.regex.Matcher m = java.util.regex.Pattern.compile("msg=\"stopped\" partition=" + name
                + " ms=([0-9]+) reason=\"([^\"]*)\"").matcher(p.stderr());
            assertTrue(m.find(), p.stderr());
            assertEquals("stop requested", m.group(2), "the guest exited by itself, not by SIGKILL:\n" + p.stderr()
                + guestLog(name));
            assertTrue(ms <= 7_000, "SIGTERM to exit took " + ms + " ms (target 2 s):\n" + p.stderr());
            assertTrue(p.stderr().contains("msg=\"stopped\" component=disks"), "disks flushed and closed:\n" + p.stderr());
            java.util.regex.Matcher g = java.util.regex.Pattern.compile("guest mixed: stopped at=[^ ]* ms=([0-9]+)").matcher(guestLog(name));
            assertTrue(g.find(), guestLog(name));
            // Typically ~0.1 s; its network teardown may wait up to 1.5 s (seen 1.2 s in CI), and it must finish
            // well inside the host's 2.5 s grace so that it is never SIGKILLed.
            assertTrue(Long.parseLong(g.group(1)) <= 2_000, "the guest's own stop took " + g.group(1) + " ms");
        }
    }

    private String guestLog(String partition) throws java.io.IOException {
        try (var files = Files.walk(dir.resolve("data"))) {
            Path log = files.filter(f -> f.getFileName().toString().equals(partition + ".log")).findFirst().orElse(null);
            return log == null ? "(no " + partition + ".log)" : Files.readString(log);
        }
    }

    @Test
    void shouldLeaveTheServingHostsEndpointWhenARefusedSecondHostExits() throws Exception {
        Path data = dir.resolve("data");
        Path run = dir.resolve("run");
        try (PhostProcess first = PhostProcess.start(run, "run", "--config", config("first", data).toString())) {
            first.awaitLine("phost: ready", Duration.ofSeconds(30));
            String endpoint = Files.readString(run.resolve("endpoint"));
            try (PhostProcess second = PhostProcess.start(run, "run", "--config", config("second", data).toString())) {
                assertTrue(second.process().waitFor(30, TimeUnit.SECONDS));
                assertEquals(1, second.process().exitValue(), second.stderr());
                assertTrue(second.stderr().contains("another phost is serving"), second.stderr());
            }
            assertEquals(endpoint, Files.readString(run.resolve("endpoint")), "the serving host's record stays");
            first.process().destroy();
            assertTrue(first.process().waitFor(5, TimeUnit.SECONDS));
        }
    }

    @Test
    void shouldWarnWhenOtherUsersCanReadTheManagementToken() throws Exception {
        Path token = Files.writeString(dir.resolve("token"), "secret\n");
        Files.setPosixFilePermissions(token, PosixFilePermissions.fromString("rw-r--r--"));
        assertTrue(RunCommandAccess.warnIfOthersCanRead(token));
        Files.setPosixFilePermissions(token, PosixFilePermissions.fromString("rw-------"));
        assertFalse(RunCommandAccess.warnIfOthersCanRead(token));
    }
}
