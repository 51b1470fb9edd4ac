"""Run a real process on a pseudo-terminal and collect what it drew, for tests of TTY output.

Bounded in time and size; loopback-only callers. Linux pty via the standard library.
"""

import fcntl
import io
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Sequence
from pathlib import Path

OUTPUT_MAX = 1_000_000  # bytes kept of a run: a progress bar redraws, it never floods
# SIGHUP given its default action (the process ends), as a shell in a terminal window starts a
# command. A run of the suite under `nohup` ignores SIGHUP, and an ignored signal stays ignored
# across exec: every process the run started took itself for started under nohup, and a test
# of a stop on a hang-up waited to its timeout (session 37: five tests, 60 s each).
_HANG_UP_BY_DEFAULT = "signal.signal(signal.SIGHUP, signal.SIG_DFL)"
_EXEC_THE_REST = "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
# Put before `-m module ...` for a process a test hangs up (SIGHUP) without a terminal.
WITH_SIGHUP_DEFAULT = [
    sys.executable,
    "-c",
    f"import os, signal, sys; {_HANG_UP_BY_DEFAULT}; {_EXEC_THE_REST}",
]
# Put before `-m module ...` and run with `start_new_session=True` and a pty's side as stdin:
# the pty becomes the new session's controlling terminal, as a shell's in a terminal window,
# so closing the pty's other side hangs the process up (SIGHUP) as closing the window does
# (SIGHUP at its default action, as `WITH_SIGHUP_DEFAULT`).
# A wrapper, not a `preexec_fn`, which is unsafe in a process with threads.
ON_ITS_TERMINAL = [
    sys.executable,
    "-c",
    "import fcntl, os, signal, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0);"
    f" {_HANG_UP_BY_DEFAULT}; {_EXEC_THE_REST}",
]


def run_on_terminal(
    argv: Sequence[str], cwd: Path, timeout_s: float, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """Run `argv` with stdout and stderr on one pty; its exit status and everything drawn."""
    leader, follower = pty.openpty()
    rows_columns = struct.pack("HHHH", 40, 160, 0, 0)  # a terminal of 40 rows x 160 columns
    fcntl.ioctl(follower, termios.TIOCSWINSZ, rows_columns)
    process = subprocess.Popen(
        list(argv),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env={**os.environ, **(env or {})},
        close_fds=True,
    )
    os.close(follower)
    drawn = bytearray()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and len(drawn) < OUTPUT_MAX:
            ready, _, _ = select.select([leader], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # the process closed the terminal: it is done
                    break
                if not chunk:
                    break
                drawn += chunk
            elif process.poll() is not None:
                break
        status = process.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(leader)
    return status, drawn.decode(errors="replace")


class TerminalStream(io.StringIO):
    """An in-process stderr that says it is a terminal, for bars drawn without a process."""

    def isatty(self) -> bool:
        return True


def read_until(terminal: int, pattern: bytes, timeout_s: float) -> "re.Match[bytes]":
    """Read what the process draws on `terminal` (a pty's side) until `pattern`, a regular
    expression, matches it; its match, or AssertionError with what was drawn by `timeout_s`."""
    drawn = b""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and len(drawn) < OUTPUT_MAX:
        ready, _, _ = select.select([terminal], [], [], 0.5)
        if ready:
            drawn += os.read(terminal, 4096)
        if match := re.search(pattern, drawn):
            return match
    raise AssertionError(f"no {pattern!r} within {timeout_s} s: {drawn!r}")
