"""Hang-ups (`cli.hangup`): `venue serve` and `venue cluster` stop cleanly when their terminal
closes (SIGHUP, then writes to it failing), and keep running when started under nohup.

Real processes on a real terminal (a pty); the cluster runs one NATS node, SQLite, a core and
a gateway. Each wait is bounded by the cluster's stop bound, `STOP_TIMEOUT_S`.
"""

import asyncio
import os
import pty
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cli import hangup
from cli.serve import StopSignals
from client.sdk import VenueClient
from core.venue_core import CLEAN_STOP_FILE
from tests.cli.test_cluster import STOP_TIMEOUT_S, UP_TIMEOUT_S, _wait_for
from tests.cli.test_main import SERVE, START_LINES_MAX, _env
from tests.cli.test_serve import LISTENING, START_TIMEOUT_S
from tests.conftest import KEYS, ROOT
from tests.sample_config import SAMPLE_CONFIG
from tests.terminal import ON_ITS_TERMINAL, WITH_SIGHUP_DEFAULT, read_until


def test_a_closed_terminal_stops_the_venue_cleanly(tmp_path: Path) -> None:
    """The finding: `venue serve` in a terminal that was closed got SIGHUP, whose default
    action killed it: no last snapshot, no clean-stop mark, its clients not told. It runs
    here as a real terminal's session leader (a pty), its stdout the terminal; closing the
    terminal's side sends it SIGHUP and makes every later write to the terminal fail (EIO),
    which must not turn the stop into a traceback."""
    data_dir = tmp_path / "data"
    terminal, its_side = pty.openpty()
    command = [*ON_ITS_TERMINAL, *SERVE[1:], "--data-dir", str(data_dir), "--port", "0"]
    server = subprocess.Popen(
        command,
        cwd=ROOT,
        stdin=its_side,
        stdout=its_side,
        stderr=subprocess.PIPE,
        env=_env(),
        start_new_session=True,
    )
    os.close(its_side)
    try:
        trade_url = rb"listening: (ws://\S+/ws/trade)"
        url = read_until(terminal, trade_url, START_TIMEOUT_S).group(1).decode()
        pushes = asyncio.run(_pushes_after(url, lambda: os.close(terminal)))
        assert server.wait(STOP_TIMEOUT_S) == 0
    finally:
        if server.poll() is None:
            server.kill()
        _, errors = server.communicate(timeout=STOP_TIMEOUT_S)
    said = errors.decode()
    assert "Traceback" not in said, said
    assert "stopping cleanly" in said and "signal=SIGHUP" in said, said
    assert {"ch": "session", "type": "shutdown", "reconnect_in_ms": 1000} in pushes
    assert (data_dir / CLEAN_STOP_FILE).exists()


# Put before `-m module ...`: the process starts with SIGHUP ignored, as under `nohup`.
WITH_SIGHUP_IGNORED = [
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGHUP, signal.SIG_IGN);"
    " os.execv(sys.executable, [sys.executable, *sys.argv[1:]])",
]


def test_a_venue_started_with_sighup_ignored_keeps_serving_after_a_sighup(
    tmp_path: Path,
) -> None:
    """The finding (review of session 26): `nohup venue serve &` stopped at logout, since the
    clean stop on SIGHUP replaced the ignoring that nohup set up. Started so here, it says
    SIGHUP is ignored, still answers after one, and stops on SIGTERM."""
    command = [*WITH_SIGHUP_IGNORED, *SERVE[1:], "--data-dir", str(tmp_path / "data")]
    server = subprocess.Popen(
        [*command, "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
    )
    try:
        banner = _said_until_stop_line(server)
        listening = LISTENING.search(banner)
        assert listening is not None, banner
        url = f"ws://127.0.0.1:{listening.group(1)}/ws/trade"
        server.send_signal(signal.SIGHUP)
        assert asyncio.run(_instruments(url)), "no answer after the SIGHUP"
        assert server.poll() is None
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=STOP_TIMEOUT_S)
    assert server.returncode == 0, output
    assert "signal=SIGTERM" in output and "SIGHUP" not in output.replace(banner, ""), output
    assert "(SIGHUP ignored: started under nohup)" in banner, banner


