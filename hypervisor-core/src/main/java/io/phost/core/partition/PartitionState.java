package io.phost.core.partition;

/**
 * Partition lifecycle.
 * <pre>
 *  CREATED ─start()─▶ STARTING ─attach─▶ RUNNING ◀─resume()─ PAUSED
 *                                           │  └──pause()──────▲
 *                   stop(): shutdown IC, then SIGKILL ─▶ STOPPING ─▶ STOPPED ─start()─▶ STARTING
 *  process exit / lost connection / missed heartbeats ─▶ CRASHED
 *  repeated guest faults (bad rings, floods) ─▶ FAULTED (process killed)
 * </pre>
 */
public enum PartitionState {
    CREATED, STARTING, RUNNING, PAUSED, STOPPING, STOPPED, CRASHED, FAULTED;

    public boolean live() {
        return this == STARTING || this == RUNNING || this == PAUSED || this == STOPPING;
    }
}
