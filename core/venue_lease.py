"""The one-process venue's hold on the core's lease: one `venue serve --nats` per stream.

Owns `VenueLease`. Before the venue opens its journal on the stream it takes the lease the
cluster's active core takes (core/lease.py: bucket `venue_lease`, key `core`, the core's TTL),
so a second venue on the stream, or a cluster's core, is refused at start (`LeaseHeld`, naming
the holder), and a cluster's core started beside it waits as a standby. A restart on the same
data directory after a crash takes the lease over at once when the key names a run it can
prove dead (`DataDirRuns`: every run flocks the directory's `LEASE_LOCK_FILE` before its name
is recorded and until it stops renewing, so a run that holds that lock now knows each recorded
run on that very file has stopped); any other key under the directory's name (a run it cannot
prove dead) it waits for, up to `OWN_KEY_WAIT_FACTOR` TTLs. The lease is renewed on a thread
of its own (`core.lease_thread`), so a replay that holds the venue's loop longer than a term
does not end it; a term that ends unrenewed stops the process (exit 70), as it stops the
cluster's core. A clean stop releases it: the next venue takes it at once; a refused start
releases it and puts the directory's lease files back as it found them (`give_back`). The
stream's expected last sequence (`JournalConflict`) stays the second guard.
"""

import asyncio
import fcntl
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Final

import nats.errors

from core.cluster_core import LEASE_POLL_S, LEASE_REQUEST_TIMEOUT_S, LEASE_TTL_S
from core.jetstream_journal import (
    STREAM_DEFAULT,
    JournalUnavailable,
    connect,
    server_list,
    shown,
)
from core.journal import JournalError, refuse_dangling_link
from core.lease import LeaseError
from core.lease_thread import ThreadLease
from core.nats_bus import die
from core.venue_core import DATA_DIR_MODE, missing_dirs

log = logging.getLogger("venue.cluster")

# A crashed run's key expires a TTL after its last renewal, and the server's expiry timer
# adds a little: a restart on its data directory waits up to this many TTLs, then is refused.
OWN_KEY_WAIT_FACTOR: Final = 1.5
# In the data directory: flocked by a run from before its holder name is recorded until it has
# stopped renewing (released, or the process gone), and the names recorded, newest last.
LEASE_LOCK_FILE: Final = "lease.lock"
LEASE_RUNS_FILE: Final = "lease.runs"
# Runs remembered: a few starts in a row that died before they took the lease; a run older
# than that held a key that has long expired.
RUNS_KEPT: Final = 8
BOOT_ID_FILE: Final = Path("/proc/sys/kernel/random/boot_id")  # this kernel's, random per boot


class LeaseHeld(JournalError):
    """Someone else (another venue, a cluster's core) holds the stream's lease: this venue
    must not write to the stream. The stream's `JournalLocked`."""


def holder_name(data_dir: Path) -> str:
    """A venue's name in the lease: its machine and data directory. A restart on the same
    directory has the same name (and `venue.lock` keeps two live venues off one directory)."""
    return f"venue serve on {socket.gethostname()} (data dir {data_dir.resolve()})"


