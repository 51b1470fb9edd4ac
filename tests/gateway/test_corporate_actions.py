"""Corporate actions end to end: a real server, holders with resting orders, an operator who
pays a dividend and splits the shares, the holders' pushes, and the ledger store afterwards."""

import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from client.sdk import VenueClient, VenueError
from tests.conftest import ROOT, TEST_TIMEOUT_S, Venue, drain_pushes
from tests.sample_config import SAMPLE_CONFIG, sample_bill

SYMBOL = "AAPLx-USD"
RunVenue = Callable[[Callable[[Venue], Awaitable[Any]]], Any]


def of_type(pushes: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [p["data"] for p in pushes if p.get("ch") == "account" and p.get("type") == kind]


async def scenario(venue: Venue) -> None:
    alpha, beta, admin = await venue.client("alpha"), await venue.client("beta"), None
    admin = await venue.client("admin")
    sell = await alpha.place(SYMBOL, "sell", "10", "190.00")
    buy = await beta.place(SYMBOL, "buy", "3.000001", "185.01")
    for client in (alpha, beta):
        await client.subscribe_account()
    await alpha.subscribe_book(SYMBOL)
    await drain_pushes(alpha)
    await drain_pushes(beta)

    await admin.request("admin.deposit", {"account": 100, "asset": "USD", "amount": "20000"})
    params = {"symbol": SYMBOL, "payer": 100, "amount_per_share": "0.2475"}
    paid = await admin.request("admin.pay_dividend", params)
    # 3 holders of 20,000 shares each: 4,950 USD each, exact; nothing left to round
    assert paid["holders"] == 3 and paid["provided"] == "14850.000000"
    assert paid["residual"] == "0.000000" and paid["amount_per_share"] == "0.2475"
    pushes = await drain_pushes(alpha)
    [action] = of_type(pushes, "corporate_action")
    assert action["kind"] == "dividend" and action["cash_received"] == "4950.000000"
    assert action["holding_before"] == action["holding_after"] == "20000.000000"
    assert any(b["asset"] == "USD" for b in of_type(pushes, "balance"))

    with pytest.raises(VenueError) as refused:
        await admin.request("admin.split", {"symbol": SYMBOL, "ratio": "3:2"})
    assert refused.value.name == "INSTRUMENT_NOT_HALTED"
    await admin.request("admin.set_status", {"symbol": SYMBOL, "status": "halted"})
    await drain_pushes(alpha)
    split = await admin.request("admin.split", {"symbol": SYMBOL, "ratio": "3:2"})
    assert split["ratio"] == "3:2" and split["orders_amended"] == 2
    assert split["supply_before"] == "60000.000000" and split["supply_after"] == "90000.000000"

    pushes = await drain_pushes(alpha)
    [action] = of_type(pushes, "corporate_action")
    assert action["kind"] == "split" and action["ratio"] == "3:2"
    assert (action["holding_before"], action["holding_after"]) == ("20000.000000", "30000.000000")
    [amended] = of_type(pushes, "exec")
    assert amended["exec_type"] == "amended" and amended["order_id"] == sell["order_id"]
    assert (amended["price"], amended["leaves_qty"]) == ("126.67", "15.000000")  # 190 / 1.5, up
    aapl = next(b for b in of_type(pushes, "balance") if b["asset"] == "AAPLx")
    assert (aapl["total"], aapl["held"]) == ("30000.000000", "15.000000")
    [order] = (await beta.open_orders(SYMBOL))["orders"]
    assert order["order_id"] == buy["order_id"]
    # 3.000001 x 1.5 = 4.5000015 -> 4.500001; 185.01 / 1.5 = 123.34
    assert (order["price"], order["leaves_qty"]) == ("123.34", "4.500001")
    snapshot = await alpha.request("book.snapshot", {"symbol": SYMBOL, "depth": 10})
    assert snapshot["bids"] == [["123.34", "4.500001"]]
    assert snapshot["asks"] == [["126.67", "15.000000"]]
    local = alpha.books[SYMBOL]
    assert [list(row) for row in local.asks()] == snapshot["asks"]  # the public book followed
    await admin.request("admin.set_status", {"symbol": SYMBOL, "status": "open"})
    taker = await venue.client("taker")
    filled = await taker.place(SYMBOL, "buy", "1", "126.67", tif="ioc")
    assert filled["status"] == "filled"
    await close_all(alpha, beta, admin, taker)


async def after_restart(venue: Venue) -> None:
    """The restarted venue (snapshot + journal) has the split book, balances and pushes."""
    alpha, beta = await venue.client("alpha"), await venue.client("beta")
    [order] = (await beta.open_orders(SYMBOL))["orders"]
    assert (order["price"], order["leaves_qty"]) == ("123.34", "4.500001")
    aapl = next(b for b in (await alpha.balances())["balances"] if b["asset"] == "AAPLx")
    assert aapl["total"] == "29999.000000"  # 30,000 after the split, one sold to the taker
    await alpha.subscribe_account(since_seq=0)
    replayed = await drain_pushes(alpha)
    kinds = [action["kind"] for action in of_type(replayed, "corporate_action")]
    assert kinds == ["dividend", "split"]
    await close_all(alpha, beta)


async def close_all(*clients: VenueClient) -> None:
    for client in clients:
        await client.close()


def venue_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "cli.main", *argv]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=TEST_TIMEOUT_S, cwd=ROOT, check=False
    )


