package io.phost.core.partition;

import static org.junit.jupiter.api.Assertions.*;

import io.phost.core.EchoVsp;
import io.phost.core.sys.Signals;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Two real processes: each partition is a child JVM ({@code java -cp <test classpath> io.phost.core.TestGuest
 * <workload>}) started by the PartitionHost with the PHOST_* environment. Guest logs: {@code <dataDir>/<name>.log}.
 */
class PartitionProcessTest {
    private static final long MEM = 8L << 20;
    private static final Duration LONG = Duration.ofSeconds(60);
    private Path dir;
    private PartitionHost host;

    @BeforeEach
    void setUp() throws Exception {
        dir = Files.createTempDirectory("phost-part");
        GuestLauncher launcher = GuestLauncher.sameJvm("io.phost.core.TestGuest",
            List.of("-Xmx48m", "-XX:TieredStopAtLevel=1", "-XX:CICompilerCount=1", "-Xshare:auto"));
        host = new PartitionHost(dir, launcher, PartitionHost.Options.defaults()
            .withHeartbeat(Duration.ofMillis(200), Duration.ofSeconds(4)).withMaxFaults(5));
    }

    @AfterEach
    void tearDown() throws Exception {
        host.close();
        try (var s = Files.walk(dir)) {
            s.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        }
    }

    private String log(String name) {
        try {
            return Files.readString(dir.resolve(name + ".log"));
        } catch (Exception e) {
            return "(no log)";
        }
    }

