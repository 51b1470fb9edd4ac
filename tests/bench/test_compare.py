"""`venue bench engine --compare` at a tiny size: every adapter trades the same quantity.

Builds the parser as `cli/main.py` wires it (`engine_bench` then `compare` arguments).
Never asserts on speed: only that what is reported is there and adds up.
"""

import argparse
import json
from collections.abc import Sequence
from typing import Any

import pytest

from bench import compare, engine_bench, workloads
from bench.adapters import AdapterResult, all_adapters
from bench.adapters.naive import NaiveAdapter
from bench.adapters.ours import VenueAdapter
from bench.workloads import Workload
from cli.main import main

OPS = 2_000
SEED = 3
ALWAYS_THERE = {"ours", "ours+ledger", "naive"}  # need nothing beyond the project's own code
RATE_TOLERANCE = 0.01  # ops_per_sec is rounded to a whole number and seconds to 1 µs


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    engine_bench.add_arguments(parser)
    compare.add_arguments(parser)
    return parser


def _argv(workload: str) -> list[str]:
    return [
        "--compare",
        "--workload",
        workload,
        "--ops",
        str(OPS),
        "--seed",
        str(SEED),
        "--rounds",
        "1",
    ]


def _check_row(row: dict[str, Any]) -> None:
    assert row["ops"] == OPS
    assert row["seconds"] > 0
    assert row["ops_per_sec"] == pytest.approx(OPS / row["seconds"], rel=RATE_TOLERANCE)
    latency = row["latency_us"]
    assert 0 < latency["p50"] <= latency["p99"] <= latency["max"]
    assert row["ratio_to_ours"] > 0
    assert row["cpu_ns_per_op"] > 0 and row["cpu_ratio_to_ours"] > 0  # process CPU time too


