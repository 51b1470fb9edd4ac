"""A logon whose `ts` was sent in milliseconds or seconds says so (session 25's finding)."""

import time
from typing import Any

from client.sdk import VenueError
from gateway.auth import RECV_WINDOW_MS_DEFAULT, sign_logon
from tests.conftest import KEYS, Venue


def _logon_params(ts: int, nonce: str) -> dict[str, Any]:
    api_key, secret = KEYS["alpha"]
    sig = sign_logon(secret, api_key, ts, nonce, RECV_WINDOW_MS_DEFAULT)
    return {"api_key": api_key, "ts": ts, "nonce": nonce, "sig": sig}


def test_a_logon_ts_in_milliseconds_or_seconds_is_named_as_such(run_venue: Any) -> None:
    """The finding: a `ts` from `Date.now()` (ms) or `int(time.time())` (s) was refused
    "ts is 1794776468509 ms behind the server's clock", a distance that does not say why;
    `expire_at` and `as_of` already name a millisecond slip."""

    async def scenario(venue: Venue) -> None:
        client = await venue.client()
        now_us = time.time_ns() // 1_000
        for ts, unit in ((now_us // 1_000, "milliseconds"), (now_us // 1_000_000, "seconds")):
            try:
                await client.request("session.logon", _logon_params(ts, f"n-{unit}"))
            except VenueError as refused:
                assert refused.name == "TIMESTAMP_OUT_OF_WINDOW"
                assert str(refused).endswith(
                    f"recv_window is 5000 ms; ts {ts} looks like {unit}: ts is in microseconds"
                ), refused
            else:
                raise AssertionError(f"a ts in {unit} was taken")
        for ts in (now_us - 60_000_000, 0):  # a minute behind, or nothing like a time: no hint
            try:
                await client.request("session.logon", _logon_params(ts, f"n-{ts}"))
            except VenueError as refused:
                assert str(refused).endswith("recv_window is 5000 ms"), refused
        await client.request("session.logon", _logon_params(now_us, "n-now"))  # µs: taken

    run_venue(scenario)
