"""`venue bench e2e --cluster`: the same run against a local cluster (real processes, tiny)."""

import contextlib
import io
import json
from pathlib import Path

from bench import e2e_bench
from cli.main import main
from tests.sample_config import SAMPLE_CONFIG


def test_e2e_against_a_cluster_sums_cpu_over_every_process_and_accounts_every_action(
    tmp_path: Path,
) -> None:
    argv = ["bench", "e2e", "--cluster", "--config", str(SAMPLE_CONFIG)]
    argv += ["--out", str(tmp_path), "--json", "--duration", "1", "--rate", "100"]
    argv += ["--taker-share", "0.5", "--makers", "1", "--takers", "1", "--subscribers", "2"]
    argv += ["--symbols", "2"]  # each gateway's subscriber follows both symbols
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(argv)
    (line,) = printed.getvalue().splitlines()
    result = json.loads(line)
    assert status == 0 and result["server_stopped_cleanly"]
    assert result["shape"].startswith("cluster: 1 core + 2 gateways")
    assert result["sent"] == result["acked"] + result["rejected"] + result["unanswered"]
    assert result["acked"] > 0 and result["unanswered"] == 0
    by_process = result["server_cpu_percent_by_process"]
    assert set(by_process) == {"core-a", "gw-a", "gw-b", "nats-n1", "nats-n2", "nats-n3"}
    assert abs(sum(by_process.values()) - result["server_cpu_percent"]) < 1.0  # rounding
    assert result["subscribers_by_gateway"] == {"gw-a": 1, "gw-b": 1}
    assert result["parameters"]["symbols"] == 2 and result["book_gaps"] == 0
    assert result["book_messages_by_symbol"].keys() == {"AAPLx-USD", "BENCH01x-USD"}


def test_clients_are_spread_over_the_gateways(tmp_path: Path) -> None:
    load = e2e_bench.Load(1.0, 100, makers=2, takers=2, subscribers=2, batch=1)
    urls = ["ws://127.0.0.1:1/ws/trade", "ws://127.0.0.1:2/ws/trade"]
    clients = e2e_bench.clients_for(load, urls, tmp_path)
    used = [client.argv[client.argv.index("--url") + 1] for client in clients]
    assert used[:4] == [urls[0], urls[1], urls[0], urls[1]]  # 2 makers, 2 takers
    assert e2e_bench.subscribers_by_url(clients) == {urls[0]: 1, urls[1]: 1}


def test_5000_subscribers_are_split_evenly_over_two_gateways(tmp_path: Path) -> None:
    """The fan-out benchmark's shape: 2,500 connections per gateway, in processes of 250."""
    load = e2e_bench.Load(1.0, 100, makers=2, takers=2, subscribers=5_001, batch=1)
    urls = ["ws://127.0.0.1:1/ws/trade", "ws://127.0.0.1:2/ws/trade"]
    clients = e2e_bench.clients_for(load, urls, tmp_path)
    assert e2e_bench.subscribers_by_url(clients) == {urls[0]: 2_501, urls[1]: 2_500}
    subscribers = [client for client in clients if client.role == "subscriber"]
    assert len({client.log for client in subscribers}) == len(subscribers) == 11 + 10
