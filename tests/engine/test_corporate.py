"""Corporate actions in the venue: cash dividends exact to the unit, the checks a dividend and
a split share, replay and snapshots after both (the splits themselves: test_splits.py)."""

import msgspec

from engine import snapshot
from engine.commands import (
    AnyCommand,
    AttestReserves,
    CancelOrder,
    Command,
    Deposit,
    ListAsset,
    ListInstrument,
    OpenAccount,
    PayDividend,
    PlaceOrder,
    SetInstrumentStatus,
    SplitShares,
)
from engine.enums import InstrumentKind, InstrumentStatus, Side
from engine.events import (
    CommandRejected,
    CorporateActionApplied,
    DividendPaid,
    Event,
)
from engine.reasons import ErrorCode
from engine.venue import Venue, VenueConfig
from settlement.ledger import Ledger
from settlement.transfers import ISSUANCE, ROUNDING
from tests.engine.conftest import make_spec

SYMBOL = "AAPLx-USD"
SHARE = 1_000_000  # AAPLx units per share (scale 6)
CENT = 1  # USD has scale 2
PAYER = 9
HOUR_US = 3_600_000_000


def setup_commands() -> list[Command]:
    """AAPLx (scale 6, step 0.001, min 0.001) against USD (cents); holders 1, 2 and 3."""
    spec = make_spec(
        qty_step=1_000, min_qty=1_000, quote_decimals=2, reference_price=10_001
    )  # 100.01 USD
    commands: list[Command] = [
        ListAsset(code="USD", scale=2),
        ListAsset(code="AAPLx", scale=6),
        ListInstrument(spec=spec),
        AttestReserves(asset="USD", amount=10_000_000 * 100, as_of_us=0),
        AttestReserves(asset="AAPLx", amount=1_000 * SHARE, as_of_us=0),
    ]
    for account in (1, 2, 3, 4, PAYER):
        commands.append(
            OpenAccount(account=account, name=f"a{account}", kyc_approved=True, jurisdiction="DE")
        )
    commands += [
        Deposit(account=1, asset="AAPLx", amount=1_234_567),
        Deposit(account=2, asset="AAPLx", amount=3_333_333),
        Deposit(account=3, asset="AAPLx", amount=10 * SHARE),
        Deposit(account=PAYER, asset="AAPLx", amount=5 * SHARE),  # treasury: no dividend
        Deposit(account=PAYER, asset="USD", amount=1_000 * 100),
        Deposit(account=4, asset="USD", amount=5_000 * 100),
    ]
    return commands


class Corp:
    def __init__(self) -> None:
        self.venue = Venue(VenueConfig(reserve_staleness_max_us=24 * HOUR_US), Ledger())
        self.commands: list[Command] = []
        for command in setup_commands():
            self.ok(command)

    def do(self, command: Command) -> list[Event]:
        command = msgspec.structs.replace(command, ts_us=self.venue.ts_us + 1)
        self.commands.append(command)
        events = self.venue.execute(command)
        self.venue.check_invariants()
        return events

    def ok(self, command: Command) -> list[Event]:
        events = self.do(command)
        assert not any(isinstance(e, CommandRejected) for e in events), events
        return events

    def refused(self, command: Command) -> CommandRejected:
        before = self.venue.state_hash()
        events = self.do(command)
        assert len(events) == 1 and isinstance(events[0], CommandRejected), events
        # nothing changed but the clock: the same venue at the same time hashes the same
        self.venue.ts_us -= 1
        assert self.venue.state_hash() == before
        self.venue.ts_us += 1
        return events[0]

    def total(self, account: int, asset: str) -> int:
        assert self.venue.ledger is not None
        return self.venue.ledger.balance(account, asset).total

    def held(self, account: int, asset: str) -> int:
        assert self.venue.ledger is not None
        return self.venue.ledger.balance(account, asset).held

    def halt(self) -> None:
        self.ok(SetInstrumentStatus(symbol=SYMBOL, status=InstrumentStatus.HALTED))


def dividend(amount: int = 2_475, decimals: int = 4, payer: int = PAYER) -> PayDividend:
    return PayDividend(symbol=SYMBOL, payer=payer, amount=amount, amount_decimals=decimals)


# ----------------------------------------------------------------- dividends


