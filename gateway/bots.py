"""Trading bots over the client SDK: a market maker quoting a ladder, and a random taker.

Each bot is one logged-on `VenueClient` with an async `run(stop)`, so the CLI, the live demo
and tests run them in-process alike. `MarketMaker` enables cancel-on-disconnect, follows its
private stream and the symbol's book and trades, and every interval sends one `quote.mass`
per level around the centre (the mid of the others' book, else the listed reference
price), leaning against its inventory and kept inside the band around the last trade.
On stop it pulls its quotes; if it dies, COD pulls them. `Taker` sends random marketable
orders (IOC limits through the touch, or market by qty) at a fixed rate. Refusals are
counted by reason and logged, never fatal. Prices are decimals rounded to the tick, sizes
to the step; the pricing is the pure `quote_ladder`. Limits are named below.
"""

import argparse
import asyncio
import contextlib
import logging
import random
import signal
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

from websockets.exceptions import ConnectionClosed

from gateway import config as venue_config
from gateway.client import VenueClient, VenueError

log = logging.getLogger("venue.bots")

LEVELS_MAX = 10  # one quote set per level; a deeper ladder is a real strategy's business
INTERVAL_S_MIN = 0.1  # 10 levels x 10 requotes/s = 100 quotes/s: half a connection's rate
TAKER_RATE_PER_S_MAX = 100  # half a connection's 200 requests/s, leaving room to pull
SKEW_SPREAD_PER_LOT = Decimal("0.25")  # one quote size of inventory leans a quarter spread
SKEW_SPREADS_MAX = Decimal(1)  # however big the position, lean at most one spread
THROUGH_BPS = Decimal(5)  # how far past the touch a taker's IOC limit reaches
TAKE_FRACTION_MIN, TAKE_FRACTION_MAX = 0.2, 1.5  # default taker size, of the touch's qty
NOTIONAL_MARGIN = 2  # default sizes are worth twice the minimum: a price move cannot refuse
MARKET_ORDER_SHARE = 0.5  # of the taker's orders, the share sent as market by qty
PULL_TIMEOUT_S = 2.0  # pulling quotes on stop; past it, COD on disconnect does the job
REFUSALS_LOGGED_MAX = 50  # per bot: enough to diagnose a problem, never a flood
QUOTE_SET_PREFIX = "mm-L"  # quote sets mm-L1..mm-LN: one bid and one ask per symbol each
BPS = Decimal(10_000)
URL_DEFAULT = "ws://127.0.0.1:8765/ws/trade"
# How a lost connection shows: a request that was waiting, or one sent after the end.
CONNECTION_LOST = (ConnectionError, ConnectionClosed)
CLOSED_STATUSES = frozenset({"filled", "canceled", "expired", "rejected"})

QuoteLevel = tuple[Decimal | None, Decimal | None]  # a level's bid and ask; None: pulled


# ----------------------------------------------------------------- reference data


