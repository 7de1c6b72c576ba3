package io.phost.storage.vmbus;

/**
 * The child partition of {@link StorvspProcessTest}: the verified write workload it checks, run through the
 * guest I/O library. (Users start the workload with {@code phost guest io}, the library's one CLI; this
 * module cannot depend on the appliance that holds it, and the test needs no options.)
 * <pre>
 *   java -cp ... io.phost.storage.vmbus.GuestIoChild SEED
 * </pre>
 */
final class GuestIoChild {
    private GuestIoChild() {}

    public static void main(String[] args) throws Exception {
        long seed = Long.parseLong(args[0]);
        GuestIo.Result r = GuestIo.runInPartition(new GuestIo.Options("randwrite", 64 << 10, 8, 2, 0, 6L << 20, 0,
            true, seed, 50, 0, 0, StorvscQueue.DEFAULT_POLL_MICROS));
        System.out.println(r.json());
        System.out.flush();
        System.exit(r.errors() == 0 && r.verifyErrors() == 0 ? 0 : 1);
    }
}
