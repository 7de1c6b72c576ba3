package io.phost.vhdx.vhdx;

import io.phost.core.sys.PosixFile;
import io.phost.vhdx.VhdxFormatException;
import io.phost.vhdx.VhdxFormatException.Reason;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.UUID;

import static io.phost.vhdx.vhdx.BatDescriptor.*;
import static io.phost.vhdx.vhdx.VhdxDisk.*;

/**
 * Opening a VHDX: reads and checks the header section, replays a dirty log (into the file for a read-write
 * open, into an in-memory {@link Overlay} for a read-only one), parses regions and metadata, and opens or
 * checks the parent chain. {@link VhdxDisk}'s public {@code open*} methods come here.
 */
final class VhdxOpen {
    private VhdxOpen() {
    }

    static VhdxDisk open(Path path, boolean readOnly, int depth) throws IOException {
        return open(path, readOnly, depth, false);
    }

    static VhdxDisk open(Path path, boolean readOnly, int depth, boolean skipParent) throws IOException {
        return open(path, readOnly, depth, skipParent, !readOnly);
    }

    static VhdxDisk open(Path path, boolean readOnly, int depth, boolean skipParent, boolean exclusive)
        throws IOException {
        return open(path, readOnly, depth, skipParent, exclusive, null);
    }

    /** {@code givenParent}: the open parent to read through instead of opening the chain (never closed here). */
    static VhdxDisk open(Path path, boolean readOnly, int depth, boolean skipParent, boolean exclusive,
                                 VhdxDisk givenParent) throws IOException {
        return open(path, readOnly, depth, skipParent, exclusive, givenParent, false);
    }

    /** {@code linkageVouched}: the caller knows the child reads right through {@code givenParent}'s new data. */
    static VhdxDisk open(Path path, boolean readOnly, int depth, boolean skipParent, boolean exclusive,
                         VhdxDisk givenParent, boolean linkageVouched) throws IOException {
        PosixFile f = PosixFile.open(path, readOnly);
        try {
            if (!f.tryLock(exclusive)) {
                throw new IOException(path + " is in use: " + (readOnly ? "open read-write" : "open")
                    + " elsewhere (flock held)");
            }
            return openFile(path, f, readOnly, depth, skipParent, givenParent, linkageVouched);
        } catch (IOException | RuntimeException | Error e) {
            try {
                f.close();
            } catch (IOException suppressed) {
                e.addSuppressed(suppressed);
            }
            throw e;
        }
    }

