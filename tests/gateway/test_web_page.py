"""The web page in a real headless Chromium (Debian's, driven by Playwright) on a real venue.

Nothing is downloaded: the browser is /usr/bin/chromium (scripts/install-chromium.sh, run by
`make services`), started once for the module (`chromium`); each test opens its page in a
context of its own (fresh storage, cookies and cache: as a fresh profile).
"""

import asyncio
import contextlib
import hashlib
import hmac
import http.client
import itertools
import json
import os
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from decimal import Decimal
from importlib.resources import files
from pathlib import Path
from typing import Any

import msgspec
import pytest
from playwright.async_api import Browser as PlaywrightBrowser
from playwright.async_api import Page, async_playwright, expect

from client.sdk import VenueClient
from core import config as venue_config
from core.venue_core import now_us
from gateway.auth import NONCES_PER_KEY_MAX, KeyStore, sign_logon
from gateway.server import VenueServer
from tests.conftest import KEYS, Venue, start_venue
from tests.sample_config import SAMPLE_CONFIG, sample_bill

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCENARIO_TIMEOUT_S = 60  # a browser start and a page on a busy 2-core machine: well within
WAIT_MS = 10_000  # how long one expectation may wait for the page to show it
SYMBOL = "AAPLx-USD"
BILL = sample_bill("TB-2027-03-04-USD")

expect.set_options(timeout=WAIT_MS)
pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} missing: run `make services`"
)


class TradeSocket:
    """What one of the page's /ws/trade sockets asked and had answered (request ids restart
    at 1 on each socket, so they are matched per socket)."""

    def __init__(self) -> None:
        self.history_asked: list[int] = []  # the ids of its `orders.history` requests
        self.answered: set[int] = set()  # the ids of its answers

    def sent(self, payload: Any) -> None:
        if '"orders.history"' in str(payload):
            self.history_asked.append(json.loads(payload)["id"])

    def received(self, payload: Any) -> None:
        if '"ch"' not in str(payload):
            self.answered.add(json.loads(payload)["id"])


class Browser:
    """One page of a fresh Chromium, and what its console said."""

    def __init__(self, page: Page, venue: Venue | None = None) -> None:
        self.page = page
        self.venue = venue  # whose heartbeats `heard` asks for (the server it runs then)
        self.errors: list[str] = []
        self.frames_sent: list[str] = []
        self.heartbeats: list[dict[str, Any]] = []  # received, on any of the page's sockets
        self.account_seqs: list[int] = []  # of the account pushes received, in order
        self.trade_sockets: list[TradeSocket] = []  # the page's /ws/trade sockets, in order
        self.frames_received = 0  # on any of the page's sockets
        self.market_sockets = 0  # the page's /ws/public sockets made, those that failed too
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        page.on("websocket", self._websocket)
        self.rest_reads: set[Any] = set()  # the page's REST reads under way
        page.on("request", self._rest_asked)
        page.on("requestfinished", lambda request: self.rest_reads.discard(request))
        page.on("requestfailed", lambda request: self.rest_reads.discard(request))

    def _rest_asked(self, request: Any) -> None:
        if "/api/" in request.url:
            self.rest_reads.add(request)

    async def rest_settled(self) -> None:
        """Wait until no REST read of the page's is under way (each ends within the page's
        5 s REST timeout): a relay closed under one would fail it, a console error."""
        for _ in range(200):  # bounded: 10 s
            if not self.rest_reads:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"REST reads still under way: {self.rest_reads}")

    def _console(self, message: Any) -> None:
        if message.type in ("error", "warning"):
            self.errors.append(f"{message.type}: {message.text} at {message.location}")

    def _websocket(self, socket: Any) -> None:
        socket.on("framesent", lambda payload: self.frames_sent.append(str(payload)))
        socket.on("framereceived", self._received)
        if socket.url.endswith("/ws/public"):
            self.market_sockets += 1
        if socket.url.endswith("/ws/trade"):
            trade = TradeSocket()
            self.trade_sockets.append(trade)
            socket.on("framesent", trade.sent)
            socket.on("framereceived", trade.received)

    async def records_read(self) -> None:
        """Wait until the page's last `orders.history` (read after its `fills`) is answered on
        the socket that asked it."""
        for _ in range(100):  # bounded: 5 s
            asking = [trade for trade in self.trade_sockets if trade.history_asked]
            if asking and asking[-1].history_asked[-1] in asking[-1].answered:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the page's last orders.history is not answered")

    async def heard(self) -> None:
        """Wait until one of the page's sockets receives a frame: the venue is asked to send
        each connection a heartbeat now (it sends one after each quiet second, which a test
        jumping the page's clock 100 s on in steps waited out at each: ~1 s a step, 20 s a
        test, before session 32); none within 2 s: no socket is open to hear one."""
        before = self.frames_received
        if self.venue is not None:
            self.venue.server.public.send_heartbeats(0)
        for _ in range(40):  # bounded: 2 s
            if self.frames_received > before:
                return
            await asyncio.sleep(0.05)

    def _received(self, payload: Any) -> None:
        self.frames_received += 1
        if '"heartbeat"' in str(payload):
            self.heartbeats.append(json.loads(payload))
        elif '"account"' in str(payload):
            message = json.loads(payload)
            if message.get("ch") == "account":
                self.account_seqs.append(message["seq"])

    async def followed_streams(self, symbol: str) -> set[str]:
        """The book, trades and candles streams that the next heartbeat naming `symbol`'s
        candles lists: what the page's market-data connection follows."""
        self.heartbeats.clear()
        for _ in range(50):  # bounded: a heartbeat comes after each quiet second
            for beat in self.heartbeats:
                if f"candles:{symbol}:1m" in beat["seqs"]:
                    return {name for name in beat["seqs"] if not name.startswith("instruments:")}
            await asyncio.sleep(0.1)
        raise AssertionError(f"no heartbeat lists the candles of {symbol}")

    async def log_on(self, who: str, secret: str | None = None) -> None:
        api_key, real_secret = KEYS[who]
        await self.page.fill("#api-key", api_key)
        await self.page.fill("#api-secret", real_secret if secret is None else secret)
        await self.page.click("#logon-button")

    async def place(self, side: str, kind: str, qty: str, price: str = "") -> None:
        await self.page.check(f"input[name=side][value={side}]")
        await self.page.select_option("#order-kind", kind)
        if price:
            await self.page.fill("#order-price", price)
        await self.page.fill("#order-qty", qty)
        await self.page.click("#place-button")


class SharedChromium:
    """The module's one Chromium and the event loop it runs on (`chromium`): every test's
    scenario runs on that loop, as Playwright's objects belong to the loop they were made on.
    Started for each test, it took ~1.5 s of every test (of ~3)."""

    runner: asyncio.Runner | None = None
    browser: PlaywrightBrowser | None = None


SHARED = SharedChromium()


@pytest.fixture(scope="module", autouse=True)
def chromium() -> Iterator[None]:
    with asyncio.Runner() as runner:
        playwright = runner.run(async_playwright().start())
        try:
            SHARED.runner = runner
            SHARED.browser = runner.run(
                playwright.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
                )
            )
            yield
        finally:
            if SHARED.browser is not None:
                runner.run(SHARED.browser.close())
            SHARED.runner = SHARED.browser = None
            runner.run(playwright.stop())


def run_page(
    tmp_path: Path,
    scenario: Callable[[Venue, Browser], Awaitable[None]],
    path: str = "/",
    init_script: str | None = None,
) -> list[str]:
    """Run `scenario` against a fresh venue and a page opened on it (`init_script` run in the
    page before its own scripts); the console's errors."""

    async def main() -> list[str]:
        before = asyncio.all_tasks()
        venue = await start_venue(tmp_path / "data")
        try:
            async with open_page(venue, path, init_script) as browser:
                await asyncio.wait_for(scenario(venue, browser), SCENARIO_TIMEOUT_S)
                rest = await asyncio.to_thread(serves_rest, venue.port)
                return [e for e in browser.errors if rest or not is_rest_404(e)]
        finally:
            for client in venue.clients:
                await client.close()
            await venue.server.stop()
            await cancel_left_over(before)

    assert SHARED.runner is not None, "the module's chromium fixture runs first"
    return SHARED.runner.run(main())


async def cancel_left_over(before: set["asyncio.Task[Any]"]) -> None:
    """Cancel the tasks the test started and left running (as `asyncio.run` did at the end of
    each test), but Playwright's own, which serve the shared browser."""
    current = asyncio.current_task()
    left = [t for t in asyncio.all_tasks() - before if t is not current and not playwrights(t)]
    for task in left:
        task.cancel()
    await asyncio.gather(*left, return_exceptions=True)


def playwrights(task: "asyncio.Task[Any]") -> bool:
    code = getattr(task.get_coro(), "cr_code", None)
    return code is not None and f"{os.sep}playwright{os.sep}" in code.co_filename


@asynccontextmanager
async def open_page(
    venue: Venue, path: str, init_script: str | None = None, device: dict[str, Any] | None = None
) -> AsyncIterator[Browser]:
    """A page on `venue` in a new context of the shared browser, once its market data is live;
    `device`: the context's options (a phone's, `PHONES`), else a 1400 px desktop window."""
    assert SHARED.browser is not None, "the module's chromium fixture runs first"
    options = device or {"viewport": {"width": 1400, "height": 1000}}
    context = await SHARED.browser.new_context(**options)
    try:
        context.set_default_timeout(WAIT_MS)
        if init_script is not None:
            await context.add_init_script(init_script)
        page = await context.new_page()
        browser = Browser(page, venue)
        await page.goto(f"http://127.0.0.1:{venue.port}{path}")
        await expect(page.locator("#market-status")).to_have_text(
            "market data: live", timeout=WAIT_MS
        )
        yield browser
    finally:
        await context.close()


