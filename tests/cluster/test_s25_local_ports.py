"""`cluster.local`'s fixed ports: `ports_from` and `ephemeral_overlap`, against real sockets
and a real range file."""

import socket
from pathlib import Path

import pytest

from cluster import local
from cluster.local import ClusterError, ephemeral_overlap, ports_from


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
