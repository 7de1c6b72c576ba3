package io.phost.storage.vmbus;

import io.phost.storage.backend.FileDisk;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.vhdx.VhdxCreateOptions;
import io.phost.vhdx.vhdx.VhdxDisk;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
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
 * SYNCHRONIZE CACHE is intact after restart, on a raw file and on a dynamic VHDX (reopened, log replayed).
 */
@Timeout(120)
class StorvspCrashTest {
    @TempDir
    Path dir;

    @Test
    void shouldKeepEveryWriteAcknowledgedBeforeACompletedSynchronizeCacheAfterTheHostIsKilled() throws Exception {
        Path raw = dir.resolve("crash.raw");
        Path vhdx = dir.resolve("crash.vhdx");
        long size = 16L << 20;
        FileDisk.createSparse(raw, size);
        VhdxDisk.create(vhdx, VhdxCreateOptions.dynamic(size).withBlockSize(1 << 20)).close();
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        for (String a : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
            if (a.startsWith("--enable-native-access") || a.startsWith("--add-exports")) {
                cmd.add(a);
            }
        }
        cmd.addAll(List.of("-Xmx64m", "-XX:TieredStopAtLevel=1", "-cp", System.getProperty("java.class.path"),
            CrashHostMain.class.getName(), dir.toString(), raw.toString(), vhdx.toString()));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        long lastSynced = -1;
        int seen = 0;
        StringBuilder log = new StringBuilder();
        try (BufferedReader in = new BufferedReader(new InputStreamReader(p.getInputStream()))) {
            String line;
            int target = 4 + (int) (System.nanoTime() % 5);
            while ((line = in.readLine()) != null) {
                log.append(line).append('\n');
                if (line.startsWith("SYNCED ")) {
                    lastSynced = Long.parseLong(line.substring(7));
                    if (++seen >= target) {
                        break;
                    }
                }
            }
            // SIGKILL while the next round's writes are in flight.
            p.destroyForcibly();
            p.waitFor();
        }
        assertTrue(lastSynced >= 3, "host made progress before the kill:\n" + log);
        long rounds = lastSynced; // rounds 0..lastSynced were synced (no wrap-around within this run)
        try (FileDisk r = FileDisk.openFile(raw, true, false); VhdxDisk v = VhdxDisk.open(vhdx, true)) {
            check(r, rounds);
            check(v, rounds);
        }
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
