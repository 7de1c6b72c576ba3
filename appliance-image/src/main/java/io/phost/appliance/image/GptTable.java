package io.phost.appliance.image;

import io.phost.appliance.image.GptException.Reason;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.CRC32;

/**
 * Reads the primary GUID partition table of a disk or disk image (512-byte logical sectors), enough to
 * find a partition by name. Every number read from the disk is checked before use; failures are
 * {@link GptException}s naming the reason and offset.
 * <pre>
 * GPT header at LBA 1 (little-endian):
 *  +0  Signature "EFI PART" (8)     +8  Revision (u32)          +12 HeaderSize (u32, 92..512)
 *  +16 HeaderCRC32 (u32, over HeaderSize bytes with this field 0) +20 Reserved (u32)
 *  +24 MyLBA (u64)                  +32 AlternateLBA (u64)
 *  +40 FirstUsableLBA (u64)         +48 LastUsableLBA (u64)     +56 DiskGUID (16)
 *  +72 PartitionEntryLBA (u64)      +80 NumberOfEntries (u32)   +84 SizeOfEntry (u32, 128 * 2^n)
 *  +88 EntryArrayCRC32 (u32)
 * Partition entry (SizeOfEntry bytes each, at PartitionEntryLBA):
 *  +0  TypeGUID (16, all zero = unused)  +16 UniqueGUID (16)
 *  +32 StartingLBA (u64)            +40 EndingLBA (u64, inclusive)  +48 Attributes (u64)
 *  +56 Name (72 bytes, UTF-16LE, NUL-padded)
 * </pre>
 */
public final class GptTable {
    public static final int SECTOR = 512;
    static final long HEADER_OFFSET = SECTOR;
    static final byte[] SIGNATURE = "EFI PART".getBytes(StandardCharsets.US_ASCII);
    static final int HEADER_SIZE_OFFSET = 12;
    static final int HEADER_CRC_OFFSET = 16;
    static final int FIRST_USABLE_OFFSET = 40;
    static final int LAST_USABLE_OFFSET = 48;
    static final int ENTRY_LBA_OFFSET = 72;
    static final int ENTRY_COUNT_OFFSET = 80;
    static final int ENTRY_SIZE_OFFSET = 84;
    static final int ENTRY_CRC_OFFSET = 88;
    static final int ENTRY_START_OFFSET = 32;
    static final int ENTRY_END_OFFSET = 40;
    static final int ENTRY_NAME_OFFSET = 56;
    static final int ENTRY_NAME_LENGTH = 72;
    /** Bounds the entry array read into memory: 1 MiB covers every table real tools write (128 x 128 B). */
    static final int MAX_ENTRY_ARRAY_BYTES = 1 << 20;

    /** One used partition: byte offset and length on the disk. */
    public record Partition(int index, String name, long offset, long length) {}

    private final List<Partition> partitions;

    private GptTable(List<Partition> partitions) {
        this.partitions = partitions;
    }

    public List<Partition> partitions() {
        return partitions;
    }

    public Partition byName(String name) throws GptException {
        for (Partition p : partitions) {
            if (p.name().equals(name)) {
                return p;
            }
        }
        throw new GptException(Reason.NOT_FOUND, HEADER_OFFSET, "no partition named " + name);
    }

    public static GptTable read(FileChannel ch) throws IOException, GptException {
        return read(ch::read);
    }

    /** Positional reads: {@link FileChannel#read(ByteBuffer, long)}, or a byte array in tests. */
    @FunctionalInterface
    interface Source {
        int read(ByteBuffer dst, long position) throws IOException;
    }

