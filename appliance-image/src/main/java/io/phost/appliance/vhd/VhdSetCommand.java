package io.phost.appliance.vhd;

import io.phost.appliance.UserException;
import io.phost.vhdx.ops.ImageIdentity;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.nio.file.Path;
import java.util.concurrent.Callable;

/** {@code phost vhd set}: Set-VHD's options that are not a re-parenting (that is {@code set-parent}). */
@Command(name = "set", mixinStandardHelpOptions = true,
    description = {"Change an image's properties in place (Set-VHD).",
        "--reset-disk-identifier gives a VHDX a new VirtualDiskId (for a copy that must not look like the",
        "original); its data and DataWriteGuid stay, so its differencing children stay linked."})
final class VhdSetCommand implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "FILE")
    Path file;
    @Option(names = "--reset-disk-identifier", description = "New VirtualDiskId (Set-VHD -ResetDiskIdentifier; VHDX).")
    boolean resetDiskIdentifier;

    @Override
    public Integer call() {
        return VhdCommand.guard(() -> {
            if (!resetDiskIdentifier) {
                throw new UserException("nothing to set: pass --reset-disk-identifier", 2);
            }
            java.util.UUID id = ImageIdentity.resetDiskIdentifier(file);
            System.out.println(file + ": new virtual disk id " + id);
            return 0;
        });
    }
}
