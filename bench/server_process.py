"""The venue under test in its own process: `venue serve` started, observed and stopped.

Owns what the websocket benchmarks share: the check of the `--config` the server will run
(named before anything starts), a copy of it with the rate limits raised out of the way (so
the numbers are the gateway's, not the limiter's), the server on 127.0.0.1 with an
ephemeral port and a fresh data dir, its CPU time (in all and by thread) and peak memory
from /proc (and how far its clock tick can put them off), SIGINT while a run lasts, a clean
SIGTERM stop, and the last traceback of its log when something went wrong. Run as
`python -m bench.server_process serve ...` it is the server's launcher: it gives each thread
its Python name in the OS, then runs `cli.main` unchanged.
"""

import asyncio
import ctypes
import os
import re
import runpy
import signal
import sys
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from cli.failures import CommandFailed
from core import config as venue_config

SERVER_START_TIMEOUT_S = 30.0  # a fresh venue builds from venue.toml in well under a second
SERVER_STOP_TIMEOUT_S = 15.0  # SIGTERM flushes pending commands and closes the files
LOG_TAIL_CHARS = 4_000  # the end of the server's log: a traceback or two
LISTENING = re.compile(r"(ws://\S+/ws/trade)")
EXCEPTION_LINE = re.compile(r"^[\w.]*(?:Error|Exception)\b.*$", re.MULTILINE)
LIMITS_TABLE = re.compile(r"(?m)^\[limits\][^\[]*")
LOOP_THREAD = "loop"  # the main thread's name in the results: it runs the event loop
PR_SET_NAME = 15  # prctl(2) option: name the calling thread
OS_THREAD_NAME_MAX = 15  # bytes of a thread's name the kernel keeps (comm)
# A CPU figure read from /proc is called unreliable when the clock ticks' error could pass
# this share of it: beyond it the tick alone moves it as much as a busy box's own swing does
# (±10-20% between runs, README), and a short window (under a second or two) gets there.
CPU_ERROR_PERCENT_RELIABLE = 10.0

UNLIMITED = """
[limits]  # added by the benchmark: measure the gateway, not the rate limiter
connection_rate_per_s = 10000000
connection_burst = 10000000
account_rate_per_s = 10000000
account_burst = 10000000
connections_per_ip_max = 10000000
connections_max = 10000  # the default: `venue serve` checks it against the open-file limit
"""