@dataclass(frozen=True)
class Instrument:
    """What a bot needs of an instrument: its grid, and its reference and band when known."""

    symbol: str
    base: str
    tick: Decimal
    step: Decimal
    min_qty: Decimal
    min_notional: Decimal = Decimal(0)  # in the quote asset
    face: Decimal = Decimal(1)  # prices are per this much base (T-bills: per 100 of face)
    reference: Decimal | None = None  # the listed reference price
    band_bps: int | None = None

    @classmethod
    def from_row(
        cls, row: Mapping[str, Any], reference: Decimal | None = None, band_bps: int | None = None
    ) -> "Instrument":
        """From an `instruments` row; the row's own reference and band win when it has them."""
        published = row.get("reference_price")
        published_band = row.get("band_bps")
        return cls(
            symbol=row["symbol"],
            base=row["base"],
            tick=Decimal(row["tick"]),
            step=Decimal(row["step"]),
            min_qty=Decimal(row["min_qty"]),
            min_notional=Decimal(row.get("min_notional", 0)),
            face=Decimal(row.get("face", 1)),
            reference=Decimal(published) if published is not None else reference,
            band_bps=int(published_band) if published_band is not None else band_bps,
        )

    def price_text(self, price: Decimal) -> str:
        return f"{price.quantize(self.tick):f}"

    def qty_text(self, qty: Decimal) -> str:
        return f"{qty.quantize(self.step):f}"

    def round_qty(self, qty: Decimal) -> Decimal:
        """Down to the step; 0 when below the minimum quantity."""
        rounded = _floor(qty, self.step)
        return rounded if rounded >= self.min_qty else Decimal(0)

    def qty_worth(self, notional: Decimal, price: Decimal) -> Decimal:
        """The least quantity on the step (and at least the minimum) worth `notional`."""
        return max(_ceil(notional * self.face / price, self.step), self.min_qty)


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
) -> list[QuoteLevel]:
    """Per level, its bid and ask on the tick (None: a side the band leaves no room for).

    Level n is n x `spread_bps` wide around the centre, which leans against the inventory
    (in base units; `size` is one lot): long lowers both prices, so it sells more and buys
    less; short raises them. Bids fall and asks rise strictly from level to level.
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
        ladder.append((_within(bid, low, high), _within(ask, low, high)))
    return ladder


# ----------------------------------------------------------------- the market maker


class MarketMaker:
    """Quotes `levels` bid/ask pairs of `size` on one symbol until `stop` is set."""

    def __init__(
        self,
        url: str,
        key: str,
        secret: str,
        symbol: str,
        spread_bps: Decimal,
        size: Decimal,
        levels: int = 1,
        interval_s: float = 0.2,
        reference: Decimal | None = None,
        band_bps: int | None = None,
    ) -> None:
        if not 1 <= levels <= LEVELS_MAX:
            raise ValueError(f"levels must be within 1..{LEVELS_MAX}, got {levels}")
        if interval_s < INTERVAL_S_MIN:
            raise ValueError(f"the interval must be at least {INTERVAL_S_MIN} s")
        if spread_bps <= 0 or size <= 0:
            raise ValueError("the spread and the size must be positive")
        self.url = url
        self.key = key
        self.secret = secret
        self.symbol = symbol
        self.spread_bps = spread_bps
        self.size = size
        self.levels = levels
        self.interval_s = interval_s
        self.reference = reference
        self.band_bps = band_bps
        self.client = VenueClient(url)
        self.instrument: Instrument | None = None
        self.inventory = Decimal(0)  # base units bought minus sold since logon
        self.ladder: list[QuoteLevel] = []  # what was last sent
        self.last_trade: Decimal | None = None  # anyone's: the venue's band moves with it
        self.fills = 0
        self.requotes = 0
        self.refusals: Counter[str] = Counter()
        self.quoting = asyncio.Event()  # set once the first ladder is sent
        self._base_start: Decimal | None = None
        self._told_no_centre = False
        self._own: dict[int, tuple[str, Decimal, Decimal]] = {}  # order id -> side, px, leaves

    @property
    def quote_sets(self) -> list[str]:
        return [f"{QUOTE_SET_PREFIX}{level}" for level in range(1, self.levels + 1)]

    async def run(self, stop: asyncio.Event) -> None:
        client = self.client
        await client.connect()
        try:
            await client.logon(self.key, self.secret)
            await client.request("session.cod", {"enabled": True})
            self.instrument = await _instrument(client, self.symbol, self.reference, self.band_bps)
            self.size = self.instrument.round_qty(self.size)
            if not self.size:
                raise ValueError(f"{self.symbol}: the size is below {self.instrument.min_qty}")
            await client.subscribe_account()
            await client.subscribe_book(self.symbol)
            await client.request("subscribe", {"ch": "trades", "symbols": [self.symbol]})
            while not stop.is_set():
                self._drain()
                await self._quote()
                await _sleep_unless(stop, self.interval_s)
        except CONNECTION_LOST as lost:
            log.warning("%s %s: the connection ended (%s)", self.key, self.symbol, lost)
        finally:
            await self._pull()
            await client.close()

    async def _quote(self) -> None:
        instrument = self.instrument
        assert instrument is not None, "run() learns the instrument first"
        centre = self.centre()
        if centre is None:  # no others' book and no reference: nothing to quote around yet
            if not self._told_no_centre:
                self._told_no_centre = True
                log.warning("%s %s: no book and no reference price yet", self.key, self.symbol)
            return
        band = None
        band_centre = self.last_trade or instrument.reference
        if instrument.band_bps is not None and band_centre is not None:
            band = band_limits(band_centre, instrument.band_bps, instrument.tick)
        ladder = quote_ladder(
            centre,
            self.spread_bps,
            self.levels,
            self.inventory,
            self.size,
            instrument.tick,
            band,
        )
        # Sides moving away from the other side go first, so no new price ever reaches this
        # bot's own opposite quote of the last round (post-only would refuse it).
        size = instrument.qty_text(self.size)
        first: list[tuple[str, dict[str, str]]] = []
        then: list[tuple[str, dict[str, str]]] = []
        previous = self.ladder or [(None, None)] * self.levels
        for quote_set, (bid, ask), (was_bid, was_ask) in zip(
            self.quote_sets, ladder, previous, strict=True
        ):
            early: dict[str, str] = {}
            late: dict[str, str] = {}
            bid_away = bid is None or (was_bid is not None and bid <= was_bid)
            ask_away = ask is None or (was_ask is not None and ask >= was_ask)
            (early if bid_away else late).update(_side("bid", bid, size, instrument))
            (early if ask_away else late).update(_side("ask", ask, size, instrument))
            first += [(quote_set, early)] if early else []
            then += [(quote_set, late)] if late else []
        for quote_set, sides in first + then:
            params = {"quote_set": quote_set, "quotes": [{"symbol": self.symbol, **sides}]}
            self._check(await self.client.request_raw("quote.mass", params))
        self.ladder = ladder
        self.requotes += 1
        self.quoting.set()

    def centre(self) -> Decimal | None:
        """The mid of the others' book, else the listed reference price.

        Never its own quotes' mid, which would lean further every round, nor the last trade
        (its own fills), which would chase every print and walk away from the reference.
        """
        bid, ask = self._others_touch()
        if bid is not None and ask is not None:
            return (bid + ask) / 2
        return self.instrument.reference if self.instrument else None

    def _others_touch(self) -> tuple[Decimal | None, Decimal | None]:
        """The best bid and ask of the book once this bot's own quotes are taken out."""
        book = self.client.books.get(self.symbol)
        if book is None:
            return None, None
        own: dict[tuple[str, Decimal], Decimal] = {}
        for side, price, leaves in self._own.values():
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
        if self.instrument is None or websocket is None or websocket.state.name != "OPEN":
            return  # nothing was quoted, or nothing can be sent
        try:
            async with asyncio.timeout(PULL_TIMEOUT_S):
                for quote_set in self.quote_sets:
                    quote = {"symbol": self.symbol, "bid_qty": "0", "ask_qty": "0"}
                    params = {"quote_set": quote_set, "quotes": [quote]}
                    self._check(await self.client.request_raw("quote.mass", params))
                await self.client.request("ping")  # the fills before the pull are all in
        except (*CONNECTION_LOST, TimeoutError) as failed:
            log.warning("%s %s: quotes not pulled (%r); COD will", self.key, self.symbol, failed)
        self.ladder = []
        self._drain()  # the final inventory and fill count

    def _check(self, response: Mapping[str, Any]) -> None:
        """Count and log what the venue refused; the bot goes on either way."""
        if response["status"] == 200:
            return
        errors = [
            result["error"]
            for result in response.get("result", {}).get("results", [])
            if result["status"] != 200
        ]
        for error in errors or [response.get("error", {})]:
            name = error.get("name", str(response["status"]))
            self.refusals[name] += 1
            if self.refusals.total() <= REFUSALS_LOGGED_MAX:
                log.info("%s %s refused: %s %s", self.key, self.symbol, name, error.get("msg"))

    def _drain(self) -> None:
        while not self.client.pushes.empty():
            self._on_push(self.client.pushes.get_nowait())

    def _on_push(self, push: Mapping[str, Any]) -> None:
        channel = push.get("ch")
        if channel == "trades" and push.get("sym") == self.symbol and push.get("data"):
            self.last_trade = Decimal(push["data"][-1]["price"])
        elif channel == "account":
            kind = push.get("type")
            if kind == "snapshot":
                for row in push["balances"]:
                    self._on_balance(row)
                for order in push["orders"]:
                    self._on_order(order)
            elif kind == "balance":
                self._on_balance(push["data"])
            elif kind == "exec":
                self._on_order(push["data"])
                if push["data"]["exec_type"] == "trade":
                    self.fills += 1

    def _on_balance(self, row: Mapping[str, Any]) -> None:
        if self.instrument is None or row["asset"] != self.instrument.base:
            return
        total = Decimal(row["total"])
        if self._base_start is None:
            self._base_start = total
        self.inventory = total - self._base_start

    def _on_order(self, order: Mapping[str, Any]) -> None:
        if order["symbol"] != self.symbol or order["order_id"] is None:
            return
        leaves = Decimal(order["leaves_qty"])
        if order["status"] in CLOSED_STATUSES or not leaves or order["price"] is None:
            self._own.pop(order["order_id"], None)
        else:
            self._own[order["order_id"]] = (order["side"], Decimal(order["price"]), leaves)