def serves_rest(port: int) -> bool:
    """Whether this build serves the REST API the page reads 24 h change, candles and
    reserves from; without it the page shows "—" for them, and its 404s are expected."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/api/v1/ticker")
        return connection.getresponse().status != 404
    finally:
        connection.close()


def is_rest_404(error: str) -> bool:
    return "status of 404" in error and "/api/v1/" in error


# Each table's headers whose column holds right-aligned figures (td.num) but that are not
# right-aligned themselves: a trader reads a figure as the column whose header sits over it.
MISALIGNED_HEADERS = """() => [...document.querySelectorAll("main table")].flatMap((table) => {
  const row = [...table.querySelectorAll("tbody tr")].find((r) => r.querySelector("td.num"));
  if (row === undefined) return [];
  const headers = table.tHead.rows[0].cells;
  return [...row.cells]
    .map((td, i) => [td, headers[i]])
    .filter(([td, th]) => td.classList.contains("num"))
    .filter(([, th]) => getComputedStyle(th).textAlign !== "right")
    .map(([, th]) => `${table.id}: ${th.textContent}`);
})"""


def ladder_row(page: Page, side: str, price: str) -> Any:
    return page.locator(f"#ladder-{side}s tr[data-price='{price}'] td.qty")


async def resting_sell(venue: Venue, qty: str, price: str) -> VenueClient:
    seller = await venue.client("alpha")
    await seller.place(SYMBOL, "sell", qty=qty, price=price)
    return seller


def test_a_buy_that_crosses_a_resting_sell_shows_fill_balances_tape_and_ladder(
    tmp_path: Path,
) -> None:
    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        seller = await resting_sell(venue, "10", "187.30")
        await seller.place(SYMBOL, "sell", qty="5", price="187.40")  # levels: the checksum's |
        await seller.place(SYMBOL, "buy", qty="2", price="187.00")
        await seller.place(SYMBOL, "buy", qty="3", price="186.90")
        await expect(ladder_row(page, "ask", "187.30")).to_have_text("10.000000")
        await expect(ladder_row(page, "bid", "186.90")).to_have_text("3.000000")
        await browser.log_on("taker")
        await expect(page.locator("#account")).to_have_text("3")
        usd = page.locator("#balances tr[data-asset=USD] td.total")
        await expect(usd).to_have_text("5000000.000000")

        await browser.place("buy", "limit", qty="4", price="187.30")

        await expect(page.locator("#order-result")).to_contain_text("filled")
        fill = page.locator("#fills tbody tr").first
        await expect(fill.locator("td.price")).to_have_text("187.30")
        await expect(fill.locator("td.qty")).to_have_text("4.000000")
        notional = Decimal("187.30") * 4
        fee = notional * 5 / 10_000  # the demo taker fee, 5 bp
        await expect(usd).to_have_text(f"{Decimal(5_000_000) - notional - fee:.6f}")
        aapl = page.locator("#balances tr[data-asset=AAPLx] td.total")
        await expect(aapl).to_have_text("20004.000000")
        trade = page.locator("#tape tbody tr").first
        await expect(trade.locator("td.price")).to_have_text("187.30")
        await expect(trade.locator("td.qty")).to_have_text("4.000000")
        await expect(ladder_row(page, "ask", "187.30")).to_have_text("6.000000")
        await expect(page.locator("#ladder")).to_have_attribute("data-resyncs", "0")
        await expect(page.locator("#instruments tr[data-symbol='AAPLx-USD'] td.last")).to_have_text(
            "187.30"
        )
        # the first trade of the 24 h window: its change is asked of REST at once, not at the
        # next 30 s poll (main showed "—" beside the last price until then)
        change = page.locator("#instruments tr[data-symbol='AAPLx-USD'] td.change")
        await expect(change).to_have_text("+0.00%")
        assert await page.evaluate(MISALIGNED_HEADERS) == []

    assert run_page(tmp_path, scenario) == []


def test_open_orders_show_and_cancel_from_the_page(tmp_path: Path) -> None:
    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        await browser.log_on("taker")
        await expect(page.locator("#account")).to_have_text("3")
        await browser.place("buy", "post_only", qty="2", price="180.00")
        row = page.locator("#open-orders tbody tr")
        await expect(row).to_have_count(1)
        await expect(row.locator("td").nth(3)).to_have_text("180.00")
        await expect(ladder_row(page, "bid", "180.00")).to_have_text("2.000000")
        await expect(page.locator("#ladder-bids tr.mine")).to_have_attribute("data-price", "180.00")
        held = page.locator("#balances tr[data-asset=USD] td.held")
        await expect(held).not_to_have_text("0.000000")

        await row.locator("button.cancel").focus()
        await page.keyboard.press("Enter")  # by the keyboard

        await expect(row).to_have_count(0)
        await expect(page.locator("#order-result")).to_contain_text("canceled")
        # the last order gone, the keyboard's focus is on its panel's heading, not dropped to
        # the page's start with its row (session 35)
        await expect(page.get_by_role("heading", name="Open orders")).to_be_focused()
        await expect(held).to_have_text("0.000000")
        await expect(page.locator("#ladder-bids tr")).to_have_count(0)
        # the canceled order stays in the order history (before session 30: it vanished)
        history = page.locator("#history tbody tr")
        await expect(history).to_have_count(1)
        await expect(history.locator("td.price")).to_have_text("180.00")
        await expect(history.locator("td.status")).to_have_text("canceled (user)")

        # A bot of the account, with cancel-on-disconnect, leaves: its order shows, then goes,
        # and the page says why in words (session 25; main: `venue: cod.triggered`)
        bot = await venue.client("taker")
        await bot.request("session.cod", {"enabled": True})
        await bot.place(SYMBOL, "buy", qty="1", price="181.00")
        await expect(row).to_have_count(1)
        await bot.close()
        venue.clients.remove(bot)
        await expect(page.locator("#order-result")).to_have_text(
            "venue: a connection of this account with cancel-on-disconnect closed: the orders it"
            " placed are being canceled (cod.triggered)"
        )
        await expect(row).to_have_count(0)
        # newest first, its reason said
        await expect(history.locator("td.status")).to_have_text(
            ["canceled (cod)", "canceled (user)"]
        )
        await expect(history.locator("td.price")).to_have_text(["181.00", "180.00"])

    assert run_page(tmp_path, scenario) == []


def test_a_rejected_order_shows_its_error_and_a_partial_ioc_what_filled(tmp_path: Path) -> None:
    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        await resting_sell(venue, "1", "187.30")
        await expect(ladder_row(page, "ask", "187.30")).to_have_text("1.000000")
        await browser.log_on("taker")
        await expect(page.locator("#account")).to_have_text("3")
        result = page.locator("#order-result")

        await browser.place("buy", "limit", qty="1", price="999.00")
        # the band in words, the code after (session 36; main: the wire's, `PRICE_BAND (4009):
        # price is outside the band (band_low 168.53, band_high 205.97, reference_price ...)`)
        await expect(result).to_have_text(
            "order refused: the price is outside the band of AAPLx-USD, where a buy is priced at"
            " most 205.97 and a sell at least 168.53 (PRICE_BAND 4009)"
        )

        await browser.place("buy", "post_only", qty="1", price="187.30")
        # in words, with what it takes (session 36; main: `POST_ONLY_WOULD_TAKE (4006): the
        # order would take`)
        await expect(result).to_have_text(
            "order refused: a post-only order only rests, and this one would trade on arrival:"
            " a post-only buy is priced below the best ask, a sell above the best bid"
            " (POST_ONLY_WOULD_TAKE 4006)"
        )

        # finer than the tick: said in the page's words, with the tick, and not sent (session
        # 36; main sent it: `BAD_PRECISION (1004): price '187.301' has more than 2 decimals - at
        # `params.price``)
        await browser.place("buy", "limit", qty="1", price="187.301")
        await expect(result).to_have_text(
            'the price of AAPLx-USD is a multiple of its tick, 0.01: not "187.301"'
        )

        # A figure the venue cannot read is said in a trader's words, and not sent (session
        # 25; main: `order refused: BAD_PARAM (1003): Expected `str` holding a plain decimal
        # number - at `params.qty``)
        placed = sum("order.place" in frame for frame in browser.frames_sent)
        words = 'the {} is a plain decimal number with a point, e.g. 1.5: not "{}"'
        # a sign on an otherwise plain number is said as such (session 28: it got the form's
        # words, "a plain decimal number with a point", which -187 already is but for its sign)
        signed = 'the {} is a number above zero, without a sign: not "{}"'
        zero = 'the {} is a number above zero: not "{}"'
        grouped = 'the {} is a plain number without thousands separators, e.g. 1000000: not "{}"'
        either = (
            'the {} is a plain number without thousands separators: "1500", or "1.500" if the'
            ' comma is a decimal point; not "{}"'
        )
        for qty, price, field, typed, said in (
            ("1,5", "187.30", "quantity", "1,5", words),
            ("1", "-187", "price", "-187", signed),
            ("+2", "187.30", "quantity", "+2", signed),
            ("1e3", "187.30", "quantity", "1e3", words),
            ("1", "-1e3", "price", "-1e3", words),
            # zero, a slip of the keyboard's, in the page's words too (session 35; main: sent,
            # `order refused: BAD_PARAM (1003): qty must be positive, not zero: '0' - at ...`)
            ("0", "187.30", "quantity", "0", zero),
            ("1", "0.00", "price", "0.00", zero),
            # thousands grouped: not told "a point, e.g. 1.5" ("1.000" is 1; session 35)
            ("1,000,000", "187.30", "quantity", "1,000,000", grouped),
            ("1", "1,500", "price", "1,500", either),
            ("0,125", "187.30", "quantity", "0,125", words),
        ):
            await browser.place("buy", "limit", qty=qty, price=price)
            await expect(result).to_have_text(said.format(field, typed))
        # a figure longer than the venue reads (48 characters, protocol §2.3), a paste gone
        # wrong, is said as such, not echoed whole (session 35; main sent it: `BAD_PARAM
        # (1003): Expected `str` of length <= 48 - at `params.qty``, and echoed a long
        # unreadable one whole on the line)
        long = "the {} is too long for a number: {} characters, at most 48"
        for qty, price, field, length in (
            ("1" * 49, "187.30", "quantity", 49),
            ("1", "9" * 60, "price", 60),
            ("x" * 5000, "187.30", "quantity", 5000),
        ):
            await browser.place("buy", "limit", qty=qty, price=price)
            await expect(result).to_have_text(long.format(field, length))
            input_id = "#order-qty" if field == "quantity" else "#order-price"
            await expect(page.locator(input_id)).to_have_attribute("aria-invalid", "true")
        # a direction control pasted in a figure reorders the digits shown ("\u202e51" shows
        # 15): named and not sent, nor stripped, which would send what the trader did not see
        # (session 35's review: stripped with the other invisible characters, 51 was sent)
        turned = "the {} holds an invisible direction character (U+{}), which reorders the"
        turned += " digits shown: type it again without it"
        for qty, price, field, code in (
            ("1", "\u202e51", "price", "202E"),
            ("1\u200f.5", "187.30", "quantity", "200F"),
            ("\u20662\u2069", "187.30", "quantity", "2066"),
        ):
            await browser.place("buy", "limit", qty=qty, price=price)
            await expect(result).to_have_text(turned.format(field, code))
        # another invisible character the page does not take out (an invisible separator,
        # U+2063) is named too (session 36; main echoed it, unseen: `not "15"`)
        await browser.place("buy", "limit", qty="1\u20635", price="187.30")
        await expect(result).to_have_text(
            "the quantity holds an invisible character (U+2063): type it again without it"
        )
        assert sum("order.place" in frame for frame in browser.frames_sent) == placed
        await expect(page.locator("#open-orders tbody tr")).to_have_count(0)
        await expect(page.locator("#fills tbody tr")).to_have_count(0)

        # An IOC that fills 1 of 3 ends `canceled` (its rest): the line says what filled. Its
        # figures pasted with invisible characters (a zero-width space, a word joiner, as a
        # web page or a sheet gives them) are read as seen (session 35; main refused them: `the
        # quantity is a plain decimal number with a point, e.g. 1.5: not "3"`, the 3 looking
        # whole)
        await browser.place("buy", "ioc", qty="3\u200b", price="\u2060187.30")
        await expect(result).to_contain_text("canceled")
        sent = [json.loads(frame) for frame in browser.frames_sent if "order.place" in frame]
        assert (sent[-1]["params"]["price"], sent[-1]["params"]["qty"]) == ("187.30", "3")
        # the average price to the tick's decimals (avg_px carries 4 more): main 187.300000
        filled = "filled 1.000000 of 3.000000, average price 187.30"
        await expect(result).to_have_text(re.compile(f"{re.escape(filled)}$"))
        await expect(page.locator("#fills tbody tr")).to_have_count(1)

    assert run_page(tmp_path, scenario) == []


def test_an_order_expired_by_self_trade_prevention_says_so(tmp_path: Path) -> None:
    """An IOC buy against the trader's own post-only sell at its price expired by
    self-trade prevention, and the line said only `expired (...): nothing filled` beside
    the ask it could have bought on the ladder."""

    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        await browser.log_on("taker")
        await expect(page.locator("#account")).to_have_text("3")
        result = page.locator("#order-result")
        await browser.place("sell", "post_only", qty="1", price="187.30")
        await expect(result).to_contain_text(" new (")
        await browser.place("buy", "ioc", qty="1", price="187.30")
        await expect(result).to_have_text(
            re.compile(
                r"order \d+ expired \(web-[0-9a-f]+\): nothing filled, expired by"
                " self-trade prevention: it would have traded with your own order$"
            )
        )
        await expect(page.locator("#fills tbody tr")).to_have_count(0)
        # ahead of its own sell, another's: what filled, then why the rest expired
        await resting_sell(venue, "1", "187.20")
        await browser.place("buy", "ioc", qty="2", price="187.30")
        await expect(result).to_have_text(
            re.compile(
                r"filled 1.000000 of 2.000000, average price 187.20; the rest expired by"
                " self-trade prevention: it would have traded with your own order$"
            )
        )

    assert run_page(tmp_path, scenario) == []


def test_a_bad_secret_shows_a_clear_logon_error_and_the_right_one_logs_on_and_out(
    tmp_path: Path,
) -> None:
    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        # a field left empty is named, and takes the focus (session 35; main: `enter an API
        # key and its secret` whichever was missing, the focus left on Log on)
        await page.fill("#api-key", KEYS["taker"][0])
        await page.press("#api-key", "Enter")
        await expect(page.locator("#logon-error")).to_have_text("enter the API key's secret")
        await expect(page.locator("#api-secret")).to_be_focused()
        await page.fill("#api-key", "")
        await page.fill("#api-secret", "any")
        await page.press("#api-secret", "Enter")
        await expect(page.locator("#logon-error")).to_have_text("enter an API key")
        await expect(page.locator("#api-key")).to_be_focused()
        await browser.log_on("taker", secret="not-the-secret")
        # in the form's words (was the wire's: `... api_key unknown or sig does not match
        # the logon payload`, which a trader who typed a secret never saw)
        await expect(page.locator("#logon-error")).to_have_text(
            "logon failed: the API key is unknown or the secret is wrong (BAD_SIGNATURE 2001)"
        )
        await expect(page.locator("#place-button")).to_be_disabled()
        await expect(page.locator("#session")).to_be_hidden()
        # the keyboard's focus stays on Log on, to try again (session 35; main disabled the
        # button while it tried, which dropped the focus to the page's start)
        await expect(page.locator("#logon-button")).to_be_focused()
        # the right secret with the spaces a copy from `venue serve`'s columns brings along:
        # the refusal says so (before session 30, the same words as for a wrong secret)
        await browser.log_on("taker", secret=KEYS["taker"][1] + "  ")
        await expect(page.locator("#logon-error")).to_have_text(
            "logon failed: the API key is unknown or the secret is wrong (BAD_SIGNATURE 2001);"
            " the secret typed ends with a space, and is signed as typed"
        )
        await expect(page.locator("#session")).to_be_hidden()
        # pasted from `venue admin issue-key`'s JSON, quotes and comma: said (before, only the
        # wrong-secret words)
        await browser.log_on("taker", secret=f'"{KEYS["taker"][1]}",')
        await expect(page.locator("#logon-error")).to_have_text(
            "logon failed: the API key is unknown or the secret is wrong (BAD_SIGNATURE 2001);"
            " the secret typed is in quotes, which are not part of it: type it without them"
        )

        # with an invisible character pasted along, which the secret is signed with: said
        # (session 35; main: the wrong-secret words alone, the secret looking right)
        await browser.log_on("taker", secret=KEYS["taker"][1] + "\u200b")
        await expect(page.locator("#logon-error")).to_have_text(
            "logon failed: the API key is unknown or the secret is wrong (BAD_SIGNATURE 2001);"
            " the secret typed holds an invisible character (U+200B), and is signed as typed"
        )
        # a key longer than any (64 characters, protocol §4.1), a paste of something else: said
        # in the form's words (session 35; main: `BAD_PARAM (1003): Expected `str` of length
        # <= 64 - at `params.api_key``)
        await page.fill("#api-key", "k" * 65)
        await page.click("#logon-button")
        await expect(page.locator("#logon-error")).to_have_text(
            "logon failed: the API key typed has 65 characters, and a key has at most 64"
            " (BAD_PARAM 1003)"
        )

        # a key pasted with a direction control (which reorders what is shown) or another
        # invisible character the page does not strip: named, the key's field focused, nothing
        # sent (session 36; main sent it and said `the API key is unknown or the secret is
        # wrong`, over a key that looked right)
        logons = lambda: sum("session.logon" in frame for frame in browser.frames_sent)  # noqa: E731
        before = logons()
        await page.fill("#api-secret", KEYS["taker"][1])
        for hidden, code in (("\u202e", "202E"), ("\u200e", "200E"), ("\u2066", "2066")):
            await page.fill("#api-key", KEYS["taker"][0] + hidden)
            await page.click("#logon-button")
            await expect(page.locator("#logon-error")).to_have_text(
                f"the API key typed holds an invisible direction character (U+{code}), which"
                " reorders what is shown: type it again without it"
            )
            await expect(page.locator("#api-key")).to_be_focused()
        await page.fill("#api-key", "\u2063" + KEYS["taker"][0])  # an invisible separator
        await page.click("#logon-button")
        await expect(page.locator("#logon-error")).to_have_text(
            "the API key typed holds an invisible character (U+2063): type it again without it"
        )
        assert logons() == before

        # the right secret, the key pasted with a zero-width space (invisible: read as seen,
        # since session 35; main: `the API key is unknown`), then a clean logout
        await page.fill("#api-key", "\u200b" + KEYS["taker"][0])
        await page.fill("#api-secret", KEYS["taker"][1])
        before = logons()
        await page.dblclick("#logon-button")  # one logon: the button waits (aria-disabled)
        await expect(page.locator("#account")).to_have_text("3")
        await expect(page.locator("#logon-error")).to_have_text("")
        await expect(page.locator("#logout-button")).to_be_focused()  # Log on's place (main: none)
        assert logons() == before + 1
        await page.click("#logout-button")
        await expect(page.locator("#logon-form")).to_be_visible()
        await expect(page.locator("#place-button")).to_be_disabled()
        await expect(page.locator("#balances tbody tr")).to_have_count(0)
        await expect(page.locator("#logon-error")).to_have_text("")

    assert run_page(tmp_path, scenario) == []


def test_the_logon_is_signed_in_the_page_and_the_secret_never_sent(tmp_path: Path) -> None:
    async def scenario(venue: Venue, browser: Browser) -> None:
        await browser.log_on("beta")
        await expect(browser.page.locator("#account")).to_have_text("2")
        api_key, secret = KEYS["beta"]
        assert not any(secret in frame for frame in browser.frames_sent)
        [logon] = [json.loads(f) for f in browser.frames_sent if "session.logon" in f]
        params = logon["params"]
        signed = f"logon\n{api_key}\n{params['ts']}\n{params['nonce']}\n{params['recv_window']}"
        expected = hmac.new(secret.encode(), signed.encode(), hashlib.sha256).hexdigest()
        assert params["sig"] == expected
        await expect(browser.page.locator("#api-secret")).to_have_value("")

    assert run_page(tmp_path, scenario) == []


def test_the_page_loads_without_console_errors_and_shows_bills_per_100_with_yield(
    tmp_path: Path,
) -> None:
    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        await expect(page.locator("#instruments tbody tr")).to_have_count(6)
        await expect(page.locator("#selected-symbol")).to_have_text(BILL)
        info = page.locator("#instrument-info")
        await expect(info).to_contain_text("price per 100 of face 98.")
        await expect(info).to_contain_text("investment yield")
        await expect(page.locator("#price-label")).to_have_text("price per 100 of face")
        bill_yield = page.locator(f"#instruments tr[data-symbol='{BILL}'] td.yield")
        await expect(bill_yield).to_have_text(re.compile(r"^\d+\.\d{3}%$"))

    assert run_page(tmp_path, scenario, path=f"/#{BILL}") == []


def test_the_fills_before_logon_are_shown_newest_first_from_one_request(tmp_path: Path) -> None:
    """At logon the page asks for the account's last 100 fills, newest first, in one request
    (`newest_first`, session 29); before, it walked `fills` pages from the oldest (up to ten
    of 1,000) and kept the last 100."""

    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        seller = await resting_sell(venue, "1", "187.30")
        await seller.place(SYMBOL, "sell", qty="1", price="187.40")
        await seller.place(SYMBOL, "sell", qty="1", price="187.50")
        taker = await venue.client("taker")
        for price in ("187.30", "187.40", "187.50"):  # three fills, the last at 187.50
            await taker.place(SYMBOL, "buy", qty="1", price=price, tif="ioc")
        await browser.log_on("taker")
        prices = page.locator("#fills tbody tr td.price")
        await expect(prices).to_have_text(["187.50", "187.40", "187.30"])
        asked = [frame for frame in browser.frames_sent if '"fills"' in frame]
        assert len(asked) == 1 and '"newest_first":true' in asked[0], asked
        # the closed orders, newest first, from one `orders.history` read with a limit
        history = page.locator("#history tbody tr td.price")
        await expect(history).to_have_text(["187.50", "187.40", "187.30"])
        asked = [frame for frame in browser.frames_sent if '"orders.history"' in frame]
        assert len(asked) == 1 and '"limit":50' in asked[0], asked
        # the page's clock two days on: these fills, closed orders and trades are of another
        # day, and say which (session 35; main: the time of day alone, `18:01:02`, as if today)
        dated = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
        for table in ("fills", "history", "tape"):
            times = page.locator(f"#{table} tbody tr td:first-child")
            await expect(times).to_have_count(3)
            for time in await times.all_text_contents():
                assert dated.match(time), (table, time)
        # and still nothing scrolls sideways, on a desktop or a small phone
        overflow = "(panel) => panel.scrollWidth - panel.clientWidth"
        for width in (1400, 1100, 360):
            await page.set_viewport_size({"width": width, "height": 800})
            for panel in await page.locator("main > section").all():
                assert await panel.evaluate(overflow) <= 0, (width, await panel.get_attribute("id"))

    assert run_page(tmp_path, scenario, init_script=DAYS_LATER) == []


# The page's clock (`Date.now`, which the page reads for today's date) two days on.
DAYS_LATER = "(() => { const now = Date.now; Date.now = () => now() + 2 * 86400000; })()"
DAY_MS = 86_400_000


def test_a_row_of_today_shows_its_date_once_the_page_passes_midnight_utc(tmp_path: Path) -> None:
    """A fill, a closed order and a trade of today show their time alone; the page left open
    past midnight (UTC) shows their date, nothing new read (session 35's review: the choice was
    made only as a row was drawn, and a page open overnight showed yesterday's rows as today's).
    The page's clock (Playwright's) starts a minute before the next midnight and jumps it."""

    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        midnight_ms, times = await a_fill_shown_a_minute_before_midnight(venue, browser)
        read = [frame for frame in browser.frames_sent if '"fills"' in frame]
        left = midnight_ms - await page.evaluate("() => Date.now()")
        await jump_clock(browser, int(left) + 1000)
        for shown in times.values():
            await expect(shown).to_have_text([re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")])
        assert [frame for frame in browser.frames_sent if '"fills"' in frame] == read

    assert run_page(tmp_path, scenario) == []


TIMED = ("fills", "history", "tape")  # the tables whose rows show a time (UTC)


def test_a_market_buy_of_a_bill_trades_face_value_at_a_price_per_100(tmp_path: Path) -> None:
    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        seller = await venue.client("alpha")
        await seller.place(BILL, "sell", qty="1000", price="98.700000")
        await expect(ladder_row(page, "ask", "98.700000")).to_have_text("1000")
        await browser.log_on("taker")
        await expect(page.locator("#account")).to_have_text("3")
        # a market order has no price: one typed is put aside, not shown greyed as if it capped
        # the order, and comes back with a priced type; a level's price chosen makes it a
        # Limit IOC, which trades now as a market order does, at that price or better (session
        # 35; main kept the market order, the price shown and never sent)
        price = page.locator("#order-price")
        await price.fill("98.500000")
        await page.select_option("#order-kind", "market")
        await expect(price).to_have_value("")
        await page.select_option("#order-kind", "post_only")
        await expect(price).to_have_value("98.500000")
        await page.select_option("#order-kind", "market")
        await page.get_by_role("button", name="ask 98.700000 /100: use this price").click()
        await expect(page.locator("#order-kind")).to_have_value("ioc")
        # said where a screen reader hears it (session 35's review: switched silently)
        switched = "Market takes no price: now Limit IOC at 98.700000 /100"
        await expect(page.locator("#order-result[role=status]")).to_have_text(switched)
        await expect(price).to_have_value("98.700000")
        await expect(price).to_be_enabled()

        await browser.place("buy", "market", qty="300")

        # per 100 of face, to the tick's decimals: main said "average price 98.7000000000"
        average = "filled 300 of 300, average price 98.700000 per 100 of face"
        await expect(page.locator("#order-result")).to_have_text(re.compile(f"{average}$"))
        bills = page.locator(f"#balances tr[data-asset='{BILL.removesuffix('-USD')}'] td.total")
        await expect(bills).to_have_text("2000300")
        cost = Decimal("98.700000") * 300 / 100  # per 100 of face
        fee = cost / 10_000  # the demo bills' taker fee, 1 bp
        usd = page.locator("#balances tr[data-asset=USD] td.total")
        await expect(usd).to_have_text(f"{Decimal(5_000_000) - cost - fee:.6f}")
        row = page.locator(f"#instruments tr[data-symbol='{BILL}']")
        await expect(row.locator("td.last")).to_have_text("98.700000 /100")
        # among the fills of every symbol, a bill's price says it is per 100 (main: 98.700000)
        await expect(page.locator("#fills tbody tr td.price").first).to_have_text("98.700000 /100")
        info = page.locator("#instrument-info")
        await expect(info).to_contain_text("price per 100 of face 98.700000")
        await expect(ladder_row(page, "ask", "98.700000")).to_have_text("700")
        # the ladder and the tape say a bill's price per 100 too (before: a bare 98.700000)
        ask = page.locator("#ladder-asks tr[data-price='98.700000'] td.price")
        await expect(ask).to_have_text("98.700000 /100")
        await expect(page.locator("#tape tbody tr td.price").first).to_have_text("98.700000 /100")
        # and the chart's text alternative (its bar to the tick's decimals)
        read = page.get_by_role("table", name=re.compile(rf"^{BILL}: the last 1 of 1 .*face$"))
        await expect(read.locator("td").last).to_have_text("98.700000")
        # every panel shows its figures whole at 1400 px (the bill's last price per 100 and
        # yield, the reserves), none scrolled off to the right
        overflow = "(panel) => panel.scrollWidth - panel.clientWidth"
        for panel in await page.locator("main > section").all():
            assert await panel.evaluate(overflow) <= 0, await panel.get_attribute("id")

        # one tick down (0.000001 of ~98.7, -0.000001%) reads as REST's rounded 0.00, not a
        # red "-0.00%" (session 25's finding: the page rounded after taking the sign)
        await page.reload()  # the REST 24 h open: 98.700000
        change = row.locator("td.change")
        await expect(change).to_have_text("+0.00%")
        await seller.place(BILL, "sell", qty="100", price="98.699999")
        buyer = await venue.client("beta")
        await buyer.place(BILL, "buy", qty="100", price="98.699999", tif="ioc")
        await expect(row.locator("td.last")).to_have_text("98.699999 /100")
        await expect(change).to_have_text("+0.00%")  # main: -0.00%
        await expect(change).not_to_have_class(re.compile("down"))
        # at a small phone's 360 px the instruments list and the book column show whole too (the
        # bill's yield, the reserves), and at 1200 px (two columns from 1001 to 1399 px)
        for width in (360, 1200):
            await page.set_viewport_size({"width": width, "height": 844})
            for name in ("instruments", "book"):
                panel = page.locator(f"#{name}-panel")
                assert await panel.evaluate(overflow) <= 0, (width, name)

    assert run_page(tmp_path, scenario, path=f"/#{BILL}") == []


def test_after_a_restart_the_page_reconnects_and_shows_the_recovered_book(tmp_path: Path) -> None:
    asked: list[str] = []  # the page's HTTP requests, from the venue's restart on

    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        page.on("request", lambda request: asked.append(request.url))
        await page.clock.install()  # the page's backoff is skipped, not waited (`skip_countdown`)
        await resting_sell(venue, "10", "187.30")
        await expect(ladder_row(page, "ask", "187.30")).to_have_text("10.000000")
        await browser.log_on("taker")
        await expect(page.locator("#account")).to_have_text("3")
        await browser.place("buy", "limit", "1", "186.00")
        cancel = page.locator("#open-orders button.cancel")
        await expect(cancel).to_be_enabled()
        for client in venue.clients:
            await client.close()
        venue.clients.clear()

        main = page.locator("main")
        await expect(main).not_to_have_class(re.compile("stale"))
        await page.evaluate(RECORD_MARKET_STATUS)
        place = page.locator("#place-button")
        await place.focus()  # a keyboard trader's, on it as the venue goes
        await venue.server.stop()
        try:
            await expect(page.locator("#market-status")).to_have_text("market data: reconnecting…")
            # each failed reconnect leaves the live pill as it is: a screen reader hears
            # "reconnecting…" once, not at each try (before session 31: each try set it anew)
            tried = browser.market_sockets
            for _ in range(100):  # bounded: 5 s; the page tries after 0.25 s, 0.5 s, 1 s
                if browser.market_sockets >= tried + 2:
                    break
                await asyncio.sleep(0.05)
            assert browser.market_sockets >= tried + 2
            said = await page.evaluate("() => window.marketSaid")
            assert said == ["market data: reconnecting…"], said
            # the account side logs on again by itself, and says when (before session 30 it
            # stayed `disconnected` until the secret was typed again)
            await expect(page.locator("#logon-error")).to_have_text(
                re.compile(
                    r"^disconnected \(1001 the venue is stopping or restarting\).*: reconnecting"
                    r" in \d+ s$"
                )
            )
            # Place order and the open order's Cancel wait: aria-disabled, not `disabled`
            # (to_be_disabled passes for either), so the keyboard's focus stays on them
            for button in (place, cancel):
                await expect(button).to_have_attribute("aria-disabled", "true")
                await expect(button).not_to_have_attribute("disabled", re.compile(".*"))
            # the venue's push as it stopped (protocol §4.5), said over the order's line
            await expect(page.locator("#order-result")).to_have_text("venue: the venue is stopping")
            # a screen reader hears the drop once, not each second of the countdown
            said = page.locator("#logon-status[aria-live='polite']")
            await expect(said).to_have_text(re.compile(r"^disconnected \(1001 .*restarting\)"))
            countdown = page.locator("#relogon-countdown[aria-hidden='true']")
            await expect(countdown).to_have_text(re.compile(r"^: reconnecting in \d+ s$"))
            await expect(page.locator("#logon-alert[role='alert']")).to_have_text("")
            await expect(main).to_have_class(re.compile("stale"))  # the book shown is the last
            await expect(page.locator("#orders-panel")).to_have_class(re.compile("stale"))
        finally:  # started again whatever happened: the fixture stops a running venue
            config = venue_config.load(SAMPLE_CONFIG)
            venue.server = VenueServer(config, tmp_path / "data")
            asked.clear()
            await venue.server.start("127.0.0.1", venue.port)
        await skip_countdown(browser, may_log_on=True)

        await expect(page.locator("#market-status")).to_have_text("market data: live")
        await expect(main).not_to_have_class(re.compile("stale"))
        await expect(ladder_row(page, "ask", "187.30")).to_have_text("10.000000")
        # the 24 h change is asked again at once, not at the next 30 s poll (main: it was
        # not, and a `24 h change unavailable` said while the venue was down stayed meanwhile)
        for _ in range(100):  # bounded: within 5 s of "live"
            if any("/api/v1/ticker" in url for url in asked):
                break
            await asyncio.sleep(0.05)
        assert any("/api/v1/ticker" in url for url in asked), asked
        # logged on again with the key the page holds, nothing typed (1, 2, 4 s backoff)
        await expect(page.locator("#logon-error")).to_have_text(re.compile(LOGGED_ON_AGAIN))
        await expect(page.locator("#place-button")).to_be_enabled()
        await expect(page.locator("#orders-panel")).not_to_have_class(re.compile("stale"))
        await expect(page.locator("#account")).to_have_text("3")
        # the stop said no more once back (session 35; main: `venue: the venue is stopping`
        # stayed under the form, logged on again and trading, until the next order)
        await expect(page.locator("#order-result")).to_have_text("logged on as account 3")
        # the keyboard's focus kept on Place order through it all (session 35; main disabled
        # it while away, which dropped the focus to the page's start)
        await expect(place).to_be_focused()

        # the key revoked, the connection lost: the try again is refused for the key, which
        # no later try would mend: the page says so and asks for the secret
        store = venue.server.auth.store
        venue.server.auth.store = KeyStore()
        session = next(s for s in venue.server.sessions.values() if s.account == 3)
        session.websocket.transport.abort()
        await skip_countdown(browser)
        await expect(page.locator("#logon-error")).to_have_text(
            "logged off: the API key is unknown or the secret is wrong (BAD_SIGNATURE 2001);"
            " enter the secret to log on again"
        )
        await expect(page.locator("#logon-form")).to_be_visible()
        await expect(page.locator("#balances tbody tr")).to_have_count(0)
        venue.server.auth.store = store
        await browser.log_on("taker")  # the secret is typed again: the page kept no copy
        await expect(page.locator("#account")).to_have_text("3")
        await expect(page.locator("#session")).to_be_visible()

        # a refusal for the moment is tried again: the account at its connection cap (the
        # venue may hold the page's dropped connection a while; here a bot took its place)
        session = next(s for s in venue.server.sessions.values() if s.account == 3)
        bots = [await venue.client("taker") for _ in range(15)]
        await cancel.focus()  # the keyboard's, on the open order's Cancel as the connection goes
        session.websocket.transport.abort()
        bots.append(await venue.client("taker"))
        await expect(page.locator("#logon-status")).to_have_text(
            re.compile(
                r"; try 1 failed \(PERMISSION_DENIED .*at most 16 connections per account\)$"
            )
        )
        await bots.pop().close()
        await skip_countdown(browser)
        await expect(page.locator("#logon-error")).to_have_text(
            "logged on again: nothing changed meanwhile"
        )
        await expect(page.locator("#balances tbody tr")).not_to_have_count(0)
        await expect(page.locator("#logon-form")).to_be_hidden()
        # kept there, the row waiting meanwhile (session 35; main disabled it: the focus fell to
        # the page's start)
        await expect(cancel).to_be_focused()

    errors = run_page(tmp_path, scenario)
    # while the venue is down, the browser may log the page's refused reconnects
    assert [e for e in errors if "WebSocket connection to" not in e] == []


# Each text the market-data pill (a live region) is given from now on, in `window.marketSaid`
RECORD_MARKET_STATUS = """() => {
  window.marketSaid = [];
  const pill = document.getElementById("market-status");
  const seen = () => window.marketSaid.push(pill.textContent);
  new MutationObserver(seen).observe(pill, { childList: true, characterData: true });
}"""


# Each text the logon line's polite part is given from now on, in `window.statusSaid`
RECORD_LOGON_STATUS = """() => {
  window.statusSaid = [];
  const status = document.getElementById("logon-status");
  const seen = () => window.statusSaid.push(status.textContent);
  new MutationObserver(seen).observe(status, { childList: true, characterData: true });
}"""


# The next `window.breaks` /ws/trade resubscriptions sent with a bad since_seq: BAD_PARAM.
BREAK_RESUBSCRIPTIONS = """(() => {
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    if (window.breaks > 0 && String(data).includes('"since_seq"')) {
      window.breaks--;
      data = String(data).replace(/"since_seq":\\d+/, '"since_seq":"bad"');
    }
    return send.call(this, data);
  };
})()"""


def test_a_try_again_refused_after_its_logon_is_said_and_tried_again(tmp_path: Path) -> None:
    # Session 30's re-review: a try again that logged on but whose resubscription (or fills,
    # or history) was then refused (rate limited by the bucket the account's bots share, say)
    # logged the page off in silence: the form back, no alert, the status stuck on
    # "reconnecting…". Now it says what the try met and tries again.
    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        await page.clock.install()  # the page's backoff is skipped, not waited (`skip_countdown`)
        clients = set(venue.server.sessions)
        await browser.log_on("taker")
        await expect(page.locator("#account")).to_have_text("3")
        await browser.records_read()
        await page.evaluate("() => { window.breaks = 2; }")
        for session in page_sessions(venue, clients):
            session.websocket.transport.abort()
        waited = [await skip_countdown(browser)]
        for attempt in (1, 2):
            await expect(page.locator("#logon-status")).to_have_text(
                re.compile(
                    rf"^disconnected \(1006.*\); try {attempt} failed \(BAD_PARAM .*since_seq"
                )
            )
            await expect(page.locator("#logon-alert")).to_have_text("")
            await expect(page.locator("#logon-form")).to_be_hidden()
            await expect(page.locator("#account")).to_have_text("3")
            await expect(page.locator("#orders-panel")).to_have_class(re.compile("stale"))
            await expect(page.locator("#place-button")).to_be_disabled()
            waited.append(await skip_countdown(browser))
        assert waited == [1, 2, 4]  # the backoff's delays (the other tests skip what shows)
        await expect(page.locator("#logon-error")).to_have_text(
            "logged on again: nothing changed meanwhile"
        )
        await expect(page.locator("#orders-panel")).not_to_have_class(re.compile("stale"))
        await expect(page.locator("#place-button")).to_be_enabled()

    errors = run_page(tmp_path, scenario, init_script=BREAK_RESUBSCRIPTIONS)
    assert errors == []


def test_tries_the_venue_keeps_refusing_stop_and_log_on_again_tries_once_more(
    tmp_path: Path,
) -> None:
    # Before session 31, a refusal that never healed (other than the key's) was tried every
    # 30 s for good. Now refusals (none known to heal) lasting 60 s stop the tries: the line
    # says so and offers "Log on again", which the keyboard reaches and presses: refused once
    # more, the page stops again at once, the line not reading out the old drop again; taken,
    # it says so once and the focus moves to Log out beside it.
    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        await page.clock.install()  # the page's backoff is skipped, not waited (`skip_countdown`)
        clients = set(venue.server.sessions)
        await browser.log_on("taker")
        await expect(page.locator("#account")).to_have_text("3")
        await browser.records_read()
        await page.evaluate("() => { window.breaks = 7; }")
        for session in page_sessions(venue, clients):
            session.websocket.transport.abort()
        waited = [await skip_countdown(browser) for _ in range(6)]
        # tries 1 to 6, each refused: the sixth 60 s after the first (before the review's fix,
        # five refusals, 31 s of backoff, stopped the page before the venue let go of a dead
        # connection: 20 to 40 s after its drop)
        assert waited[:5] == [1, 2, 4, 8, 16] and 20 <= (waited[5] or 0) <= 30, waited
        said = page.locator("#logon-status")
        await expect(said).to_have_text(
            re.compile(
                r"^disconnected \(1006.*\); try 6 failed \(BAD_PARAM .*since_seq.*\); the venue"
                r" refused 6 tries in a row over 6\d s: press Log on again to try once more$"
            )
        )
        again = page.get_by_role("button", name="Log on again")
        await expect(again).to_be_visible()
        await expect(page.locator("#relogon-countdown")).to_have_text("")
        await expect(page.locator("#orders-panel")).to_have_class(re.compile("stale"))
        tries = sum('"since_seq"' in frame for frame in browser.frames_sent)
        # past the 30 s the seventh try would wait: none now
        await jump_clock(browser, 31_000)
        await expect(page.locator("#market-status")).to_have_text("market data: live")
        await browser.heard()
        assert sum('"since_seq"' in frame for frame in browser.frames_sent) == tries
        await expect(page.locator("#relogon-countdown")).to_have_text("")

        await page.focus("#logout-button")
        await page.keyboard.press("Shift+Tab")  # Log on again comes just before Log out
        await expect(again).to_be_focused()
        await page.evaluate(RECORD_LOGON_STATUS)
        await page.keyboard.press("Enter")  # the seventh refusal: stopped again at once
        await expect(said).to_have_text(
            re.compile(
                r"; try 1 failed \(BAD_PARAM .*\); the venue refused 7 tries in a row .*more$"
            )
        )
        # said once, the new refusal: the line kept its text while the try was under way
        # (before the review's fix, the old drop was read out again, then "5 tries" for 6)
        assert len(await page.evaluate("() => window.statusSaid")) == 1
        await expect(again).to_be_focused()
        await page.keyboard.press("Enter")
        await expect(said).to_have_text("logged on again: nothing changed meanwhile")
        await expect(said).to_have_class("ok")  # good news, not in the line's error colour
        await expect(again).to_be_hidden()
        await expect(page.locator("#logout-button")).to_be_focused()
        await expect(page.locator("#orders-panel")).not_to_have_class(re.compile("stale"))
        await expect(page.locator("#place-button")).to_be_enabled()

    errors = run_page(tmp_path, scenario, init_script=BREAK_RESUBSCRIPTIONS)
    assert errors == []


def fill_logon_nonces(venue: Venue, who: str, window_ms: int) -> list[str]:
    """The key's remembered logon nonces filled to the venue's cap (1,024 per key, each
    `window_ms`), with real logons of the venue's own check: the key's next logon is refused 429
    `RATE_LIMITED` until they are forgotten (the nonces it remembered)."""
    api_key, secret = KEYS[who]
    auth = venue.server.auth
    nonces = []
    while auth.nonces_remembered(api_key) < NONCES_PER_KEY_MAX:
        nonce, ts = f"filler-{len(nonces)}", now_us()
        sig = sign_logon(secret, api_key, ts, nonce, window_ms)
        auth.logon(api_key, ts, nonce, window_ms, sig, ts)
        nonces.append(nonce)
    return nonces


async def bot_of(venue: Venue, key: dict[str, Any]) -> VenueClient:
    """A connection logged on with an issued key (`admin.issue_key`'s answer)."""
    bot = await venue.client()
    await bot.logon(key["api_key"], key["secret"])
    return bot


async def skip_unwatched_countdown(page: Page) -> None:
    """The page's wait before its next try, skipped in one jump of its clock: only while no
    socket of it is open (the venue away), which no silence watchdog could see."""
    shown = ""
    for _ in range(200):  # bounded: 10 s
        shown = await page.locator("#relogon-countdown").text_content() or ""
        if re.match(r"^: reconnecting in \d+ s$", shown):
            break
        await asyncio.sleep(0.05)
    await page.clock.fast_forward(int(re.findall(r"\d+", shown)[0]) * 1000)


def test_refusals_known_to_heal_and_a_venue_away_never_stop_the_tries(tmp_path: Path) -> None:
    # The review's scenario, by the page's clock: after a drop, a rate limit (the key's logon
    # nonces at their cap) whose retry_after_ms is waited, then the account at its connection
    # cap (as while the venue holds a silently dead connection of the page's, 20 to 40 s) for
    # four more tries, some 40 s: the page never stops, and logs on once a seat is free; then
    # the venue away for seven tries, tried on. Before the review's fix: stopped for good at
    # the fifth refusal, and a rate limit tried again after the backoff's 2 s. The 70 s of the
    # page's clock while the market data is open are skipped in steps, each after a heartbeat
    # asked of the venue (`jump_clock`); the bots log on with a key of their own, so that only
    # the page's logon (its nonce forgotten) came before the fillers: 20 s before session 32,
    # which waited 5 s for the bots' nonces to expire and a quiet second at each step.
    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        await page.clock.install()  # the page's backoff is skipped, not waited (`skip_countdown`)
        clients = set(venue.server.sessions)
        await browser.log_on("taker")
        await expect(page.locator("#account")).to_have_text("3")
        await browser.records_read()
        said = page.locator("#logon-status")
        countdown = page.locator("#relogon-countdown")
        again = page.get_by_role("button", name="Log on again")
        pages = page_sessions(venue, clients)
        admin = await venue.client("admin")
        bot_key = await admin.request("admin.issue_key", {"account": 3, "scopes": ["trade"]})
        bots = [await bot_of(venue, bot_key) for _ in range(15)]
        for frame in browser.frames_sent:  # the fillers' the earliest nonces of the page's key
            if '"session.logon"' in frame:
                venue.server.auth.forget(KEYS["taker"][0], json.loads(frame)["params"]["nonce"])
        fillers = fill_logon_nonces(venue, "taker", 10_000)
        for session in pages:
            session.websocket.transport.abort()
        assert await skip_countdown(browser) == 1
        key_nonces_spent = re.compile(r"; try 1 failed \(RATE_LIMITED .*replay window.*\)$")
        await expect(said).to_have_text(key_nonces_spent)
        shown = await countdown.text_content() or ""
        assert 5 <= int(re.findall(r"in (\d+) s$", shown)[0]) <= 10, shown  # not the backoff's 2
        for nonce in fillers:
            venue.server.auth.forget(KEYS["taker"][0], nonce)
        bots.append(await bot_of(venue, bot_key))  # the account's last seat taken
        waited = []
        for attempt in range(2, 6):
            waited.append(await skip_countdown(browser))
            await expect(said).to_have_text(
                re.compile(rf"; try {attempt} failed \(PERMISSION_DENIED .* per account\)$")
            )
            await expect(again).to_be_hidden()
        # five refusals in a row over some 40 s (the fifth stopped the page before the fix)
        assert sum(seconds or 0 for seconds in waited) > 30, waited
        await bots.pop().close()  # a seat free: the sixth try logs on
        await skip_countdown(browser)
        await expect(said).to_have_text("logged on again: nothing changed meanwhile")

        await venue.server.stop()
        try:
            # a venue away: tried on, however many tries (numbered on from the last drop's,
            # as the session between lived less than 30 s); no socket is open to see silence,
            # so the page's clock jumps each countdown at once
            for attempt in range(7, 14):
                await skip_unwatched_countdown(page)
                await expect(said).to_have_text(
                    re.compile(rf"; try {attempt} failed \(cannot connect")
                )
                await expect(again).to_be_hidden()
        finally:  # started again whatever happened: the fixture stops a running venue
            venue.server = VenueServer(venue_config.load(SAMPLE_CONFIG), tmp_path / "data")
            await venue.server.start("127.0.0.1", venue.port)
        await skip_unwatched_countdown(page)  # the market data's try comes then too
        await expect(said).to_have_text(re.compile(LOGGED_ON_AGAIN))

    errors = run_page(tmp_path, scenario)
    # while the venue is down, the browser logs the page's refused connections
    assert [e for e in errors if "WebSocket connection to" not in e] == []


def test_a_connect_never_answered_is_given_up_after_10_s_and_tried_again(tmp_path: Path) -> None:
    # The page gives up a websocket not open within 10 s (CONNECT_TIMEOUT_MS, venue.js): the
    # browser's own wait can take minutes. Here a listener accepts the page's try and never
    # answers its upgrade: the try fails after the page's 10 s (its clock skipped, not waited),
    # says so, and the next try follows on the backoff. Untested before session 31.
    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        relay = FreezingRelay(venue.port)
        try:
            await page.goto(f"http://127.0.0.1:{await relay.start()}/")
            await expect(page.locator("#market-status")).to_have_text("market data: live")
            await page.clock.install()
            # the clock stopped: the page's time moves only by the test's jumps
            await page.clock.pause_at(await page.evaluate("() => Date.now() + 1"))
            clients = set(venue.server.sessions)
            await browser.log_on("taker")
            await expect(page.locator("#account")).to_have_text("3")
            await browser.records_read()
            relay.hold_upgrades = True
            for session in page_sessions(venue, clients):
                session.websocket.transport.abort()
            await skip_countdown(browser)
            for _ in range(100):  # bounded: 5 s for the page's try to reach the listener
                if relay.held:
                    break
                await asyncio.sleep(0.05)
            assert len(relay.held) == 1
            said = page.locator("#logon-status")
            countdown = page.locator("#relogon-countdown")
            await jump_clock(browser, 9_999)
            await expect(countdown).to_have_text(": reconnecting…")  # not given up yet
            assert await said.text_content() == "disconnected (1006 the connection was lost)"
            await jump_clock(browser, 1)
            await expect(said).to_have_text(
                "disconnected (1006 the connection was lost); try 1 failed (cannot connect: no"
                " answer within 10 s)"
            )
            await expect(countdown).to_have_text(": reconnecting in 2 s")  # the backoff's next
            relay.hold_upgrades = False  # the next try is answered
            await skip_countdown(browser)
            await expect(said).to_have_text("logged on again: nothing changed meanwhile")
            assert len(relay.held) == 1  # the given-up try; the next one was answered
        finally:
            await relay.close()

    errors = run_page(tmp_path, scenario)
    # the page's closing of its unanswered try is logged by the browser as a failed connection
    assert [e for e in errors if "WebSocket connection to" not in e] == []


def test_the_rest_fed_parts_show_24h_change_candles_and_reserves(tmp_path: Path) -> None:
    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        await resting_sell(venue, "10", "187.30")
        buyer = await venue.client("beta")
        await buyer.place(SYMBOL, "buy", qty="1", price="187.30", tif="ioc")
        await page.reload()  # the history and the 24 h window are read at load
        await expect(page.locator("#candles")).to_have_attribute("data-bars", "1")
        await expect(page.locator("#candles")).to_have_attribute("data-last-close", "187.30")
        await expect(page.locator("#candles-note")).to_have_text("")
        # the chart's text alternative (session 32; before, the chart said nothing to a screen
        # reader): a table out of sight, named by its caption, the newest bar first
        minute = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d$")  # its date too
        read = page.get_by_role(
            "table", name=f"{SYMBOL}: the last 1 of 1 one-minute candles, newest first"
        )
        await expect(read.locator("td")).to_have_text([minute, *["187.30"] * 4])
        await expect(read).not_to_be_in_viewport()
        assert await axe_violations(page) == []
        change = page.locator(f"#instruments tr[data-symbol='{SYMBOL}'] td.change")
        await expect(change).to_have_text("+0.00%")
        reserves = page.locator("#reserves-table tr[data-asset=USD]")
        await expect(reserves.locator("td").last).to_have_text("covered")

        await resting_sell(venue, "5", "187.40")
        await buyer.place(SYMBOL, "buy", qty="10", price="187.40", tif="ioc")  # live, no reload
        await expect(page.locator("#tape tbody tr")).to_have_count(3)
        await expect(page.locator("#candles")).to_have_attribute("data-last-close", "187.40")
        await expect(change).to_have_text("+0.05%")  # the REST 24 h open, the live last
        # the bar as the channel changed it (a new minute's, or the same one's: alike here)
        read = page.get_by_role("table", name=re.compile(rf"^{SYMBOL}: the last (1 of 1|2 of 2) "))
        newest = read.locator("tbody tr").first.locator("td")
        await expect(newest).to_have_text([minute, "187.30", "187.40", "187.30", "187.40"])

    assert run_page(tmp_path, scenario) == []


def test_a_live_split_resubscribes_the_candles_and_keeps_the_24h_change_in_new_units(
    tmp_path: Path,
) -> None:
    # A split moves the candles stream's seq with no message (protocol §9.8): the page sees
    # the gap at the next heartbeat, subscribes again and shows the rescaled bars; the 24 h
    # change is asked of REST again, in the new units (not 135.00 -> 67.50, -50%). An
    # instrument listed meanwhile, which no channel announces (protocol §9.2), shows too: the
    # REST ticker asked again lists it.
    symbol = "NVDAx-USD"

    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        seller = await venue.client("alpha")
        await seller.place(symbol, "sell", qty="1", price="135.00")
        buyer = await venue.client("beta")
        await buyer.place(symbol, "buy", qty="1", price="135.00", tif="ioc")
        await page.reload()  # the history and the 24 h window are read at load
        candles = page.locator("#candles")
        await expect(candles).to_have_attribute("data-last-close", "135.00")
        row = page.locator(f"#instruments tr[data-symbol='{symbol}']")
        await expect(row.locator("td.change")).to_have_text("+0.00%")
        admin = await venue.client("admin")
        await admin.request("admin.list_asset", {"code": "AMDx", "scale": 6})
        listing = {"symbol": "AMDx-USD", "kind": "equity", "base": "AMDx", "quote": "USD"}
        await admin.request(
            "admin.list_instrument",
            listing
            | {"tick": "0.01", "step": "0.000001", "min_qty": "0.000001", "min_notional": "1"}
            | {"band_pct": "10", "reference_price": "160.00"},
        )

        await admin.request("admin.set_status", {"symbol": symbol, "status": "halted"})
        await admin.request("admin.split", {"symbol": symbol, "ratio": "2:1"})
        await admin.request("admin.set_status", {"symbol": symbol, "status": "open"})

        await expect(row.locator("td.last")).to_have_text("67.50")
        await expect(candles).to_have_attribute("data-last-close", "67.50")
        await expect(candles).to_have_attribute("data-bars", "1")
        await expect(candles).to_have_attribute("data-resyncs", "1")
        await expect(page.locator("#candles-table td").last).to_have_text("67.50")  # read so too
        await expect(row.locator("td.change")).to_have_text("+0.00%")
        await page.click("#instruments tr[data-symbol='AMDx-USD']")
        await expect(page.locator("#instrument-info")).to_contain_text("band 144.00 \u2013 176.00")

    assert run_page(tmp_path, scenario, path="/#NVDAx-USD") == []


def test_a_logon_frame_over_64_kib_shows_the_venues_error_at_once(tmp_path: Path) -> None:
    # The venue answers a frame over 65,536 bytes with MESSAGE_TOO_BIG and `id` null: the
    # page takes it as the answer to that frame's request, not waiting 10 s for a 4001 close.
    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        await page.fill("#api-key", "k" * 70_000)
        await page.fill("#api-secret", "any-secret")
        await page.click("#logon-button")
        await expect(page.locator("#logon-error")).to_contain_text(
            "logon failed: MESSAGE_TOO_BIG (1005)", timeout=4_000
        )
        await expect(page.locator("#place-button")).to_be_disabled()
        await expect(page.locator("#session")).to_be_hidden()

    assert run_page(tmp_path, scenario) == []


def test_a_key_without_read_is_refused_and_a_read_only_key_cannot_place(tmp_path: Path) -> None:
    # The page shows the account, so a trade-only key is refused with a clear message and
    # nothing of a session (not half logged on); a read-only key logs on with order entry
    # disabled; Log out leaves no error behind.
    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        admin = await venue.client("admin")
        trade_only = await admin.request("admin.issue_key", {"account": 3, "scopes": ["trade"]})
        read_only = await admin.request("admin.issue_key", {"account": 3, "scopes": ["read"]})
        error = page.locator("#logon-error")
        bot = await venue.client("taker")  # account 3's, whose open order the page shows
        await bot.place(SYMBOL, "buy", qty="1", price="186.00")
        before = set(venue.server.sessions)

        for key in (trade_only, read_only):
            await page.fill("#api-key", key["api_key"])
            await page.fill("#api-secret", key["secret"])
            await page.click("#logon-button")
            if key is trade_only:
                await expect(error).to_have_text(
                    "logon failed: this API key lacks the read scope, which the page needs to"
                    " show the account; use a key with read and trade"
                )
                await expect(page.locator("#session")).to_be_hidden()
                await expect(page.locator("#logon-form")).to_be_visible()
                await expect(page.locator("#place-button")).to_be_disabled()

        await expect(page.locator("#account")).to_have_text("3")
        await expect(error).to_have_text("")
        # `disabled` itself (to_be_disabled passes for aria-disabled too): nothing to send
        await expect(page.locator("#place-button")).to_have_attribute("disabled", "")
        await expect(page.locator("#order-result")).to_contain_text("read only")
        await expect(page.locator("#balances tr[data-asset=USD]")).to_have_count(1)
        buttons = page.locator("#open-orders button")
        await expect(buttons).to_have_text(["Amend", "Cancel"])
        for button in await buttons.all():
            await expect(button).to_have_attribute("disabled", "")
        # while the page logs on again after a drop, the read-only key's Amend and Cancel stay
        # disabled as they wait (session 35's review: `disabled` dropped, aria-disabled alone,
        # the keyboard could reach them and lost its place as they were disabled again)
        page_sessions(venue, before)[-1].websocket.transport.abort()
        waiting = await page.wait_for_function(READ_ONLY_BUTTONS_WHILE_AWAY)
        assert await waiting.json_value() == [True, True]
        await expect(error).to_have_text(re.compile(LOGGED_ON_AGAIN))
        for button in await buttons.all():
            await expect(button).to_have_attribute("disabled", "")
        await page.click("#logout-button")
        await expect(page.locator("#logon-form")).to_be_visible()
        await expect(error).to_have_text("")

    assert run_page(tmp_path, scenario) == []


# Once the page logs on again after a drop (the open order's buttons wait, aria-disabled):
# whether its Amend and Cancel are `disabled`.
READ_ONLY_BUTTONS_WHILE_AWAY = """() => {
  const buttons = [...document.querySelectorAll("#open-orders button")];
  const waits = (button) => button.getAttribute("aria-disabled") === "true";
  const waiting = buttons.length === 2 && buttons.every(waits);
  return waiting && buttons.map((button) => button.disabled);
}"""


def test_a_double_click_places_one_order_and_cancels_it_once(tmp_path: Path) -> None:
    # A trader's double click is one intent: the button waits for the venue's answer, so the
    # second click neither places a second order nor cancels again (which the venue refuses,
    # ORDER_NOT_OPEN, and the page would show over the cancel that worked). The keyboard keeps
    # its place: on Place order for the next order, and on the next order's Cancel once the
    # canceled one's row goes.
    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        await browser.log_on("taker")
        await expect(page.locator("#account")).to_have_text("3")
        await page.select_option("#order-kind", "post_only")
        await page.fill("#order-price", "180.00")
        await page.fill("#order-qty", "2")

        await page.dblclick("#place-button")

        await expect(page.locator("#order-result")).to_contain_text("new")
        await expect(page.locator("#place-button")).to_be_enabled()
        await expect(page.locator("#place-button")).to_be_focused()  # the next Enter places
        rows = page.locator("#open-orders tbody tr")
        await expect(rows).to_have_count(1)
        await expect(ladder_row(page, "bid", "180.00")).to_have_text("2.000000")
        checker = await venue.client("taker")
        assert len((await checker.request("orders.open"))["orders"]) == 1
        await page.fill("#order-price", "179.00")
        await page.press("#order-qty", "Enter")
        await expect(rows).to_have_count(2)
        first, second = [await row.get_attribute("data-order-id") for row in await rows.all()]

        await page.get_by_role("button", name=f"Cancel order {first}").dblclick()

        await expect(rows).to_have_count(1)
        await expect(page.locator("#order-result")).to_have_text(re.compile(r"^order \d+ canceled"))
        await expect(page.get_by_role("button", name=f"Cancel order {second}")).to_be_focused()
        await page.keyboard.press("Enter")
        await expect(rows).to_have_count(0)
        await expect(page.locator("#ladder-bids tr")).to_have_count(0)

    assert run_page(tmp_path, scenario) == []


HOLD_CANCELED_REPORTS = """(() => {
  // Counts the page's order.cancel requests, and holds the pushes that report an order
  // canceled (until `releaseCanceled()`): its cancel's answer then comes first.
  const send = WebSocket.prototype.send;
  window.cancelsSent = 0;
  WebSocket.prototype.send = function (data) {
    if (typeof data === "string" && data.includes('"method":"order.cancel"')) window.cancelsSent++;
    send.call(this, data);
  };
  const held = [];
  const setter = Object.getOwnPropertyDescriptor(WebSocket.prototype, "onmessage").set;
  Object.defineProperty(WebSocket.prototype, "onmessage", {
    set(handler) {
      setter.call(this, handler === null ? null : (event) => {
        const text = String(event.data);
        if (text.includes('"ch":') && text.includes('"canceled"')) held.push(() => handler(event));
        else handler(event);
      });
    },
  });
  window.releaseCanceled = () => held.splice(0).forEach((go) => go());
})()"""


def test_a_canceled_orders_row_takes_no_second_cancel_before_its_report_comes(
    tmp_path: Path,
) -> None:
    # The double click above failed now and then under load (session 33): the cancel's answer
    # freed its button before the exec report took the row away, so a second click between
    # them sent a second cancel, refused ORDER_NOT_OPEN and shown over the cancel that worked.
    # The report is held here so that the row stays: its Cancel must stay inert.
    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        await browser.log_on("taker")
        await expect(page.locator("#account")).to_have_text("3")
        bot = await venue.client("taker")
        order_id = (await bot.place(SYMBOL, "buy", qty="2", price="180.00"))["order_id"]
        rows = page.locator("#open-orders tbody tr")
        await expect(rows).to_have_count(1)
        cancel = page.get_by_role("button", name=f"Cancel order {order_id}")
        await cancel.click()
        result = page.locator("#order-result")
        await expect(result).to_have_text(f"order {order_id} canceled")
        await expect(rows).to_have_count(1)  # its report held
        await expect(cancel).to_have_attribute("aria-disabled", "true")
        await cancel.click(force=True)  # a click the button's state does not stop
        assert await page.evaluate("window.cancelsSent") == 1
        await page.evaluate("window.releaseCanceled()")
        await expect(rows).to_have_count(0)
        await expect(result).to_have_text(f"order {order_id} canceled")

    assert run_page(tmp_path, scenario, init_script=HOLD_CANCELED_REPORTS) == []


async def focused_symbol(page: Page) -> Any:
    return await page.evaluate("document.activeElement.closest('tr')?.dataset.symbol ?? null")


def test_an_instrument_is_chosen_by_keyboard_or_address_and_a_bad_address_still_loads(
    tmp_path: Path,
) -> None:
    # A link whose #fragment is no valid %-escape still opens the page (the first symbol); the
    # keyboard reaches a symbol (Tab) and follows it (Enter), and keeps its place while live
    # prices redraw the list; a #SYMBOL typed into the open page's address is followed; a
    # quick second choice leaves no stream of the first one followed.
    symbol = "NVDAx-USD"

    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        await page.goto("about:blank")
        await page.goto(f"http://127.0.0.1:{venue.port}/#%E0%A4%A")
        await expect(page.locator("#market-status")).to_have_text("market data: live")
        await expect(page.locator("#selected-symbol")).not_to_have_text("—")

        for _ in range(40):  # bounded: the symbols come before the order form in tab order
            if await focused_symbol(page) == symbol:
                break
            await page.keyboard.press("Tab")
        assert await focused_symbol(page) == symbol
        await page.keyboard.press("Enter")
        await expect(page.locator("#selected-symbol")).to_have_text(symbol)

        seller = await venue.client("alpha")
        await seller.place(symbol, "sell", qty="1", price="135.00")
        buyer = await venue.client("beta")
        await buyer.place(symbol, "buy", qty="1", price="135.00", tif="ioc")
        row = page.locator(f"#instruments tr[data-symbol='{symbol}']")
        await expect(row.locator("td.last")).to_have_text("135.00")  # the list was redrawn
        assert await focused_symbol(page) == symbol

        await page.evaluate(f"location.hash = '#{BILL}'")
        await expect(page.locator("#selected-symbol")).to_have_text(BILL)

        await page.evaluate(  # two choices before the venue answers the first's subscribe
            "location.hash = '#MSFTx-USD'; setTimeout(() => { location.hash = '#SPYx-USD'; })"
        )
        await expect(page.locator("#selected-symbol")).to_have_text("SPYx-USD")
        assert await browser.followed_streams("SPYx-USD") == {
            "book:SPYx-USD:25",
            "trades:SPYx-USD",
            "candles:SPYx-USD:1m",
        }

    assert run_page(tmp_path, scenario) == []


class FreezingRelay:
    """A loopback TCP relay to the venue whose connections can be frozen: from then on no byte
    of the venue's reaches the browser (the browser's still reach the venue) and nothing
    closes, as a lost network leaves a connection half open: the browser learns nothing for
    minutes. Later connections relay as usual."""

    def __init__(self, venue_port: int) -> None:
        self.venue_port = venue_port
        # each open connection's venue-to-browser pump, its browser side, whether a websocket
        self.to_browser: list[tuple[asyncio.Task[None], asyncio.StreamWriter, bool]] = []
        self.to_venue: list[asyncio.Task[None]] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.frozen: list[asyncio.StreamWriter] = []  # the browser's side of each frozen one
        # while set, a new websocket upgrade is accepted and never answered (nor relayed), as
        # a proxy or a half-dead network may leave it: `held` keeps each one's browser side
        self.hold_upgrades = False
        self.held: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await reader.read(65536)  # the request line tells a websocket's upgrade
        if self.hold_upgrades and first.startswith(b"GET /ws/"):
            self.held.append(writer)
            return
        venue_reader, venue_writer = await asyncio.open_connection("127.0.0.1", self.venue_port)
        venue_writer.write(first)
        self.writers += [writer, venue_writer]
        self.to_venue.append(asyncio.create_task(self._pump(reader, venue_writer)))
        pump = asyncio.create_task(self._pump(venue_reader, writer))
        self.to_browser.append((pump, writer, first.startswith(b"GET /ws/")))

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # a connection reset (the venue's transport aborted) ends the other side too, as EOF
        # does; a freeze cancels the pump, which closes nothing
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    def freeze(self, websockets: bool = True) -> None:
        """Stop the venue's bytes on every connection open now (the websockets' too, or
        only the plain HTTP ones, kept alive between requests); close none of them."""
        kept = []
        for pump, writer, websocket in self.to_browser:
            if websocket and not websockets:
                kept.append((pump, writer, websocket))
            else:
                pump.cancel()
                self.frozen.append(writer)
        self.to_browser = kept

    def end_frozen(self) -> None:
        """The frozen connections end (the browser's side is closed), as the network's loss
        is noticed at last: the browser opens new connections for what it asks next."""
        for writer in self.frozen:
            writer.close()
        self.frozen.clear()

    async def close(self) -> None:
        for pump in [pump for pump, _, _ in self.to_browser] + self.to_venue:
            pump.cancel()
        self.server.close()
        for writer in self.writers + self.held:
            writer.close()


def test_a_silently_dead_connection_is_noticed_and_the_page_resyncs(tmp_path: Path) -> None:
    # The venue sends something at least every second (a heartbeat, protocol §9.7): a page
    # that hears nothing for longer has lost its connection, even though the browser has not
    # noticed. It must say so, reconnect, and show what happened meanwhile, once; an order
    # sent meanwhile reached the venue, so its unanswered place is not "refused".
    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        relay = FreezingRelay(venue.port)
        try:
            await page.goto(f"http://127.0.0.1:{await relay.start()}/")
            await expect(page.locator("#market-status")).to_have_text("market data: live")
            seller = await resting_sell(venue, "10", "187.30")
            await expect(ladder_row(page, "ask", "187.30")).to_have_text("10.000000")
            await browser.log_on("taker")
            await expect(page.locator("#account")).to_have_text("3")

            await expect(page.locator("#balances tr[data-asset='USD']")).to_have_count(1)
            await browser.records_read()  # else the page reads them again once logged on again
            relay.freeze()
            seen_seq = browser.account_seqs[-1]  # the last the page got: nothing after it will
            fills_asked = sum('"method":"fills"' in f for f in browser.frames_sent)
            await seller.place(SYMBOL, "sell", qty="5", price="187.40")
            buyer = await venue.client("beta")
            await buyer.place(SYMBOL, "buy", qty="1", price="187.30", tif="ioc")
            await browser.place("buy", "post_only", qty="2", price="186.00")
            taker = await venue.client("taker")
            for _ in range(50):  # bounded: the page's order reaches the venue at once
                if (await taker.request("orders.open"))["orders"]:
                    break
                await asyncio.sleep(0.1)
            assert len((await taker.request("orders.open"))["orders"]) == 1
            # filled in part while the page hears nothing: its fill, and the order, reach the
            # page only from the account stream's replay once it has logged on again
            await seller.place(SYMBOL, "sell", qty="0.5", price="186.00", tif="ioc")

            await expect(page.locator("#order-result")).to_have_text(
                "order outcome unknown: connection closed (no message from the venue for 5 s);"
                " see the open orders once logged on again"
            )
            await expect(ladder_row(page, "bid", "186.00")).to_have_text("1.500000")
            await expect(ladder_row(page, "ask", "187.40")).to_have_text("5.000000")
            await expect(ladder_row(page, "ask", "187.30")).to_have_text("9.000000")
            await expect(page.locator("#market-status")).to_have_text("market data: live")
            await expect(page.locator("#tape tbody tr")).to_have_count(2)
            last = page.locator(f"#instruments tr[data-symbol='{SYMBOL}'] td.last")
            await expect(last).to_have_text("186.00")
            # logged on again by itself, the account stream resumed after its last seq: the
            # order placed and the fill made meanwhile show, each once; a screen reader hears
            # it once, with what was replayed (before session 31: nothing, the line emptied)
            said = page.locator("#logon-status[aria-live='polite']")
            await expect(said).to_have_text(re.compile(LOGGED_ON_AGAIN))
            replayed = len([seq for seq in browser.account_seqs if seq > seen_seq])
            await expect(page.locator("#logon-error")).to_have_text(
                f"logged on again: {replayed} account updates made meanwhile replayed"
            )
            await expect(page.locator("#place-button")).to_be_enabled()
            order = page.locator("#open-orders tbody tr")
            await expect(order).to_have_count(1)
            await expect(order.locator("td.price")).to_have_text("186.00")
            fills = page.locator("#fills tbody tr")
            await expect(fills).to_have_count(1)
            await expect(fills.locator("td.qty")).to_have_text("0.500000")
            resumed = [json.loads(f) for f in browser.frames_sent if '"ch":"account"' in f]
            # resumed right after the last seq the page received (not one further, which
            # skips an event), replayed, so the fills were not read again
            assert len(resumed) == 2 and resumed[1]["params"]["since_seq"] == seen_seq, resumed
            assert sum('"method":"fills"' in f for f in browser.frames_sent) == fills_asked == 1
            usd = (await taker.balances())["balances"]
            usd = next(row for row in usd if row["asset"] == "USD")
            shown = page.locator("#balances tr[data-asset='USD']")
            await expect(shown.locator("td.total")).to_have_text(usd["total"])
            await expect(shown.locator("td.held")).to_have_text(usd["held"])
            # back live, the page asks the REST ticker again, perhaps on a frozen kept-alive
            # connection: the network's loss is noticed, and that read ends before the relay
            relay.end_frozen()
            await browser.rest_settled()
        finally:
            await relay.close()

    assert run_page(tmp_path, scenario) == []


# The page's account connection held where the test chooses: its `fills` request never sent
# while `window.dropFills` is set; a new /ws/trade's open event kept (in `heldOpens`) while
# `window.holdOpens` is set, until `releaseOpens()`: a try again whose socket opens slowly.
# `countdowns`: what the line under the header counted down, each text in order.
HOLD_TRADE_SOCKET = """(() => {
  const Native = window.WebSocket;
  const onopen = Object.getOwnPropertyDescriptor(Native.prototype, "onopen");
  const send = Native.prototype.send;
  window.fillsDropped = 0;
  window.countdowns = []; // each text of #relogon-countdown, in order
  document.addEventListener("DOMContentLoaded", () => {
    const shown = document.getElementById("relogon-countdown");
    const seen = () => window.countdowns.push(shown.textContent);
    new MutationObserver(seen).observe(shown, { childList: true, subtree: true });
  });
  window.heldOpens = [];
  window.released = [];
  window.releaseOpens = () => {
    window.released.push(...window.heldOpens.splice(0));
    window.released.forEach(({ open }) => open());
  };
  window.WebSocket = class extends Native {
    constructor(url, protocols) {
      super(url, protocols);
      if (!String(url).endsWith("/ws/trade")) return;
      Object.defineProperty(this, "onopen", {
        get: () => onopen.get.call(this),
        set: (handler) => onopen.set.call(this, (event) => {
          if (!window.holdOpens) return handler(event);
          window.heldOpens.push({ socket: this, open: () => handler(event) });
        }),
      });
    }
    send(data) {
      if (window.dropFills && String(data).includes('"method":"fills"')) {
        window.fillsDropped++;
        return;
      }
      if (window.dropAccountSubscribes && String(data).includes('"ch":"account"')) {
        window.accountSubscribesDropped = (window.accountSubscribesDropped ?? 0) + 1;
        return;
      }
      return send.call(this, data);
    }
  };
})()"""


# The page closes a socket silent for 5 s by its clock (SILENCE_MAX_MS in venue.js), and the
# venue is silent at most about a second: a jump of Playwright's clock is at most 4 s, and one
# of more than 3 s, or a jump after another, is taken just after the page heard a frame.
JUMP_MAX_MS = 4000
# What the page's status line says once it has logged on again by itself (since session 31)
LOGGED_ON_AGAIN = r"^logged on again: "
JUMP_UNHEARD_MAX_MS = 3000


async def skip_countdown(browser: Browser, may_log_on: bool = False) -> int | None:
    """The page's wait before it logs on again, skipped: its clock (Playwright's, installed)
    jumps the seconds the line shows, so no test waits out the backoff; the seconds skipped.
    `may_log_on`: the venue came back while a try was under way, which may log on meanwhile:
    then nothing is left to skip (None)."""
    page = browser.page
    countdown = page.locator("#relogon-countdown")
    for _ in range(200):  # bounded: 10 s
        shown = await countdown.text_content() or ""
        if seconds := re.findall(r"^: reconnecting in (\d+) s$", shown):
            await jump_to_the_try(browser)
            return int(seconds[0])
        said = await page.locator("#logon-error").text_content() or ""
        if may_log_on and (said == "" or re.match(LOGGED_ON_AGAIN, said)):
            return None
        await asyncio.sleep(0.05)
    raise AssertionError("the page neither counts down to its next try nor is logged on")


async def jump_to_the_try(browser: Browser) -> None:
    """Playwright's clock moved on by what the countdown shows, step by step until the try
    starts: never past it, as the page's clock also runs in real time meanwhile (a jump of all
    the seconds first shown could leave a socket opened by the try silent for 5 s)."""
    countdown = browser.page.locator("#relogon-countdown")
    status = browser.page.locator("#logon-status")
    said = await status.text_content()
    first = True
    for _ in range(100):  # bounded: a countdown of at most 30 s, in steps of at least 1 s
        left = re.findall(r"^: reconnecting in (\d+) s$", await countdown.text_content() or "")
        if not left or await status.text_content() != said:
            return  # the try under way, or over (the next one's countdown said after it)
        step = min(int(left[0]) * 1000, JUMP_MAX_MS)
        if step > JUMP_UNHEARD_MAX_MS or not first:
            await browser.heard()
        await browser.page.clock.fast_forward(step)
        first = False
    raise AssertionError("the page's countdown did not end")


async def jump_clock(browser: Browser, ms: int) -> None:
    """Playwright's clock (installed) moved `ms` on, in jumps no socket's watchdog sees as
    5 s of silence (JUMP_MAX_MS)."""
    first = True
    while ms > 0:
        step = min(ms, JUMP_MAX_MS)
        if step > JUMP_UNHEARD_MAX_MS or not first:
            await browser.heard()
        await browser.page.clock.fast_forward(step)
        ms -= step
        first = False


def page_sessions(venue: Venue, before: set[Any]) -> list[Any]:
    """The account sessions opened since `before` (the venue's session ids then)."""
    return [s for key, s in venue.server.sessions.items() if key not in before and s.account]


def test_a_drop_while_reading_the_fills_a_logout_while_reopening_and_a_fresh_snapshot(
    tmp_path: Path,
) -> None:
    # Session 30's review: a logout while a try again opened its socket still sent a signed
    # logon; a first session dropped while it read the fills left them (and the history) empty
    # for good; a snapshot answering a resumption added the fills read again to the old ones.
    # One venue and page for the three; the page's backoff is skipped, not waited out.
    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        await page.clock.install()  # the page's backoff is skipped, not waited (`skip_countdown`)
        await resting_sell(venue, "10", "187.30")
        taker = await venue.client("taker")
        await taker.place(SYMBOL, "buy", qty="1", price="187.30", tif="ioc")
        clients = set(venue.server.sessions)

        # a logout while a try again opens its socket: nothing signed is sent on it
        await browser.log_on("taker")
        await expect(page.locator("#account")).to_have_text("3")
        await page.evaluate("() => { window.holdOpens = true; }")
        for session in page_sessions(venue, clients):
            session.websocket.transport.abort()
        await skip_countdown(browser)
        await page.wait_for_function("() => window.heldOpens.length === 1")
        logons = sum('"session.logon"' in f for f in browser.frames_sent)
        await page.click("#logout-button")
        await expect(page.locator("#logon-form")).to_be_visible()
        await page.evaluate("() => { window.holdOpens = false; window.releaseOpens(); }")
        await page.wait_for_function(
            "() => window.released.every(({ socket }) => socket.readyState === WebSocket.CLOSED)"
        )
        assert sum('"session.logon"' in f for f in browser.frames_sent) == logons
        await expect(page.locator("#logon-error")).to_have_text("")
        await expect(page.locator("#balances tbody tr")).to_have_count(0)

        # a first logon cut before it followed the account stream (its subscribe never sent):
        # logged on again, the account is read afresh, and the line says why (before the
        # review's fix: "away too long to replay what changed")
        await page.evaluate("() => { window.dropAccountSubscribes = true; }")
        await browser.log_on("taker")
        await page.wait_for_function("() => window.accountSubscribesDropped === 1")
        await page.evaluate("() => { window.dropAccountSubscribes = false; }")
        for session in page_sessions(venue, clients):
            session.websocket.transport.abort()
        await skip_countdown(browser)
        await expect(page.locator("#logon-error")).to_have_text(
            "logged on again: the account read afresh (it was not yet followed when the"
            " connection dropped)"
        )
        await page.click("#logout-button")
        await expect(page.locator("#logon-form")).to_be_visible()

        await page.evaluate("() => { window.dropFills = true; }")
        await browser.log_on("taker")
        await page.wait_for_function("() => window.fillsDropped === 1")
        await page.evaluate("() => { window.dropFills = false; }")
        for session in page_sessions(venue, clients):
            session.websocket.transport.abort()
        await skip_countdown(browser)
        # logged on again by itself, the fills and history are read then
        await expect(page.locator("#logon-error")).to_have_text(re.compile(LOGGED_ON_AGAIN))
        await expect(page.locator("#fills tbody tr")).to_have_count(1)
        await expect(page.locator("#history tbody tr")).to_have_count(1)

        # the venue starts afresh (another data directory): the account stream is behind the
        # page's since_seq, so a snapshot answers it, and the fills and history read again
        # replace those shown (none now)
        for client in venue.clients:
            await client.close()
        venue.clients.clear()
        await page.evaluate("() => { window.countdowns = []; }")
        await venue.server.stop()
        venue.server = VenueServer(venue_config.load(SAMPLE_CONFIG), tmp_path / "fresh")
        await venue.server.start("127.0.0.1", venue.port)
        await skip_countdown(browser, may_log_on=True)
        await expect(page.locator("#fills tbody tr")).to_have_count(0)
        await expect(page.locator("#history tbody tr")).to_have_count(0)
        await expect(page.locator("#logon-error")).to_have_text(
            "logged on again: the account read afresh (the venue's account stream started over)"
        )
        await expect(page.locator("#balances tbody tr")).not_to_have_count(0)
        # that session lived a second, not 30: its drop's first try came after 2 s, not 1
        counted = await page.evaluate("() => window.countdowns.filter((text) => text !== '')")
        assert counted[0] == ": reconnecting in 2 s", counted

    errors = run_page(tmp_path, scenario, init_script=HOLD_TRADE_SOCKET)
    # while the venue is down, the browser may log the page's refused reconnects
    assert [e for e in errors if "WebSocket connection to" not in e] == []


@pytest.mark.parametrize("prices", [("192.00", "193.00", "194.00", "195.00"), ("192.00",)])
def test_a_venue_started_afresh_past_the_pages_seq_is_read_afresh(
    tmp_path: Path, prices: tuple[str, ...]
) -> None:
    # The venue started afresh (another data directory) and, before the page logs on again,
    # its account came past the seq the page had applied (15 against 11): the page asked for
    # what followed 11 and was replayed the new venue's 12 to 15, its orders up to 11 never
    # told, the last venue's two orders still shown (session 37's known gap, the SDK's too).
    # The replay's first event must be the one applied last: it is not, so the page reads the
    # account afresh from a snapshot, and says why. One short of it (10: one sell and its
    # amend), asking from 10 would replay nothing: the answer's seq says it, read afresh too.
    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        await page.clock.install()  # the page's backoff is skipped, not waited (`jump_clock`)
        await browser.log_on("alpha")
        await expect(page.locator("#account")).to_have_text("1")
        alpha = await venue.client("alpha")
        for price in ("190.00", "191.00"):
            await alpha.place(SYMBOL, "sell", "1", price)
        await expect(page.locator("#open-orders tbody tr")).to_have_count(2)
        for _ in range(50):  # bounded: the last push of the second place reaches the page
            if browser.account_seqs and browser.account_seqs[-1] == 11:
                break
            await asyncio.sleep(0.1)
        assert browser.account_seqs[-1] == 11, browser.account_seqs
        for client in venue.clients:
            await client.close()
        venue.clients.clear()
        await page.evaluate("() => { window.holdOpens = true; }")  # no logon till released
        await venue.server.stop()
        venue.server = VenueServer(venue_config.load(SAMPLE_CONFIG), tmp_path / "fresh")
        await venue.server.start("127.0.0.1", venue.port)
        other = await venue.client("alpha")
        placed = [await other.place(SYMBOL, "sell", "1", price) for price in prices]
        if len(placed) == 1:
            await other.amend(placed[0]["order_id"], price="196.00")  # its exec alone
        assert (await other.subscribe_account())["seq"] == (15 if len(placed) == 4 else 10)
        for _ in range(30):  # bounded: the page's try comes within its countdown (<= 30 s)
            if await page.evaluate("() => window.heldOpens.length"):
                break
            await jump_clock(browser, 1000)
            await asyncio.sleep(0.05)
        held = await page.evaluate("() => window.heldOpens.length")
        assert held == 1, (held, await page.evaluate("() => window.countdowns"))
        await page.evaluate("() => { window.holdOpens = false; window.releaseOpens(); }")
        await expect(page.locator("#logon-error")).to_have_text(  # before: 4 updates replayed
            "logged on again: the account read afresh (the venue's account stream started over)"
        )
        rows = page.locator("#open-orders tbody tr")
        await expect(rows).to_have_count(len(placed))  # before: the last venue's 2 (and 2 more)
        shown = {int(await row.get_attribute("data-order-id") or 0) for row in await rows.all()}
        assert shown == {order["order_id"] for order in placed}

    errors = run_page(tmp_path, scenario, init_script=HOLD_TRADE_SOCKET)
    assert [e for e in errors if "WebSocket connection to" not in e] == []


def test_a_rest_read_on_a_dead_kept_alive_connection_times_out_and_the_next_one_recovers(
    tmp_path: Path,
) -> None:
    # The page's REST reads reuse kept-alive HTTP connections. One that died silently would
    # hold its read for good, and with it every later refresh of the 24 h change (and the
    # new-listing detection that rides on it): the read is aborted after 5 s (REST_TIMEOUT_MS
    # in venue.js), said under the instruments, and the next refresh asks again.
    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        relay = FreezingRelay(venue.port)
        try:
            await page.goto(f"http://127.0.0.1:{await relay.start()}/")
            change = page.locator(f"#instruments tr[data-symbol='{SYMBOL}'] td.change")
            await expect(change).to_have_text("\u2014")  # the REST ticker came: no trade yet
            await expect(page.locator("#day-note")).to_have_text("")
            relay.freeze(websockets=False)  # the page's idle HTTP connections, not its sockets
            admin = await venue.client("admin")
            # a status change makes the page ask the REST ticker again, out of turn
            await admin.request("admin.set_status", {"symbol": SYMBOL, "status": "halted"})
            await expect(page.locator("#day-note")).to_have_text(
                "24 h change unavailable (no answer within 5 s)"
            )
            relay.end_frozen()  # the browser connects anew for the next read, which succeeds
            await admin.request("admin.set_status", {"symbol": SYMBOL, "status": "open"})
            await expect(page.locator("#day-note")).to_have_text("")
        finally:
            await relay.close()

    assert run_page(tmp_path, scenario) == []


async def taker_with_an_order(browser: Browser, *order: str, **terms: str) -> tuple[Any, str]:
    """The page logged on as the taker (account 3) with one order placed from its form
    (`Browser.place`'s arguments), open: its row of the open orders and its order id."""
    page = browser.page
    await browser.log_on("taker")
    await expect(page.locator("#account")).to_have_text("3")
    await browser.place(*order, **terms)
    row = page.locator("#open-orders tbody tr")
    await expect(row).to_have_count(1)
    return row, await row.get_attribute("data-order-id") or ""


def test_an_open_order_is_amended_from_the_page(tmp_path: Path) -> None:
    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        row, order_id = await taker_with_an_order(
            browser, "buy", "post_only", qty="2", price="180.00"
        )
        await page.select_option("#order-kind", "market")  # the form as the last order left it

        await page.get_by_role("button", name=f"Amend order {order_id}").click()

        # the order in the form: its price and quantity to change, its side and type fixed
        place = page.locator("#place-button")
        await expect(place).to_have_text(f"Amend order {order_id}")
        await expect(page.locator("#order-price")).to_have_value("180.00")
        await expect(page.locator("#order-price")).to_be_enabled()
        await expect(page.locator("#order-qty")).to_have_value("2.000000")
        await expect(page.locator("#order-kind")).to_be_disabled()
        await expect(page.locator("input[name=side][value=buy]")).to_be_checked()
        # its type as its reports say it, which do not say post-only (an amend keeps it): main
        # showed "Limit (GTC)" over this post-only order
        kind = page.locator("#order-kind option:checked")
        await expect(kind).to_have_text("Limit (GTC), as placed")
        result = page.locator("#order-result")
        amends = lambda: sum("order.amend" in frame for frame in browser.frames_sent)  # noqa: E731
        await page.fill("#order-price", "180")  # 180.00 and 2.000000 written otherwise
        await page.fill("#order-qty", "2.0")
        await place.click()  # nothing changed: said here, not sent
        await expect(result).to_have_text(
            f"order {order_id} already has this price and quantity: change one"
        )
        # a change too fine for Number() (main: "already has this price") is a change, finer
        # than the tick: said in the page's words, not sent (session 36; before, sent and
        # refused `BAD_PRECISION (1004)` in the wire's words)
        await page.fill("#order-price", "180.0000000000000001")
        await place.click()
        await expect(result).to_have_text(
            'the price of AAPLx-USD is a multiple of its tick, 0.01: not "180.0000000000000001"'
        )
        assert amends() == 0
        # a price that is no plain number, typed in an amend: said in the page's words (the
        # fix round's exact comparison threw on it: nothing said, a page error; review)
        await page.fill("#order-price", "1,5")
        await place.click()
        await expect(result).to_have_text(
            'the price is a plain decimal number with a point, e.g. 1.5: not "1,5"'
        )
        assert amends() == 0
        await page.fill("#order-price", "181.00")
        await page.fill("#order-qty", "3" * 49)  # too long to read: said here, not sent
        await place.click()
        await expect(result).to_have_text(
            "the quantity is too long for a number: 49 characters, at most 48"
        )
        await expect(place).to_have_text(f"Amend order {order_id}")
        assert amends() == 0

        await page.fill("#order-price", "181.00")
        await page.fill("#order-qty", "3")
        await place.click()

        await expect(result).to_contain_text(f"order {order_id} amended, new")
        await expect(row.locator("td").nth(3)).to_have_text("181.00")
        await expect(row.locator("td").nth(4)).to_have_text("3.000000")
        await expect(ladder_row(page, "bid", "181.00")).to_have_text("3.000000")
        await expect(page.locator("#ladder-bids tr")).to_have_count(1)
        await expect(place).to_have_text("Place order")  # back to new orders
        await expect(page.locator("#order-kind")).to_be_enabled()
        trader = await venue.client("taker")
        (open_order,) = (await trader.request("orders.open", {}))["orders"]
        assert (open_order["price"], open_order["qty"]) == ("181.00", "3.000000")

        await trader.place(BILL, "buy", qty="100", price="98.600000")  # the longest symbol
        await expect(row).to_have_count(2)
        bill_order = page.locator("#open-orders tbody tr td.price").first
        await expect(bill_order).to_have_text("98.600000 /100")  # per 100, as in the fills

        # an order that closes while its amend is typed leaves the form; Back leaves it too
        await page.get_by_role("button", name=f"Amend order {order_id}").click()
        await expect(place).to_have_text(f"Amend order {order_id}")
        await page.focus("#amend-stop")
        await page.keyboard.press("Enter")
        await expect(place).to_have_text("Place order")
        said = f"order {order_id} not amended: back to a new order; the order form as before"
        await expect(result).to_have_text(f"{said} the amend")
        # the keyboard's focus goes to Place order beside it, not to the page's start as the
        # button hides (session 35)
        await expect(place).to_be_focused()
        await page.get_by_role("button", name=f"Amend order {order_id}").click()
        await page.press("#order-price", "Escape")  # the keyboard's way back
        await expect(place).to_have_text("Place order")
        await page.get_by_role("button", name=f"Amend order {order_id}").click()
        await page.click(f"#instruments tr[data-symbol='{BILL}'] a")  # another symbol
        await expect(place).to_have_text("Place order")
        chosen = "another symbol chosen; the order form as before the amend"
        await expect(result).to_have_text(f"order {order_id} not amended: {chosen}")
        await page.get_by_role("button", name=f"Amend order {order_id}").click()
        await trader.request("order.cancel", {"order_id": int(order_id or 0)})
        # the form was the bill's, its figures not given back on the order's symbol (session 37)
        back = f"the order form as before the amend, its price and quantity typed for {BILL}"
        await expect(result).to_have_text(
            f"order {order_id} canceled: nothing left to amend; {back} cleared"
        )
        await expect(page.locator("#order-qty")).to_have_value("")
        await expect(place).to_have_text("Place order")
        await expect(row).to_have_count(1)  # the bill's

    assert run_page(tmp_path, scenario) == []


# What covers what on the page: each open order's Amend and Cancel cell over another cell of
# the open orders, a button whose centre is not itself (something over it, or scrolled off
# with its panel's sideways scroll), and one table's shown part over another's (the balances
# beside the open orders). Each found named, so an assertion says where.
OVERLAPS = """() => {
  const meet = (a, b) => Math.min(a.right, b.right) - Math.max(a.left, b.left) > 0.5
    && Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top) > 0.5;
  const clipped = (a, b) => new DOMRect(Math.max(a.left, b.left), Math.max(a.top, b.top),
    Math.min(a.right, b.right) - Math.max(a.left, b.left),
    Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top));
  const found = [];
  const cells = [...document.querySelectorAll("#open-orders tbody td")];
  for (const actions of cells.filter((td) => td.classList.contains("actions"))) {
    const box = actions.getBoundingClientRect();
    for (const td of cells.filter((td) => td !== actions && meet(box, td.getBoundingClientRect())))
      found.push(`order ${actions.parentElement.dataset.orderId}'s buttons over ${td.textContent}`);
  }
  for (const button of document.querySelectorAll("#open-orders button")) {
    const top = button.getBoundingClientRect().top + window.scrollY;
    window.scrollTo(window.scrollX, top - window.innerHeight / 2);  // up and down only
    const box = button.getBoundingClientRect();
    const hit = document.elementFromPoint(box.x + box.width / 2, box.y + box.height / 2);
    if (hit === null || !button.contains(hit))
      found.push(`${button.getAttribute("aria-label")} under ${hit?.tagName} ${hit?.textContent}`);
  }
  // (the hidden table the page measures the open orders by is no table shown)
  const shown = [...document.querySelectorAll("main table:not(.sizer table)")].map((table) =>
    [table.id, clipped(table.getBoundingClientRect(),
      table.closest("section").getBoundingClientRect())]);
  shown.forEach(([a, boxA], i) => shown.slice(i + 1).forEach(([b, boxB]) => {
    if (meet(boxA, boxB)) found.push(`table ${a} over ${b}`);
  }));
  window.scrollTo(0, 0);
  return found;
}"""
# From a phone to a wide screen: the layouts' edges (480/481, 1000/1001, 1399/1400), 481 to 710
# px where the open orders ran under their sticky Amend and Cancel before session 27, 770 and 800
# px where the widest orders scrolled past a fixed 720 px switch to blocks (Cancel cut off), and
# where the balances, squeezed beside the open orders, ran under them (1130, 1600)
LAYOUT_WIDTHS = (320, 481, 560, 660, 710, 770, 800, 1001, 1130, 1400, 1600)
# How often the page has measured the open orders' width (fitOpenOrders)
MEASURES = """() => Number(document.querySelector("#orders-panel .sizer").dataset.measures)"""
# Two frames drawn: a new width's ResizeObserver callbacks (the page's choice of table or
# blocks) run in the first frame's rendering, after its animation frame callbacks; read at once,
# a loaded machine's page had not drawn one yet (1001 px read as blocks, the 800 px choice).
TWO_FRAMES = """() => new Promise((drawn) =>
  requestAnimationFrame(() => requestAnimationFrame(drawn)))"""
# A venue months on: the page reads each order id of /ws/trade 1,234,560 higher, 7 digits (its
# ids count from 1 for good; a test cannot place a million orders to get there). For the layout
# only: the page's Cancel and Amend would send the raised ids, which the venue does not know
MILLIONTH_ORDERS = r"""(() => {
  const { set } = Object.getOwnPropertyDescriptor(WebSocket.prototype, "onmessage");
  const later = (text) => text.replace(/"order_id":(\d+)/g,
    (_, id) => `"order_id":${Number(id) + 1234560}`);
  Object.defineProperty(WebSocket.prototype, "onmessage", {
    set(handler) {
      set.call(this, (event) => handler(new MessageEvent("message", { data: later(event.data) })));
    },
  });
})()"""
# How far the open orders (their block, table, cells) reach past the right edge of their
# panel's content, how far the panel scrolls sideways, and how the open orders show
SIDEWAYS = """() => {
  const panel = document.querySelector("#orders-panel");
  const style = getComputedStyle(panel);
  const edge = panel.getBoundingClientRect().right - parseFloat(style.borderRightWidth)
    - parseFloat(style.paddingRight);
  const parts = panel.querySelectorAll(".orders, #open-orders, #open-orders td");
  const right = Math.max(...[...parts].map((part) => part.getBoundingClientRect().right));
  const blocks = panel.querySelector(".orders").classList.contains("blocks");
  return [right - edge, panel.scrollWidth - panel.clientWidth,
    blocks ? "blocks" : "table"];
}"""

# How far the order history (its table, cells) reaches past its panel's content's right edge
HISTORY_SIDEWAYS = """() => {
  const panel = document.querySelector("#orders-panel");
  const style = getComputedStyle(panel);
  const edge = panel.getBoundingClientRect().right - parseFloat(style.borderRightWidth)
    - parseFloat(style.paddingRight);
  const parts = panel.querySelectorAll("#history, #history td");
  return Math.max(...[...parts].map((part) => part.getBoundingClientRect().right)) - edge;
}"""

# Where order entry stands, the page scrolled to its top: whether the whole order form shows on
# the first screen, and which of the chart, the book (with the tape) and the instruments list
# it is above
ORDER_ENTRY_PLACE = """() => {
  window.scrollTo(0, 0);
  const form = document.getElementById("order-form").getBoundingClientRect();
  const above = ["chart-panel", "book-panel", "instruments-panel"].filter(
    (id) => form.bottom <= document.getElementById(id).getBoundingClientRect().top);
  return [form.bottom <= window.innerHeight, above];
}"""
# in one column, the panels below order entry: the market's but the instruments list, above it
# (a symbol chosen, then traded; since session 33's review, before which it came after the whole
# account's panel)
MARKET_BELOW = ["chart-panel", "book-panel"]

# How far the page reaches past the window's width (> 0: the whole page scrolls sideways).
PAGE_SIDEWAYS = """() => document.documentElement.scrollWidth
  - document.documentElement.clientWidth"""


def test_open_orders_and_their_buttons_overlap_nothing_from_320_to_1600_px(
    tmp_path: Path,
) -> None:
    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        await browser.log_on("taker")
        await expect(page.locator("#account")).to_have_text("3")
        # the widest open orders: 7-digit ids; an equity's of 19999.999999, partly filled (its
        # quantity and filled the longest figures), a bill's (the longest symbol, a price per
        # 100) of a million of face, partly filled. At 800 px as they come: the page turns the
        # table to blocks on the orders' own change, the width unchanged
        await page.set_viewport_size({"width": 800, "height": 900})
        await page.evaluate(TWO_FRAMES)
        trader = await venue.client("taker")
        seller = await venue.client("alpha")
        await trader.place(SYMBOL, "sell", qty="19999.999999", price="205.00")
        await seller.place(SYMBOL, "buy", qty="9999.999999", price="205.00")
        await seller.place(BILL, "sell", qty="100", price="98.600000")
        await trader.place(BILL, "buy", qty="1000000", price="98.600000")
        await expect(page.locator("#open-orders td", has_text="partially filled")).to_have_count(2)
        await expect(page.locator("#open-orders tbody td").first).to_have_text(re.compile(r"^12"))
        reach, scroll, layout = await page.evaluate(SIDEWAYS)
        assert (reach <= 0.5, scroll, layout) == (True, 0, "blocks"), reach
        # their roles said, as blocks lose them in some browsers
        assert await page.locator("#open-orders tbody tr[role=row] > td[role=cell]").count() == 16
        # a fill that changes no column's widest text (the bill's 100 filled, then 200) measures
        # nothing again: before, each render forced two more layouts
        measures = await page.evaluate(MEASURES)
        await seller.place(BILL, "sell", qty="100", price="98.600000")
        filled = page.locator("#open-orders td", has_text=re.compile(r"^200(\.0+)?$"))
        await expect(filled).to_have_count(1)
        assert await page.evaluate(MEASURES) == measures > 0
        # the order history's widest: a bill's of a million of face, canceled; an equity's
        # of 19999.999999, filled in part and canceled
        closed = [
            await trader.place(BILL, "buy", qty="1000000", price="98.500000"),
            await trader.place("MSFTx-USD", "sell", qty="19999.999999", price="450.00"),
        ]
        await seller.place("MSFTx-USD", "buy", qty="1", price="450.00")
        for order in closed:
            await trader.request("order.cancel", {"order_id": order["order_id"]})
        await expect(page.locator("#history tbody tr")).to_have_count(2)

        found, sideways, page_past, history_past, entry = {}, {}, {}, {}, {}
        for width in LAYOUT_WIDTHS:
            await page.set_viewport_size({"width": width, "height": 900})
            await page.evaluate(TWO_FRAMES)
            entry[width] = (await page.evaluate(ORDER_ENTRY_PLACE))[1]
            found[width] = await page.evaluate(OVERLAPS)
            sideways[width] = await page.evaluate(SIDEWAYS)
            page_past[width] = await page.evaluate(PAGE_SIDEWAYS)
            history_past[width] = await page.evaluate(HISTORY_SIDEWAYS)
        assert {width: what for width, what in found.items() if what} == {}
        # the order history stays within its panel at every width (blocks to 800 px)
        assert {width: past for width, past in history_past.items() if past > 0.5} == {}
        # the page itself never scrolls sideways (a wide table scrolls within its panel): before
        # session 30's fix the hidden sizer's visually-hidden header, unclipped, widened it to
        # 525 px at 320, 599 at 560
        assert {width: past for width, past in page_past.items() if past > 0} == {}
        # in one column order entry comes before the chart and the book (since session 33;
        # before, after them); the desktop's grids keep it where it was, beside or below them
        assert entry == {
            **dict.fromkeys((320, 481, 560, 660, 710, 770, 800), MARKET_BELOW),
            **{width: [] for width in (1001, 1130, 1400, 1600)},
        }
        # the open orders stay within their panel: a table where it fits whole, else blocks;
        # nothing scrolls the panel sideways (to 800 px the fills are blocks too: before
        # session 32 their table scrolled it below 660 px, the balances' at 320).
        # (half a pixel allowed: sub-pixel layout). Before session 27's review's fix: a table 43
        # px past the panel at 770 px, 13 at 800
        assert {width: s for width, s in sideways.items() if s[0] > 0.5} == {}, sideways
        assert {width: s for width, s in sideways.items() if s[1] > 0} == {}
        assert {width: layout for width, (_, _, layout) in sideways.items()} == {
            **dict.fromkeys((320, 481, 560, 660, 710, 770, 800), "blocks"),
            **dict.fromkeys((1001, 1130, 1400, 1600), "table"),
        }

    assert run_page(tmp_path, scenario, init_script=MILLIONTH_ORDERS) == []


# A phone as Playwright's device descriptors give one (iPhone SE, iPhone 12 to 14): its width,
# touch, a mobile browser's viewport rules and user agent; and a 1280 x 800 laptop at 200%
# zoom, which lays the page out in 640 x 400 CSS px.
MOBILE_SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)
PHONE = {
    "viewport": {"width": 375, "height": 667},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
    "user_agent": MOBILE_SAFARI,
}
PHONE_390 = {"width": 390, "height": 844}
ZOOM_200 = {"viewport": {"width": 640, "height": 400}, "device_scale_factor": 2}
# Every control the pointer reaches that is smaller than 24 x 24 CSS px and not spaced as WCAG
# 2.5.8 excuses (a 24 px circle on its centre meets no other control, nor another small one's
# circle): a radio button counts with its label, which a tap on also checks. Each named, sized.
SMALL_TARGETS = """() => {
  const shown = [...document.querySelectorAll("a[href], button, input, select")].filter((e) =>
    e.getClientRects().length > 0 && !e.closest("[hidden], .sizer, .skip-link"));
  const targets = shown.map((e) => [e, (e.type === "radio" && e.closest("label")) || e]);
  const boxes = targets.map(([e, t]) => [e, t.getBoundingClientRect()]);
  const small = (r) => r.width < 24 || r.height < 24;
  const centre = (r) => [r.x + r.width / 2, r.y + r.height / 2];
  const toBox = ([x, y], r) => Math.hypot(Math.max(r.left - x, 0, x - r.right),
    Math.max(r.top - y, 0, y - r.bottom));
  const apart = (a, b) => Math.hypot(centre(a)[0] - centre(b)[0], centre(a)[1] - centre(b)[1]);
  const crowded = ([e, r]) => boxes.some(([other, q]) => other !== e
    && (toBox(centre(r), q) < 12 || (small(q) && apart(r, q) < 24)));
  const name = (e) => e.getAttribute("aria-label") || e.id || e.textContent.trim();
  return boxes.filter(([, r]) => small(r)).filter(crowded)
    .map(([e, r]) => `${name(e)} ${r.width.toFixed(1)} x ${r.height.toFixed(1)}`);
}"""
# Every control and table cell shown that is cut off: a control past the window's sides, or
# whose centre (scrolled into view) is not itself; a panel that scrolls sideways; a cell whose
# text spills past it (over the next). Each named.
CUT_OFF = """() => {
  const found = [];
  const width = document.documentElement.clientWidth;
  const controls = [...document.querySelectorAll("a[href], button, input, select")].filter(
    (e) => e.getClientRects().length > 0 && !e.closest("[hidden], .sizer, .skip-link"));
  for (const e of controls) {
    const name = e.getAttribute("aria-label") || e.id || e.textContent.trim();
    const box = e.getBoundingClientRect();
    if (box.left < -0.5 || box.right > width + 0.5) found.push(`${name} past the side`);
    window.scrollTo(0, box.top + window.scrollY - window.innerHeight / 2);
    const now = e.getBoundingClientRect();
    const hit = document.elementFromPoint(now.x + now.width / 2, now.y + now.height / 2);
    if (hit === null || !(e.closest("label") ?? e).contains(hit))
      found.push(`${name} under ${hit?.tagName} ${hit?.id || hit?.textContent?.slice(0, 20)}`);
  }
  window.scrollTo(0, 0);
  for (const section of document.querySelectorAll("section"))
    if (section.scrollWidth > section.clientWidth) found.push(`${section.id} scrolls sideways`);
  for (const td of document.querySelectorAll("main td"))
    if (td.closest(".sizer") === null && td.scrollWidth > td.clientWidth + 1)
      found.push(`${td.closest("table").id}: ${td.textContent} spills`);
  return found;
}"""
# The figures' fields: their keyboard, and their type's size (a phone's browser zooms into a
# field under 16 px as it is focused); the API key's capitalization and correction
FIELDS = """() => [
  ...["order-price", "order-qty"].map((id) => document.getElementById(id)).map((e) =>
    [e.id, e.inputMode, parseFloat(getComputedStyle(e).fontSize) >= 16]),
  ["api-key", document.getElementById("api-key").getAttribute("autocapitalize"),
    document.getElementById("api-key").getAttribute("autocorrect")],
]"""


