package io.phost.appliance;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * phost exits with _exit(2) once its command returned (ProcessExit): not through HotSpot's exit, which runs shutdown
 * hooks and then waits 0.3 s or more for every thread in native code (phost always has some: poll(2), accept(2)).
 * A child JVM with a shutdown hook and a thread blocked in poll(2) runs {@code phost version}: its output arrives
 * whole, its exit status is the command's, the hook never runs and no hsperfdata file is left behind.
 */
class MainExitTest {
    @Test
    void shouldExitWithTheCommandsStatusWithoutTheJvmsExitSequence() throws Exception {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Process p = new ProcessBuilder(java, "--enable-native-access=ALL-UNNAMED", "-cp",
            System.getProperty("java.class.path"), Child.class.getName()).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes());
        assertTrue(p.waitFor(60, TimeUnit.SECONDS));
        assertEquals(0, p.exitValue(), out);
        assertTrue(out.contains("phost"), "the command's output was flushed before the exit: " + out);
        assertFalse(out.contains("hook ran"), "the JVM's exit sequence (shutdown hooks, then the wait for threads in"
            + " native code) was run: " + out);
        Path perfData = Path.of("/tmp", "hsperfdata_" + System.getProperty("user.name"), Long.toString(p.pid()));
        assertFalse(Files.exists(perfData), perfData + " left behind");
    }

    /** The child: a hook that would show the JVM's exit sequence ran, a thread in poll(2), then phost's main. */
    public static final class Child {
        public static void main(String[] args) throws Throwable {
            Runtime.getRuntime().addShutdownHook(new Thread(() -> System.out.println("hook ran")));
            var linker = java.lang.foreign.Linker.nativeLinker();
            var poll = linker.downcallHandle(linker.defaultLookup().find("poll").orElseThrow(),
                java.lang.foreign.FunctionDescriptor.of(java.lang.foreign.ValueLayout.JAVA_INT,
                    java.lang.foreign.ValueLayout.ADDRESS, java.lang.foreign.ValueLayout.JAVA_LONG,
                    java.lang.foreign.ValueLayout.JAVA_INT));
            Thread.ofPlatform().daemon().start(() -> {
                try {
                    int ignored = (int) poll.invokeExact(java.lang.foreign.MemorySegment.NULL, 0L, -1);
                } catch (Throwable e) {
                    // not reached: the poll sleeps until the process ends
                }
            });
            Main.main(new String[] {"version"});
        }
    }
}
