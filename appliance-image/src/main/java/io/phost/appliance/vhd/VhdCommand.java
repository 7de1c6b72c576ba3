package io.phost.appliance.vhd;

import io.phost.appliance.UserException;
import io.phost.vhdx.CreateOptions;
import io.phost.vhdx.DiskFormat;
import io.phost.vhdx.DiskType;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.VirtualDisks;
import io.phost.vhdx.ops.CheckReport;
import io.phost.vhdx.ops.DiskOps;
import io.phost.vhdx.ops.ImageInfo;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.io.IOException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;

/**
 * {@code phost vhd …}: create, inspect, check, convert, resize, compact, merge and re-parent VHDX, VHD and raw
 * images (Hyper-V's VHD cmdlets and qemu-img as references). Formats are recognised from content.
 */
@Command(name = "vhd", description = "Create, inspect and maintain VHDX, VHD and raw disk images.",
    mixinStandardHelpOptions = true,
    subcommands = {
        VhdCommand.Create.class,
        VhdCommand.Info.class,
        VhdCommand.Check.class,
        VhdCommand.Convert.class,
        VhdCommand.Resize.class,
        VhdCommand.Compact.class,
        VhdCommand.Merge.class,
        VhdCommand.SetParent.class,
    })
public final class VhdCommand implements Runnable {
    @Override
    public void run() {
        new picocli.CommandLine(this).usage(System.out);
    }

    /** Runs an operation, turning library failures into one-line user errors. */
    static int guard(Op op) {
        try {
            return op.run();
        } catch (UserException e) {
            throw e;
        } catch (NoSuchFileException e) {
            throw new UserException("no such file: " + e.getFile(), 1, e);
        } catch (FileAlreadyExistsException e) {
            throw new UserException(e.getFile() + " already exists (refusing to overwrite it)", 1, e);
        } catch (IOException e) {
            if (e instanceof io.phost.vhdx.vhd.VhdFormatException v
                && v.reason() == io.phost.vhdx.vhd.VhdFormatException.Reason.UNSUPPORTED) {
                throw new UserException(e.getMessage(), 1, e); // a request the format cannot do, not a bad file
            }
            if (DiskOps.isFormatError(e)) {
                throw new UserException(e.getMessage(), 2, e);
            }
            throw new UserException(e.getMessage(), 1, e);
        } catch (IllegalArgumentException | IllegalStateException | UnsupportedOperationException e) {
            throw new UserException(e.getMessage(), 1, e);
        }
    }

    @FunctionalInterface
    interface Op {
        int run() throws IOException;
    }

    static DiskFormat format(String s) {
        try {
            return DiskFormat.parse(s);
        } catch (IllegalArgumentException e) {
            throw new UserException("unknown format \"" + s + "\" (vhdx, vhd or raw)", 2);
        }
    }

    static DiskType type(String s) {
        try {
            return DiskType.parse(s);
        } catch (IllegalArgumentException e) {
            throw new UserException("unknown type \"" + s + "\" (fixed, dynamic or differencing)", 2);
        }
    }

    /** The format named by a file's extension, for create/convert without --format. */
    static DiskFormat formatFromName(Path p) {
        String n = p.getFileName().toString().toLowerCase(Locale.ROOT);
        if (n.endsWith(".vhd")) {
            return DiskFormat.VHD;
        }
        if (n.endsWith(".raw") || n.endsWith(".img")) {
            return DiskFormat.RAW;
        }
        return DiskFormat.VHDX;
    }

    @Command(name = "create", mixinStandardHelpOptions = true,
        description = {"Create a new image.",
            "The format defaults to the file's extension (.vhd, .raw/.img, else vhdx); a --parent makes a "
                + "differencing image of the parent's size."})
    static final class Create implements Callable<Integer> {
        @Parameters(index = "0", paramLabel = "FILE", description = "The image to create (must not exist).")
        Path file;
        @Option(names = "--size", paramLabel = "S", description = "Virtual size, e.g. 20G (K/M/G/T suffixes).")
        String size;
        @Option(names = "--format", paramLabel = "vhdx|vhd|raw", description = "Image format.")
        String format;
        @Option(names = "--type", paramLabel = "fixed|dynamic|differencing", description = "Default: dynamic, or differencing with --parent.")
        String type;
        @Option(names = "--parent", paramLabel = "P", description = "Parent image of a differencing image.")
        Path parent;
        @Option(names = "--block-size", paramLabel = "B", description = "Block size (VHDX 1M-256M, default 32M; VHD default 2M).")
        String blockSize;
        @Option(names = "--logical-sector", paramLabel = "512|4096", description = "Logical sector size (VHDX only for 4096).")
        int logical = 512;
        @Option(names = "--physical-sector", paramLabel = "512|4096", description = "Physical sector size (default 4096 for VHDX, 512 otherwise).")
        Integer physical;

