"""A real venue server on 127.0.0.1 (an ephemeral port, a temporary data dir) for e2e tests,
the guard that makes a venue's fatal path, reached in the pytest process, fail the test
that reached it instead of ending the whole run (`FatalGuard`), and the run's temporary files
on a RAM file system when there is one with room (`ram_temp_root`)."""

import asyncio
import itertools
import logging
import os
import shutil
import signal
import tempfile
import threading
import traceback
import zlib
from collections.abc import Awaitable, Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import Any

import msgspec
import pytest

from client.sdk import VenueClient
from cluster.postgres import PostgresServer
from core import config as venue_config
from core import sequencer, snapshots
from gateway.server import VenueServer
from tests import interleave, reporting
from tests.sample_config import SAMPLE_CONFIG

ROOT = Path(__file__).resolve().parents[1]
KEYS = {
    "alpha": ("demo-mm-alpha", "demo-secret-mm-alpha"),
    "beta": ("demo-mm-beta", "demo-secret-mm-beta"),
    "taker": ("demo-taker", "demo-secret-taker"),
    "us": ("demo-us", "demo-secret-us"),
    "admin": ("demo-admin", "demo-secret-admin"),
}
TEST_TIMEOUT_S = 20  # every e2e test finishes well within this on a busy 2-core machine
FATAL_EXIT_CODE = 70  # a venue's exit on its fatal path (`core.sequencer.exit_fatally`)
RAM_DIRECTORY = Path("/dev/shm")  # Linux's tmpfs, writable by every user
# A run's temporary files take tens of MB at a time (pytest keeps its last three runs' few MB):
# 1 GiB free is a wide margin, and keeps off a container's default 64 MB /dev/shm.
RAM_FREE_MIN_BYTES = 1 << 30
# Where a user says where temporary files go: each, when set, is kept as chosen.
TEMP_DIRECTORY_VARIABLES = ("TMPDIR", "TEMP", "TMP", "PYTEST_DEBUG_TEMPROOT")


@pytest.fixture(autouse=True)
def no_interleave_step_left() -> Iterator[None]:
    """Forget the steps a test armed (tests/interleave.py) and did not run: a test that failed
    before its own `disarm` must not leave one to fire in the next test of this worker."""
    yield
    interleave.disarm()


def ram_temp_root(
    environ: Mapping[str, str],
    candidate: Path = RAM_DIRECTORY,
    free_min_bytes: int = RAM_FREE_MIN_BYTES,
) -> Path | None:
    """Where the run's temporary files go instead of the default: `candidate` (a RAM file
    system) when no temporary directory was chosen (TMPDIR, TEMP or TMP, which Python reads,
    or pytest's PYTEST_DEBUG_TEMPROOT: the user's choice is kept) and `candidate` is a
    writable directory with `free_min_bytes` free; None leaves them where they are."""
    if any(environ.get(name) for name in TEMP_DIRECTORY_VARIABLES):
        return None
    try:
        stats = os.statvfs(candidate)
    except OSError:  # no such directory (not Linux)
        return None
    if not candidate.is_dir() or not os.access(candidate, os.W_OK | os.X_OK):
        return None
    if stats.f_bavail * stats.f_frsize < free_min_bytes:
        return None
    # tmpfs's free space is nominal: its files take memory, so the memory must be there too
    return candidate if _memory_available_bytes() >= free_min_bytes else None


