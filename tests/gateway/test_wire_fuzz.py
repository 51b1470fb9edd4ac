"""Structure-aware fuzzing of the websocket and REST APIs against a real server on 127.0.0.1.

The venue's promise (docs/protocol.md §2.2, §3, docs/rest.md): every frame gets exactly one
answer with its `id` (`null` when none can be read), every refusal a documented error code
with a non-empty message and never `INTERNAL`, the connection stays open, rights are refused
before params, and a refused request (or a read) changes nothing. Hypothesis draws pipelines
of hostile frames built from the wire schemas (`gateway.wire.METHODS`: every method and
field) and sends them as a trader (plain and packed frames), as an operator and before a
logon; and REST requests as a trader. The account's balances and orders, the session's own
state and (for the operator) the instruments and reserves are queried before and after.
The run is bounded and deterministic (`derandomize`). To hunt: `FUZZ_EXAMPLES=5000
FUZZ_RANDOM=1` (new examples each run; `FUZZ_FRAMES=12`: longer pipelines); `FUZZ_STATS=1
... -s` prints how often each answer came (is it reaching deep?).
"""

import asyncio
import http.client
import json
import logging
import os
import re
import threading
import time
import urllib.parse
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from core import config as venue_config
from gateway.auth import sign_logon, sign_request
from gateway.server import VenueServer
from gateway.wire import ERROR_TEXT_CHARS_MAX, METHODS
from tests.conftest import KEYS, ROOT, TEST_TIMEOUT_S
from tests.sample_config import SAMPLE_CONFIG

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))  # per role; a few seconds each
RANDOM = os.environ.get("FUZZ_RANDOM") == "1"  # hunting: new examples each run, not the same
ANSWER_WAIT_S = 10  # a pipeline's answers come within milliseconds; this is a hang
FRAMES_MAX = int(os.environ.get("FUZZ_FRAMES", "4"))  # pipelined in one example, then the state
ANONYMOUS_S = 5  # a session not logged on is replaced before the venue's 10 s are up
RATE_UNLIMITED = 1_000_000  # the fuzzer is not testing the rate limits: it outruns them

CONFIG = venue_config.load(SAMPLE_CONFIG)
SYMBOLS = [entry.symbol for entry in CONFIG.instruments]
ASSETS = [entry.code for entry in CONFIG.assets]


def documented_errors() -> dict[int, tuple[str, int]]:
    """Every error code of docs/protocol.md §11.1: its name and its status."""
    text = (ROOT / "docs" / "protocol.md").read_text()
    rows = re.findall(r"^\| (\d{4}) \| `([A-Z_]+)` \| (\d{3}) \|", text, re.MULTILINE)
    assert len(rows) > 40, "the error table of docs/protocol.md §11.1 was not found"
    return {int(code): (name, int(status)) for code, name, status in rows}


ERRORS = documented_errors()
STATS: Counter[Any] = Counter()
INTERNAL = 9000


# ----------------------------------------------------------------- a venue in a thread


class BackgroundVenue:
    """A venue server (rate limits out of the way) on its own event loop in a thread, so that
    Hypothesis drives it from the test's thread through blocking websockets."""

    def __init__(self, data_dir: Path) -> None:
        self.port = 0
        self._port: Future[int] = Future()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(data_dir),))
        self._thread.daemon = True

    async def _serve(self, data_dir: Path) -> None:
        limits = msgspec.structs.replace(
            CONFIG.limits,
            connection_rate_per_s=RATE_UNLIMITED,
            connection_burst=RATE_UNLIMITED,
            account_rate_per_s=RATE_UNLIMITED,
            account_burst=RATE_UNLIMITED,
        )
        server = VenueServer(msgspec.structs.replace(CONFIG, limits=limits), data_dir)
        try:
            port = await server.start("127.0.0.1", 0)
        except BaseException as error:
            self._port.set_exception(error)
            raise
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self._port.set_result(port)
        await self._stop.wait()
        await server.stop()

    def start(self) -> "BackgroundVenue":
        self._thread.start()
        self.port = self._port.result(TEST_TIMEOUT_S)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(TEST_TIMEOUT_S)
        assert not self._thread.is_alive(), "the server did not stop"

    def connected(self, endpoint: str = "trade", packed: bool = False) -> "Session":
        """A session not logged on, at `/ws/{endpoint}` (`packed`: `?pack=1`)."""
        url = f"ws://127.0.0.1:{self.port}/ws/{endpoint}" + ("?pack=1" if packed else "")
        websocket = connect(url, max_size=None, ping_interval=None, legacy=True)
        return Session(websocket, packed)

    def logged_on(self, who: str, packed: bool = False) -> "Session":
        session = self.connected(packed=packed)
        key, secret = KEYS[who]
        ts = time.time_ns() // 1_000
        nonce = f"fuzz-{ts}"
        params = {
            "api_key": key,
            "ts": ts,
            "nonce": nonce,
            "recv_window": 5_000,
            "sig": sign_logon(secret, key, ts, nonce, 5_000),
        }
        assert session.ask("session.logon", params)["status"] == 200
        return session


class ErrorLogs(logging.Handler):
    """Every record of the venue at ERROR or above, from any thread: a traceback logged is a
    failure. (The test's own websocket clients, `websockets.client`, are not the venue.)"""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("websockets.client"):
            self.records.append(record)


