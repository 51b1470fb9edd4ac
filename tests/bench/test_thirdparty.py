"""`bench.adapters.thirdparty`: the plain translation the peer drivers share."""

import pytest

from bench import workloads
from bench.adapters.thirdparty import CANCEL, MOVE, PLACE, PlainTranslator, Unsupported
from engine.commands import AmendOrder, CancelOrder, PlaceOrder
from engine.enums import OrderType, Side, TimeInForce

TS = workloads.TS_START_US


def _place(**changes: object) -> PlaceOrder:
    fields: dict[str, object] = {
        "ts_us": TS,
        "account": 7,
        "symbol": workloads.SYMBOL,
        "side": Side.SELL,
        "tif": TimeInForce.GTC,
        "price": 100,
        "qty": 5,
    }
    return PlaceOrder(**{**fields, **changes})  # type: ignore[arg-type]


def test_orders_are_numbered_as_the_venue_numbers_them() -> None:
    translator = PlainTranslator()
    first = translator.translate(_place())
    second = translator.translate(_place(side=Side.BUY, tif=TimeInForce.IOC))
    assert first == (PLACE, 1, 7, 0, 100, 5, 0)
    assert second == (PLACE, 2, 7, 1, 100, 5, 1)
    cancel = CancelOrder(ts_us=TS, account=7, order_id=1)
    assert translator.translate(cancel) == (CANCEL, 1, 7)
    move = AmendOrder(ts_us=TS, account=7, order_id=2, price=99)
    assert translator.translate(move) == (MOVE, 2, 7, 99)


@pytest.mark.parametrize(
    "command",
    [
        AmendOrder(ts_us=TS, account=7, order_id=1, qty=3),
        _place(post_only=True),
        _place(order_type=OrderType.MARKET, price=0),
        CancelOrder(ts_us=TS, account=7, cl_ord_id="a"),
    ],
)
def test_what_has_no_faithful_translation_is_refused(command: object) -> None:
    with pytest.raises(Unsupported):
        PlainTranslator().translate(command)  # type: ignore[arg-type]