async def measure_layout(page: Page, axe: bool = True) -> dict[str, Any]:
    """What a phone's trader would meet on the page as it is now (axe-core's findings too)."""
    await page.evaluate(TWO_FRAMES)
    return {
        "page sideways": await page.evaluate(PAGE_SIDEWAYS),
        "small targets": await page.evaluate(SMALL_TARGETS),
        "cut off": await page.evaluate(CUT_OFF),
        "axe": await axe_violations(page) if axe else [],
    }


async def swipe_up(page: Page, target: str) -> bool:
    """A finger's swipe up by 200 px on `target` (Chromium's touch events, over CDP): whether
    the page scrolled down by at least half of it, rather than the target taking the swipe.
    Begun with the target at the window's top (on a phone the chart is below order entry)."""
    start = await page.evaluate(
        "(target) => { document.querySelector(target).scrollIntoView(); return window.scrollY; }",
        target,
    )
    box = await page.locator(target).bounding_box()
    assert box is not None, target
    x, y = box["x"] + box["width"] / 2, box["y"] + 60
    cdp = await page.context.new_cdp_session(page)
    try:
        await cdp.send(
            "Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]}
        )
        for step in range(1, 11):
            point = {"x": x, "y": y - 20 * step}
            await cdp.send(
                "Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [point]}
            )
        await cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    finally:
        await cdp.detach()
    await page.evaluate(TWO_FRAMES)
    scrolled = await page.evaluate("() => window.scrollY") - start >= 100
    await page.evaluate("() => window.scrollTo(0, 0)")
    return bool(scrolled)


