"""`venue serve` as `make run` starts it: what it prints is enough to use the web page."""

import signal
import subprocess
import urllib.request
from pathlib import Path

from tests.cli.test_main import RUN_TIMEOUT_S, SERVE, START_LINES_MAX, _env


def test_serve_prints_the_web_page_and_demo_keys_and_serves_the_page(tmp_path: Path) -> None:
    server = subprocess.Popen(
        [*SERVE, "--port", "0", "--data-dir", str(tmp_path / "data")],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_env(),
    )
    try:
        assert server.stdout is not None
        lines = []
        for _ in range(START_LINES_MAX):  # bounded: the lines come first or never
            lines.append(server.stdout.readline())
            if lines[-1].startswith("stop with"):
                break
        [page_line] = [line for line in lines if line.startswith("  web page: ")]
        url = page_line.split()[2]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        assert any("demo only" in line for line in lines)
        assert any(
            line.split()[:5] == ["api", "key", "demo-taker", "secret", "demo-secret-taker"]
            for line in lines
        )
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/html; charset=utf-8"
            assert b"/static/app.js" in response.read()
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=RUN_TIMEOUT_S)
    assert server.returncode == 0
