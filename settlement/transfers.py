"""Booked transfers: the double-entry record every balance in the ledger is derived from.

A transfer moves `amount` (> 0, integer units of the asset's scale) of one asset from a
debit account to a credit account. Transfers that must happen together (the legs of one
trade's delivery-versus-payment, a mint with its issuance mirror) share a `chain_id`; a
chain is applied whole or not at all. Ids are consecutive from 1 and never reused.
Participant accounts are positive integers (the engine's account ids); the venue's own
accounts are the negative constants below, one of each per asset.
"""

from enum import StrEnum

import msgspec

ISSUANCE = -1  # mirror of supply: minted tokens come from here, burned ones return here
FEE_INCOME = -2  # maker and taker fees
ROUNDING = -3  # the residual of rounding a cash leg, so every asset still sums to zero
REDEMPTION = -4  # pays T-bill holders at maturity
VENUE_ACCOUNTS = (ISSUANCE, FEE_INCOME, ROUNDING, REDEMPTION)
# The venue's own income, which the operator may sweep to a participant account: what fees
# and rounding brought in. Issuance and redemption mirror supply and par: never swept.
SWEPT_ACCOUNTS = {FEE_INCOME: "fee income", ROUNDING: "rounding"}


class TransferKind(StrEnum):
    MINT = "mint"
    BURN = "burn"
    DELIVERY = "delivery"  # the security leg of a trade
    PAYMENT = "payment"  # the cash leg of a trade
    FEE = "fee"
    ROUNDING = "rounding"
    REDEMPTION = "redemption"
    DIVIDEND = "dividend"  # cash from the dividend's payer to a holder
    SPLIT = "split"  # a holding rescaled by a split: minted from or burned to issuance
    CASH_IN_LIEU = "cash_in_lieu"  # cash from a split's payer for a fraction it burned
    SWEEP = "sweep"  # the venue's fee income or rounding, taken out to a participant account


class Transfer(msgspec.Struct, frozen=True, gc=False):
    transfer_id: int
    chain_id: int
    debit_account: int
    credit_account: int
    asset: str
    amount: int
    kind: TransferKind
    ts_us: int
