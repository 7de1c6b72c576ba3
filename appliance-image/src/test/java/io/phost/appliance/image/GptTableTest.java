package io.phost.appliance.image;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class GptTableTest {
    @TempDir
    Path dir;

    private GptTable read(byte[] bytes) throws Exception {
        Path f = dir.resolve("gpt.img");
        Files.write(f, bytes);
        try (FileChannel ch = FileChannel.open(f, StandardOpenOption.READ)) {
            return GptTable.read(ch);
        }
    }

    /** A positional reader over a byte array, like FileChannel: -1 at the end. */
    static GptTable.Source source(byte[] bytes) {
        return (dst, position) -> {
            if (position >= bytes.length) {
                return -1;
            }
            int n = (int) Math.min(dst.remaining(), bytes.length - position);
            dst.put(bytes, (int) position, n);
            return n;
        };
    }

    @Test
    void shouldFindPartitionsByNameWithByteOffsets() throws Exception {
        byte[] t = GptFixture.table(4096, new GptFixture.Part("PHOSTBOOT", 2048, 2099),
            new GptFixture.Part("APPLCFG", 2100, 3000));
        GptTable gpt = read(t);
        assertEquals(2, gpt.partitions().size());
        GptTable.Partition cfg = gpt.byName("APPLCFG");
        assertEquals(2, cfg.index());
        assertEquals(2100L * 512, cfg.offset());
        assertEquals(901L * 512, cfg.length());
    }

    @Test
    void shouldRejectMissingNameWithNotFound() throws Exception {
        GptTable gpt = read(GptFixture.table(4096, new GptFixture.Part("X", 40, 50)));
        assertEquals(GptException.Reason.NOT_FOUND, assertThrows(GptException.class, () -> gpt.byName("APPLCFG")).reason());
    }

    @Test
    void shouldRejectDiskWithoutGptAsBadSignature() {
        GptException e = assertThrows(GptException.class, () -> read(new byte[4096]));
        assertEquals(GptException.Reason.BAD_SIGNATURE, e.reason());
        assertEquals(512, e.fileOffset());
    }

    @Test
    void shouldRejectFlippedHeaderByteAsBadChecksum() {
        byte[] t = GptFixture.table(4096, new GptFixture.Part("APPLCFG", 40, 50));
        t[512 + 40] ^= 1;
        assertEquals(GptException.Reason.BAD_CHECKSUM, assertThrows(GptException.class, () -> read(t)).reason());
    }

    @Test
    void shouldRejectFileEndingInsideEntryArrayAsTruncated() {
        byte[] t = GptFixture.table(4096, new GptFixture.Part("APPLCFG", 40, 50));
        byte[] cut = java.util.Arrays.copyOf(t, 1024 + 100);
        assertEquals(GptException.Reason.TRUNCATED, assertThrows(GptException.class, () -> read(cut)).reason());
    }

    @Test
    void shouldRejectPartitionOutsideUsableRange() throws IOException {
        byte[] t = GptFixture.table(4096, new GptFixture.Part("APPLCFG", 40, 99_999));
        GptException e = assertThrows(GptException.class, () -> read(t));
        assertEquals(GptException.Reason.BAD_PARTITION, e.reason());
        assertEquals(1024 + 32, e.fileOffset());
    }

    /** Any corruption either still parses or throws GptException: never another exception or a huge allocation. */
    @Test
    void shouldParseOrThrowGptExceptionForAnyMutation() throws Exception {
        byte[] good = GptFixture.table(4096, new GptFixture.Part("PHOSTBOOT", 2048, 2099),
            new GptFixture.Part("APPLCFG", 2100, 3000));
        Random rnd = new Random(8);
        for (int i = 0; i < 5_000; i++) {
            byte[] t = good.clone();
            int flips = 1 + rnd.nextInt(8);
            for (int k = 0; k < flips; k++) {
                // bias towards the header fields so mutations get past the checksum sometimes
                int at = rnd.nextBoolean() ? 512 + rnd.nextInt(92) : rnd.nextInt(t.length);
                t[at] = (byte) rnd.nextInt(256);
            }
            if (rnd.nextInt(4) == 0) {
                // re-sign the header so that the geometry checks themselves are exercised
                java.nio.ByteBuffer b = ByteBuffer.wrap(t).order(java.nio.ByteOrder.LITTLE_ENDIAN);
                b.putInt(512 + 12, 92);
                b.putInt(512 + 16, 0);
                java.util.zip.CRC32 c = new java.util.zip.CRC32();
                c.update(t, 512, 92);
                b.putInt(512 + 16, (int) c.getValue());
            }
            try {
                GptTable.read(source(t));
            } catch (GptException expected) {
                // fine: typed rejection
            }
        }
    }
}
