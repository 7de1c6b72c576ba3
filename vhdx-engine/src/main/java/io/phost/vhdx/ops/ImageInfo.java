package io.phost.vhdx.ops;

import java.util.List;
import java.util.Map;

/**
 * What {@code phost vhd info} shows.
 *
 * @param path               the file
 * @param format             vhdx, vhd or raw
 * @param type               fixed, dynamic or differencing
 * @param virtualSize        bytes the guest sees
 * @param blockSize          bytes per block (0 when the format has none)
 * @param logicalSectorSize  512 or 4096
 * @param physicalSectorSize 512 or 4096
 * @param fileSize           bytes of the file
 * @param allocatedBytes     bytes of data blocks this file holds (not its parents)
 * @param parentChain        parent files, nearest first
 * @param logState           VHDX log state when opened ("clean", "replayed", ...); "none" for other formats
 * @param details            format-specific facts (unique ids, creator, geometry)
 */
public record ImageInfo(String path, String format, String type, long virtualSize, long blockSize,
                        int logicalSectorSize, int physicalSectorSize, long fileSize, long allocatedBytes,
                        List<String> parentChain, String logState, Map<String, String> details) {

    /** JSON with stable key order, for {@code info --json}. */
    public String toJson() {
        StringBuilder b = new StringBuilder("{");
        field(b, "path", path).append(',');
        field(b, "format", format).append(',');
        field(b, "type", type).append(',');
        b.append("\"virtualSize\":").append(virtualSize).append(',');
        b.append("\"blockSize\":").append(blockSize).append(',');
        b.append("\"logicalSectorSize\":").append(logicalSectorSize).append(',');
        b.append("\"physicalSectorSize\":").append(physicalSectorSize).append(',');
        b.append("\"fileSize\":").append(fileSize).append(',');
        b.append("\"allocatedBytes\":").append(allocatedBytes).append(',');
        b.append("\"parentChain\":[");
        for (int i = 0; i < parentChain.size(); i++) {
            if (i > 0) {
                b.append(',');
            }
            quote(b, parentChain.get(i));
        }
        b.append("],");
        field(b, "logState", logState).append(',');
        b.append("\"details\":{");
        int i = 0;
        for (Map.Entry<String, String> e : details.entrySet()) {
            if (i++ > 0) {
                b.append(',');
            }
            field(b, e.getKey(), e.getValue());
        }
        return b.append("}}").toString();
    }

    private static StringBuilder field(StringBuilder b, String k, String v) {
        quote(b, k);
        b.append(':');
        quote(b, v);
        return b;
    }

    static void quote(StringBuilder b, String s) {
        b.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                case '\n' -> b.append("\\n");
                case '\r' -> b.append("\\r");
                case '\t' -> b.append("\\t");
                default -> {
                    if (c < 0x20) {
                        b.append(String.format("\\u%04x", (int) c));
                    } else {
                        b.append(c);
                    }
                }
            }
        }
        b.append('"');
    }
}
