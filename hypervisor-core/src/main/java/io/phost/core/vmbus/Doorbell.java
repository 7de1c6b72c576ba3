package io.phost.core.vmbus;

/** Signals the peer of a ring (an eventfd write in production; a counter in unit tests). */
@FunctionalInterface
public interface Doorbell {
    void ring();

    Doorbell NONE = () -> { };
}
