"""docs/protocol.md's error table (§11.1) is engine/reasons.py's: every code, its name and
the status the gateway answers it with, both ways."""

import re

from engine.reasons import ErrorCode
from gateway.wire import rejection_status
from tests.conftest import ROOT

ROW = re.compile(r"^\| (\d{4}) \| `([A-Z_]+)` \| (\d{3}) \|", re.MULTILINE)


def documented() -> dict[int, tuple[str, int]]:
    """code → (name, status) of every row of the table."""
    rows = ROW.findall((ROOT / "docs" / "protocol.md").read_text())
    codes = [int(code) for code, _, _ in rows]
    assert len(codes) == len(set(codes)), "a code has two rows in docs/protocol.md §11.1"
    return {int(code): (name, int(status)) for code, name, status in rows}


def in_code() -> dict[int, tuple[str, int]]:
    return {int(code): (code.name, rejection_status(code)) for code in ErrorCode}


def test_every_error_code_has_its_row() -> None:
    table = documented()
    missing = {code: row for code, row in in_code().items() if code not in table}
    assert not missing, f"add these to docs/protocol.md §11.1: {missing}"


def test_the_table_lists_no_code_the_venue_lacks() -> None:
    codes = in_code()
    stale = {code: row for code, row in documented().items() if code not in codes}
    assert not stale, f"docs/protocol.md §11.1 lists codes engine/reasons.py lacks: {stale}"


def test_each_row_has_the_codes_name_and_status() -> None:
    codes = in_code()
    wrong = {
        code: (row, codes[code])
        for code, row in documented().items()
        if code in codes and row != codes[code]
    }
    assert not wrong, f"docs/protocol.md §11.1 (table, code) differ: {wrong}"
