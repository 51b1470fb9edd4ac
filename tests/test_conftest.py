"""The fatal path's guard (tests/conftest.py, `FatalGuard`): a pytest run of its own, in a
real process, over a tiny test file whose venue's journal commit raises. Where the run's
temporary files go (`ram_temp_root`). And `drain_pushes`, bounded, on a real venue."""

import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from client.sdk import VenueClient
from gateway import limits
from tests import conftest
from tests.conftest import FATAL_EXIT_CODE, ROOT, Venue, drain_pushes, ram_temp_root

RUN_TIMEOUT_S = 120  # a run of two short tests; a venue left hanging would reach it instead

# The first test's venue loses its disk: the commit of its cancel_all fails, which in a
# venue is the fatal path (exit 70). The request waits without a limit, as a test that does
# not expect the venue to go away would: only the guard can end it. The second test must run.
TESTS = """
import asyncio

from client.sdk import NO_TIMEOUT
from tests.conftest import start_venue


def broken_commit(*_):
    raise OSError("the disk is gone")


def test_a_venue_whose_commit_fails(tmp_path):
    async def main():
        venue = await start_venue(tmp_path / "data")
        try:
            client = await venue.client("alpha")
            venue.server.core.sequencer.journal.commit_commands = broken_commit
            await client.request("orders.cancel_all", {}, timeout_s=NO_TIMEOUT)
        finally:
            for client in venue.clients:
                await client.close()
            await venue.server.stop()

    asyncio.run(main())


def test_the_run_goes_on():
    pass
"""


def _pytest(tmp_path: Path, *options: str, tests: str = TESTS) -> subprocess.CompletedProcess[str]:
    """Run pytest over `tests` in a process of its own, with the project's tree importable."""
    (tmp_path / "test_tiny.py").write_text(tests)
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *options, "test_tiny.py"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )


def test_a_venue_reaching_its_fatal_path_fails_that_test_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    run = _pytest(tmp_path, "-p", "tests.conftest")  # the guard, as in this suite's runs
    assert run.returncode == 1, run.stdout + run.stderr
    assert re.search(r"^1 failed, 1 passed", run.stdout, re.MULTILINE), run.stdout
    assert "FAILED test_tiny.py::test_a_venue_whose_commit_fails" in run.stdout
    assert "a venue reached its fatal path" in run.stdout
    assert "OSError: the disk is gone" in run.stdout  # the failure's own message


def test_without_the_guard_the_same_run_ends_with_70_and_no_report(tmp_path: Path) -> None:
    run = _pytest(tmp_path)  # tests.conftest imported by the file, not loaded as a plugin
    assert run.returncode == FATAL_EXIT_CODE, run.stdout + run.stderr
    assert "passed" not in run.stdout and "failed" not in run.stdout


# The guard's SIGINT, sent by a thread that reached the fatal path as the test was ending,
# sent as late as it can be: once the phase has ended, or once the phase's end waits for the
# lock the guard holds while it sends (it cannot end then), or after 5 s. Before, the SIGINT
# could be sent after the lock was let go: it landed in pytest's own code and ended the run
# (KeyboardInterrupt, no report).
RACE_TESTS = """
import signal
import sys
import threading
import time

from core import sequencer
from tests import conftest

send = signal.pthread_kill
entered = threading.Event()


def ending(thread_id):
    # the thread is in the guard's _end_phase: waiting for the lock the hook holds here
    frame = sys._current_frames().get(thread_id)
    while frame is not None and frame.f_code.co_name != "_end_phase":
        frame = frame.f_back
    return frame is not None


def late_kill(thread_id, signum):
    entered.set()
    deadline = time.monotonic() + 5
    while conftest._fatal_guard.in_phase and not ending(thread_id):
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)
    send(thread_id, signum)


def test_a_venue_failing_as_the_test_ends(monkeypatch):
    monkeypatch.setattr(signal, "pthread_kill", late_kill)
    threading.Thread(target=sequencer.fatal_hook, args=(OSError("the disk is gone"),)).start()
    assert entered.wait(30)


def test_the_run_goes_on():
    pass
"""


