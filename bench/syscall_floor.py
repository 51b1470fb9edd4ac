"""`venue bench floor`: what the kernel alone costs per write on this machine.

Owns two micro-benchmarks of the system calls every acknowledged action pays for, with no
Python of the venue around them, so the server CPU per action of `venue bench e2e` can be set
against the floor its writes put under it:

- `send`: one small message (`SEND_BYTES`, an acknowledgement's size) written with `send` to
  a loopback TCP socket (TCP_NODELAY, as the venue's) whose reader, another process, sleeps
  in `epoll` and reads each. On loopback the sender's system call also runs the receiver's
  TCP input and wakes it, which a network would do on another machine. Measured with the
  sender's thread CPU time around each call, at a few gaps between the writes (an idle reader
  is woken each time; a busy one is not).
- `dsync`: one journal-sized record (`RECORD_BYTES`) written with `pwrite` to a file
  opened `O_DSYNC` and grown ahead by `fallocate`, as the file journal commits a batch, in a
  directory you choose (the data directory's disk is what matters): CPU time and wall time
  per write.

The e2e report gives writes per action (`system calls per acked action`): at a few thousand
actions a second each action has its own answer's write and most have a commit of their own,
so the floor per action is about one `send` plus one `dsync` before any Python runs.
"""

import argparse
import json
import os
import select
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cli import progress
from cli.failures import CommandFailed

