"""Sweeping the venue's own income (`SweepVenueAccount`, engine/custody.py).

The finding (session 26): the fees a trade books to fee income (-2) and the residuals booked
to rounding (-3) could never leave those accounts: no command moved them, so the operator
could never take the venue's income out.
"""

import msgspec
import pytest

from engine import snapshot
from engine.commands import (
    AnyCommand,
    AttestReserves,
    Command,
    Deposit,
    ListAsset,
    ListInstrument,
    OpenAccount,
    PlaceOrder,
    SweepVenueAccount,
)
from engine.enums import Side
from engine.events import (
    BalanceChanged,
    CommandRejected,
    Event,
    OperationRepeated,
    VenueAccountSwept,
)
from engine.reasons import SWEEP_PRECEDENCE, ErrorCode
from engine.venue import Venue
from settlement.ledger import Ledger
from settlement.transfers import FEE_INCOME, ISSUANCE, REDEMPTION, ROUNDING, TransferKind
from tests.engine.conftest import make_spec

USD = 1_000_000
SHARE = 1_000_000
BUYER, SELLER, TREASURY = 1, 2, 3


def setup_commands() -> list[Command]:
    """Three accounts, a market with fees, and one trade of 10 shares at 100.00 (1,000 USD):
    the buyer, taker, pays 5 bps (0.50 USD), the seller, maker, 1 bp (0.10 USD)."""
    commands: list[Command] = [ListAsset(code="USD", scale=6), ListAsset(code="AAPLx", scale=6)]
    for account in (BUYER, SELLER, TREASURY):
        commands.append(
            OpenAccount(account=account, name=f"a{account}", kyc_approved=True, jurisdiction="DE")
        )
    commands += [
        AttestReserves(asset="USD", amount=10_000 * USD, as_of_us=0),
        AttestReserves(asset="AAPLx", amount=100 * SHARE, as_of_us=0),
        Deposit(account=BUYER, asset="USD", amount=5_000 * USD),
        Deposit(account=SELLER, asset="AAPLx", amount=10 * SHARE),
        ListInstrument(spec=make_spec(maker_fee_bps=1, taker_fee_bps=5)),
        PlaceOrder(
            account=SELLER, symbol="AAPLx-USD", side=Side.SELL, price=10_000, qty=10 * SHARE
        ),
        PlaceOrder(account=BUYER, symbol="AAPLx-USD", side=Side.BUY, price=10_000, qty=10 * SHARE),
    ]
    return commands


class Swept:
    def __init__(self) -> None:
        self.venue = Venue(ledger=Ledger())
        self.journal: list[Command] = []
        for command in setup_commands():
            self.ok(command)

    def do(self, command: Command) -> list[Event]:
        command = msgspec.structs.replace(command, ts_us=self.venue.ts_us + 1)
        self.journal.append(command)
        events = self.venue.execute(command)
        self.venue.check_invariants()
        return events

    def ok(self, command: Command) -> list[Event]:
        events = self.do(command)
        assert not any(isinstance(e, CommandRejected) for e in events), events
        return events

    def total(self, account: int, asset: str = "USD") -> int:
        balance = self.ledger.balances.get((account, asset))
        return balance.total if balance is not None else 0

    @property
    def ledger(self) -> Ledger:
        assert self.venue.ledger is not None
        return self.venue.ledger


@pytest.fixture
def swept() -> Swept:
    return Swept()


def sweep(amount: int, **fields: object) -> SweepVenueAccount:
    params: dict[str, object] = {"venue_account": FEE_INCOME, "asset": "USD", "account": TREASURY}
    return SweepVenueAccount(amount=amount, **(params | fields))  # type: ignore[arg-type]


def test_the_fee_income_is_swept_to_a_participant_in_one_stored_transfer(swept: Swept) -> None:
    income = swept.total(FEE_INCOME)
    assert income == 600_000  # 1,000 USD traded: 0.50 taker fee, 0.10 maker fee
    swept.ledger.drain()
    events = swept.ok(sweep(400_000))
    done = events[0]
    assert isinstance(done, VenueAccountSwept)
    assert (done.venue_account, done.account, done.asset, done.amount) == (
        FEE_INCOME,
        TREASURY,
        "USD",
        400_000,
    )
    assert events[1] == BalanceChanged(done.ts_us, TREASURY, "USD", 400_000, 0)
    assert swept.total(FEE_INCOME) == 200_000 and swept.total(TREASURY) == 400_000
    (transfer,) = swept.ledger.drain()  # what the ledger store books, as every transfer
    assert transfer.transfer_id == done.transfer_id
    assert (transfer.debit_account, transfer.credit_account) == (FEE_INCOME, TREASURY)
    assert (transfer.kind, transfer.amount) == (TransferKind.SWEEP, 400_000)
    swept.ok(sweep(200_000))  # all of it: nothing is left
    assert swept.total(FEE_INCOME) == 0 and swept.total(TREASURY) == 600_000


def test_the_rounding_account_is_swept_too(swept: Swept) -> None:
    ledger = swept.ledger
    ledger.balance(ROUNDING, "USD").total += 7  # as residuals would have booked it
    ledger.balance(ISSUANCE, "USD").total -= 7
    swept.ok(sweep(7, venue_account=ROUNDING))
    assert swept.total(ROUNDING) == 0 and swept.total(TREASURY) == 7


