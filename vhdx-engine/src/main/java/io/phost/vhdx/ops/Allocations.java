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
     * VHDX blocks through the public BAT view: a block may hold data when the nearest layer that says
     * anything about it says FULLY_PRESENT, PARTIALLY_PRESENT, UNMAPPED or UNDEFINED (conservative); ZERO
     * reads zeros; NOT_PRESENT defers to the parent (zeros without one).
     */
    static final class VhdxMap implements AllocationMap {
        private final VhdxDisk disk;
        private final long blockSize;

        VhdxMap(VhdxDisk disk) {
            this.disk = disk;
            this.blockSize = disk.blockSize();
        }

        boolean mayHoldData(long block) {
            for (VhdxDisk d = disk; d != null; d = d.parent()) {
                if (block >= d.blockCount()) {
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
            for (long b = offset / blockSize; b * blockSize < size; b++) {
                if (mayHoldData(b)) {
                    return Math.max(offset, b * blockSize);
                }
            }
            return size;
        }

        @Override
        public long nextUnallocated(long offset) {
            long size = disk.size();
            for (long b = offset / blockSize; b * blockSize < size; b++) {
                if (!mayHoldData(b)) {
                    return Math.max(offset, b * blockSize);
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
