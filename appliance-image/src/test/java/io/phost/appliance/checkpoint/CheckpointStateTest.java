package io.phost.appliance.checkpoint;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Why a checkpoint is only crash-consistent is saved with it in state.json, so listings after a restart still say
 * why. Before: {@code consistency_reason} was only in the create's answer and lost with the process.
 */
class CheckpointStateTest {
    @Test
    void shouldKeepTheConsistencyReasonOfACheckpointAcrossSaveAndLoad(@TempDir Path dataDir) throws Exception {
        CheckpointState s = new CheckpointState("p");
        CheckpointState.Checkpoint crash = new CheckpointState.Checkpoint("a", "2026-12-06T20:00:00Z", null,
            "crash-consistent", Map.of("d0", "/x/d0.vhdx"));
        crash.consistencyReason = "partition is stopped: nothing to freeze";
        CheckpointState.Checkpoint consistent = new CheckpointState.Checkpoint("b", "2026-12-06T20:01:00Z", "a",
            "application-consistent", Map.of("d0", "/x/d0-1.avhdx"));
        s.checkpoints.add(crash);
        s.checkpoints.add(consistent);
        CheckpointStore store = new CheckpointStore(dataDir, "p");
        store.save(s);
        CheckpointState loaded = new CheckpointStore(dataDir, "p").load("p");
        assertEquals("partition is stopped: nothing to freeze", loaded.checkpoint("a").consistencyReason);
        assertNull(loaded.checkpoint("b").consistencyReason);
        assertEquals("crash-consistent", loaded.checkpoint("a").consistency);
    }
}
