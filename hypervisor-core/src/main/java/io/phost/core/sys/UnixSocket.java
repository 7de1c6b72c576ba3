package io.phost.core.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;

/**
 * An AF_UNIX SOCK_SEQPACKET socket: message boundaries are kept (one control message per datagram) and
 * file descriptors travel with SCM_RIGHTS. Layouts (x86-64 / aarch64 LP64):
 * <pre>
 *  struct sockaddr_un { u16 sun_family @0; char sun_path[108] @2 }                         110 bytes
 *  struct iovec       { void *iov_base @0; size_t iov_len @8 }                               16 bytes
 *  struct msghdr      { void *msg_name @0; u32 msg_namelen @8; struct iovec *msg_iov @16;
 *                       size_t msg_iovlen @24; void *msg_control @32; size_t msg_controllen @40;
 *                       int msg_flags @48 }                                                    56 bytes
 *  struct cmsghdr     { size_t cmsg_len @0; int cmsg_level @8; int cmsg_type @12; data @16 }
 *  struct ucred       { pid_t pid @0; uid_t uid @4; gid_t gid @8 }                              12 bytes
 * </pre>
 * Sending is serialised by a lock (several threads may send control messages); receiving is done by one
 * thread. Scratch memory is allocated once per socket, so messages cost no allocation beyond the caller's.
 */
