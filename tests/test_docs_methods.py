"""docs/protocol.md's method index is the venue's: every method once, with the scope
gateway/dispatch.py asks of it and the rate cost gateway/limits.py charges."""

import re

from gateway import limits, wire
from gateway.dispatch import READ_METHODS, TRADE_SCOPE_METHODS
from tests.conftest import ROOT

INDEX = (ROOT / "docs" / "protocol.md").read_text().split("Method index:", 1)[1].split("\n## ")[0]
ROW = re.compile(r"^\| (`[^|]*) \| ([^|]*) \| [^|]* \| ([^|]*) \|$", re.MULTILINE)
OP_COST = re.compile(r"([\d.]+) per ((?:\w+(?: or )?)+) op")  # "0.25 per cancel op"


def rows() -> list[tuple[list[str], str, str]]:
    """(methods, scope, cost) of every row; `admin.*` as every admin method."""
    found = []
    for methods, scope, cost in ROW.findall(INDEX):
        names = re.findall(r"`([a-z_.*]+)`", methods.split(" (")[0])
        if names == ["admin.*"]:
            names = sorted(method for method in wire.METHODS if method.startswith("admin."))
            assert f"({len(names)} methods)" in methods, f"the admin row miscounts: {methods}"
        found.append((names, scope.split(" ")[0].rstrip(","), cost.strip()))
    assert len(found) > 10, "the method index of docs/protocol.md was not found"
    return found


def scope(method: str) -> str:
    if method in TRADE_SCOPE_METHODS:
        return "trade"
    if method in READ_METHODS:
        return "read"
    return "admin" if method.startswith("admin.") else "none"


def test_every_method_has_one_row() -> None:
    listed = [method for methods, _, _ in rows() for method in methods]
    assert len(listed) == len(set(listed)), "a method has two rows"
    assert set(listed) == set(wire.METHODS), (
        f"missing {sorted(set(wire.METHODS) - set(listed))}, "
        f"not methods {sorted(set(listed) - set(wire.METHODS))}"
    )


def test_each_rows_scope_is_the_venues() -> None:
    wrong = [(method, written) for methods, written, _ in rows() for method in methods
             if scope(method) != written]  # fmt: skip
    assert not wrong, f"(method, the index's scope) the venue asks otherwise: {wrong}"


def test_each_rows_cost_is_what_the_venue_charges() -> None:
    for methods, _, cost in rows():
        for method in methods:
            if method == "order.batch":  # by the kind of each op
                written = {
                    f"order.{kind}": round(float(tokens) * limits.MILLI)
                    for tokens, kinds in OP_COST.findall(cost)
                    for kind in kinds.split(" or ")
                }
                assert written == limits.BATCH_OP_COST_MILLI, f"order.batch: {cost!r}"
            elif method == "quote.mass":  # by quote
                assert cost == f"{limits.cost_milli(method) / limits.MILLI:g} per quote"
            else:
                assert cost == f"{limits.cost_milli(method) / limits.MILLI:g}", (method, cost)
