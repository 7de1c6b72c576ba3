package io.phost.appliance.vhd;

import io.phost.appliance.UserException;
import io.phost.vhdx.DiskFormat;
import io.phost.vhdx.DiskType;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.ops.ImageMeasure;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.io.IOException;
import java.nio.file.Path;

/** {@code phost vhd measure}: the file size a conversion (or a new image) needs, as {@code qemu-img measure}. */
@Command(name = "measure", mixinStandardHelpOptions = true,
    description = {"Show the file size converting FILE (or a new image of --size) to -O needs, as qemu-img measure:",
        "required (a dynamic image with FILE's allocated blocks; an upper bound, exact when they hold data)",
        "and fully allocated (every block present). Raw: the virtual size for both."})
final class VhdMeasureCommand extends VhdVerb {
    @Parameters(index = "0", arity = "0..1", paramLabel = "FILE", description = "The image to measure (or --size).")
    Path file;
    @Option(names = "--size", paramLabel = "S", description = "Measure a new, empty image of this size instead of FILE.")
    String size;
    @Option(names = {"-O", "--output-format"}, paramLabel = "vhdx|vhd|raw", description = "Format to measure for (default vhdx).")
    String outputFormat = "vhdx";
    @Option(names = {"-f", "--format"}, paramLabel = "vhdx|vhd|raw", description = "Read FILE as this format (default: from its content).")
    String format;
    @Option(names = "--type", paramLabel = "fixed|dynamic", description = "Type of the image measured for (default dynamic).")
    String type = "dynamic";
    @Option(names = "--block-size", paramLabel = "B", description = "Block size of the image measured for.")
    String blockSize;
    @picocli.CommandLine.Mixin
    OutputOption output = new OutputOption();

    @Override
    int run() throws IOException {
        boolean json = output.json();
        if ((file == null) == (size == null)) {
            throw new UserException("measure takes FILE or --size, one of them", 2);
        }
        DiskFormat f = VhdCommand.format(outputFormat);
        DiskType t = VhdCommand.type(type);
        if (t == DiskType.DIFFERENCING) {
            throw new UserException("measure sizes fixed or dynamic images", 2);
        }
        long b = blockSize == null ? 0 : Sizes.parse(blockSize);
        ImageMeasure.Result r;
        if (file != null) {
            try (VirtualDisk d = VhdCommand.open(file, format)) {
                r = ImageMeasure.of(d, f, t, b);
            }
        } else {
            long s = Sizes.parse(size);
            if (s <= 0 || s % 512 != 0) {
                throw new UserException("--size must be a positive multiple of 512: " + size, 2);
            }
            r = ImageMeasure.ofSize(s, f, t, b, 512);
        }
        if (json) {
            System.out.println(r.toJson());
        } else {
            System.out.println("required size: " + r.required());
            System.out.println("fully allocated size: " + r.fullyAllocated());
        }
        return 0;
    }
}
