package io.phost.vhdx.ops;

import io.phost.vhdx.DiskFormat;
import io.phost.vhdx.VirtualDisks;
import io.phost.vhdx.vhdx.VhdxDisk;

import java.io.IOException;
import java.nio.file.Path;
import java.util.UUID;

/** Set-VHD's in-place settings: {@code -ResetDiskIdentifier} and {@code -PhysicalSectorSizeBytes}. */
public final class ImageSettings {
    private ImageSettings() {}

    /**
     * Sets the physical sector size a VHDX reports (512 or 4096, not below its logical size) through its log;
     * data and DataWriteGuid stay. VHD and raw images report 512 and have no such field: refused.
     */
    public static void setPhysicalSectorSize(Path path, int bytes) throws IOException {
        DiskFormat f = VirtualDisks.detect(path);
        if (f != DiskFormat.VHDX) {
            throw new UnsupportedOperationException(path + " is " + f.id() + ": only a VHDX records a physical sector size");
        }
        VhdxDisk.setPhysicalSectorSize(path, bytes);
    }

    /**
     * Gives a VHDX a new random VirtualDiskId and returns it. The DataWriteGuid (what children link to) is
     * kept, so differencing images made from it stay linked; the data is not touched. VHD is refused: its
     * children link to the very unique id this would change.
     */
    public static UUID resetDiskIdentifier(Path path) throws IOException {
        DiskFormat f = VirtualDisks.detect(path);
        if (f != DiskFormat.VHDX) {
            throw new UnsupportedOperationException(path + " is " + f.id() + ": a new disk identifier is for VHDX images (a VHD's"
                + " children link to its unique id, so changing it would orphan them)");
        }
        UUID dataWrite;
        try (VhdxDisk d = VhdxDisk.open(path, true)) {
            dataWrite = d.dataWriteGuid();
        }
        UUID fresh = UUID.randomUUID();
        VhdxDisk.adoptIdentity(path, fresh, dataWrite); // read-write open: refused while anyone has it open
        return fresh;
    }
}
