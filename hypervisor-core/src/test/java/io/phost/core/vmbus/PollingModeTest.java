package io.phost.core.vmbus;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;

import io.phost.core.sys.EventFd;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.UUID;
import org.agrona.concurrent.IdleStrategy;
import org.junit.jupiter.api.Test;

class PollingModeTest {
    private static VmbusRing ring(Arena a) {
        MemorySegment control = a.allocate(RingDescriptor.CONTROL_LENGTH, 4096);
        VmbusRing.initialise(control);
        return new VmbusRing(control, a.allocate(4096, 4096), 4096, Doorbell.NONE);
    }

    /** Idles until the strategy sleeps once; returns how many idle() calls that took. */
    private static int callsUntilSleep(DoorbellIdleStrategy s, EventFd doorbell) {
        doorbell.signal(); // the sleep returns at once instead of waiting for its timeout
        int calls = 0;
        while (s.sleeps() == 0) {
            s.idle(0);
            calls++;
        }
        return calls;
    }

    @Test
    void shouldSleepAfterABriefSpinInEfficiencyModeAndAfterSpinningAndYieldingInLatencyMode() {
        try (Arena a = Arena.ofConfined(); EventFd doorbell = EventFd.create()) {
            DoorbellIdleStrategy efficiency = (DoorbellIdleStrategy) PollingMode.EFFICIENCY.idleStrategy(ring(a), doorbell);
            assertEquals(65, callsUntilSleep(efficiency, doorbell), "64 spins, then sleep");
            DoorbellIdleStrategy latency = (DoorbellIdleStrategy) PollingMode.LATENCY.idleStrategy(ring(a), doorbell);
            int calls = callsUntilSleep(latency, doorbell);
            int most = DoorbellIdleStrategy.LATENCY_SPINS + DoorbellIdleStrategy.LATENCY_YIELDS + 1;
            assertEquals(true, calls > DoorbellIdleStrategy.LATENCY_SPINS && calls <= most,
                "256 spins and up to 64 yields first: " + calls);
        }
    }

    @Test
    void shouldLetTheHostSettingOverrideADeviceThatAsksForBusyPollingOnlyInEfficiencyMode() {
        try (Arena a = Arena.ofConfined(); EventFd doorbell = EventFd.create()) {
            IdleStrategy[] busy = new IdleStrategy[1];
            VirtualServiceProvider spinner = new VirtualServiceProvider() {
                public UUID interfaceType() {
                    return UUID.randomUUID();
                }

                public UUID instance() {
                    return UUID.randomUUID();
                }

                public String name() {
                    return "spinner";
                }

                public ChannelHandler open(ChannelContext ctx) {
                    throw new UnsupportedOperationException();
                }

                @Override
                public IdleStrategy idleStrategy(VmbusRing rx, EventFd db) {
                    busy[0] = DoorbellIdleStrategy.busySpin(rx, db);
                    return busy[0];
                }
            };
            VmbusRing rx = ring(a);
            IdleStrategy own = spinner.idleStrategy(rx, doorbell, PollingMode.LATENCY);
            assertSame(busy[0], own, "latency: the device's own choice");
            DoorbellIdleStrategy host = (DoorbellIdleStrategy) spinner.idleStrategy(rx, doorbell, PollingMode.EFFICIENCY);
            assertEquals(65, callsUntilSleep(host, doorbell));
            DoorbellIdleStrategy adaptive = (DoorbellIdleStrategy) spinner.idleStrategy(rx, doorbell, PollingMode.ADAPTIVE);
            assertEquals(true, adaptive.governor() != null, "adaptive: the host's governed strategy");
        }
    }
}
