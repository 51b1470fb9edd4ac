"""docs/rest.md's endpoint table is the routing table of gateway/rest.py: the same routes,
each unsigned or signed with the scope its websocket method needs, running as that method."""

import re

from gateway.dispatch import READ_METHODS, TRADE_SCOPE_METHODS
from gateway.rest import LOCAL_READS, ROUTES
from tests.conftest import ROOT

# | `GET /api/v1/book?symbol=S&depth=N` | no | `book.snapshot` (depth ...) | ... |
ROW = re.compile(r"^\| `([A-Z]+) (/api/[^`?\[]*)[^`]*` \| (no|read|trade) \| ([^|]*) \|", re.M)


def documented() -> dict[tuple[str, str], tuple[str, str]]:
    """(HTTP method, path) → (no or the scope, what it runs as) of every row of the table."""
    rows = ROW.findall((ROOT / "docs" / "rest.md").read_text())
    assert len(rows) > 10, "the endpoint table of docs/rest.md was not found"
    table = {}
    for method, path, signed, runs_as in rows:
        named = re.match(r"`([a-z._]+)`", runs_as.strip())
        table[(method, path)] = (signed, named.group(1) if named else runs_as.strip())
    return table


def scope(method: str) -> str:
    """The scope the venue asks of a websocket method (gateway/dispatch.py)."""
    return "trade" if method in TRADE_SCOPE_METHODS else "read" if method in READ_METHODS else "?"


def in_code() -> dict[tuple[str, str], tuple[str, str]]:
    return {
        (route.method, route.path): (
            scope(route.runs_as) if route.private else "no",
            "served here" if route.runs_as in LOCAL_READS else route.runs_as,
        )
        for route in ROUTES
    }


def test_the_table_has_every_route_and_no_other() -> None:
    table, routes = documented(), in_code()
    assert table.keys() == routes.keys(), (
        f"docs/rest.md lacks {sorted(routes.keys() - table.keys())}, "
        f"lists routes the venue lacks {sorted(table.keys() - routes.keys())}"
    )


def test_each_row_is_signed_and_runs_as_the_code_says() -> None:
    table, routes = documented(), in_code()
    wrong = {key: (table[key], routes[key]) for key in table.keys() & routes.keys()
             if table[key] != routes[key]}  # fmt: skip
    assert not wrong, f"docs/rest.md (page, code) differ: {wrong}"
