package io.phost.vhdx;

import java.io.IOException;
import java.nio.file.Path;

/** Where {@link VirtualDisks} reaches the VHDX engine (package io.phost.vhdx.vhdx). */
final class FormatHooks {
    private FormatHooks() {}

    static VirtualDisk openVhdx(Path path, boolean readOnly) throws IOException {
        throw new IOException(path + ": VHDX support is not in this build yet");
    }

    static VirtualDisk createVhdx(Path path, CreateOptions options) throws IOException {
        throw new IOException(path + ": VHDX support is not in this build yet");
    }
}