def test_a_dividend_pays_floor_to_each_holder_and_the_residual_to_rounding(corp: Corp) -> None:
    corp.ok(PlaceOrder(account=3, symbol=SYMBOL, side=Side.SELL, price=10_100, qty=4 * SHARE))
    assert corp.held(3, "AAPLx") == 4 * SHARE  # held shares are paid on too
    events = corp.ok(dividend())  # 0.2475 USD a share
    applied = {e.account: e for e in events if isinstance(e, CorporateActionApplied)}
    # 1.234567 x 0.2475 = 0.3055... -> 30 cents; 3.333333 -> 0.8249... -> 82; 10 -> 2.475 -> 247
    assert {a: e.cash_received for a, e in applied.items()} == {1: 30, 2: 82, 3: 247}
    assert all(e.holding_before == e.holding_after for e in applied.values())
    assert PAYER not in applied  # the payer's own shares earn nothing
    paid = events[-1]
    assert isinstance(paid, DividendPaid)
    # 14.5679 shares x 0.2475 = 3.60555525 -> the payer provides 361 cents, 2 are residual
    assert (paid.provided, paid.paid_total, paid.residual) == (361, 359, 2)
    assert (paid.holders, paid.shares_total) == (3, 14_567_900)
    assert corp.total(PAYER, "USD") == 1_000 * 100 - 361
    assert corp.total(ROUNDING, "USD") == 2
    assert [corp.total(a, "USD") for a in (1, 2, 3)] == [30, 82, 247]
    assert corp.total(3, "AAPLx") == 10 * SHARE  # shares untouched


def test_a_dividend_or_split_for_a_wrong_case_symbol_names_the_listed_one(corp: Corp) -> None:
    """Symbols match exactly; the refusal names the listed one (protocol §11.1's 4000 row)
    and changes nothing. Before session 28's review fix, the bare `unknown symbol 'aaplx-usd'`."""
    wrong = SYMBOL.lower()
    named = f"unknown symbol {wrong!r}: did you mean {SYMBOL!r}? (symbols match case and all)"
    paid = PayDividend(symbol=wrong, payer=PAYER, amount=1, amount_decimals=0)
    split = SplitShares(symbol=wrong, ratio_new=2, ratio_old=1)
    for command in (paid, split):
        refused = corp.refused(command)
        assert (refused.reason, refused.detail) == (ErrorCode.UNKNOWN_SYMBOL, named)


def test_dividend_refusals_change_nothing(corp: Corp) -> None:
    assert corp.refused(dividend(amount=0)).reason is ErrorCode.BAD_PARAM
    assert corp.refused(dividend(decimals=19)).reason is ErrorCode.BAD_PARAM
    unknown = PayDividend(symbol="NOPE", payer=PAYER, amount=1, amount_decimals=0)
    unknown_refused = corp.refused(unknown)
    assert unknown_refused.reason is ErrorCode.UNKNOWN_SYMBOL
    assert unknown_refused.detail == "unknown symbol 'NOPE'"  # a sentence, not the bare symbol
    assert corp.refused(dividend(payer=77)).reason is ErrorCode.UNKNOWN_ACCOUNT
    short = corp.refused(dividend(amount=100, decimals=0))  # 100 USD a share: 1,456.79 USD
    assert short.reason is ErrorCode.INSUFFICIENT_BALANCE
    assert "needs 1456.79" in short.detail and str(PAYER) in short.detail
    # the numbers every INSUFFICIENT_BALANCE carries, in the cash asset's units (cents)
    assert short.asset == "USD"
    assert short.facts == (("needed", 145_679, 2), ("available", 100_000, 2))


def test_a_dividend_payer_pays_from_available_cash_only(corp: Corp) -> None:
    corp.ok(PlaceOrder(account=PAYER, symbol=SYMBOL, side=Side.BUY, price=9_500, qty=10 * SHARE))
    # 950 USD of the payer's 1,000 are held for the buy: 50 USD left, the dividend of 4 USD a
    # share needs 58.28 USD; without the buy it is paid
    assert corp.refused(dividend(amount=4, decimals=0)).reason is ErrorCode.INSUFFICIENT_BALANCE
    corp.ok(CancelOrder(account=PAYER, order_id=1))
    assert isinstance(corp.ok(dividend(amount=4, decimals=0))[-1], DividendPaid)


