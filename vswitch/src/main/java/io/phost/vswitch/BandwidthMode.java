package io.phost.vswitch;

/** Hyper-V's MinimumBandwidthMode. */
public enum BandwidthMode {
    /** Minimum bandwidth is ignored: every port weighs 1. */
    NONE,
    /** Minimum bandwidth as relative weights (1..100): deficit round robin on the switch core. */
    WEIGHT,
    /** Minimum bandwidth in bits per second: not implemented; creating such a switch is refused. */
    ABSOLUTE
}
