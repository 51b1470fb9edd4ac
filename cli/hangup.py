"""The signals that stop a long-running command cleanly, and what a hang-up leaves behind.

Owns the list of stop signals of `venue serve` and `venue cluster` (SIGINT, SIGTERM and
SIGHUP: a terminal closed sends its session SIGHUP, whose default action killed the venue
with no clean stop) and `detach_hung_up_terminal`: once the terminal is gone, writing to it
fails (EIO), so its descriptors are pointed at /dev/null and the stop's last lines cannot
turn a clean stop into a traceback; `say_after_stop` writes a stop's last line so that a
hang-up its SIGHUP handler has not seen yet cannot fail it either. Output to a file or a pipe
is left as it is.
A SIGHUP ignored at the start (`nohup venue serve &`) stays ignored: `stop_signals`.
Owns too the note of a stop asked for before `venue serve` takes its signals (`noting_stops`),
and, for every other command, SIGTERM and SIGHUP taken as Ctrl-C is
(`terminating_as_interrupt`).
"""

import contextlib
import errno
import os
import signal
import termios
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None
_noted_stops: list[signal.Signals] = []  # the stop signals `noting_stops` noted, in order
_original_handlers: dict[signal.Signals, Handler] = {}  # the ones `noting_stops` replaced


def stop_signals() -> tuple[signal.Signals, ...]:
    """`STOP_SIGNALS` less SIGHUP when it is ignored now (call it before installing any
    handler): the process was started under `nohup`, whose whole point is to outlive its
    terminal. Before, a handler replaced that and `nohup venue serve &` stopped on logout."""
    if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
        return tuple(sig for sig in STOP_SIGNALS if sig != signal.SIGHUP)
    return STOP_SIGNALS


def how_to_stop(signals: tuple[signal.Signals, ...]) -> str:
    """The banner's line saying which signals stop it: SIGHUP not among them when ignored."""
    if signal.SIGHUP in signals:
        return "stop with Ctrl-C (SIGINT), SIGTERM or SIGHUP"
    return "stop with Ctrl-C (SIGINT) or SIGTERM (SIGHUP ignored: started under nohup)"


def detach_hung_up_terminal() -> None:
    """Point stdout and stderr at /dev/null where they are a terminal that has hung up
    (`tcgetattr` fails with EIO there: on a live terminal it succeeds, on a file or a pipe
    it fails with ENOTTY), so that nothing written after a hang-up fails."""
    for fd in (1, 2):
        try:
            termios.tcgetattr(fd)
        except termios.error as failed:
            if failed.args[0] != errno.EIO:
                continue  # a file, a pipe, a closed descriptor: left as it is
        else:
            continue  # a live terminal: a `kill -HUP` while it is open
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, fd)
        finally:
            os.close(null)


def say_after_stop(line: str) -> None:
    """Print a stop's last line; on a terminal hung up meanwhile (EIO), detach it and go on.
    The kernel fails writes to a hung-up terminal at once, but Python runs the SIGHUP's
    handler (which detaches) only between bytecodes: a stop done within milliseconds of the
    window closing wrote its last line first, and exited 1 on the EIO."""
    try:
        print(line, flush=True)
    except OSError as failed:
        if failed.errno != errno.EIO:
            raise
        detach_hung_up_terminal()


