package io.phost.appliance.image;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.zip.CRC32;

/** Writes a minimal valid primary GPT (header at LBA 1, 128 entries of 128 bytes at LBA 2) for tests. */
final class GptFixture {
    private GptFixture() {}

    record Part(String name, long firstLba, long lastLba) {}

    static byte[] table(long diskSectors, Part... parts) {
        ByteBuffer b = ByteBuffer.allocate(34 * 512).order(ByteOrder.LITTLE_ENDIAN);
        int entries = 2 * 512;
        for (int i = 0; i < parts.length; i++) {
            int e = entries + i * 128;
            b.putLong(e, 0x11d2f81fc12a7328L); // any non-zero type GUID
            b.putLong(e + 8, 0x3bc93ec9a0004bbaL);
            b.putLong(e + 16, i + 1);
            b.putLong(e + 32, parts[i].firstLba());
            b.putLong(e + 40, parts[i].lastLba());
            String n = parts[i].name();
            for (int c = 0; c < n.length(); c++) {
                b.putChar(e + 56 + 2 * c, n.charAt(c));
            }
        }
        CRC32 crc = new CRC32();
        crc.update(b.array(), entries, 128 * 128);
        int h = 512;
        b.put(h, "EFI PART".getBytes());
        b.putInt(h + 8, 0x00010000);
        b.putInt(h + 12, 92);
        b.putLong(h + 24, 1);
        b.putLong(h + 32, diskSectors - 1);
        b.putLong(h + 40, 34);
        b.putLong(h + 48, diskSectors - 34);
        b.putLong(h + 72, 2);
        b.putInt(h + 80, 128);
        b.putInt(h + 84, 128);
        b.putInt(h + 88, (int) crc.getValue());
        CRC32 hc = new CRC32();
        hc.update(b.array(), h, 92);
        b.putInt(h + 16, (int) hc.getValue());
        return b.array();
    }

    static void write(Path file, long diskSectors, Part... parts) throws IOException {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE)) {
            ch.write(ByteBuffer.wrap(table(diskSectors, parts)), 0);
            ch.write(ByteBuffer.wrap(new byte[1]), diskSectors * 512 - 1);
        }
    }
}
