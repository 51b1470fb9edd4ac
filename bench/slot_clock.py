"""The timetable's clock of the `venue bench e2e` trading clients: it tells the event loop
when the slots of an open-loop timetable come due.

Owns when slot k is (`slot_s(k)`: the start plus k intervals, in whole nanoseconds of
`time.perf_counter`'s clock) and the wake-ups that report the slots due (`on_due(n)`: slots
0..n-1 are due; a late wake-up reports every slot missed, so they are sent at once).

On Linux the wake-ups come from a timerfd on `CLOCK_MONOTONIC` (perf_counter's own clock
there), armed at the first slot and every interval after it and read by the event loop's own
poll: the loop wakes at the slot (its wake-up latency aside: tens of microseconds on an idle
core), with no thread. That replaced a
metronome thread that slept to each slot and woke the loop (`call_soon_threadsafe`): two
wakes, a self-pipe and the GIL passed between threads for every request, which cost the
clients CPU on the cores they share with the server, and ~400 µs from slot to write
(docs/gateway.md). Elsewhere the loop's timers do it, only as fine as a millisecond.
"""

import asyncio
import contextlib
import ctypes
import os
import time
from collections.abc import Callable

_CLOCK_MONOTONIC = 1  # <time.h>
_TFD_TIMER_ABSTIME = 1  # <sys/timerfd.h>: the first expiry is a time, not a delay
_NS_PER_S = 1_000_000_000


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _timespec(ns: int) -> _Timespec:
    return _Timespec(ns // _NS_PER_S, ns % _NS_PER_S)


def _timerfd_functions() -> tuple[Callable[..., int], Callable[..., int]] | None:
    """libc's timerfd_create and timerfd_settime, when perf_counter's clock is theirs."""
    clock = time.get_clock_info("perf_counter").implementation
    if clock != "clock_gettime(CLOCK_MONOTONIC)":
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.timerfd_create, libc.timerfd_settime
    except (OSError, AttributeError):  # not Linux's libc
        return None


class SlotClock:
    """Calls `on_due(n)` on `loop` as slots of a timetable come due, until all `slots` are."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        start_s: float,
        interval_s: float,
        slots: int,
        on_due: Callable[[int], None],
    ) -> None:
        self.loop = loop
        self.start_ns = round(start_s * _NS_PER_S)  # perf_counter's clock, in ns
        self.interval_ns = max(1, round(interval_s * _NS_PER_S))
        self.slots = slots
        self.on_due = on_due
        self.due = 0  # slots reported due so far
        self._fd: int | None = None  # the timerfd, while armed
        self._timer: asyncio.TimerHandle | None = None  # or the loop's timer

    def slot_s(self, slot: int) -> float:
        """When slot `slot` is due, in `time.perf_counter` seconds."""
        return (self.start_ns + slot * self.interval_ns) / _NS_PER_S

    @property
    def precise(self) -> bool:
        """Woken by a timerfd at each slot, not by the loop's timers (to the millisecond)."""
        return self._fd is not None

    def start(self) -> None:
        functions = _timerfd_functions()
        if functions is None:
            self._call_at_next()
            return
        create, settime = functions
        fd = create(_CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create")
        spec = _Itimerspec(_timespec(self.interval_ns), _timespec(self.start_ns))
        if settime(fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None) < 0:
            os.close(fd)
            raise OSError(ctypes.get_errno(), "timerfd_settime")
        self._fd = fd
        self.loop.add_reader(fd, self._expired)

    def stop(self) -> None:
        if self._fd is not None:
            self.loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        """The timerfd fired (its count of expirations is read and dropped: the slots due
        are counted from the clock, which is the timerfd's own)."""
        assert self._fd is not None
        with contextlib.suppress(BlockingIOError):  # read already by an earlier wake
            os.read(self._fd, 8)
        self._report()

    def _report(self) -> None:
        elapsed_ns = time.perf_counter_ns() - self.start_ns
        due = min(self.slots, elapsed_ns // self.interval_ns + 1) if elapsed_ns >= 0 else 0
        if due >= self.slots:
            self.stop()
        if due > self.due:
            self.due = due
            self.on_due(due)

    def _call_at_next(self) -> None:
        """Without a timerfd: the loop's timer, set for the next slot, reports it."""
        self._timer = None
        self._report()
        if self.due < self.slots and self._timer is None:
            wait_s = self.slot_s(self.due) - time.perf_counter()
            self._timer = self.loop.call_later(max(0.0, wait_s), self._call_at_next)
