package io.phost.core.vm;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * Which accelerator QEMU runs a VM with, and why: KVM when {@code /dev/kvm} exists and this process can open
 * it read-write, TCG (QEMU's translator; 10-50x slower, no extra privileges) otherwise.
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

    /** Probes {@link #DEV_KVM}. */
    public static Accelerator detect() {
        return detect(DEV_KVM);
    }

    static Accelerator detect(Path devKvm) {
        if (!Files.exists(devKvm)) {
            return new Accelerator(Type.TCG, "no " + devKvm + " (kvm module not loaded, or no VT-x/AMD-V on this machine)");
        }
        try (FileChannel c = FileChannel.open(devKvm, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
            return new Accelerator(Type.KVM, devKvm + " is usable");
        } catch (IOException | UnsupportedOperationException | SecurityException e) {
            return new Accelerator(Type.TCG, devKvm + " exists but cannot be opened read-write: " + e.getMessage());
        }
    }

    @Override
    public String toString() {
        return type.qemuName + " (" + reason + ")";
    }
}
