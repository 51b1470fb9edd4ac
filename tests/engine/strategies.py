"""Hypothesis strategies for engine command streams: every command kind, crossing often."""

from typing import Any

from hypothesis import strategies as st

from engine.commands import (
    AdvanceClock,
    AmendOrder,
    CancelAll,
    CancelOrder,
    Command,
    ConfirmWithdrawal,
    Deposit,
    PlaceOrder,
    RequestWithdrawal,
    SetCancelOnDisconnect,
    SetInstrumentStatus,
    SetReferencePrice,
    VoidWithdrawal,
)
from engine.enums import InstrumentStatus, OrderType, SelfTradePrevention, Side, TimeInForce
from tests.engine.conftest import SYMBOL

accounts = st.integers(min_value=1, max_value=3)
prices = st.integers(min_value=9_996, max_value=10_004)
qtys = st.integers(min_value=1, max_value=6)
order_ids = st.integers(min_value=1, max_value=40)
cl_ids = st.none() | st.sampled_from(["a", "b", "c"])
# built once, not at every draw: a strategy built anew is validated anew (most of the time
# these property tests spent was spent there), and draws the same either way
tifs = st.sampled_from(list(TimeInForce))
sides = st.sampled_from(list(Side))
stps = st.sampled_from(list(SelfTradePrevention))
tags = st.none() | st.just("t")
quote_qtys = st.integers(1, 700)
fok_or_ioc = st.sampled_from([TimeInForce.IOC, TimeInForce.FOK])
expiries = st.integers(1, 60)  # relative; made absolute by run()


@st.composite
def place_orders(draw: Any) -> PlaceOrder:
    market = draw(st.integers(0, 9)) == 0
    tif = draw(tifs)
    fields: dict[str, Any] = dict(
        account=draw(accounts),
        symbol=SYMBOL,
        side=draw(sides),
        stp=draw(stps),
        cl_ord_id=draw(cl_ids),
        tag=draw(tags),
        cod=draw(st.booleans()),
    )
    if market:
        by_quote = fields["side"] is Side.BUY and draw(st.booleans())
        fields |= dict(order_type=OrderType.MARKET, tif=TimeInForce.IOC)
        if by_quote:
            fields["quote_qty"] = draw(quote_qtys)
        else:
            fields |= dict(qty=draw(qtys), tif=draw(fok_or_ioc))
        return PlaceOrder(**fields)
    fields |= dict(price=draw(prices), qty=draw(qtys), tif=tif)
    fields["post_only"] = tif in (TimeInForce.GTC, TimeInForce.GTD) and draw(st.booleans())
    if tif is TimeInForce.GTD:
        fields["expire_at_us"] = draw(expiries)
    return PlaceOrder(**fields)


def commands() -> st.SearchStrategy[Command]:
    """Mostly orders; now and then a status change, which is mostly back to open."""
    status = st.sampled_from(
        [InstrumentStatus.OPEN] * 6
        + [InstrumentStatus.HALTED, InstrumentStatus.POST_ONLY, InstrumentStatus.CANCEL_ONLY]
    )
    rare = st.one_of(
        st.builds(SetInstrumentStatus, symbol=st.just(SYMBOL), status=status),
        st.builds(SetReferencePrice, symbol=st.just(SYMBOL), price=prices),
        st.builds(AdvanceClock),
        st.builds(CancelAll, account=accounts, side=st.none() | st.sampled_from(list(Side))),
        st.builds(  # ascending ids, as the gateway sends them, or any (mostly refused)
            SetCancelOnDisconnect,
            account=accounts,
            cod=st.booleans(),
            order_ids=st.lists(order_ids, max_size=4).map(tuple)
            | st.lists(order_ids, unique=True, max_size=6).map(sorted).map(tuple),
        ),
    )
    amends = st.builds(
        AmendOrder,
        account=accounts,
        order_id=order_ids,
        price=st.just(0) | prices,
        qty=st.just(0) | qtys,
    )
    cancels = st.one_of(
        st.builds(CancelOrder, account=accounts, order_id=order_ids),
        st.builds(CancelOrder, account=accounts, cl_ord_id=st.sampled_from(["a", "b"])),
    )
    by_kind = {"place": place_orders(), "amend": amends, "cancel": cancels, "rare": rare}
    # one_of picks branches evenly; drawing the kind first weights them as listed.
    kinds = st.sampled_from(["place"] * 5 + ["amend"] * 2 + ["cancel", "rare"])
    return kinds.flatmap(by_kind.__getitem__)


def command_streams(max_size: int = 60) -> st.SearchStrategy[list[Command]]:
    return st.lists(commands(), min_size=5, max_size=max_size)


custody_commands = st.one_of(
    st.builds(
        Deposit,
        account=st.integers(1, 4),
        asset=st.sampled_from(["USD", "AAPLx"]),
        amount=st.integers(0, 3_000_000),
    ),
    st.builds(
        RequestWithdrawal,
        account=st.integers(1, 4),
        asset=st.sampled_from(["USD", "AAPLx"]),
        amount=st.integers(1, 2_000_000),
    ),
    st.builds(ConfirmWithdrawal, withdrawal_id=st.integers(1, 8)),
    st.builds(VoidWithdrawal, withdrawal_id=st.integers(1, 8)),
)


def cleared_command_streams(max_size: int = 60) -> st.SearchStrategy[list[Command]]:
    """Order flow mixed with deposits and withdrawals, for a venue with a ledger."""
    by_kind = {True: commands(), False: custody_commands}  # built once (above)
    mixed = st.sampled_from([True] * 4 + [False]).flatmap(by_kind.__getitem__)
    return st.lists(mixed, min_size=5, max_size=max_size)