@pytest.mark.parametrize("workload", sorted(workloads.WORKLOADS))
def test_every_adapter_trades_the_same_quantity(
    workload: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _parser().parse_args([*_argv(workload), "--json"])
    assert compare.run(args) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (report["workload"], report["ops"], report["seed"]) == (workload, OPS, SEED)
    engines = [row["engine"] for row in report["results"]]
    assert engines[0] == compare.BASELINE
    assert set(engines) >= ALWAYS_THERE
    ran_or_skipped = set(engines) | {s["engine"] for s in report["skipped"]}
    assert ran_or_skipped == {adapter.name for adapter in all_adapters()}
    assert all(s["reason"] for s in report["skipped"])
    for row in report["results"]:
        _check_row(row)
    assert report["traded_qty_equal"] is True
    totals = {row["traded_qty"] for row in report["results"]}
    assert len(totals) == 1
    if workload == "addcancel":
        assert totals == {0}
    else:
        assert totals.pop() > 0


def test_table_lists_every_engine(capsys: pytest.CaptureFixture[str]) -> None:
    assert compare.run(_parser().parse_args(_argv("mixed"))) == 0
    out = capsys.readouterr().out
    for name in {adapter.name for adapter in all_adapters()}:
        assert name in out
    assert "ops/s" in out and "vs ours" in out
    assert "traded quantity: the same in every engine" in out


def test_without_compare_runs_the_plain_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--workload", "cross", "--ops", str(OPS), "--seed", str(SEED), "--json"]
    assert compare.run(_parser().parse_args(argv)) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["workload"] == "cross" and result["ledger"] is False


class _OffByOne(NaiveAdapter):
    """The naive book, reporting one unit more than it traded: a broken engine."""

    name = "off-by-one"

    def run(self, commands: Sequence[object]) -> AdapterResult:
        result = super().run(commands)
        return AdapterResult(result.seconds, result.latencies_ns, result.traded_qty + 1)


def test_a_different_total_is_reported() -> None:
    report = compare.compare("cross", OPS, SEED, adapters=[VenueAdapter(), _OffByOne()])
    assert report["traded_qty_equal"] is False
    assert "DIFFERS" in compare.table(report)


class _Absent(VenueAdapter):
    """An engine that is not installed here."""

    def __init__(self) -> None:
        super().__init__()
        self.name = "absent"

    def available(self) -> tuple[bool, str]:
        return False, "not here"

    def prepare(self, workload: Workload) -> Sequence[object]:
        raise AssertionError("an unavailable adapter is never prepared")


class _LongName(NaiveAdapter):
    """The naive book under a name as long as matching-engine's."""

    name = "a-long-engine-name"


def test_the_table_columns_line_up_whatever_the_engine_names() -> None:
    """A name over 14 characters (matching-engine) pushed the rest of its row a column over."""
    report = compare.compare("cross", OPS, SEED, adapters=[VenueAdapter(), _LongName()])
    header, rule, *rows = compare.table(report).splitlines()[1:5]
    assert len(rows) == 2 and rows[1].startswith("a-long-engine-name ")
    assert {len(header), len(rule)} == {len(row) for row in rows}
    right_edge = header.index("qty equal") + len("qty equal")  # right-aligned columns
    assert [row.index(" yes ") + len(" yes") for row in rows] == [right_edge] * 2


def test_an_unavailable_adapter_is_skipped_with_its_reason() -> None:
    report = compare.compare("mixed", OPS, SEED, adapters=[VenueAdapter(), _Absent()])
    assert report["skipped"] == [{"engine": "absent", "reason": "not here"}]
    assert "skipped absent: not here" in compare.table(report)


class _Scripted:
    """An engine whose runs report the CPU seconds given, one a run, in order; it logs each
    run in `log`, so the test sees the engines take turns."""

    def __init__(self, name: str, cpu_seconds: list[float], log: list[str]) -> None:
        self.name = name
        self.cpu_seconds = list(cpu_seconds)
        self.log = log

    def available(self) -> tuple[bool, str]:
        return True, ""

    def prepare(self, workload: Workload) -> Sequence[object]:
        return workload.commands

    def run(self, commands: Sequence[object]) -> AdapterResult:
        self.log.append(self.name)
        cpu = self.cpu_seconds.pop(0)
        return AdapterResult(cpu, [1_000] * len(commands), 7, cpu)


def test_rounds_take_turns_and_report_medians_of_paired_ratios() -> None:
    log: list[str] = []
    ours = _Scripted(compare.BASELINE, [3.0, 1.0, 2.0], log)
    peer = _Scripted("peer", [6.0, 1.0, 8.0], log)
    report = compare.compare("addcancel", OPS, SEED, adapters=[ours, peer], rounds=3)  # type: ignore[list-item]
    assert log == ["ours", "peer"] * 3
    rows = {row["engine"]: row for row in report["results"]}
    assert rows["ours"]["rounds_cpu_ns_per_op"] == [1_500_000, 500_000, 1_000_000]
    assert rows["ours"]["cpu_ns_per_op"] == 1_000_000  # the median round
    assert rows["peer"]["cpu_ns_per_op"] == 3_000_000
    # each round's own ratio (0.5, 1.0, 0.25): their median, not the medians' ratio (1/3)
    assert rows["peer"]["cpu_ratio_to_ours"] == 0.5
    assert rows["peer"]["cpu_ratio_range"] == [0.25, 1.0]
    assert report["rounds"] == 3 and report["traded_qty_equal"] is True
    table = compare.table(report)
    assert (
        "rounds of peer: cpu ns/op 3,000,000 / 500,000 / 4,000,000; cpu vs ours 0.250x-1.000x"
        in table
    )


def test_rounds_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parser().parse_args([*_argv("mixed"), "--rounds", "2", "--json"])
    assert compare.run(args) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["rounds"] == 2
    for row in report["results"]:
        assert len(row["rounds_cpu_ns_per_op"]) == 2
        assert row["cpu_ns_per_op"] in row["rounds_cpu_ns_per_op"]


def test_rounds_without_compare_are_refused_not_ignored(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--rounds 5` without --compare ran the plain benchmark once, saying nothing."""
    assert main(["bench", "engine", "--ops", "100", "--rounds", "5"]) == 2
    printed = capsys.readouterr()
    assert printed.out == ""
    assert printed.err == "venue: --rounds: only with --compare (the turns the engines take)\n"


def test_ledger_with_compare_is_refused_not_ignored(capsys: pytest.CaptureFixture[str]) -> None:
    """`--ledger --compare` ran the comparison as without `--ledger`, saying nothing."""
    assert main(["bench", "engine", "--ops", "100", "--ledger", "--compare"]) == 2
    printed = capsys.readouterr()
    assert printed.out == ""
    assert printed.err == (
        "venue: --ledger: not with --compare (it runs ours both ways: the rows ours, the book"
        " only, and ours+ledger, the full venue path)\n"
    )


@pytest.mark.parametrize("rounds", [0, compare.ROUNDS_MAX + 1])
def test_rounds_have_their_own_bound_in_their_own_words(
    rounds: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--rounds` shared the ops' type: up to 20,000,000 rounds of every engine, "at most
    20,000,000 (the commands are built in memory first)". Parsed only, never run."""
    with pytest.raises(SystemExit) as exited:
        _parser().parse_args([*_argv("mixed"), "--rounds", str(rounds)])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --rounds: 1 to {compare.ROUNDS_MAX} (each round runs every engine" in err
    assert "memory" not in err


def test_the_table_says_which_way_its_ratios_read() -> None:
    """`cpu vs ours` 0.500x for a peer twice ours' CPU per command read as "ours ÷ the peer"
    either way; the README's tables give the inverse (ours' speed ÷ the peer's)."""
    log: list[str] = []
    ours = _Scripted(compare.BASELINE, [1.0], log)
    peer = _Scripted("peer", [2.0], log)
    report = compare.compare("addcancel", OPS, SEED, adapters=[ours, peer], rounds=1)  # type: ignore[list-item]
    table = compare.table(report)
    assert report["results"][1]["cpu_ratio_to_ours"] == 0.5
    assert (
        "vs ours: its ops/s ÷ ours; cpu vs ours: ours' CPU ns/op ÷ its (above 1x: faster than ours)"
    ) in table.splitlines()
