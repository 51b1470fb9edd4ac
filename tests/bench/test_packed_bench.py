"""The packed-frames benchmark: both kinds of session get every message and are timed."""

import asyncio

from bench.packed_bench import run


def test_both_kinds_of_session_are_measured_on_real_sockets() -> None:
    result = asyncio.run(run(messages=5, turns=20, workload="requote"))
    assert result["messages_per_turn"] == 5
    for side in ("server", "client"):
        for kind in ("frames", "packed"):
            assert result[f"{side}_us_per_turn_{kind}"] > 0, (side, kind)