    static GptTable read(Source ch) throws IOException, GptException {
        ByteBuffer h = readFully(ch, HEADER_OFFSET, SECTOR);
        for (int i = 0; i < SIGNATURE.length; i++) {
            if (h.get(i) != SIGNATURE[i]) {
                throw new GptException(Reason.BAD_SIGNATURE, HEADER_OFFSET, "LBA 1 is not a GPT header");
            }
        }
        int headerSize = h.getInt(HEADER_SIZE_OFFSET);
        if (headerSize < 92 || headerSize > SECTOR) {
            throw new GptException(Reason.BAD_GEOMETRY, HEADER_OFFSET + HEADER_SIZE_OFFSET, "header size " + headerSize);
        }
        int storedCrc = h.getInt(HEADER_CRC_OFFSET);
        h.putInt(HEADER_CRC_OFFSET, 0);
        int crc = crc32(h, 0, headerSize);
        if (crc != storedCrc) {
            throw new GptException(Reason.BAD_CHECKSUM, HEADER_OFFSET + HEADER_CRC_OFFSET,
                String.format("header CRC expected=0x%08x actual=0x%08x", storedCrc, crc));
        }
        long firstUsable = h.getLong(FIRST_USABLE_OFFSET);
        long lastUsable = h.getLong(LAST_USABLE_OFFSET);
        long entryLba = h.getLong(ENTRY_LBA_OFFSET);
        long count = Integer.toUnsignedLong(h.getInt(ENTRY_COUNT_OFFSET));
        long entrySize = Integer.toUnsignedLong(h.getInt(ENTRY_SIZE_OFFSET));
        if (entrySize < 128 || entrySize % 128 != 0 || Long.bitCount(entrySize / 128) != 1
            || count * entrySize > MAX_ENTRY_ARRAY_BYTES) {
            throw new GptException(Reason.BAD_GEOMETRY, HEADER_OFFSET + ENTRY_COUNT_OFFSET,
                "entries=" + count + " entrySize=" + entrySize);
        }
        if (entryLba < 2 || entryLba > Long.MAX_VALUE / SECTOR || firstUsable > lastUsable || lastUsable > Long.MAX_VALUE / SECTOR) {
            throw new GptException(Reason.BAD_GEOMETRY, HEADER_OFFSET + ENTRY_LBA_OFFSET,
                "entryLba=" + entryLba + " usable=" + firstUsable + ".." + lastUsable);
        }
        long arrayOffset = entryLba * SECTOR;
        int arrayBytes = (int) (count * entrySize);
        ByteBuffer e = readFully(ch, arrayOffset, arrayBytes);
        int storedArrayCrc = h.getInt(ENTRY_CRC_OFFSET);
        int arrayCrc = crc32(e, 0, arrayBytes);
        if (arrayCrc != storedArrayCrc) {
            throw new GptException(Reason.BAD_CHECKSUM, HEADER_OFFSET + ENTRY_CRC_OFFSET,
                String.format("entry array CRC expected=0x%08x actual=0x%08x", storedArrayCrc, arrayCrc));
        }
        List<Partition> parts = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            int base = (int) (i * entrySize);
            if (e.getLong(base) == 0 && e.getLong(base + 8) == 0) {
                continue; // unused entry
            }
            long start = e.getLong(base + ENTRY_START_OFFSET);
            long end = e.getLong(base + ENTRY_END_OFFSET);
            if (start < firstUsable || end > lastUsable || end < start) {
                throw new GptException(Reason.BAD_PARTITION, arrayOffset + base + ENTRY_START_OFFSET,
                    "partition " + (i + 1) + " LBAs " + start + ".." + end + " outside " + firstUsable + ".." + lastUsable);
            }
            parts.add(new Partition(i + 1, name(e, base + ENTRY_NAME_OFFSET), start * SECTOR, (end - start + 1) * SECTOR));
        }
        return new GptTable(List.copyOf(parts));
    }

    private static String name(ByteBuffer e, int at) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < ENTRY_NAME_LENGTH; i += 2) {
            char c = e.getChar(at + i);
            if (c == 0) {
                break;
            }
            sb.append(c);
        }
        return sb.toString();
    }

    private static int crc32(ByteBuffer b, int from, int length) {
        CRC32 crc = new CRC32();
        crc.update(b.duplicate().position(from).limit(from + length));
        return (int) crc.getValue();
    }

    private static ByteBuffer readFully(Source ch, long offset, int length) throws IOException, GptException {
        ByteBuffer b = ByteBuffer.allocate(length).order(ByteOrder.LITTLE_ENDIAN);
        while (b.hasRemaining()) {
            int n = ch.read(b, offset + b.position());
            if (n < 0) {
                throw new GptException(Reason.TRUNCATED, offset + b.position(), "file ends; " + b.remaining() + " bytes missing");
            }
        }
        return b.clear();
    }
}