    static VhdxDisk openFile(Path path, PosixFile f, boolean readOnly, int depth, boolean skipParent,
                                     VhdxDisk givenParent, boolean linkageVouched) throws IOException {
        VhdxParser.Parsed p = new VhdxParser.Parsed();
        p.readOnly = readOnly;
        p.fileSize = f.size();
        int sectionLength = (int) (RegionTableDescriptor.TABLE_2_FILE_OFFSET + RegionTableDescriptor.TABLE_LENGTH);
        if (p.fileSize < sectionLength) {
            throw new VhdxFormatException(Reason.TRUNCATED, p.fileSize, "file of " + p.fileSize + " bytes has no room for the header section");
        }
        byte[] section = new byte[sectionLength];
        f.read(0, section, 0, sectionLength);
        if (Le.i64(section, 0) != VhdxHeaderDescriptor.FILE_IDENTIFIER_SIGNATURE) {
            throw new VhdxFormatException(Reason.BAD_SIGNATURE, 0, "no \"vhdxfile\" file type identifier");
        }
        p.header = VhdxParser.parseHeaders(section);
        VhdxParser.checkLogRegion(p.header, p.fileSize);

        Overlay overlay = null;
        LogState logState = LogState.CLEAN;
        if (!Le.isZero(p.header.logGuid())) {
            long logLength = p.header.logLength();
            if (logLength > LogDescriptor.MAX_LOG_LENGTH) {
                throw new VhdxFormatException(Reason.LOG_NOT_REPLAYABLE, p.header.logOffset(),
                    "log of " + logLength + " bytes is larger than the " + LogDescriptor.MAX_LOG_LENGTH + " we replay");
            }
            byte[] log = new byte[(int) logLength];
            f.read(p.header.logOffset(), log, 0, log.length);
            p.logPlan = VhdxLog.plan(log, p.header.logGuid(), p.header.logOffset(), p.fileSize);
            if (!p.logPlan.isEmpty()) {
                if (readOnly) {
                    overlay = new Overlay();
                    for (VhdxLog.Update u : p.logPlan.updates()) {
                        overlay.apply(u);
                    }
                    logState = LogState.REPLAYED_IN_MEMORY;
                } else {
                    replayInPlace(f, p.logPlan);
                    p.fileSize = f.size();
                    logState = LogState.REPLAYED;
                }
                if (p.logPlan.updates().stream().anyMatch(u -> u.fileOffset() < VhdxHeaderDescriptor.HEADER_SECTION_LENGTH)) {
                    // A log entry rewrote part of the region tables: re-read the section through the replay.
                    if (overlay != null) {
                        overlay.patch(0, section, 0, sectionLength);
                    } else {
                        f.read(0, section, 0, sectionLength);
                    }
                }
            }
        }
        final Overlay ov = overlay;
        VhdxParser.Source src = (off, dst, o, len) -> {
            long n = f.read(off, dst, o, len);
            if (n < len) {
                java.util.Arrays.fill(dst, o + (int) n, o + len, (byte) 0);
            }
            if (ov != null) {
                ov.patch(off, dst, o, len);
            }
        };
        VhdxParser.parseRegionsAndMetadata(p, section, src);
        if (p.overlapWarning != null) {
            System.getLogger("phost.vhdx").log(System.Logger.Level.WARNING,
                path + ": " + p.overlapWarning + "; opened read-only, a read-write open is refused");
        }

        VhdxDisk parent = null;
        if (p.hasParent && !skipParent) {
            parent = givenParent != null ? checkGivenParent(path, p, givenParent, linkageVouched) : openParent(path, p, depth);
        } else if (givenParent != null) {
            throw new VhdxFormatException(Reason.BAD_PARENT_CHAIN, 0, path + " is not a differencing image: it has no parent to open on "
                + givenParent.path());
        }
        VhdxDisk d;
        try {
            d = new VhdxDisk(path, f, readOnly, p, overlay, parent, logState);
            if (logState == LogState.REPLAYED) {
                // The replay was the first write of this session: new FileWriteGuid, log now empty.
                d.commitLock.lock();
                try {
                    d.fileWriteGuid = UUID.randomUUID();
                    d.logGuid = Le.ZERO_GUID;
                    d.writer.writeHeaders();
                } finally {
                    d.commitLock.unlock();
                }
            }
        } catch (IOException | RuntimeException e) {
            if (parent != null && parent != givenParent) {
                parent.close();
            }
            throw e;
        }
        return d;
    }

    static void replayInPlace(PosixFile f, VhdxLog.Plan plan) throws IOException {
        long size = f.size();
        for (VhdxLog.Update u : plan.updates()) {
            if (u.page() != null) {
                f.write(u.fileOffset(), u.page(), 0, u.page().length);
            } else {
                long end = u.fileOffset() + u.zeroLength();
                // Zeros beyond the current end are a sparse extension, not written byte by byte.
                long writeEnd = Math.min(end, size);
                for (long o = u.fileOffset(); o < writeEnd; o += ZEROS.byteSize()) {
                    f.write(o, ZEROS, 0, Math.min(ZEROS.byteSize(), writeEnd - o));
                }
                if (end > size) {
                    f.truncate(end);
                    size = end;
                }
            }
            size = Math.max(size, u.fileOffset() + (u.page() != null ? u.page().length : 0));
        }
        if (f.size() < plan.lastFileOffset()) {
            f.truncate(roundUp(plan.lastFileOffset(), 1 << 20));
        }
        f.dataSync();
    }

    static VhdxDisk openParent(Path child, VhdxParser.Parsed p, int depth) throws IOException {
        long locAt = p.metadata.fileOffset();
        if (depth + 1 >= MAX_CHAIN_DEPTH) {
            throw new VhdxFormatException(Reason.BAD_PARENT_CHAIN, locAt, "parent chain longer than " + MAX_CHAIN_DEPTH + " images (or cyclic)");
        }
        Map<String, String> kv = p.parentLocator;
        Path parentPath = resolveParent(child, kv);
        if (parentPath == null) {
            throw new VhdxFormatException(Reason.BAD_PARENT_LOCATOR, locAt,
                "parent not found: relative_path=" + kv.get("relative_path") + " absolute_win32_path=" + kv.get("absolute_win32_path"));
        }
        VhdxDisk parent = open(parentPath, true, depth + 1);
        try {
            return checkLinkage(parentPath, p, parent);
        } catch (IOException | RuntimeException e) {
            parent.close();
            throw e;
        }
    }

