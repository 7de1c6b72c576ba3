package io.phost.appliance.config;

import java.nio.file.Path;

/**
 * The keys of a {@code [[partition]]} with {@code kind = "vm"}.
 *
 * @param machine     {@code q35} or {@code pc}
 * @param kernel      direct-boot kernel as written (relative to the data dir), or null with firmware
 * @param initrd      initramfs as written, or null
 * @param cmdline     kernel command line ("" for none)
 * @param firmware    {@code uefi} or {@code bios} (boot the first disk), or null with a kernel
 * @param console     serial console log as written (relative to the data dir)
 * @param onCrash     {@code restart} or {@code stop}
 * @param stopTimeout seconds a graceful stop waits for the guest to power off before QEMU is killed
 * @param readyMarker console text the guest prints once it is up and takes the ACPI power button, or null; until
 *                    it appears a stop kills the guest at once (see {@code VmSpec.readyMarker})
 */
public record VmConfig(String machine, Path kernel, Path initrd, String cmdline, String firmware, Path console,
                       String onCrash, int stopTimeout, String readyMarker) {
    public VmConfig {
        if ((kernel == null) == (firmware == null)) {
            throw new IllegalArgumentException("a VM boots from exactly one of kernel and firmware");
        }
    }

    public Path resolvedKernel(Path dataDir) {
        return kernel == null ? null : dataDir.resolve(kernel);
    }

    public Path resolvedInitrd(Path dataDir) {
        return initrd == null ? null : dataDir.resolve(initrd);
    }

    public Path resolvedConsole(Path dataDir) {
        return dataDir.resolve(console);
    }
}
