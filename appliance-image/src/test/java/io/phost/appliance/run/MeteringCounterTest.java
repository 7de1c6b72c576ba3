package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

/** A meter's counter across a restart of its source (a new cgroup counts from zero) and a reset. */
class MeteringCounterTest {
    @Test
    void shouldKeepWhatWasMeteredWhenTheSourceRestartsAndZeroOnReset() {
        Metering.Counter c = new Metering.Counter();
        c.update(100);
        c.update(250);
        assertEquals(250, c.total());
        c.update(40); // the source restarted: its 40 are new
        assertEquals(290, c.total());
        c.update(-1); // unknown this tick: nothing added, the last reading kept
        c.update(60);
        assertEquals(310, c.total());
        c.reset();
        assertEquals(0, c.total());
        c.update(70);
        assertEquals(10, c.total());
        assertEquals(320, c.lifetime(), "Prometheus counters never go down");
    }
}
