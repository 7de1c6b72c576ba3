package io.phost.storage.vmbus;

import io.phost.core.partition.Partition;
import io.phost.core.partition.PartitionHost;
import io.phost.core.partition.PartitionSpec;
import io.phost.core.vmbus.GuestRam;
import io.phost.core.vmbus.VmbusClient;
import io.phost.qos.QosFlow;
import io.phost.storage.StorageVsp;
import io.phost.vhdx.RawDisk;
import io.phost.storage.engine.CountingMappedDisk;
import io.phost.storage.engine.IoEngines;
import io.phost.storage.tools.Proc;
import io.phost.vhdx.CreateOptions;
import io.phost.vhdx.DiskFormat;
import io.phost.vhdx.DiskType;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.vhd.VhdDisk;
import io.phost.vhdx.vhdx.VhdxCheck;
import io.phost.vhdx.vhdx.VhdxCreateOptions;
import io.phost.vhdx.vhdx.VhdxDisk;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.RandomAccessFile;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Guest I/O over the VMBus SCSI path to VHDX and VHD images served by the mapped engine (io_uring on the
 * image fd for steady-state I/O, the thread pool for allocation, bitmaps, parents): the images must end up
 * byte-identical to a raw copy that took the same writes, and pass {@code qemu-img check}.
 *
 * <pre>
 *   LUN 0 raw reference (O_DIRECT)     LUN 1 dynamic VHDX (1 MiB blocks)     LUN 2 dynamic VHD (2 MiB blocks)
 *   LUN 3 differencing VHDX over a parent holding the first half of the disk
 *   all four start with the same bytes: the first half written, the second half unallocated.
 *   checks: qemu-img check -f vhdx disk.vhdx; qemu-img compare -f raw -F vhdx|vpc ref.raw disk.vhdx|disk.vhd;
 *           phost's own checks (VhdxCheck, DiskOps.check for VHD); the differencing child read back whole
 *           (qemu opens no differencing VHDX)
 * </pre>
 */
@Timeout(120)
class StorvspMappedImageTest {
    private static final long SIZE = 32L << 20;
    private static final int UNIT = 128 << 10;
    private static final int QUEUES = 2;
    private static final int DEPTH = 8;

    @TempDir
    Path dir;

    private final List<AutoCloseable> closing = new ArrayList<>();

    @AfterEach
    void tearDown() throws Exception {
        for (int i = closing.size() - 1; i >= 0; i--) {
            closing.get(i).close();
        }
    }

    /** A host with {@code disks} attached as LUNs 0.., and a guest connected to it. */
    private StorvscClient guest(VirtualDisk[] disks, boolean[] readOnly) throws Exception {
        PartitionHost host = new PartitionHost(Files.createDirectories(dir.resolve("host")), s -> List.of("false"),
            PartitionHost.Options.defaults());
        closing.add(host);
        StorageVsp vsp = new StorageVsp("mapped", QUEUES - 1);
        for (int lun = 0; lun < disks.length; lun++) {
            vsp.attach(lun, "lun" + lun, disks[lun], QosFlow.UNLIMITED, readOnly[lun], IoEngines.Kind.AUTO);
        }
        Partition p = host.create(PartitionSpec.external("mapped", 1, 32L << 20));
        p.offer(vsp);
        p.start();
        GuestRam ram = GuestRam.create("mapped-guest", 32L << 20);
        closing.add(ram);
        VmbusClient bus = VmbusClient.attach(host.socketPath(), "mapped", HexFormat.of().parseHex(p.credentialHex()), ram);
        closing.add(bus);
        StorvscClient c = StorvscClient.connect(bus, vsp.instance(), QUEUES, DEPTH, 256 << 10);
        closing.add(c);
        return c;
    }

