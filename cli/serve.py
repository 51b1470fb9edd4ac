"""`venue serve`: run the venue on uvloop until SIGTERM, SIGINT or SIGHUP, then stop cleanly.

Prints where to connect and the configured demo keys; logs to stderr (`cli.logs`). The stop
signals are taken before the start: one during it ends it at its next safe point, the data
directory given back (`StopSignals`); a stop whose writes fail exits 70 (`stop_or_fail`).
Refuses to start, in one line and creating nothing, on a port another process holds or a
host that does not resolve, a data directory another venue holds, a JetStream stream whose
lease another venue or a cluster's core holds (`--nats`), a journal or snapshot it cannot
trust, a PostgreSQL ledger store it cannot reach, or a journal archive setting it cannot use
(`core.archive_runs`) (`cli.failures.CommandFailed`); `[limits] connections_max` over its open-file
limit is lowered to fit, with a warning (`fit_open_files`). A refusal once the data directory
is locked takes back what the start made there (`VenueCore`; with `--nats` the lease's files
and a stream it created, still empty); a file there that is a symbolic link to nothing is
refused (docs/gateway.md, "Operating"). A PostgreSQL store not up yet is waited for, up to
`settlement.pg_store.START_WAIT_S`, and NATS for the lease, both under the stop signals.
"""

import asyncio
import contextlib
import errno
import gc
import logging
import os
import resource
import signal
import socket
import sqlite3
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import urlsplit

import msgspec
import psycopg

from cli import hangup, logs
from cli.failures import CommandFailed, check_data_dir, describe_os_error
from client import demo_data
from core import archive_runs
from core import config as venue_config
from core.jetstream_journal import JournalUnavailable, shown
from core.journal import DanglingJournalLink, JournalError, segment_files
from core.sequencer import decode_command
from core.store_thread import StoreFailedError
from core.stream_snapshots import StreamCheck
from core.venue_core import (
    JOURNAL_FILE,
    LEDGER_FILE,
    StartStopped,
    check_data_dir_free,
    missing_dirs,
    now_us,
)
from gateway.limits import OPEN_FILES_RESERVE
from gateway.server import VenueServer
from settlement.pg_store import wait_until_up
from settlement.store import LedgerStoreError

log = logging.getLogger("venue.serve")

if TYPE_CHECKING:
    from core.jetstream_journal import JetStreamJournal
    from core.venue_lease import VenueLease

T = TypeVar("T")
PORT_MAX = 65_535  # a TCP port; past it the bind raised OverflowError, a traceback
# The demo keys of the repository's `venue.toml`, whose secrets are published with the code:
# the banner prints these secrets so that a newcomer can log on at once, and no other (before
# session 25 it printed every configured key's secret, a production venue's too). Written
# here, not read from the checkout's venue.toml: an operator who puts real secrets in that
# file must not see them printed (tests/gateway/test_s25_security_banner.py holds the two
# equal).
PUBLISHED_KEYS: Final = frozenset(
    {
        ("demo-mm-alpha", "demo-secret-mm-alpha"),
        ("demo-mm-beta", "demo-secret-mm-beta"),
        ("demo-taker", "demo-secret-taker"),
        ("demo-us", "demo-secret-us"),
        ("demo-admin", "demo-secret-admin"),
    }
)


def run(
    config_path: Path,
    host: str | None,
    port: int | None,
    data_dir: Path | None,
    log_level: str = "info",
    log_format: str = "text",
    postgres: str | None = None,
    role: str = "all",
    nats: str | None = None,
    name: str | None = None,
) -> int:
    """`role` "all": the one-process venue; "core" or "gateway": that role of a cluster on
    the NATS servers `nats` (see docs/cluster.md); with role "all", `nats` makes the journal
    a JetStream stream there."""
    if hangup.stop_noted() is not None:  # during the imports (`hangup.noting_stops`)
        hangup.say_after_stop("tokenvenue stopped before it started (while it loaded)")
        return 0
    config = venue_config.load(config_path)
    if role != "all" and not (nats or config.venue.nats):
        raise CommandFailed(f"--role {role} needs --nats URL (the cluster's NATS servers)")
    if nats or config.venue.nats:
        check_nats_urls(nats or config.venue.nats, "--nats" if nats else f"{config_path}: nats")
    if postgres is not None:  # --postgres DSN: the ledger store there, whatever the config says
        venue = msgspec.structs.replace(config.venue, ledger_postgres=postgres)
        config = msgspec.structs.replace(config, venue=venue)
    data = data_dir or Path(config.venue.data_dir)
    check_data_dir(data)
    if role == "core":
        check_core_data_dir_writable(data)
    found = archive_runs.configured_problem(config.venue, data, nats or config.venue.nats)
    if found is not None:  # the archive's own problems come later, each a warning
        raise CommandFailed(f"{config_path}: {found}")
    # A bill's term counts from now, and only for a venue about to be built from the config:
    # a venue that exists recovers from its own files, whatever the config lists now.
    building = role == "all" and not (nats or config.venue.nats) and _no_journal_yet(data)
    try:  # every amount and spec checked before anything is touched
        venue_config.setup_commands(config, now_us=now_us(), building=building)
    except venue_config.ConfigError as invalid:
        raise CommandFailed(f"{config_path}: {invalid}") from None
    logs.configure(log_level, log_format)
    host = host or config.venue.host
    port = listening_port(config_path, config, port)
    if role != "core":  # a core accepts no clients: only the gateways' caps need the files
        config = fit_open_files(config)
    check_port_free_or_core(role, host, port)  # before the data directory is made or touched
    try:
        import uvloop
    except ImportError:  # uvloop is not built for every platform: plain asyncio then
        runner: Callable[[Coroutine[Any, Any, None]], None] = asyncio.run
    else:
        runner = uvloop.run
    nats_url = nats or config.venue.nats
    if role == "core":  # its lines name the DSN's setting: the flag, or the config's key
        dsn_config = None if postgres is not None else config_path
        serving = _serve_core(config, data, nats_url, name or "core", dsn_config)
    elif role == "gateway":
        serving = _serve_gateway(config, host, port, data, nats_url, name or "gw")
    else:
        serving = _serve(config, host, port, data_dir, nats_url)
    try:
        runner(serving)
    except StopFailed:  # said in its `fatal` line
        return EXIT_FATAL
    except JournalError as refused:  # corruption before the tail, a locked journal: say where
        raise CommandFailed(f"cannot start: {refused}") from None
    except venue_config.ConfigError as invalid:  # a venue built from it (the cluster's core)
        raise CommandFailed(f"{config_path}: {invalid}") from None
    except (psycopg.Error, LedgerStoreError) as refused:  # the PostgreSQL store: down, refused
        raise CommandFailed(f"cannot start: the ledger store: {one_line(refused)}") from None
    return 0