def run_async(work: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """Run a benchmark's coroutine on uvloop, as the server runs; SIGINT interrupts it."""
    with interruptible():
        try:
            import uvloop
        except ImportError:  # uvloop is not built for every platform: plain asyncio then
            return asyncio.run(_quiet_second_interrupt(work))
        return uvloop.run(_quiet_second_interrupt(work))


async def _quiet_second_interrupt(work: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """Run `work` with a loop that does not log a KeyboardInterrupt a transport swallowed.

    asyncio's runner cancels the run at the first SIGINT and raises KeyboardInterrupt at the
    second, wherever the loop is: inside a subprocess pipe's callback uvloop catches it and
    logs "Fatal error on transport" with its traceback (seen when Ctrl-C came twice, as a
    `timeout -s INT` sends it to the process and to its group). The run is already stopping
    then, with status 130: the log was noise."""
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if isinstance(context.get("exception"), KeyboardInterrupt):
            return
        if previous is None:
            loop.default_exception_handler(context)
        else:
            previous(loop, context)

    loop.set_exception_handler(handle)
    return await work


@contextmanager
def interruptible() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt inside, even if this process started with it ignored.

    A script's `&` job starts with SIGINT ignored, but the benchmark's server (which sets its
    own handler) and its clients take the group's SIGINT all the same: ignored here, the run
    went on without them and ended in a failure (status 1, "a maker client ended without a
    result") instead of an interruption (130, everything stopped). A handler of the caller's
    own is left alone."""
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    if not ignored or threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def check_config(path: Path) -> None:
    """Refuse a config the server would refuse, naming this file: the server reads a copy in
    the run's temporary directory, and its error named that copy, gone by then. Shared by
    every benchmark that starts a server (e2e, gateway, all)."""
    if not path.is_file():
        raise CommandFailed(
            f"--config {path}: no such file (the sample venue.toml is at the repository's root:"
            " run from there, or give its path)"
        )
    venue_config.load(path)  # a ConfigError says what is wrong, and where


def unlimited_config(config_path: Path, directory: Path, extra: str = "") -> Path:
    """A copy of the config in `directory` with `UNLIMITED` limits and `extra` TOML appended."""
    text = LIMITS_TABLE.sub("", config_path.read_text())
    path = directory / "venue.toml"
    path.write_text(text + UNLIMITED + extra)
    return path


@dataclass(frozen=True)
class ThreadCpu:
    """One thread's CPU time, user and system, in seconds, and its counts of system calls
    that read and write (files, sockets, event fds: /proc's `syscr`, `syscw`) and of context
    switches (voluntary and not), so far or over a window. Counts are None where /proc does
    not give them. Unlike times, counts barely move with a busy machine's noise."""

    thread_id: int
    name: str
    user_s: float
    system_s: float
    reads: int | None = None
    writes: int | None = None
    switches: int | None = None


def thread_cpu_used(before: list[ThreadCpu], after: list[ThreadCpu]) -> list[ThreadCpu]:
    """Each thread's CPU between two readings; a thread born in between counts from zero,
    one gone by the second reading is left out (the process's figure still holds it)."""
    earlier = {thread.thread_id: thread for thread in before}
    used = []
    for thread in after:
        start = earlier.get(
            thread.thread_id, ThreadCpu(thread.thread_id, thread.name, 0, 0, 0, 0, 0)
        )
        used.append(
            ThreadCpu(
                thread.thread_id,
                thread.name,
                thread.user_s - start.user_s,
                thread.system_s - start.system_s,
                _difference(thread.reads, start.reads),
                _difference(thread.writes, start.writes),
                _difference(thread.switches, start.switches),
            )
        )
    return used


def cpu_tick_s() -> float:
    """The clock tick /proc counts CPU time in (10 ms at the usual 100 Hz)."""
    return 1 / os.sysconf("SC_CLK_TCK")


def cpu_reading_error_s(processes: int = 1) -> float:
    """The most a CPU time read over a window can be off, in seconds: each process's user
    and system time are counted in whole ticks, and each is read at both ends of the window,
    so each can be off by up to a tick."""
    return processes * 2 * cpu_tick_s()


def cpu_error_percent(counted_s: float, processes: int = 1) -> float | None:
    """How far off `counted_s` of CPU read over a window can be, in % of it; None when no
    tick was counted (then nothing is known of it but that it was under the error)."""
    if counted_s <= 0:
        return None
    return round(100 * cpu_reading_error_s(processes) / counted_s, 1)


def _difference(after: int | None, before: int | None) -> int | None:
    return None if after is None or before is None else after - before


def read_thread_cpu(pid: int) -> list[ThreadCpu] | None:
    """Each live thread of process `pid`: its user and system CPU time so far, from /proc;
    None off Linux or once the process is gone. The main thread is `LOOP_THREAD`; the
    others carry their names in the OS (the launcher gives them their Python names)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return None
    ticks_per_s = os.sysconf("SC_CLK_TCK")
    threads = []
    for task in tasks:
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended after the listing
            continue
        thread_id = int(task.name)
        name = LOOP_THREAD if thread_id == pid else name
        # after the command name, as for the process: utime and stime are fields 14 and 15
        user_s, system_s = int(fields[11]) / ticks_per_s, int(fields[12]) / ticks_per_s
        reads, writes, switches = _thread_counts(task)
        threads.append(ThreadCpu(thread_id, name, user_s, system_s, reads, writes, switches))
    return threads


def _thread_counts(task: Path) -> tuple[int | None, int | None, int | None]:
    """A thread's read and write system calls and its context switches so far, from
    /proc/PID/task/TID/io and status; None for what cannot be read (another user's process,
    a kernel without task I/O accounting, a thread that ended)."""
    reads: int | None
    writes: int | None
    switches: int | None
    try:
        io = dict(line.split(": ") for line in (task / "io").read_text().splitlines())
        reads, writes = int(io["syscr"]), int(io["syscw"])
    except (OSError, KeyError, ValueError):
        reads = writes = None
    try:
        status = dict(line.split(":\t", 1) for line in (task / "status").read_text().splitlines())
        switches = int(status["voluntary_ctxt_switches"]) + int(
            status["nonvoluntary_ctxt_switches"]
        )
    except (OSError, KeyError, ValueError):
        switches = None
    return reads, writes, switches


class ServerProcess:
    """`venue serve` on 127.0.0.1, an ephemeral port and a fresh data dir."""

    def __init__(self, config: Path, directory: Path, prefix: list[str] | None = None) -> None:
        self.config = config
        self.directory = directory
        self.prefix = prefix  # runs the server under it (cProfile); default `python`
        self.process: asyncio.subprocess.Process | None = None
        self.url = ""

    @property
    def pid(self) -> int:
        assert self.process is not None, "start it first"
        return self.process.pid

    async def start(self) -> str:
        command = [*(self.prefix or [sys.executable]), "-m", "bench.server_process", "serve"]
        command += ["--config", str(self.config)]
        command += ["--host", "127.0.0.1", "--port", "0"]
        command += ["--data-dir", str(self.directory / "data")]
        with (self.directory / "serve.log").open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                *command,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=os.environ | {"PYTHONUNBUFFERED": "1"},
            )
        assert self.process.stdout is not None
        try:
            async with asyncio.timeout(SERVER_START_TIMEOUT_S):
                while not self.url:
                    line = await self.process.stdout.readline()
                    if not line:
                        raise SystemExit(f"venue serve exited before listening:\n{self.log()}")
                    found = LISTENING.search(line.decode())
                    self.url = found.group(1) if found else ""
        except TimeoutError:
            limit = f"{SERVER_START_TIMEOUT_S:g} s"
            raise SystemExit(f"venue serve did not listen within {limit}:\n{self.log()}") from None
        return self.url

    async def stop(self) -> bool:
        """SIGTERM, then wait; True if it stopped cleanly (else it is killed)."""
        if self.process is None or self.process.returncode is not None:
            return False
        self.process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(SERVER_STOP_TIMEOUT_S):
                rest, _ = await self.process.communicate()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            return False
        return self.process.returncode == 0 and b"stopped cleanly" in rest

    def exit_status(self) -> int | None:
        """The server's exit status if it has ended (before `stop`: it died), else None."""
        return None if self.process is None else self.process.returncode

    def cpu_seconds(self) -> float | None:
        """User + system CPU time the server has used so far (all threads); None off Linux."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        # after the command name: state is field 3, utime and stime are fields 14 and 15
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self) -> float | None:
        """The server's peak resident memory (VmHWM) so far, in MiB; None off Linux."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
        except (OSError, ValueError, IndexError):
            pass
        return None

    def last_exception(self) -> str | None:
        """The last line of the last traceback in the server's log, if any."""
        found = EXCEPTION_LINE.findall(self.log())
        return found[-1] if found else None

    def log(self) -> str:
        return (self.directory / "serve.log").read_text(errors="replace")[-LOG_TAIL_CHARS:]


# ----------------------------------------------------------------- the launcher


def name_os_threads() -> None:
    """From now on, each thread started with `threading` takes its Python name ("journal",
    "ledger-store") in the OS too, so /proc tells the threads' CPU apart. Python before
    3.14 leaves every thread named after the executable. Costs one call per thread start."""
    prctl = ctypes.CDLL(None).prctl  # libc; a failure leaves the old name, nothing worse

    def name_this_thread(frame: FrameType, event: str, arg: object) -> None:
        sys.setprofile(None)  # once, at the thread's first call: no cost after that
        name = threading.current_thread().name.encode()[:OS_THREAD_NAME_MAX]
        prctl(PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0)

    threading.setprofile(name_this_thread)


if __name__ == "__main__":
    if sys.platform == "linux":
        name_os_threads()
    runpy.run_module("cli.main", run_name="__main__", alter_sys=True)
