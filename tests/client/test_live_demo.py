"""`venue demo` (client/live_demo.py) as a real process under Ctrl-C (SIGINT); its run in
process is tested with the bots, in tests/client/test_bots.py."""

import os
import pty
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from core.venue_core import CLEAN_STOP_FILE
from tests.conftest import ROOT
from tests.sample_config import SAMPLE_CONFIG
from tests.terminal import ON_ITS_TERMINAL, read_until

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


def _demo(tmp_path: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "cli.main", "demo", "--config", str(SAMPLE_CONFIG)]
    command += ["--port", "0", "--seconds", "600", "--data-dir", str(tmp_path / "demo")]
    return subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _silent_peer(port: int) -> socket.socket:
    """A websocket client of the demo's server (/ws/public) that never answers a close: the
    server's stop waits for it (`gateway.transport.CLOSE_TIMEOUT_S`, then cuts it off)."""
    peer = socket.create_connection(("127.0.0.1", port), timeout=LINE_TIMEOUT_S)
    peer.sendall(
        b"GET /ws/public HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    response = b""
    while b"\r\n\r\n" not in response:
        received = peer.recv(4096)
        assert received, f"closed during the handshake: {response!r}"
        response += received
    assert response.startswith(b"HTTP/1.1 101"), response
    return peer


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


def test_a_third_ctrl_c_while_stopping_ends_the_demo_at_once_with_130(tmp_path: Path) -> None:
    """The finding: after the second Ctrl-C every further SIGINT or SIGTERM was swallowed until
    the summary printed, so a stop that hangs could only be ended by SIGKILL. The stop is held
    here by a peer that never answers the server's close (seconds: a real hang, longer); the
    third Ctrl-C ends the process now, 130, in one line, without the summary."""
    demo = _demo(tmp_path)
    seen: list[str] = []
    peer = None
    try:
        _read_until(demo, "tokenvenue live on", seen)
        port = re.search(r"ws://127\.0\.0\.1:(\d+)/", seen[-1])
        assert port is not None, seen[-1]
        peer = _silent_peer(int(port.group(1)))
        _read_until(demo, "[", seen)
        demo.send_signal(signal.SIGINT)
        _read_until(demo, STOPPING, seen)
        demo.send_signal(signal.SIGINT)
        _read_until(demo, "interrupted again", seen)
        demo.send_signal(signal.SIGINT)  # the server's stop waits for the silent peer
        output, errors = demo.communicate(timeout=LINE_TIMEOUT_S)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate()
        if peer is not None:
            peer.close()
    assert demo.returncode == 130, "".join(seen) + output + errors
    after = output.splitlines()
    assert after == ["interrupted a third time: the demo ends now (130), without its summary"]
    assert "Traceback" not in errors, errors


def test_a_closed_terminal_stops_the_demo_cleanly(tmp_path: Path) -> None:
    """The finding (review of session 26): `venue demo` in a terminal that was closed got
    SIGHUP, whose default action killed it: the server not stopped, no clean-stop mark. It
    runs here as a real terminal's session leader (a pty); the terminal's side is closed once
    the bots trade, which also makes every later write to it fail (EIO): the stop is as
    clean as Ctrl-C's, its summary going nowhere."""
    data_dir = tmp_path / "demo"
    command = [*ON_ITS_TERMINAL, "-m", "cli.main", "demo", "--config", str(SAMPLE_CONFIG)]
    command += ["--port", "0", "--seconds", "600", "--data-dir", str(data_dir)]
    terminal, its_side = pty.openpty()
    demo = subprocess.Popen(
        command,
        cwd=ROOT,
        stdin=its_side,
        stdout=its_side,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    os.close(its_side)
    try:
        read_until(terminal, rb"\n\[ *\d", LINE_TIMEOUT_S)  # a status line: the bots trade
        os.close(terminal)
        _, errors = demo.communicate(timeout=LINE_TIMEOUT_S)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate()
    assert demo.returncode == 0, errors
    assert b"Traceback" not in errors, errors
    assert (data_dir / CLEAN_STOP_FILE).exists()  # the server stopped as at Ctrl-C


def test_the_help_gives_the_port_and_the_length_it_runs_by_default() -> None:
    """`venue demo --help` said only "0: any free port" and "Ctrl-C stops earlier": the README
    says the demo runs 20 s, and (since session 32) that its port is the config's."""
    import argparse

    from client import live_demo

    parser = argparse.ArgumentParser(prog="venue demo")
    live_demo.add_arguments(parser)
    help_text = " ".join(parser.format_help().split())
    assert "default: the config's [venue] port (venue.toml's: 8765); 0: any free port" in help_text
    assert "default 20, at most 3,600; Ctrl-C stops earlier" in help_text


def test_the_demo_archives_its_journal_nowhere(tmp_path: Path) -> None:
    """Session 35: with a config whose `journal_archive_dir` names a production venue's
    archive, the demo's throwaway journal would be archived there, its segments standing
    where that venue's go; the demo runs with none, all else as the config says."""
    from client.live_demo import demo_config
    from core import config as venue_config

    path = tmp_path / "venue.toml"
    archive = tmp_path / "archive"
    archive.mkdir()
    path.write_text(
        SAMPLE_CONFIG.read_text().replace(
            "[venue]\n", f'[venue]\njournal_archive_dir = "{archive}"\n', 1
        )
    )
    config = venue_config.load_to_build(path)
    assert config.venue.journal_archive_dir == str(archive)
    demo = demo_config(config)
    assert demo.venue.journal_archive_dir == ""
    assert demo.venue.port == config.venue.port and demo.instruments == config.instruments
