"""Steps of another opener made at an exact point of the code under test, with no mock of it.

`at_next(event, step)` runs `step` (given the event's arguments) once, when the thread that
armed it next raises the audit event `event` (sys.audit: `fcntl.flock`, `os.rename`, ...): a
reader opening the journal between a writer's steps, a copy clobbered before its rename. Only
that thread: a server or snapshot thread another test in the same worker left running raises
the same events. Steps for one event run in the order they were armed. The autouse fixture in
tests/conftest.py disarms after every test, so a failed test leaves no step for the next. An
audit hook stays for the process's life: the one installed here costs a look-up when idle."""

import sys
import threading
from collections.abc import Callable
from typing import Any

Step = Callable[[tuple[Any, ...]], None]
_ARMED: dict[str, list[tuple[int, Step]]] = {}  # event -> (arming thread's id, step), in order
_HOOKED: list[bool] = []


def _on_audit(event: str, args: tuple[Any, ...]) -> None:
    steps = _ARMED.get(event)
    if not steps:
        return
    thread = threading.get_ident()
    for position, (armed_by, step) in enumerate(steps):
        if armed_by == thread:
            del steps[position]  # taken off first: what the step does may raise the event again
            step(args)
            return


def at_next(event: str, step: Step) -> None:
    """Run `step` when this thread next raises `event` (once), after the steps armed before."""
    if not _HOOKED:
        sys.addaudithook(_on_audit)
        _HOOKED.append(True)
    _ARMED.setdefault(event, []).append((threading.get_ident(), step))


def disarm() -> list[str]:
    """Forget every step not run; the events they waited for (a test asserts none)."""
    left = [event for event, steps in _ARMED.items() for _ in steps]
    _ARMED.clear()
    return left
