package io.phost.vhdx;

import io.phost.vhdx.vhdx.VhdxCreateOptions;
import io.phost.vhdx.vhdx.VhdxDisk;

import java.io.IOException;
import java.nio.file.Path;

/** Where {@link VirtualDisks} reaches the VHDX engine (package io.phost.vhdx.vhdx). */
final class FormatHooks {
    private FormatHooks() {}

    static VirtualDisk openVhdx(Path path, boolean readOnly) throws IOException {
        return VhdxDisk.open(path, readOnly);
    }

    static VirtualDisk createVhdx(Path path, CreateOptions o) throws IOException {
        DiskType type = switch (o.type()) {
            case FIXED -> DiskType.FIXED;
            case DYNAMIC -> DiskType.DYNAMIC;
            case DIFFERENCING -> DiskType.DIFFERENCING;
        };
        if (o.blockSize() > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("VHDX block size must be at most 256 MiB: " + o.blockSize());
        }
        VhdxCreateOptions v = new VhdxCreateOptions(o.type() == DiskType.DIFFERENCING ? 0 : o.size(), type,
            (int) o.blockSize(),
            o.type() == DiskType.DIFFERENCING ? 0 : o.logicalSectorSize(),  // 0: the parent's
            o.type() == DiskType.DIFFERENCING ? 0 : o.physicalSectorSize(),
            o.parent());
        return VhdxDisk.create(path, v);
    }
}
