"""The websocket server end to end: real server on 127.0.0.1, real clients, real files."""

import asyncio
import gc
import json
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from client.sdk import VenueError
from gateway.auth import sign_logon
from tests.conftest import KEYS, Venue, drain_pushes, next_push_not_heartbeat
from tests.gateway.test_server_sessions import eventually
from tests.sample_config import sample_bill

SYMBOL = "AAPLx-USD"
BILL = sample_bill("TB-2027-03-04-USD")


def test_place_trade_and_private_stream(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        alpha = await venue.client("alpha")
        taker = await venue.client("taker")
        await alpha.subscribe_account()
        snapshot = await next_push_not_heartbeat(alpha)
        assert snapshot["type"] == "snapshot" and snapshot["orders"] == []
        placed = await alpha.place(SYMBOL, "sell", "0.5", "187.30", cl_ord_id="s1")
        assert placed["status"] == "new" and placed["cl_ord_id"] == "s1"
        taken = await taker.place(SYMBOL, "buy", "0.2", "187.40", tif="ioc")
        assert taken["status"] == "filled"
        pushes = await drain_pushes(alpha)
        kinds = [(p["type"], p.get("data", {}).get("exec_type")) for p in pushes]
        assert ("exec", "new") in kinds and ("exec", "trade") in kinds
        assert ("settlement", None) in kinds and ("balance", None) in kinds
        seqs = [p["seq"] for p in pushes]
        first = snapshot["seq"] + 1  # the snapshot covers the deposits made at setup
        assert seqs == list(range(first, first + len(seqs))), "per-account seq, +1 per event"
        trade = next(p for p in pushes if p.get("data", {}).get("exec_type") == "trade")
        assert trade["data"]["last_px"] == "187.30" and trade["data"]["last_qty"] == "0.200000"
        open_orders = (await alpha.open_orders())["orders"]
        assert [(o["order_id"], o["leaves_qty"]) for o in open_orders] == [(1, "0.300000")]

    run_venue(scenario)


def test_response_comes_before_fills_on_the_placing_connection(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        alpha = await venue.client("alpha")
        await alpha.place(SYMBOL, "sell", "1", "187.30")
        taker = await venue.client("taker")
        await taker.subscribe_account()
        await next_push_not_heartbeat(taker)  # the snapshot
        raw = taker.websocket
        assert raw is not None
        request = {
            "id": 77,
            "method": "order.place",
            "params": {
                "symbol": SYMBOL,
                "side": "buy",
                "type": "limit",
                "price": "187.30",
                "qty": "0.1",
                "tif": "gtc",
            },
        }
        taker._waiting.clear()
        frames: list[dict[str, Any]] = []
        original = taker._on_message
        taker._on_message = frames.append  # type: ignore[method-assign]
        await raw.send(json.dumps(request))

        def is_fill(frame: dict[str, Any]) -> bool:
            return frame.get("type") == "exec" and frame["data"]["exec_type"] == "trade"

        async def answered_and_filled() -> bool:  # both wait for the disk: no fixed time
            return any(f.get("id") == 77 for f in frames) and any(map(is_fill, frames))

        assert await eventually(answered_and_filled), "the answer or the fill never came"
        taker._on_message = original  # type: ignore[method-assign]
        first_fill = next(i for i, f in enumerate(frames) if is_fill(f))
        response = next(i for i, f in enumerate(frames) if f.get("id") == 77)
        assert response < first_fill

    run_venue(scenario)


def test_auth_failures(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        client = await venue.client()
        key, secret = KEYS["alpha"]
        now = time.time_ns() // 1_000

        async def logon(ts: int, nonce: str, sig: str | None = None) -> str:
            params = {
                "api_key": key,
                "ts": ts,
                "nonce": nonce,
                "recv_window": 5_000,
                "sig": sig or sign_logon(secret, key, ts, nonce, 5_000),
            }
            response = await client.request_raw("session.logon", params)
            return "ok" if response["status"] == 200 else response["error"]["name"]

        assert await logon(now, "a", sig="0" * 64) == "BAD_SIGNATURE"
        assert await logon(now - 60_000_000, "b") == "TIMESTAMP_OUT_OF_WINDOW"
        assert await logon(now, "c") == "ok"
        assert await logon(now, "d") == "BAD_PARAM"  # one logon per connection
        logged_on = client
        client = await venue.client()
        assert await logon(now, "c") == "NONCE_REUSED"  # a replay on another connection
        client = logged_on
        with pytest.raises(VenueError) as denied:
            await client.request("admin.set_status", {"symbol": SYMBOL, "status": "halted"})
        assert denied.value.name == "PERMISSION_DENIED" and denied.value.status == 403
        anonymous = await venue.client()
        with pytest.raises(VenueError) as refused:
            await anonymous.place(SYMBOL, "buy", "1", "187.00")
        assert refused.value.name == "NOT_AUTHENTICATED"

    run_venue(scenario)


def test_accounts_cannot_touch_each_others_orders(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        alpha = await venue.client("alpha")
        beta = await venue.client("beta")
        placed = await alpha.place(SYMBOL, "buy", "1", "186.00", cl_ord_id="mine")
        for attempt in (
            beta.cancel(order_id=placed["order_id"]),
            beta.cancel(cl_ord_id="mine"),
            beta.amend(order_id=placed["order_id"], price="186.01"),
        ):
            with pytest.raises(VenueError) as refused:
                await attempt
            assert refused.value.name == "UNKNOWN_ORDER"
        assert (await beta.open_orders())["orders"] == []
        assert len((await alpha.open_orders())["orders"]) == 1

    run_venue(scenario)


def test_malformed_frames_change_nothing(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        alpha = await venue.client("alpha")
        raw = alpha.websocket
        assert raw is not None
        cases = {
            "{oops": "BAD_JSON",
            json.dumps({"id": 1, "method": "order.teleport", "params": {}}): "UNKNOWN_METHOD",
            json.dumps({"id": 2, "method": "order.place", "params": {"symbol": SYMBOL}}): (
                "MISSING_PARAM"
            ),
            json.dumps(
                {
                    "id": 3,
                    "method": "order.place",
                    "params": {
                        "symbol": SYMBOL,
                        "side": "buy",
                        "type": "limit",
                        "price": "1",
                        "qty": "1",
                        "tif": "gtc",
                        "colour": "red",
                    },
                }
            ): "BAD_PARAM",
            json.dumps(
                {
                    "id": 4,
                    "method": "order.place",
                    "params": {
                        "symbol": SYMBOL,
                        "side": "buy",
                        "type": "limit",
                        "price": "187.001",
                        "qty": "1",
                        "tif": "gtc",
                    },
                }
            ): "BAD_PRECISION",
            json.dumps(
                {
                    "id": 5,
                    "method": "order.place",
                    "params": {
                        "symbol": SYMBOL,
                        "side": "buy",
                        "type": "limit",
                        "price": 187,
                        "qty": "1",
                        "tif": "gtc",
                    },
                }
            ): "BAD_PARAM",
            json.dumps({"id": 2**60, "method": "ping", "params": {}}): "BAD_PARAM",
        }
        alpha._waiting.clear()  # raw frames: their answers arrive as unclaimed messages
        for frame in cases:
            await raw.send(frame)
        names = []
        while len(names) < len(cases):
            message = await alpha.next_push(2)
            if "error" in message:  # heartbeats may come in between
                names.append(message["error"]["name"])
        assert sorted(names) == sorted(cases.values())
        assert (await alpha.open_orders())["orders"] == []
        oversized = json.dumps({"id": 9, "method": "ping", "params": {"pad": "x" * 70_000}})
        abusive = json.dumps({"id": 9, "method": "ping", "params": {"pad": "x" * 300_000}})
        async with connect(venue.url(), max_size=None) as big:
            await big.send(oversized)  # over 64 KiB: answered, and the connection stays
            answer = json.loads(await asyncio.wait_for(big.recv(), 2))
            assert (answer["id"], answer["error"]["name"]) == (None, "MESSAGE_TOO_BIG")
            await big.send(abusive)  # over 256 KiB: closed at once
            with pytest.raises(ConnectionClosed):
                while True:  # a heartbeat may come first
                    await asyncio.wait_for(big.recv(), 2)
            assert big.close_code == 1009

    run_venue(scenario)


def test_quote_mass_replaces_quotes_and_needs_cod(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        maker = await venue.client("alpha")
        quote = {
            "symbol": SYMBOL,
            "bid_px": "187.00",
            "bid_qty": "1",
            "ask_px": "187.50",
            "ask_qty": "1",
        }
        params = {"quote_set": "q1", "quotes": [quote]}
        with pytest.raises(VenueError) as refused:
            await maker.request("quote.mass", params)
        assert refused.value.name == "COD_REQUIRED"
        await maker.request("session.cod", {"enabled": True})
        first = await maker.request_raw("quote.mass", params)
        assert first["status"] == 200 and len(first["result"]["results"]) == 2
        ids = {o["side"]: o["order_id"] for o in (await maker.open_orders())["orders"]}
        assert set(ids) == {"buy", "sell"}

        smaller = {"symbol": SYMBOL, "bid_px": "187.00", "bid_qty": "0.5", "ask_qty": "0"}
        second = await maker.request_raw("quote.mass", {"quote_set": "q1", "quotes": [smaller]})
        assert second["status"] == 200
        orders = (await maker.open_orders())["orders"]
        assert [(o["side"], o["order_id"], o["leaves_qty"]) for o in orders] == [
            ("buy", ids["buy"], "0.500000")  # same price, smaller: the same order, amended
        ]
        taker = await venue.client("taker")
        with pytest.raises(VenueError):  # post-only quotes never take; a taker can hit them
            await maker.request(
                "quote.mass",
                {
                    "quote_set": "q1",
                    "quotes": [{"symbol": SYMBOL, "ask_px": "186.00", "ask_qty": "1"}],
                },
            )
        await taker.place(SYMBOL, "sell", "0.2", "187.00", tif="ioc")
        cleared = await maker.request("orders.cancel_all", {"quote_set": "q1"})
        assert cleared == {"canceled": 1}
        assert (await maker.open_orders())["orders"] == []

    run_venue(scenario)


PLACE_NOPE = {"symbol": "NOPE", "side": "buy", "type": "limit", "tif": "gtc"} | {
    "price": "1",
    "qty": "1",
}


def test_an_unknown_symbol_is_refused_not_an_empty_answer(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        maker = await venue.client("alpha")
        await maker.request("session.cod", {"enabled": True})
        quote = {"symbol": SYMBOL, "bid_px": "187.00", "bid_qty": "1"}
        await maker.request("quote.mass", {"quote_set": "q", "quotes": [quote]})
        # one sentence wherever a symbol is unknown, saying where the field is, as other
        # refusals of a field do (since session 30: a command's; later that session, a
        # query's too, and of a subscribe's list which one)
        placed = "unknown symbol 'NOPE' - at `params.symbol`"
        for method, params, msg in (
            ("orders.history", {"symbol": "NOPE"}, placed),  # was "no symbol"
            ("orders.open", {"symbol": "NOPE"}, placed),  # was {"orders": []}
            ("book.snapshot", {"symbol": "NOPE", "depth": 10}, placed),
            (
                "subscribe",
                {"ch": "trades", "symbols": [SYMBOL, "NOPE"]},
                "unknown symbol 'NOPE' - at `params.symbols[1]`",
            ),
            (  # a symbol named twice is one stream: its first naming is its place
                "subscribe",
                {"ch": "candles", "interval": "1m", "symbols": [SYMBOL, "NOPE", "NOPE"]},
                "unknown symbol 'NOPE' - at `params.symbols[1]`",
            ),
            # a sentence, as a place's (was the bare symbol, "NOPE", from both)
            ("orders.cancel_all", {"symbol": "NOPE"}, placed),
            ("orders.cancel_all", {"quote_set": "q", "symbol": "NOPE"}, placed),
            ("order.place", {**PLACE_NOPE}, placed),
        ):
            answer = await maker.request_raw(method, params)
            assert answer["status"] == 400, (method, params, answer)
            assert answer["error"]["name"] == "UNKNOWN_SYMBOL", (method, params, answer)
            assert answer["error"]["msg"] == msg, (method, params, answer)
        assert len((await maker.open_orders())["orders"]) == 1  # nothing canceled
        assert (await maker.request("subscriptions"))["subscriptions"] == []  # none followed
        assert await maker.request("orders.cancel_all", {"quote_set": "q", "symbol": SYMBOL}) == {
            "canceled": 1
        }

    run_venue(scenario)


def test_a_symbol_in_the_wrong_case_is_refused_naming_the_listed_one(run_venue: Any) -> None:
    """`aaplx-usd` for `AAPLx-USD`, a trader's likeliest slip, is refused naming the symbol
    it differs from only by case, wherever a symbol is read (was the bare `unknown symbol
    'aaplx-usd'`, leaving the trader to guess that case matters); nothing is done."""
    hint = "unknown symbol 'aaplx-usd': did you mean 'AAPLx-USD'? (symbols match case and all)"

    async def scenario(venue: Venue) -> None:
        maker = await venue.client("alpha")
        await maker.request("session.cod", {"enabled": True})
        quote = {"symbol": "aaplx-usd", "bid_px": "187.00", "bid_qty": "1"}
        lower = {"symbol": "aaplx-usd"}
        at = " - at `params.{}`".format  # says where (since session 30; a query's later)
        for method, params, place in (
            ("order.place", {**PLACE_NOPE, **lower}, at("symbol")),
            ("quote.mass", {"quote_set": "q", "quotes": [quote]}, at("quotes[0].symbol")),
            ("orders.open", lower, at("symbol")),
            ("orders.history", lower, at("symbol")),
            ("orders.cancel_all", lower, at("symbol")),
            ("book.snapshot", {**lower, "depth": 10}, at("symbol")),
            ("subscribe", {"ch": "trades", "symbols": ["aaplx-usd"]}, at("symbols[0]")),
        ):
            answer = await maker.request_raw(method, params)
            assert answer["status"] == 400, (method, params, answer)
            assert answer["error"]["name"] == "UNKNOWN_SYMBOL", (method, params, answer)
            assert answer["error"]["msg"] == hint + place, (method, params, answer)
        assert (await maker.open_orders())["orders"] == []

    run_venue(scenario)


def test_a_mistyped_symbol_is_refused_naming_the_listed_one_it_likely_meant(
    run_venue: Any,
) -> None:
    """The finding (session 36): only a slip of case was named; `AAPL-USD`, `AAPLX/USD`,
    `AAPLx_USD`, `AAPLxUSD` or a bill's date mistyped got the bare `unknown symbol ...`.
    Wherever a symbol is read, the likely one is named; nothing is done."""
    bill = sample_bill("TB-2027-03-04-USD")
    typo = bill.replace("-USD", "-UDS")

    async def scenario(venue: Venue) -> None:
        trader = await venue.client("alpha")
        for typed, meant in (
            ("AAPL-USD", SYMBOL),
            ("AAPLX/USD", SYMBOL),
            ("AAPLx_USD", SYMBOL),
            ("AAPLxUSD", SYMBOL),
            (typo, bill),
        ):
            hint = f"unknown symbol {typed!r}: did you mean {meant!r}? - at `params.{{}}`"
            for method, params, place in (
                ("order.place", {**PLACE_NOPE, "symbol": typed}, "symbol"),
                ("orders.open", {"symbol": typed}, "symbol"),
                ("book.snapshot", {"symbol": typed, "depth": 10}, "symbol"),
                ("subscribe", {"ch": "trades", "symbols": [typed]}, "symbols[0]"),
            ):
                answer = await trader.request_raw(method, params)
                assert answer["error"]["name"] == "UNKNOWN_SYMBOL", (method, typed, answer)
                assert answer["error"]["msg"] == hint.format(place), (method, typed, answer)
        assert (await trader.open_orders())["orders"] == []

    run_venue(scenario)


def test_a_cancel_all_of_a_mistyped_symbol_is_refused_before_the_engine(run_venue: Any) -> None:
    """The review (session 36): `orders.cancel_all` with an unknown symbol was journaled and
    refused by the engine (and by every replay and standby), where each refusal looks for the
    likely symbol: a trader at its rate limit held the engine. It is refused here, as a quote
    set's is, in the same words; nothing is submitted."""

    async def scenario(venue: Venue) -> None:
        trader = await venue.client("alpha")
        sequencer = venue.server.core.sequencer
        before = sequencer.last_seq
        for params in ({"symbol": "AAPL-USD"}, {"symbol": "AAPL-USD", "side": "buy"}):
            answer = await trader.request_raw("orders.cancel_all", params)
            assert answer["error"]["name"] == "UNKNOWN_SYMBOL", answer
            assert answer["error"]["msg"] == (
                f"unknown symbol 'AAPL-USD': did you mean {SYMBOL!r}? - at `params.symbol`"
            )
        assert sequencer.last_seq == before  # nothing journaled
        assert (await trader.request("orders.cancel_all", {"symbol": SYMBOL}))["canceled"] == 0
        assert sequencer.last_seq == before + 1  # a listed one's is

    run_venue(scenario)


def test_an_expire_at_in_another_unit_is_refused_naming_the_microseconds_meant(
    run_venue: Any,
) -> None:
    """The finding (session 36): an `expire_at` in nanoseconds (19 digits) got only the
    generic bound, `Expected `int` <= 9007199254740991`, and one in milliseconds (13) was
    said to look so without the value meant; both now say the unit and the µs value."""

    async def scenario(venue: Venue) -> None:
        trader = await venue.client("alpha")
        gtd = {**PLACE_NOPE, "symbol": SYMBOL, "price": "180.00", "tif": "gtd"}
        meant = (int(time.time()) + 3_600) * 1_000_000
        nanoseconds = await trader.request_raw("order.place", gtd | {"expire_at": meant * 1_000})
        assert nanoseconds["error"]["name"] == "BAD_PARAM", nanoseconds
        assert nanoseconds["error"]["msg"] == (
            f"expire_at {meant * 1_000} looks like nanoseconds; expire_at is in microseconds:"
            f" did you mean {meant}? - at `params.expire_at`"
        )
        batch = {"ops": [{"method": "order.place", "params": gtd | {"expire_at": meant * 1_000}}]}
        in_batch = await trader.request_raw("order.batch", batch)
        assert in_batch["error"]["msg"].endswith(
            f": did you mean {meant}? - at `params.ops[0].params.expire_at`"
        )
        milliseconds = await trader.request_raw("order.place", gtd | {"expire_at": meant // 1_000})
        assert milliseconds["error"]["name"] == "INVALID_EXPIRE_AT", milliseconds
        assert milliseconds["error"]["msg"] == (
            f"expire_at {meant // 1_000} looks like milliseconds; expire_at is in microseconds:"
            f" did you mean {meant}?"
        )
        assert (await trader.open_orders())["orders"] == []

    run_venue(scenario)


def test_a_quote_at_a_zero_price_refuses_the_whole_quote_mass(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        maker = await venue.client("alpha")
        await maker.request("session.cod", {"enabled": True})
        both = {
            "symbol": SYMBOL,
            "bid_px": "187.00",
            "bid_qty": "1",
            "ask_px": "187.50",
            "ask_qty": "1",
        }
        await maker.request("quote.mass", {"quote_set": "q", "quotes": [both]})
        before = (await maker.open_orders())["orders"]
        nvda = {"symbol": "NVDAx-USD", "bid_px": "120.00", "bid_qty": "1"}
        for quotes in (
            [{"symbol": "NVDAx-USD", "bid_px": "0", "bid_qty": "1"}],  # was 409, a per-op error
            [both | {"bid_px": "0.00"}],  # the usual requote of two live quotes: its fast path
            [nvda, both | {"ask_px": "0"}],  # one bad quote: none is placed
        ):
            answer = await maker.request_raw("quote.mass", {"quote_set": "q", "quotes": quotes})
            assert answer["status"] == 400, (quotes, answer)
            assert answer["error"]["name"] == "BAD_PARAM", (quotes, answer)
            assert "_px must be positive" in answer["error"]["msg"]
        assert (await maker.open_orders())["orders"] == before  # nothing done
        pull = both | {"bid_px": "0", "bid_qty": "0", "ask_qty": "0"}  # a qty "0" pulls, px "0" too
        pulled = await maker.request("quote.mass", {"quote_set": "q", "quotes": [pull]})
        assert [result["status"] for result in pulled["results"]] == [200, 200]
        assert (await maker.open_orders())["orders"] == []

    run_venue(scenario)


def test_an_empty_quote_mass_or_batch_is_refused_and_changes_nothing(run_venue: Any) -> None:
    """Session 29: an empty `quote.mass` was answered 200 with no results, its set's quotes
    left open: a trader who meant it to pull the set (as some venues read it) was told it
    was done. docs/protocol.md gives it no meaning, so it is refused, as an empty
    `order.batch` has been, and says how to pull the set."""

    async def scenario(venue: Venue) -> None:
        maker = await venue.client("alpha")
        await maker.request("session.cod", {"enabled": True})
        quote = {"symbol": SYMBOL, "bid_px": "187.00", "bid_qty": "1"}
        await maker.request("quote.mass", {"quote_set": "q", "quotes": [quote]})
        before = (await maker.open_orders())["orders"]
        assert len(before) == 1
        empty = await maker.request_raw("quote.mass", {"quote_set": "q", "quotes": []})
        assert empty["status"] == 400, empty
        assert empty["error"]["name"] == "BAD_PARAM", empty
        said = empty["error"]["msg"]
        assert said.startswith("quotes is empty: give 1 to 100 quotes"), said
        assert "orders.cancel_all {quote_set}" in said, said
        batch = await maker.batch([])
        assert (batch["status"], batch["error"]["name"]) == (400, "BAD_PARAM"), batch
        assert batch["error"]["msg"] == "Expected `array` of length >= 1 - at `params.ops`"
        assert (await maker.open_orders())["orders"] == before  # nothing done
        assert (await maker.cancel_all(quote_set="q")) == {"canceled": 1}  # the way it says

    run_venue(scenario)


def test_order_batch_applies_ops_in_order(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        alpha = await venue.client("alpha")
        place = {"symbol": SYMBOL, "side": "buy", "type": "limit", "tif": "gtc", "qty": "1"}
        ok = await alpha.batch(
            [
                {"method": "order.place", "params": place | {"price": "186.00", "cl_ord_id": "b1"}},
                {"method": "order.place", "params": place | {"price": "186.10"}},
                {"method": "order.amend", "params": {"cl_ord_id": "b1", "price": "186.05"}},
            ]
        )
        assert ok["status"] == 200
        assert [r["status"] for r in ok["result"]["results"]] == [200, 200, 200]
        partial = await alpha.batch(
            [
                {"method": "order.cancel", "params": {"cl_ord_id": "b1"}},
                {"method": "order.cancel", "params": {"cl_ord_id": "b1"}},  # already gone
            ]
        )
        assert partial["status"] == 409
        assert [r["status"] for r in partial["result"]["results"]] == [200, 400]
        malformed = await alpha.batch(
            [
                {"method": "order.place", "params": place | {"price": "186.20"}},
                {"method": "order.place", "params": place | {"price": "186.201"}},
            ]
        )
        assert malformed["status"] == 400 and malformed["error"]["name"] == "BAD_PRECISION"
        prices = sorted(o["price"] for o in (await alpha.open_orders())["orders"])
        assert prices == ["186.10"], "the malformed batch applied nothing"

    run_venue(scenario)


def test_a_market_order_that_would_rest_is_refused_by_itself_naming_the_rule(
    run_venue: Any,
) -> None:
    """Session 35's first fix refused a market order with tif gtc or gtd, or post_only, as
    the frame was decoded: its words named the one rule broken (the engine's named three at
    once: `a market order has no price, is not post_only and is ioc or fok`), but an
    `order.batch` holding one failed whole, 400, nothing placed, where that op alone was
    refused (409, the others placed, the refusal journaled). The review: the refusal stays
    the engine's, per op, in the specific words."""

    async def scenario(venue: Venue) -> None:
        alpha = await venue.client("alpha")
        limit = {"symbol": SYMBOL, "side": "buy", "type": "limit", "tif": "gtc", "qty": "1"}
        market = {"symbol": SYMBOL, "side": "buy", "type": "market", "qty": "1"}
        answer = await alpha.batch(
            [
                {"method": "order.place", "params": limit | {"price": "186.00"}},
                {"method": "order.place", "params": market | {"tif": "gtc"}},
            ]
        )
        assert answer["status"] == 409, answer
        placed, refused = answer["result"]["results"]
        assert placed["status"] == 200, placed
        assert (refused["status"], refused["error"]["name"]) == (400, "BAD_PARAM"), refused
        assert refused["error"]["msg"] == "a market order is ioc or fok, not gtc: it never rests"
        assert [o["price"] for o in (await alpha.open_orders())["orders"]] == ["186.00"]
        rests = "a market order is ioc or fok, not {}: it never rests"
        for shape, words in [
            ({"tif": "gtc"}, rests.format("gtc")),
            ({"tif": "gtd", "expire_at": 4_102_444_800_000_000}, rests.format("gtd")),
            ({"tif": "ioc", "post_only": True}, "a market order is never post_only: it takes"),
        ]:
            with pytest.raises(VenueError) as one:
                await alpha.request("order.place", market | shape)
            assert str(one.value) == f"400 BAD_PARAM (1003): {words}", shape

    run_venue(scenario)


def test_public_queries_need_no_logon_and_private_ones_need_read(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        public = await venue.client(endpoint="public")
        instruments = (await public.request("instruments"))["instruments"]
        assert SYMBOL in {row["symbol"] for row in instruments}
        book = await public.request("book.snapshot", {"symbol": SYMBOL, "depth": 10})
        assert book["bids"] == [] and "checksum" in book
        with pytest.raises(VenueError) as refused:
            await public.balances()
        assert refused.value.name == "NOT_AUTHENTICATED"
        admin = await venue.client("admin")  # scopes read and admin: may read, not trade
        assert (await admin.open_orders())["orders"] == []
        issued = await admin.request("admin.issue_key", {"account": 3, "scopes": ["trade"]})
        trader = await venue.client()
        await trader.logon(issued["api_key"], issued["secret"])
        await trader.place(SYMBOL, "buy", "0.1", "186.00")
        with pytest.raises(VenueError) as denied:
            await trader.open_orders()
        assert denied.value.name == "PERMISSION_DENIED"

    run_venue(scenario)


def test_pipelined_quote_mass_builds_on_the_previous_one(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        maker = await venue.client("alpha")
        await maker.request("session.cod", {"enabled": True})
        quotes = [{"symbol": SYMBOL, "bid_px": f"186.0{i}", "bid_qty": "1"} for i in range(3)]
        await asyncio.gather(  # sent back to back, answered after one fsync
            *(maker.request("quote.mass", {"quote_set": "p", "quotes": [q]}) for q in quotes)
        )
        orders = (await maker.open_orders())["orders"]
        assert [o["price"] for o in orders] == ["186.02"], "one live quote, moved twice"
        assert await maker.request("orders.cancel_all", {"quote_set": "p"}) == {"canceled": 1}
        assert (await maker.open_orders())["orders"] == []
        assert venue.server.quotes == {} and venue.server.quote_slots == {}

    run_venue(scenario)


def test_answered_requests_leave_no_reference_cycle_for_the_collector(run_venue: Any) -> None:
    """A request's `Pending` and the `Executed` outcomes of its commands point at each other
    until it is answered; after, they are freed by reference counting, so the hot path makes
    no cyclic garbage (the collector's young passes would carry it on to older ones)."""

    async def scenario(venue: Venue) -> list[str]:
        alpha = await venue.client("alpha")
        taker = await venue.client("taker")
        await alpha.request("session.cod", {"enabled": True})
        quote = {"symbol": SYMBOL, "bid_px": "187.20", "bid_qty": "1"}
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for round_ in range(20):
                quote |= {"ask_px": f"187.{30 + round_ % 2}", "ask_qty": "1"}
                await alpha.request("quote.mass", {"quote_set": "q", "quotes": [quote]})
                await taker.place(SYMBOL, "buy", "0.01", "187.40", tif="ioc")
                op = {"symbol": SYMBOL, "side": "buy", "type": "limit", "tif": "ioc"}
                op |= {"price": "187.40", "qty": "0.01"}
                await taker.batch([{"method": "order.place", "params": op}] * 2)
                await taker.open_orders()
            await venue.server.core._store_flushed()  # the store thread lets go of them
            gc.collect()
            return sorted({type(item).__name__ for item in gc.garbage})
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()

    garbage = run_venue(scenario)
    assert "Pending" not in garbage and "Executed" not in garbage, garbage


def test_a_market_buy_whose_budget_buys_not_one_lot_is_refused_up_front(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        alpha = await venue.client("alpha")
        taker = await venue.client("taker")
        await alpha.place(BILL, "sell", "100", "98.676708")  # one lot: 100 of face
        buy = {"symbol": BILL, "side": "buy", "type": "market", "tif": "ioc"}
        last_id = venue.server.venue.last_order_id
        # above min_notional (50), below one lot at the best ask (98.676708 per 100 of face)
        response = await taker.request_raw("order.place", buy | {"quote_qty": "98.67"})
        assert response["error"]["name"] == "BELOW_MIN_NOTIONAL", response
        assert response["error"]["data"] == {
            "lot_notional": "98.676708",
            "notional": "98.670000",
            "valued_at": "98.676708",
        }
        assert "not one step" in response["error"]["msg"]
        assert venue.server.venue.last_order_id == last_id  # no order accepted, nothing changed
        bought = await taker.request("order.place", buy | {"quote_qty": "98.676708"})
        assert bought["status"] == "filled"  # a budget of one lot still buys it

    run_venue(scenario)


def test_open_orders_and_order_status_show_quote_set_and_expire_at(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        maker = await venue.client("alpha")
        await maker.request("session.cod", {"enabled": True})
        quote = {"symbol": SYMBOL, "bid_px": "187.00", "bid_qty": "1"}
        await maker.request("quote.mass", {"quote_set": "q1", "quotes": [quote]})
        expire_at = int(time.time() * 1_000_000) + 3_600_000_000
        gtd = await maker.place(SYMBOL, "sell", "1", "188.00", tif="gtd", expire_at=expire_at)
        rows = (await maker.open_orders())["orders"]
        assert [(o["quote_set"], o["expire_at"]) for o in rows] == [("q1", None), (None, expire_at)]
        status = await maker.order_status(order_id=gtd["order_id"])
        assert (status["quote_set"], status["expire_at"]) == (None, expire_at)
        quoted = await maker.order_status(order_id=rows[0]["order_id"])
        assert (quoted["quote_set"], quoted["expire_at"]) == ("q1", None)
        await maker.request("orders.cancel_all", {})
        closed = await maker.order_status(order_id=rows[0]["order_id"])
        assert (closed["status"], closed["quote_set"]) == ("canceled", "q1")

    run_venue(scenario)
