"""`python -m bench.capture_bench`: a snapshot's capture at the bounds, run small here."""

import json

import pytest

from bench import capture_bench


def test_both_captures_encode_into_the_same_bytes(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        capture_bench.main(["--scale", "0.01", "--accounts", "20", "--repeat", "1", "--json"]) == 0
    )
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result["same_bytes"] and result["at_once"]["bytes"] == result["later"]["bytes"] > 0
