"""Steps of another opener made at an exact point of the code under test, with no mock of it.

`at_next(event, step)` runs `step` (given the event's arguments) once, when this process next
raises the audit event `event` (sys.audit: `fcntl.flock`, `os.rename`, ...): a reader opening
the journal between a writer's steps, a copy clobbered before its rename. An audit hook stays
for the process's life, so the one installed here costs a dictionary look-up when idle."""

import sys
from collections.abc import Callable
from typing import Any

Step = Callable[[tuple[Any, ...]], None]
_ARMED: dict[str, list[Step]] = {}
_HOOKED: list[bool] = []


def _on_audit(event: str, args: tuple[Any, ...]) -> None:
    steps = _ARMED.get(event)
    if steps:
        steps.pop()(args)  # taken off first: what the step does may raise the event again


def at_next(event: str, step: Step) -> None:
    """Run `step` when `event` is next raised in this process (once)."""
    if not _HOOKED:
        sys.addaudithook(_on_audit)
        _HOOKED.append(True)
    _ARMED.setdefault(event, []).append(step)


def disarm() -> list[str]:
    """Forget every step not run; the events they waited for (a test asserts none)."""
    left = [event for event, steps in _ARMED.items() for _ in steps]
    _ARMED.clear()
    return left