public final class UnixSocket implements AutoCloseable {
    private static final MethodHandle SOCKET = Native.downcall("socket",
        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT));
    private static final MethodHandle BIND = Native.downcall("bind",
        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_INT));
    private static final MethodHandle CONNECT = Native.downcall("connect",
        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_INT));
    private static final MethodHandle LISTEN = Native.downcall("listen",
        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT));
    /** int accept4(int sockfd, struct sockaddr *addr, socklen_t *addrlen, int flags) */
    private static final MethodHandle ACCEPT4 = Native.downcall("accept4",
        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.ADDRESS, ValueLayout.JAVA_INT));
    /** ssize_t sendmsg(int sockfd, const struct msghdr *msg, int flags) */
    private static final MethodHandle SENDMSG = Native.downcall("sendmsg",
        FunctionDescriptor.of(ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_INT));
    /** ssize_t recvmsg(int sockfd, struct msghdr *msg, int flags) */
    private static final MethodHandle RECVMSG = Native.downcall("recvmsg",
        FunctionDescriptor.of(ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_INT));
    /** int getsockopt(int sockfd, int level, int optname, void *optval, socklen_t *optlen) */
    private static final MethodHandle GETSOCKOPT = Native.downcall("getsockopt",
        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT,
            ValueLayout.ADDRESS, ValueLayout.ADDRESS));
    /** int shutdown(int sockfd, int how): wakes a thread blocked in recvmsg when we close. */
    private static final MethodHandle SHUTDOWN = Native.downcall("shutdown",
        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT));

    public static final int AF_UNIX = 1;
    public static final int SOCK_STREAM = 1;
    public static final int SOCK_SEQPACKET = 5;
    public static final int SOCK_CLOEXEC = 0x80000;
    public static final int SOCK_NONBLOCK = 0x800;
    public static final int SOL_SOCKET = 1;
    public static final int SCM_RIGHTS = 1;
    public static final int SO_PEERCRED = 17;
    public static final int MSG_CTRUNC = 0x8;
    public static final int MSG_TRUNC = 0x20;
    public static final int MSG_DONTWAIT = 0x40;
    public static final int MSG_NOSIGNAL = 0x4000;
    public static final int MSG_CMSG_CLOEXEC = 0x40000000;
    /** Most descriptors one message may carry (a channel open passes two eventfds; attach passes the memfd). */
    public static final int MAX_FDS = 8;
    private static final long CMSG_HDR = 16;
    private static final long CONTROL_LEN = CMSG_HDR + MAX_FDS * 4;

    private final int fd;
    private final Arena arena = Arena.ofAuto();
    private final MemorySegment sendHdr = arena.allocate(56, 8);
    private final MemorySegment sendIov = arena.allocate(16, 8);
    private final MemorySegment sendCtl = arena.allocate(CONTROL_LEN, 8);
    private final MemorySegment recvHdr = arena.allocate(56, 8);
    private final MemorySegment recvIov = arena.allocate(16, 8);
    private final MemorySegment recvCtl = arena.allocate(CONTROL_LEN, 8);
    private final MemorySegment pollFd = arena.allocate(8, 4);
    private final Object sendLock = new Object();
    private volatile boolean closed;

    private UnixSocket(int fd) {
        this.fd = fd;
    }

    public int fd() {
        return fd;
    }

    /** Wraps a connected socket received over SCM_RIGHTS (a vhost-user back-end channel); this object owns it now. */
    public static UnixSocket adopt(int fd) {
        if (fd < 0) {
            throw new IllegalArgumentException("not a descriptor: " + fd);
        }
        return new UnixSocket(fd);
    }

    /** A listening SOCK_SEQPACKET socket bound at {@code path} (which must not exist). */
    public static UnixSocket listen(Path path, int backlog) {
        return listen(path, backlog, SOCK_SEQPACKET);
    }

    /**
     * A listening SOCK_STREAM socket bound at {@code path} (vhost-user's transport: QEMU connects with a
     * stream socket, so message boundaries come from the protocol's own headers; see {@link #readFully}).
     */
    public static UnixSocket listenStream(Path path, int backlog) {
        return listen(path, backlog, SOCK_STREAM);
    }

    /** Connects a SOCK_STREAM socket to {@code path} (a vhost-user front-end, e.g. the test driver). */
    public static UnixSocket connectStream(Path path) {
        return connect(path, SOCK_STREAM);
    }

    private static UnixSocket listen(Path path, int backlog, int type) {
        UnixSocket s = new UnixSocket(newSocket(type));
        try (Arena a = Arena.ofConfined()) {
            MemorySegment addr = sockaddr(a, path);
            Native.check((int) BIND.invokeExact(Native.errnoState(), s.fd, addr, (int) addr.byteSize()), "bind(" + path + ")");
            Native.check((int) LISTEN.invokeExact(Native.errnoState(), s.fd, backlog), "listen(" + path + ")");
            return s;
        } catch (Throwable t) {
            s.close();
            throw Native.rethrow(t);
        }
    }

    /** Connects to the SOCK_SEQPACKET socket at {@code path}. */
    public static UnixSocket connect(Path path) {
        return connect(path, SOCK_SEQPACKET);
    }

    private static UnixSocket connect(Path path, int type) {
        UnixSocket s = new UnixSocket(newSocket(type));
        try (Arena a = Arena.ofConfined()) {
            MemorySegment addr = sockaddr(a, path);
            Native.check((int) CONNECT.invokeExact(Native.errnoState(), s.fd, addr, (int) addr.byteSize()), "connect(" + path + ")");
            return s;
        } catch (Throwable t) {
            s.close();
            throw Native.rethrow(t);
        }
    }

    /** Accepts one connection, waiting up to {@code timeoutMillis}; null on timeout. */
    public UnixSocket accept(int timeoutMillis) {
        int rev = Poll.pollOne(pollFd, fd, Poll.POLLIN, timeoutMillis);
        if (rev == 0 || closed) {
            return null;
        }
        try {
            int c = (int) ACCEPT4.invokeExact(Native.errnoState(), fd, MemorySegment.NULL, MemorySegment.NULL, SOCK_CLOEXEC);
            if (c == -1) {
                int e = Native.lastErrno();
                if (e == Errno.EAGAIN || e == Errno.EINTR || e == 103 /* ECONNABORTED */) {
                    return null;
                }
                throw new NativeException("accept4", e);
            }
            return new UnixSocket(c);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** The peer's pid, uid and gid as the kernel recorded them at connect time (SO_PEERCRED). */
    public PeerCredentials peerCredentials() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment ucred = a.allocate(12, 4);
            MemorySegment len = a.allocate(ValueLayout.JAVA_INT);
            len.set(ValueLayout.JAVA_INT, 0, 12);
            Native.check((int) GETSOCKOPT.invokeExact(Native.errnoState(), fd, SOL_SOCKET, SO_PEERCRED, ucred, len), "getsockopt(SO_PEERCRED)");
            return new PeerCredentials(ucred.get(ValueLayout.JAVA_INT, 0), ucred.get(ValueLayout.JAVA_INT, 4), ucred.get(ValueLayout.JAVA_INT, 8));
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** pid/uid/gid of the peer process. */
    public record PeerCredentials(int pid, int uid, int gid) {}

    /**
     * Sends one message of {@code len} bytes from {@code msg} with {@code fds} attached (may be empty).
     * Blocks if the peer's queue is full. Throws {@link NativeException} (EPIPE) when the peer is gone.
     */
    public void send(MemorySegment msg, long len, int... fds) {
        if (fds.length > MAX_FDS) {
            throw new IllegalArgumentException("too many fds: " + fds.length);
        }
        synchronized (sendLock) {
            sendIov.set(ValueLayout.ADDRESS, 0, msg);
            sendIov.set(ValueLayout.JAVA_LONG, 8, len);
            sendHdr.fill((byte) 0);
            sendHdr.set(ValueLayout.ADDRESS, 16, sendIov);
            sendHdr.set(ValueLayout.JAVA_LONG, 24, 1L);
            if (fds.length > 0) {
                long cmsgLen = CMSG_HDR + 4L * fds.length;
                sendCtl.fill((byte) 0);
                sendCtl.set(ValueLayout.JAVA_LONG, 0, cmsgLen);
                sendCtl.set(ValueLayout.JAVA_INT, 8, SOL_SOCKET);
                sendCtl.set(ValueLayout.JAVA_INT, 12, SCM_RIGHTS);
                for (int i = 0; i < fds.length; i++) {
                    sendCtl.set(ValueLayout.JAVA_INT, CMSG_HDR + 4L * i, fds[i]);
                }
                sendHdr.set(ValueLayout.ADDRESS, 32, sendCtl);
                sendHdr.set(ValueLayout.JAVA_LONG, 40, (cmsgLen + 7) & ~7L); // CMSG_SPACE
            }
            try {
                while (true) {
                    long r = (long) SENDMSG.invokeExact(Native.errnoState(), fd, sendHdr, MSG_NOSIGNAL);
                    if (r >= 0) {
                        return;
                    }
                    int e = Native.lastErrno();
                    if (e != Errno.EINTR) {
                        throw new NativeException("sendmsg(" + fd + ")", e);
                    }
                }
            } catch (Throwable t) {
                throw Native.rethrow(t);
            }
        }
    }

    /**
     * Receives one message into {@code buf}, waiting up to {@code timeoutMillis} (-1 = forever).
     * Received descriptors are stored in {@code fdsOut} (unused slots set to -1).
     *
     * @return the message length; 0 on timeout; -1 when the peer closed the connection.
     * @throws NativeException EMSGSIZE (90) when the message or its descriptors were truncated; any
     *         descriptors that did arrive are closed first, so a flood of fds cannot leak.
     */
    public long receive(MemorySegment buf, int[] fdsOut, int timeoutMillis) {
        java.util.Arrays.fill(fdsOut, -1);
        if (timeoutMillis >= 0) {
            int rev = Poll.pollOne(pollFd, fd, Poll.POLLIN, timeoutMillis);
            if (rev == 0) {
                return 0;
            }
        }
        recvIov.set(ValueLayout.ADDRESS, 0, buf);
        recvIov.set(ValueLayout.JAVA_LONG, 8, buf.byteSize());
        recvHdr.fill((byte) 0);
        recvCtl.fill((byte) 0);
        recvHdr.set(ValueLayout.ADDRESS, 16, recvIov);
        recvHdr.set(ValueLayout.JAVA_LONG, 24, 1L);
        recvHdr.set(ValueLayout.ADDRESS, 32, recvCtl);
        recvHdr.set(ValueLayout.JAVA_LONG, 40, CONTROL_LEN);
        long r;
        try {
            while (true) {
                r = (long) RECVMSG.invokeExact(Native.errnoState(), fd, recvHdr, MSG_CMSG_CLOEXEC);
                if (r >= 0) {
                    break;
                }
                int e = Native.lastErrno();
                if (e == Errno.EINTR) {
                    continue;
                }
                if (e == Errno.EAGAIN) {
                    return 0;
                }
                if (e == 104 /* ECONNRESET */ || closed) {
                    return -1;
                }
                throw new NativeException("recvmsg(" + fd + ")", e);
            }
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
        int got = 0;
        long ctlLen = recvHdr.get(ValueLayout.JAVA_LONG, 40);
        if (ctlLen >= CMSG_HDR) {
            long cmsgLen = recvCtl.get(ValueLayout.JAVA_LONG, 0);
            if (recvCtl.get(ValueLayout.JAVA_INT, 8) == SOL_SOCKET && recvCtl.get(ValueLayout.JAVA_INT, 12) == SCM_RIGHTS
                && cmsgLen >= CMSG_HDR && cmsgLen <= CONTROL_LEN) {
                int n = (int) ((cmsgLen - CMSG_HDR) / 4);
                for (int i = 0; i < n; i++) {
                    int f = recvCtl.get(ValueLayout.JAVA_INT, CMSG_HDR + 4L * i);
                    if (got < fdsOut.length) {
                        fdsOut[got++] = f;
                    } else {
                        Fd.close(f);
                    }
                }
            }
        }
        int flags = recvHdr.get(ValueLayout.JAVA_INT, 48);
        if ((flags & (MSG_CTRUNC | MSG_TRUNC)) != 0) {
            for (int i = 0; i < got; i++) {
                Fd.close(fdsOut[i]);
                fdsOut[i] = -1;
            }
            throw new NativeException("recvmsg(" + fd + "): message or descriptors truncated", 90);
        }
        if (r == 0) {
            return -1; // orderly shutdown by the peer (SEQPACKET delivers no zero-length messages here)
        }
        return r;
    }

    /** Shuts the connection down (wakes a receiver) and closes the descriptor. Idempotent. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        try {
            int ignored = (int) SHUTDOWN.invokeExact(Native.errnoState(), fd, 2);
        } catch (Throwable t) {
            // best effort
        }
        Fd.close(fd);
        // The arena stays alive: a concurrent receiver may still be returning from recvmsg; it is
        // reclaimed with the socket object (Arena.ofShared cannot be closed while another thread uses it).
    }

    public boolean isClosed() {
        return closed;
    }

    /**
     * Stream sockets: reads exactly {@code len} bytes into {@code buf} at {@code offset}, the first chunk
     * with its SCM_RIGHTS descriptors in {@code fdsOut} (descriptors arriving with later chunks are closed:
     * a protocol attaches them to the first byte of a message). Waits up to {@code timeoutMillis} for each
     * chunk (-1 = forever).
     *
     * @return {@code len}; 0 when nothing arrived before the timeout; -1 when the peer closed the connection
     *         before the first byte
     * @throws NativeException EPIPE (32) when the peer closed mid-message, ETIMEDOUT when a later chunk is late
     */
    public long readFully(MemorySegment buf, long offset, long len, int[] fdsOut, int timeoutMillis) {
        long done = 0;
        int[] later = null;
        while (done < len) {
            int[] into = done == 0 ? fdsOut : (later == null ? later = new int[MAX_FDS] : later);
            long r = receive(buf.asSlice(offset + done, len - done), into, timeoutMillis);
            if (into == later) {
                for (int f : later) {
                    Fd.close(f);
                }
            }
            if (r == 0) {
                if (done == 0) {
                    return 0;
                }
                throw new NativeException("recvmsg(" + fd + "): message incomplete after " + done + " of " + len + " bytes", Errno.ETIMEDOUT);
            }
            if (r < 0) {
                if (done == 0) {
                    return -1;
                }
                throw new NativeException("recvmsg(" + fd + "): peer closed after " + done + " of " + len + " bytes", Errno.EPIPE);
            }
            done += r;
        }
        return done;
    }

    private static int newSocket(int type) {
        try {
            return Native.check((int) SOCKET.invokeExact(Native.errnoState(), AF_UNIX, type | SOCK_CLOEXEC, 0), "socket(AF_UNIX)");
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    private static MemorySegment sockaddr(Arena a, Path path) {
        byte[] p = path.toString().getBytes(StandardCharsets.UTF_8);
        if (p.length >= 108) {
            throw new IllegalArgumentException("unix socket path longer than 107 bytes: " + path);
        }
        MemorySegment addr = a.allocate(110, 2);
        addr.set(ValueLayout.JAVA_SHORT, 0, (short) AF_UNIX);
        MemorySegment.copy(p, 0, addr, ValueLayout.JAVA_BYTE, 2, p.length);
        return addr;
    }
}
