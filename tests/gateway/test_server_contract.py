"""What docs/protocol.md promises about naming orders, checked against a real server."""

from typing import Any

from tests.conftest import Venue

SYMBOL = "AAPLx-USD"


def test_a_closed_order_is_not_open_by_id_and_unknown_by_cl_ord_id(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        alpha = await venue.client("alpha")
        placed = await alpha.place(SYMBOL, "buy", "1", "186.00", cl_ord_id="gone")
        order_id = placed["order_id"]
        await alpha.cancel(order_id=order_id)
        by_id = {
            "order.cancel": {"order_id": order_id},
            "order.amend": {"order_id": order_id, "price": "186.01"},
        }
        for method, params in by_id.items():
            answer = await alpha.request_raw(method, params)
            assert answer["error"]["name"] == "ORDER_NOT_OPEN", method
            # how it closed, from the account's history (session 28: the bare "the order is
            # closed" left a trader to ask order.status whether it filled)
            assert answer["error"]["data"] == {"order_id": order_id, "status": "canceled"}, method
            assert answer["error"]["msg"] == "the order is closed: canceled", method
        # one that filled says so, in an order.batch's op too
        resting = await alpha.place(SYMBOL, "sell", "1", "186.50")
        taker = await venue.client("taker")
        await taker.place(SYMBOL, "buy", "1", "186.50", tif="ioc")
        batch = await alpha.request_raw(
            "order.batch",
            {"ops": [{"method": "order.cancel", "params": {"order_id": resting["order_id"]}}]},
        )
        (op,) = batch["result"]["results"]
        assert op["error"]["data"] == {"order_id": resting["order_id"], "status": "filled"}
        assert op["error"]["msg"] == "the order is closed: filled"
        # Cancel and amend name open orders only by cl_ord_id (it may be reused once the
        # order closed); order.status looks in the closed history too.
        by_cl_ord_id = {
            "order.cancel": {"cl_ord_id": "gone"},
            "order.amend": {"cl_ord_id": "gone", "price": "186.01"},
        }
        for method, params in by_cl_ord_id.items():
            answer = await alpha.request_raw(method, params)
            assert answer["error"]["name"] == "UNKNOWN_ORDER", method
            assert "data" not in answer["error"], method
        status = await alpha.request_raw("order.status", {"cl_ord_id": "gone"})
        assert (status["result"]["order_id"], status["result"]["status"]) == (
            order_id,
            "canceled",
        )

    run_venue(scenario)


def test_an_amend_of_an_unknown_order_names_it_in_data(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        alpha = await venue.client("alpha")
        for params in (
            {"order_id": 999, "price": "186.01"},  # refused by the gateway (no symbol to read)
            {"order_id": 999, "new_cl_ord_id": "x"},  # refused by the engine
        ):
            answer = await alpha.request_raw("order.amend", params)
            error = answer["error"]
            assert (error["name"], error.get("data")) == ("UNKNOWN_ORDER", {"order_id": 999})

    run_venue(scenario)


def test_account_queries_on_the_public_endpoint_say_where_to_log_on(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        public = await venue.client(endpoint="public")
        answer = await public.request_raw("balances", {})
        assert answer["status"] == 401
        assert answer["error"]["name"] == "NOT_AUTHENTICATED"
        assert "/ws/trade" in answer["error"]["msg"]

    run_venue(scenario)
