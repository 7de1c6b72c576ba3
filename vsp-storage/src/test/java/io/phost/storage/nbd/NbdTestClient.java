package io.phost.storage.nbd;

import java.io.IOException;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.file.Path;

/** A minimal NBD client for tests outside this package: one WRITE over a fresh connection. */
public final class NbdTestClient {
    private NbdTestClient() {}

    /** Writes {@code length} bytes of 0x5a at {@code offset}; returns the reply's error (0 = ok). */
    public static int write(Path socket, String export, long offset, int length) throws IOException {
        try (SocketChannel ch = SocketChannel.open(UnixDomainSocketAddress.of(socket))) {
            NbdServerTest.go(ch, export);
            ByteBuffer req = ByteBuffer.allocate(28 + length);
            req.putInt(NbdDescriptor.REQUEST_MAGIC).putShort((short) 0).putShort((short) NbdDescriptor.CMD_WRITE)
                .putLong(9).putLong(offset).putInt(length);
            while (req.hasRemaining()) {
                req.put((byte) 0x5a);
            }
            NbdServerTest.writeAll(ch, req.flip());
            ByteBuffer r = NbdServerTest.readAll(ch, 16);
            r.getInt();
            return r.getInt();
        }
    }
}