REFUSALS = [
    (ErrorCode.BAD_PARAM, sweep(0), "a sweep's amount is positive"),
    (ErrorCode.BAD_PARAM, sweep(-1), "a sweep's amount is positive"),
    (ErrorCode.BAD_PARAM, sweep(1, venue_account=ISSUANCE), "account -1 (issuance) is never"),
    (ErrorCode.BAD_PARAM, sweep(1, venue_account=REDEMPTION), "account -4 (redemption) is"),
    (ErrorCode.BAD_PARAM, sweep(1, venue_account=SELLER), "account 2 is no venue account"),
    (ErrorCode.UNKNOWN_ACCOUNT, sweep(1, account=9), "no account 9 to sweep to"),
    (ErrorCode.UNKNOWN_ACCOUNT, sweep(1, account=FEE_INCOME), "no account -2 to sweep to"),
    (ErrorCode.UNKNOWN_ASSET, sweep(1, asset="EUR"), "unknown asset EUR"),
    (
        ErrorCode.INSUFFICIENT_BALANCE,
        sweep(600_001),
        "the venue's fee income account (-2) holds 0.600000 USD, 0.600001 asked",
    ),
    (
        ErrorCode.INSUFFICIENT_BALANCE,
        sweep(1, venue_account=ROUNDING),
        "rounding account (-3) holds 0.000000 USD",
    ),
]


@pytest.mark.parametrize(("reason", "command", "said"), REFUSALS)
def test_a_refused_sweep_says_why_and_changes_nothing(
    swept: Swept, reason: ErrorCode, command: SweepVenueAccount, said: str
) -> None:
    before = swept.venue.state_hash()
    rows = len(swept.ledger.balances)
    events = swept.do(command)
    assert len(events) == 1 and isinstance(events[0], CommandRejected), events
    assert events[0].reason is reason and said in events[0].detail, events[0]
    assert len(swept.ledger.balances) == rows  # not even an empty balance row
    assert swept.venue.state_hash() != before  # only the clock moved:
    swept.venue.ts_us -= 1
    assert swept.venue.state_hash() == before


def test_sweep_refusals_come_in_their_precedence() -> None:
    reasons = [row[0] for row in REFUSALS]
    assert list(dict.fromkeys(reasons)) == list(SWEEP_PRECEDENCE)  # one table row per reason
    # several wrong at once: the first of the precedence is reported
    (refused,) = Swept().do(sweep(10**12, asset="EUR", account=9))
    assert isinstance(refused, CommandRejected)
    assert refused.reason is ErrorCode.UNKNOWN_ACCOUNT
    # a source that is no venue account (BAD_PARAM) comes before all of those
    (refused,) = Swept().do(sweep(10**12, venue_account=ISSUANCE, asset="EUR", account=9))
    assert isinstance(refused, CommandRejected)
    assert refused.reason is ErrorCode.BAD_PARAM
    # and so does an amount that is not positive
    (refused,) = Swept().do(sweep(0, asset="EUR", account=9))
    assert isinstance(refused, CommandRejected)
    assert refused.reason is ErrorCode.BAD_PARAM


def test_a_short_sweep_gives_what_was_needed_and_is_there(swept: Swept) -> None:
    (refused,) = swept.do(sweep(700_000))
    assert isinstance(refused, CommandRejected) and refused.asset == "USD"
    assert refused.facts == (("needed", 700_000, 6), ("available", 600_000, 6))


def test_a_rounding_account_below_zero_has_nothing_to_sweep(swept: Swept) -> None:
    ledger = swept.ledger
    ledger.balance(ROUNDING, "USD").total -= 3  # a residual paid out, as a fill may book it
    ledger.balance(ISSUANCE, "USD").total += 3
    (refused,) = swept.do(sweep(1, venue_account=ROUNDING))
    assert isinstance(refused, CommandRejected)
    assert refused.reason is ErrorCode.INSUFFICIENT_BALANCE
    assert "(-3) holds 0.000000 USD, 0.000001 asked" in refused.detail
    assert refused.facts == (("needed", 1, 6), ("available", 0, 6))


def test_a_sweep_replays_and_restores_to_the_same_state(swept: Swept) -> None:
    swept.ok(sweep(250_000, cl_op_id="sweep-1"))
    again = swept.do(sweep(250_000, cl_op_id="sweep-1"))  # sent again: done once
    assert isinstance(again[0], OperationRepeated)
    assert isinstance(again[0].outcome, VenueAccountSwept)
    assert swept.total(TREASURY) == 250_000
    replayed = Venue(ledger=Ledger())
    encoder, decoder = msgspec.msgpack.Encoder(), msgspec.msgpack.Decoder(AnyCommand)
    for command in swept.journal:  # through the journal's encoding
        replayed.execute(decoder.decode(encoder.encode(command)))
    assert replayed.state_hash() == swept.venue.state_hash()
    image = snapshot.encode(snapshot.capture(swept.venue))
    restored = snapshot.restore(snapshot.decode(image))
    assert restored.state_hash() == swept.venue.state_hash()
    repeated = restored.execute(sweep(250_000, cl_op_id="sweep-1", ts_us=restored.ts_us + 1))
    assert isinstance(repeated[0], OperationRepeated)
