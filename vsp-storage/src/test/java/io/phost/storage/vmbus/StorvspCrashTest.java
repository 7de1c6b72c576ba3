package io.phost.storage.vmbus;

import io.phost.vhdx.RawDisk;
import io.phost.vhdx.CreateOptions;
import io.phost.vhdx.DiskFormat;
import io.phost.vhdx.DiskType;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.vhd.VhdDisk;
import io.phost.vhdx.vhdx.VhdxCreateOptions;
import io.phost.vhdx.vhdx.VhdxDisk;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.management.ManagementFactory;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Kill the host mid-write (SIGKILL, a real process): every write that completed before a completed
 * SYNCHRONIZE CACHE is intact after restart, on a raw file, a dynamic VHDX (reopened, log replayed) and a
 * dynamic VHD. One round by default; {@code -Dphost.soak=true} runs {@code -Dphost.crash.rounds=N} rounds
 * (default 10,000) on the same three images, each reopened after the previous round's kill, and prints the
 * count: a round is a fresh JVM, ~1-3 s on a loaded 2-core machine.
 */
class StorvspCrashTest {
    private static final int ROUNDS = Boolean.getBoolean("phost.soak") ? Integer.getInteger("phost.crash.rounds", 10_000) : 1;

    @TempDir
    Path dir;

    @Test
    void shouldKeepEveryWriteAcknowledgedBeforeACompletedSynchronizeCacheAfterTheHostIsKilled() throws Exception {
        Path raw = dir.resolve("crash.raw");
        Path vhdx = dir.resolve("crash.vhdx");
        Path vhd = dir.resolve("crash.vhd");
        long size = 16L << 20;
        RawDisk.createSparse(raw, size);
        VhdxDisk.create(vhdx, VhdxCreateOptions.dynamic(size).withBlockSize(1 << 20)).close();
        VhdDisk.create(vhd, CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, size)).close();
        java.util.SplittableRandom random = new java.util.SplittableRandom(System.nanoTime());
        long records = 0;
        long started = System.nanoTime();
        for (int round = 0; round < ROUNDS; round++) {
            records += killedRound(dir.resolve("host-" + round), raw, vhdx, vhd, 1 + random.nextInt(8), random.nextInt(40));
            if (ROUNDS > 1 && (round + 1) % 10 == 0) {
                System.out.printf("StorvspCrashTest: %d SIGKILL rounds, %d synced 64 KiB writes verified, 0 lost, %d s%n",
                    round + 1, records, (System.nanoTime() - started) / 1_000_000_000L);
            }
        }
        System.out.printf("StorvspCrashTest: %d SIGKILL round(s), %d synced 64 KiB writes verified, 0 lost, %d s%n",
            ROUNDS, records, (System.nanoTime() - started) / 1_000_000_000L);
    }

    /**
     * Starts {@link CrashHostMain}, kills it {@code extraMillis} after its {@code syncs}-th SYNCED line (while the
     * next round's writes are in flight), then checks every synced write on the three images; returns how many.
     */
    private static long killedRound(Path hostDir, Path raw, Path vhdx, Path vhd, int syncs, int extraMillis) throws Exception {
        java.nio.file.Files.createDirectories(hostDir);
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        for (String a : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
            if (a.startsWith("--enable-native-access") || a.startsWith("--add-exports")) {
                cmd.add(a);
            }
        }
        cmd.addAll(List.of("-Xmx64m", "-XX:TieredStopAtLevel=1", "-cp", System.getProperty("java.class.path"),
            CrashHostMain.class.getName(), hostDir.toString(), raw.toString(), vhdx.toString(), vhd.toString()));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        // a host that hangs without output is killed too, and then fails the progress check below
        java.util.concurrent.CompletableFuture.delayedExecutor(120, java.util.concurrent.TimeUnit.SECONDS)
            .execute(p::destroyForcibly);
        long lastSynced = -1;
        int seen = 0;
        StringBuilder log = new StringBuilder();
        try (BufferedReader in = new BufferedReader(new InputStreamReader(p.getInputStream()))) {
            String line;
            while ((line = in.readLine()) != null) {
                log.append(line).append('\n');
                if (line.startsWith("SYNCED ")) {
                    lastSynced = Long.parseLong(line.substring(7));
                    if (++seen >= syncs) {
                        break;
                    }
                }
            }
            Thread.sleep(extraMillis);
            // SIGKILL while the next round's writes are in flight.
            p.destroyForcibly();
            p.waitFor();
        }
        assertTrue(lastSynced >= syncs - 1, "host made progress before the kill:\n" + log);
        long rounds = lastSynced; // rounds 0..lastSynced were synced (no wrap-around within this run)
        try (RawDisk r = RawDisk.openFile(raw, true, false); VhdxDisk v = VhdxDisk.open(vhdx, true);
             VhdDisk h = VhdDisk.open(vhd, true)) {
            check(r, rounds);
            check(v, rounds);
            check(h, rounds);
        }
        try (var files = java.nio.file.Files.walk(hostDir)) {
            files.sorted(java.util.Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
        }
        return (rounds + 1) * CrashHostMain.PER_ROUND * CrashHostMain.LUNS;
    }

    private static void check(VirtualDisk d, long rounds) throws Exception {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment b = a.allocate(CrashHostMain.UNIT, 4096);
            for (long k = 0; k <= rounds; k++) {
                for (int s = 0; s < CrashHostMain.PER_ROUND; s++) {
                    long unit = k * CrashHostMain.PER_ROUND + s;
                    d.read(unit * CrashHostMain.UNIT, b);
                    for (int i = 0; i < CrashHostMain.UNIT; i += 8) {
                        long expected = GuestIo.pattern(unit * CrashHostMain.UNIT + i, CrashHostMain.seed(k));
                        assertEquals(expected, b.get(ValueLayout.JAVA_LONG, i),
                            d.format() + ": round " + k + " unit " + unit + " offset " + i);
                    }
                }
            }
        }
    }
}