def test_the_guards_interrupt_sent_as_the_phase_ends_fails_that_test_only(
    tmp_path: Path,
) -> None:
    run = _pytest(tmp_path, "-p", "tests.conftest", tests=RACE_TESTS)
    assert run.returncode == 1, run.stdout + run.stderr
    assert re.search(r"^1 failed, 1 passed", run.stdout, re.MULTILINE), run.stdout
    assert "FAILED test_tiny.py::test_a_venue_failing_as_the_test_ends" in run.stdout
    assert "OSError: the disk is gone" in run.stdout


# A venue stopped by a fixture's teardown (as `BackgroundVenue` is) reaches its fatal path on
# its thread while the teardown waits for it. The guard's KeyboardInterrupt went through
# pytest's teardown, which catches Exception per finalizer: the teardown's other finalizers
# never ran (a monkeypatch left, a module's processes left running) and the class, still on
# pytest's stack, failed the next test ("previous item was not torn down properly").
TEARDOWN_TESTS = """
import threading

import pytest

from core import sequencer

finalized = []


@pytest.fixture(scope="class")
def shared():
    yield
    finalized.append("the class's fixture")


class TestAVenueStoppedByAFixture:
    @pytest.fixture
    def other(self):
        yield
        finalized.append("the test's other fixture")

    @pytest.fixture
    def venue(self):
        yield
        failure = OSError("the disk is gone")
        threading.Thread(target=sequencer.fatal_hook, args=(failure,)).start()
        threading.Event().wait(60)  # the stop waits for the venue's thread: interrupted
        finalized.append("the venue's stop, after the interrupt")

    def test_a_venue_failing_as_its_fixture_stops_it(self, shared, other, venue):
        pass


def test_the_run_goes_on():
    assert finalized == ["the test's other fixture", "the class's fixture"]
"""


def test_the_guards_interrupt_in_a_teardown_leaves_the_other_finalizers_to_run(
    tmp_path: Path,
) -> None:
    run = _pytest(tmp_path, "-p", "tests.conftest", tests=TEARDOWN_TESTS)
    assert run.returncode == 1, run.stdout + run.stderr
    assert re.search(r"^2 passed, 1 error", run.stdout, re.MULTILINE), run.stdout
    assert "ERROR test_tiny.py::TestAVenueStoppedByAFixture::test_a_venue_failing_as" in run.stdout
    assert "OSError: the disk is gone" in run.stdout
    assert "not torn down properly" not in run.stdout


def test_temporary_files_go_to_a_writable_directory_with_room_when_tmpdir_is_unset(
    tmp_path: Path,
) -> None:
    assert ram_temp_root({}, tmp_path, free_min_bytes=1) == tmp_path
    assert ram_temp_root({"TMPDIR": ""}, tmp_path, free_min_bytes=1) == tmp_path


@pytest.mark.parametrize(
    "environ, name, free_min_bytes",
    [
        ({"TMPDIR": "/var/tmp"}, "ram", 1),  # the user's choice is kept
        ({"TMP": "/var/tmp"}, "ram", 1),  # Python reads TEMP and TMP when TMPDIR is unset
        ({"PYTEST_DEBUG_TEMPROOT": "/var/tmp"}, "ram", 1),  # pytest's own root
        ({}, "missing", 1),  # no such directory (not Linux)
        ({}, "file", 1),  # not a directory
        ({}, "ram", 1 << 62),  # too little room (a container's 64 MB /dev/shm)
    ],
    ids=["tmpdir-set", "tmp-set", "temproot-set", "missing", "not-a-directory", "too-small"],
)
def test_temporary_files_stay_where_they_are_otherwise(
    tmp_path: Path, environ: dict[str, str], name: str, free_min_bytes: int
) -> None:
    (tmp_path / "ram").mkdir()
    (tmp_path / "file").write_text("")
    assert ram_temp_root(environ, tmp_path / name, free_min_bytes) is None