class Session:
    """A blocking websocket: frames out, answers (messages with a `status`) in, pushes
    skipped."""

    def __init__(self, websocket: ClientConnection, packed: bool = False) -> None:
        self.websocket = websocket
        self.packed = packed
        self._messages: deque[Any] = deque()
        self.opened_s = time.monotonic()
        self._ids = iter(range(10**9))

    def send(self, frame: str | bytes) -> None:
        self.websocket.send(frame)

    def next_answer(self, deadline: float) -> dict[str, Any]:
        while True:
            message = self.next_message(deadline)
            assert isinstance(message, dict), f"a message that is not an object: {message!r}"
            if "status" in message:
                return message
            assert "ch" in message and "id" not in message, f"neither answer nor push: {message}"

    def next_message(self, deadline: float) -> Any:
        """The next message; a packed connection's frames are arrays of them (§2.2.1)."""
        while not self._messages:
            wait_s = max(0.01, deadline - time.monotonic())
            data = json.loads(self.websocket.recv(timeout=wait_s))
            if self.packed:
                assert isinstance(data, list) and data, f"a packed frame is an array: {data!r}"
                self._messages.extend(data)
            else:
                self._messages.append(data)
        return self._messages.popleft()

    def sentinel_id(self) -> str:
        return f"\x7fsentinel-{next(self._ids)}"  # no fuzzed id is a DEL and this word

    def ask(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        request_id = self.sentinel_id()
        self.send(json.dumps({"id": request_id, "method": method, "params": params}))
        answer = self.next_answer(time.monotonic() + ANSWER_WAIT_S)
        assert answer["id"] == request_id, f"an answer nobody asked for: {answer}"
        return answer

    def close(self) -> None:
        self.websocket.close()


# ----------------------------------------------------------------- hostile values

HUGE_DIGITS = "9" * 400
NUMBER_TEXTS = [
    "0", "0.0", "00", "-1", "-0", "+1", "1e3", "1E-3", "1.5e2", "NaN", "nan", "Infinity",
    "-Infinity", "inf", "1.", ".5", " 1", "1 ", "1,5", "0x10", "1_000", "\u0661",
    "\uff11", "\u00b9", "1.0000000000000000000001", "0.0000000000000000001",
    "9" * 48, "9" * 49, "1" + "0" * 47, HUGE_DIGITS, "4611686018427387904",
    "9223372036854775808", "187.255", "187.250000000", "0.000001", "1e400",
]  # fmt: skip
JSON_NUMBERS = [0, -1, 1, 2**53 - 1, 2**53, 2**63, 2**64, -(2**63), 10**30, 1.5, -0.0, 1e308, 1e-7]
ANY_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
TEXTS = ANY_TEXT | st.sampled_from(
    [
        "", " ", "\x00", "\n", "\x1b[31m", "\u200b", "\ufeff", "\u202e", "a" * 37, "a" * 65,
        "x" * 5_000, "\U0001f600", "é", "AAPLx-USD\x00", "aaplx-usd", "AAPLX-USD", "null",
    ]
)  # fmt: skip
SCALARS = (
    st.sampled_from(NUMBER_TEXTS)
    | st.sampled_from(JSON_NUMBERS)
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
    | st.none()
    | TEXTS
)
HOSTILE = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXTS, inner, max_size=3),
    max_leaves=6,
)

# ----------------------------------------------------------------- plausible values

# Plain decimals that pass the pattern and reach the unit conversions and the engine's
# arithmetic: zero, the edges of 2^62 and 2^63 units, the most digits, the most decimals.
EXTREME_DECIMALS = st.sampled_from(
    [
        "0", "0.000", "1" + "0" * 47, "9" * 48, "4611686018427387903", "4611686018427387904",
        "9223372036854775807", "9223372036854775808", "18446744073709551616",
        "0." + "0" * 17 + "1", "0." + "0" * 46 + "1", "1." + "0" * 46, "46116860184.27387904",
    ]
)  # fmt: skip
FUTURE_US = int(time.time() * 1e6) + 3_600 * 10**6
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "symbol": st.sampled_from([*SYMBOLS, "NOPE-USD"]),
    "side": st.sampled_from(["buy", "sell"]),
    "type": st.sampled_from(["limit", "market"]),
    "tif": st.sampled_from(["gtc", "ioc", "fok", "gtd"]),
    "price": st.sampled_from(["187.25", "187.30", "0.01", "99.5", "1000000", "1.001"])
    | EXTREME_DECIMALS,
    "qty": st.sampled_from(["1", "0.000001", "100", "200", "1000000000", "0"]) | EXTREME_DECIMALS,
    "quote_qty": st.sampled_from(["10", "1000.5", "0.000001"]) | EXTREME_DECIMALS,
    "expire_at": st.sampled_from([FUTURE_US, 1, 1_700_000_000_000]),
    "post_only": st.booleans(),
    "stp": st.sampled_from(["expire_taker", "expire_maker", "expire_both", "none"]),
    "cl_ord_id": st.sampled_from(["c-1", "c-2", "é-3"]),
    "new_cl_ord_id": st.sampled_from(["c-1", "c-9"]),
    "tag": st.sampled_from(["t", "mm"]),
    "order_id": st.integers(1, 20),
    "enabled": st.booleans(),
    "timeout_ms": st.sampled_from([0, 1, 600_000, 600_001]),
    "limit": st.integers(0, 1_001),
    "since_seq": st.integers(0, 100),
    "status": st.sampled_from(["open", "closed", "all", "halted", "post_only", "cancel_only"]),
    "since_ts": st.integers(0, 2**53),
    "until_ts": st.integers(0, 2**53),
    "before_order_id": st.integers(1, 20),
    "depth": st.integers(0, 1_001),
    "ch": st.sampled_from(["account", "instruments", "book", "trades", "bbo", "ticker", "candles"]),
    "symbols": st.lists(st.sampled_from(SYMBOLS), max_size=3),
    "interval": st.sampled_from(["1m", "5m", "1h", "1d", "2m"]),
    "quote_set": st.sampled_from(["qs", "qs-2"]),
    "cl_op_id": st.sampled_from(["op-1", "op-2"]),
    "kind": st.sampled_from(["equity", "tbill", "bond"]),
    "base": st.sampled_from(ASSETS),
    "quote": st.sampled_from(ASSETS),
    "asset": st.sampled_from([*ASSETS, "NOPE"]),
    "code": st.sampled_from(["NEWx", "USD", "usd"]),
    "scale": st.integers(-1, 19),
    "tick": st.sampled_from(["0.01", "0.001"]) | EXTREME_DECIMALS,
    "step": st.sampled_from(["0.000001", "1"]) | EXTREME_DECIMALS,
    "min_qty": st.sampled_from(["0.000001", "1"]) | EXTREME_DECIMALS,
    "min_notional": st.sampled_from(["1", "0"]) | EXTREME_DECIMALS,
    "band_pct": st.sampled_from(["10", "0", "100"]) | EXTREME_DECIMALS,
    "reference_price": st.sampled_from(["100", "99.5", "187.25"]) | EXTREME_DECIMALS,
    "maker_fee_bps": st.integers(-1, 1_001),
    "taker_fee_bps": st.integers(-1, 1_001),
    "maturity": st.sampled_from(["2030-01-01", "2000-01-01", "2030-02-30"]),
    "excluded_jurisdictions": st.lists(st.sampled_from(["US", "XX", "us"]), max_size=2),
    "max_qty": st.sampled_from(["0", "10"]) | EXTREME_DECIMALS,
    "max_notional": st.sampled_from(["0", "1000"]) | EXTREME_DECIMALS,
    "amount": st.sampled_from(["1", "1000000", "0"]) | EXTREME_DECIMALS,
    "as_of": st.sampled_from([int(time.time() * 1e6), 0]),
    "account": st.sampled_from([1, 2, 100, 999]),
    "withdrawal_id": st.integers(1, 5),
    "name": st.sampled_from(["fuzz", "x" * 65]),
    "jurisdiction": st.sampled_from(["DE", "XX", "de"]),
    "kyc_approved": st.booleans(),
    "payer": st.sampled_from([1, 2, 100, 999]),
    "amount_per_share": st.sampled_from(["0.01", "1"]) | EXTREME_DECIMALS,
    "ratio": st.sampled_from(["2:1", "3:2", "1:3", "1:10", "1000:1", "1:1000", "0:1", "1001:1"]),
    "scopes": st.lists(st.sampled_from(["read", "trade", "admin", "root"]), max_size=3),
    "api_key": st.sampled_from(["demo-taker", "nope"]),
    "ts": st.integers(0, 2**53),
    "nonce": st.sampled_from(["n", "n-1"]),
    "sig": st.sampled_from(["ab" * 32, "zz"]),
    "recv_window": st.integers(0, 60_001),
}


