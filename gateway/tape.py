"""The trades tape: each symbol's last trades, as the `trades` channel's snapshot shows them.

Owns one bounded deque of durable `TradeExecuted` events per symbol (oldest first, at most
TRADES_RECENT_MAX), their image in a snapshot and their rebuild by replay. It is the
server's, like the candles (`gateway.candles`): the publisher (`gateway.market_data`) holds
each symbol's deque as its `recent` and extends it at every flush, so the live path does no
more per trade than before; on restart the tape is rebuilt as snapshot image + journal
replay (the server's `restore_gateway` and `replayed`), and a cluster's gateway, which
replays the whole stream at each start, rebuilds it by replay alone. So the tape survives
restarts exactly as it was: the same trades, ids, prices, quantities, sides and times, in
order. A split leaves the tape as it is (its trades went out at their prices).
Limits: TRADES_RECENT_MAX trades per symbol, the oldest dropped.
"""

from collections import deque
from collections.abc import Mapping, Sequence
from itertools import chain
from typing import Any

import msgspec

from engine.events import TradeExecuted

TRADES_RECENT_MAX = 50  # a trades snapshot draws a tape; history is a query, not a feed


class Tape:
    """Every symbol's recent trades, oldest first."""

    def __init__(self) -> None:
        # symbol -> its last trades; each deque is kept for good (the publisher holds it as
        # `_Market.recent`) and changed in place, never replaced
        self._recent: dict[str, deque[TradeExecuted]] = {}

    def recent(self, symbol: str) -> deque[TradeExecuted]:
        """`symbol`'s tape, where the publisher adds its flushed trades."""
        recent = self._recent.get(symbol)
        if recent is None:
            recent = self._recent[symbol] = deque(maxlen=TRADES_RECENT_MAX)
        return recent

    def add(self, trade: TradeExecuted) -> None:
        """One durable trade, replay's way (the publisher's join at its flush)."""
        self.recent(trade.symbol).append(trade)

    def image(self, unflushed: Mapping[str, Sequence[TradeExecuted]]) -> dict[str, Any]:
        """Every symbol's tape as builtins (the snapshot's `gateway["tape"]`), each followed
        by its `unflushed` trades: durable, so in the snapshot's seq, but still waiting for
        the publisher's next flush to join the tape."""
        symbols = sorted(set(self._recent) | {s for s, trades in unflushed.items() if trades})
        tapes = []
        for symbol in symbols:
            trades = chain(self._recent.get(symbol, ()), unflushed.get(symbol, ()))
            kept = deque(trades, maxlen=TRADES_RECENT_MAX)
            tapes.append([symbol, msgspec.to_builtins(list(kept))])
        return {"symbols": tapes}

    def restore(self, image: dict[str, Any] | None) -> None:
        """Take an `image()`; None (a snapshot from before the tape was kept) starts empty.
        The deques are refilled in place: the publisher may hold them already."""
        for recent in self._recent.values():
            recent.clear()
        if image is None:
            return
        for symbol, trades in image["symbols"]:
            self.recent(symbol).extend(msgspec.convert(trades, list[TradeExecuted]))