# ----------------------------------------------------------------- the taker


class Taker:
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
    ) -> None:
        if not 0 < rate_per_s <= TAKER_RATE_PER_S_MAX:
            raise ValueError(f"the rate must be within (0, {TAKER_RATE_PER_S_MAX}] per second")
        if not symbols:
            raise ValueError("the taker needs at least one symbol")
        self.url = url
        self.key = key
        self.secret = secret
        self.symbols = list(symbols)
        self.rate_per_s = rate_per_s
        self.size = size
        self.random = random.Random(seed)
        self.client = VenueClient(url)
        self.instruments: dict[str, Instrument] = {}
        self.orders = 0
        self.fills = 0
        self.filled_qty: dict[str, Decimal] = {}  # base units, by symbol
        self.skipped = 0  # turns with nothing on the other side to take
        self.refusals: Counter[str] = Counter()

    async def run(self, stop: asyncio.Event) -> None:
        client = self.client
        await client.connect()
        try:
            await client.logon(self.key, self.secret)
            for symbol in self.symbols:
                self.instruments[symbol] = await _instrument(client, symbol, None, None)
            await client.subscribe_account()
            for symbol in self.symbols:
                await client.subscribe_book(symbol)
            loop = asyncio.get_running_loop()
            due = loop.time()
            while not stop.is_set():
                self._drain()
                await self._take()
                due = max(due + 1 / self.rate_per_s, loop.time())  # late: never catch up
                await _sleep_unless(stop, due - loop.time())
            # Pushes follow their order's response: one more round trip and all are in.
            await client.request("ping")
            self._drain()
        except CONNECTION_LOST as lost:
            log.warning("%s: the connection ended (%s)", self.key, lost)
        finally:
            await client.close()

    async def _take(self) -> None:
        symbol = self.random.choice(self.symbols)
        instrument = self.instruments[symbol]
        side = self.random.choice(("buy", "sell"))
        book = self.client.books[symbol]
        rows = book.asks() if side == "buy" else book.bids()
        if not rows:
            self.skipped += 1
            return
        touch, touch_qty = Decimal(rows[0][0]), Decimal(rows[0][1])
        fraction = Decimal(str(self.random.uniform(TAKE_FRACTION_MIN, TAKE_FRACTION_MAX)))
        if self.size is not None:
            qty = instrument.round_qty(self.size) or instrument.min_qty
        else:
            least = instrument.qty_worth(instrument.min_notional * NOTIONAL_MARGIN, touch)
            qty = max(instrument.round_qty(touch_qty * fraction), least)
        self.orders += 1
        try:
            if self.random.random() < MARKET_ORDER_SHARE:
                qty_text = instrument.qty_text(qty)
                await self.client.place(symbol, side, qty_text, type="market", tif="ioc")
            else:
                through = touch * THROUGH_BPS / BPS
                if side == "buy":
                    price = _ceil(touch + through, instrument.tick)
                else:
                    price = _floor(touch - through, instrument.tick)
                price_text = instrument.price_text(max(price, instrument.tick))
                await self.client.place(
                    symbol, side, instrument.qty_text(qty), price_text, tif="ioc"
                )
        except VenueError as refused:
            self.refusals[refused.name] += 1
            if self.refusals.total() <= REFUSALS_LOGGED_MAX:
                log.info("%s %s refused: %s", self.key, symbol, refused)

    def _drain(self) -> None:
        while not self.client.pushes.empty():
            push = self.client.pushes.get_nowait()
            if push.get("ch") == "account" and push.get("type") == "exec":
                data = push["data"]
                if data["exec_type"] == "trade":
                    self.fills += 1
                    symbol, qty = data["symbol"], Decimal(data["last_qty"])
                    self.filled_qty[symbol] = self.filled_qty.get(symbol, Decimal(0)) + qty


