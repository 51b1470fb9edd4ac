"""`venue serve --nats`: the one-machine venue with its journal on JetStream, as real processes
(a nats-server and the venue, each on free ports and in the test's temp directory)."""

import asyncio
import datetime
import os
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import nats
import pytest

from cli import serve as serve_module
from client.sdk import VenueClient
from cluster.nats import NatsCluster, free_ports
from core import config as venue_config
from core.cluster_core import LEASE_TTL_S
from core.jetstream_journal import STREAM_DEFAULT, JetStreamJournal, JournalStreamMissing
from core.lease import Lease
from tests.cli.test_main import (
    CONFIG,
    RUN_TIMEOUT_S,
    SERVE,
    START_LINES_MAX,
    _env,
    failed_in_one_line,
    venue,
)
from tests.conftest import KEYS
from tests.sample_config import SAMPLE_CONFIG, bill_dates

SYMBOL = "AAPLx-USD"
CORE_LINES_MAX = 40  # a core says it is active or standby within its first few lines


@pytest.fixture
def nats_node(tmp_path: Path) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path / "nats", size=1) as node:
        yield node


def start(
    tmp_path: Path, data_dir: Path, *flags: str, log: Path | None = None
) -> tuple[subprocess.Popen[str], str]:
    """`venue serve` on a free port; the process and its trade URL once it listens (its log
    written to `log`, if given; else to a file of its own, whose end a start that never
    listens is failed with: it was discarded, and a start refused once in a loaded run of
    tests/cli said nothing of why)."""
    if log is None:
        handle, name = tempfile.mkstemp(prefix="serve-", suffix=".log", dir=tmp_path)
        os.close(handle)
        log = Path(name)
    with open(log, "w") as stderr:  # the child keeps its own copy
        server = subprocess.Popen(
            [*SERVE, "--port", "0", "--data-dir", str(data_dir), *flags],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=_env(),
        )
    assert server.stdout is not None
    for _ in range(START_LINES_MAX):  # bounded: the line comes first or never
        line = server.stdout.readline()
        if line.startswith("tokenvenue listening:"):
            return server, line.split()[2]
    server.kill()
    server.communicate(timeout=RUN_TIMEOUT_S)
    raise AssertionError(f"the server did not start: {log.read_text()[-4000:]}")


