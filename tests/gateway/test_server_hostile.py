"""Hostile input against a real server: every frame gets its answer, in order, and no answer
owed before it is lost; who may call a method is checked before its params."""

import asyncio
import json
import time
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from gateway.auth import sign_logon
from gateway.dispatch import Dispatcher
from gateway.limits import MESSAGE_BYTES_MAX
from tests.conftest import KEYS, Venue, start_venue

SYMBOL = "AAPLx-USD"
WAIT_S = 5
DEPTH = 1_000  # the finding: 1,000 brackets (about 2 KB) closed the connection with 1011


async def logged_on(venue: Venue, who: str, endpoint: str = "trade") -> ClientConnection:
    """A raw websocket, logged on as `who` (None: not logged on)."""
    websocket = await connect(venue.url(endpoint), max_size=None)
    if who != "nobody":
        key, secret = KEYS[who]
        ts = time.time_ns() // 1_000
        sig = sign_logon(secret, key, ts, f"n-{ts}", 5_000)
        params = {"api_key": key, "ts": ts, "nonce": f"n-{ts}", "recv_window": 5_000, "sig": sig}
        await websocket.send(json.dumps({"id": 0, "method": "session.logon", "params": params}))
        assert (await answers(websocket, 1))[0]["status"] == 200
    return websocket


async def answers(websocket: ClientConnection, count: int) -> list[dict[str, Any]]:
    """The next `count` responses (messages with a status), pushes skipped."""
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + WAIT_S
    while len(found) < count:
        message = json.loads(
            await asyncio.wait_for(websocket.recv(), max(0.01, deadline - time.monotonic()))
        )
        if "status" in message:
            found.append(message)
    return found


def place(request_id: int, price: str) -> str:
    params = {
        "symbol": SYMBOL,
        "side": "buy",
        "type": "limit",
        "tif": "gtc",
        "price": price,
        "qty": "1",
    }
    return json.dumps({"id": request_id, "method": "order.place", "params": params})


def padded(request_id: int, size: int) -> str:
    """A valid `balances` query (answered behind the commands before it) of exactly `size`
    bytes: whitespace is JSON too."""
    head = f'{{"id": {request_id}, "method": "balances"'
    return head + " " * (size - len(head) - 1) + "}"


BIG = "1" + "0" * 5_000  # over Python's 4,300-digit int parsing limit
HOSTILE: dict[str, tuple[str, int | None, str]] = {  # frame, the id answered, the error name
    "deep arrays in params": (
        '{"id": 9, "method": "ping", "params": ' + "[" * DEPTH + "]" * DEPTH + "}",
        9,
        "BAD_JSON",
    ),
    "deep objects in params": (
        '{"id": 9, "method": "ping", "params": ' + '{"a": ' * DEPTH + "1" + "}" * DEPTH + "}",
        9,
        "BAD_JSON",
    ),
    "deep nesting in the id": (
        '{"id": ' + "[" * DEPTH + "]" * DEPTH + ', "method": "ping"}',
        None,
        "BAD_PARAM",
    ),
    "deep nesting in an unknown field first": (
        '{"x": ' + "[" * DEPTH + "]" * DEPTH + ', "id": 9, "method": "ping"}',
        None,
        "BAD_PARAM",  # the unknown field is refused before its value is read
    ),
    "deep top level": ("[" * 20_000 + "]" * 20_000, None, "BAD_JSON"),
    "huge integer id": ('{"id": ' + BIG + ', "method": "ping"}', None, "BAD_PARAM"),
    "huge integer param": (
        '{"id": 9, "method": "order.cancel", "params": {"order_id": ' + BIG + "}}",
        9,
        "BAD_PARAM",
    ),
    "huge exponent": ('{"id": 9, "method": "ping", "x": 1e999999}', 9, "BAD_PARAM"),
    "one byte over the limit": (padded(9, MESSAGE_BYTES_MAX + 1), None, "MESSAGE_TOO_BIG"),
    "a lone high surrogate in a place's cl_ord_id": (
        place(9, "186.00")[:-2] + ', "cl_ord_id": "\\uD800", "tag": "t"}}',
        9,  # was None: the client could not tell which request failed
        "BAD_JSON",
    ),
    "a lone low surrogate in a batch op's tag": (
        '{"id": "b-9", "method": "order.batch", "params": {"ops": [{"method": "order.place",'
        ' "params": {"tag": "\\udc00"}}]}}',
        "b-9",
        "BAD_JSON",
    ),
    "a lone surrogate in the id": ('{"id": "\\ud800", "method": "ping"}', None, "BAD_JSON"),
}


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
def test_a_hostile_frame_after_a_place_loses_no_answer(run_venue: Any, case: str) -> None:
    frame, answered_id, name = HOSTILE[case]

    async def scenario(venue: Venue) -> None:
        websocket = await logged_on(venue, "alpha")
        await websocket.send(place(1, "186.00"))  # answered once durable, so after a while
        await websocket.send(frame)
        first, second = await answers(websocket, 2)
        assert (first["id"], first["status"]) == (1, 200), "the place is answered, first"
        assert (second["id"], second["status"], second["error"]["name"]) == (
            answered_id,
            400,
            name,
        )
        await websocket.send(json.dumps({"id": 3, "method": "ping"}))
        assert (await answers(websocket, 1))[0]["id"] == 3, "the connection stays usable"
        await websocket.close()

    run_venue(scenario)