def near(text: str, factor: str) -> str:
    """`text` times `factor`, exactly, in plain notation."""
    return format(Decimal(text) * Decimal(factor), "f")


# Per symbol: prices (the reference, a tick off, off the tick, outside the band, tiny, huge)
# and quantities (a step, the minimum, below it, off the step, huge) that the engine's checks
# tell apart.
PRICES = {
    entry.symbol: [
        entry.reference_price,
        near(entry.reference_price, "1.01"),
        format(Decimal(entry.reference_price) + Decimal(entry.tick), "f"),
        format(Decimal(entry.reference_price) + Decimal(entry.tick) / 10, "f"),
        near(entry.reference_price, "2"),
        near(entry.reference_price, "0.5"),
        entry.tick,
        "9" * 19,
    ]
    for entry in CONFIG.instruments
}
QUANTITIES = {
    entry.symbol: [
        entry.min_qty,
        near(entry.step, "3"),
        near(entry.min_qty, "0.5"),
        format(Decimal(entry.step) * 3 + Decimal(entry.step) / 2, "f"),
        near(entry.step, "1000000000000"),
        "0",
    ]
    for entry in CONFIG.instruments
}


def on_tick(price: str) -> str:
    return format(Decimal(price).quantize(Decimal(CONFIG.instruments[0].tick)), "f")


RESTING = [
    {"symbol": SYMBOLS[0], "side": side, "type": "limit", "tif": "gtc", "price": price,
     "qty": "1", "cl_ord_id": cl_ord_id}
    for side, price, cl_ord_id in (
        ("sell", on_tick(near(CONFIG.instruments[0].reference_price, "1.01")), "c-1"),
        ("buy", on_tick(near(CONFIG.instruments[0].reference_price, "0.99")), "c-2"),
    )
]  # fmt: skip


@st.composite
def coherent_place(draw: st.DrawFn) -> dict[str, Any]:
    """An `order.place` whose fields agree (a limit with price and qty, a gtd with
    `expire_at`), at prices and quantities around the symbol's: the engine's checks."""
    symbol = draw(st.sampled_from(SYMBOLS))
    kind = draw(st.sampled_from(["limit", "limit", "market"]))
    tif = draw(st.sampled_from(["gtc", "gtd", "ioc", "fok"] if kind == "limit" else ["ioc", "fok"]))
    params: dict[str, Any] = {
        "symbol": symbol,
        "side": draw(plausible_value("side")),
        "type": kind,
        "tif": tif,
        "qty": draw(st.sampled_from(QUANTITIES[symbol]) | EXTREME_DECIMALS),
    }
    if kind == "limit":
        params["price"] = draw(st.sampled_from(PRICES[symbol]) | EXTREME_DECIMALS)
    elif draw(st.booleans()):
        params["side"] = "buy"
        params["quote_qty"] = draw(plausible_value("quote_qty"))
        del params["qty"]
    if tif == "gtd":
        params["expire_at"] = draw(plausible_value("expire_at"))
    for name in ("post_only", "stp", "cl_ord_id", "tag"):
        if draw(st.booleans()):
            params[name] = draw(plausible_value(name))
    return params


MUTATIONS_MAX = 2  # more than this and nearly every request stops at its first bad field


def plausible_value(name: str) -> st.SearchStrategy[Any]:
    return PLAUSIBLE.get(name, HOSTILE)


@st.composite
def params_of(draw: st.DrawFn, method: str) -> Any:
    """The params of `method`: every required field and some optional ones, plausible (to
    reach the checks behind decoding), then up to `MUTATIONS_MAX` mutations (a value made
    hostile, a field dropped, an unknown field added); now and then params that are not an
    object at all."""
    if draw(st.integers(0, 29)) == 0:
        return draw(HOSTILE)
    params: dict[str, Any] = {}
    if method == "order.batch":
        params["ops"] = draw(st.lists(batch_op(), min_size=1, max_size=4) | st.lists(batch_op()))
    elif method == "quote.mass":
        params["quote_set"] = draw(plausible_value("quote_set"))
        params["quotes"] = draw(st.lists(quote(), max_size=4))
    elif method == "order.place" and draw(st.booleans()):
        params = draw(coherent_place())
    elif method in METHODS:
        for field in msgspec.structs.fields(METHODS[method]):
            if field.required or draw(st.booleans()):
                params[field.encode_name] = draw(plausible_value(field.encode_name))
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, MUTATIONS_MAX]))):
        mutate(draw, params)
    return params


