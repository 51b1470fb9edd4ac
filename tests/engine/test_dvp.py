"""DvP in the venue (`engine.dvp`): each trade's settlement chain at T+0, with its legs, fees,
rounding and the balances it leaves; what a trade remembers of each party's position."""

from typing import Any

from engine.commands import (
    AttestReserves,
    Command,
    Deposit,
    ListAsset,
    ListInstrument,
    OpenAccount,
    PlaceOrder,
)
from engine.events import BalanceChanged, CommandRejected, Event, TradeSettled
from engine.venue import Venue
from settlement.ledger import Ledger
from settlement.transfers import FEE_INCOME, ROUNDING, TransferKind
from tests.engine.conftest import SYMBOL, make_spec
from tests.engine.test_clearing import BUY, SELL, SHARE, USD, Cleared


def test_trade_settles_at_once_all_legs(cleared: Cleared) -> None:
    cleared.place(2, SELL, 10_000, 3 * SHARE)  # maker
    events = cleared.place(1, BUY, 10_050, 1 * SHARE)  # taker, improves by 0.50
    settled = [e for e in events if isinstance(e, TradeSettled)]
    assert len(settled) == 1
    legs = {
        (t.kind, t.debit_account, t.credit_account, t.asset): t.amount for t in settled[0].transfers
    }
    assert legs == {
        (TransferKind.DELIVERY, 2, 1, "AAPLx"): SHARE,
        (TransferKind.PAYMENT, 1, 2, "USD"): 100 * USD,
        (TransferKind.FEE, 1, FEE_INCOME, "USD"): 50_000,  # taker 5 bps
        (TransferKind.FEE, 2, FEE_INCOME, "USD"): 10_000,  # maker 1 bp
    }
    assert len({t.chain_id for t in settled[0].transfers}) == 1
    assert cleared.balance(1, "USD") == (10_000 * USD - 100 * USD - 50_000, 0)
    assert cleared.balance(1, "AAPLx") == (101 * SHARE, 0)
    assert cleared.balance(2, "USD") == (10_000 * USD + 100 * USD - 10_000, 0)
    assert cleared.balance(2, "AAPLx") == (99 * SHARE, 2 * SHARE)


def test_a_settlement_carries_each_partys_balances_as_the_chain_left_them(
    cleared: Cleared,
) -> None:
    """A trade's `TradeSettled` says what a `BalanceChanged` of each balance it changed
    would: the buyer's and the seller's base and quote right after the chain, before the
    taker's release of what its hold kept beyond the fill."""
    cleared.place(2, SELL, 10_000, 3 * SHARE)  # maker
    before_release = {}
    venue = cleared.venue
    settle = venue.clearing.settle  # type: ignore[union-attr]

    def settle_and_look(*args: Any) -> None:
        settle(*args)
        for key in ((1, "AAPLx"), (1, "USD"), (2, "AAPLx"), (2, "USD")):
            before_release[key] = cleared.balance(*key)

    venue.clearing.settle = settle_and_look  # type: ignore[union-attr, method-assign]
    events = cleared.place(1, BUY, 10_050, SHARE)  # taker, improves by 0.50
    settled = next(e for e in events if isinstance(e, TradeSettled))
    assert (settled.buyer, settled.seller, settled.base, settled.quote) == (1, 2, "AAPLx", "USD")
    assert settled.balances() == [(*key, *now) for key, now in before_release.items()]
    assert settled.balance(1, "USD") == before_release[(1, "USD")]
    assert settled.balance(2, "AAPLx") == before_release[(2, "AAPLx")]
    assert not any(isinstance(e, BalanceChanged) and e.asset == "AAPLx" for e in events)
    released = [e for e in events if isinstance(e, BalanceChanged)][-1]
    assert (released.account, released.asset) == (1, "USD")  # the price improvement
    assert (released.total, released.held) == cleared.balance(1, "USD")


def test_a_self_trades_settlement_carries_its_two_balances_once(cleared: Cleared) -> None:
    from engine.enums import SelfTradePrevention

    cleared.place(1, SELL, 10_000, SHARE)
    events = cleared.place(1, BUY, 10_000, SHARE, stp=SelfTradePrevention.NONE)
    settled = next(e for e in events if isinstance(e, TradeSettled))
    assert settled.buyer == settled.seller == 1
    assert settled.balances() == [
        (1, "AAPLx", *cleared.balance(1, "AAPLx")),
        (1, "USD", *cleared.balance(1, "USD")),
    ]


