package io.phost.appliance.cli;

import java.nio.file.Path;

/** Test access to RunCommand's package-private helpers. */
public final class RunCommandAccess {
    private RunCommandAccess() {}

    public static boolean warnIfOthersCanRead(Path tokenFile) {
        return RunCommand.warnIfOthersCanRead(tokenFile);
    }
}
