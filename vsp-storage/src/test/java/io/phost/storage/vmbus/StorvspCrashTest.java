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
 * count and the rate.
 *
 * <p>A round is a fresh host JVM, so the soak makes that start cheap: the class directories are packed into
 * one jar (a CDS/AOT archive cannot take directories), a training host writes an AOT cache
 * ({@code -XX:AOTCacheOutput}, JDK 25) that every round's host then maps ({@code -XX:AOTCache}: classes loaded
 * and linked, lambda forms resolved), and the images may live on tmpfs ({@code -Dphost.crash.dir=/dev/shm}).
 * tmpfs keeps what this test checks: a SIGKILL loses what the process had not handed to the kernel, and the
 * page cache survives the kill on any file system (power loss is a different test, not this one).
 */
class StorvspCrashTest {
    private static final int ROUNDS = Boolean.getBoolean("phost.soak") ? Integer.getInteger("phost.crash.rounds", 10_000) : 1;

    @TempDir
    Path tempDir;

    @Test
    void shouldKeepEveryWriteAcknowledgedBeforeACompletedSynchronizeCacheAfterTheHostIsKilled() throws Exception {
        String base = System.getProperty("phost.crash.dir");
        Path dir = base == null ? tempDir : java.nio.file.Files.createTempDirectory(Path.of(base), "storvsp-crash-");
        try {
            run(dir);
        } finally {
            if (base != null) {
                deleteTree(dir);
            }
        }
    }

