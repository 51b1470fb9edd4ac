"""The SDK's typed results, pushes and errors: what `client.sdk.VenueClient` hands its caller.

Owns the structs of the private stream (`AccountEvent` and its payloads, decoded leniently:
unknown fields are ignored, as the protocol asks of clients), the result of an order
command, and the exceptions a request can raise with the advice they carry (which methods
are queries, safe to ask again; what to do about an outcome unknown). No I/O here: the
connection that raises them is `client.sdk`, which re-exports every name.
"""

from collections.abc import Mapping
from typing import Any

import msgspec

from engine.reasons import ErrorCode
from gateway.wire import MESSAGE_BYTES_MAX

# requests that change no order, fund or setting: one whose answer never came is asked again
# safely; for any other the outcome is unknown (`outcome_unknown` on the errors below)
QUERY_METHODS = frozenset(
    {
        "ping",
        "time",
        "instruments",
        "book.snapshot",
        "reserves",
        "balances",
        "orders.open",
        "order.status",
        "orders.history",
        "fills",
        "subscribe",
        "unsubscribe",
        "subscriptions",
        "session.logon",
        "session.status",
    }
)
UNKNOWN_OUTCOME = (  # of an order method: the order's state says whether it was done
    "its outcome is unknown (the venue may have carried it out): check with order_status or"
    " open_orders before sending it again"
)
# Of a batch's commands answered 504 each (a cluster's gateway, its core silent past the
# first ones): as of an order method, for each of them.
UNKNOWN_OPS_OUTCOME = (
    "the venue may still carry them out; check with order_status or open_orders before"
    " sending them again"
)
# Of a place sent with `once` (and its cl_ord_id): the venue places it at most once per
# cl_ord_id (docs/protocol.md §2.4), so the answer is to send the same request again.
ONCE_UNKNOWN_OUTCOME = (
    "its outcome is unknown (the venue may have carried it out): send the same request again"
    " (once, cl_ord_id {cl_ord_id!r}): it runs at most once, and a repeat is refused"
    " DUPLICATE_CL_ORD_ID naming the first order and its status (docs/protocol.md §2.4)"
)
# Of a request that says what should be rather than what to do, the quotes a `quote.mass`
# keeps live per (set, symbol, side) (they have no cl_ord_id to check by) or the deadline an
# `orders.cancel_after` arms (counted from the last call): the answer is to send it again;
# a `quote.mass` once the account stream's fills are taken in, for sent again it does not
# only set what the first would have: a quote filled since is placed again, one partly
# filled topped up to the size given (docs/protocol.md §5.5). Before session 35 they were
# told to check the orders.
STATE_UNKNOWN_OUTCOME = (
    "its outcome is unknown (the venue may have carried it out): send it again, a quote.mass"
    " once you have taken in the account stream's fills: sent again it places again a quote"
    " filled meanwhile, and tops up one partly filled (docs/protocol.md §5.5); an"
    " orders.cancel_after counts its deadline from the last call (§4.4)"
)
STATE_METHODS = frozenset({"quote.mass", "orders.cancel_after"})
# Of a session's logon and logout, which no order query shows (before session 35's
# re-review a logout was told to check order_status or open_orders, a logon nothing): lost
# with its connection, and so unanswered in time, its connection perhaps still open.
SESSION_LOST_ADVICE = {
    "session.logon": (
        "a logon is its connection's: whether or not it ran, it ended with it; a resume logs"
        " on again (docs/protocol.md §1)"
    ),
    "session.logout": (
        "whether or not it ran, the session ended with its connection (its"
        " cancel-on-disconnect fired, if on), and auto_resume does not reopen it: nothing to"
        " send again"
    ),
}
SESSION_TIMEOUT_ADVICE = {
    "session.logon": (
        "the connection may be logged on: session.status says (a logon sent again on a"
        " logged-on connection is refused)"
    ),
    "session.logout": (
        "its outcome is unknown: a logout that ran closes the connection (a logged_out"
        " notice), one still open is not logged out yet: send it again"
    ),
}
# Of an admin method, whose effect no order query shows: the venue does one at most once per
# `cl_op_id` (docs/protocol.md §10), so the answer is to send it again under the same one.
ADMIN_UNKNOWN_OUTCOME = (
    "its outcome is unknown (the venue may have carried it out): send it again with the same"
    " cl_op_id {cl_op_id!r}, which the venue does at most once (docs/protocol.md §10)"
)
ADMIN_UNKNOWN_OUTCOME_WITHOUT_ID = (
    "its outcome is unknown (the venue may have carried it out) and it had no cl_op_id: sent"
    " again it may be done twice, so check its effect first; send admin requests with a"
    " cl_op_id, and again with the same one, to have them done at most once"
    " (docs/protocol.md §10)"
)
ISSUE_KEY_UNKNOWN_OUTCOME = (  # no cl_op_id: a key issued is shown only once
    "its outcome is unknown (the venue may have issued the key, whose secret only the lost"
    " answer showed): issue another; with a cl_op_id, sent again under it, the same key would"
    " be shown again"
)