def _said_until_stop_line(server: subprocess.Popen[str]) -> str:
    """What `server` printed up to its `stop with` line (its handlers are installed then)."""
    assert server.stdout is not None
    said = ""
    for _ in range(START_LINES_MAX * 5):  # bounded: the banner is a few lines after the logs
        line = server.stdout.readline()
        said += line
        if line.startswith("stop with") or not line:
            break
    assert "stop with" in said, said
    return said


async def _instruments(url: str) -> list[dict[str, Any]]:
    """The venue's instruments, read by a logged-on trader."""
    async with VenueClient(url) as trader:
        await trader.logon(*KEYS["alpha"])
        result = await asyncio.wait_for(trader.request("instruments", {}), STOP_TIMEOUT_S)
        instruments: list[dict[str, Any]] = result["instruments"]
        return instruments


async def _pushes_after(url: str, hang_up: Callable[[], None]) -> list[dict[str, Any]]:
    """A logged-on trader's pushes from `hang_up` until its connection closes."""
    trader = await VenueClient(url).connect()
    try:
        await trader.logon(*KEYS["alpha"])
        hang_up()
        pushes = []
        for _ in range(100):  # bounded: the shutdown push comes, then the close
            try:
                pushes.append(await trader.next_push(timeout_s=STOP_TIMEOUT_S))
            except TimeoutError:
                break
            if pushes[-1].get("type") == "shutdown":
                break
        return pushes
    finally:
        await trader.close()


def test_a_cluster_started_with_sighup_ignored_is_not_stopped_by_one(tmp_path: Path) -> None:
    """The finding (review of session 26): `nohup venue cluster &` stopped at logout, since
    the clean stop on SIGHUP replaced the ignoring that nohup set up. Started so here, a
    SIGHUP and then a SIGTERM: only the SIGTERM stops it (the SIGHUP, handled first, had
    begun the stop, and the SIGTERM was answered `already stopping`)."""
    output_path = tmp_path / "out.txt"
    command = [*WITH_SIGHUP_IGNORED, "-m", "cli.main", "cluster", "--config", str(SAMPLE_CONFIG)]
    command += ["--dir", str(tmp_path / "cluster"), "--nats-nodes", "1", "--sqlite"]
    command += ["--cores", "1", "--gateways", "1"]
    with output_path.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        _wait_for(output_path, "stop with Ctrl-C", process)
        process.send_signal(signal.SIGHUP)
        process.send_signal(signal.SIGTERM)
        assert process.wait(STOP_TIMEOUT_S) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    said = output_path.read_text()
    assert "already stopping" not in said and "tokenvenue cluster stopped" in said, said
    assert "(SIGHUP ignored: started under nohup)" in said, said


def test_a_closed_terminal_stops_the_cluster_in_order(tmp_path: Path) -> None:
    """The finding: `venue cluster` in a terminal that was closed got SIGHUP, whose default
    action killed it at once; each role (in a session of its own, so told nothing by the
    terminal) then got the kernel's SIGTERM all at once, not the ordered stop. It runs here
    as a real terminal's session leader (a pty); the terminal's side is closed once it is up,
    which also makes every later write to the terminal fail (EIO)."""
    directory = tmp_path / "cluster"
    process, terminal = _cluster_on_a_terminal(directory)
    try:
        read_until(terminal, b"stop with Ctrl-C", UP_TIMEOUT_S)
        os.close(terminal)
        assert process.wait(STOP_TIMEOUT_S) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    _assert_stopped_in_order(directory)


def test_a_terminal_closed_while_the_cluster_stops_does_not_cut_the_stop_short(
    tmp_path: Path,
) -> None:
    """The finding (review of session 26): Ctrl-C, then the window closed while the cluster
    stopped: the SIGHUP's line (`already stopping ...`) was written to the hung-up terminal,
    whose EIO was raised inside the stop: exit 1, the cores and services killed out of order.
    A real terminal again (`test_a_closed_terminal_stops_the_cluster_in_order`); its side is
    closed as soon as the stop begins."""
    directory = tmp_path / "cluster"
    process, terminal = _cluster_on_a_terminal(directory)
    try:
        read_until(terminal, b"stop with Ctrl-C", UP_TIMEOUT_S)
        process.send_signal(signal.SIGINT)  # Ctrl-C
        read_until(terminal, b"stopping the cluster", STOP_TIMEOUT_S)
        os.close(terminal)  # the window closed: SIGHUP, and the terminal's writes fail
        assert process.wait(STOP_TIMEOUT_S) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    _assert_stopped_in_order(directory)