    /** {@link VhdxDisk#openChildOn}: the child's locator must name {@code parent}'s file and its DataWriteGuid. */
    static VhdxDisk checkGivenParent(Path child, VhdxParser.Parsed p, VhdxDisk parent, boolean linkageVouched)
        throws IOException {
        long locAt = p.metadata.fileOffset();
        Path parentPath = resolveParent(child, p.parentLocator);
        if (parentPath == null || !java.nio.file.Files.isSameFile(parentPath, parent.path())) {
            throw new VhdxFormatException(Reason.BAD_PARENT_LOCATOR, locAt, "the child's parent locator names " + parentPath
                + ", not the open parent " + parent.path());
        }
        int depth = 1;
        for (VhdxDisk d = parent.parent; d != null; d = d.parent) {
            depth++;
        }
        if (depth + 1 >= MAX_CHAIN_DEPTH) {
            throw new VhdxFormatException(Reason.BAD_PARENT_CHAIN, locAt, "parent chain longer than " + MAX_CHAIN_DEPTH + " images");
        }
        return checkLinkage(parentPath, p, parent, linkageVouched);
    }

    static VhdxDisk checkLinkage(Path parentPath, VhdxParser.Parsed p, VhdxDisk parent) throws IOException {
        return checkLinkage(parentPath, p, parent, false);
    }

    static VhdxDisk checkLinkage(Path parentPath, VhdxParser.Parsed p, VhdxDisk parent, boolean linkageVouched)
        throws IOException {
        long locAt = p.metadata.fileOffset();
        Map<String, String> kv = p.parentLocator;
        {
            UUID linkage = Le.parseBraced(kv.get("parent_linkage"));
            String l2 = kv.get("parent_linkage2");
            UUID linkage2 = l2 == null ? null : Le.parseBraced(l2);
            if (linkage == null) {
                throw new VhdxFormatException(Reason.BAD_PARENT_LOCATOR, locAt, "parent_linkage is not a GUID: " + kv.get("parent_linkage"));
            }
            UUID actual = parent.dataWriteGuid();
            if (!linkageVouched && !actual.equals(linkage) && !actual.equals(linkage2)) {
                throw new VhdxFormatException(Reason.PARENT_LINKAGE_MISMATCH, locAt,
                    "parent " + parentPath + " has DataWriteGuid " + Le.braced(actual) + " but the child expects " + Le.braced(linkage)
                        + (linkage2 != null ? " or " + Le.braced(linkage2) : ""));
            }
            if (parent.size() != p.virtualSize || parent.logicalSectorSize() != p.logicalSectorSize) {
                throw new VhdxFormatException(Reason.BAD_PARENT_CHAIN, locAt,
                    "parent size/sector " + parent.size() + "/" + parent.logicalSectorSize() + " differs from child "
                        + p.virtualSize + "/" + p.logicalSectorSize);
            }
            return parent;
        }
    }

    /** relative_path (against the child's directory), then absolute_win32_path; volume_path is Windows-only. */
    static Path resolveParent(Path child, Map<String, String> kv) {
        Path dir = child.toAbsolutePath().getParent();
        String rel = kv.get("relative_path");
        if (rel != null && !rel.isEmpty()) {
            String r = rel.replace('\\', '/');
            if (r.startsWith("./")) {
                r = r.substring(2);
            }
            try {
                Path c = dir.resolve(r).normalize();
                if (Files.isRegularFile(c)) {
                    return c;
                }
            } catch (RuntimeException ignored) {
                // an unparsable path is simply not a candidate
            }
        }
        String abs = kv.get("absolute_win32_path");
        if (abs != null && !abs.isEmpty()) {
            for (String cand : new String[] {abs, abs.replace('\\', '/')}) {
                try {
                    Path c = Path.of(cand);
                    if (c.isAbsolute() && Files.isRegularFile(c)) {
                        return c;
                    }
                } catch (RuntimeException ignored) {
                    // not a path on this system
                }
            }
        }
        return null;
    }

}
