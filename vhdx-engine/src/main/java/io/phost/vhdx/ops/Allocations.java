package io.phost.vhdx.ops;

import io.phost.vhdx.AllocationMap;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.vhdx.VhdxDisk;

import java.io.IOException;

/** An {@link AllocationMap} for any open disk: its own when it has one, the BAT for VHDX, else "all data". */
public final class Allocations {
    private Allocations() {}

    public static AllocationMap of(VirtualDisk d) {
        if (d instanceof AllocationMap m) {
            return m;
        }
        if (d instanceof VhdxDisk x) {
            return new VhdxMap(x);
        }
        return new AllocationMap() {
            @Override
            public long nextAllocated(long offset) {
                return Math.min(offset, d.size());
            }

            @Override
            public long nextUnallocated(long offset) {
                return d.size();
            }

            @Override
            public long allocatedBytes() {
                return d.size();
            }
        };
    }

    /**
     * VHDX blocks through the public BAT view: a byte may hold data when the nearest layer that says
     * anything about it says FULLY_PRESENT, PARTIALLY_PRESENT, UNMAPPED or UNDEFINED (conservative); ZERO
     * reads zeros; NOT_PRESENT defers to the parent (zeros without one, or past a smaller parent's end).
     * Each layer is asked about its own block (layers may have different block sizes); the walk steps in
     * units of the smallest block size in the chain, which divides every other one (powers of two).
     */
    static final class VhdxMap implements AllocationMap {
        private final VhdxDisk disk;
        private final long unit;

        VhdxMap(VhdxDisk disk) {
            this.disk = disk;
            long u = disk.blockSize();
            for (VhdxDisk d = disk.parent(); d != null; d = d.parent()) {
                u = Math.min(u, d.blockSize());
            }
            this.unit = u;
        }

        /** True when the unit starting at {@code offset} may hold data somewhere in the chain. */
        boolean mayHoldData(long offset) {
            for (VhdxDisk d = disk; d != null; d = d.parent()) {
                long block = offset / d.blockSize();
                if (offset >= d.size() || block >= d.blockCount()) {
                    return false;
                }
                switch (d.blockState(block)) {
                    case NOT_PRESENT -> {
                        continue;
                    }
                    case ZERO -> {
                        return false;
                    }
                    default -> {
                        return true;
                    }
                }
            }
            return false;
        }

        @Override
        public long nextAllocated(long offset) {
            long size = disk.size();
            for (long u = offset / unit; u * unit < size; u++) {
                if (mayHoldData(u * unit)) {
                    return Math.max(offset, u * unit);
                }
            }
            return size;
        }

        @Override
        public long nextUnallocated(long offset) {
            long size = disk.size();
            for (long u = offset / unit; u * unit < size; u++) {
                if (!mayHoldData(u * unit)) {
                    return Math.max(offset, u * unit);
                }
            }
            return size;
        }

        @Override
        public long allocatedBytes() throws IOException {
            return disk.allocatedBytes();
        }
    }
}
