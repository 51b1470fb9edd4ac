"""`venue serve` against the process's open-file limit (RLIMIT_NOFILE): `[limits]
connections_max` and the venue's own files (`limits.OPEN_FILES_RESERVE`) must fit, or the
cap is lowered to what does. Before
session 23's follow-up the limit was not looked at: a venue configured above it started,
then failed at accept (EMFILE) once that many clients came. Each server here is a real
process started under the limits the test sets."""

import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from gateway.limits import CONNECTIONS_MAX, OPEN_FILES_RESERVE
from tests.cli.test_serve import STOP_TIMEOUT_S, _listening
from tests.conftest import ROOT
from tests.sample_config import SAMPLE_CONFIG

NEEDED = CONNECTIONS_MAX + OPEN_FILES_RESERVE  # the sample config keeps the default cap
START_TIMEOUT_S = 30


def serve_command(data_dir: Path) -> list[str]:
    command = [sys.executable, "-m", "cli.main", "serve", "--config", str(SAMPLE_CONFIG)]
    return [*command, "--data-dir", str(data_dir), "--port", "0"]


def limited_to(soft: int, hard: int) -> Callable[[], None]:
    """A child's `preexec_fn`: start it under these open-file limits."""
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def served_under(tmp_path: Path, hard: int) -> subprocess.Popen[str]:
    """`venue serve` started with a soft open-file limit of 1,024 under `hard`."""
    return subprocess.Popen(
        serve_command(tmp_path / "data"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=limited_to(1_024, hard),
    )


def open_files_limits(pid: int) -> list[str]:
    """The process's soft and hard open-file limits, as /proc shows them."""
    limits = Path(f"/proc/{pid}/limits").read_text().splitlines()
    return next(line for line in limits if line.startswith("Max open files")).split()[3:5]


def lines_until_listening(server: subprocess.Popen[str]) -> list[str]:
    """What `server` printed up to its "listening" line (or its end), within the timeout."""
    assert server.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        line = server.stdout.readline()
        if not line and server.poll() is not None:
            break
        lines.append(line)
        if "listening" in line:
            break
    return lines


def test_a_cap_over_the_hard_limit_is_lowered_to_fit_and_said(tmp_path: Path) -> None:
    """`make run` on a machine whose hard limit is below the default cap must still start:
    the cap is lowered to what the limit holds, with a warning naming both, and the venue
    starts under the soft limit raised to the hard one."""
    hard = NEEDED - 1  # one file short
    server = served_under(tmp_path, hard)
    try:
        started = lines_until_listening(server)
        assert started and "listening" in started[-1], "the venue did not start"
        assert open_files_limits(server.pid) == [str(hard), str(hard)]
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=STOP_TIMEOUT_S)
    assert server.returncode == 0, output
    warnings = [line for line in started if "connections_max = 10000" in line]
    assert len(warnings) == 1, started
    warning = warnings[0]
    assert f"needs {NEEDED} open files" in warning, warning
    assert f"serving at most {hard - OPEN_FILES_RESERVE} connections" in warning, warning


def test_a_soft_limit_below_the_cap_is_raised_within_the_hard_limit(tmp_path: Path) -> None:
    hard = NEEDED + 1_000
    server = served_under(tmp_path, hard)
    try:
        assert _listening(server), "the venue did not start"
        assert open_files_limits(server.pid) == [str(NEEDED), str(hard)]
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=STOP_TIMEOUT_S)
    assert server.returncode == 0, output