async def log_on_by(tap: Callable[[Any], Awaitable[None]], page: Page) -> None:
    await page.fill("#api-key", KEYS["taker"][0])
    await page.fill("#api-secret", KEYS["taker"][1])
    await tap(page.get_by_role("button", name="Log on"))
    await expect(page.locator("#account")).to_have_text("3")


async def account_shown(page: Page) -> None:
    """The account as `trade_by_touch` leaves it, shown whole."""
    await expect(page.locator("#open-orders tbody tr")).to_have_count(1)
    await expect(page.locator("#fills tbody tr")).to_have_count(1)
    await expect(page.locator("#history tbody tr")).to_have_count(2)
    await expect(page.locator("#tape tbody tr")).to_have_count(1)


def test_a_trader_on_a_phone_or_at_200_percent_zoom_trades_by_touch_with_nothing_cut_off(
    tmp_path: Path,
) -> None:
    # Session 32: on a 375 px phone, by touch, a trader logs on, reads the book and the tape,
    # copies a level's price, places, amends and cancels, and sees the balances, open orders,
    # history and fills; there, on a 390 px phone and at 200% zoom (640 CSS px) the page never
    # scrolls sideways, no control is under 24 px (WCAG 2.5.8), nothing is cut off or covered,
    # axe finds nothing, the figures bring up a decimal keyboard, and a swipe on the chart
    # scrolls the page. Before the fix: the symbols, book levels, Amend, Cancel and the side's
    # radios 13 to 19 px high; the balances' held column and the fills' fee cut off in their
    # panel's sideways scroll; the fields' 13 px type, which a phone zooms into; the API key
    # capitalized by a phone's keyboard; the chart took a vertical swipe, the page stuck.
    # About 6 s: two windows (a phone turned to 390 px in place), four layouts measured, axe
    # run on three (~0.6 s a run; the page logged off, which differs in its header only, is
    # measured without: the keyboard test runs axe on it).
    async def scenario(venue: Venue, browser: Browser) -> None:
        seller = await resting_sell(venue, "10", "187.30")
        await seller.place(SYMBOL, "buy", qty="2", price="187.00")
        found: dict[str, Any] = {}
        async with open_page(venue, "/", device=PHONE) as phone:
            page = phone.page
            await expect(ladder_row(page, "bid", "187.00")).to_have_text("2.000000")
            found["375 logged off"] = await measure_layout(page, axe=False)
            found["375 fields"] = await page.evaluate(FIELDS)
            await log_on_by(lambda target: target.tap(), page)
            await trade_by_touch(page)
            await account_shown(page)
            found["375"] = await measure_layout(page)
            found["a swipe up on the chart scrolls the page"] = await swipe_up(page, "#candles")
            await page.set_viewport_size(PHONE_390)
            found["390"] = await measure_layout(page)
            found["390 order entry"] = await page.evaluate(ORDER_ENTRY_PLACE)
            found["phone's errors"] = phone.errors
        async with open_page(venue, "/", device=ZOOM_200) as zoomed:
            page = zoomed.page
            found["zoom 200% fields"] = await page.evaluate(FIELDS)
            await log_on_by(lambda target: target.click(), page)
            await account_shown(page)
            found["zoom 200%"] = await measure_layout(page)
            found["zoomed page's errors"] = zoomed.errors
        clean = {"page sideways": 0, "small targets": [], "cut off": [], "axe": []}
        decimal_fields = [["order-price", "decimal", True], ["order-qty", "decimal", True]]
        key_field = ["api-key", "none", "off"]
        assert found == {
            **dict.fromkeys(("375 logged off", "375", "390", "zoom 200%"), clean),
            "a swipe up on the chart scrolls the page": True,
            # the whole order form on the first screen, under the instruments, above the chart
            # and the book (session 33; before, below them and the tape: 1,900 px down)
            "390 order entry": [True, MARKET_BELOW],
            "phone's errors": [],
            "zoomed page's errors": [],
            "375 fields": [*decimal_fields, key_field],
            # the desktop's type (13 px) where no phone zooms into it
            "zoom 200% fields": [[*field[:2], False] for field in decimal_fields] + [key_field],
        }

    assert run_page(tmp_path, scenario) == []


