"""The outbound benchmark's replay: it runs, and what it builds is what the server sends."""

import msgspec
import pytest

from bench.outbound_bench import WORKLOADS, Replay, fan_out
from engine.commands import AmendOrder


@pytest.mark.parametrize("workload", WORKLOADS)
def test_a_small_replay_builds_private_and_public_messages(workload: str) -> None:
    replay = Replay(ops=200, seed=3, workload=workload)
    replay.keep_payloads = True
    replay.private()
    replay.public()
    assert replay.pushes == len(replay.payloads) > 100


def test_a_sequenced_push_encodes_in_the_documented_key_order() -> None:
    replay = Replay(ops=50, seed=3)
    replay.keep_payloads = True
    replay.private()
    account, seq, body = replay.payloads[0]
    assert list(msgspec.json.decode(body)) == ["ch", "seq", "epoch", "type", "ts", "data"]
    assert account > 0 and seq == 1


def test_requote_is_the_e2e_makers_amends_with_a_taker_in_ten() -> None:
    replay = Replay(ops=100, seed=3, workload="requote")
    commands = [command for command, _, _ in replay.batches]
    amends = [command for command in commands if isinstance(command, AmendOrder)]
    assert len(commands) == 100 and len(amends) == 90
    assert {
        quote_set for command, _, quote_set in replay.batches if type(command) is AmendOrder
    } == {f"bench-{maker}-{level}" for maker in (1, 2) for level in range(5)}
    replay.keep_payloads = True
    replay.private()
    pushes = [msgspec.json.decode(body) for _, _, body in replay.payloads]
    exec_types = [p["data"]["exec_type"] for p in pushes if p["type"] == "exec"]
    assert exec_types.count("amended") > 60 and "trade" in exec_types
    assert any(p["type"] == "balance" for p in pushes)  # a moved bid holds more or less cash


def test_fan_out_reaches_every_subscriber_without_a_gap() -> None:
    result = fan_out(subscribers=3, publications=4)
    assert result["book_messages"] == 3 * 4, "every publication's update to every subscriber"
    assert (result["book_gaps"], result["errors"]) == (0, {})
    assert result["loop_cpu_ms_per_publication"] >= 0
