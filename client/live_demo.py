"""`venue demo`: the venue live for a few seconds, with bots trading over real websockets.

Starts the server in-process on 127.0.0.1, at the config's port or `--port` (a fresh journal
and ledger store in the data directory each run), two market makers quoting a ladder
(mm-alpha on AAPLx-USD, mm-beta on the config's T-bill that matures next: a matured one is
not listed), a taker crossing their spreads, and a public subscriber whose local books and
trades feed one status line a second. After `--seconds` (or Ctrl-C, SIGTERM, or SIGHUP: its
terminal closed) it stops the bots (they pull their quotes; a second Ctrl-C stops them at
once; a third ends the process, 130), then the server, and prints the trades, the volume,
the demo accounts' balances and the verdict of the ledger store's own verification.
Other clients can connect to the printed URL while it runs. Owns nothing the server or bots
do not.
"""

import argparse
import asyncio
import contextlib
import datetime
import errno
import os
import signal
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import msgspec

from cli import hangup
from cli.arguments import directory, int_within
from cli.failures import EXIT_INTERRUPTED, CommandFailed
from cli.serve import PORT_MAX, check_port_free, listening_port
from client import demo_data
from client.bots import MarketMaker, Taker, config_references
from client.sdk import VenueClient
from core import config as venue_config
from engine.instrument import TBILL_PRICE_PER
from engine.units import format_units
from gateway.server import LEDGER_FILE, VenueServer
from settlement.store import SqliteLedgerStore

HOST = "127.0.0.1"
# key, symbol, spread bps, size, levels: two makers, each with a ladder on its own symbol
Maker = tuple[str, str, Decimal, Decimal, int]
EQUITY_MAKER: Maker = ("demo-mm-alpha", "AAPLx-USD", Decimal(20), Decimal(5), 3)
BILL_MAKER_KEY = "demo-mm-beta"  # quotes the T-bill that matures next, as below
BILL_MAKER_QUOTE = (Decimal(4), Decimal(50_000), 3)
TAKER_KEY = "demo-taker"
TAKER_RATE_PER_S = 10.0  # enough trades a second to watch, few enough to read
MAKER_INTERVAL_S = 0.2
SECONDS_MAX = 3_600  # a demo, not a deployment: `venue serve` runs for longer
BOT_STOP_TIMEOUT_S = 5.0  # bots pull their quotes within this; past it they are cancelled
STATUS_INTERVAL_S = 1.0
TAKER_SEED = 7  # the taker's choices repeat run to run (the timing does not)
SECONDS_DEFAULT = 20.0  # long enough to watch a few trades a second, short enough to wait for


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port",
        type=int_within(0, PORT_MAX),
        default=None,
        help="default: the config's [venue] port (venue.toml's: 8765); 0: any free port",
    )
    parser.add_argument(
        "--data-dir",
        type=directory,
        default=Path("data-demo"),
        help="started afresh each run (default: data-demo); one a venue left is refused",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=SECONDS_DEFAULT,
        help=f"default {SECONDS_DEFAULT:g}, at most {SECONDS_MAX:,}; Ctrl-C stops earlier",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=Path("venue.toml"),
        help="default: venue.toml; it needs its demo keys and AAPLx-USD",
    )


def run(args: argparse.Namespace) -> int:
    if not 0 < args.seconds <= SECONDS_MAX:
        raise CommandFailed(f"--seconds must be within (0, {SECONDS_MAX}]")
    return asyncio.run(_demo(args.config, args.port, args.data_dir, args.seconds))


class Tape:
    """What the public subscriber has seen: trades and volume per symbol, the last price."""

    def __init__(self, symbols: list[str]) -> None:
        self.trades = dict.fromkeys(symbols, 0)
        self.volume = dict.fromkeys(symbols, Decimal(0))  # base units
        self.notional = dict.fromkeys(symbols, Decimal(0))  # quote units, before fees
        self.last: dict[str, str] = {}

    def drain(self, client: VenueClient, per_price: dict[str, int]) -> None:
        while not client.pushes.empty():
            push = client.pushes.get_nowait()
            if push.get("ch") != "trades" or push.get("type") != "update":
                continue  # the snapshot holds trades from before the demo: none, fresh
            symbol = push["sym"]
            for trade in push["data"]:
                qty = Decimal(trade["qty"])
                self.trades[symbol] += 1
                self.volume[symbol] += qty
                self.notional[symbol] += Decimal(trade["price"]) * qty / per_price[symbol]
                self.last[symbol] = trade["price"]

    def total(self) -> int:
        return sum(self.trades.values())


