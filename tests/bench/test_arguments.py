"""Every `venue bench ...` flag, as `--help` shows it to a new user: each one says what it is."""

import argparse

import pytest

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
