package io.phost.storage.scsi;

import io.phost.storage.engine.IoEngines;
import io.phost.vhdx.CreateOptions;
import io.phost.vhdx.DiskFormat;
import io.phost.vhdx.DiskType;
import io.phost.vhdx.RawDisk;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.VirtualDisks;
import io.phost.vhdx.ops.CheckReport;
import io.phost.vhdx.ops.DiskOps;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStreamReader;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * SIGKILL soak through the storage path: each round starts {@link KillSoakWriterMain} (a small JVM that writes
 * checksummed records to a VHDX or VHD through a SCSI LUN, queue and I/O engine, flushing at random points) and
 * kills it at a random moment: mostly 0-30 ms after its 0th-4th flush (while the next records are in flight), in a
 * soak one round in eight anywhere in its first 0.4 s (so during start, open and log replay too). This JVM then checks the image with the engine's own check and reads every
 * slot: each record reported flushed is there (or a newer record of the same slot), every other slot holds zeros
 * or an intact record. Every {@link #QEMU_EVERY} rounds of an image, qemu-img checks a copy (for VHDX, replaying
 * its log) and converts it to raw, and the raw copy passes the same scan. Images are recreated every
 * {@link #RECREATE_EVERY} rounds so block allocation stays in play.
 *
 * <p>Rounds alternate VHDX and VHD. Default: {@value #DEFAULT_ROUNDS} rounds. Soak: {@code -Dphost.soak=true
 * -Dphost.killsoak.rounds=N} (10,000 by default), {@code -Dphost.killsoak.dir=/dev/shm} for the images (a SIGKILL
 * test: the page cache survives the killed process on any file system). A round is cheap because the writer's
 * classes are packed into one jar and a training run writes an AOT cache ({@code -XX:AOTCacheOutput}, JDK 25: an
 * AppCDS archive plus linked classes) that every round maps (soak only), with C1 only and the serial GC.
 */
class StorageKillSoakTest {
    private static final int DEFAULT_ROUNDS = 6;
    private static final boolean SOAK = Boolean.getBoolean("phost.soak");
    private static final int ROUNDS = SOAK ? Integer.getInteger("phost.killsoak.rounds", 10_000) : DEFAULT_ROUNDS;
    private static final int QEMU_EVERY = SOAK ? 50 : 3;
    private static final int RECREATE_EVERY = 200;
    private static final long SIZE = 16L << 20;
    private static final Path QEMU_IMG = Path.of("/usr/bin/qemu-img");

    @TempDir
    Path tempDir;

    /** One image under test and what it must hold: per slot the newest flushed record, or -1. */
    private static final class Image {
        final DiskFormat format;
        final Path path;
        final long[] flushedRound = new long[(int) KillSoakRecord.slots(SIZE)];
        final long[] flushedNumber = new long[flushedRound.length];
        int rounds;

        Image(DiskFormat format, Path path) {
            this.format = format;
            this.path = path;
        }

        void recreate() throws IOException {
            Files.deleteIfExists(path);
            VirtualDisks.create(path, CreateOptions.of(format, DiskType.DYNAMIC, SIZE).withBlockSize(1 << 20)).close();
            Arrays.fill(flushedRound, -1);
            Arrays.fill(flushedNumber, -1);
        }
    }

    private long flushedRecords;
    private long recordsSeen;
    private int qemuChecks;
    private long writerNanos;
    private long checkNanos;

    @Test
    void shouldKeepEveryFlushedRecordAndNeverCorruptTheImageWhenTheWriterIsKilled() throws Exception {
        String base = System.getProperty("phost.killsoak.dir");
        Path dir = base == null ? tempDir : Files.createTempDirectory(Path.of(base), "phost-killsoak-");
        try {
            run(dir);
        } finally {
            if (base != null) {
                deleteTree(dir);
            }
        }
    }

    private void run(Path dir) throws Exception {
        List<String> jvm = writerJvm(dir);
        Image[] images = {new Image(DiskFormat.VHDX, dir.resolve("soak.vhdx")), new Image(DiskFormat.VHD, dir.resolve("soak.vhd"))};
        SplittableRandom random = new SplittableRandom(Long.getLong("phost.killsoak.seed", System.nanoTime()));
        long started = System.nanoTime();
        for (int round = 0; round < ROUNDS; round++) {
            Image image = images[round % 2];
            if (image.rounds % RECREATE_EVERY == 0) {
                image.recreate();
            }
            image.rounds++;
            IoEngines.Kind kind = random.nextBoolean() ? IoEngines.Kind.AUTO : IoEngines.Kind.THREADS;
            long t0 = System.nanoTime();
            long flushed = killedRound(jvm, image, round, kind, random);
            writerNanos += System.nanoTime() - t0;
            for (long n = 0; n < flushed; n++) {
                int slot = (int) KillSoakRecord.slotOf(round, n, image.flushedRound.length);
                image.flushedRound[slot] = round;
                image.flushedNumber[slot] = n;
            }
            flushedRecords += flushed;
            long t1 = System.nanoTime();
            check(image, round);
            checkNanos += System.nanoTime() - t1;
            if (image.rounds % QEMU_EVERY == 0 && Files.isExecutable(QEMU_IMG)) {
                qemuCheck(image, dir);
            }
            if (SOAK && (round + 1) % 20 == 0) {
                report(round + 1, started);
            }
        }
        report(ROUNDS, started);
        assertTrue(flushedRecords > 0, "some records were flushed before the kills");
        assertTrue(!Files.isExecutable(QEMU_IMG) || qemuChecks > 0, "qemu-img checked the images");
    }

    private void report(int rounds, long started) {
        double seconds = (System.nanoTime() - started) / 1e9;
        System.out.printf("StorageKillSoakTest: %d SIGKILL rounds (VHDX and VHD alternating), %d flushed records verified,"
            + " %d records read back, %d qemu-img checks, 0 corruptions, %.0f s, %.3f s/round (writer %.3f s, check %.3f s)%n",
            rounds, flushedRecords, recordsSeen, qemuChecks, seconds, seconds / rounds, writerNanos / 1e9 / rounds,
            checkNanos / 1e9 / rounds);
    }

    /** Runs the writer, SIGKILLs it, returns how many records (0..n-1) it reported flushed. */
    private static long killedRound(List<String> jvm, Image image, long round, IoEngines.Kind kind, SplittableRandom random)
        throws Exception {
        List<String> cmd = new ArrayList<>(jvm);
        cmd.addAll(List.of(KillSoakWriterMain.class.getName(), image.path.toString(), Long.toString(round), kind.name()));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        long[] flushed = {0};
        StringBuilder log = new StringBuilder();
        CountDownLatch ready = new CountDownLatch(1);
        Semaphore flushes = new Semaphore(0);
        Thread reader = Thread.ofVirtual().start(() -> {
            try (BufferedReader in = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
                for (String line; (line = in.readLine()) != null; ) {
                    if (line.startsWith("FLUSHED ")) {
                        flushed[0] = Long.parseLong(line.substring(8));
                        flushes.release();
                    } else if (line.equals("READY")) {
                        ready.countDown();
                    } else if (log.length() < 20_000) {
                        log.append(line).append('\n');
                    }
                }
            } catch (IOException e) {
                log.append(e).append('\n');
            }
        });
        if (SOAK && random.nextInt(8) == 0) {
            Thread.sleep(random.nextInt(400)); // anywhere: during start, open, log replay or writes
        } else {
            if (!ready.await(120, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                fail("writer did not open " + image.path + " in 120 s:\n" + log);
            }
            // after 0-4 flushes, while the next records are in flight
            if (!flushes.tryAcquire(random.nextInt(5), 120, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                fail("writer made no progress on " + image.path + " in 120 s:\n" + log);
            }
            Thread.sleep(random.nextInt(30));
        }
        boolean exitedByItself = !p.isAlive();
        p.destroyForcibly();
        p.waitFor();
        reader.join();
        if (exitedByItself) {
            fail("round " + round + ": the writer exited by itself (" + p.exitValue() + ") on " + image.format + ":\n" + log);
        }
        return flushed[0];
    }

    /** The engine's check, then every slot read back through the engine. */
    private void check(Image image, long round) throws IOException {
        CheckReport report = DiskOps.check(image.path, false);
        List<String> problems = report.problems().stream().filter(p -> !p.contains("DIRTY_LOG")).toList();
        if (!report.readable() || !problems.isEmpty()) {
            fail("round " + round + ": " + image.format + " check: readable=" + report.readable() + " " + problems);
        }
        try (VirtualDisk d = VirtualDisks.open(image.path, true)) {
            assertEquals(SIZE, d.size(), image.format + ": size");
            scan(d::read, image, "round " + round + " " + image.format);
        }
    }

    private void scan(Reader d, Image image, String what) throws IOException {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment b = a.allocate(KillSoakRecord.SIZE, 4096);
            MemorySegment scratch = a.allocate(KillSoakRecord.SIZE, 8);
            long slots = image.flushedRound.length;
            for (int slot = 0; slot < slots; slot++) {
                d.read((long) slot * KillSoakRecord.SIZE, b);
                KillSoakRecord.Content c = KillSoakRecord.parse(b, slot, slots, scratch);
                long fr = image.flushedRound[slot];
                long fn = image.flushedNumber[slot];
                if (c.corruption() != null) {
                    fail(what + ": " + c.corruption());
                }
                if (fr >= 0 && (c.zero() || !c.newerThanOrSame(fr, fn))) {
                    fail(what + ": slot " + slot + " lost flushed record " + fr + "/" + fn + ": it holds "
                        + (c.zero() ? "zeros" : "record " + c.round() + "/" + c.number()));
                }
                if (!c.zero()) {
                    recordsSeen++;
                }
            }
        }
    }

    /** qemu-img on a copy: check (replaying a VHDX log), then a raw conversion that must pass the same scan. */
    private void qemuCheck(Image image, Path dir) throws Exception {
        Path copy = dir.resolve("qemu-copy");
        Path raw = dir.resolve("qemu-copy.raw");
        Files.copy(image.path, copy, StandardCopyOption.REPLACE_EXISTING);
        String fmt = image.format == DiskFormat.VHDX ? "vhdx" : "vpc";
        if (image.format == DiskFormat.VHDX) {
            qemuImg("check", "-r", "leaks", "-f", fmt, copy.toString());
        }
        Files.deleteIfExists(raw);
        qemuImg("convert", "-f", fmt, "-O", "raw", copy.toString(), raw.toString());
        assertTrue(Files.size(raw) >= SIZE, "qemu-img sees the whole disk: " + Files.size(raw));
        try (RawDisk r = RawDisk.openFile(raw, true, false)) {
            scan(r::read, image, "qemu-img " + image.format + " after " + image.rounds + " rounds");
        }
        Files.delete(copy);
        Files.delete(raw);
        qemuChecks++;
    }

    @FunctionalInterface
    private interface Reader {
        void read(long offset, MemorySegment dst) throws IOException;
    }

    private static void qemuImg(String... args) throws Exception {
        List<String> cmd = new ArrayList<>(List.of(QEMU_IMG.toString()));
        cmd.addAll(List.of(args));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertEquals(0, p.waitFor(), String.join(" ", cmd) + ":\n" + out);
    }

    /**
     * The writer's JVM command: C1 only, the serial GC; in a soak also the class directories packed into one jar (an
     * AOT cache cannot take directories) and an AOT cache written by a training run that writes both formats.
     */
    private static List<String> writerJvm(Path dir) throws Exception {
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        for (String a : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
            if (a.startsWith("--enable-native-access") || a.startsWith("--add-exports")) {
                cmd.add(a);
            }
        }
        cmd.addAll(List.of("-Xmx64m", "-Xss512k", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-XX:-UsePerfData"));
        if (!SOAK) { // a handful of rounds: training the cache would cost more than it saves
            cmd.addAll(List.of("-cp", System.getProperty("java.class.path")));
            return cmd;
        }
        cmd.addAll(List.of("-cp", packedClassPath(dir)));
        Path train = Files.createDirectories(dir.resolve("train"));
        Path aot = dir.resolve("writer.aot");
        Path tx = train.resolve("t.vhdx");
        Path th = train.resolve("t.vhd");
        VirtualDisks.create(tx, CreateOptions.of(DiskFormat.VHDX, DiskType.DYNAMIC, SIZE).withBlockSize(1 << 20)).close();
        VirtualDisks.create(th, CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, SIZE).withBlockSize(1 << 20)).close();
        List<String> training = new ArrayList<>(cmd);
        training.addAll(training.size() - 2, List.of("-XX:AOTCacheOutput=" + aot, "-Dphost.killsoak.exitAfter=300"));
        training.addAll(List.of(KillSoakWriterMain.class.getName(), tx.toString(), "0", "AUTO", th.toString()));
        Process p = new ProcessBuilder(training).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (p.waitFor() == 0 && Files.isRegularFile(aot)) {
            cmd.add(cmd.size() - 2, "-XX:AOTCache=" + aot);
        } else {
            System.out.println("StorageKillSoakTest: no AOT cache (exit " + p.exitValue() + "), rounds start cold: " + String.join(" ", training) + "\n" + out);
        }
        deleteTree(train);
        return cmd;
    }

    private static String packedClassPath(Path dir) throws IOException {
        List<String> entries = new ArrayList<>();
        Path jar = dir.resolve("writer.jar");
        try (var out = new java.util.jar.JarOutputStream(Files.newOutputStream(jar))) {
            java.util.Set<String> written = new java.util.HashSet<>();
            for (String e : System.getProperty("java.class.path").split(File.pathSeparator)) {
                Path p = Path.of(e);
                if (!Files.isDirectory(p)) {
                    entries.add(e);
                    continue;
                }
                try (var files = Files.walk(p)) {
                    for (Path f : (Iterable<Path>) files.filter(Files::isRegularFile)::iterator) {
                        String name = p.relativize(f).toString().replace(File.separatorChar, '/');
                        if (written.add(name)) { // first on the class path wins, as for the class loader
                            out.putNextEntry(new java.util.jar.JarEntry(name));
                            Files.copy(f, out);
                            out.closeEntry();
                        }
                    }
                }
            }
        }
        entries.addFirst(jar.toString());
        return String.join(File.pathSeparator, entries);
    }

    private static void deleteTree(Path root) throws IOException {
        try (var files = Files.walk(root)) {
            files.sorted(Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
        }
    }
}
