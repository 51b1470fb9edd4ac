"""`admin.revoke_key` on a one-process venue: a revoked key's live sessions are closed (4004),
its logons and REST requests refused from then on, before and after a restart; the config's
keys and unknown keys refused; a repeat under its `cl_op_id` answered again. A cluster's:
tests/cluster/test_roles.py."""

import asyncio
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from client.rest import RestClient
from client.sdk import VenueClient, VenueError
from gateway import key_issuing
from gateway.auth import ApiKey
from gateway.key_issuing import ISSUED_KEYS_FILE, REVOKED_KEYS_FILE, KeyRevoked, _record_id
from tests.conftest import KEYS, Venue, start_venue
from tests.gateway.test_rest import base, error_of, get
from tests.gateway.test_server_admin import ledger_view, refusal
from tests.gateway.test_server_recovery import stop

WAIT_S = 5.0


async def closed_with(client: VenueClient) -> tuple[int | None, str | None]:
    """The close code and reason the server closed `client`'s connection with."""
    websocket = client.websocket
    assert websocket is not None
    await asyncio.wait_for(websocket.wait_closed(), WAIT_S)
    return websocket.close_code, websocket.close_reason


async def logon_refused(venue: Venue, api_key: str, secret: str) -> str:
    client = await venue.client()
    with pytest.raises(VenueError) as refused:
        await client.logon(api_key, secret)
    return str(refused.value)


