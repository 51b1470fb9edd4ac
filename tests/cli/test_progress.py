"""cli.progress: bars are drawn on a terminal's stderr only, never with --json."""

import io
import sys

import pytest

from cli import progress


class Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_off_a_terminal_a_bar_draws_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    assert not progress.on_terminal()
    assert list(progress.iterate(range(3), total=3, desc="work")) == [0, 1, 2]
    assert stderr.getvalue() == ""


def test_on_a_terminal_the_bar_is_drawn_unless_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = Terminal()
    monkeypatch.setattr(sys, "stderr", stderr)
    assert progress.on_terminal() and not progress.on_terminal(quiet=True)
    list(progress.iterate(range(3), quiet=True, total=3, desc="quiet"))
    assert stderr.getvalue() == ""
    list(progress.iterate(range(3), total=3, desc="work"))
    assert "work: 100%" in stderr.getvalue()  # sized by the fallback: no real terminal here
