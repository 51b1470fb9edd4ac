"""The venue under test in its own process: `venue serve` started, observed and stopped.

Owns what the websocket benchmarks share: a config with the rate limits raised out of the
way (so the numbers are the gateway's, not the limiter's), the server on 127.0.0.1 with an
ephemeral port and a fresh data dir, its CPU time and peak memory from /proc, a clean
SIGTERM stop, and the last traceback of its log when something went wrong.
"""

import asyncio
import os
import re
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

SERVER_START_TIMEOUT_S = 30.0  # a fresh venue builds from venue.toml in well under a second
SERVER_STOP_TIMEOUT_S = 15.0  # SIGTERM flushes pending commands and closes the files
LOG_TAIL_CHARS = 4_000  # the end of the server's log: a traceback or two
LISTENING = re.compile(r"(ws://\S+/ws/trade)")
EXCEPTION_LINE = re.compile(r"^[\w.]*(?:Error|Exception)\b.*$", re.MULTILINE)
LIMITS_TABLE = re.compile(r"(?m)^\[limits\][^\[]*")

UNLIMITED = """
[limits]  # added by the benchmark: measure the gateway, not the rate limiter
connection_rate_per_s = 10000000
connection_burst = 10000000
account_rate_per_s = 10000000
account_burst = 10000000
"""


def run_async(work: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """Run a benchmark's coroutine on uvloop, as the server runs."""
    try:
        import uvloop
    except ImportError:  # uvloop is not built for every platform: plain asyncio then
        return asyncio.run(work)
    return uvloop.run(work)


def unlimited_config(config_path: Path, directory: Path, extra: str = "") -> Path:
    """A copy of the config in `directory` with `UNLIMITED` limits and `extra` TOML appended."""
    text = LIMITS_TABLE.sub("", config_path.read_text())
    path = directory / "venue.toml"
    path.write_text(text + UNLIMITED + extra)
    return path


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
        command = [*(self.prefix or [sys.executable]), "-m", "cli.main", "serve"]
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
