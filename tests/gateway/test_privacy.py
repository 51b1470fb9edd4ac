"""No participant learns another's orders, ids or activity from what the venue answers it:
several accounts on a real server, each probing what the others did."""

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from client.rest import RestClient
from tests.conftest import KEYS, Venue, drain_pushes
from tests.sample_config import sample_bill

BILL = sample_bill("TB-2027-03-04-USD")
STOCK = "AAPLx-USD"
Run = Callable[[Callable[[Venue], Awaitable[Any]]], Any]


def frozen_clock(venue: Venue) -> list[int]:
    """The venue's clock, moved only by the test (its ticks stopped): whatever comes due runs
    inside the next client command, as it would when that command is the first after it."""
    sequencer = venue.server.core.sequencer
    clock = [time.time_ns() // 1_000]
    sequencer.clock_us = lambda: clock[0]
    sequencer.tick = lambda: None  # no AdvanceClock of its own runs the due work first
    return clock


def test_a_cancel_all_counts_only_the_callers_orders_when_a_bill_matures_in_it(
    run_venue: Run,
) -> None:
    """A bill that matures as a cancel-all arrives cancels every account's orders of it in
    that command: the cancel-all's `canceled` must count the caller's orders only, not how
    many orders other accounts had on the bill."""

    async def scenario(venue: Venue) -> None:
        clock = frozen_clock(venue)
        alpha = await venue.client("alpha")
        beta = await venue.client("beta")
        for price in ("98.000000", "98.100000", "98.200000"):
            await alpha.place(BILL, "buy", "100", price)
        await beta.place(STOCK, "buy", "1", "180.00")
        clock[0] = venue.server.dispatcher.specs[BILL].maturity_us + 1
        answer = await beta.cancel_all()
        assert answer["canceled"] == 1, "beta's one order, not alpha's three that matured"
        assert await alpha.open_orders() == {"orders": []}, "the bill did mature in it"

    run_venue(scenario)


def test_a_quote_set_pull_counts_only_the_callers_quotes_when_a_bill_matures_in_it(
    run_venue: Run,
) -> None:
    """As above for `orders.cancel_all {quote_set}`, whose cancels are one command per
    quote: a bill maturing in the first of them must not add other accounts' orders."""

    async def scenario(venue: Venue) -> None:
        clock = frozen_clock(venue)
        alpha = await venue.client("alpha")
        beta = await venue.client("beta")
        for price in ("98.000000", "98.100000"):
            await alpha.place(BILL, "buy", "100", price)
        await beta.request("session.cod", {"enabled": True})
        quote = {"symbol": STOCK, "bid_px": "180.00", "bid_qty": "1"}
        await beta.request("quote.mass", {"quote_set": "q", "quotes": [quote]})
        clock[0] = venue.server.dispatcher.specs[BILL].maturity_us + 1
        answer = await beta.cancel_all(quote_set="q")
        assert answer["canceled"] == 1, "beta's one quote, not alpha's two orders that matured"
        assert await alpha.open_orders() == {"orders": []}, "the bill did mature in it"

    run_venue(scenario)


# ----------------------------------------------------------------- another's order ids

NEVER = 9_000_000  # an order id no test here reaches


def probes(order_id: int, cl_ord_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Every request that names an order, by id and by client id."""
    named = [{"order_id": order_id}, {"cl_ord_id": cl_ord_id}]
    requests = []
    for params in named:
        requests += [
            ("order.cancel", params),
            ("order.amend", params | {"qty": "2"}),
            ("order.amend", params | {"price": "1.001"}),  # off the tick, were it found
            ("order.amend", params | {"new_cl_ord_id": "renamed"}),
            ("order.status", params),
            ("order.batch", {"ops": [{"method": "order.cancel", "params": params}]}),
        ]
    return requests


def without_ids(answer: dict[str, Any], order_id: int, cl_ord_id: str) -> str:
    """An answer with the named order's ids blanked out, and no request id or times."""
    kept = {key: value for key, value in answer.items() if key not in ("id", "t_in", "t_out")}
    text = json.dumps(kept, sort_keys=True)
    return text.replace(f'"order_id": {order_id}', '"order_id": "?"').replace(cl_ord_id, "?")


def test_naming_anothers_order_is_answered_as_naming_one_that_never_existed(
    run_venue: Run,
) -> None:
    """Beta names alpha's open order, alpha's closed order and an id no order ever had, in
    every request that takes an order: the answers (and beta's pushes) are the same, so
    they tell beta nothing of which ids and client ids alpha uses."""

    async def scenario(venue: Venue) -> None:
        alpha = await venue.client("alpha")
        beta = await venue.client("beta")
        await beta.subscribe_account()
        await drain_pushes(beta, 0.2)
        resting = await alpha.place(STOCK, "sell", "1", "190.00", cl_ord_id="alpha-open")
        closed = await alpha.place(STOCK, "sell", "1", "191.00", cl_ord_id="alpha-closed")
        await alpha.cancel(order_id=closed["order_id"])
        seen: dict[str, list[str]] = {}
        for label, order_id, cl_ord_id in (
            ("open", resting["order_id"], "alpha-open"),
            ("closed", closed["order_id"], "alpha-closed"),
            ("never", NEVER, "never-placed"),
        ):
            answers = [
                without_ids(await beta.request_raw(method, params), order_id, cl_ord_id)
                for method, params in probes(order_id, cl_ord_id)
            ]
            pushes = [
                without_ids(push, order_id, cl_ord_id)
                for push in await drain_pushes(beta, 0.2)
                if push.get("ch") == "account"
            ]
            assert pushes, "each refused cancel is an exec report of beta's"
            seen[label] = answers + [re.sub(r'"(seq|ts|exec_id)": \d+', "", p) for p in pushes]
        assert seen["open"] == seen["never"]
        assert seen["closed"] == seen["never"]
        assert len((await alpha.open_orders())["orders"]) == 1, "alpha's order untouched"

    run_venue(scenario)


def test_rest_paths_naming_anothers_order_answer_as_for_one_that_never_existed(
    run_venue: Run,
) -> None:
    """DELETE and PATCH of /api/v1/orders/{id} with another account's id: the response a
    never-used id gets."""

    async def scenario(venue: Venue) -> None:
        alpha = await venue.client("alpha")
        resting = await alpha.place(STOCK, "sell", "1", "190.00")
        rest = RestClient(f"http://127.0.0.1:{venue.port}", *KEYS["beta"])
        responses: dict[int, list[str]] = {}
        for order_id in (resting["order_id"], NEVER):
            path = f"/api/v1/orders/{order_id}"
            deleted = await asyncio.to_thread(rest.delete, path)
            patched = await asyncio.to_thread(rest.patch, path, {"qty": "2"})
            responses[order_id] = [
                f"{response.status} {without_ids(response.json(), order_id, '-')}"
                for response in (deleted, patched)
            ]
        assert responses[resting["order_id"]] == responses[NEVER]
        assert len((await alpha.open_orders())["orders"]) == 1

    run_venue(scenario)


def test_no_cache_may_keep_a_signed_rest_answer(run_venue: Run) -> None:
    """A private route's URL is the same for every account (`/api/v1/balances`) and its
    signature rides in X- headers no cache keys on: a shared cache (a proxy, a CDN) that kept
    one account's answer would serve it to the next caller of that URL. Every answer of a
    signed route, refusals included, says `Cache-Control: no-store`."""

    async def scenario(venue: Venue) -> None:
        beta = RestClient(f"http://127.0.0.1:{venue.port}", *KEYS["beta"])
        unsigned = RestClient(f"http://127.0.0.1:{venue.port}")
        order = {"symbol": STOCK, "side": "buy", "type": "limit", "tif": "gtc"}
        answers = [
            await asyncio.to_thread(beta.get, "/api/v1/balances"),
            await asyncio.to_thread(beta.get, "/api/v1/orders"),
            await asyncio.to_thread(beta.get, "/api/v1/orders/history"),
            await asyncio.to_thread(beta.get, "/api/v1/fills"),
            await asyncio.to_thread(
                beta.post, "/api/v1/orders", order | {"qty": "1", "price": "180.00"}
            ),
            await asyncio.to_thread(beta.patch, "/api/v1/orders/1", {"qty": "2"}),
            await asyncio.to_thread(beta.delete, "/api/v1/orders/1"),
            await asyncio.to_thread(unsigned.request, "GET", "/api/v1/balances"),
        ]
        assert [a.status for a in answers] == [200, 200, 200, 200, 200, 200, 200, 401]
        for answer in answers:
            assert answer.headers.get("cache-control") == "no-store", answer

    run_venue(scenario)


MARKERS = (
    "alpha-clid-7f3e",
    "alpha-tag-7f3e",
    "alpha-set-7f3e",
    "taker-clid-7f3e",
    "taker-tag-7f3e",
)


def test_market_data_carries_no_participants_labels(run_venue: Run) -> None:
    """A subscriber with no account, on every public channel and public REST route, never
    sees a client order id, tag or quote set name of the orders that made the market."""

    async def scenario(venue: Venue) -> None:
        public = await venue.client(None, "public")
        for channel, more in (
            ("trades", {}),
            ("book", {"depth": 10}),
            ("bbo", {}),
            ("ticker", {}),
            ("candles", {"interval": "1m"}),
        ):
            await public.request("subscribe", {"ch": channel, "symbols": [STOCK]} | more)
        alpha = await venue.client("alpha")
        taker = await venue.client("taker")
        await alpha.place(STOCK, "sell", "2", "190.00", cl_ord_id=MARKERS[0], tag=MARKERS[1])
        await alpha.request("session.cod", {"enabled": True})
        quote = {"symbol": STOCK, "bid_px": "185.00", "bid_qty": "1"}
        await alpha.request("quote.mass", {"quote_set": MARKERS[2], "quotes": [quote]})
        await taker.place(
            STOCK, "buy", "1", "190.00", tif="ioc", cl_ord_id=MARKERS[3], tag=MARKERS[4]
        )
        await taker.place(STOCK, "sell", "1", "185.00", tif="ioc")
        seen = [json.dumps(push) for push in await drain_pushes(public, 0.5)]
        assert any('"trades"' in text and "190.00" in text for text in seen), "the trade shows"
        rest = RestClient(f"http://127.0.0.1:{venue.port}")
        for path in (
            f"/api/v1/trades?symbol={STOCK}",
            f"/api/v1/ticker?symbol={STOCK}",
            f"/api/v1/candles?symbol={STOCK}&interval=1m",
            f"/api/v1/book?symbol={STOCK}",
        ):
            seen.append((await asyncio.to_thread(rest.request, "GET", path)).body.decode())
        seen.append(
            json.dumps(await public.request("book.snapshot", {"symbol": STOCK, "depth": 10}))
        )
        leaked = [text for text in seen for marker in MARKERS if marker in text]
        assert leaked == []

    run_venue(scenario)
