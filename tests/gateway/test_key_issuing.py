"""`gateway.key_issuing`: what the key issuer does that only a cluster's timing shows (the
server's behaviour, embedded and over a cluster, is in test_server_admin*, tests/cluster)."""

import time
from typing import Any

import msgspec

from core.cluster_keys import SharedKeys
from gateway import dispatch, key_issuing
from gateway.auth import ApiKey
from tests.conftest import KEYS, Venue


def test_a_repeated_key_learnt_before_its_wait_starts_is_answered_with_it(
    run_venue: Any, monkeypatch: Any
) -> None:
    """A repeated `admin.issue_key` on a cluster whose first key this gateway has not learnt:
    `KeyIssuer._answer_key_again` starts waiting for the key stream, and the stream delivers
    the key (`_learn_key`) before the wait's task first runs. Before, the task registered its
    wait only then: nothing resolved it, and a stored key was answered 504 after 20 s (2 here).
    A real server; its key issuer given a key stream (unconnected: fed by hand, in between)."""
    monkeypatch.setattr(key_issuing, "ISSUED_KEY_WAIT_S", 2.0)
    key = ApiKey(
        "key-learnt-first",
        "s" * 48,
        3,
        frozenset({"read"}),
        cl_op_id="learnt-1",
        issued_by=KEYS["admin"][0],
        issued_at_us=1,
    )

    async def scenario(venue: Venue) -> None:
        admin = await venue.client("admin")
        issuer = venue.server.dispatcher.keys
        issuer.shared_keys = SharedKeys(1, on_key=issuer._learn_key)
        session = next(s for s in venue.server.sessions.values() if s.key is not None)
        pending = dispatch.Pending(session, 990, "admin.issue_key", time.time_ns() // 1000)
        issuer._answer_key_again(pending, "learnt-1", key.key, 1)
        issuer._learn_key(msgspec.json.encode(key))  # the stream's delivery, in between
        answer = await admin.next_push(10)
        while answer.get("id") != 990:
            answer = await admin.next_push(10)
        assert answer["status"] == 200, answer
        assert (answer["result"]["api_key"], answer["result"]["secret"]) == (key.key, key.secret)
        assert answer["result"]["repeated"] is True
        assert issuer._keys_awaited == {}  # nothing left waiting

    run_venue(scenario)
