"""cluster/nats.py: real nats-server processes on loopback, each in its own temp directory."""

import asyncio
from pathlib import Path

import nats
import pytest

from cluster.nats import MAX_PAYLOAD_BYTES, NatsCluster, NatsError, free_ports


async def round_trip(urls: list[str]) -> bytes:
    """Publish and receive one message through the servers: they answer clients."""
    client = await nats.connect(urls)
    try:
        subscription = await client.subscribe("ping")
        await client.publish("ping", b"pong")
        return (await subscription.next_msg(timeout=5)).data
    finally:
        await client.close()


def test_one_node_starts_with_jetstream_and_stops(tmp_path: Path) -> None:
    cluster = NatsCluster(tmp_path, size=1)
    with cluster:
        node = cluster.nodes[0]
        assert node.running and node.healthy()
        assert cluster.url == f"nats://127.0.0.1:{node.client_port}"
        assert asyncio.run(round_trip(cluster.urls)) == b"pong"
        config = node.config_path.read_text()
        assert f"max_payload: {MAX_PAYLOAD_BYTES}" in config
        assert str(tmp_path / "n1" / "jetstream") in config
        assert "cluster" not in config
    assert not node.running and not node.healthy()
    assert (tmp_path / "n1" / "jetstream").is_dir()  # the store stays for a restart


def test_three_nodes_route_to_each_other_and_survive_a_kill(tmp_path: Path) -> None:
    with NatsCluster(tmp_path, size=3) as cluster:
        assert len(set(cluster.urls)) == 3
        assert all("cluster { name: venue" in n.config_path.read_text() for n in cluster.nodes)
        pid = cluster.nodes[1].process.pid if cluster.nodes[1].process else None
        cluster.nodes[1].kill()
        assert not cluster.nodes[1].running
        assert asyncio.run(round_trip(cluster.urls)) == b"pong"  # the other two serve
        cluster.restart(1)
        assert cluster.nodes[1].running and cluster.nodes[1].process is not None
        assert cluster.nodes[1].process.pid != pid
        assert asyncio.run(round_trip([cluster.nodes[1].url])) == b"pong"
    assert not any(node.running for node in cluster.nodes)


def test_a_node_that_cannot_start_is_reported_with_its_log(tmp_path: Path) -> None:
    with NatsCluster(tmp_path / "first", size=1) as first:
        clashing = NatsCluster(tmp_path / "second", size=1)
        clashing.nodes[0].client_port = first.nodes[0].client_port  # already in use
        with pytest.raises(NatsError, match="n1 exited"):
            clashing.start()
        assert not clashing.nodes[0].running


def test_ports_are_distinct() -> None:
    ports = free_ports(9)
    assert len(set(ports)) == 9