def test_rounding_goes_to_the_rounding_account(cleared: Cleared) -> None:
    cleared.place(2, SELL, 10_001, 1)  # one micro-share at 100.01: 100.01 units of cash
    events = cleared.place(1, BUY, 10_001, 1)
    legs = [t for e in events if isinstance(e, TradeSettled) for t in e.transfers]
    by_kind = {(t.kind, t.credit_account): t.amount for t in legs}
    assert by_kind[(TransferKind.PAYMENT, 2)] == 100  # the seller gets floor(100.01)
    assert by_kind[(TransferKind.ROUNDING, ROUNDING)] == 1  # the buyer paid ceil(100.01)


def test_self_trade_settles_to_the_same_account(cleared: Cleared) -> None:
    from engine.enums import SelfTradePrevention

    cleared.place(1, SELL, 10_000, SHARE)
    events = cleared.place(1, BUY, 10_000, SHARE, stp=SelfTradePrevention.NONE)
    settled = next(e for e in events if isinstance(e, TradeSettled))
    assert [t.kind for t in settled.transfers] == [TransferKind.FEE, TransferKind.FEE]
    total, held = cleared.balance(1, "USD")
    assert (total, held) == (10_000 * USD - 50_000 - 10_000, 0)  # only the fees left
    assert cleared.balance(1, "AAPLx") == (100 * SHARE, 0)


def test_a_trade_remembers_each_partys_balances_and_new_orders_hold_from_them(
    cleared: Cleared,
) -> None:
    """`Market.positions`: the ledger's own (base, quote) balances of each party of a trade;
    a later order holds from the right one of them (a buy cash, a sell the security)."""
    cleared.place(2, SELL, 10_000, 1 * SHARE)
    cleared.place(1, BUY, 10_000, 1 * SHARE)
    ledger = cleared.venue.ledger
    assert ledger is not None
    positions = cleared.venue.markets[SYMBOL].positions
    for account in (1, 2):
        base, quote = positions[account]
        assert base is ledger.balances[(account, "AAPLx")]
        assert quote is ledger.balances[(account, "USD")]
    sell = cleared.place(1, SELL, 10_100, 2 * SHARE)
    buy = cleared.place(1, BUY, 9_000, 1 * SHARE)
    held = [(e.asset, e.held) for e in sell + buy if isinstance(e, BalanceChanged)]
    assert held == [("AAPLx", 2 * SHARE), ("USD", 90 * USD + 45_000)]  # + 5 bps worst fee
    assert cleared.balance(1, "AAPLx")[1] == 2 * SHARE
    assert cleared.balance(1, "USD")[1] == 90 * USD + 45_000


def test_cash_finer_than_price_times_qty_pays_whole_units_and_fees_on_running_totals() -> None:
    """Cash at 6 decimals for prices at 2 and quantities at 2: a notional fraction of 100 / 1
    (every other test's is 1 / den), so a fill's cash is whole and nothing is rounded, and
    fees are still rounded up once per order, on its running total."""
    venue = Venue(ledger=Ledger())
    setup: list[Command] = [
        ListAsset(code="USD", scale=6),
        ListAsset(code="AAPLx", scale=2),
        ListInstrument(spec=make_spec(qty_decimals=2, maker_fee_bps=1, taker_fee_bps=5)),
        AttestReserves(asset="USD", amount=10**6 * USD, as_of_us=1),
        AttestReserves(asset="AAPLx", amount=10**6, as_of_us=1),
    ]
    for account in (1, 2, 3):
        setup += [
            OpenAccount(account=account, name=f"a{account}", kyc_approved=True, jurisdiction="DE"),
            Deposit(account=account, asset="USD", amount=1_000 * USD),
            Deposit(account=account, asset="AAPLx", amount=1_000),
        ]
    for command in setup:
        assert not any(isinstance(e, CommandRejected) for e in venue.execute(command))
    venue.execute(PlaceOrder(account=2, symbol=SYMBOL, side=SELL, price=10_001, qty=10))
    legs = []
    for account, qty in ((1, 3), (3, 4)):  # two takers, of 0.03 and 0.04 shares at 100.01
        buy = PlaceOrder(account=account, symbol=SYMBOL, side=BUY, price=10_001, qty=qty)
        settled = [e for e in venue.execute(buy) if isinstance(e, TradeSettled)]
        venue.check_invariants()
        legs += [
            [(t.kind, t.debit_account, t.credit_account, t.amount) for t in settled[0].transfers]
        ]
    assert legs == [
        [
            (TransferKind.DELIVERY, 2, 1, 3),
            (TransferKind.PAYMENT, 1, 2, 3_000_300),  # 3.0003 USD exactly
            (TransferKind.FEE, 1, FEE_INCOME, 1_501),  # 5 bps of it, 1,500.15, up
            (TransferKind.FEE, 2, FEE_INCOME, 301),  # 1 bp, 300.03, up
        ],
        [
            (TransferKind.DELIVERY, 2, 3, 4),
            (TransferKind.PAYMENT, 3, 2, 4_000_400),
            (TransferKind.FEE, 3, FEE_INCOME, 2_001),  # 2,000.2 up
            (TransferKind.FEE, 2, FEE_INCOME, 400),  # 700.07 so far, up: 701 less 301 paid
        ],
    ]


