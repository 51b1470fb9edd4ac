"""No participant learns another's orders, ids or activity from what the venue answers it:
several accounts on a real server, each probing what the others did."""

import time
from collections.abc import Awaitable, Callable
from typing import Any

from tests.conftest import Venue
from tests.sample_config import sample_bill

BILL = sample_bill("TB-2027-03-04-USD")
STOCK = "AAPLx-USD"
Run = Callable[[Callable[[Venue], Awaitable[Any]]], Any]


def frozen_clock(venue: Venue) -> list[int]:
    """The venue's clock, moved only by the test (its ticks stopped): whatever comes due runs
    inside the next client command, as it would when that command is the first after it."""
    sequencer = venue.server.core.sequencer
    clock = [time.time_ns() // 1_000]
    sequencer.clock_us = lambda: clock[0]
    sequencer.tick = lambda: None  # no AdvanceClock of its own runs the due work first
    return clock


def test_a_cancel_all_counts_only_the_callers_orders_when_a_bill_matures_in_it(
    run_venue: Run,
) -> None:
    """A bill that matures as a cancel-all arrives cancels every account's orders of it in
    that command: the cancel-all's `canceled` must count the caller's orders only, not how
    many orders other accounts had on the bill."""

    async def scenario(venue: Venue) -> None:
        clock = frozen_clock(venue)
        alpha = await venue.client("alpha")
        beta = await venue.client("beta")
        for price in ("98.000000", "98.100000", "98.200000"):
            await alpha.place(BILL, "buy", "100", price)
        await beta.place(STOCK, "buy", "1", "180.00")
        clock[0] = venue.server.dispatcher.specs[BILL].maturity_us + 1
        answer = await beta.cancel_all()
        assert answer["canceled"] == 1, "beta's one order, not alpha's three that matured"
        assert await alpha.open_orders() == {"orders": []}, "the bill did mature in it"

    run_venue(scenario)


def test_a_quote_set_pull_counts_only_the_callers_quotes_when_a_bill_matures_in_it(
    run_venue: Run,
) -> None:
    """As above for `orders.cancel_all {quote_set}`, whose cancels are one command per
    quote: a bill maturing in the first of them must not add other accounts' orders."""

    async def scenario(venue: Venue) -> None:
        clock = frozen_clock(venue)
        alpha = await venue.client("alpha")
        beta = await venue.client("beta")
        for price in ("98.000000", "98.100000"):
            await alpha.place(BILL, "buy", "100", price)
        await beta.request("session.cod", {"enabled": True})
        quote = {"symbol": STOCK, "bid_px": "180.00", "bid_qty": "1"}
        await beta.request("quote.mass", {"quote_set": "q", "quotes": [quote]})
        clock[0] = venue.server.dispatcher.specs[BILL].maturity_us + 1
        answer = await beta.cancel_all(quote_set="q")
        assert answer["canceled"] == 1, "beta's one quote, not alpha's two orders that matured"
        assert await alpha.open_orders() == {"orders": []}, "the bill did mature in it"

    run_venue(scenario)
