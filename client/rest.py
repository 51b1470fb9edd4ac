"""A small REST client for the venue (docs/rest.md): stdlib `http.client`, one keep-alive
connection, requests signed with the API key's secret when a key is given.

Owns the signing of requests (`X-API-Key`, `X-Timestamp`, `X-Nonce`, `X-Recv-Window`,
`X-Signature`: each attempt signed anew, with a nonce of its own) and JSON in and out;
blocking, so call it from a thread inside asyncio code. A request refused 503
`NONCE_UNCHECKED` (a cluster gateway could not check its nonce; nothing done) is signed again
and sent again after each of `nonce_retry_delays_s`, as the SDK's logon is; then that answer
is returned. A request refused 503 `TOO_MANY_CONNECTIONS` (the client's address has the most
open connections the venue takes; nothing done) is sent again on a new connection after its
`Retry-After`, up to `refused_retries_max` times, as the SDK's connect is. An `https://` URL is
spoken over TLS (the venue serves plain HTTP: TLS is a terminating proxy's), never in the
clear. A kept-alive connection the venue has already closed (idle 15 s), or that has been
idle `IDLE_REUSE_MAX_S`, is replaced before a request is sent on it, so an order is not
written into a connection the venue has closed (a close still on its way as the request
leaves is the one window left: that request raises, as any broken connection's does).
"""

import http.client
import itertools
import json
import math
import secrets
import select
import ssl
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlencode, urlsplit

import msgspec

from engine.reasons import ErrorCode
from gateway.auth import RECV_WINDOW_MS_DEFAULT, sign_request

# An answer is awaited this long: past a cluster gateway's outcome wait (20 s by default,
# `[venue] outcome_wait_ms`, core.config), after which it answers 504 OUTCOME_UNKNOWN, and
# past a failover (~13 s), so the venue's answer is read, not this client's timeout (at 10 s,
# a POST during a failover raised a bare `TimeoutError: timed out`). As the SDK's.
TIMEOUT_S = 30.0
# How long a connection may take to open: a gateway that cannot be reached (its host lost) is
# left for the next this soon, where an answer may take the whole `timeout_s`.
CONNECT_TIMEOUT_S = 5.0
# what a request with no answer within the timeout may have done, by whether it changes
# anything (a GET changes nothing)
UNKNOWN_OUTCOME = (
    "its outcome is unknown (the venue may have carried it out): check it (an order by its"
    " cl_ord_id in GET /api/v1/orders or GET /api/v1/orders/history) before sending it again"
)
# The same of a place sent with `once` and its cl_ord_id: no look needed (docs/rest.md).
ONCE_OUTCOME = (
    "its outcome is unknown (the venue may have carried it out): it was sent with once, so send"
    " the same request again: it runs at most once (a repeat is refused 400"
    " DUPLICATE_CL_ORD_ID naming the first order and its status)"
)
# A signed request refused 503 NONCE_UNCHECKED (a cluster gateway's nonce claim unanswered
# within 2 s: NATS down, a leader election of ~3 s) is signed again with a new nonce and sent
# again after each delay; then that refusal is returned. The SDK's logon retries alike
# (client.sdk.LOGON_RETRY_DELAYS_S): ~7.75 s of pauses, longer than an election.
NONCE_RETRY_DELAYS_S = (0.25, 0.5, 1.0, 2.0, 4.0)
# A connection refused 503 with `Retry-After` (too many from the client's address: one of its
# own may close) is opened again after that many seconds, this many times; then the refusal
# is returned (the SDK raises it). A Retry-After beyond the cap is waited only up to it.
REFUSED_RETRIES_MAX = 5
RETRY_AFTER_MAX_S = 60
DEFAULT_PORTS = {"http": 80, "https": 443}  # the schemes a venue's URL may have
# A kept-alive connection idle this long is not reused: the venue closes one idle 15 s
# (gateway.http.KEEPALIVE_IDLE_S), and a request sent as it does would be lost with it.
IDLE_REUSE_MAX_S = 10.0


def wall_clock_us() -> int:
    """The wall clock in µs since the epoch: what a request's `X-Timestamp` says by default."""
    return time.time_ns() // 1_000


