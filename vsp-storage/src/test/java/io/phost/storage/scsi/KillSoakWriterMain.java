package io.phost.storage.scsi;

import io.phost.qos.QosFlow;
import io.phost.storage.engine.IoEngines;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.VirtualDisks;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.SplittableRandom;

/**
 * The process {@link StorageKillSoakTest} SIGKILLs: opens an image read-write through the storage path
 * ({@link ScsiLun} on an {@link io.phost.storage.engine.IoEngine}, driven by a {@link ScsiQueue}), prints
 * {@code READY}, then writes numbered, checksummed {@link KillSoakRecord}s with WRITE(16) in batches of 1-8 in
 * flight (never two to one slot at once: their order would be undefined), and after a random third of the
 * batches a SYNCHRONIZE CACHE; once that completes it prints
 * {@code FLUSHED n}: records 0..n-1 of this round are durable. Runs until killed, or until
 * {@code -Dphost.killsoak.exitAfter=N} records (to train the AOT cache), then closes the disk cleanly.
 * Args: image round engine(AUTO|IO_URING|THREADS|INLINE) [more images, written one after the other: training]
 */
public final class KillSoakWriterMain {
    private static final int DEPTH = 8;

    public static void main(String[] args) throws Exception {
        long round = Long.parseLong(args[1]);
        IoEngines.Kind kind = IoEngines.Kind.valueOf(args[2]);
        long exitAfter = Long.getLong("phost.killsoak.exitAfter", Long.MAX_VALUE);
        run(Path.of(args[0]), round, kind, exitAfter);
        for (int i = 3; i < args.length; i++) {
            run(Path.of(args[i]), round, kind, exitAfter);
        }
    }

    private static void run(Path image, long round, IoEngines.Kind kind, long exitAfter) throws Exception {
        SplittableRandom random = new SplittableRandom(round * 0x9E3779B97F4A7C15L);
        int[] failed = {0};
        int[] done = {0};
        try (VirtualDisk disk = VirtualDisks.open(image, false); Arena arena = Arena.ofConfined()) {
            ScsiTarget target = new ScsiTarget();
            ScsiLun lun = new ScsiLun("soak", disk, QosFlow.UNLIMITED, false, kind);
            target.add(0, lun);
            long slots = KillSoakRecord.slots(disk.size());
            int blocksPerRecord = KillSoakRecord.SIZE / lun.blockSize();
            MemorySegment[] buffers = new MemorySegment[DEPTH];
            for (int i = 0; i < DEPTH; i++) {
                buffers[i] = arena.allocate(KillSoakRecord.SIZE, 4096);
            }
            byte[] sync = {0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0};
            ScsiQueue[] self = new ScsiQueue[1];
            try (ScsiQueue queue = new ScsiQueue(target, DEPTH + 1, 4, r -> {
                if (r.status() != 0) {
                    failed[0]++;
                }
                done[0]++;
                self[0].release(r);
            })) {
                self[0] = queue;
                System.out.println("READY");
                System.out.flush();
                for (long n = 0; n < exitAfter; ) {
                    int batch = 1 + random.nextInt(DEPTH);
                    long[] inFlight = new long[batch];
                    int submitted = 0;
                    int before = done[0];
                    for (; submitted < batch; submitted++, n++) {
                        long slot = KillSoakRecord.slotOf(round, n, slots);
                        if (contains(inFlight, submitted, slot)) {
                            break; // two writes in flight to one place have no order: the next batch takes it
                        }
                        inFlight[submitted] = slot;
                        KillSoakRecord.fill(buffers[submitted], round, n, slot);
                        ScsiRequest r = queue.tryAcquire();
                        r.reset(0, write16(slot * blocksPerRecord, blocksPerRecord), ScsiRequest.DIR_OUT, n);
                        r.data().add(buffers[submitted]);
                        queue.submit(r);
                    }
                    awaitDone(queue, done, before + submitted, failed);
                    if (random.nextInt(3) == 0) { // flush at random points
                        ScsiRequest r = queue.tryAcquire();
                        r.reset(0, sync, ScsiRequest.DIR_NONE, -1);
                        int flushDone = done[0] + 1;
                        queue.submit(r);
                        awaitDone(queue, done, flushDone, failed);
                        System.out.println("FLUSHED " + n);
                        System.out.flush();
                    }
                }
            }
        }
    }

    private static boolean contains(long[] slots, int count, long slot) {
        for (int i = 0; i < count; i++) {
            if (slots[i] == slot) {
                return true;
            }
        }
        return false;
    }

    /** Waits until {@code target} commands have completed; exits 3 on any error status. */
    private static void awaitDone(ScsiQueue queue, int[] done, int target, int[] failed) {
        while (done[0] < target) {
            queue.awaitWork(1_000_000_000L);
        }
        if (failed[0] > 0) {
            System.out.println("FAILED " + failed[0] + " commands");
            System.exit(3);
        }
    }

    static byte[] write16(long lba, int blocks) {
        byte[] c = new byte[16];
        c[0] = (byte) 0x8A;
        for (int i = 0; i < 8; i++) {
            c[2 + i] = (byte) (lba >>> (56 - 8 * i));
        }
        for (int i = 0; i < 4; i++) {
            c[10 + i] = (byte) (blocks >>> (24 - 8 * i));
        }
        return c;
    }
}
