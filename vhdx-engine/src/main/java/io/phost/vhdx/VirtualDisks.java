package io.phost.vhdx;

import io.phost.core.sys.PosixFile;

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
 *   <li>two of the VHDX headers ({@code "head"} at 64 and 128 KiB) and region tables ({@code "regi"} at 192
 *       and 256 KiB) behind a damaged identifier: VHDX, so that opening it reports the damage instead of showing the
 *       image's container bytes as a raw disk;</li>
 *   <li>the signature of a format phost does not read (qcow2 {@code QFI\xfb}, QED {@code QED\0}, VMDK
 *       {@code KDMV}/{@code COWD}/{@code "# Disk DescriptorFile"}, VDI {@code 0xbeda107f} at 0x40):
 *       {@link UnsupportedImageException} naming it;</li>
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
            MemorySegment tail = arena.allocate(8);
            f.readFully(tail, size - 512);
            if (matches(tail, VHD_COOKIE)) {
                return DiskFormat.VHD;
            }
        }
        if (size >= 8 && looksLikeVhdx(f, arena, size)) {
            return DiskFormat.VHDX;
        }
        String foreign = size >= 8 ? foreignFormat(f, arena, head, size) : null;
        if (foreign != null) {
            throw new UnsupportedImageException(f.path(), foreign);
        }
        return DiskFormat.RAW;
    }

    /**
     * A VHDX whose file identifier is damaged: at least two of the four header and region table signatures
     * where VHDX keeps them (one could be a raw guest's bytes; two at exactly these offsets are not).
     */
    private static boolean looksLikeVhdx(PosixFile f, Arena arena, long size) throws IOException {
        MemorySegment sig = arena.allocate(4);
        int found = 0;
        for (long[] at : new long[][] {{64 << 10, HEAD}, {128 << 10, HEAD}, {192 << 10, REGI}, {256 << 10, REGI}}) {
            if (size >= at[0] + 4) {
                f.readFully(sig, at[0]);
                if (sig.get(java.lang.foreign.ValueLayout.JAVA_INT_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN), 0)
                    == (int) at[1]) {
                    found++;
                }
            }
        }
        return found >= 2;
    }

    private static final long HEAD = 0x64616568L; // "head" little-endian
    private static final long REGI = 0x69676572L; // "regi" little-endian

    /** The name of a known foreign image format whose signature {@code head} (the first 8 bytes) carries. */
    private static String foreignFormat(PosixFile f, Arena arena, MemorySegment head, long size) throws IOException {
        if (startsWith(head, new byte[] {'Q', 'F', 'I', (byte) 0xfb})) {
            return "qcow2";
        }
        if (startsWith(head, new byte[] {'Q', 'E', 'D', 0})) {
            return "qed";
        }
        if (startsWith(head, new byte[] {'K', 'D', 'M', 'V'}) || startsWith(head, new byte[] {'C', 'O', 'W', 'D'})) {
            return "vmdk";
        }
        if (size >= 21) {
            MemorySegment text = arena.allocate(21);
            f.readFully(text, 0);
            if (new String(text.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE), StandardCharsets.US_ASCII)
                .equals("# Disk DescriptorFile")) {
                return "vmdk";
            }
        }
        if (size >= 0x44) {
            MemorySegment magic = arena.allocate(4);
            f.readFully(magic, 0x40);
            if (magic.get(java.lang.foreign.ValueLayout.JAVA_INT_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN), 0)
                == 0xbeda107f) {
                return "vdi";
            }
        }
        return null;
    }

    private static boolean startsWith(MemorySegment seg, byte[] prefix) {
        for (int i = 0; i < prefix.length; i++) {
            if (seg.get(java.lang.foreign.ValueLayout.JAVA_BYTE, i) != prefix[i]) {
                return false;
            }
        }
        return true;
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
            case PASSTHROUGH -> RawDisk.openDevice(path, readOnly);
            case RBD -> throw new IllegalArgumentException("an rbd image is not a file; the storage core opens it through librbd");
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
            case PASSTHROUGH -> throw new IllegalArgumentException("a passthrough disk is a host device; it cannot be created");
            case RBD -> throw new IllegalArgumentException("an rbd image is created in Ceph (rbd create), not as a file");
        };
    }
}
