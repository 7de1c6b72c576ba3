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
        VhdCommand.Compare.class,
        VhdCommand.MapCmd.class,
        VhdMeasureCommand.class,
        VhdRebaseCommand.class,
        VhdSetCommand.class,
    },
    footer = {"", "Exit status: 0 done; 1 the operation failed or was refused (nothing was changed unless it says so);",
        "2 a usage error or an image phost cannot read (check: 0 clean, 1 problems, 2 unreadable;",
        "compare: 0 identical, 1 different, 2 error)."})
public final class VhdCommand implements Callable<Integer> {
    @picocli.CommandLine.Spec
    picocli.CommandLine.Model.CommandSpec spec;

    /** {@code phost vhd} alone: the usage on stderr and exit status 2, as for any other missing argument. */
    @Override
    public Integer call() {
        spec.commandLine().usage(System.err);
        return 2;
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
            throw new UserException(e.getFile() + " already exists (not replaced; --force replaces it)", 1, e);
        } catch (IOException e) {
            if (e instanceof io.phost.vhdx.vhd.VhdFormatException v
                && v.reason() == io.phost.vhdx.vhd.VhdFormatException.Reason.UNSUPPORTED) {
                throw new UserException(v.detail(), 1, e); // a request the format cannot do, not a bad file
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
            DiskFormat f = DiskFormat.parse(s);
            if (f == DiskFormat.PASSTHROUGH || f == DiskFormat.RBD) {
                throw new IllegalArgumentException("image tools work on image files, not host devices or rbd images");
            }
            return f;
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

    /**
     * The format named by a file's extension, for create/convert without --format: .vhd/.avhd VHD,
     * .raw/.img/.bin raw, .vhdx/.avhdx and anything else VHDX; formats phost does not write are refused.
     */
    static DiskFormat formatFromName(Path p) {
        String n = p.getFileName().toString().toLowerCase(Locale.ROOT);
        if (n.endsWith(".vhd") || n.endsWith(".avhd")) {
            return DiskFormat.VHD;
        }
        if (n.endsWith(".raw") || n.endsWith(".img") || n.endsWith(".bin")) {
            return DiskFormat.RAW;
        }
        for (String foreign : new String[] {"qcow2", "qcow", "vmdk", "vdi", "qed", "vhds"}) {
            if (n.endsWith("." + foreign)) {
                throw new UserException(p + ": phost does not write " + foreign + " images (it writes vhdx, vhd and raw);"
                    + " pick another name or pass --format", 2);
            }
        }
        return DiskFormat.VHDX;
    }

    /** The source format of -f, or null to recognise it from content. */
    static DiskFormat sourceFormat(String s) {
        return s == null ? null : format(s);
    }

    /**
     * Refuses to describe an arbitrary file as a raw disk: a file without a VHDX or VHD signature is taken as
     * raw only when -f raw says so or its name does (.raw/.img/.bin), since any file "is" a raw image.
     */
    static void requireImage(Path file, String format) throws IOException {
        if (format == null && VirtualDisks.detect(file) == DiskFormat.RAW && formatFromName(file) != DiskFormat.RAW) {
            throw new UserException(file + ": not a disk image (no VHDX or VHD signature); to read it as a raw disk, "
                + "pass --format raw", 2);
        }
    }

    @Command(name = "create", mixinStandardHelpOptions = true,
        description = {"Create a new image.",
            "The format defaults to the file's extension (.vhd, .raw/.img, else vhdx); a --parent makes a "
                + "differencing image of the parent's size."})
    static final class Create extends VhdVerb {
        @Parameters(index = "0", paramLabel = "FILE", description = "The image to create (must not exist unless --force).")
        Path file;
        @Option(names = "--force", description = "Replace an existing FILE (atomically, once the new image is complete).")
        boolean force;
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
        @Option(names = "--source", paramLabel = "SRC", description = "Fill the new image with SRC's content (a disk device,"
            + " a raw file or an image; New-VHD -SourceDisk); its size is SRC's.")
        Path source;

        @Override
        int run() throws IOException {
            DiskFormat f = format != null ? format(format) : formatFromName(file);
            if (source != null) {
                if (parent != null || size != null) {
                    throw new UserException("--source gives the content and the size: drop --size/--parent", 2);
                }
                DiskType st = type != null ? type(type) : DiskType.DYNAMIC;
                if (st == DiskType.DIFFERENCING) {
                    throw new UserException("--source makes a fixed or dynamic image", 2);
                }
                long b = blockSize == null ? 0 : Sizes.parse(blockSize);
                DiskOps.CopyResult r = DiskOps.convert(source, null, file, f, st, b, force, io.phost.vhdx.ops.Progress.NONE);
                long made = DiskOps.info(file).virtualSize();
                System.out.println("created " + file + " from " + source + ": " + f.id() + " " + st.id() + ", "
                    + Sizes.human(made) + " (" + made + " bytes), " + Sizes.human(r.bytesWritten()) + " of data");
                return 0;
            }
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
            if (t == DiskType.DIFFERENCING && size != null) {
                throw new UserException("--size cannot be used with --parent: a differencing image has its parent's size", 2);
            }
            if (f != DiskFormat.VHDX && ((physical != null && physical != 512) || logical != 512)) {
                throw new UserException(f.id() + " images have 512-byte sectors; --logical-sector/--physical-sector 4096"
                    + " need --format vhdx", 2);
            }
            long s = size == null ? 0 : Sizes.parse(size);
            long b = blockSize == null ? 0 : Sizes.parse(blockSize);
            if (s % logical != 0) {
                throw new UserException("--size must be a multiple of the " + logical + "-byte sector: " + size, 2);
            }
            if (b != 0 && Long.bitCount(b) != 1) {
                throw new UserException("--block-size must be a power of two: " + blockSize, 2);
            }
            int phys = physical != null ? physical : f == DiskFormat.VHDX ? Math.max(4096, logical) : Math.max(512, logical);
            CreateOptions o;
            try {
                o = new CreateOptions(f, t, s, parent, b, logical, phys);
            } catch (IllegalArgumentException e) {
                throw new UserException(e.getMessage(), 2);
            }
            long made = DiskOps.create(file, o, force);
            System.out.println("created " + file + ": " + f.id() + " " + t.id() + ", "
                + Sizes.human(made) + " (" + made + " bytes)");
            return 0;
        }
    }

    @Command(name = "info", mixinStandardHelpOptions = true,
        description = "Show format, type, virtual size, block and sector sizes, parent chain, allocated bytes and log state.")
    static final class Info extends VhdVerb.OnFile {
        @Option(names = "--json", description = "Print one JSON object (an array with --backing-chain); same as --output json.")
        boolean json;
        @picocli.CommandLine.Mixin
        OutputOption output = new OutputOption();
        @Option(names = {"-f", "--format"}, paramLabel = "vhdx|vhd|raw", description = "Read FILE as this format (default: from its content).")
        String format;
        @Option(names = "--backing-chain", description = "Also describe every parent, nearest first.")
        boolean backingChain;

        @Override
        int run() throws IOException {
            json |= output.json();
            requireImage(file, format);
            ImageInfo first = DiskOps.info(file, sourceFormat(format));
            java.util.List<ImageInfo> all = new java.util.ArrayList<>(java.util.List.of(first));
            if (backingChain) {
                for (String p : first.parentChain()) {
                    all.add(DiskOps.info(Path.of(p)));
                }
            }
            if (json) {
                System.out.println(backingChain
                    ? "[" + String.join(",\n", all.stream().map(ImageInfo::toJson).toList()) + "]" : first.toJson());
                return 0;
            }
            for (int k = 0; k < all.size(); k++) {
                if (k > 0) {
                    System.out.println();
                }
                print(all.get(k));
            }
            return 0;
        }

        private static void print(ImageInfo i) {
            {
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
                i.details().forEach((k, v) -> System.out.println(String.format("%-20s%s", k + ": ", v)));
            }
        }
    }

    @Command(name = "check", mixinStandardHelpOptions = true,
        description = {"Check an image's structures.",
            "Exit status: 0 clean (or all repaired), 1 problems found, 2 unreadable."})
    static final class Check extends VhdVerb.OnFile {
        @Option(names = "--repair", description = "Fix what is safely fixable (VHD footer copies; VHDX log replay).")
        boolean repair;
        @Option(names = {"-f", "--format"}, paramLabel = "vhdx|vhd|raw", description = "Check FILE as this format (default: from its content).")
        String format;
        @picocli.CommandLine.Mixin
        OutputOption output = new OutputOption();

        @Override
        int run() throws IOException {
            boolean json = output.json();
            CheckReport r = DiskOps.check(file, sourceFormat(format), repair);
            if (json) {
                System.out.println(r.toJson(file.toString()));
                return r.exitCode();
            }
            r.problems().forEach(p -> System.out.println("problem: " + p));
            r.repaired().forEach(p -> System.out.println("repaired: " + p));
            r.notes().forEach(p -> System.out.println("note: " + p));
            System.out.println(switch (r.exitCode()) {
                case 0 -> "No problems found.";
                case 1 -> r.problems().size() + " problem(s) found" + (repair ? "" : "; --repair may fix them");
                default -> "The image cannot be read.";
            });
            return r.exitCode();
        }
    }

    @Command(name = "convert", mixinStandardHelpOptions = true,
        description = {"Copy SRC into a new image DST in any format (a differencing chain is flattened).",
            "Sparse-aware: holes and unallocated blocks are not read, zero runs of -S bytes are not written.",
            "DST is built beside its final name and renamed into place when complete; an existing DST is",
            "replaced only with --force, never when it is SRC or one of SRC's parents.",
            "-n writes into an existing DST in place instead (as qemu-img convert -n); -B makes DST a",
            "differencing image of BACKING that stores only what differs from it."})
    static final class Convert extends VhdVerb {
        @Parameters(index = "0", paramLabel = "SRC")
        Path src;
        @Parameters(index = "1", paramLabel = "DST")
        Path dst;
        @Option(names = {"-O", "--format"}, paramLabel = "vhdx|vhd|raw", description = "Format of DST (default: from DST's extension; with -n from its content).")
        String format;
        @Option(names = {"-f", "--source-format"}, paramLabel = "vhdx|vhd|raw", description = "Read SRC as this format (default: from its content).")
        String sourceFormat;
        @Option(names = "--type", paramLabel = "fixed|dynamic", description = "Default: dynamic.")
        String type = "dynamic";
        @Option(names = "--block-size", paramLabel = "B", description = "Block size of a VHDX/VHD destination.")
        String blockSize;
        @Option(names = "--force", description = "Replace an existing DST (atomically, once the copy is complete).")
        boolean force;
        @Option(names = {"-n", "--no-create"}, description = "Write into the existing image DST (at least SRC's size), in place.")
        boolean noCreate;
        @Option(names = "--target-is-zero", description = "With -n: DST already reads as zeros, so zero ranges are not written.")
        boolean targetIsZero;
        @Option(names = {"-B", "--backing"}, paramLabel = "BACKING", description = "Make DST a differencing image of BACKING (same format and size) holding only what differs.")
        Path backing;
        @Option(names = {"-S", "--sparse-size"}, paramLabel = "S", description = "Zero runs of at least S bytes become holes (default 4K; 0: none; at most 1M).")
        String sparse;
        @Option(names = "--logical-sector", paramLabel = "512|4096", description = "Logical sector size of a VHDX DST (default: SRC's, else 512).")
        Integer logical;
        @Option(names = "--physical-sector", paramLabel = "512|4096", description = "Physical sector size of a VHDX DST (default: SRC's, else 4096).")
        Integer physical;
        @picocli.CommandLine.Mixin
        ProgressOptions progress = new ProgressOptions();

        @Override
        int run() throws IOException {
            DiskType t = type(type);
            if (t == DiskType.DIFFERENCING) {
                throw new UserException("convert makes fixed or dynamic images (-B makes a differencing one)", 2);
            }
            if (targetIsZero && !noCreate) {
                throw new UserException("--target-is-zero needs -n (a new image reads as zeros anyway)", 2);
            }
            if (noCreate && (backing != null || force || blockSize != null || !type.equals("dynamic") || logical != null
                || physical != null)) {
                throw new UserException("-n writes into DST as it is: -B, --force, --block-size, --type and sector sizes"
                    + " do not apply", 2);
            }
            for (Integer sec : new Integer[] {logical, physical}) {
                if (sec != null && sec != 512 && sec != 4096) {
                    throw new UserException("sector sizes are 512 or 4096: " + sec, 2);
                }
            }
            if (backing != null && (logical != null || physical != null)) {
                throw new UserException("-B takes the backing image's sector sizes", 2);
            }
            if (backing != null && !type.equals("dynamic")) {
                throw new UserException("-B makes a differencing image: drop --type", 2);
            }
            long granule = sparse == null ? 4096 : Sizes.parse(sparse);
            if (granule % 512 != 0 || granule > (1 << 20) || (granule != 0 && (1 << 20) % granule != 0)) {
                throw new UserException("-S must be 0 or a multiple of 512 that divides 1M: " + sparse, 2);
            }
            long b = blockSize == null ? 0 : Sizes.parse(blockSize);
            long t0 = System.nanoTime();
            DiskOps.CopyResult r;
            DiskFormat f;
            try (ProgressBar bar = new ProgressBar("convert", progress)) {
                if (noCreate) {
                    f = format != null ? format(format) : VirtualDisks.detect(dst);
                    r = io.phost.vhdx.ops.ImageConvert.into(src, sourceFormat(sourceFormat), dst,
                        format != null ? f : null, targetIsZero, granule, bar);
                } else {
                    f = format != null ? format(format) : formatFromName(dst);
                    if (backing == null && granule == 4096 && logical == null && physical == null) {
                        r = DiskOps.convert(src, sourceFormat(sourceFormat), dst, f, t, b, force, bar);
                    } else {
                        r = io.phost.vhdx.ops.ImageConvert.toNew(src, sourceFormat(sourceFormat), dst, f, t, b,
                            logical == null ? 0 : logical, physical == null ? 0 : physical, backing, granule, force, bar);
                    }
                }
            }
            double s = (System.nanoTime() - t0) / 1e9;
            progress.say(String.format(Locale.ROOT, "converted %s -> %s (%s%s): %s written, %s skipped, %.2f s",
                src, dst, f.id(), backing != null ? ", parent " + backing : noCreate ? ", in place" : "",
                Sizes.human(r.bytesWritten()), Sizes.human(r.bytesSkipped()), s));
            return 0;
        }
    }

    @Command(name = "resize", mixinStandardHelpOptions = true,
        description = {"Change an image's virtual size (absolute, or relative: +1G, -512M).",
            "VHD and VHDX grow; shrinking needs --shrink and is refused (file unchanged) unless the cut-off",
            "tail reads as zeros (VHDX, raw); VHD never shrinks."})
    static final class Resize extends VhdVerb.OnFile {
        @Option(names = "--size", paramLabel = "S", description = "New virtual size (K/M/G/T), or +S/-S relative to the current one.")
        String size;
        @Option(names = "--shrink", description = "Allow the size to get smaller (as qemu-img resize --shrink).")
        boolean shrink;
        @Option(names = "--to-minimum-size", description = "Shrink to the end of the last data, rounded up to 1 MiB"
            + " (Resize-VHD -ToMinimumSize; implies --shrink).")
        boolean toMinimum;
        @picocli.CommandLine.Mixin
        ProgressOptions progress = new ProgressOptions();

        @Override
        int run() throws IOException {
            if ((size == null) == !toMinimum) {
                throw new UserException("resize takes --size or --to-minimum-size, one of them", 2);
            }
            long n;
            if (toMinimum) {
                n = progress.withBar("resize", bar -> io.phost.vhdx.ops.ImageFacts.shrinkToMinimum(file, bar));
            } else {
                long current = DiskOps.info(file).virtualSize();
                long wanted = Sizes.parseRelative(size, current);
                if (wanted <= 0 || wanted % 512 != 0) {
                    throw new UserException("the new size must be a positive multiple of 512 bytes: " + size + " gives " + wanted, 2);
                }
                n = progress.withBar("resize", bar -> DiskOps.resize(file, wanted, shrink, bar));
            }
            progress.say("resized " + file + " to " + Sizes.human(n) + " (" + n + " bytes)");
            return 0;
        }
    }

    @Command(name = "compact", mixinStandardHelpOptions = true,
        description = {"Release zero and unmapped blocks so the file shrinks (the image reads the same).",
            "In place, as Optimize-VHD: the same file and identity (children stay linked); the file is never",
            "made larger. A fixed VHD/VHDX is left unchanged (as Optimize-VHD does), with a note saying so."})
    static final class Compact extends VhdVerb.OnFile {
        @Option(names = "--mode", paramLabel = "full|quick|retrim", description = "full (default; also prezeroed): read the data and"
            + " drop zeros too; quick (also pretrimmed): drop only what the metadata marks free; retrim: change nothing in"
            + " the image, punch the file space it does not use and its zero pages out of the file (Optimize-VHD -Mode).")
        String mode = "full";
        @picocli.CommandLine.Mixin
        ProgressOptions progress = new ProgressOptions();

        @Override
        int run() throws IOException {
            io.phost.vhdx.ops.CompactMode m;
            try {
                m = io.phost.vhdx.ops.CompactMode.parse(mode);
            } catch (IllegalArgumentException e) {
                throw new UserException(e.getMessage(), 2);
            }
            DiskOps.CompactResult r = progress.withBar("compact", bar -> DiskOps.compact(file, m, bar));
            if (r.note() != null) {
                progress.say(file + ": " + r.note());
                return 0;
            }
            progress.say("compacted " + file + ": file " + Sizes.human(r.fileSizeBefore()) + " -> "
                + Sizes.human(r.fileSizeAfter()) + ", on disk " + Sizes.human(r.diskBytesBefore()) + " -> "
                + Sizes.human(r.diskBytesAfter()));
            return 0;
        }
    }

    @Command(name = "merge", mixinStandardHelpOptions = true,
        description = {"Merge a differencing image into its parent, or flatten its chain with --into.",
            "Into the parent: the child is deleted afterwards, as Hyper-V does (--keep-child keeps it).",
            "A VHDX merge that was killed is finished by running the same command again.",
            "With --to ANCESTOR: every image from CHILD up is merged into ANCESTOR, step by step.",
            "With --into NEW: the whole chain is written to a new image and left untouched."})
    static final class Merge extends VhdVerb {
        @Parameters(index = "0", paramLabel = "CHILD")
        Path child;
        @Option(names = "--into", paramLabel = "NEW", description = "Write the flattened chain to this new image.")
        Path into;
        @Option(names = "--to", paramLabel = "ANCESTOR", description = "Merge every image from CHILD up into this ancestor"
            + " (Merge-VHD -DestinationPath); the merged images are deleted.")
        Path to;
        @Option(names = {"-O", "--format"}, paramLabel = "vhdx|vhd|raw", description = "Format of NEW (default: its extension).")
        String format;
        @Option(names = "--type", paramLabel = "fixed|dynamic", description = "Type of NEW (default dynamic).")
        String type = "dynamic";
        @Option(names = "--keep-child", description = "Keep CHILD after merging it into its parent.")
        boolean keepChild;
        @Option(names = "--force", description = "Replace an existing NEW (never one of the chain's own files).")
        boolean force;
        @picocli.CommandLine.Mixin
        ProgressOptions progress = new ProgressOptions();

        @Override
        int run() throws IOException {
            if (into != null && to != null) {
                throw new UserException("--into and --to exclude each other", 2);
            }
            if (to != null && keepChild) {
                throw new UserException("--keep-child works with a merge into the parent only", 2);
            }
            DiskOps.CopyResult r = progress.withBar("merge", bar -> {
                if (to != null) {
                    return DiskOps.mergeIntoAncestor(child, to, bar);
                } else if (into != null) {
                    DiskFormat f = format != null ? format(format) : formatFromName(into);
                    return DiskOps.mergeInto(child, into, f, type(type), force, bar);
                }
                return DiskOps.mergeIntoParent(child, keepChild, bar);
            });
            progress.say("merged " + child + (into != null ? " into " + into : to != null ? " into " + to : " into its parent")
                + ": " + Sizes.human(r.bytesWritten()) + " written");
            return 0;
        }
    }

    @Command(name = "set-parent", mixinStandardHelpOptions = true,
        description = {"Point differencing image CHILD at PARENT (after the parent moved or was renamed).",
            "PARENT must be the image CHILD was made from (VHD unique id, VHDX DataWriteGuid); --force skips",
            "that check. CHILD keeps its own identity, so images made from CHILD stay linked to it."})
    static final class SetParent extends VhdVerb {
        @Parameters(index = "0", paramLabel = "CHILD")
        Path child;
        @Parameters(index = "1", paramLabel = "PARENT")
        Path parent;
        @Option(names = "--force", description = "Skip the linkage check (the child may then read wrong data).")
        boolean force;

        @Override
        int run() throws IOException {
            if (java.nio.file.Files.exists(child) && java.nio.file.Files.exists(parent)
                && java.nio.file.Files.isSameFile(child, parent)) {
                throw new UserException("CHILD and PARENT are the same file (" + child + "); an image cannot be its own parent", 2);
            }
            DiskOps.setParent(child, parent, force);
            System.out.println(child + " now has parent " + parent);
            return 0;
        }
    }

    @Command(name = "compare", mixinStandardHelpOptions = true,
        description = {"Compare what two images read (any formats; a chain reads as a whole), as qemu-img compare.",
            "A larger image's extra area must read as zeros unless --strict.",
            "Exit status: 0 identical, 1 different, 2 error."})
    static final class Compare extends VhdVerb {
        @Parameters(index = "0", paramLabel = "A")
        Path a;
        @Parameters(index = "1", paramLabel = "B")
        Path b;
        @Option(names = {"-f", "--format-a"}, paramLabel = "vhdx|vhd|raw", description = "Read A as this format.")
        String formatA;
        @Option(names = {"-F", "--format-b"}, paramLabel = "vhdx|vhd|raw", description = "Read B as this format.")
        String formatB;
        @Option(names = {"-s", "--strict"}, description = "Images of different sizes are different.")
        boolean strict;
        @picocli.CommandLine.Mixin
        ProgressOptions progress = new ProgressOptions();

        @Override
        int run() throws IOException {
            io.phost.vhdx.ops.ImageCompare.Result r;
            try (VirtualDisk da = open(a, formatA); VirtualDisk db = open(b, formatB);
                 ProgressBar bar = new ProgressBar("compare", progress)) {
                r = io.phost.vhdx.ops.ImageCompare.compare(da, db, strict, bar);
            }
            progress.say(r.identical() ? "Images are identical." : "Images differ: " + r.reason() + ".");
            return r.identical() ? 0 : 1;
        }
    }

    @Command(name = "map", mixinStandardHelpOptions = true,
        description = {"List FILE's extents (a chain as a whole): runs that may hold data and runs that read as",
            "zeros without being stored, as qemu-img map."})
    static final class MapCmd extends VhdVerb.OnFile {
        @Option(names = {"-f", "--format"}, paramLabel = "vhdx|vhd|raw", description = "Read FILE as this format.")
        String format;
        @picocli.CommandLine.Mixin
        OutputOption output = new OutputOption();

        @Override
        int run() throws IOException {
            boolean json = output.json();
            java.util.List<io.phost.vhdx.ops.ImageMap.Extent> extents;
            try (VirtualDisk d = open(file, format)) {
                extents = io.phost.vhdx.ops.ImageMap.of(d);
            }
            if (json) {
                System.out.println(io.phost.vhdx.ops.ImageMap.toJson(extents));
                return 0;
            }
            System.out.println(String.format("%-20s%-20s%s", "Offset", "Length", "Kind"));
            for (io.phost.vhdx.ops.ImageMap.Extent e : extents) {
                System.out.println(String.format("0x%-18x0x%-18x%s", e.start(), e.length(), e.data() ? "data" : "zero"));
            }
            return 0;
        }
    }

    /** Opens an image read-only as {@code format}, or as its content says. */
    static VirtualDisk open(Path p, String format) throws IOException {
        return format == null ? VirtualDisks.open(p, true) : VirtualDisks.open(p, format(format), true);
    }
}
