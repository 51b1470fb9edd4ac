"""The wire: strict request schemas, decimal strings to engine commands, response envelopes.

Owns the JSON shape of every request (`METHODS`: one frozen params struct per method, unknown
fields refused), the mapping of decode failures to the protocol's 1xxx codes, the exact
conversion of decimal strings to integer units (excess precision is `BAD_PRECISION`, never
rounded) and of trading and admin requests to engine commands, and the response envelopes.
Leaves sessions, scopes, rate limits, queries and subscriptions to the server, business
refusals to the engine, and private pushes to `gateway.reports`. Pure: no sockets, no clock.
Limits: `MESSAGE_BYTES_MAX` per frame, `BATCH_OPS_MAX` ops per batch, `QUOTES_MAX` quotes per
`quote.mass`, every integer below 2^53 and every string bounded.
"""

import datetime
import functools
import json
import operator
import re
import time
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import chain, starmap
from typing import Annotated, Any, Final, Literal, Union

import msgspec
from msgspec import Meta

from engine.commands import (
    AmendOrder,
    AttestReserves,
    CancelAll,
    CancelOrder,
    Command,
    ConfirmWithdrawal,
    Deposit,
    ListAsset,
    ListInstrument,
    MatureInstrument,
    OpenAccount,
    PayDividend,
    PlaceOrder,
    RequestWithdrawal,
    SetInstrumentStatus,
    SetOrderCaps,
    SetReferencePrice,
    SplitShares,
    SweepVenueAccount,
    VoidWithdrawal,
)
from engine.enums import (
    InstrumentKind,
    InstrumentStatus,
    OrderType,
    SelfTradePrevention,
    Side,
    TimeInForce,
)
from engine.events import CommandRejected
from engine.instrument import (
    FEE_BPS_MAX,
    SYMBOL_LENGTH_MAX,
    InstrumentSpec,
    bill_price_problem,
    case_twin_refusal,
    listed_band_low,
    notional_cap_problem,
    unknown_symbol,
)
from engine.operations import CL_OP_ID_LENGTH_MAX
from engine.reasons import ErrorCode
from engine.units import (
    SCALE_MAX,
    PrecisionError,
    format_units,
    parse_units,
    seconds_slip,
)
from engine.venue import CL_ORD_ID_LENGTH_MAX, TAG_LENGTH_MAX
from gateway.auth import KEY_LENGTH_MAX, NONCE_LENGTH_MAX
from settlement import jurisdictions, tbill
from settlement.jurisdictions import is_jurisdiction
from settlement.ledger import ASSET_CODE_LENGTH_MAX

E = ErrorCode
# Enum members read once, here: a member read from its class (`Side.BUY`) takes the slow
# attribute lookup EnumType gets for defining `__getattr__`, which CPython 3.11 cannot
# specialise (~920 instructions a read, callgrind); a module global is a cached load.
_LIMIT_ORDER, _GTD = OrderType.LIMIT, TimeInForce.GTD

# ----------------------------------------------------------------- limits

INT_MAX = 2**53 - 1  # PROTOCOL: integers below 2^53, exact in every JSON client
MESSAGE_BYTES_MAX = 64 * 1024  # a full batch or quote.mass is ~15 KB; four times that
ID_LENGTH_MAX = 36  # PROTOCOL: a string request id has at most 36 characters
BATCH_OPS_MAX = 20  # PROTOCOL: order.batch carries up to 20 ops
QUOTES_MAX = 100  # one quote.mass: two sides on every listed symbol, with room to grow
SYMBOLS_PER_REQUEST_MAX = 100  # subscribe: every listed symbol at once, with room to grow
DECIMAL_LENGTH_MAX = 48  # UNITS_MAX has 19 digits, plus a point and 18 decimals, plus zeros
UNITS_CACHE_MAX = 4_096  # decimal texts remembered as units: a book's prices and sizes, x10
NAME_LENGTH_MAX = 64  # account names and quote set names are labels, not documents
FILLS_LIMIT_MAX = 1_000  # one page of fills; page on with since_seq
ORDERS_HISTORY_LIMIT_MAX = 1_000  # one page of orders.history; page on with before_order_id
WITHDRAWALS_LIMIT_MAX = 1_000  # one page of admin.withdrawals; page on with after_withdrawal_id
BOOK_DEPTH_MAX = 1_000  # levels per side in one snapshot; deeper books are not a quote
CANCEL_AFTER_MS_MAX = 600_000  # a dead-man's switch longer than 10 minutes protects nothing
JURISDICTIONS_MAX = 250  # ISO 3166 has 249 alpha-2 codes
ERROR_TEXT_CHARS_MAX = 1_000  # an error quoting client input quotes this much: enough to see it
# keys and values looked at to place an unpaired surrogate escape: a valid request has fewer
# than 1,300 (quote.mass: 100 quotes of 5 fields), and a longer search only feeds a flood
SURROGATE_SEARCH_MAX = 2_048

DECIMAL_PATTERN = r"^[0-9]+(\.[0-9]+)?\Z"  # plain notation: no sign, exponent or spaces
RATIO_PATTERN = r"^[0-9]{1,4}:[0-9]{1,4}\Z"  # a split's "new:old"; the engine checks 1..1000
SIGNATURE_PATTERN = r"^[0-9a-fA-F]{64}\Z"  # a logon's `sig`: hex HMAC-SHA256
JURISDICTION_PATTERN = r"^[A-Z]{2}\Z"  # ISO 3166 alpha-2
# The patterns said in words in an error (an operator does not read regular expressions; nor
# does a trader: before session 26 a bad `sig` was answered with its regex).
PATTERN_WORDS = {
    DECIMAL_PATTERN: "a plain decimal number",
    RATIO_PATTERN: 'a ratio "new:old" of two whole numbers from 1 to 1000, such as "2:1",'
    ' "3:2" or "1:10"',
    SIGNATURE_PATTERN: "64 hex digits (the HMAC-SHA256 of the logon's payload)",
    JURISDICTION_PATTERN: 'an ISO 3166 alpha-2 code in capitals, such as "US"',
}
# The decimal fields that must be above zero, by method, as its handler checks them (here,
# `_positive`, or the engine): a negative one is told "must be positive". A name is not enough:
# `amount` is above zero in a deposit, 0 or more in an attestation. Every other decimal field
# takes "0" (no cap, nothing attested, a pulled side) and a negative one is told "must not be
# negative"; a quote's price (`QUOTE_PRICES`) says both.
POSITIVE_DECIMALS: Final[Mapping[str, frozenset[str]]] = {
    "order.place": frozenset({"price", "qty", "quote_qty"}),
    "order.amend": frozenset({"price", "qty"}),
    "order.batch": frozenset({"price", "qty", "quote_qty"}),  # its ops': places and amends
    "admin.list_instrument": frozenset({"tick", "step", "min_qty", "band_pct", "reference_price"}),
    "admin.set_reference_price": frozenset({"price"}),
    "admin.deposit": frozenset({"amount"}),
    "admin.withdraw": frozenset({"amount"}),
    "admin.confirm_withdrawal": frozenset({"amount"}),
    "admin.void_withdrawal": frozenset({"amount"}),
    "admin.pay_dividend": frozenset({"amount_per_share"}),
    "admin.sweep": frozenset({"amount"}),
}
# A quote's prices: above zero beside a size to quote, any price not negative in a pull
# (`_quote_price`: a pull must never fail on the price beside it)
QUOTE_PRICES = frozenset({"bid_px", "ask_px"})

# ----------------------------------------------------------------- field types

Int53 = Annotated[int, Meta(ge=0, le=INT_MAX)]
PositiveInt = Annotated[int, Meta(ge=1, le=INT_MAX)]
RequestId = (
    Annotated[int, Meta(ge=0, le=INT_MAX)]
    | Annotated[str, Meta(min_length=1, max_length=ID_LENGTH_MAX)]
)
DecimalText = Annotated[str, Meta(pattern=DECIMAL_PATTERN, max_length=DECIMAL_LENGTH_MAX)]
Symbol = Annotated[str, Meta(min_length=1, max_length=SYMBOL_LENGTH_MAX)]
AssetCode = Annotated[str, Meta(min_length=1, max_length=ASSET_CODE_LENGTH_MAX)]
ClientOrderId = Annotated[str, Meta(min_length=1, max_length=CL_ORD_ID_LENGTH_MAX)]
ClientOperationId = Annotated[str, Meta(min_length=1, max_length=CL_OP_ID_LENGTH_MAX)]
Tag = Annotated[str, Meta(min_length=1, max_length=TAG_LENGTH_MAX)]
Name = Annotated[str, Meta(min_length=1, max_length=NAME_LENGTH_MAX)]
Jurisdiction = Annotated[str, Meta(pattern=JURISDICTION_PATTERN)]
Scale = Annotated[int, Meta(ge=0, le=SCALE_MAX)]
FeeBps = Annotated[int, Meta(ge=0, le=FEE_BPS_MAX)]
# a list of symbols names at least one: "all" is said by leaving the list out, never by []
Symbols = Annotated[tuple[Symbol, ...], Meta(min_length=1, max_length=SYMBOLS_PER_REQUEST_MAX)]
Channel = Literal["account", "instruments", "book", "trades", "bbo", "ticker", "candles"]
Interval = Literal["1m", "5m", "1h", "1d"]  # `candles` bars: gateway.candles.INTERVALS_US
Scope = Literal["read", "trade", "admin"]

Problem = tuple[ErrorCode, str]