def mutate(draw: st.DrawFn, params: dict[str, Any]) -> None:
    """One mutation of `params`, in place."""
    kind = draw(st.sampled_from(["hostile", "hostile", "drop", "unknown"]))
    if kind == "unknown" or not params:
        name = draw(st.sampled_from(["foo", "", "id", "Symbol", "params", "method"]) | TEXTS)
        params[name] = draw(HOSTILE)
        return
    name = draw(st.sampled_from(sorted(params)))
    if kind == "drop":
        del params[name]
    else:
        params[name] = draw(HOSTILE)


@st.composite
def batch_op(draw: st.DrawFn) -> Any:
    method = draw(st.sampled_from(["order.place", "order.cancel", "order.amend", "order.batch"]))
    if draw(st.integers(0, 19)) == 0:
        return draw(HOSTILE)
    op: dict[str, Any] = {"method": method, "params": draw(params_of(method))}
    if draw(st.integers(0, 19)) == 0:
        op.pop(draw(st.sampled_from(["method", "params"])))
    return op


@st.composite
def quote(draw: st.DrawFn) -> Any:
    kinds = {"symbol": "symbol", "bid_px": "price", "ask_px": "price"}
    fields = [
        "symbol",
        *(name for name in ("bid_px", "bid_qty", "ask_px", "ask_qty") if draw(st.booleans())),
    ]
    found = {name: draw(plausible_value(kinds.get(name, "qty"))) for name in fields}
    if draw(st.integers(0, 3)) == 0:
        mutate(draw, found)
    return found


# ----------------------------------------------------------------- frames

# the same ids often: two requests of one pipeline with one id get an answer each
VALID_IDS = (
    st.sampled_from([7, "7", "dup"])
    | st.integers(0, 2**53 - 1)
    | st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=36)
)
UNKNOWN_METHODS = ["order.replace", "", "ORDER.PLACE", "admin.", "order.place ", "__init__"]


class Frame(msgspec.Struct, frozen=True):
    """One frame to send, the `id` its answer must carry (None: `null`) and, when it is
    known, the error's name."""

    data: str | bytes
    answer_id: int | str | None
    error_name: str | None = None
    method: str | None = None  # a well-formed envelope's known method: the rights checked
    sent: str | None = None  # the method it names, if any: what it may do, if it is not refused


# Where a value belongs, what is not JSON but is answered `BAD_JSON` with the frame's `id`
# (docs/protocol.md §2.2): other languages' literals, non-finite numbers, an unpaired
# surrogate escape, bytes that are not UTF-8 inside a string of a binary frame.
SPOILERS = [
    "NaN", "Infinity", "-Infinity", "nan", "inf", "-inf", "None", "True", "False", "NULL",
    "undefined", "nil", '"\\ud800"', '"\\udc00"', '"a\\ud83d"', '"\\ud83d\\u0041"',
]  # fmt: skip
BAD_UTF8 = [b'"\xff"', b'"a\xc3"', b'"\xed\xa0\x80"', b'"\xf8\x88\x80\x80\x80"']
PLACEHOLDER = "\x01spoiled\x01"
SPOILERS_MAX = 4  # words read as null to find the id (gateway.wire.WORDS_READ_AS_NULL_MAX)


@st.composite
def spoiled(draw: st.DrawFn, envelope: dict[str, Any], request_id: Any) -> Frame:
    """`envelope` with up to `SPOILERS_MAX` of its params' values (or new ones) not JSON."""
    params = envelope["params"]
    for _ in range(draw(st.integers(1, SPOILERS_MAX))):
        name = draw(st.sampled_from([*params, "x"]) if params else st.just("x"))
        params[name] = PLACEHOLDER
    text = json.dumps(envelope, ensure_ascii=draw(st.booleans())).encode()
    placeholder = json.dumps(PLACEHOLDER).encode()
    while placeholder in text:
        spoiler = draw(st.sampled_from(SPOILERS).map(str.encode) | st.sampled_from(BAD_UTF8))
        text = text.replace(placeholder, spoiler, 1)
    return Frame(text, request_id, "BAD_JSON")


@st.composite
def frame(draw: st.DrawFn, methods: list[str]) -> Frame:
    """A request with a valid or hostile id, a known or unknown method and hostile params;
    now and then broken JSON, a frame that is not an object, or one too big."""
    kind = draw(st.integers(0, 39))
    if kind == 0:  # broken JSON or bytes: answered BAD_JSON, `id` null or read
        data = draw(st.binary(max_size=60) | st.text(max_size=60).map(lambda text: "{" + text))
        return Frame(data, None)
    if kind == 1:  # JSON, but not one object
        return Frame(
            json.dumps(draw(HOSTILE.filter(lambda value: not isinstance(value, dict)))), None
        )
    if kind == 2:  # over 64 KiB: MESSAGE_TOO_BIG, `id` null
        size = draw(st.integers(65_537, 200_000))
        head = '{"id": 1, "method": "ping", "params": {"x": "'
        return Frame(head + "a" * (size - len(head) - 3) + '"}}', None)
    request_id: Any = draw(VALID_IDS)
    valid_id = True
    if draw(st.integers(0, 11)) == 0:
        request_id = draw(HOSTILE.filter(lambda value: not valid_request_id(value)))
        valid_id = False
    method = draw(st.sampled_from(methods))
    if draw(st.integers(0, 9)) == 0:
        method = draw(st.sampled_from(UNKNOWN_METHODS) | TEXTS)
    envelope: dict[str, Any] = {"id": request_id, "method": method}
    if draw(st.integers(0, 9)) == 0:
        envelope["method"] = draw(HOSTILE)
    params = draw(params_of(method))
    if draw(st.integers(0, 9)) > 0:
        envelope["params"] = params
    if method == "session.logout":  # one that is answered 200 closes: make it a refusal
        envelope["params"] = (params if isinstance(params, dict) else {}) | {"foo": 1}
    if draw(st.integers(0, 19)) == 0:
        envelope[draw(st.sampled_from(["extra", "jsonrpc", "ID"]))] = draw(HOSTILE)
    if draw(st.integers(0, 19)) == 0:
        del envelope["id"]
        valid_id = False
    # (A `method` that is no string is refused as the decoder reads it, before the params:
    # the first fault in reading order is the one answered, tests/gateway/test_wire.py.)
    spoilable = valid_id and isinstance(envelope["method"], str)
    if spoilable and isinstance(envelope.get("params"), dict) and draw(st.integers(0, 7)) == 0:
        return draw(spoiled(envelope, request_id))
    text = json.dumps(envelope, ensure_ascii=draw(st.booleans()))
    if draw(st.integers(0, 9)) == 0:
        text = text.encode()  # a binary frame is read as text
    well_formed = valid_id and method in METHODS and envelope["method"] == method
    if not well_formed or set(envelope) - {"id", "method", "params"}:
        sent = envelope["method"] if isinstance(envelope["method"], str) else None
        return Frame(text, request_id if valid_id else None, sent=sent)
    return Frame(text, request_id, method=method, sent=method)