def test_a_revoked_key_is_closed_refused_and_stays_revoked_after_a_restart(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        first = await start_venue(data_dir)
        admin = await first.client("admin")
        asked = {"account": 3, "scopes": ["read"], "cl_op_id": "ik-1"}
        issued = await admin.request("admin.issue_key", asked)
        key, secret = issued["api_key"], issued["secret"]
        kept = await admin.request("admin.issue_key", {"account": 3, "scopes": ["read"]})
        reader = await first.client()
        await reader.logon(key, secret)
        rest = RestClient(base(first), key, secret)
        assert (await get(rest, "/api/v1/balances")).status == 200

        revoked = await admin.request("admin.revoke_key", {"api_key": key, "cl_op_id": "rv-1"})
        assert revoked["api_key"] == key and revoked["revoked_at"] > 0
        assert await closed_with(reader) == (4004, "api key revoked")
        assert error_of(await get(rest, "/api/v1/balances")) == (401, "BAD_SIGNATURE")
        assert "BAD_SIGNATURE" in await logon_refused(first, key, secret)
        stored = json.loads((data_dir / ISSUED_KEYS_FILE).read_text())
        assert [entry["key"] for entry in stored] == [kept["api_key"]]  # stored already
        # a repeat under its id is answered again; another key under it, a refusal
        again = await admin.request("admin.revoke_key", {"api_key": key, "cl_op_id": "rv-1"})
        assert again == revoked | {"repeated": True}
        other = {"api_key": kept["api_key"], "cl_op_id": "rv-1"}
        assert await refusal(admin, "admin.revoke_key", other) == "CL_OP_ID_REUSED"
        assert await refusal(admin, "admin.revoke_key", {"api_key": key}) == "BAD_PARAM"
        # the id it was issued under does not show it again, as if it were still good
        assert await refusal(admin, "admin.issue_key", asked) == "CL_OP_ID_REUSED"
        await stop(first)

        second = await start_venue(data_dir)
        try:
            assert "BAD_SIGNATURE" in await logon_refused(second, key, secret)
            rest = RestClient(base(second), key, secret)
            assert error_of(await get(rest, "/api/v1/balances")) == (401, "BAD_SIGNATURE")
            still = await second.client()
            assert (await still.logon(kept["api_key"], kept["secret"]))["account"] == 3
            # After the restart the venue still knows the key was revoked, and under which id
            # (revoked_keys.json; before session 31, in memory only): the revocation's repeat
            # is answered as the first; its id reused, or the key revoked again, refused
            admin = await second.client("admin")
            again = await admin.request("admin.revoke_key", {"api_key": key, "cl_op_id": "rv-1"})
            assert again == revoked | {"repeated": True}
            assert await refusal(admin, "admin.revoke_key", other) == "CL_OP_ID_REUSED"
            answer = await admin.request_raw("admin.revoke_key", {"api_key": key})
            assert answer["error"]["name"] == "BAD_PARAM", answer
            assert f"was revoked at {revoked['revoked_at']}" in answer["error"]["msg"]
            # its issue id: the key was revoked, said plainly (before: 504, "not stored ... or
            # it was revoked since")
            repeat = await admin.request_raw("admin.issue_key", asked)
            assert repeat["error"]["name"] == "CL_OP_ID_REUSED", repeat
            assert f"{key} issued under it was revoked at" in repeat["error"]["msg"]
            assert "secret" not in repeat["error"]["msg"]
            # its issue id names no revocation either, though api_keys.json holds the key no
            # more (before: the id was known from that file only, and the revocation done)
            under_issue = {"api_key": kept["api_key"], "cl_op_id": "ik-1"}
            answer = await admin.request_raw("admin.revoke_key", under_issue)
            assert answer["error"]["name"] == "CL_OP_ID_REUSED", answer
            assert "to issue a key revoked at" in answer["error"]["msg"]
            assert (await still.request("session.status", {}))["account"] == 3  # still on
            # and no secret kept for it
            (entry,) = json.loads((data_dir / REVOKED_KEYS_FILE).read_text())
            assert entry == {"revoked": key, "revoked_at_us": revoked["revoked_at"]} | {
                "cl_op_id": "rv-1",
                "issued_under": "ik-1",
            }
        finally:
            await stop(second)

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_config_and_unknown_keys_are_refused_and_change_nothing(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        taker = await venue.client("taker")
        answer = await admin.request_raw("admin.revoke_key", {"api_key": KEYS["taker"][0]})
        assert (answer["status"], answer["error"]["name"]) == (400, "BAD_PARAM")
        assert "remove it from venue.toml and restart" in answer["error"]["msg"]
        answer = await admin.request_raw("admin.revoke_key", {"api_key": "key-never"})
        assert (answer["status"], answer["error"]["name"]) == (400, "BAD_PARAM")
        assert "never issued, or revoked already" in answer["error"]["msg"]
        assert (await taker.request("session.status", {}))["account"] > 0  # still on
        trader = await venue.client("taker")
        assert await refusal(trader, "admin.revoke_key", {"api_key": "x"}) == "PERMISSION_DENIED"

    run_venue(scenario)


def test_an_admin_key_revoking_itself_is_answered_then_closed(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        issued = await admin.request("admin.issue_key", {"account": 1, "scopes": ["admin"]})
        itself = await venue.client()
        await itself.logon(issued["api_key"], issued["secret"])
        answer = await itself.request("admin.revoke_key", {"api_key": issued["api_key"]})
        assert answer["api_key"] == issued["api_key"]
        assert await closed_with(itself) == (4004, "api key revoked")
        assert "BAD_SIGNATURE" in await logon_refused(venue, issued["api_key"], issued["secret"])

    run_venue(scenario)


def test_a_revocation_record_is_no_key_to_a_gateway_older_than_it() -> None:
    """An older gateway decodes every key stream record as an `ApiKey` (session 29's
    `_learn_key`): a revocation fails that, loudly (logged, `SharedKeys._on_message`), and
    is never taken for a key to accept (docs/cluster.md: upgrade every gateway first)."""
    record = msgspec.json.encode(KeyRevoked("key-0123456789abcdef", 1))
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(record, type=ApiKey)


class HeldNonces:
    """A cluster's nonce claims (`SharedNonces.claim`), each answered (first use) only once
    `answer` is set: a revocation can land while a logon's or request's claim is in flight."""

    def __init__(self) -> None:
        self.answer = asyncio.Event()
        self.asked = 0

    async def claim(self, api_key: str, nonce: str) -> bool:
        self.asked += 1
        await self.answer.wait()
        return True


async def claim_asked(nonces: HeldNonces, count: int) -> None:
    for _ in range(int(WAIT_S / 0.01)):
        if nonces.asked >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{count} nonce claims never asked")


def test_a_key_revoked_during_its_nonce_claim_is_refused(run_venue: Any) -> None:
    """On a cluster's gateway a logon (or signed REST request) awaits its nonce claim after
    its signature was checked: a revocation landing then found no session with the key, so
    the logon took it for good. Refused BAD_SIGNATURE now, as any later one is."""

    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        issued = await admin.request("admin.issue_key", {"account": 3, "scopes": ["read"]})
        key, secret = issued["api_key"], issued["secret"]
        nonces = HeldNonces()
        venue.server.dispatcher.logons.shared_nonces = nonces  # type: ignore[assignment]
        victim = await venue.client()
        logon = asyncio.ensure_future(victim.logon(key, secret))
        rest = RestClient(base(venue), key, secret)
        request = asyncio.ensure_future(get(rest, "/api/v1/balances"))
        await claim_asked(nonces, 2)
        await admin.request("admin.revoke_key", {"api_key": key})
        nonces.answer.set()
        with pytest.raises(VenueError, match="BAD_SIGNATURE"):
            await logon
        refused = await request
        assert error_of(refused) == (401, "BAD_SIGNATURE")
        assert refused.json()["error"]["msg"].startswith("X-API-Key unknown"), refused.json()

    run_venue(scenario)


@pytest.mark.parametrize("cl_op_id", [None, "rv-disk"])
def test_a_revocation_not_saved_changes_nothing(tmp_path: Path, cl_op_id: str | None) -> None:
    """A revocation whose `api_keys.json` cannot be written (disk full) is refused and leaves
    the key issued: a retry revokes it (before: it was dropped from the issued list first, so
    the retry was refused as a config key's and the next issue_key dropped it unrevoked).
    Under a `cl_op_id` too, whose id the engine takes first (`RevokeKey`): the failure, in the
    engine's answer, stopped the venue (seen failing so: `fatal: OSError`); the retry under
    the id revokes the key."""
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        venue = await start_venue(data_dir)
        try:
            admin = await venue.client("admin")
            issued = await admin.request("admin.issue_key", {"account": 3, "scopes": ["read"]})
            asked = {"api_key": issued["api_key"]} | ({"cl_op_id": cl_op_id} if cl_op_id else {})
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(key_issuing, "save_json", disk_full)
                refused = await admin.request_raw("admin.revoke_key", asked)
            assert refused["error"]["name"] == "INTERNAL", refused
            client = await venue.client()
            await client.logon(issued["api_key"], issued["secret"])  # still issued
            revoked = await admin.request("admin.revoke_key", asked)
            assert revoked["api_key"] == issued["api_key"]
            stored = json.loads((data_dir / ISSUED_KEYS_FILE).read_text())
            assert [entry["key"] for entry in stored] == []
        finally:
            await stop(venue)

    asyncio.run(asyncio.wait_for(scenario(), 60))


def disk_full(path: Path, value: object) -> None:
    raise OSError(28, "No space left on device")


def test_a_revocation_saved_is_done_though_api_keys_json_is_not(tmp_path: Path) -> None:
    """`revoked_keys.json` saved is the revocation's commit; `api_keys.json` after it only
    cleanup. Before, its failed save answered INTERNAL, the key went on logging on in this
    process, and the next revocation rewrote `revoked_keys.json` from memory without it."""
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        venue = await start_venue(data_dir)
        try:
            admin = await venue.client("admin")
            first = await admin.request("admin.issue_key", {"account": 3, "scopes": ["read"]})
            second = await admin.request("admin.issue_key", {"account": 3, "scopes": ["read"]})
            real_save = key_issuing.save_json

            def issued_keys_disk_full(path: Path, value: object) -> None:
                if path.name == ISSUED_KEYS_FILE:
                    disk_full(path, value)
                real_save(path, value)

            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(key_issuing, "save_json", issued_keys_disk_full)
                revoked = await admin.request("admin.revoke_key", {"api_key": first["api_key"]})
            assert revoked["api_key"] == first["api_key"]
            refused = await logon_refused(venue, first["api_key"], first["secret"])
            assert "BAD_SIGNATURE" in refused
            await admin.request("admin.revoke_key", {"api_key": second["api_key"]})
            records = json.loads((data_dir / REVOKED_KEYS_FILE).read_text())
            assert [entry["revoked"] for entry in records] == [
                first["api_key"],
                second["api_key"],
            ]
            assert json.loads((data_dir / ISSUED_KEYS_FILE).read_text()) == []
        finally:
            await stop(venue)

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_revocation_is_answered_once_though_api_keys_json_dangles(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`api_keys.json` kept through a link to a disk that went away: the cleanup after the
    commit refuses the dangling link (not an `OSError`); logged, the revocation answered once
    (before: its 200, then a second answer, 500 `INTERNAL`, for the same request)."""
    data_dir = tmp_path / "data"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    async def scenario() -> None:
        venue = await start_venue(data_dir)
        try:
            admin = await venue.client("admin")
            issued = await admin.request("admin.issue_key", {"account": 3, "scopes": ["read"]})
            (data_dir / ISSUED_KEYS_FILE).replace(elsewhere / ISSUED_KEYS_FILE)
            (data_dir / ISSUED_KEYS_FILE).symlink_to(elsewhere / ISSUED_KEYS_FILE)
            (elsewhere / ISSUED_KEYS_FILE).unlink()
            revoked = await admin.request("admin.revoke_key", {"api_key": issued["api_key"]})
            assert revoked["api_key"] == issued["api_key"]
            await admin.request("time", {})  # answered behind anything the revoke still owed
            refused = await logon_refused(venue, issued["api_key"], issued["secret"])
            assert "BAD_SIGNATURE" in refused
        finally:
            await stop(venue)

    with caplog.at_level("ERROR"):
        asyncio.run(asyncio.wait_for(scenario(), 60))
    errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert not [error for error in errors if "failed" in error], errors
    assert any("secret left in" in error for error in errors), errors


class UnreadStream:
    """A cluster's key stream (`SharedKeys.publish`) that stores records but that this
    gateway has not read back yet (its follower lags, or is down)."""

    def __init__(self) -> None:
        self.stored: list[str] = []
        self.records: list[bytes] = []

    async def publish(self, record_id: str, record: bytes) -> None:
        self.stored.append(record_id)
        self.records.append(record)


def test_a_cluster_revocation_is_applied_here_before_its_answer(run_venue: Any) -> None:
    """A cluster's gateway answered a revocation once the stream stored it, but applied it
    only on reading its own record back: meanwhile the revoked key kept its sessions and
    logged on there. Now applied at once, before the answer."""

    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        issued = await admin.request("admin.issue_key", {"account": 3, "scopes": ["read"]})
        key, secret = issued["api_key"], issued["secret"]
        reader = await venue.client()
        await reader.logon(key, secret)
        stream = UnreadStream()
        venue.server.dispatcher.keys.shared_keys = stream  # type: ignore[assignment]
        await admin.request("admin.revoke_key", {"api_key": key})
        assert stream.stored == [f"revoked:{key}"]
        assert venue.server.auth.store.get(key) is None
        assert await closed_with(reader) == (4004, "api key revoked")
        assert "BAD_SIGNATURE" in await logon_refused(venue, key, secret)

    run_venue(scenario)


def test_a_cluster_key_is_revocable_through_its_gateway_before_it_reads_it_back(
    run_venue: Any,
) -> None:
    """A cluster's gateway learnt a key it issued only on reading it back from the key stream:
    a revocation sent through it meanwhile (its follower lagging) was refused `no api key`.
    Now the key is kept there once stored, with its answer; its record read back after the
    revocation does not bring it back."""

    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        stream = UnreadStream()
        issuer = venue.server.dispatcher.keys
        issuer.shared_keys = stream  # type: ignore[assignment]
        issued = await admin.request("admin.issue_key", {"account": 3, "scopes": ["read"]})
        key, secret = issued["api_key"], issued["secret"]
        reader = await venue.client()
        assert (await reader.logon(key, secret))["account"] == 3  # at once, where issued
        revoked = await admin.request("admin.revoke_key", {"api_key": key})
        assert revoked["api_key"] == key
        assert stream.stored == [key, f"revoked:{key}"]
        assert await closed_with(reader) == (4004, "api key revoked")
        for record in stream.records:  # the stream read back, late
            issuer._learn_key(record)
            assert venue.server.auth.store.get(key) is None
        assert "BAD_SIGNATURE" in await logon_refused(venue, key, secret)

    run_venue(scenario)


def test_issue_key_and_revoke_key_share_their_cl_op_ids(run_venue: Any) -> None:
    """The key methods' ids are one space (as the engine's methods' are one): a revocation
    under an issue's id, or an issue under a revocation's, is `CL_OP_ID_REUSED`, nothing
    done (before session 31, each was done: a revoke's ids were a space of their own)."""

    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        asked = {"account": 3, "scopes": ["read"], "cl_op_id": "ids-1"}
        first = await admin.request("admin.issue_key", asked)
        second = await admin.request("admin.issue_key", {"account": 3, "scopes": ["read"]})
        under_issue = {"api_key": second["api_key"], "cl_op_id": "ids-1"}
        answer = await admin.request_raw("admin.revoke_key", under_issue)
        assert answer["error"]["name"] == "CL_OP_ID_REUSED", answer
        assert "to issue a key" in answer["error"]["msg"]
        client = await venue.client()
        await client.logon(second["api_key"], second["secret"])  # not revoked
        await admin.request("admin.revoke_key", {"api_key": first["api_key"], "cl_op_id": "rv-2"})
        answer = await admin.request_raw("admin.issue_key", asked | {"cl_op_id": "rv-2"})
        assert answer["error"]["name"] == "CL_OP_ID_REUSED", answer
        assert "to revoke a key" in answer["error"]["msg"]

    run_venue(scenario)


def test_another_admin_key_reusing_a_revoked_key_s_id_is_not_told_the_key(
    run_venue: Any,
) -> None:
    """An `admin.issue_key` under the id of a key revoked since is told the key was revoked
    only by the admin key that asked for it, asking the same; anyone else gets the plain
    `CL_OP_ID_REUSED`, without the key (before: the revoked key's name)."""

    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        other = await admin.request("admin.issue_key", {"account": 3, "scopes": ["admin"]})
        asked = {"account": 3, "scopes": ["read"], "cl_op_id": "leak-1"}
        issued = await admin.request("admin.issue_key", asked)
        await admin.request("admin.revoke_key", {"api_key": issued["api_key"]})
        another = await venue.client()
        await another.logon(other["api_key"], other["secret"])
        for client, params in ((another, asked), (admin, asked | {"account": 4})):
            answer = await client.request_raw("admin.issue_key", params)
            assert answer["error"]["name"] == "CL_OP_ID_REUSED", answer
            assert issued["api_key"] not in answer["error"]["msg"], answer
        answer = await admin.request_raw("admin.issue_key", asked)
        assert f"{issued['api_key']} issued under it was revoked" in answer["error"]["msg"]

    run_venue(scenario)


def test_a_key_read_back_after_its_revocation_keeps_its_id(run_venue: Any) -> None:
    """A cluster's key record read after its revocation (applied here first) still takes the
    id it was issued under: a second key issued under that id (two gateways at once, before
    the engine decided ids) is not repeated in its place (before: the revoked key's record
    was dropped before its id was taken, so the second key took it)."""

    async def scenario(venue: Venue) -> None:
        issuer = venue.server.dispatcher.keys
        issuer.shared_keys = UnreadStream()  # type: ignore[assignment]
        first = ApiKey("key-00000000000000f1", "s" * 48, 3, frozenset({"read"}), "twice")
        second = msgspec.structs.replace(first, key="key-00000000000000f2")
        revocation = KeyRevoked(first.key, 1_796_000_000_000_000)
        for record in (revocation, first, second):
            issuer._learn_key(msgspec.json.encode(record))
        assert issuer.keys_by_op["twice"] == first

    run_venue(scenario)


def test_a_cluster_revocation_s_id_is_learnt_by_every_gateway(run_venue: Any) -> None:
    """A cluster's revocation record carries its `cl_op_id`, and a gateway that reads it (any
    other, or one restarted, replaying the stream) answers its repeat as the first: before,
    only the revoking gateway knew the id, in memory, and the repeat elsewhere was refused
    `no api key`. Here the other gateway's record is fed to this one by hand."""

    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        stream = UnreadStream()
        issuer = venue.server.dispatcher.keys
        issuer.shared_keys = stream  # type: ignore[assignment]
        mine = await admin.request("admin.issue_key", {"account": 3, "scopes": ["read"]})
        await admin.request("admin.revoke_key", {"api_key": mine["api_key"], "cl_op_id": "rv-a"})
        record = msgspec.json.decode(stream.records[-1])
        assert record == record | {"revoked": mine["api_key"], "cl_op_id": "rv-a"}
        theirs = await admin.request("admin.issue_key", {"account": 3, "scopes": ["read"]})
        elsewhere = KeyRevoked(theirs["api_key"], 1_796_000_000_000_000, "rv-b")
        issuer._learn_key(msgspec.json.encode(elsewhere))  # revoked through another gateway
        again = await admin.request(
            "admin.revoke_key", {"api_key": theirs["api_key"], "cl_op_id": "rv-b"}
        )
        assert again == {"api_key": theirs["api_key"], "revoked_at": 1_796_000_000_000_000} | {
            "repeated": True
        }
        assert len(stream.records) == 3  # nothing published again
        # the id the revoked key was issued under, in its record, is refused to a revocation
        # (`issued_under`: a key's record read from the stream is not needed for it)
        revoked_there = KeyRevoked("key-00000000000000e1", 1, issued_under="ik-there")
        issuer._learn_key(msgspec.json.encode(revoked_there))
        mine = await admin.request("admin.issue_key", {"account": 3, "scopes": ["read"]})
        under_issue = {"api_key": mine["api_key"], "cl_op_id": "ik-there"}
        answer = await admin.request_raw("admin.revoke_key", under_issue)
        assert answer["error"]["name"] == "CL_OP_ID_REUSED", answer

    run_venue(scenario)


def test_a_key_in_both_files_after_a_stop_between_the_saves_is_revoked(tmp_path: Path) -> None:
    """A revocation saves `revoked_keys.json`, then `api_keys.json`: a venue stopped between
    the two finds the key in both, and takes it for revoked."""
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        first = await start_venue(data_dir)
        admin = await first.client("admin")
        issued = await admin.request("admin.issue_key", {"account": 3, "scopes": ["read"]})
        await stop(first)
        record = KeyRevoked(issued["api_key"], 1_796_000_000_000_000)
        (data_dir / REVOKED_KEYS_FILE).write_bytes(msgspec.json.encode([record]))
        second = await start_venue(data_dir)
        try:
            refused = await logon_refused(second, issued["api_key"], issued["secret"])
            assert "BAD_SIGNATURE" in refused
            # and its secret is gone from api_keys.json (before: left there for an older
            # build, which reads that file only, to accept)
            stored = (data_dir / ISSUED_KEYS_FILE).read_text()
            assert issued["secret"] not in stored and json.loads(stored) == []
        finally:
            await stop(second)

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_revocation_s_id_and_the_engine_s_admin_ids_are_one_space(tmp_path: Path) -> None:
    """The finding of session 31's review: a revocation's `cl_op_id` was the gateway's alone,
    so a revocation under a deposit's id was done, and a deposit under a revocation's id
    minted. The engine takes a revocation's id now (`RevokeKey`): either way round
    `CL_OP_ID_REUSED`, nothing done, after a restart too (the journal holds it: checked with
    the revocation's entry out of revoked_keys.json, so the engine's words refuse it, not the
    gateway's); and an id a key was revoked under before (only in revoked_keys.json) is
    refused by the gateway."""
    data_dir = tmp_path / "data"
    deposit = {"account": 3, "asset": "USD", "amount": "5", "cl_op_id": "dep-9"}

    async def scenario() -> None:
        first = await start_venue(data_dir)
        admin = await first.client("admin")
        await admin.request("admin.deposit", deposit)
        issued = await admin.request("admin.issue_key", {"account": 3, "scopes": ["read"]})
        key = issued["api_key"]
        under_deposit = {"api_key": key, "cl_op_id": "dep-9"}
        answer = await admin.request_raw("admin.revoke_key", under_deposit)
        assert answer["error"]["name"] == "CL_OP_ID_REUSED", answer
        assert "cl_op_id 'dep-9' was used at" in answer["error"]["msg"]
        reader = await first.client()
        await reader.logon(key, issued["secret"])  # not revoked
        await admin.request("admin.revoke_key", {"api_key": key, "cl_op_id": "rv-9"})
        cash = ledger_view(first)
        under_revocation = deposit | {"cl_op_id": "rv-9"}
        assert await refusal(admin, "admin.deposit", under_revocation) == "CL_OP_ID_REUSED"
        assert ledger_view(first) == cash  # nothing minted
        await stop(first)
        # rv-9's entry out (only the journal knows its id now), and a revocation of before
        # session 32, whose id the engine never took
        (revoked,) = json.loads((data_dir / REVOKED_KEYS_FILE).read_text())
        assert revoked["cl_op_id"] == "rv-9"
        earlier = {"revoked": "key-earlier", "revoked_at_us": 1, "cl_op_id": "rv-earlier"}
        (data_dir / REVOKED_KEYS_FILE).write_text(json.dumps([earlier]))

        second = await start_venue(data_dir)
        try:
            admin = await second.client("admin")
            answer = await admin.request_raw("admin.deposit", under_revocation)
            assert answer["error"]["name"] == "CL_OP_ID_REUSED", answer
            assert "'rv-9' was used at" in answer["error"]["msg"]
            assert "for another command" in answer["error"]["msg"]  # the engine's words
            answer = await admin.request_raw("admin.deposit", deposit | {"cl_op_id": "rv-earlier"})
            assert answer["error"]["name"] == "CL_OP_ID_REUSED", answer
            assert "'rv-earlier' was used at 1 to revoke a key" in answer["error"]["msg"]
            # a malformed one under it is told what is wrong with it (before: CL_OP_ID_REUSED)
            malformed = deposit | {"cl_op_id": "rv-earlier", "amount": "5.0000001"}
            assert await refusal(admin, "admin.deposit", malformed) == "BAD_PRECISION"
            assert ledger_view(second) == cash
        finally:
            await stop(second)

    asyncio.run(asyncio.wait_for(scenario(), 60))


def pipelined(
    venue: Venue, client: VenueClient, requests: list[tuple[str, dict[str, Any]]]
) -> list["asyncio.Future[dict[str, Any]]"]:
    """Hand `requests` to the server as frames of `client`'s connection, one after the other
    with no turn of the loop between (each checked before any command's outcome is back, as
    two admins' at once may be); the futures of their answers."""
    (session,) = [
        live
        for live in venue.server.dispatcher.connections.sessions.values()
        if live.key is not None and live.key.key == KEYS["admin"][0]
    ]
    loop = asyncio.get_running_loop()
    answers: list[asyncio.Future[dict[str, Any]]] = []
    for index, (method, params) in enumerate(requests):
        request_id = 9_000 + index
        answer: asyncio.Future[dict[str, Any]] = loop.create_future()
        client._waiting[request_id] = answer
        frame = {"id": request_id, "method": method, "params": params}
        venue.server.dispatcher.on_frame(session, msgspec.json.encode(frame).decode())
        answers.append(answer)
    return answers


def hexed(cl_op_id: str) -> str:
    """A `cl_op_id` as a revocation's record id carries it (`key_issuing._record_id`)."""
    return cl_op_id.encode().hex()


class DedupStream(UnreadStream):
    """A cluster's key stream as JetStream keeps it: one record per record id (its
    `Nats-Msg-Id`), a second under the same id acknowledged but not stored."""

    async def publish(self, record_id: str, record: bytes) -> None:
        if record_id not in self.stored:
            await super().publish(record_id, record)


@pytest.mark.parametrize("cluster", [False, True], ids=["one-process", "cluster"])
def test_a_key_revoked_at_once_under_two_ids_is_revoked_under_both(
    run_venue: Any, cluster: bool
) -> None:
    """The finding of session 32's review: two revocations of one key at once under two ids
    both pass the gateway's checks and the engine takes both ids; the second to come back
    found the key revoked and answered `BAD_PARAM` "nothing done", though its id was used up
    (a deposit under it `CL_OP_ID_REUSED`, a repeat `BAD_PARAM` again). Both are revocations
    done now: the second's id recorded, with the first's time, answered 200, then `repeated`.
    On a cluster, the key stream kept one revocation record per key (`revoked:K`), so the
    second id was lost there (and at every gateway's start): one record per id now."""

    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        stream = DedupStream()
        if cluster:
            venue.server.dispatcher.keys.shared_keys = stream  # type: ignore[assignment]
        issued = await admin.request("admin.issue_key", {"account": 3, "scopes": ["read"]})
        key = issued["api_key"]
        asked = [("admin.revoke_key", {"api_key": key, "cl_op_id": f"one-{n}"}) for n in "ab"]
        first, second = [await answer for answer in pipelined(venue, admin, asked)]
        assert "result" in first and "result" in second, (first, second)
        for (_, params), answered in zip(asked, (first, second), strict=True):
            assert answered["result"]["api_key"] == key
            again = await admin.request("admin.revoke_key", params)
            assert again == answered["result"] | {"repeated": True}
        revoked_at = first["result"]["revoked_at"]
        deposit = {"account": 3, "asset": "USD", "amount": "5", "cl_op_id": "one-b"}
        assert await refusal(admin, "admin.deposit", deposit) == "CL_OP_ID_REUSED"
        if cluster:  # both ids stored: a gateway reading the stream learns both
            records = [msgspec.json.decode(record) for record in stream.records[1:]]
            assert [record["cl_op_id"] for record in records] == ["one-a", "one-b"]
            assert stream.stored[1:] == [f"revoked:{key}:{hexed(op)}" for op in ("one-a", "one-b")]
        else:  # both ids saved: known after a restart too
            records = json.loads((venue.server.data_dir / REVOKED_KEYS_FILE).read_text())
            assert [record["cl_op_id"] for record in records] == ["one-a", "one-b"]
            assert second["result"]["revoked_at"] == revoked_at  # the key's first revocation's
            assert {record["revoked_at_us"] for record in records} == {revoked_at}

    run_venue(scenario)


def test_a_cluster_revocation_whose_key_another_gateway_revoked_meanwhile_is_done(
    run_venue: Any,
) -> None:
    """The review's cluster case: race-a was taken by the engine, but race-b's gateway stored
    its record first, which this gateway read before race-a's outcome came back: race-a was
    answered `BAD_PARAM` "nothing done", its id used up. Now its id is stored too, with the
    first revocation's time, and answered as a revocation."""

    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        stream = DedupStream()
        issuer = venue.server.dispatcher.keys
        issuer.shared_keys = stream  # type: ignore[assignment]
        issued = await admin.request("admin.issue_key", {"account": 3, "scopes": ["read"]})
        key = issued["api_key"]
        (answer,) = pipelined(
            venue, admin, [("admin.revoke_key", {"api_key": key, "cl_op_id": "race-a"})]
        )
        theirs = KeyRevoked(key, 1_796_000_000_000_000, "race-b")
        issuer._learn_key(msgspec.json.encode(theirs))  # before race-a's outcome is back
        answered = await answer
        assert answered["result"] == {"api_key": key, "revoked_at": theirs.revoked_at_us}
        assert stream.stored[1:] == [f"revoked:{key}:{hexed('race-a')}"]
        assert msgspec.json.decode(stream.records[-1], type=KeyRevoked) == msgspec.structs.replace(
            theirs, cl_op_id="race-a"
        )
        again = await admin.request("admin.revoke_key", {"api_key": key, "cl_op_id": "race-a"})
        assert again == answered["result"] | {"repeated": True}

    run_venue(scenario)


@pytest.mark.parametrize("cl_op_id", [None, "ik-disk"])
def test_a_key_not_saved_is_refused_and_issued_nowhere(
    tmp_path: Path, cl_op_id: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    """An `admin.issue_key` whose `api_keys.json` cannot be written (disk full) is answered
    500 `INTERNAL` and leaves no key: under a `cl_op_id` (its id taken by the engine first,
    `IssueKey`) the failure, raised in the engine's answer, stopped the venue (as the
    revocation's did); without one, the key was kept in memory before its save, so it logged
    on until the next start, and the next key's save stored it, never answered. Nor is it
    logged as issued (it was, before its save)."""
    data_dir = tmp_path / "data"

    def logged_issued() -> list[str]:
        issued = [record for record in caplog.records if record.getMessage() == "api key issued"]
        return [record.api_key for record in issued]

    async def scenario() -> None:
        venue = await start_venue(data_dir)
        try:
            admin = await venue.client("admin")
            asked = {"account": 3, "scopes": ["read"]} | (
                {"cl_op_id": cl_op_id} if cl_op_id else {}
            )
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(key_issuing, "save_json", disk_full)
                refused = await admin.request_raw("admin.issue_key", asked)
            assert refused["error"]["name"] == "INTERNAL", refused
            assert venue.server.dispatcher.keys.issued_keys == []
            assert logged_issued() == []
            kept = await admin.request("admin.issue_key", {"account": 3, "scopes": ["read"]})
            stored = json.loads((data_dir / ISSUED_KEYS_FILE).read_text())
            assert [entry["key"] for entry in stored] == [kept["api_key"]]
            assert logged_issued() == [kept["api_key"]]
        finally:
            await stop(venue)

    with caplog.at_level("INFO", logger="venue"):
        asyncio.run(asyncio.wait_for(scenario(), 60))


@pytest.mark.parametrize("restart", [False, True], ids=["at-once", "after-a-restart"])
def test_a_revocation_not_saved_whose_key_another_id_revoked_is_done_when_sent_again(
    tmp_path: Path, restart: bool
) -> None:
    """The finding of session 32's re-review: two revocations of one key at once, the second's
    record not saved (disk full), answered 500 "send it again (under its cl_op_id: the venue
    revokes it then)"; sent again it was refused `BAD_PARAM` "was revoked at T: nothing done"
    before the engine was asked, after a restart too, though the engine had taken its id (a
    deposit under it `CL_OP_ID_REUSED`). Now the engine is asked: its id, taken before, is
    recorded with the first revocation's time and answered `repeated`; a new id on the revoked
    key likewise, not `repeated`; without an id, still `BAD_PARAM`."""
    data_dir = tmp_path / "data"
    real_save = key_issuing.save_json
    saves: list[Path] = []

    def second_revocation_disk_full(path: Path, value: object) -> None:
        if path.name == REVOKED_KEYS_FILE:
            saves.append(path)
            if len(saves) == 2:
                disk_full(path, value)
        real_save(path, value)

    async def scenario() -> None:
        venue = await start_venue(data_dir)
        try:
            admin = await venue.client("admin")
            issued = await admin.request("admin.issue_key", {"account": 3, "scopes": ["read"]})
            key = issued["api_key"]
            asked = [("admin.revoke_key", {"api_key": key, "cl_op_id": f"w-{n}"}) for n in "ab"]
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(key_issuing, "save_json", second_revocation_disk_full)
                first, second = [await answer for answer in pipelined(venue, admin, asked)]
            assert second["error"]["name"] == "INTERNAL", second
            if restart:
                await stop(venue)
                venue = await start_venue(data_dir)
                admin = await venue.client("admin")
            again = await admin.request("admin.revoke_key", asked[1][1])
            assert again == first["result"] | {"repeated": True}
            assert await admin.request("admin.revoke_key", asked[1][1]) == again
            deposit = {"account": 3, "asset": "USD", "amount": "5", "cl_op_id": "w-b"}
            assert await refusal(admin, "admin.deposit", deposit) == "CL_OP_ID_REUSED"
            fresh = await admin.request("admin.revoke_key", {"api_key": key, "cl_op_id": "w-c"})
            assert fresh == first["result"]
            assert await refusal(admin, "admin.revoke_key", {"api_key": key}) == "BAD_PARAM"
            records = json.loads((data_dir / REVOKED_KEYS_FILE).read_text())
            assert [record["cl_op_id"] for record in records] == ["w-a", "w-b", "w-c"]
        finally:
            await stop(venue)

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_revocation_s_record_id_keeps_ids_apart_that_differ_in_spaces() -> None:
    """The finding of session 32's re-review: nats-py strips a header's value, so the
    `Nats-Msg-Id`s of revocations under "x" and "x " (or a Unicode space) were one, and the
    stream kept one record within its dedup window, the other id lost. Each id's record id is
    its own now, as the header carries it, ASCII only and the same on every retry."""
    ids = ["x", "x ", " x", "x\u3000", "x\u00a0", "\u00e9"]
    sent = [_record_id(KeyRevoked("key-1", 1, cl_op_id)) for cl_op_id in ids]
    assert len({record_id.strip() for record_id in sent}) == len(ids), sent
    assert all(record_id.isascii() and record_id == record_id.strip() for record_id in sent)
    assert sent == [_record_id(KeyRevoked("key-1", 2, cl_op_id)) for cl_op_id in ids]
    assert _record_id(KeyRevoked("key-1", 1)) == "revoked:key-1"  # without an id: as before
