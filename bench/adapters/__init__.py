"""Engines behind one small interface (`EngineAdapter`), for `venue bench engine --compare`.

`all_adapters()` lists them in table order: ours (book only) first, as the ratio's base.
"""

from bench.adapters.base import AdapterResult, EngineAdapter
from bench.adapters.naive import NaiveAdapter
from bench.adapters.ours import VenueAdapter
from bench.adapters.thirdparty import candidates

__all__ = ["AdapterResult", "EngineAdapter", "all_adapters"]


def all_adapters() -> list[EngineAdapter]:
    """Every adapter, available or not; ours (book only) first."""
    adapters: list[EngineAdapter] = [VenueAdapter(), VenueAdapter(ledger=True), NaiveAdapter()]
    adapters.extend(candidates())
    return adapters
