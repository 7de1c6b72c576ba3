package io.phost.qos;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/**
 * The device's outstanding count is derived from its flows' thread-striped counters (no shared counter per
 * I/O): it must stay exact when I/Os complete on other threads than they were admitted on, and the share
 * tags must start being charged once the device is half full even when nobody is held back yet.
 */
class DeviceOutstandingTest {
    @Test
    void shouldCountIosAdmittedOnOneThreadAndCompletedOnOthers() throws Exception {
        QosService qos = new QosService(QosConfig.defaults().withDevice(10_000_000, 64), new ManualNanoClock(0));
        ManagedQosFlow a = qos.createFlow("vm1", "a", null);
        ManagedQosFlow b = qos.createFlow("vm2", "b", null);
        long[] now = {1_000_000};
        for (int i = 0; i < 10; i++) {
            assertEquals(0, a.tryAdmit(4096, now[0] += 1_000));
            assertEquals(0, b.tryAdmit(4096, now[0] += 1_000));
        }
        assertEquals(20, a.device.outstanding());
        Thread other = new Thread(() -> {
            for (int i = 0; i < 7; i++) {
                a.completed(4096, 1_000, now[0] + 1_000);
            }
        });
        other.start();
        other.join();
        for (int i = 0; i < 3; i++) {
            b.completed(4096, 1_000, now[0] + 1_000);
        }
        assertEquals(10, a.device.outstanding());
        assertEquals(10, qos.devices().getFirst().outstanding());
    }

    @Test
    void shouldChargeShareTagsOnceTheDeviceIsHalfFullAndStopWhenItDrains() {
        QosService qos = new QosService(QosConfig.defaults().withDevice(10_000_000, 64), new ManualNanoClock(0));
        ManagedQosFlow f = qos.createFlow("vm1", "a", null);
        DeviceState d = f.device;
        long now = 1_000_000;
        for (int i = 0; i < 31; i++) {
            assertEquals(0, f.tryAdmit(4096, now += 1_000));
        }
        assertFalse(d.shareCharging, "31 of 64 outstanding: below half, no share tag CAS");
        for (int i = 0; i < 2 * DeviceState.REFRESH_EVERY; i++) {
            assertEquals(0, f.tryAdmit(4096, now += 1_000));
        }
        assertTrue(d.shareCharging, "past half full within " + DeviceState.REFRESH_EVERY + " admissions of a thread");
        for (int i = 0; i < 31 + 2 * DeviceState.REFRESH_EVERY; i++) {
            f.completed(4096, 1_000, now);
        }
        for (int i = 0; i < DeviceState.REFRESH_EVERY; i++) {
            assertEquals(0, f.tryAdmit(4096, now += 1_000));
            f.completed(4096, 1_000, now);
        }
        assertFalse(d.shareCharging, "drained: admissions stop charging the share tag");
    }
}
