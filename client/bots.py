"""Trading bots over the client SDK: a market maker quoting ladders, and a random taker.

Each bot is one logged-on `VenueClient` with an async `run(stop)`, so the CLI, the live demo
and tests run them in-process alike. `MarketMaker` enables cancel-on-disconnect and quotes
one or more symbols: every interval one `quote.mass` per level around each centre (the mid
of the others' book, else the centre given, else the venue's reference price), leaning
against its position, inside the band, and with no level that would take the position past
`position_max`. On stop it pulls its quotes; if it dies, COD pulls them. `Taker` sends
random marketable orders at a fixed rate. Sizes and prices are checked with the engine's own
`Market` before they are sent; a `--size` the engine would refuse stops the bot at once with
the rule, and a bot that has had `REFUSED_ALL_MAX` orders refused and none accepted stops
(`AllRefused`); one whose connection ends returns, saying why in `lost` (the CLI exits 1 on
it), unless it was given `other_urls` (a cluster's other gateways): then it starts on the
first that answers and stays up through its setup, its client resumes (on any of them) and
the bot carries on, and returns only if the resume gives up (or it is asked to stop
meanwhile). The CLI shows a live status line (`StatusLine`). The pricing is the pure
`quote_ladder`; limits below.
"""

import argparse
import asyncio
import contextlib
import logging
import math
import os
import random
import signal
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any, Protocol, TypeVar

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from cli import progress, venue_url
from cli.arguments import decimal_within, float_within, int_within
from cli.failures import CommandFailed, check_trade_url
from cli.venue_url import config_trade_url
from client.sdk import ConnectionLost, RequestTimeout, VenueClient, VenueError
from core import config as venue_config
from engine.enums import InstrumentKind
from engine.instrument import BAND_BPS_MAX, InstrumentSpec, case_twin
from engine.market import Market
from engine.reasons import E
from engine.units import PrecisionError, format_units, parse_units

log = logging.getLogger("venue.bots")
Result = TypeVar("Result")  # what a wait `_unless_stopped` watches gives

SYMBOLS_MAX = 10  # per market maker: one quote.mass round per symbol per interval
POSITION_LOTS_DEFAULT = 10  # the default position limit, in quote sizes
REFUSED_ALL_MAX = 20  # orders tried with none accepted: the bot stops, it cannot trade
STATUS_INTERVAL_S = 5.0  # off a terminal: a status line this often, readable in a log
LIVE_REFRESH_S = 0.5  # on a terminal: the one status line is rewritten this often
LEVELS_MAX = 10  # one quote set per level; a deeper ladder is a real strategy's business
INTERVAL_S_MIN = 0.1  # 5 levels requoted 10 times a second: at most 100 tokens/s
# Tokens a market maker may spend a second on its quotes: half a connection's 200 tokens/s
# (venue.toml's default), the rest left for pulls and queries. A round costs up to 2 x
# levels x symbols: a quote costs 1 token per `quote.mass` it is in, and a level whose bid
# and ask move opposite ways relative to the last round sends them in two requests (the
# side moving away first, see `_quote`). Past it the venue refuses most of its requotes
# RATE_LIMITED, round after round.
QUOTES_PER_S_MAX = 100
TAKER_RATE_PER_S_MAX = 100  # half a connection's 200 requests/s, leaving room to pull
SKEW_SPREAD_PER_LOT = Decimal("0.25")  # one quote size of inventory leans a quarter spread
SKEW_SPREADS_MAX = Decimal(1)  # however big the position, lean at most one spread
THROUGH_BPS = Decimal(5)  # how far past the touch a taker's IOC limit reaches
TAKE_FRACTION_MIN, TAKE_FRACTION_MAX = 0.2, 1.5  # default taker size, of the touch's qty
NOTIONAL_MARGIN = 2  # default sizes are worth twice the minimum: a price move cannot refuse
MARKET_ORDER_SHARE = 0.5  # of the taker's orders, the share sent as market by qty
PULL_TIMEOUT_S = 2.0  # pulling quotes on stop; past it, COD on disconnect does the job
# Asked to stop (Ctrl-C, SIGTERM, --seconds), a bot has this long to end its round and pull
# its quotes; then it is cut short: one waiting on a venue that does not answer (a handshake,
# a logon, a request: up to 30 s) would otherwise sit out that wait, deaf to Ctrl-C.
STOP_GRACE_S = PULL_TIMEOUT_S + 1.0
# A venue answers a connect and logon in milliseconds: one still waiting after this long is
# said to be waiting, and on what, rather than left silent (session 32's sweep).
CONNECT_NOTE_S = 2.0
REFUSALS_LOGGED_MAX = 50  # per bot: enough to diagnose a problem, never a flood
OUTCOME_UNKNOWN = E.OUTCOME_UNKNOWN.name  # an error's name: no outcome (an outage), not refused
QUOTE_SET_PREFIX = "mm-L"  # quote sets mm-L1..mm-LN: one bid and one ask per symbol each
BPS = Decimal(10_000)
URL_DEFAULT = venue_url.URL_DEFAULT  # no --url and no config (or its port 0)
# How a lost connection shows: a request that was waiting, or one sent after the end; or a
# venue that answers nothing for `request_timeout_s` (the bot ends as if it had gone)
CONNECTION_LOST = (ConnectionError, ConnectionClosed, RequestTimeout)
# How a link lost during a bot's setup shows (a venue not there at all is CANNOT_START's)
SETUP_LOST = (ConnectionLost, ConnectionClosed, RequestTimeout)
# What stops a bot before it trades, in one line: no venue there (refused, not a websocket
# server, a bad address), a venue that refuses the logon, the instrument or the size
CANNOT_START = (OSError, InvalidHandshake, InvalidURI, ValueError, VenueError)
CLOSED_STATUSES = frozenset({"filled", "canceled", "expired", "rejected"})
TRADING_STATUSES = frozenset({"open", "post_only"})  # an instrument's that take new orders
OPEN = "open"  # the one status that takes a taker's orders (IOC and market: no post-only)
DELISTED = "delisted"  # an instrument's final status: its orders cancelled, none taken again
# why a bot no longer trades a symbol, in its log: `<key>: MSFTx-USD is delisted: ...`
UNLISTED_WORDS = "is no longer listed by the venue"
DELISTED_WORDS = "is delisted"

QuoteLevel = tuple[Decimal | None, Decimal | None]  # a level's bid and ask; None: pulled
Listed = tuple[Decimal | None, int | None]  # a symbol's reference price and band (bps), if known


# ----------------------------------------------------------------- reference data


class AllRefused(ValueError):
    """Every order the bot tried was refused: it cannot do its job, so it stops and says why."""


