"""docs/protocol.md's worked examples (its ```jsonc blocks) are what a real venue does.

Each block is cut at its `// →` (a request), `// ←` (its answer) and `// ← push` marks into
messages. A block in `RUNS` is sent as shown to one real server on 127.0.0.1 (one per module,
the sample config's funded accounts), with what must differ substituted (a logon's ts, nonce
and sig, ids of orders this run made), and each answer, and each push shown, is compared
with the doc's: the same fields, the same types, the same values, but for the values a run
cannot reproduce (`SHAPE_ONLY`: ids, times, sequence numbers), compared by type. A block in
`ILLUSTRATIVE` is not run, for the reason it gives (placeholders, the answer of another
block, a cluster's outage, a venue stopping); every block is in one of the two, so none is
left out silently.
"""

import asyncio
import json
import re
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import websockets

from gateway.auth import sign_logon
from tests.conftest import KEYS, ROOT, Venue, start_venue
from tests.sample_config import sample_bill

PAGE = (ROOT / "docs" / "protocol.md").read_text()
EXAMPLE_TIMEOUT_S = 10  # one example's requests and pushes, on a busy 2-core machine
PUSHES_READ_MAX = 200  # an example's setup causes a few dozen pushes at most
# Values no run reproduces: compared by type only (ints stay ints, strings strings).
SHAPE_ONLY = {
    "t_in", "t_out", "ts", "seq", "prev_seq", "epoch", "order_id", "exec_id", "trade_id",
    "settlement_id", "pong", "time", "done_at", "withdrawal_id", "api_key",
    "secret", "as_of", "expire_at", "created_ts", "closed_ts", "next_before_order_id",
    "transfer_id", "t", "retry_after_ms",
}  # fmt: skip


@dataclass
class Message:
    """One message of an example: `to` (a request), `answer` or `push`; `body` None when
    its text is not JSON (a fragment: `{...}`, `<µs>`)."""

    kind: str
    note: str
    text: str
    body: Any


@dataclass
class Example:
    key: str  # "§5.1 #3": the third example under the section numbered 5.1
    line: int
    messages: list[Message] = field(default_factory=list)

    def requests(self) -> list[dict[str, Any]]:
        return [m.body for m in self.messages if m.kind == "to" and m.body is not None]


def strip_comments(text: str) -> str:
    """`text` without its `// ...` comments (those outside strings)."""
    out: list[str] = []
    for line in text.split("\n"):
        in_string = False
        escaped = False
        for index, char in enumerate(line):
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = not in_string
            elif not in_string and line.startswith("//", index):
                line = line[:index]
                break
        out.append(line)
    return "\n".join(out)


def cut(block: str) -> list[Message]:
    """The block's messages: each mark line starts one, its JSON following until the next."""
    messages: list[Message] = []
    for line in block.split("\n"):
        mark = re.match(r"//\s*(→|←)( push)?(.*)", line)
        if mark:
            kind = "to" if mark.group(1) == "→" else ("push" if mark.group(2) else "answer")
            messages.append(Message(kind, mark.group(3).strip(), "", None))
        elif messages and not line.startswith("//"):
            messages[-1].text += line + "\n"
    return [one for message in messages for one in split(message)]


def split(message: Message) -> list[Message]:
    """`message`, or the messages its text holds one after another (`// ← pushes`)."""
    text = strip_comments(message.text).strip()
    bodies: list[Any] = []
    decoder = json.JSONDecoder()
    while text:
        try:
            body, end = decoder.raw_decode(text)
        except json.JSONDecodeError:
            return [message]  # a fragment: its body stays None
        bodies.append(body)
        text = text[end:].strip()
    return [Message(message.kind, message.note, message.text, body) for body in bodies] or [message]


def examples(page: str = PAGE) -> list[Example]:
    """Every ```jsonc block of the page, keyed by its section's number and its rank in it."""
    found: list[Example] = []
    section = "0"
    ranks: dict[str, int] = {}
    lines = page.split("\n")
    index = 0
    while index < len(lines):
        line = lines[index]
        numbered = re.match(r"#+ (\d+(?:\.\d+)*)\.? ", line)
        if numbered:
            section = numbered.group(1)
        if line.startswith("```jsonc"):
            end = lines.index("```", index + 1)
            ranks[section] = ranks.get(section, 0) + 1
            example = Example(f"§{section} #{ranks[section]}", index + 1)
            example.messages = cut("\n".join(lines[index + 1 : end]))
            found.append(example)
            index = end
        index += 1
    return found


EXAMPLES = {example.key: example for example in examples()}


# ---- comparing ------------------------------------------------------------------------------


def differences(
    doc: Any, real: Any, path: str = "", loose: frozenset[str] = frozenset()
) -> list[str]:
    """Where `real` is not what `doc` shows: fields, types, and values outside SHAPE_ONLY
    and `loose` (paths, or field names, compared by type)."""
    name = path.rsplit(".", 1)[-1].split("[", 1)[0]
    if isinstance(doc, dict):
        if not isinstance(real, dict):
            return [f"{path}: doc shows an object, the venue sent {real!r}"]
        found = []
        if set(doc) != set(real):
            found.append(
                f"{path or '.'}: fields only in the doc {sorted(set(doc) - set(real))}, "
                f"only in the venue's {sorted(set(real) - set(doc))}"
            )
        for key in doc.keys() & real.keys():
            found += differences(doc[key], real[key], f"{path}.{key}", loose)
        return found
    if isinstance(doc, list):
        if not isinstance(real, list):
            return [f"{path}: doc shows a list, the venue sent {real!r}"]
        if path in loose:  # some of the venue's items: each the doc's, found by its name
            shown = [one for one in doc if not (isinstance(one, str) and one.startswith("…"))]
            return [p for one in shown for p in differences(one, named(one, real), path, loose)]
        if len(doc) != len(real):
            return [f"{path}: doc shows {len(doc)} items, the venue sent {len(real)}: {real!r}"]
        return [
            problem
            for index, (one, other) in enumerate(zip(doc, real, strict=False))
            for problem in differences(one, other, f"{path}[{index}]", loose)
        ]
    if type(doc) is not type(real) and not (doc is None and path in loose):
        return [f"{path}: doc shows {doc!r}, the venue sent {real!r}"]
    if doc != real and name not in SHAPE_ONLY and path not in loose and name not in loose:
        return [f"{path}: doc shows {doc!r}, the venue sent {real!r}"]
    return []


NAMES = ("symbol", "asset", "sym")  # what names an item of a list the doc shows in part


def named(doc: Any, real: list[Any]) -> Any:
    """The item of `real` that `doc` names (the first when it names none)."""
    for name in NAMES:
        if isinstance(doc, dict) and name in doc:
            return next((item for item in real if item.get(name) == doc[name]), None)
    return real[0] if real else None


# ---- talking to the venue as the doc does ------------------------------------------------