def unknown_outcome(method: str, params: Mapping[str, Any] | None) -> str:
    """What a caller can do about a request that may have been carried out, unanswered."""
    if method.startswith("admin."):
        cl_op_id = (params or {}).get("cl_op_id")
        if cl_op_id is None and method == "admin.issue_key":
            return ISSUE_KEY_UNKNOWN_OUTCOME
        if cl_op_id is None:
            return ADMIN_UNKNOWN_OUTCOME_WITHOUT_ID
        return ADMIN_UNKNOWN_OUTCOME.format(cl_op_id=cl_op_id)
    if method == "order.place" and params and params.get("once") and params.get("cl_ord_id"):
        return ONCE_UNKNOWN_OUTCOME.format(cl_ord_id=params["cl_ord_id"])
    if method in STATE_METHODS:
        return STATE_UNKNOWN_OUTCOME
    return UNKNOWN_OUTCOME


class OrderResult(msgspec.Struct, frozen=True):
    """The result of order.place / order.cancel / order.amend: the order after the command."""

    seq: int  # the venue's command sequence number
    order_id: int | None = None
    status: str | None = None
    cl_ord_id: str | None = None


class ExecReport(msgspec.Struct, frozen=True):
    """An execution report (`type: "exec"`), FIX-style; decimals are strings as sent. The
    order's fields are None in a `rejected` report about no open order (protocol 8.2)."""

    exec_type: str
    status: str
    exec_id: int
    order_id: int | None
    symbol: str | None
    side: str | None
    type: str | None
    tif: str | None
    qty: str | None
    leaves_qty: str | None
    cum_qty: str | None
    cl_ord_id: str | None = None
    price: str | None = None
    avg_px: str | None = None
    last_px: str | None = None
    last_qty: str | None = None
    liquidity: str | None = None
    trade_id: int | None = None
    fee: str | None = None
    fee_asset: str | None = None
    tag: str | None = None
    quote_set: str | None = None
    reason: str | None = None


class BalanceUpdate(msgspec.Struct, frozen=True):
    asset: str
    total: str
    available: str
    held: str


class SettlementLeg(msgspec.Struct, frozen=True, rename={"source": "from", "target": "to"}):
    transfer_id: int
    kind: str
    source: int | None  # None: the counterparty, who is anonymous
    target: int | None
    asset: str
    amount: str


class SettlementReport(msgspec.Struct, frozen=True):
    settlement_id: int
    trade_id: int
    symbol: str
    legs: list[SettlementLeg]


class AccountEvent(msgspec.Struct, frozen=True):
    """One event of the private stream, its payload typed by `type`."""

    seq: int
    epoch: int
    type: str
    data: ExecReport | BalanceUpdate | SettlementReport | dict[str, Any]
    ts: int = 0


_PAYLOADS: dict[str, type[msgspec.Struct]] = {
    "exec": ExecReport,
    "balance": BalanceUpdate,
    "settlement": SettlementReport,
}


def account_event(push: dict[str, Any]) -> AccountEvent | None:
    """The typed form of a private-stream push (None for snapshots and other channels).

    Unknown fields are ignored, as the protocol asks of clients.
    """
    if push.get("ch") != "account" or "data" not in push:
        return None
    kind = _PAYLOADS.get(push.get("type", ""))
    data: Any = msgspec.convert(push["data"], kind) if kind is not None else push["data"]
    return AccountEvent(push["seq"], push["epoch"], push["type"], data, push.get("ts", 0))


class VenueError(Exception):
    """The venue answered a request with an error; `code`, `name`, `status` as sent, and a
    429's `retry_after_ms` (when a retry passes; None on other errors), also in the message."""

    def __init__(
        self,
        status: int,
        code: int,
        name: str,
        msg: str,
        data: Any = None,
        retry_after_ms: int | None = None,
    ) -> None:
        text = f"{status} {name} ({code}): {msg}"
        if retry_after_ms is not None:
            text += f" (retry after {retry_after_ms} ms)"
        super().__init__(text)
        self.status = status
        self.code = code
        self.name = name
        self.data = data
        self.retry_after_ms = retry_after_ms


def venue_error(response: Mapping[str, Any]) -> VenueError:
    """The `VenueError` of a response refused (its status not 200)."""
    error = response.get("error", {})
    return VenueError(
        response["status"],
        error.get("code", 0),
        error.get("name", "?"),
        error.get("msg", ""),
        error.get("data"),
        response.get("retry_after_ms"),
    )


class RequestTooLarge(VenueError):
    """A request the SDK refused before sending it: its frame, as encoded, is past the
    venue's limit for one message (`MESSAGE_BYTES_MAX`, 65,536 bytes). The venue answers
    such a frame `MESSAGE_TOO_BIG` with no `id`, which no request can be matched to (the
    caller waited out its timeout), and closes the connection past 256 KiB; so nothing is
    sent, no outcome is in doubt and the connection stays as it was. A `VenueError` as the
    venue's answer would be, 400 `MESSAGE_TOO_BIG` (1005), with `size_bytes` and
    `size_max`."""

    def __init__(self, method: str, size_bytes: int, size_max: int = MESSAGE_BYTES_MAX) -> None:
        text = (
            f"{method} not sent: its request is {size_bytes:,} bytes as encoded, past the"
            f" venue's {size_max:,} for one message"
        )
        code = ErrorCode.MESSAGE_TOO_BIG
        super().__init__(400, int(code), code.name, text)
        self.method = method
        self.size_bytes = size_bytes
        self.size_max = size_max


