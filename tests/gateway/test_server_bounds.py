"""Hostile numbers through a real server: an order too large for the venue to account is
refused with a clear error, and the venue still snapshots and restarts as it was."""

import asyncio
import time
from pathlib import Path

from core import snapshots
from settlement.ledger import SUPPLY_MAX
from tests.conftest import start_venue
from tests.sample_config import sample_bill

SYMBOL = "AAPLx-USD"  # tick 0.01, step 0.000001, fees 1 and 5 bps, no notional cap


def now_us() -> int:
    return time.time_ns() // 1_000


def test_an_order_past_the_venue_bound_is_refused_and_the_venue_restarts(
    tmp_path: Path,
) -> None:
    """The finding: 1e9 shares at 187.25 is worth 1.87e19 units of price x qty, past 64 bits
    once traded; before the fix it was accepted and its fills crashed the snapshot."""
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        venue = await start_venue(data_dir)
        admin = await venue.client("admin")
        alpha = await venue.client("alpha")
        taker = await venue.client("taker")
        for asset, amount in (("AAPLx", "2000000000"), ("USD", "1000000000000")):
            reserves = {"asset": asset, "amount": amount, "as_of": now_us()}
            await admin.request("admin.attest_reserves", reserves)
        for account, asset, amount in ((1, "AAPLx", "1000000000"), (3, "USD", "200000000000")):
            deposit = {"account": account, "asset": asset, "amount": amount}
            await admin.request("admin.deposit", deposit)
        before = (await alpha.balances(), await alpha.open_orders())

        params = {"symbol": SYMBOL, "side": "sell", "type": "limit", "tif": "gtc"}
        huge = params | {"qty": "1000000000", "price": "187.25"}
        response = await alpha.request_raw("order.place", huge)
        assert response["status"] == 400
        assert response["error"]["name"] == "NOTIONAL_OUT_OF_RANGE"
        assert response["error"]["code"] == 4015
        assert response["error"]["data"] == {
            "max_notional": "9223372036.8547758",  # (2**63 - 1) // (2 x 5 bps) / 10**8
            "notional": "187250000000.000000",
            "valued_at": "187.25",
        }
        assert (await alpha.balances(), await alpha.open_orders()) == before, "nothing changed"

        # within the bound: accepted, and it trades
        await alpha.place(SYMBOL, "sell", "40000000", "187.25")
        await taker.place(SYMBOL, "buy", "39999999", "187.25", tif="ioc")
        await venue.server.sequencer.drain()
        state = venue.server.venue.state_hash()
        assert await venue.server.snapshot() is not None
        for client in (admin, alpha, taker):
            await client.close()
        await venue.server.stop()

        assert snapshots.latest(data_dir) is not None
        restarted = await start_venue(data_dir)
        try:
            assert restarted.server.venue.state_hash() == state
        finally:
            await restarted.server.stop()
        for path in data_dir.glob("snapshot-*.bin"):
            path.unlink()  # the whole journal, the refused order too, replays alike
        replayed = await start_venue(data_dir)
        try:
            assert replayed.server.venue.state_hash() == state
        finally:
            await replayed.server.stop()

    asyncio.run(scenario())


def test_a_bill_deposit_whose_par_would_pass_the_supply_bound_is_refused(tmp_path: Path) -> None:
    """The finding: face in whole dollars is paid in micro-dollars, so 1e13 of a bill
    (within every wire bound) paid 1e19 USD units at maturity, past 2**63: then the snapshot
    and the state hash failed. A deposit past the bound is refused, one up to it goes
    through, and the venue snapshots and restarts as it was."""
    data_dir = tmp_path / "data"
    bill = sample_bill("TB-2027-03-04")  # scale 0, paid in USD at scale 6

    async def scenario() -> None:
        venue = await start_venue(data_dir)
        admin = await venue.client("admin")
        engine = venue.server.venue
        ledger = engine.ledger
        assert ledger is not None
        at_maturity = ledger.supply_at_maturity("USD", engine.custody.redemptions())
        face = (SUPPLY_MAX - at_maturity) // 10**6  # what the USD's room pays par for
        amount = str(ledger.supply(bill) + face + 1)
        await admin.request(
            "admin.attest_reserves", {"asset": bill, "amount": amount, "as_of": now_us()}
        )
        balances = sorted((key, b.total, b.held) for key, b in ledger.balances.items())

        deposit = {"account": 1, "asset": bill, "amount": str(face + 1)}
        response = await admin.request_raw("admin.deposit", deposit)
        assert response["status"] == 400
        assert (response["error"]["name"], response["error"]["code"]) == (
            "SUPPLY_OUT_OF_RANGE",
            7008,
        )
        assert sorted((key, b.total, b.held) for key, b in ledger.balances.items()) == balances
        await admin.request("admin.deposit", deposit | {"amount": str(face)})
        assert ledger.supply_at_maturity("USD", engine.custody.redemptions()) <= SUPPLY_MAX

        await venue.server.sequencer.drain()
        state = engine.state_hash()
        assert await venue.server.snapshot() is not None
        await admin.close()
        await venue.server.stop()
        restarted = await start_venue(data_dir)
        try:
            assert restarted.server.venue.state_hash() == state
        finally:
            await restarted.server.stop()

    asyncio.run(scenario())
