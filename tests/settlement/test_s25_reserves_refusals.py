"""Deposits refused for the reserves, on a real server: the operator is told the figures.

Session 25's finding: `RESERVES_EXCEEDED` said only "supply of USD would exceed its reserves"
and `RESERVES_STALE` only "no fresh reserve attestation for X", whether the asset had none or
one a minute past the bound: the operator had to query `reserves` and work out by how much
(or how old) by hand before knowing what to attest. Each now says it, and changes nothing.
"""

import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from client.sdk import VenueError
from tests.conftest import Venue

RunVenue = Callable[[Callable[[Venue], Awaitable[Any]]], Any]
HOUR_US = 3_600_000_000


async def refused(admin: Any, method: str, params: dict[str, Any]) -> tuple[str, str]:
    """The error name and `msg` of a request that must be refused, nothing changed by it."""
    before = await admin.request("reserves")
    with pytest.raises(VenueError) as error:
        await admin.request(method, params)
    assert await admin.request("reserves") == before
    status = f"400 {error.value.name} ({error.value.code}): "
    assert str(error.value).startswith(status)
    return error.value.name, str(error.value).removeprefix(status)


def test_a_deposit_past_the_reserves_says_by_how_much(run_venue: RunVenue) -> None:
    async def operator(venue: Venue) -> None:
        admin = await venue.client("admin")
        [usd] = [r for r in (await admin.request("reserves"))["reserves"] if r["asset"] == "USD"]
        assert (usd["supply"], usd["attested"]) == ("20000000.000000", "25000000.000000")
        params = {"account": 1, "asset": "USD", "amount": "5000000.5"}
        assert await refused(admin, "admin.deposit", params) == (
            "RESERVES_EXCEEDED",
            "supply of USD would exceed its reserves: 20000000.000000 out plus this"
            " 5000000.500000 is 25000000.500000, past the 25000000.000000 attested as of"
            f" {usd['as_of']} µs",
        )

    run_venue(operator)


def test_a_deposit_without_a_fresh_attestation_says_how_old_the_latest_is(
    run_venue: RunVenue,
) -> None:
    async def operator(venue: Venue) -> None:
        admin = await venue.client("admin")
        await admin.request("admin.list_asset", {"code": "GOOGx", "scale": 6})
        deposit = {"account": 1, "asset": "GOOGx", "amount": "1"}
        assert await refused(admin, "admin.deposit", deposit) == (
            "RESERVES_STALE",
            "no fresh reserve attestation for GOOGx: it has none; attest its reserves first",
        )
        # 27 hours ago and a little: the sample venue's bound is 26 hours
        as_of = time.time_ns() // 1_000 - 27 * HOUR_US - 1_000_000
        attest = {"asset": "GOOGx", "amount": "100", "as_of": as_of}
        await admin.request("admin.attest_reserves", attest)
        assert await refused(admin, "admin.deposit", deposit) == (
            "RESERVES_STALE",
            f"no fresh reserve attestation for GOOGx: the latest, as of {as_of} µs, is 27.0 h"
            " old, past the 26.0 h a deposit allows (reserve staleness); attest its reserves"
            " again",
        )
        attest["as_of"] = time.time_ns() // 1_000
        await admin.request("admin.attest_reserves", attest)
        await admin.request("admin.deposit", deposit)  # fresh: taken

    run_venue(operator)
