package io.phost.core.vm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Which accelerator a VM gets: only a hardware KVM that opens read-write is chosen. */
class AcceleratorTest {
    @TempDir
    Path dir;

    private Path kvm() throws IOException {
        return Files.writeString(dir.resolve("kvm"), "");
    }

    private Path cpuinfo(String flags) throws IOException {
        return Files.writeString(dir.resolve("cpuinfo"), "processor\t: 0\nflags\t\t: " + flags + "\n\nprocessor\t: 1\n");
    }

    @Test
    void shouldChooseKvmWhenTheDeviceOpensAndTheCpuHasVtx() throws IOException {
        Accelerator a = Accelerator.detect(kvm(), dir.resolve("no-pvm"), cpuinfo("fpu vme vmx sse2"));
        assertEquals(Accelerator.Type.KVM, a.type(), a.reason());
    }

    @Test
    void shouldChooseKvmOnAmdV() throws IOException {
        assertEquals(Accelerator.Type.KVM, Accelerator.detect(kvm(), dir.resolve("no-pvm"), cpuinfo("fpu svm")).type());
    }

    @Test
    void shouldRefuseKvmPvmBecauseAStandardGuestKernelDoesNotBootOnIt() throws IOException {
        Path pvm = Files.createDirectory(dir.resolve("kvm_pvm"));
        Accelerator a = Accelerator.detect(kvm(), pvm, cpuinfo("fpu vmx"));
        assertEquals(Accelerator.Type.TCG, a.type());
        assertTrue(a.reason().contains("kvm-pvm"), a.reason());
    }

    @Test
    void shouldRefuseKvmWithoutAVirtualizationFlag() throws IOException {
        // "vmxe" or "svm_lock" are not the flags: only whole words count
        Accelerator a = Accelerator.detect(kvm(), dir.resolve("no-pvm"), cpuinfo("fpu vmxe svm_lock sse2"));
        assertEquals(Accelerator.Type.TCG, a.type());
        assertTrue(a.reason().contains("no vmx or svm flag"), a.reason());
    }

    @Test
    void shouldRefuseKvmWhenCpuinfoCannotBeRead() throws IOException {
        Accelerator a = Accelerator.detect(kvm(), dir.resolve("no-pvm"), dir.resolve("no-cpuinfo"));
        assertEquals(Accelerator.Type.TCG, a.type());
    }

    @Test
    void shouldFallBackToTcgWhenThereIsNoKvmDevice() {
        Accelerator a = Accelerator.detect(dir.resolve("none"), dir.resolve("no-pvm"), dir.resolve("cpuinfo"));
        assertEquals(Accelerator.Type.TCG, a.type());
        assertTrue(a.reason().contains("no " + dir.resolve("none")), a.reason());
    }

    @Test
    void shouldChooseTcgOnThisMachineUnlessItHasHardwareKvm() throws IOException {
        // the real probe: wherever /proc/cpuinfo has no vmx/svm, KVM must not be chosen
        String flags = Files.readString(Path.of("/proc/cpuinfo"));
        boolean hardware = flags.matches("(?s).*\\bflags\\s*:[^\\n]*\\b(vmx|svm)\\b.*")
            && !Files.exists(Path.of("/sys/module/kvm_pvm"));
        if (!hardware) {
            assertEquals(Accelerator.Type.TCG, Accelerator.detect().type(), Accelerator.detect().reason());
        }
    }
}
