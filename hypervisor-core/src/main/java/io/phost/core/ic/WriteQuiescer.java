package io.phost.core.ic;

import java.time.Duration;

/**
 * What a guest program offers the backup (VSS) integration service: freeze = finish and flush its writes and
 * hold new ones; thaw = let them go. {@link GuestIntegration} calls both from its service thread.
 */
public interface WriteQuiescer {
    /** Holds new writes and waits (at most {@code within}) until none is in flight, then flushes. False: nothing held. */
    boolean freeze(Duration within);

    /** Releases held writes; false when not frozen. */
    boolean thaw();
}
