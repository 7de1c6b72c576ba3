package io.phost.core.vmbus;

import io.phost.core.sys.DeviceWait;
import io.phost.core.sys.EventFd;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * An agent with a {@link DeviceWait} attached sleeps through the device while it is busy, and submits the duty
 * cycle's batch with that wait when it does not spin first (one io_uring_enter at QD1), before it when it spins.
 */
class DoorbellIdleStrategyDeviceTest {
    /** Records what the idle strategy asked of the device. */
    static final class FakeDevice implements DeviceWait {
        boolean busy;
        boolean slow;
        boolean unsubmitted;
        int submits;
        int awaits;
        int awaitsCarryingABatch;

        @Override
        public boolean busy() {
            return busy;
        }

        @Override
        public boolean outlastsSpin() {
            return slow;
        }

        @Override
        public boolean unsubmitted() {
            return unsubmitted;
        }

        @Override
        public void submit() {
            submits++;
            unsubmitted = false;
        }

        @Override
        public void await(EventFd doorbell, long timeoutNanos) {
            awaits++;
            if (unsubmitted) {
                awaitsCarryingABatch++;
                unsubmitted = false;
            }
        }
    }

    @Test
    void shouldSubmitAndWaitInOneCallWhenTheAgentDoesNotSpin() {
        try (EventFd bell = EventFd.create()) {
            DoorbellIdleStrategy idle = DoorbellIdleStrategy.efficiency(null, bell);
            FakeDevice device = new FakeDevice();
            idle.sleepThrough(device);
            // a duty cycle turned a guest request into a prepared device request
            device.busy = true;
            device.unsubmitted = true;
            idle.idle(1);
            assertEquals(0, device.submits, "left for the next cycle's wait");
            idle.idle(0);
            assertEquals(1, device.awaits);
            assertEquals(1, device.awaitsCarryingABatch, "submitted by the wait itself");
            assertEquals(0, device.submits);
        }
    }

    @Test
    void shouldNotHoldABatchOverTwoBusyCycles() {
        try (EventFd bell = EventFd.create()) {
            DoorbellIdleStrategy idle = DoorbellIdleStrategy.efficiency(null, bell);
            FakeDevice device = new FakeDevice();
            idle.sleepThrough(device);
            device.busy = true;
            device.unsubmitted = true;
            idle.idle(1);
            idle.idle(1);
            assertEquals(1, device.submits, "the second busy cycle submits: the device must not wait for an idle one");
        }
    }

    @Test
    void shouldSubmitBeforeSpinningAndSleepInTheDeviceWhileItIsBusy() {
        try (EventFd bell = EventFd.create()) {
            DoorbellIdleStrategy idle = new DoorbellIdleStrategy(null, bell, 100, 0, 1_000);
            FakeDevice device = new FakeDevice();
            idle.sleepThrough(device);
            device.busy = true;
            device.unsubmitted = true;
            idle.idle(1);
            assertEquals(1, device.submits, "a spinning agent hands the batch over first");
            for (int i = 0; i <= 100; i++) {
                idle.idle(0);
            }
            assertEquals(1, device.awaits, "after its spin it sleeps in the device wait, not on the doorbell alone");
            assertEquals(1, idle.sleeps());
        }
    }

    @Test
    void shouldSleepOnTheDoorbellAloneWhenTheDeviceIsIdle() {
        try (EventFd bell = EventFd.create()) {
            DoorbellIdleStrategy idle = DoorbellIdleStrategy.interruptOnly(null, bell);
            FakeDevice device = new FakeDevice();
            idle.sleepThrough(device);
            bell.signal(); // the doorbell wait returns at once
            idle.idle(0);
            assertEquals(0, device.awaits);
            assertEquals(1, idle.sleeps());
        }
    }

    @Test
    void shouldSleepThroughASlowDeviceAtOnceWithoutSpinning() {
        try (EventFd bell = EventFd.create()) {
            DoorbellIdleStrategy idle = new DoorbellIdleStrategy(null, bell, 100, 0, 1_000);
            FakeDevice device = new FakeDevice();
            idle.sleepThrough(device);
            device.busy = true;
            device.slow = true; // a librbd request in flight: ~250 µs, far beyond any spin
            idle.idle(1);
            idle.idle(0);
            assertEquals(1, device.awaits, "the first idle look sleeps in the device wait, no spin before it");
        }
    }

    /**
     * Issue 20: judged over the whole QD1 cycle, every wait for a librbd completion was a spin miss, so the governor
     * turned spinning off and every guest request woke a sleeping agent. Waits through a slow device are not judged;
     * the waits for the guest's next request are.
     */
    @Test
    void shouldLeaveWaitsThroughASlowDeviceOutOfTheGovernorsJudgement() {
        long[] now = {0};
        for (boolean slow : new boolean[] {false, true}) {
            try (EventFd bell = EventFd.create()) {
                SpinGovernor governor = new SpinGovernor(() -> 0, () -> now[0] += 1_000, new SpinGovernor.Memory());
                DoorbellIdleStrategy idle = new DoorbellIdleStrategy(null, bell, 4, 0, 1_000, governor);
                FakeDevice device = new FakeDevice();
                idle.sleepThrough(device);
                device.busy = true;
                device.slow = slow;
                for (int request = 0; request < 300; request++) {
                    idle.idle(1); // a request submitted
                    int before = device.awaits;
                    for (int look = 0; look < 1_000 && device.awaits == before; look++) {
                        idle.idle(0); // its completion awaited (after a spin, unless the device is slow)
                    }
                    idle.idle(1); // ... and delivered
                }
                assertEquals(300, device.awaits);
                if (slow) {
                    assertEquals(0, governor.decisions(), "waits through a slow device are no spin misses");
                } else {
                    assertTrue(governor.decisions() > 0, "a fast device's waits are judged: " + governor.decisions());
                }
            }
        }
    }
}
