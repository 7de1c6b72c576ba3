package io.phost.appliance.image;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Decides whether {@code phost image flash} may overwrite a target: not a disk with a mounted partition
 * (its own file systems would be corrupted under the kernel) and not the disk holding {@code /}.
 * Reads a {@code /proc/mounts}-format file, so tests can hand it a fixture.
 */
public final class DiskGuard {
    private final Path procMounts;

    public DiskGuard(Path procMounts) {
        this.procMounts = procMounts;
    }

    public static DiskGuard system() {
        return new DiskGuard(Path.of("/proc/mounts"));
    }

    /** One line of /proc/mounts. */
    public record Mount(String source, String mountPoint, String type) {}

    /**
     * Why {@code target} must not be written, or null when it may be. {@code target} is a device path
     * (symlinks such as /dev/disk/by-id/... resolved by the caller) or a regular file.
     */
    public String refusal(Path target) throws IOException {
        String dev = target.toString();
        if (!dev.startsWith("/dev/")) {
            return null; // an image file: nothing is mounted from it that we could break
        }
        String disk = wholeDisk(dev);
        List<Mount> mounts = mounts();
        for (Mount m : mounts) {
            if (m.mountPoint().equals("/") && m.source().startsWith("/dev/") && wholeDisk(m.source()).equals(disk)) {
                return dev + " holds the running system's root file system (" + m.source() + " on /)";
            }
        }
        List<String> mounted = new ArrayList<>();
        for (Mount m : mounts) {
            if (m.source().startsWith("/dev/") && wholeDisk(m.source()).equals(disk)) {
                mounted.add(m.source() + " on " + m.mountPoint());
            }
        }
        return mounted.isEmpty() ? null : dev + " is in use: " + String.join(", ", mounted) + " (unmount first)";
    }

    List<Mount> mounts() throws IOException {
        List<Mount> out = new ArrayList<>();
        for (String line : Files.readAllLines(procMounts)) {
            String[] f = line.trim().split("\\s+");
            if (f.length >= 3) {
                out.add(new Mount(unescape(f[0]), unescape(f[1]), f[2]));
            }
        }
        return out;
    }

    /** /proc/mounts writes space, tab, newline and backslash as octal escapes (\040 ...). */
    static String unescape(String s) {
        if (s.indexOf('\\') < 0) {
            return s;
        }
        StringBuilder sb = new StringBuilder(s.length());
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '\\' && isOctal(s, i + 1)) {
                sb.append((char) Integer.parseInt(s.substring(i + 1, i + 4), 8));
                i += 3;
            } else {
                sb.append(c);
            }
        }
        return sb.toString();
    }

    private static boolean isOctal(String s, int from) {
        if (from + 3 > s.length()) {
            return false;
        }
        for (int i = from; i < from + 3; i++) {
            if (s.charAt(i) < '0' || s.charAt(i) > '7') {
                return false;
            }
        }
        return true;
    }

    /**
     * The whole disk a partition device belongs to, by the kernel's naming: sda1 → sda, vda3 → vda,
     * nvme0n1p2 → nvme0n1, mmcblk0p1 → mmcblk0, loop0p1 → loop0; a whole disk maps to itself.
     */
    static String wholeDisk(String dev) {
        String name = dev.substring(dev.lastIndexOf('/') + 1);
        String prefix = dev.substring(0, dev.length() - name.length());
        int end = name.length();
        while (end > 0 && Character.isDigit(name.charAt(end - 1))) {
            end--;
        }
        if (end == name.length() || end == 0) {
            return dev; // no trailing number: sda, or a name we do not understand
        }
        String stem = name.substring(0, end);
        if (stem.endsWith("p") && stem.length() > 1 && Character.isDigit(stem.charAt(stem.length() - 2))) {
            return prefix + stem.substring(0, stem.length() - 1); // nvme0n1p2, mmcblk0p1, loop0p1
        }
        if (name.startsWith("nvme") || name.startsWith("mmcblk")
            || name.startsWith("loop") || name.startsWith("nbd") || name.startsWith("md") || name.startsWith("dm-")) {
            return dev; // nvme0n1, mmcblk0, loop0: the number is part of the disk's name
        }
        return prefix + stem; // sda1 -> sda
    }
}
