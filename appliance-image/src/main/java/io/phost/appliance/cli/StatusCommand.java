package io.phost.appliance.cli;

import java.util.concurrent.Callable;
import picocli.CommandLine.Command;

@Command(name = "status", description = "Ask a running host for its status over the management endpoint.")
public final class StatusCommand implements Callable<Integer> {
    @Override
    public Integer call() {
        System.out.println("phost status: not implemented yet");
        return 0;
    }
}
