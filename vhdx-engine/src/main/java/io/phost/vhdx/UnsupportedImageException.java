package io.phost.vhdx;

import java.io.IOException;
import java.nio.file.Path;

/**
 * The file is an image in a format phost does not read (qcow2, VMDK, VDI, QED): refused by name rather
 * than shown as a raw disk of its container bytes.
 */
public final class UnsupportedImageException extends IOException {
    private final String formatName;

    public UnsupportedImageException(Path path, String formatName) {
        super(path + " is a " + formatName + " image, which phost does not read; convert it first (qemu-img convert -O vhdx "
            + path + " NEW.vhdx), or name the format with -f raw to treat its bytes as a raw disk");
        this.formatName = formatName;
    }

    /** "qcow2", "vmdk", "vdi", "qed". */
    public String formatName() {
        return formatName;
    }
}
