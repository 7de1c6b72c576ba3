package io.phost.appliance.vhd;

import io.phost.appliance.UserException;
import io.phost.vhdx.ops.ImageSettings;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.io.IOException;
import java.nio.file.Path;

/** {@code phost vhd set}: Set-VHD's options that are not a re-parenting (that is {@code set-parent}). */
@Command(name = "set", mixinStandardHelpOptions = true,
    description = {"Change an image's properties in place (Set-VHD).",
        "--reset-disk-identifier gives a VHDX a new VirtualDiskId (for a copy that must not look like the",
        "original); its data and DataWriteGuid stay, so its differencing children stay linked.",
        "--physical-sector changes the physical sector size a VHDX reports (data and links unchanged)."})
final class VhdSetCommand extends VhdVerb.OnFile {
    @Option(names = "--reset-disk-identifier", description = "New VirtualDiskId (Set-VHD -ResetDiskIdentifier; VHDX).")
    boolean resetDiskIdentifier;
    @Option(names = "--physical-sector", paramLabel = "512|4096", description = "Physical sector size the image reports"
        + " (Set-VHD -PhysicalSectorSizeBytes; VHDX).")
    Integer physical;

    @Override
    int run() throws IOException {
        if (!resetDiskIdentifier && physical == null) {
            throw new UserException("nothing to set: pass --reset-disk-identifier and/or --physical-sector", 2);
        }
        if (physical != null && physical != 512 && physical != 4096) {
            throw new UserException("--physical-sector is 512 or 4096: " + physical, 2);
        }
        if (physical != null) {
            ImageSettings.setPhysicalSectorSize(file, physical);
            System.out.println(file + ": physical sector size " + physical);
        }
        if (resetDiskIdentifier) {
            java.util.UUID id = ImageSettings.resetDiskIdentifier(file);
            System.out.println(file + ": new virtual disk id " + id);
        }
        return 0;
    }
}
