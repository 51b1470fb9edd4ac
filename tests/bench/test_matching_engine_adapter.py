"""`bench.adapters.matching_engine_adapter`: matching-engine trades what the naive book trades.

The first run makes the Python 3.12 venv under the user's cache (a minute at most) and
later runs reuse it. The test skips only when that cannot be done, and says why.
"""

from pathlib import Path

import pytest

from bench import workloads
from bench.adapters import matching_engine_adapter as adapter_module
from bench.adapters.matching_engine_adapter import MatchingEngineAdapter
from bench.adapters.naive import NaiveAdapter

OPS = 2_000
SEED = 5


@pytest.mark.parametrize("name", sorted(workloads.WORKLOADS))
def test_trades_what_the_naive_book_trades(name: str) -> None:
    adapter = MatchingEngineAdapter()
    ok, reason = adapter.available()
    if not ok:
        pytest.skip(reason)
    workload = workloads.build(name, OPS, SEED)
    result = adapter.run(adapter.prepare(workload))
    naive = NaiveAdapter()
    expected = naive.run(naive.prepare(workload)).traded_qty
    assert result.traded_qty == expected
    assert len(result.latencies_ns) == OPS and result.seconds > 0
    assert result.cpu_seconds > 0  # the driver's process CPU time of the same loop
    assert (expected > 0) == (name != "addcancel")


def test_without_python312_it_is_skipped_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no python3.12 here
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert adapter_module.find_python312() is None
    ok, reason = MatchingEngineAdapter().available()
    assert not ok and "python3.12" in reason
