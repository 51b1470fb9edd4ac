"""A dividend that pays no holder a cash unit, on a real server: refused, nothing paid.

Session 25's finding: `admin.pay_dividend` of 0.000000000000000001 USD a share was done: each
holder got a `corporate_action` push of 0.000000 USD and the payer lost a unit to the
rounding account. The gateway now enters the dividend checked (`PayDividend.paid_checked`).
"""

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from client.sdk import VenueError
from tests.conftest import Venue

RunVenue = Callable[[Callable[[Venue], Awaitable[Any]]], Any]


def test_a_dividend_that_pays_nobody_is_refused_and_costs_nothing(run_venue: RunVenue) -> None:
    async def operator(venue: Venue) -> None:
        admin, alpha = await venue.client("admin"), await venue.client("alpha")
        await admin.request("admin.deposit", {"account": 100, "asset": "USD", "amount": "1000"})
        await alpha.subscribe_account()
        before = (await admin.balances(), await alpha.balances())
        params = {
            "symbol": "AAPLx-USD",
            "payer": 100,
            "amount_per_share": "0.000000000000000001",
            "cl_op_id": "dust-1",
        }
        with pytest.raises(VenueError) as refused:
            await admin.request("admin.pay_dividend", params)
        assert str(refused.value) == (
            "400 BAD_PARAM (1003): a dividend of 0.000000000000000001 USD a share pays no"
            " holder anything: even the largest holding, 20000.000000 AAPLx, is owed less than"
            " 0.000001 USD, the cash's smallest unit, and the payer would give 0.000001 USD to the"
            " rounding account for nothing; check amount_per_share"
        )
        assert (await admin.balances(), await alpha.balances()) == before
        # the refused id is not remembered: the corrected amount under it is done
        params["amount_per_share"] = "0.01"
        paid = await admin.request("admin.pay_dividend", params)
        assert (paid["holders"], paid["paid_total"]) == (3, "600.000000")

    run_venue(operator)