class Wire:
    """A raw websocket connection: frames sent exactly as given, answers matched by id,
    pushes kept in order (heartbeats dropped)."""

    def __init__(self, socket: Any) -> None:
        self.socket = socket
        self.pushes: list[dict[str, Any]] = []
        self.account: int | None = None  # a fresh account's number

    async def receive(self) -> dict[str, Any]:
        message = json.loads(await self.socket.recv())
        assert isinstance(message, dict)
        return message

    async def ask(self, request: dict[str, Any] | str) -> dict[str, Any]:
        """The answer to `request` (sent as given: a str as a raw frame)."""
        await self.socket.send(request if isinstance(request, str) else json.dumps(request))
        sent_id = None if isinstance(request, str) else request.get("id")
        for _ in range(PUSHES_READ_MAX):
            message = await self.receive()
            if "status" in message and (message.get("id") == sent_id or sent_id is None):
                return message
            if message.get("ch") != "heartbeat":
                self.pushes.append(message)
        raise AssertionError(f"no answer to {request!r} among {PUSHES_READ_MAX} messages")

    async def push(self, like: dict[str, Any]) -> dict[str, Any]:
        """The first push (kept or next) of `like`'s channel and type (and exec_type)."""

        def matches(push: dict[str, Any]) -> bool:
            keys = ("ch", "type", "sym")
            if any(push.get(key) != like.get(key) for key in keys if key in like):
                return False
            want = (
                (like.get("data") or {}).get("exec_type")
                if isinstance(like.get("data"), dict)
                else None
            )
            return want is None or push["data"].get("exec_type") == want

        for _ in range(PUSHES_READ_MAX):
            for push in self.pushes:
                if matches(push):
                    self.pushes.remove(push)
                    return push
            message = await self.receive()
            if message.get("ch") != "heartbeat" or like.get("ch") == "heartbeat":
                self.pushes.append(message)
        raise AssertionError(f"no push like {like!r}")

    async def close(self) -> None:
        await self.socket.close()


class Run:
    """One example's run: its connections, and what it substitutes into the doc's requests."""

    def __init__(self, venue: Venue, example: Example) -> None:
        self.venue = venue
        self.example = example
        self.wires: list[Wire] = []
        self.fresh: list[Wire] = []  # the connections of accounts this run opened
        self.problems: list[str] = []
        self.compared = 0  # messages compared: each answer and push shown must be

    async def wire(self, who: str | None = "alpha", endpoint: str = "trade") -> Wire:
        # unbounded: a close waits behind no unread frames (websockets stops reading at 16)
        socket = await websockets.connect(self.venue.url(endpoint), max_size=None, max_queue=None)
        wire = Wire(socket)
        self.wires.append(wire)
        if who is not None:
            answer = await wire.ask(logon(who, id=0))
            assert answer["status"] == 200, answer
        return wire

    def compare(self, doc: Any, real: Any, what: str, loose: frozenset[str] = frozenset()) -> None:
        self.compared += 1
        self.problems += [f"{what}{problem}" for problem in differences(doc, real, "", loose)]

    async def exchange(
        self,
        wire: Wire,
        index: int = 0,
        change: Callable[[dict[str, Any]], dict[str, Any]] = lambda request: request,
        loose: frozenset[str] = frozenset(),
        pushes: bool = True,
    ) -> dict[str, Any]:
        """Send the example's `index`th request (after `change`), compare its answer and the
        pushes shown after it (up to the next request); return the answer."""
        messages = self.example.messages
        requests = [at for at, message in enumerate(messages) if message.kind == "to"]
        start = requests[index]
        request = change(json.loads(json.dumps(messages[start].body)))
        answer = await wire.ask(request)
        for message in messages[start + 1 :]:
            if message.kind == "to":
                break
            if message.kind == "answer":
                self.compare(message.body, answer, f"answer to #{index}", loose)
            elif message.kind == "push" and pushes:
                real = await wire.push(message.body)
                self.compare(message.body, real, f"push after #{index}", loose)
        return answer

    async def close(self) -> None:
        for wire in self.wires:
            await wire.close()


def logon(
    who: str, id: int = 1, ts_us: int | None = None, nonce: str | None = None
) -> dict[str, Any]:
    api_key, secret = KEYS[who]
    ts_us = ts_us if ts_us is not None else time.time_ns() // 1000
    nonce = nonce or f"n-{ts_us}-{id}"
    params = {"api_key": api_key, "ts": ts_us, "nonce": nonce, "recv_window": 5000}
    params["sig"] = sign_logon(secret, api_key, ts_us, nonce, 5000)
    return {"id": id, "method": "session.logon", "params": params}


def signed(request: dict[str, Any], ts_us: int | None = None) -> dict[str, Any]:
    """The doc's logon with this run's ts and a fresh nonce, signed with the key's secret
    (the doc's sig stays when it is a made-up one: 64 of one digit or two)."""
    params = request["params"]
    secret = {api_key: secret for api_key, secret in KEYS.values()}[params["api_key"]]
    params["ts"] = ts_us if ts_us is not None else time.time_ns() // 1000
    params["nonce"] = f"{params['nonce']}-{params['ts']}"
    if len(set(params["sig"])) > 2:
        window = params.get("recv_window", 5000)
        params["sig"] = sign_logon(secret, params["api_key"], params["ts"], params["nonce"], window)
    return request


# ---- the examples run, and what each needs first ------------------------------------------

Scenario = Callable[[Run], Awaitable[None]]
RUNS: dict[str, Scenario | None] = {}  # None: every request as alpha, in order


def runs(*keys: str) -> Callable[[Scenario], Scenario]:
    def register(scenario: Scenario) -> Scenario:
        for key in keys:
            RUNS[key] = scenario
        return scenario

    return register


async def as_shown(run: Run, who: str | None = "alpha") -> None:
    wire = await run.wire(who)
    for index in range(len(run.example.requests())):
        await run.exchange(wire, index)


# Examples that need nothing before them: sent as shown, as alpha.
AS_SHOWN = ("§4.3 #1", "§4.4 #1", "§4.4 #2", "§5.1 #7", "§5.4 #6", "§5.6 #2", "§7 #5", "§7 #6")
for _key in (*AS_SHOWN, "§11.1 #4", "§11.1 #5"):
    RUNS[_key] = None


PINGS_SENT = 1200  # at 0.5 a ping, more than the sample config's connection burst of 400


@runs("§2.6 #1")
async def rate_limited(run: Run) -> None:
    wire = await run.wire(None)
    for id in range(PINGS_SENT):  # sent at once: the bucket refills 200 a second
        await wire.socket.send(json.dumps({"id": id, "method": "ping"}))
    (shown,) = [m.body for m in run.example.messages]
    answers = [await wire.receive() for _ in range(PINGS_SENT)]  # all read: a clean close
    refused = [answer for answer in answers if answer.get("status") == 429]
    assert refused, f"{PINGS_SENT} pings and none refused"
    run.compare(shown | {"id": refused[0]["id"]}, refused[0], "answer ")


@runs("§4.1 #1", "§4.1 #2", "§4.1 #3")
async def logon_signed(run: Run) -> None:
    await run.exchange(await run.wire(None), change=signed)


@runs("§4.1 #4")
async def logon_a_minute_late(run: Run) -> None:
    wire = await run.wire(None)
    late = time.time_ns() // 1000 - 60_000_000
    # the milliseconds behind are the run's: 60000 and the time the logon took to arrive
    answer = await run.exchange(wire, change=lambda r: signed(r, late), loose=frozenset({"msg"}))
    assert re.fullmatch(
        r"ts is 6\d{4} ms behind the server's clock \(negative: ahead\); recv_window is 5000 ms",
        answer["error"]["msg"],
    ), answer


@runs("§4.1 #5")
async def logon_replayed(run: Run) -> None:
    first = await run.wire(None)
    request = signed(run.example.requests()[0])
    assert (await first.ask(request))["status"] == 200
    await run.exchange(await run.wire(None), change=lambda _: request)


