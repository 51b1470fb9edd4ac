"""The ledger store's own thread: durable batches in, few large SQLite transactions out.

Owns the hand-off between the journal and the ledger store. The sequencer puts each batch
here right after its commit (`book`: on the event loop for the file journal by default,
else on the journal's thread), and this thread gathers what arrives over up to `GATHER_S`
(or `GATHER_BATCHES_MAX` batches) and writes it in one go, so SQLite commits about 20 times
a second however small the journal's batches, and nothing comes back through the event
loop: the loop only waits here for its own calls (`call`: opening, catching up, flushing
before a snapshot), which run in order with the bookings. The store is derived from the
journal and caught up on every start, so trailing it by `GATHER_S` loses nothing.
Limits: batches of `QUEUE_COMMANDS_MAX` commands in all wait at most; then `book` blocks,
and so the journal's next commit waits (with the file journal on the loop, the event loop:
backpressure, never unbounded memory). A failed write is fatal: `on_fatal` gets a
`StoreFailedError` (the failure its cause) and logs it, the thread stops, and every call
queued or made after it fails with a `StoreFailedError` caused by that failure (none waits
forever).
"""

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Final, Generic, TypeVar

from core.sequencer import describe_failure

# Commands waiting for the store before the journal waits too. Counted in commands, not
# batches: 1,000 batches were ~2.6 s of a quiet venue's one- or two-command commits, so a
# PostgreSQL restart (seconds of crash recovery) froze the loop for the rest of it (5.6 s
# measured at ~235 commands/s). 100,000 is ~7 minutes of that, ~12 s at 8,000 actions/s;
# at most ~100 MB of transfers (a trade's ~5, the heaviest command) held meanwhile.
QUEUE_COMMANDS_MAX: Final = 100_000
GATHER_S: Final = 0.05  # ≤ 20 store commits/s (an fsync of ~0.2 ms CPU each, measured). A
# gathering's Python work holds the GIL in stretches (the loop waits for them), so it is kept
# short: 0.2 s with the old per-event observe raised p99 ack at 4,000/s to 34-57 ms (9-13 ms at
# 0.02 s). `venue bench store --venue-path --rate 2000`, store thread CPU per trade: 0.02 s
# 19.5 µs, 0.05 s 13.2 µs, 0.1 s 11.2 µs (0.02 s before the deque and the cheaper observe: 26.5)
GATHER_BATCHES_MAX: Final = 1_000  # a gathering's memory; the writer cuts it into transactions
PUT_CHECK_S: Final = 0.5  # while the queue is full, how often `book` checks the thread lives

Batch = TypeVar("Batch")