def test_this_runs_temporary_files_are_where_the_hook_chose(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The hook ran before pytest made its first temporary directory: tmp_path is on the
    chosen root (on Linux with room, /dev/shm), and the processes the tests start inherit it."""
    chosen = conftest.ram_temp_root_chosen
    if chosen is None:  # a temporary directory chosen by the user, or no RAM file system
        assert ram_temp_root(os.environ) is None or request.config.option.basetemp is not None
    else:
        assert os.environ["TMPDIR"] == str(chosen) == tempfile.gettempdir()
        assert tmp_path.resolve().is_relative_to(chosen.resolve())


# ----------------------------------------------------------------- drain_pushes

SYMBOL = "AAPLx-USD"
FAST_HEARTBEAT_S = 0.1  # heartbeats more often than a drain's quiet 0.3 s: it never ended
DRAIN_BOUND_S = 5.0  # a drain that ends takes ~0.3 s; one that hangs fails here, not at 20 s
PING_EVERY_S = 0.05  # a stream that never goes quiet for a drain's 0.3 s
PINGS_MAX = 200  # bounded: 10 s of pings, far past the drain's `within_s` of 0.5 s


async def send_ping(client: VenueClient, request_id: int) -> None:
    """A `ping` nobody awaits: its answer is read as a push (`VenueClient.next_push`)."""
    assert client.websocket is not None
    await client.websocket.send(json.dumps({"id": request_id, "method": "ping"}))


def test_a_drain_ends_while_heartbeats_come_more_often_than_its_quiet_wait(
    run_venue: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Heartbeats every 0.1 s (as a test may set them) used to keep a drain reading until
    the test's own timeout: each was a push within its 0.3 s. Now they are skipped, and what
    the test's requests caused is what it returns."""
    monkeypatch.setattr(limits, "HEARTBEAT_INTERVAL_S", FAST_HEARTBEAT_S)  # read at start

    async def scenario(venue: Venue) -> None:
        alpha = await venue.client("alpha")
        await alpha.subscribe_account()
        placed = await alpha.place(SYMBOL, "buy", "1", "186.00")
        pushes = await asyncio.wait_for(drain_pushes(alpha), DRAIN_BOUND_S)
        assert pushes and all(push["ch"] == "account" for push in pushes), pushes
        assert pushes[0]["type"] == "snapshot"
        news = [p for p in pushes if p["type"] == "exec" and p["data"]["exec_type"] == "new"]
        assert [p["data"]["order_id"] for p in news] == [placed["order_id"]]
        heartbeat = await alpha.next_push(DRAIN_BOUND_S)
        assert heartbeat["ch"] == "heartbeat", "heartbeats came all along, and still do"

    run_venue(scenario)


def test_a_drain_of_pushes_that_never_go_quiet_fails_at_its_bound(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        alpha = await venue.client("alpha")

        async def keep_pinging() -> None:
            for number in range(PINGS_MAX):
                await send_ping(alpha, 1_000_000 + number)
                await asyncio.sleep(PING_EVERY_S)

        pinging = asyncio.create_task(keep_pinging())
        try:
            with pytest.raises(AssertionError, match=r"pushes still coming after 0\.5 s"):
                await drain_pushes(alpha, within_s=0.5)
        finally:
            pinging.cancel()

    run_venue(scenario)


def test_a_drain_past_its_most_pushes_fails(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        alpha = await venue.client("alpha")
        for number in range(5):
            await send_ping(alpha, 1_000_000 + number)
        with pytest.raises(AssertionError, match="3 pushes read and still coming"):
            await drain_pushes(alpha, pushes_max=3)

    run_venue(scenario)