    @Test
    void shouldKeepVhdxVhdAndDifferencingImagesIdenticalToARawCopyUnderRandomMappedAndAllocatingWrites() throws Exception {
        assumeTrue(IoEngines.ioUringAvailable(), "io_uring unavailable on this kernel");
        Path rawPath = dir.resolve("ref.raw");
        Path vhdxPath = dir.resolve("disk.vhdx");
        Path vhdPath = dir.resolve("disk.vhd");
        Path parentPath = dir.resolve("parent.vhdx");
        Path childPath = dir.resolve("child.vhdx");
        byte[] model = new byte[(int) SIZE];
        new SplittableRandom(1).nextBytes(model);
        java.util.Arrays.fill(model, (int) (SIZE / 2), (int) SIZE, (byte) 0);
        MemorySegment half = MemorySegment.ofArray(model).asSlice(0, SIZE / 2);
        RawDisk.createSparse(rawPath, SIZE);
        try (RawDisk r = RawDisk.openFile(rawPath, false, false);
             VhdxDisk v = VhdxDisk.create(vhdxPath, VhdxCreateOptions.dynamic(SIZE).withBlockSize(1 << 20));
             VhdDisk h = VhdDisk.create(vhdPath, CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, SIZE));
             VhdxDisk parent = VhdxDisk.create(parentPath, VhdxCreateOptions.dynamic(SIZE).withBlockSize(1 << 20));
             Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(SIZE / 2, 4096);
            buf.copyFrom(half);
            r.write(0, buf);
            v.write(0, buf);
            h.write(0, buf);
            parent.write(0, buf);
        }
        VhdxDisk.create(childPath, VhdxCreateOptions.differencing(parentPath)).close();
        // Reopened: no write session has started, so the first guest write must take the slow path.
        RawDisk raw = RawDisk.openFile(rawPath, false, true);
        VhdxDisk vhdxDisk = VhdxDisk.open(vhdxPath, false);
        java.util.UUID dataWriteGuid = vhdxDisk.dataWriteGuid();
        CountingMappedDisk vhdx = new CountingMappedDisk(vhdxDisk);
        CountingMappedDisk vhd = new CountingMappedDisk(VhdDisk.open(vhdPath, false));
        CountingMappedDisk child = new CountingMappedDisk(VhdxDisk.open(childPath, false));
        VirtualDisk[] disks = {raw, vhdx, vhd, child};
        StorvscClient c = guest(disks, new boolean[4]);

        // Writes: slot (q, s) owns the 128 KiB units u with u % 16 == q * 8 + s, shifted by 64 KiB so some
        // units straddle a block boundary; each write goes to all four LUNs, one after the other.
        SplittableRandom rnd = new SplittableRandom(42);
        int opsPerSlot = 24;
        int[][] opsLeft = new int[QUEUES][DEPTH];
        int[][] lunOf = new int[QUEUES][DEPTH];
        long[][] lba = new long[QUEUES][DEPTH];
        int[][] blocks = new int[QUEUES][DEPTH];
        int units = (int) ((SIZE - UNIT) / UNIT);
        for (int q = 0; q < QUEUES; q++) {
            for (int s = 0; s < DEPTH; s++) {
                opsLeft[q][s] = opsPerSlot;
                lunOf[q][s] = 4; // "between ops": pick the next one
            }
        }
        int[] failures = {0};
        boolean progress = true;
        long deadline = System.nanoTime() + 60_000_000_000L;
        while (progress && System.nanoTime() < deadline) {
            progress = false;
            for (int q = 0; q < QUEUES; q++) {
                StorvscQueue queue = c.queue(q);
                for (int s = 0; s < DEPTH; s++) {
                    if (queue.isBusy(s)) {
                        progress = true;
                        continue;
                    }
                    if (lunOf[q][s] == 4) {
                        if (opsLeft[q][s] == 0) {
                            continue;
                        }
                        opsLeft[q][s]--;
                        int owner = q * DEPTH + s;
                        int u = rnd.nextInt(units / (QUEUES * DEPTH)) * QUEUES * DEPTH + owner;
                        long unitStart = (long) u * UNIT + UNIT / 2;
                        int sectors = switch (rnd.nextInt(4)) {
                            case 0 -> 8;
                            case 1 -> 1 + rnd.nextInt(16);
                            case 2 -> 16 * (1 + rnd.nextInt(8));
                            default -> 128;
                        };
                        long first = unitStart / 512 + rnd.nextInt(UNIT / 512 - sectors + 1);
                        lba[q][s] = first;
                        blocks[q][s] = sectors;
                        MemorySegment b = queue.buffer(s);
                        for (int i = 0; i < sectors * 512; i++) {
                            b.set(java.lang.foreign.ValueLayout.JAVA_BYTE, i, (byte) rnd.nextInt());
                        }
                        MemorySegment.copy(b, 0, MemorySegment.ofArray(model), first * 512, (long) sectors * 512);
                        lunOf[q][s] = 0;
                    }
                    assertTrue(queue.tryWrite(s, lunOf[q][s], lba[q][s], blocks[q][s], 512));
                    lunOf[q][s]++;
                    progress = true;
                }
                queue.poll((slot, scsi, srb, transferred, key, ascq) -> {
                    if (scsi != 0 || srb != StorvscDescriptor.SRB_STATUS_SUCCESS) {
                        failures[0]++;
                    }
                });
            }
        }
        for (int q = 0; q < QUEUES; q++) {
            drain(c.queue(q));
        }
        assertEquals(0, failures[0], "every write succeeded");
        for (int lun = 0; lun < 4; lun++) {
            synchronizeCache(c.queue(0), lun);
        }
        assertTrue(vhdx.mappedWrites() > 50, "VHDX writes went mapped: " + vhdx.mappedWrites());
        assertTrue(vhd.mappedWrites() > 50, "VHD writes went mapped: " + vhd.mappedWrites());
        // A rewrite of a range the child already holds (slot 0's units never straddle a block) must map.
        long childWrites = child.mappedWrites();
        MemorySegment again = c.queue(0).buffer(0);
        MemorySegment.copy(MemorySegment.ofArray(model), lba[0][0] * 512, again, 0, blocks[0][0] * 512L);
        assertTrue(c.queue(0).tryWrite(0, 3, lba[0][0], blocks[0][0], 512));
        drain(c.queue(0));
        assertTrue(child.mappedWrites() > childWrites, "differencing rewrite of present sectors went mapped");

