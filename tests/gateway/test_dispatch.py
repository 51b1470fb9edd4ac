"""`gateway.dispatch`'s tables: a request's rate-limit cost and scope, looked up per request,
are what `gateway.limits` and `_scope_of` say (the server's behaviour is in test_server*)."""

from typing import Any

from gateway import dispatch, limits, wire

PLACE = wire.PlaceParams("S", wire.Side.BUY, wire.OrderType.LIMIT, wire.TimeInForce.IOC, "1", "1")
OPS: dict[str, Any] = {
    "order.place": wire.PlaceOp(PLACE),
    "order.cancel": wire.CancelOp(wire.CancelParams(order_id=1)),
    "order.amend": wire.AmendOp(wire.AmendParams(order_id=1, qty="1")),
}


def test_a_batch_costs_the_sum_of_its_ops_as_limits_says() -> None:
    for kinds in (["order.place"], ["order.cancel"] * 20, ["order.amend", "order.cancel"] * 10):
        request = wire.Request(1, "order.batch", wire.BatchParams(tuple(OPS[k] for k in kinds)))
        assert dispatch._cost(request) == limits.batch_cost_milli(kinds)


def test_a_quote_mass_costs_per_quote_clamped_as_limits_says() -> None:
    for count in (0, 1, 2, limits.QUOTES_PER_MASS_MAX, limits.QUOTES_PER_MASS_MAX + 5):
        quotes = tuple(wire.Quote(f"S{index}") for index in range(count))
        request = wire.Request(1, "quote.mass", wire.QuoteMassParams("q", quotes))
        assert dispatch._cost(request) == limits.cost_milli("quote.mass", count)


def test_every_method_costs_and_needs_what_limits_and_scope_of_say() -> None:
    for method, kind in wire.METHODS.items():
        if kind in (wire.BatchParams, wire.QuoteMassParams):
            continue
        request = wire.Request(1, method, wire.PingParams())
        assert dispatch._cost(request) == limits.cost_milli(method), method
        assert dispatch._SCOPE_OF[method] == dispatch._scope_of(method), method
