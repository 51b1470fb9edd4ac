"""`venue demo` (client/live_demo.py) as a real process under Ctrl-C (SIGINT); its run in
process is tested with the bots, in tests/client/test_bots.py."""

import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT
from tests.sample_config import SAMPLE_CONFIG

LINE_TIMEOUT_S = 60  # the demo's start, or its stop, on a busy 2-core machine
STOPPING = "stopping the bots"


def _read_until(demo: subprocess.Popen[str], start: str, seen: list[str]) -> None:
    """Read the demo's lines into `seen` until one starts with `start` (bounded in time and
    by the demo's exit)."""
    assert demo.stdout is not None
    deadline = time.monotonic() + LINE_TIMEOUT_S
    while time.monotonic() < deadline:
        line = demo.stdout.readline()
        if not line and demo.poll() is not None:
            break
        seen.append(line)
        if line.startswith(start):
            return
    raise AssertionError(f"no line starting {start!r}: {''.join(seen)}")


def test_a_second_ctrl_c_while_the_bots_stop_is_acknowledged_and_the_summary_printed(
    tmp_path: Path,
) -> None:
    """The finding: Ctrl-C stopped the demo's bots, and a second one meanwhile (an impatient
    user) ended the process there with 130: no summary, the server not stopped. The second is
    acknowledged now: the bots are stopped at once, and the summary follows."""
    command = [sys.executable, "-m", "cli.main", "demo", "--config", str(SAMPLE_CONFIG)]
    command += ["--port", "0", "--seconds", "600", "--data-dir", str(tmp_path / "demo")]
    demo = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    seen: list[str] = []
    try:
        _read_until(demo, "[", seen)  # the first status line: the bots are trading
        demo.send_signal(signal.SIGINT)
        _read_until(demo, STOPPING, seen)
        demo.send_signal(signal.SIGINT)  # while they stop: the summary is seconds away
        output, errors = demo.communicate(timeout=LINE_TIMEOUT_S)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate()
    assert demo.returncode == 0, "".join(seen) + output + errors
    after = output.splitlines()
    assert any(line.startswith("interrupted again") for line in after), output
    assert any(line.endswith(" trades") for line in after), output  # the summary's total
    assert after[-1].endswith("ledger.sqlite: verified"), output
    assert "Traceback" not in errors, errors