async def trade_by_touch(page: Page) -> None:
    """By touch: a buy at the ask's level (its price copied by a tap), then a post-only bid
    amended from 180.00 to 181.00, then another canceled; one open order left."""
    await page.get_by_role("button", name="ask 187.30: use this price").tap()
    await expect(page.locator("#order-price")).to_have_value("187.30")
    # a slip sent from the field at the screen's bottom edge (its Go key): the field and the
    # line saying what is wrong both in view (session 35; before, the line under Place order
    # stayed below the screen, the field outlined with no word why)
    quantity = page.locator("#order-qty")
    await quantity.evaluate("(field) => field.scrollIntoView({block: 'end'})")
    await quantity.fill("1,5")
    await quantity.press("Enter")
    await expect(page.locator("#order-result")).to_have_text(re.compile('^the quantity .*"1,5"$'))
    await expect(page.locator("#order-result")).to_be_in_viewport()
    await expect(quantity).to_be_in_viewport()
    await quantity.fill("1")
    place = page.get_by_role("button", name="Place order")
    await place.evaluate("(button) => button.scrollIntoView({block: 'end'})")
    await place.tap()  # at the screen's bottom edge: the venue's answer scrolled into view too
    await expect(page.locator("#order-result")).to_contain_text("filled")
    await expect(page.locator("#order-result")).to_be_in_viewport()
    await expect(page.locator("#tape tbody tr td.taker")).to_have_text(["buy"])
    await page.locator("label", has_text="Sell").tap()
    await page.locator("label", has_text="Buy").tap()
    await page.select_option("#order-kind", "post_only")
    for price in ("180.00", "179.00"):
        await page.locator("#order-price").fill(price)
        await page.locator("#order-qty").fill("2")
        await page.get_by_role("button", name="Place order").tap()
        await expect(page.locator("#order-result")).to_contain_text(" new ")
    rows = page.locator("#open-orders tbody tr")
    await expect(rows).to_have_count(2)
    first, second = [await row.get_attribute("data-order-id") for row in await rows.all()]
    rows = page.locator("#open-orders tbody")
    await rows.locator(f"[data-order-id='{second}'] button.amend").tap()
    await expect(page.locator("#order-price")).to_be_focused()
    await page.locator("#order-price").fill("181.00")
    await page.locator("#place-button").tap()
    await expect(page.locator("#order-result")).to_contain_text(f"order {second} amended")
    await expect(ladder_row(page, "bid", "181.00")).to_have_text("2.000000")
    await page.get_by_role("button", name=f"Cancel order {first}").tap()
    await expect(page.locator("#order-result")).to_have_text(f"order {first} canceled")
    await expect(page.locator("#balances tr[data-asset=AAPLx] td.total")).to_have_text(
        "20001.000000"
    )


# The page's order.amend frames wait in the page until the test lets them go
# (`releaseAmends()`): an amend whose answer is slow, with no clock in the test.
HOLD_AMENDS = """(() => {
  const send = WebSocket.prototype.send;
  const held = [];
  WebSocket.prototype.send = function (data) {
    if (typeof data === "string" && data.includes('"method":"order.amend"')) {
      held.push(() => send.call(this, data));
    } else {
      send.call(this, data);
    }
  };
  window.releaseAmends = () => held.splice(0).forEach((go) => go());
})()"""


def test_an_amend_awaiting_its_answer_holds_the_form_and_one_made_elsewhere_is_followed(
    tmp_path: Path,
) -> None:
    # Session 26's review: while an amend awaited its answer, Amend on another order, Back,
    # Escape and another symbol still acted; the answer then ended the amend begun meanwhile
    # and the trader's next click placed a new order. And an amend was computed against the
    # order as it was when Amend was clicked, though a bot of the account had amended it since:
    # the trader saw 180 and sent only a quantity, and the venue had 181.
    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        await browser.log_on("taker")
        await expect(page.locator("#account")).to_have_text("3")
        bot = await venue.client("taker")
        first = (await bot.place(SYMBOL, "buy", qty="2", price="180.00"))["order_id"]
        second = (await bot.place(SYMBOL, "buy", qty="5", price="170.00"))["order_id"]
        rows = page.locator("#open-orders tbody tr")
        await expect(rows).to_have_count(2)
        place = page.locator("#place-button")
        result = page.locator("#order-result")
        awaiting = f"amending order {second}: awaiting the venue's answer"
        await page.get_by_role("button", name=f"Amend order {second}").click()
        await page.fill("#order-qty", "1")
        await place.click()  # held: its answer is not back
        amend_first = page.get_by_role("button", name=f"Amend order {first}")
        # A forced click is not retried: wait for the table as the held amend leaves it (the
        # full suite under load once clicked a row being redrawn: "Element is not visible").
        await expect(amend_first).to_have_attribute("aria-disabled", "true")
        await amend_first.click(force=True)  # main: the form amended the first order
        await expect(place).to_have_text(f"Amend order {second}")
        await expect(result).to_have_text(awaiting)
        for waiting in (place, amend_first, page.locator("#amend-stop")):
            await expect(waiting).to_have_attribute("aria-disabled", "true")
        await page.click("#amend-stop", force=True)  # main: "order N not amended"
        await page.press("#order-qty", "Escape")
        await page.click(f"#instruments tr[data-symbol='{BILL}'] a")
        await expect(page).to_have_url(re.compile(f"#{SYMBOL}$"))
        await expect(page.locator("#selected-symbol")).to_have_text(SYMBOL)
        await expect(place).to_have_text(f"Amend order {second}")
        await expect(result).to_have_text(awaiting)
        await page.evaluate("window.releaseAmends()")
        await expect(result).to_contain_text(f"order {second} amended, new")
        await expect(place).to_have_text("Place order")
        await expect(amend_first).not_to_have_attribute("aria-disabled", "true")

        # the bot amends the first order while the trader types its amend: the form follows
        await amend_first.click()
        await expect(page.locator("#order-price")).to_have_value("180.00")
        await bot.request("order.amend", {"order_id": first, "price": "181.00"})
        await expect(result).to_have_text(f"order {first} changed meanwhile: now 181.00 x 2.000000")
        await expect(page.locator("#order-price")).to_have_value("181.00")
        await page.fill("#order-price", "180.00")  # back to 180, and 3: both sent
        await page.fill("#order-qty", "3")
        await place.click()
        await expect(result).to_have_text(awaiting.replace(str(second), str(first)))
        await page.evaluate("window.releaseAmends()")
        await expect(result).to_contain_text(f"order {first} amended, new")
        orders = (await bot.request("orders.open", {}))["orders"]
        terms = {order["order_id"]: (order["price"], order["qty"]) for order in orders}
        assert terms == {first: ("180.00", "3.000000"), second: ("170.00", "1.000000")}
        assert not any('"order.place"' in frame for frame in browser.frames_sent)

        # the bot amends it while the page's amend awaits its answer, which is a refusal: the
        # line says both, and the form shows the order's terms now
        await amend_first.click()
        await page.fill("#order-price", "999.00")  # above the band: the venue refuses it
        await place.click()
        await bot.request("order.amend", {"order_id": first, "price": "182.00"})
        price = page.locator(f"#open-orders tr[data-order-id='{first}'] td.price")
        await expect(price).to_have_text("182.00")
        await expect(result).to_have_text(awaiting.replace(str(second), str(first)))
        await page.evaluate("window.releaseAmends()")
        await expect(result).to_have_text(
            re.compile(
                r"^amend refused: the price is outside the band .* \(PRICE_BAND 4009\); "
                f"order {first} changed meanwhile: now 182.00 x 3.000000$"
            )
        )
        await expect(page.locator("#order-price")).to_have_value("182.00")
        await expect(place).to_have_text(f"Amend order {first}")

    assert run_page(tmp_path, scenario, init_script=HOLD_AMENDS) == []


# axe-core (Deque's accessibility rules), as the axe-playwright-python package ships it
AXE_SCRIPT = files("axe_playwright_python").joinpath("axe.min.js").read_text()
# The focused element's tag and its outline as drawn (a keyboard stop's focus shown)
FOCUS_DRAWN = """() => {
  const e = document.activeElement;
  const style = getComputedStyle(e);
  return [e.tagName, style.outlineStyle, style.outlineWidth];
}"""
# Every live region of the page, by id: what a screen reader announces as it changes
LIVE_REGIONS = """() => [...document.querySelectorAll("[aria-live], [role=status], [role=alert]")]
  .map((e) => e.id).sort()"""


async def axe_violations(page: Page) -> list[str]:
    """axe-core's violations on the page as it is now, one line each."""
    await page.evaluate(AXE_SCRIPT)
    result = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['id']} ({v['impact']}): {[node['target'] for node in v['nodes']]}"
        for v in result["violations"]
    ]


async def focused(page: Page) -> list[str]:
    """The focused element as [tag, accessible name (Playwright's), outline style, width]."""
    tag, style, width = await page.evaluate(FOCUS_DRAWN)
    if tag == "BODY":  # past the last stop, before the first
        return [tag, "", style, width]
    line = (await page.locator(":focus").aria_snapshot()).splitlines()[0].removeprefix("- ")
    if line.startswith("'"):  # YAML's quotes around a line holding ": "
        line = line[1 : line.rindex("'")].replace("''", "'")
    said = re.match(r'^\w+(?: "(.*)")?', line)
    return [tag, (said.group(1) or "") if said else "", style, width]