# ------------------------------------------- splits (their tests: test_splits.py)


def book_orders(corp: Corp) -> None:
    corp.ok(PlaceOrder(account=3, symbol=SYMBOL, side=Side.SELL, price=10_001, qty=3_001_000))
    corp.ok(PlaceOrder(account=1, symbol=SYMBOL, side=Side.SELL, price=10_050, qty=1_000))
    corp.ok(PlaceOrder(account=4, symbol=SYMBOL, side=Side.BUY, price=9_999, qty=2_000_000))


def lieu_split(ratio_new: int = 1, ratio_old: int = 10, payer: int = PAYER) -> SplitShares:
    """A split as the gateway now enters it: cash in lieu, every withdrawal held through."""
    return SplitShares(
        symbol=SYMBOL,
        ratio_new=ratio_new,
        ratio_old=ratio_old,
        rescale_caps=True,
        cash_in_lieu=True,
        payer=payer,
        withdrawals_held=True,
    )


def test_a_tbill_takes_no_corporate_actions(corp: Corp) -> None:
    corp.ok(ListAsset(code="TB-X", scale=0))
    bill = make_spec(
        symbol="TB-X-USD",
        kind=InstrumentKind.TBILL,
        base="TB-X",
        price_decimals=6,
        qty_decimals=0,
        quote_decimals=2,
        reference_price=98_676_708,
        maturity_us=1_000 * HOUR_US,
    )
    corp.ok(ListInstrument(spec=bill))
    split = SplitShares(symbol="TB-X-USD", ratio_new=2, ratio_old=1)
    assert corp.refused(split).reason is ErrorCode.BAD_PARAM
    pay = PayDividend(symbol="TB-X-USD", payer=PAYER, amount=1, amount_decimals=0)
    assert corp.refused(pay).reason is ErrorCode.BAD_PARAM


# ----------------------------------------------------------------- determinism


def corporate_history(corp: Corp) -> None:
    book_orders(corp)
    corp.ok(dividend())
    corp.halt()
    corp.ok(SplitShares(symbol=SYMBOL, ratio_new=3, ratio_old=2))
    corp.ok(SplitShares(symbol=SYMBOL, ratio_new=1, ratio_old=7))
    corp.ok(lieu_split(ratio_new=2, ratio_old=3))
    corp.ok(SetInstrumentStatus(symbol=SYMBOL, status=InstrumentStatus.OPEN))
    corp.ok(dividend(amount=1_234_567, decimals=7))


def replayed_twice(corp: Corp) -> list[Venue]:
    """`corp`'s commands through the journal's encoding, then through two new venues: the
    two runs' events are equal, and both state hashes equal the live venue's."""
    journal = msgspec.msgpack.encode(corp.commands)
    decoded = msgspec.msgpack.decode(journal, type=list[AnyCommand])  # type: ignore[valid-type]
    assert decoded == corp.commands
    venues = [Venue(corp.venue.config, Ledger()) for _ in range(2)]
    runs = [[venue.execute(command) for command in decoded] for venue in venues]
    assert runs[0] == runs[1]
    assert venues[0].state_hash() == venues[1].state_hash() == corp.venue.state_hash()
    return venues


def test_replaying_the_journal_gives_the_same_events_and_hash(corp: Corp) -> None:
    corporate_history(corp)
    replayed_twice(corp)


def test_a_snapshot_after_a_split_restores_the_same_venue(corp: Corp) -> None:
    corporate_history(corp)
    image = snapshot.decode(snapshot.encode(snapshot.capture(corp.venue)))
    restored = snapshot.restore(image)
    assert restored.state_hash() == corp.venue.state_hash()
    follow = PlaceOrder(
        ts_us=corp.venue.ts_us + 1,
        account=4,
        symbol=SYMBOL,
        side=Side.BUY,
        price=corp.venue.markets[SYMBOL].reference_price,
        qty=1_000_000,
    )
    assert restored.execute(follow) == corp.venue.execute(follow)
    assert corp.total(ISSUANCE, "AAPLx") == -corp.venue.ledger.supply("AAPLx")  # type: ignore[union-attr]
