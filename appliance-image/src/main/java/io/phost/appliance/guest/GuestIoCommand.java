package io.phost.appliance.guest;

import io.phost.core.ic.GuestSession;
import io.phost.storage.vmbus.GuestIo;
import io.phost.storage.vmbus.StorvscQueue;
import java.time.Duration;
import java.util.concurrent.Callable;
import java.util.concurrent.CompletableFuture;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code phost guest io ...}: a fio-like storage workload inside a child partition, over the VMBus SCSI
 * path (storvsc-style client). Prints IOPS, MiB/s and latency percentiles (text or JSON) and publishes the
 * JSON result as the KVP value {@code storage-io}; exits 1 on I/O or verify errors.
 */
@Command(name = "io", mixinStandardHelpOptions = true, description = "Storage workload over the VMBus SCSI disk (fio-like).")
public final class GuestIoCommand implements Callable<Integer> {
    @Option(names = "--rw", defaultValue = "randread", description = "read|write|randread|randwrite|randrw")
    String rw;
    @Option(names = "--bs", defaultValue = "4k", description = "block size (e.g. 4k, 1m)")
    String bs;
    @Option(names = "--iodepth", defaultValue = "1")
    int iodepth;
    @Option(names = {"--jobs", "--numjobs"}, defaultValue = "1", description = "threads, one VMBus queue each")
    int jobs;
    @Option(names = "--runtime", defaultValue = "5", description = "seconds (ignored with --size); 0: until the partition stops")
    double runtime;
    @Option(names = "--size", defaultValue = "0", description = "bytes per job instead of a runtime (e.g. 64m)")
    String size;
    @Option(names = "--lun", defaultValue = "0")
    int lun;
    @Option(names = "--offset", defaultValue = "0", description = "start of the region")
    String offset;
    @Option(names = "--span", defaultValue = "0", description = "length of the region (0: to the end of the disk)")
    String span;
    @Option(names = "--rwmixread", defaultValue = "50")
    int rwmixread;
    @Option(names = "--seed", defaultValue = "1", description = "pattern seed for --verify")
    long seed;
    @Option(names = "--poll-us", defaultValue = "" + StorvscQueue.DEFAULT_POLL_MICROS,
        description = "poll for completions this long while I/O is in flight before sleeping (0: interrupt mode)")
    int pollUs;
    @Option(names = "--wait-grow", defaultValue = "0", description = "seconds to wait for the disk to grow first (the capacity"
        + " changed unit attention); then run past the old end, --offset counting from there (0: do not wait)")
    int waitGrow;
    @Option(names = "--wait-lun", defaultValue = "0", description = "seconds to wait for --lun to be hot-added first (the"
        + " REPORTED LUNS DATA HAS CHANGED unit attention, then REPORT LUNS, as an initiator rescans); 0: do not wait")
    int waitLun;
    @Option(names = "--verify", description = "write a pattern and read every written block back")
    boolean verify;
    @Option(names = "--json", description = "print JSON")
    boolean json;

    /** Throws IllegalArgumentException naming the option when a value is out of range or not a size. */
    public void validate() {
        size("--bs", bs);
        size("--size", size);
        size("--offset", offset);
        size("--span", span);
        if (runtime < 0) {
            throw new IllegalArgumentException("--runtime must be >= 0 seconds: " + runtime);
        }
        if (waitGrow < 0) {
            throw new IllegalArgumentException("--wait-grow must be >= 0 seconds: " + waitGrow);
        }
        if (waitLun < 0) {
            throw new IllegalArgumentException("--wait-lun must be >= 0 seconds: " + waitLun);
        }
        options();
    }

    private static long size(String option, String value) {
        try {
            return GuestIo.parseSize(value);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(option + ": " + e.getMessage(), e);
        }
    }

    GuestIo.Options options() {
        return new GuestIo.Options(rw, (int) GuestIo.parseSize(bs), iodepth, jobs, runtime,
            GuestIo.parseSize(size), lun, verify, seed, rwmixread, GuestIo.parseSize(offset), GuestIo.parseSize(span), pollUs);
    }

    @Override
    public Integer call() throws Exception {
        GuestIo.Options o = options();
        try (GuestSession s = GuestSession.fromEnvironment()) {
            // The workload runs beside the session so a shutdown request from the host ends it at once.
            CompletableFuture<GuestIo.Result> run = new CompletableFuture<>();
            Thread.ofPlatform().daemon().name("guest-io").start(() -> {
                try {
                    run.complete(waitGrow > 0 ? GuestIo.runAfterGrow(s.bus(), o, Duration.ofSeconds(waitGrow))
                        : waitLun > 0 ? GuestIo.runAfterLunAdded(s.bus(), o, Duration.ofSeconds(waitLun))
                        : GuestIo.run(s.bus(), o, s.integration()));
                } catch (Throwable t) {
                    run.completeExceptionally(t);
                }
            });
            while (!run.isDone()) {
                if (s.awaitShutdown(Duration.ofMillis(100))) {
                    System.err.println("guest io: stopping: " + s.shutdownReason());
                    return 0;
                }
            }
            GuestIo.Result r = run.join();
            s.integration().publish("storage-io", r.json());
            System.out.println(json ? r.json() : r.text());
            return r.errors() == 0 && r.verifyErrors() == 0 ? 0 : 1;
        }
    }
}