async def tab_stops(page: Page, count: int) -> list[list[str]]:
    """The next `count` stops of the Tab key, each as `focused` says it."""
    stops = []
    for _ in range(count):
        await page.keyboard.press("Tab")
        stops.append(await focused(page))
    return stops


def test_a_keyboard_and_screen_reader_user_can_log_on_trade_and_hear_what_happened(
    tmp_path: Path,
) -> None:
    # Session 31's accessibility pass, as a keyboard-only and screen-reader user: axe-core
    # finds nothing (before: the live pill's text at 4.1:1, the logon hint outside every
    # landmark, the reserves' last header empty); a skip link first; every stop named and its
    # focus drawn; a book level reached and used by keyboard (before: mouse only); the order
    # form's error tied to its field; the tape's side said in words, not by colour alone.
    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        seller = await resting_sell(venue, "10", "187.30")
        await seller.place(SYMBOL, "buy", qty="2", price="187.00")
        await expect(ladder_row(page, "bid", "187.00")).to_have_text("2.000000")
        await expect(page.locator("#reserves-table")).to_be_visible()
        assert await axe_violations(page) == []
        # the depth chart's figures, as the ladder's (session 37; before, its name alone)
        depth = "depth chart: bids at 187.00, 2.000000 in all; asks at 187.30, 10.000000 in all"
        await expect(page.get_by_role("img", name=depth)).to_be_visible()  # before: unnamed
        # the book and the tape are no live regions: only the status lines speak
        live = ["logon-alert", "logon-status", "market-status", "order-result"]
        assert await page.evaluate(LIVE_REGIONS) == live

        # logged on by keyboard alone, from the page's first stop
        await page.evaluate("() => document.activeElement.blur()")
        first = await tab_stops(page, 2)
        assert [stop[:2] for stop in first] == [["A", "Skip to order entry"], ["INPUT", "API key"]]
        await page.keyboard.type(KEYS["taker"][0])
        await page.keyboard.press("Tab")
        await expect(page.get_by_role("textbox", name="API secret")).to_be_focused()
        await page.keyboard.type(KEYS["taker"][1])
        await page.keyboard.press("Enter")
        await expect(page.locator("#account")).to_have_text("3")
        # the form gone, its focus goes to Log out in its place (before: to the page's start)
        await expect(page.get_by_role("button", name="Log out")).to_be_focused()

        # the skip link, just before, leads to the order form; the address keeps the symbol
        await page.keyboard.press("Shift+Tab")
        assert await focused(page) == ["A", "Skip to order entry", "solid", "2px"]
        await page.keyboard.press("Enter")
        await expect(page.get_by_role("heading", name="Order entry")).to_be_focused()
        assert await page.evaluate("location.hash") == f"#{SYMBOL}"
        form = await tab_stops(page, 5)
        assert [stop[:2] for stop in form] == [
            ["INPUT", "Buy"],
            ["SELECT", "type"],
            ["INPUT", "price (USD)"],
            ["INPUT", "quantity (AAPLx)"],
            ["BUTTON", "Place order"],
        ]

        # a book level by keyboard: its name says its side; Enter copies its price, and the
        # focus goes on to the quantity
        ask = page.get_by_role("button", name="ask 187.30: use this price")
        await ask.focus()
        await page.keyboard.press("Enter")
        await expect(page.locator("#order-price")).to_have_value("187.30")
        quantity = page.get_by_role("textbox", name="quantity (AAPLx)")
        await expect(quantity).to_be_focused()

        # an unreadable quantity: said, the field marked invalid, described by what was said,
        # and focused; typing mends the mark
        await page.keyboard.type("1,5")
        await page.keyboard.press("Enter")
        words = 'the quantity is a plain decimal number with a point, e.g. 1.5: not "1,5"'
        await expect(page.locator("#order-result")).to_have_text(words)
        await expect(quantity).to_have_attribute("aria-invalid", "true")
        await expect(quantity).to_have_accessible_description(words)
        await expect(quantity).to_be_focused()
        assert await axe_violations(page) == []
        await quantity.fill("")
        await expect(quantity).not_to_have_attribute("aria-invalid", "true")
        # the venue's refusal of a figure is tied to its field too, the focus left where it is
        price = page.get_by_role("textbox", name="price (USD)")
        await price.fill("999.00")
        await quantity.focus()
        await page.keyboard.type("1")
        await page.keyboard.press("Enter")
        await expect(price).to_have_attribute("aria-invalid", "true")
        await expect(price).to_have_accessible_description(re.compile(r"\(PRICE_BAND 4009\)"))
        await expect(quantity).to_be_focused()
        await expect(quantity).not_to_have_attribute("aria-invalid", "true")
        await price.fill("187.30")
        await expect(price).not_to_have_attribute("aria-invalid", "true")
        await quantity.press("Enter")
        await expect(page.locator("#order-result")).to_contain_text("filled")
        # the trade's side in words, beside the colour
        await expect(page.locator("#tape tbody tr td.taker").first).to_have_text("buy")

        # a resting order, then the whole page by Tab from its start: each stop named, its
        # focus drawn (2 px, the page's own), in the page's order
        await page.get_by_role("button", name="bid 187.00: use this price").click()
        await quantity.fill("1")
        await page.get_by_role("button", name="Place order").click()
        await expect(page.locator("#open-orders tbody tr")).to_have_count(1)
        await page.evaluate("() => document.activeElement.blur()")
        stops = [stop for stop in await tab_stops(page, 25) if stop[0] != "BODY"]
        unnamed = [stop for stop in stops if stop[1] == ""]
        assert unnamed == [], "\n".join(map(str, stops))
        assert all(stop[2:] == ["solid", "2px"] for stop in stops), stops
        names = [stop[1] for stop in stops]
        start = names.index("Skip to order entry")  # the walk began at Place order: its cycle
        names = list(dict.fromkeys(names[start:] + names[:start]))  # one cycle
        resting = await page.locator("#open-orders tbody tr").get_attribute("data-order-id")
        order = [  # the book's levels after order entry (since session 33's review: the page's
            "Skip to order entry",  # order is one column's; on a desktop, down each column)
            "Log out",
            SYMBOL,
            "Buy",
            "Place order",
            "bid 187.00, your order rests here: use this price",
            f"Amend order {resting}",
            f"Cancel order {resting}",
        ]
        assert [name for name in names if name in order] == order, names
        assert await axe_violations(page) == []
        # the venue's refusal marks the price; the next result (a cancel's) clears the mark, the
        # line no longer saying what is wrong (before the review's fix it stayed, stale)
        await price.fill("999.00")
        await quantity.press("Enter")
        await expect(price).to_have_attribute("aria-invalid", "true")
        await page.get_by_role("button", name=f"Cancel order {resting}").click()
        await expect(page.locator("#order-result")).to_contain_text("canceled")
        await expect(price).not_to_have_attribute("aria-invalid", "true")
        # logged out by keyboard: the focus goes to the form's API key in its place
        await page.get_by_role("button", name="Log out").focus()
        await page.keyboard.press("Enter")
        await expect(page.get_by_role("textbox", name="API key")).to_be_focused()

    assert run_page(tmp_path, scenario) == []


# Where the focused element stands: its panel (its section's id, "header", else its own id),
# its top and left edges on the page (not the window: a stop scrolled into view keeps its place)
STOP_PLACE = """() => {
  const e = document.activeElement;
  const section = e.closest("section");
  const box = e.getBoundingClientRect();
  const panel = section ? section.id : e.closest("header") ? "header" : e.id || e.tagName;
  return [panel, Math.round(box.top + window.scrollY), Math.round(box.left + window.scrollX)];
}"""


async def tab_places(page: Page) -> list[list[Any]]:
    """Each stop of the Tab key from the page's start to its end, as `STOP_PLACE` says it."""
    await page.locator("#skip-link").focus()  # the first stop (after a click, Tab goes on)
    places = [await page.evaluate(STOP_PLACE)]
    for _ in range(80):  # bounded: the page has about 20 stops here
        await page.keyboard.press("Tab")
        place = await page.evaluate(STOP_PLACE)
        if place[0] == "BODY":  # past the last stop
            return places
        places.append(place)
    raise AssertionError(f"no end after 80 stops: {places}")


def panels_in_turn(places: list[list[Any]]) -> list[str]:
    """The panels the stops reach, each once, in the order first reached."""
    return list(dict.fromkeys(place[0] for place in places))


def test_tab_walks_the_panels_in_the_order_they_stand_in_one_column_and_on_a_desktop(
    tmp_path: Path,
) -> None:
    # Session 33's review (WCAG 2.4.3, 1.3.2): in one column CSS `order` showed order entry
    # and the account first while Tab went the instruments, the chart, the book, then up to
    # the form. The page's order is now one column's: at 640 px (200% zoom of a laptop) and
    # 390 px each stop stands below or beside the one before, the panels in turn the symbols,
    # order entry (naming its symbol), the market, the account. On a desktop, which looks as
    # before, Tab goes down each column: the symbols, order entry under them, the chart, the
    # book; at 1001 to 1399 px the form is under the chart, which has no stop. Before: the
    # book before order entry, as the page's order was.
    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        await resting_sell(venue, "10", "187.30")
        await expect(ladder_row(page, "ask", "187.30")).to_have_text("10.000000")
        await browser.log_on("taker")
        await expect(page.locator("#account")).to_have_text("3")
        await page.locator("#order-price").fill("180.00")
        await page.locator("#order-qty").fill("1")
        await page.get_by_role("button", name="Place order").click()
        await expect(page.locator("#open-orders tbody tr")).to_have_count(1)
        await expect(page.locator("#order-entry")).to_have_text(f"Order entry {SYMBOL}")
        panels = ["skip-link", "header", "instruments-panel", "trade-panel", "chart-panel"]
        panels += ["book-panel", "orders-panel"]  # (the chart's stop: its library's logo, a link)
        for width in (640, 390, 1400, 1130):
            await page.set_viewport_size({"width": width, "height": 800})
            await page.evaluate(TWO_FRAMES)
            places = await tab_places(page)
            assert panels_in_turn(places) == panels, (width, places)
            if width < 1001:  # one column: never up (2 px: a row's stops side by side)
                upward = [(a, b) for a, b in itertools.pairwise(places) if b[1] < a[1] - 2]
                assert upward == [], (width, upward)

    assert run_page(tmp_path, scenario) == []


# Each element focused from now on (its accessible name, else its id), in `window.focusins`
RECORD_FOCUSINS = """() => {
  window.focusins = [];
  const name = (e) => e.target.getAttribute("aria-label") || e.target.id;
  document.addEventListener("focusin", (e) => window.focusins.push(name(e)));
}"""


def test_a_focused_book_level_stays_focused_as_the_book_changes(tmp_path: Path) -> None:
    # The review: each book update rebuilt the ladder and focused the level's new button again,
    # which a screen reader announced each time. The rows are now kept by price: levels added
    # above and below it, and its own quantity changing, leave the same button focused, with
    # no focus event; its level gone, the focus goes to the level in its place.
    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        seller = await resting_sell(venue, "10", "187.30")
        await expect(ladder_row(page, "ask", "187.30")).to_have_text("10.000000")
        await page.get_by_role("button", name="ask 187.30: use this price").focus()
        await page.evaluate(RECORD_FOCUSINS)
        focused = await page.evaluate_handle("document.activeElement")
        for price in ("190.00", "187.20", "191.00"):
            await seller.place(SYMBOL, "sell", qty="1", price=price)
            await expect(ladder_row(page, "ask", price)).to_have_text("1.000000")
        await seller.place(SYMBOL, "sell", qty="2", price="187.30")
        await expect(ladder_row(page, "ask", "187.30")).to_have_text("12.000000")
        assert await page.evaluate("() => window.focusins") == []
        assert await page.evaluate("(button) => button === document.activeElement", focused)

        buyer = await venue.client("taker")
        await buyer.place(SYMBOL, "buy", qty="13", price="187.30")  # 187.20 and 187.30 gone
        await expect(page.locator("#ladder-asks tr[data-price='187.30']")).to_have_count(0)
        # the row in its place (the asks run from the highest down: 191.00, 190.00)
        name = "ask 190.00: use this price"
        await expect(page.get_by_role("button", name=name)).to_be_focused()

    errors = run_page(tmp_path, scenario)
    assert errors == []


def test_a_venue_back_without_a_symbol_drops_it_from_the_list(tmp_path: Path) -> None:
    """Market data back after a drop shows the instruments the venue lists now, each once: one
    it no longer lists goes, and the page followed it, the first listed is followed instead
    (session 36; main added the new list to the old one: the symbol stayed listed, chosen, its
    book and chart empty, its subscriptions refused in silence). The order typed for the symbol
    gone is cleared, and the result line says so: a Place order then trades nothing on the
    symbol followed instead (a review of session 36: a Market buy 2 typed for MSFTx-USD filled
    on AAPLx-USD, a sell 7 at 415.10 rested there)."""

    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        rows = page.locator("#instruments tbody tr")
        await expect(rows).to_have_count(6)
        await expect(page.locator("#selected-symbol")).to_have_text("MSFTx-USD")
        await browser.log_on("taker")
        await expect(page.locator("#account")).to_have_text("3")
        # a limit sell 7 at 415.10 typed, then a Market buy 2 (the price put aside)
        await page.check("input[name=side][value=sell]")
        await page.fill("#order-price", "415.10")
        await page.fill("#order-qty", "7")
        await page.check("input[name=side][value=buy]")
        await page.select_option("#order-kind", "market")
        await page.fill("#order-qty", "2")
        await venue.server.stop()
        await expect(page.locator("#market-status")).to_have_text("market data: reconnecting…")
        config = venue_config.load(SAMPLE_CONFIG)
        kept = tuple(entry for entry in config.instruments if entry.symbol != "MSFTx-USD")
        fresh = msgspec.structs.replace(config, instruments=kept)
        venue.server = VenueServer(fresh, tmp_path / "fresh")
        await venue.server.start("127.0.0.1", venue.port)
        await expect(page.locator("#market-status")).to_have_text("market data: live")
        await expect(rows).to_have_count(5)
        await expect(page.locator("#instruments tr[data-symbol='MSFTx-USD']")).to_have_count(0)
        await expect(page.locator("#selected-symbol")).to_have_text(SYMBOL)
        await expect(page.locator("#order-symbol")).to_have_text(SYMBOL)
        assert await page.evaluate("() => location.hash") == f"#{SYMBOL}"
        shown = await rows.evaluate_all("(rows) => rows.map((row) => row.dataset.symbol)")
        assert shown == sorted(set(shown)), shown
        result = page.locator("#order-result")
        gone = "MSFTx-USD is no longer listed: now AAPLx-USD; the order form cleared"
        await expect(result).to_have_text(gone)
        assert await page.input_value("#order-qty") == ""
        # the chosen symbol's book is followed on the venue now
        seller = await venue.client("alpha")
        await seller.place(SYMBOL, "sell", qty="5", price="187.30")
        await expect(ladder_row(page, "ask", "187.30")).to_have_text("5.000000")
        # logged on again: a Place order is sent, and trades nothing on AAPLx-USD
        await expect(page.locator("#place-button")).not_to_have_attribute("aria-disabled", "true")
        await page.click("#place-button")
        await expect(result).to_have_text("enter a quantity")
        await page.select_option("#order-kind", "limit")
        assert await page.input_value("#order-price") == ""
        await page.click("#place-button")
        await expect(result).to_have_text("enter a price")
        await expect(ladder_row(page, "ask", "187.30")).to_have_text("5.000000")
        assert not any('"order.place"' in frame for frame in browser.frames_sent)

    errors = run_page(tmp_path, scenario, path="/#MSFTx-USD")
    # while the venue is down, the browser may log the page's refused reconnects and REST reads
    down = ("WebSocket connection to", "ERR_CONNECTION_REFUSED")
    assert [e for e in errors if not any(said in e for said in down)] == []


def as_unlisting(message: str | bytes, drop: str) -> str | bytes | None:
    """A market data frame as a venue that no longer lists `drop` (a symbol, or "all") would
    send it: none of its pushes, the instruments list without it (a relay's filter)."""
    body = json.loads(message)
    if body.get("sym") is not None and (drop == "all" or body.get("sym") == drop):
        return None
    listed = body.get("result", {}).get("instruments")
    if isinstance(listed, list):
        body["result"]["instruments"] = (
            [] if drop == "all" else [i for i in listed if i["symbol"] != drop]
        )
    return json.dumps(body)


async def relayed_and_logged_on(browser: Browser, followed: str) -> None:
    """The page loaded again over the routes just set (its sockets relayed), the market data
    live, `followed` shown, and logged on as the taker (account 3)."""
    page = browser.page
    await page.reload()
    await expect(page.locator("#market-status")).to_have_text("market data: live")
    await expect(page.locator("#selected-symbol")).to_have_text(followed)
    await browser.log_on("taker")
    await expect(page.locator("#account")).to_have_text("3")


def test_an_amend_of_a_symbol_no_longer_listed_ends_saying_why(tmp_path: Path) -> None:
    """The market data connection back (the account's still up) lists no more the symbol of the
    order the form amends: the amend ends, the line says why, not `another symbol chosen`, the
    form is a new order's, its figures cleared, and the address names the symbol followed
    instead; so too while the amend sent awaits its answer, whose words then show (a review of
    session 36: the form kept the order's figures on AAPLx-USD; the address read `#null`).
    Playwright's routes relay the page's sockets: the market data's drops MSFTx-USD once told
    to, the account's holds the venue's frames while told to."""
    gone = "MSFTx-USD"

    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        unlist = asyncio.Event()
        hold = asyncio.Event()
        held: list[Any] = []
        markets: list[Any] = []  # the routes of the market data's sockets, in order
        trades: list[Any] = []  # the account's

        def relay_market(route: Any) -> None:
            server = route.connect_to_server()
            markets.append(route)

            def to_page(message: str | bytes) -> None:
                kept = as_unlisting(message, gone) if unlist.is_set() else message
                if kept is not None:
                    route.send(kept)

            server.on_message(to_page)

        def relay_trade(route: Any) -> None:
            server = route.connect_to_server()

            def to_page(message: str | bytes) -> None:
                # heartbeats pass: the page's watchdog gives a socket silent for 5 s up
                if hold.is_set() and json.loads(message).get("ch") != "heartbeat":
                    held.append(message)
                else:
                    route.send(message)

            server.on_message(to_page)
            trades.append(route)

        await page.route_web_socket(re.compile(r"/ws/public$"), relay_market)
        await page.route_web_socket(re.compile(r"/ws/trade$"), relay_trade)
        await relayed_and_logged_on(browser, gone)
        result = page.locator("#order-result")
        row = page.locator("#open-orders tbody tr")
        for placed in range(2):
            await browser.place("sell", "limit", qty="1", price="450.00")
            await expect(row).to_have_count(placed + 1)
        first, second = await row.evaluate_all("(rows) => rows.map((r) => r.dataset.orderId)")

        # the amend open, nothing sent: it ends, said why
        await page.get_by_role("button", name=f"Amend order {first}").click()
        await page.fill("#order-qty", "2")
        unlist.set()
        await markets[-1].close()
        cleared = f"{gone} is no longer listed: now {SYMBOL}; the order form cleared"
        await expect(result).to_have_text(f"order {first} not amended: {cleared}")
        await expect(page.locator("#selected-symbol")).to_have_text(SYMBOL)
        await expect(page.locator("#place-button")).to_have_text("Place order")
        await expect(page.locator("#amend-stop")).to_be_hidden()
        await expect(page.locator("#order-kind")).to_be_enabled()
        assert await page.input_value("#order-qty") == ""
        assert await page.input_value("#order-price") == ""
        assert await page.evaluate("() => location.hash") == f"#{SYMBOL}"
        assert not any('"order.amend"' in frame for frame in browser.frames_sent)

        # the amend sent, its answer held: it ends too, the address never `#null`; the answer
        # then shows
        unlist.clear()
        await markets[-1].close()
        await expect(page.locator(f"#instruments tr[data-symbol='{gone}']")).to_have_count(1)
        await page.get_by_role("button", name=f"Amend order {second}").click()
        await expect(page.locator("#selected-symbol")).to_have_text(gone)
        await page.fill("#order-qty", "3")
        hold.set()
        await page.click("#place-button")
        await expect(result).to_have_text(f"amending order {second}: awaiting the venue's answer")
        unlist.set()
        await markets[-1].close()
        await expect(result).to_have_text(f"order {second} not amended: {cleared}")
        assert await page.evaluate("() => location.hash") == f"#{SYMBOL}"
        await expect(page.locator("#place-button")).to_have_text("Place order")
        hold.clear()
        for message in held:
            trades[-1].send(message)
        await expect(result).to_contain_text(f"order {second} amended, new")
        await expect(row.filter(has_text="3.000000")).to_have_count(1)
        await expect(page.locator("#place-button")).not_to_have_attribute("aria-disabled", "true")

    errors = run_page(tmp_path, scenario, path=f"/#{gone}")
    assert [e for e in errors if "WebSocket" not in e] == []


def test_an_amend_left_for_another_symbol_or_by_a_drop_gives_the_form_back(tmp_path: Path) -> None:
    """An amend ended by another symbol chosen (a click in the list, the address `#SYMBOL`) or
    by the account's connection dropping puts back the order form as it was before the amend
    (its side, type, price and quantity, a price a market order put aside too), and the line
    says so: the amended order's terms are not left in it for a new order (a review of session
    36: a sell 1 at 450.00 amended, MSFTx-USD clicked, Place order rested a sell 1 MSFTx-USD at
    450.00 the trader never typed; after a drop one click duplicated the resting order). The
    account's socket is relayed by a Playwright route, to drop it."""

    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        trades: list[Any] = []  # the routes of the account's sockets, in order

        def relay_trade(route: Any) -> None:
            route.connect_to_server()  # no handlers: frames pass both ways
            trades.append(route)

        await page.route_web_socket(re.compile(r"/ws/trade$"), relay_trade)
        await browser.log_on("taker")
        await expect(page.locator("#account")).to_have_text("3")
        result = page.locator("#order-result")
        place = page.locator("#place-button")
        row = page.locator("#open-orders tbody tr")
        await browser.place("sell", "limit", qty="1", price="450.00")
        await expect(row).to_have_count(1)
        order_id = await row.get_attribute("data-order-id")
        amend = page.get_by_role("button", name=f"Amend order {order_id}")

        async def form() -> list[Any]:
            side = page.locator("input[name=side]:checked")
            figures = [await page.input_value(f"#order-{name}") for name in ("price", "qty")]
            kind = await page.input_value("#order-kind")
            return [*figures, await side.get_attribute("value"), kind]

        # the trader's next order typed, not placed
        await page.check("input[name=side][value=buy]")
        await page.select_option("#order-kind", "ioc")
        await page.fill("#order-price", "180.00")
        await page.fill("#order-qty", "3")
        typed = ["180.00", "3", "buy", "ioc"]
        back = "the order form as before the amend"
        for leave in ("click", "address"):
            await amend.click()
            await expect(place).to_have_text(f"Amend order {order_id}")
            await expect(page.locator("#selected-symbol")).to_have_text(SYMBOL)
            if leave == "click":
                await page.click("#instruments tr[data-symbol='MSFTx-USD'] a")
            else:
                await page.evaluate("() => { location.hash = '#MSFTx-USD'; }")
            await expect(page.locator("#selected-symbol")).to_have_text("MSFTx-USD")
            said = f"order {order_id} not amended: another symbol chosen; {back}"
            await expect(result).to_have_text(said)
            await expect(place).to_have_text("Place order")
            assert await form() == typed, leave

        # back on the order's symbol (figures typed for another are not given back onto it:
        # `test_an_amend_on_another_symbol_gives_back_no_figures_typed_for_the_first`), a
        # market sell typed (its price put aside): the account's connection drops mid-amend
        await page.click(f"#instruments tr[data-symbol='{SYMBOL}'] a")
        await expect(page.locator("#selected-symbol")).to_have_text(SYMBOL)
        await page.check("input[name=side][value=sell]")
        await page.fill("#order-price", "181.00")
        await page.select_option("#order-kind", "market")
        await page.fill("#order-qty", "2")
        await amend.click()
        await expect(place).to_have_text(f"Amend order {order_id}")
        await trades[-1].close()
        said = f"order {order_id} not amended: the account's connection dropped; {back}"
        await expect(result).to_have_text(said)
        await expect(place).to_have_text("Place order")
        assert await form() == ["", "2", "sell", "market"]
        await page.select_option("#order-kind", "limit")
        assert await page.input_value("#order-price") == "181.00"
        # logged on again by itself: the line kept, one order.place sent in all
        said_again = page.locator("#logon-status[aria-live='polite']")
        await expect(said_again).to_have_text(re.compile(LOGGED_ON_AGAIN))
        await expect(place).not_to_have_attribute("aria-disabled", "true")
        await expect(result).to_have_text(said)
        assert sum('"order.place"' in frame for frame in browser.frames_sent) == 1

    errors = run_page(tmp_path, scenario)
    assert [e for e in errors if "WebSocket" not in e] == []


def test_a_plain_reconnect_of_the_market_data_keeps_the_order_form(tmp_path: Path) -> None:
    """The market data's socket dropped and back, the symbol followed still listed: the order
    typed (a sell 7, a Market order, 187.30 put aside) stays as typed, nothing said of it (the
    clearing of an order typed for a symbol gone is for that alone)."""

    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        markets: list[Any] = []

        def relay_market(route: Any) -> None:
            route.connect_to_server()
            markets.append(route)

        await page.route_web_socket(re.compile(r"/ws/public$"), relay_market)
        await page.reload()
        await expect(page.locator("#market-status")).to_have_text("market data: live")
        await page.check("input[name=side][value=sell]")
        await page.fill("#order-price", "187.30")
        await page.fill("#order-qty", "7")
        await page.select_option("#order-kind", "market")
        result = await page.locator("#order-result").text_content()
        before = browser.market_sockets
        await markets[-1].close()
        await expect(page.locator("#market-status")).to_have_text("market data: reconnecting…")
        await expect(page.locator("#market-status")).to_have_text("market data: live")
        assert browser.market_sockets > before
        await expect(page.locator("#selected-symbol")).to_have_text(SYMBOL)
        assert await page.input_value("#order-qty") == "7"
        assert await page.locator("input[name=side][value=sell]").is_checked()
        assert await page.input_value("#order-kind") == "market"
        await expect(page.locator("#order-result")).to_have_text(result or "")
        await page.select_option("#order-kind", "limit")
        assert await page.input_value("#order-price") == "187.30"

    errors = run_page(tmp_path, scenario)
    assert [e for e in errors if "WebSocket" not in e] == []