def serve_refused(tmp_path: Path, data_dir: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """`venue serve` expected to fail at start: its exit and output."""
    return subprocess.run(
        [*SERVE, "--port", "0", "--data-dir", str(data_dir), *flags],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        env=_env(),
    )


def start_core(tmp_path: Path, name: str, nats_url: str) -> subprocess.Popen[str]:
    """A cluster's core on the stream (`venue serve --role core`), its output piped."""
    flags = ["--role", "core", "--name", name, "--data-dir", str(tmp_path / name)]
    return subprocess.Popen(
        [*SERVE, *flags, "--nats", nats_url],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )


def expect_line(stream: IO[str] | None, text: str) -> str:
    """The first line of `stream` holding `text`, within `CORE_LINES_MAX` lines and
    `RUN_TIMEOUT_S` (a core that says nothing more would block a bare `readline` for good:
    there is no pytest-timeout). Read by a daemon thread, which ends once the test's
    `finally` has stopped the process (its pipe then at its end)."""
    assert stream is not None
    found: list[str] = []

    def read() -> None:
        for _ in range(CORE_LINES_MAX):
            line = stream.readline()
            if text in line:
                found.append(line)
                return
            if not line:  # the process ended
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(RUN_TIMEOUT_S)
    if not found:
        raise AssertionError(f"no line with {text!r}")
    return found[0]


def stop(server: subprocess.Popen[str], how: signal.Signals) -> tuple[str, str]:
    """`server` stopped by `how`; killed if it has not ended within `RUN_TIMEOUT_S` (a test
    that fails must leave no process running). Its remaining output."""
    try:
        server.send_signal(how)
        return server.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate(timeout=RUN_TIMEOUT_S)


async def place_resting_orders(url: str, count: int) -> list[int]:
    async with VenueClient(url) as client:
        await client.logon(*KEYS["beta"])
        placed = [await client.place(SYMBOL, "buy", "1", f"10{index}.00") for index in range(count)]
        return sorted(order["order_id"] for order in placed)


async def open_order_ids(url: str) -> list[int]:
    async with VenueClient(url) as client:
        await client.logon(*KEYS["beta"])
        orders = (await client.open_orders(SYMBOL))["orders"]
        return sorted(order["order_id"] for order in orders)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill-9"])
def test_orders_placed_are_recovered_from_jetstream_after_a_restart(
    tmp_path: Path, nats_node: NatsCluster, how: signal.Signals
) -> None:
    """After kill -9 the restart (the same data directory) takes its dead run's lease over;
    after SIGTERM it was released."""
    data_dir = tmp_path / "data"
    server, url = start(tmp_path, data_dir, "--nats", nats_node.url)
    try:
        placed = asyncio.run(asyncio.wait_for(place_resting_orders(url, 3), 30))
    finally:
        stop(server, how)
    assert not (data_dir / "journal.log").exists()  # the journal is the stream, not a file
    server, url = start(tmp_path, data_dir, "--nats", nats_node.url)
    try:
        assert asyncio.run(asyncio.wait_for(open_order_ids(url), 30)) == placed
    finally:
        stop(server, signal.SIGTERM)
    journal = JetStreamJournal(nats_node.url, stream=STREAM_DEFAULT, create=False)
    try:
        assert journal.last_seq() >= len(placed)  # the setup commands and the three orders
    finally:
        journal.close()


def test_a_restart_after_kill_9_takes_its_dead_runs_lease_over_at_once(
    tmp_path: Path, nats_node: NatsCluster
) -> None:
    """The restart holds the data directory's lease lock, which the killed run held until it
    died: it takes that run's key over instead of waiting for it to expire (before: ~10 s,
    the lease's TTL after the last renewal), and the killed run's orders are there."""
    data_dir = tmp_path / "data"
    server, url = start(tmp_path, data_dir, "--nats", nats_node.url)
    try:
        placed = asyncio.run(asyncio.wait_for(place_resting_orders(url, 2), 30))
    finally:
        stop(server, signal.SIGKILL)
    log = tmp_path / "restart.log"
    server, url = start(tmp_path, data_dir, "--nats", nats_node.url, log=log)
    try:
        assert asyncio.run(asyncio.wait_for(open_order_ids(url), 30)) == placed
    finally:
        stop(server, signal.SIGTERM)
    # Said in the log rather than timed: a loaded machine's start alone can take the TTL/2
    # this once allowed (6.8 s seen with the suite on two workers beside other jobs).
    said = log.read_text()
    assert "holding the lease" in said  # the log is there to read
    assert "for it to expire" not in said, "it waited for the key to expire"


def test_serve_with_an_unreachable_nats_fails_in_one_line(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    result = subprocess.run(
        [
            *SERVE,
            "--port",
            "0",
            "--data-dir",
            str(tmp_path / "data"),
            "--nats",
            f"nats://127.0.0.1:{port}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        env=_env(),
    )
    failed_in_one_line(result, "cannot start", f"cannot reach NATS at nats://127.0.0.1:{port}")
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("role", ["core", "gateway"])
def test_a_cluster_role_waiting_for_nats_stops_at_sigterm(tmp_path: Path, role: str) -> None:
    """Found in session 22: a core or a gateway started while NATS is down waits for it (its
    connection retries without end, a warning each try), and ignored SIGTERM meanwhile (the
    handler set an event nobody waited on): a supervisor could only kill it. Found in
    session 23: the gateway left the data directory it had made, empty, behind."""
    (port,) = free_ports(1)
    command = [*SERVE, "--role", role, "--name", "x", "--data-dir", str(tmp_path / role)]
    server = subprocess.Popen(
        [*command, "--port", "0", "--nats", f"nats://127.0.0.1:{port}"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        expect_line(server.stderr, "Connection refused")  # trying NATS: the handlers are set
        server.send_signal(signal.SIGTERM)
        assert server.wait(RUN_TIMEOUT_S) == 0
        assert not (tmp_path / role).exists()  # main: the gateway's, made and left empty
    finally:
        if server.poll() is None:
            server.kill()
        server.communicate(timeout=RUN_TIMEOUT_S)


def test_a_second_venue_on_one_stream_is_refused_naming_the_holder(
    tmp_path: Path, nats_node: NatsCluster
) -> None:
    """Another data directory, the same stream: the lease refuses it before it makes its
    directory; the first goes on serving."""
    first_dir = tmp_path / "first"
    first, first_url = start(tmp_path, first_dir, "--nats", nats_node.url)
    try:
        second = serve_refused(tmp_path, tmp_path / "second", "--nats", nats_node.url)
        holder = f"is held by venue serve on {socket.gethostname()} (data dir {first_dir})"
        failed_in_one_line(second, "cannot start: the lease of stream VENUE_COMMANDS", holder)
        assert not (tmp_path / "second").exists()
        assert asyncio.run(asyncio.wait_for(place_resting_orders(first_url, 1), 30)) != []
    finally:
        stop(first, signal.SIGTERM)


def test_a_venue_refused_the_lease_leaves_its_data_directory_as_found(
    tmp_path: Path, nats_node: NatsCluster
) -> None:
    """The last session's finding: a data directory that existed (here one that has served
    on the stream before, stopped cleanly) met a lease held by another venue: the refusal
    left a new `lease.lock` and this start's record in `lease.runs` there. Given back now,
    and the directory serves again as soon as the lease is free."""
    data_dir = tmp_path / "second"
    data_dir.mkdir()
    fresh = serve_refused_while_held(tmp_path, data_dir, nats_node)
    failed_in_one_line(fresh, "cannot start: the lease of stream VENUE_COMMANDS")
    assert list(data_dir.iterdir()) == []
    server, _ = start(tmp_path, data_dir, "--nats", nats_node.url)
    stop(server, signal.SIGTERM)
    before = {path.name: path.read_bytes() for path in data_dir.iterdir()}
    assert {"lease.lock", "lease.runs"} <= set(before)
    used = serve_refused_while_held(tmp_path, data_dir, nats_node)
    failed_in_one_line(used, "cannot start: the lease of stream VENUE_COMMANDS")
    assert {path.name: path.read_bytes() for path in data_dir.iterdir()} == before


def test_a_venue_on_a_new_stream_refused_by_its_config_leaves_its_data_directory_as_found(
    tmp_path: Path, nats_node: NatsCluster
) -> None:
    """With `--nats` the config is checked only once the stream is open (the venue may exist
    there already): a bill a year and more out refused the start after the lease, the
    directory's ledger store and epochs file were made, leaving `lease.lock`, `lease.runs`,
    `ledger.sqlite` and `epochs.json` in the directory (session 22), and the stream it had
    created, empty, on NATS (session 23)."""
    text = Path(CONFIG).read_text()
    last = bill_dates(text)[-1]
    far = datetime.datetime.now(datetime.UTC).date() + datetime.timedelta(days=400)
    config = tmp_path / "venue.toml"
    config.write_text(text.replace(f"maturity = {last.isoformat()}", f"maturity = {far}", 1))
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    flags = ["--port", "0", "--data-dir", str(data_dir), "--nats", nats_node.url]
    result = subprocess.run(
        [*SERVE[:-1], str(config), *flags],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        env=_env(),
    )
    assert result.returncode == 2, result.stderr
    assert "venue: cannot start: config: TB-" in result.stderr
    assert list(data_dir.iterdir()) == []
    with pytest.raises(JournalStreamMissing):  # main: the stream it made, empty, was left
        JetStreamJournal(nats_node.url, create=False)


def serve_refused_while_held(
    tmp_path: Path, data_dir: Path, nats_node: NatsCluster
) -> subprocess.CompletedProcess[str]:
    """`venue serve --nats` on `data_dir` while a venue on another directory holds the lease."""
    holder, _ = start(tmp_path, tmp_path / "holder", "--nats", nats_node.url)
    try:
        refused = serve_refused(tmp_path, data_dir, "--nats", nats_node.url)
    finally:
        stop(holder, signal.SIGTERM)
    assert holder.returncode == 0, "the holder's clean stop"
    holder_now = asyncio.run(asyncio.wait_for(lease_holder(nats_node.url), 30))
    assert holder_now is None, f"the clean stop gave the lease back, not: held by {holder_now}"
    return refused


def test_after_a_clean_stop_a_venue_on_another_data_dir_takes_the_stream_at_once(
    tmp_path: Path, nats_node: NatsCluster
) -> None:
    """The clean stop released the lease: held, it would refuse this venue at once (it is
    not the holder's data directory), so starting is proof that it did not wait for a TTL."""
    first, first_url = start(tmp_path, tmp_path / "first", "--nats", nats_node.url)
    try:
        placed = asyncio.run(asyncio.wait_for(place_resting_orders(first_url, 2), 30))
    finally:
        stop(first, signal.SIGTERM)
    second, second_url = start(tmp_path, tmp_path / "second", "--nats", nats_node.url)
    try:  # a new data directory: the whole stream replayed
        assert asyncio.run(asyncio.wait_for(open_order_ids(second_url), 30)) == placed
    finally:
        stop(second, signal.SIGTERM)


def test_a_writer_that_bypasses_the_lease_makes_the_venues_next_write_fatal(
    tmp_path: Path, nats_node: NatsCluster
) -> None:
    """The second guard: a record appended behind the venue's back (no lease taken) makes the
    venue's next append fail the stream's expected last sequence (`JournalConflict`), which
    is fatal: it exits and acknowledges nothing."""
    first, first_url = start(tmp_path, tmp_path / "first", "--nats", nats_node.url)
    try:
        asyncio.run(asyncio.wait_for(place_resting_orders(first_url, 1), 30))
        rogue = JetStreamJournal(nats_node.url, stream=STREAM_DEFAULT, create=False)
        try:
            rogue.commit([(rogue.last_seq() + 1, b"a record behind the venue's back")])
        finally:
            rogue.close()
        with pytest.raises((ConnectionError, OSError, TimeoutError)):
            asyncio.run(asyncio.wait_for(place_resting_orders(first_url, 1), 30))
        assert first.wait(RUN_TIMEOUT_S) == 70  # the sequencer's fatal exit
    finally:
        if first.poll() is None:
            stop(first, signal.SIGTERM)
        else:
            first.communicate(timeout=RUN_TIMEOUT_S)


def test_a_cluster_core_holding_the_lease_refuses_a_venue_on_its_stream(
    tmp_path: Path, nats_node: NatsCluster
) -> None:
    core = start_core(tmp_path, "core-a", nats_node.url)
    try:
        assert expect_line(core.stdout, "tokenvenue core core-a active at seq")
        refused = serve_refused(tmp_path, tmp_path / "venue", "--nats", nats_node.url)
        failed_in_one_line(refused, "cannot start", "is held by core-a: another venue")
    finally:
        stop(core, signal.SIGTERM)


def test_a_cluster_core_started_beside_a_venue_on_its_stream_waits_as_a_standby(
    tmp_path: Path, nats_node: NatsCluster
) -> None:
    """The core takes the venue for another core: it waits, never acting on the stream."""
    venue_dir = tmp_path / "venue"
    server, url = start(tmp_path, venue_dir, "--nats", nats_node.url)
    try:
        core = start_core(tmp_path, "core-a", nats_node.url)
        try:
            standby = expect_line(core.stderr, "the lease is held: standby")
            assert f"(data dir {venue_dir})" in standby, standby
            assert asyncio.run(asyncio.wait_for(place_resting_orders(url, 1), 30)) != []
        finally:
            stop(core, signal.SIGTERM)
        assert core.returncode == 0
    finally:
        stop(server, signal.SIGTERM)


def test_a_second_venue_on_one_data_dir_is_refused_whatever_the_journal(
    tmp_path: Path, nats_node: NatsCluster
) -> None:
    """A JetStream journal takes no file lock: the data dir's venue.lock refuses the second
    venue (and verify) before either touches the directory's files (epochs.json), and before
    the lease (which would name the first)."""
    data_dir = tmp_path / "data"
    first, first_url = start(tmp_path, data_dir, "--nats", nats_node.url)
    try:
        epochs = (data_dir / "epochs.json").read_bytes()
        second = serve_refused(tmp_path, data_dir, "--nats", nats_node.url)
        failed_in_one_line(second, "cannot start", "venue.lock", "another writer")
        checked = venue(tmp_path, "verify", "--config", CONFIG, "--data-dir", str(data_dir))
        failed_in_one_line(checked, "in use by a running venue", "stop it first")
        assert (data_dir / "epochs.json").read_bytes() == epochs
        asyncio.run(asyncio.wait_for(place_resting_orders(first_url, 1), 30))
    finally:
        stop(first, signal.SIGTERM)


def test_a_cluster_core_taking_over_a_venues_stream_stops_in_one_line(
    tmp_path: Path, nats_node: NatsCluster
) -> None:
    """The venue's records are not a cluster's: the core that takes the lease once the venue
    stopped cleanly names the record it cannot read and exits 2, not with a traceback."""
    server, url = start(tmp_path, tmp_path / "venue", "--nats", nats_node.url)
    try:
        assert asyncio.run(asyncio.wait_for(place_resting_orders(url, 1), 30)) != []
    finally:
        stop(server, signal.SIGTERM)
    core = start_core(tmp_path, "core-a", nats_node.url)
    _, errors = core.communicate(timeout=RUN_TIMEOUT_S)
    assert core.returncode == 2, errors
    assert "Traceback" not in errors, errors
    assert "journal record 1 is not a cluster's record" in errors, errors
    assert "written by `venue serve --nats`" in errors, errors
    assert asyncio.run(asyncio.wait_for(lease_holder(nats_node.url), 30)) is None


async def lease_holder(url: str) -> str | None:
    """Who holds the cluster's core lease now (None: nobody, a standby takes it at once)."""
    nc = await nats.connect(url)
    try:
        lease = await Lease.open(nc.jetstream(timeout=1.0), "reader", ttl_s=LEASE_TTL_S)
        return await lease.holder_now()
    finally:
        await nc.close()


def test_a_core_refused_at_its_start_gives_its_lease_up_at_once(
    tmp_path: Path, nats_node: NatsCluster
) -> None:
    """The finding (session 28's closing note): a core that took the lease and was then
    refused at its start (here its SQLite ledger store is no database) exited 2 holding it,
    so a standby waited out the term (`LEASE_TTL_S`, 10 s) before it could take over. The
    refused core gives it up before it exits: nobody holds it once the refusal is said."""
    data_dir = tmp_path / "core-a"
    data_dir.mkdir()
    (data_dir / "ledger.sqlite").write_bytes(b"not a database, only text on its first page " * 99)
    core = start_core(tmp_path, "core-a", nats_node.url)
    _, errors = core.communicate(timeout=RUN_TIMEOUT_S)
    assert core.returncode == 2, errors
    assert "Traceback" not in errors, errors
    assert "venue: cannot start: the ledger store" in errors.splitlines()[-1], errors
    assert "holding the lease: active core" in errors, "refused once it held the lease"
    assert asyncio.run(asyncio.wait_for(lease_holder(nats_node.url), 30)) is None


@pytest.mark.parametrize("catcher", ["main", "other"], ids=["main-thread", "another-thread"])
def test_a_sigterm_while_it_connects_to_nats_stops_the_start_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], catcher: str
) -> None:
    """The review's finding (a regression of session 29): with `--nats`, a stop signal while
    the lease's connection to NATS was tried (`CONNECT_TIMEOUT_S` a server, 5 s, and retried)
    was held back until that ended, and the venue then exited 2, `cannot reach NATS`. The
    taking of the lease is raced against the stop now: the start ends at once, given back,
    as a stop during a replay does. NATS here is a listener that never says its INFO, so
    nats-py waits on it; the signal goes once it is connected to, and it tried only once.
    Session 38's finding: caught by another thread than the loop's (a process-directed
    SIGTERM, a supervisor's, may go to any thread: the lease's, the store's), or by the
    loop's an instant before it slept in its selector (seen once in a full run: this test's
    SIGTERM waited out the connect's 25 tries, `NoServersError`), a signal was handled only
    at the loop's next wake (plain asyncio, as here: uvloop watches a wakeup fd of its own),
    here the connect's end. In this process: `_serve`, its stop signals' handlers put back
    after it."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(RUN_TIMEOUT_S)  # bounded: the venue connects at once or never
    connected: list[socket.socket] = []
    main_thread = threading.main_thread().ident
    assert main_thread is not None

    def stop_once_connected() -> None:
        connected.append(listener.accept()[0])  # kept open: nats-py waits for its INFO
        catching = main_thread if catcher == "main" else threading.get_ident()
        signal.pthread_kill(catching, signal.SIGTERM)

    stopper = threading.Thread(target=stop_once_connected)
    stopper.start()
    data_dir = tmp_path / "data"
    url = f"nats://127.0.0.1:{listener.getsockname()[1]}"
    try:
        asyncio.run(
            serve_module._serve(venue_config.load(SAMPLE_CONFIG), "127.0.0.1", 0, data_dir, url)
        )
    finally:
        stopper.join(RUN_TIMEOUT_S)
        connected += connections_waiting(listener)  # the connect's later tries, if it made any
        for connection in connected:
            connection.close()
        listener.close()
    stopped = "tokenvenue stopped before it started (while it took the lease of the stream on NATS)"
    assert capsys.readouterr().out.splitlines()[-1] == stopped
    assert len(connected) == 1, "it tried NATS again after the stop: it slept through the signal"
    assert not data_dir.exists()  # nothing made, nothing left


def connections_waiting(listener: socket.socket) -> list[socket.socket]:
    """The connections made to `listener` and not accepted yet (its backlog, taken now)."""
    listener.setblocking(False)
    waiting = []
    while True:
        try:
            waiting.append(listener.accept()[0])
        except BlockingIOError:
            return waiting


def test_a_stop_that_cuts_off_the_lease_s_winning_write_still_gives_the_lease_back(
    tmp_path: Path, nats_node: NatsCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """The review's finding: a stop racing the take canceled the lease's thread mid-request,
    so a write that had taken the lease, its answer not yet read, left the lease held under
    this run's name for a whole term (`release` knew of no term won to give back): the next
    start waited it out. The write is now run to its end, and the lease given back. Here the
    answer is held back 0.3 s past the write (a slow NATS), and SIGTERM sent meanwhile."""
    main_thread = threading.main_thread().ident
    assert main_thread is not None
    write = Lease._write
    cut_off: list[int] = []

    async def slow_answer(lease: Lease, value: bytes, expected: int, delete: bool = False) -> int:
        revision = await write(lease, value, expected, delete)
        if not delete and not cut_off:  # the take's write: written, its answer not yet back
            cut_off.append(revision)
            signal.pthread_kill(main_thread, signal.SIGTERM)
            await asyncio.sleep(0.3)
        return revision

    data_dir = tmp_path / "data"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Lease, "_write", slow_answer)
        asyncio.run(
            serve_module._serve(
                venue_config.load(SAMPLE_CONFIG), "127.0.0.1", 0, data_dir, nats_node.url
            )
        )
    assert cut_off, "the take's write ran"
    stopped = "tokenvenue stopped before it started (while it took the lease of the stream on NATS)"
    assert capsys.readouterr().out.splitlines()[-1] == stopped
    assert asyncio.run(asyncio.wait_for(lease_holder(nats_node.url), 30)) is None


# Records behind a core's own (a reference price each, the cheapest command to replay): a
# takeover then replays for a second or more, so a SIGTERM sent once its replay has begun
# lands in it. Bounded: written in ~1 s, replayed in a few.
TAKEOVER_RECORDS = 30_000
APPEND_BATCH = 1_000  # records per commit, as a replay fetches them (`REPLAY_BATCH`)
CONSUMER_CHECKS_MAX = 2_000  # ~10 s of 5 ms checks for the core's replay to begin


def append_reference_prices(url: str, count: int) -> None:
    """`count` core records appended to the cluster's stream (its core stopped meanwhile)."""
    from core.nats_bus import CORE_ORIGIN, ClusterCodec
    from core.sequencer import Executed
    from core.venue_core import now_us
    from engine.commands import SetReferencePrice

    command = SetReferencePrice(symbol=SYMBOL, price=18_000, ts_us=now_us())
    payload = ClusterCodec().encode(Executed(0, command, [], CORE_ORIGIN))
    journal = JetStreamJournal(url, stream=STREAM_DEFAULT, create=False)
    try:
        after = journal.last_seq()
        for first in range(0, count, APPEND_BATCH):
            seqs = range(after + first + 1, after + min(count, first + APPEND_BATCH) + 1)
            journal.commit([(seq, payload) for seq in seqs])
    finally:
        journal.close()


async def replay_begun(url: str) -> None:
    """Until the stream has a consumer: the replay's (a core that took the lease at its first
    try follows nothing), made as the replay begins. Checked every 5 ms, bounded."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream(timeout=5.0)
        for _ in range(CONSUMER_CHECKS_MAX):
            if (await js.stream_info(STREAM_DEFAULT)).state.consumer_count:
                return
            await asyncio.sleep(0.005)
    finally:
        await nc.close()
    raise AssertionError("the core's replay did not begin")


def test_a_stop_during_a_takeovers_replay_ends_it_giving_the_lease_up(
    tmp_path: Path, nats_node: NatsCluster
) -> None:
    """The finding (session 30): a core taking the lease replays the stream on its loop, and
    its stop signals were the loop's, so a SIGTERM during a long replay waited for its end
    (then the core went active, said `recovered`, and only then stopped). It stops at the
    replay's next safe point now (`StopSignals`, `stop_requested` to its recovery): nothing
    recovered, nothing written that a later start would trust, the lease given up for a
    standby at once, exit 0. ~6 s: two cores and a stream of `TAKEOVER_RECORDS`."""
    first = start_core(tmp_path, "core-a", nats_node.url)
    try:
        expect_line(first.stdout, "active at seq")
    finally:
        stop(first, signal.SIGTERM)
    append_reference_prices(nats_node.url, TAKEOVER_RECORDS)
    second = start_core(tmp_path, "core-b", nats_node.url)
    try:
        expect_line(second.stderr, "holding the lease: active core")
        asyncio.run(asyncio.wait_for(replay_begun(nats_node.url), RUN_TIMEOUT_S))
    finally:
        output, errors = stop(second, signal.SIGTERM)
    case = (second.returncode, output, errors)
    assert second.returncode == 0, case
    assert "Traceback" not in errors and "recovered" not in errors, case
    last_line = output.splitlines()[-1] if output else ""
    # in the replay, at its next safe point: not only at its end ("after replaying the journal")
    assert "stopped before it started (while replaying the journal, at seq" in last_line, case
    assert not list((tmp_path / "core-b").glob("snapshot-*")), case
    assert asyncio.run(asyncio.wait_for(lease_holder(nats_node.url), 30)) is None