    private static String awaitGuestValue(Partition p, String key, Duration timeout) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (System.nanoTime() < deadline) {
            String v = p.kvp().guestValues().get(key);
            if (v != null) {
                return v;
            }
            if (!p.state().live()) {
                return "partition " + p.state() + ": " + p.status().reason();
            }
            Thread.sleep(20);
        }
        return null;
    }

    @Test
    void shouldExchangeInbandAndGpaDirectPacketsWithAChildProcessAndStopItGracefully() throws Exception {
        EchoVsp echo = new EchoVsp("good");
        Partition p = host.create(PartitionSpec.builtin("good", 1, MEM, "exercise"));
        p.offer(echo);
        p.start();
        assertEquals("ok", awaitGuestValue(p, "result", LONG), log("good"));
        assertEquals(PartitionState.RUNNING, p.state());
        PartitionStatus s = host.status().getFirst();
        assertTrue(s.pid() > 0);
        assertTrue(s.channels() >= 4, "integration services open: " + s);
        assertTrue(echo.gpaDirect.get() >= 1);
        long pid = s.pid();
        p.stop(Duration.ofSeconds(10));
        assertEquals(PartitionState.STOPPED, p.state());
        assertEquals("stop requested", p.status().reason(), "graceful: the guest exited on the shutdown service");
        assertTrue(ProcessHandle.of(pid).isEmpty() || !ProcessHandle.of(pid).get().isAlive());
        assertEquals(0, p.faultCount(), p.faults().toString());
    }

    @Test
    void shouldKeepServingAWellBehavedPartitionWhileAHostileOneIsFaultedAndKilled() throws Exception {
        EchoVsp goodEcho = new EchoVsp("serve");
        Partition good = host.create(PartitionSpec.builtin("serve", 1, MEM, "serve"));
        good.offer(goodEcho);
        Partition evil = host.create(PartitionSpec.builtin("evil", 1, MEM, "hostile"));
        evil.offer(new EchoVsp("evil"));
        good.start();
        evil.start();
        assertNotNull(awaitGuestValue(good, "rounds", LONG), log("serve"));
        assertTrue(evil.awaitState(PartitionState.FAULTED, LONG), evil.status() + "\n" + log("evil"));
        List<String> faults = evil.faults();
        assertTrue(faults.stream().anyMatch(f -> f.contains("BAD_INDEX")), faults.toString());
        assertTrue(faults.stream().anyMatch(f -> f.contains("BAD_DESCRIPTOR")), faults.toString());
        assertTrue(faults.stream().anyMatch(f -> f.contains("NOT_GRANTED")), faults.toString());
        assertEquals(-1, evil.status().pid(), "faulted partition's process is killed");
        long before = Long.parseLong(good.kvp().guestValues().get("rounds"));
        long deadline = System.nanoTime() + 20_000_000_000L;
        while (Long.parseLong(good.kvp().guestValues().get("rounds")) < before + 3 && System.nanoTime() < deadline) {
            Thread.sleep(20);
        }
        assertTrue(Long.parseLong(good.kvp().guestValues().get("rounds")) >= before + 3, "the good partition keeps making progress");
        assertEquals(PartitionState.RUNNING, good.state());
        assertEquals(0, good.faultCount(), good.faults().toString());
    }

    @Test
    void shouldDetectMissedHeartbeatsAndProcessExitAndSurvivePauseResume() throws Exception {
        Partition hang = host.create(PartitionSpec.builtin("hang", 1, MEM, "hang"));
        Partition idle = host.create(PartitionSpec.builtin("idle", 1, MEM, "idle"));
        hang.start();
        idle.start();
        assertTrue(idle.awaitState(PartitionState.RUNNING, LONG), log("idle"));
        assertTrue(hang.awaitState(PartitionState.CRASHED, LONG), hang.status() + log("hang"));
        assertTrue(hang.status().reason().contains("missed heartbeats"), hang.status().reason());

        assertNotNull(awaitGuestValue(idle, "workload", LONG));
        idle.pause();
        Thread.sleep(5_000); // longer than the heartbeat timeout: a paused partition is not "hung"
        assertEquals(PartitionState.PAUSED, idle.state());
        idle.resume();
        Thread.sleep(1_000);
        assertEquals(PartitionState.RUNNING, idle.state(), idle.status().reason());

        Signals.kill(idle.status().pid(), Signals.SIGKILL);
        assertTrue(idle.awaitState(PartitionState.CRASHED, Duration.ofSeconds(10)));
        assertTrue(idle.status().reason().contains("exited") || idle.status().reason().contains("connection lost"), idle.status().reason());
        assertEquals(0, idle.status().channels(), "channels torn down");
    }

    /** Soak ({@code -Dphost.soak=true}): a hostile guest attacking for two minutes, never faulted out. */
    @Test
    @org.junit.jupiter.api.condition.EnabledIfSystemProperty(named = "phost.soak", matches = "true")
    void shouldSurviveMinutesOfHostileRingsAndControlMessages() throws Exception {
        host.close();
        host = new PartitionHost(dir.resolve("soak"), GuestLauncher.sameJvm("io.phost.core.TestGuest", List.of("-Xmx48m")),
            PartitionHost.Options.defaults().withMaxFaults(Integer.MAX_VALUE));
        EchoVsp goodEcho = new EchoVsp("serve");
        Partition good = host.create(PartitionSpec.builtin("serve", 1, MEM, "serve"));
        good.offer(goodEcho);
        Partition evil = host.create(PartitionSpec.builtin("evil", 1, MEM, "hostile-soak"));
        evil.offer(new EchoVsp("evil"));
        good.start();
        evil.start();
        assertTrue(good.awaitState(PartitionState.RUNNING, LONG) && evil.awaitState(PartitionState.RUNNING, LONG));
        long end = System.nanoTime() + Duration.ofMinutes(2).toNanos();
        while (System.nanoTime() < end) {
            Thread.sleep(1000);
            assertEquals(PartitionState.RUNNING, good.state(), good.status().reason());
            assertEquals(PartitionState.RUNNING, evil.state(), evil.status().reason());
        }
        assertTrue(evil.faultCount() > 20, "attacks were made: " + evil.faultCount());
        assertEquals(0, good.faultCount(), good.faults().toString());
    }

    @Test
    void shouldReportAProgramThatExitsWithStatusZeroAsStoppedNotAsAFault() throws Exception {
        Partition p = host.create(PartitionSpec.builtin("done", 1, MEM, "exit-0").withOnCrash(io.phost.core.vm.VmSpec.CrashPolicy.RESTART));
        p.start();
        assertTrue(p.awaitState(PartitionState.STOPPED, LONG), p.status() + log("done"));
        Thread.sleep(500); // past the first on_crash backoff: an Off partition is not restarted
        PartitionStatus s = p.status();
        assertEquals(PartitionState.STOPPED, s.state(), s.toString());
        assertEquals("process exited with code 0", s.reason());
        assertEquals(List.of(), s.faults(), "a clean exit is no fault");
        assertEquals(0, s.faultCount());
        assertEquals("0", s.details().get("restarts"));
    }

    @Test
    void shouldReportAProgramThatExitsWithAnErrorOrASignalAsCrashedWithItsStatus() throws Exception {
        Partition failed = host.create(PartitionSpec.builtin("failed", 1, MEM, "exit-3"));
        Partition killed = host.create(PartitionSpec.builtin("killed", 1, MEM, "exit-kill"));
        failed.start();
        killed.start();
        assertTrue(failed.awaitState(PartitionState.CRASHED, LONG), failed.status() + log("failed"));
        assertTrue(killed.awaitState(PartitionState.CRASHED, LONG), killed.status() + log("killed"));
        assertEquals("process exited with code 3", failed.status().reason(), "the status, not a lost connection");
        assertEquals(List.of("process exited with code 3"), failed.status().faults());
        assertEquals("process exited with code 137 (SIGKILL)", killed.status().reason());
        assertEquals(List.of("process exited with code 137 (SIGKILL)"), killed.status().faults());
    }
}
