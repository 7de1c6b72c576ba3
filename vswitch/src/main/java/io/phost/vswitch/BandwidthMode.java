package io.phost.vswitch;

/** Hyper-V's MinimumBandwidthMode. */
public enum BandwidthMode {
    /** Minimum bandwidth is ignored: every port weighs 1. */
    NONE,
    /** Minimum bandwidth as relative weights (1..100): deficit round robin on the switch core. */
    WEIGHT,
    /**
     * Minimum bandwidth in bits per second: each reservation becomes a weight ({@link PortConfig#absoluteWeight}),
     * shared by the same weighted scheduler.
     */
    ABSOLUTE
}
