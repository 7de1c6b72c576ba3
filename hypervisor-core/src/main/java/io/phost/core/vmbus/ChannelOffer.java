package io.phost.core.vmbus;

import java.util.UUID;

/** An OFFERCHANNEL as the guest sees it. */
public record ChannelOffer(int relid, UUID interfaceType, UUID instance, int subChannelIndex, byte[] userDefined) {}
