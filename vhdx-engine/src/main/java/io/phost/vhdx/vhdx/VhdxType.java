package io.phost.vhdx.vhdx;

/** How a VHDX stores its payload. FIXED = LeaveBlocksAllocated set (every block allocated at creation). */
public enum VhdxType {
    FIXED, DYNAMIC, DIFFERENCING
}