def _legs(events: list[Event]) -> list[tuple[int, int, int, int, str, int, TransferKind]]:
    """(transfer id, chain id, debit, credit, asset, amount, kind) of each settled leg."""
    return [
        (t.transfer_id, t.chain_id, t.debit_account, t.credit_account, t.asset, t.amount, t.kind)
        for e in events
        if isinstance(e, TradeSettled)
        for t in e.transfers
    ]


def test_a_trade_of_whole_cash_books_without_the_venues_rounding_balance_and_makes_none() -> None:
    """Fills worth whole cash units (0.0001 share at 100.00: 10,000 units) book directly
    with neither of the venue's balances made (no fees, no rounding); the first fill with a
    fraction makes the rounding balance in leg order (`Ledger.settle`), and the next books its
    rounding leg directly into it. Ids run on from one chain to the next."""
    cleared = Cleared(maker_fee_bps=0, taker_fee_bps=0)
    ledger = cleared.venue.ledger
    assert ledger is not None
    first = ledger.last_transfer_id + 1
    chain = ledger.last_chain_id + 1
    legs = []
    for _ in range(2):
        cleared.place(2, SELL, 10_000, 100)
        legs += _legs(cleared.place(1, BUY, 10_000, 100))
    assert (ROUNDING, "USD") not in ledger.balances
    assert (FEE_INCOME, "USD") not in ledger.balances
    for _ in range(2):  # 1 micro-share at 100.01: 100.01 units, the buyer pays 101
        cleared.place(2, SELL, 10_001, 1)
        legs += _legs(cleared.place(1, BUY, 10_001, 1))
    d, p, r = TransferKind.DELIVERY, TransferKind.PAYMENT, TransferKind.ROUNDING
    assert legs == [
        (first, chain, 2, 1, "AAPLx", 100, d),
        (first + 1, chain, 1, 2, "USD", 10_000, p),
        (first + 2, chain + 1, 2, 1, "AAPLx", 100, d),
        (first + 3, chain + 1, 1, 2, "USD", 10_000, p),
        (first + 4, chain + 2, 2, 1, "AAPLx", 1, d),
        (first + 5, chain + 2, 1, 2, "USD", 100, p),
        (first + 6, chain + 2, 1, ROUNDING, "USD", 1, r),
        (first + 7, chain + 3, 2, 1, "AAPLx", 1, d),
        (first + 8, chain + 3, 1, 2, "USD", 100, p),
        (first + 9, chain + 3, 1, ROUNDING, "USD", 1, r),
    ]
    assert cleared.balance(ROUNDING, "USD") == (2, 0)
    assert (FEE_INCOME, "USD") not in ledger.balances
    assert ledger.last_transfer_id == first + 9 and ledger.last_chain_id == chain + 3
    assert [t.transfer_id for t in ledger.drain()][-10:] == list(range(first, first + 10))


def test_the_first_fee_makes_the_fee_balance_and_the_next_trade_books_the_same_legs(
    cleared: Cleared,
) -> None:
    """The venue's first fee in a cash asset goes through `Ledger.settle`, which makes the fee
    income balance; the next trade books directly: the same legs, the fees added to it."""
    ledger = cleared.venue.ledger
    assert ledger is not None and (FEE_INCOME, "USD") not in ledger.balances
    shapes = []
    for _ in range(2):
        cleared.place(2, SELL, 10_000, SHARE)
        legs = _legs(cleared.place(1, BUY, 10_000, SHARE))
        shapes.append([leg[2:] for leg in legs])
    assert shapes[1] == shapes[0]
    assert shapes[0] == [
        (2, 1, "AAPLx", SHARE, TransferKind.DELIVERY),
        (1, 2, "USD", 100 * USD, TransferKind.PAYMENT),
        (1, FEE_INCOME, "USD", 50_000, TransferKind.FEE),  # taker 5 bps
        (2, FEE_INCOME, "USD", 10_000, TransferKind.FEE),  # maker 1 bp
    ]
    assert cleared.balance(FEE_INCOME, "USD") == (2 * 60_000, 0)