@dataclass
class Instrument:
    """What a bot needs of an instrument: its grid, and its reference and band when known.

    `market` is the engine's own `Market` built from the published row, so the bot's checks
    (`refusal`, `least_qty`) are the engine's: its integer units, its exact notional
    fraction (T-bills: per 100 of face) and its band rule, never a copy of them.
    """

    symbol: str
    base: str
    quote: str
    tick: Decimal
    step: Decimal
    min_qty: Decimal
    min_notional: Decimal  # in the quote asset
    face: Decimal  # prices are per this much base (T-bills: per 100 of face)
    market: Market
    reference: Decimal | None = None  # the listed reference price
    band_bps: int | None = None
    status: str = "open"  # the venue's trading status, as last published

    @classmethod
    def from_row(
        cls, row: Mapping[str, Any], reference: Decimal | None = None, band_bps: int | None = None
    ) -> "Instrument":
        """From an `instruments` row; the row's own reference and band win when it has them."""
        published = row.get("reference_price")
        published_band = row.get("band_bps")
        if published is not None:
            reference = Decimal(published)
        if published_band is not None:
            band_bps = int(published_band)
        spec = _engine_spec(row, reference, band_bps)
        return cls(
            symbol=row["symbol"],
            base=row["base"],
            quote=row["quote"],
            tick=Decimal(row["tick"]),
            step=Decimal(row["step"]),
            min_qty=Decimal(row["min_qty"]),
            min_notional=Decimal(row["min_notional"]),
            face=Decimal(row.get("face", 1)),
            market=Market(spec),
            reference=reference,
            band_bps=band_bps,
            status=row.get("status", "open"),
        )

    def price_text(self, price: Decimal) -> str:
        return f"{price.quantize(self.tick):f}"

    def qty_text(self, qty: Decimal) -> str:
        return f"{qty.quantize(self.step):f}"

    def round_qty(self, qty: Decimal) -> Decimal:
        """Down to the step; 0 when below the minimum quantity."""
        rounded = _floor(qty, self.step)
        return rounded if rounded >= self.min_qty else Decimal(0)

    def least_qty(self, price: Decimal, margin: int = 1) -> Decimal:
        """The least quantity the engine accepts at `price` worth `margin` x the minimum."""
        market = self.market
        spec = market.spec
        price_units = max(parse_units(self.price_text(price), spec.price_decimals), 1)
        need = margin * market.min_notional_scaled  # compared with price x qty x num
        units = -(-need // (price_units * market.notional_num))
        units = -(-units // market.qty_step) * market.qty_step
        return Decimal(format_units(max(units, market.min_qty), spec.qty_decimals))

    def band(self) -> tuple[Decimal, Decimal | None]:
        """The engine's band around the reference (low, high); (tick, None) when unknown."""
        if self.band_bps is None or self.reference is None:
            return self.tick, None
        market = self.market
        scale = market.spec.price_decimals
        return (
            Decimal(format_units(market.band_low, scale)),
            Decimal(format_units(market.band_high, scale)),
        )

    def follow(self, price: Decimal) -> None:
        """The venue's reference moved to `price`: its band now centres on it, and so does
        ours."""
        spec = self.market.spec
        with contextlib.suppress(ValueError):
            self.market.set_reference_price(
                parse_units(self.price_text(price), spec.price_decimals)
            )
            self.reference = price

    def follow_record(self, record: Mapping[str, Any]) -> None:
        """An `instruments` record of this symbol: follow its reference price, the venue's
        band centre (moved by each trade, the operator and a split), when it has one."""
        if record.get("reference_price") is not None:
            self.follow(Decimal(record["reference_price"]))
        self.status = record.get("status", self.status)

    def trading(self) -> bool:
        """Whether the venue takes new orders of it (`open`, `post_only`)."""
        return self.status in TRADING_STATUSES

    def refusal(self, side: str, qty: Decimal, price: Decimal | None = None) -> str | None:
        """The engine's reason to refuse this size and price (a limit; None: market), or None.

        The checks and their order are the engine's (`Venue._place_refusal`): tick, step,
        minimum quantity, band, minimum notional (a market order's at the reference price).
        Text the wire would not take is named as the gateway would: BAD_PRECISION, BAD_PARAM.
        """
        market = self.market
        spec = market.spec
        try:
            qty_units = parse_units(f"{qty:f}", spec.qty_decimals)
            price_units = parse_units(f"{price:f}", spec.price_decimals) if price else 0
        except PrecisionError:
            return E.BAD_PRECISION.name
        except ValueError:
            return E.BAD_PARAM.name
        if not qty_units or (price is not None and not price_units):
            return E.BAD_PARAM.name  # the engine's shape check: a zero is no order
        if price_units % market.price_tick:
            return E.INVALID_PRICE_TICK.name
        if qty_units % market.qty_step:
            return E.INVALID_QTY_STEP.name
        if qty_units < market.min_qty:
            return E.BELOW_MIN_QTY.name
        if price is not None:
            if self.band_bps is not None and (
                price_units > market.band_high if side == "buy" else price_units < market.band_low
            ):
                return E.PRICE_BAND.name
            if market.below_min_notional(price_units, qty_units):
                return E.BELOW_MIN_NOTIONAL.name
        elif self.reference is not None and market.below_min_notional(
            market.reference_price, qty_units
        ):
            return E.BELOW_MIN_NOTIONAL.name
        return None

    def explain(self, reason: str, qty: Decimal, price: Decimal | None) -> str:
        """One sentence for a person: why the engine refuses `qty` at `price`, and what it takes."""
        rules = (
            f"{self.symbol} trades in steps of {self.step:f} from {self.min_qty:f}, "
            f"worth at least {self.min_notional.normalize():f} {self.quote}"
        )
        at = price if price is not None else self.reference
        if reason == E.BELOW_MIN_NOTIONAL.name and at is not None:
            worth = (qty * at / self.face).quantize(Decimal("0.01"))
            least = self.least_qty(at)
            return (
                f"{reason}: {qty:f} at {at:f} is worth {worth:f} {self.quote}; {rules}, "
                f"so at least {least:f} at that price"
            )
        return f"{reason}: {qty:f}{f' at {price:f}' if price is not None else ''}; {rules}"


def _engine_spec(
    row: Mapping[str, Any], reference: Decimal | None, band_bps: int | None
) -> InstrumentSpec:
    """The engine's spec of a published row; the quote's scale is min_notional's decimals."""
    price_decimals = int(row["price_decimals"])
    qty_decimals = int(row["qty_decimals"])
    min_notional = str(row["min_notional"])
    quote_decimals = int(row.get("quote_decimals", len(min_notional.partition(".")[2])))
    tick = parse_units(row["tick"], price_decimals)
    reference_units = tick
    if reference is not None and reference > 0:
        on_tick = _floor(reference, Decimal(row["tick"]))
        reference_units = max(parse_units(f"{on_tick:f}", price_decimals), tick)
    return InstrumentSpec(
        symbol=row["symbol"],
        kind=InstrumentKind(row.get("kind", "equity")),
        base=row["base"],
        quote=row["quote"],
        price_decimals=price_decimals,
        price_tick=tick,
        qty_decimals=qty_decimals,
        qty_step=parse_units(row["step"], qty_decimals),
        min_qty=parse_units(row["min_qty"], qty_decimals),
        quote_decimals=quote_decimals,
        min_notional=parse_units(min_notional, quote_decimals),
        price_band_bps=band_bps if band_bps else BAND_BPS_MAX,
        reference_price=reference_units,
        maturity_us=int(row.get("maturity", 0)),
    )


def config_references(config_path: Path) -> dict[str, tuple[Decimal, int]]:
    """Each symbol's listed reference price and band (bps) from a venue.toml, if it exists.

    The `instruments` method does not publish them, so a bot outside the server reads them
    from the same file the server was started with.
    """
    if not config_path.exists():
        return {}
    config = venue_config.load(config_path)
    return {
        entry.symbol: (Decimal(entry.reference_price), int(Decimal(entry.band_pct) * 100))
        for entry in config.instruments
    }


def band_limits(reference: Decimal, band_bps: int, tick: Decimal) -> tuple[Decimal, Decimal]:
    """The lowest sell and highest buy price the venue accepts: engine.instrument's rule."""
    high = _floor(reference * (BPS + band_bps) / BPS, tick)
    low = _ceil(reference * (BPS - band_bps) / BPS, tick) if band_bps < BPS else Decimal(0)
    return max(low, tick), max(high, tick)


# ----------------------------------------------------------------- pricing


def quote_ladder(
    centre: Decimal,
    spread_bps: Decimal,
    levels: int,
    inventory: Decimal,
    size: Decimal,
    tick: Decimal,
    band: tuple[Decimal, Decimal] | None = None,
    position_max: Decimal | None = None,
) -> list[QuoteLevel]:
    """Per level, its bid and ask on the tick (None: a side the band leaves no room for).

    Level n is n x `spread_bps` wide around the centre, which leans against the inventory
    (in base units; `size` is one lot): long lowers both prices, so it sells more and buys
    less; short raises them. Bids fall and asks rise strictly from level to level. With
    `position_max`, level n's bid is pulled when buying n lots would take the position past
    it, and its ask when selling n lots would: the side that grows the position stops first.
    """
    assert centre > 0, f"the centre must be positive, got {centre}"
    assert spread_bps > 0 and size > 0 and tick > 0, "spread, size and tick must be positive"
    assert 1 <= levels <= LEVELS_MAX, f"levels must be within 1..{LEVELS_MAX}, got {levels}"
    lean = max(-SKEW_SPREADS_MAX, min(SKEW_SPREADS_MAX, inventory / size * SKEW_SPREAD_PER_LOT))
    skewed = centre * (1 - lean * spread_bps / BPS)
    low, high = band if band is not None else (tick, None)
    if high is not None:
        skewed = max(low, min(high, skewed))  # the centre itself stays inside the band
    ladder: list[QuoteLevel] = []
    bid: Decimal | None = None
    ask: Decimal | None = None
    for level in range(1, levels + 1):
        half = spread_bps * level / 2 / BPS
        next_bid = _floor(skewed * (1 - half), tick)
        next_ask = _ceil(skewed * (1 + half), tick)
        bid = next_bid if bid is None else min(next_bid, bid - tick)
        ask = next_ask if ask is None else max(next_ask, ask + tick)
        bid_kept = position_max is None or inventory + level * size <= position_max
        ask_kept = position_max is None or inventory - level * size >= -position_max
        ladder.append(
            (
                _within(bid, low, high) if bid_kept else None,
                _within(ask, low, high) if ask_kept else None,
            )
        )
    return ladder


# ----------------------------------------------------------------- the market maker


@dataclass
class Quoting:
    """One symbol the market maker quotes: its instrument, last ladder and own orders."""

    instrument: Instrument
    ladder: list[QuoteLevel] = field(default_factory=list)  # what was last sent
    own: dict[int, tuple[str, Decimal, Decimal]] = field(default_factory=dict)  # id: side, px, qty
    told_no_centre: bool = False


class _DropsSymbols:
    """What the maker and the taker share about a symbol they stop trading: one delisted (its
    `instruments` status: final) or that the venue no longer lists (a resume went on without
    its streams: read back from `client.unlisted`, since the `unlisted` notice may be lost,
    a full queue dropping the oldest) is dropped, saying so; none left, the bot stops."""

    key: str
    client: VenueClient
    lost: str | None
    DOING = "trading"  # the bot's word for what it no longer does with a dropped symbol

    def _forget(self, symbol: str) -> bool:
        """Stop trading `symbol`; whether it was traded."""
        raise NotImplementedError

    def _trades_any(self) -> bool:
        raise NotImplementedError

    def _unlisted(self, symbol: str, why: str = UNLISTED_WORDS) -> None:
        if self._forget(symbol):
            log.warning("%s: %s %s: no longer %s it", self.key, symbol, why, self.DOING)

    def _drop_the_unlisted(self) -> None:
        """Drop each symbol a resume stopped following (`client.unlisted`): before session
        37's review only its notice told, and a taker whose notice was lost stopped on a
        KeyError (`books[symbol]`), a maker quoted it every round, refused. The one path:
        the `unlisted` notice, queued as the symbol is added there, is not read besides."""
        for symbol in sorted(self.client.unlisted):
            self._unlisted(symbol)

    def _none_left(self) -> bool:
        """Whether none of the bot's symbols trades any more (said, `lost`: it stops)."""
        if self._trades_any():
            return False
        self.lost = NONE_LISTED
        log.warning("%s: %s: stopping", self.key, self.lost)
        return True


class MarketMaker(_DropsSymbols):
    """Quotes `levels` bid/ask pairs of `size` on each of `symbols` until `stop` is set.

    Past `position_max` (base units, per symbol; default `POSITION_LOTS_DEFAULT` sizes) a
    level whose fill would take the position further out is not quoted.
    """

    def __init__(
        self,
        url: str,
        key: str,
        secret: str,
        symbols: str | Sequence[str],
        spread_bps: Decimal,
        size: Decimal,
        levels: int = 1,
        interval_s: float = 0.2,
        reference: Decimal | None = None,
        band_bps: int | None = None,
        position_max: Decimal | None = None,
        listed: Mapping[str, Listed] | None = None,
        other_urls: Sequence[str] = (),
        centres: Mapping[str, Decimal] | None = None,
    ) -> None:
        self.symbols = [symbols] if isinstance(symbols, str) else list(symbols)
        if not self.symbols or len(set(self.symbols)) != len(self.symbols):
            raise ValueError("the market maker needs one or more distinct symbols")
        if len(self.symbols) > SYMBOLS_MAX:
            raise ValueError(f"a market maker quotes at most {SYMBOLS_MAX} symbols")
        if not 1 <= levels <= LEVELS_MAX:
            raise ValueError(f"levels must be within 1..{LEVELS_MAX}, got {levels}")
        if not INTERVAL_S_MIN <= interval_s < math.inf:  # nan fails every comparison
            raise ValueError(f"the interval must be at least {INTERVAL_S_MIN} s")
        _check_quote_rate(levels, len(self.symbols), interval_s)
        if not _above_zero(spread_bps) or not _above_zero(size):
            raise ValueError("the spread and the size must be finite and positive")
        if position_max is not None and not _above_zero(position_max):
            raise ValueError(f"the position limit must be finite and positive, not {position_max}")
        if position_max is not None and position_max < size:
            raise ValueError(f"the position limit {position_max} is below one size {size}")
        self.url = url
        self.key = key
        self.secret = secret
        self.spread_bps = spread_bps
        self.size = size
        self.levels = levels
        self.interval_s = interval_s
        self.position_max = position_max or size * POSITION_LOTS_DEFAULT
        # Each symbol's reference and band: `listed` per symbol, else the one given.
        self.listed = {s: (listed or {}).get(s, (reference, band_bps)) for s in self.symbols}
        # Where to quote a symbol while the others' book is empty, when told (`--reference`):
        # the venue's reference price wins over a listed one (it follows the trades), never
        # over this while it is inside the band. Refused outside the price band at setup
        # (`_check_centre`), where the size is checked at it; rescaled by a split of the
        # asset (`_rescale_for_split`); dropped once the band has moved off it
        # (`_drop_centres_off_the_band`).
        self.centres = dict(centres or {})
        for symbol, centre in self.centres.items():
            if symbol not in self.symbols:
                raise ValueError(f"a centre is given for {symbol}, which this maker does not quote")
            if not centre.is_finite() or centre <= 0:
                raise ValueError(
                    f"the centre of {symbol} must be finite and positive, not {centre}"
                )
        self.client = _client(url, other_urls)
        self.quoting_by_symbol: dict[str, Quoting] = {}
        # the instruments of symbols no longer quoted (`_forget`): their positions stay in
        # the status, the summary and PnL, as the taker keeps its own
        self.dropped: dict[str, Instrument] = {}
        self.tally = Tally()
        self.fills = 0
        self.requotes = 0
        self.refusals: Counter[str] = Counter()
        self.quoting = asyncio.Event()  # set once the first ladders are sent
        self.lost: str | None = None  # why the connection ended under it, if it did

    @property
    def symbol(self) -> str:
        """The first (or only) symbol quoted."""
        return self.symbols[0]

    @property
    def inventory(self) -> Decimal:
        """The position in the first symbol's base asset since logon."""
        instrument = self._instrument_of(self.symbol)
        return self.tally.position(instrument.base) if instrument else Decimal(0)

    def _instrument_of(self, symbol: str) -> Instrument | None:
        quoting = self.quoting_by_symbol.get(symbol)
        return quoting.instrument if quoting else self.dropped.get(symbol)

    @property
    def quote_sets(self) -> list[str]:
        return [f"{QUOTE_SET_PREFIX}{level}" for level in range(1, self.levels + 1)]

    async def run(self, stop: asyncio.Event) -> None:
        client = self.client
        if not await _start(client, self._setup, self, stop):
            return
        try:
            while not stop.is_set():
                if await _run_step(client, self._round(), self.key, stop):
                    await _sleep_unless(stop, self.interval_s)
                if self._none_left():
                    break
        except CONNECTION_LOST as lost:
            self.lost = _lost_text(lost)
            log.warning("%s: the connection ended (%s)", self.key, self.lost)
        finally:
            await self._pull()
            await client.close()

    async def _setup(self) -> None:
        """On a new connection: the logon, COD, the instruments, the streams followed."""
        client = self.client
        await client.logon(self.key, self.secret)
        await client.request("session.cod", {"enabled": True})
        for symbol in self.symbols:
            instrument = await _instrument(client, symbol, *self.listed[symbol])
            centre = self.centres.get(symbol)
            if centre is not None:
                _check_centre(instrument, centre)
            _check_size(instrument, self.size, centre or instrument.reference)
            self.quoting_by_symbol[symbol] = Quoting(instrument)
        await client.subscribe_account()
        for symbol in self.symbols:
            await client.subscribe_book(symbol)
        await _follow_references(client, self.symbols)

    async def _round(self) -> None:
        """Quote every symbol once, after reading the pushes come since the last round."""
        self._drain()
        for quoting in self.quoting_by_symbol.values():
            await self._quote(quoting)
        self.requotes += 1
        self.quoting.set()
        self.tally.give_up_if_hopeless(self.refusals)

    async def _quote(self, quoting: Quoting) -> None:
        instrument = quoting.instrument
        symbol = instrument.symbol
        centre = self.centre(symbol)
        if centre is None:  # no others' book and no reference: nothing to quote around yet
            if not quoting.told_no_centre:
                quoting.told_no_centre = True
                log.warning("%s %s: no book and no reference price yet", self.key, symbol)
            return
        band = None
        if instrument.band_bps is not None and instrument.reference is not None:
            band = band_limits(instrument.reference, instrument.band_bps, instrument.tick)
        ladder = quote_ladder(
            centre,
            self.spread_bps,
            self.levels,
            self.tally.position(instrument.base),
            self.size,
            instrument.tick,
            band,
            self.position_max,
        )
        ladder = [self._sendable(instrument, level) for level in ladder]
        # No new price may reach this bot's own opposite quote of the last round (post-only
        # would refuse it). A level whose new prices reach none goes whole, one request: the
        # venue's one command for a two-sided requote (docs/protocol.md §5.5). Of any other
        # level, the side moving away from the other side goes first, the other after.
        size = instrument.qty_text(self.size)
        first: list[tuple[str, dict[str, str]]] = []
        then: list[tuple[str, dict[str, str]]] = []
        previous = quoting.ladder or [(None, None)] * self.levels
        old_bid, old_ask = _inner_quotes(previous)
        for quote_set, (bid, ask), (was_bid, was_ask) in zip(
            self.quote_sets, ladder, previous, strict=True
        ):
            early: dict[str, str] = {}
            late: dict[str, str] = {}
            whole = (bid is None or old_ask is None or bid < old_ask) and (
                ask is None or old_bid is None or ask > old_bid
            )
            bid_away = whole or bid is None or (was_bid is not None and bid <= was_bid)
            ask_away = whole or ask is None or (was_ask is not None and ask >= was_ask)
            (early if bid_away else late).update(_side("bid", bid, size, instrument))
            (early if ask_away else late).update(_side("ask", ask, size, instrument))
            first += [(quote_set, early)] if early else []
            then += [(quote_set, late)] if late else []
        for quote_set, sides in first + then:
            params = {"quote_set": quote_set, "quotes": [{"symbol": symbol, **sides}]}
            self._check(symbol, await self.client.request_raw("quote.mass", params))
        quoting.ladder = ladder

    def _sendable(self, instrument: Instrument, level: QuoteLevel) -> QuoteLevel:
        """The level with each side the engine would refuse pulled, and counted as refused."""
        sides: list[Decimal | None] = []
        for side, price in zip(("buy", "sell"), level, strict=True):
            reason = instrument.refusal(side, self.size, price) if price is not None else None
            if reason is not None:
                self.refusals[reason] += 1
                self.tally.refused += 1
                if self.refusals.total() <= REFUSALS_LOGGED_MAX:
                    why = instrument.explain(reason, self.size, price)
                    log.info("%s %s not sent: %s", self.key, instrument.symbol, why)
                price = None
            sides.append(price)
        return sides[0], sides[1]

    def centre(self, symbol: str | None = None) -> Decimal | None:
        """The mid of the others' book, else the centre given (`centres`), else the venue's
        reference price.

        Never its own quotes' mid, which would lean further every round. The venue's
        reference price is the last trade's, the maker's own fills included: with no one
        else quoting, the centre moves to each of its fills, as the venue's band does. So a
        maker lifted again and again walks up with its fills (its lean against the short
        position raises its prices too) until `position_max` pulls its ask.
        """
        quoting = self.quoting_by_symbol.get(symbol or self.symbol)
        if quoting is None:
            return None
        bid, ask = self._others_touch(quoting)
        if bid is not None and ask is not None:
            return (bid + ask) / 2
        return self.centres.get(quoting.instrument.symbol, quoting.instrument.reference)

    def _others_touch(self, quoting: Quoting) -> tuple[Decimal | None, Decimal | None]:
        """The best bid and ask of the book once this bot's own quotes are taken out."""
        book = self.client.books.get(quoting.instrument.symbol)
        if book is None:
            return None, None
        own: dict[tuple[str, Decimal], Decimal] = {}
        for side, price, leaves in quoting.own.values():
            own[(side, price)] = own.get((side, price), Decimal(0)) + leaves
        touch: list[Decimal | None] = []
        for side, rows in (("buy", book.bids()), ("sell", book.asks())):
            best = None
            for price_text, qty_text in rows:
                price = Decimal(price_text)
                if Decimal(qty_text) > own.get((side, price), 0):
                    best = price
                    break
            touch.append(best)
        return touch[0], touch[1]

    async def _pull(self) -> None:
        """Take every quote of every level off the book; COD covers what this misses."""
        websocket = self.client.websocket
        if not self.quoting_by_symbol or websocket is None or websocket.state.name != "OPEN":
            return  # nothing was quoted, or nothing can be sent
        try:
            async with asyncio.timeout(PULL_TIMEOUT_S):
                for quote_set in self.quote_sets:
                    quotes = [
                        {"symbol": symbol, "bid_qty": "0", "ask_qty": "0"}
                        for symbol in self.quoting_by_symbol
                    ]
                    params = {"quote_set": quote_set, "quotes": quotes}
                    self._check(self.symbol, await self.client.request_raw("quote.mass", params))
                await self.client.request("ping")  # the fills before the pull are all in
        except (*CONNECTION_LOST, TimeoutError) as failed:
            log.warning("%s: quotes not pulled (%r); COD will", self.key, failed)
        for quoting in self.quoting_by_symbol.values():
            quoting.ladder = []
        self._drain()  # the final inventory and fill count

    def _check(self, symbol: str, response: Mapping[str, Any]) -> None:
        """Count and log what the venue accepted and refused; the bot goes on either way."""
        results = response.get("result", {}).get("results", [])
        self.tally.accepted += sum(1 for result in results if result["status"] == 200)
        if response["status"] == 200:
            return
        errors = [result["error"] for result in results if result["status"] != 200]
        for error in errors or [response.get("error", {})]:
            name = error.get("name", str(response["status"]))
            if name == OUTCOME_UNKNOWN:
                self.tally.note_unknown(self.key, symbol, error.get("msg"))
                continue
            self.refusals[name] += 1
            self.tally.refused += 1
            if self.refusals.total() <= REFUSALS_LOGGED_MAX:
                log.info("%s %s refused: %s %s", self.key, symbol, name, error.get("msg"))

    def status_text(self) -> str:
        """One line: each symbol's quotes and position, then fills, refusals and PnL."""
        parts = []
        for symbol, quoting in self.quoting_by_symbol.items():
            bid, ask = quoting.ladder[0] if quoting.ladder else (None, None)
            position = self.tally.position(quoting.instrument.base)
            parts.append(f"{symbol} {_text(bid)} / {_text(ask)} pos {position:+f}")
        for symbol, instrument in self.dropped.items():
            parts.append(f"{symbol} not quoted pos {self.tally.position(instrument.base):+f}")
        return (
            f"{' | '.join(parts) or 'starting'} | {self.requotes} requotes, {self.fills} fills, "
            f"{self.refusals.total()} refused{self.tally.unknown_text()} | PnL"
            f" {self.tally.pnl_text(self.instruments())}"
        )

    def instruments(self) -> list[Instrument]:
        """Those quoted, then those no longer quoted (`dropped`): every position's (before
        session 37's review a dropped symbol's was left out, and PnL jumped at its delisting
        by the position's worth)."""
        quoted = [quoting.instrument for quoting in self.quoting_by_symbol.values()]
        return quoted + list(self.dropped.values())

    DOING = "quoting"

    def _forget(self, symbol: str) -> bool:
        """A symbol the venue no longer lists (started again without it: the resume went on
        without its book), or delisted (final, its orders cancelled): no longer quoted nor
        shown (before session 37 it was quoted every round, each refused UNKNOWN_SYMBOL or
        INSTRUMENT_DELISTED, its status still showing its bid and ask); its position stays
        in the status and PnL (`dropped`)."""
        quoting = self.quoting_by_symbol.pop(symbol, None)
        if quoting is None:
            return False
        self.dropped[symbol] = quoting.instrument
        return True

    def _trades_any(self) -> bool:
        return bool(self.quoting_by_symbol)

    def _drain(self) -> None:
        while not self.client.pushes.empty():
            self._on_push(self.client.pushes.get_nowait())
        self._drop_the_unlisted()
        self._drop_centres_off_the_band()

    def _rescale_for_split(self, action: Mapping[str, Any]) -> None:
        """A split of a quoted symbol's asset rescales what the maker keeps in its prices as
        the venue rescales them: its last ladder as the resting quotes (bids x old / new down
        to the tick, asks up), so the next round's order of sides, which keeps a new price off
        its own opposite quote, compares with the quotes as they rest (before: with the old
        prices, and a move up after a 2:1 split sent the bid first, into its own ask,
        refused `POST_ONLY_WOULD_TAKE`); its given centre as the reference: down to the
        tick, at least one tick (before session 31 the centre stayed in old-share prices and,
        off the new band, the maker quoted at its edge: after a 2:1 split of 187.25, bids at
        102.87 against 93.62); and the venue's reference it knows, as the venue rescales it
        (down to the tick). This push comes before the split's `instruments` records, which
        the venue publishes paced, later: before session 37 the maker checked its rescaled
        centre against the old band meanwhile, found it off, and dropped it for good."""
        ratio = split_ratio(action)
        if ratio is None:
            return
        new, old = ratio
        for symbol, quoting in self.quoting_by_symbol.items():
            if quoting.instrument.base != action["asset"]:
                continue
            instrument = quoting.instrument
            tick = instrument.tick
            if instrument.reference is not None:
                instrument.follow(max(_floor(instrument.reference * old / new, tick), tick))
            quoting.ladder = [
                (
                    None if bid is None else _floor(bid * old / new, tick),
                    None if ask is None else _ceil(ask * old / new, tick),
                )
                for bid, ask in quoting.ladder
            ]
            centre = self.centres.get(symbol)
            if centre is None:
                continue
            self.centres[symbol] = max(_floor(centre * old / new, tick), tick)
            log.info("%s %s: centre %s rescaled by the %s split to %s",
                     self.key, symbol, centre, action["ratio"], self.centres[symbol])  # fmt: skip

    def _drop_centres_off_the_band(self) -> None:
        """A given centre the venue's band has moved off is dropped for good: the maker then
        quotes around the venue's reference. The band moved with the trades, or with a split
        of an asset the maker held none of (no `corporate_action` push came to rescale the
        centre); quoting at the band's nearer edge bought up to the band's width over the
        price, or sold under it. Looked at while the market trades only; a split's push
        rescales the reference known (`_rescale_for_split`), its records may come later."""
        for symbol in list(self.centres):
            quoting = self.quoting_by_symbol.get(symbol)
            if quoting is None or not quoting.instrument.trading():  # not set up, or halted
                continue
            instrument = quoting.instrument
            low, high = instrument.band()
            centre = self.centres[symbol]
            if high is None or low <= centre <= high:
                continue
            del self.centres[symbol]
            log.warning(
                "%s %s: the centre given, %s, is off the price band %s..%s now (the venue's "
                "reference is %s): quoting around the venue's reference from now on",
                self.key, symbol, centre, low, high, instrument.reference,
            )  # fmt: skip

    def _on_push(self, push: Mapping[str, Any]) -> None:
        channel = push.get("ch")
        if channel == "instruments" and push.get("sym") in self.quoting_by_symbol:
            instrument = self.quoting_by_symbol[push["sym"]].instrument
            instrument.follow_record(push["data"])
            if instrument.status == DELISTED:
                self._unlisted(push["sym"], DELISTED_WORDS)
        elif channel == "account":
            kind = push.get("type")
            if kind == "snapshot":
                self.tally.on_snapshot(push["balances"])
                for order in push["orders"]:
                    self._on_order(order)
            elif kind == "balance":
                self.tally.on_balance(push["data"])
            elif kind == "corporate_action":
                self.tally.on_corporate_action(push["data"])
                self._rescale_for_split(push["data"])
            elif kind == "exec":
                self._on_order(push["data"])
                if push["data"]["exec_type"] == "trade":
                    self.fills += 1

    def _on_order(self, order: Mapping[str, Any]) -> None:
        quoting = self.quoting_by_symbol.get(order["symbol"])
        if quoting is None or order["order_id"] is None:
            return
        leaves = Decimal(order["leaves_qty"])
        if order["status"] in CLOSED_STATUSES or not leaves or order["price"] is None:
            quoting.own.pop(order["order_id"], None)
        else:
            quoting.own[order["order_id"]] = (order["side"], Decimal(order["price"]), leaves)


# ----------------------------------------------------------------- the taker


class Taker(_DropsSymbols):
    """Sends `rate_per_s` random marketable orders a second over `symbols` until `stop`."""

    def __init__(
        self,
        url: str,
        key: str,
        secret: str,
        symbols: Sequence[str],
        rate_per_s: float,
        size: Decimal | None = None,
        seed: int | None = None,
        listed: Mapping[str, Listed] | None = None,
        other_urls: Sequence[str] = (),
    ) -> None:
        if not 0 < rate_per_s <= TAKER_RATE_PER_S_MAX:
            raise ValueError(f"the rate must be within (0, {TAKER_RATE_PER_S_MAX}] per second")
        if size is not None and not _above_zero(size):
            raise ValueError(f"the size must be finite and positive, not {size}")
        if not symbols:
            raise ValueError("the taker needs at least one symbol")
        self.url = url
        self.key = key
        self.secret = secret
        self.symbols = list(symbols)
        self.rate_per_s = rate_per_s
        self.size = size
        self.listed = dict(listed or {})
        self.random = random.Random(seed)
        self.client = _client(url, other_urls)
        self.instruments: dict[str, Instrument] = {}
        self.tally = Tally()
        self.orders = 0
        self.fills = 0
        self.filled_qty: dict[str, Decimal] = {}  # base units, by symbol
        self.skipped = 0  # turns with nothing on the other side to take
        self.refusals: Counter[str] = Counter()
        self.lost: str | None = None  # why the connection ended under it, if it did

    async def run(self, stop: asyncio.Event) -> None:
        client = self.client
        if not await _start(client, self._setup, self, stop):
            return
        try:
            loop = asyncio.get_running_loop()
            due = loop.time()
            while not stop.is_set():
                if await _run_step(client, self._turn(), self.key, stop) is None:
                    break  # stopped while its connection was being reopened: nothing to read
                if self._none_left():
                    break
                due = max(due + 1 / self.rate_per_s, loop.time())  # late: never catch up
                await _sleep_unless(stop, due - loop.time())
            else:  # Pushes follow their order's response: one more round trip and all are in.
                await client.request("ping")
            self._drain()
        except CONNECTION_LOST as lost:
            self.lost = _lost_text(lost)
            log.warning("%s: the connection ended (%s)", self.key, self.lost)
        finally:
            await client.close()

    async def _setup(self) -> None:
        """On a new connection: the logon, the instruments, the streams followed."""
        client = self.client
        await client.logon(self.key, self.secret)
        for symbol in self.symbols:
            reference, band_bps = self.listed.get(symbol, (None, None))
            instrument = await _instrument(client, symbol, reference, band_bps)
            if self.size is not None:
                _check_size(instrument, self.size, instrument.reference)
            self.instruments[symbol] = instrument
        await client.subscribe_account()
        for symbol in self.symbols:
            await client.subscribe_book(symbol)
        await _follow_references(client, self.symbols)

    async def _turn(self) -> None:
        """One order, after reading the pushes come since the last."""
        self._drain()
        if self.symbols:
            await self._take()
        self.tally.give_up_if_hopeless(self.refusals)

    async def _take(self) -> None:
        # a symbol halted, cancel-only or post-only takes no IOC nor market order: not chosen
        # while so (before, each order on it was sent and refused, INSTRUMENT_HALTED ...)
        takes = [symbol for symbol in self.symbols if self.instruments[symbol].status == OPEN]
        if not takes:
            self.skipped += 1
            return
        symbol = self.random.choice(takes)
        instrument = self.instruments[symbol]
        side = self.random.choice(("buy", "sell"))
        book = self.client.books.get(symbol)
        if book is None:  # not followed (a resume's try under way dropped it, for now): skip
            self.skipped += 1
            return
        rows = book.asks() if side == "buy" else book.bids()
        if not rows:
            self.skipped += 1
            return
        touch, touch_qty = Decimal(rows[0][0]), Decimal(rows[0][1])
        fraction = Decimal(str(self.random.uniform(TAKE_FRACTION_MIN, TAKE_FRACTION_MAX)))
        if self.size is not None:
            qty = self.size
        else:
            least = instrument.least_qty(touch, NOTIONAL_MARGIN)
            qty = max(instrument.round_qty(touch_qty * fraction), least)
        price: Decimal | None = None
        if self.random.random() >= MARKET_ORDER_SHARE:
            price = _through(instrument, side, touch)
        self.orders += 1
        reason = instrument.refusal(side, qty, price)
        if reason is not None:  # the engine would refuse it: say so instead of sending it
            self._refused(reason, f"{symbol} not sent: {instrument.explain(reason, qty, price)}")
            return
        try:
            if price is None:
                await self.client.place(
                    symbol, side, instrument.qty_text(qty), type="market", tif="ioc"
                )
            else:
                await self.client.place(
                    symbol, side, instrument.qty_text(qty), instrument.price_text(price), tif="ioc"
                )
        except VenueError as refused:
            self._refused(refused.name, f"{symbol} refused: {refused}")
            return
        self.tally.accepted += 1

    def _refused(self, reason: str, text: str) -> None:
        if reason == OUTCOME_UNKNOWN:
            self.tally.note_unknown(self.key, text, None)
            return
        self.refusals[reason] += 1
        self.tally.refused += 1
        if self.refusals.total() <= REFUSALS_LOGGED_MAX:
            log.info("%s %s", self.key, text)

    def status_text(self) -> str:
        """One line: orders, fills, refusals, positions and PnL."""
        instruments = list(self.instruments.values())
        positions = ", ".join(
            f"{instrument.base} {self.tally.position(instrument.base):+f}"
            for instrument in instruments
        )
        return (
            f"taker {self.orders} orders, {self.fills} fills, {self.refusals.total()} refused"
            f"{self.tally.unknown_text()}, "
            f"skipped {self.skipped} | pos {positions or '-'} | "
            f"PnL {self.tally.pnl_text(instruments)}"
        )

    DOING = "taking"

    def _forget(self, symbol: str) -> bool:
        """A symbol the venue no longer lists (started again without it: the resume went on
        without its book), or delisted (final): no longer taken (before session 37, the next
        turn that chose it stopped the taker on a KeyError, its book gone from `books`, or
        was refused INSTRUMENT_DELISTED)."""
        if symbol not in self.symbols:
            return False
        self.symbols.remove(symbol)
        return True

    def _trades_any(self) -> bool:
        return bool(self.symbols)

    def _drain(self) -> None:
        while not self.client.pushes.empty():
            push = self.client.pushes.get_nowait()
            channel, kind = push.get("ch"), push.get("type")
            if channel == "instruments" and push.get("sym") in self.instruments:
                self.instruments[push["sym"]].follow_record(push["data"])
                if self.instruments[push["sym"]].status == DELISTED:
                    self._unlisted(push["sym"], DELISTED_WORDS)
            elif channel == "account" and kind == "snapshot":
                self.tally.on_snapshot(push["balances"])
            elif channel == "account" and kind == "balance":
                self.tally.on_balance(push["data"])
            elif channel == "account" and kind == "corporate_action":
                self.tally.on_corporate_action(push["data"])
            elif channel == "account" and kind == "exec":
                data = push["data"]
                if data["exec_type"] == "trade":
                    self.fills += 1
                    symbol, qty = data["symbol"], Decimal(data["last_qty"])
                    self.filled_qty[symbol] = self.filled_qty.get(symbol, Decimal(0)) + qty
        self._drop_the_unlisted()


# ----------------------------------------------------------------- tally and status


class Tally:
    """A bot's own account since logon: positions, marked PnL, and how many orders landed.

    Positions are each asset's total now minus its total at the first balance seen (a
    split's asset: that start rescaled by the split's ratio). PnL is marked per quote asset:
    its change, plus each base position at the venue's reference price (which each trade
    moves) per `face`; fees are in the quote change already. A split's ratio comes only in
    the `corporate_action` push, sent to holders alone: a bot holding none of the asset at
    the split keeps that start in old shares (docs/tools.md says so; nothing public carries
    the ratio).
    """

    def __init__(self) -> None:
        self.start: dict[str, Decimal] = {}
        self.total: dict[str, Decimal] = {}
        self.snapshot_seen = False  # the account's first snapshot came: `start` is complete
        self.accepted = 0  # order commands the venue accepted
        self.refused = 0  # order commands refused, by the venue or by the bot's own check
        # order commands whose outcome the venue could not tell (504 `OUTCOME_UNKNOWN`, a
        # cluster's outage; an op of a partly-done batch): neither accepted nor refused, so
        # an outage does not make a bot give up as if every order were refused
        self.unknown = 0

    def note_unknown(self, key: str, what: str, msg: str | None) -> None:
        """Count an order command whose outcome is unknown, logging the first few."""
        self.unknown += 1
        if self.unknown <= REFUSALS_LOGGED_MAX:
            log.info("%s %s: outcome unknown: %s", key, what, msg or "")

    def on_snapshot(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """The account stream's snapshot: the balances held at logon (or at a resume)."""
        for row in rows:
            self.on_balance(row)
        self.snapshot_seen = True

    def on_balance(self, row: Mapping[str, Any]) -> None:
        total = Decimal(row["total"])
        # An asset the first snapshot did not list was not held then: it starts at 0, not at
        # its first balance (before session 30, a bill the taker bought first counted its
        # first fill as the start: position 0 and PnL -500 USD after a -3 USD session).
        self.start.setdefault(row["asset"], Decimal(0) if self.snapshot_seen else total)
        self.total[row["asset"]] = total

    def on_corporate_action(self, action: Mapping[str, Any]) -> None:
        """A split rescales the start of its asset as it rescaled the holding (to the
        holding's decimals), so that the new shares do not count as bought; the cash of a
        dividend or in lieu of fractions counts as the cash it is."""
        asset, ratio = action["asset"], split_ratio(action)
        if ratio is None or asset not in self.start:
            return
        new, old = ratio
        decimals = Decimal(action["holding_after"])
        self.start[asset] = (self.start[asset] * new / old).quantize(decimals, ROUND_FLOOR)

    def position(self, asset: str) -> Decimal:
        return self.total.get(asset, Decimal(0)) - self.start.get(asset, Decimal(0))

    def pnl(self, instruments: Sequence[Instrument]) -> dict[str, Decimal]:
        """Marked PnL per quote asset, over each base asset once."""
        pnl: dict[str, Decimal] = {}
        marked: set[str] = set()
        for instrument in instruments:
            quote = instrument.quote
            pnl.setdefault(quote, self.position(quote))
            mark = instrument.reference
            if instrument.base in marked or mark is None:
                continue
            marked.add(instrument.base)
            pnl[quote] += self.position(instrument.base) * mark / instrument.face
        return pnl

    def unknown_text(self) -> str:
        """`, N unknown` for a status line once some outcome was unknown, else nothing."""
        return f", {self.unknown} unknown" if self.unknown else ""

    def pnl_text(self, instruments: Sequence[Instrument]) -> str:
        cells = [f"{amount:+.2f} {asset}" for asset, amount in self.pnl(instruments).items()]
        return ", ".join(cells) or "-"

    def give_up_if_hopeless(self, refusals: Counter[str]) -> None:
        """Raise `AllRefused` once `REFUSED_ALL_MAX` orders were tried and none accepted."""
        if self.accepted or self.refused < REFUSED_ALL_MAX:
            return
        reasons = ", ".join(f"{name} x{count}" for name, count in refusals.most_common())
        raise AllRefused(
            f"all {self.refused} orders tried were refused and none accepted ({reasons}); "
            "see the log above for the first refusals"
        )


class StatusLine:
    """A bot's live status for a person: one line kept up to date on a terminal (tqdm, on
    stderr), else a plain line on stdout every `STATUS_INTERVAL_S` for logs."""

    def __init__(self, live: bool | None = None) -> None:
        self.live = progress.on_terminal() if live is None else live
        self.bar: tqdm[Any] | None = None
        if self.live:
            self.bar = progress.bar(bar_format="{elapsed} {desc}")
        self.interval_s = LIVE_REFRESH_S if self.live else STATUS_INTERVAL_S

    def show(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_description_str(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


async def _show_status(status: StatusLine, text: Callable[[], str], stop: asyncio.Event) -> None:
    while True:
        await _sleep_unless(stop, status.interval_s)
        if stop.is_set():
            return  # the summary follows: a last status line would only repeat it
        status.show(text())


def _check_quote_rate(levels: int, symbols: int, interval_s: float) -> None:
    """A ValueError unless a round of `levels` x `symbols` every `interval_s`, at its
    dearest (2 tokens a level: see `QUOTES_PER_S_MAX`), stays within `QUOTES_PER_S_MAX`
    tokens a second, naming the settings that would."""
    round_tokens = 2 * levels * symbols
    per_s = round_tokens / interval_s
    if per_s > QUOTES_PER_S_MAX:
        least_s = round_tokens / QUOTES_PER_S_MAX
        raise ValueError(
            f"{levels} levels x {symbols} symbols every {interval_s:g} s costs up to {per_s:g}"
            f" tokens a second (a level's bid and ask may go in two requests), past the"
            f" {QUOTES_PER_S_MAX} a market maker may spend (half a connection's rate limit,"
            " 200 a second by default): quote fewer levels or symbols, or requote every"
            f" {least_s:g} s or more (--interval)"
        )


def _check_size(instrument: Instrument, size: Decimal, price: Decimal | None) -> None:
    """Raise a clear `ValueError` when the engine would refuse `size` (at `price`, if known)."""
    for side in ("buy", "sell"):
        reason = instrument.refusal(side, size, price)
        if reason == E.PRICE_BAND.name:
            reason = instrument.refusal(side, size, None)  # the band is the price's problem
        if reason is not None:
            raise ValueError(
                f"--size {size:f} is refused: {instrument.explain(reason, size, price)}"
            )


def _check_centre(instrument: Instrument, centre: Decimal) -> None:
    """Raise a clear `ValueError` when `centre` (`--reference`) is outside the instrument's
    price band: the maker would quote one side only, at the band's edge."""
    low, high = instrument.band()
    if high is not None and not low <= centre <= high:
        raise ValueError(
            f"--reference {centre:f} is outside {instrument.symbol}'s price band "
            f"{low:f}..{high:f} (around its reference price {_text(instrument.reference)}): "
            "give one inside it, or none to quote around the reference"
        )


def _through(instrument: Instrument, side: str, touch: Decimal) -> Decimal:
    """An IOC limit `THROUGH_BPS` past the touch, kept inside the band when it is known."""
    through = touch * THROUGH_BPS / BPS
    low, high = instrument.band()
    if side == "buy":
        price = _ceil(touch + through, instrument.tick)
        return min(price, high) if high is not None else price
    return max(_floor(touch - through, instrument.tick), low)


def _text(price: Decimal | None) -> str:
    return "-" if price is None else f"{price:f}"


# ----------------------------------------------------------------- helpers


async def _follow_references(client: VenueClient, symbols: Sequence[str]) -> None:
    """Follow the symbols' `instruments` records, whose reference price is the venue's band
    centre. Not the `trades` tape: it keeps the prices trades were made at, so after a split
    (or an operator's new reference) its last price is off the band, where every order
    priced from it is refused or never fills (before session 31, the bots followed it)."""
    await client.request("subscribe", {"ch": "instruments", "symbols": list(symbols)})


async def _instrument(
    client: VenueClient, symbol: str, reference: Decimal | None, band_bps: int | None
) -> Instrument:
    rows = (await client.request("instruments"))["instruments"]
    row = next((row for row in rows if row["symbol"] == symbol), None)
    if row is None:
        twin = case_twin(symbol, [row["symbol"] for row in rows])  # the likeliest slip
        hint = "" if twin is None else f": did you mean {twin}? (symbols match case and all)"
        raise ValueError(f"the venue lists no {symbol}{hint}")
    return Instrument.from_row(row, reference, band_bps)


async def _unless_stopped(waiting: Awaitable[Result], stop: asyncio.Event) -> Result | None:
    """What `waiting` gives, or None once `stop` is set first (`waiting` is then cancelled,
    and waited for: what it opened, it has closed)."""
    waited = asyncio.ensure_future(waiting)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((waited, stopping), return_when=asyncio.FIRST_COMPLETED)
        return waited.result() if waited.done() else None
    finally:
        waited.cancel()
        stopping.cancel()
        await asyncio.gather(waited, return_exceptions=True)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max(seconds, 0))


def _inner_quotes(ladder: list[QuoteLevel]) -> QuoteLevel:
    """The highest bid and the lowest ask of a ladder (None: that side has none)."""
    bids = [bid for bid, _ in ladder if bid is not None]
    asks = [ask for _, ask in ladder if ask is not None]
    return (max(bids) if bids else None), (min(asks) if asks else None)


def _side(side: str, price: Decimal | None, size: str, instrument: Instrument) -> dict[str, str]:
    """A quote's fields for one side: its price and size, or a zero size that pulls it."""
    if price is None:
        return {f"{side}_qty": "0"}
    return {f"{side}_px": instrument.price_text(price), f"{side}_qty": size}


def _above_zero(value: Decimal) -> bool:
    """Finite and positive; checked in that order, as a nan Decimal raises when compared."""
    return value.is_finite() and value > 0


def _within(price: Decimal, low: Decimal, high: Decimal | None) -> Decimal | None:
    return price if low <= price and (high is None or price <= high) else None


def split_ratio(action: Mapping[str, Any]) -> tuple[int, int] | None:
    """A `corporate_action` push's split as (new, old) shares (`ratio` "new:old"); None for
    any other action."""
    ratio = action.get("ratio")
    if action["kind"] != "split" or not ratio:
        return None
    new, old = (int(number) for number in ratio.split(":"))
    return new, old


def _floor(value: Decimal, unit: Decimal) -> Decimal:
    return (value / unit).to_integral_value(ROUND_FLOOR) * unit


def _ceil(value: Decimal, unit: Decimal) -> Decimal:
    return (value / unit).to_integral_value(ROUND_CEILING) * unit


# ----------------------------------------------------------------- command line

# Sizes, positions and prices: a finite decimal above zero, refused at parsing otherwise.
_ABOVE_ZERO = decimal_within(Decimal(0), above_low=True)


def add_market_maker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--symbol", action="append", required=True, help="repeat, or a comma list, for more"
    )
    parser.add_argument(
        "--spread",
        # no upper bound: a level whose bid would be at or below zero quotes only its ask
        type=decimal_within(Decimal(0), above_low=True),
        required=True,
        help="level 1's width, bps",
    )
    parser.add_argument("--size", type=_ABOVE_ZERO, required=True, help="per quote, base units")
    parser.add_argument(
        "--levels", type=int_within(1, LEVELS_MAX), default=1, help=f"1..{LEVELS_MAX}"
    )
    parser.add_argument(
        "--interval",
        type=float_within(INTERVAL_S_MIN),
        default=0.2,
        help=f"seconds between requotes (at least {INTERVAL_S_MIN})",
    )
    parser.add_argument(
        "--max-position",
        type=_ABOVE_ZERO,
        help=f"per symbol, base units (default {POSITION_LOTS_DEFAULT} sizes): past it the "
        "side that would grow the position stops quoting",
    )
    parser.add_argument(
        "--reference",
        type=_ABOVE_ZERO,
        help="the price to quote around while no one else quotes the symbol, inside its price "
        "band at the start; a split of the symbol rescales it, and once the band (which "
        "follows the trades) has moved off it, the maker quotes around the venue's reference "
        "price instead (default: the venue's reference price)",
    )
    parser.add_argument("--config", type=Path, default=Path("venue.toml"), help=CONFIG_HELP)
    _add_connection_arguments(parser, "demo-mm-alpha", "demo-secret-mm-alpha")


def _venue_url(args: argparse.Namespace) -> None:
    """With no `--url` (`other_urls` None), the venue of `--config`: its `[venue]` host and
    port (`cli.venue_url`; before session 30, port 8765 whatever the file said)."""
    if args.other_urls is None:
        args.url = config_trade_url(args.config)


def run_market_maker(args: argparse.Namespace) -> int:
    _venue_url(args)
    symbols = _symbols(args.symbol)
    listed: dict[str, Listed] = dict(config_references(args.config))
    key, secret = credentials(args)
    centres = {}
    if args.reference is not None:  # a centre of the user's: not the venue's reference
        if len(symbols) > 1:
            raise CommandFailed("--reference applies to one symbol; the venue's serve the rest")
        centres[symbols[0]] = args.reference
    try:
        bot = MarketMaker(
            args.url,
            key,
            secret,
            symbols,
            args.spread,
            args.size,
            levels=args.levels,
            interval_s=args.interval,
            position_max=args.max_position,
            listed=listed,
            other_urls=_other_urls(args),
            centres=centres,
        )
    except ValueError as bad:  # bad flags together (symbols, limit below size): nothing ran
        raise CommandFailed(str(bad)) from None
    status = _run_bot(bot.run, args.seconds, bot.status_text, _urls(args))
    if not bot.requotes:
        return _lost_or(status, bot.lost)
    positions = ", ".join(
        f"{instrument.base} {bot.tally.position(instrument.base):+f}"
        for instrument in bot.instruments()
    )
    print(
        f"market maker {', '.join(symbols)}: {bot.requotes} requotes, {bot.fills} fills, "
        f"position {positions or '-'}, PnL {bot.tally.pnl_text(bot.instruments())}, "
        f"refusals {dict(bot.refusals) or 'none'}"
    )
    return _lost_or(status, bot.lost)


def add_taker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--symbol", action="append", required=True, help="repeat, or a comma list, for more"
    )
    parser.add_argument(
        "--rate",
        type=float_within(0, TAKER_RATE_PER_S_MAX, above_low=True),
        required=True,
        help=f"orders per second, at most {TAKER_RATE_PER_S_MAX}",
    )
    parser.add_argument("--size", type=_ABOVE_ZERO, help="default: a random share of the touch")
    parser.add_argument(
        "--seed", type=int, default=None, help="of its random orders (default: a new one)"
    )
    parser.add_argument("--config", type=Path, default=Path("venue.toml"), help=CONFIG_HELP)
    _add_connection_arguments(parser, "demo-taker", "demo-secret-taker")


def run_taker(args: argparse.Namespace) -> int:
    _venue_url(args)
    listed = config_references(args.config)
    key, secret = credentials(args)
    try:
        bot = Taker(
            args.url,
            key,
            secret,
            _symbols(args.symbol),
            args.rate,
            args.size,
            args.seed,
            listed=listed,
            other_urls=_other_urls(args),
        )
    except ValueError as bad:  # bad flags together (symbols, limit below size): nothing ran
        raise CommandFailed(str(bad)) from None
    status = _run_bot(bot.run, args.seconds, bot.status_text, _urls(args))
    if not bot.orders and not bot.skipped:  # it never got to take (its start failed)
        return _lost_or(status, bot.lost)
    empty = ": the books had nothing to take" if not bot.orders else ""
    print(
        f"taker: {bot.orders} orders, {bot.fills} fills, skipped {bot.skipped}{empty}, "
        f"PnL {bot.tally.pnl_text(list(bot.instruments.values()))}, "
        f"refusals {dict(bot.refusals) or 'none'}"
    )
    return _lost_or(status, bot.lost)


def _client(url: str, other_urls: Sequence[str]) -> VenueClient:
    """A bot's client: with other gateways to go to, it resumes on its own when dropped."""
    return VenueClient(url, auto_resume=bool(other_urls), other_urls=other_urls)


class _Bot(Protocol):
    """What `_start` needs of a bot: its key, for the log, and `lost`, to say why."""

    key: str
    lost: str | None


async def _start(
    client: VenueClient, setup: Callable[[], Awaitable[None]], bot: _Bot, stop: asyncio.Event
) -> bool:
    """Connect a bot and set it up (`setup`: its logon, its instruments, its streams): with
    other gateways (auto_resume), on the first that answers and stays up through the setup,
    in rounds within the resume's budget (`VenueClient.connect_any`). False if the link was
    lost during the setup at every try (`bot.lost` says why), or if `stop` came first (the
    rounds take up to 30 s: the bot stops as asked, nothing left open); no venue there is
    raised (a refusal: `CANNOT_START`), and so is a setup refused (a key, an instrument, a
    size)."""
    where = _venue_at(client)
    waiting = asyncio.get_running_loop().call_later(
        CONNECT_NOTE_S, log.info, "%s: waiting for the venue at %s to answer", bot.key, where
    )
    try:
        started = await _unless_stopped(client.connect_any(setup), stop)
    except SETUP_LOST as lost:  # connected, then dropped or silent (the client is closed)
        bot.lost = _lost_text(lost)
        log.warning("%s: the connection ended (%s)", bot.key, bot.lost)
        return False
    finally:
        waiting.cancel()
    if started is None:  # stopped before it was set up: it did nothing, which is no success
        await client.close()
        bot.lost = NeverConnected(
            f"asked to stop before the venue at {where} answered: it never traded (is"
            " `venue serve` listening there? its first line gives its trade URL)"
        )
        return False
    return True


def _venue_at(client: VenueClient) -> str:
    """Where a bot waits for its venue: its URL, or all of them (`client.url` is only the
    one tried last, when a cluster's gateways are given)."""
    if len(client.urls) == 1:
        return client.url
    return f"any of {', '.join(client.urls)}"


class NeverConnected(str):
    """Why a bot stopped before its venue answered (`_start`): said as it is, not as a lost
    connection. Before session 32 such a bot (`--seconds` run out, a Ctrl-C, at a port that
    takes connections but never answers) exited 0 without a word."""


class NoneListed(str):
    """Why a bot stopped with its connection up: none of its symbols trades any more, each
    delisted (its `instruments` status) or not listed by the venue started again (an
    `unlisted` notice); said as it is, exit status 1."""


NONE_LISTED = NoneListed("none of its symbols trades any more: each delisted, or not listed")


async def _run_step(
    client: VenueClient, step: Awaitable[None], key: str, stop: asyncio.Event
) -> bool | None:
    """Run one step of a bot: True if it ran to its end, False if its connection was lost
    meanwhile and auto_resume reopened it (the step is not tried again: the next round or
    turn sends what is due then), None if `stop` came while it was being reopened (the bot
    stops as asked; its close ends the resume). A connection lost for good, or a venue that
    stopped answering (a RequestTimeout), is raised."""
    try:
        await step
    except (ConnectionError, ConnectionClosed) as lost:
        if not client.auto_resume:
            raise
        resumed = await _unless_stopped(client.wait_resumed(), stop)
        if resumed is None:
            return None
        if not resumed:
            raise
        log.warning(
            "%s: the connection ended (%s); resumed on %s", key, _lost_text(lost), client.url
        )
        return False
    return True


def _lost_text(lost: BaseException) -> str:
    """Why a bot's connection ended, without the SDK's advice to its caller (`resume()`)."""
    if isinstance(lost, ConnectionLost):
        return lost.reason
    return str(lost) or type(lost).__name__


def _lost_or(status: int, lost: str | None) -> int:
    """A bot whose connection ended under it (the venue stopped or restarted, the link
    broke) did not finish its run: exit status 1 and why, so a supervisor restarts it."""
    if lost is None or status != 0:
        return status
    said_as_it_is = isinstance(lost, NeverConnected | NoneListed)
    _stopped(lost if said_as_it_is else f"the connection ended ({lost})")
    return 1


def _stopped(why: object) -> None:
    """Why a bot stopped: one line on stderr, like every other `venue` failure."""
    print(f"bot stopped: {why}", file=sys.stderr)


def _other_urls(args: argparse.Namespace) -> list[str]:
    """The `--url`s after the first, each checked as the first is (`check_trade_url`)."""
    for url in args.other_urls or ():
        check_trade_url(url)
    return list(args.other_urls or ())


def _symbols(given: Sequence[str]) -> list[str]:
    """`--symbol A --symbol B` and `--symbol A,B` alike, each once, in the order given."""
    symbols = [symbol.strip() for text in given for symbol in text.split(",")]
    return list(dict.fromkeys(symbol for symbol in symbols if symbol))


class _GatewayUrls(argparse.Action):
    """`--url`, repeatable: the first given is the primary (`url`), the others its
    `other_urls` (None when no `--url` was given: the default alone)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        value: Any,
        option_string: str | None = None,
    ) -> None:
        if namespace.other_urls is None:
            namespace.url, namespace.other_urls = value, []
        else:
            namespace.other_urls.append(value)


# A real key's credentials, read from the environment rather than flags: a process's
# arguments are visible to every local user (`ps`), its environment to its owner alone.
KEY_ENV, SECRET_ENV = "VENUE_KEY", "VENUE_SECRET"

# The config a bot reads (never the venue's files): each symbol's rules, to check a size and a
# price before sending it, and its listed price.
CONFIG_HELP = (
    "for each symbol's rules and listed price, and with no --url its venue's address"
    " (default: venue.toml)"
)


def _add_connection_arguments(parser: argparse.ArgumentParser, key: str, secret: str) -> None:
    parser.add_argument(
        "--url",
        action=_GatewayUrls,
        default=URL_DEFAULT,
        help="the venue's trade endpoint (default: the --config's [venue] host and port, where"
        " `venue serve` listens; without one, the default's); repeat it for a cluster's other"
        " gateways (the first is the one connected first): the bot then resumes on one of them"
        " when dropped",
    )
    parser.set_defaults(other_urls=None)
    parser.add_argument("--key", help=f"its API key (default: ${KEY_ENV}, else {key}, a demo key)")
    parser.add_argument(
        "--secret",
        help=f"the key's secret (default: ${SECRET_ENV}, else the demo's); a flag is seen by"
        " every local user in `ps`: give a real key's secret in the environment",
    )
    parser.set_defaults(demo_credentials=(key, secret))
    parser.add_argument("--seconds", type=float_within(0), default=0.0, help="0: until Ctrl-C")


def credentials(args: argparse.Namespace) -> tuple[str, str]:
    """The bot's key and secret: `--key`/`--secret`, else `KEY_ENV`/`SECRET_ENV`, else the
    demo's pair. A key with no secret (or a secret with no key) is refused: the demo's other
    half would be sent with it, and refused by the venue as a wrong signature."""
    key = args.key or os.environ.get(KEY_ENV) or None
    secret = args.secret or os.environ.get(SECRET_ENV) or None
    if key is None and secret is None:
        demo_key, demo_secret = args.demo_credentials
        return demo_key, demo_secret
    if key is None or secret is None:
        given, missing = (
            (f"--key or ${KEY_ENV}", f"--secret or ${SECRET_ENV}")
            if secret is None
            else (f"--secret or ${SECRET_ENV}", f"--key or ${KEY_ENV}")
        )
        raise CommandFailed(
            f"{given} is given but not {missing}: give both (a real key's secret in"
            f" ${SECRET_ENV}), or neither for the demo key"
        )
    return key, secret


def _urls(args: argparse.Namespace) -> list[str]:
    """Every gateway a bot may connect to: the first `--url` (or the config's), then the
    others."""
    return [args.url, *(args.other_urls or ())]


def _cannot_start_text(failed: BaseException, urls: Sequence[str]) -> str:
    """Why a bot could not start, in one line: no venue listening names where it looked and
    how to point it elsewhere (before session 30, only `[Errno 111] Connect call failed
    ('127.0.0.1', 8765)`); anything else as it came."""
    if isinstance(failed, TimeoutError) and urls:  # the opening handshake: no venue's answer
        return (
            f"no answer from {' or '.join(urls)} ({failed}): something takes connections there"
            " but does not answer as a venue (is it `venue serve`? its first line gives its"
            " trade URL: give that with --url)"
        )
    if not isinstance(failed, ConnectionRefusedError) or not urls:
        return str(failed)
    return (
        f"no venue at {' or '.join(urls)}: connection refused (is `venue serve` running there?"
        " its first line gives its trade URL: give that with --url)"
    )


def _run_bot(
    run: Any, seconds: float, status_text: Callable[[], str], urls: Sequence[str] = ()
) -> int:
    """Run a bot until Ctrl-C, SIGTERM or `seconds`, showing its status; 1 if it failed."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    status = StatusLine()

    async def main() -> bool:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if seconds > 0:
            loop.call_later(seconds, stop.set)
        shown = asyncio.create_task(_show_status(status, status_text, stop))
        try:
            return await _run_until_stopped(run(stop), stop)
        finally:
            stop.set()
            await shown

    # On a terminal, log lines go above the live status line instead of through it.
    logs = logging_redirect_tqdm() if status.live else contextlib.nullcontext()
    try:
        with logs:
            finished = asyncio.run(main())
    except CANNOT_START as failed:
        status.close()
        _stopped(_cannot_start_text(failed, urls))
        return 1
    status.close()
    if not finished:
        _stopped(
            f"asked to stop, it was still waiting for the venue {STOP_GRACE_S:g} s later, so it"
            " was cut short (cancel-on-disconnect pulls any quote left)"
        )
        return 1
    return 0


async def _run_until_stopped(running: Awaitable[None], stop: asyncio.Event) -> bool:
    """Run the bot; once `stop` is set, give it `STOP_GRACE_S` to end, then cancel it (its
    `finally` still pulls what it can, within `STOP_GRACE_S` more: then its close is given
    up). True if it ended on its own, False if cut short."""
    bot = asyncio.ensure_future(running)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((bot, stopping), return_when=asyncio.FIRST_COMPLETED)
        if not bot.done():
            await asyncio.wait((bot,), timeout=STOP_GRACE_S)
        if bot.done():
            await bot  # what it raised, raised here
            return True
        bot.cancel()
        await asyncio.wait((bot,), timeout=STOP_GRACE_S)  # its `finally`: the pull, the close
        if not bot.done():  # the close's handshake with a silent venue: given up too
            bot.cancel()
            await asyncio.gather(bot, return_exceptions=True)
        return False
    finally:
        stopping.cancel()
        bot.cancel()  # (done already, unless this wait itself was cancelled)
