package io.phost.storage.vmbus;

import io.phost.core.partition.Partition;
import io.phost.core.partition.PartitionHost;
import io.phost.core.partition.PartitionSpec;
import io.phost.core.vmbus.GuestRam;
import io.phost.core.vmbus.VmbusClient;
import io.phost.qos.QosFlow;
import io.phost.storage.StorageVsp;
import io.phost.vhdx.RawDisk;
import io.phost.vhdx.vhd.VhdDisk;
import io.phost.vhdx.vhdx.VhdxDisk;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HexFormat;
import java.util.List;

/**
 * The process {@link StorvspCrashTest} kills: a host with a storage VSP (LUN 0 raw, LUN 1 VHDX, LUN 2 dynamic
 * VHD) and a guest attached in the same process. Round k writes 16 x 64 KiB at unit k*16 on every LUN with seed
 * k, then SYNCHRONIZE CACHE on each, then prints {@code SYNCED k}. Runs until killed, or (to train an AOT cache) until
 * {@code -Dphost.crash.exitAfter=N} rounds are synced.
 * Args: dataDir raw vhdx vhd
 */
public final class CrashHostMain {
    public static final int UNIT = 64 << 10;
    public static final int PER_ROUND = 16;
    public static final int LUNS = 3;

    public static void main(String[] args) throws Exception {
        Path dir = Path.of(args[0]);
        try (RawDisk raw = RawDisk.openFile(Path.of(args[1]), false, true);
             VhdxDisk vhdx = VhdxDisk.open(Path.of(args[2]), false);
             VhdDisk vhd = VhdDisk.open(Path.of(args[3]), false);
             PartitionHost host = new PartitionHost(Files.createDirectories(dir.resolve("host")), s -> List.of("false"),
                 PartitionHost.Options.defaults())) {
            StorageVsp vsp = new StorageVsp("crash", 0);
            vsp.attach(0, "raw", raw, QosFlow.UNLIMITED, false);
            vsp.attach(1, "vhdx", vhdx, QosFlow.UNLIMITED, false);
            vsp.attach(2, "vhd", vhd, QosFlow.UNLIMITED, false);
            Partition p = host.create(PartitionSpec.external("crash", 1, 16L << 20));
            p.offer(vsp);
            p.start();
            try (GuestRam ram = GuestRam.create("crash-guest", 16L << 20);
                 VmbusClient bus = VmbusClient.attach(host.socketPath(), "crash", HexFormat.of().parseHex(p.credentialHex()), ram);
                 StorvscClient c = StorvscClient.connect(bus, vsp.instance(), 1, PER_ROUND, UNIT)) {
                StorvscQueue q = c.queue(0);
                MemorySegment sync = Arena.ofAuto().allocate(10);
                sync.set(ValueLayout.JAVA_BYTE, 0, (byte) 0x35);
                long maxRounds = (raw.size() / UNIT) / PER_ROUND;
                long exitAfter = Long.getLong("phost.crash.exitAfter", Long.MAX_VALUE);
                for (long k = 0; k < exitAfter; k = (k + 1) % maxRounds) {
                    for (int lun = 0; lun < LUNS; lun++) {
                        for (int s = 0; s < PER_ROUND; s++) {
                            long unit = k * PER_ROUND + s;
                            MemorySegment b = q.buffer(s);
                            for (int i = 0; i < UNIT; i += 8) {
                                b.set(ValueLayout.JAVA_LONG, i, GuestIo.pattern(unit * UNIT + i, seed(k)));
                            }
                            while (!q.tryWrite(s, lun, unit * UNIT / 512, UNIT / 512, 512)) {
                                Thread.onSpinWait();
                            }
                        }
                        int[] done = {0};
                        while (done[0] < PER_ROUND) {
                            q.await((slot, scsi, srb, transferred, key, ascq) -> {
                                if (scsi != 0) {
                                    throw new IllegalStateException("write failed: sense " + key);
                                }
                                done[0]++;
                            }, 1_000_000_000L);
                        }
                        int[] r = StorvscClient.runSync(q, lun, sync, 10, StorvscDescriptor.DATA_UNKNOWN, 0);
                        if (r[0] != 0) {
                            throw new IllegalStateException("SYNCHRONIZE CACHE failed");
                        }
                    }
                    System.out.println("SYNCED " + k);
                    System.out.flush();
                }
            }
        }
    }

    /** Seed of round k (bumped on wrap-around so a later round's data differs). */
    public static long seed(long k) {
        return 1000 + k;
    }
}