def test_a_dividend_and_a_split_reach_holders_and_the_ledger_store(
    run_venue: RunVenue, tmp_path: Path
) -> None:
    run_venue(scenario)
    run_venue(after_restart)  # the same data directory: a restart
    data_dir = str(tmp_path / "data")
    verified = venue_cli("ledger", "verify", "--data-dir", data_dir)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    reserves = venue_cli("ledger", "reserves", "--data-dir", data_dir)
    assert reserves.returncode == 0, reserves.stdout + reserves.stderr
    aapl = next(line for line in reserves.stdout.splitlines() if line.startswith("AAPLx"))
    assert aapl.split()[1:3] == ["90000.000000", "150000.000000"]  # supply and reserves x 1.5
    replayed = venue_cli("verify", "--data-dir", data_dir, "--config", str(SAMPLE_CONFIG))
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "every balance equals the replayed ledger's" in replayed.stdout


def test_a_dividend_the_payer_cannot_cover_says_by_how_much(run_venue: RunVenue) -> None:
    """INSUFFICIENT_BALANCE of `admin.pay_dividend` carries the data every other one does:
    the cash asset, what the dividend needs and what the payer has available."""

    async def short(venue: Venue) -> None:
        admin, alpha = await venue.client("admin"), await venue.client("alpha")
        await admin.request("admin.deposit", {"account": 100, "asset": "USD", "amount": "1000.5"})
        before = (await admin.balances(), await alpha.balances())
        params = {"symbol": SYMBOL, "payer": 100, "amount_per_share": "0.2475"}
        with pytest.raises(VenueError) as refused:
            await admin.request("admin.pay_dividend", params)
        # 3 holders of 20,000 shares each at 0.2475 USD a share: 14,850 USD
        assert (refused.value.status, refused.value.name) == (400, "INSUFFICIENT_BALANCE")
        assert refused.value.data == {
            "asset": "USD",
            "needed": "14850.000000",
            "available": "1000.500000",
        }
        assert "payer 100 has 1000.500000 USD available" in str(refused.value)
        assert (await admin.balances(), await alpha.balances()) == before  # nothing paid
        await close_all(admin, alpha)

    run_venue(short)


