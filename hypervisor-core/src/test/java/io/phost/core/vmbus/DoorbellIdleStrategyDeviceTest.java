package io.phost.core.vmbus;

import io.phost.core.sys.DeviceWait;
import io.phost.core.sys.EventFd;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * An agent with a {@link DeviceWait} attached sleeps through the device while it is busy, and submits the duty
 * cycle's batch with that wait when it does not spin first (one io_uring_enter at QD1), before it when it spins.
 */
class DoorbellIdleStrategyDeviceTest {
    /** Records what the idle strategy asked of the device. */
    static final class FakeDevice implements DeviceWait {
        boolean busy;
        boolean unsubmitted;
        int submits;
        int awaits;
        int awaitsCarryingABatch;

        @Override
        public boolean busy() {
            return busy;
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
}