def _cluster_on_a_terminal(directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    """`venue cluster` (1 NATS node, SQLite, a core, a gateway) as a real terminal's session
    leader (a pty); the process and the terminal's side, to read and to close."""
    command = [*ON_ITS_TERMINAL, "-m", "cli.main", "cluster", "--config", str(SAMPLE_CONFIG)]
    command += ["--dir", str(directory), "--nats-nodes", "1", "--sqlite"]
    command += ["--cores", "1", "--gateways", "1"]
    terminal, its_side = pty.openpty()
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdin=its_side,
        stdout=its_side,
        stderr=its_side,
        start_new_session=True,
    )
    os.close(its_side)
    return process, terminal


def _assert_stopped_in_order(directory: Path) -> None:
    """Each role stopped cleanly by the cluster (not killed), the gateway before the core:
    the core began its stop (its `stopping cleanly` log line, to the millisecond) after the
    gateway began its own, since the cluster waits for the gateways to end first."""
    began = {}
    for role, name in (("gateway gw-a", "gw-0"), ("core core-a", "core-0")):
        log = (directory / f"{name}.log").read_text()
        assert f"tokenvenue {role} stopped cleanly" in log, log
        stopping = re.search(r"^(\S+) INFO \S+ stopping cleanly signal=SIGTERM", log, re.M)
        assert stopping is not None, log
        began[name] = stopping.group(1)  # ISO 8601 in UTC: in order as text
    assert began["gw-0"] < began["core-0"], began


# Run by the suite's wrappers: it hangs itself up, and says so if it lived through that.
HANGS_ITSELF_UP = ["-c", "import os, signal; os.kill(os.getpid(), signal.SIGHUP); print('lived')"]