def sqlite_store_refused(data_dir: Path, error: sqlite3.Error) -> str:
    """The one line for a SQLite store the start cannot open or write: its path and SQLite's
    reason. Only a file SQLite reads as damaged (not a database, malformed) is told the way to
    rebuild it; a disk's error (I/O, full, not writable or openable) names the disk, and one
    held by another process says so: neither store is damaged, and in session 28 a full disk
    was told to rebuild, which threw away an intact store (before, every one was a traceback).
    Any other `OperationalError` is said as SQLite says it."""
    store = data_dir / LEDGER_FILE
    reason = f"the ledger store {store}: {one_line(error)}"
    verify = f"`venue verify --data-dir {data_dir}` checks it"
    if not isinstance(error, sqlite3.OperationalError):
        return (
            f"cannot start: {reason} ({verify}; the store is derived from the journal: a"
            f" damaged one is rebuilt by moving {LEDGER_FILE}* and snapshot-*.bin out of the"
            " directory and starting again)"
        )
    kind = _sqlite_error_kind(error)
    if kind == "disk":
        return (
            f"cannot start: a write in {data_dir} failed: {reason} (its disk full, failing or"
            " not writable: the store is not known to be damaged, do not rebuild it; make room"
            f" or mend the disk and start again, {verify})"
        )
    if kind == "held":
        return (
            f"cannot start: {reason} (another process holds it: stop that process, often a"
            " `venue serve` or `venue ledger` on the same data directory, and start again;"
            " the store is not known to be damaged, do not rebuild it)"
        )
    return f"cannot start: {reason} (the store is not known to be damaged; {verify})"


# SQLite's primary result codes by what an operator does about them (`sqlite3.Error`'s
# `sqlite_errorname` is the extended code, e.g. SQLITE_IOERR_WRITE: its prefix is the primary)
SQLITE_DISK_ERRORS = ("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_READONLY")
SQLITE_HELD_ERRORS = ("SQLITE_BUSY", "SQLITE_LOCKED")
# ... and those a stop's failure is said of in one line (`is_io_failure`): the disk's, a store
# held, a damaged file; any other (SQLITE_ERROR, SQLITE_MISUSE, ...) is the code's
SQLITE_IO_FAILURES = (
    *SQLITE_DISK_ERRORS,
    *SQLITE_HELD_ERRORS,
    "SQLITE_CORRUPT",
    "SQLITE_NOTADB",
    "SQLITE_PERM",
    "SQLITE_PROTOCOL",
)


def _sqlite_error_kind(error: sqlite3.Error) -> str:
    """ "disk", "held" or "other", by SQLite's result code; an error made without one (by
    hand) is the disk's, as most of a start's `OperationalError`s are."""
    name = getattr(error, "sqlite_errorname", None)
    if name is None:
        return "disk"
    if name.startswith(SQLITE_DISK_ERRORS):
        return "disk"
    if name.startswith(SQLITE_HELD_ERRORS):
        return "held"
    return "other"


# The collector's young generation: CPython collects it every 700 new container objects, and
# a busy venue makes tens of thousands a second (requests, events, pushes) that nearly all die
# young by reference counting; collecting every 20,000 leaves the same garbage collected, with
# a fraction of the passes (profiled: ~5% of the event loop's time at 4,000 actions/s). The
# request path makes no cyclic garbage (tests/gateway/test_server.py), so what triggers the
# passes now is long-lived state growing, and they find next to nothing.
GC_YOUNG_THRESHOLD = 20_000


def settle_heap() -> None:
    """Once the venue is recovered and serving: its recovered state (books, ledger, history)
    goes to the collector's permanent generation, which full collections do not walk (they
    would, at every one, for as long as the process lives), and the young generation is
    collected less often (`GC_YOUNG_THRESHOLD`). Cyclic garbage is still collected."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def one_line(error: BaseException) -> str:
    """A driver's message, often several lines (detail, hint, context), on one."""
    return " ".join(str(error).split()) or type(error).__name__


