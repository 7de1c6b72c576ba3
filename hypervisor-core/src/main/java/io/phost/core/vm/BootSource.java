package io.phost.core.vm;

import java.nio.file.Path;

/** How a VM boots: a kernel QEMU loads directly, or firmware that boots from the first disk. */
public sealed interface BootSource {

    /**
     * Direct kernel boot ({@code -kernel/-initrd/-append}).
     *
     * @param initrd  null when there is none
     * @param cmdline the kernel command line ("" for none); at most {@link #MAX_CMDLINE} bytes, printable ASCII
     */
    record Kernel(Path kernel, Path initrd, String cmdline) implements BootSource {
        public static final int MAX_CMDLINE = 2048;

        public Kernel {
            QemuValues.requirePath("kernel", kernel);
            if (initrd != null) {
                QemuValues.requirePath("initrd", initrd);
            }
            cmdline = cmdline == null ? "" : cmdline;
            if (cmdline.length() > MAX_CMDLINE) {
                throw new IllegalArgumentException("cmdline is " + cmdline.length() + " bytes, at most " + MAX_CMDLINE);
            }
            for (int i = 0; i < cmdline.length(); i++) {
                char c = cmdline.charAt(i);
                if (c < 0x20 || c > 0x7e) {
                    throw new IllegalArgumentException("cmdline has a control or non-ASCII character at offset " + i);
                }
            }
        }
    }

    /** Firmware boot from the first disk: UEFI (OVMF) or BIOS (SeaBIOS, QEMU's default). */
    record Firmware(Type type) implements BootSource {
        public enum Type { UEFI, BIOS }

        public Firmware {
            if (type == null) {
                throw new IllegalArgumentException("firmware type is required");
            }
        }
    }
}
