package io.phost.core.vm;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * Which accelerator QEMU runs a VM with, and why: KVM when {@code /dev/kvm} exists, this process can open it
 * read-write and it is hardware KVM (the CPU has VT-x or AMD-V and the loaded module is not kvm-pvm); TCG
 * (QEMU's translator; 10-50x slower, no extra privileges) otherwise.
 *
 * <p>Why the last two checks: a cloud VM without nested virtualization may still offer {@code /dev/kvm}
 * through kvm-pvm (Pagetable-based VM), which runs only PVM-enabled guest kernels. QEMU 7.2 aborts there
 * with {@code -cpu host} ("failed to set MSR 0x10a") and a standard kernel never boots, so such a
 * {@code /dev/kvm} must not be chosen just because it opens.
 *
 * @param reason one sentence for status, e.g. "no /dev/kvm (kvm module not loaded, or no VT-x/AMD-V)"
 */
public record Accelerator(Type type, String reason) {
    public enum Type {
        KVM("kvm"), TCG("tcg");

        public final String qemuName;

        Type(String qemuName) {
            this.qemuName = qemuName;
        }
    }

    public static final Path DEV_KVM = Path.of("/dev/kvm");
    private static final Path KVM_PVM_MODULE = Path.of("/sys/module/kvm_pvm");
    private static final Path CPUINFO = Path.of("/proc/cpuinfo");

    /** Probes {@link #DEV_KVM}, the loaded KVM module and the CPU's virtualization flags. */
    public static Accelerator detect() {
        return detect(DEV_KVM, KVM_PVM_MODULE, CPUINFO);
    }

    static Accelerator detect(Path devKvm, Path kvmPvmModule, Path cpuinfo) {
        if (!Files.exists(devKvm)) {
            return new Accelerator(Type.TCG, "no " + devKvm + " (kvm module not loaded, or no VT-x/AMD-V on this machine)");
        }
        try (FileChannel c = FileChannel.open(devKvm, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
            // opened: now check it is hardware KVM
        } catch (IOException | UnsupportedOperationException | SecurityException e) {
            return new Accelerator(Type.TCG, devKvm + " exists but cannot be opened read-write: " + e.getMessage());
        }
        if (Files.exists(kvmPvmModule)) {
            return new Accelerator(Type.TCG, devKvm + " is kvm-pvm (" + kvmPvmModule + "), which runs only PVM-enabled guest"
                + " kernels");
        }
        if (!hasVirtualizationFlag(cpuinfo)) {
            return new Accelerator(Type.TCG, devKvm + " exists but " + cpuinfo + " shows no vmx or svm flag (no VT-x/AMD-V)");
        }
        return new Accelerator(Type.KVM, devKvm + " is usable");
    }

    private static boolean hasVirtualizationFlag(Path cpuinfo) {
        try (var lines = Files.lines(cpuinfo)) {
            return lines.filter(l -> l.startsWith("flags"))
                .findFirst()
                .map(l -> (" " + l.substring(l.indexOf(':') + 1) + " ").matches(".* (vmx|svm) .*"))
                .orElse(false);
        } catch (IOException | UncheckedIOException e) {
            return false;
        }
    }

    @Override
    public String toString() {
        return type.qemuName + " (" + reason + ")";
    }
}
