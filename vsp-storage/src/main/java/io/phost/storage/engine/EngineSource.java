package io.phost.storage.engine;

/**
 * A disk that brings its own asynchronous engine (a network block client such as librbd), which
 * {@link IoEngines} prefers under {@code auto}. Its {@link io.phost.vhdx.DiskCapabilities} still describe
 * the fallback path (its own read/write on threads) for an explicit {@code threads} engine.
 */
public interface EngineSource {
    /** A new engine for one queue of {@code depth} requests. */
    IoEngine openEngine(int depth);
}