def test_a_custodian_statement_dated_before_a_split_is_refused_after_it(
    run_venue: RunVenue,
) -> None:
    """Over the wire: after a 1:10 reverse split, an attestation as of a moment before it
    (the custodian's statement in old shares, sent late) is refused, and a deposit past the
    rescaled reserves with it; one as of the split or later is taken."""

    async def reverse_split(venue: Venue) -> None:
        admin = await venue.client("admin")
        await admin.request("admin.set_status", {"symbol": SYMBOL, "status": "halted"})
        before_us = time.time_ns() // 1_000
        await admin.request("admin.split", {"symbol": SYMBOL, "ratio": "1:10"})
        reserves = {line["asset"]: line for line in (await admin.request("reserves"))["reserves"]}
        rescaled = reserves["AAPLx"]["attested"]
        late = {"asset": "AAPLx", "amount": "1000000", "as_of": before_us}
        with pytest.raises(VenueError) as refused:
            await admin.request("admin.attest_reserves", late)
        assert refused.value.name == "BAD_PARAM" and "before the split" in str(refused.value)
        reserves = {line["asset"]: line for line in (await admin.request("reserves"))["reserves"]}
        assert reserves["AAPLx"]["attested"] == rescaled
        fresh = {"asset": "AAPLx", "amount": rescaled, "as_of": time.time_ns() // 1_000}
        await admin.request("admin.attest_reserves", fresh)
        await close_all(admin)

    run_venue(reverse_split)


BILL = sample_bill("TB-2027-03-04-USD")
BILL_ASSET = sample_bill("TB-2027-03-04")


async def held_and_total(client: VenueClient, asset: str) -> tuple[str, str]:
    row = next(b for b in (await client.balances())["balances"] if b["asset"] == asset)
    return row["total"], row["held"]


def test_withdrawals_pending_at_a_split_or_a_maturity_wait_for_the_operator(
    run_venue: RunVenue, tmp_path: Path
) -> None:
    """The findings, as an operator meets them: a split or a maturity voided the pending
    withdrawals, so the custodian's confirm that came after it said `no pending withdrawal`
    while the holder kept the tokens (split) or was paid par for them (maturity): paid
    twice. And after a 2:1 split an order at `max_qty` could not be repriced. Now the
    withdrawal waits, in new shares, for the confirm or the void; the cap follows the split."""

    async def operator(venue: Venue) -> None:
        admin, alpha = await venue.client("admin"), await venue.client("alpha")
        await admin.request("admin.set_order_caps", {"symbol": SYMBOL, "max_qty": "10"})
        sell = await alpha.place(SYMBOL, "sell", "10", "190.00")
        withdraw = {"account": 1, "asset": "AAPLx", "amount": "3.000001"}
        shares = (await admin.request("admin.withdraw", withdraw))["withdrawal_id"]
        withdraw = {"account": 1, "asset": BILL_ASSET, "amount": "500"}
        bills = (await admin.request("admin.withdraw", withdraw))["withdrawal_id"]

        await admin.request("admin.set_status", {"symbol": SYMBOL, "status": "halted"})
        await admin.request("admin.split", {"symbol": SYMBOL, "ratio": "2:1"})
        assert await held_and_total(alpha, "AAPLx") == ("40000.000000", "26.000002")
        rows = (await alpha.request("instruments", {}))["instruments"]
        assert next(r for r in rows if r["symbol"] == SYMBOL)["max_qty"] == "20.000000"
        await admin.request("admin.set_status", {"symbol": SYMBOL, "status": "open"})
        assert (await alpha.amend(sell["order_id"], price="95.01"))["status"] == "new"
        [order] = (await alpha.open_orders(SYMBOL))["orders"]
        assert (order["price"], order["qty"]) == ("95.01", "20.000000")
        await admin.request("admin.confirm_withdrawal", {"withdrawal_id": shares})
        assert await held_and_total(alpha, "AAPLx") == ("39993.999998", "20.000000")

        face, _ = await held_and_total(alpha, BILL_ASSET)
        usd, _ = await held_and_total(alpha, "USD")
        await admin.request("admin.mature", {"symbol": BILL, "maturity": sample_bill("2027-03-04")})
        assert await held_and_total(alpha, BILL_ASSET) == ("500", "500")  # pending, unpaid
        paid = Decimal((await held_and_total(alpha, "USD"))[0]) - Decimal(usd)
        assert paid == Decimal(face) - 500
        await admin.request("admin.void_withdrawal", {"withdrawal_id": bills})
        assert (await held_and_total(alpha, BILL_ASSET))[0] == "0"
        paid = Decimal((await held_and_total(alpha, "USD"))[0]) - Decimal(usd)
        assert paid == Decimal(face)  # par for every unit, once
        await close_all(admin, alpha)

    run_venue(operator)
    data_dir = str(tmp_path / "data")
    verified = venue_cli("ledger", "verify", "--data-dir", data_dir)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    replayed = venue_cli("verify", "--data-dir", data_dir, "--config", str(SAMPLE_CONFIG))
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr


DUST = "XYZx-USD"  # listed by the test below: a step of 0.01 share, so dust is below it


async def list_dust_equity(admin: VenueClient) -> None:
    """XYZx (scale 6) against USD, step 0.01 share at 50.07 USD; alpha holds 12.345679
    shares and beta 3.300001, both off the step; the operator (100) has 10 USD."""
    await admin.request("admin.list_asset", {"code": "XYZx", "scale": 6})
    now_us = time.time_ns() // 1_000
    attest = {"asset": "XYZx", "amount": "1000", "as_of": now_us}
    await admin.request("admin.attest_reserves", attest)
    listing = {
        "symbol": DUST,
        "kind": "equity",
        "base": "XYZx",
        "quote": "USD",
        "tick": "0.01",
        "step": "0.01",
        "min_qty": "0.01",
        "min_notional": "0",
        "band_pct": "10",
        "reference_price": "50.07",
    }
    await admin.request("admin.list_instrument", listing)
    for account, asset, amount in ((1, "XYZx", "12.345679"), (2, "XYZx", "3.300001")):
        await admin.request("admin.deposit", {"account": account, "asset": asset, "amount": amount})
    await admin.request("admin.deposit", {"account": 100, "asset": "USD", "amount": "10"})


def test_a_reverse_split_pays_holders_cash_in_lieu_of_their_dust(
    run_venue: RunVenue, tmp_path: Path
) -> None:
    """The finding, over the wire: a 1:10 reverse split left alpha 1.2345679 shares where
    only 0.01 share steps trade, its dust unsellable and the fraction below the unit lost.
    Now each holding floors to the step, the rest is burned and paid for at the reference
    price by the payer named in `admin.split`, to the last USD unit; alpha's sell of 0.05,
    0.005 after, is canceled. The ledger store, its verify and the journal's replay agree."""

    async def reverse_split(venue: Venue) -> None:
        admin, alpha = await venue.client("admin"), await venue.client("alpha")
        await list_dust_equity(admin)
        sell = await alpha.place(DUST, "sell", "0.05", "51.00")
        await alpha.subscribe_account()
        await drain_pushes(alpha)
        await admin.request("admin.set_status", {"symbol": DUST, "status": "halted"})
        usd_before = Decimal((await held_and_total(alpha, "USD"))[0])
        with pytest.raises(VenueError) as refused:
            await admin.request("admin.split", {"symbol": DUST, "ratio": "1:10"})
        assert str(refused.value) == (
            "400 BAD_PARAM (1003): the split leaves fractions below the step worth 2.287198 USD"
            " in cash in lieu: name the account that pays it (payer)"
        )
        params = {"symbol": DUST, "ratio": "1:10", "payer": 100}
        split = await admin.request("admin.split", params)
        # alpha gives up 0.045679 old shares x 50.07 = 2.28714753 USD, beta 0.000001 x 50.07
        assert split["supply_before"] == "15.645680" and split["supply_after"] == "1.560000"
        assert (split["payer"], split["cash_asset"], split["orders_canceled"]) == (100, "USD", 1)
        assert split["cash_in_lieu_provided"] == "2.287198"  # 2.2871976 rounded up
        assert split["cash_in_lieu_paid"] == "2.287197"  # 2.287147 + 0.000050
        assert split["cash_in_lieu_residual"] == "0.000001"
        pushes = await drain_pushes(alpha)
        [canceled] = of_type(pushes, "exec")
        assert (canceled["order_id"], canceled["exec_type"]) == (sell["order_id"], "canceled")
        assert canceled["reason"] == "corporate_action"
        [action] = of_type(pushes, "corporate_action")
        assert (action["holding_before"], action["holding_after"]) == ("12.345679", "1.230000")
        assert (action["cash_asset"], action["cash_received"]) == ("USD", "2.287147")
        usd = next(b for b in of_type(pushes, "balance") if b["asset"] == "USD")
        assert Decimal(usd["total"]) == usd_before + Decimal("2.287147")
        assert await held_and_total(alpha, "XYZx") == ("1.230000", "0.000000")
        reserves = {line["asset"]: line for line in (await admin.request("reserves"))["reserves"]}
        assert (reserves["XYZx"]["supply"], reserves["XYZx"]["attested"]) == (
            "1.560000",
            "100.000000",
        )
        await close_all(admin, alpha)

    run_venue(reverse_split)
    data_dir = str(tmp_path / "data")
    verified = venue_cli("ledger", "verify", "--data-dir", data_dir)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    replayed = venue_cli("verify", "--data-dir", data_dir, "--config", str(SAMPLE_CONFIG))
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "every balance equals the replayed ledger's" in replayed.stdout