@runs("§4.1 #6")
async def logon_twice(run: Run) -> None:
    await run.exchange(await run.wire("taker"), change=signed)


@runs("§4.1 #7")
async def logon_on_public(run: Run) -> None:
    await run.exchange(await run.wire(None, "public"), change=signed)


@runs("§4.1 #8", "§7 #7", "§4.2 #3", "§4.2 #4", "§4.2 #5", "§11.1 #2", "§11.1 #3")
async def before_logon(run: Run) -> None:
    await as_shown(run, None)


@runs("§4.2 #1")
async def logout(run: Run) -> None:
    wire = await run.wire("alpha")
    await run.exchange(wire)
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(wire.receive(), EXAMPLE_TIMEOUT_S)
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1000, "logged out")


@runs("§4.2 #2")
async def session_status(run: Run) -> None:
    wire = await run.wire("alpha")
    await wire.ask({"id": 1, "method": "session.cod", "params": {"enabled": True}})
    await wire.ask({"id": 2, "method": "subscribe", "params": {"ch": "account"}})
    await run.exchange(wire)


@runs("§5.1 #1")
async def place_resting(run: Run) -> None:
    wire = await fresh_account(run, CONFIG_FUNDS)  # its balances as the doc's
    await wire.ask({"id": 1, "method": "subscribe", "params": {"ch": "account"}})
    await run.exchange(wire)


@runs("§5.1 #5")
async def place_duplicate(run: Run) -> None:
    wire = await run.wire("alpha")
    await wire.ask({"id": 1, "method": "subscribe", "params": {"ch": "account"}})
    resting = {"symbol": "AAPLx-USD", "side": "sell", "type": "limit", "tif": "gtc"}
    params = resting | {"price": "187.30", "qty": "10", "cl_ord_id": "a-1"}
    await wire.ask({"id": 2, "method": "order.place", "params": params})
    await run.exchange(wire, loose=frozenset({".error.data.order_id"}))


@runs("§5.1 #6")
async def place_post_only_would_take(run: Run) -> None:
    maker = await run.wire("beta")
    params = {"symbol": "AAPLx-USD", "side": "sell", "type": "limit", "tif": "gtc"}
    await maker.ask(
        {"id": 1, "method": "order.place", "params": params | {"price": "187.30", "qty": "1"}}
    )
    await run.exchange(await run.wire("alpha"))


@runs("§5.1 #8")
async def place_halted(run: Run) -> None:
    admin = await run.wire("admin")
    halt = {"symbol": "MSFTx-USD", "status": "halted"}
    await admin.ask({"id": 1, "method": "admin.set_status", "params": halt})
    try:
        await run.exchange(await run.wire("alpha"))
    finally:
        reopen = {"symbol": "MSFTx-USD", "status": "open"}
        await admin.ask({"id": 2, "method": "admin.set_status", "params": reopen})


@runs("§5.1 #9")
async def place_not_eligible(run: Run) -> None:
    await run.exchange(await run.wire("us"))


@runs("§5.1 #10")
async def place_outside_the_band(run: Run) -> None:
    await reference_price(run, "AAPLx-USD", "187.25")  # as venue.toml sets it; trades move it
    await run.exchange(await run.wire("alpha"))


async def reference_price(run: Run, symbol: str, price: str) -> None:
    """`symbol`'s reference price set back to `price` (each trade moves it to its price)."""
    await done(
        await run.wire("admin"), "admin.set_reference_price", {"symbol": symbol, "price": price}
    )


@runs("§5.2 #2", "§6 #3")
async def a_filled_order(run: Run) -> None:
    maker = await run.wire("beta")
    params = {"symbol": "NVDAx-USD", "side": "sell", "type": "limit", "tif": "gtc"}
    await maker.ask(
        {"id": 1, "method": "order.place", "params": params | {"price": "135.40", "qty": "1"}}
    )
    taker = await run.wire("alpha")
    buy = params | {"side": "buy", "tif": "ioc", "price": "135.40", "qty": "1"}
    filled = (await taker.ask({"id": 2, "method": "order.place", "params": buy}))["result"]
    assert filled["status"] == "filled", filled

    def the_filled_one(request: dict[str, Any]) -> dict[str, Any]:
        return request | {"params": {"order_id": filled["order_id"]}}

    if run.example.key == "§5.2 #2":
        await run.exchange(taker, change=the_filled_one, loose=frozenset({".error.data.order_id"}))
        return
    # UNKNOWN_ORDER: an order of another account (the doc's 7 may be alpha's own here)
    history = await maker.ask({"id": 3, "method": "orders.history", "params": {"limit": 1}})
    theirs = history["result"]["orders"][0]["order_id"]
    await run.exchange(taker, change=lambda request: request | {"params": {"order_id": theirs}})


@runs("§5.3 #1")
async def amend_down(run: Run) -> None:
    wire = await run.wire("alpha")
    await wire.ask({"id": 1, "method": "subscribe", "params": {"ch": "account"}})
    resting = {"symbol": "AAPLx-USD", "side": "sell", "type": "limit", "tif": "gtc"}
    params = resting | {"price": "187.30", "qty": "10", "cl_ord_id": "a-1", "tag": "mm"}
    await wire.ask({"id": 2, "method": "order.place", "params": params})
    await run.exchange(wire)


@runs("§5.6 #1")
async def cancel_all_of_a_symbol(run: Run) -> None:
    wire = await run.wire("alpha")
    params = {"symbol": "NVDAx-USD", "side": "buy", "type": "limit", "tif": "gtc", "qty": "1"}
    for id, price in enumerate(("130.00", "130.01")):
        await wire.ask({"id": id, "method": "order.place", "params": params | {"price": price}})
    await run.exchange(wire)


@runs("§6 #7")
async def instruments(run: Run) -> None:
    await reference_price(run, "AAPLx-USD", "187.25")
    await run.exchange(await run.wire("alpha"), loose=frozenset({".result.instruments"}))


@runs("§6 #8")
async def reserves(run: Run) -> None:
    # the supply grows as other examples fund new accounts, and the attested reserves with it
    loose = frozenset({".result.reserves", "supply", "attested"})
    await run.exchange(await run.wire("alpha"), loose=loose)


BOOKS = {  # the levels the doc's book examples show, placed by beta (bids) and taker (asks)
    "AAPLx-USD": ([("187.10", "4")], [("187.30", "10"), ("187.40", "5")]),
    "NVDAx-USD": (
        [("135.30", "6"), ("135.20", "3"), ("135.10", "3"), ("135.00", "3")],
        [("135.60", "10")],
    ),
}


async def book(run: Run, symbol: str) -> None:
    """`symbol`'s book as the doc's examples show it."""
    bids, asks = BOOKS[symbol]
    for who, side, levels in (("beta", "buy", bids), ("taker", "sell", asks)):
        wire = await run.wire(who)
        for id, (price, qty) in enumerate(levels):
            params = {"symbol": symbol, "side": side, "type": "limit", "tif": "gtc"}
            params |= {"price": price, "qty": qty}
            answer = await wire.ask({"id": id, "method": "order.place", "params": params})
            assert answer["status"] == 200, answer


@runs("§6 #9", "§6 #10")
async def book_snapshot(run: Run) -> None:
    await book(run, run.example.requests()[0]["params"]["symbol"])
    await run.exchange(await run.wire("alpha"))


