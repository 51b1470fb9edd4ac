"""The venue's own journal archive: `venue journal archive` run after each periodic snapshot.

Owns when the core runs it (`[venue] journal_archive_dir` set, the file journal) and how: the
command an operator would cron (core/journal_archive.py decides what goes and how), as a
child process at nice `CHILD_NICENESS`. Not a thread: a run reads the newest snapshot whole
(seconds of CPU holding the GIL at the bounds, and ~the file's size in memory), which would
stall the event loop and grow the venue's heap. One run at a time (a snapshot meanwhile
starts none, and warns past `RUN_LONG_S`), and only when a finished segment ends at or
before the oldest snapshot by the files' names (`may_move`): else a run could move nothing.
A failed run (the archive disk full or not writable, another run holding the lock, a copy
that does not check out) is a warning with its reason, tried again after the next snapshot;
nothing is lost (an original goes only once its copy checks out). What moved is logged at
info. A stop ends a run in flight (SIGTERM, SIGKILL after `STOP_WAIT_S`): a run stopped part
way leaves the original in place.
"""

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from core import snapshots
from core.config import VenueSection
from core.journal import segment_files

log = logging.getLogger("venue.archive")

CHILD_NICENESS = 10  # the run's CPU (a snapshot's read) yields to the venue's on a busy host
# A stop waits this long for a run in flight to end on SIGTERM (its copy removed, the lock
# let go) before it kills it: a stop must not wait for a GiB copy to a slow disk.
STOP_WAIT_S = 5.0
# A run this long is said at each snapshot while it lasts: a GiB copied to a slow disk and a
# snapshot read take a few minutes at most; a disk that hangs (a stale NFS mount) would
# otherwise stop the archive without a word, until the data disk filled.
RUN_LONG_S = 600.0
# The run's stderr kept for the warning: its one line, or a bug's traceback's last lines.
STDERR_KEPT_BYTES = 4_096
CODE_ROOT = Path(__file__).resolve().parent.parent  # where `cli` and `core` are imported from


def configured_problem(venue: VenueSection, data_dir: Path, nats: str) -> str | None:
    """What is wrong with `[venue] journal_archive_dir` and `journal_segment_bytes` for a venue
    on `data_dir` (over NATS when `nats`), or None: the archive is the data directory, or
    a file, or under one, or a symbolic link to nothing (a disk not mounted); either key set
    while the journal is a JetStream stream, which has no segment files."""
    if nats and (venue.journal_archive_dir or venue.journal_segment_bytes is not None):
        key = "journal_archive_dir" if venue.journal_archive_dir else "journal_segment_bytes"
        return (
            f"[venue] {key} is for the file journal: with nats the journal is a JetStream"
            " stream, which has no segment files; leave it out"
        )
    if not venue.journal_archive_dir:
        return None
    said = f"[venue] journal_archive_dir {venue.journal_archive_dir!r}"
    if "\0" in venue.journal_archive_dir:
        return f"{said}: a path holds no NUL character"
    archive = Path(venue.journal_archive_dir)
    if archive.resolve() == data_dir.resolve():
        return f"{said} is the data directory: give another directory"
    found = not_a_directory(archive)
    return None if found is None else f"{said}: {found}"


def not_a_directory(archive: Path) -> str | None:
    """Why `archive` is not a directory that exists, or None. The venue makes none (a run's
    mkdir would, through an unmounted disk's empty mount point, put the archive on the root
    disk): a symbolic link to nothing anywhere on its path is named as such."""
    for path in [*reversed(archive.absolute().parents), archive.absolute()]:
        if os.path.islink(path) and not path.exists():
            target = os.readlink(path)
            return (
                f"{path} is a symbolic link to {target}, which does not exist (is its disk"
                " mounted?)"
            )
    if archive.is_dir():
        return None
    if archive.exists():
        return "not a directory"
    existing = next(parent for parent in archive.absolute().parents if parent.exists())
    if not existing.is_dir():
        return f"under {existing}, which is not a directory"
    return "no such directory (is its disk mounted? the venue makes none: mkdir it)"


def may_move(journal: Path) -> bool:
    """Whether a finished segment of the journal at `journal` (its first segment's path) ends
    at or before the oldest snapshot beside it, by the files' names alone (what a run checks
    further, core/journal_archive.py)."""
    oldest_seq = snapshots.oldest_named_seq(journal.parent)
    if oldest_seq is None:
        return False
    found = segment_files(journal)
    return any(next_seq - 1 <= oldest_seq for (_, _), (next_seq, _) in itertools.pairwise(found))