    private static void run(Path dir) throws Exception {
        Path raw = dir.resolve("crash.raw");
        Path vhdx = dir.resolve("crash.vhdx");
        Path vhd = dir.resolve("crash.vhd");
        long size = 16L << 20;
        RawDisk.createSparse(raw, size);
        VhdxDisk.create(vhdx, VhdxCreateOptions.dynamic(size).withBlockSize(1 << 20)).close();
        VhdDisk.create(vhd, CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, size)).close();
        List<String> host = hostCommand(dir, ROUNDS > 1);
        java.util.SplittableRandom random = new java.util.SplittableRandom(System.nanoTime());
        long records = 0;
        long started = System.nanoTime();
        int stalled = 0;
        int stalledInARow = 0;
        for (int round = 0, attempt = 0; round < ROUNDS; attempt++) {
            long r = killedRound(host, dir.resolve("host-" + attempt), raw, vhdx, vhd, 1 + random.nextInt(4), random.nextInt(40));
            if (r < 0) {
                // Soak only: the host gave up before its first synced rounds (a 10 s VMBus setup timeout on a
                // starved machine) and exited by itself. What it had synced was still checked; it is no kill round.
                stalled++;
                assertTrue(++stalledInARow < 20, "20 hosts in a row gave up before syncing; last log in the output");
                continue;
            }
            stalledInARow = 0;
            records += r;
            round++;
            if (ROUNDS > 1 && round % 10 == 0) {
                report(round, records, started, "SIGKILL rounds", stalled);
            }
        }
        report(ROUNDS, records, started, "SIGKILL round(s)", stalled);
    }

    private static void report(int rounds, long records, long started, String what, int stalled) {
        double seconds = (System.nanoTime() - started) / 1e9;
        System.out.printf("StorvspCrashTest: %d %s, %d synced 64 KiB writes verified, 0 lost, %.0f s, %.3f rounds/s"
            + " (%d more hosts gave up before syncing and were not counted)%n", rounds, what, records, seconds,
            rounds / seconds, stalled);
    }

    /**
     * The command that starts a host. With {@code cheap} (the soak) the class directories are packed into a jar
     * and a training host (its own images, asked to exit after 3 synced rounds) writes an AOT cache that every
     * round maps; if the JVM cannot make one, the rounds run without it and say so.
     */
    private static List<String> hostCommand(Path dir, boolean cheap) throws Exception {
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        for (String a : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
            if (a.startsWith("--enable-native-access") || a.startsWith("--add-exports")) {
                cmd.add(a);
            }
        }
        cmd.addAll(List.of("-Xmx64m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"));
        String classPath = System.getProperty("java.class.path");
        if (!cheap) {
            cmd.addAll(List.of("-cp", classPath));
            return cmd;
        }
        List<String> entries = new ArrayList<>();
        Path jar = dir.resolve("crash-host.jar");
        try (var out = new java.util.jar.JarOutputStream(java.nio.file.Files.newOutputStream(jar))) {
            java.util.Set<String> written = new java.util.HashSet<>();
            for (String e : classPath.split(java.io.File.pathSeparator)) {
                Path p = Path.of(e);
                if (!java.nio.file.Files.isDirectory(p)) {
                    entries.add(e);
                    continue;
                }
                try (var files = java.nio.file.Files.walk(p)) {
                    for (Path f : (Iterable<Path>) files.filter(java.nio.file.Files::isRegularFile)::iterator) {
                        String name = p.relativize(f).toString().replace(java.io.File.separatorChar, '/');
                        if (written.add(name)) { // first on the class path wins, as it does for the class loader
                            out.putNextEntry(new java.util.jar.JarEntry(name));
                            java.nio.file.Files.copy(f, out);
                            out.closeEntry();
                        }
                    }
                }
            }
        }
        entries.addFirst(jar.toString());
        cmd.addAll(List.of("-cp", String.join(java.io.File.pathSeparator, entries)));
        Path train = java.nio.file.Files.createDirectories(dir.resolve("train"));
        Path aot = dir.resolve("crash-host.aot");
        RawDisk.createSparse(train.resolve("t.raw"), 16L << 20);
        VhdxDisk.create(train.resolve("t.vhdx"), VhdxCreateOptions.dynamic(16L << 20).withBlockSize(1 << 20)).close();
        VhdDisk.create(train.resolve("t.vhd"), CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, 16L << 20)).close();
        List<String> training = new ArrayList<>(cmd);
        training.addAll(training.size() - 2, List.of("-XX:AOTCacheOutput=" + aot, "-Dphost.crash.exitAfter=3"));
        training.addAll(List.of(CrashHostMain.class.getName(), java.nio.file.Files.createDirectories(train.resolve("host")).toString(),
            train.resolve("t.raw").toString(), train.resolve("t.vhdx").toString(), train.resolve("t.vhd").toString()));
        Process p = new ProcessBuilder(training).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
        if (p.waitFor() == 0 && java.nio.file.Files.isRegularFile(aot)) {
            cmd.add(cmd.size() - 2, "-XX:AOTCache=" + aot);
            System.out.println("StorvspCrashTest: host JVMs start from AOT cache " + aot);
        } else {
            System.out.println("StorvspCrashTest: no AOT cache (exit " + p.exitValue() + "), rounds start cold:\n" + out);
        }
        deleteTree(train);
        return cmd;
    }

    private static void deleteTree(Path root) throws java.io.IOException {
        try (var files = java.nio.file.Files.walk(root)) {
            files.sorted(java.util.Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
        }
    }

    /**
     * Starts {@link CrashHostMain}, kills it {@code extraMillis} after its {@code syncs}-th SYNCED line (while the
     * next round's writes are in flight), then checks every synced write on the three images; returns how many, or -1
     * when (soak only) the host exited by itself before its {@code syncs}-th SYNCED line (what it synced is checked).
     */
    private static long killedRound(List<String> host, Path hostDir, Path raw, Path vhdx, Path vhd, int syncs,
                                    int extraMillis) throws Exception {
        java.nio.file.Files.createDirectories(hostDir);
        List<String> cmd = new ArrayList<>(host);
        cmd.addAll(List.of(CrashHostMain.class.getName(), hostDir.toString(), raw.toString(), vhdx.toString(), vhd.toString()));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        // a host that hangs without output is killed too, and then fails the progress check below
        java.util.concurrent.CompletableFuture.delayedExecutor(120, java.util.concurrent.TimeUnit.SECONDS)
            .execute(p::destroyForcibly);
        long lastSynced = -1;
        int seen = 0;
        boolean endedByItself = true;
        StringBuilder log = new StringBuilder();
        try (BufferedReader in = new BufferedReader(new InputStreamReader(p.getInputStream()))) {
            String line;
            while ((line = in.readLine()) != null) {
                log.append(line).append('\n');
                if (line.startsWith("SYNCED ")) {
                    lastSynced = Long.parseLong(line.substring(7));
                    if (++seen >= syncs) {
                        endedByItself = false;
                        break;
                    }
                }
            }
            Thread.sleep(extraMillis);
            // SIGKILL while the next round's writes are in flight.
            p.destroyForcibly();
            p.waitFor();
        }
        boolean stalled = lastSynced < syncs - 1;
        if (stalled && (ROUNDS == 1 || !endedByItself)) {
            assertTrue(false, "host made progress before the kill:\n" + log);
        }
        if (stalled) {
            System.out.println("StorvspCrashTest: a host gave up before its synced rounds (not counted):\n" + log);
        }
        long rounds = lastSynced; // rounds 0..lastSynced were synced (no wrap-around within this run); -1: none
        try (RawDisk r = RawDisk.openFile(raw, true, false); VhdxDisk v = VhdxDisk.open(vhdx, true);
             VhdDisk h = VhdDisk.open(vhd, true)) {
            check(r, rounds);
            check(v, rounds);
            check(h, rounds);
        }
        deleteTree(hostDir);
        return stalled ? -1 : (rounds + 1) * CrashHostMain.PER_ROUND * CrashHostMain.LUNS;
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
