package io.phost.storage.rbd;

import io.phost.core.sys.Librbd;

/** Run by {@link RbdDiskTest} in a fresh JVM: the first touch of librbd from a -Xss512k main thread. */
public final class LibrbdLoadMain {
    private LibrbdLoadMain() {}

    public static void main(String[] args) {
        System.out.println("librbd available=" + Librbd.available());
    }
}
