package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.core.partition.PartitionKind;
import io.phost.core.partition.PartitionState;
import io.phost.core.partition.PartitionStatus;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The API shows absent values as null, never as the -1 and "" sentinels of the core records. */
class PartitionJsonTest {
    @Test
    void aStoppedPartitionHasANullPidAndANullReason() {
        Map<?, ?> m = (Map<?, ?>) PartitionsComponent.json(new PartitionStatus("web", PartitionKind.PROCESS, PartitionState.STOPPED,
            -1, 1, 64L << 20, 0, 0, 0, List.of(), "", Map.of()));
        assertTrue(m.containsKey("pid") && m.containsKey("reason"), m.toString());
        assertNull(m.get("pid"));
        assertNull(m.get("reason"));
        assertEquals("stopped", m.get("state"));
    }

    @Test
    void aRunningPartitionKeepsItsPidAndACrashedOneItsReason() {
        Map<?, ?> m = (Map<?, ?>) PartitionsComponent.json(new PartitionStatus("vm1", PartitionKind.VM, PartitionState.CRASHED,
            4242, 1, 64L << 20, 0, 0, 1, List.of("boom"), "QEMU exited with code 137", Map.of()));
        assertEquals(4242L, ((Number) m.get("pid")).longValue());
        assertEquals("QEMU exited with code 137", m.get("reason"));
    }
}
