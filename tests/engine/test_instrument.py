"""Instrument specs: exact notional fractions, soundness checks, and the price band."""

import random
from fractions import Fraction

import pytest

from engine import instrument, snapshot
from engine.commands import ListInstrument, SetInstrumentStatus
from engine.enums import InstrumentKind, InstrumentStatus
from engine.instrument import (
    _letters,
    _one_typo_apart,
    band_limits,
    case_twin,
    likely_symbols,
    unknown_symbol,
)
from engine.venue import Venue
from tests.engine.conftest import make_spec


def test_equity_notional_is_price_times_qty() -> None:
    spec = make_spec()  # price in cents, qty in 1e-6 shares, USD at 6 decimals
    num, den = spec.notional_fraction
    # 187.25 x 2.5 shares = 468.125 USD = 468_125_000 units
    assert Fraction(18_725 * 2_500_000 * num, den) == 468_125_000


def test_tbill_notional_is_per_hundred_face() -> None:
    spec = make_spec(
        kind=InstrumentKind.TBILL,
        price_decimals=6,
        qty_decimals=0,
        reference_price=98_676_708,
        maturity_us=1,
    )
    num, den = spec.notional_fraction
    # 98.676708 per 100 of face, 1,000 face -> 986.76708 USD
    assert Fraction(98_676_708 * 1_000 * num, den) == 986_767_080


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"symbol": ""}, "symbol"),
        ({"symbol": "AAPLx-USD "}, "no spaces"),  # listed a twin of AAPLx-USD
        ({"symbol": "bad\nname"}, "printable ASCII"),  # broke one-line errors and logs
        ({"symbol": "ÄÖ-USD"}, "printable ASCII"),
        ({"quote": "AAPLx"}, "different assets"),
        ({"price_tick": 0}, "positive"),
        ({"min_qty": 3, "qty_step": 2}, "multiple of qty_step"),
        ({"price_band_bps": 0}, "price_band_bps"),
        ({"reference_price": 10_001, "price_tick": 5}, "reference_price"),
        ({"taker_fee_bps": 5_000}, "fees"),
        ({"maturity_us": 5}, "maturity"),
        ({"kind": InstrumentKind.TBILL}, "maturity"),
        ({"qty_decimals": 19}, "qty_decimals"),
    ],
)
def test_unsound_specs_say_why(overrides: dict[str, object], complaint: str) -> None:
    problem = make_spec(**overrides).problem()
    assert problem is not None and complaint in problem


def test_sound_spec_has_no_problem() -> None:
    assert make_spec().problem() is None


def test_band_limits_round_inward_onto_ticks() -> None:
    assert band_limits(10_000, 1_000, 1) == (9_000, 11_000)
    # 10% of 10,003 is 1,000.3: high floors to 11,003 -> 11,000 on a 5-tick; low ceils.
    assert band_limits(10_003, 1_000, 5) == (9_005, 11_000)
    assert band_limits(100, 10_000, 1) == (1, 200)  # never below one tick


def test_a_case_twin_differs_only_by_case() -> None:
    assert case_twin("usd", ["AAPLx", "USD"]) == "USD"
    assert case_twin("AAPLX", ["AAPLx"]) == "AAPLx"
    assert case_twin("USD", ["USD"]) is None  # the very code is not its own twin
    assert case_twin("USDC", ["USD"]) is None


LISTED = [
    "AAPLx-USD",
    "MSFTx-USD",
    "NVDAx-USD",
    "SPYx-USD",
    "TB-2027-03-04-USD",
    "TB-2027-08-26-USD",
]


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("AAPL-USD", "'AAPLx-USD'"),  # the x left out
        ("AAPLX/USD", "'AAPLx-USD'"),  # another separator, and the case
        ("AAPLx_USD", "'AAPLx-USD'"),
        ("AAPLxUSD", "'AAPLx-USD'"),  # none
        ("aaplx usd", "'AAPLx-USD'"),
        ("SPY-USD", "'SPYx-USD'"),
        ("AAPL", "'AAPLx-USD'"),  # the stock alone
        ("TB-2027-03-14-USD", "'TB-2027-03-04-USD'"),  # a T-bill's date mistyped
        ("TB-2027-30-04-USD", "'TB-2027-03-04-USD'"),  # two digits swapped
        ("TB-20270826-USD", "'TB-2027-08-26-USD'"),
        ("TB-2027", "'TB-2027-03-04-USD' or 'TB-2027-08-26-USD'"),  # both, in order
    ],
)
def test_an_unknown_symbol_names_the_listed_one_a_slip_most_likely_meant(
    typed: str, meant: str
) -> None:
    """The finding (session 36): only a slip of case was named (`aaplx-usd`); a trader who
    typed `AAPL-USD`, `AAPLX/USD` or a bill's date with a typo got the bare refusal."""
    assert unknown_symbol(typed, LISTED) == f"unknown symbol {typed!r}: did you mean {meant}?"