@runs("§7 #1")
async def subscribe_book(run: Run) -> None:
    wire = await run.wire(None, "public")
    await run.exchange(wire, loose=frozenset({".data.bids", ".data.asks"}))


@runs("§7 #2")
async def subscribe_instruments(run: Run) -> None:
    wire = await run.wire(None, "public")
    await run.exchange(wire, change=bills, loose=frozenset({".result.subscribed"}))


def bills(request: dict[str, Any]) -> dict[str, Any]:
    """The request with venue.toml's bills renamed as in the sample config."""
    return json.loads(sample_bill(json.dumps(request)))


@runs("§8.1 #3")
async def unsubscribe_account(run: Run) -> None:
    wire = await run.wire("alpha")
    await wire.ask({"id": 1, "method": "subscribe", "params": {"ch": "account"}})
    await run.exchange(wire)


@runs("§8.1 #1")
async def subscribe_account(run: Run) -> None:
    await run.exchange(await fresh_account(run, CONFIG_FUNDS))


async def place(wire: Wire, symbol: str, side: str, price: str, qty: str, **more: Any) -> Any:
    """A limit order placed (gtc unless `tif` says otherwise): its result."""
    params = {"symbol": symbol, "side": side, "type": "limit", "tif": "gtc"}
    params |= {"price": price, "qty": qty} | more
    answer = await wire.ask({"id": 100, "method": "order.place", "params": params})
    assert answer["status"] == 200, answer
    return answer["result"]


async def subscribed(wire: Wire) -> Wire:
    """`wire` following its account's stream, its snapshot read."""
    answer = await wire.ask({"id": 101, "method": "subscribe", "params": {"ch": "account"}})
    assert answer["status"] == 200, answer
    await wire.push({"ch": "account", "type": "snapshot"})
    return wire


async def sent(wire: Wire, key: str, index: int = 0) -> dict[str, Any]:
    """Another example's `index`th request sent as shown (a step of this one's story)."""
    answer = await wire.ask(EXAMPLES[key].requests()[index])
    assert answer["status"] in (200, 409), answer
    return answer


@runs("§4.3 #2")
async def cod_triggered(run: Run) -> None:
    other = await subscribed(await run.wire("alpha"))
    closing = await run.wire("alpha")
    await closing.ask({"id": 1, "method": "session.cod", "params": {"enabled": True}})
    await place(closing, "SPYx-USD", "buy", "590.00", "1", cl_ord_id="cod-1")
    await closing.close()
    for message in run.example.messages:
        run.compare(message.body, await other.push(message.body), "push ")


@runs("§4.4 #3")
async def dms_triggered(run: Run) -> None:
    wire = await subscribed(await run.wire("alpha"))
    await place(wire, "AAPLx-USD", "sell", "187.40", "5", cl_ord_id="a-2")
    await place(await run.wire("taker"), "AAPLx-USD", "buy", "187.40", "4.668089", tif="ioc")
    await run.exchange(wire)


@runs("§5.1 #2")
async def ioc_sweep(run: Run) -> None:
    await place(await run.wire("beta"), "AAPLx-USD", "sell", "187.30", "8")
    await place(await run.wire("taker"), "AAPLx-USD", "sell", "187.40", "5")
    await run.exchange(await run.wire("alpha"))


@runs("§5.1 #3")
async def market_buy_for_cash(run: Run) -> None:
    await place(await run.wire("beta"), "AAPLx-USD", "sell", "187.40", "5")
    await run.exchange(await subscribed(await run.wire("alpha")))


@runs("§5.1 #4")
async def gtd_expiry(run: Run) -> None:
    wire = await subscribed(await run.wire("alpha"))
    soon = time.time_ns() // 1000 + 300_000  # expires while the example waits for it
    await run.exchange(wire, change=lambda r: r | {"params": r["params"] | {"expire_at": soon}})


@runs("§5.2 #1")
async def cancel_by_cl_ord_id(run: Run) -> None:
    wire = await subscribed(await run.wire("alpha"))
    await place(wire, "MSFTx-USD", "buy", "412.10", "1", cl_ord_id="s-2")
    await run.exchange(wire)


@runs("§5.3 #2")
async def amend_the_price(run: Run) -> None:
    await place(await run.wire("beta"), "AAPLx-USD", "sell", "187.30", "8")  # a-1 amended
    await place(await run.wire("beta"), "AAPLx-USD", "sell", "187.40", "5")
    wire = await run.wire("alpha")
    await place(wire, "AAPLx-USD", "buy", "187.10", "4", cl_ord_id="a-3")
    public = await run.wire(None, "public")
    book_10 = {"ch": "book", "symbols": ["AAPLx-USD"], "depth": 10}
    await public.ask({"id": 1, "method": "subscribe", "params": book_10})
    await public.push({"ch": "book", "type": "snapshot"})
    await run.exchange(wire, pushes=False)
    (shown,) = [m.body for m in run.example.messages if m.kind == "push"]
    run.compare(shown, await public.push(shown), "push ")


@runs("§5.3 #3")
async def amend_that_changes_nothing(run: Run) -> None:
    wire = await subscribed(await run.wire("alpha"))
    await place(wire, "NVDAx-USD", "buy", "135.20", "3", cl_ord_id="l-0")
    await run.exchange(wire, loose=frozenset({".error.data.order_id"}))


@runs("§5.4 #1")
async def batch(run: Run) -> None:
    run.example = Example(
        run.example.key,
        run.example.line,
        EXAMPLES["§5.4 #1"].messages + EXAMPLES["§5.4 #2"].messages,
    )
    await run.exchange(await run.wire("alpha"))


@runs("§5.4 #3")
async def batch_partly_done(run: Run) -> None:
    wire = await run.wire("alpha")
    await sent(wire, "§5.4 #1")
    await run.exchange(wire)


@runs("§5.4 #5")
async def batch_too_long(run: Run) -> None:
    cancel = {"method": "order.cancel", "params": {"order_id": 1}}
    request = {"id": 2, "method": "order.batch", "params": {"ops": [cancel] * 21}}
    run.example = Example(
        run.example.key, run.example.line, [Message("to", "", "", request), *run.example.messages]
    )
    await run.exchange(await run.wire("alpha"))


async def quoting(run: Run) -> Wire:
    wire = await run.wire("alpha")
    await wire.ask({"id": 1, "method": "session.cod", "params": {"enabled": True}})
    return wire


@runs("§5.5 #1")
async def quote_mass(run: Run) -> None:
    await run.exchange(await subscribed(await quoting(run)))


@runs("§5.5 #2", "§5.5 #3", "§5.5 #4", "§5.6 #3")
async def quote_mass_after_the_first(run: Run) -> None:
    wire = await quoting(run)
    await sent(wire, "§5.5 #1")
    if run.example.key in ("§5.5 #3", "§5.5 #4", "§5.6 #3"):
        await sent(wire, "§5.5 #2")
    if run.example.key == "§5.6 #3":  # the SPYx ask pulled too: the NVDAx quote's two left
        pull = {"quote_set": "mm1", "quotes": [{"symbol": "SPYx-USD", "ask_qty": "0"}]}
        await wire.ask({"id": 104, "method": "quote.mass", "params": pull})
    await run.exchange(wire)


@runs("§5.5 #5")
async def quote_mass_without_cod(run: Run) -> None:
    await run.exchange(await run.wire("alpha"))


