"""Admin methods end to end: listing assets and instruments, accounts, deposits, reserves,
withdrawals, instrument status, reference prices and API keys, each through a real server.

The admin key of `venue.toml` (`demo-admin`: read, admin) does the work; every admin method
is also tried with a trading key and must be refused with PERMISSION_DENIED, changing
nothing. What an admin action does is checked where a user sees it: balances, the private
stream, the `instruments` query and channel, order entry, a logon with an issued key.
"""

import asyncio
import datetime
import time
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from client.sdk import VenueClient, VenueError
from engine.units import format_units
from settlement import tbill
from tests.conftest import (
    KEYS,
    TEST_TIMEOUT_S,
    Venue,
    drain_pushes,
    next_push_not_heartbeat,
    start_venue,
)
from tests.sample_config import sample_bill

SYMBOL = "AAPLx-USD"
NEW_ASSET = "TSLAx"
NEW_SYMBOL = "TSLAx-USD"
NEW_ACCOUNT = 7


def now_us() -> int:
    return time.time_ns() // 1_000


def listing(symbol: str = NEW_SYMBOL, base: str = NEW_ASSET) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "kind": "equity",
        "base": base,
        "quote": "USD",
        "tick": "0.01",
        "step": "0.000001",
        "min_qty": "0.000001",
        "min_notional": "1",
        "band_pct": "10",
        "reference_price": "250.00",
        "maker_fee_bps": 1,
        "taker_fee_bps": 5,
        "excluded_jurisdictions": ["US"],
    }


async def refusal(client: VenueClient, method: str, params: dict[str, Any]) -> str:
    """The error name `method` is refused with (fails if it is not refused)."""
    response = await client.request_raw(method, params)
    assert response["status"] != 200, f"{method} was not refused: {response}"
    name: str = response["error"]["name"]
    return name


def balances_of(rows: list[dict[str, str]]) -> dict[str, tuple[str, str, str]]:
    return {row["asset"]: (row["total"], row["available"], row["held"]) for row in rows}


def ledger_view(venue: Venue) -> tuple[Any, ...]:
    """What admin commands change in the ledger: assets, accounts, balances, withdrawals."""
    ledger = venue.server.ledger
    return (
        sorted(ledger.assets),
        sorted(ledger.participants),
        sorted((key, b.total, b.held) for key, b in ledger.balances.items()),
        sorted(ledger.withdrawals),
        {code: (a.amount, a.as_of_us) for code, a in ledger.attestations.items()},
    )


# ----------------------------------------------------------------- listing and onboarding