@contextlib.contextmanager
def noting_stops() -> Iterator[None]:
    """While inside, a stop signal (`stop_signals`) is noted (`stop_noted`), not acted on:
    the entry point of `venue serve` enters it first thing, before its heavy imports, and
    the start asks `stop_noted` at its safe points until `StopSignals` takes over. Until
    session 30 a SIGTERM in the first ~0.7 s of a start (its imports) killed it, 143, and a
    SIGINT was a KeyboardInterrupt, where a moment later either was a clean stop. The stop
    signals are unblocked too: one blocked by the parent's signal mask, which a child
    inherits across exec, would never reach the venue (one sent meanwhile is taken now);
    those the caller had blocked are blocked again on leaving.
    Only the interpreter's own start-up, before any line of ours runs, still takes the
    default action: SIGTERM kills, as for any program. The handlers found
    (`original_handlers`) are put back on leaving (`main` also runs in-process, under tests)."""
    taken = stop_signals()
    _original_handlers.clear()
    _original_handlers.update({sig: signal.getsignal(sig) for sig in taken})
    _noted_stops.clear()
    for sig in taken:
        signal.signal(sig, _note_stop)
    was_blocked = signal.pthread_sigmask(signal.SIG_UNBLOCK, taken) & set(taken)
    try:
        yield
    finally:
        for sig, handler in _original_handlers.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        if was_blocked:
            signal.pthread_sigmask(signal.SIG_BLOCK, was_blocked)
        _original_handlers.clear()
        _noted_stops.clear()


def original_handlers() -> dict[signal.Signals, Handler]:
    """The handlers of the stop signals before `noting_stops` replaced them (empty outside
    it): `StopSignals` puts these back, not `_note_stop`, which would note and drop a
    SIGTERM or SIGINT during the loop's teardown (review of session 30; before, it killed)."""
    return dict(_original_handlers)


def stop_noted() -> signal.Signals | None:
    """The first stop signal noted (`noting_stops`), if any."""
    return _noted_stops[0] if _noted_stops else None


def _note_stop(signum: int, _frame: object) -> None:
    sig = signal.Signals(signum)
    if sig == signal.SIGHUP:  # at once: the start's lines must not fail on a closed terminal
        detach_hung_up_terminal()
    if not _noted_stops:
        _noted_stops.append(sig)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised as Ctrl-C raises KeyboardInterrupt where no handler takes
    SIGINT."""


INTERRUPTING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)  # taken as Ctrl-C by most commands
_taken: list[signal.Signals] = []  # those taken as Ctrl-C (`terminating_as_interrupt`)


@contextlib.contextmanager
def terminating_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP do what Ctrl-C does: they raise SIGINT, so each
    handler of Ctrl-C runs for them (asyncio's runner cancels the main task, a `finally`
    stops a benchmark's server process) and `interrupt_status` says which it was, for the
    exit status (143, 129). Their default action killed the process where it stood (session
    32's sweep: SIGTERM; session 33: SIGHUP, a closed terminal's): `venue bench ws-layer`,
    `gateway` and `e2e` left their server processes running, orphaned. A Python handler
    that raised would not do: under uvloop, which runs such handlers itself, the exception
    was dropped and the command ran on. Where SIGINT is ignored (a command started with `&`
    by a script), `Terminated` is raised instead. A command that takes these itself (a bot,
    the demo, the cluster) replaces this while it runs; a signal ignored at the start
    (`nohup`) stays ignored; the handlers found are put back on leaving."""
    _taken.clear()
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers are the main thread's alone (`main` run from a test's thread)
        return
    replaced: dict[signal.Signals, Handler] = {}
    for sig in INTERRUPTING_SIGNALS:
        previous = signal.getsignal(sig)
        if previous is not signal.SIG_IGN:
            replaced[sig] = previous
            signal.signal(sig, _interrupt)
    try:
        yield
    finally:
        for sig, previous in replaced.items():
            signal.signal(sig, signal.SIG_DFL if previous is None else previous)


def interrupt_status() -> int:
    """The exit status of a command stopped by Ctrl-C: 128 + the signal that did it (SIGINT
    130; SIGTERM 143 and SIGHUP 129 when taken as Ctrl-C, `terminating_as_interrupt`)."""
    return 128 + (_taken[0] if _taken else signal.SIGINT)


def _interrupt(signum: int, _frame: object) -> None:
    sig = signal.Signals(signum)
    if sig == signal.SIGHUP:  # at once: the cleanup's lines must not fail on a closed terminal
        detach_hung_up_terminal()
    _taken.append(sig)
    if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL, None):
        raise Terminated
    signal.raise_signal(signal.SIGINT)