async def a_story(run: Run, wire: Wire | None = None) -> tuple[Wire, list[int]]:
    """§6's orders: a-1 (sell 10 at 187.30, tag mm) filled 4 and canceled, a-2 (sell 5 at
    187.40) and a-3 (buy 4 at 187.10) open; their ids."""
    wire = wire or await run.wire("alpha")
    first = await place(wire, "AAPLx-USD", "sell", "187.30", "10", cl_ord_id="a-1", tag="mm")
    second = await place(wire, "AAPLx-USD", "sell", "187.40", "5", cl_ord_id="a-2")
    await place(await run.wire("beta"), "AAPLx-USD", "buy", "187.30", "4", tif="ioc")
    third = await place(wire, "AAPLx-USD", "buy", "187.10", "4", cl_ord_id="a-3")
    await wire.ask({"id": 102, "method": "order.cancel", "params": {"cl_ord_id": "a-1"}})
    return wire, [first["order_id"], second["order_id"], third["order_id"]]


@runs("§6 #1")
async def open_orders(run: Run) -> None:
    wire = await run.wire("alpha")
    await place(wire, "AAPLx-USD", "sell", "187.30", "10", cl_ord_id="a-1", tag="mm")
    await place(wire, "AAPLx-USD", "sell", "187.40", "5", cl_ord_id="a-2")
    await place(wire, "AAPLx-USD", "buy", "187.10", "4", cl_ord_id="a-3")
    await run.exchange(wire)


@runs("§6 #2")
async def order_status(run: Run) -> None:
    wire, ids = await a_story(run)
    await run.exchange(wire, 0)
    await run.exchange(wire, 1, change=lambda r: r | {"params": {"order_id": ids[1]}})


_accounts = iter(range(500, 600))  # fresh accounts' numbers (the config's end at 100)


FUNDS = (("AAPLx", "1000"), ("NVDAx", "1000"), ("USD", "1000000"))
CONFIG_FUNDS = tuple(  # what venue.toml gives each of its funded accounts
    [(asset, "20000") for asset in ("AAPLx", "MSFTx", "NVDAx", "SPYx")]
    + [(sample_bill(bill), "2000000") for bill in ("TB-2027-03-04", "TB-2027-08-26")]
    + [("USD", "5000000")]
)


async def fresh_account(run: Run, funds: tuple[tuple[str, str], ...] = FUNDS) -> Wire:
    """A logged-on connection of a new account holding `funds`."""
    admin = await run.wire("admin")
    account = next(_accounts)
    opened = {"account": account, "name": f"doc-{account}", "jurisdiction": "SG"}
    asked = [("admin.open_account", opened | {"kyc_approved": True})]
    for asset, amount in funds:
        await attested(admin, asset, Decimal(amount))
    for asset, amount in funds:
        asked.append(("admin.deposit", {"account": account, "asset": asset, "amount": amount}))
    asked.append(("admin.issue_key", {"account": account, "scopes": ["read", "trade"]}))
    for id, (method, params) in enumerate(asked, 200):
        answer = await admin.ask({"id": id, "method": method, "params": params})
        assert answer["status"] == 200, answer
    key = answer["result"]
    wire = await run.wire(None)
    ts_us = time.time_ns() // 1000
    params = {"api_key": key["api_key"], "ts": ts_us, "nonce": f"f-{ts_us}", "recv_window": 5000}
    params["sig"] = sign_logon(key["secret"], key["api_key"], ts_us, params["nonce"], 5000)
    answer = await wire.ask({"id": 0, "method": "session.logon", "params": params})
    assert answer["status"] == 200, answer
    run.fresh.append(wire)
    wire.account = account
    return wire


@runs("§6 #4")
async def order_history(run: Run) -> None:
    wire, ids = await a_story(run, await fresh_account(run))
    await run.exchange(wire, 0)
    await run.exchange(
        wire, 1, change=lambda r: r | {"params": r["params"] | {"before_order_id": ids[1]}}
    )


@runs("§6 #5")
async def fills(run: Run) -> None:
    maker = await run.wire("beta")
    await place(maker, "NVDAx-USD", "buy", "135.30", "6")
    await place(maker, "NVDAx-USD", "buy", "135.25", "1")
    wire = await fresh_account(run)
    await place(wire, "NVDAx-USD", "sell", "135.25", "8", cl_ord_id="t-ioc", tif="ioc")
    await run.exchange(wire, loose=frozenset({".result.fills"}))


@runs("§6 #6")
async def balances(run: Run) -> None:
    await run.exchange(await fresh_account(run, CONFIG_FUNDS))


@runs("§7 #3", "§7 #4")
async def public_subscriptions(run: Run) -> None:
    """§7's connection: AAPLx's four market streams and two instruments (MSFTx and SPYx too
    for §7 #3's unsubscribe of them)."""
    wire = await run.wire(None, "public")
    for ch in ("bbo", "book", "ticker", "trades"):
        await done(wire, "subscribe", {"ch": ch, "symbols": ["AAPLx-USD"]})
    symbols = ["AAPLx-USD", sample_bill("TB-2027-03-04-USD")]
    if run.example.key == "§7 #3":
        symbols += ["MSFTx-USD", "SPYx-USD"]
    await done(wire, "subscribe", {"ch": "instruments", "symbols": symbols})
    await run.exchange(wire, change=bills)


@runs("§8.1 #2")
async def replay_since(run: Run) -> None:
    wire = await run.wire("alpha")
    await place(wire, "AAPLx-USD", "sell", "187.40", "5", cl_ord_id="a-2")
    await place(await run.wire("taker"), "AAPLx-USD", "buy", "187.40", "3.668089", tif="ioc")
    ask = {"id": 105, "method": "subscribe", "params": {"ch": "account"}}
    since_seq = (await (await run.wire("alpha")).ask(ask))["result"]["seq"]
    await place(await run.wire("taker"), "AAPLx-USD", "buy", "187.40", "1", tif="ioc")
    # the balance replayed first is whichever asset's (and its amounts the account's)
    loose = frozenset({"total", "available", "held", "asset"})
    since = {"ch": "account", "since_seq": since_seq}
    await run.exchange(wire, change=lambda r: r | {"params": since}, loose=loose)


@runs("§8.2 #1", "§8.2 #2")
async def ioc_reports(run: Run) -> None:
    maker = await subscribed(await run.wire("alpha"))
    await place(maker, "AAPLx-USD", "sell", "187.30", "8", cl_ord_id="a-1", tag="mm")
    await place(maker, "AAPLx-USD", "sell", "187.40", "5", cl_ord_id="a-2")
    taker = await subscribed(await run.wire("taker"))
    await sent(taker, "§5.1 #2")
    wire = taker if run.example.key == "§8.2 #1" else maker
    for message in run.example.messages:
        run.compare(message.body, await wire.push(message.body), "push ")


@runs("§8.2 #3")
async def ioc_rest(run: Run) -> None:
    await place(await run.wire("beta"), "NVDAx-USD", "buy", "135.30", "6")
    wire = await subscribed(await run.wire("taker"))
    await place(wire, "NVDAx-USD", "sell", "135.25", "8", cl_ord_id="t-ioc", tif="ioc")
    (shown,) = run.example.messages
    run.compare(shown.body, await wire.push(shown.body), "push ")