def describe_store(config: venue_config.VenueConfig) -> str:
    """Where the ledger is booked, for the banner; a DSN's password stays out of it."""
    dsn = config.venue.ledger_postgres
    if not dsn:
        return "SQLite (ledger.sqlite in the data directory)"
    parts = psycopg.conninfo.conninfo_to_dict(dsn)
    where = f"{parts.get('host', 'localhost')}:{parts.get('port', 5432)}/{parts.get('dbname', '')}"
    return f"PostgreSQL {where}"


def _no_journal_yet(data: Path) -> bool:
    """The one-process venue's data directory holds no journal record yet: it will be built.
    Only an empty `journal.log` (a start that made it, and no more) is no venue: a later
    segment, even empty (its head archived, the rest written past a snapshot), or a
    snapshot means one exists."""
    try:
        found = segment_files(data / JOURNAL_FILE)
    except DanglingJournalLink:  # the start refuses it, naming the link
        return True
    if any(seq > 1 for seq, _ in found) or any(data.glob("snapshot-*.bin")):
        return False
    return all(path.stat().st_size == 0 for _, path in found)


NATS_SCHEMES = ("nats", "tls", "ws", "wss")  # what nats-py connects with
NATS_URL_EXAMPLE = "nats://127.0.0.1:4222"


def check_nats_urls(urls: str, source: str) -> None:
    """Refuse a NATS server list no connection could use, in one line before anything
    starts: a cluster role waits for NATS for as long as it is down, so a typo (`nats//h:p`,
    a port that is no number, only commas) had a core wait forever (and a list of no URL
    had it ignore SIGTERM), and a port that is no number was nats-py's traceback. A URL
    with no scheme is nats://, as nats-py reads it."""
    items = [item.strip() for item in urls.split(",") if item.strip()]
    if not items:
        raise CommandFailed(f"{source} {urls!r}: no NATS server URL (e.g. {NATS_URL_EXAMPLE})")
    for item in items:
        problem = _nats_url_problem(item)
        if problem is not None:
            example = f"(e.g. {NATS_URL_EXAMPLE})"
            raise CommandFailed(f"{source} {shown(urls)}: {shown(item)!r} {problem} {example}")


def _nats_url_problem(item: str) -> str | None:
    parts = urlsplit(item if "://" in item else f"nats://{item}")
    # As written, not as `urlsplit` lowercases it: nats-py matches the scheme by case, and
    # read `NATS://h:4222` as the host NATS (the endless retry this check is for).
    written = item.partition("://")[0] if "://" in item else "nats"
    if parts.scheme not in NATS_SCHEMES or written != parts.scheme:
        return f"is not a NATS URL: its scheme is not one of {', '.join(NATS_SCHEMES)}"
    try:
        _ = parts.port  # raises for a port that is no number, or out of 0..65535
    except ValueError:
        return "has a port that is not a number within 0..65535"
    if not parts.hostname or any(char.isspace() for char in item):
        return "names no host"
    if parts.scheme in ("nats", "tls") and parts.path not in ("", "/"):  # `nats//host:port`
        return "has a path: a NATS URL is [scheme://]host[:port]"
    return None


def check_core_data_dir_writable(data: Path) -> None:
    """Refuse a core's data directory it cannot write (a read-only file system, no
    permission), before it contends: a standby writes there only once it snapshots, and
    one taking the lease must lock it; until session 37 such a core stood by, warning only
    that the directory was "not its own", and stopped once it took the lease, the cluster
    left with no core (one on a full disk took it, recovered and stopped at its first
    write). Probed with a byte in an unnamed file in the directory, or in its nearest
    parent that exists (the directory is made later): nothing is left behind."""
    existing = data
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        with tempfile.TemporaryFile(dir=existing) as probe:
            probe.write(b"\0")  # a full disk refuses the byte, not the name
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as refused:
        why = refused.strerror or str(refused)
        raise CommandFailed(f"cannot start: {data_dir_unwritable(data, existing, why)}") from None


def data_dir_unwritable(data: Path, where: Path, why: str) -> str:
    """A core's data directory `data` that it cannot write (`where`: the file or directory a
    write failed in, `why`: the kernel's words), and what the operator is to do: the start's
    refusal (`check_core_data_dir_writable`) and a takeover's (`takeover_refused`) alike."""
    return (
        f"the data directory {data} cannot be written ({where}: {why}): make room there, or"
        " give this core a --data-dir it can write, its own"
    )


def takeover_refused(data: Path, error: OSError) -> str | None:
    """The one line for a takeover a disk's error ended (`DISK_ERRNOS`: the disk filled, or
    went read-only or failing, since the start's check), else None. Until session 38 it was
    the kernel's words alone (`venue: .../epochs.json: No space left on device`). The failed
    start gives the lease up (`ClusterCore.activate`) before this is said, or, its cleanup
    failing too, leaves it to expire with this process: a standby takes over either way."""
    if error.errno not in DISK_ERRNOS:
        return None
    where = Path(error.filename) if error.filename is not None else data
    why = error.strerror or str(error)
    return (
        f"cannot take over: {data_dir_unwritable(data, where, why)}, and start it again (it"
        " leaves the lease to a standby)"
    )