class RestResponse:
    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.status = status
        self.body = body
        self.headers = headers

    def json(self) -> Any:
        return json.loads(self.body)

    def error_code(self) -> int | None:
        """The venue's error code if this is an error answer (docs/rest.md), else None."""
        try:
            error = json.loads(self.body).get("error")
        except (ValueError, AttributeError):  # not JSON, or not an object
            return None
        code = error.get("code") if isinstance(error, dict) else None
        return code if isinstance(code, int) else None

    def header(self, name: str) -> str | None:
        """A header's value, its name in any case (HTTP's are case-insensitive), or None."""
        name = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == name), None)

    def __repr__(self) -> str:
        return f"RestResponse({self.status}, {self.body[:200]!r})"


class RestTimeout(TimeoutError):
    """No answer to a request within the client's `timeout_s`. `outcome_unknown` is True for
    a request that may change something (not a GET): the message says what to do."""

    def __init__(self, method: str, path: str, timeout_s: float, body: bytes = b"") -> None:
        self.outcome_unknown = method != "GET"
        message = f"no answer to {method} {path} within {timeout_s:g} s"
        if self.outcome_unknown:
            message += f": {_unknown_outcome(body)}"
        super().__init__(message)
        self.method = method
        self.path = path
        self.timeout_s = timeout_s


class RestNotSent(ConnectionError):
    """No gateway of the venue could be reached (each refused, timed out or unreachable
    while connecting): the request was not sent, so nothing was done; send it again later."""

    outcome_unknown = False


class RestConnectionLost(ConnectionError):
    """The connection broke after a request was sent, before its answer: for any method but
    GET (sent again once on a new connection) the outcome is unknown, and the message says
    how to check it."""

    def __init__(
        self, method: str, path: str, url: str, failure: Exception, body: bytes = b""
    ) -> None:
        self.outcome_unknown = method != "GET"
        message = (
            f"the connection to {url} broke before the answer to {method} {path} ({failure!r})"
        )
        if self.outcome_unknown:
            message += f": {_unknown_outcome(body)}"
        super().__init__(message)
        self.method = method
        self.path = path


def _unknown_outcome(body: bytes) -> str:
    """What to do about a request whose answer was lost: a body with `once` and a cl_ord_id
    is sent again as it is, any other is looked up first."""
    try:
        fields = json.loads(body) if body else None
    except ValueError:  # not JSON: the venue refuses it, but say what is safe
        fields = None
    if isinstance(fields, dict) and fields.get("once") is True and fields.get("cl_ord_id"):
        return ONCE_OUTCOME
    return UNKNOWN_OUTCOME


