"""REST's error answers: every error a JSON body, in the websocket protocol's words.

Owns the error schema (`ErrorResponse`, in `/openapi.json`) and the responses that carry it:
a refusal's status (the websocket's for its code, `wire.rejection_status`), a 405 with its
`Allow`, a 429 with `Retry-After` (whole seconds, rounded up) and `retry_after_ms`. What is
refused and why is `gateway.rest`'s and `gateway.rest_limits`'s. A message quotes only the
start of a long path or name (`wire.shortened`).
"""

import math
from typing import Any

import msgspec

from engine.reasons import ErrorCode
from gateway import wire
from gateway.http import Exchange
from gateway.limits import RATE_LIMITED_WORDS

E = ErrorCode


class ErrorBody(msgspec.Struct, frozen=True, omit_defaults=True):
    code: int
    name: str
    msg: str
    data: Any = None


class ErrorResponse(msgspec.Struct, frozen=True, omit_defaults=True):
    """Every error: the websocket protocol's code and name; `retry_after_ms` on 429."""

    error: ErrorBody
    retry_after_ms: int | None = None


def error_body(code: ErrorCode, msg: str) -> bytes:
    """As `wire.error` words it: the message quotes only the start of a long path or name."""
    return msgspec.json.encode(ErrorResponse(ErrorBody(int(code), code.name, wire.shortened(msg))))


def respond_error(exchange: Exchange, code: ErrorCode, msg: str, status: int | None = None) -> None:
    exchange.respond(status or wire.rejection_status(code), error_body(code, msg))


def respond_not_allowed(exchange: Exchange, allowed: list[str]) -> None:
    msg = f"{exchange.method} is not allowed here; use {', '.join(allowed)}"
    exchange.respond(405, error_body(E.BAD_PARAM, msg), headers=[("allow", ", ".join(allowed))])


def respond_limited(
    exchange: Exchange, retry_after_ms: int, limit: str | None, msg: str | None = None
) -> None:
    """429 `RATE_LIMITED`; `limit`: the limit that refused it (a bucket, or the key's live
    nonces), in its `data` and its words (`limits.RATE_LIMITED_WORDS`, unless `msg`)."""
    data = None if limit is None else {"limit": limit}
    words = msg if msg is not None or limit is None else RATE_LIMITED_WORDS[limit]
    error = ErrorBody(int(E.RATE_LIMITED), E.RATE_LIMITED.name, words or "slow down", data)
    body = ErrorResponse(error, retry_after_ms)
    retry_after = [("retry-after", str(math.ceil(retry_after_ms / 1000)))]
    exchange.respond(429, msgspec.json.encode(body), headers=retry_after)