def valid_request_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return 0 <= value < 2**53
    return isinstance(value, str) and 1 <= len(value) <= 36


# ----------------------------------------------------------------- checks


def check_error(error: Any, status: int, where: str, msg_max: int = ERROR_TEXT_CHARS_MAX) -> None:
    """A documented code, with its documented name and status and a message (at most
    `msg_max` characters: one quoting the input quotes its start)."""
    assert isinstance(error, dict), f"{where}: error is not an object: {error!r}"
    code = error.get("code")
    assert code in ERRORS, f"{where}: undocumented error code: {error}"
    assert code != INTERNAL, f"{where}: the server failed: {error}"
    name, documented_status = ERRORS[code]
    assert error.get("name") == name, f"{where}: code {code} is {name}: {error}"
    assert status == documented_status, f"{where}: {name} is {documented_status}, not {status}"
    assert isinstance(error.get("msg"), str) and error["msg"].strip(), f"{where}: no msg"
    assert "Traceback" not in error["msg"], f"{where}: a traceback: {error}"
    assert len(error["msg"]) <= msg_max, f"{where}: msg over {msg_max} characters: {error}"


def check_answer(answer: dict[str, Any], where: str) -> bool:
    """Check one answer; True if it was a refusal (nothing done)."""
    status = answer["status"]
    # §3: t_in and t_out on 200 and 409 only; retry_after_ms on 429 only
    fields = (
        {"id", "status", "result", "t_in", "t_out"}
        if status in (200, 409)
        else {"id", "status", "error"}
    )
    if status == 429:
        fields.add("retry_after_ms")
    assert set(answer) == fields, f"{where}: fields {sorted(answer)}, not {sorted(fields)}"
    if status == 200:
        return False
    if status == 409:
        for index, op in enumerate(answer["result"]["results"]):
            if op["status"] != 200:
                check_error(op.get("error"), op["status"], f"{where} op {index}")
        return False
    check_error(answer.get("error"), status, where)
    return True


def state(sessions: list[Session], methods: list[str]) -> list[Any]:
    """What a refusal must not change, as the sessions' queries show it."""
    found = []
    for session in sessions:
        for method in methods:
            answer = session.ask(method, {})
            assert answer["status"] == 200, f"{method}: {answer}"
            found.append(answer["result"])
    return found


class Fuzzer:
    """Sends an example's frames, pipelined, on one session and checks the answers and the
    state: `reset` takes back what an accepted request did (its orders, a dead-man's
    switch), so that the next example starts from a state nothing changes on its own."""

    def __init__(
        self,
        venue: BackgroundVenue,
        who: str | None,
        watchers: list[tuple[str, list[str]]],
        endpoint: str = "trade",
        packed: bool = False,
    ) -> None:
        self.venue = venue
        self.who = who
        self.endpoint = endpoint
        self.packed = packed
        self.session = self.open()
        self.watchers = [(venue.logged_on(name), queries) for name, queries in watchers]
        self.trader = venue.logged_on("alpha")  # takes back what an example did
        self.done: deque[list[str | bytes]] = deque(maxlen=3)  # examples with requests done
        self.reset()

    def open(self) -> Session:
        """The fuzzed session: logged on as `who`, or (None) not logged on."""
        if self.who is None:
            return self.venue.connected(self.endpoint, self.packed)
        return self.venue.logged_on(self.who, self.packed)

    def observe(self) -> list[Any]:
        """The watchers' state, and the fuzzed session's own (its cancel-on-disconnect and
        how many streams it follows)."""
        own = state([self.session], SESSION_QUERIES if self.who else ["subscriptions"])
        return [own, *(state([session], queries) for session, queries in self.watchers)]

    def refusal(self, method: str | None) -> str | None:
        """The error a well-formed request for `method` gets whatever its params: the
        session's rights are checked before the params (docs/protocol.md §2.1, §3)."""
        if method is None or method in PUBLIC:
            return None
        if method == "session.logon":
            return "PERMISSION_DENIED" if self.endpoint == "public" else None
        if self.who is None:
            return "NOT_AUTHENTICATED"
        scope = "admin" if method.startswith("admin.") else SCOPE_OF.get(method)
        return None if scope is None or scope in SCOPES[self.who] else "PERMISSION_DENIED"

    def reset(self) -> None:
        """Disarm the dead-man's switch, cancel every order, and rest the two orders the
        fuzzed amends and cancels name (`cl_ord_id` c-1 and c-2)."""
        for method, params in (
            ("orders.cancel_after", {"timeout_ms": 0}),
            ("orders.cancel_all", {}),
        ):
            assert self.trader.ask(method, params)["status"] == 200
        for params in RESTING:  # (refused once the operator halted the market: then none)
            check_answer(self.trader.ask("order.place", params), "a resting order")
        self.before = self.observe()

    def run(self, frames: list[Frame]) -> None:
        if self.who is None and time.monotonic() - self.session.opened_s > ANONYMOUS_S:
            self.session.close()  # before the venue closes it, 4001 (§2.1), with a fresh one
            self.session = self.open()
            self.before = self.observe()
        for frame in frames:
            self.session.send(frame.data)
        sentinel = self.session.sentinel_id()
        # A query is answered behind every answer owed before it (`ping` and `time` are
        # answered at once, ahead of a malformed frame's error sent before them).
        self.session.send(json.dumps({"id": sentinel, "method": "balances"}))
        answers = self.collect(sentinel, frames)
        expected = Counter(repr(frame.answer_id) for frame in frames if frame.answer_id is not None)
        got = Counter(repr(answer["id"]) for answer in answers if answer["id"] is not None)
        assert len(answers) == len(frames), f"{len(frames)} frames, answers: {answers}"
        assert got == expected, f"answer ids {got}, not {expected}: {answers}"
        named = Counter(
            (repr(f.answer_id), f.error_name or self.refusal(f.method))
            for f in frames
            if f.error_name or self.refusal(f.method)
        )
        answered = Counter((repr(a["id"]), a.get("error", {}).get("name")) for a in answers)
        assert not named - answered, f"answers {answered}, not {named}: {answers}"
        refused = [check_answer(answer, f"answer {answer['id']!r}") for answer in answers]
        if os.environ.get("FUZZ_STATS"):
            for answer in answers:
                STATS[
                    (
                        answer["status"],
                        answer.get("error", {}).get("name"),
                        re.sub(r"`[^`]*`|'[^']*'", "", answer.get("error", {}).get("msg", ""))[:70],
                    )
                ] += 1
        if all(refused) or all(frame.sent in READS for frame in frames if frame.sent):
            assert self.observe() == self.before, (
                f"refusals or reads changed the state: {answers}; the last requests done before:"
                f" {list(self.done)}"
            )
        else:
            self.done.append([frame.data[:500] for frame in frames])
            self.reset()

    def collect(self, sentinel: str, frames: list[Frame]) -> list[dict[str, Any]]:
        """The answers before the sentinel's, in the order they came."""
        deadline = time.monotonic() + ANSWER_WAIT_S
        answers = []
        try:
            while (answer := self.session.next_answer(deadline))["id"] != sentinel:
                answers.append(answer)
        except ConnectionClosed as closed:
            pytest.fail(f"the connection closed ({closed}) on {[f.data[:300] for f in frames]}")
        except TimeoutError:
            pytest.fail(f"no answer within {ANSWER_WAIT_S} s to {[f.data[:300] for f in frames]}")
        return answers

    def close(self) -> None:
        for session in [self.session, self.trader, *(s for s, _ in self.watchers)]:
            session.close()


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundVenue]:
    yield from background_venue(tmp_path_factory)