# ----------------------------------------------------------------- helpers


async def _instrument(
    client: VenueClient, symbol: str, reference: Decimal | None, band_bps: int | None
) -> Instrument:
    rows = (await client.request("instruments"))["instruments"]
    row = next((row for row in rows if row["symbol"] == symbol), None)
    if row is None:
        raise ValueError(f"the venue lists no {symbol}")
    return Instrument.from_row(row, reference, band_bps)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max(seconds, 0))


def _side(side: str, price: Decimal | None, size: str, instrument: Instrument) -> dict[str, str]:
    """A quote's fields for one side: its price and size, or a zero size that pulls it."""
    if price is None:
        return {f"{side}_qty": "0"}
    return {f"{side}_px": instrument.price_text(price), f"{side}_qty": size}


def _within(price: Decimal, low: Decimal, high: Decimal | None) -> Decimal | None:
    return price if low <= price and (high is None or price <= high) else None


def _floor(value: Decimal, unit: Decimal) -> Decimal:
    return (value / unit).to_integral_value(ROUND_FLOOR) * unit


def _ceil(value: Decimal, unit: Decimal) -> Decimal:
    return (value / unit).to_integral_value(ROUND_CEILING) * unit


# ----------------------------------------------------------------- command line


def add_market_maker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--symbol", required=True)
    parser.add_argument("--spread", type=Decimal, required=True, help="level 1's width, bps")
    parser.add_argument("--size", type=Decimal, required=True, help="per quote, base units")
    parser.add_argument("--levels", type=int, default=1, help=f"1..{LEVELS_MAX}")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between requotes")
    parser.add_argument("--reference", type=Decimal, help="default: the config's listed price")
    parser.add_argument("--config", type=Path, default=Path("venue.toml"))
    _add_connection_arguments(parser, "demo-mm-alpha", "demo-secret-mm-alpha")