async def _demo(config_path: Path, port: int | None, data_dir: Path, seconds: float) -> int:
    """The demo on `port`, else its config's, as `venue serve` listens; on loopback whatever
    the config's host (the demo keys' secrets are published with the code)."""
    config = demo_config(venue_config.load_to_build(config_path))  # the demo builds a venue
    port = listening_port(config_path, config, port)
    secrets = {key.key: key.secret for key in config.api_keys}
    references = config_references(config_path)
    kinds = {entry.symbol: entry for entry in config.instruments}
    demo_makers = makers_for(config, datetime.datetime.now(datetime.UTC).date())
    check_demo_config(config_path, config, demo_makers)  # before anything starts or goes
    symbols = [symbol for _, symbol, *_ in demo_makers]
    per_price = {s: TBILL_PRICE_PER if kinds[s].kind == "tbill" else 1 for s in symbols}
    check_port_free(HOST, port)  # before the last run's files go
    demo_data.claim(data_dir)  # the previous run's journal, snapshots and store go
    server = VenueServer(config, data_dir)
    try:
        port = await server.start(HOST, port)
    except OSError as failed:
        raise CommandFailed(f"cannot listen on {HOST}:{port}: {failed.strerror}") from None
    url = f"ws://{HOST}:{port}/ws"
    print(f"tokenvenue live on {url}/trade and {url}/public (data in {data_dir})")
    stop = asyncio.Event()
    makers = [
        MarketMaker(
            f"{url}/trade",
            key,
            secrets[key],
            symbol,
            spread,
            size,
            levels=levels,
            interval_s=MAKER_INTERVAL_S,
            reference=references[symbol][0],
            band_bps=references[symbol][1],
        )
        for key, symbol, spread, size, levels in demo_makers
    ]
    taker = Taker(
        f"{url}/trade",
        TAKER_KEY,
        secrets[TAKER_KEY],
        symbols,
        TAKER_RATE_PER_S,
        seed=TAKER_SEED,
        listed=references,
    )
    for maker in makers:
        print(f"  {maker.key:<14} quotes {maker.symbol}: {maker.levels} levels, {maker.size} each")
    print(f"  {TAKER_KEY:<14} takes {TAKER_RATE_PER_S:g} orders/s on {', '.join(symbols)}")
    public = await VenueClient(f"{url}/public").connect()
    for symbol in symbols:
        await public.subscribe_book(symbol)
    await public.request("subscribe", {"ch": "trades", "symbols": symbols})
    bots: list[MarketMaker | Taker] = [*makers, taker]
    tasks = [asyncio.create_task(bot.run(stop)) for bot in bots]
    tape = Tape(symbols)
    hurry = asyncio.Event()  # interrupted again while stopping: the bots are not waited for
    with _stop_on_interrupt(stop, hurry):  # until the summary is out, whatever comes
        await _watch(public, tape, per_price, stop, seconds)
        stop.set()
        print("stopping the bots: they pull their quotes", flush=True)
        await _finish(tasks, hurry)
        await asyncio.sleep(STATUS_INTERVAL_S / 10)  # the pulls' book updates reach us
        tape.drain(public, per_price)
        books_left = sum(len(b.bids()) + len(b.asks()) for b in public.books.values())
        await public.close()
        server.venue.check_invariants()
        open_orders = len(server.venue.orders)
        balances = _balances(server, config, demo_makers)
        await server.stop()
        problems = _verify(data_dir)
        _summary(tape, makers, taker, balances, books_left, open_orders, problems, data_dir)
    return 1 if problems else 0


async def _watch(
    public: VenueClient,
    tape: Tape,
    per_price: dict[str, int],
    stop: asyncio.Event,
    seconds: float,
) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not stop.is_set() and loop.time() - start < seconds:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), min(STATUS_INTERVAL_S, seconds))
        tape.drain(public, per_price)
        _say_status(_status_line(loop.time() - start, tape, public))