def _gateway(url: str) -> tuple[bool, str, int]:
    """A venue URL's (TLS, host, port); a scheme other than http(s) is a ValueError."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS:
        raise ValueError(f"a venue's URL is http:// or https://, not {url!r}")
    return (
        parts.scheme == "https",
        parts.hostname or "127.0.0.1",
        parts.port or DEFAULT_PORTS[parts.scheme],
    )


class RestClient:
    """`RestClient("http://127.0.0.1:8080", key, secret).get("/api/v1/balances")`.

    `other_urls` are the same venue's other gateways (a cluster's): a connection refused
    (nothing sent: its gateway is down) is opened to the next in turn, each tried once per
    request, and the client stays on the one that answered (`base_url`)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        secret: str | None = None,
        *,
        nonce_retry_delays_s: Iterable[float] = NONCE_RETRY_DELAYS_S,
        ssl_context: ssl.SSLContext | None = None,
        refused_retries_max: int = REFUSED_RETRIES_MAX,
        timeout_s: float = TIMEOUT_S,
        other_urls: Iterable[str] = (),
    ):
        # every gateway of the venue, in the order tried: `base_url` first
        self.urls = (base_url, *(url for url in other_urls if url != base_url))
        self._gateways = [_gateway(url) for url in self.urls]  # checked before anything
        self._current = 0  # the index in `urls` of the gateway requests go to
        if (api_key is None) != (secret is None):  # else the first signed request asserted
            raise ValueError("an API key and its secret go together: give both, or neither")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be above 0, not {timeout_s!r}")
        self.timeout_s = timeout_s  # each attempt's wait for its answer (`RestTimeout`)
        self.tls, self.host, self.port = self._gateways[0]
        self.api_key = api_key
        self.secret = secret
        self.recv_window_ms = RECV_WINDOW_MS_DEFAULT
        # The time each request is signed with; a test may set a clock it moves itself.
        self.clock_us: Callable[[], int] = wall_clock_us
        self.nonce_retry_delays_s = tuple(nonce_retry_delays_s)
        self.nonce_retries = 0  # requests sent again after NONCE_UNCHECKED, for tests and logs
        self.refused_retries_max = refused_retries_max
        # requests sent again after TOO_MANY_CONNECTIONS, likewise (in all: the bound,
        # `refused_retries_max`, is each request's)
        self.refused_retries = 0
        self.ssl_context = ssl_context  # https only; None: the system's default verification
        self._nonces = itertools.count(1)
        self._prefix = secrets.token_hex(4)
        self._connection: http.client.HTTPConnection | None = None
        self._idle_since_s = 0.0  # time.monotonic() when the connection's last answer ended
        # Wall-clock µs when the last answered attempt was sent and its answer read: the round
        # trip `sync_clock` halves (not the whole request, which may sleep between retries).
        self.last_round_trip_us = (0, 0)

    @property
    def base_url(self) -> str:
        """The gateway requests go to: the first of `urls` that took a connection."""
        return self.urls[self._current]

    def _use_next_gateway(self) -> None:
        self.close()
        self._current = (self._current + 1) % len(self.urls)
        self.tls, self.host, self.port = self._gateways[self._current]

    def get(self, path: str, **query: Any) -> RestResponse:
        return self.request("GET", path, query=query)

    def post(self, path: str, body: Any) -> RestResponse:
        return self.request("POST", path, body=json_encoded(body))

    def patch(self, path: str, body: Any) -> RestResponse:
        return self.request("PATCH", path, body=json_encoded(body))

    def delete(self, path: str) -> RestResponse:
        return self.request("DELETE", path)

    def request(
        self,
        method: str,
        path: str,
        query: dict[str, Any] | None = None,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        signed: bool | None = None,
    ) -> RestResponse:
        """One request; signed when the client has a key (unless `signed` is False). Refused
        503 `NONCE_UNCHECKED`, it is signed anew and sent again after each of
        `nonce_retry_delays_s` (nothing was done: safe for any method); the last answer is
        returned. Refused 503 `TOO_MANY_CONNECTIONS` (nothing done either), it is sent again
        after the answer's `Retry-After`, up to `refused_retries_max` times (each request:
        before, in the client's whole life). A query written into `path`
        (`/api/v1/orders?symbol=…`) is signed as the query, as sent, before the one given in
        `query`."""
        if not path.startswith("/"):  # sent as it is, it would be no path (a 404 of the page's)
            raise ValueError(
                f"{method} {path!r} not sent: a path starts with '/', such as '/api/v1/balances'"
            )
        path, _, written = path.partition("?")
        given = urlencode({k: _query_value(v) for k, v in (query or {}).items() if v is not None})
        query_text = "&".join(part for part in (written, given) if part)
        sign = (signed is None and self.api_key is not None) or bool(signed)
        response = self._attempt(method, path, query_text, body, headers or {}, sign)
        nonce_delays_s = iter(self.nonce_retry_delays_s)
        refused_retries = 0  # this request's: the bound is per request, as the SDK's connect's
        while True:
            if sign and _nonce_unchecked(response):
                delay_s = next(nonce_delays_s, None)
                if delay_s is None:
                    return response
                self.nonce_retries += 1
            elif refused_retries < self.refused_retries_max and _too_many(response):
                self.close()  # the venue closes a refused connection: a new one is opened
                delay_s = retry_after_s(503, response.header("Retry-After"))
                assert delay_s is not None, "_too_many checked the header"
                refused_retries += 1
                self.refused_retries += 1
            else:
                return response
            time.sleep(delay_s)
            response = self._attempt(method, path, query_text, body, headers or {}, sign)

    def _attempt(
        self, method: str, path: str, query: str, body: bytes, headers: dict[str, str], sign: bool
    ) -> RestResponse:
        """The request sent once, or twice if it is a GET whose kept-alive connection the
        server had closed (signed anew: a nonce is never sent twice); a connection that
        cannot be opened (refused, unreachable, or not open within `CONNECT_TIMEOUT_S`:
        nothing sent) opened to each of the other gateways in turn, then `RestNotSent` (or
        `ConnectionRefusedError` when each refused it). A connection that breaks
        after the request left raises `RestConnectionLost`, no answer `RestTimeout`."""
        reused = self._connection is not None
        refusals = 0
        while True:
            try:
                return self._send(method, path, query, body, headers, sign)
            except TimeoutError:
                self.close()  # an answer may still come on it: never read as the next one's
                raise RestTimeout(method, path, self.timeout_s, body) from None
            except _NotConnected as failed:
                refusals += 1  # not connected, so nothing sent: another gateway may serve
                if refusals >= len(self.urls):
                    self.close()
                    tried = ", ".join(self.urls)
                    why = f"{method} {path} not sent: no connection taken by {tried}"
                    cause = failed.cause
                    if isinstance(cause, ConnectionRefusedError):  # each refused it
                        raise ConnectionRefusedError(cause.errno, f"{why} ({cause})") from cause
                    raise RestNotSent(f"{why} ({cause or 'timed out'})") from cause
                self._use_next_gateway()
            except (ConnectionError, http.client.HTTPException) as lost:
                self.close()
                if not (reused and method == "GET"):
                    raise RestConnectionLost(method, path, self.base_url, lost, body) from lost
                # the server closed the idle keep-alive connection: a GET is safe to send again
                reused = False

    def _send(
        self, method: str, path: str, query: str, body: bytes, headers: dict[str, str], sign: bool
    ) -> RestResponse:
        sent = dict(headers)
        if body:
            sent.setdefault("Content-Type", "application/json")
        if sign:
            sent |= self.signature(method, path, query, body)
        target = path + ("?" + query if query else "")
        connection = self._connect()
        if connection.sock is None:  # a new connection: opened apart, so that a failure here
            _open(connection, self.timeout_s)  # is known to have sent nothing
        sent_us = wall_clock_us()
        connection.request(method, target, body=body or None, headers=sent)
        response = connection.getresponse()
        data = response.read()
        self.last_round_trip_us = (sent_us, wall_clock_us())
        self._idle_since_s = time.monotonic()
        if response.will_close:
            self.close()
        return RestResponse(response.status, data, dict(response.getheaders()))

    def signature(self, method: str, path: str, query: str, body: bytes) -> dict[str, str]:
        assert self.api_key is not None and self.secret is not None, "a key signs"
        ts_us = self.clock_us()
        nonce = f"{self._prefix}-{next(self._nonces)}"
        window = self.recv_window_ms
        sig = sign_request(
            self.secret, self.api_key, ts_us, nonce, window, method, path, query, body
        )
        return {
            "X-API-Key": self.api_key,
            "X-Timestamp": str(ts_us),
            "X-Nonce": nonce,
            "X-Recv-Window": str(window),
            "X-Signature": sig,
        }

    def sync_clock(self) -> int:
        """Sign by the venue's clock from now on, as the web page and the SDK's logon do:
        ask `GET /api/v1/time` and keep its offset from this machine's clock (taken at the
        middle of the round trip of the attempt answered: a retry's wait before it, after a
        503, would put that middle seconds off). A machine whose clock is off by more than the
        recv window has every signed request refused `TIMESTAMP_OUT_OF_WINDOW` otherwise.
        Returns the offset in µs; raises `RuntimeError` if the venue does not answer it."""
        response = self.request("GET", "/api/v1/time", signed=False)
        sent_us, received_us = self.last_round_trip_us
        if response.status != 200:
            raise RuntimeError(f"the venue's clock is not known: {response!r}")
        offset_us: int = response.json()["time"] - (sent_us + received_us) // 2
        self.clock_us = lambda: wall_clock_us() + offset_us
        return offset_us

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is not None and not self._reusable(self._connection):
            self.close()
        if self._connection is None and self.tls:
            self._connection = http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout_s, context=self.ssl_context
            )
        elif self._connection is None:
            self._connection = http.client.HTTPConnection(
                self.host, self.port, timeout=self.timeout_s
            )
        return self._connection

    def _reusable(self, connection: http.client.HTTPConnection) -> bool:
        """Whether a request may be sent on the kept-alive `connection`. Not if the venue has
        closed it (its socket reads as ready: the close, or bytes no request asked for) or it
        has been idle `IDLE_REUSE_MAX_S`. Before, a POST, PATCH or DELETE sent after 15 s of
        quiet was written into the closed connection and raised BrokenPipeError or
        RemoteDisconnected (only a GET was sent again), leaving the trader unsure of the order."""
        sock = connection.sock
        if sock is None:
            return True  # not connected yet: `request` connects
        if time.monotonic() - self._idle_since_s >= IDLE_REUSE_MAX_S:
            return False
        # `poll`, not `select`: select refuses a descriptor of 1,024 or more (a bot with that
        # many files or sockets open), which raised ValueError from every reused connection.
        readable = select.poll()
        readable.register(sock, select.POLLIN)
        return not readable.poll(0)


