"""REST's public reads served here: recent trades, the ticker and candles (docs/rest.md).

Owns the reads the websocket has as channels but not as methods (`LOCAL_READS`): their
params and results (msgspec structs, which `/openapi.json` is generated from, with the
result of `GET /api/v1/time`), and the results themselves, read off market data (the
trades tape) and the candles, which hold durable trades only. The routing, the charges and
the answer's framing are `gateway.rest`'s; the other public routes (instruments, book,
time, reserves) run as their websocket methods. The clock is an input (`now`, µs).
Limits: a read's `limit` within what is kept (`TRADES_RECENT_MAX`, `BARS_KEPT_MAX`).
"""

from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from msgspec import Meta

from engine.instrument import unknown_symbol
from engine.reasons import ErrorCode
from gateway import wire
from gateway.candles import BARS_KEPT_MAX, CANDLES_LIMIT_DEFAULT, CandlesResult, Ticker
from gateway.market_data import Channel, Stream
from gateway.tape import TRADES_RECENT_MAX

if TYPE_CHECKING:
    from gateway.server import VenueServer

E = ErrorCode

LOCAL_READS = frozenset({"trades", "ticker", "candles"})
_AT_SYMBOL = " - at `symbol`"  # an unknown symbol's place in the query, in REST's words


class TradesParams(wire.Params, frozen=True):
    symbol: wire.Symbol
    limit: Annotated[int, Meta(ge=1, le=TRADES_RECENT_MAX)] = TRADES_RECENT_MAX


class TickerParams(wire.Params, frozen=True):
    symbol: wire.Symbol | None = None


class CandlesParams(wire.Params, frozen=True):
    symbol: wire.Symbol
    interval: wire.Interval
    limit: Annotated[int, Meta(ge=1, le=BARS_KEPT_MAX)] = CANDLES_LIMIT_DEFAULT


class Trade(msgspec.Struct, frozen=True):
    trade_id: int
    price: str
    qty: str
    taker_side: Literal["buy", "sell"]
    ts: int  # µs


class TradesResult(msgspec.Struct, frozen=True):
    """Recent trades of a symbol, newest last."""

    symbol: str
    trades: list[Trade]


class TimeResult(msgspec.Struct, frozen=True):
    """The venue's clock: what a request's X-Timestamp is checked against."""

    time: int  # µs since the epoch


class TickersResult(msgspec.Struct, frozen=True):
    tickers: list[Ticker]


class PublicReads:
    """The results of one server's `LOCAL_READS`, from its market data and candles."""

    def __init__(self, server: "VenueServer") -> None:
        self.server = server

    def result(
        self, runs_as: str, params: dict[str, Any], params_type: type[wire.Params], now: int
    ) -> msgspec.Struct | wire.WireError:
        """The result of the read `runs_as` (one of `LOCAL_READS`) with `params`, checked
        already against `params_type`, at `now`; or why there is none (a symbol unknown)."""
        decoded = msgspec.convert(params, params_type)
        result: msgspec.Struct | wire.WireError = getattr(self, "_" + runs_as)(decoded, now)
        return result

    def _trades(self, p: TradesParams, now: int) -> TradesResult | wire.WireError:
        stream = Stream(Channel.TRADES, p.symbol)
        market_data = self.server.public.current()
        problem = market_data.problem(stream, "symbol")
        if problem is not None:
            return wire.WireError(None, E.UNKNOWN_SYMBOL, problem)
        message = msgspec.json.decode(market_data.snapshot(stream, now).payload)
        rows = message["data"][-p.limit :]
        return TradesResult(p.symbol, msgspec.convert(rows, list[Trade]))

    def _ticker(self, p: TickerParams, now: int) -> TickersResult | wire.WireError:
        specs = self.server.dispatcher.specs
        if p.symbol is not None and p.symbol not in specs:
            words = unknown_symbol(p.symbol, specs)
            return wire.WireError(None, E.UNKNOWN_SYMBOL, f"{words}{_AT_SYMBOL}")
        symbols = [p.symbol] if p.symbol is not None else sorted(specs)
        candles = self.server.public.candles
        return TickersResult([candles.ticker(specs[symbol], now) for symbol in symbols])

    def _candles(self, p: CandlesParams, now: int) -> CandlesResult | wire.WireError:
        spec = self.server.dispatcher.specs.get(p.symbol)
        if spec is None:
            words = unknown_symbol(p.symbol, self.server.dispatcher.specs)
            return wire.WireError(None, E.UNKNOWN_SYMBOL, f"{words}{_AT_SYMBOL}")
        return self.server.public.candles.result(spec, p.interval, p.limit)
