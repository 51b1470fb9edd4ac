"""`venue cluster` (cli/cluster.py): the local cluster up, usable, stopped by a signal (hang-ups:
test_hangup.py)."""

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from client.sdk import VenueClient
from tests.conftest import KEYS, ROOT
from tests.sample_config import SAMPLE_CONFIG

UP_TIMEOUT_S = 120
STOP_TIMEOUT_S = 60


def _wait_for(path: Path, text: str, process: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + UP_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        output = path.read_text()
        if text in output:
            return output
        time.sleep(0.1)
    raise AssertionError(f"no {text!r}: {path.read_text()}")


def test_venue_cluster_comes_up_serves_orders_and_stops_on_sigterm(tmp_path: Path) -> None:
    output_path = tmp_path / "out.txt"
    command = [sys.executable, "-m", "cli.main", "cluster", "--config", str(SAMPLE_CONFIG)]
    command += ["--dir", str(tmp_path / "cluster"), "--nats-nodes", "1", "--sqlite"]
    command += ["--cores", "1", "--gateways", "1"]
    with output_path.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        text = _wait_for(output_path, "stop with Ctrl-C", process)
        match = re.search(r"gateway gw-a: (ws://127\.0\.0\.1:(\d+)/ws/trade)", text)
        assert match is not None, text
        url, port = match.group(1), int(match.group(2))

        async def place() -> dict[str, str]:
            client = await VenueClient(url).connect()
            try:
                await client.logon(*KEYS["alpha"])
                result: dict[str, str] = await client.place("AAPLx-USD", "sell", "1", "199.00")
                return result
            finally:
                await client.close()

        assert asyncio.run(asyncio.wait_for(place(), 30))["status"] == "new"
        process.send_signal(signal.SIGTERM)
        assert process.wait(STOP_TIMEOUT_S) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "tokenvenue cluster stopped" in output_path.read_text()
    with socket.socket() as probe:  # the gateway is gone with the cluster
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_a_relative_dir_holds_every_roles_data_not_the_source_tree(tmp_path: Path) -> None:
    """The finding: the roles run in the source tree, so with `--dir c` the logs went to
    ./c but each core's and gateway's data directory to c/ under the source tree."""
    output_path = tmp_path / "out.txt"
    command = [sys.executable, "-m", "cli.main", "cluster", "--config", str(SAMPLE_CONFIG)]
    command += ["--dir", "relative", "--nats-nodes", "1", "--sqlite"]
    command += ["--cores", "1", "--gateways", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with output_path.open("wb") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, cwd=tmp_path, env=env
        )
    try:
        _wait_for(output_path, "stop with Ctrl-C", process)
        process.send_signal(signal.SIGTERM)
        assert process.wait(STOP_TIMEOUT_S) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert not (ROOT / "relative").exists(), "a role's data went into the source tree"
    assert (tmp_path / "relative" / "core-a" / "venue.lock").is_file()


def test_the_banner_names_as_many_gateways_as_the_cluster_has() -> None:
    """`--gateways 1` said "connect a client to either gateway" (seen by running the README's
    smallest shape): one gateway is no choice, three or more are more than either."""
    from cli.cluster import connect_advice

    assert connect_advice(1) == "connect a client to the gateway"
    assert connect_advice(2) == "connect a client to either gateway"
    assert connect_advice(3) == "connect a client to any gateway"


def test_a_config_from_a_pipe_is_refused_before_anything_starts(tmp_path: Path) -> None:
    """Session 32's whole-diff review: `venue cluster --config <(...)` passed each role the
    pipe's `/proc/PID/fd/pipe:[N]` name, which no role can open. Refused in one line before a
    directory is made or a process started; a file is what it needs."""
    from cli import cluster
    from cli.failures import CommandFailed

    read_end, write_end = os.pipe()
    os.write(write_end, SAMPLE_CONFIG.read_bytes())
    os.close(write_end)
    try:
        with pytest.raises(CommandFailed, match="a pipe, not a file: the cluster's roles"):
            cluster._check_config(Path(f"/dev/fd/{read_end}"))
    finally:
        os.close(read_end)
    cluster._check_config(SAMPLE_CONFIG)  # a file passes


@pytest.mark.parametrize("key", ['journal_archive_dir = "cold"', "journal_segment_bytes = 65536"])
def test_a_file_journal_key_is_refused_before_anything_starts(tmp_path: Path, key: str) -> None:
    """The reviewer: every role refuses `[venue] journal_archive_dir` or
    `journal_segment_bytes` with NATS (`venue serve`), but `venue cluster` started its 3 NATS
    servers and PostgreSQL first. Refused in its pre-check, in one line naming the key."""
    from cli import cluster
    from cli.failures import CommandFailed

    config = tmp_path / "venue.toml"
    config.write_text(SAMPLE_CONFIG.read_text().replace("[venue]\n", f"[venue]\n{key}\n"))
    name = key.split(" ")[0]
    with pytest.raises(CommandFailed, match=f"{name} is for the file journal: with nats"):
        cluster._check_config(config)
