package io.phost.appliance.cli;

import picocli.CommandLine.Command;
import picocli.CommandLine.IVersionProvider;

@Command(name = "version", description = "Print the phost version and the Java runtime it runs on.")
public final class VersionCommand implements Runnable {
    @Override
    public void run() {
        for (String line : new Provider().getVersion()) {
            System.out.println(line);
        }
    }

    /** The phost version from the jar's manifest (0.1.0-SNAPSHOT when run from classes). */
    public static String phostVersion() {
        String v = VersionCommand.class.getPackage().getImplementationVersion();
        return v == null ? "0.1.0-SNAPSHOT" : v;
    }

    /** Version lines shared by {@code phost version} and {@code phost --version}. */
    public static final class Provider implements IVersionProvider {
        @Override
        public String[] getVersion() {
            return new String[] {
                "phost " + phostVersion(),
                "java " + Runtime.version() + " (" + System.getProperty("java.vm.vendor") + ")",
                "os " + System.getProperty("os.name") + " " + System.getProperty("os.version") + " " + System.getProperty("os.arch"),
            };
        }
    }
}
