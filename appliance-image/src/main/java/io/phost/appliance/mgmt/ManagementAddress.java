package io.phost.appliance.mgmt;

import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.net.UnknownHostException;
import java.nio.file.Path;

/**
 * Where the management endpoint listens: {@code unix:/path/to/phost.sock} (default, guarded by file
 * permissions) or {@code tcp://HOST:PORT} (guarded by a bearer token).
 */
public record ManagementAddress(Path unixPath, String host, int port) {

    public static ManagementAddress parse(String text) {
        if (text.startsWith("unix:")) {
            String p = text.substring("unix:".length());
            if (p.isEmpty()) {
                throw new IllegalArgumentException("management address '" + text + "' has no socket path");
            }
            return new ManagementAddress(Path.of(p), null, 0);
        }
        if (text.startsWith("tcp://")) {
            String hp = text.substring("tcp://".length());
            int colon = hp.lastIndexOf(':');
            if (colon <= 0) {
                throw new IllegalArgumentException("management address '" + text + "' needs tcp://HOST:PORT");
            }
            String host = hp.substring(0, colon);
            if (host.startsWith("[") && host.endsWith("]")) {
                host = host.substring(1, host.length() - 1);
            }
            int port;
            try {
                port = Integer.parseInt(hp.substring(colon + 1));
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("management address '" + text + "': bad port");
            }
            if (port < 0 || port > 65535) {
                throw new IllegalArgumentException("management address '" + text + "': port out of range");
            }
            return new ManagementAddress(null, host, port);
        }
        if (text.startsWith("/") || text.startsWith("./")) {
            return new ManagementAddress(Path.of(text), null, 0);
        }
        throw new IllegalArgumentException("management address '" + text + "' must be unix:/PATH or tcp://HOST:PORT");
    }

    public boolean isUnix() {
        return unixPath != null;
    }

    public StandardProtocolFamily family() {
        return isUnix() ? StandardProtocolFamily.UNIX : null;
    }

    public SocketAddress socketAddress() throws UnknownHostException {
        return isUnix() ? UnixDomainSocketAddress.of(unixPath) : new InetSocketAddress(InetAddress.getByName(host), port);
    }

    public ManagementAddress withPort(int actualPort) {
        return new ManagementAddress(unixPath, host, actualPort);
    }

    @Override
    public String toString() {
        return isUnix() ? "unix:" + unixPath : "tcp://" + (host.contains(":") ? "[" + host + "]" : host) + ":" + port;
    }
}
