package io.phost.vhdx.ops;

/** Receives progress of a long operation: {@code done} of {@code total} bytes of the virtual disk. */
@FunctionalInterface
public interface Progress {
    Progress NONE = (done, total) -> { };

    void update(long done, long total);
}
