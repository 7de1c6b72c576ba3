package io.phost.core.vmbus;

import io.phost.core.sys.EventFd;
import org.agrona.concurrent.IdleStrategy;

/**
 * How channel agents wait for the guest: a per-host product choice ({@code [host] polling}).
 * <pre>
 *   LATENCY     after each packet spin ~5 µs (256 onSpinWait), then up to 64 yields (a yield lets a peer that
 *               shares the CPU run at once; a slow yield means the CPU is contended: stop), then arm the
 *               interrupt and sleep on the doorbell. A back-to-back
 *               request finds the agent awake: no eventfd wake-up on the hot path. Costs CPU while a
 *               channel is lightly busy (a packet every few µs keeps one core spinning).
 *   EFFICIENCY  after each packet spin briefly (64 onSpinWait, ~1 µs, for packets already on their way),
 *               then arm and sleep. Every request that arrives after that pays one eventfd wake-up
 *               (≈ 15-20 µs on this 2-vCPU VM); nearly no CPU is spent waiting.
 *   ADAPTIVE    (the default) LATENCY while spinning pays, EFFICIENCY while it does not: every 64 idle
 *               episodes (or 20 ms) each agent reads its own run-queue wait ({@link SpinGovernor}) and stops spinning
 *               when it waited for a CPU more than 5% of the time or fewer than 1/4 of its spins found
 *               work; it tries spinning again after a doubling cool-down (at most 1,024 windows) once its
 *               run-queue wait is < 1%, and judges that trial after 8 episodes. A new channel or queue starts
 *               not spinning (or where its thread's last governor stopped), its first trial after its side's
 *               current back-off.
 *               On a loaded or small host it behaves like EFFICIENCY, on a dedicated one like LATENCY.
 * </pre>
 * Idle channels sleep in poll(2) in both modes (woken once per second by the sleep timeout).
 */
public enum PollingMode {
    LATENCY,
    EFFICIENCY,
    ADAPTIVE;

    /** The idle strategy for one channel agent reading {@code rx} and woken by {@code doorbell}. */
    public IdleStrategy idleStrategy(VmbusRing rx, EventFd doorbell) {
        return switch (this) {
            case LATENCY -> DoorbellIdleStrategy.defaults(rx, doorbell);
            case EFFICIENCY -> DoorbellIdleStrategy.efficiency(rx, doorbell);
            case ADAPTIVE -> DoorbellIdleStrategy.adaptive(rx, doorbell);
        };
    }
}
