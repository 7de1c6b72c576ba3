package io.phost.core.vm;

import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

/**
 * A VM partition as configured ({@code [[partition]] kind = "vm"}). Everything QEMU is told comes from
 * these typed fields; {@link QemuCommandLine} turns them into argv.
 *
 * @param memoryBytes guest RAM, whole MiB, in a shared memfd (so vhost-user backends can map it)
 * @param machine     QEMU machine type
 * @param devices     vhost-user devices served by this phost, in order (the first disk boots under firmware)
 * @param onCrash     what to do when QEMU dies without being asked to
 * @param stopTimeout how long a graceful stop waits for the guest to power off before QEMU is killed
 * @param cpus        host CPUs QEMU's threads are pinned to (sched_setaffinity); empty = not pinned
 * @param readyMarker text the guest prints on its console once it is up and handles the ACPI power button
 *                    (the test guest prints {@code PHOST-GUEST-READY}), or null when the guest says nothing. A
 *                    guest with a marker that has not printed it yet is still booting: it has mounted nothing
 *                    and would ignore the power button, so a stop kills it at once instead of waiting
 *                    {@code stopTimeout} for nothing. Without a marker every stop asks over ACPI first.
 */
public record VmSpec(String name, int vcpus, long memoryBytes, Machine machine, BootSource boot,
                     List<VmDevice> devices, CrashPolicy onCrash, Duration stopTimeout, String readyMarker,
                     List<Integer> cpus) {
    public static final long MIB = 1L << 20;

    /** QEMU machine types we build command lines for. */
    public enum Machine {
        Q35("q35"), PC("pc");

        public final String qemuName;

        Machine(String qemuName) {
            this.qemuName = qemuName;
        }
    }

    /** {@code on_crash}: restart with backoff, or stay CRASHED. */
    public enum CrashPolicy { RESTART, STOP }

    public VmSpec {
        if (name == null || !name.matches("[A-Za-z0-9._-]{1,64}")) {
            throw new IllegalArgumentException("partition name must match [A-Za-z0-9._-]{1,64}: " + name);
        }
        if (vcpus < 1 || vcpus > 64) {
            throw new IllegalArgumentException("partition " + name + ": vcpus must be 1..64, not " + vcpus);
        }
        if (memoryBytes < 16 * MIB || memoryBytes % MIB != 0) {
            throw new IllegalArgumentException("partition " + name + ": VM memory must be whole MiB, at least 16MiB");
        }
        if (machine == null || boot == null || onCrash == null || stopTimeout == null || stopTimeout.isNegative()) {
            throw new IllegalArgumentException("partition " + name + ": machine, boot, on_crash and stop timeout are required");
        }
        if (readyMarker != null && (readyMarker.isEmpty() || readyMarker.length() > 64
            || !readyMarker.chars().allMatch(c -> c >= 0x20 && c < 0x7f))) {
            throw new IllegalArgumentException("partition " + name + ": ready marker must be 1..64 printable ASCII characters");
        }
        devices = List.copyOf(devices);
        cpus = cpus == null ? List.of() : List.copyOf(cpus);
        for (int c : cpus) {
            if (c < 0 || c >= io.phost.core.sys.CpuAffinity.MAX_CPUS) {
                throw new IllegalArgumentException("partition " + name + ": CPU " + c + " is outside 0..1023");
            }
        }
        java.util.Set<String> ids = new java.util.HashSet<>();
        for (VmDevice d : devices) {
            if (!ids.add(d.id())) {
                throw new IllegalArgumentException("partition " + name + ": device id " + d.id() + " used twice");
            }
        }
    }

    /** No CPU pinning. */
    public VmSpec(String name, int vcpus, long memoryBytes, Machine machine, BootSource boot,
                  List<VmDevice> devices, CrashPolicy onCrash, Duration stopTimeout, String readyMarker) {
        this(name, vcpus, memoryBytes, machine, boot, devices, onCrash, stopTimeout, readyMarker, List.of());
    }

    /** A guest that prints no ready marker. */
    public VmSpec(String name, int vcpus, long memoryBytes, Machine machine, BootSource boot,
                  List<VmDevice> devices, CrashPolicy onCrash, Duration stopTimeout) {
        this(name, vcpus, memoryBytes, machine, boot, devices, onCrash, stopTimeout, null);
    }

    public VmSpec withDevices(List<VmDevice> d) {
        return new VmSpec(name, vcpus, memoryBytes, machine, boot, d, onCrash, stopTimeout, readyMarker, cpus);
    }

    public VmSpec withReadyMarker(String marker) {
        return new VmSpec(name, vcpus, memoryBytes, machine, boot, devices, onCrash, stopTimeout, marker, cpus);
    }

    /** {@code cpus}: the host CPUs every QEMU thread (vCPUs and the rest) is pinned to; empty = no pinning. */
    public VmSpec withCpus(List<Integer> c) {
        return new VmSpec(name, vcpus, memoryBytes, machine, boot, devices, onCrash, stopTimeout, readyMarker, c);
    }

    /** Paths the spec needs to exist before QEMU starts (kernel, initrd). */
    List<Path> inputFiles() {
        if (boot instanceof BootSource.Kernel k) {
            return k.initrd() == null ? List.of(k.kernel()) : List.of(k.kernel(), k.initrd());
        }
        return List.of();
    }
}
