"""Property tests: after every command of any stream the invariants hold and events add up."""

from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings

from engine.commands import (
    AttestReserves,
    Command,
    Deposit,
    ListAsset,
    ListInstrument,
    OpenAccount,
    PlaceOrder,
)
from engine.enums import OrderType, Side, TimeInForce
from engine.events import (
    CommandRejected,
    Event,
    OrderAccepted,
    OrderAmended,
    TradeExecuted,
    TradeSettled,
)
from engine.venue import Venue
from settlement.ledger import Ledger
from settlement.transfers import TransferKind
from tests.engine.conftest import make_spec
from tests.engine.strategies import cleared_command_streams, command_streams

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def stamped(commands: list[Command]) -> list[Command]:
    """Give the stream a clock: 10 µs per command, gtd expiries relative to their order."""
    out: list[Command] = [ListInstrument(ts_us=1, spec=make_spec(price_band_bps=50))]
    for index, command in enumerate(commands):
        ts = 10 * (index + 1)
        changes: dict[str, Any] = {"ts_us": ts}
        if isinstance(command, PlaceOrder) and command.tif is TimeInForce.GTD:
            changes["expire_at_us"] = ts + 10 * command.expire_at_us
        out.append(msgspec.structs.replace(command, **changes))
    return out


def run(commands: list[Command], venue: Venue | None = None) -> list[tuple[Command, list[Event]]]:
    venue = venue or Venue()
    results = []
    for command in commands:
        before = venue.state_hash()
        clock_before = venue.ts_us
        events = venue.execute(command)
        venue.check_invariants()
        if events and isinstance(events[-1], CommandRejected):
            rejected = [e for e in events if isinstance(e, CommandRejected)]
            assert len(rejected) == 1, events
            if len(events) == 1:  # nothing expired first: nothing may have changed
                venue.ts_us = clock_before
                assert venue.state_hash() == before, f"{command} was refused but changed state"
                venue.ts_us = command.ts_us
        results.append((command, events))
    return results


@SETTINGS
@given(command_streams())
def test_invariants_hold_after_every_command(commands: list[Command]) -> None:
    run(stamped(commands))


@SETTINGS
@given(command_streams())
def test_trades_respect_limits_priority_and_add_up(commands: list[Command]) -> None:
    limits: dict[int, tuple[Side, int]] = {}
    cum: dict[int, int] = {}
    last_order_id = 0
    for command, events in run(stamped(commands)):
        taker_prices: list[int] = []
        for event in events:
            if isinstance(event, OrderAccepted):
                assert event.order_id == last_order_id + 1, "order ids are consecutive"
                last_order_id = event.order_id
                if event.order_type is OrderType.LIMIT:
                    limits[event.order_id] = (event.side, event.price)
            elif isinstance(event, OrderAmended):
                limits[event.order_id] = (limits[event.order_id][0], event.price)
            elif isinstance(event, TradeExecuted):
                assert event.qty > 0
                for order_id, reported in (
                    (event.maker_order_id, event.maker_cum_qty),
                    (event.taker_order_id, event.taker_cum_qty),
                ):
                    cum[order_id] = cum.get(order_id, 0) + event.qty
                    assert cum[order_id] == reported, "cum_qty is the sum of the fills"
                maker_side, maker_price = limits[event.maker_order_id]
                assert maker_price == event.price, "trades happen at the maker's price"
                assert maker_side is not event.taker_side
                if event.taker_order_id in limits:
                    _, taker_limit = limits[event.taker_order_id]
                    worse = (
                        event.price > taker_limit
                        if event.taker_side is Side.BUY
                        else (event.price < taker_limit)
                    )
                    assert not worse, "a taker never trades beyond its limit"
                taker_prices.append(event.price)
        if taker_prices:  # a taker walks from the best price outwards
            ordered = sorted(taker_prices, reverse=_is_sell_taker(events))
            assert taker_prices == ordered, f"{command}: fills out of price priority"


def _is_sell_taker(events: list[Event]) -> bool:
    trade = next(e for e in events if isinstance(e, TradeExecuted))
    return trade.taker_side is Side.SELL


def funded(commands: list[Command]) -> tuple[Venue, list[Command]]:
    """A venue with a ledger, assets, four participants (one not KYC-approved), reserves."""
    venue = Venue(ledger=Ledger())
    setup: list[Command] = [
        ListAsset(code="USD", scale=6),
        ListAsset(code="AAPLx", scale=6),
        AttestReserves(asset="USD", amount=40_000_000, as_of_us=0),
        AttestReserves(asset="AAPLx", amount=20_000_000, as_of_us=0),
    ]
    for account in (1, 2, 3, 4):
        setup.append(
            OpenAccount(account=account, name="p", kyc_approved=account != 4, jurisdiction="DE")
        )
        setup.append(Deposit(account=account, asset="USD", amount=10_000 * account))
        setup.append(Deposit(account=account, asset="AAPLx", amount=20))
    for command in setup:
        venue.execute(command)
    listing, *rest = stamped(commands)
    spec = msgspec.structs.replace(
        listing.spec,  # type: ignore[attr-defined]
        maker_fee_bps=3,
        taker_fee_bps=7,
        price_tick=1,
    )
    return venue, [msgspec.structs.replace(listing, spec=spec), *rest]


@SETTINGS
@given(cleared_command_streams())
def test_ledger_invariants_hold_after_every_command(commands: list[Command]) -> None:
    """Holds equal reservations, assets sum to zero, nobody negative: after every command."""
    venue, stream = funded(commands)
    results = run(stream, venue)
    settled = [e for _, events in results for e in events if isinstance(e, TradeSettled)]
    traded = {
        (e.symbol, e.trade_id): e.qty
        for _, events in results
        for e in events
        if isinstance(e, TradeExecuted)
    }
    assert len(settled) == len(traded), "every trade settles, once"
    for event in settled:
        delivered = [t.amount for t in event.transfers if t.kind is TransferKind.DELIVERY]
        assert delivered in ([], [traded[(event.symbol, event.trade_id)]]), "delivers the trade"
        assert {t.chain_id for t in event.transfers} <= {event.settlement_id}
        kinds = [t.kind for t in event.transfers]
        self_trade = TransferKind.DELIVERY not in kinds  # stp none: only rounding and fees
        assert self_trade or kinds[0] is TransferKind.DELIVERY