@pytest.fixture(scope="module")
def operator_venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundVenue]:
    """The operator's own venue: what it lists, halts and pays leaves the trader's alone."""
    yield from background_venue(tmp_path_factory)


def background_venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundVenue]:
    server = BackgroundVenue(tmp_path_factory.mktemp("fuzz") / "data").start()
    logs = ErrorLogs()
    logging.getLogger().addHandler(logs)
    try:
        yield server
    finally:
        logging.getLogger().removeHandler(logs)
        server.stop()
        if os.environ.get("FUZZ_STATS"):  # what the answers were: is the fuzzer reaching deep?
            print(*sorted(STATS.items(), key=lambda item: -item[1]), sep="\n")
    assert not logs.records, f"the venue logged errors: {[r.getMessage() for r in logs.records]}"


# every method, the trading ones more often (they reach the most checks)
TRADING = ["order.place"] * 4 + ["order.amend", "order.cancel", "order.batch", "quote.mass"] * 2
ALL_METHODS = list(METHODS) + TRADING
# the operator's: the admin methods more often, corporate actions most (the most arithmetic)
OPERATOR_METHODS = ALL_METHODS + [m for m in METHODS if m.startswith("admin.")] * 2
OPERATOR_METHODS += ["admin.set_status", "admin.split", "admin.pay_dividend"] * 4
PUBLIC = {"ping", "time", "instruments", "book.snapshot", "reserves", "subscribe", "unsubscribe",
          "subscriptions"}  # fmt: skip
SCOPE_OF = {  # docs/protocol.md's method index; admin.* need admin
    **dict.fromkeys(["orders.open", "order.status", "orders.history", "fills", "balances"], "read"),
    **dict.fromkeys(
        ["session.cod", "orders.cancel_after", "order.place", "order.cancel", "order.amend",
         "order.batch", "quote.mass", "orders.cancel_all"],
        "trade",
    ),
}  # fmt: skip
SCOPES = {"alpha": {"read", "trade"}, "admin": {"read", "admin"}}  # venue.toml's demo keys
# what changes nothing even when it is answered 200 (subscribe, `session.cod` and the logon
# change the session; the rest, the account or the venue)
READS = {
    "ping", "time", "session.status", "orders.open", "order.status", "orders.history", "fills",
    "balances", "instruments", "book.snapshot", "reserves", "subscriptions",
}  # fmt: skip
ACCOUNT_QUERIES = ["balances", "orders.open", "orders.history"]
SESSION_QUERIES = ["session.status", "subscriptions"]
VENUE_QUERIES = ["instruments", "reserves"]
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not RANDOM,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module", params=["plain", "packed"])
def trader(venue: BackgroundVenue, request: pytest.FixtureRequest) -> Iterator[Fuzzer]:
    """A trader's connection, one message a frame or packed frames (§2.2.1)."""
    packed = request.param == "packed"
    fuzzer = Fuzzer(venue, "alpha", [("alpha", ACCOUNT_QUERIES)], packed=packed)
    yield fuzzer
    fuzzer.close()


@pytest.fixture(scope="module")
def operator(operator_venue: BackgroundVenue) -> Iterator[Fuzzer]:
    watchers = [("admin", VENUE_QUERIES + ACCOUNT_QUERIES), ("alpha", ACCOUNT_QUERIES)]
    fuzzer = Fuzzer(operator_venue, "admin", watchers)
    yield fuzzer
    fuzzer.close()