SEND_BYTES = 120  # an order's acknowledgement, about
RECORD_BYTES = 300  # a batch of one or two commands in the journal, about
SENDS_DEFAULT = 20_000
WRITES_DEFAULT = 2_000
# Past these a run is no measurement but a hang (session 32's sweep: `--sends 10**20` ran
# on without a word): a gap's million sends 1 ms apart take ~17 min, and a million O_DSYNC
# writes as long, in a 300 MB file allocated first.
SENDS_MAX = 1_000_000
WRITES_MAX = 1_000_000
GAPS_US = (0, 200, 1_000)  # between two sends: back to back, 5,000/s, 1,000/s
READ_TIMEOUT_S = 30.0  # the reader ends on its own if the sender dies


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sends",
        type=int,
        default=SENDS_DEFAULT,
        help=f"per gap (default {SENDS_DEFAULT:,}; at most {SENDS_MAX:,})",
    )
    parser.add_argument(
        "--writes",
        type=int,
        default=WRITES_DEFAULT,
        help=f"O_DSYNC writes (default {WRITES_DEFAULT:,}; at most {WRITES_MAX:,})",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where the O_DSYNC file goes (default: the system's temporary directory)",
    )
    parser.add_argument(
        "--json", action="store_true", help="stdout: one JSON line only (the lines: stderr)"
    )


def run(args: argparse.Namespace) -> int:
    if args.sends <= 0 or args.writes <= 0:
        raise CommandFailed("--sends and --writes must be above zero")
    for flag, count, count_max in (
        ("sends", args.sends, SENDS_MAX),
        ("writes", args.writes, WRITES_MAX),
    ):
        if count > count_max:
            raise CommandFailed(
                f"--{flag} {count:,}: at most {count_max:,} (a run past it is hours)"
            )
    if args.dir is not None and not args.dir.is_dir():
        raise CommandFailed(f"--dir {args.dir}: not a directory")
    steps = len(GAPS_US) + 1
    with progress.bar(
        args.json, total=steps, desc="floor", bar_format=progress.STEPS_FORMAT
    ) as shown:
        result = measure(args.sends, args.writes, args.dir, lambda: shown.update(1))
    people = sys.stderr if args.json else sys.stdout  # --json: stdout is the one JSON line
    for gap_us, cpu_us in result["send_cpu_us"].items():
        print(
            f"send of {SEND_BYTES} B to a sleeping loopback reader, {gap_us} µs apart: "
            f"{cpu_us} µs of CPU",
            file=people,
        )
    dsync = result["dsync"]
    print(
        f"O_DSYNC write of {RECORD_BYTES} B: {dsync['cpu_us']} µs of CPU (mean), "
        f"{dsync['wall_us']} µs of wall time (median), over {args.writes}",
        file=people,
    )
    if args.json:
        print(json.dumps(result))
    return 0


def measure(
    sends: int, writes: int, directory: Path | None, step: Callable[[], object] = lambda: None
) -> dict[str, Any]:
    """Both floors; `step` is called as each gap's sends and the writes are done."""
    send_cpu = {}
    for gap in GAPS_US:
        send_cpu[str(gap)] = send_cpu_us(sends, gap)
        step()
    dsync = dsync_cost(writes, directory)
    step()
    return {"send_bytes": SEND_BYTES, "send_cpu_us": send_cpu, "dsync": dsync}


def send_cpu_us(count: int, gap_us: int) -> float:
    """The sender's mean CPU µs per `send` of `count` messages, `gap_us` apart (busy-waited,
    so the sender's core stays its own), to a reader process that reads every byte."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    # Ctrl-C held over the fork: one landing in fork's own Python hooks (logging's) was
    # swallowed there, and the run went on; one before the `try` left the reader behind
    interrupts = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    pid = os.fork()
    if pid == 0:  # the reader: wakes in epoll for each message, reads it, until all are in
        code = 1
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, interrupts)
            listener.close()
            code = 0 if _read_all(port, count * SEND_BYTES) else 1
        finally:
            os._exit(code)
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, interrupts)  # a held Ctrl-C raises here
        connection, _ = listener.accept()
        with connection:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            cpu_s = _send_all(connection, count, gap_us / 1e6)
    except BaseException:  # Ctrl-C: stop the reader, which else waited READ_TIMEOUT_S for
        os.kill(pid, signal.SIGKILL)  # the bytes still due (its parent waiting on it)
        raise
    finally:
        listener.close()
        _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError("the reader did not get every byte")
    return round(cpu_s / count * 1e6, 2)


def _send_all(connection: socket.socket, count: int, gap_s: float) -> float:
    """Send `count` messages `gap_s` apart; the CPU seconds the sends took."""
    message = b"x" * SEND_BYTES
    cpu_s = 0.0
    for _ in range(count):
        started = time.thread_time()
        connection.send(message)
        cpu_s += time.thread_time() - started
        if gap_s:
            until = time.perf_counter() + gap_s
            while time.perf_counter() < until:
                pass
    return cpu_s


def _read_all(port: int, expected: int) -> bool:
    reader = socket.create_connection(("127.0.0.1", port))
    reader.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    poller = select.epoll()
    poller.register(reader.fileno(), select.EPOLLIN)
    received = 0
    deadline = time.monotonic() + READ_TIMEOUT_S
    while received < expected and time.monotonic() < deadline:
        if not poller.poll(1.0):
            continue
        data = reader.recv(65536)
        if not data:
            break
        received += len(data)
    return received == expected


def dsync_cost(count: int, directory: Path | None) -> dict[str, float]:
    """The mean CPU µs (the writing thread's) and the median wall µs of an O_DSYNC `pwrite`
    of `RECORD_BYTES` into space `fallocate` set aside: the call returns once the disk has
    it."""
    record = b"r" * RECORD_BYTES
    with tempfile.TemporaryDirectory(dir=directory, prefix="venue-bench-floor-") as name:
        path = Path(name) / "journal"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_DSYNC, 0o644)
        os.posix_fallocate(fd, 0, count * RECORD_BYTES)  # as the journal grows its file
        cpu_us: list[float] = []
        wall_us: list[float] = []
        try:
            for index in range(count):
                cpu, wall = time.thread_time(), time.perf_counter()
                os.pwrite(fd, record, index * RECORD_BYTES)
                wall_us.append((time.perf_counter() - wall) * 1e6)
                cpu_us.append((time.thread_time() - cpu) * 1e6)
        finally:
            os.close(fd)
    return {
        "cpu_us": round(statistics.mean(cpu_us), 2),
        "wall_us": round(statistics.median(wall_us), 2),
    }