def _say_status(line: str) -> None:
    """Print the status line. A terminal closed while it is written fails the write (EIO)
    before the SIGHUP that follows is handled: the line is let go, and the SIGHUP stops the
    demo cleanly (`_stop_on_interrupt`); before, the EIO ended it, the server unstopped."""
    try:
        print(line, flush=True)
    except OSError as failed:
        if failed.errno != errno.EIO:
            raise


def _status_line(elapsed_s: float, tape: Tape, public: VenueClient) -> str:
    parts = [f"[{elapsed_s:4.1f}s] {tape.total():>5} trades"]
    for symbol, book in public.books.items():
        bids, asks = book.bids(), book.asks()
        bid = bids[0][0] if bids else "-"
        ask = asks[0][0] if asks else "-"
        parts.append(f"{symbol} {bid} / {ask} last {tape.last.get(symbol, '-')}")
    return " | ".join(parts)


async def _finish(tasks: list[asyncio.Task[None]], hurry: asyncio.Event) -> None:
    """Let the bots stop (each pulls its quotes) for up to `BOT_STOP_TIMEOUT_S`, or until
    `hurry` is set; cancel those still running then. A bot that failed is said."""
    stopped = asyncio.ensure_future(asyncio.wait(tasks))
    hurried = asyncio.ensure_future(hurry.wait())
    try:
        await asyncio.wait(
            (stopped, hurried), timeout=BOT_STOP_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        stopped.cancel()  # the wait alone: the bots' tasks are canceled below, if need be
        hurried.cancel()
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            print(f"a bot failed: {task.exception()!r}")


def demo_config(config: venue_config.VenueConfig) -> venue_config.VenueConfig:
    """`config` as the demo runs it: its throwaway journal archives nowhere (in a production
    venue's `journal_archive_dir` its segments would stand where that venue's go, which are
    then refused there as another venue's; session 35)."""
    venue = msgspec.structs.replace(config.venue, journal_archive_dir="")
    return msgspec.structs.replace(config, venue=venue)


def check_demo_config(
    config_path: Path, config: venue_config.VenueConfig, makers: list[Maker]
) -> None:
    """Refuse a `--config` without what the demo trades with: its makers' and taker's API
    keys and the equity mm-alpha quotes (a KeyError once the server had started, before)."""
    keys = {key.key for key in config.api_keys}
    listed = {entry.symbol for entry in config.instruments}
    missing = [f"API key {key}" for key in (*(m[0] for m in makers), TAKER_KEY) if key not in keys]
    missing += [f"instrument {m[1]}" for m in makers if m[1] not in listed]
    if missing:
        raise CommandFailed(
            f"{config_path} has no {', no '.join(missing)}: the demo trades with venue.toml's"
            " demo keys and AAPLx-USD (give a config that has them)"
        )


def makers_for(config: venue_config.VenueConfig, today: datetime.date) -> list[Maker]:
    """mm-alpha on AAPLx-USD, and mm-beta on the config's T-bill that matures next after `today`.

    The sample config's bills carry real dates; once both have matured the venue lists none
    (it refuses a bill whose maturity has passed) and the demo runs the equity maker alone.
    """
    bills = sorted(
        (entry.maturity, entry.symbol)
        for entry in config.instruments
        if entry.kind == "tbill" and entry.maturity is not None and entry.maturity > today
    )
    if not bills:
        return [EQUITY_MAKER]
    return [EQUITY_MAKER, (BILL_MAKER_KEY, bills[0][1], *BILL_MAKER_QUOTE)]


def _balances(
    server: VenueServer, config: venue_config.VenueConfig, makers: list[Maker]
) -> list[str]:
    """One line per demo account: its total and its change since the deposits, per asset."""
    ledger = server.ledger
    names = {key for key, *_ in makers} | {TAKER_KEY}
    keyed = {key.account for key in config.api_keys if key.key in names}
    symbols = {symbol for _, symbol, *_ in makers}
    assets = ["USD", *(kind.base for kind in config.instruments if kind.symbol in symbols)]
    lines = []
    for account in config.accounts:
        if account.id not in keyed:
            continue
        cells = []
        for asset in assets:
            scale = ledger.assets[asset].scale
            total = ledger.balance(account.id, asset).total
            start = Decimal(account.deposits.get(asset, "0"))
            change = Decimal(format_units(total, scale)) - start
            cells.append(f"{asset} {format_units(total, scale)} ({change:+f})")
        lines.append(f"  {account.name:<10} " + "  ".join(cells))
    return lines


def _verify(data_dir: Path) -> list[str]:
    store = SqliteLedgerStore(data_dir / LEDGER_FILE)
    try:
        return store.verify()
    finally:
        store.close()


def _summary(
    tape: Tape,
    makers: list[MarketMaker],
    taker: Taker,
    balances: list[str],
    books_left: int,
    open_orders: int,
    problems: list[str],
    data_dir: Path,
) -> None:
    print(f"\n{tape.total()} trades")
    for symbol, count in tape.trades.items():
        print(
            f"  {symbol:<18} {count:>5} trades  volume {tape.volume[symbol]:f}"
            f"  notional {tape.notional[symbol]:.2f}  last {tape.last.get(symbol, '-')}"
        )
    for maker in makers:
        refusals = dict(maker.refusals) or "none"
        print(
            f"  {maker.key:<14} {maker.requotes} requotes, {maker.fills} fills, "
            f"inventory {maker.inventory:+f}, refusals {refusals}"
        )
    refusals = dict(taker.refusals) or "none"
    print(f"  {taker.key:<14} {taker.orders} orders, {taker.fills} fills, refusals {refusals}")
    print(f"left on the book: {books_left} levels, {open_orders} open orders")
    print("balances (change since the deposits):")
    for line in balances:
        print(line)
    verdict = "verified" if not problems else "; ".join(problems)
    print(f"ledger store {data_dir / LEDGER_FILE}: {verdict}")


@contextlib.contextmanager
def _stop_on_interrupt(stop: asyncio.Event, hurry: asyncio.Event) -> Iterator[None]:
    """Ctrl-C (and SIGTERM, and SIGHUP: the terminal closed) set `stop` instead of tearing the
    loop down mid-trade. Another one once stopping sets `hurry`, saying so once: it used to
    end the process with 130, without the summary, while the bots pulled their quotes. A
    third ends the process at once, 130 (`_end_at_once`): the stop may hang (the server's,
    say), and every signal after the second was swallowed until the summary, leaving only
    SIGKILL. A SIGHUP first detaches the hung-up terminal (its writes would fail, EIO);
    before the review of session 26 its default action killed the demo, the server unstopped.
    A SIGHUP ignored at the start (nohup) stays ignored (`hangup.stop_signals`)."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []

    def interrupted(sig: signal.Signals) -> None:
        if sig == signal.SIGHUP:
            hangup.detach_hung_up_terminal()  # the status and summary must not fail on it
        if not stop.is_set():
            stop.set()
        elif not hurry.is_set():
            hurry.set()
            # Taken from the loop: a third comes to a Python handler, which runs even if
            # the loop is stuck in a call that does not return.
            for sig in installed:
                loop.remove_signal_handler(sig)
                signal.signal(sig, _end_at_once)
            print(
                "interrupted again: the bots are stopped at once, without pulling their quotes"
                " or reading their last fills; the summary follows (a third Ctrl-C ends the"
                " demo at once)",
                flush=True,
            )

    for sig in hangup.stop_signals():
        try:
            loop.add_signal_handler(sig, interrupted, sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            continue
        installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            if not loop.remove_signal_handler(sig):  # moved to `_end_at_once`: as it was
                default = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
                signal.signal(sig, default)


def _end_at_once(signum: int, frame: object) -> None:
    """A third Ctrl-C (or SIGTERM, SIGHUP): exit 130 now, saying so in one line, whatever is
    running (the server not stopped: its files are as after a crash; the next demo starts
    afresh)."""
    if signum == signal.SIGHUP:
        hangup.detach_hung_up_terminal()
    with contextlib.suppress(Exception):  # (a print cut short by this signal: reentrant)
        sys.stdout.flush()
    message = "interrupted a third time: the demo ends now (130), without its summary\n"
    with contextlib.suppress(OSError):  # nowhere left to say it: the exit matters
        os.write(sys.stdout.fileno(), message.encode())
    os._exit(EXIT_INTERRUPTED)
