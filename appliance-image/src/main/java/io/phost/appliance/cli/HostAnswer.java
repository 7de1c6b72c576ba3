package io.phost.appliance.cli;

import io.phost.appliance.UserException;
import io.phost.appliance.mgmt.HttpResponse;

/** How the management verbs read the host's answer: a refusal is the user's error, anything else unexpected the host's. */
final class HostAnswer {
    private HostAnswer() {}

    /**
     * {@code r} if its status is 200 (or 202 when {@code acceptedToo}); a 4xx is a one-line refusal prefixed with
     * {@code what} (exit 1 for 409, a conflict with the host's state; else 2, a usage error); any other status is
     * reported as the host's.
     */
    static HttpResponse require(HttpResponse r, String what, boolean acceptedToo) {
        if (r.status() >= 400 && r.status() < 500) {
            throw new UserException(what + ": " + r.bodyText().strip(), r.status() == 409 ? 1 : 2);
        }
        if (r.status() != 200 && !(acceptedToo && r.status() == 202)) {
            throw new UserException("host answered " + r.status() + ": " + r.bodyText().strip());
        }
        return r;
    }
}
