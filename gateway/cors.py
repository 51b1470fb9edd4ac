"""Cross-origin requests to the REST API (CORS): which other origins' web pages may call it.

Owns the answer to a browser's preflight (`OPTIONS` with `Origin` and
`Access-Control-Request-Method`) and the `Access-Control-*` headers on the answers to pages
of the origins listed in `[gateway] cors_origins` (`core.config.cors_origin` checks them at
start); `gateway.rest` routes, charges and places the requests (a preflight is unsigned: its
connection takes a public place, or is closed once answered). With none listed nothing is
added, as before session 26: a browser then lets only the venue's own pages read its answers.
Invariants: an origin is allowed only by name, never by `*`, and no answer says
`Access-Control-Allow-Credentials` (requests are signed in headers, not by cookies); every
REST answer says `Vary: Origin` once any is listed, so a shared cache keeps one per origin.
"""

from collections.abc import Iterable, Mapping

from core.config import cors_origin

# What a signed request sends besides the CORS-safelisted headers: a browser asks for them
ALLOWED_HEADERS = "Content-Type, X-API-Key, X-Timestamp, X-Nonce, X-Recv-Window, X-Signature"
# Readable by the page beyond the safelisted ones: a 429's wait (also in its body)
EXPOSED_HEADERS = "Retry-After"
# how long a browser may reuse a preflight's answer: 10 minutes, so that an origin removed
# from the list is refused soon after a restart (Chromium caps it at 2 h in any case)
PREFLIGHT_MAX_AGE_S = 600
VARY = ("vary", "Origin")


class Cors:
    """The CORS policy of one server: the origins listed, as browsers send them."""

    def __init__(self, origins: Iterable[str]) -> None:
        self.origins = frozenset(cors_origin(origin) for origin in origins)

    def listed(self, headers: Mapping[str, str]) -> str | None:
        """The request's `Origin` as sent, if it is listed (compared as a browser serializes
        an origin: scheme and host lower case); else None."""
        origin = headers.get("origin")
        if origin is None or not self.origins:
            return None
        return origin if origin.lower() in self.origins else None

    def headers(self, headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
        """The headers every REST answer to this request carries: none with no origin listed;
        else `Vary: Origin`, and for a listed origin's page the right to read the answer."""
        if not self.origins:
            return ()
        origin = self.listed(headers)
        if origin is None:
            return (VARY,)
        return (
            VARY,
            ("access-control-allow-origin", origin),
            ("access-control-expose-headers", EXPOSED_HEADERS),
        )

    def is_preflight(self, method: str, headers: Mapping[str, str]) -> bool:
        """A listed origin's preflight: answered by `preflight`. Any other OPTIONS request is
        routed as before (405, with the path's methods in `Allow`)."""
        return (
            method == "OPTIONS"
            and "access-control-request-method" in headers
            and self.listed(headers) is not None
        )

    def preflight(self, methods: Iterable[str]) -> tuple[tuple[str, str], ...]:
        """The headers of a preflight's 204 (the origin's own come from `headers`): the
        path's methods and the headers a signed request sends. A browser then sends the
        request only if its method and headers are among them."""
        return (
            ("access-control-allow-methods", ", ".join(methods)),
            ("access-control-allow-headers", ALLOWED_HEADERS),
            ("access-control-max-age", str(PREFLIGHT_MAX_AGE_S)),
        )