def check_store_reachable(dsn: str, stop_requested: Callable[[], bool]) -> None:
    """Refuse a PostgreSQL ledger store that cannot be reached (or a DSN that does not parse),
    before the data directory is made: the venue opens its store only once it holds the
    directory, with a journal begun there. One still starting up (or not listening yet) is
    waited for first, up to `START_WAIT_S` (`wait_until_up`), unless `stop_requested` says
    so meanwhile: `StartStopped` (the stop signals are taken before this wait: until session
    29 it came before them, and a SIGTERM during it killed the venue). An empty `dsn`, the
    SQLite file, always is reachable."""
    if not dsn:
        return
    try:
        up = wait_until_up(dsn, stop_requested=stop_requested)
    except psycopg.Error as refused:
        # a stop asked during an attempt (a connect may take up to its 10 s timeout) wins
        # over what the attempt then says (review of session 29: exit 2, "cannot start")
        if stop_requested():
            raise StartStopped("while it waited for the ledger store's PostgreSQL") from None
        raise CommandFailed(f"cannot start: the ledger store: {one_line(refused)}") from None
    if not up:
        raise StartStopped("while it waited for the ledger store's PostgreSQL")


def check_port_free_or_core(role: str, host: str, port: int) -> None:
    if role != "core":  # a core listens on no port
        check_port_free(host, port)


async def _on_stream(
    urls: str, data: Path, stopping: asyncio.Event
) -> tuple["VenueLease", "JetStreamJournal"]:
    """The lease, then the JetStream journal at `urls` (opened once the lease is held, so it
    reads the stream's end with nobody else writing). Refused, in one line and creating
    nothing: a data directory another venue holds (checked first, as without `--nats`),
    NATS unreachable, the lease held by another venue or a cluster's core, a stream with
    gaps. `stopping` set while the lease is taken (NATS retried for seconds while it does not
    answer, a dead run's lease waited out) ends that at once, given back: `StartStopped`.
    The journal's open, NATS answering by then, is not raced: its thread cannot be stopped,
    and the start's first safe point comes right after it."""
    from core.jetstream_journal import JetStreamJournal  # nats-py only when asked for
    from core.venue_lease import VenueLease, holder_name

    check_data_dir_free(data)
    lease = VenueLease(urls, holder_name(data), data_dir=data)
    if await _unless_stopped(_taken(lease), stopping) is None:  # given back by `take`
        raise StartStopped("while it took the lease of the stream on NATS")
    try:
        journal = await asyncio.get_running_loop().run_in_executor(None, JetStreamJournal, urls)
    except BaseException:
        await lease.give_back()
        raise
    return lease, journal


def stream_check(journal: "JetStreamJournal", data: Path) -> StreamCheck:
    """How `venue serve --nats` checks its snapshot against its stream, by a cluster core's
    rules (core/stream_snapshots.py, strict: one ahead of the stream, a record not read to
    check it, refused), a snapshot of another stream refused too: its data directory holds
    that venue's ledger store and keys (until session 36 only the seq was checked, and a
    snapshot of another stream at most as long was restored, and the stream replayed on it).
    The stream's record at the snapshot's seq is read on the journal's connection and decoded
    as a one-process venue's record: a cluster's does not decode, which refuses it."""
    loop = asyncio.get_running_loop()

    async def stamp_at(seq: int) -> int:
        payload = await loop.run_in_executor(None, journal.record, seq)
        return int(decode_command(payload).ts_us)

    return StreamCheck(stamp_at, f"venue serve on {data}", other_stream_refused=True)


async def _taken(lease: "VenueLease") -> "VenueLease":
    await lease.take()
    return lease


async def _delete_new_stream(urls: str) -> None:
    """A start refused after its journal created the stream: the stream goes too, if still
    empty, so that NATS is as the start found it (`delete_if_empty`); a failure to delete is
    logged, and the refusal is reported as it was."""
    import nats.errors

    from core.jetstream_journal import STREAM_DEFAULT, delete_if_empty

    try:
        await delete_if_empty(urls)
    except (JournalError, nats.errors.Error) as failed:
        log.warning("the stream %s this start created is left: %r", STREAM_DEFAULT, failed)


