"""Whether the journal's commits, made on the event loop, are too slow for it.

Owns the measure behind the sequencer's one-way move of the commits from the loop to the
journal's thread (`Sequencer`, `commit_on_loop`). On the loop every commit holds the loop: a
disk that takes milliseconds per O_DSYNC write (or a ledger store pushing back) would stall
every read, answer and ping behind it. A commit is judged by its own time less the time the
loop's thread waited for a core meanwhile (its run delay, Linux's
/proc/thread-self/schedstat): on a machine overloaded with other work a commit waits for a
core as everything else does, and the journal's thread would not help it (and costs CPU).

Every `SAMPLE_EVERY`th commit is measured (two reads of a small /proc file around it, ~3 µs;
the others cost nothing); when more than half of a window of `WINDOW_SAMPLES` samples were
slow, it is time to move. A slow disk makes every commit slow, so sampling finds it as surely.
"""

import os
import threading
import time

SLOW_COMMIT_S = 0.002  # a commit on the loop holding it longer than this is slow (~0.1 ms is usual)
SAMPLE_EVERY = 8
WINDOW_SAMPLES = 16  # a window: 128 commits
SCHEDSTAT = "/proc/thread-self/schedstat"  # cpu ns, run delay ns, timeslices


class SlowCommitWatch:
    """Samples the loop's commits; `finished` says when a window of them was mostly slow."""

    def __init__(self, slow_s: float = SLOW_COMMIT_S) -> None:
        self.slow_s = slow_s
        self._commits = 0
        self._samples = 0  # in the current window ...
        self._slow = 0  # ... and how many of them were slow
        self._started_s = 0.0  # the sampled commit's start: the clock and the run delay
        self._waited_before_s = 0.0
        self._fd: int | None = None  # SCHEDSTAT, opened by the thread `_fd_thread`
        self._fd_thread = 0
        self._no_schedstat = False  # the file cannot be read here: waits count as nothing

    def starting(self) -> bool:
        """A commit starts on the loop: True when it is sampled (then call `finished`)."""
        self._commits += 1
        if self._commits % SAMPLE_EVERY:
            return False
        self._waited_before_s = self.run_delay_s()
        self._started_s = time.perf_counter()
        return True

    def finished(self) -> bool:
        """The sampled commit is done: True when its window's samples were mostly slow (the
        window then starts again)."""
        took_s = time.perf_counter() - self._started_s
        waited_s = self.run_delay_s() - self._waited_before_s
        self._samples += 1
        if took_s - waited_s > self.slow_s:
            self._slow += 1
        if self._samples < WINDOW_SAMPLES:
            return False
        slow, self._samples, self._slow = self._slow, 0, 0
        return slow * 2 > WINDOW_SAMPLES

    @property
    def window_commits(self) -> int:
        return SAMPLE_EVERY * WINDOW_SAMPLES

    def run_delay_s(self) -> float:
        """How long the calling thread has waited for a core, runnable, since it started (0
        where that cannot be read)."""
        if self._no_schedstat:
            return 0.0
        try:
            thread = threading.get_native_id()
            if self._fd is None or self._fd_thread != thread:  # `thread-self`: the opener's
                self.close()
                self._fd, self._fd_thread = os.open(SCHEDSTAT, os.O_RDONLY), thread
            return int(os.pread(self._fd, 128, 0).split()[1]) / 1e9
        except (OSError, ValueError, IndexError):
            self.close()
            self._no_schedstat = True
            return 0.0

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
