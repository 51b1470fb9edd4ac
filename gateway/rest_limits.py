"""REST's charges: the buckets a request is charged to before it is read further.

Owns the rate checks of `gateway.rest`'s requests: every request charged to its connection's
bucket; an unsigned one (no account to charge later) also to its client IP's, both or
neither; a private one refused before its signature is checked when its client IP's bucket
is spent; a refused signature charged to its client IP, as an unsigned request is. The key
of a client IP is `limits.address_key`'s, behind a trusted proxy the client its
`X-Forwarded-For` names. A connection refused so before any good signature counts as public.
Each refusal is a 429 with `Retry-After`. The signature, the account's charge and the
routing are `gateway.rest`'s; the clock is its too, an input here (`now`, µs).
"""

from typing import TYPE_CHECKING

from gateway.http import Exchange
from gateway.limits import CONNECTION_LIMIT, IP_LIMIT, address_key
from gateway.rest_errors import respond_limited

if TYPE_CHECKING:
    from gateway.rest import _Answers
    from gateway.server import VenueServer

POLICY_VIOLATION = 1008  # what `Connection.close` is given for plain HTTP (which sends no code)


class RestCharges:
    """The charges of one server's REST requests to its connection and client IP buckets."""

    def __init__(self, server: "VenueServer") -> None:
        self.server = server

    def refused_by_rate(
        self, answers: "_Answers", exchange: Exchange, cost: int, unsigned: bool, now: int
    ) -> bool:
        """Charge a request before it is read further, or answer it 429 (True). Every request
        to the connection's bucket; an unsigned one (no account to charge later) also to its
        client IP's (`client_ip`), both or neither: a connection's rate alone let one IP send
        its connection cap (256) times that rate of public reads."""
        server = self.server
        ip = ""
        if unsigned:
            ip = self.address(answers, exchange)
            retry = server.unsigned_limiter.retry_after_ms(ip, now, cost)
            if retry:
                respond_limited(exchange, retry, IP_LIMIT)
                return True
        retry = server.limiter.charge_cost(answers.session.id, None, cost, now)
        if retry:
            respond_limited(exchange, retry, CONNECTION_LIMIT)
            return True
        if unsigned:  # fits: checked just now, at the same time
            server.unsigned_limiter.take(ip, now, cost)
        return False

    def address_spent(self, answers: "_Answers", exchange: Exchange, cost: int, now: int) -> bool:
        """Answer 429 (True) a private request whose client IP has spent its bucket of
        unsigned and refused requests (a refusal costing `cost` would not fit), before its
        signature is checked: refusals charged only after their HMAC still cost one each
        once the bucket was empty. A valid
        signature costs that bucket nothing, so only a client sharing its IP with one
        sending such refusals (or too many unsigned reads) meets this."""
        address = self.address(answers, exchange)
        retry = self.server.unsigned_limiter.retry_after_ms(address, now, cost)
        if retry:
            self.as_public(answers)  # unproven: not left waiting in the reserve
            respond_limited(exchange, retry, IP_LIMIT)
            return True
        return False

    def as_public(self, answers: "_Answers") -> None:
        """A connection whose private request was refused before any good signature, or that
        sent a preflight, counts as public from now on (it leaves its IP's places waiting in
        the reserve, which a request every few seconds would keep); with no public place left
        it is closed once this answer is written."""
        if answers.connection.hold_public() is not None:
            answers.connection.close(POLICY_VIOLATION)  # plain HTTP: once answered

    def refused_by_address(
        self, answers: "_Answers", exchange: Exchange, cost: int, now: int
    ) -> bool:
        """Charge a private request whose signature is refused (a 401, or a 400 or 429 of its
        headers) to its client IP's bucket, as an unsigned one is: it names no account that
        could be charged. Answered 429 (True) if it does not fit, else False: its refusal is
        answered. (The connection's bucket took it already, as it takes every request.)
        Before, one IP's connections each sent a connection's rate of such refusals (an HMAC
        each), multiplied by their number."""
        retry = self.server.unsigned_limiter.take(self.address(answers, exchange), now, cost)
        if retry:
            respond_limited(exchange, retry, IP_LIMIT)
            return True
        return False

    def address(self, answers: "_Answers", exchange: Exchange) -> str:
        """The key of the request's client IP in the per-IP buckets (`limits.address_key`):
        behind a trusted proxy, the client its `X-Forwarded-For` names."""
        forwarded = exchange.headers.get("x-forwarded-for")
        return address_key(self.server.handler.client_ip(answers.connection, forwarded))
