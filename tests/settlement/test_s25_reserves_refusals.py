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


def test_a_statement_older_than_the_latest_says_which_is_the_latest(run_venue: RunVenue) -> None:
    """It said only "an attestation older than the latest one": after a split the latest is
    the venue's rescaled statement, which the operator did not send, so say it."""

    async def operator(venue: Venue) -> None:
        admin = await venue.client("admin")
        [usd] = [r for r in (await admin.request("reserves"))["reserves"] if r["asset"] == "USD"]
        statement = {"asset": "USD", "amount": "26000000", "as_of": usd["as_of"] - 1}
        assert await refused(admin, "admin.attest_reserves", statement) == (
            "BAD_PARAM",
            f"an attestation older than the latest one: USD's latest is as of {usd['as_of']}"
            f" µs (25000000.000000), this one as of {usd['as_of'] - 1} µs; a new statement"
            " needs a later as_of",
        )

    run_venue(operator)


def test_the_withdrawal_past_the_most_pending_says_what_frees_one(run_venue: RunVenue) -> None:
    async def operator(venue: Venue) -> None:
        admin = await venue.client("admin")
        withdraw = {"account": 2, "asset": "USD", "amount": "1"}
        ids = [
            (await admin.request("admin.withdraw", withdraw))["withdrawal_id"] for _ in range(100)
        ]
        before = await admin.request("reserves")
        with pytest.raises(VenueError) as error:
            await admin.request("admin.withdraw", withdraw)
        assert str(error.value) == (
            "400 BAD_PARAM (1003): at most 100 pending withdrawals: account 2 has 100; confirm"
            " or void one of them first"
        )
        assert await admin.request("reserves") == before
        await admin.request("admin.void_withdrawal", {"withdrawal_id": ids[0]})
        await admin.request("admin.withdraw", withdraw)  # one freed: taken

    run_venue(operator)
