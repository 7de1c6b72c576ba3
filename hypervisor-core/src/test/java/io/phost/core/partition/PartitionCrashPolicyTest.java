package io.phost.core.partition;

import static org.junit.jupiter.api.Assertions.*;

import io.phost.core.sys.Signals;
import io.phost.core.vm.RestartBackoff;
import io.phost.core.vm.VmSpec;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * {@code on_crash} on a process partition: the same policy code and states as a VM partition's. The backoff is
 * shortened (100 ms doubling to 400 ms, FAULTED after 3 in a row) so a streak fits in a few seconds.
 */
class PartitionCrashPolicyTest {
    private Path dir;
    private PartitionHost host;

    @BeforeEach
    void setUp() throws Exception {
        dir = Files.createTempDirectory("phost-oncrash");
        host = new PartitionHost(dir, GuestLauncher.sameJvm("io.phost.core.TestGuest", List.of()),
            PartitionHost.Options.defaults().withBackoff(
                new RestartBackoff(Duration.ofMillis(100), Duration.ofMillis(400), Duration.ofSeconds(60), 3)));
    }

    @AfterEach
    void tearDown() throws Exception {
        host.close();
        try (var s = Files.walk(dir)) {
            s.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        }
    }

    private Partition create(String name, List<String> command, VmSpec.CrashPolicy policy) {
        return host.create(PartitionSpec.command(name, 1, 16L << 20, command).withOnCrash(policy));
    }

    private static boolean await(java.util.function.BooleanSupplier c, Duration timeout) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (System.nanoTime() < deadline) {
            if (c.getAsBoolean()) {
                return true;
            }
            Thread.sleep(10);
        }
        return c.getAsBoolean();
    }

    @Test
    void shouldRestartASigkilledProcessWithBackoffUnderRestart() throws Exception {
        Partition p = create("oc-restart", List.of("/bin/sleep", "30"), VmSpec.CrashPolicy.RESTART);
        p.start();
        long first = p.status().pid();
        assertTrue(first > 0);
        Signals.kill(first, Signals.SIGKILL);
        assertTrue(await(() -> p.status().reason().contains("restart in 100 ms (on_crash = restart)"), Duration.ofSeconds(10)),
            p.status().toString());
        assertTrue(p.status().reason().startsWith("process exited with code 137"), p.status().reason());
        assertTrue(await(() -> p.status().pid() > 0 && p.status().pid() != first, Duration.ofSeconds(10)), p.status().toString());
        assertTrue(p.state().live(), p.status().toString());
        assertEquals("1", p.status().details().get("restarts"));
        assertEquals("restart", p.status().details().get("on_crash"));
        p.turnOff("test");
        assertEquals(PartitionState.STOPPED, p.state());
    }

    @Test
    void shouldFaultAfterTooManyCrashesInARow() throws Exception {
        Partition p = create("oc-loop", List.of("/bin/sh", "-c", "exit 3"), VmSpec.CrashPolicy.RESTART);
        p.start();
        // crash 1 (restart in 100 ms), crash 2 (200 ms), crash 3: FAULTED and left alone
        assertTrue(p.awaitState(PartitionState.FAULTED, Duration.ofSeconds(20)), p.status().toString());
        assertEquals("3 crashes in a row, last: process exited with code 3", p.status().reason());
        assertEquals("2", p.status().details().get("restarts"));
        assertEquals(3, p.faultCount(), "every crash is a fault, as for a VM");
        assertEquals(java.util.Collections.nCopies(3, "process exited with code 3"), p.faults());
        Thread.sleep(600);
        assertEquals(PartitionState.FAULTED, p.state(), "no restart after FAULTED");
    }

    @Test
    void shouldStayCrashedUnderStop() throws Exception {
        Partition p = create("oc-stop", List.of("/bin/sh", "-c", "exit 7"), VmSpec.CrashPolicy.STOP);
        p.start();
        assertTrue(p.awaitState(PartitionState.CRASHED, Duration.ofSeconds(10)), p.status().toString());
        Thread.sleep(500); // longer than the first backoff delay
        assertEquals(PartitionState.CRASHED, p.state());
        assertEquals("process exited with code 7", p.status().reason());
        assertEquals(List.of("process exited with code 7"), p.status().faults(), "the crash is in the faults list");
        assertEquals(1, p.status().faultCount());
        assertEquals("0", p.status().details().get("restarts"));
        assertEquals("stop", p.status().details().get("on_crash"));
    }

    @Test
    void shouldNotRestartAfterAUserTurnOff() throws Exception {
        Partition p = create("oc-off", List.of("/bin/sleep", "30"), VmSpec.CrashPolicy.RESTART);
        p.start();
        p.turnOff("user kill");
        Thread.sleep(500);
        assertEquals(PartitionState.STOPPED, p.state());
        assertEquals("0", p.status().details().get("restarts"));
    }

    @Test
    void shouldPinAProcessPartitionToItsCpus() throws Exception {
        List<Integer> online = io.phost.core.sys.CpuAffinity.online();
        org.junit.jupiter.api.Assumptions.assumeTrue(online.size() >= 2, "pinning is only visible with 2+ CPUs: " + online);
        int last = online.getLast();
        Partition p = host.create(PartitionSpec.command("pin", 1, 16L << 20, List.of("/bin/sleep", "30"))
            .withCpus(List.of(last)));
        p.start();
        assertTrue(p.status().details().get("cpus").startsWith("pinned to [" + last + "]"), p.status().toString());
        String status = Files.readString(Path.of("/proc/" + p.status().pid() + "/status"));
        assertTrue(status.lines().anyMatch(l -> l.matches("Cpus_allowed_list:\\s+" + last)), status);
        p.turnOff("test");
    }
}