@runs("§8.2 #4")
async def self_trade(run: Run) -> None:
    wire = await subscribed(await run.wire("alpha"))
    await place(wire, "MSFTx-USD", "sell", "412.10", "1", cl_ord_id="s-1")
    await place(wire, "MSFTx-USD", "buy", "412.10", "1", stp="expire_maker")
    (shown,) = run.example.messages
    run.compare(shown.body, await wire.push(shown.body), "push ")


@runs("§8.2 #5")
async def refused_cancel(run: Run) -> None:
    wire = await subscribed(await run.wire("alpha"))
    await wire.ask({"id": 1, "method": "order.cancel", "params": {"cl_ord_id": "a-3b"}})
    (shown,) = run.example.messages
    run.compare(shown.body, await wire.push(shown.body), "push ")


_codes = iter(range(1, 100))


async def fresh_market(
    run: Run,
    reference_price: str = "187.25",
    holders: tuple[int, ...] = (2, 3),
    amount: str = "1000",
) -> str:
    """A new equity listed as AAPLx is (at `reference_price`), each of `holders` given
    `amount` of it: streams and holdings of no other example. Its asset code."""
    admin = await run.wire("admin")
    code = f"DOC{next(_codes)}x"
    listing = {
        "symbol": f"{code}-USD", "kind": "equity", "base": code, "quote": "USD",
        "tick": "0.01", "step": "0.000001", "min_qty": "0.000001", "min_notional": "1",
        "band_pct": "10", "reference_price": reference_price, "maker_fee_bps": 1,
        "taker_fee_bps": 5,
    }  # fmt: skip
    supply = str(Decimal(amount) * len(holders))
    asked = [
        ("admin.list_asset", {"code": code, "scale": 6}),
        ("admin.list_instrument", listing),
        ("admin.attest_reserves", {"asset": code, "amount": supply, "as_of": now_us()}),
    ] + [
        ("admin.deposit", {"account": holder, "asset": code, "amount": amount})
        for holder in holders
    ]
    for id, (method, params) in enumerate(asked, 300):
        answer = await admin.ask({"id": id, "method": method, "params": params})
        assert answer["status"] == 200, answer
    return code


def now_us() -> int:
    return time.time_ns() // 1000


async def attested(admin: Wire, asset: str, more: Decimal) -> None:
    """`asset`'s reserves attested anew when its supply has not `more` of room."""
    reserves = await admin.ask({"id": 199, "method": "reserves"})
    (row,) = [row for row in reserves["result"]["reserves"] if row["asset"] == asset]
    if Decimal(row["supply"]) + more > Decimal(row["attested"]):
        params = {"asset": asset, "amount": str(Decimal(row["supply"]) + more), "as_of": now_us()}
        answer = await admin.ask({"id": 198, "method": "admin.attest_reserves", "params": params})
        assert answer["status"] == 200, answer


def renamed(body: Any, names: dict[str, str]) -> Any:
    """The doc's message with each asset code (and so its market's symbol) renamed."""
    text = json.dumps(body)
    for old, new in names.items():
        text = text.replace(f"{old}-USD", f"{new}-USD").replace(f'"{old}"', f'"{new}"')
    return json.loads(text)


async def following(run: Run, symbol: str, *channels: str) -> Wire:
    """A public connection following `symbol`'s `channels`, their snapshots read."""
    wire = await run.wire(None, "public")
    for id, ch in enumerate(channels):
        params = {"ch": ch, "symbols": [symbol]}
        answer = await wire.ask({"id": id, "method": "subscribe", "params": params})
        assert answer["status"] == 200, answer
    return wire


async def compare_pushes(
    run: Run, wire: Wire, names: dict[str, str], loose: frozenset[str] = frozenset()
) -> None:
    for message in run.example.messages:
        shown = renamed(message.body, names)
        run.compare(shown, await wire.push(shown), "push ", loose)


@runs("§9.2 #1")
async def instruments_snapshot(run: Run) -> None:
    bill = sample_bill("TB-2027-03-04-USD")
    await following(run, bill, "instruments")
    # the bill's days to go, and so its yields, are today's
    loose = frozenset({"days_to_maturity", "discount_rate_pct", "investment_yield_pct", "maturity"})
    wire = run.wires[-1]
    names = {"TB-2027-03-04": sample_bill("TB-2027-03-04")}
    await compare_pushes(run, wire, names, loose)


@runs("§9.2 #2")
async def instruments_update(run: Run) -> None:
    code = await fresh_market(run, "135.40")
    wire = await following(run, f"{code}-USD", "instruments")
    await wire.push({"ch": "instruments", "type": "snapshot"})
    admin = await run.wire("admin")
    halt = {"symbol": f"{code}-USD", "status": "halted"}
    await admin.ask({"id": 1, "method": "admin.set_status", "params": halt})
    await compare_pushes(run, wire, {"NVDAx": code})


@runs("§9.3 #1")
async def book_updates(run: Run) -> None:
    code = await fresh_market(run)
    symbol = f"{code}-USD"
    beta, taker = await run.wire("beta"), await run.wire("taker")
    first = await place(beta, symbol, "sell", "187.30", "10")
    await place(beta, symbol, "sell", "187.40", "5")
    wire = await following(run, symbol, "book")
    await wire.push({"ch": "book", "type": "snapshot"})
    shown = [renamed(m.body, {"AAPLx": code}) for m in run.example.messages]
    bid = await place(taker, symbol, "buy", "187.10", "4")
    run.compare(shown[0], await wire.push(shown[0]), "push ")
    # §5.3's amends: the 187.30 ask down to 8, the bid up to 187.15
    amend = {"order_id": first["order_id"], "qty": "8"}
    await beta.ask({"id": 1, "method": "order.amend", "params": amend})
    await wire.push(shown[0])
    amend = {"order_id": bid["order_id"], "price": "187.15"}
    await taker.ask({"id": 2, "method": "order.amend", "params": amend})
    await wire.push(shown[0])
    await place(taker, symbol, "buy", "187.40", "9", tif="ioc")
    run.compare(shown[1], await wire.push(shown[1]), "push ")


@runs("§9.4 #1", "§9.6 #1")
async def trades_and_ticker(run: Run) -> None:
    code = await fresh_market(run)
    symbol = f"{code}-USD"
    ch = run.example.messages[0].body["ch"]
    wire = await following(run, symbol, ch)
    beta = await run.wire("beta")
    await place(beta, symbol, "sell", "187.30", "8")
    await place(beta, symbol, "sell", "187.40", "5")
    await place(await run.wire("taker"), symbol, "buy", "187.40", "9", tif="ioc")
    await compare_pushes(run, wire, {"AAPLx": code})


@runs("§9.5 #1")
async def bbo(run: Run) -> None:
    code = await fresh_market(run)
    symbol = f"{code}-USD"
    wire = await following(run, symbol, "bbo")
    shown = [renamed(m.body, {"AAPLx": code}) for m in run.example.messages]
    run.compare(shown[0], await wire.push(shown[0]), "push ")
    await place(await run.wire("beta"), symbol, "sell", "187.30", "10")
    await wire.push(shown[1])  # the ask alone
    await place(await run.wire("taker"), symbol, "buy", "187.10", "4")
    run.compare(shown[1], await wire.push(shown[1]), "push ")


