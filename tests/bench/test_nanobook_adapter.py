"""`bench.adapters.nanobook_adapter`: nanobook trades what the naive book trades.

nanobook is in the project's bench extra, so `make test` installs it; the test runs.
"""

import pytest

from bench import workloads
from bench.adapters.naive import NaiveAdapter
from bench.adapters.nanobook_adapter import LOST_CANCEL, NanobookAdapter
from bench.adapters.thirdparty import Unsupported

OPS = 3_000
SEED = 5


@pytest.mark.parametrize("name", ["addcancel", "cross"])
def test_trades_what_the_naive_book_trades(name: str) -> None:
    adapter = NanobookAdapter()
    assert adapter.available() == (True, "")
    workload = workloads.build(name, OPS, SEED)
    result = adapter.run(adapter.prepare(workload))
    naive = NaiveAdapter()
    expected = naive.run(naive.prepare(workload)).traded_qty
    assert result.traded_qty == expected
    assert len(result.latencies_ns) == OPS
    assert (expected > 0) == (name == "cross")


def test_a_workload_with_price_moves_is_refused_with_the_reason() -> None:
    with pytest.raises(Unsupported, match="canceled orders"):
        NanobookAdapter().prepare(workloads.build("mixed", OPS, SEED))
    assert "0.19.2" in LOST_CANCEL