def fit_open_files(config: venue_config.VenueConfig) -> venue_config.VenueConfig:
    """Make room under the open-file limit for `[limits] connections_max` connections and the
    venue's own files (`OPEN_FILES_RESERVE`): the soft limit is raised to what they need, as
    far as the hard limit allows. Below that, the venue still starts (`make run` on a machine
    with a low hard limit must work) with the cap lowered to what fits, and says so: without
    it a venue configured above its limit started and failed later, at accept (EMFILE)."""
    connections_max = config.limits.connections_max
    needed = connections_max + OPEN_FILES_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or needed <= soft:
        return config
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    try:  # only up to what is needed: RLIM_INFINITY as the hard limit is not a usable soft
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as refused:  # a platform cap below the hard limit (macOS)
        log.warning("the open-file limit of %d could not be raised: %s", soft, refused)
        target = soft
    else:
        log.info("open-file limit raised from %d to %d for connections_max", soft, target)
    if target >= needed:
        return config
    # the venue's own files are few in fact: under a very low limit half of it is theirs
    allowed = max(target - OPEN_FILES_RESERVE, target // 2)
    log.warning(
        "[limits] connections_max = %d needs %d open files (%d kept for the venue's own);"
        " the open-file limit is %d (ulimit -Hn %s): serving at most %d connections",
        connections_max,
        needed,
        OPEN_FILES_RESERVE,
        target,
        "unlimited" if hard == resource.RLIM_INFINITY else hard,
        allowed,
    )
    limits = msgspec.structs.replace(config.limits, connections_max=allowed)
    return msgspec.structs.replace(config, limits=limits)


def listening_port(config_path: Path, config: venue_config.VenueConfig, port: int | None) -> int:
    """The port to listen on: `--port` if given, else the config's `[venue] port`; one
    outside 0..65535 refused in one line naming where it came from (`venue serve`'s and
    `venue demo`'s alike)."""
    if port is None:
        port = config.venue.port
        if not 0 <= port <= PORT_MAX:  # said as the config's other refusals are: file and key
            raise CommandFailed(f"{config_path}: [venue] port {port} is not within 0..65535")
    if not 0 <= port <= PORT_MAX:
        raise CommandFailed(f"--port {port} is not within 0..65535")
    return port


def check_port_free(host: str, port: int) -> None:
    """Refuse a port another process holds, or a host that does not resolve, with the
    reason, before anything is built (the host with port 0 too: until session 35 it went
    unchecked there, and the venue was built before its listen failed on the name)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as unknown:
        raise CommandFailed(f"cannot listen on {host}:{port}: {unknown.strerror}") from None
    if port == 0:
        return  # any free port: the bind cannot find it taken
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            probe.bind(address)
        except OSError as taken:
            hint = " (another venue running?)" if taken.errno == errno.EADDRINUSE else ""
            raise CommandFailed(f"cannot listen on {host}:{port}: {taken.strerror}{hint}") from None


async def _serve(
    config: venue_config.VenueConfig,
    host: str,
    port: int,
    data_dir: Path | None,
    nats_url: str = "",
) -> None:
    """The one-process venue; with `nats_url`, its journal the stream there, under the lease
    (released at a clean stop, or when the start fails). The stop signals are taken from
    before the start (`StopSignals`): one that comes while the venue recovers or is built
    stops the start at its next safe point, the data directory given back (`StartStopped`).
    Their handlers are put back as they were once it ends (`StopSignals.restore`)."""
    data = data_dir or Path(config.venue.data_dir)
    signals = StopSignals()
    try:
        await _serve_until_stopped(config, host, port, data, nats_url, signals)
    finally:
        signals.restore()


async def _serve_until_stopped(
    config: venue_config.VenueConfig,
    host: str,
    port: int,
    data: Path,
    nats_url: str,
    signals: "StopSignals",
) -> None:
    try:
        server, bound, lease = await _start(config, host, port, data, nats_url, signals)
    except StartStopped as stopped:
        hangup.say_after_stop(f"tokenvenue stopped before it started ({stopped})")
        return
    demo_data.disown(data)  # a demo's directory served on: its data is a venue's now
    settle_heap()
    at = authority(host, bound)
    print(f"tokenvenue listening: ws://{at}/ws/trade  ws://{at}/ws/public")
    print(f"  ledger store: {describe_store(config)}")
    print(f"  web page: http://{at}/  (log on there with a key and secret below)")
    print(f"  REST API: http://{at}/api/v1/instruments  (every route: http://{at}/openapi.json)")
    if config.api_keys:
        print("  API keys from the config file (venue.toml's are published: demo only)")
    for key in config.api_keys:
        # only a published demo key's secret: stdout is a supervisor's log (journald)
        secret = key.secret if (key.key, key.secret) in PUBLISHED_KEYS else "(in the config file)"
        print(f"  api key {key.key:<16} secret {secret:<24} scopes {','.join(key.scopes)}")
    print(hangup.how_to_stop(signals.signals), flush=True)
    await signals.stopping.wait()
    try:
        await stop_or_fail(server.stop(), data)
    finally:
        if lease is not None:  # after the last write: the next venue takes it at once
            await lease.release()
    hangup.say_after_stop("tokenvenue stopped cleanly")


async def _start(
    config: venue_config.VenueConfig,
    host: str,
    port: int,
    data: Path,
    nats_url: str,
    signals: "StopSignals",
) -> tuple[VenueServer, int, "VenueLease | None"]:
    """The one-process venue started, the port it listens on, its lease (`--nats`); a start that
    fails or is stopped gives back what it took (the stream it created, the lease)."""
    if signals.requested():  # before the signals were taken, while the venue loaded
        raise StartStopped("while it loaded")
    # the stop signals taken first: PostgreSQL (up to `START_WAIT_S`) and NATS are waited for
    check_store_reachable(config.venue.ledger_postgres, signals.requested)
    lease, journal = (None, None)
    if nats_url:
        lease, journal = await _on_stream(nats_url, data, signals.stopping)
    try:
        server = VenueServer(config, data, journal)
        if journal is not None:  # set before its start reads it: `VenueServer` passes none
            server.core.stream_check = stream_check(journal, data)
        bound = await server.start(host, port, stop_requested=signals.requested)
    except BaseException as failed:
        if journal is not None and journal.created:  # still held: nobody appended since
            await _delete_new_stream(nats_url)
        if lease is not None:  # a start that failed: the next need not wait for the TTL,
            await lease.give_back()  # and the data directory is as it was (the core's too)
        if isinstance(failed, OSError):  # the port taken since the check, a disk error
            raise CommandFailed(start_refused(failed, host, port, data)) from None
        if isinstance(failed, sqlite3.Error):  # the start's only: the stop's is `stop_or_fail`
            raise CommandFailed(sqlite_store_refused(data, failed)) from None
        raise
    return server, bound, lease


# A write's errors that are the disk's, never a listener's: an `os.write` or `fsync` that fails
# so names no file, and read as the port's fault (`cannot start on HOST:PORT: No space left`).
DISK_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG})


def start_refused(error: OSError, host: str, port: int, data_dir: Path) -> str:
    """Why the start failed: a file's error (the data directory cannot be made where it is
    asked for, a disk error) names the file; a disk's error that names none (a full disk under
    a write) names the data directory; only the rest is the listener's (the port taken since
    the check), named by its host and port. Before, every one was `cannot start on
    HOST:PORT`, which sent the operator to the port for a path's fault (until session 28, a
    full disk's still did)."""
    if error.filename is not None:
        return f"cannot start: {describe_os_error(error)}"
    if error.errno in DISK_ERRNOS:
        return f"cannot start: a write in {data_dir} failed: {describe_os_error(error)}"
    return f"cannot start on {host}:{port}: {describe_os_error(error)}"