def _memory_available_bytes() -> int:
    """`MemAvailable` of /proc/meminfo (Linux); 0 where it cannot be read."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class FatalGuard:
    """A venue's fatal path reached in the pytest process fails the test that reached it.

    In a venue the path (`core.sequencer.exit_fatally`, from the sequencer's `_die` and the
    cluster's `die`) is `os._exit(70)`: in-process, that ended the whole run with 70 and no
    report. Set as `core.sequencer.fatal_hook` for the session, the guard notes the failure
    and interrupts the main thread once (a SIGINT to it): `asyncio.run` cancels the test's
    main task (so its `finally` stops the venue, which would otherwise stay half alive and
    hang the test), and a synchronous test gets KeyboardInterrupt. The phase that was running
    (setup, call, teardown) then fails with the failure's text, whatever it raised, and the
    run goes on. Reached between phases (a leftover thread), it fails the next phase without
    interrupting. Processes the tests start are not guarded: they run their own interpreter
    and exit 70; a child forked from pytest exits 70 too.

    In a teardown the interrupt is `FatalPathInterrupt`, an Exception: pytest runs a node's
    finalizers catching Exception only, so a KeyboardInterrupt in one (a fixture stopping an
    in-process venue whose stop reached the path) skipped the others (a monkeypatch left
    undone, a module's processes left running) and left the node on pytest's stack, failing
    the next test ("previous item was not torn down properly").
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.reached: list[str] = []  # each failure's text, until its phase reports it
        self.in_phase = False  # a test's setup, call or teardown is running
        self.interrupted = False  # the main thread was interrupted during this phase
        self._lock = threading.Lock()  # the hook runs on any thread (the store's, the loop's)

    def __call__(self, failure: BaseException | None) -> None:
        if os.getpid() != self.pid:  # a forked child ends as a venue would
            logging.shutdown()
            os._exit(FATAL_EXIT_CODE)
        text = "None" if failure is None else "".join(traceback.format_exception(failure))
        with self._lock:  # sent under the lock: the phase's end, which takes it, then knows
            self.reached.append(text)  # it was sent, and takes it (`_end_phase`)
            if self.in_phase and not self.interrupted:
                self.interrupted = True
                main_thread = threading.main_thread().ident
                assert main_thread is not None, "the main thread runs pytest"
                signal.pthread_kill(main_thread, signal.SIGINT)

    def phase(self, teardown: bool = False) -> Generator[None, Any, Any]:
        """Run a test's phase (a hook wrapper's body); fail it if the fatal path was reached
        in it (or since the last phase): the KeyboardInterrupt (a teardown's
        `FatalPathInterrupt`) sent for it is not the user's."""
        handler_before = self._interrupt_teardown_as_exception() if teardown else None
        with self._lock:
            self.in_phase, self.interrupted = True, False
        try:
            result = yield
        except BaseException:
            if not self.reached:
                raise
            result = None
        finally:
            self._end_phase()
            if handler_before is not None:
                signal.signal(signal.SIGINT, handler_before)
        self.report()
        return result

    def _interrupt_teardown_as_exception(self) -> Any:
        """SIGINT raises `FatalPathInterrupt` when the guard sent it (the user's Ctrl-C is
        still KeyboardInterrupt); the handler it replaces, or None off the main thread."""
        if threading.current_thread() is not threading.main_thread():
            return None  # only the main thread sets handlers (and is interrupted)

        def interrupted(signum: int, frame: Any) -> None:
            if self.interrupted:
                raise FatalPathInterrupt("a venue reached its fatal path during this teardown")
            signal.default_int_handler(signum, frame)

        return signal.signal(signal.SIGINT, interrupted)

    def _end_phase(self) -> None:
        """End the phase; the SIGINT sent during it, if not taken yet (sent as it ended), is
        taken here, not in pytest's own code, which it would stop. It may come as the
        KeyboardInterrupt of any call here (waiting for the lock included): each is ours
        (one a phase), and the phase is ended again, till it ends without one."""
        while True:
            try:
                with self._lock:
                    self.in_phase, interrupted = False, self.interrupted
                if interrupted:
                    _take_pending_sigint()
                return
            except (KeyboardInterrupt, FatalPathInterrupt):
                continue

    def report(self) -> None:
        """Fail with the failures noted so far, if any (a venue's exit 70 outside tests)."""
        with self._lock:
            reached, self.reached = self.reached, []
        if reached:
            pytest.fail(
                f"a venue reached its fatal path (exit {FATAL_EXIT_CODE} outside tests):\n"
                + "\n".join(reached),
                pytrace=False,
            )


class FatalPathInterrupt(Exception):
    """The guard's interrupt of a teardown (`FatalGuard`): an Exception, which pytest's
    teardown catches per finalizer and goes on with the next."""


def _take_pending_sigint() -> None:
    """Take a SIGINT sent to this (the main) thread, if not yet handled: still pending in the
    kernel (taken without its handler), or delivered and its handler not run yet (run now, by
    the next call: its KeyboardInterrupt is raised here)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        if signal.SIGINT in signal.sigpending():
            signal.sigwait({signal.SIGINT})
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    _handle_signals()


def _handle_signals() -> None:
    """Nothing: a Python call, where the interpreter runs the handlers of signals come."""


_fatal_guard = FatalGuard()
ram_temp_root_chosen: Path | None = None  # set by `pytest_configure`


def pytest_configure(config: pytest.Config) -> None:
    sequencer.fatal_hook = _fatal_guard
    if not config.pluginmanager.is_registered(reporting):
        config.pluginmanager.register(reporting, "reporting")
    # Every journal commit, ledger booking and account registration is fsynced: 1-2 ms each
    # on a disk that a loaded machine shares, a large part of the suite's time (a test that
    # registers 2,000 accounts: 3 s on disk, 0.1 s on tmpfs). The files, calls and processes
    # stay the same, and a kill -9 keeps what it keeps on a disk: the tests cut no power.
    global ram_temp_root_chosen
    if config.option.basetemp is None:  # a --basetemp given is the user's choice too
        ram_temp_root_chosen = ram_temp_root(os.environ)
    if ram_temp_root_chosen is not None:
        os.environ["TMPDIR"] = str(ram_temp_root_chosen)  # the processes the tests start too
        tempfile.tempdir = None  # read again from TMPDIR (by pytest's tmp_path too)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _fatal_guard.phase())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _fatal_guard.phase())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _fatal_guard.phase(teardown=True))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A fatal path reached after the last test's teardown still fails the run."""
    if _fatal_guard.reached:
        print(f"\n{len(_fatal_guard.reached)} fatal failure(s) after the last test:")
        print("\n".join(_fatal_guard.reached))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# A snapshot's body damaged past its checksum (what a bug's write, or a bit flipped before the
# CRC was counted, leaves): `rewritten_snapshot`. `NOT_UTF8_MARK`, a string the body holds
# nowhere else, is written as `NOT_UTF8`, a msgpack string of four bytes that are not UTF-8.
NOT_UTF8 = b"\xa4\xff\xfe\xfd\xfc"
NOT_UTF8_MARK = "QZQZ"


def rewritten_snapshot(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Write the snapshot in `path` again after `change(its gateway part)`, each
    `NOT_UTF8_MARK` in it as `NOT_UTF8`, its checksum right."""
    data = path.read_bytes()
    magic, seq, _, _ = snapshots.HEADER.unpack_from(data)
    body = msgspec.msgpack.decode(data[snapshots.HEADER.size :])
    change(body["gateway"])
    new = msgspec.msgpack.encode(body).replace(msgspec.msgpack.encode(NOT_UTF8_MARK), NOT_UTF8)
    path.write_bytes(snapshots.HEADER.pack(magic, seq, zlib.crc32(new), len(new)) + new)


def with_an_entry_not_decoding(path: Path, keys: tuple[str, ...]) -> str:
    """Write the snapshot in `path` again with its first account's entry in the per-account
    map at `keys` not decoding as its kind, its checksum right: in the order history a
    record's symbol not UTF-8, in the private histories a stream's seq a string. The account,
    as the map keys it."""
    accounts: list[str] = []

    def change(gateway: dict[str, Any]) -> None:
        part = gateway
        for key in keys:
            part = part[key]
        accounts.append(next(iter(part)))
        if keys == ("private",):
            part[accounts[0]][0] = "a seq"
        else:
            part[accounts[0]][1][0]["symbol"] = NOT_UTF8_MARK

    rewritten_snapshot(path, change)
    return str(accounts[0])


class Venue:
    """The running server and a way to open logged-on clients to it."""

    def __init__(self, server: VenueServer, port: int) -> None:
        self.server = server
        self.port = port
        self.clients: list[VenueClient] = []

    def url(self, endpoint: str = "trade") -> str:
        return f"ws://127.0.0.1:{self.port}/ws/{endpoint}"

    async def client(self, who: str | None = None, endpoint: str = "trade") -> VenueClient:
        client = await VenueClient(self.url(endpoint)).connect()
        self.clients.append(client)
        if who is not None:
            await client.logon(*KEYS[who])
        return client

    async def restart_without(self, symbol: str | None, data_dir: Path) -> None:
        """Stop the server and start another on its port and `data_dir`, of the sample config
        less `symbol` (a venue started again no longer listing it), if given."""
        await self.server.stop()
        config = venue_config.load(SAMPLE_CONFIG)
        kept = tuple(entry for entry in config.instruments if entry.symbol != symbol)
        self.server = VenueServer(msgspec.structs.replace(config, instruments=kept), data_dir)
        await self.server.start("127.0.0.1", self.port)


async def start_venue(data_dir: Path, config: venue_config.VenueConfig | None = None) -> Venue:
    """A venue of `config` (the sample's by default) on an ephemeral port."""
    server = VenueServer(config or venue_config.load(SAMPLE_CONFIG), data_dir)
    port = await server.start("127.0.0.1", 0)
    return Venue(server, port)


@pytest.fixture
def run_venue(tmp_path: Path) -> Callable[[Callable[[Venue], Awaitable[Any]]], Any]:
    """Run `scenario(venue)` against a fresh server, bounded in time, then stop it."""

    def run(scenario: Callable[[Venue], Awaitable[Any]]) -> Any:
        async def main() -> Any:
            venue = await start_venue(tmp_path / "data")
            try:
                return await asyncio.wait_for(scenario(venue), TEST_TIMEOUT_S)
            finally:
                for client in venue.clients:
                    await client.close()
                await venue.server.stop()

        return asyncio.run(main())

    return run


HEARTBEATS_SKIPPED_MAX = 5  # one per second of silence: a loaded box can be quiet a few


async def next_push_not_heartbeat(
    client: VenueClient, timeout_s: float = 5.0, max_skipped: int = HEARTBEATS_SKIPPED_MAX
) -> dict[str, Any]:
    """The next push that is not a `heartbeat` (docs/protocol.md §9.7), for a test about
    something else: any connection silent for 1 s gets one, so on a loaded machine one can
    come before the push a test waits for. Fails after `max_skipped` heartbeats in a row."""
    for _ in range(max_skipped + 1):
        push = await client.next_push(timeout_s)
        if push.get("ch") != "heartbeat":
            return push
    raise AssertionError(f"only heartbeats: {max_skipped + 1} in a row")


# A drain reads what a test's few requests caused: a few hundred pushes at most, within a
# few seconds on a busy machine. Past either, the stream never goes quiet: the test fails.
DRAIN_PUSHES_MAX = 10_000
DRAIN_WITHIN_S = 10.0  # under TEST_TIMEOUT_S, so the drain's own failure is what is reported


async def drain_pushes(
    client: VenueClient,
    wait_s: float = 0.3,
    within_s: float = DRAIN_WITHIN_S,
    pushes_max: int = DRAIN_PUSHES_MAX,
) -> list[dict[str, Any]]:
    """Every push but heartbeats that arrives within `wait_s` of the last one, in order.

    A `heartbeat` (docs/protocol.md §9.7) is skipped and does not count as a push for the
    quiet `wait_s`: with heartbeats more often than `wait_s` the drain would never end.
    Bounded: fails if the pushes do not go quiet within `within_s`, or after `pushes_max`
    read (heartbeats too) without a quiet `wait_s`."""
    loop = asyncio.get_running_loop()
    given_up_at = loop.time() + within_s
    quiet_at = loop.time() + wait_s
    pushes: list[dict[str, Any]] = []
    for _ in range(pushes_max):
        try:
            push = await client.next_push(max(quiet_at - loop.time(), 0.0))
        except TimeoutError:
            return pushes
        if push.get("ch") == "heartbeat":
            continue
        if loop.time() > given_up_at:
            raise AssertionError(f"pushes still coming after {within_s} s: {len(pushes)} read")
        pushes.append(push)
        quiet_at = loop.time() + wait_s
    raise AssertionError(f"{pushes_max} pushes read and still coming (heartbeats count too)")


_database_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL on a free loopback port, once per test module, stopped after it.

    Its directory is made in the run's temporary directory (/dev/shm when `pytest_configure`
    chose it, else /tmp), not pytest's tmp_path: the server runs as the postgres
    user, who may not enter root's private pytest directories."""
    directory = Path(tempfile.mkdtemp(prefix="venue-test-pg-"))
    directory.chmod(0o711)
    server = PostgresServer(directory)
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def stopped_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of the test's own, initialised and stopped (its `port` the last one it
    ran on), for a test that starts it as it needs; stopped and removed after."""
    directory = Path(tempfile.mkdtemp(prefix="venue-test-pg-"))
    directory.chmod(0o711)
    server = PostgresServer(directory)
    try:
        server.start()
        server.stop()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the module's server, dropped after the test (so the
    server's stop has little to checkpoint)."""
    name = f"test_{next(_database_numbers)}"
    yield postgres_server.create_database(name)
    postgres_server.drop_database(name)
