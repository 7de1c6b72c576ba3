package io.phost.qos;

/**
 * A monotonic nanosecond time source on the {@link System#nanoTime()} scale. The scheduler itself takes
 * {@code nowNanos} from its callers; the service uses a clock only for snapshots and housekeeping, so a
 * {@link ManualNanoClock} makes every test deterministic.
 */
@FunctionalInterface
public interface NanoClock {
    long nanoTime();

    NanoClock SYSTEM = System::nanoTime;
}