def authority(host: str, port: int) -> str:
    """`host:port` as a URL writes it: an IPv6 address in brackets (`[::1]:8765`), since
    `ws://::1:8765/` is no URL a client can open."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _unless_stopped(work: Coroutine[Any, Any, T], stopping: asyncio.Event) -> T | None:
    """`work`'s result; or None, `work` canceled, when `stopping` is set first: a cluster
    role's start waits for NATS for as long as it is down (its connection retries without
    end), and a supervisor's SIGTERM must still stop it."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait((task, stopped), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None


def remove_if_empty(made: list[Path]) -> None:
    """Take back the directories a start made (`missing_dirs`, the deepest first) that it
    left empty: a start that never served leaves no trace. One holding anything stays."""
    for directory in made:
        try:
            directory.rmdir()
        except OSError:  # not empty (files of its, another start's), or gone: left as is
            return


WAKEUP_READ_BYTES: Final = 4_096  # signal numbers read from the wakeup socket per wake


class LoopWakeup:
    """Wakes `loop` whenever this process catches a signal, so that its Python handler runs at
    once. CPython runs a handler on the main thread only once that thread is back in the
    interpreter, and a loop asleep in its selector (plain asyncio: uvloop wakes for signals by
    a wakeup fd of its own) stayed asleep after a signal caught by another thread (a
    process-directed SIGTERM, a supervisor's, may go to any thread: the lease's, the store's)
    or by the main thread an instant before it went to sleep: the stop waited for the loop's
    next event (session 38: a start connecting to a NATS that did not answer waited out the
    connect's 25 tries, ~2 min, then exited 2 `cannot reach NATS`). The handlers' C part writes
    each signal's number to the socket given to `signal.set_wakeup_fd`, which the loop reads;
    a wakeup fd set before (uvloop's) is passed each byte, and is put back by `close`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)  # a wakeup fd must not block the handler's write
        self._writer.setblocking(False)
        # a full socket only means the loop has a wake to read already (off the main thread,
        # ValueError: the sockets are not left to the collector)
        try:
            self._previous = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        except BaseException:
            self._close_sockets()
            raise
        try:
            loop.add_reader(self._reader.fileno(), self._woken)
        except BaseException:  # (a loop closed): the wakeup fd is not left on a closed socket
            signal.set_wakeup_fd(self._previous, warn_on_full_buffer=False)
            self._close_sockets()
            raise

    def close(self) -> None:
        signal.set_wakeup_fd(self._previous, warn_on_full_buffer=False)
        self._loop.remove_reader(self._reader.fileno())
        self._close_sockets()

    def _close_sockets(self) -> None:
        self._reader.close()
        self._writer.close()

    def _woken(self) -> None:
        """Nothing to do but read: the wake itself lets the handlers run."""
        with contextlib.suppress(OSError):  # read already (BlockingIOError), the other end gone
            numbers = self._reader.recv(WAKEUP_READ_BYTES)
            if self._previous != -1:
                os.write(self._previous, numbers)


class StopSignals:
    """The stop signals (`hangup.stop_signals`) of `venue serve` (each role), taken before its
    start (a stop noted before them, `hangup.noting_stops`, is taken as theirs). Each is noted
    at once by a handler of Python's own, which runs between bytecodes, so also while a replay
    holds the event loop for minutes (a handler of the loop's runs only once the loop runs
    again: until session 29 the handlers were installed after the start, and a SIGTERM during it
    killed the venue, 143, with no line); the loop is then told (`_stop_on`: logged once,
    `stopping` set), woken for it whichever thread caught the signal (`LoopWakeup`). A start
    asks `requested` at its safe points (`core.recovery`); a venue serving waits for
    `stopping`."""

    def __init__(self) -> None:
        self.stopping = asyncio.Event()
        self.received: signal.Signals | None = None
        self.signals = hangup.stop_signals()  # before any handler: SIGHUP ignored stays so
        self._loop = asyncio.get_running_loop()
        # the handlers from before `hangup.noting_stops`, where it runs: not its `_note_stop`
        before = hangup.original_handlers()
        self._previous = {sig: before.get(sig, signal.getsignal(sig)) for sig in self.signals}
        self._wakeup = LoopWakeup(self._loop)  # before the handlers: no signal caught unseen
        try:
            for sig in self.signals:
                signal.signal(sig, self._noted)
            noted = hangup.stop_noted()  # before now (`hangup.noting_stops`): from the start
            if noted is not None:
                self.received = noted
                _stop_on(noted, self.stopping)
        except BaseException:  # no caller's `restore` comes: nothing of this one is left set
            self.restore()
            raise

    def restore(self) -> None:
        """Put back the handlers found: once the loop is closed this one's signal is noted by
        nobody, so a SIGINT or SIGTERM to a process running on (a test's, the stop's last
        steps) would be lost. A handler not set from Python (None) is the default's. Under
        `hangup.noting_stops` they are the ones from before it (`original_handlers`): its own
        would note and drop a stop from here to its end (the loop's teardown)."""
        for sig, previous in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if previous is None else previous)
        self._wakeup.close()

    def requested(self) -> bool:
        return self.received is not None

    def _noted(self, signum: int, _frame: object) -> None:
        sig = signal.Signals(signum)
        if sig == signal.SIGHUP:  # at once: a replay's lines must not fail on a closed terminal
            hangup.detach_hung_up_terminal()
        if self.received is None:
            self.received = sig
        with contextlib.suppress(RuntimeError):  # the loop closed: the run is over
            self._loop.call_soon_threadsafe(_stop_on, sig, self.stopping)