        // Read everything back through every LUN, half of the chunks straddling block boundaries.
        for (int lun = 0; lun < 4; lun++) {
            readBack(c.queue(lun % QUEUES), lun, model);
        }
        // The differencing child maps only ranges it holds entirely: read back each slot's last write.
        for (int q = 0; q < QUEUES; q++) {
            for (int s = 0; s < DEPTH; s++) {
                readRange(c.queue(q), 3, lba[q][s], blocks[q][s], model);
            }
        }
        assertTrue(vhdx.mappedReads() > 0 && vhd.mappedReads() > 0 && child.mappedReads() > 0,
            "reads went mapped: " + vhdx.mappedReads() + " " + vhd.mappedReads() + " " + child.mappedReads());
        tearDown();
        closing.clear();
        for (VirtualDisk d : disks) {
            d.close();
        }

        assertEquals(-1, MemorySegment.ofArray(Files.readAllBytes(rawPath)).mismatch(MemorySegment.ofArray(model)),
            "the raw reference holds the model");
        try (VhdxDisk d = VhdxDisk.open(vhdxPath, true)) {
            assertTrue(!dataWriteGuid.equals(d.dataWriteGuid()), "the first guest write started a session (new DataWriteGuid)");
        }
        try (VhdxDisk d = VhdxDisk.open(childPath, true); Arena a = Arena.ofConfined()) {
            MemorySegment all = a.allocate(SIZE, 4096);
            d.read(0, all);
            assertEquals(-1, all.mismatch(MemorySegment.ofArray(model)), "differencing image through the slow path");
        }
        assertTrue(VhdxCheck.check(vhdxPath).clean(), VhdxCheck.check(vhdxPath).toString());
        assertTrue(VhdxCheck.check(childPath).clean(), VhdxCheck.check(childPath).toString());
        assumeTrue(Proc.exists("qemu-img"), "qemu-img missing (Debian qemu-utils): images checked only by phost");
        Proc.ok(60, "qemu-img", "check", "-f", "vhdx", vhdxPath.toString());
        // qemu-img has no check for vpc; phost's VHD check (footer pair, header, BAT) stands in, and qemu
        // must still open it and see the same bytes.
        io.phost.vhdx.ops.CheckReport vhdCheck = io.phost.vhdx.ops.DiskOps.check(vhdPath, false);
        assertEquals(0, vhdCheck.exitCode(), vhdCheck.toString());
        Proc.ok(60, "qemu-img", "compare", "-f", "raw", "-F", "vhdx", rawPath.toString(), vhdxPath.toString());
        Proc.ok(60, "qemu-img", "compare", "-f", "raw", "-F", "vpc", rawPath.toString(), vhdPath.toString());
    }

    @Test
    void shouldServeAReadOnlyVhdxWithADirtyLogThroughTheSlowPath() throws Exception {
        assumeTrue(IoEngines.ioUringAvailable(), "io_uring unavailable on this kernel");
        Path live = dir.resolve("live.vhdx");
        Path crashed = dir.resolve("crashed.vhdx");
        byte[] data = new byte[2 << 20];
        new SplittableRandom(9).nextBytes(data);
        try (VhdxDisk d = VhdxDisk.create(live, VhdxCreateOptions.dynamic(16L << 20).withBlockSize(1 << 20))) {
            d.write(3L << 20, MemorySegment.ofArray(data));
            d.flush();
            Files.copy(live, crashed); // the log entry is durable, the session still open: a dirty log
        }
        try (RandomAccessFile f = new RandomAccessFile(crashed.toFile(), "rw")) {
            f.seek(3L << 20); // the BAT of images we create
            f.write(new byte[4096]); // as if the crash hit before the BAT sector was applied in place
        }
        VhdxDisk ro = VhdxDisk.open(crashed, true);
        assertEquals(VhdxDisk.LogState.REPLAYED_IN_MEMORY, ro.logState());
        CountingMappedDisk disk = new CountingMappedDisk(ro);
        closing.add(disk);
        StorvscClient c = guest(new VirtualDisk[] {disk}, new boolean[] {true});
        StorvscQueue q = c.queue(0);
        byte[] model = new byte[16 << 20];
        System.arraycopy(data, 0, model, 3 << 20, data.length);
        readBack(q, 0, model);
        assertEquals(0, disk.mappedReads(), "an in-memory log replay keeps every read on the slow path");
    }

    /** Reads the whole LUN in 256 KiB chunks (every other one straddling a 1 MiB boundary) and compares. */
    private static void readBack(StorvscQueue q, int lun, byte[] model) {
        int chunk = 256 << 10;
        MemorySegment expect = MemorySegment.ofArray(model);
        long[] at = new long[DEPTH];
        String[] bad = {null};
        long next = 0;
        int done = 0;
        int total = (int) (model.length / chunk) * 2 - 1;
        int issued = 0;
        long deadline = System.nanoTime() + 30_000_000_000L;
        while (done < total && System.nanoTime() < deadline) {
            for (int s = 0; s < DEPTH && issued < total; s++) {
                if (!q.isBusy(s)) {
                    at[s] = next;
                    assertTrue(q.tryRead(s, lun, next / 512, chunk / 512, 512));
                    issued++;
                    next += chunk / 2; // overlapping halves: aligned chunks and chunks straddling boundaries
                }
            }
            done += q.await((slot, scsi, srb, transferred, key, ascq) -> {
                if (scsi != 0 && bad[0] == null) {
                    bad[0] = "lun " + lun + " read at " + at[slot] + " failed: sense " + key;
                }
                long m = q.buffer(slot).asSlice(0, chunk).mismatch(expect.asSlice(at[slot], chunk));
                if (m >= 0 && bad[0] == null) {
                    bad[0] = "lun " + lun + " differs at byte " + (at[slot] + m);
                }
            }, 100_000_000L);
        }
        assertEquals(null, bad[0], bad[0]);
        assertEquals(total, done);
    }

    private static void readRange(StorvscQueue q, int lun, long lba, int blocks, byte[] model) {
        assertTrue(q.tryRead(0, lun, lba, blocks, 512));
        long[] m = {-2};
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (m[0] == -2 && System.nanoTime() < deadline) {
            q.await((slot, scsi, srb, transferred, key, ascq) -> {
                assertEquals(0, scsi);
                m[0] = q.buffer(0).asSlice(0, blocks * 512L).mismatch(MemorySegment.ofArray(model).asSlice(lba * 512, blocks * 512L));
            }, 100_000_000L);
        }
        assertEquals(-1, m[0], "lun " + lun + " lba " + lba);
    }

    private static void drain(StorvscQueue q) {
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (q.inFlight() > 0 && System.nanoTime() < deadline) {
            q.await((slot, scsi, srb, transferred, key, ascq) -> assertEquals(0, scsi), 100_000_000L);
        }
        assertEquals(0, q.inFlight());
    }

    private static void synchronizeCache(StorvscQueue q, int lun) {
        MemorySegment cdb = Arena.ofAuto().allocate(10);
        cdb.set(java.lang.foreign.ValueLayout.JAVA_BYTE, 0, (byte) 0x35);
        int[] r = StorvscClient.runSync(q, lun, cdb, 10, StorvscDescriptor.DATA_UNKNOWN, 0);
        assertEquals(0, r[0], "SYNCHRONIZE CACHE on LUN " + lun);
    }
}
