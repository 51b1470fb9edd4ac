"""`admin.sweep` through a real server: the venue's fee income taken out to a participant,
answered with its transfer, refused with clear errors that change nothing, and stored in
the ledger store as every transfer is (what `venue ledger` reads and verifies).

The finding (session 26): the venue's fee income (-2) and rounding (-3) balances could never
be swept: the operator could never take the venue's income out.
"""

from pathlib import Path
from typing import Any

from cli.main import main as venue_cli
from settlement.store import SqliteLedgerStore
from settlement.transfers import FEE_INCOME, TransferKind
from tests.conftest import Venue, start_venue
from tests.gateway.test_server_admin import SYMBOL, ledger_view
from tests.gateway.test_server_recovery import run, stop

ALPHA, BETA = 1, 2  # the accounts of the demo keys "alpha" and "beta"


async def trade_once(venue: Venue) -> None:
    """Beta sells alpha 1 AAPLx at 186.00: fees of 1 and 5 bps go to fee income."""
    alpha, beta = await venue.client("alpha"), await venue.client("beta")
    await beta.place(SYMBOL, "sell", "1", "186.00")
    await alpha.place(SYMBOL, "buy", "1", "186.00")


def income(venue: Venue) -> int:
    balance = venue.server.ledger.balances.get((FEE_INCOME, "USD"))
    return balance.total if balance is not None else 0


async def error_of(admin: Any, params: dict[str, Any]) -> dict[str, Any]:
    response = await admin.request_raw("admin.sweep", params)
    assert response["status"] != 200, response
    error: dict[str, Any] = response["error"]
    return error


def test_the_fee_income_is_swept_answered_refused_and_stored(tmp_path: Path, capsys: Any) -> None:
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        venue = await start_venue(data_dir)
        await trade_once(venue)
        assert income(venue) == 111_600  # 186.00: 0.0186 maker + 0.0930 taker
        admin = await venue.client("admin")
        before = ledger_view(venue)
        sweep = {"venue_account": FEE_INCOME, "asset": "USD", "account": BETA}
        for params, name, said in (
            ({"amount": "0.111601"}, "INSUFFICIENT_BALANCE", "holds 0.111600 USD, 0.111601"),
            ({"amount": "0"}, "BAD_PARAM", "amount must be positive"),
            ({"amount": "0.0000001"}, "BAD_PRECISION", "more than 6 decimals"),
            ({"amount": "1", "asset": "EUR"}, "UNKNOWN_ASSET", "unknown asset"),
            ({"amount": "1", "account": 77}, "UNKNOWN_ACCOUNT", "no account 77"),
            ({"amount": "1", "venue_account": -1}, "BAD_PARAM", "(issuance) is never swept"),
            ({"amount": "1", "venue_account": ALPHA}, "BAD_PARAM", "is no venue account"),
        ):
            error = await error_of(admin, sweep | params)
            assert error["name"] == name and said in error["msg"], (params, error)
        short = await error_of(admin, sweep | {"amount": "1"})
        assert short["data"] == {"asset": "USD", "needed": "1.000000", "available": "0.111600"}
        assert ledger_view(venue) == before
        done = await admin.request("admin.sweep", sweep | {"amount": "0.1", "cl_op_id": "s-1"})
        again = await admin.request("admin.sweep", sweep | {"amount": "0.1", "cl_op_id": "s-1"})
        assert again["repeated"] is True and again["transfer_id"] == done["transfer_id"]
        assert income(venue) == 11_600
        await stop(venue)
        store = SqliteLedgerStore(data_dir / "ledger.sqlite")
        try:
            (swept,) = [t for t in store.iter_transfers() if t.kind is TransferKind.SWEEP]
        finally:
            store.close()
        assert swept.transfer_id == done["transfer_id"]
        assert (swept.debit_account, swept.credit_account, swept.amount) == (
            FEE_INCOME,
            BETA,
            100_000,
        )
        restarted = await start_venue(data_dir)  # the journal replays it once
        assert income(restarted) == 11_600
        await stop(restarted)

    run(scenario)
    assert venue_cli(["ledger", "verify", "--data-dir", str(data_dir)]) == 0
    assert capsys.readouterr().out.startswith("ok: ")
    assert venue_cli(["verify", "--data-dir", str(data_dir)]) == 0  # replayed from zero
