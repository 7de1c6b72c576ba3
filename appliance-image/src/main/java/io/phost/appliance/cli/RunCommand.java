package io.phost.appliance.cli;

import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "run", description = "Run the parent partition host from a config (or the embedded demo).")
public final class RunCommand implements Callable<Integer> {
    @Option(names = "--config", paramLabel = "FILE", description = "appliance.toml to run; without it, the embedded demo.")
    Path config;

    @Option(names = "--duration", paramLabel = "D", description = "Stop after this long (e.g. 30s, 5m); default: until SIGTERM/SIGINT.")
    String duration;

    @Override
    public Integer call() {
        System.out.println("phost run: not implemented yet");
        return 0;
    }
}