def _nonce_unchecked(response: RestResponse) -> bool:
    """The venue refused the request 503 NONCE_UNCHECKED: nothing done, sign again."""
    return response.status == 503 and response.error_code() == ErrorCode.NONCE_UNCHECKED


def _too_many(response: RestResponse) -> bool:
    """Refused 503 TOO_MANY_CONNECTIONS with a `Retry-After`: nothing done, try again then."""
    if response.error_code() != ErrorCode.TOO_MANY_CONNECTIONS:
        return False
    return retry_after_s(response.status, response.header("Retry-After")) is not None


def retry_after_s(status: int, retry_after: str | None) -> float | None:
    """How long a 503 refusal says to wait (its `Retry-After` in whole seconds, at most
    `RETRY_AFTER_MAX_S`), or None if it is no such refusal: another status, no header, or
    one that is not a number of seconds (an HTTP date is not sent by the venue)."""
    if status != 503 or retry_after is None or not retry_after.strip().isdigit():
        return None
    return float(min(int(retry_after), RETRY_AFTER_MAX_S))


class _NotConnected(Exception):
    """The connection could not be opened (`cause`): nothing was sent."""

    def __init__(self, cause: OSError) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _open(connection: http.client.HTTPConnection, timeout_s: float) -> None:
    """Open `connection` within `CONNECT_TIMEOUT_S` (then its answers get `timeout_s`); any
    failure, a refusal, an unreachable host or a timeout, is `_NotConnected`: nothing sent.
    Before, only a refusal was known as such: an unreachable gateway waited the whole
    timeout and was reported as a request whose outcome is unknown (review of session 25)."""
    connection.timeout = min(CONNECT_TIMEOUT_S, timeout_s)
    try:
        connection.connect()
    except ssl.SSLError:  # reached, and TLS failed: a setting to fix, not a gateway to skip
        connection.close()
        raise
    except OSError as failed:
        connection.close()
        raise _NotConnected(failed) from failed
    finally:
        connection.timeout = timeout_s
    assert connection.sock is not None, "connected"
    connection.sock.settimeout(timeout_s)


