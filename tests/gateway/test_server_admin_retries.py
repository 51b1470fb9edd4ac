"""An operator's command sent again under its `cl_op_id` is done once, through a real server.

The finding: admin methods were not idempotent. An operator whose command got no answer (a
timeout, a dropped connection) and who sent it again had it done twice: a dividend paid
twice, a deposit minted twice, a split applied twice (the market was still halted). Now
each admin method that moves money or state takes a `cl_op_id`; the engine remembers it
(through a snapshot, a replay after kill -9) and answers a repeat with the first's result.
"""

import asyncio
import json
import signal
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from client.sdk import VenueClient
from core import snapshots
from gateway.key_issuing import ISSUED_KEYS_FILE
from tests.conftest import KEYS, TEST_TIMEOUT_S, Venue, start_venue
from tests.gateway.test_crash import free_port, start_server
from tests.gateway.test_server_admin import ledger_view, refusal

SYMBOL = "AAPLx-USD"
PAYER = 100  # the operator's account (`tests.sample_config`)
DEPOSIT = {"account": PAYER, "asset": "USD", "amount": "20000", "cl_op_id": "dep-1"}
DIVIDEND = {"symbol": SYMBOL, "payer": PAYER, "amount_per_share": "0.2475", "cl_op_id": "div-1"}
SPLIT = {"symbol": SYMBOL, "ratio": "3:2", "cl_op_id": "split-1"}


async def twice(client: VenueClient, method: str, params: dict[str, Any]) -> tuple[Any, Any]:
    """`method` sent, then sent again as a retry would be; the two results."""
    first = await client.request(method, params)
    again = await client.request(method, params)
    return first, again


def assert_repeat_of(first: dict[str, Any], again: dict[str, Any]) -> None:
    """`again` says it was done before, with `first`'s result (its own `seq` aside)."""
    assert again.pop("repeated") is True and "repeated" not in first
    assert isinstance(again.pop("done_at"), int)
    assert again.pop("seq") > first.pop("seq")
    assert again == first