def test_a_new_asset_instrument_and_account_can_trade_with_an_issued_key(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        await admin.request("admin.list_asset", {"code": NEW_ASSET, "scale": 6})
        reserves = {"asset": NEW_ASSET, "amount": "1000", "as_of": now_us()}
        await admin.request("admin.attest_reserves", reserves)
        await admin.request("admin.list_instrument", listing())
        account = {"account": NEW_ACCOUNT, "name": "new-trader", "jurisdiction": "DE"}
        await admin.request("admin.open_account", account | {"kyc_approved": True})
        for asset, amount in ((NEW_ASSET, "10"), ("USD", "10000")):
            deposit = {"account": NEW_ACCOUNT, "asset": asset, "amount": amount}
            assert "seq" in await admin.request("admin.deposit", deposit)
        assert await refusal(admin, "admin.list_asset", {"code": NEW_ASSET, "scale": 6}) == (
            "ASSET_EXISTS"
        )
        again = account | {"kyc_approved": True}
        assert await refusal(admin, "admin.open_account", again) == "ACCOUNT_EXISTS"
        assert await refusal(admin, "admin.list_instrument", listing()) == "INSTRUMENT_EXISTS"
        assert venue.server.ledger.supply(NEW_ASSET) == 10_000_000

        instruments = {i["symbol"]: i for i in (await admin.request("instruments"))["instruments"]}
        assert instruments[NEW_SYMBOL]["base"] == NEW_ASSET
        assert instruments[NEW_SYMBOL]["tick"] == "0.01"
        assert instruments[NEW_SYMBOL]["status"] == "open"

        issued = await admin.request(
            "admin.issue_key", {"account": NEW_ACCOUNT, "scopes": ["read", "trade"]}
        )
        assert issued["account"] == NEW_ACCOUNT and issued["scopes"] == ["read", "trade"]
        newcomer = await venue.client()
        logon = await newcomer.logon(issued["api_key"], issued["secret"])
        assert logon == {"account": NEW_ACCOUNT, "scopes": ["read", "trade"]}
        assert balances_of((await newcomer.balances())["balances"]) == {
            NEW_ASSET: ("10.000000", "10.000000", "0.000000"),
            "USD": ("10000.000000", "10000.000000", "0.000000"),
        }
        await newcomer.subscribe_account(since_seq=0)  # everything since the account opened
        history = [p for p in await drain_pushes(newcomer) if p.get("ch") == "account"]
        assert [(p["type"], p["data"]["asset"]) for p in history] == [
            ("balance", NEW_ASSET),
            ("balance", "USD"),
        ]

        watcher = await venue.client("us")
        await watcher.subscribe_book(NEW_SYMBOL)
        await newcomer.place(NEW_SYMBOL, "sell", "1", "250.00")
        await newcomer.place(NEW_SYMBOL, "sell", "2", "250.10")
        alpha = await venue.client("alpha")
        assert (await alpha.place(NEW_SYMBOL, "buy", "1", "250.00", tif="ioc"))[
            "status"
        ] == "filled"
        trade = next(
            p["data"]
            for p in await drain_pushes(newcomer)
            if p.get("type") == "exec" and p["data"]["exec_type"] == "trade"
        )
        assert (trade["last_px"], trade["last_qty"], trade["liquidity"]) == (
            "250.00",
            "1.000000",
            "maker",
        )
        assert balances_of((await newcomer.balances())["balances"])["USD"][0] == "10249.975000"
        book = await watcher.request("book.snapshot", {"symbol": NEW_SYMBOL, "depth": 10})
        local = watcher.books[NEW_SYMBOL]
        assert local.seq == book["seq"] and book["asks"] == [["250.10", "2.000000"]]
        assert [list(row) for row in local.asks()] == book["asks"] and local.bids() == []

    run_venue(scenario)


# ----------------------------------------------------------------- custody


def test_withdrawals_hold_then_burn_on_confirm_or_release_on_void(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        alpha = await venue.client("alpha")
        await alpha.subscribe_account()
        await next_push_not_heartbeat(alpha)
        supply = venue.server.ledger.supply("USD")
        total = balances_of((await alpha.balances())["balances"])["USD"][0]
        assert total == "5000000.000000"

        request = {"account": 1, "asset": "USD", "amount": "100"}
        first = (await admin.request("admin.withdraw", request))["withdrawal_id"]
        held = balances_of((await alpha.balances())["balances"])["USD"]
        assert held == ("5000000.000000", "4999900.000000", "100.000000")
        await admin.request("admin.confirm_withdrawal", {"withdrawal_id": first})
        burned = balances_of((await alpha.balances())["balances"])["USD"]
        assert burned == ("4999900.000000", "4999900.000000", "0.000000")
        assert venue.server.ledger.supply("USD") == supply - 100_000_000

        second = (await admin.request("admin.withdraw", request | {"amount": "50"}))[
            "withdrawal_id"
        ]
        assert second != first
        await admin.request("admin.void_withdrawal", {"withdrawal_id": second})
        released = balances_of((await alpha.balances())["balances"])["USD"]
        assert released == ("4999900.000000", "4999900.000000", "0.000000")
        assert venue.server.ledger.supply("USD") == supply - 100_000_000

        for method, withdrawal_id, name in (
            ("admin.confirm_withdrawal", first, "WITHDRAWAL_ALREADY_CONFIRMED"),  # session 26
            ("admin.void_withdrawal", second, "WITHDRAWAL_ALREADY_VOIDED"),
            ("admin.confirm_withdrawal", 999, "UNKNOWN_WITHDRAWAL"),
        ):
            params = {"withdrawal_id": withdrawal_id}
            assert await refusal(admin, method, params) == name
        too_much = request | {"amount": "5000000"}
        assert await refusal(admin, "admin.withdraw", too_much) == "INSUFFICIENT_BALANCE"

        pushes = [p for p in await drain_pushes(alpha) if p.get("type") == "balance"]
        assert [p["data"]["held"] for p in pushes] == [
            "100.000000",  # requested
            "0.000000",  # confirmed: burned
            "50.000000",  # requested
            "0.000000",  # voided: released
        ]

    run_venue(scenario)


def test_reserve_attestations_gate_deposits(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        await admin.request("admin.list_asset", {"code": NEW_ASSET, "scale": 6})
        deposit = {"account": 1, "asset": NEW_ASSET, "amount": "5"}
        assert await refusal(admin, "admin.deposit", deposit) == "RESERVES_STALE"
        as_of = now_us()
        await admin.request(
            "admin.attest_reserves", {"asset": NEW_ASSET, "amount": "8", "as_of": as_of}
        )
        await admin.request("admin.deposit", deposit)
        assert await refusal(admin, "admin.deposit", deposit) == "RESERVES_EXCEEDED"
        older = {"asset": NEW_ASSET, "amount": "100", "as_of": as_of - 1}
        assert await refusal(admin, "admin.attest_reserves", older) == "BAD_PARAM"
        a_day_ahead = older | {"as_of": as_of + 86_400_000_000}  # would block `as_of + 1` below
        assert await refusal(admin, "admin.attest_reserves", a_day_ahead) == "BAD_PARAM"
        await admin.request(
            "admin.attest_reserves", {"asset": NEW_ASSET, "amount": "100", "as_of": as_of + 1}
        )
        await admin.request("admin.deposit", deposit)
        assert venue.server.ledger.supply(NEW_ASSET) == 10_000_000
        unknown = deposit | {"account": 99}
        assert await refusal(admin, "admin.deposit", unknown) == "UNKNOWN_ACCOUNT"
        nothing = deposit | {"asset": "NOPEx"}
        assert await refusal(admin, "admin.deposit", nothing) == "UNKNOWN_ASSET"

    run_venue(scenario)


# ----------------------------------------------------------------- markets


def test_halting_an_instrument_refuses_orders_until_it_reopens(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        alpha = await venue.client("alpha")
        watcher = await venue.client(endpoint="public")
        venue.server.public.pause_min_s = 0.0  # each change its own update, however close
        await watcher.request("subscribe", {"ch": "instruments", "symbols": [SYMBOL]})
        assert (await next_push_not_heartbeat(watcher))["data"]["status"] == "open"
        resting = (await alpha.place(SYMBOL, "buy", "1", "186.00"))["order_id"]

        await admin.request("admin.set_status", {"symbol": SYMBOL, "status": "halted"})
        update = await next_push_not_heartbeat(watcher)
        assert (update["type"], update["data"]["status"]) == ("update", "halted")
        with pytest.raises(VenueError) as halted:
            await alpha.place(SYMBOL, "buy", "1", "186.00")
        assert halted.value.name == "INSTRUMENT_HALTED" and halted.value.status == 503
        with pytest.raises(VenueError) as amend:
            await alpha.amend(order_id=resting, price="186.01")
        assert amend.value.name == "INSTRUMENT_HALTED"
        assert (await alpha.place("MSFTx-USD", "buy", "1", "410.00"))["status"] == "new"
        assert [o["order_id"] for o in (await alpha.open_orders(SYMBOL))["orders"]] == [resting]

        await admin.request("admin.set_status", {"symbol": SYMBOL, "status": "cancel_only"})
        with pytest.raises(VenueError) as cancel_only:
            await alpha.place(SYMBOL, "buy", "1", "186.00")
        assert cancel_only.value.name == "CANCEL_ONLY"
        assert (await alpha.cancel(order_id=resting))["status"] == "canceled"

        await admin.request("admin.set_status", {"symbol": SYMBOL, "status": "open"})
        assert (await alpha.place(SYMBOL, "buy", "1", "186.00"))["status"] == "new"
        statuses = [p["data"]["status"] for p in await drain_pushes(watcher)]
        assert statuses == ["cancel_only", "open"]
        unknown = {"symbol": "NOPE-USD", "status": "halted"}
        assert await refusal(admin, "admin.set_status", unknown) == "UNKNOWN_SYMBOL"
        for method, params in [  # each refusal a sentence (admin.mature's was "NOPE-USD")
            ("admin.mature", {"symbol": "NOPE-USD"}),
            ("admin.split", {"symbol": "NOPE-USD", "ratio": "2:1"}),
            ("admin.pay_dividend", {"symbol": "NOPE-USD", "payer": 100, "amount_per_share": "1"}),
        ]:
            answer = await admin.request_raw(method, params)
            assert answer["error"]["name"] == "UNKNOWN_SYMBOL", answer
            placed = "unknown symbol 'NOPE-USD' - at `params.symbol`"  # since session 30
            assert answer["error"]["msg"] == placed, answer

    run_venue(scenario)


def test_a_new_reference_price_moves_the_price_band(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        alpha = await venue.client("alpha")
        with pytest.raises(VenueError) as outside:
            await alpha.place(SYMBOL, "buy", "1", "210.00")  # above 187.25 + 10 %
        assert outside.value.name == "PRICE_BAND"
        await admin.request("admin.set_reference_price", {"symbol": SYMBOL, "price": "205.00"})
        assert (await alpha.place(SYMBOL, "buy", "1", "210.00"))["status"] == "new"
        with pytest.raises(VenueError) as below:
            await alpha.place(SYMBOL, "sell", "1", "180.00")  # below the new band's low
        assert below.value.name == "PRICE_BAND"
        bad_tick = {"symbol": SYMBOL, "price": "205.001"}
        assert await refusal(admin, "admin.set_reference_price", bad_tick) == "BAD_PRECISION"

    run_venue(scenario)


def test_an_asset_case_twin_and_an_absurd_bill_price_are_refused_changing_nothing(
    run_venue: Any,
) -> None:
    """Two of a tester's findings, as an operator meets them: `list-asset usd` beside USD,
    and a bill's reference price of 101 (above par) or 9.867671 (a slipped point)."""

    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        before = ledger_view(venue)
        twin = await admin.request_raw("admin.list_asset", {"code": "usd", "scale": 6})
        assert twin["error"]["name"] == "ASSET_EXISTS"
        assert twin["error"]["msg"].startswith("asset USD exists: usd differs from it only by")
        bill = sample_bill("TB-2027-03-04-USD")
        reference = venue.server.reads.markets[bill].reference_price
        for price, words in (("101", "above par"), ("9.867671", "below 50.000000")):
            params = {"symbol": bill, "price": price}
            response = await admin.request_raw("admin.set_reference_price", params)
            assert response["error"]["name"] == "BILL_PRICE_OUT_OF_RANGE", response
            assert words in response["error"]["msg"]
            assert response["error"]["data"]["max_price"] == "100.000000"
        assert venue.server.reads.markets[bill].reference_price == reference
        assert ledger_view(venue) == before
        params = {"symbol": bill, "price": "99.5"}
        assert "seq" in await admin.request("admin.set_reference_price", params)

    run_venue(scenario)


# ----------------------------------------------------------------- keys and scopes


ADMIN_REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("admin.list_asset", {"code": NEW_ASSET, "scale": 6}),
    ("admin.attest_reserves", {"asset": "USD", "amount": "30000000", "as_of": 1}),
    ("admin.list_instrument", listing("NVDAx-USDx", "NVDAx")),
    ("admin.open_account", {"account": 9, "name": "x", "jurisdiction": "DE", "kyc_approved": True}),
    ("admin.deposit", {"account": 1, "asset": "USD", "amount": "1"}),
    ("admin.withdraw", {"account": 2, "asset": "USD", "amount": "1"}),
    ("admin.confirm_withdrawal", {"withdrawal_id": 1}),
    ("admin.void_withdrawal", {"withdrawal_id": 1}),
    ("admin.set_status", {"symbol": SYMBOL, "status": "halted"}),
    ("admin.set_reference_price", {"symbol": SYMBOL, "price": "1.00"}),
    ("admin.issue_key", {"account": 1, "scopes": ["read", "trade", "admin"]}),
    ("admin.set_order_caps", {"symbol": SYMBOL, "max_qty": "1"}),
    ("admin.mature", {"symbol": sample_bill("TB-2027-03-04-USD")}),
    ("admin.sweep", {"venue_account": -2, "asset": "USD", "amount": "0.01", "account": 1}),
]


def test_every_admin_method_is_refused_without_the_admin_scope(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        withdrawal = await admin.request(
            "admin.withdraw", {"account": 2, "asset": "USD", "amount": "1"}
        )
        assert withdrawal["withdrawal_id"] == 1  # so confirm/void name a real one
        trader = await venue.client("alpha")
        reader_key = await admin.request("admin.issue_key", {"account": 3, "scopes": ["read"]})
        reader = await venue.client()
        await reader.logon(reader_key["api_key"], reader_key["secret"])
        state, ledger, keys = (
            venue.server.venue.state_hash(),
            ledger_view(venue),
            len(venue.server.auth.store),
        )
        for client in (trader, reader):
            for method, params in ADMIN_REQUESTS:
                response = await client.request_raw(method, params)
                assert response["status"] == 403, (method, response)
                assert response["error"]["name"] == "PERMISSION_DENIED", method
        assert venue.server.venue.state_hash() == state
        assert ledger_view(venue) == ledger
        assert len(venue.server.auth.store) == keys
        # Nor can a key do what its scopes do not say: read is not trade, admin is not trade.
        for client in (reader, admin):
            for method, params in (
                ("order.place", {"symbol": SYMBOL, "side": "buy", "type": "market", "qty": "1"}),
                ("session.cod", {"enabled": True}),
                ("orders.cancel_after", {"timeout_ms": 1000}),
                ("orders.cancel_all", {}),
            ):
                params = params | ({"tif": "ioc"} if method == "order.place" else {})
                assert await refusal(client, method, params) == "PERMISSION_DENIED", method
        assert venue.server.venue.open_orders(3) == [] and venue.server.venue.state_hash() == state

    run_venue(scenario)


def test_an_issued_admin_key_can_administer_and_unknown_accounts_get_no_key(
    run_venue: Any,
) -> None:
    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        unknown = {"account": 99, "scopes": ["read"]}
        assert await refusal(admin, "admin.issue_key", unknown) == "UNKNOWN_ACCOUNT"
        repeated = {"account": 3, "scopes": ["read", "read"]}
        assert await refusal(admin, "admin.issue_key", repeated) == "BAD_PARAM"
        issued = await admin.request("admin.issue_key", {"account": 100, "scopes": ["admin"]})
        other = await admin.request("admin.issue_key", {"account": 100, "scopes": ["admin"]})
        assert issued["api_key"] != other["api_key"] and issued["secret"] != other["secret"]
        deputy = await venue.client()
        await deputy.logon(issued["api_key"], issued["secret"])
        await deputy.request("admin.set_status", {"symbol": SYMBOL, "status": "halted"})
        alpha = await venue.client("alpha")
        with pytest.raises(VenueError) as halted:
            await alpha.place(SYMBOL, "buy", "1", "186.00")
        assert halted.value.name == "INSTRUMENT_HALTED"
        wrong = await venue.client()
        with pytest.raises(VenueError) as refused:
            await wrong.logon(issued["api_key"], KEYS["admin"][1])  # another key's secret
        assert refused.value.name == "BAD_SIGNATURE"

    run_venue(scenario)


def test_the_scopes_of_an_issued_key_are_what_it_may_do(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        trade_only = await admin.request("admin.issue_key", {"account": 3, "scopes": ["trade"]})
        read_only = await admin.request("admin.issue_key", {"account": 3, "scopes": ["read"]})
        trader, reader = await venue.client(), await venue.client()
        await trader.logon(trade_only["api_key"], trade_only["secret"])
        await reader.logon(read_only["api_key"], read_only["secret"])
        placed = await trader.place(SYMBOL, "buy", "1", "186.00")
        for method, params in (
            ("orders.open", {}),
            ("balances", {}),
            ("order.status", {"order_id": placed["order_id"]}),
            ("fills", {"limit": 10}),
            ("subscribe", {"ch": "account"}),
        ):
            assert await refusal(trader, method, params) == "PERMISSION_DENIED", method
        orders = (await reader.open_orders())["orders"]
        assert [o["order_id"] for o in orders] == [placed["order_id"]]
        assert await refusal(reader, "order.cancel", {"order_id": placed["order_id"]}) == (
            "PERMISSION_DENIED"
        )
        assert (await trader.cancel(order_id=placed["order_id"]))["status"] == "canceled"
        # Public market data needs no scope at all.
        assert "instruments" in await trader.request("instruments")

    run_venue(scenario)


# ----------------------------------------------------------------- T-bill lifecycle

BILL = sample_bill("TB-2027-03-04-USD")
BILL_ASSET = sample_bill("TB-2027-03-04")
BILL_DATE = sample_bill("2027-03-04")  # its maturity, which an early `admin.mature` names


async def totals(client: VenueClient) -> dict[str, Decimal]:
    rows = (await client.balances())["balances"]
    return {row["asset"]: Decimal(row["total"]) for row in rows}


def test_admin_mature_with_a_maturity_matures_only_the_bill_of_that_date(run_venue: Any) -> None:
    """The review (session 36): `venue admin mature` checked the bill's date on the client
    only; `admin.mature` takes an optional `maturity` the venue checks, so a script naming
    another bill (a symbol one digit off) is refused, nothing journaled, whoever sends it.
    Before the bill's date the venue requires it (session 38; before, a bill named alone
    matured at once, for good)."""

    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        rows = (await admin.request("instruments", {}))["instruments"]
        maturity_us = next(r for r in rows if r["symbol"] == BILL)["maturity"]
        date = (
            datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
            + datetime.timedelta(microseconds=maturity_us)
        ).date()
        other = (date + datetime.timedelta(days=7)).isoformat()
        sequencer = venue.server.core.sequencer
        before = sequencer.last_seq
        answer = await admin.request_raw("admin.mature", {"symbol": BILL, "maturity": other})
        assert answer["error"]["name"] == "BAD_PARAM", answer
        assert answer["error"]["msg"] == (
            f"{BILL} matures {date.isoformat()}, not {other}: is it the bill you mean? nothing"
            " was done - at `params.maturity`"
        )
        answer = await admin.request_raw("admin.mature", {"symbol": BILL, "maturity": "2027-6-3"})
        assert answer["error"]["name"] == "BAD_PARAM", answer
        equity = await admin.request_raw("admin.mature", {"symbol": SYMBOL, "maturity": other})
        assert equity["error"]["name"] == "BAD_PARAM", equity
        undated = await admin.request_raw("admin.mature", {"symbol": BILL})  # before its date
        assert undated["error"]["name"] == "MISSING_PARAM", undated  # before session 38: matured
        assert undated["error"]["msg"] == (
            f"{BILL} matures {date.isoformat()}: maturing it before then pays every holder par"
            f' for good; give "maturity": "{date.isoformat()}" to mature it now (one matured'
            " already is refused INSTRUMENT_MATURED then). nothing was done - at `params.maturity`"
        )
        assert sequencer.last_seq == before  # nothing journaled
        rows = (await admin.request("instruments", {}))["instruments"]
        assert next(r for r in rows if r["symbol"] == BILL)["status"] == "open"
        done = await admin.request("admin.mature", {"symbol": BILL, "maturity": date.isoformat()})
        assert done["seq"] == before + 1
        rows = (await admin.request("instruments", {}))["instruments"]
        assert next(r for r in rows if r["symbol"] == BILL)["status"] == "cancel_only"

    run_venue(scenario)


def test_an_operator_matures_a_bill_now_and_every_holder_is_paid_par(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        alpha = await venue.client("alpha")
        taker = await venue.client("taker")
        await alpha.place(BILL, "sell", "1000", "98.676708")
        await taker.place(BILL, "buy", "1000", "98.676708", tif="ioc")
        resting = await alpha.place(BILL, "sell", "500", "99.000000")
        before = {who: await totals(client) for who, client in (("a", alpha), ("t", taker))}
        assert before["t"][BILL_ASSET] == 2_001_000  # 2,000,000 deposited + 1,000 bought

        result = await admin.request("admin.mature", {"symbol": BILL, "maturity": BILL_DATE})
        assert result["seq"] > 0
        for who, client in (("a", alpha), ("t", taker)):
            after = await totals(client)
            assert after[BILL_ASSET] == 0
            assert after["USD"] - before[who]["USD"] == before[who][BILL_ASSET]  # par, 1:1
        open_orders = (await alpha.request("orders.open", {"symbol": BILL}))["orders"]
        assert resting["order_id"] and open_orders == []  # canceled by the maturity
        rows = (await alpha.request("instruments", {}))["instruments"]
        assert next(r for r in rows if r["symbol"] == BILL)["status"] == "cancel_only"
        assert venue.server.ledger.supply(BILL_ASSET) == 0

        state = ledger_view(venue)
        attest = {"asset": BILL_ASSET, "amount": "1000000", "as_of": now_us()}
        assert await refusal(admin, "admin.attest_reserves", attest) == "ASSET_MATURED"
        attest["as_of"] = now_us() - 30 * 86_400_000_000  # before the latest statement
        assert await refusal(admin, "admin.attest_reserves", attest) == "ASSET_MATURED"
        deposit = {"account": 1, "asset": BILL_ASSET, "amount": "100"}
        assert await refusal(admin, "admin.deposit", deposit) == "ASSET_MATURED"
        again = {"symbol": BILL, "maturity": BILL_DATE}
        assert await refusal(admin, "admin.mature", again) == "INSTRUMENT_MATURED"
        reopen = {"symbol": BILL, "status": "open"}
        assert await refusal(admin, "admin.set_status", reopen) == "INSTRUMENT_MATURED"
        assert await refusal(admin, "admin.mature", {"symbol": SYMBOL}) == "BAD_PARAM"
        assert ledger_view(venue) == state

    run_venue(scenario)


def test_a_bill_maturing_today_cannot_be_listed(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        await admin.request("admin.list_asset", {"code": "TB-TODAY", "scale": 0})
        today = datetime.datetime.now(datetime.UTC).date().isoformat()
        bill = listing("TB-TODAY-USD", "TB-TODAY") | {"kind": "tbill", "tick": "0.000001"}
        bill |= {"step": "1", "min_qty": "100", "reference_price": "99.000000"}
        bill |= {"maturity": today, "excluded_jurisdictions": []}
        response = await admin.request_raw("admin.list_instrument", bill)
        assert response["error"]["name"] == "MATURITY_PASSED", response
        assert "TB-TODAY-USD" not in venue.server.venue.markets

    run_venue(scenario)


def test_a_bill_maturing_more_than_366_days_out_cannot_be_listed(run_venue: Any) -> None:
    """The finding: a bill maturing 400 days out was listed and published a null yield. US
    T-bills run 52 weeks at most; 366 calendar days is the bound the yield counts to."""

    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        await admin.request("admin.list_asset", {"code": "TB-FAR", "scale": 0})
        today = datetime.datetime.now(datetime.UTC).date()
        bill = listing("TB-FAR-USD", "TB-FAR") | {"kind": "tbill", "tick": "0.000001"}
        bill |= {"step": "1", "min_qty": "100", "reference_price": "96.000000"}
        bill |= {"excluded_jurisdictions": []}
        far = (today + datetime.timedelta(days=367)).isoformat()
        response = await admin.request_raw("admin.list_instrument", bill | {"maturity": far})
        assert response["error"]["name"] == "BAD_PARAM", response
        assert response["error"]["msg"] == (
            "TB-FAR-USD matures 367 days after today (UTC), more than the 366 a T-bill may run"
            " (52-week bills run 364 days)"
        )
        assert "TB-FAR-USD" not in venue.server.venue.markets
        longest = (today + datetime.timedelta(days=366)).isoformat()
        await admin.request("admin.list_instrument", bill | {"maturity": longest})
        rows = (await admin.request("instruments", {}))["instruments"]
        row = next(r for r in rows if r["symbol"] == "TB-FAR-USD")
        assert row["yield"]["days_to_maturity"] == 366  # quoted, as every listable bill is

    run_venue(scenario)


def test_bills_publish_their_yields_with_the_instrument(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        alpha = await venue.client("alpha")
        rows = (await alpha.request("instruments", {}))["instruments"]
        bill = next(r for r in rows if r["symbol"] == BILL)
        quote = bill["yield"]
        assert quote["price_per_100"] == bill["reference_price"] == "98.676708"
        days = quote["days_to_maturity"]
        price = Fraction(98_676_708, 10**6)
        discount = tbill.rate_to_units(tbill.discount_rate_from_price(price, days))
        assert quote["discount_rate_pct"] == format_units(discount, 3)
        assert Decimal(quote["investment_yield_pct"]) > Decimal(quote["discount_rate_pct"])
        equity = next(r for r in rows if r["symbol"] == SYMBOL)
        assert "yield" not in equity and equity["band_high"] == "205.97"

    run_venue(scenario)


# ----------------------------------------------------------------- per-order caps, error data


def test_operators_cap_order_size_and_refusals_say_by_how_much(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        alpha = await venue.client("alpha")
        caps = {"symbol": SYMBOL, "max_qty": "10", "max_notional": "1000"}
        await admin.request("admin.set_order_caps", caps)
        rows = (await alpha.request("instruments", {}))["instruments"]
        row = next(r for r in rows if r["symbol"] == SYMBOL)
        assert (row["max_qty"], row["max_notional"]) == ("10.000000", "1000.000000")
        order = {"symbol": SYMBOL, "side": "buy", "type": "limit", "tif": "gtc"}
        response = await alpha.request_raw("order.place", order | {"qty": "11", "price": "1.00"})
        assert response["error"]["name"] == "ABOVE_MAX_QTY"
        assert response["error"]["data"] == {"max_qty": "10.000000", "qty": "11.000000"}
        response = await alpha.request_raw("order.place", order | {"qty": "6", "price": "187.25"})
        assert response["error"]["name"] == "ABOVE_MAX_NOTIONAL"
        assert response["error"]["data"] == {
            "max_notional": "1000.000000",
            "notional": "1123.500000",
            "valued_at": "187.25",
        }
        placed = await alpha.request("order.place", order | {"qty": "5", "price": "187.25"})
        amend = {"order_id": placed["order_id"], "qty": "6"}
        response = await alpha.request_raw("order.amend", amend)
        assert response["error"]["name"] == "ABOVE_MAX_NOTIONAL"
        assert response["error"]["data"]["order_id"] == placed["order_id"]
        batch = {
            "ops": [{"method": "order.place", "params": order | {"qty": "11", "price": "1.00"}}]
        }
        result = (await alpha.request_raw("order.batch", batch))["result"]["results"][0]
        assert result["error"]["data"] == {"max_qty": "10.000000", "qty": "11.000000"}
        await admin.request("admin.set_order_caps", {"symbol": SYMBOL})  # no caps
        assert (await alpha.request("order.amend", amend))["status"] == "new"

    run_venue(scenario)


def test_a_notional_cap_below_one_lot_is_refused_naming_the_smallest(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        alpha = await venue.client("alpha")
        rows = (await alpha.request("instruments", {}))["instruments"]
        row = next(r for r in rows if r["symbol"] == BILL)
        # one lot: min_qty (100 of face) at the band's low, priced per 100 of face
        smallest = Decimal(row["band_low"]) * Decimal(row["min_qty"]) / 100
        caps = {"symbol": BILL, "max_notional": "97"}  # above min_notional (50), below a lot
        assert Decimal("50") < Decimal("97") < smallest
        response = await admin.request_raw("admin.set_order_caps", caps)
        assert response["error"]["name"] == "BAD_PARAM", response
        assert f"{smallest:.6f}" in response["error"]["msg"], response
        assert venue.server.venue.markets[BILL].spec.max_notional == 0  # nothing changed
        caps["max_notional"] = f"{smallest:.6f}"
        await admin.request("admin.set_order_caps", caps)  # the smallest lets a lot trade
        placed = await alpha.place(BILL, "sell", row["min_qty"], row["band_low"])
        assert placed["status"] == "new"
        # A listing's cap likewise: one share at the band's low (225.00) is worth 225 USD.
        await admin.request("admin.list_asset", {"code": NEW_ASSET, "scale": 6})
        whole_shares = listing() | {"step": "1", "min_qty": "1", "max_notional": "200"}
        response = await admin.request_raw("admin.list_instrument", whole_shares)
        assert response["error"]["name"] == "BAD_PARAM", response
        assert "225.000000, the smallest cap that allows one lot" in response["error"]["msg"]
        assert NEW_SYMBOL not in venue.server.venue.markets
        await admin.request("admin.list_instrument", whole_shares | {"max_notional": "225"})

    run_venue(scenario)


def test_a_reference_price_that_prices_one_lot_above_the_cap_is_refused(run_venue: Any) -> None:
    """A raised reference price moves the band's low up: one lot above `max_notional` then
    (every order refused) is refused like a cap below one lot, and changes nothing."""

    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        alpha = await venue.client("alpha")
        row = next(r for r in (await alpha.request("instruments", {}))["instruments"]
                   if r["symbol"] == BILL)  # fmt: skip
        # one lot: min_qty (100 of face) at the band's low, priced per 100 of face
        lot = Decimal(row["band_low"]) * Decimal(row["min_qty"]) / 100
        await admin.request("admin.set_order_caps", {"symbol": BILL, "max_notional": f"{lot}"})
        row = next(r for r in (await alpha.request("instruments", {}))["instruments"]
                   if r["symbol"] == BILL)  # fmt: skip
        price = f"{Decimal(row['reference_price']) + Decimal('0.5'):.6f}"  # still below par
        response = await admin.request_raw(
            "admin.set_reference_price", {"symbol": BILL, "price": price}
        )
        assert response["error"]["name"] == "BAD_PARAM", response
        assert f"reference price {price}" in response["error"]["msg"], response
        assert "the smallest cap that allows one lot" in response["error"]["msg"], response
        rows = (await alpha.request("instruments", {}))["instruments"]
        assert next(r for r in rows if r["symbol"] == BILL) == row  # nothing changed
        placed = await alpha.place(BILL, "sell", row["min_qty"], row["band_low"])
        assert placed["status"] == "new"

    run_venue(scenario)


def test_a_reverse_split_that_prices_one_lot_above_the_cap_is_refused(run_venue: Any) -> None:
    """A 1:2 reverse split doubles the reference price: with one lot at the cap before, every
    order would be refused after it. The split is refused, naming the cap to raise first."""

    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        await admin.request("admin.list_asset", {"code": NEW_ASSET, "scale": 6})
        whole_shares = listing() | {"step": "1", "min_qty": "1", "max_notional": "225"}
        await admin.request("admin.list_instrument", whole_shares)  # one share at 225.00
        await admin.request("admin.set_status", {"symbol": NEW_SYMBOL, "status": "halted"})
        split = {"symbol": NEW_SYMBOL, "ratio": "1:2"}
        response = await admin.request_raw("admin.split", split)
        assert response["error"]["name"] == "BAD_PARAM", response
        assert "after the split" in response["error"]["msg"], response
        assert "450.000000, the smallest cap that allows one lot" in response["error"]["msg"]
        assert venue.server.venue.markets[NEW_SYMBOL].reference_price == 25_000  # unchanged
        await admin.request("admin.set_order_caps", {"symbol": NEW_SYMBOL, "max_notional": "450"})
        assert (await admin.request("admin.split", split))["ratio"] == "1:2"
        assert venue.server.venue.markets[NEW_SYMBOL].reference_price == 50_000

    run_venue(scenario)


def test_business_errors_carry_the_numbers_that_explain_them(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        taker = await venue.client("taker")
        order = {"symbol": SYMBOL, "side": "buy", "type": "limit", "tif": "gtc"}
        band = await taker.request_raw("order.place", order | {"qty": "1", "price": "206.00"})
        assert band["error"]["name"] == "PRICE_BAND"
        assert band["error"]["data"] == {
            "band_low": "168.53",
            "band_high": "205.97",
            "reference_price": "187.25",
        }
        small = await taker.request_raw("order.place", order | {"qty": "0.005", "price": "187.25"})
        assert small["error"]["name"] == "BELOW_MIN_NOTIONAL"
        assert small["error"]["data"] == {
            "min_notional": "1.000000",
            "notional": "0.936250",
            "valued_at": "187.25",
        }
        short = await taker.request_raw("order.place", order | {"qty": "30000", "price": "187.25"})
        assert short["error"]["name"] == "INSUFFICIENT_BALANCE"
        data = short["error"]["data"]
        assert data["asset"] == "USD" and data["available"] == "5000000.000000"
        assert Decimal(data["needed"]) > Decimal("5617500")  # 30,000 x 187.25 and the fee
        gtd = order | {"qty": "1", "price": "187.00", "tif": "gtd"}
        milliseconds = await taker.request_raw(
            "order.place", gtd | {"expire_at": now_us() // 1000 + 60_000}
        )
        assert milliseconds["error"]["name"] == "INVALID_EXPIRE_AT"
        assert (
            "looks like milliseconds; expire_at is in microseconds"
            in (milliseconds["error"]["msg"])
        )
        admin = await venue.client("admin")
        attest = {"asset": "USD", "amount": "1", "as_of": now_us() // 1000}
        response = await admin.request_raw("admin.attest_reserves", attest)
        assert "looks like milliseconds; as_of is in microseconds" in response["error"]["msg"]
        assert response["error"]["msg"].endswith(f": did you mean {attest['as_of'] * 1_000}?")
        as_of_ns = now_us() * 1_000  # since session 36: the unit and the µs meant, not the bound
        response = await admin.request_raw("admin.attest_reserves", attest | {"as_of": as_of_ns})
        assert response["error"]["name"] == "BAD_PARAM", response
        assert response["error"]["msg"] == (
            f"as_of {as_of_ns} looks like nanoseconds; as_of is in microseconds: did you mean"
            f" {as_of_ns // 1_000}? - at `params.as_of`"
        )

    run_venue(scenario)


def test_caps_and_an_early_maturity_come_back_after_a_restart(tmp_path: Path) -> None:
    """Both are journaled commands: a snapshot restore and a full replay give the same state."""
    data_dir = tmp_path / "data"

    async def before() -> str:
        venue = await start_venue(data_dir)
        admin = await venue.client("admin")
        await admin.request("admin.set_order_caps", {"symbol": SYMBOL, "max_qty": "10"})
        await admin.request("admin.mature", {"symbol": BILL, "maturity": BILL_DATE})
        state = venue.server.venue.state_hash()
        await admin.close()
        await venue.server.stop()
        return state

    async def after() -> tuple[str, str, Any]:
        venue = await start_venue(data_dir)
        try:
            start = venue.server.venue.state_hash()
            spec = venue.server.venue.markets[SYMBOL].spec
            admin = await venue.client("admin")
            deposit = {"account": 1, "asset": BILL_ASSET, "amount": "100"}
            seen = (spec.max_qty, await refusal(admin, "admin.deposit", deposit))
            await admin.close()
            return start, venue.server.venue.state_hash(), seen
        finally:
            await venue.server.stop()

    state = asyncio.run(asyncio.wait_for(before(), TEST_TIMEOUT_S))
    restored, end, seen = asyncio.run(asyncio.wait_for(after(), TEST_TIMEOUT_S))
    assert restored == state and seen == (10_000_000, "ASSET_MATURED")
    for path in data_dir.glob("snapshot-*.bin"):
        path.unlink()  # now from the journal alone
    replayed, _, seen = asyncio.run(asyncio.wait_for(after(), TEST_TIMEOUT_S))
    assert replayed == end and seen == (10_000_000, "ASSET_MATURED")
