"""A cancel's answer names the cancelled order, whatever came due just before it."""

import time
from typing import Any

SYMBOL = "AAPLx-USD"


def test_a_cancel_after_anothers_gtd_expiry_answers_with_its_own_order(run_venue: Any) -> None:
    """A gtd expiry (or a maturity) due when a command arrives runs first, in the same
    command: the cancel's answer must still be about the caller's order, never the expired
    order of another account (its id and fate are that account's business)."""

    async def scenario(venue: Any) -> None:
        clock = [time.time_ns() // 1_000]
        venue.server.core.sequencer.clock_us = lambda: clock[0]
        alpha = await venue.client("alpha")
        taker = await venue.client("taker")
        expiring = await alpha.place(
            SYMBOL, "sell", "1", "190.00", tif="gtd", expire_at=clock[0] + 1_000
        )
        own = await taker.place(SYMBOL, "buy", "1", "180.00")
        clock[0] += 5_000  # the gtd order is due; no tick has expired it yet
        answer = await taker.cancel(order_id=own["order_id"])
        assert answer["order_id"] == own["order_id"] != expiring["order_id"]
        assert answer["status"] == "canceled"
        status = await alpha.request("order.status", {"order_id": expiring["order_id"]})
        assert status["status"] == "expired"  # it did expire, in the cancel's command
        await alpha.close()
        await taker.close()

    run_venue(scenario)