def test_a_symbol_chosen_while_the_market_data_reconnects_stays_and_none_listed_is_said(
    tmp_path: Path,
) -> None:
    """The market data back without the symbol followed: the list is applied at once, and a
    symbol the trader chooses before the venue answers the page's subscriptions stays chosen,
    its order as typed (a review of session 36: the first listed was followed over it after
    the answers, its figures cleared). The venue back listing nothing: the heading, the
    instrument's rules, the price's label and the chart's caption no longer name the symbol
    gone, and Place order says there is no instrument to trade (before: silent). Playwright's
    route relays the market data: it drops MSFTx-USD (or all) once told to, and holds the
    page's subscribe to `instruments` while told to."""
    gone = "MSFTx-USD"

    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        mode: dict[str, Any] = {"unlist": None, "hold": False}
        held: list[Any] = []
        markets: list[Any] = []

        def relay_market(route: Any) -> None:
            server = route.connect_to_server()
            markets.append(route)

            def to_server(message: str | bytes) -> None:
                if mode["hold"] and '"ch":"instruments"' in str(message).replace(" ", ""):
                    held.append((server, message))
                else:
                    server.send(message)

            def to_page(message: str | bytes) -> None:
                drop = mode["unlist"]
                kept = message if drop is None else as_unlisting(message, drop)
                if kept is not None:
                    route.send(kept)

            route.on_message(to_server)
            server.on_message(to_page)

        await page.route_web_socket(re.compile(r"/ws/public$"), relay_market)
        await relayed_and_logged_on(browser, gone)
        result = page.locator("#order-result")
        rows = page.locator("#instruments tbody tr")
        # the list applied, the subscriptions' answers not yet: SPYx-USD chosen, an order typed
        mode.update(unlist=gone, hold=True)
        await markets[-1].close()
        await expect(rows).to_have_count(5)
        await page.click("#instruments tr[data-symbol='SPYx-USD'] a")
        await expect(page.locator("#selected-symbol")).to_have_text("SPYx-USD")
        await page.check("input[name=side][value=buy]")
        await page.fill("#order-price", "1.00")
        await page.fill("#order-qty", "3")
        mode["hold"] = False
        for server, message in held:
            server.send(message)
        await expect(page.locator("#market-status")).to_have_text("market data: live")
        await browser.heard()  # anything the page did on its answers is done
        await expect(page.locator("#selected-symbol")).to_have_text("SPYx-USD")
        assert await page.evaluate("() => location.hash") == "#SPYx-USD"
        assert [await page.input_value(f"#order-{f}") for f in ("price", "qty")] == ["1.00", "3"]
        assert "SPYx-USD" not in (await result.text_content() or "")

        # back listing nothing
        mode["unlist"] = "all"
        await markets[-1].close()
        await expect(rows).to_have_count(0)
        none = "SPYx-USD is no longer listed, nor any other; the order form cleared"
        await expect(result).to_have_text(none)
        for shown in ("#selected-symbol", "#order-symbol"):
            await expect(page.locator(shown)).to_have_text("—")
        await expect(page.locator("#instrument-info")).to_have_text("")
        await expect(page.locator("#price-label")).to_have_text("price")
        await expect(page.locator("#qty-label")).to_have_text("quantity")
        await expect(page.locator("#candles-table caption")).to_have_text("")
        await page.fill("#order-qty", "1")
        await page.fill("#order-price", "1.00")
        await page.click("#place-button")
        await expect(result).to_have_text("no order placed: the venue lists no instrument to trade")
        assert not any('"order.place"' in frame for frame in browser.frames_sent)

    errors = run_page(tmp_path, scenario, path=f"/#{gone}")
    assert [e for e in errors if "WebSocket" not in e] == []


