"""The packed-frames benchmark: both kinds of session get every message and are timed."""

import asyncio

import pytest

from bench.packed_bench import run


@pytest.mark.parametrize("client", ["lean", "sdk"])
def test_both_kinds_of_session_are_measured_on_real_sockets(client: str) -> None:
    result = asyncio.run(run(messages=5, turns=20, workload="requote", kind=client))
    assert result["messages_per_turn"] == 5
    for side in ("server", "client"):
        for kind in ("frames", "packed"):
            assert result[f"{side}_us_per_turn_{kind}"] > 0, (side, kind)
