package io.phost.appliance.vhd;

import picocli.CommandLine.Parameters;

import java.io.IOException;
import java.nio.file.Path;
import java.util.concurrent.Callable;

/** A {@code phost vhd} verb: its work runs through {@link VhdCommand#guard}, so library failures are one-line user errors. */
abstract class VhdVerb implements Callable<Integer> {
    @Override
    public final Integer call() {
        return VhdCommand.guard(this::run);
    }

    /** The verb's work; returns its exit status. */
    abstract int run() throws IOException;

    /** A verb on one image, {@code FILE}. */
    abstract static class OnFile extends VhdVerb {
        @Parameters(index = "0", paramLabel = "FILE")
        Path file;
    }
}
