"""`cluster.local`'s fixed ports: `ports_from` and `ephemeral_overlap`, against real sockets
and a real range file."""

import socket
from pathlib import Path

import pytest

from cluster import local
from cluster.local import ClusterError, ephemeral_overlap, ports_from
from tests.sample_config import SAMPLE_CONFIG


def test_an_overlap_with_the_outgoing_range_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The finding: a --ports range inside the kernel's range for outgoing connections had
    PostgreSQL's bind fail now and then (`Address already in use`: a connection's local port
    in TIME_WAIT), with nothing saying why or what range avoids it."""
    range_file = tmp_path / "ip_local_port_range"
    range_file.write_text("32768\t60999\n")
    monkeypatch.setattr(local, "EPHEMERAL_RANGE_FILE", range_file)
    assert ephemeral_overlap([47220, 47221]) == (32768, 60999)
    assert ephemeral_overlap([32000, 32768]) == (32768, 60999)
    assert ephemeral_overlap([20000, 20011]) is None
    assert ephemeral_overlap([]) is None
    monkeypatch.setattr(local, "EPHEMERAL_RANGE_FILE", tmp_path / "missing")
    assert ephemeral_overlap([47220]) is None


def test_ports_from_names_the_port_taken() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        with pytest.raises(ClusterError, match=f"port {taken} of {taken}-{taken} is taken"):
            ports_from(taken, 1)  # its neighbours are not ours to probe: another's, maybe


def test_a_taken_port_in_the_outgoing_range_says_what_avoids_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        range_file = tmp_path / "ip_local_port_range"
        range_file.write_text(f"{taken}\t{taken + 10}\n")
        monkeypatch.setattr(local, "EPHEMERAL_RANGE_FILE", range_file)
        with pytest.raises(ClusterError, match=f"a range below {taken} avoids that"):
            ports_from(taken, 1)


def test_stop_ends_what_was_started_by_hand_without_start(tmp_path: Path) -> None:
    """`stop()` did nothing unless `start()` had taken the directory's lock (session 25):
    a test that starts NATS and roles by hand (test_pg_outage_cluster) left them running
    for the rest of the pytest session. It stops every process the object started; a
    PostgreSQL it did not start is left alone (another cluster's, maybe)."""
    cluster = local.LocalCluster(
        tmp_path, SAMPLE_CONFIG, nats_nodes=1, postgres=False, cores=0, gateways=0
    )
    cluster.nats.start()
    process = cluster.nats.nodes[0].process
    assert process is not None and process.poll() is None
    cluster.stop()  # before: returned at once, the node kept running
    assert process.poll() is not None