def test_a_scope_refusal_keeps_its_place_behind_the_answers_owed(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        websocket = await logged_on(venue, "alpha")  # a trading key: no admin scope
        await websocket.send(place(1, "186.00"))  # answered once durable
        refused = {"id": 2, "method": "admin.set_status", "params": {"symbol": "AAPLx-USD"}}
        await websocket.send(json.dumps(refused))
        first, second = await answers(websocket, 2)
        assert (first["id"], first["status"]) == (1, 200), "the place is answered first"
        assert (second["id"], second["status"]) == (2, 403)
        await websocket.close()

    run_venue(scenario)


def test_a_frame_of_exactly_the_size_limit_is_served(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        websocket = await logged_on(venue, "alpha")
        await websocket.send(place(1, "186.00"))
        frame = padded(2, MESSAGE_BYTES_MAX)
        assert len(frame.encode()) == MESSAGE_BYTES_MAX
        await websocket.send(frame)
        first, second = await answers(websocket, 2)
        assert (first["id"], first["status"]) == (1, 200)
        assert (second["id"], second["status"]) == (2, 200)
        await websocket.close()

    run_venue(scenario)


def test_binary_frames_are_read_as_text(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        websocket = await logged_on(venue, "alpha")
        await websocket.send(place(1, "186.00").encode())  # a binary frame
        await websocket.send(b'{"id": 2, "method": "ping", "x": "\xff"}')  # not UTF-8
        await websocket.send(b'{"id": 3, "method": "balances"}')
        placed, not_utf8, balances = await answers(websocket, 3)
        assert (placed["id"], placed["status"]) == (1, 200)
        assert (not_utf8["id"], not_utf8["error"]["name"]) == (2, "BAD_JSON")
        assert (balances["id"], balances["status"]) == (3, 200)
        await websocket.close()

    run_venue(scenario)


NOT_A_NUMBER = "is not a JSON number"
# (frame, the id its BAD_JSON answer carries, words its msg holds)
REFUSED_WITH_ID: list[tuple[str | bytes, int | str | None, str]] = [
    (b'{"id": 2, "method": "ping", "x": "\xff"}', 2, "this one is not UTF-8"),
    (b'{"id": "two", "method": "ping", "params": {"x": "\xc3"}}', "two", "not UTF-8"),
    (b'{"id": "a\xff", "method": "ping"}', None, "not UTF-8; no valid id could be read"),
    (b'{"id": 2, \xff "method": "ping"}', None, "not UTF-8; no valid id could be read"),
    (place(4, "186.00").replace('"186.00"', "NaN"), 4, f"NaN {NOT_A_NUMBER} (byte "),
    ('{"id": 5, "method": "ping", "params": {"x": -Infinity}}', 5, "-Infinity " + NOT_A_NUMBER),
    ('{"id": 6, "method": "ping", "params": [Infinity]}', 6, f"Infinity {NOT_A_NUMBER}"),
    ('{"id": NaN, "method": "ping"}', None, "no valid id could be read from it"),
    ('{"id": 8, "method": "ping", "params": [NaN,]}', None, "no valid id could be read"),
    (place(10, "186.00").replace('"186.00"', "nan"), 10, f"nan {NOT_A_NUMBER} (byte "),
    ('{"id": 11, "method": "ping", "params": {"x": -inf}}', 11, "-inf " + NOT_A_NUMBER),
    ('{"id": 12, "method": "ping", "params": {"x": None}}', 12, "None is not JSON (byte 45)"),
]


def test_a_refused_frame_carries_its_id_where_it_can_be_read(run_venue: Any) -> None:
    """The testers' finding: a binary frame that is not UTF-8 and a frame holding `NaN` or
    `Infinity` were answered with `id` null, though their id reads as the surrogate escape's
    does; where it cannot be read, the msg says so. Nothing is placed."""

    async def scenario(venue: Venue) -> None:
        websocket = await logged_on(venue, "alpha")
        for frame, _, _ in REFUSED_WITH_ID:
            await websocket.send(frame)
        await websocket.send(json.dumps({"id": 9, "method": "orders.open"}))
        *refused, open_orders = await answers(websocket, len(REFUSED_WITH_ID) + 1)
        for (frame, request_id, words), answer in zip(REFUSED_WITH_ID, refused, strict=True):
            assert (answer["id"], answer["error"]["name"]) == (request_id, "BAD_JSON"), frame
            assert words in answer["error"]["msg"], (frame, answer)
        assert (open_orders["id"], open_orders["result"]) == (9, {"orders": []})
        await websocket.close()

    run_venue(scenario)


def test_an_unpaired_surrogate_is_answered_with_its_id_and_changes_nothing(
    run_venue: Any,
) -> None:
    async def scenario(venue: Venue) -> None:
        websocket = await logged_on(venue, "alpha")
        await websocket.send(json.dumps({"id": 1, "method": "balances"}))
        (before,) = await answers(websocket, 1)
        lone = place(2, "186.00")[:-2] + ', "cl_ord_id": "a-\\ud800"}}'
        await websocket.send(lone)
        await websocket.send(json.dumps({"id": 3, "method": "orders.open"}))
        await websocket.send(json.dumps({"id": 4, "method": "balances"}))
        refused, open_orders, after = await answers(websocket, 3)
        assert (refused["id"], refused["status"], refused["error"]["name"]) == (2, 400, "BAD_JSON")
        assert refused["error"]["msg"].endswith("surrogate pair) - at `params.cl_ord_id`")
        assert open_orders["result"] == {"orders": []}
        assert after["result"] == before["result"]
        await websocket.close()

    run_venue(scenario)


def test_control_characters_in_order_labels_are_refused_and_change_nothing(
    run_venue: Any,
) -> None:
    """A `cl_ord_id`, `tag` or `new_cl_ord_id` holding a control character is BAD_PARAM naming
    the field (in a batch, the op too), wherever it enters; the order it would label is not
    placed nor amended, and a batch that holds one runs no op."""

    def request(request_id: int, method: str, params: dict[str, Any]) -> str:
        return json.dumps({"id": request_id, "method": method, "params": params})

    async def scenario(venue: Venue) -> None:
        websocket = await logged_on(venue, "alpha")
        await websocket.send(place(1, "186.00")[:-2] + ', "cl_ord_id": "keep"}}')
        (kept,) = await answers(websocket, 1)
        assert kept["status"] == 200
        await websocket.send(json.dumps({"id": 2, "method": "balances"}))
        (before,) = await answers(websocket, 1)
        good = json.loads(place(0, "185.00"))["params"]
        bad = [
            ("order.place", good | {"cl_ord_id": "new\nline"}, "cl_ord_id"),
            ("order.place", good | {"tag": "\u001b[31m"}, "tag"),
            ("order.place", good | {"cl_ord_id": "c1-\u0085"}, "cl_ord_id"),
            ("order.amend", {"cl_ord_id": "keep", "new_cl_ord_id": "k\u007f"}, "new_cl_ord_id"),
            (
                "order.batch",
                {
                    "ops": [
                        {"method": "order.cancel", "params": {"cl_ord_id": "keep"}},
                        {"method": "order.place", "params": good | {"tag": "\u0000"}},
                    ]
                },
                "ops[1]: tag",
            ),
        ]
        for index, (method, params, field) in enumerate(bad, start=10):
            await websocket.send(request(index, method, params))
            (answer,) = await answers(websocket, 1)
            assert (answer["id"], answer["status"], answer["error"]["name"]) == (
                index,
                400,
                "BAD_PARAM",
            ), answer
            assert answer["error"]["msg"].startswith(f"{field} holds a control character")
        await websocket.send(json.dumps({"id": 3, "method": "orders.open"}))
        await websocket.send(json.dumps({"id": 4, "method": "balances"}))
        open_orders, after = await answers(websocket, 2)
        orders = open_orders["result"]["orders"]
        assert [(o["cl_ord_id"], o["price"], o["tag"]) for o in orders] == [
            ("keep", "186.00", None)
        ]
        assert after["result"] == before["result"]
        await websocket.close()

    run_venue(scenario)


# ----------------------------------------------------------------- order of checks

GOOD_DEPOSIT = {"account": 1, "asset": "USD", "amount": "1"}
BAD_DEPOSIT = {"account": "one"}
GOOD_PLACE = json.loads(place(0, "186.00"))["params"]
BAD_PLACE = {"symbol": SYMBOL}
GOOD_LOGON = {"api_key": "k", "ts": 1, "nonce": "n", "sig": "0" * 64}
BAD_LOGON = {"api_key": 5}

# endpoint, who is logged on ("nobody": no one), method, params -> (status, error name)
CHECKS: list[tuple[str, str, str, dict[str, Any], tuple[int, str | None]]] = [
    ("public", "nobody", "admin.deposit", GOOD_DEPOSIT, (401, "NOT_AUTHENTICATED")),
    ("public", "nobody", "admin.deposit", BAD_DEPOSIT, (401, "NOT_AUTHENTICATED")),
    ("public", "nobody", "order.place", BAD_PLACE, (401, "NOT_AUTHENTICATED")),
    ("public", "nobody", "balances", {"x": 1}, (401, "NOT_AUTHENTICATED")),
    ("public", "nobody", "session.logon", GOOD_LOGON, (403, "PERMISSION_DENIED")),
    ("public", "nobody", "session.logon", BAD_LOGON, (403, "PERMISSION_DENIED")),
    ("public", "nobody", "ping", {"x": 1}, (400, "BAD_PARAM")),
    ("trade", "nobody", "admin.deposit", BAD_DEPOSIT, (401, "NOT_AUTHENTICATED")),
    ("trade", "nobody", "order.place", BAD_PLACE, (401, "NOT_AUTHENTICATED")),
    ("trade", "nobody", "session.logon", BAD_LOGON, (400, "BAD_PARAM")),
    ("trade", "alpha", "admin.deposit", GOOD_DEPOSIT, (403, "PERMISSION_DENIED")),
    ("trade", "alpha", "admin.deposit", BAD_DEPOSIT, (403, "PERMISSION_DENIED")),
    ("trade", "alpha", "order.place", BAD_PLACE, (400, "MISSING_PARAM")),
    ("trade", "alpha", "order.place", GOOD_PLACE, (200, None)),
    ("trade", "alpha", "balances", {"x": 1}, (400, "BAD_PARAM")),
    ("trade", "admin", "order.place", GOOD_PLACE, (403, "PERMISSION_DENIED")),
    ("trade", "admin", "order.place", BAD_PLACE, (403, "PERMISSION_DENIED")),
    ("trade", "admin", "admin.deposit", BAD_DEPOSIT, (400, "BAD_PARAM")),
    ("trade", "admin", "admin.deposit", GOOD_DEPOSIT, (200, None)),
    ("trade", "admin", "balances", {}, (200, None)),
]


def test_logon_and_scope_are_checked_before_params(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        connections: dict[tuple[str, str], ClientConnection] = {}
        for endpoint, who, _, _, _ in CHECKS:
            if (endpoint, who) not in connections:
                connections[(endpoint, who)] = await logged_on(venue, who, endpoint)
        for index, (endpoint, who, method, params, expected) in enumerate(CHECKS):
            websocket = connections[(endpoint, who)]
            await websocket.send(json.dumps({"id": index, "method": method, "params": params}))
            (answer,) = await answers(websocket, 1)
            error = answer.get("error", {}).get("name")
            row = (endpoint, who, method, params)
            assert (answer["id"], (answer["status"], error)) == (index, expected), row
        for websocket in connections.values():
            await websocket.close()

    run_venue(scenario)


def test_which_keys_exist_cannot_be_probed(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        websocket = await logged_on(venue, "nobody")
        ts = time.time_ns() // 1_000
        errors = []
        for index, (key, secret) in enumerate(
            [("no-such-key", "any"), (KEYS["alpha"][0], "not-its-secret")]
        ):
            sig = sign_logon(secret, key, ts, f"p-{index}", 5_000)
            params = {"api_key": key, "ts": ts, "nonce": f"p-{index}", "sig": sig}
            request = {"id": 1, "method": "session.logon", "params": params}
            await websocket.send(json.dumps(request))
            (answer,) = await answers(websocket, 1)
            errors.append((answer["status"], answer["error"]))
        assert errors[0] == errors[1]
        assert errors[0][0] == 401 and errors[0][1]["name"] == "BAD_SIGNATURE"
        await websocket.close()

    run_venue(scenario)


def test_a_logon_past_the_keys_nonce_cap_is_told_when_to_retry(run_venue: Any) -> None:
    """A key's live logon nonces are capped: the logon past the cap is 429 `RATE_LIMITED`
    with `retry_after_ms`, as every 429 (when the key's earliest nonce is forgotten). The
    cap is filled through the server's own authenticator: 1,024 connections would take long."""
    from gateway.auth import NONCES_PER_KEY_MAX
    from gateway.limits import KEY_NONCES_LIMIT, RATE_LIMITED_WORDS

    async def scenario(venue: Venue) -> None:
        key, secret = KEYS["alpha"]
        ts = time.time_ns() // 1_000
        for index in range(NONCES_PER_KEY_MAX):
            nonce = f"fill-{index}"
            sig = sign_logon(secret, key, ts, nonce, 2_000)
            venue.server.auth.logon(key, ts, nonce, 2_000, sig, ts)
        websocket = await logged_on(venue, "nobody")
        sig = sign_logon(secret, key, ts, "one-more", 2_000)
        params = {"api_key": key, "ts": ts, "nonce": "one-more", "recv_window": 2_000, "sig": sig}
        await websocket.send(json.dumps({"id": 7, "method": "session.logon", "params": params}))
        (answer,) = await answers(websocket, 1)
        assert (answer["id"], answer["status"], answer["error"]["name"]) == (7, 429, "RATE_LIMITED")
        assert 0 < answer["retry_after_ms"] <= 2_001, answer
        # named as every 429 is (before session 31: no `data`, words of its own)
        assert answer["error"]["data"] == {"limit": KEY_NONCES_LIMIT}, answer
        assert answer["error"]["msg"] == RATE_LIMITED_WORDS[KEY_NONCES_LIMIT], answer
        await websocket.close()

    run_venue(scenario)


# ----------------------------------------------------------------- anonymity

BUYER, SELLER = 777_001, 777_002  # ids no other number on the wire is likely to equal


async def recorded(venue: Venue, key: str, secret: str) -> tuple[ClientConnection, list[str]]:
    """A logged-on raw connection and the list every message it receives is appended to."""
    websocket = await connect(venue.url(), max_size=None)
    seen: list[str] = []
    ts = time.time_ns() // 1_000
    sig = sign_logon(secret, key, ts, f"r-{ts}", 5_000)
    params = {"api_key": key, "ts": ts, "nonce": f"r-{ts}", "recv_window": 5_000, "sig": sig}
    await websocket.send(json.dumps({"id": 0, "method": "session.logon", "params": params}))
    seen.append(str(await asyncio.wait_for(websocket.recv(), WAIT_S)))
    return websocket, seen


async def call(
    websocket: ClientConnection, seen: list[str], method: str, params: dict[str, Any]
) -> dict[str, Any]:
    """Send a request; every message up to its answer is recorded in `seen`."""
    request_id = len(seen) + 1_000
    await websocket.send(json.dumps({"id": request_id, "method": method, "params": params}))
    deadline = time.monotonic() + WAIT_S
    while True:
        text = str(await asyncio.wait_for(websocket.recv(), deadline - time.monotonic()))
        seen.append(text)
        message = json.loads(text)
        if message.get("id") == request_id:
            return message


async def read_for(websocket: ClientConnection, seen: list[str], wait_s: float) -> None:
    """Record every message that arrives within `wait_s` of the last one."""
    try:
        while True:
            seen.append(str(await asyncio.wait_for(websocket.recv(), wait_s)))
    except TimeoutError:
        return


async def open_funded_accounts(venue: Venue) -> dict[int, tuple[str, str]]:
    admin, _ = await recorded(venue, *KEYS["admin"])
    keys = {}
    for account, name, asset, amount in (
        (BUYER, "buyer", "USD", "100000"),
        (SELLER, "seller", "AAPLx", "100"),
    ):
        scratch: list[str] = []
        opened = {"account": account, "name": name, "jurisdiction": "FR", "kyc_approved": True}
        assert (await call(admin, scratch, "admin.open_account", opened))["status"] == 200
        funds = {"account": account, "asset": asset, "amount": amount}
        assert (await call(admin, scratch, "admin.deposit", funds))["status"] == 200
        issued = {"account": account, "scopes": ["read", "trade"]}
        result = (await call(admin, scratch, "admin.issue_key", issued))["result"]
        keys[account] = (result["api_key"], result["secret"])
    await admin.close()
    return keys


async def trade_and_query(venue: Venue, keys: dict[int, tuple[str, str]]) -> dict[int, list[str]]:
    """The two accounts trade with each other and ask every query; what each received."""
    connections = {account: await recorded(venue, *keys[account]) for account in keys}
    for websocket, seen in connections.values():
        await call(websocket, seen, "subscribe", {"ch": "account"})
        await call(websocket, seen, "subscribe", {"ch": "trades", "symbols": [SYMBOL]})
    order = {"symbol": SYMBOL, "type": "limit", "price": "187.30", "qty": "2"}
    sell = order | {"side": "sell", "tif": "gtc", "cl_ord_id": "s-1"}
    buy = order | {"side": "buy", "tif": "ioc", "qty": "1"}
    assert (await call(*connections[SELLER], "order.place", sell))["status"] == 200
    assert (await call(*connections[BUYER], "order.place", buy))["status"] == 200
    for websocket, seen in connections.values():
        await read_for(websocket, seen, 0.3)
        await call(websocket, seen, "fills", {"limit": 100})
        await call(websocket, seen, "orders.open", {})
        await call(websocket, seen, "balances", {})
        await call(websocket, seen, "subscribe", {"ch": "account", "since_seq": 0})
        await read_for(websocket, seen, 0.3)
    await call(*connections[SELLER], "order.status", {"cl_ord_id": "s-1"})
    for websocket, _ in connections.values():
        await websocket.close()
    return {account: seen for account, (_, seen) in connections.items()}


def assert_anonymous(received: dict[int, list[str]]) -> None:
    for account, messages in received.items():
        other = str(SELLER if account == BUYER else BUYER)
        assert any('"settlement"' in m for m in messages), "the trade settled"
        leaked = [m for m in messages if other in m]
        assert leaked == [], f"account {account} was told of account {other}"
        assert any(str(account) in m for m in messages), "its own id is shown"


def test_no_message_names_the_counterparty(tmp_path: Any) -> None:
    """Live, and in the history a restart rebuilds from the journal alone."""

    async def main() -> None:
        venue = await start_venue(tmp_path)
        try:
            keys = await asyncio.wait_for(open_funded_accounts(venue), 10)
            assert_anonymous(await asyncio.wait_for(trade_and_query(venue, keys), 10))
        finally:
            await venue.server.stop()
        for snapshot in tmp_path.glob("snapshot-*"):  # recovery replays the whole journal
            snapshot.unlink()
        venue = await start_venue(tmp_path)
        try:
            received = {}
            for account in keys:
                websocket, seen = await recorded(venue, *keys[account])
                await call(websocket, seen, "subscribe", {"ch": "account", "since_seq": 0})
                await read_for(websocket, seen, 0.3)
                await call(websocket, seen, "fills", {"limit": 100})
                await websocket.close()
                received[account] = seen
            assert_anonymous(received)
        finally:
            await venue.server.stop()

    asyncio.run(main())


def test_a_failing_handler_answers_internal_behind_what_is_owed(run_venue: Any) -> None:
    def broken(server: Any, session: Any, request: Any, t_in: int) -> None:
        raise RuntimeError("a bug in a handler")

    async def scenario(venue: Venue) -> None:
        websocket = await logged_on(venue, "alpha")
        original = Dispatcher._handlers["time"]
        Dispatcher._handlers["time"] = broken  # fault injection: the one way to reach it
        try:
            await websocket.send(place(1, "186.00"))
            await websocket.send(json.dumps({"id": 2, "method": "time"}))
            first, second = await answers(websocket, 2)
        finally:
            Dispatcher._handlers["time"] = original
        assert (first["id"], first["status"]) == (1, 200)
        assert (second["id"], second["status"], second["error"]["name"]) == (2, 500, "INTERNAL")
        await websocket.send(json.dumps({"id": 3, "method": "time"}))
        assert (await answers(websocket, 1))[0]["id"] == 3, "the connection stays usable"
        await websocket.close()

    run_venue(scenario)


def test_a_logon_that_beats_its_timeout_close_keeps_the_connection(run_venue: Any) -> None:
    async def scenario(venue: Venue) -> None:
        # On the journal's thread (as over NATS): a command stays in flight while the loop
        # runs; the file journal's commit on the loop leaves none in flight across turns.
        venue.server.sequencer.commit_on_loop = False
        journal = venue.server.sequencer.journal
        commit = journal.commit_commands

        def slow_commit(batch: Any, encode_into: Any) -> None:
            time.sleep(0.3)  # on the journal's thread: a command stays in flight a while
            commit(batch, encode_into)

        journal.commit_commands = slow_commit  # type: ignore[method-assign]
        trader = await logged_on(venue, "beta")
        late = await logged_on(venue, "nobody")
        await trader.send(place(1, "186.00"))  # in flight while the timeout fires
        await asyncio.sleep(0.05)
        [session] = [s for s in venue.server.sessions.values() if s.trade and s.key is None]
        venue.server.handler._logon_timeout(session)  # its close waits behind the place in flight
        key, secret = KEYS["alpha"]
        ts = time.time_ns() // 1_000
        sig = sign_logon(secret, key, ts, f"n-{ts}", 5_000)
        params = {"api_key": key, "ts": ts, "nonce": f"n-{ts}", "recv_window": 5_000, "sig": sig}
        await late.send(json.dumps({"id": 7, "method": "session.logon", "params": params}))
        assert (await answers(late, 1))[0]["status"] == 200
        assert (await answers(trader, 1))[0]["id"] == 1  # the close's barrier is released
        await asyncio.sleep(0.2)
        await late.send(json.dumps({"id": 8, "method": "ping"}))
        assert (await answers(late, 1))[0]["id"] == 8, "a logged-on connection stays open"
        await late.close()
        await trader.close()

    run_venue(scenario)
