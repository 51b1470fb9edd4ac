"""A dividend that pays no holder a cash unit: refused where it enters, replayed as it was.

Session 25's finding: `admin.pay_dividend` of 0.000000000000000001 USD a share (a mistyped
amount) paid every holder 0.00, pushed each a `corporate_action` saying so, and took a cent
from the payer for the rounding account: the exact total rounds up for the payer and down to
nothing for each holder.
"""

import msgspec

from engine.events import CorporateActionApplied, DividendPaid
from engine.reasons import ErrorCode
from settlement.transfers import ROUNDING
from tests.engine.test_corporate import PAYER, Corp, dividend

DUST = dividend(amount=1, decimals=18)  # 10^-18 USD a share


def test_a_dividend_that_pays_no_holder_a_cent_is_refused() -> None:
    corp = Corp()
    refused = corp.refused(msgspec.structs.replace(DUST, paid_checked=True))
    assert (refused.reason, refused.detail) == (
        ErrorCode.BAD_PARAM,
        "a dividend of 0.000000000000000001 USD a share pays no holder anything: even the"
        " largest holding, 10.000000 AAPLx, is owed less than 0.01 USD, the cash's smallest"
        " unit, and the payer would give 0.01 USD to the rounding account for nothing; check"
        " amount_per_share",
    )
    paid = corp.ok(msgspec.structs.replace(dividend(), paid_checked=True))  # a real one pays
    assert isinstance(paid[-1], DividendPaid) and paid[-1].paid_total > 0


def test_an_old_journals_dividend_that_paid_nobody_replays_as_it_ran() -> None:
    """Records written before the check (no `paid_checked`) are done as they were."""
    corp = Corp()
    events = corp.ok(DUST)
    applied = [e.cash_received for e in events if isinstance(e, CorporateActionApplied)]
    assert applied == [0, 0, 0]
    assert corp.total(ROUNDING, "USD") == 1
    assert corp.total(PAYER, "USD") == 1_000 * 100 - 1
