package io.phost.core.sys;

import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;

/** kill(2) for partition pause (SIGSTOP), resume (SIGCONT) and forced stop (SIGKILL). */
public final class Signals {
    /** int kill(pid_t pid, int sig) */
    private static final MethodHandle KILL = Native.downcall("kill",
        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT));
    public static final int SIGKILL = 9;
    public static final int SIGTERM = 15;
    public static final int SIGCONT = 18;
    public static final int SIGSTOP = 19;

    private Signals() {}

    public static void kill(long pid, int signal) {
        try {
            Native.check((int) KILL.invokeExact(Native.errnoState(), (int) pid, signal), "kill(" + pid + ", " + signal + ")");
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }
}
