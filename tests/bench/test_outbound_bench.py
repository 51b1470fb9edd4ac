"""The outbound benchmark's replay: it runs, and what it builds is what the server sends."""

import msgspec

from bench.outbound_bench import Replay, fan_out
from gateway.reports import Sequenced


def test_a_small_replay_builds_private_and_public_messages() -> None:
    replay = Replay(ops=200, seed=3)
    replay.private()
    replay.public()
    assert replay.pushes > 200, "a trade every other command: several pushes each"


def test_a_sequenced_push_encodes_in_the_documented_key_order() -> None:
    replay = Replay(ops=50, seed=3)
    command, events = replay.batches[0]
    account, push = replay.reporter.reports(events, command=command)[0]
    body = msgspec.json.encode(Sequenced(push.ch, 1, 2, push.type, push.ts, push.data))
    assert list(msgspec.json.decode(body)) == ["ch", "seq", "epoch", "type", "ts", "data"]
    assert account > 0


def test_fan_out_reaches_every_subscriber_without_a_gap() -> None:
    result = fan_out(subscribers=3, publications=4)
    assert result["book_messages"] == 3 * 4, "every publication's update to every subscriber"
    assert (result["book_gaps"], result["errors"]) == (0, {})
    assert result["loop_cpu_ms_per_publication"] >= 0
