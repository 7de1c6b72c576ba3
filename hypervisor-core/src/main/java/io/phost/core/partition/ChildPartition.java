package io.phost.core.partition;

import java.io.IOException;
import java.time.Duration;

/**
 * The lifecycle every child partition offers, whatever runs it (a process over VMBus, a QEMU VM): the verbs
 * of Start-VM/Stop-VM, {@code virsh} and the Firecracker API. States are {@link PartitionState}'s for both
 * kinds, so the API, the CLI and the metrics treat them alike.
 * <pre>
 *   verb      from                          to
 *   start     CREATED, STOPPED, CRASHED,     STARTING ─▶ RUNNING
 *             FAULTED
 *   stop      any live state                 STOPPING ─▶ STOPPED (graceful request, then kill after the grace)
 *   pause     RUNNING                        PAUSED
 *   resume    PAUSED                         RUNNING
 *   turnOff   any live state                 STOPPED at once (Stop-VM -TurnOff; no restart policy applies)
 * </pre>
 */
public interface ChildPartition {
    String name();

    PartitionKind kind();

    PartitionState state();

    PartitionStatus status();

    /** The cgroup of the running process (metering reads its CPU and memory accounting), or null. */
    default Cgroup cgroup() {
        return null;
    }

    /** Whether the host starts it when it starts ({@code autostart}). */
    void start() throws IOException;

    /** Graceful stop within {@code grace}, then forced; returns when the partition is STOPPED. */
    void stop(Duration grace);

    void pause();

    void resume();

    /** Ends the partition at once (SIGKILL of its process); state STOPPED with {@code why}. */
    void turnOff(String why);

    /** Stop (graceful within {@code grace}) then start again. */
    default void restart(Duration grace) throws IOException {
        stop(grace);
        start();
    }

    /** Waits until the partition reaches {@code wanted}; false on timeout. */
    default boolean awaitState(PartitionState wanted, Duration timeout) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (System.nanoTime() < deadline) {
            if (state() == wanted) {
                return true;
            }
            try {
                Thread.sleep(5);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return state() == wanted;
            }
        }
        return state() == wanted;
    }
}