# A stop's failures that are the disk's or a service's (NATS, PostgreSQL), not the code's: said
# in one `fatal` line. sqlite3's and psycopg's ProgrammingError and InterfaceError, a
# JournalSequenceError or a BatchSequenceError are a bug or a broken invariant: their traceback
# is logged (until session 29 every `sqlite3.Error`, `psycopg.Error`, `JournalError` and
# `LedgerStoreError` was the one line, with no traceback).
IO_FAILURES: Final = (
    OSError,  # the disk's errors, and a socket's (TimeoutError, ConnectionResetError)
    sqlite3.OperationalError,  # SQLite's I/O error, full disk, store held
    psycopg.OperationalError,  # PostgreSQL gone or unreachable
    JournalUnavailable,  # NATS not answering (`--nats`, a cluster's roles)
)
EXIT_FATAL: Final = 70  # as `core.sequencer.exit_fatally`: a restart recovers from the journal


class StopFailed(Exception):
    """A stop that failed, logged as `fatal`: the command exits `EXIT_FATAL`, as a failure
    while serving does."""


def is_io_failure(error: BaseException) -> bool:
    """Whether `error` is the disk's or a service's (`IO_FAILURES`), or SQLite's own
    `DatabaseError` (a damaged file: SQLITE_CORRUPT, SQLITE_NOTADB), not its subclasses for a
    misuse (ProgrammingError, IntegrityError, InternalError, ...). A SQLite error that carries
    its result code is judged by it: an `OperationalError` is SQLITE_ERROR too ("no such
    table", a syntax error), which is the code's, not the disk's (review of session 29). A
    `StoreFailedError` (the ledger store's thread failed, its cause what failed it) is judged
    by its cause (until session 30 it was always a bug's traceback)."""
    if isinstance(error, StoreFailedError):  # the store's thread failed: by what failed it
        return error.__cause__ is not None and is_io_failure(error.__cause__)
    name: str | None = getattr(error, "sqlite_errorname", None)
    if isinstance(error, sqlite3.Error) and name is not None:
        return name.startswith(SQLITE_IO_FAILURES)
    return isinstance(error, IO_FAILURES) or type(error) is sqlite3.DatabaseError


async def stop_or_fail(stop: Coroutine[Any, Any, None], data_dir: Path) -> None:
    """Await `stop`; a failure of the disk or of a service (`is_io_failure`) is logged in one
    `fatal` line naming the file, the data directory or the store, any other with its
    traceback; both are raised as `StopFailed`. Everything acknowledged is in the journal
    (fsynced before any answer left), so the next start recovers it as after a crash. Before
    session 29 a full disk under the last snapshot said `venue: File too large`, exit 2 (a
    refused start's status), and a SQLite error would have been a traceback, exit 1."""
    try:
        await stop
    except Exception as failed:
        if is_io_failure(failed):
            log.critical(
                "fatal: the stop failed: %s; nothing acknowledged is lost: the next start"
                " recovers from the journal",
                stop_failure(failed, data_dir),
            )
        else:  # a bug or a broken invariant: what it broke is not known, so not said
            log.critical(
                "fatal: the stop failed: %s (not the disk's or a service's failure: a bug?"
                " its traceback follows; `venue verify` checks the data directory)",
                stop_failure(failed, data_dir),
                exc_info=failed,
            )
        raise StopFailed(str(failed)) from None


def stop_failure(error: BaseException, data_dir: Path) -> str:
    """What failed in a stop, on one line: a file's error names the file; a disk's that names
    none (`DISK_ERRNOS`) names the data directory; the SQLite store's names the store; any
    other (a timeout, a connection reset) is said as it is, with its kind. A `StoreFailedError`
    (the store's thread failed) is said as its cause is: it named no file before."""
    if isinstance(error, StoreFailedError) and error.__cause__ is not None:
        return stop_failure(error.__cause__, data_dir)
    if isinstance(error, OSError) and error.filename is not None:
        return describe_os_error(error)
    if isinstance(error, OSError) and error.errno in DISK_ERRNOS:
        return f"a write in {data_dir} failed: {describe_os_error(error)}"
    if isinstance(error, sqlite3.Error):
        return f"the ledger store {data_dir / LEDGER_FILE}: {one_line(error)}"
    said = describe_os_error(error) if isinstance(error, OSError) else one_line(error)
    kind = type(error).__name__
    return kind if said == kind else f"{kind}: {said}"


