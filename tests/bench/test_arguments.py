"""Every `venue bench ...` flag, as `--help` shows it to a new user: each one says what it is."""

import argparse

import pytest

from bench import compare, engine_bench, journal_bench, recovery_bench, store_bench
from cli.main import _parser


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


BENCHMARKS = _subparsers(_subparsers(_parser())["bench"])


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_every_flag_of_every_benchmark_has_a_help_line(name: str) -> None:
    """`--seed SEED`, `--makers MAKERS`, `--config CONFIG`... were listed bare: no default,
    no bound, nothing of what they do."""
    bare = [
        action.option_strings[0]
        for action in BENCHMARKS[name]._actions
        if action.option_strings and action.help is None
    ]
    assert not bare, f"venue bench {name}: flags without help: {bare}"


# Every size with a maximum, as (benchmark, flag, maximum): the bounds were refused in words
# but never shown, so a user learned them only by passing them.
MAXIMA = [
    ("engine", "--ops", engine_bench.OPS_MAX),
    ("engine", "--rounds", compare.ROUNDS_MAX),
    ("all", "--ops", engine_bench.OPS_MAX),
    ("store", "--trades", store_bench.TRADES_MAX),
    ("store", "--commands", store_bench.COMMANDS_MAX),
    ("journal", "--records", journal_bench.RECORDS_MAX),
    ("journal", "--commands", journal_bench.COMMANDS_MAX),
    ("recovery", "--commands", recovery_bench.COMMANDS_MAX),
    ("recovery", "--orders", recovery_bench.ORDERS_MAX),
]


@pytest.mark.parametrize(("name", "flag", "most"), MAXIMA)
def test_every_bounded_size_says_its_maximum_in_help(name: str, flag: str, most: int) -> None:
    (action,) = [a for a in BENCHMARKS[name]._actions if flag in a.option_strings]
    assert action.help is not None and f"at most {most:,}" in action.help, action.help


def test_e2e_duration_says_it_is_each_steps_under_max() -> None:
    """The README's `--max` runs took "steps 5 s", and nothing said which flag sets a step's
    length: `--duration`, which the help called only "seconds measured"."""
    (action,) = [a for a in BENCHMARKS["e2e"]._actions if "--duration" in a.option_strings]
    assert action.help is not None and "with --max: each step's" in action.help, action.help
