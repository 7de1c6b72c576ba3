package io.phost.vhdx;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;

/**
 * The one door to every image format: recognises the format from the file's content (never its name),
 * opens it, and creates new images.
 *
 * <p>Recognition, in order:
 * <ol>
 *   <li>{@code "vhdxfile"} at offset 0: VHDX (the file type identifier of MS-VHDX 2.2.1);</li>
 *   <li>{@code "conectix"} in the last 512 bytes (the VHD footer) or at offset 0 (the footer copy that
 *       dynamic and differencing VHDs keep there): VHD;</li>
 *   <li>anything else: raw.</li>
 * </ol>
 * A raw disk whose guest happened to write "conectix" into its last sector would be recognised as a VHD;
 * callers that hand a raw file to a guest for writing should name the format with
 * {@link #open(Path, DiskFormat, boolean)} instead (qemu has the same hazard and warns about probing).
 */
public final class VirtualDisks {
    static final byte[] VHDX_SIGNATURE = "vhdxfile".getBytes(StandardCharsets.US_ASCII);
    static final byte[] VHD_COOKIE = "conectix".getBytes(StandardCharsets.US_ASCII);

    private VirtualDisks() {}

    /** Recognises the format of {@code path} from its content. */
    public static DiskFormat detect(Path path) throws IOException {
        try (PosixFile f = PosixFile.open(path, true); Arena arena = Arena.ofConfined()) {
            return detect(f, arena);
        }
    }

    static DiskFormat detect(PosixFile f, Arena arena) throws IOException {
        long size = f.size();
        MemorySegment head = arena.allocate(8);
        if (size >= 8) {
            f.readFully(head, 0);
            if (matches(head, VHDX_SIGNATURE)) {
                return DiskFormat.VHDX;
            }
            if (matches(head, VHD_COOKIE)) {
                return DiskFormat.VHD;
            }
        }
        if (size >= 512) {
            f.readFully(head, size - 512);
            if (matches(head, VHD_COOKIE)) {
                return DiskFormat.VHD;
            }
        }
        return DiskFormat.RAW;
    }

    private static boolean matches(MemorySegment seg, byte[] expected) {
        for (int i = 0; i < expected.length; i++) {
            if (seg.get(java.lang.foreign.ValueLayout.JAVA_BYTE, i) != expected[i]) {
                return false;
            }
        }
        return true;
    }

    /** Opens {@code path} in the format its content names (differencing images open their parent chain). */
    public static VirtualDisk open(Path path, boolean readOnly) throws IOException {
        return open(path, detect(path), readOnly);
    }

    /** Opens {@code path} as {@code format} without probing. */
    public static VirtualDisk open(Path path, DiskFormat format, boolean readOnly) throws IOException {
        return switch (format) {
            case RAW -> RawDisk.open(path, readOnly);
            case VHD -> io.phost.vhdx.vhd.VhdDisk.open(path, readOnly);
            case VHDX -> FormatHooks.openVhdx(path, readOnly);
        };
    }

    /** Creates a new image (the file must not exist) and returns it open read-write. */
    public static VirtualDisk create(Path path, CreateOptions options) throws IOException {
        return switch (options.format()) {
            case RAW -> {
                if (options.logicalSectorSize() != 512) {
                    throw new IllegalArgumentException("raw images have 512-byte logical sectors");
                }
                yield RawDisk.create(path, options.size(), options.type() == DiskType.FIXED);
            }
            case VHD -> io.phost.vhdx.vhd.VhdDisk.create(path, options);
            case VHDX -> FormatHooks.createVhdx(path, options);
        };
    }
}
