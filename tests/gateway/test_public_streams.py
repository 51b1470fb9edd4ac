"""gateway.public_streams: the pacing of publications (their fan-out is tested with real
subscribers in test_sessions.py and test_server_streams.py)."""

import pytest

from engine.events import InstrumentListed
from gateway import public_streams
from gateway.market_data import MarketData
from gateway.public_streams import PUBLISH_SHARE_MAX, PublicStreams
from gateway.sessions import Sessions
from tests.engine.conftest import make_spec

PUBLICATION_S = 0.004  # what each publication takes of the loop's time here


class _LoopClock:
    """The loop's clock, a publication's time on at each reading; the thread's CPU time
    stands still, as while the thread waits for a core."""

    def __init__(self) -> None:
        self.now_s = 100.0

    def monotonic(self) -> float:
        now_s = self.now_s
        self.now_s += PUBLICATION_S
        return now_s

    def thread_time(self) -> float:
        return 0.0


def test_a_publication_holds_the_next_back_by_its_time_on_the_loops_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pause is the publication's cost on the clock it is waited on: the time the
    trading waited for it, whether or not the thread held a core all along."""
    public = PublicStreams(Sessions(), None, 1)  # type: ignore[arg-type]
    public.market_data = MarketData(1, public.candles)
    public.market_data.on_events([InstrumentListed(0, make_spec())])
    clock = _LoopClock()
    monkeypatch.setattr(public_streams, "time", clock)
    public.flush()
    ended_s = 100.0 + PUBLICATION_S
    pause_s = PUBLICATION_S * (1 - PUBLISH_SHARE_MAX) / PUBLISH_SHARE_MAX
    assert public._next_at == pytest.approx(ended_s + pause_s)