def test_an_unknown_symbol_like_none_listed_names_none() -> None:
    # a bill of another date two digits off is another bill, not a slip (named both listed
    # bills before the review of session 36)
    others = ("TB-2027-05-06-USD", "TB-2027-03-46-USD", "AAPLxx-USDC")
    for typed in (
        "NOPE",
        "XYZx-USD",
        "TSLAx-USD",
        "TB-2028-11-30-USD",
        "-",
        "X" * 40,
        "US",
        *others,
    ):
        assert unknown_symbol(typed, LISTED) == f"unknown symbol {typed!r}", typed
    assert unknown_symbol("AAPL-USD", ["AAPLx-USD"][:0]) == "unknown symbol 'AAPL-USD'"


def test_an_unknown_symbol_names_at_most_three_in_order() -> None:
    """Bounded and the same each time, whatever order the listed ones come in."""
    listed = [f"AB{letter}x-USD" for letter in "EDCBA"]
    said = unknown_symbol("ABx-USD", listed)
    assert said == "unknown symbol 'ABx-USD': did you mean 'ABAx-USD', 'ABBx-USD' or 'ABCx-USD'?"
    assert unknown_symbol("ABx-USD", sorted(listed)) == said


def test_a_case_slip_is_still_named_as_such() -> None:
    assert unknown_symbol("aaplx-usd", LISTED) == (
        "unknown symbol 'aaplx-usd': did you mean 'AAPLx-USD'? (symbols match case and all)"
    )


def _edits(typed: str, other: str) -> int:
    """The naive edit distance with swaps of neighbours (optimal string alignment)."""
    rows = [
        [i + j if not i or not j else 0 for j in range(len(other) + 1)]
        for i in range(len(typed) + 1)
    ]
    for i in range(1, len(typed) + 1):
        for j in range(1, len(other) + 1):
            best = min(rows[i - 1][j] + 1, rows[i][j - 1] + 1)
            best = min(best, rows[i - 1][j - 1] + (typed[i - 1] != other[j - 1]))
            if i > 1 and j > 1 and typed[i - 1] == other[j - 2] and typed[i - 2] == other[j - 1]:
                best = min(best, rows[i - 2][j - 2] + 1)
            rows[i][j] = best
    return rows[-1][-1]


def test_one_typo_apart_is_an_edit_distance_of_one() -> None:
    """Every pair of words of up to 4 letters from "abc": the linear check agrees."""
    words = [""]
    for _ in range(4):
        words += [
            word + letter for word in words if len(word) == len(words[-1]) for letter in "abc"
        ]
    words = sorted(set(words))
    for typed in words:
        for other in words:
            if abs(len(typed) - len(other)) <= 2:
                assert _one_typo_apart(typed, other) == (_edits(typed, other) == 1), (typed, other)


def _likely_by_a_pass(symbol: str, listed: list[str]) -> list[str]:
    """`likely_symbols` as it was before the review of session 36: a pass over every listed
    symbol per refusal. The index must name exactly these."""
    key = _letters(symbol)
    if not key or len(symbol) > 32:
        return []
    keys = [(_letters(name), name) for name in listed]
    same = [name for other, name in keys if other == key]
    if same:
        return sorted(same)[:3]
    if len(key) > 4:
        near = [name for other, name in keys if _one_typo_apart(key, other)]
        if near:
            return sorted(near)[:3]
    if len(key) < 3:
        return []
    return sorted(name for other, name in keys if other.startswith(key))[:3]


def test_the_index_names_what_a_pass_over_every_listed_symbol_named() -> None:
    """Listed symbols and inputs drawn from few characters, so that most inputs are near
    some: every tier (the same letters, one typo, a prefix) is met, in random orders."""
    rnd = random.Random(36)
    for _ in range(60):
        alphabet = rnd.choice(["AB1", "Ab-", "ab12/", "TB-20"])
        listed = sorted(
            {"".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 9))) for _ in range(40)}
        )
        rnd.shuffle(listed)
        indexed = dict.fromkeys(listed, 0)  # a dict's index is cached, a list's built
        for _ in range(150):
            typed = "".join(rnd.choice(alphabet + "x") for _ in range(rnd.randint(0, 10)))
            expected = _likely_by_a_pass(typed, listed)
            assert likely_symbols(typed, indexed) == expected, (typed, listed)
            assert likely_symbols(typed, listed) == expected, (typed, listed)
            if typed not in indexed:
                assert unknown_symbol(typed, indexed) == unknown_symbol(typed, listed)