def test_a_page_asleep_past_midnight_utc_dates_todays_rows_once_it_wakes(tmp_path: Path) -> None:
    """A laptop asleep over midnight (UTC) wakes with its clock past it and its timers late: the
    page's redraw at midnight (a timer) has not run. The page sees the day change on the next
    frame it hears, or as it is shown again (`visibilitychange`), and dates today's rows then
    (session 36; main waited for the timer, late by the sleep: yesterday's rows read as today's).
    Playwright's clock, paused, is set an hour past midnight: no timer of the page's runs."""

    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        midnight_ms, times = await a_fill_shown_a_minute_before_midnight(venue, browser)
        now_ms = await page.evaluate("() => Date.now()")
        await page.clock.pause_at((now_ms + 100) / 1000)
        await page.clock.set_system_time((midnight_ms + 3_600_000) / 1000)
        # frames heard on the clock set (the sockets' watchdogs see no silence once resumed)
        await browser.heard()
        await browser.heard()
        await page.clock.resume()
        for shown in times.values():
            await expect(shown).to_have_text([re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")])
        await expect(page.locator("#market-status")).to_have_text("market data: live")

    assert run_page(tmp_path, scenario) == []


def test_a_page_shown_again_past_midnight_utc_dates_todays_rows_with_nothing_heard(
    tmp_path: Path,
) -> None:
    """As the test above, but the page hears nothing as it wakes (it goes through the relay,
    frozen, and its new connections are never answered): shown again (`visibilitychange`), it
    reads the clock and dates today's rows (session 36; main waited for the late timer)."""

    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        relay = FreezingRelay(venue.port)
        try:
            url = f"http://127.0.0.1:{await relay.start()}/"
            midnight_ms, times = await a_fill_shown_a_minute_before_midnight(venue, browser, url)
            await browser.records_read()
            await browser.rest_settled()
            relay.hold_upgrades = True
            relay.freeze()
            now_ms = await page.evaluate("() => Date.now()")
            await page.clock.pause_at((now_ms + 100) / 1000)
            await page.clock.set_system_time((midnight_ms + 3_600_000) / 1000)
            await page.evaluate("() => document.dispatchEvent(new Event('visibilitychange'))")
            await page.clock.resume()
            dated = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
            for shown in times.values():
                await expect(shown).to_have_text([dated])
        finally:
            await relay.close()

    errors = run_page(tmp_path, scenario)
    # the sockets given up as silent as the clock resumes, their new ones never answered
    assert [e for e in errors if "WebSocket" not in e] == []


async def a_fill_shown_a_minute_before_midnight(
    venue: Venue, browser: Browser, url: str | None = None
) -> tuple[int, dict[str, Any]]:
    """The page's clock (Playwright's) installed a minute before the next UTC midnight, the
    page loaded again (from `url`, else where it is) so its timers run on that clock, a trade
    of the taker's shown: the next midnight in ms, and the first cells (times) of each of the
    `TIMED` tables, each shown as a time of day."""
    page = browser.page
    midnight_ms = (now_us() // 1000 // DAY_MS + 1) * DAY_MS
    await page.clock.install(time=(midnight_ms - 60_000) / 1000)
    await (page.reload() if url is None else page.goto(url))
    await expect(page.locator("#market-status")).to_have_text("market data: live")
    await resting_sell(venue, "1", "187.30")
    taker = await venue.client("taker")
    await taker.place(SYMBOL, "buy", qty="1", price="187.30", tif="ioc")
    await browser.log_on("taker")
    await expect(page.locator("#account")).to_have_text("3")
    times = {table: page.locator(f"#{table} tbody tr td:first-child") for table in TIMED}
    for shown in times.values():
        await expect(shown).to_have_text([re.compile(r"^\d{2}:\d{2}:\d{2}$")])
    return midnight_ms, times


async def balances_are_the_venues(page: Page, client: VenueClient) -> None:
    """Each balance the page shows is the venue's, to the last unit, and no other is shown."""
    rows = (await client.request("balances", {}))["balances"]
    await expect(page.locator("#balances tbody tr")).to_have_count(len(rows))
    for row in rows:
        shown = page.locator(f"#balances tr[data-asset='{row['asset']}']")
        for column in ("total", "available", "held"):
            await expect(shown.locator(f"td.{column}")).to_have_text(row[column])


def test_fractional_shares_and_a_bill_take_only_the_figures_their_instrument_allows(
    tmp_path: Path,
) -> None:
    """A price off the tick, a size off the step or below the minimum: said in the page's words
    with what is allowed, and not sent (session 36; main sent them and showed the wire's,
    `BAD_PRECISION (1004): qty '0.0000001' has more than 6 decimals - at `params.qty``,
    `INVALID_QTY_STEP (4002): qty is not a multiple of the step - at `params.qty`` with no
    step). A bill's sell above par is sent, as the venue takes it. A fractional bid placed,
    amended and canceled, a bill bought: every figure the venue's."""

    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        await browser.log_on("taker")
        await expect(page.locator("#account")).to_have_text("3")
        trader = await venue.client("taker")
        result = page.locator("#order-result")
        sent = lambda method: sum(f'"{method}"' in f for f in browser.frames_sent)  # noqa: E731
        for qty, price, said in (
            (
                "0.0000001",
                "187.30",
                'the quantity of AAPLx-USD is a multiple of its step, 0.000001: not "0.0000001"',
            ),
            (
                "1",
                "187.305",
                'the price of AAPLx-USD is a multiple of its tick, 0.01: not "187.305"',
            ),
        ):
            await browser.place("buy", "limit", qty=qty, price=price)
            await expect(result).to_have_text(said)
        assert sent("order.place") == 0

        # what the venue refuses, said in words with what it takes, the code after (session
        # 36; main: the wire's, `BELOW_MIN_NOTIONAL (4004): notional is below the minimum
        # (min_notional 1.000000, notional 0.187300, valued_at 187.30)`)
        least = "an order of AAPLx-USD is worth at least 1.000000 USD (BELOW_MIN_NOTIONAL 4004)"
        await browser.place("buy", "limit", qty="0.001", price="187.30")
        await expect(result).to_have_text(
            f"order refused: the order is worth 0.187300 USD at 187.30, and {least}"
        )
        await browser.place("buy", "market", qty="0.001")  # valued at the reference price
        await expect(result).to_have_text(
            f"order refused: the order is worth 0.187250 USD at the reference price, 187.25, and"
            f" {least}"
        )
        assert sent("order.place") == 2
        # the instrument's caps per order, and the most the venue accounts for one order
        admin = await venue.client("admin")
        caps = {"symbol": SYMBOL, "max_qty": "10", "max_notional": "1000"}
        await admin.request("admin.set_order_caps", caps)
        await browser.place("buy", "limit", qty="11", price="187.30")
        await expect(result).to_have_text(
            "order refused: the quantity is 11.000000, and an order of AAPLx-USD is at most"
            " 10.000000 (ABOVE_MAX_QTY 4013)"
        )
        await browser.place("buy", "limit", qty="6", price="187.30")
        await expect(result).to_have_text(
            "order refused: the order is worth 1123.800000 USD at 187.30, and an order of"
            " AAPLx-USD is worth at most 1000.000000 USD (ABOVE_MAX_NOTIONAL 4014)"
        )
        await admin.request("admin.set_order_caps", {"symbol": SYMBOL})
        await browser.place("sell", "limit", qty="4000000000", price="187.30")
        bound = "the venue accounts for one order of AAPLx-USD at most 9223372036.8547758 USD"
        await expect(result).to_have_text(
            "order refused: what the order may trade is worth 749200000000.000000 USD, at 187.30,"
            f" the highest price it may trade at, and {bound} (NOTIONAL_OUT_OF_RANGE 4015)"
        )
        assert sent("order.place") == 5
        # past what the venue counts at all (2^62 units): said here, not sent (main: sent,
        # `BAD_PARAM (1003): qty: '99999999999999999999' is too large - at `params.qty``)
        await browser.place("buy", "limit", qty="9" * 20, price="187.30")
        await expect(result).to_have_text(
            'the quantity of AAPLx-USD is at most 4611686018427.387904: not "99999999999999999999"'
        )
        await browser.place("sell", "limit", qty="1", price="9" * 20)
        await expect(result).to_have_text(
            'the price of AAPLx-USD is at most 46116860184273879.04: not "99999999999999999999"'
        )
        assert sent("order.place") == 5

        await browser.place("buy", "post_only", qty="0.1234570", price="180.00")
        row = page.locator("#open-orders tbody tr")
        await expect(row.locator("td").nth(4)).to_have_text("0.123457")
        await expect(ladder_row(page, "bid", "180.00")).to_have_text("0.123457")
        await balances_are_the_venues(page, trader)
        order_id = await row.get_attribute("data-order-id")
        await page.get_by_role("button", name=f"Amend order {order_id}").click()
        await page.fill("#order-qty", "0.2500001")
        await page.click("#place-button")
        await expect(result).to_have_text(
            'the quantity of AAPLx-USD is a multiple of its step, 0.000001: not "0.2500001"'
        )
        assert sent("order.amend") == 0
        await page.fill("#order-qty", "0.25")
        await page.click("#place-button")
        await expect(result).to_contain_text(f"order {order_id} amended, new")
        await expect(row.locator("td").nth(4)).to_have_text("0.250000")
        await expect(ladder_row(page, "bid", "180.00")).to_have_text("0.250000")
        await balances_are_the_venues(page, trader)
        # an amend's bound counts what the order traded too: said so (session 36's review)
        await page.get_by_role("button", name=f"Amend order {order_id}").click()
        await page.fill("#order-qty", "4000000000")
        await page.click("#place-button")
        await expect(result).to_have_text(
            "amend refused: what the order has traded and may trade is worth 720000000000.000000"
            " USD, its rest at 180.00, the highest price it may trade at, and"
            f" {bound} (NOTIONAL_OUT_OF_RANGE 4015)"
        )
        await page.click("#amend-stop")

        await page.click(f"#instruments tr[data-symbol='{BILL}'] a")
        await expect(page.locator("#selected-symbol")).to_have_text(BILL)
        step = f"the face value of {BILL} is a multiple of its step, 100: not "
        tick = f"the price per 100 of face of {BILL} is a multiple of its tick, 0.000001: not "
        for side, qty, price, said in (
            ("buy", "150", "98.700000", f'{step}"150"'),
            ("buy", "100.5", "98.700000", f'{step}"100.5"'),
            (
                "buy",
                "50",
                "98.700000",
                f'the face value of {BILL} is at least 100, its minimum: not "50"',
            ),
            ("buy", "100", "98.7000001", f'{tick}"98.7000001"'),
            ("buy", "100", "0", 'the price is a number above zero: not "0"'),
        ):
            await browser.place(side, "limit", qty=qty, price=price)
            await expect(result).to_have_text(said)
        assert sent("order.place") == 6
        await browser.place("buy", "limit", qty="100", price="99.900000")  # above the band
        await expect(result).to_have_text(
            f"order refused: the price is outside the band of {BILL}, where a buy is priced at"
            " most 99.663475 and a sell at least 97.689941 per 100 of face (PRICE_BAND 4009)"
        )
        await browser.place("sell", "limit", qty="3000000", price="98.900000")
        asset = BILL.removesuffix("-USD")
        await expect(result).to_have_text(
            f"order refused: it needs 3000000 {asset} available, and the account has 2000000"
            f" {asset} available (INSUFFICIENT_BALANCE 4005)"
        )

        seller = await venue.client("alpha")
        await seller.place(BILL, "sell", qty="1000", price="98.700000")
        await expect(ladder_row(page, "ask", "98.700000")).to_have_text("1000")
        await browser.place("buy", "limit", qty="200", price="98.700000")
        await expect(result).to_contain_text("filled 200 of 200, average price 98.700000 per 100")
        fill = page.locator("#fills tbody tr").first
        await expect(fill.locator("td.qty")).to_have_text("200")
        await expect(fill.locator("td.price")).to_have_text("98.700000 /100")
        await expect(ladder_row(page, "ask", "98.700000")).to_have_text("800")
        await balances_are_the_venues(page, trader)

        await page.get_by_role("button", name=f"Cancel order {order_id}").click()
        await expect(row).to_have_count(0)
        await balances_are_the_venues(page, trader)

        # a bill's sell above par, placed and re-priced from the page: the venue takes it (only
        # a bill's reference price is bounded by par; a sell has no upper band) and so does the
        # page (session 36's review: the page refused it, `at most 100, the par it pays at
        # maturity`, and an ask above par placed elsewhere could not be re-priced from it)
        await browser.place("sell", "limit", qty="100", price="100.5")
        await expect(result).to_contain_text("new")
        await expect(row).to_have_count(1)
        own = await row.get_attribute("data-order-id")
        await expect(row.locator("td").nth(3)).to_have_text("100.500000 /100")
        await page.get_by_role("button", name=f"Amend order {own}").click()
        await page.fill("#order-price", "100.400000")
        await page.click("#place-button")
        await expect(result).to_contain_text(f"order {own} amended, new")
        await expect(row.locator("td").nth(3)).to_have_text("100.400000 /100")
        await page.get_by_role("button", name=f"Cancel order {own}").click()
        await expect(row).to_have_count(0)
        # placed elsewhere: its size amended from the page, the price left as it is
        above = await trader.place(BILL, "sell", qty="100", price="100.500000")
        await page.get_by_role("button", name=f"Amend order {above['order_id']}").click()
        await page.fill("#order-qty", "200")
        await page.click("#place-button")
        await expect(result).to_contain_text(f"order {above['order_id']} amended, new")
        await expect(row.locator("td").nth(4)).to_have_text("200")

    assert run_page(tmp_path, scenario) == []


def test_an_amend_down_to_what_filled_is_taken_below_the_instruments_minimum(
    tmp_path: Path,
) -> None:
    """An amend's new total down to what has filled completes the order, which the venue takes
    below the instrument's minimum: the page's own check of the minimum (session 36) lets it
    through, and still says the minimum of a total above what filled."""

    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        admin = await venue.client("admin")
        listing = {
            "symbol": "AAPLx-LOT",
            "kind": "equity",
            "base": "AAPLx",
            "quote": "USD",
            "tick": "0.01",
            "step": "0.000001",
            "min_qty": "1",
            "min_notional": "1",
            "band_pct": "10",
            "reference_price": "187.25",
        }
        await admin.request("admin.list_instrument", listing)
        seller = await venue.client("alpha")
        await seller.place("AAPLx-LOT", "sell", qty="1.3", price="187.30")
        behind = await seller.place("AAPLx-LOT", "sell", qty="5", price="187.30")
        taker = await venue.client("taker")
        await taker.place("AAPLx-LOT", "buy", qty="1.5", price="187.30", tif="ioc")
        await page.goto(f"http://127.0.0.1:{venue.port}/#AAPLx-LOT")
        await page.reload()  # the listing, made after the page opened, in its first list
        await expect(page.locator("#selected-symbol")).to_have_text("AAPLx-LOT")
        await browser.log_on("alpha")
        await expect(page.locator("#account")).to_have_text("1")
        order_id = behind["order_id"]
        await page.get_by_role("button", name=f"Amend order {order_id}").click()
        result = page.locator("#order-result")
        await page.fill("#order-qty", "0.5")  # above what filled (0.2), below the minimum
        await page.click("#place-button")
        await expect(result).to_have_text(
            'the quantity of AAPLx-LOT is at least 1.000000, its minimum: not "0.5"'
        )
        await page.fill("#order-qty", "0.2")
        await page.click("#place-button")
        await expect(result).to_contain_text(f"order {order_id} amended, filled")
        await expect(page.locator("#open-orders tbody tr")).to_have_count(0)

    assert run_page(tmp_path, scenario) == []


async def penny_and_dear_listed(venue: Venue, page: Page) -> Any:
    """AAPLx-PENNY (at 0.01: one order holds billions of shares within the venue's bound on
    an order's value) and AAPLx-DEAR (at 90071992547409.92: past floating point's whole
    units) listed, accounts 1 and 2 funded, alpha's two penny asks resting (3000000000.706898
    at 0.01, 818847614.847480 at 0.02), and the page showing AAPLx-PENNY: alpha's client."""
    admin = await venue.client("admin")
    listing = {
        "symbol": "AAPLx-PENNY",
        "kind": "equity",
        "base": "AAPLx",
        "quote": "USD",
        "tick": "0.01",
        "step": "0.000001",
        "min_qty": "0.000001",
        "min_notional": "0.01",
        "band_pct": "50",
        "reference_price": "0.01",
    }
    await admin.request("admin.list_instrument", listing)
    dear = {**listing, "symbol": "AAPLx-DEAR", "reference_price": "90071992547409.92"}
    await admin.request("admin.list_instrument", dear)
    for asset, amount in (("AAPLx", "5000000000"), ("USD", "1000000000")):
        reserves = {"asset": asset, "amount": amount, "as_of": now_us()}
        await admin.request("admin.attest_reserves", reserves)
    await admin.request("admin.deposit", {"account": 1, "asset": "AAPLx", "amount": "4000000000"})
    for account in (1, 2):
        deposit = {"account": account, "asset": "USD", "amount": "100000000"}
        await admin.request("admin.deposit", deposit)
    seller = await venue.client("alpha")
    await seller.place("AAPLx-PENNY", "sell", qty="3000000000.706898", price="0.01")
    await seller.place("AAPLx-PENNY", "sell", qty="818847614.847480", price="0.02")
    await page.goto(f"http://127.0.0.1:{venue.port}/#AAPLx-PENNY")
    await page.reload()  # the listings, made after the page opened, in its first list
    await expect(page.locator("#selected-symbol")).to_have_text("AAPLx-PENNY")
    return seller


def test_the_ladders_totals_and_spread_are_exact_to_the_last_unit(tmp_path: Path) -> None:
    """The book's total column sums the levels' quantities exactly: in floating point, asks of
    3000000000.706898 and 818847614.847480 summed to 3818847615.554379, a unit off; so is the
    spread, 0.03 between 90071992547409.93 and .91 (session 36: both in whole units). A penny
    stock listed for the one, so that one order can hold that many shares within the venue's
    bound on an order's value, and a dear one for the other."""

    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        seller = await penny_and_dear_listed(venue, page)
        totals = page.locator("#ladder-asks tr td:nth-child(3)")
        await expect(totals).to_have_text(["3818847615.554378", "3000000000.706898"])

        await seller.place("AAPLx-DEAR", "sell", qty="0.000001", price="90071992547409.93")
        await seller.place("AAPLx-DEAR", "buy", qty="0.000001", price="90071992547409.91")
        await page.goto(f"http://127.0.0.1:{venue.port}/#AAPLx-DEAR")
        await page.reload()
        await expect(page.locator("#selected-symbol")).to_have_text("AAPLx-DEAR")
        await expect(page.locator("#ladder-asks tr")).to_have_count(1)
        await expect(page.locator("#ladder-bids tr")).to_have_count(1)
        await expect(page.locator("#spread")).to_have_text("spread 0.02")
        # a trade at .93: the chart's text alternative reads the candle's figures as the venue
        # sent them (main: 90071992547409.94, the nearest floating point number's)
        buyer = await venue.client("beta")
        await buyer.place("AAPLx-DEAR", "buy", qty="0.000001", price="90071992547409.93", tif="ioc")
        read = page.locator("#candles-table tbody tr").first.locator("td.num")
        await expect(read).to_have_text(["90071992547409.93"] * 4)

    assert run_page(tmp_path, scenario) == []


def test_every_end_of_an_amend_gives_the_form_back_for_a_new_order(tmp_path: Path) -> None:
    """However an amend ends, the order form is put back as it was before it began, and the
    line says so: Back to a new order, Escape, the amend done, the order filled meanwhile, a
    logoff (session 37; before, only another symbol chosen or a drop did: the others left the
    amended order's price and quantity in the form, its type back to Limit (GTC), and a click
    on Place order rested them as a new order the trader never typed)."""

    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        await browser.log_on("taker")
        await expect(page.locator("#account")).to_have_text("3")
        result = page.locator("#order-result")
        place = page.locator("#place-button")
        row = page.locator("#open-orders tbody tr")
        back = "the order form as before the amend"

        async def form() -> list[Any]:
            side = page.locator("input[name=side]:checked")
            figures = [await page.input_value(f"#order-{name}") for name in ("price", "qty")]
            kind = await page.input_value("#order-kind")
            return [*figures, await side.get_attribute("value"), kind]

        async def placed_and_typed(price: str) -> str:
            # a post-only bid placed, then the trader's next order typed, not placed
            await browser.place("buy", "post_only", qty="2", price=price)
            order = row.filter(has=page.locator("td.price", has_text=price))
            await expect(order).to_have_count(1)
            await page.check("input[name=side][value=sell]")
            await page.select_option("#order-kind", "ioc")
            await page.fill("#order-price", "")
            await page.fill("#order-qty", "5")
            return str(await order.get_attribute("data-order-id"))

        async def amending(order_id: str) -> None:
            await page.get_by_role("button", name=f"Amend order {order_id}").click()
            await expect(place).to_have_text(f"Amend order {order_id}")
            assert (await form())[:2] != ["", "5"]

        typed = ["", "5", "sell", "ioc"]
        first = await placed_and_typed("180.00")
        await amending(first)
        await page.click("#amend-stop")
        await expect(result).to_have_text(f"order {first} not amended: back to a new order; {back}")
        assert await form() == typed
        await amending(first)
        await page.press("#order-price", "Escape")
        await expect(place).to_have_text("Place order")
        assert await form() == typed

        # amended: the form as before, said after the answer
        await amending(first)
        await page.fill("#order-price", "181.00")
        await place.click()
        await expect(result).to_contain_text(f"order {first} amended, new")
        await expect(result).to_contain_text(back)
        await expect(place).to_have_text("Place order")
        assert await form() == typed

        # filled while its amend is typed
        await amending(first)
        seller = await venue.client("alpha")
        await seller.place(SYMBOL, "sell", qty="2", price="181.00")
        said = f"order {first} filled: nothing left to amend; {back}"
        await expect(result).to_have_text(said)
        assert await form() == typed

        # logged off while amending, and on again: a new order's form
        second = await placed_and_typed("179.00")
        await amending(second)
        await page.click("#logout-button")
        await expect(page.locator("#logon-button")).to_be_visible()
        said = f"order {second} not amended: logged off; {back}; log on to trade"
        await expect(result).to_have_text(said)
        assert await form() == typed
        await browser.log_on("taker")
        await expect(page.locator("#account")).to_have_text("3")
        await expect(place).to_have_text("Place order")
        assert await form() == typed
        assert sum('"order.place"' in frame for frame in browser.frames_sent) == 2

    assert run_page(tmp_path, scenario) == []


# Every text the page draws on its depth chart's canvas, the newest drawing's (a canvas's text
# is pixels: recorded as drawn)
DEPTH_TEXT = """(() => {
  window.depthText = [];
  const fillText = CanvasRenderingContext2D.prototype.fillText;
  const clearRect = CanvasRenderingContext2D.prototype.clearRect;
  CanvasRenderingContext2D.prototype.clearRect = function (...args) {
    if (this.canvas.id === "depth") window.depthText = [];
    return clearRect.apply(this, args);
  };
  CanvasRenderingContext2D.prototype.fillText = function (text, ...args) {
    if (this.canvas.id === "depth") window.depthText.push(String(text));
    return fillText.call(this, text, ...args);
  };
})();"""


def test_the_depth_chart_and_the_last_close_show_the_venues_figures_to_the_last_unit(
    tmp_path: Path,
) -> None:
    """The depth chart's axis reads the book's outer prices and each side's total as the venue
    sent them, summed exactly, and says them to a screen reader; the chart's `data-last-close`
    is the candle's close as sent; a dear book's levels a tick apart sort by their decimals
    (session 37; before, the axis read the prices less and more a margin as floating point
    numbers, 89981920554862.34 for a bid at 90071992547409.91, no quantity at all, the last
    close 90071992547409.94 for .93, and two asks of .93 and .94, the same floating point
    number, sorted as they came: the ladder showed .94 best, its checksum failed and the book
    was resubscribed)."""

    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        seller = await penny_and_dear_listed(venue, page)
        depth = page.locator("#depth")
        said = "depth chart: no bids; asks from 0.01 up to 0.02, 3818847615.554378 in all"
        await expect(depth).to_have_attribute("aria-label", said)
        drawn = await page.evaluate("() => window.depthText")
        assert drawn == ["asks 3818847615.554378", "0.01", "0.02"], drawn

        await seller.place("AAPLx-DEAR", "sell", qty="0.000001", price="90071992547409.94")
        await page.goto(f"http://127.0.0.1:{venue.port}/#AAPLx-DEAR")
        await expect(page.locator("#selected-symbol")).to_have_text("AAPLx-DEAR")
        await expect(page.locator("#ladder-asks tr")).to_have_count(1)
        await seller.place("AAPLx-DEAR", "sell", qty="0.000002", price="90071992547409.93")
        await seller.place("AAPLx-DEAR", "buy", qty="0.000001", price="90071992547409.91")
        await expect(page.locator("#ladder-bids tr")).to_have_count(1)
        asks = page.locator("#ladder-asks tr td.price")
        await expect(asks).to_have_text(["90071992547409.94", "90071992547409.93"])
        said = (
            "depth chart: bids at 90071992547409.91, 0.000001 in all; asks from"
            " 90071992547409.93 up to 90071992547409.94, 0.000003 in all"
        )
        await expect(depth).to_have_attribute("aria-label", said)
        drawn = await page.evaluate("() => window.depthText")
        expected = ["bids 0.000001", "asks 0.000003", "90071992547409.91", "90071992547409.94"]
        assert drawn == expected, drawn
        assert await page.get_attribute("#ladder", "data-resyncs") == "0"

        buyer = await venue.client("beta")
        await buyer.place("AAPLx-DEAR", "buy", qty="0.000001", price="90071992547409.93", tif="ioc")
        await expect(page.locator("#candles")).to_have_attribute(
            "data-last-close", "90071992547409.93"
        )

    assert run_page(tmp_path, scenario, init_script=DEPTH_TEXT) == []


def test_a_logout_while_an_order_awaits_its_answer_keeps_what_became_of_it(
    tmp_path: Path,
) -> None:
    """Log out clicked while an order.place (or an order.cancel) awaits its answer: the line
    keeps the answer, `order N new (…); logged out: log on to trade`, so the trader knows the
    order rests (session 37; before, `log on to trade` over it, the order resting unsaid)."""

    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        await browser.log_on("taker")
        await expect(page.locator("#account")).to_have_text("3")
        result = page.locator("#order-result")
        await page.fill("#order-price", "181.00")
        await page.fill("#order-qty", "1")
        # both clicks in one task of the page's: the place is sent, its answer not yet in
        click_both = """() => {
          document.querySelector("#place-button").click();
          document.querySelector("#logout-button").click();
        }"""
        await page.evaluate(click_both)
        await expect(page.locator("#logon-button")).to_be_visible()
        trader = await venue.client("taker")
        (order,) = (await trader.request("orders.open", {}))["orders"]
        placed = re.escape(f"order {order['order_id']} new (")
        await expect(result).to_have_text(re.compile(f"^{placed}web-[0-9a-f]{{16}}\\); logged out"))
        await expect(result).to_have_text(re.compile(r"; logged out: log on to trade$"))
        said = await result.text_content()
        await browser.log_on("taker", secret="wrong")  # refused: the line as it was, said once
        await expect(page.locator("#logon-alert")).to_contain_text("BAD_SIGNATURE")
        await expect(result).to_have_text(str(said))

        await browser.log_on("taker")
        row = page.locator("#open-orders tbody tr")
        await expect(row).to_have_count(1)
        await expect(result).to_have_text("logged on as account 3")
        cancel_and_out = """() => {
          document.querySelector("#open-orders tbody tr button.cancel").click();
          document.querySelector("#logout-button").click();
        }"""
        await page.evaluate(cancel_and_out)
        await expect(page.locator("#logon-button")).to_be_visible()
        said = f"order {order['order_id']} canceled; logged out: log on to trade"
        await expect(result).to_have_text(said)
        assert (await trader.request("orders.open", {}))["orders"] == []

    assert run_page(tmp_path, scenario) == []


def test_a_market_order_with_nothing_to_trade_in_the_band_is_said_in_words(
    tmp_path: Path,
) -> None:
    """A market order that finds no opposite level within the band is refused in the page's
    words, the band's edge and what rests instead (session 37; before, the wire's:
    `MARKET_NO_LIQUIDITY (4010): nothing to trade within the band`)."""

    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        await browser.log_on("taker")
        await expect(page.locator("#account")).to_have_text("3")
        result = page.locator("#order-result")
        await browser.place("buy", "market", qty="1")
        band = (await venue.client("taker")).request
        (record,) = [i for i in (await band("instruments"))["instruments"] if i["symbol"] == SYMBOL]
        await expect(result).to_have_text(
            "order refused: a market buy trades only with asks within the band of AAPLx-USD, at"
            f" most {record['band_high']}, and there is none; a limit buy rests until a seller"
            " comes (MARKET_NO_LIQUIDITY 4010)"
        )
        await page.click(f"#instruments tr[data-symbol='{BILL}'] a")
        await expect(page.locator("#order-symbol")).to_have_text(BILL)
        await browser.place("sell", "market", qty="100")
        (bill,) = [i for i in (await band("instruments"))["instruments"] if i["symbol"] == BILL]
        await expect(result).to_have_text(
            "order refused: a market sell trades only with bids within the band of"
            f" {BILL}, at least {bill['band_low']} per 100 of face, and there is none; a limit"
            " sell rests until a buyer comes (MARKET_NO_LIQUIDITY 4010)"
        )

    assert run_page(tmp_path, scenario) == []


def test_cancel_all_cancels_every_open_order_of_the_account_at_once(tmp_path: Path) -> None:
    """**Cancel all open orders** sends one `orders.cancel_all` and says how many it canceled;
    the rows go and the history lists them (session 37; before, the page had no cancel-all:
    a trader pulled each order by its own Cancel while the market moved)."""

    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        cancel_all = page.get_by_role("button", name="Cancel all open orders")
        await expect(cancel_all).to_be_disabled()  # logged off
        await browser.log_on("taker")
        await expect(page.locator("#account")).to_have_text("3")
        result = page.locator("#order-result")
        row = page.locator("#open-orders tbody tr")
        await browser.place("buy", "post_only", qty="1", price="180.00")
        await browser.place("sell", "post_only", qty="2", price="190.00")
        bot = await venue.client("taker")
        await bot.place(BILL, "buy", qty="100", price="98.000000")
        await expect(row).to_have_count(3)
        await cancel_all.focus()
        await page.keyboard.press("Enter")
        # asked first (session 38: one click canceled every order on every symbol)
        asked = page.get_by_role("dialog", name="Cancel all open orders?")
        await expect(asked).to_be_visible()
        await expect(asked).to_contain_text("every open order of account 3, on every symbol")
        await expect(asked).to_contain_text("3 shown here")
        keep = asked.get_by_role("button", name="Keep them")
        await expect(keep).to_be_focused()  # the safe answer first: Enter again keeps them
        await page.keyboard.press("Enter")
        await expect(asked).to_be_hidden()
        await expect(cancel_all).to_be_focused()
        await page.keyboard.press("Enter")
        await expect(asked).to_be_visible()
        await page.keyboard.press("Escape")  # dismissed so too
        await expect(asked).to_be_hidden()
        await expect(row).to_have_count(3)
        await page.evaluate(TWO_FRAMES)  # a cancel sent would be in flight by now
        assert not any('"orders.cancel_all"' in frame for frame in browser.frames_sent)
        await cancel_all.click()
        await asked.get_by_role("button", name="Cancel them all").click()
        await expect(result).to_have_text("canceled 3 open orders")
        await expect(row).to_have_count(0)
        assert (await bot.request("orders.open", {}))["orders"] == []
        history = page.locator("#history tbody tr")
        await expect(history).to_have_count(3)
        status = history.locator("td.status")
        await expect(status.first).to_have_text("canceled (mass cancel)")  # in words
        await expect(status.first).to_have_attribute("data-reason", "mass_cancel")
        assert sum('"orders.cancel_all"' in frame for frame in browser.frames_sent) == 1
        await expect(cancel_all).to_be_focused()
        await page.keyboard.press("Enter")
        await page.keyboard.press("Tab")  # to Cancel them all
        await page.keyboard.press("Enter")
        await expect(result).to_have_text("no open order to cancel")
        await browser.place("buy", "post_only", qty="1", price="180.00")
        await expect(row).to_have_count(1)
        await cancel_all.click()
        await asked.get_by_role("button", name="Cancel them all").click()
        await expect(result).to_have_text("canceled 1 open order")
        await expect(row).to_have_count(0)
        # the session ends (logged off) while it is asked: dismissed, nothing sent (the
        # review: it stood over the logged-off page, its Cancel them all doing nothing, unsaid)
        await browser.place("buy", "post_only", qty="1", price="180.00")
        await expect(row).to_have_count(1)
        await cancel_all.click()
        await expect(asked).to_be_visible()
        await page.evaluate("() => document.getElementById('logout-button').click()")
        await expect(page.locator("#logon-form")).to_be_visible()
        await expect(asked).to_be_hidden()
        assert sum('"orders.cancel_all"' in frame for frame in browser.frames_sent) == 3

    assert run_page(tmp_path, scenario) == []


def test_an_orders_status_reads_in_words_wherever_the_page_shows_it(tmp_path: Path) -> None:
    """The wire's words (`partially_filled`, `cancel_only`) read as a trader says them, on the
    result line, in the open orders, the history and the instrument line; the wire's value kept
    in the cell's `data-status` (`data-reason`). Until session 38 the page showed the wire's."""

    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        admin = await venue.client("admin")
        await resting_sell(venue, "1", "187.30")
        await expect(ladder_row(page, "ask", "187.30")).to_have_text("1.000000")
        await browser.log_on("taker")
        await expect(page.locator("#account")).to_have_text("3")
        result = page.locator("#order-result")
        await browser.place("buy", "limit", qty="2", price="187.30")
        await expect(result).to_contain_text(" partially filled")
        await expect(result).not_to_contain_text("_")
        status = page.locator("#open-orders tbody td.status")
        await expect(status).to_have_text("partially filled")
        await expect(status).to_have_attribute("data-status", "partially_filled")
        await page.locator("#open-orders tbody button.cancel").click()
        await expect(result).to_have_text(re.compile(r"^order \d+ canceled"))
        history = page.locator("#history tbody td.status")
        await expect(history).to_have_text("canceled (user)")
        await expect(history).to_have_attribute("data-status", "canceled")
        await admin.request("admin.set_status", {"symbol": SYMBOL, "status": "cancel_only"})
        info = page.locator("#instrument-info")
        await expect(info).to_contain_text("status cancel only")
        await expect(info).not_to_contain_text("cancel_only")
        await admin.request("admin.set_status", {"symbol": SYMBOL, "status": "open"})
        await expect(info).to_contain_text("status open")

    assert run_page(tmp_path, scenario) == []


def test_place_order_pressed_while_the_page_logs_on_again_says_why_nothing_was_sent(
    tmp_path: Path,
) -> None:
    """Place order (or Amend order N) pressed while the account's connection is down and the
    page logs on again sends nothing, and the line says why (session 37; before, nothing was
    said: the line kept its last words, the press ignored). Logged on again, the line says so.
    The account's socket is relayed by a Playwright route, which refuses new ones while told."""

    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        trades: list[Any] = []
        refusing = asyncio.Event()

        async def relay_trade(route: Any) -> None:
            if refusing.is_set():
                await route.close(code=1011)
                return
            route.connect_to_server()
            trades.append(route)

        await page.route_web_socket(re.compile(r"/ws/trade$"), relay_trade)
        await browser.log_on("taker")
        await expect(page.locator("#account")).to_have_text("3")
        result = page.locator("#order-result")
        place = page.locator("#place-button")
        await page.fill("#order-price", "180.00")
        await page.fill("#order-qty", "1")
        refusing.set()
        await trades[-1].close()
        await expect(place).to_have_attribute("aria-disabled", "true")
        await place.focus()
        await page.keyboard.press("Enter")
        said = (
            "no order placed: the account's connection dropped and the page is logging on"
            " again; place it once logged on"
        )
        await expect(result).to_have_text(said)
        await expect(place).to_be_focused()
        assert not any('"order.place"' in frame for frame in browser.frames_sent)
        # Cancel all open orders likewise (session 37's review: ignored in silence)
        await page.focus("#cancel-all")  # waiting (aria-disabled): Playwright clicks no such
        await page.keyboard.press("Enter")
        said = (
            "no order canceled: the account's connection dropped and the page is logging on"
            " again; cancel them once logged on"
        )
        await expect(result).to_have_text(said)
        assert not any('"orders.cancel_all"' in frame for frame in browser.frames_sent)
        refusing.clear()
        await expect(result).to_have_text("logged on as account 3", timeout=20_000)
        await expect(page.locator("#order-price")).to_have_value("180.00")

    errors = run_page(tmp_path, scenario)
    assert [e for e in errors if "WebSocket" not in e] == []


def test_an_order_the_markets_status_or_the_accounts_eligibility_refuses_is_said_in_words(
    tmp_path: Path,
) -> None:
    """A halted market, one taking only cancels or only post-only orders, and an account that
    may not trade the instrument: each refusal says what is wrong and what is taken, in the
    page's words (session 37; before, the wire's: `INSTRUMENT_HALTED (6000): AAPLx-USD is
    halted`, `NOT_ELIGIBLE (2005): account 4 may not trade AAPLx-USD`)."""

    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        admin = await venue.client("admin")
        result = page.locator("#order-result")
        await browser.log_on("us")
        await expect(page.locator("#account")).to_have_text("4")
        await browser.place("buy", "limit", qty="1", price="187.00")
        await expect(result).to_have_text(
            "order refused: this account may not trade AAPLx-USD: its jurisdiction or its"
            " KYC is not one the instrument is offered to (NOT_ELIGIBLE 2005)"
        )
        await page.click("#logout-button")
        await browser.log_on("taker")
        await expect(page.locator("#account")).to_have_text("3")
        await browser.place("buy", "post_only", qty="1", price="187.00")
        row = page.locator("#open-orders tbody tr")
        await expect(row).to_have_count(1)
        words = {
            "halted": "AAPLx-USD is halted: it takes no orders and no amends until it opens"
            " again, only cancels (INSTRUMENT_HALTED 6000)",
            "cancel_only": "AAPLx-USD takes only cancels for now: no orders and no amends"
            " (CANCEL_ONLY 6001)",
            "post_only": "AAPLx-USD takes only post-only orders for now: a Post-only (GTC)"
            " order that rests, or an amend that does not trade (POST_ONLY_MODE 6002)",
        }
        for status, said in words.items():
            await admin.request("admin.set_status", {"symbol": SYMBOL, "status": status})
            await browser.place("buy", "limit", qty="1", price="186.00")
            await expect(result).to_have_text(f"order refused: {said}")
        await admin.request("admin.set_status", {"symbol": SYMBOL, "status": "halted"})
        await row.locator("button.amend").click()
        await page.fill("#order-price", "186.50")
        await page.click("#place-button")
        await expect(result).to_have_text(f"amend refused: {words['halted']}")

    assert run_page(tmp_path, scenario) == []


HOLD_FILLED_REPORTS = """(() => {
  // Holds the account's pushes that report an order filled (until `releaseFilled()`): the
  // order's row stays while the venue has it closed.
  const held = [];
  const setter = Object.getOwnPropertyDescriptor(WebSocket.prototype, "onmessage").set;
  Object.defineProperty(WebSocket.prototype, "onmessage", {
    set(handler) {
      setter.call(this, handler === null ? null : (event) => {
        const text = String(event.data);
        const filled = text.includes('"ch":"account"') && text.includes('"status":"filled"');
        if (filled) held.push(() => handler(event));
        else handler(event);
      });
    },
  });
  window.releaseFilled = () => held.splice(0).forEach((go) => go());
})()"""


def test_a_cancel_of_an_order_that_filled_meanwhile_says_so_in_words(tmp_path: Path) -> None:
    """Cancel clicked on an order that filled before the cancel reached the venue (its report
    not in yet): `cancel refused: order N is no longer open, it was filled: nothing left to
    cancel (ORDER_NOT_OPEN 5001)` (session 37; before, the wire's: `ORDER_NOT_OPEN (5001): the
    order is closed (status filled)`)."""

    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        row, order_id = await taker_with_an_order(browser, "buy", "limit", qty="1", price="187.00")
        seller = await venue.client("alpha")
        await seller.place(SYMBOL, "sell", qty="1", price="187.00", tif="ioc")
        await expect(page.locator("#tape tbody tr")).to_have_count(1)
        await page.get_by_role("button", name=f"Cancel order {order_id}").click()
        await expect(page.locator("#order-result")).to_have_text(
            f"cancel refused: order {order_id} is no longer open, it was filled: nothing left to"
            " cancel (ORDER_NOT_OPEN 5001)"
        )
        await page.evaluate("window.releaseFilled()")
        await expect(row).to_have_count(0)

    assert run_page(tmp_path, scenario, init_script=HOLD_FILLED_REPORTS) == []


def test_a_partial_fill_while_an_amend_is_typed_is_said(tmp_path: Path) -> None:
    """An order that partly fills while its amend is typed: the line says what filled, as the
    quantity typed is the new total, what has filled included (session 37; before, nothing
    was said, the line kept `amending order N: …`, the fill seen only in the filled column)."""

    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        row, order_id = await taker_with_an_order(browser, "buy", "limit", qty="2", price="187.00")
        await row.locator("button.amend").click()
        await page.fill("#order-qty", "3")  # being typed
        seller = await venue.client("alpha")
        await seller.place(SYMBOL, "sell", qty="0.5", price="187.00", tif="ioc")
        await expect(page.locator("#order-result")).to_have_text(
            f"order {order_id} filled 0.500000 of 2.000000 meanwhile: the quantity is the new"
            " total, what has filled included"
        )
        assert await page.input_value("#order-qty") == "3"  # as typed
        await page.click("#place-button")
        await expect(page.locator("#order-result")).to_contain_text(f"order {order_id} amended")
        await expect(row.locator("td").nth(4)).to_have_text("3.000000")
        await expect(row.locator("td").nth(5)).to_have_text("0.500000")

    assert run_page(tmp_path, scenario) == []


def test_place_or_cancel_all_pressed_while_logging_on_again_keep_an_outcome_unknown(
    tmp_path: Path,
) -> None:
    """An order placed, its answer lost with the account's connection: `order outcome unknown`.
    Place order and Cancel all open orders pressed while the page logs on again send nothing
    and keep that line, adding that nothing was sent; logged on again, it stays (the order may
    rest: the trader is to look before placing again). Session 37's review: the press said
    `no order placed: …; place it once logged on`, then `logged on as account 3`, over the
    outcome unknown, and a trader placing again had two orders resting (seen failing)."""

    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        trades: list[Any] = []
        refusing = asyncio.Event()
        hold = asyncio.Event()

        async def relay_trade(route: Any) -> None:
            if refusing.is_set():
                await route.close(code=1011)
                return
            server = route.connect_to_server()

            def from_server(message: Any) -> None:
                # while held, the answer of a request (an `order_id`, no `ch`) is lost
                if hold.is_set() and '"order_id"' in str(message) and '"ch"' not in str(message):
                    return
                route.send(message)

            server.on_message(from_server)
            trades.append(route)

        await page.route_web_socket(re.compile(r"/ws/trade$"), relay_trade)
        await browser.log_on("taker")
        await expect(page.locator("#account")).to_have_text("3")
        result = page.locator("#order-result")
        place = page.locator("#place-button")
        rows = page.locator("#open-orders tbody tr")
        hold.set()
        await page.fill("#order-price", "180.00")
        await page.fill("#order-qty", "1")
        await place.click()
        await expect(rows).to_have_count(1)  # it reached the venue: its report came
        refusing.set()
        await trades[-1].close()
        await expect(result).to_contain_text("order outcome unknown")
        unknown = str(await result.text_content())
        await place.focus()
        await page.keyboard.press("Enter")
        await page.focus("#cancel-all")  # waiting (aria-disabled): Playwright clicks no such
        await page.keyboard.press("Enter")
        said = (
            f"{unknown}; no order placed while the page logs on again"
            "; no order canceled while the page logs on again"
        )
        await expect(result).to_have_text(said)
        await page.keyboard.press("Enter")  # said once
        await expect(result).to_have_text(said)
        # a price clicked in the book (its socket still up) with Market chosen: the note is
        # added, not written over it (the re-review: it replaced the outcome unknown, and
        # stayed once logged on again)
        await page.select_option("#order-kind", "market")
        await ladder_row(page, "bid", "180.00").click()
        said = f"{said}; Market takes no price: now Limit IOC at 180.00"
        await expect(result).to_have_text(said)
        hold.clear()
        refusing.clear()
        status = page.locator("#logon-status")
        await expect(status).to_contain_text("logged on again", timeout=20_000)
        await expect(place).not_to_have_attribute("aria-disabled", "true")
        await expect(result).to_have_text(said)
        await expect(rows).to_have_count(1)
        assert sum('"order.place"' in frame for frame in browser.frames_sent) == 1
        assert not any('"orders.cancel_all"' in frame for frame in browser.frames_sent)

    errors = run_page(tmp_path, scenario)
    assert [e for e in errors if "WebSocket" not in e] == []


def test_an_amend_on_another_symbol_gives_back_no_figures_typed_for_the_first(
    tmp_path: Path,
) -> None:
    """A buy of AAPLx-USD typed, not placed, then Amend on an order of MSFTx-USD (a bot's of
    the account): the amend done, the form is back on the buy Limit, its price and quantity
    cleared, as they were typed for AAPLx-USD, and said so; Place order then sends nothing.
    Session 37's review: 187.30 x 1 came back onto MSFTx-USD, and Place order sent them there
    (seen failing). The same symbol's figures come back (`test_every_end_of_an_amend_…`)."""

    async def scenario(venue: Venue, browser: Browser) -> None:
        page = browser.page
        await browser.log_on("taker")
        await expect(page.locator("#account")).to_have_text("3")
        bot = await venue.client("taker")
        listed = (await bot.request("instruments"))["instruments"]
        msft = next(i for i in listed if i["symbol"] == "MSFTx-USD")
        await bot.place("MSFTx-USD", "buy", qty="1", price=msft["band_low"])
        row = page.locator("#open-orders tbody tr")
        await expect(row).to_have_count(1)
        order_id = await row.get_attribute("data-order-id")
        await expect(page.locator("#order-symbol")).to_have_text(SYMBOL)
        await page.check("input[name=side][value=sell]")
        await page.select_option("#order-kind", "post_only")
        await page.fill("#order-price", "187.30")
        await page.fill("#order-qty", "1")
        await row.locator("button.amend").click()
        await expect(page.locator("#order-symbol")).to_have_text("MSFTx-USD")
        await page.fill("#order-qty", "2")
        await page.click("#place-button")
        result = page.locator("#order-result")
        await expect(result).to_contain_text(f"order {order_id} amended, new")
        back = "the order form as before the amend, its price and quantity typed for AAPLx-USD"
        await expect(result).to_contain_text(f"{back} cleared")
        # the bot placed it without a cl_ord_id: none shown (session 37's review: `new (null)`)
        await expect(result).to_contain_text(f"order {order_id} amended, new; the order form")
        await expect(page.locator("#order-symbol")).to_have_text("MSFTx-USD")
        assert await page.input_value("#order-price") == ""
        assert await page.input_value("#order-qty") == ""
        assert await page.input_value("#order-kind") == "post_only"
        assert await page.is_checked("input[name=side][value=sell]")
        await page.click("#place-button")
        await expect(result).not_to_contain_text("amended")
        assert not any('"order.place"' in frame for frame in browser.frames_sent)

    assert run_page(tmp_path, scenario) == []