@pytest.fixture(scope="module", params=["trade", "public?pack=1"])
def anonymous(venue: BackgroundVenue, request: pytest.FixtureRequest) -> Iterator[Fuzzer]:
    endpoint, _, pack = request.param.partition("?")
    fuzzer = Fuzzer(venue, None, [("alpha", ACCOUNT_QUERIES)], endpoint, packed=bool(pack))
    yield fuzzer
    fuzzer.close()


@FUZZ
@given(frames=st.lists(frame(ALL_METHODS), min_size=1, max_size=FRAMES_MAX))
def test_frames_before_a_logon_are_each_answered_and_change_nothing(
    anonymous: Fuzzer, frames: list[Frame]
) -> None:
    anonymous.run(frames)


@FUZZ
@given(frames=st.lists(frame(ALL_METHODS), min_size=1, max_size=FRAMES_MAX))
def test_a_trader_s_hostile_frames_are_each_answered_and_refusals_change_nothing(
    trader: Fuzzer, frames: list[Frame]
) -> None:
    trader.run(frames)


@FUZZ
@given(frames=st.lists(frame(OPERATOR_METHODS), min_size=1, max_size=FRAMES_MAX))
def test_an_operator_s_hostile_frames_are_each_answered_and_refusals_change_nothing(
    operator: Fuzzer, frames: list[Frame]
) -> None:
    operator.run(frames)


# ----------------------------------------------------------------- REST (docs/rest.md)

REST_WINDOW_MS = 2_000  # a signed request's nonce is remembered this long: few at a time
# The routes, by path, with the query parameters each takes (`None`: a body, no query).
REST_ROUTES: dict[str, list[str] | None] = {
    "/api/v1/instruments": [],
    "/api/v1/book": ["symbol", "depth"],
    "/api/v1/trades": ["symbol", "limit"],
    "/api/v1/ticker": ["symbol"],
    "/api/v1/candles": ["symbol", "interval", "limit"],
    "/api/v1/time": [],
    "/api/v1/reserves": [],
    "/api/v1/balances": [],
    "/api/v1/orders": ["symbol"],
    "/api/v1/orders/history": [
        "status", "symbol", "since_ts", "until_ts", "before_order_id", "limit",
    ],
    "/api/v1/fills": ["limit", "since_seq"],
    "/openapi.json": [],
}  # fmt: skip
ORDER_ID_SEGMENTS = ["1", "2", "0", "-1", "1e3", "01", "9" * 30, "abc", "%31", "%D9%A1", ""]
SIGNING_HEADERS = ["X-API-Key", "X-Timestamp", "X-Nonce", "X-Recv-Window", "X-Signature"]
HEADER_VALUES = [
    b"", b"0", b"-1", b"1e3", b"99999999999999999999", b"\xd9\xa1", b"\xff", b" 5000", b"5000 ",
    b"demo-taker", b"ab" * 32, b"\x00", b"1" * 5_000,
]  # fmt: skip
# An error's text quotes only the start of input. docs/rest.md says 200 characters; the code
# cuts at the websocket's 1,000 (`wire.shortened`): held to that until the two agree.
REST_ERROR_TEXT_CHARS_MAX = ERROR_TEXT_CHARS_MAX
REST_STATUSES = {200, 400, 401, 403, 404, 405, 413, 415}  # what a well-framed request may get


class RestRequest(msgspec.Struct, frozen=True):
    method: str
    path: str
    query: str
    body: bytes
    headers: dict[str, str]
    sign: bool
    spoiled_header: tuple[str, bytes, bool] | None = None  # name, value, sent as well (twice)


def query_value(name: str) -> st.SearchStrategy[str]:
    """A query parameter's text: a plausible value's, or a hostile one."""
    plausible = plausible_value(name).map(lambda value: str(value).lower())
    return plausible | st.sampled_from(NUMBER_TEXTS) | TEXTS | st.just("null")


@st.composite
def query_of(draw: st.DrawFn, names: list[str]) -> str:
    """The query: some of the route's parameters, now and then an unknown, repeated or
    not-UTF-8 one, each %-escaped (or not)."""
    pairs = [(name, draw(query_value(name))) for name in names if draw(st.booleans())]
    if draw(st.integers(0, 5)) == 0:
        pairs.append((draw(st.sampled_from([*names, "foo", ""]) | TEXTS), draw(TEXTS)))
    parts = [f"{quote_text(draw, name)}={quote_text(draw, value)}" for name, value in pairs]
    if draw(st.integers(0, 9)) == 0:
        parts.append(draw(st.sampled_from(["symbol=%FF", "%", "a=%zz", "&&", "=", "symbol"])))
    return "&".join(parts)


def quote_text(draw: st.DrawFn, text: str) -> str:
    return urllib.parse.quote(text, safe="" if draw(st.booleans()) else "/:")


@st.composite
def rest_request(draw: st.DrawFn) -> RestRequest:
    """A request to a route (or to none), with a plausible or hostile query or body, signed
    (so that it reaches its params) or not, now and then with a hostile header."""
    kind = draw(st.sampled_from(["get", "get", "post", "patch", "delete", "other"]))
    headers: dict[str, str] = {}
    body = b""
    query = ""
    if kind == "get":
        path = draw(st.sampled_from(sorted(REST_ROUTES)))
        method = draw(st.sampled_from(["GET", "GET", "GET", "HEAD", "PUT"]))
        query = draw(query_of(REST_ROUTES[path] or []))
    elif kind in ("patch", "delete"):
        method = kind.upper()
        path = "/api/v1/orders/" + draw(st.sampled_from(ORDER_ID_SEGMENTS))
        if kind == "patch":
            body = draw(rest_body("order.amend", ["order_id", "cl_ord_id"]))
    elif kind == "post":
        method, path = "POST", "/api/v1/orders"
        body = draw(rest_body("order.place", []))
    else:
        method = draw(st.sampled_from(["GET", "POST", "OPTIONS", "DELETE"]))
        path = draw(st.sampled_from(["/api/v2/orders", "/api/v1/", "/api/v1/orders/1/x"]))
        path = draw(st.just(path) | ANY_TEXT.map(lambda text: "/api/" + urllib.parse.quote(text)))
    if body and draw(st.integers(0, 9)) > 0:
        headers["Content-Type"] = draw(
            st.sampled_from(
                ["application/json"] * 4 + ["text/plain", "application/json; charset=latin-1"]
            )
        )
    spoiled = None
    if draw(st.integers(0, 5)) == 0:  # a signing header (or the type) hostile, or sent twice
        name = draw(st.sampled_from([*SIGNING_HEADERS, "Content-Type"]))
        value = draw(st.sampled_from(HEADER_VALUES) | TEXTS.map(str.encode))
        spoiled = (name, value.replace(b"\r", b"").replace(b"\n", b""), draw(st.booleans()))
    return RestRequest(method, path, query, body, headers, draw(st.integers(0, 5)) > 0, spoiled)


