"""The wire: strict decoding of every method, error codes, exact conversion, envelopes."""

import json
import re
import time
import typing
from typing import Any

import msgspec
import pytest

from core import config
from engine.commands import (
    AmendOrder,
    AttestReserves,
    CancelAll,
    CancelOrder,
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
from engine.events import CommandRejected, OrderAccepted
from engine.reasons import ErrorCode
from engine.units import format_units, parse_units
from engine.venue import Venue
from gateway import wire
from gateway.wire import Request, WireError
from settlement.ledger import Ledger
from tests.engine.conftest import SYMBOL, make_spec

E = ErrorCode
SPECS = {SYMBOL: make_spec()}  # prices at 2 decimals, quantities and cash at 6
SCALES = {"USD": 6, "AAPLx": 6, "TB-2027-03-04": 0}
BILL_SPEC = make_spec(
    symbol="TB-2027-03-04-USD",
    kind=InstrumentKind.TBILL,
    base="TB-2027-03-04",
    price_decimals=6,
    qty_decimals=0,
    reference_price=98_676_708,
    maturity_us=1_804_118_400_000_000,
)
SIG = "ab" * 32

# One valid request per method: the smallest params it accepts.
MINIMAL: dict[str, dict[str, Any]] = {
    "session.logon": {"api_key": "k", "ts": 1, "nonce": "n", "sig": SIG},
    "session.logout": {},
    "session.status": {},
    "ping": {},
    "time": {},
    "session.cod": {"enabled": True},
    "orders.cancel_after": {"timeout_ms": 0},
    "order.place": {
        "symbol": SYMBOL,
        "side": "buy",
        "type": "limit",
        "tif": "gtc",
        "price": "1",
        "qty": "1",
    },
    "order.cancel": {"order_id": 1},
    "order.amend": {"cl_ord_id": "c", "qty": "1"},
    "order.batch": {"ops": [{"method": "order.cancel", "params": {"order_id": 1}}]},
    "quote.mass": {"quote_set": "q", "quotes": [{"symbol": SYMBOL, "bid_qty": "0"}]},
    "orders.cancel_all": {},
    "orders.open": {},
    "order.status": {"order_id": 1},
    "fills": {"limit": 10},
    "orders.history": {},
    "balances": {},
    "instruments": {},
    "book.snapshot": {"symbol": SYMBOL, "depth": 10},
    "reserves": {},
    "subscribe": {"ch": "account"},
    "unsubscribe": {"ch": "book", "symbols": [SYMBOL]},
    "subscriptions": {},
    "admin.list_instrument": {
        "symbol": "MSFTx-USD",
        "kind": "equity",
        "base": "MSFTx",
        "quote": "USD",
        "tick": "0.01",
        "step": "0.000001",
        "min_qty": "0.000001",
        "min_notional": "1",
        "band_pct": "10",
        "reference_price": "400.00",
    },
    "admin.set_status": {"symbol": SYMBOL, "status": "halted"},
    "admin.set_reference_price": {"symbol": SYMBOL, "price": "101.5"},
    "admin.set_order_caps": {"symbol": SYMBOL},
    "admin.mature": {"symbol": SYMBOL},
    "admin.list_asset": {"code": "MSFTx", "scale": 6},
    "admin.attest_reserves": {"asset": "USD", "amount": "1000000", "as_of": 5},
    "admin.deposit": {"account": 7, "asset": "USD", "amount": "10.5"},
    "admin.withdraw": {"account": 7, "asset": "USD", "amount": "0.000001"},
    "admin.confirm_withdrawal": {"withdrawal_id": 3},
    "admin.void_withdrawal": {"withdrawal_id": 3},
    "admin.withdrawals": {},
    "admin.open_account": {
        "account": 7,
        "name": "seven",
        "jurisdiction": "DE",
        "kyc_approved": True,
    },
    "admin.issue_key": {"account": 7, "scopes": ["read", "trade"]},
    "admin.revoke_key": {"api_key": "key-0123456789abcdef"},
    "admin.pay_dividend": {"symbol": SYMBOL, "payer": 7, "amount_per_share": "0.2475"},
    "admin.split": {"symbol": SYMBOL, "ratio": "3:2"},
    "admin.sweep": {"venue_account": -2, "asset": "USD", "amount": "0.5", "account": 7},
}
NO_PARAMS_NEEDED = {method for method, params in MINIMAL.items() if not params}


def frame(method: str, params: Any = None, request_id: Any = 1, **more: Any) -> bytes:
    body: dict[str, Any] = {"id": request_id, "method": method, **more}
    if params is not None:
        body["params"] = params
    return json.dumps(body).encode()


def decoded(method: str, params: Any) -> Request:
    request = wire.decode_request(frame(method, params))
    assert isinstance(request, Request), request
    return request


def refused(raw: bytes | str) -> WireError:
    result = wire.decode_request(raw)
    assert isinstance(result, WireError), result
    return result


def place(**params: Any) -> dict[str, Any]:
    return MINIMAL["order.place"] | params


def convert(method: str, params: dict[str, Any], **more: Any) -> Any:
    return wire.to_command(decoded(method, params), SPECS, SCALES, 7, **more)


# ----------------------------------------------------------------- decoding


def test_the_table_covers_every_method() -> None:
    assert set(MINIMAL) == set(wire.METHODS)


@pytest.mark.parametrize("method", sorted(MINIMAL))
def test_every_method_decodes_into_its_params_struct(method: str) -> None:
    request = wire.decode_request(frame(method, MINIMAL[method], request_id="req-1"))
    assert isinstance(request, Request), request
    assert (request.id, request.method) == ("req-1", method)
    assert type(request.params) is wire.METHODS[method]


@pytest.mark.parametrize("method", sorted(NO_PARAMS_NEEDED))
def test_params_may_be_left_out_when_none_are_required(method: str) -> None:
    request = wire.decode_request(frame(method))
    assert isinstance(request, Request) and type(request.params) is wire.METHODS[method]


def test_text_frames_decode_like_bytes() -> None:
    assert wire.decode_request(frame("ping").decode()) == wire.decode_request(frame("ping"))


def test_a_place_decodes_every_field() -> None:
    params = place(
        side="sell",
        tif="gtd",
        expire_at=9_000_000,
        post_only=True,
        stp="expire_both",
        cl_ord_id="c-1",
        tag="mm",
    )
    decoded_params = decoded("order.place", params).params
    assert decoded_params == wire.PlaceParams(
        symbol=SYMBOL,
        side=Side.SELL,
        type=OrderType.LIMIT,
        tif=TimeInForce.GTD,
        price="1",
        qty="1",
        expire_at=9_000_000,
        post_only=True,
        stp=SelfTradePrevention.EXPIRE_BOTH,
        cl_ord_id="c-1",
        tag="mm",
    )


@pytest.mark.parametrize(
    ("raw", "code", "request_id"),
    [
        (b"{not json", E.BAD_JSON, None),
        (b"", E.BAD_JSON, None),
        (b'{"id": 1, "method": "ping"} trailing', E.BAD_JSON, None),
        (b"[1, 2]", E.BAD_JSON, None),
        (b'"ping"', E.BAD_JSON, None),
        (frame("order.teleport", {}), E.UNKNOWN_METHOD, 1),
        (frame("Ping"), E.UNKNOWN_METHOD, 1),
        (b'{"method": "ping"}', E.MISSING_PARAM, None),
        (b'{"id": 5}', E.MISSING_PARAM, 5),
        (frame("order.place", {"symbol": SYMBOL}), E.MISSING_PARAM, 1),
        (frame("order.place"), E.MISSING_PARAM, 1),
        (frame("session.cod"), E.MISSING_PARAM, 1),
        (frame("ping", extra=1), E.BAD_PARAM, 1),  # unknown envelope field
        (frame("ping", {"x": 1}), E.BAD_PARAM, 1),  # unknown params field
        (frame("ping", []), E.BAD_PARAM, 1),
        (frame("ping", request_id=2**53), E.BAD_PARAM, None),  # ids below 2^53
        (frame("ping", request_id=-1), E.BAD_PARAM, None),
        (frame("ping", request_id="x" * 37), E.BAD_PARAM, None),
        (frame("ping", request_id=1.5), E.BAD_PARAM, None),
        (frame("ping", request_id=None), E.BAD_PARAM, None),
        (frame(3), E.BAD_PARAM, 1),  # type: ignore[arg-type]
        (frame("order.place", place(qty=1)), E.BAD_PARAM, 1),  # a number, not a string
        (frame("order.place", place(price="-1")), E.BAD_PARAM, 1),
        (frame("order.place", place(price="1e3")), E.BAD_PARAM, 1),
        (frame("order.place", place(price=" 1")), E.BAD_PARAM, 1),
        (frame("order.place", place(price="1.")), E.BAD_PARAM, 1),
        (frame("order.place", place(price="1\n")), E.BAD_PARAM, 1),
        (frame("order.place", place(side="long")), E.BAD_PARAM, 1),  # bad enum
        (frame("order.place", place(tif="GTC")), E.BAD_PARAM, 1),
        (frame("order.place", place(stp="never")), E.BAD_PARAM, 1),
        (frame("order.place", place(post_only=1)), E.BAD_PARAM, 1),
        (frame("order.place", place(cl_ord_id="c" * 37)), E.BAD_PARAM, 1),
        (frame("order.place", place(cl_ord_id="")), E.BAD_PARAM, 1),
        (frame("order.place", place(symbol="S" * 33)), E.BAD_PARAM, 1),
        (frame("order.place", place(tif="gtd", expire_at=2**53)), E.BAD_PARAM, 1),
        (frame("order.place", place(tif="gtd", expire_at=10**30)), E.BAD_PARAM, 1),  # huge
        (
            frame("order.place", place(tif="gtd", expire_at=1e400)).replace(b"Infinity", b"1e400"),
            E.BAD_PARAM,
            1,
        ),
        (frame("order.cancel", {"order_id": "1"}), E.BAD_PARAM, 1),
        (frame("order.cancel", {"order_id": 0}), E.BAD_PARAM, 1),
        (frame("fills", {"limit": 0}), E.BAD_PARAM, 1),
        (frame("fills", {"limit": 1_001}), E.BAD_PARAM, 1),
        (frame("subscribe", {"ch": "gossip"}), E.BAD_PARAM, 1),
        (frame("orders.cancel_after", {"timeout_ms": 600_001}), E.BAD_PARAM, 1),
        (frame("session.logon", MINIMAL["session.logon"] | {"sig": "zz"}), E.BAD_PARAM, 1),
        (
            frame("admin.open_account", MINIMAL["admin.open_account"] | {"jurisdiction": "de"}),
            E.BAD_PARAM,
            1,
        ),
        (frame("admin.list_asset", {"code": "X", "scale": 19}), E.BAD_PARAM, 1),
        (frame("admin.issue_key", {"account": 7, "scopes": ["root"]}), E.BAD_PARAM, 1),
        (frame("admin.issue_key", {"account": 7, "scopes": ["read", "read"]}), E.BAD_PARAM, 1),
        (frame("admin.set_status", {"symbol": SYMBOL, "status": "closed"}), E.BAD_PARAM, 1),
    ],
)
def test_each_failure_has_its_code(raw: bytes, code: ErrorCode, request_id: Any) -> None:
    error = refused(raw)
    assert (error.code, error.id) == (code, request_id), error.message


def test_messages_say_where_and_what() -> None:
    error = refused(frame("order.place", place(price="1e3")))
    assert error.message == f"price {PLAIN}: not '1e3' - at `params.price`"
    assert refused(frame("order.place", {"symbol": SYMBOL})).message == (
        "Object missing required field `side` - at `params`"
    )
    assert refused(frame("order.cancel", {"order_id": 1, "x": 1})).message == (
        "Object contains unknown field `x` - at `params`"
    )


@pytest.mark.parametrize(
    ("method", "params", "words"),
    [
        ("order.place", place(price="-1"), "price must be positive, not negative: '-1' - at"
         " `params.price`"),
        ("order.place", place(qty="-0.5"), "qty must be positive, not negative: '-0.5' - at"
         " `params.qty`"),
        ("order.place", place(price="+187"), "price is a plain decimal number, written without"
         " a sign: '+187' - at `params.price`"),
        ("order.amend", {"order_id": 1, "qty": "-2"}, "qty must be positive, not negative:"
         " '-2' - at `params.qty`"),
        # "0" pulls a side, so zero is allowed there
        ("quote.mass", {"quote_set": "q", "quotes": [{"symbol": SYMBOL, "bid_qty": "-1"}]},
         "bid_qty must not be negative: '-1' - at `params.quotes[0].bid_qty`"),
    ],
)  # fmt: skip
def test_a_signed_decimal_is_refused_for_its_sign_naming_its_field(
    method: str, params: dict[str, Any], words: str
) -> None:
    """Session 26: `"-1"` as a quantity or price was refused `Expected `str` holding a plain
    decimal number`, which does not say that a quantity must be positive."""
    error = refused(frame(method, params))
    assert (error.code, error.message) == (E.BAD_PARAM, words)


EXPECTED = {"withdrawal_id": 3, "asset": "USD"}  # a confirm's or void's, with an amount


@pytest.mark.parametrize(
    ("method", "params", "words"),
    [
        ("admin.pay_dividend", MINIMAL["admin.pay_dividend"] | {"amount_per_share": "-1"},
         "amount_per_share must be positive, not negative"),
        ("admin.confirm_withdrawal", EXPECTED | {"amount": "-1"},
         "amount must be positive, not negative"),
        ("admin.void_withdrawal", EXPECTED | {"amount": "-1"},
         "amount must be positive, not negative"),
        ("admin.deposit", MINIMAL["admin.deposit"] | {"amount": "-1"},
         "amount must be positive, not negative"),
        ("admin.list_instrument", MINIMAL["admin.list_instrument"] | {"tick": "-1"},
         "tick must be positive, not negative"),
        ("admin.attest_reserves", MINIMAL["admin.attest_reserves"] | {"amount": "-1"},
         "amount must not be negative"),  # 0: nothing in reserve
        ("admin.set_reference_price", MINIMAL["admin.set_reference_price"] | {"price": "-1"},
         "price must be positive, not negative"),
        ("admin.set_order_caps", MINIMAL["admin.set_order_caps"] | {"max_qty": "-1"},
         "max_qty must not be negative"),  # 0: no cap
    ],
)  # fmt: skip
def test_a_negative_decimal_is_told_what_its_method_takes(
    method: str, params: dict[str, Any], words: str
) -> None:
    """One field name takes different values per method: `amount` above zero in a confirm,
    0 or more in an attestation. (Before: told by name, so a dividend's or a confirm's "-1"
    was "must not be negative" though they refuse 0.)"""
    field = next(name for name, value in params.items() if value == "-1")
    error = refused(frame(method, params))
    assert (error.code, error.message) == (E.BAD_PARAM, f"{words}: '-1' - at `params.{field}`")


def test_a_quotes_negative_price_is_told_when_it_may_be_0() -> None:
    """A quote's price takes "0" in a pull, not beside a size (before: "must be positive",
    though "0" pulls a side)."""
    for side in ("bid", "ask"):
        quote = {"symbol": SYMBOL, f"{side}_px": "-1", f"{side}_qty": "0"}
        error = refused(frame("quote.mass", {"quote_set": "q", "quotes": [quote]}))
        assert error.message == (
            f"{side}_px must not be negative, and positive unless {side}_qty is 0 (a pull):"
            f" '-1' - at `params.quotes[0].{side}_px`"
        )
    pulled = wire.quote_units(wire.Quote(SYMBOL, bid_px="0", bid_qty="0"), SPECS)
    assert isinstance(pulled, wire.QuoteUnits)
    quoted = wire.quote_units(wire.Quote(SYMBOL, bid_px="0", bid_qty="1"), SPECS)
    assert isinstance(quoted, WireError)
    assert quoted.message == "bid_px must be positive, not zero: '0' - at `params.bid_px`"


def _decimal_fields(kind: type) -> list[str]:
    hints = typing.get_type_hints(kind, include_extras=True)
    return [name for name, hint in hints.items() if hint in DECIMAL_HINTS]


DECIMAL_HINTS = (wire.DecimalText, wire.DecimalText | None)
# the engine refuses 0 in these, where the wire converts it (`ListInstrument`: its spec's
# check; a deposit or a withdrawal of nothing)
ENGINE_REFUSES_ZERO = {
    ("admin.list_instrument", name)
    for name in ("tick", "step", "min_qty", "band_pct", "reference_price")
} | {("admin.deposit", "amount"), ("admin.withdraw", "amount")}


def test_every_decimal_fields_sign_words_say_what_0_does() -> None:
    """Each command method's decimal field: a "-1" told "must be positive" is one whose "0"
    is refused (here, or by the engine: `ENGINE_REFUSES_ZERO`), one told "must not be
    negative" one whose "0" the wire converts. (`quote.mass` and `order.batch`: above.)"""
    checked = 0
    scales = SCALES | {"MSFTx": 6}  # the listing's base
    for method, kind in wire.METHODS.items():
        if method in ("quote.mass", "order.batch"):
            continue
        for field in _decimal_fields(kind):
            params = MINIMAL[method] | {field: "0"}
            if method in ("admin.confirm_withdrawal", "admin.void_withdrawal"):
                params |= {"asset": "USD"}
            if method == "order.place" and field == "quote_qty":
                market = place(type="market", tif="ioc").items()
                params = {name: value for name, value in market if name not in ("price", "qty")}
                params[field] = "0"
            said = refused(frame(method, params | {field: "-1"})).message
            positive = said.startswith(f"{field} must be positive, not negative")
            assert positive or said.startswith(f"{field} must not be negative:"), said
            request = decoded(method, params)
            command = wire.to_command(request, SPECS, scales, 7, order_symbol=SYMBOL)
            wire_refuses = isinstance(command, WireError)
            zero_words = f"{field} must be positive, not zero: '0' - at `params.{field}`"
            assert not wire_refuses or command.message == zero_words, command
            zero_refused = wire_refuses or (method, field) in ENGINE_REFUSES_ZERO
            assert positive == zero_refused, (method, field, said, command)
            checked += 1
    assert checked >= 20, checked


@pytest.mark.parametrize(
    ("params", "field"),
    [
        (place(price=187.5), "price"),
        (place(qty=1), "qty"),
        (place(qty=10**25), "qty"),  # msgspec: `got `float``, for an integer this long
        ({"quote_set": "q", "quotes": [{"symbol": SYMBOL, "bid_px": 1}]}, "quotes[0].bid_px"),
    ],
)
def test_a_number_where_a_decimal_string_belongs_is_said_so(
    params: dict[str, Any], field: str
) -> None:
    """Session 26: a JSON number for a price or quantity, the mistake JSON encoders invite,
    was `Expected `str | null`, got `int``; now the field and what it takes are named."""
    method = "quote.mass" if "quotes" in params else "order.place"
    name = field.rpartition(".")[2]
    assert refused(frame(method, params)).message == (
        f'{name} is a decimal string such as "1.5", not a JSON number - at `params.{field}`'
    )
    # any other field given a number keeps msgspec's words
    assert refused(frame("order.place", place(symbol=5))).message == (
        "Expected `str`, got `int` - at `params.symbol`"
    )


@pytest.mark.parametrize("raw", ["", b"", " \n\t", b"\r\n "])
def test_an_empty_frame_is_said_to_be_empty(raw: str | bytes) -> None:
    """Session 26: msgspec's words were the answer, `Input data was truncated`."""
    error = refused(raw)
    assert (error.code, error.id, error.message) == (E.BAD_JSON, None, wire.EMPTY_FRAME)


def test_a_signed_decimal_in_a_batch_op_says_which_op() -> None:
    op = {"method": "order.place", "params": place(qty="-1")}
    error = refused(frame("order.batch", {"ops": [op]}))
    assert error.message == (
        "qty must be positive, not negative: '-1' - at `params.ops[0].params.qty`"
    )
    # a negative text that is no plain decimal otherwise is told the plain form
    assert refused(frame("order.place", place(qty="-1e3"))).message == (
        f"qty {PLAIN}: not '-1e3' - at `params.qty`"
    )


PLAIN = 'is a plain decimal number such as "1.5" or "100" (digits, at most one point between them)'
COMMA = 'is a plain decimal number written with a point, such as "1.5"'
# "1,000,000" is read as grouping; "1,000" either way, so told both readings
GROUPED = 'is a plain decimal number written without thousands separators, such as "{}"'
EITHER = (
    'is a plain decimal number, with no thousands separators and a point for a fraction: "{}" if'
    ' the comma groups thousands, "{}" if it is a decimal comma'
)


@pytest.mark.parametrize(
    ("field", "text", "words"),
    [
        ("qty", "1,5", f"qty {COMMA}: not '1,5' - at `params.qty`"),
        ("price", "187,30", f"price {COMMA}: not '187,30' - at `params.price`"),
        ("qty", "1e3", f"qty {PLAIN}: not '1e3' - at `params.qty`"),
        ("qty", " 1", f"qty {PLAIN}: not ' 1' - at `params.qty`"),
        ("qty", ".5", f"qty {PLAIN}: not '.5' - at `params.qty`"),
        ("qty", "5.", f"qty {PLAIN}: not '5.' - at `params.qty`"),
        ("qty", "1,000", f"qty {EITHER.format('1000', '1.000')}: not '1,000' - at `params.qty`"),
        (
            "qty",
            "10,000",
            f"qty {EITHER.format('10000', '10.000')}: not '10,000' - at `params.qty`",
        ),
        ("qty", "0,125", f"qty {COMMA}: not '0,125' - at `params.qty`"),
        ("price", "0,500", f"price {COMMA}: not '0,500' - at `params.price`"),
        ("qty", "012,345", f"qty {COMMA}: not '012,345' - at `params.qty`"),
        ("qty", "1,000,000", f"qty {GROUPED.format('1000000')}: not '1,000,000' - at `params.qty`"),
        ("qty", "1,000.5", f"qty {GROUPED.format('1000.5')}: not '1,000.5' - at `params.qty`"),
        ("qty", "1,0000", f"qty {COMMA}: not '1,0000' - at `params.qty`"),
        ("qty", "1000,000", f"qty {COMMA}: not '1000,000' - at `params.qty`"),
        ("qty", "1,00", f"qty {COMMA}: not '1,00' - at `params.qty`"),
        ("qty", "1,000,5", f"qty {PLAIN}: not '1,000,5' - at `params.qty`"),
        ("qty", "-1e3", f"qty {PLAIN}: not '-1e3' - at `params.qty`"),
        ("qty", "", f"qty {PLAIN}: not '' - at `params.qty`"),
    ],
)
def test_a_decimal_text_that_is_not_plain_is_quoted_and_told_the_form(
    field: str, text: str, words: str
) -> None:
    """The finding (a trader whose locale writes a decimal comma, `"1,5"`): every decimal
    text not in plain notation but a signed one got `Expected `str` holding a plain decimal
    number - at `params.qty``, which quotes nothing and names no fix. It is quoted, with the
    form it should have (a comma named as such). The review: `"1,000"` and `"10,000"` were
    told to be written with a point (`"1.000"`, which is 1): text grouped in threes
    is told there are no thousands separators, with the figure it should be, and where one
    comma could be either, both readings; the re-review: `"0,125"` was told `"0125"` (125),
    as a first group led by 0 is no grouping, it is a decimal comma."""
    assert refused(frame("order.place", place(**{field: text}))).message == words


def test_a_signature_or_jurisdiction_of_the_wrong_form_is_said_in_words() -> None:
    """Session 26: a logon's bad `sig` was answered with its regex, `Expected `str` matching
    regex '^[0-9a-fA-F]{64}\\Z'`, as was an operator's jurisdiction."""
    logon = refused(frame("session.logon", MINIMAL["session.logon"] | {"sig": "zz"}))
    assert logon.message == (
        "Expected `str` holding 64 hex digits (the HMAC-SHA256 of the logon's payload) - at"
        " `params.sig`"
    )
    account = MINIMAL["admin.open_account"] | {"jurisdiction": "de"}
    assert refused(frame("admin.open_account", account)).message == (
        'Expected `str` holding an ISO 3166 alpha-2 code in capitals, such as "US" - at'
        " `params.jurisdiction`"
    )


@pytest.mark.parametrize("ratio", ["2.5:1", "2/1", "10000:1", "-1:2", " 2:1"])
def test_a_split_ratio_not_new_colon_old_is_said_in_words(ratio: str) -> None:
    """An operator's `venue admin split SYM 2/1` was answered with msgspec's regex
    (`Expected `str` matching regex '^[0-9]{1,4}:[0-9]{1,4}\\Z'`): say what a ratio is."""
    error = refused(frame("admin.split", {"symbol": SYMBOL, "ratio": ratio}))
    assert (error.code, error.message) == (
        E.BAD_PARAM,
        'Expected `str` holding a ratio "new:old" of two whole numbers from 1 to 1000, such as'
        ' "2:1", "3:2" or "1:10" - at `params.ratio`',
    )


def test_an_error_quotes_only_the_start_of_long_input() -> None:
    long = "k" * 3_000  # a frame may hold 64 KiB of it; the answer says what is wrong, briefly
    for raw in (frame("order.cancel", {"order_id": 1, long: 1}), frame(long, {})):
        error = refused(raw)
        answer = msgspec.json.decode(wire.error(error.id, error.code, error.message))
        message = answer["error"]["msg"]
        assert len(message) == wire.ERROR_TEXT_CHARS_MAX and message.endswith("kkk..."), message
    assert wire.shortened("short") == "short"
    # a value outside an enum is cut before the values the field takes, which then show
    error = refused(frame("subscribe", {"ch": long}))
    message = msgspec.json.decode(wire.error(error.id, error.code, error.message))["error"]["msg"]
    assert len(message) <= wire.ERROR_TEXT_CHARS_MAX
    assert message.endswith(
        "kkk..., not one of 'account', 'bbo', 'book', 'candles', "
        "'instruments', 'ticker', 'trades' - at `params.ch`"
    ), message


@pytest.mark.parametrize(
    ("params", "code"),
    [
        (place(price=None), E.MISSING_PARAM),
        (place(qty=None), E.MISSING_PARAM),
        (place(quote_qty="5"), E.BAD_PARAM),
        (place(type="market", tif="ioc"), E.BAD_PARAM),  # a market order has no price
        (place(type="market", tif="ioc", price=None, qty=None), E.MISSING_PARAM),
        (place(type="market", tif="ioc", price=None, quote_qty="5"), E.BAD_PARAM),  # both
        (place(tif="gtd"), E.MISSING_PARAM),
        (place(expire_at=5), E.BAD_PARAM),
        (place(once=True), E.BAD_PARAM),  # once needs a cl_ord_id
    ],
)
def test_a_place_must_hang_together(params: dict[str, Any], code: ErrorCode) -> None:
    params = {key: value for key, value in params.items() if value is not None}
    assert refused(frame("order.place", params)).code is code


@pytest.mark.parametrize(
    "shape", [{"tif": "gtc"}, {"tif": "gtd", "expire_at": 5}, {"tif": "ioc", "post_only": True}]
)
def test_a_market_order_that_would_rest_is_the_engines_to_refuse(shape: dict[str, Any]) -> None:
    """A market order that would rest decodes: the engine refuses it, naming the one rule it
    breaks, so an `order.batch` holding one refuses that op alone (the review of session 35,
    whose first fix refused it here and failed the whole batch; tests/gateway/test_server.py
    has the words)."""
    params = place(type="market", price=None) | shape
    decoded("order.place", {k: v for k, v in params.items() if v is not None})


@pytest.mark.parametrize("method", ["order.cancel", "order.status"])
def test_one_order_id_exactly(method: str) -> None:
    assert refused(frame(method, {})).code is E.MISSING_PARAM
    assert refused(frame(method, {"order_id": 1, "cl_ord_id": "c"})).code is E.BAD_PARAM
    assert decoded(method, {"cl_ord_id": "c"}).params.cl_ord_id == "c"  # type: ignore[attr-defined]


def test_an_amend_names_one_order_and_changes_something() -> None:
    assert refused(frame("order.amend", {"order_id": 1})).code is E.MISSING_PARAM
    both = {"order_id": 1, "cl_ord_id": "c", "price": "1"}
    assert refused(frame("order.amend", both)).code is E.BAD_PARAM
    assert refused(frame("order.amend", {"price": "1"})).code is E.MISSING_PARAM


def test_quotes_come_in_pairs_and_once_per_symbol() -> None:
    def quotes(*items: dict[str, Any]) -> bytes:
        return frame("quote.mass", {"quote_set": "q", "quotes": list(items)})

    ok = decoded(
        "quote.mass",
        {
            "quote_set": "q",
            "quotes": [{"symbol": "A", "bid_px": "1", "bid_qty": "2", "ask_qty": "0"}],
        },
    )
    assert isinstance(ok.params, wire.QuoteMassParams) and ok.params.quotes[0].ask_qty == "0"
    assert refused(quotes({"symbol": "A", "bid_px": "1"})).code is E.MISSING_PARAM
    assert refused(quotes({"symbol": "A", "ask_qty": "1"})).code is E.MISSING_PARAM
    assert refused(quotes({"symbol": "A"}, {"symbol": "A"})).code is E.BAD_PARAM
    too_many = [{"symbol": f"S{n}"} for n in range(wire.QUOTES_MAX + 1)]
    assert refused(quotes(*too_many)).code is E.BAD_PARAM


def test_oversize_frames_are_message_too_big() -> None:
    padding = "x" * wire.MESSAGE_BYTES_MAX
    error = refused(frame("ping", request_id=padding))
    assert (error.code, error.id) == (E.MESSAGE_TOO_BIG, None)
    assert wire.oversize(b"x" * wire.MESSAGE_BYTES_MAX) is None
    assert wire.oversize("é" * (wire.MESSAGE_BYTES_MAX // 2 + 1)) is not None  # 2 bytes each
    assert wire.oversize("é" * (wire.MESSAGE_BYTES_MAX // 2)) is None
    assert wire.decode_request(frame("ping"), size_max=10) == (
        WireError(None, E.MESSAGE_TOO_BIG, "frames are limited to 10 bytes")
    )


QUOTE = {"symbol": SYMBOL, "bid_px": "99.5", "bid_qty": "2", "ask_px": "100.5", "ask_qty": "0"}
PLACE_OP = {"method": "order.place", "params": place()}
CANCEL_OP = {"method": "order.cancel", "params": {"order_id": 7}}
AMEND_OP = {"method": "order.amend", "params": {"cl_ord_id": "c1", "price": "101.25"}}


def two_step(raw: bytes | str) -> Request | WireError:
    """The decode every frame took before the one-decode path: the reference it must match."""
    envelope = wire.decode_envelope(raw)
    return envelope if isinstance(envelope, WireError) else wire.decode_params(envelope)


EVERY_KIND_OF_FRAME = [
    *(frame(method, params) for method, params in MINIMAL.items()),
    *(frame(method) for method in sorted(NO_PARAMS_NEEDED)),
    frame("order.place"),  # params required, absent
    frame("order.place", place(qty="1.2.3")),  # a bad decimal
    frame("order.place", place(type="market")),  # a problem() of the params
    frame("order.cancel", {"order_id": 1, "cl_ord_id": "c"}),
    frame("order.cancel", None, params_extra=1),  # an unknown envelope field
    frame("order.nope", {}),
    frame("ping", None, request_id=None),
    frame("ping", [], request_id=2).replace(b"[]", b"null"),
    b'{"id": 3, "method": "ping", "params": null}',
    b'{"method": "ping"}',
    b"[1, 2]",
    b"not json",
    b'{"id": 4, "method": "ping", "params": {"x": "\xff"}}',
    '{"id": 5, "method": "order.cancel", "params": {"cl_ord_id": "é"}}'.encode(),
    b'{"id": 6, "method": "order.cancel", "params": {"cl_ord_id": "\xff"}}',
    b'{"id": 7, "method": "order.cancel", "params": {"cl_ord_id": "' + bytes([0xFF]) + b'"}}',
    b'{"id": 8, "method": "order.batch", "params": {"ops": ' + b"[" * 2_000 + b"]" * 2_000 + b"}}",
    # the order-entry methods decode through twins with plain decimal strings (`wire._twin`)
    frame("order.place", place(price="1e5")),
    frame("order.place", place(price="1" * 49)),  # over DECIMAL_LENGTH_MAX
    frame("order.place", place(price="-1", side="up")),  # two faults: the first one is said
    frame("order.place", place(qty="0.5", quote_qty=None)),
    frame("quote.mass", {"quote_set": "q", "quotes": [QUOTE]}),
    # one quote whose texts are all plain: a side left out or half given is still its problem
    frame("quote.mass", {"quote_set": "q", "quotes": [{"symbol": SYMBOL, "bid_px": "99.5"}]}),
    frame("quote.mass", {"quote_set": "q", "quotes": [{"symbol": SYMBOL, "ask_qty": "1"}]}),
    frame("quote.mass", {"quote_set": "q", "quotes": [{"symbol": SYMBOL, "ask_qty": "0"}]}),
    frame("quote.mass", {"quote_set": "q", "quotes": [QUOTE, QUOTE]}),  # a symbol twice
    frame("quote.mass", {"quote_set": "q", "quotes": []}),
    frame("quote.mass", {"quote_set": "q", "quotes": [QUOTE | {"ask_qty": " 1"}]}),
    frame("quote.mass", {"quote_set": "q", "quotes": [QUOTE | {"bid_px": "1,5"}]}),
    frame("order.batch", {"ops": [PLACE_OP, CANCEL_OP, AMEND_OP]}),
    frame("order.batch", {"ops": [PLACE_OP, AMEND_OP | {"params": {"order_id": 1, "qty": "+1"}}]}),
    frame("order.batch", {"ops": [PLACE_OP | {"params": place(price="١٢")}, CANCEL_OP]}),
    # places alone: their texts all seen, one not seen yet, one not plain, one problem
    frame("order.batch", {"ops": [PLACE_OP, PLACE_OP]}),
    frame("order.batch", {"ops": [PLACE_OP, PLACE_OP | {"params": place(qty="7.125")}]}),
    frame("order.batch", {"ops": [PLACE_OP, PLACE_OP | {"params": place(price="1e3")}]}),
    frame("order.batch", {"ops": [PLACE_OP, PLACE_OP | {"params": place(quote_qty="5")}]}),
]


@pytest.mark.parametrize(
    ("method", "params", "said"),
    [
        ("order.place", place(side="BUY"), "'BUY', not one of 'buy', 'sell' - at `params.side`"),
        ("order.place", place(tif="GTC"), "'GTC', not one of 'gtc', 'ioc', 'fok', 'gtd' - at"),
        ("order.place", place(stp="no"), "'no', not one of 'expire_taker', 'expire_maker', "),
        ("orders.history", {"status": "filled"}, "'filled', not one of 'all', 'closed', 'open'"),
        ("orders.cancel_all", {"side": "Buy"}, "'Buy', not one of 'buy', 'sell' - at `params"),
        # through the ops' union: only the place op has a tif
        ("order.batch", {"ops": [{"method": "order.place", "params": place(tif="day")}]},
         "'day', not one of 'gtc', 'ioc', 'fok', 'gtd' - at `params.ops[0].params.tif`"),
    ],
)  # fmt: skip
def test_a_value_outside_an_enum_is_refused_naming_the_values_it_takes(
    method: str, params: dict[str, Any], said: str
) -> None:
    """`side: "BUY"` was refused `Invalid enum value 'BUY' - at `params.side``, naming no
    value the field takes: a trader guessed at the case, or at what an order history's
    `status` is (not `filled`)."""
    error = refused(frame(method, params))
    assert error.code == ErrorCode.BAD_PARAM
    assert error.message.startswith("Invalid enum value ")
    assert said in error.message, error.message


def test_a_bad_enum_describes_its_params_type_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Naming the values took msgspec's `type_info` of the whole params type on every refusal
    (117 µs for a place's, 315 for a batch's: 20 to 80 times the refusal without it), so a
    client repeating a bad `side` cost the loop that each time (session 28's review)."""
    described: list[object] = []
    type_info = msgspec.inspect.type_info

    def counted(root: object) -> msgspec.inspect.Type:
        described.append(root)
        return type_info(root)

    monkeypatch.setattr(msgspec.inspect, "type_info", counted)
    for side in ("BUY", "Sell"):
        assert "not one of 'buy', 'sell'" in refused(frame("order.place", place(side=side))).message
    assert len(described) <= 1, described
    described.clear()
    for index in (0, 2):  # any op's path is the first's
        ops = [
            {"method": "order.place", "params": place(tif="gtc" if i != index else "day")}
            for i in range(3)
        ]
        said = refused(frame("order.batch", {"ops": ops})).message
        assert f"not one of 'gtc', 'ioc', 'fok', 'gtd' - at `params.ops[{index}]" in said, said
    assert len(described) <= 1, described


def test_a_long_bad_enum_value_is_quoted_short_enough_for_the_values_to_show() -> None:
    """A 5,000-character `side` was quoted whole, so the error's text, cut at
    ERROR_TEXT_CHARS_MAX where it is sent, lost the values and the path after it."""
    said = refused(frame("order.place", place(side="B" * 5_000))).message
    assert len(said) <= wire.ERROR_TEXT_CHARS_MAX
    assert said.startswith("Invalid enum value 'BBB")
    assert said.endswith("..., not one of 'buy', 'sell' - at `params.side`"), said


def test_the_order_entry_twins_become_the_real_params() -> None:
    """The twins never leave `wire.decode`: what it returns is the methods' own structs."""
    for raw in (
        frame("order.place", place()),
        frame("quote.mass", {"quote_set": "q", "quotes": [QUOTE]}),
        frame("order.batch", {"ops": [PLACE_OP, CANCEL_OP, AMEND_OP]}),
        frame("order.batch", {"ops": [PLACE_OP, PLACE_OP]}),
    ):
        request = wire.decode(raw)[1]
        assert isinstance(request, Request)
        assert type(request.params) is wire.METHODS[request.method]
        for inner in getattr(request.params, "ops", ()):
            assert type(inner) in (wire.PlaceOp, wire.CancelOp, wire.AmendOp)
            assert type(inner.params) in (wire.PlaceParams, wire.CancelParams, wire.AmendParams)
        for quote in getattr(request.params, "quotes", ()):
            assert type(quote) is wire.Quote


def test_the_decimal_texts_seen_valid_are_bounded() -> None:
    wire._decimals_seen.clear()
    for number in range(wire.DECIMALS_SEEN_MAX + 10):
        assert wire._plain_decimals(f"{number}.5")
    assert len(wire._decimals_seen) <= wire.DECIMALS_SEEN_MAX
    assert not wire._plain_decimals("1.5", "1.")  # one bad text refuses them all
    assert not wire._plain_decimals("1\n")  # `\Z`, not `$`: no newline at the end


@pytest.mark.parametrize("raw", EVERY_KIND_OF_FRAME)
def test_the_one_decode_path_answers_as_the_two_step_decode(raw: bytes) -> None:
    for as_sent in (raw, raw.decode(errors="replace")):
        envelope, request = wire.decode(as_sent)
        assert request == two_step(as_sent)
        reference = wire.decode_envelope(as_sent)
        if isinstance(reference, WireError):
            assert envelope == reference
        else:  # what the server checks between envelope and params: id and method
            assert isinstance(envelope, wire.Envelope | Request)
            assert (envelope.id, envelope.method) == (reference.id, reference.method)


# ----------------------------------------------------------------- batches


def op(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"method": method, "params": params}


QUOTE = {"symbol": SYMBOL, "bid_px": "1", "bid_qty": "1", "ask_px": "2", "ask_qty": "1"}
CONTROL = f"control characters ({wire.CONTROL_CHARACTERS}) are not allowed"
LABELS_REFUSED: list[tuple[str, dict[str, Any], str]] = [  # method, params, the message
    ("order.place", place(cl_ord_id="a\nb"), "cl_ord_id holds a control character (U+000A"),
    ("order.place", place(cl_ord_id="\x00"), "cl_ord_id holds a control character (U+0000"),
    ("order.place", place(tag="mm\x1f"), "tag holds a control character (U+001F at index 2)"),
    ("order.place", place(tag="\x7f"), "tag holds a control character (U+007F"),
    ("order.place", place(cl_ord_id="c1", tag="\x85"), "tag holds a control character (U+0085"),
    ("order.place", place(tag="\x9f"), "tag holds a control character (U+009F"),
    ("order.place", place(cl_ord_id="\t", tag="\r"), "cl_ord_id holds a control"),  # the first
    (
        "order.place",
        place(type="market", tif="ioc", price=None, tag="\x1b[2J"),  # an escape sequence
        "tag holds a control character (U+001B",
    ),
    ("order.amend", {"order_id": 1, "new_cl_ord_id": "n\x00"}, "new_cl_ord_id holds a control"),
    (
        "order.batch",
        {"ops": [op("order.cancel", {"order_id": 1}), op("order.place", place(tag="\n"))]},
        "ops[1]: tag holds a control character (U+000A",
    ),
    (
        "order.batch",
        {"ops": [op("order.amend", {"cl_ord_id": "a", "new_cl_ord_id": "b\x80"})]},
        "ops[0]: new_cl_ord_id holds a control character (U+0080",
    ),
    (  # a quote set names the quotes in reports too: one quote and several
        "quote.mass",
        {"quote_set": "mm\n1", "quotes": [QUOTE]},
        "quote_set holds a control character (U+000A at index 2)",
    ),
    (
        "quote.mass",
        {"quote_set": "\x1b", "quotes": [QUOTE, QUOTE | {"symbol": "MSFTx-USD"}]},
        "quote_set holds a control character (U+001B",
    ),
]


@pytest.mark.parametrize(("method", "params", "message"), LABELS_REFUSED)
def test_an_order_label_holds_no_control_character(
    method: str, params: dict[str, Any], message: str
) -> None:
    """A `cl_ord_id`, `new_cl_ord_id` or `tag` the client gives an order is refused with
    BAD_PARAM naming the field when it holds a C0, DEL or C1 control character."""
    params = {key: value for key, value in params.items() if value is not None}
    error = refused(frame(method, params))
    assert (error.id, error.code) == (1, E.BAD_PARAM)
    assert error.message.startswith(message) and error.message.endswith(CONTROL), error.message


def test_other_labels_are_the_clients_business() -> None:
    """Spaces, accents, emoji (with their zero-width joiner) and a no-break space, which are
    not all printable to Python, are no control characters; and a `cl_ord_id` or `tag`
    that only names or filters orders (cancel, status, an amend's order, cancel_all) is not
    checked, so that an order labelled before the rule can still be named."""
    for label in ("a b", "café-1", "👩\u200d💻", "x\u00a0y", "\u00a0", "~" * 36, "\u00a1"):
        params = decoded("order.place", place(cl_ord_id=label, tag=label)).params
        assert isinstance(params, wire.PlaceParams) and params.tag == label
        amend = decoded("order.amend", {"order_id": 1, "new_cl_ord_id": label}).params
        assert isinstance(amend, wire.AmendParams) and amend.new_cl_ord_id == label
    old = "old\n"
    for method, params in [
        ("order.cancel", {"cl_ord_id": old}),
        ("order.status", {"cl_ord_id": old}),
        ("order.amend", {"cl_ord_id": old, "price": "1"}),
        ("orders.cancel_all", {"tag": old}),
        ("order.batch", {"ops": [op("order.cancel", {"cl_ord_id": old})]}),
    ]:
        decoded(method, params)


def test_a_batch_decodes_its_ops_into_their_params() -> None:
    ops = [
        op("order.place", place(cl_ord_id="a")),
        op("order.cancel", {"cl_ord_id": "a"}),
        op("order.amend", {"order_id": 4, "price": "2"}),
    ]
    params = decoded("order.batch", {"ops": ops}).params
    assert isinstance(params, wire.BatchParams)
    assert [type(o) for o in params.ops] == [wire.PlaceOp, wire.CancelOp, wire.AmendOp]
    commands = [wire.params_to_command(o.params, SPECS, SCALES, 7) for o in params.ops]
    assert isinstance(commands[0], PlaceOrder) and commands[0].cl_ord_id == "a"
    assert commands[1] == CancelOrder(account=7, cl_ord_id="a")
    assert commands[2] == WireError(None, E.UNKNOWN_ORDER, "the account has no such open order")
    amend = wire.params_to_command(params.ops[2].params, SPECS, SCALES, 7, order_symbol=SYMBOL)
    assert amend == AmendOrder(account=7, order_id=4, price=200, symbol=SYMBOL)


def test_batch_limits() -> None:
    cancel = op("order.cancel", {"order_id": 1})
    full = decoded("order.batch", {"ops": [cancel] * wire.BATCH_OPS_MAX}).params
    assert len(full.ops) == wire.BATCH_OPS_MAX  # type: ignore[attr-defined]
    over = refused(frame("order.batch", {"ops": [cancel] * (wire.BATCH_OPS_MAX + 1)}))
    assert over.code is E.BAD_PARAM and "length <= 20" in over.message
    assert refused(frame("order.batch", {"ops": []})).code is E.BAD_PARAM
    assert refused(frame("order.batch", {})).code is E.MISSING_PARAM


def test_a_malformed_op_refuses_the_whole_batch() -> None:
    good = op("order.cancel", {"order_id": 1})
    cases = [
        (op("order.status", {"order_id": 1}), E.BAD_PARAM),  # not a batchable method
        (op("order.cancel", {"order_id": 1, "x": 1}), E.BAD_PARAM),
        (op("order.cancel", {}), E.MISSING_PARAM),
        (op("order.place", place(price=1)), E.BAD_PARAM),
        ({"method": "order.cancel"}, E.MISSING_PARAM),
        ({"method": "order.cancel", "params": {"order_id": 1}, "id": 3}, E.BAD_PARAM),
    ]
    for bad, code in cases:
        error = refused(frame("order.batch", {"ops": [good, bad]}))
        assert (error.code, error.id) == (code, 1), (bad, error)
    error = refused(frame("order.batch", {"ops": [good, op("order.place", place(qty=None))]}))
    assert error.message == "ops[1]: a limit order needs price and qty"


# ----------------------------------------------------------------- conversion


def test_a_place_becomes_a_place_order_in_exact_units() -> None:
    command = convert(
        "order.place",
        place(
            side="sell",
            price="187.25",
            qty="0.000125",
            tif="gtd",
            expire_at=1_700_000_000_000_000,
            post_only=True,
            stp="none",
            cl_ord_id="c-9",
            tag="t",
        ),
    )
    assert command == PlaceOrder(
        account=7,
        symbol=SYMBOL,
        side=Side.SELL,
        order_type=OrderType.LIMIT,
        tif=TimeInForce.GTD,
        price=18_725,
        qty=125,
        post_only=True,
        stp=SelfTradePrevention.NONE,
        cl_ord_id="c-9",
        tag="t",
        expire_at_us=1_700_000_000_000_000,
    )
    assert command.ts_us == 0  # the sequencer stamps it


def test_market_orders_convert_qty_or_quote_qty() -> None:
    by_qty = convert("order.place", place(type="market", tif="ioc", price=None, qty="2"))
    assert (by_qty.order_type, by_qty.price, by_qty.qty, by_qty.quote_qty) == (
        OrderType.MARKET,
        0,
        2_000_000,
        0,
    )
    params = {k: v for k, v in place(type="market", tif="ioc").items() if k not in ("price", "qty")}
    by_quote = convert("order.place", params | {"quote_qty": "250.5"})
    assert (by_quote.qty, by_quote.quote_qty) == (0, 250_500_000)  # USD at 6 decimals
    assert by_quote.budget_checked and not by_qty.budget_checked  # one step at the best ask


def test_trailing_zeros_are_not_excess_precision() -> None:
    assert convert("order.place", place(price="187.2500", qty="1.0000000")).price == 18_725


@pytest.mark.parametrize(
    ("params", "code", "message"),
    [
        (
            place(price="187.255"),
            E.BAD_PRECISION,
            "price '187.255' has more than 2 decimals - at `params.price`",
        ),
        (
            place(qty="0.0000001"),
            E.BAD_PRECISION,
            "qty '0.0000001' has more than 6 decimals - at `params.qty`",
        ),
        (
            place(price="0"),
            E.BAD_PARAM,
            "price must be positive, not zero: '0' - at `params.price`",
        ),
        (
            place(qty="0.000"),
            E.BAD_PARAM,
            "qty must be positive, not zero: '0.000' - at `params.qty`",
        ),
        (place(qty="9" * 20), E.BAD_PARAM, f"qty: '{'9' * 20}' is too large - at `params.qty`"),
        (
            place(symbol="NOPE-USD"),
            E.UNKNOWN_SYMBOL,
            "unknown symbol 'NOPE-USD' - at `params.symbol`",
        ),
    ],
)
def test_conversion_refusals(params: dict[str, Any], code: ErrorCode, message: str) -> None:
    request = decoded("order.place", params)
    assert wire.to_command(request, SPECS, SCALES, 7) == WireError(1, code, message)


def test_a_fraction_of_a_whole_unit_is_refused_saying_the_qty_is_whole() -> None:
    """A bill's face value is whole dollars: `qty '100.5' has more than 0 decimals` alone
    read as a riddle to a trader, and `...: it is a whole number` as a contradiction (it is
    one, of dollars), hence the decimal point named (session 28's review)."""
    request = decoded("order.place", place(symbol=BILL_SPEC.symbol, price="98.5", qty="100.5"))
    refusal = wire.to_command(request, {BILL_SPEC.symbol: BILL_SPEC}, SCALES, 7)
    words = (
        "qty '100.5' has more than 0 decimals: it is a whole number, with no decimal point"
        " - at `params.qty`"
    )
    assert refusal == WireError(1, E.BAD_PRECISION, words)


@pytest.mark.parametrize(
    "params",
    [
        place(),
        place(side="sell", tif="ioc", price="187.2500", qty="0.000125", post_only=True),
        place(tif="gtd", expire_at=5, stp="none", cl_ord_id="c-9", tag="t"),
    ],
)
def test_a_plain_place_converts_as_to_command(params: dict[str, Any]) -> None:
    """`plain_place`, the usual order's one-call conversion, makes `to_command`'s command."""
    params_struct: Any = decoded("order.place", params).params
    plain = wire.plain_place(params_struct, SPECS, 7, 42)
    assert plain is not None and plain == convert("order.place", params, ts_us=42)


@pytest.mark.parametrize(
    "params",
    [
        place(price="187.255"),
        place(qty="0.0000001"),
        place(price="0"),
        place(qty="0.000"),
        place(qty="9" * 20),
        place(symbol="NOPE-USD"),
        place(type="market", tif="ioc", price=None, qty="2"),
    ],
)
def test_a_place_that_is_not_plain_is_left_to_to_command(params: dict[str, Any]) -> None:
    """Each refusal of `to_command` (and a market order) is not `plain_place`'s to make: it
    returns None, and the general conversion words the error."""
    params = {name: value for name, value in params.items() if value is not None}
    params_struct: Any = decoded("order.place", params).params
    assert wire.plain_place(params_struct, SPECS, 7, 0) is None


def test_a_place_with_once_carries_it_to_the_engine_in_a_batch_too() -> None:
    """`once` reaches the `PlaceOrder` from a place and from a batch's place op (never by
    `plain_place`, which leaves it to `to_command`); left out, a place is as before."""
    params: Any = decoded("order.place", place(cl_ord_id="r-1", once=True)).params
    assert wire.plain_place(params, SPECS, 7, 0) is None
    command = convert("order.place", place(cl_ord_id="r-1", once=True))
    assert isinstance(command, PlaceOrder) and command.once and command.cl_ord_id == "r-1"
    assert not convert("order.place", place(cl_ord_id="r-1")).once
    ops = [op("order.place", place(cl_ord_id=name, once=True)) for name in ("a", "b")]
    batch: Any = decoded("order.batch", {"ops": ops}).params
    placed = [wire.params_to_command(o.params, SPECS, SCALES, 7) for o in batch.ops]
    assert [(p.cl_ord_id, p.once) for p in placed] == [("a", True), ("b", True)]
    error = refused(frame("order.batch", {"ops": [ops[0], op("order.place", place(once=True))]}))
    assert (error.code, error.message) == (
        E.BAD_PARAM,
        "ops[1]: once needs a cl_ord_id: it is what a retry is known by",
    )


def test_a_plain_quote_converts_as_quote_units() -> None:
    quote = wire.Quote(SYMBOL, bid_px="99.5", bid_qty="2", ask_px="100.50", ask_qty="0.5")
    units = wire.quote_units(quote, SPECS)
    assert isinstance(units, wire.QuoteUnits)
    plain = (units.bid_px, units.bid_qty, units.ask_px, units.ask_qty)
    assert wire.plain_quote_units(quote, SPECS) == plain == (9_950, 2_000_000, 10_050, 500_000)
    for other in (
        wire.Quote(SYMBOL, bid_px="99.5", bid_qty="2", ask_qty="0"),  # a side left out
        wire.Quote(SYMBOL, bid_px="99.555", bid_qty="1", ask_px="100", ask_qty="1"),
        wire.Quote(SYMBOL, bid_px="99", bid_qty="1", ask_px="100", ask_qty="9" * 20),
        wire.Quote("X", bid_px="99", bid_qty="1", ask_px="100", ask_qty="1"),
        wire.Quote(SYMBOL, bid_px="0", bid_qty="1", ask_px="100", ask_qty="1"),
        wire.Quote(SYMBOL, bid_px="99", bid_qty="1", ask_px="0.00", ask_qty="1"),
    ):
        assert wire.plain_quote_units(other, SPECS) is None, other
        assert isinstance(wire.quote_units(other, SPECS), wire.QuoteUnits | WireError)


@pytest.mark.parametrize(
    "quote",
    [
        wire.Quote(SYMBOL, bid_px="0", bid_qty="1"),  # was a per-op refusal by the engine
        wire.Quote(SYMBOL, bid_px="99", bid_qty="1", ask_px="0.00", ask_qty="1"),
        wire.Quote(SYMBOL, bid_px="0", bid_qty="0", ask_px="0", ask_qty="2"),
    ],
)
def test_a_quote_at_a_zero_price_is_malformed(quote: wire.Quote) -> None:
    refusal = wire.quote_units(quote, SPECS)
    assert isinstance(refusal, WireError) and refusal.code is E.BAD_PARAM, refusal
    # (said at the quote's own params: the dispatcher places it under `quotes[i]`)
    assert re.fullmatch(
        r"(bid|ask)_px must be positive, not zero: '0(\.00)?' - at `params\.\1_px`", refusal.message
    ), refusal.message


def test_a_zero_qty_still_pulls_a_side_whatever_its_price() -> None:
    """A pull never fails on the price beside it ("0" too); the price's decimals still count."""
    pulled = wire.quote_units(wire.Quote(SYMBOL, bid_px="99", bid_qty="0", ask_qty="0"), SPECS)
    assert pulled == wire.QuoteUnits(SYMBOL, 9_900, 0, None, 0)
    zeros = wire.Quote(SYMBOL, bid_px="0", bid_qty="0", ask_px="0.00", ask_qty="0")
    assert wire.quote_units(zeros, SPECS) == wire.QuoteUnits(SYMBOL, 0, 0, 0, 0)
    over = wire.quote_units(wire.Quote(SYMBOL, bid_px="0.001", bid_qty="0"), SPECS)
    assert isinstance(over, WireError) and over.code is E.BAD_PRECISION, over


def test_cancel_and_cancel_all_convert_without_scales() -> None:
    assert convert("order.cancel", {"order_id": 12}) == CancelOrder(account=7, order_id=12)
    assert convert("order.cancel", {"cl_ord_id": "x"}) == CancelOrder(account=7, cl_ord_id="x")
    every = {"symbol": SYMBOL, "side": "sell", "tag": "t", "quote_set": "q"}
    assert convert("orders.cancel_all", every) == CancelAll(
        account=7, symbol=SYMBOL, side=Side.SELL, tag="t"
    )  # quote sets are the server's
    # an unknown symbol is refused here, not journaled for the engine to refuse (session 36)
    refused = convert("orders.cancel_all", every | {"symbol": "ANY"})
    assert isinstance(refused, WireError) and refused.code is E.UNKNOWN_SYMBOL, refused
    assert refused.message == "unknown symbol 'ANY' - at `params.symbol`"


def test_an_attestation_as_of_seconds_is_refused_naming_the_microseconds_meant() -> None:
    """The review (session 36): an as_of in seconds (10 digits) was taken as a statement of
    1970, and the next deposit was refused RESERVES_STALE, 499,048 hours old. Refused here,
    before it is journaled; the engine takes it as it did (a journal's replay, test_custody)."""
    now_us = 1_764_000_000_000_000
    seconds = MINIMAL["admin.attest_reserves"] | {"as_of": now_us // 1_000_000}
    refused = convert("admin.attest_reserves", seconds, ts_us=now_us)
    assert isinstance(refused, WireError) and refused.code is E.BAD_PARAM, refused
    assert refused.message == (
        f"as_of {now_us // 1_000_000} looks like seconds; as_of is in microseconds: did you"
        f" mean {now_us}? - at `params.as_of`"
    )
    # a cluster's gateway builds it unstamped (ts 0): read against the clock
    seconds["as_of"] = time.time_ns() // 1_000_000_000
    unstamped = convert("admin.attest_reserves", seconds)
    assert isinstance(unstamped, WireError) and unstamped.code is E.BAD_PARAM, unstamped
    assert "looks like seconds" in unstamped.message
    taken = MINIMAL["admin.attest_reserves"] | {"as_of": now_us}
    assert convert("admin.attest_reserves", taken, ts_us=now_us) == AttestReserves(
        ts_us=now_us, asset="USD", amount=10**12, as_of_us=now_us, split_checked=True
    )


def test_an_amend_converts_at_its_orders_scales() -> None:
    params = {"order_id": 3, "price": "99.5", "qty": "1.5", "new_cl_ord_id": "n"}
    command = convert("order.amend", params, order_symbol=SYMBOL)
    assert command == AmendOrder(
        account=7, order_id=3, price=9_950, qty=1_500_000, new_cl_ord_id="n", symbol=SYMBOL
    )  # the engine refuses it if the order is on another instrument by then
    renamed = convert("order.amend", {"cl_ord_id": "a", "new_cl_ord_id": "b"})
    assert renamed == AmendOrder(account=7, cl_ord_id="a", new_cl_ord_id="b")
    assert convert("order.amend", {"order_id": 3, "qty": "0"}, order_symbol=SYMBOL).code is (
        E.BAD_PARAM  # 0 would read as "unchanged" in the engine
    )
    assert convert("order.amend", {"order_id": 3, "price": "99.555"}, order_symbol=SYMBOL).code is (
        E.BAD_PRECISION
    )
    assert convert("order.amend", {"order_id": 3, "price": "1"}).code is E.UNKNOWN_ORDER


def test_order_caps_and_maturity_convert_to_their_commands() -> None:
    caps = {"symbol": SYMBOL, "max_qty": "2.5", "max_notional": "1000"}
    assert convert("admin.set_order_caps", caps) == SetOrderCaps(
        symbol=SYMBOL, max_qty=2_500_000, max_notional=1_000_000_000, lot_checked=True
    )
    assert convert("admin.set_order_caps", MINIMAL["admin.set_order_caps"]) == SetOrderCaps(
        symbol=SYMBOL,
        lot_checked=True,  # absent caps: none
    )
    assert convert("admin.set_order_caps", caps | {"max_qty": "0.0000001"}).code is (
        E.BAD_PRECISION
    )
    assert convert("admin.mature", {"symbol": SYMBOL}) == MatureInstrument(symbol=SYMBOL)


def test_admin_requests_convert_to_their_commands() -> None:
    assert convert("admin.set_status", MINIMAL["admin.set_status"]) == SetInstrumentStatus(
        symbol=SYMBOL, status=InstrumentStatus.HALTED
    )
    assert convert("admin.set_reference_price", MINIMAL["admin.set_reference_price"]) == (
        SetReferencePrice(symbol=SYMBOL, price=10_150, lot_checked=True)
    )
    assert convert("admin.list_asset", MINIMAL["admin.list_asset"]) == ListAsset(
        code="MSFTx", scale=6, unique_by_case=True
    )
    assert convert("admin.attest_reserves", MINIMAL["admin.attest_reserves"]) == AttestReserves(
        asset="USD", amount=10**12, as_of_us=5, split_checked=True
    )
    assert convert("admin.deposit", MINIMAL["admin.deposit"]) == Deposit(
        account=7, asset="USD", amount=10_500_000
    )
    assert convert("admin.withdraw", MINIMAL["admin.withdraw"]) == RequestWithdrawal(
        account=7,
        asset="USD",
        amount=1,
        held_through_actions=True,  # held through splits and maturities
        requested_at_kept=True,  # its time kept (session 26)
    )
    kept = {"finish_kept": True}  # how it ended kept (session 26)
    assert convert("admin.confirm_withdrawal", {"withdrawal_id": 3}) == ConfirmWithdrawal(
        withdrawal_id=3, **kept
    )
    assert convert("admin.void_withdrawal", {"withdrawal_id": 3}) == VoidWithdrawal(
        withdrawal_id=3, **kept
    )
    expected = {"withdrawal_id": 3, "account": 7, "asset": "USD", "amount": "1.5"}
    assert convert("admin.confirm_withdrawal", expected) == ConfirmWithdrawal(
        withdrawal_id=3,
        expected_account=7,
        expected_asset="USD",
        expected_amount=1_500_000,
        **kept,
    )
    assert convert("admin.void_withdrawal", {"withdrawal_id": 3, "asset": "AAPLx"}) == (
        VoidWithdrawal(withdrawal_id=3, expected_asset="AAPLx", **kept)
    )
    sweep = convert("admin.sweep", MINIMAL["admin.sweep"])
    assert sweep == SweepVenueAccount(venue_account=-2, asset="USD", amount=500_000, account=7)
    assert convert("admin.open_account", MINIMAL["admin.open_account"]) == OpenAccount(
        account=7, name="seven", kyc_approved=True, jurisdiction="DE"
    )


def test_corporate_actions_convert_exactly() -> None:
    # new dividends are refused if they pay no holder a cash unit (`paid_checked`)
    assert convert("admin.pay_dividend", MINIMAL["admin.pay_dividend"]) == PayDividend(
        symbol=SYMBOL, payer=7, amount=2_475, amount_decimals=4, paid_checked=True
    )
    whole = {"symbol": SYMBOL, "payer": 7, "amount_per_share": "3.500"}
    assert convert("admin.pay_dividend", whole) == PayDividend(
        symbol=SYMBOL, payer=7, amount=35, amount_decimals=1, paid_checked=True
    )
    for text, code in (("0.000", E.BAD_PARAM), ("0." + "1" * 19, E.BAD_PRECISION)):
        bad = convert("admin.pay_dividend", whole | {"amount_per_share": text})
        assert bad.code is code, text
    # new splits rescale the caps, check one lot against the cap, pay cash in lieu and keep
    # every withdrawal pending
    new_rules = {
        "rescale_caps": True,
        "lot_checked": True,
        "cash_in_lieu": True,
        "withdrawals_held": True,
    }
    assert convert("admin.split", {"symbol": SYMBOL, "ratio": "1:10"}) == SplitShares(
        symbol=SYMBOL, ratio_new=1, ratio_old=10, **new_rules
    )
    paid = convert("admin.split", {"symbol": SYMBOL, "ratio": "1:10", "payer": 7})
    assert paid == SplitShares(symbol=SYMBOL, ratio_new=1, ratio_old=10, payer=7, **new_rules)
    for payer in (0, -1, "7", 1.5):  # a positive whole account id, or left out
        bad_payer = frame("admin.split", {"symbol": SYMBOL, "ratio": "1:10", "payer": payer})
        assert refused(bad_payer).code is E.BAD_PARAM, payer
    nowhere = convert("admin.split", {"symbol": "X", "ratio": "2:1"})
    assert nowhere.code is E.UNKNOWN_SYMBOL
    for ratio in ("2", "2:1:1", "-2:1", "2.5:1", "12345:1"):
        assert refused(frame("admin.split", {"symbol": SYMBOL, "ratio": ratio})).code is (
            E.BAD_PARAM
        ), ratio


def test_admin_amounts_need_known_assets_and_their_precision() -> None:
    unknown = convert("admin.deposit", {"account": 7, "asset": "EUR", "amount": "1"})
    assert (unknown.code, unknown.message) == (E.UNKNOWN_ASSET, "unknown asset 'EUR'")
    bill = convert("admin.deposit", {"account": 7, "asset": "TB-2027-03-04", "amount": "1000.5"})
    assert bill.code is E.BAD_PRECISION  # face value in whole dollars
    price = convert("admin.set_reference_price", {"symbol": SYMBOL, "price": "1.001"})
    assert price.code is E.BAD_PRECISION
    nowhere = convert("admin.set_reference_price", {"symbol": "X", "price": "1"})
    assert nowhere.code is E.UNKNOWN_SYMBOL


def test_an_asset_code_differing_from_a_listed_one_only_by_case_is_refused() -> None:
    """The finding: `venue admin list-asset usd` listed a second asset beside USD, one that
    users could not tell apart from it. Refused where the code enters (the engine still
    takes it: a journal written before the check replays the same)."""
    for code, twin in (("usd", "USD"), ("aaplX", "AAPLx"), ("tb-2027-03-04", "TB-2027-03-04")):
        refusal = convert("admin.list_asset", {"code": code, "scale": 6})
        assert isinstance(refusal, WireError), code
        assert refusal.code is E.ASSET_EXISTS
        assert refusal.message == (
            f"asset {twin} exists: {code} differs from it only by case, and users could not"
            " tell the two apart"
        )
    # the very code listed again is the engine's ASSET_EXISTS, as before
    assert convert("admin.list_asset", {"code": "USD", "scale": 6}) == ListAsset(
        code="USD", scale=6, unique_by_case=True
    )


BILL_LISTING = {
    "symbol": "TB-2027-03-04-USD",
    "kind": "tbill",
    "base": "TB-2027-03-04",
    "quote": "USD",
    "tick": "0.000001",
    "step": "1",
    "min_qty": "100",
    "min_notional": "100",
    "band_pct": "1",
    "reference_price": "98.676708",
    "maturity": "2027-03-04",
}


def test_a_symbol_differing_from_a_listed_one_only_by_case_is_refused() -> None:
    """As an asset code's case twin: `aaplx-usd` beside `AAPLx-USD` would list a second
    market that users could not tell from the first. Refused where the symbol enters."""
    listing = BILL_LISTING | {"symbol": SYMBOL.lower()}
    refusal = convert("admin.list_instrument", listing)
    assert isinstance(refusal, WireError)
    assert refusal.code is E.INSTRUMENT_EXISTS
    assert refusal.message == (
        f"instrument {SYMBOL} is listed: {SYMBOL.lower()} differs from it only by case, and"
        " users could not tell the two apart"
    )
    # a symbol of its own is converted (the very symbol again is the engine's refusal), and
    # the engine checks its case again where listings are serialized
    listed = convert("admin.list_instrument", BILL_LISTING)
    assert isinstance(listed, ListInstrument) and listed.unique_by_case


def test_list_instrument_matches_the_config_loader() -> None:
    params = BILL_LISTING | {
        "band_pct": "2.5",
        "maker_fee_bps": 1,
        "taker_fee_bps": 2,
        "excluded_jurisdictions": ["US"],
        "max_qty": "5000000",
        "max_notional": "4900000.5",
    }
    command = convert("admin.list_instrument", params)
    assert isinstance(command, ListInstrument)
    entry = msgspec.json.decode(json.dumps(params), type=config.InstrumentEntry)
    assert command.spec == config.instrument_spec(entry, dict(SCALES))
    assert command.spec.maturity_us == 1_804_118_400_000_000
    assert (command.spec.max_qty, command.spec.max_notional) == (5_000_000, 4_900_000_500_000)
    assert (command.spec.price_band_bps, command.spec.kind) == (250, InstrumentKind.TBILL)
    assert convert("admin.list_instrument", params | {"band_pct": "2.555"}).code is (
        E.BAD_PRECISION
    )
    assert convert("admin.list_instrument", params | {"reference_price": "98.6767081"}).code is (
        E.BAD_PRECISION
    )
    assert convert("admin.list_instrument", params | {"base": "TB-X"}).code is E.UNKNOWN_ASSET


@pytest.mark.parametrize(
    ("price", "words"),
    [
        ("100.000001", "above par (100.000000 per 100 of face)"),
        ("150", "above par"),
        ("49.999999", "below 50.000000 per 100 of face"),
        ("9.867671", "below 50.000000"),  # 98.67671 with the point slipped
        ("0.000001", "below 50.000000"),
    ],
)
def test_a_bill_price_that_cannot_be_right_is_refused_with_its_range(
    price: str, words: str
) -> None:
    """The finding: a T-bill's reference price (per 100 of face) of 150, or of 0.000001,
    was taken by `admin.set_reference_price` and `admin.list_instrument`. A bill pays par
    at maturity: above par its rates are negative; below 50 it would yield more than 80% a
    year. Refused where the price enters, with the range in `data`."""
    data = {"reference_price": price, "min_price": "50.000000", "max_price": "100.000000"}
    specs = {BILL_SPEC.symbol: BILL_SPEC}
    request = decoded("admin.set_reference_price", {"symbol": BILL_SPEC.symbol, "price": price})
    moved = wire.to_command(request, specs, SCALES, 0)
    listed = convert("admin.list_instrument", BILL_LISTING | {"reference_price": price})
    for refusal in (moved, listed):
        assert isinstance(refusal, WireError), refusal
        assert refusal.code is E.BILL_PRICE_OUT_OF_RANGE
        assert words in refusal.message and BILL_SPEC.symbol in refusal.message
        data["reference_price"] = format_units(parse_units(price, 6), 6)
        assert refusal.data == data
        assert json.loads(wire.error_of(refusal))["error"]["data"] == data


def test_bill_prices_from_50_to_par_and_any_equity_price_are_taken() -> None:
    specs = {BILL_SPEC.symbol: BILL_SPEC} | SPECS
    for price, units in (("100", 100_000_000), ("50", 50_000_000), ("96.5", 96_500_000)):
        params = {"symbol": BILL_SPEC.symbol, "price": price}
        request = decoded("admin.set_reference_price", params)
        assert wire.to_command(request, specs, SCALES, 0) == SetReferencePrice(
            symbol=BILL_SPEC.symbol, price=units, lot_checked=True
        )
        listed = convert("admin.list_instrument", BILL_LISTING | {"reference_price": price})
        assert isinstance(listed, ListInstrument) and listed.spec.reference_price == units
    request = decoded("admin.set_reference_price", {"symbol": SYMBOL, "price": "5000"})
    assert wire.to_command(request, specs, SCALES, 0) == SetReferencePrice(
        symbol=SYMBOL, price=500_000, lot_checked=True
    )


def test_methods_without_a_command_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="no engine command"):
        wire.to_command(decoded("ping", {}), SPECS, SCALES, 7)
    convertible = {m for m in wire.METHODS if m in wire.COMMAND_METHODS}
    assert convertible == wire.COMMAND_METHODS


def test_quotes_convert_per_symbol() -> None:
    quote = wire.Quote(symbol=SYMBOL, bid_px="99.5", bid_qty="2", ask_qty="0")
    assert wire.quote_units(quote, SPECS) == wire.QuoteUnits(SYMBOL, 9_950, 2_000_000, None, 0)
    fine = wire.Quote(symbol=SYMBOL, bid_px="99.555", bid_qty="1")
    assert isinstance(error := wire.quote_units(fine, SPECS), WireError)
    assert error.code is E.BAD_PRECISION
    elsewhere = wire.quote_units(wire.Quote(symbol="X"), SPECS)
    assert isinstance(elsewhere, WireError) and elsewhere.code is E.UNKNOWN_SYMBOL


def test_units_helper() -> None:
    assert wire.units("1.5", 2, "price") == 150
    assert wire.units("1.555", 2, "price") == WireError(
        None, E.BAD_PRECISION, "price '1.555' has more than 2 decimals - at `params.price`"
    )


def test_converted_commands_run_on_a_real_venue() -> None:
    venue = Venue(ledger=Ledger())
    scales: dict[str, int] = {}
    setup = [
        ("admin.list_asset", {"code": "USD", "scale": 6}),
        ("admin.list_asset", {"code": "MSFTx", "scale": 6}),
        ("admin.list_instrument", MINIMAL["admin.list_instrument"]),
        ("admin.attest_reserves", {"asset": "USD", "amount": "1000000", "as_of": 1}),
        ("admin.open_account", MINIMAL["admin.open_account"]),
        ("admin.deposit", MINIMAL["admin.deposit"] | {"amount": "1000"}),
    ]
    ts = 1
    for method, params in setup:
        specs = {symbol: market.spec for symbol, market in venue.markets.items()}
        command = wire.to_command(decoded(method, params), specs, scales, 0)
        assert not isinstance(command, WireError), command
        events = venue.execute(msgspec.structs.replace(command, ts_us=ts))
        assert not any(isinstance(e, CommandRejected) for e in events), events
        if isinstance(command, ListAsset):
            scales[command.code] = command.scale
        ts += 1
    specs = {symbol: market.spec for symbol, market in venue.markets.items()}
    order = place(symbol="MSFTx-USD", price="400.01", qty="0.5")
    command = wire.to_command(decoded("order.place", order), specs, scales, 7)
    assert isinstance(command, PlaceOrder)
    events = venue.execute(msgspec.structs.replace(command, ts_us=ts))
    assert isinstance(events[0], OrderAccepted)
    assert (events[0].price, events[0].qty) == (40_001, 500_000)
    venue.check_invariants()


# ----------------------------------------------------------------- responses


def test_ok_envelope() -> None:
    body = wire.ok(42, {"order_id": 1, "status": "new"}, 10, 12)
    assert body == (
        b'{"id":42,"status":200,"result":{"order_id":1,"status":"new"},"t_in":10,"t_out":12}'
    )


def test_error_envelopes() -> None:
    body = wire.error(42, E.DUPLICATE_CL_ORD_ID, "in use", data={"order_id": 9})
    assert json.loads(body) == {
        "id": 42,
        "status": 400,
        "error": {
            "code": 4008,
            "name": "DUPLICATE_CL_ORD_ID",
            "msg": "in use",
            "data": {"order_id": 9},
        },
    }
    limited = json.loads(wire.error("a", E.RATE_LIMITED, "slow down", retry_after_ms=250))
    assert limited == {
        "id": "a",
        "status": 429,
        "error": {"code": 3000, "name": "RATE_LIMITED", "msg": "slow down"},
        "retry_after_ms": 250,
    }
    partial = json.loads(wire.error(1, E.INSUFFICIENT_BALANCE, "2 of 3 failed", status=409))
    assert partial["status"] == 409
    unknown = json.loads(wire.error_of(refused(b"{")))
    assert (unknown["id"], unknown["error"]["name"]) == (None, "BAD_JSON")


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (E.BAD_JSON, 400),
        (E.MESSAGE_TOO_BIG, 400),
        (E.NOT_AUTHENTICATED, 401),
        (E.BAD_SIGNATURE, 401),
        (E.TIMESTAMP_OUT_OF_WINDOW, 401),
        (E.NONCE_REUSED, 401),
        (E.PERMISSION_DENIED, 403),
        (E.NOT_ELIGIBLE, 403),
        (E.RATE_LIMITED, 429),
        (E.TOO_MANY_OPEN_ORDERS, 400),
        (E.POST_ONLY_WOULD_TAKE, 400),
        (E.UNKNOWN_ORDER, 400),
        (E.INSTRUMENT_HALTED, 503),
        (E.CANCEL_ONLY, 400),
        (E.UNKNOWN_ASSET, 400),
        (E.INTERNAL, 500),
        (E.SHUTTING_DOWN, 503),
        (E.QUOTE_PLACE_PENDING, 503),
        (E.OUTCOME_UNKNOWN, 504),
        (E.NONCE_UNCHECKED, 503),
        (E.TOO_MANY_CONNECTIONS, 503),
        (E.UNSUPPORTED_COMMAND, 503),
    ],
)
def test_rejection_status(code: ErrorCode, status: int) -> None:
    assert wire.rejection_status(code) == status


def test_pushes_encode_as_json() -> None:
    assert wire.encode({"ch": "account", "seq": 1}) == b'{"ch":"account","seq":1}'


@pytest.mark.parametrize("escape", ["\\ud800", "\\uDBFF", "\\ud83dx"])
def test_a_lone_high_surrogate_is_named_not_called_truncated(escape: str) -> None:
    """msgspec reads a high surrogate escape without its low half as "Input data was
    truncated", which misleads a client whose frame is whole."""
    raw = '{"id": 1, "method": "ping", "params": {"x": "' + escape + '"}}'
    for data in (raw, raw.encode()):
        failure = wire.decode_envelope(data)
        assert isinstance(failure, wire.WireError) and failure.code is E.BAD_JSON
        assert failure.message == f"{wire.LONE_SURROGATE} - at `params.x`"
    for cut_short in (b'{"id": 1, "method": "pi', b'{"id": 1, "method": "\\\\ud800'):  # a backslash
        cut = wire.decode_envelope(cut_short)
        assert isinstance(cut, wire.WireError) and cut.message == "Input data was truncated"


PLACE_HEAD = '{"id": 7, "method": "order.place", "params": {"symbol": "AAPLx-USD", '
HIGH, LOW = wire.LONE_SURROGATE, wire.LONE_LOW_SURROGATE
UNPAIRED: dict[str, tuple[str, int | str | None, str]] = {  # frame, its answer's id and msg
    "high, last in the frame": (
        PLACE_HEAD + '"cl_ord_id": "\\uD800"}}',
        7,
        f"{HIGH} - at `params.cl_ord_id`",
    ),
    "high, text after it": (
        PLACE_HEAD + '"cl_ord_id": "\\ud800", "tag": "t"}}',
        7,
        f"{HIGH} - at `params.cl_ord_id`",
    ),
    "high, then a non-low escape": (
        PLACE_HEAD + '"tag": "\\ud800\\u0041"}}',
        7,
        f"{HIGH} - at `params.tag`",
    ),
    "low alone": (PLACE_HEAD + '"tag": "a\\udc00"}}', 7, f"{LOW} - at `params.tag`"),
    "in a batch op": (
        '{"id": "b-1", "method": "order.batch", "params": {"ops": [{"method": "order.cancel",'
        ' "params": {"order_id": 1}}, {"method": "order.place", "params": {"tag": "\\udfff"}}]}}',
        "b-1",
        f"{LOW} - at `params.ops[1].params.tag`",
    ),
    "in a key": (
        '{"id": 7, "method": "ping", "params": {"\\ud800": 1}}',
        7,
        f"{HIGH} - in a key of `params`",
    ),
    "the first of two, in the frame's order": (
        '{"id": 7, "method": "ping", "params": {"a": ["x", {"b": "\\udc00"}], "c": "\\ud800"}}',
        7,
        f"{LOW} - at `params.a[1].b`",
    ),
    "id after the field": (
        '{"method": "ping", "params": {"a": "\\ud800"}, "id": 12}',
        12,
        f"{HIGH} - at `params.a`",
    ),
    "in the id itself": ('{"id": "\\ud800", "method": "ping"}', None, f"{HIGH} - at `id`"),
    "an id that is no id": (
        '{"id": 1.5, "method": "ping", "params": {"a": "\\ud800"}, "x": 1}',
        None,
        "Expected `int | str`, got `float` - at `$.id`",  # read before the escape, as ever
    ),
    "an id out of range": (
        '{"method": "ping", "params": {"a": "\\ud800"}, "id": 9007199254740992}',
        None,
        f"{HIGH} - at `params.a`",
    ),
    "a frame cut short too": (PLACE_HEAD + '"tag": "\\ud800"', None, HIGH),
}


@pytest.mark.parametrize("case", list(UNPAIRED), ids=list(UNPAIRED))
def test_an_unpaired_surrogate_is_answered_with_the_id_and_placed(case: str) -> None:
    """An unpaired surrogate escape (which msgspec refuses, with words that vary with what
    follows it) is BAD_JSON with the request's id, when the frame reads leniently and has a
    valid one, and says where the escape is."""
    raw, answered_id, message = UNPAIRED[case]
    for data in (raw, raw.encode()):
        envelope, request = wire.decode(data)
        assert envelope == request  # nothing read: refused before the method is known
        assert isinstance(request, wire.WireError), request
        assert (request.id, request.message) == (answered_id, message)
        assert request.code is (E.BAD_PARAM if "Expected" in message else E.BAD_JSON)


def test_a_surrogate_pair_and_other_bad_json_are_as_before() -> None:
    """Only a frame that holds a surrogate escape (or NaN or Infinity, since session 21:
    tests/gateway/test_server_hostile.py) is read a second time: other unreadable frames
    keep msgspec's words and a null id, and a paired escape is text."""
    good = wire.decode('{"id": 3, "method": "ping", "params": {}, "x": "\\ud83d\\ude00"}')
    assert isinstance(good, tuple) and isinstance(good[1], wire.WireError)
    assert good[1].id == 3 and good[1].code is E.BAD_PARAM  # the unknown field x, not the text
    for raw in ('{"id": 3, "method": "ping", "params": {"x": nul}}', '{"id": 3, "method": "ping"'):
        failure = wire.decode_envelope(raw)
        assert isinstance(failure, wire.WireError) and failure.code is E.BAD_JSON
        assert failure.id is None and "surrogate" not in failure.message
        assert "number" not in failure.message
    cut = wire.decode_envelope('{"id": 3, "method": "ping", "params": {"a": "\\ud83d\\ude00"')
    assert isinstance(cut, wire.WireError) and cut.message == "Input data was truncated"


NUMBER, LITERAL = "; JSON numbers are finite", "; JSON's literals are true, false and null"
# (the bad word as sent, then the msg's words for it): each at byte 44 of `in_ping`
WORDS_NOT_JSON = [
    ("nan", f"nan is not a JSON number (byte 44){NUMBER}"),
    ("Nan", f"Nan is not a JSON number (byte 44){NUMBER}"),
    ("-NaN", f"-NaN is not a JSON number (byte 44){NUMBER}"),
    ("inf", f"inf is not a JSON number (byte 44){NUMBER}"),
    ("-inf", f"-inf is not a JSON number (byte 44){NUMBER}"),
    ("+Infinity", f"+Infinity is not a JSON number (byte 44){NUMBER}"),
    ("-infinity", f"-infinity is not a JSON number (byte 44){NUMBER}"),
    ("None", f"None is not JSON (byte 44){LITERAL}"),
    ("True", f"True is not JSON (byte 44){LITERAL}"),
    ("NULL", f"NULL is not JSON (byte 44){LITERAL}"),
    ("undefined", f"undefined is not JSON (byte 44){LITERAL}"),
]


@pytest.mark.parametrize(("word", "said"), WORDS_NOT_JSON)
def test_a_word_that_is_not_json_is_named_with_the_request_id(word: str, said: str) -> None:
    """The testers' finding: `NaN` and `Infinity` were named and the id kept, but a lowercase
    `nan` (C's printf, numpy), `-inf` or Python's `None` got msgspec's "invalid character"
    and `id` null. Each is `BAD_JSON` naming the word, with the id; in a str frame and a
    binary one alike, and as well beside others (each read as null for the id)."""
    in_ping = '{"id": 3, "method": "ping", "params": {"x": ' + word + ', "y": [nan, None]}}'
    for frame in (in_ping, in_ping.encode()):
        failure = wire.decode_request(frame)
        assert isinstance(failure, wire.WireError), frame
        assert (failure.id, failure.code) == (3, E.BAD_JSON)
        assert failure.message == f"JSON is malformed: {said}"
    as_id = wire.decode_request('{"id": ' + word + ', "method": "ping"}')
    assert isinstance(as_id, wire.WireError) and as_id.id is None
    assert as_id.message.endswith(f"; {wire.NO_ID}") and word in as_id.message


BYTE_ORDER_MARK = (
    "JSON is malformed: it starts with a byte order mark (U+FEFF; in UTF-8 the bytes EF BB BF),"
    " which JSON sent over a network has not (RFC 8259 8.1): send the JSON object alone"
)


def test_a_frame_led_by_a_byte_order_mark_is_named_so_with_the_request_id() -> None:
    """The finding (a sloppy client: a file saved by a Windows editor, PowerShell's
    `Out-File`): a request led by a UTF-8 byte order mark was `BAD_JSON` `JSON is malformed:
    invalid character (byte 0)` with `id` null, which says neither what nor which request.
    It is named, with the id read past the mark; in a str frame and a binary one alike."""
    request = '{"id": 7, "method": "ping"}'
    for frame in ("\ufeff" + request, b"\xef\xbb\xbf" + request.encode()):
        failure = wire.decode_request(frame)
        assert isinstance(failure, wire.WireError), frame
        assert (failure.id, failure.code, failure.message) == (7, E.BAD_JSON, BYTE_ORDER_MARK)
    unreadable = wire.decode_request("\ufeff{")
    assert isinstance(unreadable, wire.WireError) and unreadable.id is None
    assert unreadable.message == f"{BYTE_ORDER_MARK}; {wire.NO_ID}"


def test_words_read_as_null_for_the_id_are_bounded() -> None:
    """Each is a new reading of the frame: past `WORDS_READ_AS_NULL_MAX` the id is not read."""
    many = ", ".join(["nan"] * (wire.WORDS_READ_AS_NULL_MAX + 1))
    failure = wire.decode_request('{"id": 4, "method": "ping", "params": {"x": [' + many + "]}}")
    assert isinstance(failure, wire.WireError) and failure.id is None
    fewer = ", ".join(["nan"] * wire.WORDS_READ_AS_NULL_MAX)
    failure = wire.decode_request('{"id": 4, "method": "ping", "params": {"x": [' + fewer + "]}}")
    assert isinstance(failure, wire.WireError) and failure.id == 4


def test_the_search_for_an_unpaired_surrogate_is_bounded() -> None:
    """A frame of many values is read leniently for its id, but its escape is placed only
    among the first SURROGATE_SEARCH_MAX keys and values."""
    many = ", ".join(["1"] * wire.SURROGATE_SEARCH_MAX)
    raw = '{"id": 5, "method": "ping", "params": {"a": [' + many + '], "b": "\\ud800"}}'
    failure = wire.decode_envelope(raw)
    assert isinstance(failure, wire.WireError)
    assert (failure.id, failure.code, failure.message) == (5, E.BAD_JSON, HIGH)


def test_a_field_s_place_is_moved_under_its_op_only_from_the_message_s_ending() -> None:
    """`placed_under` swapped the first `- at `params.` anywhere: a client's own text echoed in
    a refusal (an unknown symbol `X - at `params.evil``) was taken for the place, and the op's
    `op N:` prefix was then lost (review of session 29)."""
    at_qty = "qty must be positive, not zero: '0' - at `params.qty`"
    assert wire.placed_under(at_qty, "ops[2].params") == (
        "qty must be positive, not zero: '0' - at `params.ops[2].params.qty`"
    )
    echoed = "unknown symbol 'X - at `params.evil`'"
    assert wire.placed_under(echoed, "ops[0].params") == echoed
    both = "bad 'X - at `params.evil`' - at `params.price`"
    assert wire.placed_under(both, "quotes[1]") == (
        "bad 'X - at `params.evil`' - at `params.quotes[1].price`"
    )