        @Override
        public Integer call() {
            return guard(() -> {
                DiskFormat f = format != null ? format(format) : formatFromName(file);
                DiskType t = type != null ? type(type) : parent != null ? DiskType.DIFFERENCING : DiskType.DYNAMIC;
                if (t == DiskType.DIFFERENCING && parent == null) {
                    throw new UserException("a differencing image needs --parent", 2);
                }
                if (t != DiskType.DIFFERENCING && parent != null) {
                    throw new UserException("--parent makes a differencing image; drop --type " + t.id(), 2);
                }
                if (t != DiskType.DIFFERENCING && size == null) {
                    throw new UserException("--size is required", 2);
                }
                long s = size == null ? 0 : Sizes.parse(size);
                long b = blockSize == null ? 0 : Sizes.parse(blockSize);
                int phys = physical != null ? physical : f == DiskFormat.VHDX ? Math.max(4096, logical) : Math.max(512, logical);
                CreateOptions o;
                try {
                    o = new CreateOptions(f, t, s, parent, b, logical, phys);
                } catch (IllegalArgumentException e) {
                    throw new UserException(e.getMessage(), 2);
                }
                try (VirtualDisk d = VirtualDisks.create(file, o)) {
                    System.out.println("created " + file + ": " + f.id() + " " + t.id() + ", "
                        + Sizes.human(d.size()) + " (" + d.size() + " bytes)");
                }
                return 0;
            });
        }
    }

    @Command(name = "info", mixinStandardHelpOptions = true,
        description = "Show format, type, virtual size, block and sector sizes, parent chain, allocated bytes and log state.")
    static final class Info implements Callable<Integer> {
        @Parameters(index = "0", paramLabel = "FILE")
        Path file;
        @Option(names = "--json", description = "Print one JSON object.")
        boolean json;

        @Override
        public Integer call() {
            return guard(() -> {
                ImageInfo i = DiskOps.info(file);
                if (json) {
                    System.out.println(i.toJson());
                    return 0;
                }
                System.out.println("image:              " + i.path());
                System.out.println("format:             " + i.format());
                System.out.println("type:               " + i.type());
                System.out.println("virtual size:       " + Sizes.human(i.virtualSize()) + " (" + i.virtualSize() + " bytes)");
                if (i.blockSize() > 0) {
                    System.out.println("block size:         " + Sizes.human(i.blockSize()));
                }
                System.out.println("sector size:        " + i.logicalSectorSize() + " logical, " + i.physicalSectorSize() + " physical");
                System.out.println("file size:          " + Sizes.human(i.fileSize()) + " (" + i.fileSize() + " bytes)");
                System.out.println("allocated:          " + Sizes.human(i.allocatedBytes()) + " (" + i.allocatedBytes() + " bytes)");
                System.out.println("log:                " + i.logState());
                for (int k = 0; k < i.parentChain().size(); k++) {
                    System.out.println((k == 0 ? "parent chain:       " : "                    ") + i.parentChain().get(k));
                }
                i.details().forEach((k, v) -> System.out.println(String.format("%-20s%s", k + ":", v)));
                return 0;
            });
        }
    }

    @Command(name = "check", mixinStandardHelpOptions = true,
        description = {"Check an image's structures.",
            "Exit status: 0 clean (or all repaired), 1 problems found, 2 unreadable."})
    static final class Check implements Callable<Integer> {
        @Parameters(index = "0", paramLabel = "FILE")
        Path file;
        @Option(names = "--repair", description = "Fix what is safely fixable (VHD footer copies; VHDX log replay).")
        boolean repair;

        @Override
        public Integer call() {
            return guard(() -> {
                CheckReport r = DiskOps.check(file, repair);
                r.problems().forEach(p -> System.out.println("problem: " + p));
                r.repaired().forEach(p -> System.out.println("repaired: " + p));
                r.notes().forEach(p -> System.out.println("note: " + p));
                System.out.println(switch (r.exitCode()) {
                    case 0 -> "No problems found.";
                    case 1 -> r.problems().size() + " problem(s) found" + (repair ? "" : "; --repair may fix them");
                    default -> "The image cannot be read.";
                });
                return r.exitCode();
            });
        }
    }

    @Command(name = "convert", mixinStandardHelpOptions = true,
        description = {"Copy SRC into a new image DST in any format (a differencing chain is flattened).",
            "Sparse-aware: holes and unallocated blocks are not read, zero chunks are not written."})
    static final class Convert implements Callable<Integer> {
        @Parameters(index = "0", paramLabel = "SRC")
        Path src;
        @Parameters(index = "1", paramLabel = "DST")
        Path dst;
        @Option(names = "--format", paramLabel = "vhdx|vhd|raw", description = "Default: from DST's extension.")
        String format;
        @Option(names = "--type", paramLabel = "fixed|dynamic", description = "Default: dynamic.")
        String type = "dynamic";
        @Option(names = "--block-size", paramLabel = "B", description = "Block size of a VHDX/VHD destination.")
        String blockSize;

