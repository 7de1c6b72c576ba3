package io.phost.storage.vhost;

import io.phost.qos.QosFlow;
import io.phost.vhdx.RawDisk;

import java.nio.file.Path;

/**
 * A vhost-user-blk export in its own process, for {@link VhostUserBlkKillTest} to SIGKILL:
 * {@code java -cp ... KilledExportMain IMAGE SOCKET PERIOD_MS}. With a period, one I/O is admitted per period
 * (so the guest's writes pile up in flight) and each completion prints {@code DONE n}; 0 = unlimited. After
 * {@value #ADMITTED} completions nothing more is admitted, and the first request refused then prints {@code HELD}:
 * from that line on the export has a request in flight until it is killed, whatever the timing.
 * Prints {@code SERVING} once the socket listens.
 */
public final class KilledExportMain {
    static final int ADMITTED = 3;

    private KilledExportMain() {}

    public static void main(String[] args) throws Exception {
        long period = Long.parseLong(args[2]) * 1_000_000L;
        QosFlow flow = period == 0 ? QosFlow.UNLIMITED : new QosFlow() {
            private long next;
            private long admitted;
            private long done;
            private boolean held;

            @Override
            public synchronized long tryAdmit(int bytes, long nowNanos) {
                if (admitted < ADMITTED && nowNanos - next >= 0) {
                    next = nowNanos + period;
                    admitted++;
                    return 0;
                }
                if (admitted == ADMITTED && done == ADMITTED && !held) {
                    held = true; // popped, so in the inflight region, and never admitted
                    System.out.println("HELD");
                    System.out.flush();
                }
                return Math.max(1, next - nowNanos);
            }

            @Override
            public synchronized void completed(int bytes, long latencyNanos, long nowNanos) {
                System.out.println("DONE " + (++done));
                System.out.flush();
            }
        };
        RawDisk disk = RawDisk.openFile(Path.of(args[0]), false, false);
        VhostUserBlkExport e = VhostUserBlkExport.start("killed", disk, Path.of(args[1]),
            VhostUserBlkExport.Options.defaults().withQueues(1).withQos(flow));
        System.out.println("SERVING");
        System.out.flush();
        while (true) {
            Thread.sleep(1_000);
            if (e.lastError() != null) {
                System.out.println("ERROR " + e.lastError());
                System.out.flush();
            }
        }
    }
}