class DataDirRuns:
    """The runs of `venue serve --nats` on one data directory, as far as the lease goes.

    `claim` flocks the directory's `LEASE_LOCK_FILE` (held until `close`, or the process
    ends) and records this run's holder name in `LEASE_RUNS_FILE`, with the identity of the
    locked file: the kernel's boot id, the file's device and inode. The runs recorded before
    with the same identity flocked that same file, in this same kernel, from before their
    record until they stopped renewing; this run holds that lock now, so each of them has
    stopped: their names are `dead`. A record made elsewhere (a data directory copied, another
    machine or container, before a reboot) names another file or kernel and is not counted;
    without a boot id (not Linux) none is.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.dead: frozenset[str] = frozenset()
        self._lock: IO[bytes] | None = None
        # What `claim` made or changed, for `give_back` after a refused start: the
        # directories it made (the deepest first), whether it made the lock file, and the
        # runs file as it was (None: there was none).
        self._made_dirs: list[Path] = []
        self._made_lock_file = False
        self._runs_before: bytes | None = None

    @property
    def claimed(self) -> bool:
        return self._lock is not None

    async def claim(self, holder: str, deadline: float) -> None:
        """Lock the directory for this run and record `holder`. The lock may be held a moment
        by a run that is stopping (it gives the lease up, then the lock): waited for until
        `deadline` (monotonic), then `LeaseHeld` (a venue running on the directory)."""
        # Links to nothing refused, as the journal is: a lock made anew elsewhere proves no
        # run dead, and runs read as none would wait out a crashed run's key for nothing.
        refuse_dangling_link(self.data_dir / LEASE_LOCK_FILE, "making a lease lock there")
        refuse_dangling_link(self.data_dir / LEASE_RUNS_FILE, "taking it for no runs recorded")
        self._made_dirs = missing_dirs(self.data_dir)
        self.data_dir.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
        self._made_lock_file = not os.path.lexists(self.data_dir / LEASE_LOCK_FILE)
        lock = (self.data_dir / LEASE_LOCK_FILE).open("ab")  # O_CLOEXEC: children lack it
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    lock.close()
                    raise LeaseHeld(
                        f"{self.data_dir / LEASE_LOCK_FILE} is held by another process: a"
                        " venue running on that data directory, or stopping there"
                    ) from None
                await asyncio.sleep(LEASE_POLL_S)
        self._lock = lock
        identity = _identity(lock)
        try:  # read under the lock: no other run writes it meanwhile
            self._runs_before = (self.data_dir / LEASE_RUNS_FILE).read_bytes()
        except FileNotFoundError:
            self._runs_before = None
        earlier = self._records()
        if identity is not None and "\n" not in holder:  # (a record is one line)
            self.dead = frozenset(name for mark, name in earlier if mark == identity)
            kept = [*earlier, (identity, holder)][-RUNS_KEPT:]
            runs = "".join(f"{mark} {name}\n" for mark, name in kept)
            _replace(self.data_dir / LEASE_RUNS_FILE, runs.encode())

    def close(self) -> None:
        """This run has stopped renewing: the next may take its key over."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def give_back(self) -> None:
        """After a refused start (the lease released, or never held): leave the directory as
        `claim` found it, then `close`. Still under the lock: the runs file is put back as
        it was (this run's record goes: it holds no key a restart must prove dead), and the
        lock file is removed if `claim` made it. A start that opened that file meanwhile
        locks it once it is closed, and records runs under its identity (another inode than
        any later lock file's, so no run is ever taken for dead on the strength of a lock
        nobody held); the directories `claim` made go if nothing else is left in them."""
        if self._lock is None:
            return
        runs = self.data_dir / LEASE_RUNS_FILE
        if self._runs_before is None:
            runs.unlink(missing_ok=True)
        else:
            _replace(runs, self._runs_before)
        if self._made_lock_file:
            (self.data_dir / LEASE_LOCK_FILE).unlink(missing_ok=True)
        self.close()
        for directory in self._made_dirs:  # the deepest first
            try:
                directory.rmdir()
            except OSError:  # not empty (the venue's own files, another start's): left
                return

    def _records(self) -> list[tuple[str, str]]:
        try:
            text = (self.data_dir / LEASE_RUNS_FILE).read_text()
        except FileNotFoundError:
            return []
        records = (line.split(" ", 1) for line in text.splitlines())
        return [(record[0], record[1]) for record in records if len(record) == 2]


