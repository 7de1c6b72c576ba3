package io.phost.appliance.vhd;

import io.phost.appliance.UserException;
import io.phost.vhdx.ops.DiskOps;
import io.phost.vhdx.ops.ImageRebase;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** {@code phost vhd rebase}: a new parent for a differencing image, copying what it needs (qemu-img rebase). */
@Command(name = "rebase", mixinStandardHelpOptions = true,
    description = {"Give differencing image CHILD the parent NEW_PARENT and keep what CHILD reads, as qemu-img rebase:",
        "every sector where the old chain and NEW_PARENT differ is copied into CHILD first. A VHDX keeps its",
        "identity, so images made from CHILD stay linked. -u only re-points CHILD (qemu-img rebase -u):",
        "CHILD then reads NEW_PARENT's data wherever it stores nothing itself."})
final class VhdRebaseCommand extends VhdVerb {
    @Parameters(index = "0", paramLabel = "CHILD")
    Path child;
    @Parameters(index = "1", paramLabel = "NEW_PARENT")
    Path parent;
    @Option(names = {"-u", "--unsafe"}, description = "Only re-point CHILD; copy nothing (the old parent may be gone).")
    boolean unsafe;
    @picocli.CommandLine.Mixin
    ProgressOptions progress = new ProgressOptions();

    @Override
    int run() throws IOException {
        if (Files.exists(child) && Files.exists(parent) && Files.isSameFile(child, parent)) {
            throw new UserException("CHILD and NEW_PARENT are the same file (" + child + ")", 2);
        }
        DiskOps.CopyResult r = progress.withBar("rebase", bar -> ImageRebase.rebase(child, parent, unsafe, bar));
        progress.say("rebased " + child + " onto " + parent + (unsafe ? " (unsafe: nothing copied)"
            : ": " + Sizes.human(r.bytesWritten()) + " copied in"));
        return 0;
    }
}
