package io.phost.vhdx.ops;

import java.util.List;

/**
 * What {@code phost vhd check} found.
 *
 * @param problems what is wrong (a damaged copy, a dirty log, an unreadable structure)
 * @param notes    harmless facts worth knowing (unreferenced space, CHS vs current size)
 * @param repaired what {@code --repair} fixed
 * @param readable false when the image cannot be opened at all
 */
public record CheckReport(List<String> problems, List<String> notes, List<String> repaired, boolean readable) {
    /** 0 clean (or every problem repaired), 1 problems remain, 2 unreadable. */
    public int exitCode() {
        if (!readable) {
            return 2;
        }
        return problems.size() > repaired.size() ? 1 : 0;
    }

    /** One JSON object for {@code check --output=json}: path, readable, exitCode and the three lists. */
    public String toJson(String path) {
        StringBuilder b = new StringBuilder("{\"path\":");
        ImageInfo.quote(b, path);
        b.append(",\"readable\":").append(readable).append(",\"exitCode\":").append(exitCode());
        list(b.append(",\"problems\":"), problems);
        list(b.append(",\"repaired\":"), repaired);
        list(b.append(",\"notes\":"), notes);
        return b.append('}').toString();
    }

    private static void list(StringBuilder b, List<String> items) {
        b.append('[');
        for (int i = 0; i < items.size(); i++) {
            if (i > 0) {
                b.append(',');
            }
            ImageInfo.quote(b, items.get(i));
        }
        b.append(']');
    }
}