def _replace(path: Path, content: bytes) -> None:
    """`path` holds `content` now, whole or not at all (a torn record proves nothing); a link
    to a file stays one: the file it names is replaced, beside it."""
    path = Path(os.path.realpath(path))
    spare = path.with_name(f"{path.name}.tmp")
    # owner-only, as the rest of the data directory (its start warns of a file open to others)
    descriptor = os.open(spare, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        os.fchmod(descriptor, 0o600)  # a spare left by a crash keeps its mode through O_CREAT
        file.write(content)
    os.replace(spare, path)


def _identity(lock: IO[bytes]) -> str | None:
    """The locked file's identity in this kernel (`DataDirRuns`); None without a boot id."""
    try:
        boot_id = BOOT_ID_FILE.read_text().strip()
    except OSError:
        return None
    stat = os.fstat(lock.fileno())
    return f"{boot_id}:{stat.st_dev}:{stat.st_ino}"


class VenueLease:
    """The lease held for one `venue serve --nats` process, from `take` to `release`."""

    def __init__(
        self,
        servers: str | Sequence[str],
        holder: str,
        *,
        ttl_s: float = LEASE_TTL_S,
        on_lost: Callable[[BaseException], None] = die,
        data_dir: Path | None = None,
    ) -> None:
        """`on_lost`: called (on the lease's thread) when the term ends unrenewed, or the
        renewing task fails; by default the process exits 70 at once. `data_dir`: the
        venue's; `holder` is then the directory's name (`holder_name`), and this run holds
        the lease as `"<holder> run <random>"`, so that a restart can tell it dead
        (`DataDirRuns`) and take its key over at once."""
        self.servers = server_list(servers)
        self.name = holder  # a key under this name is a run on this venue's directory
        self.runs = None if data_dir is None else DataDirRuns(data_dir)
        self.holder = holder if data_dir is None else f"{holder} run {secrets.token_hex(8)}"
        self.ttl_s = ttl_s
        self._lease = ThreadLease(
            self.servers,
            self.holder,
            connect=connect,
            ttl_s=ttl_s,
            poll_s=LEASE_POLL_S,
            request_timeout_s=LEASE_REQUEST_TIMEOUT_S,
            on_lost=on_lost,
            thread_name="venue-lease",
        )

    async def take(self) -> None:
        """Hold the lease and keep renewing it; `LeaseHeld` when someone else holds it,
        `JournalUnavailable` when NATS does not answer (nothing is held then, and the data
        directory is as it was: `give_back`)."""
        try:
            await self._take()
        except BaseException:
            await self.give_back()
            raise

    async def give_back(self) -> None:
        """`release`, for a start that is refused (or fails): the data directory's lease
        files are then put back as this start found them (`DataDirRuns.give_back`)."""
        try:
            await self._lease.release()
        finally:  # the directory's lock held until its files are put back
            if self.runs is not None:
                self.runs.give_back()

    async def release(self) -> None:
        """Stop renewing and give the lease up (a delete marker: the next holder need not
        wait for the TTL); after the venue's last write. Unanswered, it expires by its TTL.
        Then the data directory's lease lock, once nothing here renews. A second call does
        nothing."""
        try:
            await self._lease.release()
        finally:
            if self.runs is not None:
                self.runs.close()

    async def holder_now(self) -> str | None:
        """Who the bucket says holds the lease now (for status and tests)."""
        return await self._lease.holder_now()

    async def _take(self) -> None:
        lease = self._lease
        try:  # the bucket's replicas: the cluster's, as the journal's stream
            await lease.open()
        except (nats.errors.Error, TimeoutError) as unanswered:
            where = shown(self.servers)
            raise JournalUnavailable(f"NATS at {where}: no lease bucket: {unanswered!r}") from None
        except LeaseError as unusable:  # another TTL: made by something else than a venue
            raise JournalError(f"NATS at {shown(self.servers)}: {unusable}") from None
        wait_s = self.ttl_s * OWN_KEY_WAIT_FACTOR
        deadline = time.monotonic() + wait_s
        runs = self.runs
        if runs is not None and runs.data_dir.is_dir():
            await runs.claim(self.holder, deadline)  # first: a dead run of its is known
        waiting = False
        while not await lease.try_acquire():
            holder = await _holder_or_none(lease)
            if await self._take_over(holder):
                break
            if holder is None and time.monotonic() <= deadline:
                pass  # freed meanwhile, or NATS did not answer: try again
            elif self._this_run(holder) and time.monotonic() <= deadline:
                pass  # this run's own write, its answer lost: the next try holds from it
            elif not self._same_directory(holder) or time.monotonic() > deadline:
                raise LeaseHeld(self._refusal(holder, waiting, wait_s))
            elif not waiting:
                waiting = True
                log.warning(
                    "the lease is held under this venue's name (its last run did not stop"
                    " cleanly?): waiting up to %g s for it to expire",
                    wait_s,
                    extra={"holder": holder},
                )
            await asyncio.sleep(LEASE_POLL_S * 2)
        if runs is not None and not runs.claimed:  # a new directory: made now the lease is ours
            # Not waited for: the lease is not renewed until `keep`. Held, it is another
            # venue's first start on the directory at this very moment: this one stops.
            await runs.claim(self.holder, time.monotonic())
        await lease.keep()
        log.info("holding the lease", extra={"holder": self.holder})

    async def _take_over(self, holder: str | None) -> bool:
        """Take the key over from `holder` if it is a run of this directory known to have
        stopped (`DataDirRuns.dead`): no one else can be acting under it. True if taken."""
        runs = self.runs
        if holder is None or runs is None or holder not in runs.dead:
            return False
        if not await self._lease.take_over(holder):
            return False  # written since (its renewal still on the wire): read again
        log.info(
            "took the lease over from a run of this data directory that is gone",
            extra={"holder": self.holder, "predecessor": holder},
        )
        return True

    def _this_run(self, holder: str | None) -> bool:
        """Whether `holder` is this run (a per-run name: a venue of a data directory's; a bare
        name, given, may be another run's too)."""
        return holder == self.holder and self.holder != self.name

    def _same_directory(self, holder: str | None) -> bool:
        """Whether `holder` is a run of this venue's name (its data directory's)."""
        return holder is not None and (
            holder == self.name or holder.startswith(f"{self.name} run ")
        )

    def _refusal(self, holder: str | None, waited: bool, wait_s: float) -> str:
        where = f"the lease of stream {STREAM_DEFAULT} on NATS {shown(self.servers)}"
        if holder is None:
            return f"{where} could not be taken within {wait_s:g} s (NATS did not answer)"
        if waited:
            return f"{where} is still held by {holder} after {wait_s:g} s"
        return (
            f"{where} is held by {holder}: another venue (or a cluster's core) acts on that"
            f" stream; stop it first (one that died frees it within {self.ttl_s:g} s)"
        )


async def _holder_or_none(lease: ThreadLease) -> str | None:
    """Who holds the lease; None when nobody does, or NATS did not answer."""
    try:
        return await lease.holder_now()
    except (nats.errors.Error, TimeoutError):
        return None
