package io.phost.perf.vmbus;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;

class BenchPinningTest {
    @Test
    void shouldPinTheHostSideToTheFirstAllowedCpuAndTheChildToTheSecondByDefault() {
        BenchPinning p = BenchPinning.of(null, List.of(2, 5, 7));
        assertTrue(p.pinned());
        assertEquals(2, p.hostCpu());
        assertEquals(List.of(5), p.childCpus());
        assertTrue(p.describe().contains("CPU 2") && p.describe().contains("CPU 5"), p.describe());
    }

    @Test
    void shouldTakeExplicitCpusAndOff() {
        BenchPinning p = BenchPinning.of("1:0", List.of(0, 1));
        assertEquals(1, p.hostCpu());
        assertEquals(List.of(0), p.childCpus());
        BenchPinning off = BenchPinning.of("off", List.of(0, 1));
        assertFalse(off.pinned());
        assertEquals(List.of(), off.childCpus());
        assertTrue(off.describe().contains("not pinned"), off.describe());
    }

    @Test
    void shouldNotPinWithOneCpuAndRefuseBadSpecs() {
        assertFalse(BenchPinning.of(null, List.of(0)).pinned());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> BenchPinning.of("0,1", List.of(0, 1)));
        assertTrue(e.getMessage().contains("PHOST_BENCH_VMBUS_PIN=0,1"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> BenchPinning.of("1:1", List.of(0, 1)));
    }
}
