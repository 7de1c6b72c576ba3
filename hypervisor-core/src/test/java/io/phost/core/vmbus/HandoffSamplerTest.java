package io.phost.core.vmbus;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class HandoffSamplerTest {
    @Test
    void shouldKeepOneOrderedRowPerSampledRequestAndDropTheOthers() {
        HandoffSampler s = new HandoffSampler(2);
        for (int i = 0; i < 4; i++) {
            long slot = i % 2 == 0 ? 3 : 7;
            s.guestSubmit(slot);
            for (int stage = HandoffSampler.HOST_PICKUP; stage < HandoffSampler.GUEST_WAKE; stage++) {
                s.stamp(slot, stage);
            }
            s.guestWake(slot);
            s.guestHandled(slot);
        }
        long[] rows = s.drain();
        assertEquals(2 * HandoffSampler.STAGES, rows.length, "requests 0 and 2 of 4 sampled");
        // each sampled request's loop ends at the next submit, sampled or not
        for (int r = 0; r < 2; r++) {
            for (int stage = 1; stage < HandoffSampler.CHAIN; stage++) {
                int at = r * HandoffSampler.STAGES + stage;
                assertTrue(rows[at] >= rows[at - 1] && rows[at - 1] != 0, "stage " + stage + " stamped after the one before");
            }
        }
        assertEquals(0, s.drain().length, "drain forgets");
    }

    @Test
    void shouldIgnoreTransactionIdsOutsideItsTableAndUnsampledRequests() {
        HandoffSampler s = new HandoffSampler(2);
        s.guestSubmit(-1);
        s.stamp(1 << 20, HandoffSampler.HOST_PICKUP);
        s.guestWake(Long.MAX_VALUE);
        s.guestSubmit(5); // sampled (the first)
        s.guestSubmit(6); // not sampled
        s.stamp(6, HandoffSampler.HOST_PICKUP);
        s.guestWake(6);
        s.guestHandled(6);
        assertEquals(0, s.drain().length);
    }

    @Test
    void shouldNotRecordARowWhoseHandlerSubmittedAgainOnTheSameSlot() {
        HandoffSampler s = new HandoffSampler(1);
        s.guestSubmit(2);
        s.guestWake(2);
        s.guestSubmit(2); // a retry from inside the completion handler: a new request on the slot
        s.guestHandled(2);
        assertEquals(0, s.drain().length, "the first request's row was reused before it was recorded");
        s.guestWake(2);
        s.guestHandled(2);
        s.guestSubmit(3);
        long[] rows = s.drain();
        assertEquals(HandoffSampler.STAGES, rows.length, "the retry is recorded once it completes");
        assertTrue(rows[HandoffSampler.NEXT_SUBMIT] >= rows[HandoffSampler.GUEST_HANDLED]
            && rows[HandoffSampler.GUEST_HANDLED] >= rows[HandoffSampler.GUEST_WAKE], "wake, handled, next submit in order");
    }
}