class Params(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The params of one method. `problem()` checks what the field types cannot say."""

    def problem(self) -> Problem | None:
        return None


# A label the client gives an order (`cl_ord_id`, `tag`: echoed in reports, logs and
# terminals) holds no control character, C0, DEL or C1 (Unicode's Cc): they are invisible,
# and a newline or an escape sequence forges what a reader sees. Other characters are the
# client's business (spaces, accents, emoji), as the labels only name and group orders.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
CONTROL_CHARACTERS = "U+0000-U+001F, U+007F-U+009F"


def _label_problem(field: str, label: str | None) -> Problem | None:
    """`BAD_PARAM` naming `field` if `label` holds a control character. (A printable text
    holds none, which is one call in C: the regular expression runs only for the rest.)"""
    if label is None or label.isprintable():
        return None
    found = _CONTROL.search(label)
    if found is None:  # not printable, but no control character (a no-break space, a ZWJ)
        return None
    return (
        E.BAD_PARAM,
        f"{field} holds a control character (U+{ord(found.group()):04X} at index"
        f" {found.start()}): control characters ({CONTROL_CHARACTERS}) are not allowed",
    )


def _one_order_id(order_id: int | None, cl_ord_id: str | None) -> Problem | None:
    if order_id is None and cl_ord_id is None:
        return E.MISSING_PARAM, "give order_id or cl_ord_id"
    if order_id is not None and cl_ord_id is not None:
        return E.BAD_PARAM, "give only one of order_id and cl_ord_id"
    return None


# ----------------------------------------------------------------- session


class LogonParams(Params, frozen=True):
    api_key: Annotated[str, Meta(min_length=1, max_length=KEY_LENGTH_MAX)]
    ts: Int53  # µs
    nonce: Annotated[str, Meta(min_length=1, max_length=NONCE_LENGTH_MAX)]
    sig: Annotated[str, Meta(pattern=SIGNATURE_PATTERN)]
    recv_window: PositiveInt | None = None  # ms; the server's default when absent


class LogoutParams(Params, frozen=True):
    pass


class SessionStatusParams(Params, frozen=True):
    pass


class PingParams(Params, frozen=True):
    pass


class TimeParams(Params, frozen=True):
    pass


class CodParams(Params, frozen=True):
    enabled: bool


class CancelAfterParams(Params, frozen=True):
    timeout_ms: Annotated[int, Meta(ge=0, le=CANCEL_AFTER_MS_MAX)]  # 0 disarms


# ----------------------------------------------------------------- trading


class PlaceParams(Params, frozen=True):
    symbol: Symbol
    side: Side
    type: OrderType
    tif: TimeInForce
    price: DecimalText | None = None
    qty: DecimalText | None = None
    quote_qty: DecimalText | None = None
    expire_at: PositiveInt | None = None  # µs, gtd only
    post_only: bool = False
    stp: SelfTradePrevention = SelfTradePrevention.EXPIRE_TAKER
    cl_ord_id: ClientOrderId | None = None
    tag: Tag | None = None
    # At most once per cl_ord_id, open or closed: a retry after a lost answer is safe
    # (docs/protocol.md §2.4). The engine refuses it without a cl_ord_id too.
    once: bool = False

    def problem(self) -> Problem | None:
        if self.once and self.cl_ord_id is None:
            return E.BAD_PARAM, "once needs a cl_ord_id: it is what a retry is known by"
        if self.type is _LIMIT_ORDER:
            if self.price is None or self.qty is None:
                return E.MISSING_PARAM, "a limit order needs price and qty"
            if self.quote_qty is not None:
                return E.BAD_PARAM, "quote_qty is for market orders"
        else:
            if self.price is not None:
                return E.BAD_PARAM, "a market order has no price"
            if self.qty is None and self.quote_qty is None:
                return E.MISSING_PARAM, "a market order needs qty or quote_qty"
            if self.qty is not None and self.quote_qty is not None:
                return E.BAD_PARAM, "give only one of qty and quote_qty"
        if self.expire_at is None:  # the usual order: one test of its tif
            if self.tif is _GTD:
                return E.MISSING_PARAM, "a gtd order needs expire_at"
        elif self.tif is not _GTD:
            return E.BAD_PARAM, "expire_at is for gtd orders only"
        cl_ord_id, tag = self.cl_ord_id, self.tag
        if (cl_ord_id is None or cl_ord_id.isprintable()) and (tag is None or tag.isprintable()):
            return None  # the usual labels: told apart by one call in C each (`_label_problem`)
        return _label_problem("cl_ord_id", cl_ord_id) or _label_problem("tag", tag)


class CancelParams(Params, frozen=True):
    order_id: PositiveInt | None = None
    cl_ord_id: ClientOrderId | None = None

    def problem(self) -> Problem | None:
        return _one_order_id(self.order_id, self.cl_ord_id)


class AmendParams(Params, frozen=True):
    order_id: PositiveInt | None = None
    cl_ord_id: ClientOrderId | None = None
    qty: DecimalText | None = None  # the new total quantity
    price: DecimalText | None = None
    new_cl_ord_id: ClientOrderId | None = None

    def problem(self) -> Problem | None:
        if self.qty is None and self.price is None and self.new_cl_ord_id is None:
            return E.MISSING_PARAM, "give qty, price or new_cl_ord_id"
        problem = _one_order_id(self.order_id, self.cl_ord_id)
        label = self.new_cl_ord_id  # (a `cl_ord_id` that names the order is not checked)
        if problem is None and label is not None and not label.isprintable():
            return _label_problem("new_cl_ord_id", label)
        return problem


_PARAMS = operator.attrgetter("params")  # a batch op's
_PROBLEM = operator.methodcaller("problem")


class BatchOp(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="method"):
    """One op of `order.batch`: `{"method": ..., "params": {...}}`, tagged by its method."""


class PlaceOp(BatchOp, frozen=True, tag="order.place"):
    params: PlaceParams


class CancelOp(BatchOp, frozen=True, tag="order.cancel"):
    params: CancelParams


class AmendOp(BatchOp, frozen=True, tag="order.amend"):
    params: AmendParams


class BatchParams(Params, frozen=True):
    ops: Annotated[
        tuple[PlaceOp | CancelOp | AmendOp, ...], Meta(min_length=1, max_length=BATCH_OPS_MAX)
    ]

    def problem(self) -> Problem | None:
        # Every op's, asked in C (`problem` is pure): the usual batch has none, and is told
        # so by one count instead of a Python loop over its ops.
        problems = [*map(_PROBLEM, map(_PARAMS, self.ops))]
        if problems.count(None) == len(problems):
            return None
        for index, problem in enumerate(problems):
            if problem is not None:
                return problem[0], f"ops[{index}]: {problem[1]}"
        return None  # (not reached: a problem was counted)


class Quote(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One symbol of a quote set; a side with qty "0" is pulled."""

    symbol: Symbol
    bid_px: DecimalText | None = None
    bid_qty: DecimalText | None = None
    ask_px: DecimalText | None = None
    ask_qty: DecimalText | None = None

    def problem(self) -> Problem | None:
        bid = self.bid_px is not None and self.bid_qty is not None
        if bid and self.ask_px is not None and self.ask_qty is not None:
            return None  # both sides given whole, the usual requote: no loop
        for side, px, qty in (
            ("bid", self.bid_px, self.bid_qty),
            ("ask", self.ask_px, self.ask_qty),
        ):
            if px is not None and qty is None:
                return E.MISSING_PARAM, f"{self.symbol}: {side}_px needs {side}_qty"
            if qty is not None and px is None and qty.strip("0.") != "":
                return E.MISSING_PARAM, f"{self.symbol}: {side}_qty needs {side}_px"
        return None


# An empty `quote.mass` changed nothing and was answered 200 (before session 29): a trader
# who meant it to pull the set (as some venues read it) was told it was done.
QUOTES_EMPTY = (
    f'quotes is empty: give 1 to {QUOTES_MAX} quotes (a side with qty "0" pulls it; to pull'
    " every quote of the set: orders.cancel_all {quote_set}); nothing was done"
)


class QuoteMassParams(Params, frozen=True):
    quote_set: Name
    quotes: Annotated[tuple[Quote, ...], Meta(max_length=QUOTES_MAX)]

    def problem(self) -> Problem | None:
        if not self.quote_set.isprintable():  # `_label_problem`'s test first, inline: no call
            problem = _label_problem("quote_set", self.quote_set)  # it names the quotes
            if problem is not None:
                return problem
        quotes = self.quotes
        if len(quotes) == 1:  # the usual requote: no symbol quoted twice, no set
            quote = quotes[0]
            if (
                quote.bid_px is not None
                and quote.bid_qty is not None
                and quote.ask_px is not None
                and quote.ask_qty is not None
            ):
                return None  # both sides given whole (`Quote.problem`'s first test): no call
            return quote.problem()
        if not quotes:
            return E.BAD_PARAM, QUOTES_EMPTY
        seen: set[str] = set()
        for quote in self.quotes:
            if quote.symbol in seen:
                return E.BAD_PARAM, f"{quote.symbol} is quoted twice"
            seen.add(quote.symbol)
            problem = quote.problem()
            if problem is not None:
                return problem
        return None


class CancelAllParams(Params, frozen=True):
    symbol: Symbol | None = None
    side: Side | None = None
    tag: Tag | None = None
    quote_set: Name | None = None


class OpenOrdersParams(Params, frozen=True):
    symbol: Symbol | None = None


class OrderStatusParams(Params, frozen=True):
    order_id: PositiveInt | None = None
    cl_ord_id: ClientOrderId | None = None

    def problem(self) -> Problem | None:
        return _one_order_id(self.order_id, self.cl_ord_id)


class FillsParams(Params, frozen=True):
    """A page of the account's fills: seqs above `since_seq` and below `before_seq`, oldest
    first, or newest first (a trader's "my last N fills", paged back with `before_seq`)."""

    limit: Annotated[int, Meta(ge=1, le=FILLS_LIMIT_MAX)]
    since_seq: Int53 | None = None
    before_seq: PositiveInt | None = None
    newest_first: bool = False

    def problem(self) -> Problem | None:
        if self.before_seq is not None and self.before_seq <= (self.since_seq or 0):
            return E.BAD_PARAM, "before_seq must be above since_seq"
        return None


class OrdersHistoryParams(Params, frozen=True):
    status: Literal["open", "closed", "all"] = "all"
    symbol: Symbol | None = None
    since_ts: Int53 | None = None  # µs, inclusive: orders accepted at or after
    until_ts: Int53 | None = None  # µs, exclusive: orders accepted before
    before_order_id: PositiveInt | None = None  # the page cursor: only older orders
    limit: Annotated[int, Meta(ge=1, le=ORDERS_HISTORY_LIMIT_MAX)] = 100

    def problem(self) -> Problem | None:
        since, until = self.since_ts, self.until_ts
        if since is not None and until is not None and since >= until:
            return E.BAD_PARAM, "since_ts must be below until_ts"
        return None


class BalancesParams(Params, frozen=True):
    pass


class InstrumentsParams(Params, frozen=True):
    pass


class ReservesParams(Params, frozen=True):
    pass


class BookSnapshotParams(Params, frozen=True):
    symbol: Symbol
    depth: Annotated[int, Meta(ge=1, le=BOOK_DEPTH_MAX)]


class SubscribeParams(Params, frozen=True):
    ch: Channel
    symbols: Symbols | None = None  # None: every symbol listed now
    depth: Annotated[int, Meta(ge=1, le=BOOK_DEPTH_MAX)] | None = None
    since_seq: Int53 | None = None
    interval: Interval | None = None  # candles only, and there required

    def problem(self) -> Problem | None:
        if self.ch == "candles" and self.interval is None:
            return E.MISSING_PARAM, "the candles channel needs an interval: 1m, 5m, 1h or 1d"
        if self.ch != "candles" and self.interval is not None:
            return E.BAD_PARAM, "interval applies to the candles channel only"
        return None  # symbols given for the account stream are ignored, as depth off book


class UnsubscribeParams(Params, frozen=True):
    ch: Channel
    symbols: Symbols | None = None  # None: every stream of the channel
    # As `subscribe`'s, to drop one stream of several: `depth` the book tier it rounds up
    # to (ignored on other channels), `interval` one candle interval; None: every one.
    depth: Annotated[int, Meta(ge=1, le=BOOK_DEPTH_MAX)] | None = None
    interval: Interval | None = None

    def problem(self) -> Problem | None:
        if self.ch != "candles" and self.interval is not None:
            return E.BAD_PARAM, "interval applies to the candles channel only"
        if self.ch == "account" and self.symbols is not None:
            # before session 35 any symbols, an unknown one too, stopped the whole stream
            return E.BAD_PARAM, _ACCOUNT_SYMBOLS
        return None


_ACCOUNT_SYMBOLS = (
    "symbols applies to the public channels: the account stream carries every symbol of the"
    " account, and unsubscribe stops it whole (send no symbols)"
)


class SubscriptionsParams(Params, frozen=True):
    pass


# ----------------------------------------------------------------- admin


class OperatorParams(Params, frozen=True, kw_only=True):
    """The params of an admin method: each may carry the operator's `cl_op_id`, under which
    the venue does the command at most once (a retry after a lost answer is answered, not
    done again): the engine decides (`engine.operations`), for `admin.issue_key` too
    (`IssueKey`, whose key the gateway stores: `gateway.dispatch`)."""

    cl_op_id: ClientOperationId | None = None

    def problem(self) -> Problem | None:
        return _label_problem("cl_op_id", self.cl_op_id)


class ListInstrumentParams(OperatorParams, frozen=True):
    """The fields of a `venue.toml` instrument entry (`core.config.InstrumentEntry`)."""

    symbol: Symbol
    kind: InstrumentKind
    base: AssetCode
    quote: AssetCode
    tick: DecimalText  # its decimals are the price decimals
    step: DecimalText
    min_qty: DecimalText
    min_notional: DecimalText
    band_pct: DecimalText
    reference_price: DecimalText
    maker_fee_bps: FeeBps = 0
    taker_fee_bps: FeeBps = 0
    maturity: datetime.date | None = None  # "YYYY-MM-DD", T-bills only: pays par at 00:00 UTC
    excluded_jurisdictions: Annotated[
        tuple[Jurisdiction, ...], Meta(max_length=JURISDICTIONS_MAX)
    ] = ()
    max_qty: DecimalText | None = None  # per-order cap, base asset's scale; absent or 0: none
    max_notional: DecimalText | None = None  # per-order cap, quote asset's scale; same

    def problem(self) -> Problem | None:
        if not all(map(is_jurisdiction, self.excluded_jurisdictions)):
            return E.BAD_PARAM, f"excluded_jurisdictions: {jurisdictions.PROBLEM}"
        return super().problem()


class SetOrderCapsParams(OperatorParams, frozen=True):
    """Both caps at once: an absent (or "0") cap is removed."""

    symbol: Symbol
    max_qty: DecimalText | None = None
    max_notional: DecimalText | None = None


class MatureParams(OperatorParams, frozen=True):
    symbol: Symbol
    # "YYYY-MM-DD": if given, the bill's maturity date, else refused, nothing journaled: a
    # symbol one digit off names another bill, paid par early for good (since session 36)
    maturity: datetime.date | None = None


class SetStatusParams(OperatorParams, frozen=True):
    symbol: Symbol
    status: InstrumentStatus


class SetReferencePriceParams(OperatorParams, frozen=True):
    symbol: Symbol
    price: DecimalText


class ListAssetParams(OperatorParams, frozen=True):
    code: AssetCode
    scale: Scale


class AttestReservesParams(OperatorParams, frozen=True):
    asset: AssetCode
    amount: DecimalText
    as_of: Int53  # µs


class DepositParams(OperatorParams, frozen=True):
    account: PositiveInt
    asset: AssetCode
    amount: DecimalText


class WithdrawParams(OperatorParams, frozen=True):
    account: PositiveInt
    asset: AssetCode
    amount: DecimalText


class PendingWithdrawalParams(OperatorParams, frozen=True):
    """A pending withdrawal by its id and, optionally, what the operator expects it to be:
    its `account`, `asset` and `amount` (at the asset's scale, so only with `asset`). One
    that differs is refused by the engine (BAD_PARAM, naming what it is), nothing done."""

    withdrawal_id: PositiveInt
    account: PositiveInt | None = None
    asset: AssetCode | None = None
    amount: DecimalText | None = None

    def problem(self) -> Problem | None:
        if self.amount is not None and self.asset is None:
            return E.MISSING_PARAM, "an expected amount needs its asset (its decimals)"
        return super().problem()


class ConfirmWithdrawalParams(PendingWithdrawalParams, frozen=True):
    pass


class VoidWithdrawalParams(PendingWithdrawalParams, frozen=True):
    pass


class WithdrawalsParams(Params, frozen=True):
    """The operator's read of pending withdrawals (a read: no `cl_op_id`), oldest first."""

    account: PositiveInt | None = None  # only this account's
    after_withdrawal_id: Int53 | None = None  # the page cursor: only later withdrawals
    limit: Annotated[int, Meta(ge=1, le=WITHDRAWALS_LIMIT_MAX)] = 100


class SweepParams(OperatorParams, frozen=True):
    """Take the venue's income out: `amount` of `asset` from its fee income (-2) or rounding
    (-3) account (`venue_account`; any other is refused by the engine, saying so) to the
    participant `account`."""

    venue_account: Annotated[int, Meta(ge=-INT_MAX, le=INT_MAX)]
    asset: AssetCode
    amount: DecimalText
    account: PositiveInt


class OpenAccountParams(OperatorParams, frozen=True):
    account: PositiveInt
    name: Name
    jurisdiction: Jurisdiction
    kyc_approved: bool

    def problem(self) -> Problem | None:
        if not is_jurisdiction(self.jurisdiction):
            return E.BAD_PARAM, jurisdictions.PROBLEM
        return super().problem()


class PayDividendParams(OperatorParams, frozen=True):
    """A cash dividend on the symbol's base asset, paid in its quote asset by `payer`."""

    symbol: Symbol
    payer: PositiveInt
    amount_per_share: DecimalText  # whole cash per whole share, up to 18 decimals


class SplitParams(OperatorParams, frozen=True):
    """A split of the symbol's base asset; `payer` pays cash in lieu of the fractions below
    the symbol's step, at its reference price (needed only when there are some)."""

    symbol: Symbol
    ratio: Annotated[str, Meta(pattern=RATIO_PATTERN)]  # "new:old", e.g. "3:2"
    payer: PositiveInt | None = None


class IssueKeyParams(OperatorParams, frozen=True):
    account: PositiveInt
    scopes: Annotated[tuple[Scope, ...], Meta(min_length=1, max_length=3)]

    def problem(self) -> Problem | None:
        if len(set(self.scopes)) != len(self.scopes):
            return E.BAD_PARAM, "scopes repeat"
        return super().problem()


class RevokeKeyParams(OperatorParams, frozen=True):
    """An API key issued by `admin.issue_key`, to be accepted no more."""

    api_key: Annotated[str, Meta(min_length=1, max_length=KEY_LENGTH_MAX)]


METHODS: dict[str, type[Params]] = {
    "session.logon": LogonParams,
    "session.logout": LogoutParams,
    "session.status": SessionStatusParams,
    "ping": PingParams,
    "time": TimeParams,
    "session.cod": CodParams,
    "orders.cancel_after": CancelAfterParams,
    "order.place": PlaceParams,
    "order.cancel": CancelParams,
    "order.amend": AmendParams,
    "order.batch": BatchParams,
    "quote.mass": QuoteMassParams,
    "orders.cancel_all": CancelAllParams,
    "orders.open": OpenOrdersParams,
    "order.status": OrderStatusParams,
    "fills": FillsParams,
    "orders.history": OrdersHistoryParams,
    "balances": BalancesParams,
    "instruments": InstrumentsParams,
    "book.snapshot": BookSnapshotParams,
    "reserves": ReservesParams,
    "subscribe": SubscribeParams,
    "unsubscribe": UnsubscribeParams,
    "subscriptions": SubscriptionsParams,
    "admin.list_instrument": ListInstrumentParams,
    "admin.set_status": SetStatusParams,
    "admin.set_reference_price": SetReferencePriceParams,
    "admin.set_order_caps": SetOrderCapsParams,
    "admin.mature": MatureParams,
    "admin.list_asset": ListAssetParams,
    "admin.attest_reserves": AttestReservesParams,
    "admin.deposit": DepositParams,
    "admin.withdraw": WithdrawParams,
    "admin.confirm_withdrawal": ConfirmWithdrawalParams,
    "admin.void_withdrawal": VoidWithdrawalParams,
    "admin.withdrawals": WithdrawalsParams,
    "admin.open_account": OpenAccountParams,
    "admin.issue_key": IssueKeyParams,
    "admin.revoke_key": RevokeKeyParams,
    "admin.pay_dividend": PayDividendParams,
    "admin.split": SplitParams,
    "admin.sweep": SweepParams,
}
"""Every method of the protocol and the struct its params decode into."""


# ----------------------------------------------------------------- decoding


class Request(msgspec.Struct, frozen=True):
    """A well-formed request: `params` is an instance of `METHODS[method]`."""

    id: int | str
    method: str
    params: Params


class WireError(msgspec.Struct, frozen=True):
    """Why a request cannot be served: the error response's id (None if unknown), code, msg,
    and for a refusal on the numbers (a bill's price out of range) the error's `data`."""

    id: int | str | None
    code: ErrorCode
    message: str
    data: Any = None


class _Envelope(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: RequestId
    method: str
    params: msgspec.Raw = msgspec.Raw(b"{}")


_envelope_decoder = msgspec.json.Decoder(_Envelope)
_params_decoders = {method: msgspec.json.Decoder(kind) for method, kind in METHODS.items()}


def _decimal_fields(kinds: Iterable[type[msgspec.Struct]]) -> frozenset[str]:
    """The names of the decimal-text fields of `kinds` and the structs they hold."""
    names: set[str] = set()
    seen: set[type] = set()
    stack = list(kinds)
    while stack:
        kind = stack.pop()
        if kind in seen:
            continue
        seen.add(kind)
        for name, hint in typing.get_type_hints(kind, include_extras=True).items():
            if hint in (DecimalText, DecimalText | None):
                names.add(name)
            stack += [
                member
                for member in _types_in(hint)
                if isinstance(member, type) and issubclass(member, msgspec.Struct)
            ]
    return frozenset(names)


def _types_in(hint: Any) -> Iterator[Any]:
    """`hint` and every type inside it (`tuple[Quote, ...]`, `Annotated[...]`, unions)."""
    yield hint
    for argument in typing.get_args(hint):
        yield from _types_in(argument)


# every field that holds a decimal text, in any request: a JSON number there is said so
DECIMAL_FIELDS = _decimal_fields(METHODS.values())

_id_decoder = msgspec.json.Decoder(RequestId)


def _request_struct(method: str, kind: type[Params]) -> type[msgspec.Struct]:
    """`{"id": ..., "method": <method>, "params": {...}}` as one struct, tagged by method."""
    try:
        kind()  # params that may be left out: absent reads as {}, as in `_Envelope`
    except TypeError:
        params: tuple[str, Any] | tuple[str, Any, Any] = ("params", kind)
    else:
        params = ("params", kind, msgspec.field(default_factory=kind))
    return msgspec.defstruct(
        f"_{kind.__name__}Request",
        [("id", RequestId), params],
        tag_field="method",
        tag=method,
        frozen=True,
        forbid_unknown_fields=True,
    )


# ----------------------------------------------------------------- the hot methods' twins

# msgspec checks a `pattern` with one regular-expression call per field (~0.5 µs each; a batch
# of 20 places has 40 decimal texts). The order-entry methods decode instead into twins whose
# decimal fields are plain bounded strings, checked here against the texts already seen
# valid, and then become the real params. A twin that does not decode, or that holds a text
# which is not a plain decimal, goes the slow way (`decode_envelope`, `decode_params`, on the
# real structs), so every error is what it was.
_PlainDecimal = Annotated[str, Meta(max_length=DECIMAL_LENGTH_MAX)]
_DECIMAL = re.compile(DECIMAL_PATTERN)
DECIMALS_SEEN_MAX = 4_096  # texts known valid: a book's prices and sizes, x10 (as the units cache)
# None (an absent field) is kept among them, so that one `issuperset` in C answers for a
# request whose texts were all seen: the loop below runs only for a text not seen yet.
_decimals_seen: set[str | None] = {None}


def _plain_decimals(*texts: str | None) -> bool:
    """Each text is absent or a plain decimal, as `DECIMAL_PATTERN` says (msgspec `search`es
    it; anchored, that is a `match`)."""
    if _decimals_seen.issuperset(texts):
        return True
    for text in texts:
        if text is None or text in _decimals_seen:
            continue
        if _DECIMAL.match(text) is None:
            return False
        if len(_decimals_seen) >= DECIMALS_SEEN_MAX:
            _decimals_seen.clear()
            _decimals_seen.add(None)
        _decimals_seen.add(text)
    return True


def _twin(kind: type[msgspec.Struct]) -> tuple[Any, Callable[[Any], Any]]:
    """`kind` with plain strings for its decimal fields, and the function that turns one of
    it into a `kind` (None: a decimal text is not plain)."""
    hints = typing.get_type_hints(kind, include_extras=True)
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    decimals = []
    for info in msgspec.structs.fields(kind):
        hint = hints[info.name]
        if hint == DecimalText or hint == DecimalText | None:
            decimals.append(info.name)
            hint = _PlainDecimal if hint == DecimalText else _PlainDecimal | None
        if info.default is not msgspec.NODEFAULT:
            fields.append((info.name, hint, info.default))
        else:
            assert info.default_factory is msgspec.NODEFAULT, f"{kind.__name__}: a factory"
            fields.append((info.name, hint))
    assert len(decimals) >= 2, f"{kind.__name__}: attrgetter of one name is no tuple"
    plain = msgspec.defstruct(
        f"_Plain{kind.__name__}", fields, frozen=True, forbid_unknown_fields=True
    )
    texts = operator.attrgetter(*decimals)
    astuple = msgspec.structs.astuple

    def real(params: Any) -> Any:
        decimals = texts(params)  # all seen before, the usual: one `issuperset` in C, no call
        if _decimals_seen.issuperset(decimals) or _plain_decimals(*decimals):
            return kind(*astuple(params))
        return None

    return plain, real


_astuple = msgspec.structs.astuple
_PlainPlaceParams: Any
_PlainAmendParams: Any
_PlainQuote: Any
_PlainPlaceParams, _real_place = _twin(PlaceParams)
_PlainAmendParams, _real_amend = _twin(AmendParams)
_PlainQuote, _real_quote = _twin(Quote)
_PlainPlaceOp: Any = msgspec.defstruct(
    "_PlainPlaceOp", [("params", _PlainPlaceParams)], bases=(BatchOp,), tag="order.place"
)
_PlainAmendOp: Any = msgspec.defstruct(
    "_PlainAmendOp", [("params", _PlainAmendParams)], bases=(BatchOp,), tag="order.amend"
)
_PlainBatchParams: Any = msgspec.defstruct(
    "_PlainBatchParams",
    [
        (
            "ops",
            Annotated[
                tuple[Union[_PlainPlaceOp, CancelOp, _PlainAmendOp], ...],  # noqa: UP007
                Meta(min_length=1, max_length=BATCH_OPS_MAX),
            ],
        )
    ],
    frozen=True,
    forbid_unknown_fields=True,
)
_PlainQuoteMassParams: Any = msgspec.defstruct(
    "_PlainQuoteMassParams",
    [
        ("quote_set", Name),
        ("quotes", Annotated[tuple[_PlainQuote, ...], Meta(max_length=QUOTES_MAX)]),
    ],
    frozen=True,
    forbid_unknown_fields=True,
)
assert [f.name for f in msgspec.structs.fields(QuoteMassParams)] == ["quote_set", "quotes"]
assert [f.name for f in msgspec.structs.fields(BatchParams)] == ["ops"]
assert msgspec.structs.fields(Quote)[0].name == "symbol"  # `_real_quote_mass` reads on it


# A place's decimal texts (the ones `_twin` made plain strings in `_PlainPlaceParams`)
_PLACE_TEXTS = operator.attrgetter("price", "qty", "quote_qty")
assert [
    name
    for name, hint in typing.get_type_hints(PlaceParams, include_extras=True).items()
    if hint in (DecimalText, DecimalText | None)
] == ["price", "qty", "quote_qty"]


def _real_batch(params: Any) -> BatchParams | None:
    plain_ops = params.ops
    if _ONLY_PLACES.issuperset(map(type, plain_ops)):  # the usual batch: all made in C
        plain_places = [*map(_PARAMS, plain_ops)]
        # every op's texts seen before, the usual: one `issuperset` for the whole batch,
        # and each op's real params made without `_real_place`'s call (~20 bytecodes an op)
        if _decimals_seen.issuperset(chain.from_iterable(map(_PLACE_TEXTS, plain_places))):
            places = starmap(PlaceParams, map(_astuple, plain_places))
            return BatchParams(tuple(map(PlaceOp, places)))
        checked = [*map(_real_place, plain_places)]
        if None in checked:
            return None
        return BatchParams(tuple(map(PlaceOp, checked)))
    ops: list[PlaceOp | CancelOp | AmendOp] = []
    for op in params.ops:
        kind = type(op)
        if kind is _PlainPlaceOp:  # the usual op first
            place = _real_place(op.params)
            if place is None:
                return None
            ops.append(PlaceOp(place))
        elif kind is CancelOp:
            ops.append(op)
        else:
            amend = _real_amend(op.params)
            if amend is None:
                return None
            ops.append(AmendOp(amend))
    return BatchParams(tuple(ops))


def _real_quote_mass(params: Any) -> QuoteMassParams | None:
    plain_quotes = params.quotes
    if len(plain_quotes) == 1:  # the usual requote: `_real_quote` of it, without the call
        plain = plain_quotes[0]
        # Its symbol and four decimal texts, in one tuple made in C that `Quote` is made
        # from too (an `attrgetter` of the texts cost ~500 instructions more a request).
        fields = _astuple(plain)
        if _decimals_seen.issuperset(fields[1:]):
            return QuoteMassParams(params.quote_set, (Quote(*fields),))
    quotes = []
    for plain in params.quotes:
        quote = _real_quote(plain)
        if quote is None:
            return None
        quotes.append(quote)
    return QuoteMassParams(params.quote_set, tuple(quotes))


_ONLY_PLACES = frozenset({_PlainPlaceOp})  # a batch of places alone: `_real_batch`


_PLAIN_OF: dict[type[Params], Any] = {
    PlaceParams: _PlainPlaceParams,
    BatchParams: _PlainBatchParams,
    QuoteMassParams: _PlainQuoteMassParams,
}
_REAL_OF: dict[Any, Callable[[Any], Params | None]] = {
    _PlainPlaceParams: _real_place,
    _PlainBatchParams: _real_batch,
    _PlainQuoteMassParams: _real_quote_mass,
}

_REQUEST_STRUCTS = {
    method: _request_struct(method, _PLAIN_OF.get(kind, kind)) for method, kind in METHODS.items()
}
# One decode for a whole well-formed request: envelope and params at once, no Raw copy.
_request_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(
    Union[tuple(_REQUEST_STRUCTS.values())]  # noqa: UP007
)
# Each request struct's method (a look-up, not its config), and for a twin's the function
# that makes its real params (else None): one look-up per request for both.
_DECODED_AS: dict[type, tuple[str, Callable[[Any], Params | None] | None]] = {
    struct: (method, _REAL_OF.get(_PLAIN_OF.get(METHODS[method])))
    for method, struct in _REQUEST_STRUCTS.items()
}
_RAW_UNUSED = msgspec.Raw(b"{}")  # the params of an envelope whose params are decoded already


class _IdOnly(msgspec.Struct, frozen=True):
    id: msgspec.Raw = msgspec.Raw(b"null")  # null is no valid id


_id_only_decoder = msgspec.json.Decoder(_IdOnly)
# `{"id": <integer or short string>` at the very start of a frame
_LEADING_ID = re.compile(rb'\s*\{\s*"id"\s*:\s*([0-9]{1,16}|"[^"\\]{1,%d}")\s*[,}]' % ID_LENGTH_MAX)
TOO_DEEP = "the frame nests arrays or objects too deeply to read"
LONE_SURROGATE = (
    "JSON is malformed: a \\uD800-\\uDBFF escape must be followed by a \\uDC00-\\uDFFF"
    " escape (a surrogate pair)"
)
# A high surrogate escape without its low half: msgspec calls such a frame truncated. (An
# escape is a backslash after an even run of them: `\\ud800` is a backslash and text.)
_LONE_HIGH_SURROGATE = re.compile(
    r"(?<!\\)(?:\\\\)*\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])"
)
LONE_LOW_SURROGATE = (
    "JSON is malformed: a \\uDC00-\\uDFFF escape must follow a \\uD800-\\uDBFF escape"
    " (a surrogate pair)"
)
_SURROGATE = re.compile("[\ud800-\udfff]")  # in a string read leniently: an unpaired half
_TRUNCATED = "Input data was truncated"  # msgspec's words
# a frame of nothing but whitespace, or none: msgspec calls it truncated (before session 26,
# its words were the answer)
EMPTY_FRAME = "a request is one JSON object; this frame is empty"
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # perhaps half of an escaped backslash
_SURROGATE_ESCAPE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")
_HIGH_SURROGATE_LAST = "\udbff"
NOT_UTF8 = "a frame holds UTF-8 JSON; this one is not UTF-8"
# RFC 8259 8.1: not in JSON sent over a network; but some editors and shells write one (a
# Windows editor's UTF-8, PowerShell's Out-File), and msgspec calls it an invalid character.
BYTE_ORDER_MARK = (
    "JSON is malformed: it starts with a byte order mark (U+FEFF; in UTF-8 the bytes EF BB BF),"
    " which JSON sent over a network has not (RFC 8259 8.1): send the JSON object alone"
)
# Said of a refused frame answered with `id` null where its JSON, read leniently, gives none.
NO_ID = "no valid id could be read from it"
_INVALID_AT = re.compile(r"JSON is malformed: invalid character \(byte ([0-9]+)\)")  # msgspec's
# Words where a JSON value belongs that are not JSON, as some encoders write them: numbers
# that are not finite (Python's `json` writes and reads `NaN` and `Infinity`; C's printf and
# numpy write `nan`, `inf`, `-inf`), and other languages' literals (Python's `None`, `True`;
# JavaScript's `undefined`). Any case, a sign before a number's. Said as such, not as msgspec's
# "invalid character", and read leniently (as `null`) for the request's id.
NOT_FINITE_WORDS = frozenset({"nan", "inf", "infinity"})
NOT_JSON_LITERALS = frozenset({"none", "true", "false", "null", "undefined", "nil"})
_WORD_HINT = re.compile(rb"(?i)nan|inf|none|true|false|null|undefined|nil")  # worth a look
_WORD = re.compile(r"[-+]?[A-Za-z]{1,16}")  # a word where a value starts: 16 > "undefined"
_VALUE_BEFORE = frozenset(":,[ \t\r\n")  # what may come before a value (or nothing)
# A frame's not-JSON words read as `null` one at a time, each a new reading of the frame (of
# at most MESSAGE_BYTES_MAX bytes): the bound of a refused frame's work. With more, its id is
# not read (the msg says so). 4: a 60 KB frame with its words at the end costs ~0.35 ms to
# answer (each reading ~70 µs); 16 cost ~1.3 ms, a refused frame ten times a valid one's.
WORDS_READ_AS_NULL_MAX = 4


def oversize(frame: bytes | str, size_max: int = MESSAGE_BYTES_MAX) -> WireError | None:
    """`MESSAGE_TOO_BIG` if the frame is longer than `size_max` bytes (UTF-8), else None."""
    size = len(frame)
    if isinstance(frame, str) and size <= size_max < 4 * size:  # UTF-8: 1-4 bytes a character
        size = len(frame.encode())
    if size <= size_max:
        return None
    return WireError(None, E.MESSAGE_TOO_BIG, f"frames are limited to {size_max} bytes")


class Envelope(msgspec.Struct, frozen=True):
    """A request whose id and method are good; its params are still raw JSON."""

    id: int | str
    method: str
    params: msgspec.Raw


def decode_request(frame: bytes | str, size_max: int = MESSAGE_BYTES_MAX) -> Request | WireError:
    """Decode one request frame strictly, or say what is wrong with it."""
    return decode(frame, size_max)[1]


def decode(
    frame: bytes | str, size_max: int = MESSAGE_BYTES_MAX
) -> tuple[Envelope | Request | WireError, Request | WireError]:
    """The frame's envelope (its id and method, or what is wrong with them) and its request
    (or what is wrong with its params): the server checks who may call the method between
    the two. A well-formed frame takes one decode of a tagged union (`_request_decoder`);
    any other is decoded again in two steps, which say exactly what is wrong."""
    if 4 * len(frame) > size_max:  # a shorter frame fits, even at 4 UTF-8 bytes a character
        too_big = oversize(frame, size_max)
        if too_big is not None:
            return too_big, too_big
    if isinstance(frame, bytes) and not _is_utf8(frame):  # a binary frame: text's rule holds
        invalid = _not_utf8(frame)
        return invalid, invalid
    try:
        decoded = _request_decoder.decode(frame)
    except (msgspec.DecodeError, RecursionError):  # ValidationError is a DecodeError
        return _decode_slowly(frame, size_max)
    method, real = _DECODED_AS[type(decoded)]
    params: Params = decoded.params
    if real is not None:  # a twin: its decimal texts checked, the real params made
        checked = real(params)
        if checked is None:  # a decimal text that is not plain: the slow way says where
            return _decode_slowly(frame, size_max)
        params = checked
    problem = params.problem()
    if problem is not None:
        return Envelope(decoded.id, method, _RAW_UNUSED), WireError(decoded.id, *problem)
    request = Request(decoded.id, method, params)
    return request, request


def _decode_slowly(
    frame: bytes | str, size_max: int
) -> tuple[Envelope | Request | WireError, Request | WireError]:
    """`decode` in two steps (envelope, then params), which say exactly what is wrong."""
    envelope = decode_envelope(frame, size_max)
    if isinstance(envelope, WireError):
        return envelope, envelope
    return envelope, decode_params(envelope)


def decode_envelope(frame: bytes | str, size_max: int = MESSAGE_BYTES_MAX) -> Envelope | WireError:
    """The id and a known method of a frame, or what is wrong with them. Never raises: a
    frame nested too deep for the decoder is `BAD_JSON` like any other unreadable frame."""
    too_big = oversize(frame, size_max)
    if too_big is not None:
        return too_big
    if isinstance(frame, bytes) and not _is_utf8(frame):  # a binary frame: text's rule holds
        return _not_utf8(frame)
    try:
        envelope = _envelope_decoder.decode(frame)
    except msgspec.ValidationError as failure:
        text = str(failure)
        if text.startswith("Expected `object`") and " - at `" not in text:  # not an object
            return WireError(None, E.BAD_JSON, f"a request is one JSON object: {failure}")
        return WireError(_salvage_id(frame), _code_of(failure), _readable(str(failure)))
    except msgspec.DecodeError as failure:
        if str(failure) == _TRUNCATED and not frame.strip():  # msgspec's words for nothing
            return WireError(None, E.BAD_JSON, EMPTY_FRAME)
        return _unreadable(failure, frame)
    except RecursionError:  # msgspec's guard against nesting that would exhaust the stack
        return WireError(_salvage_id(frame), E.BAD_JSON, TOO_DEEP)
    if envelope.method not in _params_decoders:
        return WireError(envelope.id, E.UNKNOWN_METHOD, f"unknown method {envelope.method!r}")
    return Envelope(envelope.id, envelope.method, envelope.params)


def _not_utf8(frame: bytes) -> WireError:
    """`BAD_JSON` for a binary frame that is not UTF-8, with the request's id where the frame
    is JSON once each bad byte is read as a character of its own (`surrogateescape`): such a
    character breaks JSON anywhere but in a string, so the frame's shape is the one sent,
    and an id that holds one is no valid id."""
    request_id = _lenient_id(_read_leniently(frame.decode(errors="surrogateescape")))
    return WireError(
        request_id, E.BAD_JSON, NOT_UTF8 if request_id is not None else _no_id(NOT_UTF8)
    )


def _unreadable(failure: msgspec.DecodeError, frame: bytes | str) -> WireError:
    """`BAD_JSON` for a frame msgspec cannot read. One that holds a surrogate escape, perhaps
    an unpaired one, or where msgspec stopped at `NaN` or `Infinity` (Python's `json` reads
    all three), is read again leniently, for what and where the problem is and for the
    request's id, so that the client learns which request failed. Only this failure path
    pays for the second reading; other unreadable frames skip it."""
    if _after_a_byte_order_mark(frame) is not None:
        return _led_by_a_byte_order_mark(frame)
    words = str(failure)
    constant = _constant_problem(words, frame)
    if constant is None and not _about_a_surrogate(frame):
        return WireError(None, E.BAD_JSON, words)
    lenient = _read_leniently(frame)
    request_id = _lenient_id(lenient)
    if constant is None:
        return WireError(request_id, E.BAD_JSON, _surrogate_problem(words, frame, lenient))
    return WireError(
        request_id, E.BAD_JSON, constant if request_id is not None else _no_id(constant)
    )


def _lenient_id(lenient: Any) -> int | str | None:
    """The valid id of a frame as `_read_leniently` reads it, or None."""
    candidate = lenient.get("id") if type(lenient) is dict else None
    if type(candidate) is int or type(candidate) is str:  # as JSON again: `_valid_id`'s rules
        return _valid_id(json.dumps(candidate).encode())
    return None


def _no_id(problem: str) -> str:
    """`problem`, saying why its answer's id is null."""
    return f"{problem}; {NO_ID}"


def json_problem(failure: msgspec.DecodeError, text: str | bytes) -> str:
    """What is wrong with JSON msgspec could not read: its own words, except for `NaN` or
    `Infinity`, which they call an invalid character, and an unpaired surrogate escape,
    which they word badly (a lone high half in a whole frame reads as "truncated") and do
    not place: that is said, with where it is (`- at `params.tag``)."""
    if _after_a_byte_order_mark(text) is not None:
        return BYTE_ORDER_MARK
    words = str(failure)
    constant = _constant_problem(words, text)
    if constant is not None:
        return constant
    if not _about_a_surrogate(text):
        return words
    return _surrogate_problem(words, text, _read_leniently(text))


def _after_a_byte_order_mark(text: str | bytes) -> str | bytes | None:
    """What follows the byte order mark that `text` starts with; None if it has none."""
    if isinstance(text, str):
        return text[1:] if text.startswith("\ufeff") else None
    return text[3:] if text.startswith(b"\xef\xbb\xbf") else None


def _led_by_a_byte_order_mark(frame: str | bytes) -> WireError:
    """`BAD_JSON` naming the mark, with the id of the request that follows it, if any."""
    after = _after_a_byte_order_mark(frame)
    assert after is not None, "a frame led by a byte order mark"
    request_id = _lenient_id(_read_leniently(after))
    problem = BYTE_ORDER_MARK if request_id is not None else _no_id(BYTE_ORDER_MARK)
    return WireError(request_id, E.BAD_JSON, problem)


def _constant_problem(words: str, text: str | bytes) -> str | None:
    """What is wrong when msgspec's `words` put an invalid character in or just past a word
    that is not JSON (`NaN`, `nan`, `-inf`, `Infinity`, `None`, `True`, `undefined`:
    `_word_at`); None for anything else."""
    invalid = _INVALID_AT.fullmatch(words)
    if invalid is None:
        return None
    data = text.encode(errors="surrogatepass") if isinstance(text, str) else text
    at = int(invalid.group(1))
    # msgspec names a byte of the word, or the one past the 4 it compared with `null`
    low = max(at - 17, 0)
    window = data[low : at + 17].decode("ascii", "replace")
    for start in range(at - low, -1, -1):
        if low + start and chr(data[low + start - 1]) not in _VALUE_BEFORE:
            continue
        word = _WORD.match(window, start)
        found = _word_at(window, start)
        if word is not None and found is not None and at - low <= max(word.end(), start + 4):
            return (
                f"JSON is malformed: {found} (byte {low + start})"
                + _WORD_TAIL[found.endswith("number")]
            )
    return None


_WORD_TAIL = ("; JSON's literals are true, false and null", "; JSON numbers are finite")


def _word_at(text: str, at: int) -> str | None:
    """`"<word> is not a JSON number"` or `"<word> is not JSON"` for a word of `text` at `at`
    that is not JSON (`NOT_FINITE_WORDS`, `NOT_JSON_LITERALS` in another case than JSON's),
    else None."""
    found = _WORD.match(text, at)
    if found is None:
        return None
    word = found.group()
    bare = word.lstrip("+-").lower()
    if bare in NOT_FINITE_WORDS:
        return f"{word} is not a JSON number"
    if bare in NOT_JSON_LITERALS and word not in ("true", "false", "null"):  # ("-true": not)
        return None if word[0] in "+-" else f"{word} is not JSON"
    return None


def _about_a_surrogate(text: str | bytes) -> bool:
    """Whether the JSON holds a surrogate escape (`\\uD800`-`\\uDFFF`): msgspec's words for
    an unpaired one vary with what follows it ("truncated", "invalid utf-16 surrogate pair",
    "unexpected end of hex escape", ...), so the text is what tells."""
    if isinstance(text, bytes):
        return _SURROGATE_ESCAPE_BYTES.search(text) is not None
    return _SURROGATE_ESCAPE.search(text) is not None


def _surrogate_problem(words: str, text: str | bytes, lenient: Any) -> str:
    """What is wrong with JSON that holds a surrogate escape and that msgspec's `words`
    refuse: an unpaired escape, placed by the lenient reading; else (not read leniently
    either: cut short too, or wrong otherwise) msgspec's words, but for a lone high half
    where they say "truncated"."""
    found = _surrogate_at(lenient)
    if found is not None:
        high, place = found
        return f"{LONE_SURROGATE if high else LONE_LOW_SURROGATE} - {place}"
    if words == _TRUNCATED:
        raw = text.decode(errors="replace") if isinstance(text, bytes) else text
        if _LONE_HIGH_SURROGATE.search(raw):
            return LONE_SURROGATE
    return words


def _read_leniently(text: str | bytes) -> Any:
    """The JSON as Python's `json` reads it (`NaN` and `Infinity` too), each other word that
    is not JSON (`nan`, `-inf`, `None`: `_word_at`) read as `null`; None if it cannot be read
    so (or nests too deep, or has more than `WORDS_READ_AS_NULL_MAX` such words)."""
    for _ in range(WORDS_READ_AS_NULL_MAX + 1):
        try:
            return json.loads(text)
        except json.JSONDecodeError as failure:  # `doc`: the text as a str, `pos` in it
            at, doc = failure.pos, failure.doc
            word = _WORD.match(doc, at)
            if word is None or _word_at(doc, at) is None:
                return None
            text = doc[:at] + "null" + doc[word.end() :]
        except (ValueError, RecursionError):  # UnicodeDecodeError, too deep
            return None
    return None


def _surrogate_at(value: Any) -> tuple[bool, str] | None:
    """For the first string (or key) of `value`, a lenient reading, that holds an unpaired
    surrogate: whether that is a high one, and where it is (`at `params.ops[0].params.tag``,
    `in a key of `params``); None if there is none among the first `SURROGATE_SEARCH_MAX`.
    Without recursion: the reading may nest as deep as the interpreter allows."""
    if type(value) is str:
        high = _unpaired_high(value)
        return None if high is None else (high, "at `$`")
    if type(value) is not dict and type(value) is not list:
        return None
    looked = 0
    stack: list[tuple[Iterator[tuple[Any, Any]], tuple[str | int, ...]]]
    stack = [(_members(value), ())]  # each container entered: its members left, its path
    while stack:
        members, path = stack[-1]
        for key, member in members:  # in the frame's order: a container is entered at once
            looked += 1
            if looked > SURROGATE_SEARCH_MAX:
                return None
            if type(key) is str:
                high = _unpaired_high(key)
                if high is not None:
                    return high, f"in a key of `{_path(path)}`"
            kind = type(member)
            if kind is str:
                high = _unpaired_high(member)
                if high is not None:
                    return high, f"at `{_path((*path, key))}`"
            elif kind is dict or kind is list:
                stack.append((_members(member), (*path, key)))
                break
        else:
            stack.pop()
    return None


def _unpaired_high(text: str) -> bool | None:
    """Whether the first unpaired surrogate of `text` is a high one; None if it has none. (A
    surrogate is not printable: most texts are told apart by one call in C.)"""
    if text.isprintable():
        return None
    match = _SURROGATE.search(text)
    return None if match is None else match.group() <= _HIGH_SURROGATE_LAST


def _members(container: dict[str, Any] | list[Any]) -> Iterator[tuple[Any, Any]]:
    return iter(container.items()) if type(container) is dict else enumerate(container)


def _path(path: tuple[str | int, ...]) -> str:
    """`params.ops[0].params.tag`, as msgspec words where a value is (`$`: the whole)."""
    text = "".join(f"[{step}]" if type(step) is int else f".{step}" for step in path)
    return text.removeprefix(".") or "$"


def decode_params(envelope: Envelope) -> Request | WireError:
    """The request with its params decoded strictly and checked, or what is wrong with them."""
    try:
        params: Params = _params_decoders[envelope.method].decode(envelope.params)
    except msgspec.ValidationError as failure:
        said = _in_params(failure, envelope.params, envelope.method)
        return WireError(envelope.id, _code_of(failure), said)
    except RecursionError:  # unreachable after the envelope's decode, kept as a guard
        return WireError(envelope.id, E.BAD_JSON, TOO_DEEP)
    problem = params.problem()
    if problem is not None:
        return WireError(envelope.id, problem[0], problem[1])
    return Request(envelope.id, envelope.method, params)


def _is_utf8(frame: bytes) -> bool:
    try:
        frame.decode()
    except UnicodeDecodeError:
        return False
    return True


def _code_of(failure: msgspec.ValidationError) -> ErrorCode:
    missing = str(failure).startswith("Object missing required field")
    return E.MISSING_PARAM if missing else E.BAD_PARAM


def _in_params(failure: msgspec.ValidationError, params: bytes | msgspec.Raw, method: str) -> str:
    text = str(failure)
    said = _signed_decimal_words(text, params, method) or _decimal_number_words(text)
    said = said or _nanoseconds_words(text, params)
    if said is not None:
        return said
    text = _readable(enum_choices(str(failure), _params_decoders[method].type))
    return text.replace("`$", "`params") if "- at `$" in text else f"{text} - at `params`"


# msgspec's words for a value outside an enum or a Literal, at a path it writes from `$`
_INVALID_ENUM = re.compile(r"Invalid enum value (.*) - at `\$(.*)`", re.DOTALL)
# of the error's ERROR_TEXT_CHARS_MAX, what the bad value may take: the values the field
# takes and the path after it still fit (a 60 KB value left no room for them)
ENUM_VALUE_QUOTED_CHARS_MAX = ERROR_TEXT_CHARS_MAX // 2
# (params type, path) pairs whose values are remembered: the enum fields of every method's
# and every REST route's params number about a hundred; a bound all the same
ENUM_PATHS_CACHED_MAX = 1_024


def enum_choices(text: str, root: Any) -> str:
    """msgspec's `Invalid enum value 'BUY' - at `$.side`` for a value of `root` (a params
    type), with the values that field takes: `Invalid enum value 'BUY', not one of 'buy',
    'sell' - at `$.side``; any other text as it is. Before session 28 the answer named no
    value, so `BUY`, `GTC` or an order history's `filled` left the trader to guess."""
    found = _INVALID_ENUM.fullmatch(text)
    if found is None:
        return text
    listed = _values_listed(root, _ANY_INDEX.sub("[0]", found.group(2)))
    if not listed:
        return text
    value = shortened(found.group(1), ENUM_VALUE_QUOTED_CHARS_MAX)
    return f"Invalid enum value {value}, not one of {listed} - at `${found.group(2)}`"


_ANY_INDEX = re.compile(r"\[[0-9]+\]")  # every op of a batch has the same fields as its first


@functools.lru_cache(maxsize=ENUM_PATHS_CACHED_MAX)
def _values_listed(root: Any, path: str) -> str:
    """`'buy', 'sell'`: the values the enum at `path` of `root` takes ("" if none), remembered
    by the path with every index 0: `type_info` of a params type takes 100 to 300 µs, 20 to
    80 times what the refusal took without it, which a client repeating a bad enum would
    cost the loop each time (session 28's review)."""
    values = _values_at(_type_info(root), _PATH_STEP.findall(path))
    return ", ".join(repr(value) for value in values)


@functools.lru_cache(maxsize=ENUM_PATHS_CACHED_MAX)
def _type_info(root: Any) -> msgspec.inspect.Type:
    """msgspec's description of a params type, made once per type (another field's bad enum
    of the same type walks it again, which costs a few µs, not its making's 100 to 300)."""
    return msgspec.inspect.type_info(root)


def _values_at(info: msgspec.inspect.Type, steps: list[tuple[str, str]]) -> tuple[Any, ...]:
    """The values the enum or Literal at `steps` (`_PATH_STEP`'s) of `info` takes; () if
    the path leads elsewhere. Through a union (an `order.batch` op, one struct per method)
    the path is followed in each member; the values are said only if those agree."""
    if isinstance(info, msgspec.inspect.UnionType):
        found = {_values_at(member, steps) for member in info.types} - {()}
        return found.pop() if len(found) == 1 else ()
    if not steps:
        if isinstance(info, msgspec.inspect.EnumType):
            return tuple(member.value for member in info.cls)
        if isinstance(info, msgspec.inspect.LiteralType):
            return tuple(info.values)
        return ()
    (key, index), rest = steps[0], steps[1:]
    if key and isinstance(info, msgspec.inspect.StructType):
        field = next((f for f in info.fields if f.encode_name == key), None)
        return () if field is None else _values_at(field.type, rest)
    if index and isinstance(info, msgspec.inspect.CollectionType):
        return _values_at(info.item_type, rest)
    return ()


_DECIMAL_MISMATCH = f"Expected `str` matching regex {DECIMAL_PATTERN!r}"  # msgspec's words
_SIGNED_DECIMAL = re.compile(r"([-+])[0-9]+(\.[0-9]+)?\Z")
_PATH_STEP = re.compile(r"\.([^.\[`]+)|\[([0-9]+)\]")  # `.qty`, `[0]` of msgspec's `$.ops[0]`


def _signed_decimal_words(text: str, params: bytes | msgspec.Raw, method: str) -> str | None:
    """What is wrong with a decimal text not in plain notation: one refused only for its
    sign (`"-1"`, `"+1"`) said of its field as `method` takes it (`_sign_words`): `qty must
    be positive, not negative: '-1' - at `params.qty``; any other quoted with the form it
    should have (`_not_plain_words`, since session 35); None for any other failure. msgspec
    says only that the pattern did not match (before session 26 the answer read `Expected
    `str` holding a plain decimal number`), so the value is read again from the params, on
    this failure path only."""
    head, found, path = text.partition(" - at `$")
    if head != _DECIMAL_MISMATCH or not found:
        return None
    path = path.removesuffix("`")
    steps = _PATH_STEP.findall(path)
    value = _value_at(params, steps)
    if not isinstance(value, str) or len(value) > DECIMAL_LENGTH_MAX + 1:
        return None
    if not steps or not steps[-1][0]:
        return None
    field = steps[-1][0]
    sign = _SIGNED_DECIMAL.match(value)
    if sign is None:  # quoted, with the form it should have (before session 35: neither)
        return f"{field} {_not_plain_words(value)}: not {value!r} - at `params{path}`"
    if sign.group(1) == "+":
        words = f"{field} is a plain decimal number, written without a sign"
    else:
        words = _sign_words(method, field)
    return f"{words}: {value!r} - at `params{path}`"


_DECIMAL_COMMA = re.compile(r"[0-9]+,[0-9]+\Z")  # "1,5": a decimal comma, as many locales write
# "1,000,000", "10,000.5": thousands grouped, and nothing else; "1,500" could be either, and is
# told both readings (the review of session 35: "1,000" was told to be written "1.000", which is
# 1, and then "0,125" to be written "0125", which is 125: a first group led by 0 is no grouping)
_GROUPED = re.compile(r"[1-9][0-9]{0,2}(?:,[0-9]{3})+(?:\.[0-9]+)?\Z")


def _not_plain_words(value: str) -> str:
    """What a decimal text that is not in plain notation (nor only signed) is told."""
    if _GROUPED.match(value):
        grouped = value.replace(",", "")
        if value.count(",") == 1 and "." not in value:  # a decimal comma reads it too
            point = value.replace(",", ".")
            return (
                "is a plain decimal number, with no thousands separators and a point for a"
                f' fraction: "{grouped}" if the comma groups thousands, "{point}" if it is a'
                " decimal comma"
            )
        return (
            f'is a plain decimal number written without thousands separators, such as "{grouped}"'
        )
    if _DECIMAL_COMMA.match(value):
        return 'is a plain decimal number written with a point, such as "1.5"'
    return (
        'is a plain decimal number such as "1.5" or "100" (digits, at most one point between them)'
    )


def _sign_words(method: str, field: str) -> str:
    """What a negative value of `method`'s decimal `field` is told: what the field takes."""
    if field in POSITIVE_DECIMALS.get(method, ()):
        return f"{field} must be positive, not negative"
    if method == "quote.mass" and field in QUOTE_PRICES:
        side = field.removesuffix("_px")
        return f"{field} must not be negative, and positive unless {side}_qty is 0 (a pull)"
    return f"{field} must not be negative"


# msgspec's words for a JSON number where a string belongs (a number of 20 digits or more it
# reads as a float)
_NUMBER_FOR_TEXT = re.compile(r"Expected `str( \| null)?`, got `(int|float)` - at `\$(.*)`")


def _decimal_number_words(text: str) -> str | None:
    """What is wrong with a decimal field given a JSON number (`"qty": 1.5`, a mistake
    JSON encoders invite), said of its field: `qty is a decimal string such as "1.5", not a
    JSON number - at `params.qty``; None for any other failure. Before session 26:
    `Expected `str | null`, got `int``, and `got `float`` for an integer of 20 digits."""
    number = _NUMBER_FOR_TEXT.fullmatch(text)
    if number is None:
        return None
    steps = _PATH_STEP.findall(number.group(3))
    field = steps[-1][0] if steps else ""
    if field not in DECIMAL_FIELDS:
        return None
    words = f'{field} is a decimal string such as "1.5", not a JSON number'
    return f"{words} - at `params{number.group(3)}`"


# msgspec's words for an integer above INT_MAX, and the µs times a slip of unit lands there
_ABOVE_INT_MAX = f"Expected `int` <= {INT_MAX}"
MICROSECOND_FIELDS = frozenset({"expire_at", "as_of"})
NANOSECONDS_MIN = 10**18  # 19 digits: a time of this century in ns (in µs it has 16)


def _nanoseconds_words(text: str, params: bytes | msgspec.Raw) -> str | None:
    """What is wrong with a µs time given in nanoseconds (19 digits, past `INT_MAX`): `expire_at
    1796… looks like nanoseconds; expire_at is in microseconds: did you mean 1796…? - at
    `params.expire_at``; None for any other failure. Before session 36 only msgspec's bound
    was said (`Expected `int` <= 9007199254740991`), leaving the unit to guess; the value is
    read again from the params, on this failure path only."""
    head, found, path = text.partition(" - at `$")
    if head != _ABOVE_INT_MAX or not found:
        return None
    path = path.removesuffix("`")
    steps = _PATH_STEP.findall(path)
    if not steps or steps[-1][0] not in MICROSECOND_FIELDS:
        return None
    field, value = steps[-1][0], _value_at(params, steps)
    if type(value) is not int or not NANOSECONDS_MIN <= value < 10 * NANOSECONDS_MIN:
        return None
    meant = value // 1_000
    return (
        f"{field} {value} looks like nanoseconds; {field} is in microseconds: did you mean"
        f" {meant}? - at `params{path}`"
    )


def _value_at(params: bytes | msgspec.Raw, steps: list[tuple[str, str]]) -> Any:
    """The value at `steps` (`_PATH_STEP`'s: a key or an index each) in the params' JSON;
    None where there is none."""
    try:
        node = msgspec.json.decode(params)
    except (msgspec.DecodeError, RecursionError):
        return None
    for key, index in steps:
        if key and type(node) is dict:
            node = node.get(key)
        elif index and type(node) is list and int(index) < len(node):
            node = node[int(index)]
        else:
            return None
    return node


def _readable(text: str) -> str:
    """msgspec's message, with the decimal and ratio patterns said in words."""
    for pattern, words in PATTERN_WORDS.items():
        head, found, tail = text.partition(f" matching regex {pattern!r}")
        if found:
            return f"{head} holding {words}{tail}"
    return text


def _salvage_id(frame: bytes | str) -> int | str | None:
    """The request's id from a frame that failed validation, if it has a valid one."""
    try:
        return _valid_id(_id_only_decoder.decode(frame).id)
    except msgspec.DecodeError:  # unreadable past the id: `_unreadable`'s lenient reading
        data = frame if isinstance(frame, bytes) else frame.encode(errors="surrogatepass")
        if _WORD_HINT.search(data) is None and not _about_a_surrogate(frame):
            return None
        return _lenient_id(_read_leniently(frame))
    except RecursionError:  # too deep to decode whole: an id that leads the object still counts
        leading = _LEADING_ID.match(frame if isinstance(frame, bytes) else frame.encode())
        return None if leading is None else _valid_id(leading.group(1))


def _valid_id(raw: bytes) -> int | str | None:
    try:
        request_id: int | str = _id_decoder.decode(raw)
        return request_id
    except msgspec.DecodeError:
        return None


# ----------------------------------------------------------------- conversion

COMMAND_METHODS = frozenset(
    {
        "order.place",
        "order.cancel",
        "order.amend",
        "orders.cancel_all",
        "admin.list_instrument",
        "admin.set_status",
        "admin.set_reference_price",
        "admin.set_order_caps",
        "admin.mature",
        "admin.list_asset",
        "admin.attest_reserves",
        "admin.deposit",
        "admin.withdraw",
        "admin.confirm_withdrawal",
        "admin.void_withdrawal",
        "admin.open_account",
        "admin.pay_dividend",
        "admin.split",
        "admin.sweep",
    }
)
"""The methods whose request maps one to one to an engine command (`to_command`)."""


class _Refusal(Exception):
    def __init__(self, code: ErrorCode, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data  # the numbers that explain it, as a business error's `data`


def units(text: str, scale: int, field: str) -> int | WireError:
    """Decimal text as integer units at `scale`: `BAD_PRECISION` for excess decimals."""
    try:
        return _units(text, scale, field)
    except _Refusal as refusal:
        return WireError(None, refusal.code, refusal.message)


# Traders send the same few prices and sizes again and again: each is parsed once. Failures
# raise through the cache, uncached; bounded, so a stream of distinct texts costs only time.
_parse_units = functools.lru_cache(maxsize=UNITS_CACHE_MAX)(parse_units)


def _units(text: str, scale: int, field: str) -> int:
    """Units of the params' decimal `field`; a refusal ends with where the field is, as the
    zero refusal does (`placed_under` moves it into a batch's op or a quote; before session
    29, a `BAD_PRECISION` or too-large refusal named the field but not its place)."""
    try:
        return _parse_units(text, scale)
    except PrecisionError:
        # "more than 0 decimals" alone reads as a riddle: a bill's face value is whole dollars
        whole = ": it is a whole number, with no decimal point" if scale == 0 else ""
        raise _Refusal(
            E.BAD_PRECISION, f"{field} {text!r} has more than {scale} decimals{whole}{_AT}{field}`"
        ) from None
    except ValueError as failure:
        raise _Refusal(E.BAD_PARAM, f"{field}: {failure}{_AT}{field}`") from None


def _positive(text: str, scale: int, field: str) -> int:
    """Units of a price or quantity, where the engine reads 0 as "absent". A zero is told
    as a negative one is (`_signed_decimal_words`): the field, the text and where it is, at
    the top of the params (`placed_under` moves it into a batch's op or a quote); before
    session 29 it was `qty must be positive`, with neither text nor place."""
    value = _units(text, scale, field)
    if value == 0:
        raise _Refusal(E.BAD_PARAM, f"{field} must be positive, not zero: {text!r}{_AT}{field}`")
    return value


_AT = " - at `params."  # where a field of the params is, as the decoding errors say it
_AT_FIELD = re.compile(r" - at `params\.([A-Za-z0-9_.\[\]]+)`\Z")  # ... at a message's end


def placed_under(message: str, path: str) -> str:
    """A params' error said of the field where it is in a request that nests them: `path`
    is the nesting (`ops[0].params` of an `order.batch`, `quotes[1]` of a `quote.mass`), so
    `- at `params.qty`` becomes `- at `params.ops[0].params.qty``. Other words as they are:
    only the message's own ending says where, never text of the client's echoed in it."""
    place = _AT_FIELD.search(message)
    if place is None:
        return message
    return f"{message[: place.start()]}{_AT}{path}.{place.group(1)}`"


def at_field(message: str, path: str) -> str:
    """`message` ending with where its field is in the params (`path`: `qty`, or nested as
    `ops[0].params.qty`), as the decoding errors say it: `... - at `params.qty``."""
    return f"{message}{_AT}{path}`"


def _spec(specs: Mapping[str, InstrumentSpec], symbol: str, placed: bool = True) -> InstrumentSpec:
    """The spec of `symbol`, the params' `symbol` field: an unknown one is refused naming
    its place (since session 30; `placed`: False for a symbol read elsewhere, an amended
    order's)."""
    spec = specs.get(symbol)
    if spec is None:
        words = unknown_symbol(symbol, specs)
        raise _Refusal(E.UNKNOWN_SYMBOL, at_field(words, "symbol") if placed else words)
    return spec


def _scale(asset_scales: Mapping[str, int], asset: str) -> int:
    scale = asset_scales.get(asset)
    if scale is None:
        raise _Refusal(E.UNKNOWN_ASSET, f"unknown asset {asset!r}")
    return scale


def to_command(
    request: Request,
    specs: Mapping[str, InstrumentSpec],
    asset_scales: Mapping[str, int],
    account: int,
    *,
    order_symbol: str | None = None,
    ts_us: int = 0,
) -> Command | WireError:
    """The engine command of a `COMMAND_METHODS` request, in integer units, at `ts_us` (0:
    for the sequencer to stamp).

    `account` is the session's; admin requests name theirs. An `order.amend` that changes
    price or qty needs `order_symbol`, the symbol of the open order it names (the server
    finds it with `Venue.find_order`); without one it is `UNKNOWN_ORDER`.
    """
    command = params_to_command(
        request.params, specs, asset_scales, account, order_symbol=order_symbol, ts_us=ts_us
    )
    if isinstance(command, WireError):
        return WireError(request.id, command.code, command.message, command.data)
    return command


def params_to_command(
    params: Params,
    specs: Mapping[str, InstrumentSpec],
    asset_scales: Mapping[str, int],
    account: int,
    *,
    order_symbol: str | None = None,
    ts_us: int = 0,
) -> Command | WireError:
    """`to_command` for bare params (one op of a batch); errors carry no id."""
    convert = _CONVERTERS.get(type(params))
    if convert is None:
        raise ValueError(f"{type(params).__name__} has no engine command")
    try:
        command = convert(params, specs, asset_scales, account, order_symbol, ts_us)
    except _Refusal as refusal:
        return WireError(None, refusal.code, refusal.message, refusal.data)
    if isinstance(params, OperatorParams) and params.cl_op_id is not None:
        return msgspec.structs.replace(command, cl_op_id=params.cl_op_id)
    return command


Specs = Mapping[str, InstrumentSpec]
Scales = Mapping[str, int]


def _place(
    p: Any, specs: Specs, scales: Scales, account: int, _: str | None, ts_us: int
) -> Command:
    assert isinstance(p, PlaceParams)
    spec = _spec(specs, p.symbol)
    return PlaceOrder(
        ts_us=ts_us,
        account=account,
        symbol=p.symbol,
        side=p.side,
        order_type=p.type,
        tif=p.tif,
        price=0 if p.price is None else _positive(p.price, spec.price_decimals, "price"),
        qty=0 if p.qty is None else _positive(p.qty, spec.qty_decimals, "qty"),
        quote_qty=(
            0 if p.quote_qty is None else _positive(p.quote_qty, spec.quote_decimals, "quote_qty")
        ),
        post_only=p.post_only,
        stp=p.stp,
        cl_ord_id=p.cl_ord_id,
        tag=p.tag,
        expire_at_us=p.expire_at or 0,
        budget_checked=p.quote_qty is not None,
        once=p.once,
    )


def plain_place(p: PlaceParams, specs: Specs, account: int, ts_us: int) -> PlaceOrder | None:
    """`_place` of the usual order, a limit order with price and qty (whose texts convert,
    to a positive number each) on a known symbol, without `to_command`'s three calls, its
    try block and a call per field; None for any other, which `to_command` converts or
    words the error of."""
    spec = specs.get(p.symbol)
    price, qty = p.price, p.qty
    if spec is None or price is None or qty is None or p.quote_qty is not None or p.once:
        return None
    try:
        price_units = _parse_units(price, spec.price_decimals)
        qty_units = _parse_units(qty, spec.qty_decimals)
    except ValueError:  # PrecisionError too: `_place` says which field
        return None
    if not price_units or not qty_units:
        return None  # `_positive`'s refusal
    return PlaceOrder(
        ts_us=ts_us,
        account=account,
        symbol=p.symbol,
        side=p.side,
        order_type=p.type,
        tif=p.tif,
        price=price_units,
        qty=qty_units,
        post_only=p.post_only,
        stp=p.stp,
        cl_ord_id=p.cl_ord_id,
        tag=p.tag,
        expire_at_us=p.expire_at or 0,
    )


def _cancel(
    p: Any, specs: Specs, scales: Scales, account: int, _: str | None, ts_us: int
) -> Command:
    assert isinstance(p, CancelParams)
    return CancelOrder(
        ts_us=ts_us, account=account, order_id=p.order_id or 0, cl_ord_id=p.cl_ord_id
    )


def _amend(
    p: Any, specs: Specs, scales: Scales, account: int, symbol: str | None, ts_us: int
) -> Command:
    assert isinstance(p, AmendParams)
    price = qty = 0
    units_of = None  # the instrument the units were read at: the engine checks the order's
    if p.price is not None or p.qty is not None:
        if symbol is None:
            raise _Refusal(E.UNKNOWN_ORDER, "the account has no such open order")
        spec = _spec(specs, symbol, placed=False)  # the order's symbol, not the params'
        price = 0 if p.price is None else _positive(p.price, spec.price_decimals, "price")
        qty = 0 if p.qty is None else _positive(p.qty, spec.qty_decimals, "qty")
        units_of = symbol
    return AmendOrder(
        ts_us=ts_us,
        account=account,
        order_id=p.order_id or 0,
        cl_ord_id=p.cl_ord_id,
        price=price,
        qty=qty,
        new_cl_ord_id=p.new_cl_ord_id,
        symbol=units_of,
    )


def _cancel_all(
    p: Any, specs: Specs, scales: Scales, account: int, _: str | None, ts_us: int
) -> Command:
    assert isinstance(p, CancelAllParams)  # quote_set is the server's filter, not the engine's
    if p.symbol is not None:  # refused here, as a quote set's is: never journaled (session 36)
        _spec(specs, p.symbol)
    return CancelAll(ts_us=ts_us, account=account, symbol=p.symbol, side=p.side, tag=p.tag)


def _list_instrument(
    p: Any, specs: Specs, scales: Scales, account: int, _: Any, ts_us: int
) -> Command:
    assert isinstance(p, ListInstrumentParams)
    if p.cl_op_id is None:  # with one, a retry of this very listing: the engine tells which
        _refuse_case_twin(p.symbol, specs, E.INSTRUMENT_EXISTS, "instrument {} is listed")
    qty_decimals = _scale(scales, p.base)
    quote_decimals = _scale(scales, p.quote)
    price_decimals = len(p.tick.partition(".")[2])
    if price_decimals > SCALE_MAX:
        raise _Refusal(E.BAD_PARAM, f"tick has more than {SCALE_MAX} decimals")
    maturity_us = 0
    if p.maturity is not None:
        midnight = datetime.datetime.combine(p.maturity, datetime.time(), datetime.UTC)
        maturity_us = int(midnight.timestamp()) * 1_000_000
        # Checked here, at the edge, as the config checks it, not in the engine: a journal
        # that listed such a bill before the check existed must replay as it was accepted.
        problem = tbill.listing_term_problem(ts_us or time.time_ns() // 1_000, maturity_us)
        if problem is not None:
            raise _Refusal(E.BAD_PARAM, f"{p.symbol} {problem}")
    spec = InstrumentSpec(
        symbol=p.symbol,
        kind=p.kind,
        base=p.base,
        quote=p.quote,
        price_decimals=price_decimals,
        price_tick=_units(p.tick, price_decimals, "tick"),
        qty_decimals=qty_decimals,
        qty_step=_units(p.step, qty_decimals, "step"),
        min_qty=_units(p.min_qty, qty_decimals, "min_qty"),
        quote_decimals=quote_decimals,
        min_notional=_units(p.min_notional, quote_decimals, "min_notional"),
        price_band_bps=_units(p.band_pct, 2, "band_pct"),  # percent to basis points
        reference_price=_units(p.reference_price, price_decimals, "reference_price"),
        maker_fee_bps=p.maker_fee_bps,
        taker_fee_bps=p.taker_fee_bps,
        maturity_us=maturity_us,
        excluded_jurisdictions=p.excluded_jurisdictions,
        max_qty=_cap(p.max_qty, qty_decimals, "max_qty"),
        max_notional=_cap(p.max_notional, quote_decimals, "max_notional"),
    )
    if spec.problem() is None:  # an unsound spec: the engine's BAD_PARAM says what is wrong
        _check_bill_price(spec, spec.reference_price)
        # here, not in the engine (`notional_cap_problem`), as the bill price
        problem = notional_cap_problem(spec, listed_band_low(spec))
        if problem is not None:
            raise _Refusal(E.BAD_PARAM, f"{spec.symbol} {problem}")
    return ListInstrument(ts_us=ts_us, spec=spec, unique_by_case=True)


def _cap(text: str | None, decimals: int, name: str) -> int:
    """A per-order cap in units; absent is 0, no cap."""
    return 0 if text is None else _units(text, decimals, name)


def _set_order_caps(
    p: Any, specs: Specs, scales: Scales, account: int, _: Any, ts_us: int
) -> Command:
    assert isinstance(p, SetOrderCapsParams)
    spec = _spec(specs, p.symbol)
    return SetOrderCaps(
        ts_us=ts_us,
        symbol=p.symbol,
        max_qty=_cap(p.max_qty, spec.qty_decimals, "max_qty"),
        max_notional=_cap(p.max_notional, spec.quote_decimals, "max_notional"),
        lot_checked=True,
    )


def _mature(p: Any, specs: Specs, scales: Scales, account: int, _: Any, ts_us: int) -> Command:
    assert isinstance(p, MatureParams)
    if p.maturity is not None:
        _refuse_another_maturity(_spec(specs, p.symbol), p.maturity)
    else:
        _refuse_an_early_maturity_undated(specs.get(p.symbol), ts_us)
    return MatureInstrument(ts_us=ts_us, symbol=p.symbol)


def _refuse_an_early_maturity_undated(spec: InstrumentSpec | None, ts_us: int) -> None:
    """Refuse `admin.mature` of a bill before its date without its `maturity`: paying every
    holder par early cannot be undone, and a symbol one digit off names another bill (since
    session 38; `venue admin mature` already asked for the date, the wire did not). An
    unknown symbol or an equity is the engine's to refuse, as before."""
    now_us = ts_us or time.time_ns() // 1_000  # (0: for the sequencer to stamp)
    if spec is None or spec.kind is not InstrumentKind.TBILL or now_us >= spec.maturity_us:
        return
    date = _maturity_date(spec)
    said = (
        f"{spec.symbol} matures {date}: maturing it before then pays every holder par for good;"
        f' give "maturity": "{date}" to mature it now (one matured already is refused'
        " INSTRUMENT_MATURED then). nothing was done"
    )
    raise _Refusal(E.MISSING_PARAM, at_field(said, "maturity"))


def _maturity_date(spec: InstrumentSpec) -> datetime.date:
    """A bill's maturity date (UTC), of the µs its spec holds."""
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    return (epoch + datetime.timedelta(microseconds=spec.maturity_us)).date()


def _refuse_another_maturity(spec: InstrumentSpec, maturity: datetime.date) -> None:
    """Refuse `admin.mature`'s `maturity` unless it is the bill's own date (UTC). A listed
    bill's maturity never changes, so what is checked here holds when the engine runs it."""
    if spec.kind is not InstrumentKind.TBILL:
        said = f"{spec.symbol} is not a T-bill: it has no maturity"
        raise _Refusal(E.BAD_PARAM, at_field(said, "maturity"))
    date = _maturity_date(spec)
    if date != maturity:
        said = f"{spec.symbol} matures {date}, not {maturity}: is it the bill you mean?"
        raise _Refusal(E.BAD_PARAM, at_field(f"{said} nothing was done", "maturity"))


def _set_status(p: Any, specs: Specs, scales: Scales, account: int, _: Any, ts_us: int) -> Command:
    assert isinstance(p, SetStatusParams)
    return SetInstrumentStatus(ts_us=ts_us, symbol=p.symbol, status=p.status)


def _set_reference(
    p: Any, specs: Specs, scales: Scales, account: int, _: Any, ts_us: int
) -> Command:
    assert isinstance(p, SetReferencePriceParams)
    spec = _spec(specs, p.symbol)
    price = _positive(p.price, spec.price_decimals, "price")
    _check_bill_price(spec, price)
    return SetReferencePrice(ts_us=ts_us, symbol=p.symbol, price=price, lot_checked=True)


def _check_bill_price(spec: InstrumentSpec, price: int) -> None:
    """A T-bill's reference price must be a bill's price (`bill_price_problem`): checked
    here, as the config checks it, not in the engine (a journal that set such a price before
    the check existed must replay as it was accepted)."""
    problem = bill_price_problem(spec, price)
    if problem is not None:
        low, high = tbill.price_range_units(spec.price_decimals)
        decimals = spec.price_decimals
        data = {
            "reference_price": format_units(price, decimals),
            "min_price": format_units(low, decimals),
            "max_price": format_units(high, decimals),
        }
        raise _Refusal(E.BILL_PRICE_OUT_OF_RANGE, problem, data)


def _list_asset(p: Any, specs: Specs, scales: Scales, account: int, _: Any, ts_us: int) -> Command:
    assert isinstance(p, ListAssetParams)
    if p.cl_op_id is None:  # as `_list_instrument`'s
        _refuse_case_twin(p.code, scales, E.ASSET_EXISTS, "asset {} exists")
    return ListAsset(ts_us=ts_us, code=p.code, scale=p.scale, unique_by_case=True)


def _refuse_case_twin(name: str, listed: Iterable[str], code: ErrorCode, said: str) -> None:
    """Refuse `name` beside a listed name that differs from it only by case (`case_twin`):
    users could not tell the two apart. `said` words the listed one ("asset {} exists").
    Checked here at once, against this process's copy; the command asks the engine to check
    again where listings are serialized (`unique_by_case`: a cluster's gateways each read
    their own replica, so two case twins listed at once could both pass here)."""
    detail = case_twin_refusal(name, listed, said)
    if detail is not None:
        raise _Refusal(code, detail)


def _attest(p: Any, specs: Specs, scales: Scales, account: int, _: Any, ts_us: int) -> Command:
    assert isinstance(p, AttestReservesParams)
    # in seconds (10 digits): refused here, before it is journaled; the engine, which took
    # it as a statement of 1970 before session 36, still does (a journal replays as it ran).
    # Unstamped (a cluster's core stamps it), read against the clock: 10⁵ to 10⁷ times off.
    slip = seconds_slip("as_of", p.as_of, ts_us or time.time_ns() // 1_000)
    if slip is not None:
        raise _Refusal(E.BAD_PARAM, at_field(slip, "as_of"))
    amount = _units(p.amount, _scale(scales, p.asset), "amount")
    return AttestReserves(
        ts_us=ts_us, asset=p.asset, amount=amount, as_of_us=p.as_of, split_checked=True
    )


def _deposit(p: Any, specs: Specs, scales: Scales, account: int, _: Any, ts_us: int) -> Command:
    assert isinstance(p, DepositParams)
    amount = _units(p.amount, _scale(scales, p.asset), "amount")
    return Deposit(ts_us=ts_us, account=p.account, asset=p.asset, amount=amount)


def _withdraw(p: Any, specs: Specs, scales: Scales, account: int, _: Any, ts_us: int) -> Command:
    assert isinstance(p, WithdrawParams)
    amount = _units(p.amount, _scale(scales, p.asset), "amount")
    return RequestWithdrawal(
        ts_us=ts_us,
        account=p.account,
        asset=p.asset,
        amount=amount,
        held_through_actions=True,
        requested_at_kept=True,
    )


def _confirm(p: Any, specs: Specs, scales: Scales, account: int, _: Any, ts_us: int) -> Command:
    assert isinstance(p, ConfirmWithdrawalParams)
    return ConfirmWithdrawal(ts_us=ts_us, **_pending_withdrawal(p, scales))


def _void(p: Any, specs: Specs, scales: Scales, account: int, _: Any, ts_us: int) -> Command:
    assert isinstance(p, VoidWithdrawalParams)
    return VoidWithdrawal(ts_us=ts_us, **_pending_withdrawal(p, scales))


def _pending_withdrawal(p: PendingWithdrawalParams, scales: Scales) -> dict[str, Any]:
    """The fields of a confirm or void: the id, and what is expected of it (0 / None: not
    checked; an expected amount in units of the expected asset, which must be listed)."""
    amount = 0
    if p.amount is not None:
        assert p.asset is not None  # `problem` refused an amount without its asset
        amount = _positive(p.amount, _scale(scales, p.asset), "amount")
    elif p.asset is not None:
        _scale(scales, p.asset)  # an unlisted asset is no withdrawal's: said at once
    return {
        "withdrawal_id": p.withdrawal_id,
        "expected_account": p.account or 0,
        "expected_asset": p.asset,
        "expected_amount": amount,
        "finish_kept": True,  # a later confirm or void of it says which it became
    }


def _open_account(
    p: Any, specs: Specs, scales: Scales, account: int, _: Any, ts_us: int
) -> Command:
    assert isinstance(p, OpenAccountParams)
    return OpenAccount(
        ts_us=ts_us,
        account=p.account,
        name=p.name,
        kyc_approved=p.kyc_approved,
        jurisdiction=p.jurisdiction,
    )


def _pay_dividend(
    p: Any, specs: Specs, scales: Scales, account: int, _: Any, ts_us: int
) -> Command:
    assert isinstance(p, PayDividendParams)
    _spec(specs, p.symbol)
    fraction = p.amount_per_share.partition(".")[2]
    fraction = fraction.rstrip("0")  # trailing zeros lose nothing
    if len(fraction) > SCALE_MAX:
        raise _Refusal(E.BAD_PRECISION, f"amount_per_share has more than {SCALE_MAX} decimals")
    amount = _positive(p.amount_per_share, len(fraction), "amount_per_share")
    return PayDividend(
        ts_us=ts_us,
        symbol=p.symbol,
        payer=p.payer,
        amount=amount,
        amount_decimals=len(fraction),
        paid_checked=True,
    )


def _split(p: Any, specs: Specs, scales: Scales, account: int, _: Any, ts_us: int) -> Command:
    assert isinstance(p, SplitParams)
    _spec(specs, p.symbol)
    new, _colon, old = p.ratio.partition(":")
    return SplitShares(
        ts_us=ts_us,
        symbol=p.symbol,
        ratio_new=int(new),
        ratio_old=int(old),
        rescale_caps=True,
        lot_checked=True,
        cash_in_lieu=True,
        payer=p.payer or 0,
        withdrawals_held=True,
    )


def _sweep(p: Any, specs: Specs, scales: Scales, account: int, _: Any, ts_us: int) -> Command:
    assert isinstance(p, SweepParams)
    amount = _positive(p.amount, _scale(scales, p.asset), "amount")
    return SweepVenueAccount(
        ts_us=ts_us, venue_account=p.venue_account, asset=p.asset, amount=amount, account=p.account
    )


_Converter = Callable[[Any, Specs, Scales, int, str | None, int], Command]
_CONVERTERS: dict[type[Params], _Converter] = {
    PlaceParams: _place,
    CancelParams: _cancel,
    AmendParams: _amend,
    CancelAllParams: _cancel_all,
    ListInstrumentParams: _list_instrument,
    SetStatusParams: _set_status,
    SetReferencePriceParams: _set_reference,
    SetOrderCapsParams: _set_order_caps,
    MatureParams: _mature,
    ListAssetParams: _list_asset,
    AttestReservesParams: _attest,
    DepositParams: _deposit,
    WithdrawParams: _withdraw,
    ConfirmWithdrawalParams: _confirm,
    VoidWithdrawalParams: _void,
    OpenAccountParams: _open_account,
    PayDividendParams: _pay_dividend,
    SplitParams: _split,
    SweepParams: _sweep,
}
assert {kind for method, kind in METHODS.items() if method in COMMAND_METHODS} == set(_CONVERTERS)


class QuoteUnits(msgspec.Struct, frozen=True):
    """One quote in integer units; None: the side is not given, qty 0: the side is pulled."""

    symbol: str
    bid_px: int | None
    bid_qty: int | None
    ask_px: int | None
    ask_qty: int | None


def quote_units(quote: Quote, specs: Mapping[str, InstrumentSpec]) -> QuoteUnits | WireError:
    """A `quote.mass` quote in integer units at its instrument's scales. A qty of zero is
    the pull, whatever price comes beside it ("0" too: a pull must never fail on it); a
    price of zero beside a size to quote is malformed (PROTOCOL §2.3)."""
    try:
        spec = _spec(specs, quote.symbol)
        pd, qd = spec.price_decimals, spec.qty_decimals
        bid_qty = None if quote.bid_qty is None else _units(quote.bid_qty, qd, "bid_qty")
        ask_qty = None if quote.ask_qty is None else _units(quote.ask_qty, qd, "ask_qty")
        return QuoteUnits(
            symbol=quote.symbol,
            bid_px=_quote_price(quote.bid_px, bid_qty, pd, "bid_px"),
            bid_qty=bid_qty,
            ask_px=_quote_price(quote.ask_px, ask_qty, pd, "ask_px"),
            ask_qty=ask_qty,
        )
    except _Refusal as refusal:
        return WireError(None, refusal.code, refusal.message)


def _quote_price(text: str | None, qty: int | None, decimals: int, field: str) -> int | None:
    if text is None:
        return None
    if qty:  # a size to quote: at a positive price
        return _positive(text, decimals, field)
    return _units(text, decimals, field)  # a pull: its price is checked, not used


def plain_quote_units(
    quote: Quote, specs: Mapping[str, InstrumentSpec]
) -> tuple[int, int, int, int] | None:
    """The usual quote's bid price and size and ask price and size in units, both sides
    given: `quote_units` without its struct, try block and call per field. None for any
    other quote (an unknown symbol, a side left out, a text that does not convert, a zero
    price), which `quote_units` converts or words the error of."""
    spec = specs.get(quote.symbol)
    bid_px, bid_qty, ask_px, ask_qty = quote.bid_px, quote.bid_qty, quote.ask_px, quote.ask_qty
    if spec is None or bid_px is None or bid_qty is None or ask_px is None or ask_qty is None:
        return None
    price_decimals, qty_decimals = spec.price_decimals, spec.qty_decimals
    try:
        bid_price = _parse_units(bid_px, price_decimals)
        ask_price = _parse_units(ask_px, price_decimals)
        if not bid_price or not ask_price:
            return None  # a zero price is malformed: `quote_units` says so
        return (
            bid_price,
            _parse_units(bid_qty, qty_decimals),
            ask_price,
            _parse_units(ask_qty, qty_decimals),
        )
    except ValueError:  # PrecisionError too: `quote_units` says which field
        return None


# ----------------------------------------------------------------- responses


class _ErrorBody(msgspec.Struct, frozen=True, omit_defaults=True):
    code: int
    name: str
    msg: str
    data: Any = None


class _Ok(msgspec.Struct, frozen=True):
    id: int | str | None
    status: int
    result: Any
    t_in: int
    t_out: int


class _Error(msgspec.Struct, frozen=True, omit_defaults=True):
    id: int | str | None
    status: int
    error: _ErrorBody
    retry_after_ms: int | None = None


_encoder = msgspec.json.Encoder()

_AUTH_401 = frozenset(
    {E.NOT_AUTHENTICATED, E.BAD_SIGNATURE, E.TIMESTAMP_OUT_OF_WINDOW, E.NONCE_REUSED}
)
_STATUS_BY_CODE: dict[ErrorCode, int] = {
    E.PERMISSION_DENIED: 403,
    E.NOT_ELIGIBLE: 403,
    E.RATE_LIMITED: 429,
    E.INSTRUMENT_HALTED: 503,
    E.SHUTTING_DOWN: 503,
    E.QUOTE_PLACE_PENDING: 503,
    E.INTERNAL: 500,
    E.OUTCOME_UNKNOWN: 504,
    E.NONCE_UNCHECKED: 503,
    E.TOO_MANY_CONNECTIONS: 503,
    E.UNSUPPORTED_COMMAND: 503,
} | dict.fromkeys(_AUTH_401, 401)


def rejection_status(code: ErrorCode) -> int:
    """The response status of an error: 400 (rejected, nothing changed) unless listed."""
    return _STATUS_BY_CODE.get(code, 400)


def encode(message: Any) -> bytes:
    """JSON bytes of any message (a push built by `gateway.reports`, say)."""
    return _encoder.encode(message)


def ok(request_id: int | str | None, result: Any, t_in: int, t_out: int) -> bytes:
    """A 200 response; `t_in`/`t_out` are µs when the request arrived and left."""
    return _encoder.encode(_Ok(request_id, 200, result, t_in, t_out))


def error(
    request_id: int | str | None,
    code: ErrorCode,
    msg: str,
    data: Any = None,
    status: int | None = None,
    retry_after_ms: int | None = None,
) -> bytes:
    """An error response; `status` defaults to `rejection_status(code)` (409 for partial)."""
    body = _ErrorBody(int(code), code.name, shortened(msg), data)
    status = rejection_status(code) if status is None else status
    return _encoder.encode(_Error(request_id, status, body, retry_after_ms))


def shortened(text: str, chars_max: int = ERROR_TEXT_CHARS_MAX) -> str:
    """`text` cut to `chars_max` characters ("..." marks the cut): an error that quotes client
    input (a field name, a method, a path) quotes only the start of it."""
    return text if len(text) <= chars_max else text[: chars_max - 3] + "..."


def rejection_data(rejected: CommandRejected) -> dict[str, Any] | None:
    """The `data` of a business error: the target order, the asset, and the numbers that
    explain the refusal (band, minimum, cap, needed/available...) as decimal strings."""
    data: dict[str, Any] = {}
    if rejected.order_id:
        data["order_id"] = rejected.order_id
    if rejected.asset is not None:
        data["asset"] = rejected.asset
    for name, units, decimals in rejected.facts:
        # an exact notional may be finer than any asset's scale (price and qty decimals add)
        if decimals <= SCALE_MAX:
            data[name] = format_units(units, decimals)
        else:
            whole, fraction = divmod(units, 10**decimals)
            data[name] = f"{whole}.{str(fraction).zfill(decimals)}"
    return data or None


def error_of(wire_error: WireError) -> bytes:
    """The error response for a request that failed decoding or conversion."""
    return error(wire_error.id, wire_error.code, wire_error.message, wire_error.data)
