package io.phost.vhdx.ops;

import io.phost.vhdx.DiskFormat;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.VirtualDisks;
import io.phost.vhdx.vhd.VhdDisk;
import io.phost.vhdx.vhd.VhdMaintenance;
import io.phost.vhdx.vhdx.VhdxDisk;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.UUID;

/**
 * {@code phost vhd rebase CHILD NEW_PARENT}, as {@code qemu-img rebase -b}: CHILD gets a new parent and
 * still reads exactly what it read before.
 * <pre>
 *   1. check     CHILD differencing; NEW_PARENT same format, size and sector size; not CHILD nor made from it
 *   2. copy      every sector where the old chain and NEW_PARENT read differently is written into CHILD
 *                (the old chain's data; sectors CHILD stores itself are rewritten with what they hold)
 *   3. re-point  the parent locator names NEW_PARENT (VHDX: linkage to its DataWriteGuid)
 *   4. identity  a VHDX keeps its VirtualDiskId and DataWriteGuid: it reads the same, so images made from
 *                CHILD stay linked
 * </pre>
 * A kill during 2 leaves CHILD on its old parent reading the same (with redundant data); between 2 and 4 a
 * VHDX child reads the same but has a new DataWriteGuid, so run the rebase again before using its children.
 * Unsafe ({@code -u}): step 3 only, as {@code qemu-img rebase -u} (what {@code set-parent --force} does).
 */
public final class ImageRebase {
    private ImageRebase() {}

    public static DiskOps.CopyResult rebase(Path child, Path newParent, boolean unsafe, Progress progress) throws IOException {
        DiskFormat format = VirtualDisks.detect(child);
        if (format == DiskFormat.RAW) {
            throw new IllegalArgumentException(child + " is a raw image, not a differencing one");
        }
        // First NEW_PARENT alone: its chain must not hold CHILD (checked before CHILD is opened read-write,
        // which would conflict with NEW_PARENT's read locks on its own chain).
        long parentSize;
        int parentSector;
        try (VirtualDisk n = VirtualDisks.open(newParent, true)) {
            DiskFormat nf = DiskFormat.parse(n.format());
            if (nf != format) {
                throw new IllegalArgumentException(newParent + " is " + nf.id() + "; a " + format.id() + " image can only have a "
                    + format.id() + " parent");
            }
            for (Path p : DiskOps.chainPaths(newParent, n)) {
                if (Files.isSameFile(p, child)) {
                    throw new IllegalArgumentException(newParent + (p.equals(newParent) ? " is " + child
                        : " is made from " + child) + "; an image cannot be its own ancestor");
                }
            }
            parentSize = n.size();
            parentSector = n.logicalSectorSize();
        }
        UUID diskId = null;
        UUID dataWrite = null;
        DiskOps.CopyResult r;
        try (VirtualDisk c = openChild(child, format, unsafe)) {
            if (!isDifferencing(c)) {
                throw new IllegalArgumentException(child + " is not a differencing image");
            }
            if (parentSize != c.size() || parentSector != c.logicalSectorSize()) {
                throw new IllegalArgumentException(newParent + " (" + parentSize + " bytes, " + parentSector
                    + "-byte sectors) differs in size or sector size from " + child + " (" + c.size() + ", "
                    + c.logicalSectorSize() + ")");
            }
            if (unsafe) {
                r = new DiskOps.CopyResult(0, 0);
            } else {
                if (c instanceof VhdxDisk x) {
                    diskId = x.virtualDiskId();
                    dataWrite = x.dataWriteGuid();
                }
                try (VirtualDisk n = VirtualDisks.open(newParent, true)) {
                    // Source and target are CHILD itself: where it reads (its own data or the old chain's)
                    // differently from NEW_PARENT, what it reads is written into it; rewriting a sector it
                    // stores changes nothing.
                    r = ImageCopy.copy(c, c, c.size(), ImageCopy.Baseline.DISK, n, 512, progress);
                }
                c.flush();
            }
        }
        if (unsafe) {
            DiskOps.setParent(child, newParent, true);
        } else if (format == DiskFormat.VHDX) {
            VhdxDisk.setParent(child, newParent, true, true);
            VhdxDisk.adoptIdentity(child, diskId, dataWrite);
        } else {
            VhdMaintenance.setParent(child, newParent, true);
        }
        return r;
    }

    /** Read-write with its chain for a safe rebase; an unsafe one only needs to read the header. */
    private static VirtualDisk openChild(Path child, DiskFormat format, boolean unsafe) throws IOException {
        if (unsafe) { // the old parent may be gone: that is what -u is for
            return format == DiskFormat.VHDX ? VhdxDisk.openDetached(child) : VhdDisk.openDetached(child);
        }
        return VirtualDisks.open(child, format, false);
    }

    private static boolean isDifferencing(VirtualDisk c) {
        return switch (c) {
            case VhdDisk v -> v.type() == io.phost.vhdx.DiskType.DIFFERENCING;
            case VhdxDisk x -> x.type() == io.phost.vhdx.DiskType.DIFFERENCING;
            default -> false;
        };
    }
}
