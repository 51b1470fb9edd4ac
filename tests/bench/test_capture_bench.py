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


def test_a_restore_in_a_fresh_process_gives_the_state_written(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--restore`: the state's snapshot restored in a fresh process as `venue serve` does
    encodes into the file's bytes again, its records sharing their strings (session 34)."""
    arguments = ["--restore", "--scale", "0.01", "--accounts", "20", "--runs", "1", "--json"]
    assert capture_bench.main(arguments) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    (run,) = result["restored"]
    assert result["same_bytes"] and result["same_state_hash"] and run["rss_mb"] > 0
    assert run["record_strings"] == 3, "a symbol, a price, a status: one string object each"


def test_a_standby_s_capture_is_timed_and_encoded(capsys: pytest.CaptureFixture[str]) -> None:
    """`--standby`: a cluster standby's capture of its warm copy (`Follower.capture`), its
    closed ids at the scale, timed and encoded by the writer (session 35)."""
    arguments = ["--standby", "--scale", "0.01", "--accounts", "20", "--repeat", "1", "--json"]
    assert capture_bench.main(arguments) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result["capture_ms"] >= 0 and len(result["captures_ms"]) == 1
    assert result["bytes"] > 10_000 * 4, "the closed ids' pairs"