@st.composite
def rest_body(draw: st.DrawFn, method: str, dropped: list[str]) -> bytes:
    """A body: the websocket method's params (less the fields the path says), or not JSON."""
    if draw(st.integers(0, 19)) == 0:
        return draw(st.binary(max_size=40))
    params = draw(params_of(method))
    if isinstance(params, dict) and draw(st.integers(0, 9)) > 0:
        for name in dropped:
            params.pop(name, None)
    return json.dumps(params, ensure_ascii=draw(st.booleans())).encode()


class RestFuzzer:
    """Sends a REST request as a trader, checks its answer, and the account's state after a
    refusal (queried over the websocket)."""

    def __init__(self, venue: BackgroundVenue) -> None:
        self.venue = venue
        self.key, self.secret = KEYS["alpha"]
        self.connection = http.client.HTTPConnection("127.0.0.1", venue.port, timeout=ANSWER_WAIT_S)
        self.nonces = iter(range(10**9))
        self.trader = venue.logged_on("alpha")  # watches the state and takes back what was done
        self.before = state([self.trader], ACCOUNT_QUERIES)

    def run(self, request: RestRequest) -> None:
        status, body, unreadable = self.send(request)
        where = f"{request} {status} {body[:300]!r}"
        assert status in REST_STATUSES, f"{where}: HTTP {status} {body[:500]!r}"
        if unreadable:  # a request that cannot be read (a header with a NUL): 400, text, close
            assert status == 400 and b"Traceback" not in body, where
            assert body.strip() or request.method == "HEAD", f"{where}: no words"
            assert state([self.trader], ACCOUNT_QUERIES) == self.before, f"{where}: changed"
            return
        if request.method == "HEAD" or (request.path == "/openapi.json" and status == 200):
            return
        answer = json.loads(body)
        if status == 200:
            assert "error" not in answer, f"{where}: {answer}"
            if request.method != "GET":
                self.reset()
            else:  # a read changes nothing either
                assert state([self.trader], ACCOUNT_QUERIES) == self.before, f"{where}: changed"
            return
        error = answer.get("error")
        if os.environ.get("FUZZ_STATS"):
            STATS[
                (
                    "rest",
                    status,
                    error.get("name"),
                    re.sub(r"`[^`]*`|'[^']*'", "", error.get("msg", ""))[:70],
                )
            ] += 1
        if status in REST_ONLY_STATUSES:  # a status of REST's own, with the code it goes with
            name = REST_ONLY_STATUSES[status]
            assert name is None or error["name"] == name, f"{where}: HTTP {status}: {error}"
            status = ERRORS[error["code"]][1]
        check_error(error, status, where, REST_ERROR_TEXT_CHARS_MAX)
        assert state([self.trader], ACCOUNT_QUERIES) == self.before, f"{where}: changed state"

    def send(self, request: RestRequest) -> tuple[int, bytes, bool]:
        """The answer's status and body, and whether it was a request that could not be read
        (docs/rest.md: 400 in plain text, then the connection closes)."""
        headers: list[tuple[str, str | bytes]] = [*request.headers.items()]
        if request.sign:
            headers += self.signature(request).items()
        if request.spoiled_header is not None:
            name, value, twice = request.spoiled_header
            if not twice:
                headers = [(key, text) for key, text in headers if key != name]
            headers.append((name, value))
        target = request.path + ("?" + request.query if request.query else "")
        try:
            self.connection.putrequest(request.method, target, skip_accept_encoding=True)
            for name, value in headers:
                self.connection.putheader(name, value)
            if request.body:
                self.connection.putheader("Content-Length", str(len(request.body)))
            self.connection.endheaders(request.body or None)
            response = self.connection.getresponse()
            body = response.read()
        except (ConnectionError, http.client.HTTPException) as failure:
            self.connection.close()  # (the next example starts on a new one)
            pytest.fail(f"{request}: the connection failed: {failure!r}")
        if response.will_close:  # (a documented close: the next request opens another)
            self.connection.close()
        plain = response.getheader("content-type", "").startswith("text/plain")
        return response.status, body, plain and response.will_close

    def signature(self, request: RestRequest) -> dict[str, str]:
        ts = time.time_ns() // 1_000
        nonce = f"r-{next(self.nonces)}"
        sig = sign_request(
            self.secret, self.key, ts, nonce, REST_WINDOW_MS, request.method,
            request.path, request.query, request.body,
        )  # fmt: skip
        return {
            "X-API-Key": self.key,
            "X-Timestamp": str(ts),
            "X-Nonce": nonce,
            "X-Recv-Window": str(REST_WINDOW_MS),
            "X-Signature": sig,
        }

    def reset(self) -> None:
        assert self.trader.ask("orders.cancel_all", {})["status"] == 200
        self.before = state([self.trader], ACCOUNT_QUERIES)

    def close(self) -> None:
        self.connection.close()
        self.trader.close()


# REST's own statuses (docs/rest.md, Errors) and the error each goes with (None: any)
REST_ONLY_STATUSES = {404: "UNKNOWN_METHOD", 405: None, 413: "MESSAGE_TOO_BIG", 415: "BAD_JSON"}


@pytest.fixture(scope="module")
def rest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestFuzzer]:
    for venue in background_venue(tmp_path_factory):
        fuzzer = RestFuzzer(venue)
        yield fuzzer
        fuzzer.close()


@FUZZ
@given(request=rest_request())
def test_a_trader_s_hostile_rest_requests_are_answered_and_refusals_change_nothing(
    rest: RestFuzzer, request: RestRequest
) -> None:
    rest.run(request)