@pytest.mark.parametrize(
    "wrapper", [ON_ITS_TERMINAL, WITH_SIGHUP_DEFAULT], ids=["on-its-terminal", "sighup-default"]
)
def test_the_suites_processes_take_a_hang_up_by_default_from_a_run_under_nohup(
    wrapper: list[str],
) -> None:
    """The finding (session 38): session 37's run of tests/cli under `nohup` failed five tests
    of stops on a hang-up (each at its 60 s timeout, read as a loaded machine's): an ignored
    signal stays ignored across exec, so every venue the run started took itself for started
    under nohup and let its SIGHUP go by (`hangup.stop_signals`). The wrappers that start
    the processes those tests hang up give SIGHUP its default action, as a shell in a
    terminal window does. Here this process ignores SIGHUP while it starts one."""
    terminal, its_side = pty.openpty()
    ignoring = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as `nohup pytest ...` starts it
    try:
        process = subprocess.Popen(
            [*wrapper, *HANGS_ITSELF_UP],
            stdin=its_side,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
    finally:
        signal.signal(signal.SIGHUP, ignoring)
        os.close(its_side)
    try:
        output, _ = process.communicate(timeout=STOP_TIMEOUT_S)
    finally:
        os.close(terminal)
    assert (process.returncode, output) == (-signal.SIGHUP, b"")


# A process whose stdout is a terminal hung up before any SIGHUP reached it (none will: it is
# not the terminal's session leader), as a stop that ends within milliseconds of the window
# closing sees it: the kernel fails writes at once, the handler runs only between bytecodes.
LAST_LINE_ON_A_HUNG_UP_TERMINAL = """
import os, pty, sys
from cli.hangup import say_after_stop
terminal, its_side = pty.openpty()
os.dup2(its_side, 1)
os.close(terminal)
try:
    os.write(1, b"x")
except OSError as failed:
    os.write(2, f"hung up: errno {failed.errno}\\n".encode())
say_after_stop("tokenvenue stopped cleanly")
os.write(2, b"went on\\n")
"""


def test_a_stops_last_line_on_a_terminal_hung_up_before_its_sighup_is_let_go() -> None:
    """The finding (session 27, the suite on two workers): Ctrl-C, the stop done in ~40 ms,
    and the window closed meanwhile: the cluster's last line met EIO before the SIGHUP's
    handler detached the terminal, and `venue cluster` exited 1 after a clean, ordered stop."""
    result = subprocess.run(
        [sys.executable, "-c", LAST_LINE_ON_A_HUNG_UP_TERMINAL],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=STOP_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "hung up: errno 5\nwent on\n"  # EIO, then nothing failed


async def _take_and_give_back_stop_signals() -> None:
    """As `venue serve` does, in its event loop: `StopSignals` taken, then given back."""
    StopSignals().restore()


def test_stop_signals_give_back_the_handlers_from_before_noting_stops() -> None:
    """The finding (review of session 30): under `noting_stops` (the entry point of `venue
    serve`), `StopSignals` found `noting_stops`' handler and put that back on `restore`, so
    from then until the entry point ended (the loop's teardown, waiting for its leftover
    tasks and threads) a SIGTERM or a SIGINT was noted and dropped, where it killed before.
    It puts back the handlers from before `noting_stops` now. In-process: a handler of the
    test's stands for the default action, and a real SIGTERM is sent to this process."""
    taken: list[int] = []
    before = signal.signal(signal.SIGTERM, lambda signum, _frame: taken.append(signum))
    try:
        with hangup.noting_stops():
            asyncio.run(_take_and_give_back_stop_signals())
            signal.raise_signal(signal.SIGTERM)  # after `restore`: the teardown's instant
            assert taken == [signal.SIGTERM], hangup.stop_noted()
            assert hangup.stop_noted() is None
        assert hangup.original_handlers() == {}
    finally:
        signal.signal(signal.SIGTERM, before)


def test_noting_stops_blocks_again_the_stop_signals_its_caller_had_blocked() -> None:
    """The review of session 30 (a nit): `noting_stops` unblocks the stop signals (a parent's
    mask, inherited across exec, would keep them from the venue) and left them unblocked on
    leaving, where its caller (`main` in-process, a test) had them blocked."""
    was = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        with hangup.noting_stops():
            assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, set())
        assert signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, set())
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, was)


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_or_sighup_to_a_benchmark_stops_its_server_process_as_ctrl_c_does(
    tmp_path: Path, sig: signal.Signals, status: int
) -> None:
    """Session 32's sweep: SIGTERM to `venue bench ws-layer` (likewise `gateway`, `e2e`) took
    its default action: the command died where it stood and its server process ran on,
    orphaned; session 33: SIGHUP (its terminal closed) likewise. Now both do what Ctrl-C
    does: the server is stopped, exit status 128 + the signal. ws-layer runs its loop under
    uvloop, where a handler that raises is not enough."""
    command = [*WITH_SIGHUP_DEFAULT, "-m", "cli.main", "bench", "ws-layer"]  # hung up below
    bench = subprocess.Popen(
        [*command, "--layers", "websockets", "--frames", "10000000", "--runs", "1"],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    children = Path(f"/proc/{bench.pid}/task/{bench.pid}/children")
    try:
        server = _first_child(bench, children)
        bench.send_signal(sig)
        _, err = bench.communicate(timeout=STOP_TIMEOUT_S)
        assert bench.returncode == status, err
        assert "Traceback" not in err, err
        assert not _running(int(server[0])), "its server process was left running"
    finally:
        bench.kill()
        for pid in children.read_text().split() if children.exists() else []:
            os.kill(int(pid), signal.SIGKILL)


def _first_child(process: subprocess.Popen[str], children: Path) -> list[str]:
    """The process's children once it has one (bounded: `UP_TIMEOUT_S`, 0.05 s a look)."""
    for _ in range(int(UP_TIMEOUT_S / 0.05)):
        assert process.poll() is None, process.communicate()
        if found := children.read_text().split():
            return found
        time.sleep(0.05)
    raise AssertionError("the benchmark started no server process")


def _running(pid: int) -> bool:
    """Whether `pid` is a process that has not exited (gone, or a zombie, is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
