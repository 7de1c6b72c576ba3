package io.phost.storage.backend;

import io.phost.storage.tools.Proc;
import io.phost.vhdx.RawDisk;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * A loop device as a pass-through disk. Recipe: {@code truncate -s 16M f; losetup -f --show f}; detached
 * in cleanup. Loop devices do not implement SG_IO, so the probe must say so and I/O is translated.
 */
class PassThroughDiskTest {
    @TempDir
    Path dir;
    String loop;

    @BeforeEach
    void attach() throws Exception {
        assumeTrue(Proc.exists("losetup"), "losetup (util-linux) not installed");
        assumeTrue("root".equals(System.getProperty("user.name")), "loop devices need root");
        Path backing = dir.resolve("backing.img");
        RawDisk.createSparse(backing, 16L << 20);
        Proc.Result r = Proc.run(30, "losetup", "-f", "--show", backing.toString());
        assumeTrue(r.exit() == 0, "losetup failed: " + r.out());
        loop = r.out().trim();
    }

    @AfterEach
    void detach() throws Exception {
        if (loop != null) {
            Proc.run(30, "losetup", "-d", loop);
        }
    }

    @Test
    void shouldOpenLoopDeviceExclusivelyWithODirectAndTranslateIoBecauseItHasNoSgIo() throws Exception {
        try (RawDisk dev = RawDisk.openDevice(Path.of(loop), false); Arena a = Arena.ofConfined()) {
            assertTrue(dev.blockDevice());
            assertTrue(dev.direct(), "O_DIRECT on the device");
            assertEquals(16L << 20, dev.size());
            assertTrue(dev.capabilities().passThrough(), "a block device is a pass-through candidate");
            assertFalse(SgIo.supported(dev.capabilities().fd()), "loop devices have no SG_IO");
            assertThrows(IOException.class, () -> RawDisk.openDevice(Path.of(loop), false), "O_EXCL");
            MemorySegment w = a.allocate(8192, 4096);
            w.fill((byte) 0x3C);
            dev.write(1 << 20, w);
            dev.flush();
            dev.unmap(1 << 20, 4096); // fallocate(PUNCH_HOLE) on a block device = discard
            MemorySegment back = a.allocate(8192, 4096);
            dev.read(1 << 20, back);
            assertEquals(0, back.get(ValueLayout.JAVA_BYTE, 0), "discarded range reads zeros");
            assertEquals(0x3C, back.get(ValueLayout.JAVA_BYTE, 4096));
        }
        try (FileChannel ch = FileChannel.open(Path.of(loop), StandardOpenOption.READ)) {
            ByteBuffer b = ByteBuffer.allocate(1);
            ch.read(b, (1 << 20) + 4096);
            assertEquals(0x3C, b.get(0), "the bytes are on the device");
        }
    }
}
