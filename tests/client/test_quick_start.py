"""The quick start of docs/protocol.md runs as written: extracted, run as a real process.

The snippet is taken from the doc itself, its `make run` URL pointed at a real server on
127.0.0.1, and run twice with the repository's Python, so the doc cannot rot.
"""

import re
import subprocess
import sys
from pathlib import Path

from tests.client.test_admin_cli import BackgroundVenue
from tests.conftest import ROOT, TEST_TIMEOUT_S

DOC = ROOT / "docs" / "protocol.md"
MAKE_RUN_URL = "ws://127.0.0.1:8765/ws/trade"  # venue.toml's host and port


def quick_start() -> str:
    """The first python block of the doc's "1. Quick start" section."""
    text = DOC.read_text()
    section = text[text.index("## 1. Quick start") : text.index("## 2. Conventions")]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert blocks, "the quick start has no python block"
    return str(blocks[0])


def test_the_snippet_targets_make_runs_defaults() -> None:
    config = (ROOT / "venue.toml").read_text()
    assert 'host = "127.0.0.1"' in config and "port = 8765" in config
    snippet = quick_start()
    assert snippet.count(MAKE_RUN_URL) == 1
    assert "asyncio.run(main())" in snippet and "import" in snippet


def test_the_quick_start_runs_as_written_against_a_real_server(tmp_path: Path) -> None:
    server = BackgroundVenue(tmp_path / "data").start()
    try:
        script = tmp_path / "quick_start.py"
        url = f"ws://127.0.0.1:{server.port}/ws/trade"
        script.write_text(quick_start().replace(MAKE_RUN_URL, url))
        outputs = []
        for _ in range(2):  # a second run must not trip over the first one's cl_ord_id
            run = subprocess.run(
                [sys.executable, str(script)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=TEST_TIMEOUT_S,
            )
            assert run.returncode == 0, run.stderr
            outputs.append(run.stdout)
    finally:
        server.stop()
    for out in outputs:
        assert "open orders: 0" in out
        assert "'status': 'new'" in out and "exec: new new" in out
        assert "canceled: {" in out and "'status': 'canceled'" in out
    placed = [line for out in outputs for line in out.splitlines() if line.startswith("placed")]
    assert len(set(placed)) == 2 and all("quick-" in line for line in placed)