@runs("§9.7 #1")
async def heartbeats(run: Run) -> None:
    code = await fresh_market(run)
    symbol = f"{code}-USD"
    public = await following(run, symbol, "trades", "bbo", "book", "ticker")
    bill = sample_bill("TB-2027-03-04-USD")
    for id, name in enumerate((bill, symbol), 10):
        params = {"ch": "instruments", "symbols": [name]}
        await public.ask({"id": id, "method": "subscribe", "params": params})
    trading = await run.wire("alpha")
    names = {"AAPLx": code, "TB-2027-03-04": sample_bill("TB-2027-03-04")}
    first, second = (renamed(m.body, names) for m in run.example.messages)
    # each stream's seq is where it stands (a book tier starts at 1, the others at 0)
    run.compare(first, await public.push(first), "push ", frozenset(first["seqs"]))
    run.compare(second, await trading.push(second), "push ")


@runs("§9.8 #1")
async def candles(run: Run) -> None:
    code = await fresh_market(run)
    symbol = f"{code}-USD"
    beta, taker = await run.wire("beta"), await run.wire("taker")
    await place(beta, symbol, "sell", "187.30", "0.5")
    await place(taker, symbol, "buy", "187.30", "0.5", tif="ioc")
    run.example = Example(
        run.example.key,
        run.example.line,
        [
            renamed(m.body, {"AAPLx": code})
            and Message(m.kind, m.note, m.text, renamed(m.body, {"AAPLx": code}))
            for m in run.example.messages
        ],
    )
    wire = await run.wire(None, "public")
    messages = run.example.messages
    answer = await wire.ask(messages[0].body)
    run.compare(messages[1].body, answer, "answer ")
    run.compare(messages[2].body, await wire.push(messages[2].body), "push ")
    await place(beta, symbol, "sell", "187.40", "0.25")
    await place(taker, symbol, "buy", "187.40", "0.25", tif="ioc")
    update = await wire.push(messages[3].body)
    # a minute may have begun between the two trades: then the update holds two bars
    rolled = len(update["data"]["candles"]) == 2
    loose = frozenset({".data.candles", "o", "h", "l", "c", "v"} if rolled else ())
    run.compare(messages[3].body, update, "push ", loose)


# ---- admin: §10's listing, funding and refusals -------------------------------------------

GOOGX_SETUP = (
    ("admin.list_asset", {"code": "GOOGx", "scale": 6}),
    ("admin.list_instrument", {
        "symbol": "GOOGx-USD", "kind": "equity", "base": "GOOGx", "quote": "USD",
        "tick": "0.01", "step": "0.000001", "min_qty": "0.000001", "min_notional": "1",
        "band_pct": "10", "reference_price": "170.00", "maker_fee_bps": 1,
        "taker_fee_bps": 5, "excluded_jurisdictions": ["US"]}),
    ("admin.open_account", {
        "account": 5, "name": "new-fund", "jurisdiction": "SG", "kyc_approved": True}),
    ("admin.attest_reserves", {"asset": "GOOGx", "amount": "1000"}),
)  # fmt: skip