class PartlyDone(VenueError):
    """A 409 answer: an `order.batch` or `quote.mass` of which some commands were refused
    (all of them, perhaps) and the others done. `results` is the answer's list, one entry
    per command with its own `status` and `result` or `error` (docs/protocol.md §5.4, §5.5):
    what was done (a quote placed, say) is in it, so look before sending it again. `name` is
    `PARTLY_DONE` and `code` 0: the protocol gives a 409 no code of its own. A cluster's
    gateway whose core went silent (or that lost its lease) with the first commands done
    answers each later one 504 `OUTCOME_UNKNOWN`: their indexes are `unknown`, and
    `outcome_unknown` is True (they may still be carried out: check before sending them
    again); the message counts them apart from the refused."""

    def __init__(self, method: str, results: list[dict[str, Any]]) -> None:
        unknown = [i for i, r in enumerate(results) if _is_unknown(r)]
        refused = [
            (i, r.get("error", {}))
            for i, r in enumerate(results)
            if r["status"] != 200 and i not in unknown
        ]
        done = len(results) - len(refused) - len(unknown)
        text = f"{method} partly done: {done} of {len(results)} done"
        if unknown:
            indexes = ", ".join(f"#{i}" for i in unknown)
            text += f", {len(unknown)} outcome unknown ({indexes}: {UNKNOWN_OPS_OUTCOME})"
        if refused:
            index, error = refused[0]
            text += (
                f", {len(refused)} refused, the first (#{index}) {error.get('name', '?')}:"
                f" {error.get('msg', '')}"
            )
        if unknown or refused:
            text += "; see .results"
        super().__init__(409, 0, "PARTLY_DONE", text)
        self.method = method
        self.results = results
        self.unknown = unknown
        self.outcome_unknown = bool(unknown)


def _is_unknown(entry: dict[str, Any]) -> bool:
    """Whether a batch's entry says its command's outcome is unknown (504 `OUTCOME_UNKNOWN`)."""
    name = entry.get("error", {}).get("name")
    return bool(entry["status"] == 504 and name == "OUTCOME_UNKNOWN")


class ConnectionLost(ConnectionError):
    """A request met a closed connection (`sent` False: it never left, nothing happened) or
    its connection closed before the answer (`sent` True: for a request not in
    QUERY_METHODS, `outcome_unknown`). The message says which, and whether auto_resume is
    reopening the connection or gave up; of an outcome unknown, what to do about it (for an
    order method, check the order; for an admin method, send it again under its `cl_op_id`:
    `unknown_outcome`)."""

    def __init__(
        self,
        message: str,
        method: str,
        sent: bool,
        params: Mapping[str, Any] | None = None,
        hint: str = "",
    ) -> None:
        self.reason = message  # what happened, without the advice (a caller may give its own)
        message += hint  # how to reopen the connection, in the SDK's terms
        self.outcome_unknown = sent and method not in QUERY_METHODS
        if sent and method in SESSION_LOST_ADVICE:
            message += f": {SESSION_LOST_ADVICE[method]}"
        elif self.outcome_unknown:
            message += f": {unknown_outcome(method, params)}"
        super().__init__(message)
        self.method = method
        self.sent = sent


class RequestTimeout(TimeoutError):
    """No answer to a request within its timeout. It may have reached the venue: for a
    request not in QUERY_METHODS `outcome_unknown` is True and the message says so, and what
    to do about it (`unknown_outcome`). A late answer, if one comes, is queued as a push
    (`next_push`), one that arrived just as the timeout struck too (since session 37's
    re-review; a logon's is also read for what it did: `_late_answer`)."""

    def __init__(
        self,
        method: str,
        request_id: int,
        timeout_s: float,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        message = f"no answer to {method} (id {request_id}) within {timeout_s:g} s"
        self.outcome_unknown = method not in QUERY_METHODS
        if method in SESSION_TIMEOUT_ADVICE:
            message += f": {SESSION_TIMEOUT_ADVICE[method]}"
        elif self.outcome_unknown:
            message += f": {unknown_outcome(method, params)}"
        super().__init__(message)
        self.method = method
        self.request_id = request_id
        self.timeout_s = timeout_s


class PushesDropped(Exception):
    """Private-stream events were dropped unread: the push queue was full (`pushes_max`,
    the oldest go first). `count` of them, the first with account `seq` `first_seq`."""

    def __init__(self, count: int, first_seq: int, pushes_max: int) -> None:
        super().__init__(
            f"{count} private-stream events from seq {first_seq} on were dropped unread, the"
            f" push queue being full ({pushes_max:,} pushes): read pushes sooner;"
            " subscribe_account() sends the account's state now (a snapshot)"
        )
        self.count = count
        self.first_seq = first_seq