def test_a_deposit_a_dividend_and_a_split_sent_twice_are_each_done_once(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        admin, alpha = await venue.client("admin"), await venue.client("alpha")
        cash = (await admin.balances())["balances"]
        first, again = await twice(admin, "admin.deposit", DEPOSIT)
        assert_repeat_of(first, again)
        usd = next(b for b in (await admin.balances())["balances"] if b["asset"] == "USD")
        before = next((b for b in cash if b["asset"] == "USD"), {"total": "0"})
        assert float(usd["total"]) == float(before["total"]) + 20_000  # minted once

        holder_before = (await alpha.balances())["balances"]
        first, again = await twice(admin, "admin.pay_dividend", DIVIDEND)
        assert first["provided"] == "14850.000000"
        assert_repeat_of(first, again)  # the same totals, paid once
        paid = (await alpha.balances())["balances"]
        gained = {b["asset"]: float(b["total"]) for b in paid}
        had = {b["asset"]: float(b["total"]) for b in holder_before}
        assert gained["USD"] - had["USD"] == 4_950  # one dividend of 20,000 x 0.2475

        await admin.request("admin.set_status", {"symbol": SYMBOL, "status": "halted"})
        first, again = await twice(admin, "admin.split", SPLIT)
        assert first["supply_after"] == "90000.000000"
        assert_repeat_of(first, again)  # still halted, and split once
        aapl = next(b for b in (await alpha.balances())["balances"] if b["asset"] == "AAPLx")
        assert aapl["total"] == "30000.000000"

        withdraw = {"account": PAYER, "asset": "USD", "amount": "1", "cl_op_id": "wd-1"}
        first, again = await twice(admin, "admin.withdraw", withdraw)
        assert_repeat_of(first, again)  # the same withdrawal_id, held once
        assert [w for w in venue.server.ledger.withdrawals] == [first["withdrawal_id"]]

    run_venue(scenario)


def test_the_same_id_with_other_params_is_refused_changing_nothing(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        await admin.request("admin.deposit", DEPOSIT)
        before = ledger_view(venue)
        response = await admin.request_raw("admin.deposit", DEPOSIT | {"amount": "20001"})
        assert response["status"] == 400
        assert response["error"]["name"] == "CL_OP_ID_REUSED"
        assert response["error"]["code"] == 7009
        assert "'dep-1'" in response["error"]["msg"]
        other_method = DIVIDEND | {"cl_op_id": "dep-1"}
        assert await refusal(admin, "admin.pay_dividend", other_method) == "CL_OP_ID_REUSED"
        for bad in ("x" * 37, "a\nb", ""):
            assert await refusal(admin, "admin.deposit", DEPOSIT | {"cl_op_id": bad}) == (
                "BAD_PARAM"
            )
        issue = {"account": 1, "scopes": ["read"], "cl_op_id": "k\n1"}  # checked as the others
        assert await refusal(admin, "admin.issue_key", issue) == "BAD_PARAM"
        assert ledger_view(venue) == before

    run_venue(scenario)


def test_a_listing_sent_again_is_answered_not_refused_as_existing(run_venue: Any) -> None:
    """The gateway's own check of a listed code (`ASSET_EXISTS`) would answer a retried
    listing as a refusal: with a `cl_op_id`, the engine answers it as done."""

    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        params = {"code": "GOOGx", "scale": 6, "cl_op_id": "list-1"}
        first, again = await twice(admin, "admin.list_asset", params)
        assert_repeat_of(first, again)
        twin = {"code": "googx", "scale": 6, "cl_op_id": "list-2"}  # refused by the engine
        assert await refusal(admin, "admin.list_asset", twin) == "ASSET_EXISTS"

    run_venue(scenario)


def test_a_repeat_after_a_snapshot_restore_is_done_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    async def before() -> str:
        venue = await start_venue(data_dir)
        admin = await venue.client("admin")
        await admin.request("admin.deposit", DEPOSIT)
        await admin.request("admin.pay_dividend", DIVIDEND)
        await venue.server.snapshot()
        await admin.close()
        await venue.server.stop()
        return venue.server.venue.state_hash()

    async def after() -> tuple[str, Any]:
        venue = await start_venue(data_dir)
        try:
            restored = venue.server.venue.state_hash()
            admin = await venue.client("admin")
            view = ledger_view(venue)
            again = await admin.request("admin.pay_dividend", DIVIDEND)
            assert again["repeated"] is True and again["provided"] == "14850.000000"
            assert ledger_view(venue) == view
            await admin.close()
            return restored, again
        finally:
            await venue.server.stop()

    state = asyncio.run(asyncio.wait_for(before(), TEST_TIMEOUT_S))
    assert list(data_dir.glob("snapshot-*.bin")), "the restart starts from a snapshot"
    restored, _ = asyncio.run(asyncio.wait_for(after(), TEST_TIMEOUT_S))
    assert restored == state


KEPT_WHOLE = 2  # the operations a venue keeps whole here, so that a few pass the bound


def test_a_deposit_sent_again_under_an_id_past_the_old_bound_is_done_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The finding: the venue remembered the last 100,000 `cl_op_id`s, so a deposit sent
    again under an older id was minted again. Here the venue keeps two whole (so that the
    test passes the bound in a few commands: the older ones are compacted), its first id is
    followed by more, a snapshot and a restart; that first deposit sent again is not
    minted."""
    whole = partial(snapshots.VenueConfig, operations_recent_max=KEPT_WHOLE)  # `first_rules`
    monkeypatch.setattr(snapshots, "VenueConfig", whole)
    data_dir = tmp_path / "data"

    async def before() -> tuple[dict[str, Any], str]:
        venue = await start_venue(data_dir)
        try:
            admin = await venue.client("admin")
            first: dict[str, Any] = await admin.request("admin.deposit", DEPOSIT)
            for index in range(KEPT_WHOLE + 1):  # past the bound, and through a snapshot
                later = DEPOSIT | {"amount": "1", "cl_op_id": f"dep-later-{index}"}
                await admin.request("admin.deposit", later)
                if index == KEPT_WHOLE - 1:
                    await venue.server.snapshot()
            usd = next(b for b in (await admin.balances())["balances"] if b["asset"] == "USD")
            await admin.close()
            return first, usd["total"]
        finally:
            await venue.server.stop()

    async def after() -> tuple[dict[str, Any], str]:
        venue = await start_venue(data_dir)
        try:
            admin = await venue.client("admin")
            again: dict[str, Any] = await admin.request("admin.deposit", DEPOSIT)
            usd = next(b for b in (await admin.balances())["balances"] if b["asset"] == "USD")
            await admin.close()
            return again, usd["total"]
        finally:
            await venue.server.stop()

    first, usd_before = run(before())
    assert list(data_dir.glob("snapshot-*.bin")), "the restart starts from a snapshot"
    again, usd_after = run(after())
    assert_repeat_of(first, again)
    assert usd_after == usd_before  # not minted again


async def admin_request(port: int, method: str, params: dict[str, Any]) -> Any:
    async with VenueClient(f"ws://127.0.0.1:{port}/ws/trade") as client:
        await client.logon(*KEYS["admin"])
        return await client.request(method, params)


async def usd_of(port: int) -> str:
    async with VenueClient(f"ws://127.0.0.1:{port}/ws/trade") as client:
        await client.logon(*KEYS["admin"])
        rows = (await client.balances())["balances"]
        return next(b["total"] for b in rows if b["asset"] == "USD")


def run(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, TEST_TIMEOUT_S))


def test_a_deposit_and_a_dividend_sent_again_after_kill_9_are_done_once(tmp_path: Path) -> None:
    """`venue serve` killed (SIGKILL: no snapshot, no clean stop) after it did the commands:
    the restarted venue rebuilt from its journal knows their ids and does neither again."""
    data_dir, port = tmp_path / "data", free_port()
    server = start_server(data_dir, port)
    try:
        run(admin_request(port, "admin.deposit", DEPOSIT))
        first = run(admin_request(port, "admin.pay_dividend", DIVIDEND))
        usd = run(usd_of(port))
        server.send_signal(signal.SIGKILL)
        server.wait(TEST_TIMEOUT_S)
        port = free_port()
        server = start_server(data_dir, port)
        deposit = run(admin_request(port, "admin.deposit", DEPOSIT))
        dividend = run(admin_request(port, "admin.pay_dividend", DIVIDEND))
        assert deposit["repeated"] is True and dividend["repeated"] is True
        assert dividend["paid_total"] == first["paid_total"]
        assert run(usd_of(port)) == usd  # neither minted nor paid again
    finally:
        server.kill()
        server.wait(TEST_TIMEOUT_S)


ISSUE = {"account": 3, "scopes": ["read", "trade"], "cl_op_id": "key-1"}


def assert_same_key(first: dict[str, Any], again: dict[str, Any]) -> None:
    """`again` is `first`'s key, secret and all, saying it was issued before."""
    assert again.pop("repeated") is True and "repeated" not in first
    assert isinstance(again.pop("done_at"), int)
    assert again == first


def test_a_key_issued_again_under_its_cl_op_id_is_the_same_key(run_venue: Any) -> None:
    """The finding: `admin.issue_key` took no `cl_op_id`, so a retry after a lost answer (as
    `venue admin` makes) issued a second live key. Now the same operator asking the same
    gets the first key again (its secret too: it asked for it) and nothing is issued; other
    params, or another admin key, are `CL_OP_ID_REUSED` and see no secret."""

    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        keys_before = len(venue.server.auth.store)
        first, again = await twice(admin, "admin.issue_key", ISSUE)
        assert_same_key(first, again)
        assert len(venue.server.auth.store) == keys_before + 1  # one key, not two
        reordered = ISSUE | {"scopes": ["trade", "read"]}  # the same scopes
        assert_same_key(first, await admin.request("admin.issue_key", reordered))
        holder = await venue.client()
        await holder.logon(first["api_key"], first["secret"])
        for other in ({"scopes": ["read"]}, {"account": 1}):
            refused = await admin.request_raw("admin.issue_key", ISSUE | other)
            assert refused["error"]["name"] == "CL_OP_ID_REUSED", refused
            assert "'key-1'" in refused["error"]["msg"] and "secret" not in refused
        second_admin = {"account": 100, "scopes": ["admin"], "cl_op_id": "key-2"}
        operator = await admin.request("admin.issue_key", second_admin)
        other_operator = await venue.client()
        await other_operator.logon(operator["api_key"], operator["secret"])
        refused = await other_operator.request_raw("admin.issue_key", ISSUE)
        assert refused["error"]["name"] == "CL_OP_ID_REUSED"
        assert first["secret"] not in str(refused)
        assert len(venue.server.auth.store) == keys_before + 2

    run_venue(scenario)


def test_a_key_issued_again_after_a_restart_is_the_same_key(tmp_path: Path) -> None:
    """As the journaled commands' ids survive a restart, so does an issued key's (kept with
    the key in the issued keys' file)."""
    data_dir = tmp_path / "data"

    async def issue() -> dict[str, Any]:
        venue = await start_venue(data_dir)
        try:
            admin = await venue.client("admin")
            first: dict[str, Any] = await admin.request("admin.issue_key", ISSUE)
            await admin.close()
            return first
        finally:
            await venue.server.stop()

    async def again() -> tuple[dict[str, Any], int, int]:
        venue = await start_venue(data_dir)
        try:
            admin = await venue.client("admin")
            keys_before = len(venue.server.auth.store)
            repeated = await admin.request("admin.issue_key", ISSUE)
            keys_after = len(venue.server.auth.store)
            await admin.close()
            return repeated, keys_before, keys_after
        finally:
            await venue.server.stop()

    first = run(issue())
    repeated, keys_before, keys_after = run(again())
    assert_same_key(first, repeated)
    assert keys_after == keys_before


def test_a_key_whose_storing_a_stop_cut_short_is_not_issued_again(tmp_path: Path) -> None:
    """The engine takes an issued key's id (`IssueKey`, journaled) before the gateway stores
    the key in api_keys.json: a stop in between leaves the id taken and the key nowhere. The
    request sent again is not issued a second key under that id; it is told the key was not
    stored, 504 `OUTCOME_UNKNOWN`, to give a new `cl_op_id` (simulated: the key removed from
    the file, as if never written)."""
    data_dir = tmp_path / "data"

    async def issue() -> None:
        venue = await start_venue(data_dir)
        try:
            admin = await venue.client("admin")
            await admin.request("admin.issue_key", ISSUE)
            await admin.close()
        finally:
            await venue.server.stop()

    async def again() -> tuple[dict[str, Any], int, int]:
        venue = await start_venue(data_dir)
        try:
            admin = await venue.client("admin")
            keys_before = len(venue.server.auth.store)
            refused: dict[str, Any] = await admin.request_raw("admin.issue_key", ISSUE)
            keys_after = len(venue.server.auth.store)
            await admin.close()
            return refused, keys_before, keys_after
        finally:
            await venue.server.stop()

    run(issue())
    keys_file = data_dir / ISSUED_KEYS_FILE
    assert [key["cl_op_id"] for key in json.loads(keys_file.read_text())] == ["key-1"]
    keys_file.write_text("[]")  # the only key issued, as if the stop came before its writing
    refused, keys_before, keys_after = run(again())
    assert refused["error"]["name"] == "OUTCOME_UNKNOWN", refused
    assert "'key-1'" in refused["error"]["msg"] and "not stored" in refused["error"]["msg"]
    assert keys_after == keys_before  # nothing issued