async def googx(run: Run) -> Wire:
    """An admin connection to a venue where §10's GOOGx, GOOGx-USD and account 5 exist."""
    admin = await run.wire("admin")
    for id, (method, params) in enumerate(GOOGX_SETUP, 1000):
        if method == "admin.attest_reserves":  # a later statement than any before
            params = params | {"as_of": time.time_ns() // 1000}
        answer = await admin.ask({"id": id, "method": method, "params": params})
        assert answer["status"] == 200 or "EXISTS" in answer["error"]["name"], answer
    return admin


@runs("§10 #2", "§10 #3", "§10 #4", "§10 #5", "§10 #15", "§10 #16", "§10 #17", "§10 #19")
async def admin_listing(run: Run) -> None:
    admin = await run.wire("admin")
    (request,) = run.example.requests()
    if run.example.messages[1].body["status"] != 200:  # a refusal of what exists
        await googx(run)
    elif request["method"] == "admin.attest_reserves":
        await googx(run)
        request = request | {"params": request["params"] | {"as_of": now_us()}}  # the latest
    elif request["method"] == "admin.open_account":  # account 5 may exist: a new number
        request = request | {"params": request["params"] | {"account": next(_accounts)}}
    else:  # GOOGx may be listed: a new name
        code = f"DOC{next(_codes)}x"
        if request["method"] == "admin.list_instrument":
            await done(admin, "admin.list_asset", {"code": code, "scale": 6})
        request = renamed(request, {"GOOGx": code})
    await run.exchange(admin, change=lambda _: request)


async def done(wire: Wire, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """The result of a step of an example's story, which must succeed."""
    answer = await wire.ask({"id": 900, "method": method, "params": params})
    assert answer["status"] == 200, answer
    return dict(answer["result"])


@runs("§10 #6", "§10 #7", "§10 #8", "§10 #9", "§10 #20")
async def admin_funding(run: Run) -> None:
    admin = await googx(run)
    await attested(admin, "GOOGx", Decimal(10))
    (request,) = run.example.requests()
    settling = request["method"] in ("admin.confirm_withdrawal", "admin.void_withdrawal")
    if settling or request["method"] == "admin.withdraw":
        await done(admin, "admin.deposit", {"account": 5, "asset": "GOOGx", "amount": "10"})
    if settling and request["params"]["withdrawal_id"] != 99:  # 99: the doc's unknown one
        pending = {"account": 5, "asset": "GOOGx", "amount": "1"}
        withdrawal_id = (await done(admin, "admin.withdraw", pending))["withdrawal_id"]
        request = request | {"params": {"withdrawal_id": withdrawal_id}}
    await run.exchange(admin, change=lambda _: request)


@runs("§10 #10")
async def admin_issue_key(run: Run) -> None:
    await run.exchange(await googx(run))


@runs("§10 #11", "§10 #21", "§10 #12")
async def admin_on_a_listed_symbol(run: Run) -> None:
    admin = await googx(run)
    try:
        await run.exchange(admin)
    finally:
        reopen = {"symbol": "MSFTx-USD", "status": "open"}
        await admin.ask({"id": 903, "method": "admin.set_status", "params": reopen})


@runs("§10 #23")
async def admin_without_the_scope(run: Run) -> None:
    await run.exchange(await run.wire("alpha"))


@runs("§10 #1")
async def admin_repeated(run: Run) -> None:
    admin = await googx(run)
    cl_op_id = f"dep-{time.time_ns()}"  # this run's: the doc's may have been used before
    first, again = run.example.requests()
    again = again | {"params": again["params"] | {"cl_op_id": cl_op_id}}
    first = first | {"params": first["params"] | {"cl_op_id": cl_op_id}}
    assert (await admin.ask(first))["status"] == 200
    admin = await run.wire("admin")  # "logged on again"
    answers = [m.body for m in run.example.messages if m.kind == "answer" and m.body]
    run.compare(answers[0], await admin.ask(first | {"id": 1}), "answer to the repeat ")
    refused = await admin.ask(again)
    run.compare(answers[1], refused, "answer to another amount ", frozenset({"msg"}))
    assert re.fullmatch(
        rf"cl_op_id '{cl_op_id}' was used at \d{{16}} for another command or other parameters: "
        "nothing done; give a new cl_op_id for a new command",
        refused["error"]["msg"],
    ), refused


@runs("§10 #13", "§8.6 #1")
async def corporate_actions(run: Run) -> None:
    holder = await fresh_account(run, (("USD", "5000000"),))
    code = await fresh_market(run, holders=(1, 2, holder.account or 0), amount="20000")
    symbol = f"{code}-USD"
    await place(holder, symbol, "sell", "190.00", "10")
    admin = await run.wire("admin")
    usd = {"account": 100, "asset": "USD", "amount": "14850"}
    await attested(admin, "USD", Decimal("14850"))
    assert (await admin.ask({"id": 1, "method": "admin.deposit", "params": usd}))["status"] == 200
    await subscribed(holder)
    example = EXAMPLES["§10 #13"]
    requests = [renamed(request, {"AAPLx": code}) for request in example.requests()]
    answers = [renamed(m.body, {"AAPLx": code}) for m in example.messages if m.kind == "answer"]
    halt = {"symbol": symbol, "status": "halted"}
    for index, (request, shown) in enumerate(zip(requests, answers, strict=True)):
        if index == 2:
            await admin.ask({"id": 6, "method": "admin.set_status", "params": halt})
        if run.example.key == "§10 #13":
            run.compare(shown, await admin.ask(request), f"answer to #{index} ")
        else:
            await admin.ask(request)
    if run.example.key == "§8.6 #1":
        for message in run.example.messages:
            shown = renamed(message.body, {"AAPLx": code})
            run.compare(shown, await holder.push(shown), "push ")


@runs("§10 #14", "§10 #24")
async def admin_bills(run: Run) -> None:
    """§10's T-bill listed; for §10 #24, caps on a new market and another bill matured (the
    sample's bill trades in other examples), so that either example runs first."""
    admin = await run.wire("admin")
    bill = "TB-2027-12-02" if run.example.key == "§10 #14" else "TB-2027-11-25"
    await done(admin, "admin.list_asset", {"code": bill, "scale": 0})  # whole dollars of face
    listing = renamed(EXAMPLES["§10 #14"].requests()[0], {"TB-2027-12-02": bill})
    listing["params"]["maturity"] = bill.removeprefix("TB-")
    listed = await admin.ask(listing)
    if run.example.key == "§10 #14":
        run.compare(run.example.messages[1].body, listed, "answer ")
        return
    caps, mature = run.example.requests()
    code = await fresh_market(run)
    capped = await admin.ask(renamed(caps, {"AAPLx": code}))
    run.compare(run.example.messages[1].body, capped, "answer to the caps ")
    names = {"TB-2027-03-04": bill}
    mature = renamed(mature, names)
    mature["params"]["maturity"] = bill.removeprefix("TB-")  # the bill listed here, its date
    answers = [renamed(m.body, names) for m in run.example.messages if m.kind == "answer"]
    run.compare(answers[1], await admin.ask(mature), "answer to the mature ")
    run.compare(answers[2], await admin.ask(mature | {"id": 32}), "answer to the same again ")


@runs("§10 #18")
async def admin_reserves_exceeded(run: Run) -> None:
    admin = await googx(run)
    code = await fresh_market(run)  # its supply is all its attested reserves
    request = renamed(run.example.requests()[0], {"GOOGx": code})
    answer = await admin.ask(request)
    run.compare(
        renamed(run.example.messages[1].body, {"GOOGx": code}),
        answer,
        "answer ",
        frozenset({"msg"}),
    )
    assert re.fullmatch(
        rf"supply of {code} would exceed its reserves: 2000.000000 out plus this 5000.000000 is "
        r"7000.000000, past the 2000.000000 attested as of \d{16} µs",
        answer["error"]["msg"],
    ), answer


@runs("§10 #22")
async def admin_delisted(run: Run) -> None:
    admin = await run.wire("admin")
    code = await fresh_market(run)
    delist = {"symbol": f"{code}-USD", "status": "delisted"}
    assert (await admin.ask({"id": 1, "method": "admin.set_status", "params": delist}))[
        "status"
    ] == 200
    names = {"GOOGx": code}
    answer = await admin.ask(renamed(run.example.requests()[0], names))
    run.compare(renamed(run.example.messages[1].body, names), answer, "answer ")


@runs("§11.1 #1")
async def truncated_frame(run: Run) -> None:
    wire = await run.wire(None)
    (answer,) = [m.body for m in run.example.messages if m.kind == "answer"]
    run.compare(answer, await wire.ask('{"id": 1, "method": '), "answer ")


# ---- what is not run, and why ---------------------------------------------------------------

ILLUSTRATIVE = {
    "§4.5 #1": "the module's venue stopping: tests/gateway/test_server_recovery.py stops one",
    "§5.4 #2": "the answer to §5.4 #1's batch: run there",
    "§5.4 #4": "a cluster's core gone silent: tests/cluster/test_batch_outage.py",
    "§3 #1": "the envelopes' shapes, with placeholders ({...}, <µs>, E): not a session",
}


# ---- running them ---------------------------------------------------------------------------


class Loop:
    """One venue for the module, on an event loop of its own thread."""

    def __init__(self, data_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.venue: Venue = self.call(start_venue(data_dir))

    def call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(EXAMPLE_TIMEOUT_S * 2)

    def stop(self) -> None:
        self.call(self.venue.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(EXAMPLE_TIMEOUT_S)
        self.loop.close()


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    running = Loop(tmp_path_factory.mktemp("examples") / "data")
    yield running
    running.stop()


async def cleaned(run: Run, scenario: Scenario) -> list[str]:
    """The scenario's disagreements; then its accounts' orders canceled, its links closed."""
    try:
        await asyncio.wait_for(scenario(run), EXAMPLE_TIMEOUT_S)
    finally:  # the next example starts from empty books
        wires = [await run.wire(who) for who in ("alpha", "beta", "taker")] + run.fresh
        for wire in wires:
            await wire.ask({"id": 999, "method": "orders.cancel_all", "params": {}})
        await run.close()
    shown = [m for m in run.example.messages if m.kind != "to" and m.body is not None]
    assert run.compared >= len(shown), f"{run.example.key}: {run.compared} of {len(shown)} compared"
    return run.problems


def test_every_example_is_run_or_says_why_not() -> None:
    keys = set(EXAMPLES)
    assert keys & set(RUNS) & set(ILLUSTRATIVE) == set()
    assert keys - set(RUNS) - set(ILLUSTRATIVE) == set(), "examples neither run nor explained"
    assert set(RUNS) | set(ILLUSTRATIVE) <= keys, "names of examples no longer on the page"
    for key in set(RUNS) - set(TOLD):
        unparsed = [m.text for m in EXAMPLES[key].messages if m.body is None]
        assert unparsed == [], f"{key}: a run example has fragments"


# Run examples with a message that is told, not shown (a scenario sends it itself).
TOLD = {
    "§10 #1": "the answer lost to the dropped connection",
    "§10 #24": "'the same again'",
    "§11.1 #1": "a truncated frame: not JSON",
}


def example_id(key: str) -> str:
    """ "§5.1 #3" as "5.1-3": an ASCII id, `pytest 'tests/...::test_the_example_...[5.1-3]'`."""
    return key.removeprefix("§").replace(" #", "-")


@pytest.mark.parametrize("key", [key for key in EXAMPLES if key in RUNS], ids=example_id)
def test_the_example_is_what_the_venue_does(loop: Loop, key: str) -> None:
    scenario = RUNS[key] or as_shown
    problems = loop.call(cleaned(Run(loop.venue, EXAMPLES[key]), scenario))
    assert problems == [], f"docs/protocol.md line {EXAMPLES[key].line}:\n" + "\n".join(problems)
