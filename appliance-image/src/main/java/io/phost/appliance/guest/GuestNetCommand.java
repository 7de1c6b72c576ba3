package io.phost.appliance.guest;

import io.phost.network.GuestNet;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code phost guest net}: inside a child partition, bridges synthetic NIC {@code --nic} to a TAP device in a
 * network namespace so the real Linux stack sends its traffic over VMBus and the parent's virtual switch.
 */
@Command(name = "net", mixinStandardHelpOptions = true,
    description = "Bridge a synthetic NIC to a TAP device (optionally inside a network namespace).")
public final class GuestNetCommand implements Callable<Integer> {
    @Option(names = "--netns", description = "Network namespace for the TAP (created if missing, and then removed on exit; the TAP is "
        + "created inside it, so partitions may all use the same TAP name).")
    String netns;

    @Option(names = "--tap", defaultValue = "phost0", description = "TAP device name (default: ${DEFAULT-VALUE}).")
    String tap;

    @Option(names = "--address", description = "Address/prefix to give the TAP, e.g. 10.0.0.2/24.")
    String address;

    @Option(names = "--nic", defaultValue = "0", description = "Which synthetic NIC (0 = first offered).")
    int nic;

    @Option(names = "--ping", paramLabel = "ADDRESS", description = "Ping this peer from inside the namespace while bridging.")
    String ping;

    @Override
    public Integer call() throws Exception {
        GuestNet.run(new GuestNet.Options(netns, tap, address, nic, ping));
        return 0;
    }
}