def run_market_maker(args: argparse.Namespace) -> int:
    listed = config_references(args.config).get(args.symbol)
    reference = args.reference or (listed[0] if listed else None)
    bot = MarketMaker(
        args.url,
        args.key,
        args.secret,
        args.symbol,
        args.spread,
        args.size,
        levels=args.levels,
        interval_s=args.interval,
        reference=reference,
        band_bps=listed[1] if listed else None,
    )
    status = _run_bot(bot.run, args.seconds)
    if status == 0:
        print(
            f"market maker {args.symbol}: {bot.requotes} requotes, {bot.fills} fills, "
            f"inventory {bot.inventory}, refusals {dict(bot.refusals) or 'none'}"
        )
    return status


def add_taker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--symbol", action="append", required=True, help="repeat for more")
    parser.add_argument("--rate", type=float, required=True, help="orders per second")
    parser.add_argument("--size", type=Decimal, help="default: a random share of the touch")
    parser.add_argument("--seed", type=int, default=None)
    _add_connection_arguments(parser, "demo-taker", "demo-secret-taker")


def run_taker(args: argparse.Namespace) -> int:
    bot = Taker(args.url, args.key, args.secret, args.symbol, args.rate, args.size, args.seed)
    status = _run_bot(bot.run, args.seconds)
    if status == 0:
        print(
            f"taker: {bot.orders} orders, {bot.fills} fills, skipped {bot.skipped}, "
            f"refusals {dict(bot.refusals) or 'none'}"
        )
    return status


def _add_connection_arguments(parser: argparse.ArgumentParser, key: str, secret: str) -> None:
    parser.add_argument("--url", default=URL_DEFAULT)
    parser.add_argument("--key", default=key)
    parser.add_argument("--secret", default=secret)
    parser.add_argument("--seconds", type=float, default=0.0, help="0: until Ctrl-C")


def _run_bot(run: Any, seconds: float) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if seconds > 0:
            loop.call_later(seconds, stop.set)
        await run(stop)

    try:
        asyncio.run(main())
    except (OSError, ValueError, VenueError) as failed:
        print(f"bot stopped: {failed}")
        return 1
    return 0
