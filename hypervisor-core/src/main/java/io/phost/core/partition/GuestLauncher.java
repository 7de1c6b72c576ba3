package io.phost.core.partition;

import java.lang.management.ManagementFactory;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Builds the command line of a child partition. For a spec with a {@code command} it is that command;
 * for a built-in workload the appliance configures how to run {@code phost guest <workload>}, normally
 * the same java binary and class path as the parent ({@link #sameJvm}).
 */
@FunctionalInterface
public interface GuestLauncher {
    /** The command for a built-in workload. */
    List<String> workloadCommand(PartitionSpec spec);

    /** The full command for {@code spec}. */
    default List<String> command(PartitionSpec spec) {
        if (!spec.command().isEmpty()) {
            return spec.command();
        }
        if (spec.workload() == null) {
            throw new IllegalArgumentException("partition " + spec.name() + " is external: nothing to launch");
        }
        return workloadCommand(spec);
    }

    /**
     * The flags of this JVM that a child JVM running the same code needs: native access, module exports and
     * opens (Agrona), the GC choice, the thread stack size and {@code -Dphost.*} properties.
     */
    static List<String> inheritedJvmFlags() {
        List<String> flags = new ArrayList<>();
        for (String a : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
            if (a.startsWith("--enable-native-access") || a.startsWith("--add-exports") || a.startsWith("--add-opens")
                || a.startsWith("-XX:+Use") || a.startsWith("-Xss") || a.startsWith("-Dphost.")) {
                flags.add(a);
            }
        }
        return flags;
    }

    /**
     * {@code java <parent's module/native-access flags> <extraJvmArgs> -cp <parent's class path> mainClass
     * <argsBefore...> <workload>}, e.g. {@code sameJvm("io.phost.appliance.Main", List.of("-Xmx64m"), "guest")}.
     */
    static GuestLauncher sameJvm(String mainClass, List<String> extraJvmArgs, String... argsBefore) {
        return spec -> {
            List<String> cmd = new ArrayList<>();
            cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
            cmd.addAll(inheritedJvmFlags());
            cmd.addAll(extraJvmArgs);
            cmd.add("-cp");
            cmd.add(System.getProperty("java.class.path"));
            cmd.add(mainClass);
            cmd.addAll(List.of(argsBefore));
            cmd.add(spec.workload());
            return cmd;
        };
    }
}
