package io.phost.storage.backend;

import io.phost.core.sys.DirectFile;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * SCSI pass-through with the SG_IO ioctl (scsi/sg.h) on a block device. Only real SCSI devices (sd, sr,
 * sg; virtio-scsi, iSCSI, SAS) implement it; loop, virtio-blk and NVMe devices answer ENOTTY/EINVAL,
 * which {@link #supported} reports as false so the LUN translates instead.
 * <pre>
 * struct sg_io_hdr (x86-64/arm64, 88 bytes)
 *   0 interface_id 'S'   4 dxfer_direction (-1 none, -2 to dev, -3 from dev)   8 cmd_len u8   9 mx_sb_len u8
 *  10 iovec_count u16   12 dxfer_len u32   16 dxferp (buffer or sg_iovec[])   24 cmdp   32 sbp
 *  40 timeout ms        44 flags           48 pack_id   56 usr_ptr
 *  64 status u8  65 masked_status  66 msg_status  67 sb_len_wr  68 host_status u16  70 driver_status u16
 *  72 resid  76 duration  80 info
 * </pre>
 */
public final class SgIo {
    public static final int DXFER_NONE = -1;
    public static final int DXFER_TO_DEV = -2;
    public static final int DXFER_FROM_DEV = -3;
    private static final int HDR_SIZE = 88;

    private final MemorySegment hdr;
    private final MemorySegment sense;
    private final MemorySegment cdb;

    /** One per thread that issues commands (holds the header, CDB and sense buffers). */
    public SgIo() {
        Arena a = Arena.ofAuto();
        hdr = a.allocate(HDR_SIZE, 8);
        sense = a.allocate(32, 8);
        cdb = a.allocate(16, 8);
    }

    /** True when {@code fd} accepts SG_IO (probed with a 36-byte INQUIRY). */
    public static boolean supported(int fd) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(36, 8);
            SgIo sg = new SgIo();
            MemorySegment c = a.allocate(6);
            c.set(ValueLayout.JAVA_BYTE, 0, (byte) 0x12);
            c.set(ValueLayout.JAVA_BYTE, 4, (byte) 36);
            int r = sg.execute(fd, c, 0, 6, DXFER_FROM_DEV, buf.address(), 36, 0, 5_000);
            return r >= 0 && sg.hostStatus() == 0 && sg.driverStatus() == 0;
        }
    }

    /**
     * Executes one CDB. {@code iovecCount} 0: {@code data} is a buffer of {@code length} bytes; otherwise
     * {@code data} is an sg_iovec array (same layout as struct iovec) of that many entries.
     * Returns the SCSI status byte, or -errno when the ioctl itself failed.
     */
    public int execute(int fd, MemorySegment cdbSrc, long cdbOffset, int cdbLength, int direction, long data,
                       long length, int iovecCount, int timeoutMillis) {
        cdb.fill((byte) 0);
        MemorySegment.copy(cdbSrc, cdbOffset, cdb, 0, cdbLength);
        hdr.fill((byte) 0);
        sense.fill((byte) 0);
        hdr.set(ValueLayout.JAVA_INT, 0, 'S');
        hdr.set(ValueLayout.JAVA_INT, 4, length == 0 ? DXFER_NONE : direction);
        hdr.set(ValueLayout.JAVA_BYTE, 8, (byte) cdbLength);
        hdr.set(ValueLayout.JAVA_BYTE, 9, (byte) sense.byteSize());
        hdr.set(ValueLayout.JAVA_SHORT, 10, (short) iovecCount);
        hdr.set(ValueLayout.JAVA_INT, 12, (int) length);
        hdr.set(ValueLayout.JAVA_LONG, 16, data);
        hdr.set(ValueLayout.JAVA_LONG, 24, cdb.address());
        hdr.set(ValueLayout.JAVA_LONG, 32, sense.address());
        hdr.set(ValueLayout.JAVA_INT, 40, timeoutMillis);
        int r = DirectFile.ioctl(fd, DirectFile.SG_IO, hdr.address());
        if (r < 0) {
            return r;
        }
        return hdr.get(ValueLayout.JAVA_BYTE, 64) & 0xFF;
    }

    public int senseLength() {
        return hdr.get(ValueLayout.JAVA_BYTE, 67) & 0xFF;
    }

    public MemorySegment sense() {
        return sense;
    }

    public int hostStatus() {
        return hdr.get(ValueLayout.JAVA_SHORT, 68) & 0xFFFF;
    }

    public int driverStatus() {
        return hdr.get(ValueLayout.JAVA_SHORT, 70) & 0xFFFF;
    }

    /** Bytes not transferred. */
    public int resid() {
        return hdr.get(ValueLayout.JAVA_INT, 72);
    }
}
