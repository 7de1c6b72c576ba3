package io.phost.vhdx.ops;

import io.phost.core.sys.PosixFile;
import io.phost.vhdx.RawDisk;
import io.phost.vhdx.VirtualDisks;
import io.phost.vhdx.vhd.VhdDisk;
import io.phost.vhdx.vhdx.VhdxDisk;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.List;

/**
 * Optimize-VHD -Mode Retrim: hands the space an image does not use back to the file system (punched holes)
 * without changing the image: its BAT, block states, size and identity stay as they were, so it reads the
 * same and children stay linked. Punched: file ranges no structure and no present block uses (space of
 * unmapped or zeroed blocks, blocks a crash left unreferenced, VHD room before the footer) and 4 KiB-aligned
 * runs of zeros inside the data of present blocks (a hole reads zeros too). Raw images: their zero runs.
 * <pre>
 *   file:  | headers, log, regions | block A (data 0 0 0 data) | unused | block B | footer |
 *   after: | headers, log, regions | block A (data hole  data) | hole   | block B | footer |
 * </pre>
 * Only the file's holes change, never a byte a reader sees, so a kill at any point leaves the image as it
 * was, partly retrimmed. The image must not be open elsewhere (the exclusive flock is taken).
 */
public final class ImageRetrim {
    private static final long PAGE = 4096;
    private static final long CHUNK = 1 << 20;

    private ImageRetrim() {}

    public static DiskOps.CompactResult retrim(Path path, Progress progress) throws IOException {
        long diskBefore = DiskOps.diskBytes(path);
        long sizeBefore = Files.size(path);
        switch (VirtualDisks.detect(path)) {
            case VHDX -> {
                // a read-write open takes the exclusive flock (and replays a dirty log); nothing is written through it
                try (VhdxDisk d = VhdxDisk.open(path, false); PosixFile f = PosixFile.open(path, false)) {
                    punch(f, d.fileRangesInUse(), progress);
                }
            }
            case VHD -> {
                try (PosixFile f = PosixFile.open(path, false)) {
                    if (!f.tryLock(true)) {
                        throw new IOException(path + " is in use (open by another phost process); not retrimming it");
                    }
                    try (VhdDisk d = VhdDisk.open(path, true)) {
                        punch(f, d.fileRangesInUse(), progress);
                    }
                }
            }
            case RAW -> {
                try (RawDisk d = RawDisk.open(path, false)) {
                    DiskOps.punchZeros(d, progress);
                }
            }
        }
        return new DiskOps.CompactResult(diskBefore, DiskOps.diskBytes(path), sizeBefore, Files.size(path));
    }

    /** Punches every gap between the used ranges, and zero runs inside data ranges (third element 1). */
    private static void punch(PosixFile f, List<long[]> used, Progress progress) throws IOException {
        long fileSize = f.size();
        used.sort(Comparator.comparingLong(r -> r[0]));
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(CHUNK, 4096);
            long at = 0;
            for (long[] r : used) {
                punchRange(f, at, Math.min(r[0], fileSize));
                if (r.length > 2 && r[2] == 1) {
                    punchZeroRuns(f, r[0], Math.min(r[1], fileSize), buf);
                }
                at = Math.max(at, r[1]);
                progress.update(Math.min(at, fileSize), fileSize);
            }
            punchRange(f, at, fileSize);
        }
        f.dataSync();
    }

    /** Punches the whole 4 KiB pages inside {@code [from, to)}; bytes of partly covered pages stay. */
    private static void punchRange(PosixFile f, long from, long to) throws IOException {
        long a = (from + PAGE - 1) & -PAGE;
        long b = to & -PAGE;
        if (b > a) {
            f.fallocate(PosixFile.FALLOC_FL_PUNCH_HOLE | PosixFile.FALLOC_FL_KEEP_SIZE, a, b - a);
        }
    }

    /** Reads {@code [from, to)} (skipping holes) and punches its runs of zero pages. */
    private static void punchZeroRuns(PosixFile f, long from, long to, MemorySegment buf) throws IOException {
        long pos = from;
        while (pos < to) {
            long data = f.seekData(pos);
            if (data < 0 || data >= to) {
                return;
            }
            pos = Math.max(pos, data);
            long n = Math.min(CHUNK, to - pos);
            long got = f.read(pos, buf, 0, n);
            if (got < n) {
                buf.asSlice(Math.max(got, 0), n - Math.max(got, 0)).fill((byte) 0);
            }
            long runStart = -1;
            for (long o = 0; o < n; o += PAGE) {
                long len = Math.min(PAGE, n - o);
                boolean zero = len == PAGE && isZero(buf, o, len);
                if (zero && runStart < 0) {
                    runStart = pos + o;
                } else if (!zero && runStart >= 0) {
                    punchRange(f, runStart, pos + o);
                    runStart = -1;
                }
            }
            if (runStart >= 0) {
                punchRange(f, runStart, pos + n);
            }
            pos += n;
        }
    }

    private static boolean isZero(MemorySegment buf, long off, long len) {
        for (long i = 0; i < len; i += 8) {
            if (buf.get(java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED, off + i) != 0) {
                return false;
            }
        }
        return true;
    }
}
