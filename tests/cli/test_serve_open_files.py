"""`venue serve` against the process's open-file limit (RLIMIT_NOFILE): `[limits]
connections_max` and the venue's own files (`limits.OPEN_FILES_RESERVE`) must fit. Before
session 23's follow-up the limit was not looked at: a venue configured above it started,
then failed at accept (EMFILE) once that many clients came. Each server here is a real
process started under the limits the test sets."""

import resource
import signal
import subprocess
import sys
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


def test_a_cap_over_the_hard_limit_refuses_the_start_in_one_line(tmp_path: Path) -> None:
    hard = NEEDED - 1  # one file short
    result = subprocess.run(
        serve_command(tmp_path / "data"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
        preexec_fn=limited_to(1_024, hard),
    )
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip()
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert line.startswith("venue: [limits] connections_max = 10000 needs"), line
    assert f"{NEEDED} open files" in line and f"hard limit of {hard}" in line, line
    assert not (tmp_path / "data").exists()  # refused before anything was made


def test_a_soft_limit_below_the_cap_is_raised_within_the_hard_limit(tmp_path: Path) -> None:
    hard = NEEDED + 1_000
    server = subprocess.Popen(
        serve_command(tmp_path / "data"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=limited_to(1_024, hard),
    )
    try:
        assert _listening(server), "the venue did not start"
        limits = Path(f"/proc/{server.pid}/limits").read_text().splitlines()
        open_files = next(line for line in limits if line.startswith("Max open files"))
        assert open_files.split()[3:5] == [str(NEEDED), str(hard)], open_files
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=STOP_TIMEOUT_S)
    assert server.returncode == 0, output