class _Call:
    """A function to run on the store's thread, in order with the bookings."""

    __slots__ = ("args", "function", "future")

    def __init__(self, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.function = function
        self.args = args
        self.future: Future[Any] = Future()


class _Booked:
    """A batch queued, with its count of commands (the queue's bound counts commands)."""

    __slots__ = ("batch", "commands")

    def __init__(self, batch: Any, commands: int) -> None:
        self.batch = batch
        self.commands = commands


_STOP: Final = object()


class StoreFailedError(RuntimeError):
    """A write to the ledger store failed (the cause says how): fatal to the venue."""


class StoreThread(Generic[Batch]):
    """One thread that owns the store: `write` gets every gathered batch, oldest first."""

    def __init__(
        self,
        write: Callable[[list[Batch]], None],
        on_fatal: Callable[[BaseException], None],
        gather_s: float = GATHER_S,
    ) -> None:
        self.write = write
        self.on_fatal = on_fatal  # called on this thread: it must be safe from any thread
        self.gather_s = gather_s
        self.failure: BaseException | None = None
        self._stopped = False  # the thread took its last item: what is queued now never runs
        self._stopping = threading.Lock()  # a call is queued before the stop, or refused
        # Batches, calls and the stop, in arrival order. A deque, not a queue.Queue: `book`
        # runs once per journal batch and appending wakes no one while a gathering is open.
        self._items: deque[object] = deque()
        self._wake = threading.Event()  # something is queued: start a gathering
        self._urgent = threading.Event()  # a call, the stop or a full gathering: end it now
        self._taken = threading.Event()  # the thread took what was queued: room again
        # Commands booked and taken so far: each counter written by one thread only (the
        # booker's, the store's), so their difference needs no lock.
        self._booked_commands = 0
        self._taken_commands = 0
        self._thread = threading.Thread(target=self._run, name="ledger-store", daemon=True)
        self._thread.start()

    def book(self, batch: Batch, commands: int = 1) -> None:
        """Queue a durable batch of `commands` commands for the store (from where it was
        committed); blocks while more than `QUEUE_COMMANDS_MAX` wait, so a store that falls
        behind slows the commits."""
        if self.failure is not None or self._stopped:
            raise self._refusal()
        items = self._items
        items.append(_Booked(batch, commands))
        self._booked_commands += commands
        if not self._wake.is_set():  # set only when the thread may be idle: one wake each
            self._wake.set()
        if len(items) >= GATHER_BATCHES_MAX:
            self._urgent.set()
        if self._booked_commands - self._taken_commands > QUEUE_COMMANDS_MAX:
            self._wait_for_room()

    def _wait_for_room(self) -> None:
        while True:
            self._taken.clear()
            # Stopped first: a stopping thread empties the queue, but never writes this batch.
            if self.failure is not None or self._stopped or not self._thread.is_alive():
                raise self._refusal()
            if self._booked_commands - self._taken_commands <= QUEUE_COMMANDS_MAX:
                return
            self._taken.wait(PUT_CHECK_S)

    def call(self, function: Callable[..., Any], *args: Any) -> "Future[Any]":
        """Run `function(*args)` on this thread after every batch booked before it."""
        item = _Call(function, args)
        with self._stopping:  # the loop's calls are rare (start, snapshots, stop)
            if self._stopped:
                item.future.set_exception(self._refusal())
            else:
                self._enqueue_urgent(item)
        return item.future

    def _refusal(self) -> RuntimeError:
        if self.failure is not None:  # the same kind as `on_fatal`'s: a stop says it alike
            refusal = StoreFailedError(f"the ledger store's thread has failed: {self.failure!r}")
            refusal.__cause__ = self.failure
            return refusal
        return RuntimeError("the ledger store's thread has stopped")

    def cpu_seconds(self) -> float:
        """CPU time this thread has used so far (for benchmarks)."""
        ident = self._thread.ident
        assert ident is not None, "the thread is started in __init__"
        return time.clock_gettime(time.pthread_getcpuclockid(ident))

    def close(self) -> None:
        """Write what is queued, then stop the thread; calling it twice is harmless."""
        if self._thread.is_alive():
            self._enqueue_urgent(_STOP)
            self._thread.join()

    def _enqueue_urgent(self, item: object) -> None:
        self._items.append(item)
        self._urgent.set()
        self._wake.set()

    # ----------------------------------------------------------------- the thread

    def _run(self) -> None:
        """Sleep until something is queued, let a gathering build for `gather_s` (a call or
        the stop ends it at once), then take everything queued: two wake-ups per gathering
        however many batches it holds."""
        while True:
            self._wake.wait()
            if self.gather_s > 0:
                self._urgent.wait(self.gather_s)
            self._urgent.clear()
            self._wake.clear()  # before taking: what is appended after it sets it again
            taken = self._take()
            self._taken.set()
            if not self._handle(taken):
                self._stop(taken)
                return

    def _stop(self, taken: list[object]) -> None:
        """The thread's last act: fail every call it will not run (left in its last gathering
        after a failed write, or queued since), so no caller waits forever."""
        with self._stopping:
            self._stopped = True
            left = taken + self._take()
        for item in left:
            if not isinstance(item, _Call) or item.future.done():
                continue  # a batch, or a call that ran before the failure
            if item.future.set_running_or_notify_cancel():  # False: its caller gave up
                item.future.set_exception(self._refusal())
        self._taken.set()  # a booker waiting for room sees the thread gone

    def _take(self) -> list[object]:
        items = self._items
        pop = items.popleft
        taken = [pop() for _ in range(len(items))]
        self._taken_commands += sum(item.commands for item in taken if type(item) is _Booked)
        return taken

    def _handle(self, taken: list[object]) -> bool:
        """Write the batches and run the calls in `taken`, in order; False to stop."""
        batches: list[Batch] = []
        for item in taken:
            if item is _STOP or isinstance(item, _Call):
                if batches and not self._write(batches):
                    return False
                batches = []
                if item is _STOP:
                    return False
                self._call(item)  # type: ignore[arg-type]
                continue
            batches.append(item.batch)  # type: ignore[attr-defined]
            if len(batches) >= GATHER_BATCHES_MAX:
                if not self._write(batches):
                    return False
                batches = []
        return not batches or self._write(batches)

    def _write(self, batches: list[Batch]) -> bool:
        try:
            self.write(batches)
        except BaseException as failure:  # the store is behind the journal: fatal
            self.failure = failure
            # Logged by `on_fatal` alone, in one line that names the store: the operator
            # reads one line saying what stopped the venue, not two.
            fatal = StoreFailedError(f"the ledger store failed: {describe_failure(failure)}")
            fatal.__cause__ = failure
            self.on_fatal(fatal)
            return False
        return True

    @staticmethod
    def _call(item: _Call) -> None:
        if not item.future.set_running_or_notify_cancel():
            return
        try:
            result = item.function(*item.args)
        except BaseException as error:
            item.future.set_exception(error)
        else:
            item.future.set_result(result)