def _stop_on(sig: signal.Signals, stopping: asyncio.Event) -> None:
    if sig == signal.SIGHUP:
        hangup.detach_hung_up_terminal()  # the stop's lines must not fail on a closed terminal
    if not stopping.is_set():
        log.info("stopping cleanly", extra={"signal": sig.name})
    stopping.set()


async def _serve_core(
    config: venue_config.VenueConfig,
    data_dir: Path,
    nats_url: str,
    name: str,
    dsn_config: Path | None = None,
) -> None:
    """A cluster's core: standby until it holds the lease, then the active sequencer. Its stop
    signals are `StopSignals`, so that one during a takeover's replay (which holds the loop)
    ends it at its next safe point, the lease given up (until session 30 it waited for the
    replay's end). `dsn_config`: the config file whose `ledger_postgres` gave its DSN (None:
    --postgres gave it, or none is used), named where a line says to fix it."""
    signals = StopSignals()
    try:
        await _run_core(config, data_dir, nats_url, name, signals, dsn_config)
    finally:
        signals.restore()


async def _run_core(
    config: venue_config.VenueConfig,
    data_dir: Path,
    nats_url: str,
    name: str,
    signals: "StopSignals",
    dsn_config: Path | None = None,
) -> None:
    from core.cluster_core import DSN_FROM_FLAG, ClusterCore, dsn_from_config

    stopping = signals.stopping
    setting = DSN_FROM_FLAG if dsn_config is None else dsn_from_config(dsn_config)
    core = ClusterCore(config, data_dir, nats_url, name, setting)
    refused = await core.store_refused(stopping)  # before contending: the operator's to fix
    if refused is not None:
        raise CommandFailed(f"cannot start: {refused}")
    print(f"tokenvenue core {name}: NATS {shown(nats_url)}, waiting for the lease", flush=True)
    held = await _unless_stopped(core.wait_for_lease(stopping), stopping)  # NATS may be down
    try:
        active = await core.activate(stopping, signals.requested) if held else None
    except sqlite3.Error as failed:  # its SQLite store, opened as it becomes active
        raise CommandFailed(sqlite_store_refused(data_dir, failed)) from None
    except OSError as failed:  # its disk full, read-only or failing since its start's check
        refused = takeover_refused(data_dir, failed)
        if refused is None:
            raise
        raise CommandFailed(refused) from None
    except StartStopped as stopped:  # the lease given up, the data directory given back
        hangup.say_after_stop(f"tokenvenue core {name} stopped before it started ({stopped})")
        return
    if active is not None:
        demo_data.disown(data_dir)
        settle_heap()
        print(f"tokenvenue core {name} active at seq {active.sequencer.last_seq}", flush=True)
        print(f"  ledger store: {describe_store(config)}", flush=True)
        await stopping.wait()
    await stop_or_fail(core.stop(), data_dir)
    hangup.say_after_stop(f"tokenvenue core {name} stopped cleanly")


async def _serve_gateway(
    config: venue_config.VenueConfig,
    host: str,
    port: int,
    data_dir: Path,
    nats_url: str,
    name: str,
) -> None:
    """A cluster's gateway: sessions on `port`, the venue's state a replica of the stream."""
    signals = StopSignals()
    try:
        await _run_gateway(config, host, port, data_dir, nats_url, name, signals)
    finally:
        signals.restore()


async def _run_gateway(
    config: venue_config.VenueConfig,
    host: str,
    port: int,
    data_dir: Path,
    nats_url: str,
    name: str,
    signals: "StopSignals",
) -> None:
    from core.nats_bus import NatsBus

    stopping = signals.stopping
    made = missing_dirs(data_dir)  # the directories this start makes (`VenueServer`)
    try:
        server = VenueServer(
            config, data_dir, bus=lambda listener: NatsBus(config, nats_url, listener, name)
        )
        # NATS may be down: the start waits for it, unless told to stop
        bound = await _unless_stopped(server.start(host, port), stopping)
    except OSError as failed:
        remove_if_empty(made)
        raise CommandFailed(start_refused(failed, host, port, data_dir)) from None
    except sqlite3.Error as failed:
        remove_if_empty(made)
        raise CommandFailed(sqlite_store_refused(data_dir, failed)) from None
    except BaseException:
        remove_if_empty(made)
        raise
    if bound is None:  # nothing served, nothing held: the process's end closes what it opened
        remove_if_empty(made)
        print(f"tokenvenue gateway {name} stopped before it started", flush=True)
        return
    settle_heap()
    at = authority(host, bound)
    print(f"tokenvenue gateway {name}: ws://{at}/ws/trade  ws://{at}/ws/public")
    print(f"  NATS {shown(nats_url)}, replica at seq {server.core.sequencer.last_seq}", flush=True)
    await stopping.wait()
    await stop_or_fail(server.stop(), data_dir)
    hangup.say_after_stop(f"tokenvenue gateway {name} stopped cleanly")