def json_encoded(value: Any) -> bytes:
    """`value` as JSON, as both clients send it (a REST body here, the SDK's frames): by
    msgspec, a `Decimal` as its string (before session 35, `json.dumps` raised TypeError on a
    Decimal that the SDK sent). A float NaN or infinity is a ValueError naming where it is:
    msgspec writes it as `null`, which the venue reads as a field not given (an amend's
    `price: nan` went as no price, its qty changed)."""
    encoded = msgspec.json.encode(value)
    if b"null" in encoded:  # only then can one have been written: the walk is off the common path
        found = _not_finite(msgspec.to_builtins(value), "")
        if found is not None:
            where, number = found
            raise ValueError(
                f"{where or 'the value'} is {number!r}: JSON has no NaN or infinity (it would be"
                " sent as null, read as not given); nothing sent"
            )
    return encoded


def _not_finite(value: Any, where: str) -> tuple[str, float] | None:
    """The first float NaN or infinity in `value` (builtins) and its path, such as
    `ops[0].price`, or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (where, value)
    if isinstance(value, dict):
        steps: Iterable[tuple[str, Any]] = (
            (f"{where}.{key}" if where else str(key), item) for key, item in value.items()
        )
    elif isinstance(value, (list, tuple)):  # `to_builtins` keeps a tuple a tuple
        steps = ((f"{where}[{index}]", item) for index, item in enumerate(value))
    else:
        return None
    return next(filter(None, (_not_finite(item, path) for path, item in steps)), None)


def _query_value(value: Any) -> Any:
    """A query value as the venue reads it: a bool is `true` or `false` (urlencode would
    send Python's `True`, which the venue refuses since session 29)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value
