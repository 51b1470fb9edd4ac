"""Progress on a terminal for long commands: tqdm bars and status lines, on stderr only.

Owns when progress is drawn: only when stderr is a terminal and the caller did not ask for
machine output (`--json`), so stdout stays exactly what the command reports. The bars are
tqdm's; this module only picks their stream, width and on/off switch in one place.
"""

import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")
# A terminal that reports no size (a bare pty, `script`) still gets a bar of this size;
# tqdm would take the size 0 x 0 at its word and draw nothing.
COLUMNS_FALLBACK, ROWS_FALLBACK = 100, 24
STEPS_FORMAT = "{desc}: {n_fmt}/{total_fmt} steps [{elapsed}]"  # a few long steps, no rate


def on_terminal(quiet: bool = False) -> bool:
    """Whether progress is drawn: stderr is a terminal and no machine output was asked for."""
    return not quiet and sys.stderr.isatty()


def bar(quiet: bool = False, **options: Any) -> "tqdm[Any]":
    """A tqdm bar on stderr, disabled (drawing nothing) off a terminal or when `quiet`."""
    sized = _sized()
    return tqdm(
        file=sys.stderr,
        disable=not on_terminal(quiet),
        dynamic_ncols=sized,
        ncols=None if sized else COLUMNS_FALLBACK,
        nrows=None if sized else ROWS_FALLBACK,
        **options,
    )


def iterate(items: Iterable[T], quiet: bool = False, **options: Any) -> Iterator[T]:
    """`items`, with a bar advancing once per item on a terminal."""
    with bar(quiet, **options) as progress:
        for item in items:
            yield item
            progress.update(1)


def _sized() -> bool:
    """Whether the terminal tells its size, so tqdm can follow it as it changes."""
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return size.columns > 0 and size.lines > 0
