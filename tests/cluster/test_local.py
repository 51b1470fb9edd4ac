"""`cluster.local.LocalCluster`, the harness the cluster tests and `venue cluster` start."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cluster.local import ClusterError, LocalCluster, Role, open_owner_only
from tests.sample_config import SAMPLE_CONFIG


def test_a_gateway_whose_port_was_taken_before_it_started_starts_on_another(
    tmp_path: Path,
) -> None:
    """A gateway's port is chosen free when the cluster is laid out, and taken up to seconds
    later, after NATS and the cores: an outgoing connection of theirs may have been given it
    meanwhile (a full run once failed so: "cannot listen on ...: Address already in use").
    Here the port is held by a listener throughout: the gateway serves on another one."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        taken_port = taken.getsockname()[1]
        cluster = LocalCluster(
            tmp_path, SAMPLE_CONFIG, nats_nodes=1, postgres=False, cores=1, gateways=1
        )
        gateway = cluster.gateways[0]
        gateway.port = taken_port
        with cluster:
            assert gateway.running() and gateway.port != taken_port
            with socket.create_connection(("127.0.0.1", gateway.port), timeout=5):
                pass  # it listens there
            assert "Address already in use" in gateway.log_path.read_text()  # tried first


def test_a_roles_log_is_its_owners_alone(tmp_path: Path) -> None:
    """The finding (session 32): under the usual umask 022 a core's and a gateway's logs were
    0644 in the cluster's 0711 directory, so any local user could read, by its known name,
    a log naming accounts, API keys and admin requests. The role is started against no NATS
    and killed at once: only its log's mode is looked at."""
    cluster = LocalCluster(tmp_path, SAMPLE_CONFIG, nats_nodes=1, postgres=False, cores=1)
    previous = os.umask(0o022)
    try:
        for role in (cluster.cores[0], cluster.gateways[0]):
            cluster.start_role(role)
            assert role.process is not None
            role.process.kill()
            role.process.wait(timeout=10)
            assert oct(role.log_path.stat().st_mode & 0o777) == "0o600"
    finally:
        os.umask(previous)


def test_a_roles_log_left_open_to_others_is_closed_on_the_next_start(tmp_path: Path) -> None:
    """The finding (session 32): a log an earlier run left 0644 stayed so (the mode given to
    open() applies only to a file it creates); what it holds is kept, appended to."""
    log_path = tmp_path / "core-1.log"
    log_path.write_bytes(b"earlier run\n")
    log_path.chmod(0o644)
    with open_owner_only(log_path) as log:
        log.write(b"this run\n")
    assert oct(log_path.stat().st_mode & 0o777) == "0o600"
    assert log_path.read_bytes() == b"earlier run\nthis run\n"


# A role that logs `LINE` every 0.1 s, `LINES` times, then `READY`, then sleeps until killed.
ROLE_SCRIPT = """
import sys, time
for _ in range(int(sys.argv[2])):
    print(sys.argv[1], flush=True)
    time.sleep(0.1)
print("tokenvenue ready", flush=True)
time.sleep(60)
"""


def _wait_for_a_role_logging(tmp_path: Path, line: str, lines: int) -> None:
    """`LocalCluster.wait_for(role, "tokenvenue ready", 1 s)` on a process that logs `line`
    `lines` times, 0.1 s apart, before it is ready."""
    log_path = tmp_path / "role.log"
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", ROLE_SCRIPT, line, str(lines)], stdout=out
        )
    role = Role("core-a", "core", log_path, process=process)
    cluster = LocalCluster(tmp_path / "cluster", SAMPLE_CONFIG)
    try:
        cluster.wait_for(role, "tokenvenue ready", timeout_s=1.0)
    finally:
        process.kill()
        process.wait()


def test_a_role_whose_start_says_its_progress_is_waited_for_past_the_bound(
    tmp_path: Path,
) -> None:
    """A long replay (3 s here, the bound 1 s) says how far it is: each such line gives it
    the bound again (before session 33 a start past 90 s failed whatever it said)."""
    progress = "2026-12-07T00:00:00Z INFO venue recovering seq=1 journal_seq=9"
    _wait_for_a_role_logging(tmp_path, progress, 30)


def test_a_role_that_logs_but_never_progresses_fails_at_the_bound(tmp_path: Path) -> None:
    """Any other line does not count: a role retrying for ever (NATS unreachable, a failing
    start) logs a line every few seconds, and `venue cluster` must not wait for it for ever
    (session 33's review)."""
    retrying = "2026-12-07T00:00:00Z WARNING venue.cluster nats: ConnectionRefusedError"
    with pytest.raises(ClusterError, match=r"no 'tokenvenue ready' nor progress within 1\.0s"):
        _wait_for_a_role_logging(tmp_path, retrying, 30)