        @Override
        public Integer call() {
            return guard(() -> {
                DiskFormat f = format != null ? format(format) : formatFromName(dst);
                DiskType t = type(type);
                if (t == DiskType.DIFFERENCING) {
                    throw new UserException("convert makes fixed or dynamic images", 2);
                }
                long b = blockSize == null ? 0 : Sizes.parse(blockSize);
                long t0 = System.nanoTime();
                DiskOps.CopyResult r;
                try (ProgressBar bar = new ProgressBar("convert")) {
                    r = DiskOps.convert(src, dst, f, t, b, bar);
                }
                double s = (System.nanoTime() - t0) / 1e9;
                System.out.println(String.format(Locale.ROOT, "converted %s -> %s (%s): %s written, %s skipped, %.2f s",
                    src, dst, f.id(), Sizes.human(r.bytesWritten()), Sizes.human(r.bytesSkipped()), s));
                return 0;
            });
        }
    }

    @Command(name = "resize", mixinStandardHelpOptions = true,
        description = {"Change an image's virtual size.",
            "VHD and VHDX grow; VHDX and raw shrink only when the cut-off tail holds no data; VHD never shrinks."})
    static final class Resize implements Callable<Integer> {
        @Parameters(index = "0", paramLabel = "FILE")
        Path file;
        @Option(names = "--size", required = true, paramLabel = "S", description = "New virtual size (K/M/G/T).")
        String size;

        @Override
        public Integer call() {
            return guard(() -> {
                long n;
                try (ProgressBar bar = new ProgressBar("resize")) {
                    n = DiskOps.resize(file, Sizes.parse(size), bar);
                }
                System.out.println("resized " + file + " to " + Sizes.human(n) + " (" + n + " bytes)");
                return 0;
            });
        }
    }

    @Command(name = "compact", mixinStandardHelpOptions = true,
        description = "Release zero and unmapped blocks so the file shrinks (the image reads the same).")
    static final class Compact implements Callable<Integer> {
        @Parameters(index = "0", paramLabel = "FILE")
        Path file;

        @Override
        public Integer call() {
            return guard(() -> {
                DiskOps.CompactResult r;
                try (ProgressBar bar = new ProgressBar("compact")) {
                    r = DiskOps.compact(file, bar);
                }
                System.out.println("compacted " + file + ": file " + Sizes.human(r.fileSizeBefore()) + " -> "
                    + Sizes.human(r.fileSizeAfter()) + ", on disk " + Sizes.human(r.diskBytesBefore()) + " -> "
                    + Sizes.human(r.diskBytesAfter()));
                return 0;
            });
        }
    }

    @Command(name = "merge", mixinStandardHelpOptions = true,
        description = {"Merge a differencing image into its parent, or flatten its chain with --into.",
            "Into the parent: the child is deleted afterwards, as Hyper-V does (--keep-child keeps it).",
            "With --into NEW: the whole chain is written to a new image and left untouched."})
    static final class Merge implements Callable<Integer> {
        @Parameters(index = "0", paramLabel = "CHILD")
        Path child;
        @Option(names = "--into", paramLabel = "NEW", description = "Write the flattened chain to this new image.")
        Path into;
        @Option(names = "--format", paramLabel = "vhdx|vhd|raw", description = "Format of NEW (default: its extension).")
        String format;
        @Option(names = "--type", paramLabel = "fixed|dynamic", description = "Type of NEW (default dynamic).")
        String type = "dynamic";
        @Option(names = "--keep-child", description = "Keep CHILD after merging it into its parent.")
        boolean keepChild;

        @Override
        public Integer call() {
            return guard(() -> {
                DiskOps.CopyResult r;
                try (ProgressBar bar = new ProgressBar("merge")) {
                    if (into != null) {
                        DiskFormat f = format != null ? format(format) : formatFromName(into);
                        r = DiskOps.mergeInto(child, into, f, type(type), bar);
                    } else {
                        r = DiskOps.mergeIntoParent(child, keepChild, bar);
                    }
                }
                System.out.println("merged " + child + (into != null ? " into " + into : " into its parent")
                    + ": " + Sizes.human(r.bytesWritten()) + " written");
                return 0;
            });
        }
    }

    @Command(name = "set-parent", mixinStandardHelpOptions = true,
        description = {"Point differencing image CHILD at PARENT (after the parent moved or was renamed).",
            "PARENT must be the image CHILD was made from (VHD unique id); --force skips that check."})
    static final class SetParent implements Callable<Integer> {
        @Parameters(index = "0", paramLabel = "CHILD")
        Path child;
        @Parameters(index = "1", paramLabel = "PARENT")
        Path parent;
        @Option(names = "--force", description = "Skip the linkage check (the child may then read wrong data).")
        boolean force;

        @Override
        public Integer call() {
            return guard(() -> {
                DiskOps.setParent(child, parent, force);
                System.out.println(child + " now has parent " + parent);
                return 0;
            });
        }
    }
}
