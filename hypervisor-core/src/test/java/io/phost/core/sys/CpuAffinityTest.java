package io.phost.core.sys;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;

class CpuAffinityTest {
    @Test
    void shouldPinTheCallingThreadOnlyAndReadItBack() throws Exception {
        List<Integer> all = CpuAffinity.current();
        assertTrue(all.contains(0), "CPU 0 is usable here: " + all);
        List<Integer>[] seen = new List[2];
        Thread t = new Thread(() -> {
            CpuAffinity.pin(List.of(all.getLast()));
            seen[0] = CpuAffinity.current();
        });
        t.start();
        t.join();
        assertEquals(List.of(all.getLast()), seen[0], "the pinned thread runs on that CPU only");
        assertEquals(all, CpuAffinity.current(), "other threads keep their affinity");
    }

    @Test
    void shouldNameTheCpusWhenTheKernelRefusesThem() {
        NativeException e = assertThrows(NativeException.class, () -> CpuAffinity.pin(List.of(CpuAffinity.MAX_CPUS - 1)));
        assertTrue(e.getMessage().startsWith("sched_setaffinity ") && e.getMessage().contains("[1023]"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> CpuAffinity.pin(List.of(CpuAffinity.MAX_CPUS)));
    }
}
