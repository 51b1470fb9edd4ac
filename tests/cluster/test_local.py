"""`cluster.local.LocalCluster`, the harness the cluster tests and `venue cluster` start."""

import os
import socket
from pathlib import Path

from cluster.local import LocalCluster, open_owner_only
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