def test_a_dicts_cached_index_follows_its_listings() -> None:
    """The index is built on a refusal and cached by the dict (session 36's second review:
    not kept by a dict subclass on every lookup); a symbol listed after a refusal is named
    by the next one, and a removal then an addition (the same len) is caught by the last key."""
    markets = {"AAPLx-USD": 1}
    assert likely_symbols("AAPL-USD", markets) == ["AAPLx-USD"]
    assert likely_symbols("MSFT-USD", markets) == []
    markets["MSFTx-USD"] = 2
    assert likely_symbols("MSFT-USD", markets) == ["MSFTx-USD"]
    markets.update({"NVDAx-USD": 3})
    markets.setdefault("SPYx-USD", 4)
    assert [likely_symbols(f"{name}-USD", markets) for name in ("MSFT", "NVDA", "SPY")] == [
        ["MSFTx-USD"],
        ["NVDAx-USD"],
        ["SPYx-USD"],
    ]
    assert unknown_symbol("msftx-usd", markets).endswith(
        "did you mean 'MSFTx-USD'? (symbols match case and all)"
    )
    markets["NVDAx-USD"] = 30  # a value replaced: the same listings, the same index
    assert likely_symbols("NVDA-USD", markets) == ["NVDAx-USD"]
    del markets["MSFTx-USD"]
    markets["TSLAx-USD"] = 5  # the same len as before: the last key tells
    assert likely_symbols("MSFT-USD", markets) == []
    assert likely_symbols("TSLA-USD", markets) == ["TSLAx-USD"]
    assert unknown_symbol("msftx-usd", markets) == "unknown symbol 'msftx-usd'"
    markets.clear()
    assert likely_symbols("AAPL-USD", markets) == []


def test_a_venue_names_a_symbol_listed_after_a_refusal() -> None:
    """The engine's refusal is an event: one after a listing names the new market, as a
    pass over the markets did (and so does every replay of the same commands)."""
    venue = Venue()
    venue.execute(ListInstrument(ts_us=1, spec=make_spec(symbol="AAPLx-USD")))
    assert unknown_symbol("MSFT-USD", venue.markets) == "unknown symbol 'MSFT-USD'"
    spec = make_spec(symbol="MSFTx-USD", base="MSFTx", quote="USD")
    venue.execute(ListInstrument(ts_us=2, spec=spec))
    said = unknown_symbol("MSFT-USD", venue.markets)
    assert said == "unknown symbol 'MSFT-USD': did you mean 'MSFTx-USD'?"


def test_the_cached_indexes_stay_bounded() -> None:
    """Many dicts refused from (venues made and dropped): at most `INDEXES_MAX` indexed,
    the least recently used let go; the one in use stays."""
    kept = {"AAPLx-USD": 0}
    assert likely_symbols("AAPL-USD", kept) == ["AAPLx-USD"]
    for number in range(3 * instrument.INDEXES_MAX):
        assert likely_symbols("AAPL-USD", {f"AAPLx-U{number}": 0}) == []
        assert likely_symbols("AAPL-USD", kept) == ["AAPLx-USD"]
        assert len(instrument._indexes) <= instrument.INDEXES_MAX
    assert id(kept) in instrument._indexes


def test_a_venue_names_the_same_likely_symbols_after_a_delist_and_a_restore() -> None:
    """The engine's refusal is an event: the same on replay, on a standby and after an
    image is restored, so the index follows every listing (a delisted market stays)."""
    venue = Venue()
    for symbol in ("AAPLx-USD", "AAPLx-EUR", "MSFTx-USD"):
        base, quote = symbol.split("-")
        venue.execute(
            ListInstrument(ts_us=1, spec=make_spec(symbol=symbol, base=base, quote=quote))
        )
    venue.execute(
        SetInstrumentStatus(ts_us=2, symbol="AAPLx-EUR", status=InstrumentStatus.DELISTED)
    )
    said = unknown_symbol("AAPL", venue.markets)
    assert said == "unknown symbol 'AAPL': did you mean 'AAPLx-EUR' or 'AAPLx-USD'?"
    restored = snapshot.restore(snapshot.decode(snapshot.encode(snapshot.capture(venue))))
    assert unknown_symbol("AAPL", restored.markets) == said
    assert unknown_symbol("MSFT-USD", restored.markets).endswith("did you mean 'MSFTx-USD'?")