class ArchiveRuns:
    """`venue journal archive --data-dir DATA --to ARCHIVE`, one run at a time, each started
    by `after_snapshot` on the event loop."""

    def __init__(self, journal: Path, archive_dir: Path) -> None:
        self.journal = journal  # the first segment's path: the data directory's journal.log
        self.data_dir = journal.parent
        self.archive_dir = archive_dir
        self.runs = 0  # runs started, for the tests
        self.failures = 0  # runs that failed (each warned), for the tests
        self._task: asyncio.Task[None] | None = None
        self._child: asyncio.subprocess.Process | None = None
        self._stopping = False
        self._started = 0.0  # time.monotonic() of the run's start

    def after_snapshot(self) -> None:
        """A periodic snapshot was written: start a run unless one is running (said, once it
        has run past `RUN_LONG_S`) or the venue is stopping."""
        if self._stopping:
            return
        if self._task is not None and not self._task.done():
            running_s = time.monotonic() - self._started
            if running_s > RUN_LONG_S:  # (its child's, or the look at the journal before it)
                pid = {"pid": self._child.pid} if self._child is not None else {}
                log.warning(
                    "journal archive still running after %d s: its disk hung? no run starts"
                    " till it ends",
                    running_s,
                    extra=self._to() | pid,
                )
            return
        self._started = time.monotonic()
        self._task = asyncio.create_task(self._run_if_any())

    async def _run_if_any(self) -> None:
        try:
            if await _in_a_daemon_thread(may_move, self.journal):
                await self._run()
        except Exception as failed:  # never fatal: the journal is all still there
            self.failures += 1
            log.warning(
                "journal not archived: %s; tried again after the next snapshot",
                describe(failed),
                extra={"to": str(self.archive_dir)},
            )

    async def _run(self) -> None:
        if self._stopping:  # (a stop came while `may_move` looked: it found no child to end)
            return
        self.runs += 1
        self._child = await asyncio.create_subprocess_exec(
            *self.command(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=child_environment(),
            start_new_session=True,  # a terminal's Ctrl-C is the venue's to act on, not its
        )
        with contextlib.suppress(OSError):  # (a child already gone: nothing to lower)
            os.setpriority(os.PRIO_PROCESS, self._child.pid, CHILD_NICENESS)
        if self._stopping:  # (a stop came while it started: it found no child to end)
            with contextlib.suppress(ProcessLookupError):
                self._child.send_signal(signal.SIGTERM)
        try:
            out, err = await self._child.communicate()
        finally:
            status = self._child.returncode
            self._child = None
        self._say_moved(out)  # a run refused part way has moved some first
        said = err[-STDERR_KEPT_BYTES:].decode(errors="replace").strip().splitlines()
        if status == 0 and said:  # its warnings (a damaged snapshot passed over, say)
            log.warning("journal archive said: %s", " | ".join(said), extra=self._to())
        elif status != 0 and not self._stopping:  # (one the stop ended is no failure)
            self.failures += 1
            log.warning(
                "journal not archived: %s; tried again after the next snapshot",
                said[-1].removeprefix("venue: ") if said else f"exit status {status}",
                extra=self._to() | {"status": status},
            )

    def _say_moved(self, out: bytes) -> None:
        """The segments the run's lines say it moved, in one line at info (none: no line)."""
        to = f" to {self.archive_dir}"  # (said once, in `to`)
        moved = [
            line.removeprefix("ok   archived ").removesuffix(to)
            for line in out.decode(errors="replace").splitlines()
            if line.startswith("ok   archived ")
        ]
        if moved:
            log.info("journal archived", extra={"segments": moved, "to": str(self.archive_dir)})

    def _to(self) -> dict[str, object]:
        return {"to": str(self.archive_dir)}

    def command(self) -> list[str]:
        """The run's command line: the operator's own `venue journal archive`. `-P`: not the
        working directory first on the path, as `-m` would put it, where a `cli/` or `core/`
        planted in the directory the venue was started from would run as the venue's user."""
        return [
            sys.executable,
            "-P",
            "-m",
            "cli.main",
            "journal",
            "archive",
            "--data-dir",
            str(self.data_dir),
            "--to",
            str(self.archive_dir),
            # the child, not the venue, looks at the archive's disk (a hung one hangs it
            # alone, which the stop kills), and makes no directory there (`not_a_directory`)
            "--existing",
        ]

    async def stop(self) -> None:
        """End a run in flight (SIGTERM, then SIGKILL after `STOP_WAIT_S`) and start no more."""
        self._stopping = True
        child, task = self._child, self._task
        if child is not None and child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), STOP_WAIT_S)
        except TimeoutError:
            if self._child is None:  # (still looking at the journal: its disk hung)
                task.cancel()
                return
            with contextlib.suppress(ProcessLookupError):
                self._child.kill()
            await task


def _in_a_daemon_thread(look: Callable[[Path], bool], journal: Path) -> asyncio.Future[bool]:
    """`look(journal)` on a daemon thread of its own: a hung disk's listing holds neither the
    loop nor, once the stop gave it up, the process's exit (the default executor's threads
    are joined at `asyncio.run`'s end: the re-review of session 35 saw the exit wait)."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[bool] = loop.create_future()

    def settle(result: bool | None, failure: BaseException | None) -> None:
        if answer.done():  # (given up: cancelled by the stop)
            return
        if failure is not None:
            answer.set_exception(failure)
        else:
            answer.set_result(bool(result))

    def work() -> None:
        try:
            result, failure = look(journal), None
        except Exception as failed:  # (said by the run's warning, on the loop)
            result, failure = None, failed
        with contextlib.suppress(RuntimeError):  # (the loop closed meanwhile: nobody waits)
            loop.call_soon_threadsafe(settle, result, failure)

    threading.Thread(target=work, name="venue-archive-look", daemon=True).start()
    return answer


def child_environment() -> dict[str, str]:
    """The venue's environment; a venue run from a checkout (`python -m cli.main` there) has
    the checkout first on the child's path, so that its run imports the same code. An
    installed venue's child finds it where the venue did (its site-packages are not put on
    PYTHONPATH: ahead of the standard library, they could shadow it)."""
    environment = dict(os.environ)
    if (CODE_ROOT / "pyproject.toml").is_file():
        paths = environment.get("PYTHONPATH", "").split(os.pathsep)
        environment["PYTHONPATH"] = os.pathsep.join([str(CODE_ROOT), *filter(None, paths)])
    return environment


def describe(failed: BaseException) -> str:
    """A failure of the run's start or listing, in one line."""
    if isinstance(failed, OSError):
        return f"{failed.filename}: {failed.strerror}" if failed.filename else str(failed)
    return str(failed) or type(failed).__name__
